//! The resource types, one file each: a typed model, a schema and short calls to Google.
//! Everything Terraform semantics need beyond that is the engine's ([`crate::framework::server`]);
//! what several types share is in [`common`]; the run-time context is [`Context`].
//!
//! A new type goes in its own file here, with one registration line below and its example folder
//! under `examples/resources/` (or `examples/data-sources/`).

use std::sync::Arc;

use crate::framework::{typed, typed_data_source, AnyDataSource, AnyResource};

pub mod access_binding;
pub mod access_member;
pub mod audit;
pub mod backend_iap;
pub mod cache;
mod common;
mod context;
pub mod iap_settings;
pub mod service_iap;

pub use context::Context;

/// Every resource type the provider serves.
pub fn all() -> Vec<Arc<dyn AnyResource<Context>>> {
    vec![
        typed(service_iap::ServiceIap),
        typed(backend_iap::BackendIap),
        typed(access_binding::AccessBinding),
        typed(iap_settings::IapSettings),
        typed(access_member::AccessMember),
    ]
}

/// Every data source the provider serves.
pub fn data_sources() -> Vec<Arc<dyn AnyDataSource<Context>>> {
    vec![typed_data_source(audit::Audit)]
}
