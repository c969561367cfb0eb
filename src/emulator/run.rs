//! Cloud Run Admin API v2: services (create, get, list, patch, delete, IAM) and their operations.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rand::Rng;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use super::discovery::{discovery, Api};
use super::dispatch::{Call, Outcome, Route};
use super::error::ApiError;
use super::iam::{self, MemberRules, Policy};
use super::operation::{parse_duration, rpc_status, LongOp};
use super::state::World;

const SERVICE_TYPE: &str = "type.googleapis.com/google.cloud.run.v2.Service";
const SCHEMA: &str = "GoogleCloudRunV2Service";

/// The routes this module serves.
pub(crate) const ROUTES: &[Route] = &[
    ("v2", "run.projects.locations.services.create", create),
    ("v2", "run.projects.locations.services.get", get),
    ("v2", "run.projects.locations.services.list", list),
    ("v2", "run.projects.locations.services.patch", patch),
    ("v2", "run.projects.locations.services.delete", delete),
    (
        "v2",
        "run.projects.locations.services.getIamPolicy",
        get_iam_policy,
    ),
    (
        "v2",
        "run.projects.locations.services.setIamPolicy",
        set_iam_policy,
    ),
    (
        "v2",
        "run.projects.locations.services.testIamPermissions",
        test_iam_permissions,
    ),
    ("v2", "run.projects.locations.operations.get", operation_get),
    (
        "v2",
        "run.projects.locations.operations.wait",
        operation_wait,
    ),
    (
        "v2",
        "run.projects.locations.operations.list",
        operation_list,
    ),
    (
        "v2",
        "run.projects.locations.operations.delete",
        operation_delete,
    ),
];

/// A service's identity: canonical project id, location, service id.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct ServiceKey {
    pub project: String,
    pub location: String,
    pub name: String,
}

/// (project id, location, operation id).
pub(crate) type OpKey = (String, String, String);

/// One Cloud Run service.
#[derive(Clone, Debug)]
pub(crate) struct Service {
    /// The writable fields, proto3-normalised, with server defaults filled in.
    pub spec: Map<String, Value>,
    pub uid: String,
    pub generation: u64,
    pub create_time: String,
    pub update_time: String,
    pub etag: String,
    pub policy: Policy,
    pub revision_count: u32,
    pub latest_revision: String,
    /// Revision name → the template it was created from.
    pub revisions: BTreeMap<String, Value>,
    pub pending_op: Option<OpKey>,
    pub project_number: String,
}

/// All Cloud Run state.
#[derive(Default)]
pub(crate) struct RunState {
    pub services: BTreeMap<ServiceKey, Service>,
    pub operations: BTreeMap<OpKey, LongOp>,
}

impl RunState {
    /// Whether a service's latest change is still rolling out.
    fn reconciling(&self, service: &Service, now: Instant) -> bool {
        service
            .pending_op
            .as_ref()
            .and_then(|k| self.operations.get(k))
            .is_some_and(|op| !op.is_done(now))
    }

    /// The service as `GET` answers it (project written as `label`).
    pub fn render(&self, key: &ServiceKey, label: &str, now: Instant) -> Option<Value> {
        let service = self.services.get(key)?;
        Some(render(service, key, label, self.reconciling(service, now)))
    }
}

fn not_found(name: &str, location: &str, label: &str) -> ApiError {
    ApiError::not_found(format!(
        "Resource '{name}' of kind 'SERVICE' in region '{location}' in project '{label}' does not exist."
    ))
}

/// Region names such as `us-central1`.
pub(crate) fn valid_location(location: &str) -> bool {
    let mut parts = location.split('-');
    let (Some(a), Some(b), None) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    let letters = b.trim_end_matches(|c: char| c.is_ascii_digit());
    !a.is_empty()
        && a.bytes().all(|c| c.is_ascii_lowercase())
        && !letters.is_empty()
        && letters.len() < b.len()
        && letters.bytes().all(|c| c.is_ascii_lowercase())
}

/// Cloud Run service ids: RFC 1035 labels of at most 49 characters.
fn valid_service_id(id: &str) -> bool {
    let bytes = id.as_bytes();
    (1..=49).contains(&bytes.len())
        && bytes.first().is_some_and(u8::is_ascii_lowercase)
        && bytes
            .last()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
}

