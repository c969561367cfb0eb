//! Terraform semantics without gRPC: schemas, values, diagnostics, the resource and provider traits and
//! the generic planning every resource shares. Nothing here knows tfplugin5 wire types or Google APIs.

pub mod diagnostics;
pub mod json;
pub mod path;
pub mod plan;
pub mod resource;
pub mod schema;
pub mod value;

pub use diagnostics::{Diagnostic, Diagnostics, Severity};
pub use path::{AttributePath, Step};
pub use resource::{
    ApplyRequest, ApplyResponse, ClientCapabilities, ConfigureRequest, DeleteRequest,
    ImportResponse, PlanRequest, Provider, ReadRequest, ReadResponse, Resource, ValidateRequest,
};
pub use schema::{Attribute, Block, NestedBlock, Nesting, Schema};
pub use value::{Number, Refinements, Type, Value};
