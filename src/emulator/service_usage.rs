//! Service Usage v1 / v1beta1: whether an API is enabled in a project, enabling and disabling it,
//! and provisioning service agents (generateServiceIdentity).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::dispatch::{Call, Outcome, Route};
use super::error::ApiError;
use super::state::{agent_email, World};

/// The routes this module serves.
pub(crate) const ROUTES: &[Route] = &[
    (
        "v1beta1",
        "serviceusage.services.generateServiceIdentity",
        generate_service_identity,
    ),
    ("v1beta1", "serviceusage.services.get", get),
    ("v1", "serviceusage.services.get", get),
    ("v1beta1", "serviceusage.services.enable", enable),
    ("v1", "serviceusage.services.enable", enable),
    ("v1beta1", "serviceusage.services.disable", disable),
    ("v1", "serviceusage.services.disable", disable),
    ("v1beta1", "serviceusage.services.batchEnable", batch_enable),
    ("v1", "serviceusage.services.batchEnable", batch_enable),
    ("v1beta1", "serviceusage.services.list", list),
    ("v1", "serviceusage.services.list", list),
    ("v1", "serviceusage.services.batchGet", batch_get),
    ("v1beta1", "serviceusage.operations.get", operation_get),
    ("v1", "serviceusage.operations.get", operation_get),
];

/// Finished enable/disable operations, by name.
#[derive(Default)]
pub(crate) struct UsageState {
    pub operations: BTreeMap<String, Value>,
}

/// A service's display title.
pub(crate) fn title(service: &str) -> String {
    match service {
        "iap.googleapis.com" => "Cloud Identity-Aware Proxy API".to_string(),
        "run.googleapis.com" => "Cloud Run Admin API".to_string(),
        "compute.googleapis.com" => "Compute Engine API".to_string(),
        "serviceusage.googleapis.com" => "Service Usage API".to_string(),
        "cloudresourcemanager.googleapis.com" => "Cloud Resource Manager API".to_string(),
        "iam.googleapis.com" => "Identity and Access Management (IAM) API".to_string(),
        other => other.to_string(),
    }
}

fn valid_service(service: &str) -> bool {
    service.ends_with(".googleapis.com")
        && service.len() > ".googleapis.com".len()
        && service
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
}

fn unknown_service(service: &str) -> ApiError {
    ApiError::permission_denied(format!(
        "Not found or permission denied for service(s): {service}."
    ))
}

/// Resolve `projects/{p}[/services/{s}]`: (project id, number, service).
fn locate(
    world: &mut World,
    call: &Call<'_>,
    name: &str,
) -> Result<(String, String, Option<String>), ApiError> {
    let parts: Vec<&str> = name.split('/').collect();
    let (container, label, service) = match parts.as_slice() {
        [container, label] => (*container, *label, None),
        [container, label, "services", service] => (*container, *label, Some(service.to_string())),
        _ => {
            return Err(ApiError::invalid(format!(
                "Invalid resource name '{name}'."
            )))
        }
    };
    if container != "projects" {
        return Err(ApiError::unimplemented(format!(
            "iaprun-emulator models projects only, not '{container}'."
        )));
    }
    let wall = call.timestamp();
    let project = world
        .projects
        .resolve(label, &wall)
        .map_err(|e| e.to_api(label, false))?;
    if let Some(service) = &service {
        if !valid_service(service) {
            return Err(unknown_service(service));
        }
    }
    Ok((project.id.clone(), project.number.clone(), service))
}

fn service_view(world: &World, project: &str, number: &str, service: &str) -> Value {
    let enabled = world
        .projects
        .get(project)
        .is_some_and(|p| p.service_enabled(service));
    json!({
        "name": format!("projects/{number}/services/{service}"),
        "parent": format!("projects/{number}"),
        "config": {"name": service, "title": title(service)},
        "state": if enabled { "ENABLED" } else { "DISABLED" },
    })
}