/// Split `projects/{p}/locations/{l}[/{collection}/{id}]`.
fn split_name<'a>(
    name: &'a str,
    collection: Option<&str>,
) -> Result<(&'a str, &'a str, Option<&'a str>), ApiError> {
    let parts: Vec<&str> = name.split('/').collect();
    let bad = || ApiError::invalid(format!("Invalid resource name '{name}'."));
    match (collection, parts.as_slice()) {
        (None, ["projects", p, "locations", l]) => Ok((p, l, None)),
        (Some(c), ["projects", p, "locations", l, k, id]) if k == &c => Ok((p, l, Some(id))),
        _ => Err(bad()),
    }
}

/// Resolve the project and location of a name; returns (project id, project number).
fn locate(
    world: &mut World,
    call: &Call<'_>,
    label: &str,
    location: &str,
) -> Result<(String, String), ApiError> {
    let wall = call.timestamp();
    let project = world
        .projects
        .resolve(label, &wall)
        .map_err(|e| e.to_api(label, false))?;
    if !valid_location(location) {
        return Err(ApiError::invalid(format!(
            "Location '{location}' is not a valid Cloud Run region."
        )));
    }
    Ok((project.id.clone(), project.number.clone()))
}

fn service_key(
    world: &mut World,
    call: &Call<'_>,
    name: &str,
) -> Result<(ServiceKey, String, String), ApiError> {
    let (label, location, id) = split_name(name, Some("services"))?;
    let (project, number) = locate(world, call, label, location)?;
    let key = ServiceKey {
        project,
        location: location.to_string(),
        name: id.unwrap_or_default().to_string(),
    };
    Ok((key, label.to_string(), number))
}

fn random_letters(n: usize) -> String {
    let mut rng = rand::thread_rng();
    (0..n)
        .map(|_| char::from(b'a' + rng.gen_range(0..26u8)))
        .collect()
}

fn new_etag(seq: u64) -> String {
    let digest = Sha256::digest(format!("run-etag-{seq}").as_bytes());
    let code: String = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
    format!("\"CK{code}\"")
}

fn region_code(location: &str) -> String {
    location
        .split('-')
        .take(2)
        .filter_map(|p| p.chars().next())
        .collect()
}

/// The service as the API prints it.
fn render(service: &Service, key: &ServiceKey, label: &str, reconciling: bool) -> Value {
    let mut out = service.spec.clone();
    let base = format!(
        "projects/{label}/locations/{}/services/{}",
        key.location, key.name
    );
    let revision = format!("{base}/revisions/{}", service.latest_revision);
    let state = if reconciling {
        "CONDITION_RECONCILING"
    } else {
        "CONDITION_SUCCEEDED"
    };
    let condition = |kind: &str| json!({"type": kind, "state": state, "lastTransitionTime": service.update_time});
    out.insert("name".into(), json!(base));
    out.insert("uid".into(), json!(service.uid));
    out.insert("generation".into(), json!(service.generation.to_string()));
    let observed = if reconciling {
        service.generation.saturating_sub(1)
    } else {
        service.generation
    };
    out.insert("observedGeneration".into(), json!(observed.to_string()));
    out.insert("createTime".into(), json!(service.create_time));
    out.insert("updateTime".into(), json!(service.update_time));
    out.insert("creator".into(), json!("user@example.com"));
    out.insert("lastModifier".into(), json!("user@example.com"));
    out.insert("etag".into(), json!(service.etag));
    out.insert("latestCreatedRevision".into(), json!(revision));
    out.insert("latestReadyRevision".into(), json!(revision));
    out.insert("terminalCondition".into(), condition("Ready"));
    out.insert(
        "conditions".into(),
        json!([condition("RoutesReady"), condition("ConfigurationsReady")]),
    );
    let statuses: Vec<Value> = service
        .spec
        .get("traffic")
        .and_then(Value::as_array)
        .map(|targets| {
            targets
                .iter()
                .map(|t| {
                    let mut s = t.clone();
                    if s.get("type").and_then(Value::as_str)
                        == Some("TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST")
                    {
                        s["revision"] = json!(service.latest_revision);
                    }
                    s
                })
                .collect()
        })
        .unwrap_or_default();
    out.insert("trafficStatuses".into(), Value::Array(statuses));
    if reconciling {
        out.insert("reconciling".into(), json!(true));
    }
    // The run.app URLs are reported even when defaultUriDisabled stops them resolving.
    let digest =
        Sha256::digest(format!("{}/{}/{}", key.project, key.location, key.name).as_bytes());
    let hash: String = digest.iter().take(5).map(|b| format!("{b:02x}")).collect();
    let uri = format!(
        "https://{}-{hash}-{}.a.run.app",
        key.name,
        region_code(&key.location)
    );
    let regional = format!(
        "https://{}-{}.{}.run.app",
        key.name, service.project_number, key.location
    );
    out.insert("urls".into(), json!([regional, uri]));
    out.insert("uri".into(), json!(uri));
    let mut value = Value::Object(out);
    if let Some(doc) = discovery().doc_for(Api::Run, "v2") {
        doc.normalize(SCHEMA, &mut value, false);
    }
    value
}

