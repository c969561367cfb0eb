//! The resource and data source traits.
//!
//! A resource type implements [`Resource`]: a typed model (a serde struct of [`Attr`] fields),
//! a schema and short create/read/update/delete calls. [`typed`] adapts it to [`AnyResource`], the
//! plain-value interface the engine ([`super::server`]) drives: ApplyResourceChange becomes
//! `create` (prior state null), `delete` (planned state null) or `update`; PlanResourceChange runs
//! the generic planning in [`super::plan`] and then the resource's `plan`. Data sources are the
//! same with [`DataSource`] and [`AnyDataSource`].

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::diagnostics::{Diagnostic, Diagnostics};
use super::model::{self, Attr};
use super::path::AttributePath;
use super::schema::Schema;
use super::timeouts;
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
    /// Starts as the generic plan; the resource may refine it (fill defaults, mark unknowns).
    pub planned_state: Value,
    pub planned_private: Vec<u8>,
    /// Starts with the changed force-new attributes; the resource may add more.
    pub requires_replace: Vec<AttributePath>,
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

/// The resources of other types a `moved` block may hand to a resource type (Terraform 1.8 and
/// later call MoveResourceState when `from` and `to` differ in type or provider).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MoveSources {
    /// Source provider addresses, such as `registry.terraform.io/hashicorp/google`.
    pub providers: &'static [&'static str],
    /// Resource types of those providers.
    pub types: &'static [&'static str],
}

impl MoveSources {
    /// Accepts no moves.
    pub const NONE: MoveSources = MoveSources {
        providers: &[],
        types: &[],
    };

    /// Whether nothing is accepted.
    pub fn is_empty(&self) -> bool {
        self.providers.is_empty() || self.types.is_empty()
    }
}

/// The resource a `moved` block hands over, as Terraform stored it.
#[derive(Debug, Clone, Copy)]
pub struct MoveSource<'a> {
    /// Its provider's address, such as `registry.terraform.io/hashicorp/google`.
    pub provider: &'a str,
    /// Its resource type, such as `google_iap_web_cloud_run_service_iam_binding`.
    pub type_name: &'a str,
    /// The version of its provider's schema the state was written with.
    pub schema_version: i64,
    /// Its attributes, as in the state file.
    pub state: &'a serde_json::Value,
}

/// A managed resource type on plain values, as the engine calls it. `C` is the provider's
/// configured context. Resources implement the typed [`Resource`]; [`typed`] adapts it to this.
#[async_trait]
pub trait AnyResource<C: Send + Sync>: Send + Sync {
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

    /// Sees its own destroy planned (`prior_state` is the object to go); see
    /// [`Resource::plan_destroy`].
    async fn plan_destroy(&self, _ctx: &C, _prior_state: &Value) {}

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

    /// The resources of other types this one takes over from a `moved` block.
    fn move_sources(&self) -> MoveSources {
        MoveSources::NONE
    }

    /// Builds this type's state from a resource of a type [`Self::move_sources`] names; the engine
    /// has checked its provider and type. The next refresh and plan fill in the rest.
    fn move_state(&self, source: &MoveSource<'_>) -> Result<Value, Diagnostics> {
        Err(move_unsupported(self.type_name(), source.type_name).into())
    }

