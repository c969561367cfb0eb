//! The admin API under `/__emulator/`: request log, conformance mismatches, faults, reset, raw
//! state, project attributes and service-account keys.

use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::{delete, get, post};
use axum::Router;
use serde::Deserialize;
use serde_json::{json, Value};

use super::error::json_response;
use super::faults::FaultSpec;
use super::state::{lock, Shared};
use super::{compute, dispatch, iap, run, EmulatorState, ProjectUpdate};

pub(crate) fn router() -> Router<EmulatorState> {
    Router::new()
        .route(
            "/health",
            get(|| async { json_response(200, &json!({"ok": true})) }),
        )
        .route("/requests", get(requests))
        .route("/requests/clear", post(clear_requests))
        .route("/mismatches", get(mismatches))
        .route("/mismatches/clear", post(clear_mismatches))
        .route("/response-problems", get(response_problems))
        .route(
            "/faults",
            get(list_faults).post(add_fault).delete(clear_faults),
        )
        .route("/faults/{id}", delete(remove_fault))
        .route("/reset", post(reset))
        .route("/state", get(state))
        .route(
            "/projects/{project}",
            get(project).patch(patch_project).post(patch_project),
        )
        .route("/service-accounts", post(service_account))
}

fn bad_request(message: impl Into<String>) -> Response {
    json_response(400, &json!({"error": message.into()}))
}

fn parse<T: for<'de> Deserialize<'de>>(body: &Bytes) -> Result<T, Box<Response>> {
    let text = if body.iter().all(u8::is_ascii_whitespace) {
        &b"{}"[..]
    } else {
        &body[..]
    };
    serde_json::from_slice(text).map_err(|e| Box::new(bad_request(format!("invalid JSON: {e}"))))
}

async fn requests(State(state): State<EmulatorState>) -> Response {
    json_response(
        200,
        &serde_json::to_value(&lock(&state.0.journal).requests).unwrap_or(Value::Null),
    )
}

async fn clear_requests(State(state): State<EmulatorState>) -> Response {
    lock(&state.0.journal).requests.clear();
    json_response(200, &json!({}))
}

async fn mismatches(State(state): State<EmulatorState>) -> Response {
    json_response(
        200,
        &serde_json::to_value(&lock(&state.0.journal).mismatches).unwrap_or(Value::Null),
    )
}

async fn clear_mismatches(State(state): State<EmulatorState>) -> Response {
    lock(&state.0.journal).mismatches.clear();
    json_response(200, &json!({}))
}

async fn response_problems(State(state): State<EmulatorState>) -> Response {
    json_response(
        200,
        &serde_json::to_value(&lock(&state.0.journal).response_problems).unwrap_or(Value::Null),
    )
}

async fn list_faults(State(state): State<EmulatorState>) -> Response {
    json_response(200, &lock(&state.0.faults).list())
}

async fn add_fault(State(state): State<EmulatorState>, body: Bytes) -> Response {
    let spec: FaultSpec = match parse(&body) {
        Ok(spec) => spec,
        Err(response) => return *response,
    };
    match lock(&state.0.faults).add(spec) {
        Ok(id) => json_response(200, &json!({"id": id})),
        Err(message) => bad_request(message),
    }
}

async fn clear_faults(State(state): State<EmulatorState>) -> Response {
    lock(&state.0.faults).clear();
    json_response(200, &json!({}))
}

async fn remove_fault(State(state): State<EmulatorState>, Path(id): Path<u64>) -> Response {
    if lock(&state.0.faults).remove(id) {
        json_response(200, &json!({}))
    } else {
        json_response(404, &json!({"error": format!("no fault {id}")}))
    }
}

async fn reset(State(state): State<EmulatorState>) -> Response {
    state.0.reset();
    json_response(200, &json!({}))
}

async fn state(State(state): State<EmulatorState>) -> Response {
    json_response(200, &dump(&state.0))
}

/// The whole world as JSON, for tests and debugging.
pub(crate) fn dump(shared: &Shared) -> Value {
    let world = lock(&shared.world);
    let now = Instant::now();
    json!({
        "projects": world.projects.all().map(|p| p.admin_view()).collect::<Vec<_>>(),
        "run": run::dump(&world, now),
        "iap": iap::dump(&world),
        "compute": compute::dump(&world, now),
        "service_accounts": world.tokens.accounts.keys().collect::<Vec<_>>(),
        "tokens_issued": world.tokens.issued,
    })
}

async fn project(State(state): State<EmulatorState>, Path(project): Path<String>) -> Response {
    match update_project(&state.0, &project, ProjectUpdate::default()) {
        Ok(view) => json_response(200, &view),
        Err(message) => bad_request(message),
    }
}

async fn patch_project(
    State(state): State<EmulatorState>,
    Path(project): Path<String>,
    body: Bytes,
) -> Response {
    let update: ProjectUpdate = match parse(&body) {
        Ok(update) => update,
        Err(response) => return *response,
    };
    match update_project(&state.0, &project, update) {
        Ok(view) => json_response(200, &view),
        Err(message) => bad_request(message),
    }
}

/// Apply a project update (creating the project on first use).
pub(crate) fn update_project(
    shared: &Shared,
    ident: &str,
    update: ProjectUpdate,
) -> Result<Value, String> {
    let wall = dispatch::rfc3339(time::OffsetDateTime::now_utc());
    let mut world = lock(&shared.world);
    let project = world
        .projects
        .resolve(ident, &wall)
        .map_err(|_| format!("'{ident}' is not a valid project id or a known project number"))?;
    if let Some(parent) = update.parent {
        if let Some(p) = &parent {
            if p.kind != "organization" && p.kind != "folder" {
                return Err("parent.type must be \"organization\" or \"folder\"".into());
            }
        }
        project.parent = parent;
    }
    if let Some(domain) = update.organization_domain {
        project.organization_domain = domain;
    }
    if let Some(services) = update.services {
        project.services.extend(services);
    }
    if let Some(agents) = update.service_agents {
        project.agents.extend(agents);
    }
    if let Some(restrict) = update.restrict_public_members {
        project.restrict_public_members = restrict;
    }
    Ok(project.admin_view())
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct AccountRequest {
    project_id: Option<String>,
    account_id: Option<String>,
    public_key_pem: Option<String>,
}

async fn service_account(
    State(state): State<EmulatorState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request: AccountRequest = match parse(&body) {
        Ok(request) => request,
        Err(response) => return *response,
    };
    let host = headers
        .get("host")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1")
        .to_string();
    let token_uri = format!("http://{host}/token");
    let shared = state.0.clone();
    let created = tokio::task::spawn_blocking(move || {
        super::token::create_account(
            &shared,
            request.project_id.as_deref(),
            request.account_id.as_deref(),
            request.public_key_pem.as_deref(),
            &token_uri,
        )
    })
    .await;
    match created {
        Ok(Ok(key)) => json_response(200, &key),
        Ok(Err(message)) => bad_request(message),
        Err(error) => json_response(500, &json!({"error": error.to_string()})),
    }
}