/// The writable part of a client's Service body, proto3-normalised.
fn input_spec(body: &Value) -> Result<Map<String, Value>, ApiError> {
    if !body.is_object() {
        return Err(ApiError::invalid("The request body must be a Service."));
    }
    let mut value = body.clone();
    if let Some(doc) = discovery().doc_for(Api::Run, "v2") {
        doc.normalize(SCHEMA, &mut value, true);
    }
    let mut spec = match value {
        Value::Object(map) => map,
        _ => Map::new(),
    };
    spec.remove("name");
    spec.remove("etag");
    Ok(spec)
}

/// Server-side defaults, as a GET after create shows them.
fn apply_defaults(spec: &mut Map<String, Value>, project_number: &str) {
    spec.entry("ingress")
        .or_insert(json!("INGRESS_TRAFFIC_ALL"));
    spec.entry("launchStage").or_insert(json!("GA"));
    spec.entry("traffic")
        .or_insert(json!([{"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST", "percent": 100}]));
    let Some(template) = spec.get_mut("template").and_then(Value::as_object_mut) else {
        return;
    };
    template.entry("timeout").or_insert(json!("300s"));
    template
        .entry("maxInstanceRequestConcurrency")
        .or_insert(json!(80));
    template.entry("serviceAccount").or_insert(json!(format!(
        "{project_number}-compute@developer.gserviceaccount.com"
    )));
    template
        .entry("scaling")
        .or_insert(json!({"maxInstanceCount": 100}));
    if let Some(containers) = template.get_mut("containers").and_then(Value::as_array_mut) {
        for container in containers.iter_mut().filter_map(Value::as_object_mut) {
            container
                .entry("resources")
                .or_insert(json!({"limits": {"cpu": "1000m", "memory": "512Mi"}, "cpuIdle": true, "startupCpuBoost": true}));
            let ports = container.entry("ports").or_insert(json!([]));
            if ports.as_array().is_some_and(Vec::is_empty) {
                *ports = json!([{"name": "http1", "containerPort": 8080}]);
            }
            if let Some(ports) = ports.as_array_mut() {
                for port in ports.iter_mut().filter_map(Value::as_object_mut) {
                    port.entry("name").or_insert(json!("http1"));
                    port.entry("containerPort").or_insert(json!(8080));
                }
            }
        }
    }
}

fn violation(field: &str, description: &str) -> ApiError {
    ApiError::invalid(format!("Invalid request: {field}: {description}")).with_detail(json!({
        "@type": "type.googleapis.com/google.rpc.BadRequest",
        "fieldViolations": [{"field": field, "description": description}],
    }))
}

fn validate(spec: &Map<String, Value>, service: &str) -> Result<(), ApiError> {
    let Some(template) = spec.get("template").and_then(Value::as_object) else {
        return Err(violation("service.template", "Required field is not set."));
    };
    let containers = template
        .get("containers")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if containers.is_empty() {
        return Err(violation(
            "service.template.containers",
            "At least one container is required.",
        ));
    }
    for (i, container) in containers.iter().enumerate() {
        if container
            .get("image")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .is_empty()
        {
            return Err(violation(
                &format!("service.template.containers[{i}].image"),
                "Required field is not set.",
            ));
        }
        let ports = container
            .get("ports")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if ports.len() > 1 {
            return Err(violation(
                &format!("service.template.containers[{i}].ports"),
                "Only one port may be specified.",
            ));
        }
        for port in &ports {
            let name = port.get("name").and_then(Value::as_str).unwrap_or("http1");
            if name != "http1" && name != "h2c" {
                return Err(violation(
                    &format!("service.template.containers[{i}].ports[0].name"),
                    &format!("Port name '{name}' is not supported; use 'http1' or 'h2c'."),
                ));
            }
            let number = port
                .get("containerPort")
                .and_then(Value::as_i64)
                .unwrap_or(8080);
            if !(1..=65535).contains(&number) {
                return Err(violation(
                    &format!("service.template.containers[{i}].ports[0].containerPort"),
                    "Port must be between 1 and 65535.",
                ));
            }
        }
    }
    if let Some(revision) = template.get("revision").and_then(Value::as_str) {
        if !revision.starts_with(&format!("{service}-")) {
            return Err(violation(
                "service.template.revision",
                &format!("Revision name must be prefixed by the name of the enclosing Service: '{service}-'."),
            ));
        }
    }
    if let Some(traffic) = spec.get("traffic").and_then(Value::as_array) {
        let total: i64 = traffic
            .iter()
            .filter_map(|t| t.get("percent").and_then(Value::as_i64))
            .sum();
        if !traffic.is_empty() && total != 100 {
            return Err(violation(
                "service.traffic",
                &format!("Traffic percentages must add up to 100 (got {total})."),
            ));
        }
    }
    Ok(())
}

