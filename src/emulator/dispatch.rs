//! The API request pipeline: latency, auth, discovery match and conformance, faults, the handler
//! (under the world lock, so every call is atomic), long waits, the request log.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::Request;
use axum::http::HeaderMap;
use axum::response::Response;
use serde_json::{json, Value};
use time::OffsetDateTime;

use super::discovery::{discovery, Api, Method};
use super::error::ApiError;
use super::faults::{Fired, OpFault};
use super::state::{lock, redact, Mismatch, RequestRecord, Shared, World};
use super::system::{has_query_token, SystemParams};
use super::{compute, enums, iap, resource_manager, run, service_usage, ConnKill, Options};

/// One API call as a handler sees it.
pub(crate) struct Call<'a> {
    pub method: &'a Method,
    pub params: &'a BTreeMap<String, String>,
    pub query: &'a [(String, String)],
    pub body: &'a Value,
    pub now: Instant,
    pub wall: OffsetDateTime,
    pub options: &'a Options,
    pub op_fault: Option<&'a OpFault>,
}

impl<'a> Call<'a> {
    /// A path parameter.
    pub fn param(&self, name: &str) -> Result<&'a str, ApiError> {
        self.params
            .get(name)
            .map(String::as_str)
            .ok_or_else(|| ApiError::invalid(format!("Missing path parameter '{name}'.")))
    }

    /// The first value of a query parameter.
    pub fn query(&self, name: &str) -> Option<&'a str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// A boolean query parameter.
    pub fn flag(&self, name: &str) -> bool {
        self.query(name) == Some("true")
    }

    /// Now, as RFC 3339 in UTC.
    pub fn timestamp(&self) -> String {
        rfc3339(self.wall)
    }

    /// When an operation started now completes.
    pub fn operation_done_at(&self) -> Instant {
        let extra = self.op_fault.map_or(Duration::ZERO, |f| f.extra_delay);
        self.now + Duration::from_millis(self.options.operation_delay_ms) + extra
    }

    /// Polls an operation started now answers "not done" regardless of time.
    pub fn operation_polls(&self) -> u32 {
        self.op_fault.map_or(0, |f| f.polls)
    }

    /// Until when a service agent this call provisions stays unusable in IAM policies, if a
    /// propagation fault fired.
    pub fn agent_usable_at(&self) -> Option<Instant> {
        self.op_fault
            .map(|f| f.agent_propagation)
            .filter(|d| !d.is_zero())
            .map(|d| self.now + d)
    }

    /// The injected failure of the operation this call starts, if any: (google.rpc.Code, message).
    pub fn operation_error(&self) -> Option<(i32, String)> {
        self.op_fault.and_then(|f| f.error.clone())
    }
}

/// RFC 3339 in UTC, the way Google prints timestamps.
pub(crate) fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".to_string())
}

/// What a handler decided.
pub(crate) enum Outcome {
    /// 200 with this body.
    Json(Value),
    /// Block until a Cloud Run operation is done or the deadline passes.
    WaitRun { key: run::OpKey, deadline: Instant },
    /// Block until a compute operation is done or the deadline passes.
    WaitCompute {
        key: compute::OpKey,
        deadline: Instant,
    },
}

/// A handler: runs under the world lock.
pub(crate) type Handler = fn(&mut World, &Call<'_>) -> Result<Outcome, ApiError>;

/// A route: (API version, discovery method id, handler).
pub(crate) type Route = (&'static str, &'static str, Handler);

/// Every route the emulator serves, keyed by (version, method id).
pub(crate) fn routes() -> &'static HashMap<(&'static str, &'static str), Handler> {
    static ROUTES: OnceLock<HashMap<(&'static str, &'static str), Handler>> = OnceLock::new();
    ROUTES.get_or_init(|| {
        let mut map = HashMap::new();
        for table in [
            run::ROUTES,
            iap::ROUTES,
            compute::ROUTES,
            service_usage::ROUTES,
            resource_manager::ROUTES,
        ] {
            for (version, id, handler) in table {
                map.insert((*version, *id), *handler);
            }
        }
        map
    })
}

/// The API a route table entry belongs to, derived from the method id.
#[cfg(test)]
fn api_of(id: &str) -> Option<Api> {
    match id.split('.').next()? {
        "run" => Some(Api::Run),
        "iap" => Some(Api::Iap),
        "compute" => Some(Api::Compute),
        "serviceusage" => Some(Api::ServiceUsage),
        "cloudresourcemanager" => Some(Api::ResourceManager),
        _ => None,
    }
}

/// Whether the request carries a non-empty bearer token.
pub(crate) fn has_bearer(headers: &HeaderMap) -> bool {
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .is_some_and(|(scheme, token)| {
            scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty()
        })
}

struct Exchange<'a> {
    shared: &'a Shared,
    method: String,
    path: String,
    query: String,
    logged_body: Value,
}