    /// Turns stored state JSON of `version` into a value of the current `schema` (this type's, as
    /// registered). The default accepts the current version and fills attributes the JSON lacks
    /// (added since it was written) with null.
    fn upgrade_state(
        &self,
        schema: &Schema,
        version: i64,
        json: &serde_json::Value,
    ) -> Result<Value, Diagnostics> {
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
    fn resources(&self) -> Vec<Arc<dyn AnyResource<Self::Context>>>;

    /// Every data source.
    fn data_sources(&self) -> Vec<Arc<dyn AnyDataSource<Self::Context>>> {
        Vec::new()
    }

    /// Called on Terraform's Stop: cancel in-flight work.
    fn stop(&self) {}
}

/// The error of a move into a type that takes over nothing.
pub(super) fn move_unsupported(type_name: &str, source_type: &str) -> Diagnostic {
    Diagnostic::error(
        "Move not supported",
        format!(
            "A moved block hands a {} to {type_name}, which cannot take over resources of other types. Remove the moved block; to manage the existing object with {type_name}, import it (`terraform import` or an import block) and remove the old resource from the state (`terraform state rm` or a removed block).",
            source_type
        ),
    )
}

// ---- the typed face ------------------------------------------------------------------------

/// A managed resource type: a model, a schema and short calls; the engine does the rest
/// (generic planning, defaults, replacement, timeouts, private state, unknowns after apply).
#[async_trait]
pub trait Resource<C: Send + Sync + 'static>: Send + Sync + 'static {
    /// Config, plan and state as a struct whose fields are the schema's attribute names.
    type Model: Serialize + DeserializeOwned + Clone + Default + Send + Sync;
    /// What this resource keeps in private state (`()` for nothing).
    type Private: Serialize + DeserializeOwned + Default + PartialEq + Send + Sync;

    /// The Terraform type name, e.g. `iaprun_service_iap`.
    const TYPE_NAME: &'static str;

    /// The schema, with a description on every attribute.
    fn schema() -> Schema;

    /// Checks that need no API; unknown values are skipped.
    fn validate(_config: &Self::Model, _capabilities: ClientCapabilities) -> Diagnostics {
        Diagnostics::new()
    }

    /// Refines the generic plan and runs read-only checks that need the APIs.
    async fn plan(&self, _ctx: &C, _plan: &mut Plan<Self::Model>) -> Diagnostics {
        Diagnostics::new()
    }

    /// Sees its own destroy planned: Terraform 1.3 and later plan a destroy (earlier releases go
    /// straight to `delete`). The place to tell other resources' checks what this run removes; a
    /// destroy is never refused, so there is nothing to return.
    async fn plan_destroy(&self, _ctx: &C, _prior: &Self::Model) {}

    async fn create(
        &self,
        ctx: &C,
        change: Change<'_, Self::Model, Self::Private>,
    ) -> Applied<Self::Model>;

    /// Refreshes the state; `Gone` when the object no longer exists.
    async fn read(&self, ctx: &C, state: Self::Model) -> Result<Read<Self::Model>, Diagnostic>;

    /// The default converges like a create that starts from the prior state.
    async fn update(
        &self,
        ctx: &C,
        change: Change<'_, Self::Model, Self::Private>,
    ) -> Applied<Self::Model> {
        self.create(ctx, change).await
    }

    /// Removes the object; on failure the engine keeps the prior state and the private state as
    /// the call left it.
    async fn delete(&self, ctx: &C, delete: Delete<'_, Self::Model, Self::Private>) -> Deleted;

    /// Builds state from an import id; `read` runs right after.
    async fn import(&self, _ctx: &C, _id: &str) -> Result<Self::Model, Diagnostic> {
        Err(Diagnostic::error(
            "Import not supported",
            format!("The resource type {} cannot be imported.", Self::TYPE_NAME),
        ))
    }

    /// The resources of other types this one takes over from a `moved` block (none by default).
    const MOVE_SOURCES: MoveSources = MoveSources::NONE;

    /// Builds state from a resource of a type [`Self::MOVE_SOURCES`] names (provider and type
    /// already checked): what it says of the object, without API calls; `read` runs next.
    fn move_from(source: &MoveSource<'_>) -> Result<Self::Model, Diagnostics> {
        Err(move_unsupported(Self::TYPE_NAME, source.type_name).into())
    }
}

/// A plan being made: the generic plan with defaults applied, for the resource to refine.
#[derive(Debug, Clone)]
pub struct Plan<M> {
    /// `None` on create.
    pub prior: Option<M>,
    pub config: M,
    pub planned: M,
    /// Starts with the changed force-new attributes and blocks; the resource may edit it.
    pub requires_replace: Vec<AttributePath>,
}

impl<M> Plan<M> {
    /// Replaces the resource when the effective value of `attribute` (`field`) changes, as a new
    /// default (from the provider, or the schema) may change it while the configuration does not.
    pub fn replace_on_change<T: PartialEq>(&mut self, attribute: &str, field: fn(&M) -> &Attr<T>) {
        let path = AttributePath::attr(attribute);
        let changed = match (
            self.prior.as_ref().and_then(|p| field(p).get()),
            field(&self.planned).get(),
        ) {
            (Some(before), Some(now)) => before != now,
            _ => false,
        };
        if changed && !self.requires_replace.contains(&path) {
            self.requires_replace.push(path);
        }
    }
}

/// Input of `create` and `update`.
#[derive(Debug)]
pub struct Change<'a, M, P> {
    /// `None` on create.
    pub prior: Option<M>,
    pub planned: M,
    /// Wholly known at apply; write-only attributes are only ever here.
    pub config: M,
    /// From the `timeouts` block, or the default.
    pub deadline: Instant,
    /// This instance's private state, stored with whatever the call leaves in it.
    pub private: &'a mut P,
    /// Warnings for the user, reported with whatever the call returns (an error goes in the result).
    pub warnings: &'a mut Diagnostics,
}

/// Input of `delete`.
#[derive(Debug)]
pub struct Delete<'a, M, P> {
    pub prior: M,
    pub deadline: Instant,
    pub private: &'a mut P,
    /// Warnings for the user, reported with whatever the call returns: the one way to tell what a
    /// destroy left behind, as the state goes with the object.
    pub warnings: &'a mut Diagnostics,
}