/// Decide the revision a new spec produces: Some(name) when a new revision is created.
fn plan_revision(
    existing: Option<&Service>,
    spec: &Map<String, Value>,
    service: &str,
    force: bool,
) -> Result<Option<String>, ApiError> {
    let template = spec.get("template").cloned().unwrap_or(Value::Null);
    let changed = force || existing.is_none_or(|e| e.spec.get("template") != Some(&template));
    if let Some(requested) = template.get("revision").and_then(Value::as_str) {
        if let Some(previous) = existing.and_then(|e| e.revisions.get(requested)) {
            if previous != &template {
                return Err(ApiError::already_exists(format!(
                    "Revision named '{requested}' with different configuration already exists."
                )));
            }
            return Ok(None);
        }
        return Ok(changed.then(|| requested.to_string()));
    }
    if !changed {
        return Ok(None);
    }
    let count = existing.map_or(0, |e| e.revision_count) + 1;
    Ok(Some(format!("{service}-{count:05}-{}", random_letters(3))))
}

fn operation_name(label: &str, location: &str, id: &str) -> String {
    format!("projects/{label}/locations/{location}/operations/{id}")
}

/// Start an operation whose outcome is `result`; returns its first answer (not done).
fn start_operation(
    world: &mut World,
    call: &Call<'_>,
    project: &str,
    label: &str,
    location: &str,
    snapshot: Value,
    result: Result<Value, Value>,
) -> (OpKey, Value) {
    let id = uuid::Uuid::new_v4().to_string();
    let key = (project.to_string(), location.to_string(), id.clone());
    let metadata = with_type(&snapshot);
    let op = LongOp::new(
        operation_name(label, location, &id),
        metadata,
        result.map(|r| with_type(&r)),
        call.operation_done_at(),
        call.operation_polls(),
    );
    let first = op.render(false);
    world.run.operations.insert(key.clone(), op);
    (key, first)
}

fn with_type(service: &Value) -> Value {
    let mut out = Map::new();
    out.insert("@type".into(), json!(SERVICE_TYPE));
    if let Some(fields) = service.as_object() {
        out.extend(fields.clone());
    }
    Value::Object(out)
}

/// An already-finished operation that is not stored (validateOnly).
fn unpersisted_operation(label: &str, location: &str, response: &Value) -> Value {
    let id = uuid::Uuid::new_v4().to_string();
    LongOp::new(
        operation_name(label, location, &id),
        with_type(response),
        Ok(with_type(response)),
        Instant::now(),
        0,
    )
    .render(true)
}

fn create(world: &mut World, call: &Call<'_>) -> Result<Outcome, ApiError> {
    let parent = call.param("parent")?;
    let (label, location, _) = split_name(parent, None)?;
    let (project, number) = locate(world, call, label, location)?;
    let Some(id) = call.query("serviceId").filter(|s| !s.is_empty()) else {
        return Err(violation("service_id", "Required field is not set."));
    };
    if !valid_service_id(id) {
        return Err(violation(
            "service_id",
            "Must be 1 to 49 characters of lowercase letters, digits and hyphens, start with a letter and not end \
             with a hyphen.",
        ));
    }
    let key = ServiceKey {
        project: project.clone(),
        location: location.to_string(),
        name: id.to_string(),
    };
    if world.run.services.contains_key(&key) {
        return Err(ApiError::already_exists(format!(
            "Resource '{id}' already exists."
        )));
    }
    create_service(world, call, key, label, &number)
}