impl Exchange<'_> {
    fn finish(&self, response: Response) -> Response {
        self.record(response.status().as_u16());
        response
    }

    fn record(&self, status: u16) {
        tracing::debug!(method = %self.method, path = %self.path, status, "api request");
        lock(&self.shared.journal).record(RequestRecord {
            method: self.method.clone(),
            path: self.path.clone(),
            query: self.query.clone(),
            body: self.logged_body.clone(),
            status,
        });
    }

    fn mismatch(&self, method_id: Option<&str>, problems: Vec<String>) {
        tracing::warn!(method = %self.method, path = %self.path, ?problems, "request does not conform to discovery");
        lock(&self.shared.journal).mismatches.push(Mismatch {
            method: self.method.clone(),
            path: self.path.clone(),
            query: self.query.clone(),
            method_id: method_id.map(str::to_string),
            problems,
        });
    }
}

/// Serve one API request.
pub(crate) async fn api(shared: Arc<Shared>, kill: Option<ConnKill>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, 32 * 1024 * 1024)
        .await
        .unwrap_or_default();
    if shared.options.latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(shared.options.latency_ms)).await;
    }
    let path = parts.uri.path().to_string();
    let raw_query = parts.uri.query().unwrap_or("").to_string();
    let (mut body, body_error) = if bytes.iter().all(u8::is_ascii_whitespace) {
        (None, None)
    } else {
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(value) => (Some(value), None),
            Err(error) => (
                None,
                Some(format!("Invalid JSON payload received. {error}")),
            ),
        }
    };
    let exchange = Exchange {
        shared: &shared,
        method: parts.method.as_str().to_string(),
        path: path.clone(),
        query: raw_query.clone(),
        logged_body: body.as_ref().map(redact).unwrap_or(Value::Null),
    };

    let found = discovery().find(parts.method.as_str(), &path);
    let legacy = match &found {
        Ok(m) => m.method.api.legacy_errors(),
        Err(_) => path.starts_with("/compute/"),
    };
    if !shared.options.open && !has_bearer(&parts.headers) && !has_query_token(&raw_query) {
        return exchange.finish(ApiError::unauthenticated().response(legacy));
    }
    let matched = match found {
        Ok(matched) => matched,
        Err(other_method) => {
            let problem = if other_method {
                format!(
                    "{} is not a method of {path} in the discovery documents",
                    parts.method
                )
            } else {
                format!("No discovery method serves {} {path}", parts.method)
            };
            exchange.mismatch(None, vec![problem]);
            let error = ApiError::not_found(format!(
                "The requested URL {path} was not found on this server."
            ));
            return exchange.finish(error.response(legacy));
        }
    };
    let method = matched.method;

    let query: Vec<(String, String)> = match serde_urlencoded::from_str(&raw_query) {
        Ok(query) => query,
        Err(error) => {
            let problem = format!("Malformed query string: {error}");
            exchange.mismatch(Some(&method.id), vec![problem.clone()]);
            return exchange.finish(ApiError::invalid(problem).response(legacy));
        }
    };
    let doc = discovery().doc(method);
    let split = match doc {
        Some(doc) => SystemParams::split(doc, method, query),
        None => Ok((query, SystemParams::default())),
    };
    let (mut query, system) = match split {
        Ok(split) => split,
        Err(problem) => {
            exchange.mismatch(Some(&method.id), vec![problem.clone()]);
            return exchange.finish(ApiError::invalid(problem).response(legacy));
        }
    };
    // Google reads enums as names or numbers; handlers see names.
    enums::query_to_names(method, &mut query);
    if let (Some(doc), Some(body)) = (doc, body.as_mut()) {
        enums::body_to_names(doc, method, body);
    }
    let mut problems = discovery().check_query(method, &query);
    problems.extend(body_error);
    problems.extend(discovery().check_body(method, body.as_ref()));
    if !problems.is_empty() {
        exchange.mismatch(Some(&method.id), problems.clone());
        let violations: Vec<Value> = problems.iter().map(|p| json!({"description": p})).collect();
        let error = ApiError::invalid(problems.join(" "))
            .with_detail(json!({"@type": "type.googleapis.com/google.rpc.BadRequest", "fieldViolations": violations}));
        return exchange.finish(error.response(legacy));
    }

    let fired = lock(&shared.faults).fire(parts.method.as_str(), &path, method.returns_operation());
    let Fired {
        delay,
        terminal,
        operation,
    } = fired;
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    if let Some(terminal) = terminal {
        match terminal.into_error(&path) {
            Some(error) => return exchange.finish(error.response(legacy)),
            None => {
                // Drop the connection without answering.
                exchange.record(0);
                match kill {
                    Some(kill) => {
                        kill.0.notify_one();
                        std::future::pending::<()>().await;
                    }
                    None => {
                        let mut response = Response::new(Body::empty());
                        *response.status_mut() = axum::http::StatusCode::BAD_GATEWAY;
                        return response;
                    }
                }
            }
        }
    }

    let Some(handler) = routes().get(&(method.version, method.id.as_str())) else {
        let error =
            ApiError::unimplemented(format!("iaprun-emulator does not implement {}.", method.id));
        return exchange.finish(error.response(legacy));
    };
    let body_value = body.unwrap_or(Value::Null);
    let outcome = {
        let mut world = lock(&shared.world);
        let call = Call {
            method,
            params: &matched.params,
            query: &query,
            body: &body_value,
            now: Instant::now(),
            wall: OffsetDateTime::now_utc(),
            options: &shared.options,
            op_fault: operation.as_ref(),
        };
        preflight(&mut world, &call).and_then(|_| handler(&mut world, &call))
    };
    let result = match outcome {
        Ok(Outcome::Json(value)) => Ok(value),
        Ok(Outcome::WaitRun { key, deadline }) => {
            wait(&shared, deadline, |w, now| {
                run::wait_step(w, &key, now, deadline)
            })
            .await
        }
        Ok(Outcome::WaitCompute { key, deadline }) => {
            wait(&shared, deadline, |w, now| {
                compute::wait_step(w, &key, now, deadline)
            })
            .await
        }
        Err(error) => Err(error),
    };
    match result {
        Ok(value) => {
            let problems = discovery().check_response(method, &value);
            if !problems.is_empty() {
                tracing::error!(id = %method.id, ?problems, "emulator response does not fit the discovery schema");
                lock(&shared.journal).response_problems.push(Mismatch {
                    method: exchange.method.clone(),
                    path: path.clone(),
                    query: raw_query.clone(),
                    method_id: Some(method.id.clone()),
                    problems,
                });
            }
            exchange.finish(system.answer(doc, method, value))
        }
        Err(error) => exchange.finish(error.response(legacy)),
    }
}

