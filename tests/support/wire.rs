//! What untrusted wire input is decoded against, for the property tests and the fuzz targets (which
//! include this one file by `#[path]`: it needs only the library).

use iaprun::framework::Type;

/// The value types of every resource schema and of the provider block.
pub fn schema_types() -> Vec<Type> {
    let mut types: Vec<Type> = iaprun::resources::all()
        .iter()
        .map(|r| r.schema().value_type())
        .collect();
    types.push(iaprun::provider::provider_schema().value_type());
    types
}