fn create_service(
    world: &mut World,
    call: &Call<'_>,
    key: ServiceKey,
    label: &str,
    number: &str,
) -> Result<Outcome, ApiError> {
    let mut spec = input_spec(call.body)?;
    apply_defaults(&mut spec, number);
    validate(&spec, &key.name)?;
    let revision = plan_revision(None, &spec, &key.name, false)?.unwrap_or_default();
    let now = call.timestamp();
    let seq = world.next_seq();
    let template = spec.get("template").cloned().unwrap_or(Value::Null);
    let service = Service {
        spec,
        uid: uuid::Uuid::new_v4().to_string(),
        generation: 1,
        create_time: now.clone(),
        update_time: now,
        etag: new_etag(seq),
        policy: Policy::default(),
        revision_count: 1,
        latest_revision: revision.clone(),
        revisions: BTreeMap::from([(revision, template)]),
        pending_op: None,
        project_number: number.to_string(),
    };
    let snapshot = render(&service, &key, label, false);
    if call.flag("validateOnly") {
        return Ok(Outcome::Json(unpersisted_operation(
            label,
            &key.location,
            &snapshot,
        )));
    }
    if let Some((code, message)) = call.operation_error() {
        let (_, first) = start_operation(
            world,
            call,
            &key.project,
            label,
            &key.location,
            snapshot,
            Err(rpc_status(code, &message)),
        );
        return Ok(Outcome::Json(first));
    }
    let (op_key, first) = start_operation(
        world,
        call,
        &key.project,
        label,
        &key.location,
        snapshot.clone(),
        Ok(snapshot),
    );
    let mut service = service;
    service.pending_op = Some(op_key);
    world.run.services.insert(key, service);
    Ok(Outcome::Json(first))
}

fn get(world: &mut World, call: &Call<'_>) -> Result<Outcome, ApiError> {
    let (key, label, _) = service_key(world, call, call.param("name")?)?;
    world
        .run
        .render(&key, &label, call.now)
        .map(Outcome::Json)
        .ok_or_else(|| not_found(&key.name, &key.location, &label))
}

fn page_bounds(
    call: &Call<'_>,
    total: usize,
    default_size: usize,
) -> Result<(usize, usize), ApiError> {
    let start = match call.query("pageToken").filter(|t| !t.is_empty()) {
        Some(token) => token
            .parse::<usize>()
            .map_err(|_| ApiError::invalid("Invalid page token."))?,
        None => 0,
    };
    let size = call
        .query("pageSize")
        .and_then(|s| s.parse::<usize>().ok())
        .filter(|s| *s > 0)
        .unwrap_or(default_size);
    Ok((start.min(total), start.saturating_add(size).min(total)))
}

fn list(world: &mut World, call: &Call<'_>) -> Result<Outcome, ApiError> {
    let parent = call.param("parent")?;
    let (label, location, _) = split_name(parent, None)?;
    let any_location = location == "-";
    let (project, _) = locate(
        world,
        call,
        label,
        if any_location {
            "us-central1"
        } else {
            location
        },
    )?;
    let keys: Vec<ServiceKey> = world
        .run
        .services
        .keys()
        .filter(|k| k.project == project && (any_location || k.location == location))
        .cloned()
        .collect();
    let (start, end) = page_bounds(call, keys.len(), 100)?;
    let services: Vec<Value> = keys[start..end]
        .iter()
        .filter_map(|k| world.run.render(k, label, call.now))
        .collect();
    let mut out = Map::new();
    if !services.is_empty() {
        out.insert("services".into(), Value::Array(services));
    }
    if end < keys.len() {
        out.insert("nextPageToken".into(), json!(end.to_string()));
    }
    Ok(Outcome::Json(Value::Object(out)))
}

/// snake_case to camelCase, as Google's JSON names fields.
pub(crate) fn camel(path: &str) -> String {
    let mut out = String::new();
    let mut upper = false;
    for c in path.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

fn get_path<'a>(value: &'a Map<String, Value>, parts: &[&str]) -> Option<&'a Value> {
    let (first, rest) = parts.split_first()?;
    let child = value.get(*first)?;
    if rest.is_empty() {
        Some(child)
    } else {
        get_path(child.as_object()?, rest)
    }
}

fn set_path(target: &mut Map<String, Value>, parts: &[&str], value: Option<Value>) {
    let Some((first, rest)) = parts.split_first() else {
        return;
    };
    if rest.is_empty() {
        match value {
            Some(v) => target.insert(first.to_string(), v),
            None => target.remove(*first),
        };
        return;
    }
    let child = target.entry(first.to_string()).or_insert_with(|| json!({}));
    if !child.is_object() {
        *child = json!({});
    }
    if let Some(child) = child.as_object_mut() {
        set_path(child, rest, value);
    }
}

