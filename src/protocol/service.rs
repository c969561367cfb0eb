//! The tfplugin5 `Provider` service over any framework [`Provider`].
//!
//! Every RPC follows one skeleton: decode the request's values against the schema, call the
//! framework, encode the reply. Problems a user or a provider can cause are returned as
//! diagnostics; a gRPC error status is never used for them (Terraform would only say "Plugin
//! error").

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock, RwLock};

use tonic::{Request, Response, Status};

use crate::framework::plan as generic_plan;
use crate::framework::{
    ApplyRequest, AttributePath, Block, ConfigureRequest, DeleteRequest, Diagnostic, Diagnostics,
    Nesting, PlanRequest, Provider, ReadRequest, Resource, Schema, Type, ValidateRequest, Value,
};

use super::codec::{self, CodecError};
use super::convert;
use super::proto::tfplugin5 as wire;
use wire::provider_server::Provider as WireProvider;
use wire::DynamicValue;

/// One resource type with its schema computed once.
struct ResourceType<C> {
    resource: Arc<dyn Resource<C>>,
    schema: Schema,
    value_type: Type,
}

/// Serves a framework provider as `tfplugin5.Provider`.
pub struct ProviderService<P: Provider> {
    provider: Arc<P>,
    provider_schema: Schema,
    provider_type: Type,
    resources: BTreeMap<String, ResourceType<P::Context>>,
    /// The GetSchema reply, built on first use and reused.
    schema_reply: OnceLock<wire::get_provider_schema::Response>,
    /// Set by Configure; resources run with it.
    context: RwLock<Option<Arc<P::Context>>>,
}

impl<P: Provider> ProviderService<P> {
    /// Wraps `provider`, computing every schema once.
    pub fn new(provider: Arc<P>) -> Self {
        let provider_schema = provider.schema();
        let provider_type = provider_schema.value_type();
        let resources = provider
            .resources()
            .into_iter()
            .map(|resource| {
                let schema = resource.schema();
                let value_type = schema.value_type();
                (
                    resource.type_name().to_string(),
                    ResourceType {
                        resource,
                        schema,
                        value_type,
                    },
                )
            })
            .collect();
        Self {
            provider,
            provider_schema,
            provider_type,
            resources,
            schema_reply: OnceLock::new(),
            context: RwLock::new(None),
        }
    }

    fn schema_reply(&self) -> &wire::get_provider_schema::Response {
        self.schema_reply
            .get_or_init(|| wire::get_provider_schema::Response {
                provider: Some(convert::schema(&self.provider_schema)),
                resource_schemas: self
                    .resources
                    .iter()
                    .map(|(name, r)| (name.clone(), convert::schema(&r.schema)))
                    .collect(),
                server_capabilities: Some(convert::server_capabilities()),
                ..Default::default()
            })
    }

