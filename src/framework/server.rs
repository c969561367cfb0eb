//! The engine: Terraform's resource semantics over any [`Provider`], on framework types only.
//! The protocol layer decodes a request, calls one method here and encodes the answer.
//!
//! It owns what every resource shares: the registry, the configured context, validation of
//! write-only attributes per client capability and of `timeouts`, generic planning with defaults
//! and replacement, dispatch of apply to create/update/delete, the rule that a successful apply and
//! a refresh are wholly known, shaping of returned objects, and state upgrade.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use super::diagnostics::{Diagnostic, Diagnostics};
use super::path::AttributePath;
use super::plan as generic_plan;
use super::resource::{
    move_unsupported, AnyDataSource, AnyResource, ApplyRequest, ApplyResponse, ClientCapabilities,
    ConfigureRequest, DeleteRequest, ImportResponse, MoveSource, PlanRequest, Provider,
    ReadRequest, ReadResponse, ValidateRequest,
};
use super::schema::{Block, Nesting, Schema};
use super::timeouts;
use super::value::{Type, Value};

/// One registered type with its schema computed once.
pub struct Registered<T: ?Sized> {
    pub handler: Arc<T>,
    pub schema: Schema,
    pub value_type: Type,
}

fn register<T: ?Sized>(handler: Arc<T>, schema: Schema) -> Registered<T> {
    let value_type = schema.value_type();
    Registered {
        handler,
        schema,
        value_type,
    }
}

/// The outcome of PlanResourceChange.
#[derive(Debug, Clone, Default)]
pub struct Planned {
    pub planned_state: Value,
    pub planned_private: Vec<u8>,
    pub requires_replace: Vec<AttributePath>,
    pub diagnostics: Diagnostics,
}

/// Serves a framework provider's resources and data sources.
pub struct Server<P: Provider> {
    provider: Arc<P>,
    provider_schema: Schema,
    provider_type: Type,
    resources: BTreeMap<String, Registered<dyn AnyResource<P::Context>>>,
    data_sources: BTreeMap<String, Registered<dyn AnyDataSource<P::Context>>>,
    /// Set by Configure; resources run with it.
    context: RwLock<Option<Arc<P::Context>>>,
}

impl<P: Provider> Server<P> {
    /// Wraps `provider`, computing every schema once.
    pub fn new(provider: Arc<P>) -> Self {
        let provider_schema = provider.schema();
        let resources = provider
            .resources()
            .into_iter()
            .map(|r| (r.type_name().to_string(), register(r.clone(), r.schema())))
            .collect();
        let data_sources = provider
            .data_sources()
            .into_iter()
            .map(|d| (d.type_name().to_string(), register(d.clone(), d.schema())))
            .collect();
        Self {
            provider_type: provider_schema.value_type(),
            provider_schema,
            provider,
            resources,
            data_sources,
            context: RwLock::new(None),
        }
    }

    pub fn provider(&self) -> &P {
        &self.provider
    }

    pub fn provider_schema(&self) -> &Schema {
        &self.provider_schema
    }

    pub fn provider_type(&self) -> &Type {
        &self.provider_type
    }

    /// Every resource type by name.
    pub fn resources(&self) -> &BTreeMap<String, Registered<dyn AnyResource<P::Context>>> {
        &self.resources
    }

    /// Every data source by name.
    pub fn data_sources(&self) -> &BTreeMap<String, Registered<dyn AnyDataSource<P::Context>>> {
        &self.data_sources
    }

    /// A resource type, or an error naming the ones there are.
    pub fn resource(
        &self,
        type_name: &str,
    ) -> Result<&Registered<dyn AnyResource<P::Context>>, Diagnostic> {
        self.resources.get(type_name).ok_or_else(|| {
            let known: Vec<&str> = self.resources.keys().map(String::as_str).collect();
            let offered = if known.is_empty() {
                "This provider has no resource types yet.".to_string()
            } else {
                format!("It offers: {}.", known.join(", "))
            };
            Diagnostic::error(
                "Unknown resource type",
                format!(
                    "This provider has no resource type named {type_name:?}. {offered} Check the type name in the configuration, or upgrade the provider if the type is newer than this version."
                ),
            )
        })
    }