/// Apply an update mask: each path takes the body's value (or is cleared when the body lacks it).
fn masked_spec(
    existing: &Map<String, Value>,
    body: &Map<String, Value>,
    mask: &str,
) -> Result<Map<String, Value>, ApiError> {
    let schema = discovery()
        .doc_for(Api::Run, "v2")
        .and_then(|d| d.schema(SCHEMA))
        .cloned()
        .unwrap_or(Value::Null);
    let mut spec = existing.clone();
    for raw in mask.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let path = camel(raw);
        let parts: Vec<&str> = path.split('.').collect();
        let top = parts.first().copied().unwrap_or_default();
        let property = schema.get("properties").and_then(|p| p.get(top));
        let writable = property
            .is_some_and(|p| p.get("readOnly").and_then(Value::as_bool) != Some(true))
            && top != "name"
            && top != "etag";
        if !writable {
            return Err(ApiError::invalid(format!(
                "Invalid field mask path '{raw}': not a writable Service field."
            )));
        }
        set_path(&mut spec, &parts, get_path(body, &parts).cloned());
    }
    Ok(spec)
}

fn patch(world: &mut World, call: &Call<'_>) -> Result<Outcome, ApiError> {
    let (key, label, number) = service_key(world, call, call.param("name")?)?;
    let Some(existing) = world.run.services.get(&key).cloned() else {
        if call.flag("allowMissing") {
            return create_service(world, call, key, &label, &number);
        }
        return Err(not_found(&key.name, &key.location, &label));
    };
    if let Some(etag) = call
        .body
        .get("etag")
        .and_then(Value::as_str)
        .filter(|e| !e.is_empty())
    {
        if etag != existing.etag {
            return Err(ApiError::aborted(format!(
                "Conflict for resource '{}': version '{etag}' was specified but current version is '{}'.",
                key.name, existing.etag
            )));
        }
    }
    if let Some(name) = call
        .body
        .get("name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
    {
        if name.rsplit('/').next() != Some(key.name.as_str()) {
            return Err(ApiError::invalid(format!(
                "The name in the body ('{name}') does not match the request."
            )));
        }
    }
    let body = input_spec(call.body)?;
    let mut spec = match call
        .query("updateMask")
        .map(str::trim)
        .filter(|m| !m.is_empty() && *m != "*")
    {
        Some(mask) => masked_spec(&existing.spec, &body, mask)?,
        None => body,
    };
    apply_defaults(&mut spec, &number);
    validate(&spec, &key.name)?;
    let new_revision = plan_revision(
        Some(&existing),
        &spec,
        &key.name,
        call.flag("forceNewRevision"),
    )?;
    let mut updated = existing.clone();
    if spec != existing.spec || new_revision.is_some() {
        let seq = world.next_seq();
        updated.spec = spec;
        updated.generation += 1;
        updated.update_time = call.timestamp();
        updated.etag = new_etag(seq);
        if let Some(revision) = new_revision {
            updated.revision_count += 1;
            updated.revisions.insert(
                revision.clone(),
                updated.spec.get("template").cloned().unwrap_or(Value::Null),
            );
            updated.latest_revision = revision;
        }
    }
    let snapshot = render(&updated, &key, &label, false);
    if call.flag("validateOnly") {
        return Ok(Outcome::Json(unpersisted_operation(
            &label,
            &key.location,
            &snapshot,
        )));
    }
    if let Some((code, message)) = call.operation_error() {
        let (_, first) = start_operation(
            world,
            call,
            &key.project,
            &label,
            &key.location,
            snapshot,
            Err(rpc_status(code, &message)),
        );
        return Ok(Outcome::Json(first));
    }
    let (op_key, first) = start_operation(
        world,
        call,
        &key.project,
        &label,
        &key.location,
        snapshot.clone(),
        Ok(snapshot),
    );
    updated.pending_op = Some(op_key);
    world.run.services.insert(key, updated);
    Ok(Outcome::Json(first))
}

fn delete(world: &mut World, call: &Call<'_>) -> Result<Outcome, ApiError> {
    let (key, label, _) = service_key(world, call, call.param("name")?)?;
    let Some(existing) = world.run.services.get(&key) else {
        return Err(not_found(&key.name, &key.location, &label));
    };
    if let Some(etag) = call.query("etag").filter(|e| !e.is_empty()) {
        if etag != existing.etag {
            return Err(ApiError::aborted(format!(
                "Conflict for resource '{}': version '{etag}' was specified but current version is '{}'.",
                key.name, existing.etag
            )));
        }
    }
    let mut snapshot = render(existing, &key, &label, false);
    snapshot["deleteTime"] = json!(call.timestamp());
    if call.flag("validateOnly") {
        return Ok(Outcome::Json(unpersisted_operation(
            &label,
            &key.location,
            &snapshot,
        )));
    }
    if let Some((code, message)) = call.operation_error() {
        let (_, first) = start_operation(
            world,
            call,
            &key.project,
            &label,
            &key.location,
            snapshot,
            Err(rpc_status(code, &message)),
        );
        return Ok(Outcome::Json(first));
    }
    world.run.services.remove(&key);
    super::iap::forget_run_service(world, &key);
    let (_, first) = start_operation(
        world,
        call,
        &key.project,
        &label,
        &key.location,
        snapshot.clone(),
        Ok(snapshot),
    );
    Ok(Outcome::Json(first))
}

/// The IAM member rules of a project.
pub(crate) fn member_rules<'a>(world: &'a World, project: &str) -> MemberRules<'a> {
    MemberRules {
        projects: &world.projects,
        restrict_public: world
            .projects
            .get(project)
            .is_some_and(|p| p.restrict_public_members),
    }
}

