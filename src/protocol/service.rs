//! The tfplugin5 `Provider` service over the framework engine ([`Server`]).
//!
//! Every RPC follows one skeleton: find the type, decode the request's values against its
//! schema, call the engine, encode the reply. Problems a user or a provider can cause are returned
//! as diagnostics; a gRPC error status is never used for them (Terraform would only say "Plugin
//! error").

use std::convert::Infallible;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::future::{self, Either};
use http_body::Frame;
use prost::Message as _;
use tonic::{Request, Response, Status};

use crate::framework::server::Server;
use crate::framework::{
    ApplyRequest, ConfigureRequest, Diagnostic, Diagnostics, Provider, ReadRequest, Type, Value,
};

use super::codec::{self, CodecError};
use super::convert;
use super::proto::tfplugin5 as wire;
use wire::provider_server::Provider as WireProvider;
use wire::DynamicValue;

/// Serves a framework provider as `tfplugin5.Provider`.
pub struct ProviderService<P: Provider> {
    engine: Server<P>,
    /// The GetSchema reply, built on first use and reused.
    schema_reply: OnceLock<wire::get_provider_schema::Response>,
    /// The GetSchema reply as a gRPC message on the wire, encoded once.
    schema_frame: OnceLock<Bytes>,
}

impl<P: Provider> ProviderService<P> {
    /// Wraps `provider`, computing every schema once.
    pub fn new(provider: Arc<P>) -> Self {
        Self {
            engine: Server::new(provider),
            schema_reply: OnceLock::new(),
            schema_frame: OnceLock::new(),
        }
    }

    /// The GetSchema reply framed as gRPC sends a message: an uncompressed flag, the length
    /// (big-endian) and the protobuf bytes.
    fn schema_frame(&self) -> Bytes {
        self.schema_frame
            .get_or_init(|| {
                let message = self.schema_reply().encode_to_vec();
                let length = u32::try_from(message.len()).unwrap_or(u32::MAX);
                let mut frame = Vec::with_capacity(5 + message.len());
                frame.push(0);
                frame.extend_from_slice(&length.to_be_bytes());
                frame.extend_from_slice(&message);
                Bytes::from(frame)
            })
            .clone()
    }