/// The result of `delete`.
pub type Deleted = Result<(), Diagnostic>;

/// What a failed `create` or `update` leaves: the object as it really exists (`None`: nothing).
#[derive(Debug, Clone)]
pub struct Failure<M> {
    pub state: Option<M>,
    pub diagnostic: Diagnostic,
}

impl<M> Failure<M> {
    pub fn new(state: Option<M>, diagnostic: Diagnostic) -> Self {
        Self { state, diagnostic }
    }
}

impl<M: Clone> Failure<M> {
    /// For `map_err`: a failure before any change, which leaves `prior` as it was.
    pub fn unchanged(prior: &Option<M>) -> impl FnOnce(Diagnostic) -> Self + '_ {
        move |d| Self::new(prior.clone(), d)
    }
}

/// The result of `create` and `update`: the new state, which must be wholly known.
pub type Applied<M> = Result<M, Failure<M>>;

/// The result of a refresh.
#[derive(Debug, Clone)]
pub enum Read<M> {
    Found(M),
    /// The object is gone and leaves the state, with a warning saying why.
    Gone(Option<Diagnostic>),
}

/// A data source: a model, a schema and one read.
#[async_trait]
pub trait DataSource<C: Send + Sync + 'static>: Send + Sync + 'static {
    /// Config and result as a struct whose fields are the schema's attribute names.
    type Model: Serialize + DeserializeOwned + Clone + Default + Send + Sync;

    /// The Terraform type name, e.g. `iaprun_audit`.
    const TYPE_NAME: &'static str;

    /// The schema, with a description on every attribute.
    fn schema() -> Schema;

    /// Checks that need no API; unknown values are skipped.
    fn validate(_config: &Self::Model) -> Diagnostics {
        Diagnostics::new()
    }

    /// Fills the computed attributes from the configuration (wholly known).
    async fn read(&self, ctx: &C, config: Self::Model) -> Result<Self::Model, Diagnostics>;
}

/// A data source on plain values, as the engine calls it; [`typed_data_source`] adapts a
/// [`DataSource`] to it.
#[async_trait]
pub trait AnyDataSource<C: Send + Sync>: Send + Sync {
    fn type_name(&self) -> &'static str;
    fn schema(&self) -> Schema;
    fn validate(&self, req: &ValidateRequest) -> Diagnostics;
    /// The state for `config`; null when diagnostics hold errors.
    async fn read(&self, ctx: &C, config: Value) -> ReadResponse;
}

// ---- the adapters ---------------------------------------------------------------------------

/// Registers a typed resource with the engine.
pub fn typed<C: Send + Sync + 'static, R: Resource<C>>(resource: R) -> Arc<dyn AnyResource<C>> {
    Arc::new(Typed {
        schema: R::schema(),
        inner: resource,
    })
}