fn get(world: &mut World, call: &Call<'_>) -> Result<Outcome, ApiError> {
    let (project, number, service) = locate(world, call, call.param("name")?)?;
    let service = service.ok_or_else(|| ApiError::invalid("A service name is required."))?;
    Ok(Outcome::Json(service_view(
        world, &project, &number, &service,
    )))
}

fn set_enabled(world: &mut World, project: &str, service: &str, enabled: bool) -> bool {
    let Some(p) = world.projects.get(project).map(|p| p.id.clone()) else {
        return false;
    };
    let wall = String::new();
    match world.projects.resolve(&p, &wall) {
        Ok(p) => {
            let changed = p.service_enabled(service) != enabled;
            p.services.insert(service.to_string(), enabled);
            changed
        }
        Err(_) => false,
    }
}

/// A finished enable/disable operation (`noop.DONE_OPERATION` when nothing changed).
fn finished_operation(
    world: &mut World,
    call: &Call<'_>,
    number: &str,
    changed: bool,
    response: Value,
) -> Value {
    if !changed {
        return json!({"name": "operations/noop.DONE_OPERATION", "done": true, "response": response});
    }
    let name = format!("operations/acat.p2-{number}-{}", uuid::Uuid::new_v4());
    let op = json!({
        "name": name,
        "metadata": {"@type": format!("type.googleapis.com/google.api.serviceusage.{}.OperationMetadata", call.method.version)},
        "done": true,
        "response": response,
    });
    world.usage.operations.insert(name, op.clone());
    op
}

fn enable(world: &mut World, call: &Call<'_>) -> Result<Outcome, ApiError> {
    let (project, number, service) = locate(world, call, call.param("name")?)?;
    let service = service.ok_or_else(|| ApiError::invalid("A service name is required."))?;
    let changed = set_enabled(world, &project, &service, true);
    let response = match call.method.version {
        "v1" => {
            json!({"@type": "type.googleapis.com/google.api.serviceusage.v1.EnableServiceResponse",
                       "service": service_view(world, &project, &number, &service)})
        }
        _ => json!({"@type": "type.googleapis.com/google.protobuf.Empty"}),
    };
    Ok(Outcome::Json(finished_operation(
        world, call, &number, changed, response,
    )))
}

fn disable(world: &mut World, call: &Call<'_>) -> Result<Outcome, ApiError> {
    let (project, number, service) = locate(world, call, call.param("name")?)?;
    let service = service.ok_or_else(|| ApiError::invalid("A service name is required."))?;
    let changed = set_enabled(world, &project, &service, false);
    let response = match call.method.version {
        "v1" => {
            json!({"@type": "type.googleapis.com/google.api.serviceusage.v1.DisableServiceResponse",
                       "service": service_view(world, &project, &number, &service)})
        }
        _ => json!({"@type": "type.googleapis.com/google.protobuf.Empty"}),
    };
    Ok(Outcome::Json(finished_operation(
        world, call, &number, changed, response,
    )))
}