fn get_iam_policy(world: &mut World, call: &Call<'_>) -> Result<Outcome, ApiError> {
    let (key, label, _) = service_key(world, call, call.param("resource")?)?;
    let requested = match call.query("options.requestedPolicyVersion") {
        Some(v) => v
            .parse::<i64>()
            .map_err(|_| ApiError::invalid("Invalid requested policy version."))?,
        None => 0,
    };
    let service = world
        .run
        .services
        .get(&key)
        .ok_or_else(|| not_found(&key.name, &key.location, &label))?;
    service.policy.render(requested).map(Outcome::Json)
}

fn set_iam_policy(world: &mut World, call: &Call<'_>) -> Result<Outcome, ApiError> {
    let (key, label, _) = service_key(world, call, call.param("resource")?)?;
    if !world.run.services.contains_key(&key) {
        return Err(not_found(&key.name, &key.location, &label));
    }
    let etag = iam::new_etag(world.next_seq());
    let mut policy = world
        .run
        .services
        .get(&key)
        .map(|s| s.policy.clone())
        .unwrap_or_default();
    policy.apply(
        call.body.get("policy"),
        call.body.get("updateMask").and_then(Value::as_str),
        etag,
        &member_rules(world, &key.project),
    )?;
    let rendered = policy.render(3)?;
    if let Some(service) = world.run.services.get_mut(&key) {
        service.policy = policy;
    }
    Ok(Outcome::Json(rendered))
}

fn test_iam_permissions(world: &mut World, call: &Call<'_>) -> Result<Outcome, ApiError> {
    let (key, label, _) = service_key(world, call, call.param("resource")?)?;
    if !world.run.services.contains_key(&key) {
        return Err(not_found(&key.name, &key.location, &label));
    }
    Ok(Outcome::Json(iam::test_permissions(call.body)))
}

fn operation_key(world: &mut World, call: &Call<'_>) -> Result<OpKey, ApiError> {
    let name = call.param("name")?;
    let (label, location, id) = split_name(name, Some("operations"))?;
    let (project, _) = locate(world, call, label, location)?;
    let key = (
        project,
        location.to_string(),
        id.unwrap_or_default().to_string(),
    );
    if world.run.operations.contains_key(&key) {
        Ok(key)
    } else {
        Err(ApiError::not_found(format!(
            "Operation '{name}' not found."
        )))
    }
}

fn operation_get(world: &mut World, call: &Call<'_>) -> Result<Outcome, ApiError> {
    let key = operation_key(world, call)?;
    let op = world
        .run
        .operations
        .get_mut(&key)
        .ok_or_else(|| ApiError::not_found("Operation not found."))?;
    Ok(Outcome::Json(op.poll(call.now)))
}

/// The longest a wait blocks, whatever the client asks.
const MAX_WAIT: Duration = Duration::from_secs(120);

fn operation_wait(world: &mut World, call: &Call<'_>) -> Result<Outcome, ApiError> {
    let key = operation_key(world, call)?;
    let timeout = match call.body.get("timeout").and_then(Value::as_str) {
        Some(text) => parse_duration(text)
            .ok_or_else(|| ApiError::invalid(format!("Invalid timeout '{text}'.")))?,
        None => MAX_WAIT,
    };
    Ok(Outcome::WaitRun {
        key,
        deadline: call.now + timeout.min(MAX_WAIT),
    })
}

/// One step of operations.wait: the operation, and when to look again (None: answer now).
pub(crate) fn wait_step(
    world: &mut World,
    key: &OpKey,
    now: Instant,
    deadline: Instant,
) -> Result<(Value, Option<Instant>), ApiError> {
    let op = world
        .run
        .operations
        .get_mut(key)
        .ok_or_else(|| ApiError::not_found("Operation not found."))?;
    op.settle(now);
    let done = op.is_done(now);
    let value = op.render(done);
    if done || now >= deadline {
        Ok((value, None))
    } else {
        Ok((value, Some(op.done_at)))
    }
}