    /// A data source, or an error naming the ones there are.
    pub fn data_source(
        &self,
        type_name: &str,
    ) -> Result<&Registered<dyn AnyDataSource<P::Context>>, Diagnostic> {
        self.data_sources.get(type_name).ok_or_else(|| {
            let known: Vec<&str> = self.data_sources.keys().map(String::as_str).collect();
            let offered = if known.is_empty() {
                "This provider has no data sources, so there is no data source".to_string()
            } else {
                format!("This provider offers {}; there is no data source", known.join(", "))
            };
            Diagnostic::error(
                "Unknown data source",
                format!(
                    "{offered} {type_name:?}. Remove the data block, or check that it names the right provider."
                ),
            )
        })
    }

    /// The context Configure made (None before Configure), for in-process callers and tests.
    pub fn configured(&self) -> Option<Arc<P::Context>> {
        let guard = self.context.read().unwrap_or_else(|e| e.into_inner());
        guard.clone()
    }

    fn context(&self, rpc: &str) -> Result<Arc<P::Context>, Diagnostic> {
        self.configured().ok_or_else(|| {
            Diagnostic::error(
                "Provider not configured",
                format!(
                    "Terraform called {rpc} before configuring the provider. This is a bug in Terraform or in the provider; please report it with the Terraform version."
                ),
            )
        })
    }

    pub fn validate_provider(&self, config: &Value) -> Diagnostics {
        self.provider.validate(config)
    }

    pub async fn configure(&self, req: ConfigureRequest) -> Diagnostics {
        match self.provider.configure(req).await {
            Ok(context) => {
                let mut slot = self.context.write().unwrap_or_else(|e| e.into_inner());
                *slot = Some(Arc::new(context));
                Diagnostics::new()
            }
            Err(errors) => errors,
        }
    }

    /// ValidateResourceTypeConfig: write-only attributes, the resource's checks, `timeouts`.
    pub fn validate_resource(
        &self,
        rt: &Registered<dyn AnyResource<P::Context>>,
        config: Value,
        client_capabilities: ClientCapabilities,
    ) -> Diagnostics {
        let mut diagnostics = write_only_check(&rt.schema.block, &config, client_capabilities);
        let timeouts = timeouts::validate(&config);
        diagnostics.extend(rt.handler.validate(&ValidateRequest {
            config,
            client_capabilities,
        }));
        diagnostics.extend(timeouts);
        diagnostics
    }

    /// ValidateDataResourceConfig.
    pub fn validate_data_source(
        &self,
        ds: &Registered<dyn AnyDataSource<P::Context>>,
        config: Value,
        client_capabilities: ClientCapabilities,
    ) -> Diagnostics {
        let mut diagnostics = write_only_check(&ds.schema.block, &config, client_capabilities);
        diagnostics.extend(ds.handler.validate(&ValidateRequest {
            config,
            client_capabilities,
        }));
        diagnostics
    }

    /// UpgradeResourceState: stored JSON of `version` to a value of the current schema.
    pub fn upgrade_state(
        &self,
        rt: &Registered<dyn AnyResource<P::Context>>,
        version: i64,
        raw_json: &[u8],
    ) -> Result<Value, Diagnostics> {
        let json = stored_json(rt.handler.type_name(), raw_json)?;
        let value = rt.handler.upgrade_state(&rt.schema, version, &json)?;
        Ok(conform(&rt.schema.block, value))
    }

