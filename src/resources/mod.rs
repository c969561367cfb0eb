//! The resource types, one file each, in the same section order: schema, validate, plan, create,
//! read, update, delete, import.

use std::sync::Arc;

use crate::framework::Resource;
use crate::provider::Context;

pub mod access_binding;
pub mod audit;
pub mod backend_iap;
pub mod cache;
mod common;
pub mod service_iap;

/// Every resource type the provider serves.
pub fn all() -> Vec<Arc<dyn Resource<Context>>> {
    vec![
        Arc::new(service_iap::ServiceIap),
        Arc::new(backend_iap::BackendIap),
        Arc::new(access_binding::AccessBinding),
    ]
}
