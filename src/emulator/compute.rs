//! Compute Engine v1: load-balancing resources and their operations (filled in below).

use std::time::Instant;

use serde_json::Value;

use super::dispatch::Route;
use super::error::ApiError;
use super::state::World;

/// The routes this module serves.
pub(crate) const ROUTES: &[Route] = &[];

/// (project id, region or "" for global, operation name).
pub(crate) type OpKey = (String, String, String);

/// All compute state.
#[derive(Default)]
pub(crate) struct ComputeState {}

/// One step of operations.wait.
pub(crate) fn wait_step(
    _world: &mut World,
    _key: &OpKey,
    _now: Instant,
    _deadline: Instant,
) -> Result<(Value, Option<Instant>), ApiError> {
    Err(ApiError::not_found("Operation not found."))
}

/// Compute state for the admin dump.
pub(crate) fn dump(_world: &World, _now: Instant) -> Value {
    serde_json::json!({})
}

/// The name of a backend service given by name or numeric id, if it exists.
pub(crate) fn find_backend_service(
    _world: &World,
    _project: &str,
    _region: Option<&str>,
    _name_or_id: &str,
) -> Option<String> {
    None
}