    fn resource_type(&self, type_name: &str) -> Result<&ResourceType<P::Context>, Diagnostic> {
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

    fn context(&self, rpc: &str) -> Result<Arc<P::Context>, Diagnostic> {
        let guard = self.context.read().unwrap_or_else(|e| e.into_inner());
        guard.clone().ok_or_else(|| {
            Diagnostic::error(
                "Provider not configured",
                format!(
                    "Terraform called {rpc} before configuring the provider. This is a bug in Terraform or in the provider; please report it with the Terraform version."
                ),
            )
        })
    }
}

/// A value Terraform sent that does not decode: a bug on one side or the other, not a user error.
fn decode(value: Option<&DynamicValue>, ty: &Type, what: &str) -> Result<Value, Diagnostic> {
    codec::decode_dynamic(value, ty).map_err(|e| {
        codec_diagnostic(
            "Invalid value from Terraform",
            what,
            "could not be decoded",
            &e,
        )
    })
}

/// A value the provider produced that does not fit its schema: a provider bug.
fn encode(value: &Value, ty: &Type, what: &str) -> Result<DynamicValue, Diagnostic> {
    codec::encode_dynamic(value, ty).map_err(|e| {
        codec_diagnostic(
            "Provider produced an invalid value",
            what,
            "does not match the schema",
            &e,
        )
    })
}

fn codec_diagnostic(summary: &str, what: &str, problem: &str, error: &CodecError) -> Diagnostic {
    let diagnostic = Diagnostic::error(
        summary,
        format!("The {what} {problem}: {error}. This is a bug in the provider; please report it."),
    );
    if error.path.is_root() {
        diagnostic
    } else {
        diagnostic.at(error.path.clone())
    }
}

/// Collects diagnostics from a fallible step, returning the success value if any.
fn collect<T>(diagnostics: &mut Diagnostics, result: Result<T, Diagnostic>) -> Option<T> {
    match result {
        Ok(value) => Some(value),
        Err(diagnostic) => {
            diagnostics.push(diagnostic);
            None
        }
    }
}

fn wire_diagnostics(diagnostics: &Diagnostics) -> Vec<wire::Diagnostic> {
    if !diagnostics.is_empty() {
        tracing::debug!(
            count = diagnostics.len(),
            errors = diagnostics.has_errors(),
            "returning diagnostics"
        );
    }
    convert::diagnostics(diagnostics)
}

/// Shapes an object the provider returns as Terraform requires: repeated blocks are empty
/// collections rather than null, and write-only attributes are null.
fn conform(block: &Block, value: Value) -> Value {
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

/// Replaces every unknown by null, so a buggy result can still be stored.
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

fn no_data_sources(type_name: &str) -> Diagnostic {
    Diagnostic::error(
        "Unknown data source",
        format!(
            "This provider has no data sources, so there is no data source {type_name:?}. Remove the data block, or check that it names the right provider."
        ),
    )
}

#[tonic::async_trait]
impl<P: Provider> WireProvider for ProviderService<P> {
    async fn get_metadata(
        &self,
        _request: Request<wire::get_metadata::Request>,
    ) -> Result<Response<wire::get_metadata::Response>, Status> {
        tracing::debug!(rpc = "GetMetadata", "call");
        Ok(Response::new(wire::get_metadata::Response {
            server_capabilities: Some(convert::server_capabilities()),
            resources: self
                .resources
                .keys()
                .map(|name| wire::get_metadata::ResourceMetadata {
                    type_name: name.clone(),
                })
                .collect(),
            ..Default::default()
        }))
    }

    async fn get_schema(
        &self,
        _request: Request<wire::get_provider_schema::Request>,
    ) -> Result<Response<wire::get_provider_schema::Response>, Status> {
        tracing::debug!(rpc = "GetSchema", "call");
        Ok(Response::new(self.schema_reply().clone()))
    }

    async fn prepare_provider_config(
        &self,
        request: Request<wire::prepare_provider_config::Request>,
    ) -> Result<Response<wire::prepare_provider_config::Response>, Status> {
        tracing::debug!(rpc = "PrepareProviderConfig", "call");
        let request = request.into_inner();
        let mut diagnostics = Diagnostics::new();
        if let Some(config) = collect(
            &mut diagnostics,
            decode(
                request.config.as_ref(),
                &self.provider_type,
                "provider configuration",
            ),
        ) {
            diagnostics.extend(self.provider.validate(&config));
        }
        Ok(Response::new(wire::prepare_provider_config::Response {
            // Terraform ignores the prepared config; echoing it keeps its "changed" warning quiet.
            prepared_config: request.config,
            diagnostics: wire_diagnostics(&diagnostics),
        }))
    }

    async fn validate_resource_type_config(
        &self,
        request: Request<wire::validate_resource_type_config::Request>,
    ) -> Result<Response<wire::validate_resource_type_config::Response>, Status> {
        let request = request.into_inner();
        tracing::debug!(rpc = "ValidateResourceTypeConfig", resource_type = %request.type_name, "call");
        let mut diagnostics = Diagnostics::new();
        let checked =
            collect(&mut diagnostics, self.resource_type(&request.type_name)).and_then(|rt| {
                collect(
                    &mut diagnostics,
                    decode(
                        request.config.as_ref(),
                        &rt.value_type,
                        "resource configuration",
                    ),
                )
                .map(|config| (rt, config))
            });
        if let Some((rt, config)) = checked {
            let client_capabilities =
                convert::client_capabilities(request.client_capabilities.as_ref());
            if !client_capabilities.write_only_attributes_allowed {
                write_only_violations(
                    &rt.schema.block,
                    &config,
                    &AttributePath::root(),
                    &mut diagnostics,
                );
            }
            diagnostics.extend(rt.resource.validate(&ValidateRequest {
                config,
                client_capabilities,
            }));
        }
        Ok(Response::new(
            wire::validate_resource_type_config::Response {
                diagnostics: wire_diagnostics(&diagnostics),
            },
        ))
    }

    async fn validate_data_source_config(
        &self,
        request: Request<wire::validate_data_source_config::Request>,
    ) -> Result<Response<wire::validate_data_source_config::Response>, Status> {
        let request = request.into_inner();
        tracing::debug!(rpc = "ValidateDataSourceConfig", data_source = %request.type_name, "call");
        Ok(Response::new(wire::validate_data_source_config::Response {
            diagnostics: vec![convert::diagnostic(&no_data_sources(&request.type_name))],
        }))
    }

    async fn upgrade_resource_state(
        &self,
        request: Request<wire::upgrade_resource_state::Request>,
    ) -> Result<Response<wire::upgrade_resource_state::Response>, Status> {
        let request = request.into_inner();
        tracing::debug!(rpc = "UpgradeResourceState", resource_type = %request.type_name, version = request.version, "call");
        let mut diagnostics = Diagnostics::new();
        let mut upgraded_state = None;
        if let Some(rt) = collect(&mut diagnostics, self.resource_type(&request.type_name)) {
            let raw = request.raw_state.unwrap_or_default();
            let parsed = if raw.json.is_empty() {
                Err(Diagnostic::error(
                    "Unsupported state format",
                    format!(
                        "The stored state of this {} has no JSON form (it predates Terraform 0.12). Remove it from state with `terraform state rm` and import it again.",
                        request.type_name
                    ),
                ))
            } else {
                serde_json::from_slice::<serde_json::Value>(&raw.json).map_err(|e| {
                    Diagnostic::error(
                        "Unreadable state",
                        format!(
                            "The stored state of this {} is not valid JSON: {e}. Restore the state file from a backup.",
                            request.type_name
                        ),
                    )
                })
            };
            if let Some(json) = collect(&mut diagnostics, parsed) {
                match rt.resource.upgrade_state(request.version, &json) {
                    Ok(value) => {
                        let value = conform(&rt.schema.block, value);
                        upgraded_state = collect(
                            &mut diagnostics,
                            encode(&value, &rt.value_type, "upgraded state"),
                        );
                    }
                    Err(errors) => diagnostics.extend(errors),
                }
            }
        }
        Ok(Response::new(wire::upgrade_resource_state::Response {
            upgraded_state,
            diagnostics: wire_diagnostics(&diagnostics),
        }))
    }

    async fn configure(
        &self,
        request: Request<wire::configure::Request>,
    ) -> Result<Response<wire::configure::Response>, Status> {
        let request = request.into_inner();
        tracing::debug!(rpc = "Configure", terraform_version = %request.terraform_version, "call");
        let mut diagnostics = Diagnostics::new();
        if let Some(config) = collect(
            &mut diagnostics,
            decode(
                request.config.as_ref(),
                &self.provider_type,
                "provider configuration",
            ),
        ) {
            let configured = self
                .provider
                .configure(ConfigureRequest {
                    terraform_version: request.terraform_version,
                    config,
                    client_capabilities: convert::client_capabilities(
                        request.client_capabilities.as_ref(),
                    ),
                })
                .await;
            match configured {
                Ok(context) => {
                    let mut slot = self.context.write().unwrap_or_else(|e| e.into_inner());
                    *slot = Some(Arc::new(context));
                }
                Err(errors) => diagnostics.extend(errors),
            }
        }
        Ok(Response::new(wire::configure::Response {
            diagnostics: wire_diagnostics(&diagnostics),
        }))
    }

    async fn read_resource(
        &self,
        request: Request<wire::read_resource::Request>,
    ) -> Result<Response<wire::read_resource::Response>, Status> {
        let request = request.into_inner();
        tracing::debug!(rpc = "ReadResource", resource_type = %request.type_name, "call");
        let mut diagnostics = Diagnostics::new();
        // Until a read succeeds, the reply keeps what Terraform has.
        let mut new_state = request.current_state.clone();
        let mut private = request.private.clone();
        let ready = collect(&mut diagnostics, self.resource_type(&request.type_name))
            .and_then(|rt| collect(&mut diagnostics, self.context("ReadResource")).map(|c| (rt, c)))
            .and_then(|(rt, ctx)| {
                collect(
                    &mut diagnostics,
                    decode(
                        request.current_state.as_ref(),
                        &rt.value_type,
                        "current state",
                    ),
                )
                .map(|state| (rt, ctx, state))
            });
        if let Some((rt, ctx, state)) = ready {
            let read = rt
                .resource
                .read(
                    &ctx,
                    ReadRequest {
                        state,
                        private: request.private.clone(),
                    },
                )
                .await;
            diagnostics.extend(read.diagnostics);
            if read.state.is_wholly_known() {
                let state = conform(&rt.schema.block, read.state);
                if let Some(encoded) = collect(
                    &mut diagnostics,
                    encode(&state, &rt.value_type, "refreshed state"),
                ) {
                    new_state = Some(encoded);
                    // A resource that does not use private state leaves it empty: keep Terraform's.
                    if !read.private.is_empty() {
                        private = read.private;
                    }
                }
            } else {
                diagnostics.push(Diagnostic::error(
                    "Provider returned unknown values after refresh",
                    format!(
                        "Reading this {} produced values that are not known; a refreshed object must be wholly known. The previous state is kept. This is a bug in the provider; please report it.",
                        request.type_name
                    ),
                ));
            }
        }
        Ok(Response::new(wire::read_resource::Response {
            new_state,
            diagnostics: wire_diagnostics(&diagnostics),
            private,
            deferred: None,
        }))
    }

    async fn plan_resource_change(
        &self,
        request: Request<wire::plan_resource_change::Request>,
    ) -> Result<Response<wire::plan_resource_change::Response>, Status> {
        let request = request.into_inner();
        tracing::debug!(rpc = "PlanResourceChange", resource_type = %request.type_name, "call");
        let mut diagnostics = Diagnostics::new();
        let mut reply = wire::plan_resource_change::Response {
            planned_private: request.prior_private.clone(),
            ..Default::default()
        };
        let Some(rt) = collect(&mut diagnostics, self.resource_type(&request.type_name)) else {
            reply.diagnostics = wire_diagnostics(&diagnostics);
            return Ok(Response::new(reply));
        };
        let decoded = (|| {
            Ok::<_, Diagnostic>((
                decode(request.prior_state.as_ref(), &rt.value_type, "prior state")?,
                decode(
                    request.proposed_new_state.as_ref(),
                    &rt.value_type,
                    "proposed new state",
                )?,
                decode(request.config.as_ref(), &rt.value_type, "configuration")?,
            ))
        })();
        let Some((prior, proposed, config)) = collect(&mut diagnostics, decoded) else {
            reply.diagnostics = wire_diagnostics(&diagnostics);
            return Ok(Response::new(reply));
        };
        if proposed.is_null() {
            // A destroy (plan_destroy): planned state null, private state kept for the apply.
            reply.planned_state = collect(
                &mut diagnostics,
                encode(&Value::Null, &rt.value_type, "planned state"),
            );
            reply.diagnostics = wire_diagnostics(&diagnostics);
            return Ok(Response::new(reply));
        }
        let Some(ctx) = collect(&mut diagnostics, self.context("PlanResourceChange")) else {
            reply.diagnostics = wire_diagnostics(&diagnostics);
            return Ok(Response::new(reply));
        };
        let generic = generic_plan::plan(&rt.schema, &prior, &proposed, &config);
        let mut plan = PlanRequest {
            prior_state: prior,
            config,
            prior_private: request.prior_private.clone(),
            planned_state: generic.planned_state,
            planned_private: request.prior_private,
            requires_replace: generic.requires_replace,
        };
        diagnostics.extend(rt.resource.modify_plan(&ctx, &mut plan).await);
        let planned = conform(&rt.schema.block, plan.planned_state);
        reply.planned_state = collect(
            &mut diagnostics,
            encode(&planned, &rt.value_type, "planned state"),
        );
        reply.planned_private = plan.planned_private;
        reply.requires_replace = plan
            .requires_replace
            .iter()
            .map(convert::attribute_path)
            .collect();
        reply.diagnostics = wire_diagnostics(&diagnostics);
        Ok(Response::new(reply))
    }

    async fn apply_resource_change(
        &self,
        request: Request<wire::apply_resource_change::Request>,
    ) -> Result<Response<wire::apply_resource_change::Response>, Status> {
        let request = request.into_inner();
        tracing::debug!(rpc = "ApplyResourceChange", resource_type = %request.type_name, "call");
        let mut diagnostics = Diagnostics::new();
        let mut reply = wire::apply_resource_change::Response::default();
        let ready = collect(&mut diagnostics, self.resource_type(&request.type_name))
            .and_then(|rt| {
                collect(&mut diagnostics, self.context("ApplyResourceChange")).map(|c| (rt, c))
            })
            .and_then(|(rt, ctx)| {
                let decoded = (|| {
                    Ok::<_, Diagnostic>((
                        decode(request.prior_state.as_ref(), &rt.value_type, "prior state")?,
                        decode(
                            request.planned_state.as_ref(),
                            &rt.value_type,
                            "planned state",
                        )?,
                        decode(request.config.as_ref(), &rt.value_type, "configuration")?,
                    ))
                })();
                collect(&mut diagnostics, decoded).map(|values| (rt, ctx, values))
            });
        let Some((rt, ctx, (prior, planned, config))) = ready else {
            // Nothing was changed: keep what Terraform had.
            reply.new_state = request.prior_state;
            reply.private = request.planned_private;
            reply.diagnostics = wire_diagnostics(&diagnostics);
            return Ok(Response::new(reply));
        };
        let outcome = if planned.is_null() {
            if prior.is_null() {
                None
            } else {
                tracing::debug!(resource_type = %request.type_name, "delete");
                Some(
                    rt.resource
                        .delete(
                            &ctx,
                            DeleteRequest {
                                prior_state: prior,
                                prior_private: request.planned_private.clone(),
                            },
                        )
                        .await,
                )
            }
        } else {
            let apply = ApplyRequest {
                prior_state: prior.clone(),
                planned_state: planned,
                config,
                planned_private: request.planned_private.clone(),
            };
            Some(if prior.is_null() {
                tracing::debug!(resource_type = %request.type_name, "create");
                rt.resource.create(&ctx, apply).await
            } else {
                tracing::debug!(resource_type = %request.type_name, "update");
                rt.resource.update(&ctx, apply).await
            })
        };
        let (state, private) = match outcome {
            Some(applied) => {
                diagnostics.extend(applied.diagnostics);
                (applied.state, applied.private)
            }
            None => (Value::Null, Vec::new()),
        };
        let state = if state.is_wholly_known() {
            state
        } else {
            diagnostics.push(Diagnostic::error(
                "Provider left values unknown after apply",
                format!(
                    "Applying this {} left some values unknown; they are stored as null. This is a bug in the provider; please report it.",
                    request.type_name
                ),
            ));
            without_unknowns(state)
        };
        let state = conform(&rt.schema.block, state);
        reply.new_state = collect(
            &mut diagnostics,
            encode(&state, &rt.value_type, "new state"),
        );
        reply.private = private;
        reply.diagnostics = wire_diagnostics(&diagnostics);
        Ok(Response::new(reply))
    }

    async fn import_resource_state(
        &self,
        request: Request<wire::import_resource_state::Request>,
    ) -> Result<Response<wire::import_resource_state::Response>, Status> {
        let request = request.into_inner();
        tracing::debug!(rpc = "ImportResourceState", resource_type = %request.type_name, "call");
        let mut diagnostics = Diagnostics::new();
        let mut imported_resources = Vec::new();
        let ready =
            collect(&mut diagnostics, self.resource_type(&request.type_name)).and_then(|rt| {
                collect(&mut diagnostics, self.context("ImportResourceState")).map(|c| (rt, c))
            });
        if let Some((rt, ctx)) = ready {
            let imported = rt.resource.import(&ctx, &request.id).await;
            diagnostics.extend(imported.diagnostics);
            if !diagnostics.has_errors() {
                if imported.state.is_null() {
                    diagnostics.push(Diagnostic::error(
                        "Import produced no object",
                        format!(
                            "Importing {:?} as {} produced nothing. This is a bug in the provider; please report it.",
                            request.id, request.type_name
                        ),
                    ));
                } else {
                    let state = conform(&rt.schema.block, imported.state);
                    if let Some(encoded) = collect(
                        &mut diagnostics,
                        encode(&state, &rt.value_type, "imported state"),
                    ) {
                        imported_resources.push(wire::import_resource_state::ImportedResource {
                            type_name: request.type_name.clone(),
                            state: Some(encoded),
                            private: imported.private,
                        });
                    }
                }
            }
        }
        Ok(Response::new(wire::import_resource_state::Response {
            imported_resources,
            diagnostics: wire_diagnostics(&diagnostics),
            deferred: None,
        }))
    }

    async fn read_data_source(
        &self,
        request: Request<wire::read_data_source::Request>,
    ) -> Result<Response<wire::read_data_source::Response>, Status> {
        let request = request.into_inner();
        tracing::debug!(rpc = "ReadDataSource", data_source = %request.type_name, "call");
        Ok(Response::new(wire::read_data_source::Response {
            state: None,
            diagnostics: vec![convert::diagnostic(&no_data_sources(&request.type_name))],
            deferred: None,
        }))
    }

    async fn stop(
        &self,
        _request: Request<wire::stop::Request>,
    ) -> Result<Response<wire::stop::Response>, Status> {
        tracing::debug!(rpc = "Stop", "call");
        self.provider.stop();
        Ok(Response::new(wire::stop::Response {
            error: String::new(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::schema::timeouts_block;
    use crate::framework::{ApplyResponse, Attribute, ImportResponse, NestedBlock, ReadResponse};
    use std::sync::atomic::{AtomicBool, Ordering};

    /// A provider with one resource type, `fake_thing`, whose behaviour depends on its name.
    #[derive(Default)]
    struct Fake {
        stopped: AtomicBool,
    }

    struct Thing;

    fn thing_schema() -> Schema {
        Schema::new(
            1,
            Block::new("A thing.")
                .attribute(Attribute::string("id").computed())
                .attribute(Attribute::string("name").required().force_new())
                .attribute(Attribute::string("secret_wo").optional().write_only())
                .block(NestedBlock::new(
                    "rule",
                    Nesting::List,
                    Block::new("A rule.").attribute(Attribute::number("port").optional()),
                ))
                .block(timeouts_block(true, false, true)),
        )
    }

    #[tonic::async_trait]
    impl Resource<()> for Thing {
        fn type_name(&self) -> &'static str {
            "fake_thing"
        }
        fn schema(&self) -> Schema {
            thing_schema()
        }
        fn validate(&self, req: &ValidateRequest) -> Diagnostics {
            let mut d = Diagnostics::new();
            if req.config.get_str("name") == Some("invalid") {
                d.attribute_error(AttributePath::attr("name"), "Bad name", "Pick another.");
            }
            d
        }
        async fn create(&self, _: &(), req: ApplyRequest) -> ApplyResponse {
            let mut state = req.planned_state;
            let id = format!("id-{}", state.get_str("name").unwrap_or_default());
            state.set_attr("id", Value::from(id));
            ApplyResponse {
                state,
                private: b"p1".to_vec(),
                ..Default::default()
            }
        }
        async fn read(&self, _: &(), req: ReadRequest) -> ReadResponse {
            let mut state = req.state;
            match state.get_str("name") {
                Some("gone") => state = Value::Null,
                Some("unknowable") => state.set_attr("id", Value::unknown()),
                // Left null by mistake: the service must turn it into an empty list.
                _ => state.set_attr("rule", Value::Null),
            }
            ReadResponse {
                state,
                ..Default::default()
            }
        }
        async fn update(&self, _: &(), req: ApplyRequest) -> ApplyResponse {
            ApplyResponse {
                state: req.planned_state,
                private: req.planned_private,
                ..Default::default()
            }
        }
        async fn delete(&self, _: &(), _: DeleteRequest) -> ApplyResponse {
            ApplyResponse::default()
        }
        async fn import(&self, _: &(), id: &str) -> ImportResponse {
            ImportResponse {
                state: Value::object([("id", Value::from(id)), ("name", Value::from(id))]),
                ..Default::default()
            }
        }
    }

    #[tonic::async_trait]
    impl Provider for Fake {
        type Context = ();
        fn schema(&self) -> Schema {
            Schema::new(
                0,
                Block::new("Fake.").attribute(Attribute::string("project").optional()),
            )
        }
        fn validate(&self, config: &Value) -> Diagnostics {
            let mut d = Diagnostics::new();
            if config.get_str("project") == Some("bad") {
                d.attribute_error(AttributePath::attr("project"), "Bad project", "Fix it.");
            }
            d
        }
        async fn configure(&self, _: ConfigureRequest) -> Result<(), Diagnostics> {
            Ok(())
        }
        fn resources(&self) -> Vec<Arc<dyn Resource<()>>> {
            vec![Arc::new(Thing)]
        }
        fn stop(&self) {
            self.stopped.store(true, Ordering::SeqCst);
        }
    }

    fn service() -> ProviderService<Fake> {
        ProviderService::new(Arc::new(Fake::default()))
    }

    fn ty() -> Type {
        thing_schema().value_type()
    }

    fn dv(value: &Value) -> Option<DynamicValue> {
        Some(codec::encode_dynamic(value, &ty()).expect("encodes"))
    }

    fn value(dv: Option<&DynamicValue>) -> Value {
        codec::decode_dynamic(dv, &ty()).expect("decodes")
    }

    fn thing(name: &str) -> Value {
        Value::object([
            ("id", Value::Null),
            ("name", Value::from(name)),
            ("secret_wo", Value::Null),
            ("rule", Value::List(vec![])),
            ("timeouts", Value::Null),
        ])
    }

    fn summaries(diagnostics: &[wire::Diagnostic]) -> Vec<String> {
        diagnostics.iter().map(|d| d.summary.clone()).collect()
    }

    async fn configured() -> ProviderService<Fake> {
        let svc = service();
        let reply = svc
            .configure(Request::new(wire::configure::Request {
                terraform_version: "1.11.4".into(),
                config: Some(
                    codec::encode_dynamic(
                        &Value::object([("project", Value::Null)]),
                        &svc.provider_type,
                    )
                    .expect("encodes"),
                ),
                client_capabilities: None,
            }))
            .await
            .expect("reply")
            .into_inner();
        assert!(reply.diagnostics.is_empty());
        svc
    }

    async fn plan(
        svc: &ProviderService<Fake>,
        prior: &Value,
        proposed: &Value,
        private: &[u8],
    ) -> wire::plan_resource_change::Response {
        svc.plan_resource_change(Request::new(wire::plan_resource_change::Request {
            type_name: "fake_thing".into(),
            prior_state: dv(prior),
            proposed_new_state: dv(proposed),
            config: dv(proposed),
            prior_private: private.to_vec(),
            ..Default::default()
        }))
        .await
        .expect("reply")
        .into_inner()
    }

    async fn apply(
        svc: &ProviderService<Fake>,
        prior: &Value,
        planned: Option<DynamicValue>,
        config: &Value,
        private: &[u8],
    ) -> wire::apply_resource_change::Response {
        svc.apply_resource_change(Request::new(wire::apply_resource_change::Request {
            type_name: "fake_thing".into(),
            prior_state: dv(prior),
            planned_state: planned,
            config: dv(config),
            planned_private: private.to_vec(),
            provider_meta: None,
        }))
        .await
        .expect("reply")
        .into_inner()
    }

    #[tokio::test]
    async fn get_schema_describes_provider_resources_and_capabilities() {
        let reply = service()
            .get_schema(Request::new(Default::default()))
            .await
            .expect("reply")
            .into_inner();
        let provider = reply
            .provider
            .expect("provider schema")
            .block
            .expect("block");
        assert_eq!(provider.attributes[0].name, "project");
        let thing = reply.resource_schemas.get("fake_thing").expect("resource");
        assert_eq!(thing.version, 1);
        let capabilities = reply.server_capabilities.expect("capabilities");
        assert!(capabilities.plan_destroy && capabilities.get_provider_schema_optional);
        let metadata = service()
            .get_metadata(Request::new(Default::default()))
            .await
            .expect("reply")
            .into_inner();
        assert_eq!(metadata.resources[0].type_name, "fake_thing");
    }

    #[tokio::test]
    async fn unknown_resource_types_are_named_in_an_error() {
        let svc = configured().await;
        let reply = svc
            .validate_resource_type_config(Request::new(
                wire::validate_resource_type_config::Request {
                    type_name: "fake_nope".into(),
                    config: dv(&thing("n")),
                    client_capabilities: None,
                },
            ))
            .await
            .expect("reply")
            .into_inner();
        let d = &reply.diagnostics[0];
        assert_eq!(d.severity, wire::diagnostic::Severity::Error as i32);
        assert_eq!(d.summary, "Unknown resource type");
        assert!(
            d.detail.contains("\"fake_nope\"") && d.detail.contains("fake_thing"),
            "{}",
            d.detail
        );

        let reply = svc
            .read_resource(Request::new(wire::read_resource::Request {
                type_name: "fake_nope".into(),
                current_state: dv(&thing("n")),
                private: b"keep".to_vec(),
                ..Default::default()
            }))
            .await
            .expect("reply")
            .into_inner();
        assert_eq!(summaries(&reply.diagnostics), ["Unknown resource type"]);
        assert_eq!(
            reply.private,
            b"keep".to_vec(),
            "state and private are kept"
        );
        assert_eq!(reply.new_state, dv(&thing("n")));
    }

    #[tokio::test]
    async fn validation_reports_paths_and_write_only_needs_the_client_capability() {
        let svc = service();
        let mut config = thing("invalid");
        config.set_attr("secret_wo", Value::from("hush"));
        let validate = |capabilities| {
            svc.validate_resource_type_config(Request::new(
                wire::validate_resource_type_config::Request {
                    type_name: "fake_thing".into(),
                    config: dv(&config),
                    client_capabilities: capabilities,
                },
            ))
        };
        let old_client = validate(None).await.expect("reply").into_inner();
        let paths: Vec<AttributePath> = old_client
            .diagnostics
            .iter()
            .map(|d| convert::attribute_path_from_wire(d.attribute.as_ref().expect("path")))
            .collect();
        assert_eq!(
            paths,
            [
                AttributePath::attr("secret_wo"),
                AttributePath::attr("name")
            ]
        );
        assert!(old_client.diagnostics[0].detail.contains("Terraform 1.11"));

        let new_client = validate(Some(wire::ClientCapabilities {
            deferral_allowed: false,
            write_only_attributes_allowed: true,
        }))
        .await
        .expect("reply")
        .into_inner();
        assert_eq!(summaries(&new_client.diagnostics), ["Bad name"]);
    }

    #[tokio::test]
    async fn provider_config_is_validated_and_echoed() {
        let svc = service();
        let config = codec::encode_dynamic(
            &Value::object([("project", Value::from("bad"))]),
            &svc.provider_type,
        )
        .expect("encodes");
        let reply = svc
            .prepare_provider_config(Request::new(wire::prepare_provider_config::Request {
                config: Some(config.clone()),
            }))
            .await
            .expect("reply")
            .into_inner();
        assert_eq!(reply.prepared_config, Some(config));
        assert_eq!(summaries(&reply.diagnostics), ["Bad project"]);
        let path = reply.diagnostics[0].attribute.as_ref().expect("path");
        assert_eq!(
            convert::attribute_path_from_wire(path),
            AttributePath::attr("project")
        );
    }

    #[tokio::test]
    async fn malformed_values_are_diagnostics_not_statuses() {
        let svc = service();
        let reply = svc
            .prepare_provider_config(Request::new(wire::prepare_provider_config::Request {
                config: Some(DynamicValue {
                    msgpack: vec![0x81, 0xa7],
                    json: vec![],
                }),
            }))
            .await
            .expect("a reply, not a status")
            .into_inner();
        assert_eq!(
            summaries(&reply.diagnostics),
            ["Invalid value from Terraform"]
        );
        assert!(reply.diagnostics[0].detail.contains("malformed msgpack"));
    }

    #[tokio::test]
    async fn calls_before_configure_are_a_clear_error() {
        let svc = service();
        let reply = svc
            .read_resource(Request::new(wire::read_resource::Request {
                type_name: "fake_thing".into(),
                current_state: dv(&thing("n")),
                ..Default::default()
            }))
            .await
            .expect("reply")
            .into_inner();
        assert_eq!(summaries(&reply.diagnostics), ["Provider not configured"]);
        assert!(reply.diagnostics[0].detail.contains("ReadResource"));
    }

    #[tokio::test]
    async fn create_update_replace_and_destroy() {
        let svc = configured().await;
        // Create: the computed id is unknown in the plan, known after apply.
        let config = thing("a");
        let planned = plan(&svc, &Value::Null, &config, b"").await;
        assert!(planned.diagnostics.is_empty(), "{:?}", planned.diagnostics);
        assert!(value(planned.planned_state.as_ref()).get("id").is_unknown());
        let created = apply(
            &svc,
            &Value::Null,
            planned.planned_state,
            &config,
            &planned.planned_private,
        )
        .await;
        assert!(created.diagnostics.is_empty(), "{:?}", created.diagnostics);
        let state = value(created.new_state.as_ref());
        assert_eq!(state.get_str("id"), Some("id-a"));
        assert_eq!(created.private, b"p1".to_vec());

        // Read: a null repeated block becomes an empty list; private survives an empty reply.
        let read = svc
            .read_resource(Request::new(wire::read_resource::Request {
                type_name: "fake_thing".into(),
                current_state: created.new_state.clone(),
                private: created.private.clone(),
                ..Default::default()
            }))
            .await
            .expect("reply")
            .into_inner();
        assert!(read.diagnostics.is_empty());
        assert_eq!(value(read.new_state.as_ref()), state);
        assert_eq!(read.private, b"p1".to_vec());

        // Changing the force-new name plans a replacement.
        let mut renamed = state.clone();
        renamed.set_attr("name", Value::from("b"));
        let replace = plan(&svc, &state, &renamed, b"p1").await;
        let paths: Vec<AttributePath> = replace
            .requires_replace
            .iter()
            .map(convert::attribute_path_from_wire)
            .collect();
        assert_eq!(paths, [AttributePath::attr("name")]);
        assert_eq!(replace.planned_private, b"p1".to_vec());

        // Destroy: null plan, private kept; apply returns null.
        let destroy = plan(&svc, &state, &Value::Null, b"p1").await;
        assert_eq!(
            destroy.planned_state.as_ref().map(|d| d.msgpack.clone()),
            Some(vec![0xc0])
        );
        assert_eq!(destroy.planned_private, b"p1".to_vec());
        let destroyed = apply(&svc, &state, destroy.planned_state, &Value::Null, b"p1").await;
        assert!(destroyed.diagnostics.is_empty());
        assert_eq!(value(destroyed.new_state.as_ref()), Value::Null);
    }

    #[tokio::test]
    async fn unknown_values_after_read_are_a_provider_bug() {
        let svc = configured().await;
        let mut state = thing("unknowable");
        state.set_attr("id", Value::from("x"));
        let reply = svc
            .read_resource(Request::new(wire::read_resource::Request {
                type_name: "fake_thing".into(),
                current_state: dv(&state),
                private: b"keep".to_vec(),
                ..Default::default()
            }))
            .await
            .expect("reply")
            .into_inner();
        assert_eq!(
            summaries(&reply.diagnostics),
            ["Provider returned unknown values after refresh"]
        );
        assert_eq!(
            value(reply.new_state.as_ref()),
            state,
            "previous state kept"
        );
        assert_eq!(reply.private, b"keep".to_vec());
        assert_eq!(
            reply.diagnostics[0].severity,
            wire::diagnostic::Severity::Error as i32
        );
    }

    #[tokio::test]
    async fn state_upgrade_reads_json_and_fills_the_current_schema() {
        let svc = service();
        let upgrade = |json: &str| {
            svc.upgrade_resource_state(Request::new(wire::upgrade_resource_state::Request {
                type_name: "fake_thing".into(),
                version: 1,
                raw_state: Some(wire::RawState {
                    json: json.as_bytes().to_vec(),
                    flatmap: Default::default(),
                }),
            }))
        };
        let reply = upgrade(r#"{"id": "x", "name": "n"}"#)
            .await
            .expect("reply")
            .into_inner();
        assert!(reply.diagnostics.is_empty(), "{:?}", reply.diagnostics);
        let mut expected = thing("n");
        expected.set_attr("id", Value::from("x"));
        assert_eq!(value(reply.upgraded_state.as_ref()), expected);

        let reply = upgrade("{not json").await.expect("reply").into_inner();
        assert_eq!(summaries(&reply.diagnostics), ["Unreadable state"]);
        let reply = upgrade("").await.expect("reply").into_inner();
        assert_eq!(summaries(&reply.diagnostics), ["Unsupported state format"]);
    }

    #[tokio::test]
    async fn import_returns_exactly_one_object_of_the_requested_type() {
        let svc = configured().await;
        let reply = svc
            .import_resource_state(Request::new(wire::import_resource_state::Request {
                type_name: "fake_thing".into(),
                id: "abc".into(),
                client_capabilities: None,
            }))
            .await
            .expect("reply")
            .into_inner();
        assert!(reply.diagnostics.is_empty(), "{:?}", reply.diagnostics);
        assert_eq!(reply.imported_resources.len(), 1);
        let imported = &reply.imported_resources[0];
        assert_eq!(imported.type_name, "fake_thing");
        let state = value(imported.state.as_ref());
        assert_eq!(state.get_str("name"), Some("abc"));
        assert_eq!(
            state.get("rule"),
            &Value::List(vec![]),
            "conformed to the schema"
        );
    }

    #[tokio::test]
    async fn data_sources_do_not_exist_and_stop_reaches_the_provider() {
        let svc = service();
        let reply = svc
            .read_data_source(Request::new(wire::read_data_source::Request {
                type_name: "fake_data".into(),
                ..Default::default()
            }))
            .await
            .expect("reply")
            .into_inner();
        assert_eq!(summaries(&reply.diagnostics), ["Unknown data source"]);
        assert!(!svc.provider.stopped.load(Ordering::SeqCst));
        let reply = svc
            .stop(Request::new(wire::stop::Request {}))
            .await
            .expect("reply")
            .into_inner();
        assert!(reply.error.is_empty());
        assert!(svc.provider.stopped.load(Ordering::SeqCst));
    }

    #[test]
    fn conform_fills_repeated_blocks_and_nulls_write_only_values() {
        let schema = thing_schema();
        let mut raw = thing("n");
        raw.set_attr("rule", Value::Null);
        raw.set_attr("secret_wo", Value::from("leak"));
        let shaped = conform(&schema.block, raw);
        assert_eq!(shaped.get("rule"), &Value::List(vec![]));
        assert!(shaped.get("secret_wo").is_null());
        assert!(
            shaped.get("timeouts").is_null(),
            "single blocks may be null"
        );
    }
}