/// Poll a wait step under the lock, sleeping (without the lock) until it says it is finished.
async fn wait<F>(shared: &Shared, deadline: Instant, mut step: F) -> Result<Value, ApiError>
where
    F: FnMut(&mut World, Instant) -> Result<(Value, Option<Instant>), ApiError>,
{
    loop {
        let (value, next) = {
            let mut world = lock(&shared.world);
            step(&mut world, Instant::now())?
        };
        match next {
            Some(until) if Instant::now() < deadline => {
                tokio::time::sleep_until(tokio::time::Instant::from_std(until.min(deadline))).await;
            }
            _ => return Ok(value),
        }
    }
}

/// The project a call addresses, as written in the request.
pub(crate) fn project_label<'a>(call: &Call<'a>) -> Option<&'a str> {
    if let Some(project) = call.params.get("project") {
        return Some(project.as_str());
    }
    call.params.values().find_map(|v| {
        v.strip_prefix("projects/")
            .map(|rest| rest.split('/').next().unwrap_or(rest))
    })
}

/// Checks common to every API: the project resolves and the API is enabled in it.
fn preflight(world: &mut World, call: &Call<'_>) -> Result<(), ApiError> {
    let api = call.method.api;
    let Some(service) = api.service_name() else {
        return Ok(());
    };
    let Some(label) = project_label(call) else {
        return Ok(());
    };
    let wall = call.timestamp();
    let project = world
        .projects
        .resolve(label, &wall)
        .map_err(|e| e.to_api(label, api.legacy_errors()))?;
    if project.service_enabled(service) {
        return Ok(());
    }
    Err(service_disabled(api, service, &project.number))
}

/// The 403 an API answers when it is disabled in the project.
pub(crate) fn service_disabled(api: Api, service: &str, number: &str) -> ApiError {
    let title = service_usage::title(service);
    let url = format!(
        "https://console.developers.google.com/apis/api/{service}/overview?project={number}"
    );
    let message = format!(
        "{title} has not been used in project {number} before or it is disabled. Enable it by visiting {url} then \
         retry. If you enabled this API recently, wait a few minutes for the action to propagate to our systems and \
         retry."
    );
    let mut error = ApiError::permission_denied(message).with_detail(json!({
        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
        "reason": "SERVICE_DISABLED",
        "domain": "googleapis.com",
        "metadata": {"service": service, "consumer": format!("projects/{number}"), "activationUrl": url,
                     "serviceTitle": title, "containerInfo": number},
    }));
    if api.legacy_errors() {
        error.reason = "accessNotConfigured";
    }
    error
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_a_discovery_method() {
        let tables = [
            run::ROUTES,
            iap::ROUTES,
            compute::ROUTES,
            service_usage::ROUTES,
            resource_manager::ROUTES,
        ];
        let mut count = 0;
        for table in tables {
            for (version, id, _) in table {
                let api = api_of(id).unwrap_or_else(|| panic!("{id} names no known API"));
                assert!(
                    discovery().method(api, version, id).is_some(),
                    "{version} {id} is not in the discovery documents"
                );
                count += 1;
            }
        }
        assert_eq!(routes().len(), count, "a route is listed twice");
    }

    #[test]
    fn bearer_tokens() {
        let mut headers = HeaderMap::new();
        assert!(!has_bearer(&headers));
        headers.insert("authorization", "Bearer ".parse().unwrap());
        assert!(!has_bearer(&headers));
        headers.insert("authorization", "bearer ya29.x".parse().unwrap());
        assert!(has_bearer(&headers));
    }
}