    /// MoveResourceState: the state of `source_type` of `source_provider` (JSON, written with
    /// schema `version`) as a value of `rt`'s schema, when `rt` declares it takes that type over.
    pub fn move_state(
        &self,
        rt: &Registered<dyn AnyResource<P::Context>>,
        source_provider: &str,
        source_type: &str,
        version: i64,
        raw_json: &[u8],
    ) -> Result<Value, Diagnostics> {
        let target = rt.handler.type_name();
        let accepted = rt.handler.move_sources();
        if accepted.is_empty() {
            return Err(move_unsupported(target, source_type).into());
        }
        let provider = full_provider_address(source_provider);
        if !accepted
            .providers
            .iter()
            .any(|p| full_provider_address(p) == provider)
        {
            return Err(Diagnostic::error(
                "Move from this provider not supported",
                format!(
                    "{target} takes over resources of {} only; the moved block hands it a {source_type} of {source_provider}. Remove the moved block, or import the object instead.",
                    accepted.providers.join(" or ")
                ),
            )
            .into());
        }
        if !accepted.types.contains(&source_type) {
            return Err(Diagnostic::error(
                "Move from this resource type not supported",
                format!(
                    "{target} takes over {}; the moved block hands it a {source_type}. Move that resource to the iaprun type that manages the same thing, or import the object instead.",
                    accepted.types.join(", ")
                ),
            )
            .into());
        }
        let state = stored_json(source_type, raw_json)?;
        let value = rt.handler.move_state(&MoveSource {
            provider: source_provider,
            type_name: source_type,
            schema_version: version,
            state: &state,
        })?;
        Ok(with_defaults(
            &rt.schema.block,
            conform(&rt.schema.block, value),
        ))
    }

    /// ReadResource: on any failure the state and private state Terraform has are kept.
    pub async fn read_resource(
        &self,
        rt: &Registered<dyn AnyResource<P::Context>>,
        req: ReadRequest,
    ) -> ReadResponse {
        let (state, private) = (req.state.clone(), req.private.clone());
        let ctx = match self.context("ReadResource") {
            Ok(ctx) => ctx,
            Err(d) => {
                return ReadResponse {
                    state,
                    private,
                    diagnostics: d.into(),
                }
            }
        };
        let read = rt.handler.read(&ctx, req).await;
        let mut diagnostics = read.diagnostics;
        if !read.state.is_wholly_known() {
            diagnostics.push(Diagnostic::error(
                "Provider returned unknown values after refresh",
                format!(
                    "Reading this {} produced values that are not known; a refreshed object must be wholly known. The previous state is kept. This is a bug in the provider; please report it.",
                    rt.handler.type_name()
                ),
            ));
            return ReadResponse {
                state,
                private,
                diagnostics,
            };
        }
        ReadResponse {
            state: with_defaults(&rt.schema.block, conform(&rt.schema.block, read.state)),
            // A resource that does not use private state leaves it empty: keep Terraform's.
            private: if read.private.is_empty() {
                private
            } else {
                read.private
            },
            diagnostics,
        }
    }

    /// PlanResourceChange: generic plan, defaults, replacement, then the resource's own plan.
    pub async fn plan_resource(
        &self,
        rt: &Registered<dyn AnyResource<P::Context>>,
        prior: Value,
        proposed: Value,
        config: Value,
        prior_private: Vec<u8>,
    ) -> Planned {
        let mut planned = Planned {
            planned_private: prior_private.clone(),
            ..Planned::default()
        };
        let ctx = match self.context("PlanResourceChange") {
            Ok(ctx) => ctx,
            Err(d) if !proposed.is_null() => {
                planned.diagnostics.push(d);
                return planned;
            }
            // A destroy is never refused.
            Err(_) => return planned,
        };
        if proposed.is_null() {
            // A destroy (plan_destroy): planned state null, private state kept for the apply; the
            // resource may note what this run removes.
            if !prior.is_null() {
                rt.handler.plan_destroy(&ctx, &prior).await;
            }
            return planned;
        }
        let generic = generic_plan::plan(&rt.schema, &prior, &proposed, &config);
        let mut planned_state = generic.planned_state;
        generic_plan::apply_defaults(&rt.schema.block, &config, &mut planned_state);
        let mut req = PlanRequest {
            prior_state: prior,
            config,
            planned_state,
            planned_private: prior_private,
            requires_replace: generic.requires_replace,
        };
        planned.diagnostics = rt.handler.modify_plan(&ctx, &mut req).await;
        planned.planned_state = conform(&rt.schema.block, req.planned_state);
        planned.planned_private = req.planned_private;
        planned.requires_replace = req.requires_replace;
        planned
    }