/// Registers a typed data source with the engine.
pub fn typed_data_source<C: Send + Sync + 'static, D: DataSource<C>>(
    data_source: D,
) -> Arc<dyn AnyDataSource<C>> {
    Arc::new(Typed {
        schema: D::schema(),
        inner: data_source,
    })
}

/// A typed resource or data source with its schema, built once: every call encodes through it.
struct Typed<R> {
    inner: R,
    schema: Schema,
}

fn model_bug(type_name: &str, e: &str) -> Diagnostic {
    Diagnostic::error(
        "Provider model mismatch",
        format!("A {type_name} value does not fit its model: {e}. This is a bug in the provider; please report it."),
    )
}

fn decode<M: DeserializeOwned>(type_name: &str, value: &Value) -> Result<Option<M>, Diagnostic> {
    if value.is_null() {
        return Ok(None);
    }
    model::from_value(value)
        .map(Some)
        .map_err(|e| model_bug(type_name, &e))
}

fn decode_given<M: DeserializeOwned + Default>(
    type_name: &str,
    value: &Value,
) -> Result<M, Diagnostic> {
    decode(type_name, value).map(Option::unwrap_or_default)
}

fn encode<M: Serialize>(type_name: &str, schema: &Schema, model: Option<&M>) -> Value {
    match model {
        None => Value::Null,
        // The engine reports a value that does not fit the schema when it encodes it.
        Some(m) => model::to_value(m, &schema.block).unwrap_or_else(|e| {
            tracing::error!(%type_name, error = %e, "model does not fit the schema");
            Value::unknown()
        }),
    }
}

fn decode_private<P: DeserializeOwned + Default>(bytes: &[u8]) -> P {
    serde_json::from_slice(bytes).unwrap_or_default()
}

fn encode_private<P: Serialize + Default + PartialEq>(private: &P) -> Vec<u8> {
    if *private == P::default() {
        return Vec::new();
    }
    serde_json::to_vec(private).unwrap_or_default()
}

/// Create or update through the typed calls.
async fn apply<C: Send + Sync + 'static, R: Resource<C>>(
    typed: &Typed<R>,
    ctx: &C,
    req: ApplyRequest,
    operation: &str,
) -> ApplyResponse {
    {
        let name = R::TYPE_NAME;
        let decoded = (|| {
            Ok::<_, Diagnostic>((
                decode(name, &req.prior_state)?,
                decode_given(name, &req.planned_state)?,
                decode_given(name, &req.config)?,
            ))
        })();
        let mut private = decode_private(&req.planned_private);
        let mut diagnostics = Diagnostics::new();
        let change = match decoded {
            Ok((prior, planned, config)) => Change {
                prior,
                planned,
                config,
                deadline: timeouts::deadline(&req.config, operation),
                private: &mut private,
                warnings: &mut diagnostics,
            },
            Err(d) => {
                return ApplyResponse {
                    state: req.prior_state,
                    private: req.planned_private,
                    diagnostics: d.into(),
                }
            }
        };
        let result = if change.prior.is_none() {
            typed.inner.create(ctx, change).await
        } else {
            typed.inner.update(ctx, change).await
        };
        let state = match result {
            Ok(state) => Some(state),
            Err(failure) => {
                diagnostics.push(failure.diagnostic);
                failure.state
            }
        };
        ApplyResponse {
            state: encode(name, &typed.schema, state.as_ref()),
            private: encode_private(&private),
            diagnostics,
        }
    }
}

