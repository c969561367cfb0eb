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
pub mod from_google;
pub mod iap_settings;
pub mod service_iap;

pub use context::Context;

/// What every resource file uses: the typed kit, serde, the context and the layers it calls.
mod prelude {
    pub use async_trait::async_trait;
    pub use serde::{Deserialize, Serialize};

    pub(super) use super::common;
    pub use super::Context;
    pub use crate::framework::timeouts::timeouts_block;
    pub use crate::framework::{
        Applied, Attr, Attribute, AttributePath, Block, Change, ClientCapabilities, Delete,
        Deleted, Diagnostic, Diagnostics, Failure, MoveSource, MoveSources, NestedBlock, Plan,
        Read, Resource, Schema,
    };
    pub use crate::{google, names, validation};
}

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