fn operation_list(world: &mut World, call: &Call<'_>) -> Result<Outcome, ApiError> {
    let name = call.param("name")?;
    let (label, location, _) = split_name(name, None)?;
    let (project, _) = locate(world, call, label, location)?;
    let now = call.now;
    let ops: Vec<Value> = world
        .run
        .operations
        .iter()
        .filter(|((p, l, _), _)| *p == project && l == location)
        .map(|(_, op)| op.render(op.is_done(now)))
        .collect();
    Ok(Outcome::Json(if ops.is_empty() {
        json!({})
    } else {
        json!({ "operations": ops })
    }))
}

fn operation_delete(world: &mut World, call: &Call<'_>) -> Result<Outcome, ApiError> {
    let key = operation_key(world, call)?;
    world.run.operations.remove(&key);
    Ok(Outcome::Json(json!({})))
}

/// Cloud Run state for the admin dump.
pub(crate) fn dump(world: &World, now: Instant) -> Value {
    let services: Vec<Value> = world
        .run
        .services
        .keys()
        .filter_map(|k| {
            let mut v = world.run.render(k, &k.project, now)?;
            if let Some(service) = world.run.services.get(k) {
                v["__iamPolicy"] = service.policy.render(3).unwrap_or(Value::Null);
            }
            Some(v)
        })
        .collect();
    json!({"services": services, "operations": world.run.operations.len()})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_and_ids() {
        assert!(valid_location("us-central1"));
        assert!(valid_location("europe-west4"));
        assert!(!valid_location("uscentral1"));
        assert!(!valid_location("us-central"));
        assert!(valid_service_id("hello"));
        assert!(!valid_service_id("Hello"));
        assert!(!valid_service_id("hello-"));
        assert!(!valid_service_id(&"a".repeat(50)));
    }

    #[test]
    fn defaults_fill_the_port() {
        let mut spec = input_spec(
            &json!({"template": {"containers": [{"image": "gcr.io/x/y"}]}, "iapEnabled": false}),
        )
        .unwrap();
        apply_defaults(&mut spec, "123");
        assert_eq!(
            spec["template"]["containers"][0]["ports"],
            json!([{"name": "http1", "containerPort": 8080}])
        );
        assert!(!spec.contains_key("iapEnabled"));
        assert_eq!(spec["ingress"], "INGRESS_TRAFFIC_ALL");
    }

    #[test]
    fn validation_rejects_two_ports_and_unknown_names() {
        let two =
            input_spec(&json!({"template": {"containers": [{"image": "x", "ports": [{}, {}]}]}}))
                .unwrap();
        assert!(validate(&two, "s").is_err());
        let bad = input_spec(
            &json!({"template": {"containers": [{"image": "x", "ports": [{"name": "grpc"}]}]}}),
        )
        .unwrap();
        assert!(validate(&bad, "s").is_err());
        assert!(validate(&Map::new(), "s").is_err());
    }

    #[test]
    fn update_mask_sets_and_clears() {
        let existing = input_spec(&json!({"iapEnabled": true, "description": "d"})).unwrap();
        let body = input_spec(&json!({"description": "new"})).unwrap();
        let spec = masked_spec(&existing, &body, "iap_enabled,description").unwrap();
        assert_eq!(Value::Object(spec), json!({"description": "new"}));
        assert!(masked_spec(&existing, &body, "uid").is_err());
    }

    #[test]
    fn revision_name_conflict() {
        let mut spec =
            input_spec(&json!({"template": {"revision": "s-v1", "containers": [{"image": "a"}]}}))
                .unwrap();
        apply_defaults(&mut spec, "1");
        let service = Service {
            spec: spec.clone(),
            uid: String::new(),
            generation: 1,
            create_time: String::new(),
            update_time: String::new(),
            etag: String::new(),
            policy: Policy::default(),
            revision_count: 1,
            latest_revision: "s-v1".into(),
            revisions: BTreeMap::from([("s-v1".to_string(), spec["template"].clone())]),
            pending_op: None,
            project_number: "1".into(),
        };
        assert_eq!(
            plan_revision(Some(&service), &spec, "s", false).unwrap(),
            None
        );
        let mut changed = spec.clone();
        changed["template"]["containers"][0]["image"] = json!("b");
        assert_eq!(
            plan_revision(Some(&service), &changed, "s", false)
                .unwrap_err()
                .status,
            "ALREADY_EXISTS"
        );
    }
}
