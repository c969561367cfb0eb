//! The resource types, one file each, in the same section order: schema, validate, plan, create,
//! read, update, delete, import.

use std::sync::Arc;

use crate::framework::Resource;
use crate::provider::Context;

/// Every resource type the provider serves.
pub fn all() -> Vec<Arc<dyn Resource<Context>>> {
    vec![]
}