#[async_trait]
impl<C: Send + Sync + 'static, R: Resource<C>> AnyResource<C> for Typed<R> {
    fn type_name(&self) -> &'static str {
        R::TYPE_NAME
    }

    fn schema(&self) -> Schema {
        self.schema.clone()
    }

    fn validate(&self, req: &ValidateRequest) -> Diagnostics {
        match decode_given(R::TYPE_NAME, &req.config) {
            Ok(config) => R::validate(&config, req.client_capabilities),
            Err(d) => d.into(),
        }
    }

    async fn modify_plan(&self, ctx: &C, req: &mut PlanRequest) -> Diagnostics {
        let name = R::TYPE_NAME;
        let decoded = (|| {
            Ok::<_, Diagnostic>(Plan {
                prior: decode(name, &req.prior_state)?,
                config: decode_given(name, &req.config)?,
                planned: decode_given(name, &req.planned_state)?,
                requires_replace: std::mem::take(&mut req.requires_replace),
            })
        })();
        let mut plan = match decoded {
            Ok(plan) => plan,
            Err(d) => return d.into(),
        };
        let diagnostics = self.inner.plan(ctx, &mut plan).await;
        req.planned_state = encode(name, &self.schema, Some(&plan.planned));
        req.requires_replace = plan.requires_replace;
        diagnostics
    }

    async fn plan_destroy(&self, ctx: &C, prior_state: &Value) {
        match decode_given::<R::Model>(R::TYPE_NAME, prior_state) {
            Ok(prior) => self.inner.plan_destroy(ctx, &prior).await,
            // The delete decodes it again and reports the mismatch.
            Err(d) => {
                tracing::warn!(resource_type = R::TYPE_NAME, summary = %d.summary, "destroy plan not decoded")
            }
        }
    }

    async fn create(&self, ctx: &C, req: ApplyRequest) -> ApplyResponse {
        apply(self, ctx, req, "create").await
    }

    async fn read(&self, ctx: &C, req: ReadRequest) -> ReadResponse {
        let unchanged = |diagnostics: Diagnostics| ReadResponse {
            state: req.state.clone(),
            private: req.private.clone(),
            diagnostics,
        };
        let state = match decode_given::<R::Model>(R::TYPE_NAME, &req.state) {
            Ok(state) => state,
            Err(d) => return unchanged(d.into()),
        };
        match self.inner.read(ctx, state).await {
            Ok(Read::Found(state)) => ReadResponse {
                state: encode(R::TYPE_NAME, &self.schema, Some(&state)),
                private: req.private.clone(),
                diagnostics: Diagnostics::new(),
            },
            Ok(Read::Gone(warning)) => ReadResponse {
                state: Value::Null,
                private: Vec::new(),
                diagnostics: warning.into_iter().collect(),
            },
            Err(d) => unchanged(d.into()),
        }
    }

    async fn update(&self, ctx: &C, req: ApplyRequest) -> ApplyResponse {
        apply(self, ctx, req, "update").await
    }

    async fn delete(&self, ctx: &C, req: DeleteRequest) -> ApplyResponse {
        let prior = match decode_given::<R::Model>(R::TYPE_NAME, &req.prior_state) {
            Ok(prior) => prior,
            Err(d) => {
                return ApplyResponse {
                    state: req.prior_state,
                    private: req.prior_private,
                    diagnostics: d.into(),
                }
            }
        };
        let deadline = timeouts::deadline(&req.prior_state, "delete");
        let mut private = decode_private(&req.prior_private);
        let mut diagnostics = Diagnostics::new();
        let delete = Delete {
            prior,
            deadline,
            private: &mut private,
            warnings: &mut diagnostics,
        };
        match self.inner.delete(ctx, delete).await {
            Ok(()) => ApplyResponse {
                diagnostics,
                ..ApplyResponse::default()
            },
            Err(d) => {
                diagnostics.push(d);
                ApplyResponse {
                    state: req.prior_state,
                    private: encode_private(&private),
                    diagnostics,
                }
            }
        }
    }

    fn move_sources(&self) -> MoveSources {
        R::MOVE_SOURCES
    }

    fn move_state(&self, source: &MoveSource<'_>) -> Result<Value, Diagnostics> {
        R::move_from(source).map(|model| encode(R::TYPE_NAME, &self.schema, Some(&model)))
    }

    async fn import(&self, ctx: &C, id: &str) -> ImportResponse {
        match self.inner.import(ctx, id).await {
            Ok(state) => ImportResponse {
                state: encode(R::TYPE_NAME, &self.schema, Some(&state)),
                ..ImportResponse::default()
            },
            Err(d) => ImportResponse {
                diagnostics: d.into(),
                ..ImportResponse::default()
            },
        }
    }
}