    /// ApplyResourceChange: create, update or delete. A successful apply must leave nothing
    /// unknown (a provider bug, reported); a failed one stores what it did not learn as null.
    pub async fn apply_resource(
        &self,
        rt: &Registered<dyn AnyResource<P::Context>>,
        req: ApplyRequest,
    ) -> ApplyResponse {
        let ctx = match self.context("ApplyResourceChange") {
            Ok(ctx) => ctx,
            Err(d) => {
                // Nothing was changed: keep what Terraform had.
                return ApplyResponse {
                    state: req.prior_state,
                    private: req.planned_private,
                    diagnostics: d.into(),
                };
            }
        };
        let type_name = rt.handler.type_name();
        let applied = match (req.prior_state.is_null(), req.planned_state.is_null()) {
            (true, true) => ApplyResponse::default(),
            (false, true) => {
                tracing::debug!(resource_type = %type_name, "delete");
                let delete = DeleteRequest {
                    prior_state: req.prior_state,
                    prior_private: req.planned_private,
                };
                rt.handler.delete(&ctx, delete).await
            }
            (true, false) => {
                tracing::debug!(resource_type = %type_name, "create");
                rt.handler.create(&ctx, req).await
            }
            (false, false) => {
                tracing::debug!(resource_type = %type_name, "update");
                rt.handler.update(&ctx, req).await
            }
        };
        let mut diagnostics = applied.diagnostics;
        let state = if applied.state.is_wholly_known() {
            applied.state
        } else {
            if !diagnostics.has_errors() {
                diagnostics.push(Diagnostic::error(
                    "Provider left values unknown after apply",
                    format!(
                        "Applying this {type_name} left some values unknown; they are stored as null. This is a bug in the provider; please report it."
                    ),
                ));
            }
            without_unknowns(applied.state)
        };
        ApplyResponse {
            state: conform(&rt.schema.block, state),
            private: applied.private,
            diagnostics,
        }
    }

    /// ImportResourceState: exactly one object, or errors.
    pub async fn import_resource(
        &self,
        rt: &Registered<dyn AnyResource<P::Context>>,
        id: &str,
    ) -> ImportResponse {
        let ctx = match self.context("ImportResourceState") {
            Ok(ctx) => ctx,
            Err(d) => {
                return ImportResponse {
                    diagnostics: d.into(),
                    ..ImportResponse::default()
                }
            }
        };
        let mut imported = rt.handler.import(&ctx, id).await;
        if imported.diagnostics.has_errors() {
            imported.state = Value::Null;
        } else if imported.state.is_null() {
            imported.diagnostics.push(Diagnostic::error(
                "Import produced no object",
                format!(
                    "Importing {id:?} as {} produced nothing. This is a bug in the provider; please report it.",
                    rt.handler.type_name()
                ),
            ));
        } else {
            imported.state =
                with_defaults(&rt.schema.block, conform(&rt.schema.block, imported.state));
        }
        imported
    }

    /// ReadDataSource: the data source's state for a wholly known configuration.
    pub async fn read_data_source(
        &self,
        ds: &Registered<dyn AnyDataSource<P::Context>>,
        config: Value,
    ) -> ReadResponse {
        let ctx = match self.context("ReadDataSource") {
            Ok(ctx) => ctx,
            Err(d) => {
                return ReadResponse {
                    diagnostics: d.into(),
                    ..ReadResponse::default()
                }
            }
        };
        let mut read = ds.handler.read(&ctx, config).await;
        if read.diagnostics.has_errors() {
            read.state = Value::Null;
        } else if !read.state.is_wholly_known() {
            read.diagnostics.push(Diagnostic::error(
                "Provider returned unknown values",
                format!(
                    "Reading data source {} produced values that are not known. This is a bug in the provider; please report it.",
                    ds.handler.type_name()
                ),
            ));
            read.state = Value::Null;
        } else {
            read.state = conform(&ds.schema.block, read.state);
        }
        read
    }

