//! The provider and resource traits: what a resource implements, and what the protocol layer calls.
//!
//! The protocol layer turns each tfplugin5 RPC into one of these calls. ApplyResourceChange becomes
//! `create` (prior state null), `delete` (planned state null) or `update`; PlanResourceChange runs the
//! generic planning in [`super::plan`] and then the resource's `modify_plan`.

use std::sync::Arc;

use async_trait::async_trait;

use super::diagnostics::Diagnostics;
use super::path::AttributePath;
use super::schema::Schema;
use super::value::Value;

/// What the Terraform client said it can handle (protocol 5.6+; absent fields mean "no").
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClientCapabilities {
    pub deferral_allowed: bool,
    /// Terraform 1.11+: write-only attributes may be set.
    pub write_only_attributes_allowed: bool,
}

/// Input of `Provider::configure`.
#[derive(Debug, Clone)]
pub struct ConfigureRequest {
    pub terraform_version: String,
    /// The provider block; may hold unknown values when they depend on other resources.
    pub config: Value,
    pub client_capabilities: ClientCapabilities,
}

/// Input of `Resource::validate`: the configuration, possibly with unknown values.
#[derive(Debug, Clone)]
pub struct ValidateRequest {
    pub config: Value,
    pub client_capabilities: ClientCapabilities,
}

/// Input and output of `Resource::modify_plan`, after the generic planning has run.
#[derive(Debug, Clone)]
pub struct PlanRequest {
    /// Null on create.
    pub prior_state: Value,
    pub config: Value,
    pub prior_private: Vec<u8>,
    /// Starts as the generic plan; the resource may refine it (fill defaults, mark unknowns).
    pub planned_state: Value,
    pub planned_private: Vec<u8>,
    /// Starts with the changed force-new attributes; the resource may add more.
    pub requires_replace: Vec<AttributePath>,
}

impl PlanRequest {
    pub fn is_create(&self) -> bool {
        self.prior_state.is_null()
    }
}

/// Input of `create` and `update`.
#[derive(Debug, Clone)]
pub struct ApplyRequest {
    /// Null on create.
    pub prior_state: Value,
    pub planned_state: Value,
    /// Wholly known at apply; write-only attributes are only ever here.
    pub config: Value,
    pub planned_private: Vec<u8>,
}

/// Output of `create`, `update` and `delete`.
///
/// On failure `state` must still describe what really exists (null when nothing does), so that
/// Terraform records it and the next apply converges.
#[derive(Debug, Clone, Default)]
pub struct ApplyResponse {
    pub state: Value,
    pub private: Vec<u8>,
    pub diagnostics: Diagnostics,
}

/// Input of `delete`.
#[derive(Debug, Clone)]
pub struct DeleteRequest {
    pub prior_state: Value,
    pub prior_private: Vec<u8>,
}

/// Input of `read` (refresh).
#[derive(Debug, Clone)]
pub struct ReadRequest {
    pub state: Value,
    pub private: Vec<u8>,
}

/// Output of `read`: a null state means the object is gone and leaves Terraform's state.
#[derive(Debug, Clone, Default)]
pub struct ReadResponse {
    pub state: Value,
    pub private: Vec<u8>,
    pub diagnostics: Diagnostics,
}

/// Output of `import`: enough state for `read` to fill in the rest.
#[derive(Debug, Clone, Default)]
pub struct ImportResponse {
    pub state: Value,
    pub private: Vec<u8>,
    pub diagnostics: Diagnostics,
}

/// A managed resource type. `C` is the provider's configured context (API clients, defaults).
#[async_trait]
pub trait Resource<C: Send + Sync>: Send + Sync {
    /// The Terraform type name, e.g. `iaprun_service_iap`.
    fn type_name(&self) -> &'static str;

    /// The schema, with a description on every attribute.
    fn schema(&self) -> Schema;

    /// Checks that need no API; the config may hold unknown values, which are skipped.
    fn validate(&self, _req: &ValidateRequest) -> Diagnostics {
        Diagnostics::new()
    }

    /// Refines the generic plan and runs read-only checks that need the APIs.
    async fn modify_plan(&self, _ctx: &C, _req: &mut PlanRequest) -> Diagnostics {
        Diagnostics::new()
    }

    async fn create(&self, ctx: &C, req: ApplyRequest) -> ApplyResponse;

    async fn read(&self, ctx: &C, req: ReadRequest) -> ReadResponse;

    async fn update(&self, ctx: &C, req: ApplyRequest) -> ApplyResponse;

    /// Removes the object; the returned state is null on success, the prior state on failure.
    async fn delete(&self, ctx: &C, req: DeleteRequest) -> ApplyResponse;

    /// Builds state from an import id; `read` runs right after.
    async fn import(&self, _ctx: &C, _id: &str) -> ImportResponse {
        let mut diagnostics = Diagnostics::new();
        diagnostics.error(
            "Import not supported",
            format!("The resource type {} cannot be imported.", self.type_name()),
        );
        ImportResponse {
            diagnostics,
            ..ImportResponse::default()
        }
    }

    /// Turns stored state JSON of `version` into a value of the current schema. The default accepts
    /// the current version and fills attributes the JSON lacks (added since it was written) with null.
    fn upgrade_state(&self, version: i64, json: &serde_json::Value) -> Result<Value, Diagnostics> {
        let schema = self.schema();
        if version > schema.version {
            return Err(Diagnostics::from(super::Diagnostic::error(
                "State from a newer provider",
                format!(
                    "The state of this {} was written by schema version {version}, newer than this provider's {}. Upgrade the provider.",
                    self.type_name(),
                    schema.version
                ),
            )));
        }
        super::json::decode_block(&schema.block, json).map_err(|e| {
            Diagnostics::from(super::Diagnostic::error(
                "Unreadable state",
                format!(
                    "The stored state of this {} could not be read: {e}",
                    self.type_name()
                ),
            ))
        })
    }
}

/// The provider: its own settings schema, configuration and the resource types it serves.
#[async_trait]
pub trait Provider: Send + Sync + 'static {
    type Context: Send + Sync + 'static;

    /// The `provider "..." {}` block schema.
    fn schema(&self) -> Schema;

    /// Static checks of the provider block.
    fn validate(&self, _config: &Value) -> Diagnostics {
        Diagnostics::new()
    }

    /// Builds the context resources run with (API clients, defaults).
    async fn configure(&self, req: ConfigureRequest) -> Result<Self::Context, Diagnostics>;

    /// Every resource type.
    fn resources(&self) -> Vec<Arc<dyn Resource<Self::Context>>>;

    /// Called on Terraform's Stop: cancel in-flight work.
    fn stop(&self) {}
}