#[async_trait]
impl<C: Send + Sync + 'static, D: DataSource<C>> AnyDataSource<C> for Typed<D> {
    fn type_name(&self) -> &'static str {
        D::TYPE_NAME
    }

    fn schema(&self) -> Schema {
        self.schema.clone()
    }

    fn validate(&self, req: &ValidateRequest) -> Diagnostics {
        match decode_given(D::TYPE_NAME, &req.config) {
            Ok(config) => D::validate(&config),
            Err(d) => d.into(),
        }
    }

    async fn read(&self, ctx: &C, config: Value) -> ReadResponse {
        let config = match decode_given(D::TYPE_NAME, &config) {
            Ok(config) => config,
            Err(d) => {
                return ReadResponse {
                    diagnostics: d.into(),
                    ..ReadResponse::default()
                }
            }
        };
        match self.inner.read(ctx, config).await {
            Ok(state) => ReadResponse {
                state: encode(D::TYPE_NAME, &self.schema, Some(&state)),
                ..ReadResponse::default()
            },
            Err(diagnostics) => ReadResponse {
                diagnostics,
                ..ReadResponse::default()
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::{Attribute, Block, Severity};

    /// A resource whose calls leave a warning, and whose `name` "fail" makes them fail too.
    struct Warner;

    #[derive(Debug, Clone, Default, Serialize, serde::Deserialize)]
    #[serde(default)]
    struct Model {
        name: Attr<String>,
    }

    fn fails(name: &Attr<String>) -> bool {
        name.as_deref() == Some("fail")
    }

    #[async_trait]
    impl Resource<()> for Warner {
        type Model = Model;
        type Private = ();
        const TYPE_NAME: &'static str = "fake_warner";

        fn schema() -> Schema {
            Schema::new(
                0,
                Block::new("W.").attribute(Attribute::string("name").required()),
            )
        }

        async fn create(&self, _: &(), change: Change<'_, Model, ()>) -> Applied<Model> {
            change
                .warnings
                .warning("Created with a caveat", "Why, and what to do.");
            if fails(&change.planned.name) {
                return Err(Failure::new(None, Diagnostic::error("Create failed", "")));
            }
            Ok(change.planned)
        }

        async fn read(&self, _: &(), state: Model) -> Result<Read<Model>, Diagnostic> {
            Ok(Read::Found(state))
        }

        async fn delete(&self, _: &(), delete: Delete<'_, Model, ()>) -> Deleted {
            delete
                .warnings
                .warning("Left in place", "What, and how to remove it.");
            if fails(&delete.prior.name) {
                return Err(Diagnostic::error("Delete failed", ""));
            }
            Ok(())
        }
    }

    fn state(name: &str) -> Value {
        Value::object([("name", Value::from(name))])
    }

    fn summaries(diagnostics: &Diagnostics) -> Vec<(Severity, &str)> {
        diagnostics
            .iter()
            .map(|d| (d.severity, d.summary.as_str()))
            .collect()
    }

    #[tokio::test]
    async fn warnings_of_an_apply_or_a_destroy_reach_the_response_with_any_error_after_them() {
        let warner = typed(Warner);
        for name in ["ok", "fail"] {
            let apply = ApplyRequest {
                prior_state: Value::Null,
                planned_state: state(name),
                config: state(name),
                planned_private: Vec::new(),
            };
            // The warning, then the error of a failed call.
            let expected = |warning, error| {
                let mut expected = vec![(Severity::Warning, warning)];
                if name == "fail" {
                    expected.push((Severity::Error, error));
                }
                expected
            };
            let created = warner.create(&(), apply).await;
            let created_said = summaries(&created.diagnostics);
            assert_eq!(
                created_said,
                expected("Created with a caveat", "Create failed")
            );
            let delete = DeleteRequest {
                prior_state: state(name),
                prior_private: Vec::new(),
            };
            let deleted = warner.delete(&(), delete).await;
            let deleted_said = summaries(&deleted.diagnostics);
            assert_eq!(deleted_said, expected("Left in place", "Delete failed"));
            // The object is gone on success only.
            assert_eq!(deleted.state.is_null(), name == "ok", "{name}");
        }
    }
}