    /// Stop: cancel in-flight work.
    pub fn stop(&self) {
        self.provider.stop();
    }
}

/// A resource's stored state as JSON (`type_name`: what the state is of, for the errors).
fn stored_json(type_name: &str, raw_json: &[u8]) -> Result<serde_json::Value, Diagnostic> {
    if raw_json.is_empty() {
        return Err(Diagnostic::error(
            "Unsupported state format",
            format!(
                "The stored state of this {type_name} has no JSON form (it predates Terraform 0.12). Remove it from state with `terraform state rm` and import it again."
            ),
        ));
    }
    serde_json::from_slice(raw_json).map_err(|e| {
        Diagnostic::error(
            "Unreadable state",
            format!(
                "The stored state of this {type_name} is not valid JSON: {e}. Restore the state file from a backup."
            ),
        )
    })
}

/// A provider source address with its registry host (`hashicorp/google` is
/// `registry.terraform.io/hashicorp/google`), lower case: namespaces and types ignore case.
fn full_provider_address(address: &str) -> String {
    let address = address.to_ascii_lowercase();
    if address.split('/').count() == 2 {
        format!("registry.terraform.io/{address}")
    } else {
        address
    }
}

/// Fills attributes a state leaves null with their defaults (imported or older state).
fn with_defaults(block: &Block, mut state: Value) -> Value {
    let snapshot = state.clone();
    generic_plan::apply_defaults(block, &snapshot, &mut state);
    state
}

/// Shapes an object the provider returns as Terraform requires: repeated blocks are empty
/// collections rather than null, and write-only attributes are null.
pub fn conform(block: &Block, value: Value) -> Value {
    let Value::Object(mut fields) = value else {
        return value;
    };
    for attribute in block.attributes.iter().filter(|a| a.write_only) {
        fields.insert(attribute.name.clone(), Value::Null);
    }
    for nested in &block.blocks {
        let current = fields.remove(&nested.type_name).unwrap_or(Value::Null);
        let inner = |v: Value| conform(&nested.block, v);
        let shaped = match (nested.nesting, current) {
            (Nesting::List, Value::Null) => Value::List(vec![]),
            (Nesting::Set, Value::Null) => Value::Set(vec![]),
            (Nesting::Map, Value::Null) => Value::Map(BTreeMap::new()),
            (Nesting::Group, Value::Null) => nested.block.empty_value(),
            (Nesting::List, Value::List(items)) => {
                Value::List(items.into_iter().map(inner).collect())
            }
            (Nesting::Set, Value::Set(items)) => Value::set(items.into_iter().map(inner)),
            (Nesting::Map, Value::Map(items)) => {
                Value::Map(items.into_iter().map(|(k, v)| (k, inner(v))).collect())
            }
            (_, other) => inner(other),
        };
        fields.insert(nested.type_name.clone(), shaped);
    }
    Value::Object(fields)
}

/// Replaces every unknown by null, so a result can still be stored.
fn without_unknowns(value: Value) -> Value {
    match value {
        Value::Unknown(_) => Value::Null,
        Value::List(items) => Value::List(items.into_iter().map(without_unknowns).collect()),
        Value::Set(items) => Value::set(items.into_iter().map(without_unknowns)),
        Value::Tuple(items) => Value::Tuple(items.into_iter().map(without_unknowns).collect()),
        Value::Map(m) => Value::Map(
            m.into_iter()
                .map(|(k, v)| (k, without_unknowns(v)))
                .collect(),
        ),
        Value::Object(m) => Value::Object(
            m.into_iter()
                .map(|(k, v)| (k, without_unknowns(v)))
                .collect(),
        ),
        other => other,
    }
}