fn batch_enable(world: &mut World, call: &Call<'_>) -> Result<Outcome, ApiError> {
    let (project, number, _) = locate(world, call, call.param("parent")?)?;
    let ids: Vec<String> = call
        .body
        .get("serviceIds")
        .and_then(Value::as_array)
        .map(|ids| {
            ids.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    if ids.is_empty() || ids.len() > 20 {
        return Err(ApiError::invalid(
            "serviceIds must name between 1 and 20 services.",
        ));
    }
    if let Some(bad) = ids.iter().find(|s| !valid_service(s)) {
        return Err(unknown_service(bad));
    }
    let mut changed = false;
    for id in &ids {
        changed |= set_enabled(world, &project, id, true);
    }
    let services: Vec<Value> = ids
        .iter()
        .map(|s| service_view(world, &project, &number, s))
        .collect();
    let response = json!({
        "@type": format!("type.googleapis.com/google.api.serviceusage.{}.BatchEnableServicesResponse", call.method.version),
        "services": services,
    });
    Ok(Outcome::Json(finished_operation(
        world, call, &number, changed, response,
    )))
}

fn batch_get(world: &mut World, call: &Call<'_>) -> Result<Outcome, ApiError> {
    let (project, number, _) = locate(world, call, call.param("parent")?)?;
    let names: Vec<&str> = call
        .query
        .iter()
        .filter(|(k, _)| k == "names")
        .map(|(_, v)| v.as_str())
        .collect();
    if names.is_empty() || names.len() > 30 {
        return Err(ApiError::invalid(
            "names must name between 1 and 30 services.",
        ));
    }
    let mut services = Vec::new();
    for name in names {
        let (other, _, service) = locate(world, call, name)?;
        let service =
            service.ok_or_else(|| ApiError::invalid(format!("'{name}' names no service.")))?;
        if other != project {
            return Err(ApiError::invalid(format!(
                "'{name}' is not a service of the parent project."
            )));
        }
        services.push(service_view(world, &project, &number, &service));
    }
    Ok(Outcome::Json(json!({ "services": services })))
}

fn list(world: &mut World, call: &Call<'_>) -> Result<Outcome, ApiError> {
    let (project, number, _) = locate(world, call, call.param("parent")?)?;
    let mut names: BTreeSet<String> = [
        "iap.googleapis.com",
        "run.googleapis.com",
        "compute.googleapis.com",
        "serviceusage.googleapis.com",
        "cloudresourcemanager.googleapis.com",
        "iam.googleapis.com",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if let Some(p) = world.projects.get(&project) {
        names.extend(p.services.keys().cloned());
    }
    let filter = call.query("filter").unwrap_or("").replace(' ', "");
    let services: Vec<Value> = names
        .iter()
        .map(|s| service_view(world, &project, &number, s))
        .filter(|v| match filter.as_str() {
            "state:ENABLED" => v["state"] == "ENABLED",
            "state:DISABLED" => v["state"] == "DISABLED",
            _ => true,
        })
        .collect();
    Ok(Outcome::Json(if services.is_empty() {
        json!({})
    } else {
        json!({ "services": services })
    }))
}

fn generate_service_identity(world: &mut World, call: &Call<'_>) -> Result<Outcome, ApiError> {
    let (project, number, service) = locate(world, call, call.param("parent")?)?;
    let service = service.ok_or_else(|| ApiError::invalid("A service name is required."))?;
    if let Some((code, message)) = call.operation_error() {
        // An injected failure: no agent is created and the finished operation reports why.
        return Ok(Outcome::Json(json!({
            "name": "operations/finished.DONE_OPERATION",
            "done": true,
            "error": {"code": code, "message": message},
        })));
    }
    let wall = call.timestamp();
    if let Ok(p) = world.projects.resolve(&project, &wall) {
        let new = p.agents.insert(service.clone());
        if let (true, Some(at)) = (new, call.agent_usable_at()) {
            p.agents_propagating.insert(service.clone(), at);
        }
    }
    let email = agent_email(&service, &number);
    let digest = Sha256::digest(email.as_bytes());
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    let unique_id = format!("1{:020}", u64::from_be_bytes(bytes));
    Ok(Outcome::Json(json!({
        "name": "operations/finished.DONE_OPERATION",
        "done": true,
        "response": {
            "@type": "type.googleapis.com/google.api.serviceusage.v1beta1.ServiceIdentity",
            "email": email,
            "uniqueId": unique_id,
        },
    })))
}

fn operation_get(world: &mut World, call: &Call<'_>) -> Result<Outcome, ApiError> {
    let name = call.param("name")?;
    if name.ends_with(".DONE_OPERATION") {
        return Err(ApiError::invalid(format!(
            "Operation '{name}' is already done and cannot be polled."
        )));
    }
    world
        .usage
        .operations
        .get(name)
        .cloned()
        .map(Outcome::Json)
        .ok_or_else(|| ApiError::not_found(format!("Operation '{name}' not found.")))
}
