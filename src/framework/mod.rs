//! Terraform semantics without gRPC: schemas, values, typed models, diagnostics, the resource, data
//! source and provider traits, and the engine ([`server`]) that drives them. Nothing here knows
//! tfplugin5 wire types or Google APIs.

pub mod diagnostics;
pub mod json;
pub mod model;
pub mod path;
pub mod plan;
pub mod resource;
pub mod schema;
pub mod server;
#[cfg(test)]
pub(crate) mod testing;
pub mod timeouts;
pub mod value;

pub use diagnostics::{Diagnostic, Diagnostics, Severity};
pub use model::Attr;
pub use path::{AttributePath, Step};
pub use resource::{
    typed, typed_data_source, AnyDataSource, AnyResource, Applied, ApplyRequest, ApplyResponse,
    Change, ClientCapabilities, ConfigureRequest, DataSource, Delete, DeleteRequest, Deleted,
    Failure, ImportResponse, MoveSource, MoveSources, Plan, PlanRequest, Provider, Read,
    ReadRequest, ReadResponse, Resource, ValidateRequest,
};
pub use schema::{Attribute, Block, NestedBlock, Nesting, Schema};
pub use value::{Number, Refinements, Type, Value};