    fn schema_reply(&self) -> &wire::get_provider_schema::Response {
        self.schema_reply
            .get_or_init(|| wire::get_provider_schema::Response {
                provider: Some(convert::schema(self.engine.provider_schema())),
                resource_schemas: self
                    .engine
                    .resources()
                    .iter()
                    .map(|(name, r)| (name.clone(), convert::schema(&r.schema)))
                    .collect(),
                data_source_schemas: self
                    .engine
                    .data_sources()
                    .iter()
                    .map(|(name, d)| (name.clone(), convert::schema(&d.schema)))
                    .collect(),
                server_capabilities: Some(convert::server_capabilities()),
                ..Default::default()
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

/// An engine's value of type `ty` encoded (`what`: which value, for errors), or its errors kept.
fn encode_result(
    diagnostics: &mut Diagnostics,
    result: Result<Value, Diagnostics>,
    ty: &Type,
    what: &str,
) -> Option<DynamicValue> {
    match result {
        Ok(value) => collect(diagnostics, encode(&value, ty, what)),
        Err(errors) => {
            diagnostics.extend(errors);
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

/// Decodes several values of one type, stopping at the first that fails.
fn decode_all<const N: usize>(
    ty: &Type,
    values: [(Option<&DynamicValue>, &str); N],
) -> Result<[Value; N], Diagnostic> {
    let mut out: [Value; N] = std::array::from_fn(|_| Value::Null);
    for (slot, (value, what)) in out.iter_mut().zip(values) {
        *slot = decode(value, ty, what)?;
    }
    Ok(out)
}

/// The gRPC method whose reply never changes. Terraform asks for it once per provider process,
/// and every Terraform version before 1.6 (or without `get_provider_schema_optional`) more often.
const GET_SCHEMA_PATH: &str = "/tfplugin5.Provider/GetSchema";

/// `tfplugin5.Provider` as served: GetSchema answered with the reply encoded once, every other
/// method by the tonic server generated for [`ProviderService`].
pub struct ProviderGrpc<P: Provider> {
    service: Arc<ProviderService<P>>,
    tonic: wire::provider_server::ProviderServer<ProviderService<P>>,
}

impl<P: Provider> Clone for ProviderGrpc<P> {
    fn clone(&self) -> Self {
        Self {
            service: self.service.clone(),
            tonic: self.tonic.clone(),
        }
    }
}

impl<P: Provider> ProviderGrpc<P> {
    /// Serves `provider`, refusing and never sending messages over `max_message_size` bytes.
    pub fn new(provider: Arc<P>, max_message_size: usize) -> Self {
        let service = Arc::new(ProviderService::new(provider));
        let tonic = wire::provider_server::ProviderServer::from_arc(service.clone())
            .max_decoding_message_size(max_message_size)
            .max_encoding_message_size(max_message_size);
        Self { service, tonic }
    }

    /// The GetSchema answer: what tonic sends for a successful unary call (a message, then
    /// `grpc-status: 0` in the trailers), from the frame encoded once.
    fn schema_answer(&self) -> http::Response<tonic::body::Body> {
        tracing::debug!(rpc = "GetSchema", "call");
        let mut trailers = http::HeaderMap::new();
        trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
        let frames = [
            Ok::<_, Infallible>(Frame::data(self.service.schema_frame())),
            Ok(Frame::trailers(trailers)),
        ];
        let body = http_body_util::StreamBody::new(futures::stream::iter(frames));
        let mut answer = http::Response::new(tonic::body::Body::new(body));
        answer.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/grpc"),
        );
        answer
    }
}

impl<P: Provider> tonic::server::NamedService for ProviderGrpc<P> {
    const NAME: &'static str = wire::provider_server::SERVICE_NAME;
}

impl<P: Provider> tower::Service<http::Request<tonic::body::Body>> for ProviderGrpc<P> {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = Either<
        future::Ready<Result<Self::Response, Infallible>>,
        <wire::provider_server::ProviderServer<ProviderService<P>> as tower::Service<
            http::Request<tonic::body::Body>,
        >>::Future,
    >;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        if request.uri().path() == GET_SCHEMA_PATH {
            return Either::Left(future::ready(Ok(self.schema_answer())));
        }
        Either::Right(self.tonic.call(request))
    }
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
                .engine
                .resources()
                .keys()
                .map(|name| wire::get_metadata::ResourceMetadata {
                    type_name: name.clone(),
                })
                .collect(),
            data_sources: self
                .engine
                .data_sources()
                .keys()
                .map(|name| wire::get_metadata::DataSourceMetadata {
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
        let ty = self.engine.provider_type();
        let what = "provider configuration";
        if let Some(config) = collect(&mut diagnostics, decode(request.config.as_ref(), ty, what)) {
            diagnostics.extend(self.engine.validate_provider(&config));
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
        let found = self.engine.resource(&request.type_name).and_then(|rt| {
            let config = decode(
                request.config.as_ref(),
                &rt.value_type,
                "resource configuration",
            );
            config.map(|config| (rt, config))
        });
        if let Some((rt, config)) = collect(&mut diagnostics, found) {
            let capabilities = convert::client_capabilities(request.client_capabilities.as_ref());
            diagnostics.extend(self.engine.validate_resource(rt, config, capabilities));
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
        let mut diagnostics = Diagnostics::new();
        let found = self.engine.data_source(&request.type_name).and_then(|ds| {
            let config = decode(
                request.config.as_ref(),
                &ds.value_type,
                "data source configuration",
            );
            config.map(|config| (ds, config))
        });
        if let Some((ds, config)) = collect(&mut diagnostics, found) {
            // Protocol 5 sends no client capabilities here: assume the oldest client.
            let capabilities = Default::default();
            diagnostics.extend(self.engine.validate_data_source(ds, config, capabilities));
        }
        Ok(Response::new(wire::validate_data_source_config::Response {
            diagnostics: wire_diagnostics(&diagnostics),
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
        if let Some(rt) = collect(&mut diagnostics, self.engine.resource(&request.type_name)) {
            let raw = request.raw_state.unwrap_or_default();
            let upgraded = self.engine.upgrade_state(rt, request.version, &raw.json);
            upgraded_state =
                encode_result(&mut diagnostics, upgraded, &rt.value_type, "upgraded state");
        }
        Ok(Response::new(wire::upgrade_resource_state::Response {
            upgraded_state,
            diagnostics: wire_diagnostics(&diagnostics),
        }))
    }

    async fn move_resource_state(
        &self,
        request: Request<wire::move_resource_state::Request>,
    ) -> Result<Response<wire::move_resource_state::Response>, Status> {
        let request = request.into_inner();
        tracing::debug!(rpc = "MoveResourceState", source_provider = %request.source_provider_address, source_type = %request.source_type_name, source_version = request.source_schema_version, resource_type = %request.target_type_name, "call");
        let mut diagnostics = Diagnostics::new();
        let mut target_state = None;
        if let Some(rt) = collect(
            &mut diagnostics,
            self.engine.resource(&request.target_type_name),
        ) {
            let raw = request.source_state.unwrap_or_default();
            let moved = self.engine.move_state(
                rt,
                &request.source_provider_address,
                &request.source_type_name,
                request.source_schema_version,
                &raw.json,
            );
            target_state = encode_result(&mut diagnostics, moved, &rt.value_type, "moved state");
        }
        Ok(Response::new(wire::move_resource_state::Response {
            target_state,
            diagnostics: wire_diagnostics(&diagnostics),
            // The source's private state is the other provider's business: nothing is carried over.
            target_private: Vec::new(),
        }))
    }

    async fn configure(
        &self,
        request: Request<wire::configure::Request>,
    ) -> Result<Response<wire::configure::Response>, Status> {
        let request = request.into_inner();
        tracing::debug!(rpc = "Configure", terraform_version = %request.terraform_version, "call");
        let mut diagnostics = Diagnostics::new();
        let ty = self.engine.provider_type();
        let what = "provider configuration";
        if let Some(config) = collect(&mut diagnostics, decode(request.config.as_ref(), ty, what)) {
            let capabilities = convert::client_capabilities(request.client_capabilities.as_ref());
            diagnostics.extend(
                self.engine
                    .configure(ConfigureRequest {
                        terraform_version: request.terraform_version,
                        config,
                        client_capabilities: capabilities,
                    })
                    .await,
            );
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
        let found = self.engine.resource(&request.type_name).and_then(|rt| {
            let state = decode(
                request.current_state.as_ref(),
                &rt.value_type,
                "current state",
            );
            state.map(|state| (rt, state))
        });
        if let Some((rt, state)) = collect(&mut diagnostics, found) {
            let read = self
                .engine
                .read_resource(
                    rt,
                    ReadRequest {
                        state,
                        private: request.private,
                    },
                )
                .await;
            diagnostics.extend(read.diagnostics);
            if let Some(encoded) = collect(
                &mut diagnostics,
                encode(&read.state, &rt.value_type, "refreshed state"),
            ) {
                new_state = Some(encoded);
                private = read.private;
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
        let found = self.engine.resource(&request.type_name).and_then(|rt| {
            let values = decode_all(
                &rt.value_type,
                [
                    (request.prior_state.as_ref(), "prior state"),
                    (request.proposed_new_state.as_ref(), "proposed new state"),
                    (request.config.as_ref(), "configuration"),
                ],
            );
            values.map(|values| (rt, values))
        });
        if let Some((rt, [prior, proposed, config])) = collect(&mut diagnostics, found) {
            let planned = self
                .engine
                .plan_resource(rt, prior, proposed, config, request.prior_private)
                .await;
            diagnostics.extend(planned.diagnostics);
            reply.planned_state = collect(
                &mut diagnostics,
                encode(&planned.planned_state, &rt.value_type, "planned state"),
            );
            reply.planned_private = planned.planned_private;
            reply.requires_replace = planned
                .requires_replace
                .iter()
                .map(convert::attribute_path)
                .collect();
        }
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
        let found = self.engine.resource(&request.type_name).and_then(|rt| {
            let values = decode_all(
                &rt.value_type,
                [
                    (request.prior_state.as_ref(), "prior state"),
                    (request.planned_state.as_ref(), "planned state"),
                    (request.config.as_ref(), "configuration"),
                ],
            );
            values.map(|values| (rt, values))
        });
        let Some((rt, [prior_state, planned_state, config])) = collect(&mut diagnostics, found)
        else {
            // Nothing was changed: keep what Terraform had.
            return Ok(Response::new(wire::apply_resource_change::Response {
                new_state: request.prior_state,
                private: request.planned_private,
                diagnostics: wire_diagnostics(&diagnostics),
                ..Default::default()
            }));
        };
        let applied = self
            .engine
            .apply_resource(
                rt,
                ApplyRequest {
                    prior_state,
                    planned_state,
                    config,
                    planned_private: request.planned_private,
                },
            )
            .await;
        diagnostics.extend(applied.diagnostics);
        let new_state = collect(
            &mut diagnostics,
            encode(&applied.state, &rt.value_type, "new state"),
        );
        Ok(Response::new(wire::apply_resource_change::Response {
            new_state,
            private: applied.private,
            diagnostics: wire_diagnostics(&diagnostics),
            ..Default::default()
        }))
    }

    async fn import_resource_state(
        &self,
        request: Request<wire::import_resource_state::Request>,
    ) -> Result<Response<wire::import_resource_state::Response>, Status> {
        let request = request.into_inner();
        tracing::debug!(rpc = "ImportResourceState", resource_type = %request.type_name, "call");
        let mut diagnostics = Diagnostics::new();
        let mut imported_resources = Vec::new();
        if let Some(rt) = collect(&mut diagnostics, self.engine.resource(&request.type_name)) {
            let imported = self.engine.import_resource(rt, &request.id).await;
            diagnostics.extend(imported.diagnostics);
            if !imported.state.is_null() {
                if let Some(encoded) = collect(
                    &mut diagnostics,
                    encode(&imported.state, &rt.value_type, "imported state"),
                ) {
                    imported_resources.push(wire::import_resource_state::ImportedResource {
                        type_name: request.type_name.clone(),
                        state: Some(encoded),
                        private: imported.private,
                    });
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
        let mut diagnostics = Diagnostics::new();
        let mut state = None;
        let found = self.engine.data_source(&request.type_name).and_then(|ds| {
            let config = decode(
                request.config.as_ref(),
                &ds.value_type,
                "data source configuration",
            );
            config.map(|config| (ds, config))
        });
        if let Some((ds, config)) = collect(&mut diagnostics, found) {
            let read = self.engine.read_data_source(ds, config).await;
            diagnostics.extend(read.diagnostics);
            if !read.state.is_null() {
                state = collect(
                    &mut diagnostics,
                    encode(&read.state, &ds.value_type, "data source state"),
                );
            }
        }
        Ok(Response::new(wire::read_data_source::Response {
            state,
            diagnostics: wire_diagnostics(&diagnostics),
            deferred: None,
        }))
    }

    async fn stop(
        &self,
        _request: Request<wire::stop::Request>,
    ) -> Result<Response<wire::stop::Response>, Status> {
        tracing::debug!(rpc = "Stop", "call");
        self.engine.stop();
        Ok(Response::new(wire::stop::Response {
            error: String::new(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::testing::{thing_schema, Echo, Fake};
    use crate::framework::AttributePath;
    use crate::framework::DataSource;
    use std::sync::atomic::Ordering;

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
                        svc.engine.provider_type(),
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

    /// A unary gRPC request for `path` carrying `message`, as a client sends it.
    fn grpc_request(path: &str, message: &impl prost::Message) -> http::Request<tonic::body::Body> {
        let message = message.encode_to_vec();
        let mut frame = vec![0];
        frame.extend_from_slice(&u32::try_from(message.len()).expect("small").to_be_bytes());
        frame.extend_from_slice(&message);
        http::Request::builder()
            .method("POST")
            .uri(format!("http://localhost{path}"))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(tonic::body::Body::new(http_body_util::Full::new(
                Bytes::from(frame),
            )))
            .expect("request")
    }

    /// The message and trailers of a unary gRPC answer.
    async fn grpc_answer<M: prost::Message + Default>(
        answer: http::Response<tonic::body::Body>,
    ) -> (M, http::HeaderMap) {
        use http_body_util::BodyExt;
        assert_eq!(answer.headers()["content-type"], "application/grpc");
        let collected = answer.into_body().collect().await.expect("body");
        let trailers = collected.trailers().cloned().expect("trailers");
        let bytes = collected.to_bytes();
        assert_eq!(bytes[0], 0, "uncompressed");
        let length = u32::from_be_bytes(bytes[1..5].try_into().expect("length")) as usize;
        assert_eq!(bytes.len(), 5 + length, "one whole message");
        (M::decode(&bytes[5..]).expect("message"), trailers)
    }

    #[tokio::test]
    async fn get_schema_is_answered_from_bytes_encoded_once_and_other_methods_by_tonic() {
        use tower::Service as _;
        let mut grpc = ProviderGrpc::new(Arc::new(Fake::default()), 1 << 20);
        let expected = service()
            .get_schema(Request::new(Default::default()))
            .await
            .expect("reply")
            .into_inner();
        for _ in 0..2 {
            let answer = grpc
                .call(grpc_request(
                    GET_SCHEMA_PATH,
                    &wire::get_provider_schema::Request {},
                ))
                .await
                .expect("answer");
            let (reply, trailers) =
                grpc_answer::<wire::get_provider_schema::Response>(answer).await;
            assert_eq!(reply, expected);
            assert_eq!(trailers["grpc-status"], "0");
        }
        assert_eq!(
            grpc.service.schema_frame().as_ptr(),
            grpc.service.schema_frame().as_ptr(),
            "encoded once, then shared"
        );
        let answer = grpc
            .call(grpc_request(
                "/tfplugin5.Provider/GetMetadata",
                &wire::get_metadata::Request {},
            ))
            .await
            .expect("answer");
        let (metadata, trailers) = grpc_answer::<wire::get_metadata::Response>(answer).await;
        assert_eq!(metadata.resources[0].type_name, "fake_thing");
        assert_eq!(trailers["grpc-status"], "0");
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
            svc.engine.provider_type(),
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
        assert!(!svc.engine.provider().stopped.load(Ordering::SeqCst));
        let reply = svc
            .stop(Request::new(wire::stop::Request {}))
            .await
            .expect("reply")
            .into_inner();
        assert!(reply.error.is_empty());
        assert!(svc.engine.provider().stopped.load(Ordering::SeqCst));
    }

    fn echo(input: &str) -> Option<DynamicValue> {
        let config = Value::object([("input", Value::from(input)), ("output", Value::Null)]);
        let ty = Echo::schema().value_type();
        Some(codec::encode_dynamic(&config, &ty).expect("encodes"))
    }

    #[tokio::test]
    async fn a_data_source_is_described_validated_and_read() {
        let svc = service();
        let schema = svc
            .get_schema(Request::new(Default::default()))
            .await
            .expect("reply")
            .into_inner();
        assert!(schema.data_source_schemas.contains_key("fake_echo"));
        let metadata = svc
            .get_metadata(Request::new(Default::default()))
            .await
            .expect("reply")
            .into_inner();
        assert_eq!(metadata.data_sources[0].type_name, "fake_echo");

        let validate = |input: &str| {
            svc.validate_data_source_config(Request::new(
                wire::validate_data_source_config::Request {
                    type_name: "fake_echo".into(),
                    config: echo(input),
                },
            ))
        };
        let bad = validate("").await.expect("reply").into_inner();
        assert_eq!(summaries(&bad.diagnostics), ["Empty input"]);
        let path = bad.diagnostics[0].attribute.as_ref().expect("path");
        assert_eq!(
            convert::attribute_path_from_wire(path),
            AttributePath::attr("input")
        );
        assert!(validate("hi")
            .await
            .expect("reply")
            .into_inner()
            .diagnostics
            .is_empty());

        let read = || {
            Request::new(wire::read_data_source::Request {
                type_name: "fake_echo".into(),
                config: echo("hi"),
                ..Default::default()
            })
        };
        let early = svc
            .read_data_source(read())
            .await
            .expect("reply")
            .into_inner();
        assert_eq!(summaries(&early.diagnostics), ["Provider not configured"]);
        let svc = configured().await;
        let reply = svc
            .read_data_source(read())
            .await
            .expect("reply")
            .into_inner();
        assert!(reply.diagnostics.is_empty(), "{:?}", reply.diagnostics);
        let ty = Echo::schema().value_type();
        let state = codec::decode_dynamic(reply.state.as_ref(), &ty).expect("decodes");
        assert_eq!(state.get_str("output"), Some("HI"));
    }
}