/// Errors for write-only attributes set in a configuration when the client cannot handle them.
fn write_only_check(block: &Block, config: &Value, caps: ClientCapabilities) -> Diagnostics {
    let mut out = Diagnostics::new();
    if !caps.write_only_attributes_allowed {
        write_only_violations(block, config, &AttributePath::root(), &mut out);
    }
    out
}

fn write_only_violations(
    block: &Block,
    config: &Value,
    path: &AttributePath,
    out: &mut Diagnostics,
) {
    if !matches!(config, Value::Object(_)) {
        return;
    }
    for attribute in block.attributes.iter().filter(|a| a.write_only) {
        if !config.get(&attribute.name).is_null() {
            out.push(
                Diagnostic::error(
                    "Write-only attribute not supported by this Terraform",
                    format!(
                        "{} is write-only: its value is never stored in plan or state, which needs Terraform 1.11 or later. Upgrade Terraform, or leave this attribute unset and use its stored counterpart instead.",
                        attribute.name
                    ),
                )
                .at(path.clone().then_attr(&attribute.name)),
            );
        }
    }
    for nested in &block.blocks {
        let here = path.clone().then_attr(&nested.type_name);
        match config.get(&nested.type_name) {
            Value::List(items) => {
                for (i, item) in items.iter().enumerate() {
                    let index = i64::try_from(i).unwrap_or(i64::MAX);
                    write_only_violations(
                        &nested.block,
                        item,
                        &here.clone().then_index(index),
                        out,
                    );
                }
            }
            Value::Set(items) => {
                // Set elements have no address: point at the block.
                for item in items {
                    write_only_violations(&nested.block, item, &here, out);
                }
            }
            Value::Map(items) => {
                for (key, item) in items {
                    write_only_violations(&nested.block, item, &here.clone().then_key(key), out);
                }
            }
            single => write_only_violations(&nested.block, single, &here, out),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::schema::timeouts_block;
    use crate::framework::testing::{Fake, DESTROYS_PLANNED};
    use crate::framework::{Attribute, NestedBlock};

    #[tokio::test]
    async fn a_destroy_plan_reaches_the_resource_and_plans_null() {
        let server = Server::new(Arc::new(Fake::default()));
        let configure = ConfigureRequest {
            terraform_version: "1.11.4".into(),
            config: Value::object([("project", Value::Null)]),
            client_capabilities: ClientCapabilities::default(),
        };
        assert!(server.configure(configure).await.is_empty());
        let rt = server.resource("fake_thing").expect("registered");
        let prior = Value::object([
            ("id", Value::from("id-going")),
            ("name", Value::from("going")),
        ]);
        let planned = server
            .plan_resource(rt, prior, Value::Null, Value::Null, b"kept".to_vec())
            .await;
        assert!(planned.planned_state.is_null());
        assert_eq!(planned.planned_private, b"kept");
        assert!(planned.diagnostics.is_empty());
        let seen = DESTROYS_PLANNED.lock().expect("lock").clone();
        assert!(seen.contains(&"going".to_string()), "{seen:?}");
    }

    #[test]
    fn conform_fills_repeated_blocks_and_nulls_write_only_values() {
        let block = Block::new("A thing.")
            .attribute(Attribute::string("name").required())
            .attribute(Attribute::string("secret_wo").optional().write_only())
            .block(NestedBlock::new(
                "rule",
                Nesting::List,
                Block::new("A rule.").attribute(Attribute::number("port").optional()),
            ))
            .block(timeouts_block(true, false, true));
        let raw = Value::object([
            ("name", Value::from("n")),
            ("secret_wo", Value::from("leak")),
            ("rule", Value::Null),
            ("timeouts", Value::Null),
        ]);
        let shaped = conform(&block, raw);
        assert_eq!(shaped.get("rule"), &Value::List(vec![]));
        assert!(shaped.get("secret_wo").is_null());
        assert!(
            shaped.get("timeouts").is_null(),
            "single blocks may be null"
        );
    }
}
