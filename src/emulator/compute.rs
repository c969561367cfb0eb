//! Compute Engine v1: the load-balancing resources in front of Cloud Run (serverless NEGs, backend
//! services, URL maps, target HTTP(S) proxies, forwarding rules; global and regional) and their
//! operations. Errors use compute's legacy shape; updates need the current `fingerprint`;
//! `requestId` de-duplicates mutations; references are stored as full URLs.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use base64::Engine;
use rand::Rng;
use regex::Regex;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use super::discovery::{discovery, Api};
use super::dispatch::{Call, Outcome, Route};
use super::error::ApiError;
use super::operation::{rpc_code_http, rpc_code_name};
use super::run::valid_location;
use super::state::World;

/// The resource collections the emulator models.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Kind {
    BackendService,
    NetworkEndpointGroup,
    UrlMap,
    TargetHttpsProxy,
    TargetHttpProxy,
    ForwardingRule,
}

use Kind::*;

const KINDS: [Kind; 6] = [
    BackendService,
    NetworkEndpointGroup,
    UrlMap,
    TargetHttpsProxy,
    TargetHttpProxy,
    ForwardingRule,
];

impl Kind {
    fn collection(self) -> &'static str {
        match self {
            BackendService => "backendServices",
            NetworkEndpointGroup => "networkEndpointGroups",
            UrlMap => "urlMaps",
            TargetHttpsProxy => "targetHttpsProxies",
            TargetHttpProxy => "targetHttpProxies",
            ForwardingRule => "forwardingRules",
        }
    }

    /// The path parameter naming one resource.
    fn param(self) -> &'static str {
        match self {
            BackendService => "backendService",
            NetworkEndpointGroup => "networkEndpointGroup",
            UrlMap => "urlMap",
            TargetHttpsProxy => "targetHttpsProxy",
            TargetHttpProxy => "targetHttpProxy",
            ForwardingRule => "forwardingRule",
        }
    }

    /// The discovery schema (and, lowercased first, the `kind` string).
    fn schema(self) -> &'static str {
        match self {
            BackendService => "BackendService",
            NetworkEndpointGroup => "NetworkEndpointGroup",
            UrlMap => "UrlMap",
            TargetHttpsProxy => "TargetHttpsProxy",
            TargetHttpProxy => "TargetHttpProxy",
            ForwardingRule => "ForwardingRule",
        }
    }

    fn kind_string(self) -> String {
        let schema = self.schema();
        let mut chars = schema.chars();
        let first = chars
            .next()
            .map(|c| c.to_ascii_lowercase())
            .unwrap_or_default();
        format!("compute#{first}{}", chars.as_str())
    }

    /// As compute's messages name it, e.g. `backend_service`.
    fn snake(self) -> &'static str {
        match self {
            BackendService => "backend_service",
            NetworkEndpointGroup => "network_endpoint_group",
            UrlMap => "url_map",
            TargetHttpsProxy => "target_https_proxy",
            TargetHttpProxy => "target_http_proxy",
            ForwardingRule => "forwarding_rule",
        }
    }

    /// The `kind` of its aggregatedList answer (Google names the URL maps' in the plural).
    fn aggregated_kind(self) -> String {
        match self {
            UrlMap => "compute#urlMapsAggregatedList".to_string(),
            _ => format!("{}AggregatedList", self.kind_string()),
        }
    }

    fn has_fingerprint(self) -> bool {
        self != NetworkEndpointGroup
    }

    fn from_collection(collection: &str) -> Option<Kind> {
        KINDS.into_iter().find(|k| k.collection() == collection)
    }

    /// JSON paths (`[]` marks a list) of fields holding references to other resources.
    fn reference_paths(self) -> &'static [&'static str] {
        match self {
            BackendService => &["backends[].group", "healthChecks[]", "securityPolicy"],
            NetworkEndpointGroup => &["network", "subnetwork"],
            UrlMap => &[
                "defaultService",
                "defaultRouteAction.weightedBackendServices[].backendService",
                "pathMatchers[].defaultService",
                "pathMatchers[].defaultRouteAction.weightedBackendServices[].backendService",
                "pathMatchers[].pathRules[].service",
                "pathMatchers[].pathRules[].routeAction.weightedBackendServices[].backendService",
                "pathMatchers[].routeRules[].service",
                "pathMatchers[].routeRules[].routeAction.weightedBackendServices[].backendService",
            ],
            TargetHttpsProxy => &["urlMap", "sslCertificates[]", "sslPolicy"],
            TargetHttpProxy => &["urlMap"],
            ForwardingRule => &["target", "backendService", "network", "subnetwork"],
        }
    }
}

/// A resource's identity: project id, region ("" for global), collection, name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct ResKey {
    pub project: String,
    pub region: String,
    pub kind: Kind,
    pub name: String,
}

impl ResKey {
    fn scope(&self) -> String {
        if self.region.is_empty() {
            "global".to_string()
        } else {
            format!("regions/{}", self.region)
        }
    }

    /// `projects/p/global/backendServices/x`.
    fn path(&self) -> String {
        format!(
            "projects/{}/{}/{}/{}",
            self.project,
            self.scope(),
            self.kind.collection(),
            self.name
        )
    }
}

/// (project id, region or "" for global, operation name).
pub(crate) type OpKey = (String, String, String);

/// A compute operation.
#[derive(Clone, Debug)]
pub(crate) struct ComputeOp {
    value: Map<String, Value>,
    done_at: Instant,
    polls_left: u32,
    end_time: String,
    error: Option<(i32, String)>,
}

impl ComputeOp {
    fn is_done(&self, now: Instant) -> bool {
        now >= self.done_at && self.polls_left == 0
    }

    fn render(&self, done: bool) -> Value {
        let mut out = self.value.clone();
        if done {
            out.insert("status".into(), json!("DONE"));
            out.insert("progress".into(), json!(100));
            out.insert("endTime".into(), json!(self.end_time));
            if let Some((code, message)) = &self.error {
                let http = rpc_code_http(*code);
                let phrase = axum::http::StatusCode::from_u16(http)
                    .ok()
                    .and_then(|s| s.canonical_reason())
                    .unwrap_or("ERROR")
                    .to_ascii_uppercase();
                let name = if *code == 13 {
                    "INTERNAL_ERROR"
                } else {
                    rpc_code_name(*code)
                };
                out.insert(
                    "error".into(),
                    json!({"errors": [{"code": name, "message": message}]}),
                );
                out.insert("httpErrorStatusCode".into(), json!(http));
                out.insert("httpErrorMessage".into(), json!(phrase));
            }
        } else {
            out.insert("status".into(), json!("RUNNING"));
            out.insert("progress".into(), json!(0));
        }
        Value::Object(out)
    }
}

/// All compute state.
#[derive(Default)]
pub(crate) struct ComputeState {
    resources: BTreeMap<ResKey, Map<String, Value>>,
    operations: BTreeMap<OpKey, ComputeOp>,
    /// (project, requestId) → the operation that request started.
    request_ids: BTreeMap<(String, String), OpKey>,
}

/// One route per (collection, scope, verb).
macro_rules! compute_routes {
    ($($id:literal => $handler:ident($kind:expr, $regional:expr)),* $(,)?) => {
        &[$(("v1", $id, {
            fn route(world: &mut World, call: &Call<'_>) -> Result<Outcome, ApiError> {
                $handler(world, call, $kind, $regional)
            }
            route
        })),*]
    };
}

/// The routes this module serves.
pub(crate) const ROUTES: &[Route] = compute_routes![
    "compute.backendServices.get" => get(BackendService, false),
    "compute.backendServices.list" => list(BackendService, false),
    "compute.backendServices.aggregatedList" => aggregated_list(BackendService, false),
    "compute.backendServices.insert" => insert(BackendService, false),
    "compute.backendServices.patch" => patch(BackendService, false),
    "compute.backendServices.update" => update(BackendService, false),
    "compute.backendServices.delete" => delete(BackendService, false),
    "compute.regionBackendServices.get" => get(BackendService, true),
    "compute.regionBackendServices.list" => list(BackendService, true),
    "compute.regionBackendServices.insert" => insert(BackendService, true),
    "compute.regionBackendServices.patch" => patch(BackendService, true),
    "compute.regionBackendServices.update" => update(BackendService, true),
    "compute.regionBackendServices.delete" => delete(BackendService, true),
    "compute.networkEndpointGroups.aggregatedList" => aggregated_list(NetworkEndpointGroup, false),
    "compute.regionNetworkEndpointGroups.get" => get(NetworkEndpointGroup, true),
    "compute.regionNetworkEndpointGroups.list" => list(NetworkEndpointGroup, true),
    "compute.regionNetworkEndpointGroups.insert" => insert(NetworkEndpointGroup, true),
    "compute.regionNetworkEndpointGroups.delete" => delete(NetworkEndpointGroup, true),
    "compute.urlMaps.aggregatedList" => aggregated_list(UrlMap, false),
    "compute.urlMaps.get" => get(UrlMap, false),
    "compute.urlMaps.list" => list(UrlMap, false),
    "compute.urlMaps.insert" => insert(UrlMap, false),
    "compute.urlMaps.patch" => patch(UrlMap, false),
    "compute.urlMaps.update" => update(UrlMap, false),
    "compute.urlMaps.delete" => delete(UrlMap, false),
    "compute.regionUrlMaps.get" => get(UrlMap, true),
    "compute.regionUrlMaps.list" => list(UrlMap, true),
    "compute.regionUrlMaps.insert" => insert(UrlMap, true),
    "compute.regionUrlMaps.patch" => patch(UrlMap, true),
    "compute.regionUrlMaps.update" => update(UrlMap, true),
    "compute.regionUrlMaps.delete" => delete(UrlMap, true),
    "compute.targetHttpsProxies.aggregatedList" => aggregated_list(TargetHttpsProxy, false),
    "compute.targetHttpsProxies.get" => get(TargetHttpsProxy, false),
    "compute.targetHttpsProxies.list" => list(TargetHttpsProxy, false),
    "compute.targetHttpsProxies.insert" => insert(TargetHttpsProxy, false),
    "compute.targetHttpsProxies.patch" => patch(TargetHttpsProxy, false),
    "compute.targetHttpsProxies.delete" => delete(TargetHttpsProxy, false),
    "compute.regionTargetHttpsProxies.get" => get(TargetHttpsProxy, true),
    "compute.regionTargetHttpsProxies.list" => list(TargetHttpsProxy, true),
    "compute.regionTargetHttpsProxies.insert" => insert(TargetHttpsProxy, true),
    "compute.regionTargetHttpsProxies.patch" => patch(TargetHttpsProxy, true),
    "compute.regionTargetHttpsProxies.delete" => delete(TargetHttpsProxy, true),
    "compute.targetHttpProxies.get" => get(TargetHttpProxy, false),
    "compute.targetHttpProxies.list" => list(TargetHttpProxy, false),
    "compute.targetHttpProxies.insert" => insert(TargetHttpProxy, false),
    "compute.targetHttpProxies.patch" => patch(TargetHttpProxy, false),
    "compute.targetHttpProxies.delete" => delete(TargetHttpProxy, false),
    "compute.regionTargetHttpProxies.get" => get(TargetHttpProxy, true),
    "compute.regionTargetHttpProxies.list" => list(TargetHttpProxy, true),
    "compute.regionTargetHttpProxies.insert" => insert(TargetHttpProxy, true),
    "compute.regionTargetHttpProxies.delete" => delete(TargetHttpProxy, true),
    "compute.globalForwardingRules.get" => get(ForwardingRule, false),
    "compute.globalForwardingRules.list" => list(ForwardingRule, false),
    "compute.globalForwardingRules.insert" => insert(ForwardingRule, false),
    "compute.globalForwardingRules.patch" => patch(ForwardingRule, false),
    "compute.globalForwardingRules.delete" => delete(ForwardingRule, false),
    // The regional collection's aggregated list: its discovery description, unlike the other
    // kinds', does not promise global rules (those are globalForwardingRules.list's).
    "compute.forwardingRules.aggregatedList" => aggregated_list(ForwardingRule, true),
    "compute.forwardingRules.get" => get(ForwardingRule, true),
    "compute.forwardingRules.list" => list(ForwardingRule, true),
    "compute.forwardingRules.insert" => insert(ForwardingRule, true),
    "compute.forwardingRules.patch" => patch(ForwardingRule, true),
    "compute.forwardingRules.delete" => delete(ForwardingRule, true),
    "compute.globalOperations.get" => operation_get(BackendService, false),
    "compute.globalOperations.wait" => operation_wait(BackendService, false),
    "compute.regionOperations.get" => operation_get(BackendService, true),
    "compute.regionOperations.wait" => operation_wait(BackendService, true),
];

fn not_found(path: &str) -> ApiError {
    ApiError::not_found(format!("The resource '{path}' was not found"))
}

fn invalid_field(field: &str, value: &str, why: &str) -> ApiError {
    ApiError::invalid(format!(
        "Invalid value for field 'resource.{field}': '{value}'. {why}"
    ))
}

/// Resource names: RFC 1035 labels of at most 63 characters.
fn valid_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    (1..=63).contains(&bytes.len())
        && bytes.first().is_some_and(u8::is_ascii_lowercase)
        && bytes
            .last()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
}

fn is_numeric_id(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit())
}

/// (project id, region or "") of a call.
fn scope(world: &mut World, call: &Call<'_>, regional: bool) -> Result<(String, String), ApiError> {
    let label = call.param("project")?;
    let wall = call.timestamp();
    let project = world
        .projects
        .resolve(label, &wall)
        .map_err(|e| e.to_api(label, true))?;
    let project = project.id.clone();
    if !regional {
        return Ok((project, String::new()));
    }
    let region = call.param("region")?;
    if !valid_location(region) {
        return Err(ApiError::invalid(format!(
            "Invalid value for field 'region': '{region}'. Unknown region."
        )));
    }
    Ok((project, region.to_string()))
}

impl ComputeState {
    /// The key of a resource named by name or numeric id.
    fn find(&self, project: &str, region: &str, kind: Kind, name_or_id: &str) -> Option<ResKey> {
        let key = ResKey {
            project: project.to_string(),
            region: region.to_string(),
            kind,
            name: name_or_id.to_string(),
        };
        if self.resources.contains_key(&key) {
            return Some(key);
        }
        if !is_numeric_id(name_or_id) {
            return None;
        }
        self.resources
            .iter()
            .find(|(k, v)| {
                k.project == project
                    && k.region == region
                    && k.kind == kind
                    && v.get("id").and_then(Value::as_str) == Some(name_or_id)
            })
            .map(|(k, _)| k.clone())
    }
}

/// The name of a backend service given by name or numeric id, if it exists.
pub(crate) fn find_backend_service(
    world: &World,
    project: &str,
    region: Option<&str>,
    name_or_id: &str,
) -> Option<String> {
    world
        .compute
        .find(project, region.unwrap_or(""), BackendService, name_or_id)
        .map(|k| k.name)
}

fn self_link(call: &Call<'_>, path: &str) -> String {
    format!("{}{path}", call.options.self_link_base)
}

/// The part of a reference URL from `projects/` on.
fn reference_path(text: &str) -> &str {
    match text.find("projects/") {
        Some(i) if text.starts_with("http://") || text.starts_with("https://") => &text[i..],
        _ => text,
    }
}

/// A reference parsed into its parts.
struct Reference {
    project: String,
    /// `global`, `regions/r` or `zones/z`.
    scope: String,
    collection: String,
    name: String,
}

/// Parse a reference written as a full URL, a partial path, or (for fields with an obvious
/// collection) a bare name.
fn parse_reference(
    text: &str,
    owner: &ResKey,
    default_collection: Option<&str>,
) -> Option<Reference> {
    let path = reference_path(text);
    let parts: Vec<&str> = path.split('/').collect();
    let owner_scope = owner.scope();
    let (project, scope, collection, name) = match parts.as_slice() {
        ["projects", p, "global", c, n] => (p.to_string(), "global".to_string(), *c, *n),
        ["projects", p, kind @ ("regions" | "zones"), r, c, n] => {
            (p.to_string(), format!("{kind}/{r}"), *c, *n)
        }
        ["global", c, n] => (owner.project.clone(), "global".to_string(), *c, *n),
        [kind @ ("regions" | "zones"), r, c, n] => {
            (owner.project.clone(), format!("{kind}/{r}"), *c, *n)
        }
        [n] => (owner.project.clone(), owner_scope, default_collection?, *n),
        _ => return None,
    };
    if name.is_empty() || collection.is_empty() || project.is_empty() {
        return None;
    }
    Some(Reference {
        project,
        scope,
        collection: collection.to_string(),
        name: name.to_string(),
    })
}

/// Visit every reference field of a resource body.
fn visit_references(
    value: &mut Value,
    path: &[&str],
    label: &str,
    f: &mut dyn FnMut(&str, &str, &mut Value) -> Result<(), ApiError>,
) -> Result<(), ApiError> {
    let Some((first, rest)) = path.split_first() else {
        return Ok(());
    };
    let (key, list) = match first.strip_suffix("[]") {
        Some(key) => (key, true),
        None => (*first, false),
    };
    let Some(child) = value.get_mut(key) else {
        return Ok(());
    };
    let child_label = if label.is_empty() {
        key.to_string()
    } else {
        format!("{label}.{key}")
    };
    if list {
        if let Some(items) = child.as_array_mut() {
            for (i, item) in items.iter_mut().enumerate() {
                let item_label = format!("{child_label}[{i}]");
                if rest.is_empty() {
                    f(key, &item_label, item)?;
                } else {
                    visit_references(item, rest, &item_label, f)?;
                }
            }
        }
        return Ok(());
    }
    if rest.is_empty() {
        f(key, &child_label, child)
    } else {
        visit_references(child, rest, &child_label, f)
    }
}

/// Rewrite the references of `body` to full URLs and check that modelled targets exist in a
/// compatible scope.
fn normalize_references(
    world: &World,
    call: &Call<'_>,
    owner: &ResKey,
    body: &mut Value,
) -> Result<(), ApiError> {
    for path in owner.kind.reference_paths() {
        let parts: Vec<&str> = path.split('.').collect();
        let mut check = |field: &str, label: &str, value: &mut Value| -> Result<(), ApiError> {
            let Some(text) = value.as_str().map(str::to_string) else {
                return Ok(());
            };
            if text.is_empty() {
                return Ok(());
            }
            let default_collection = match field {
                "defaultService" | "service" | "backendService" => Some("backendServices"),
                "urlMap" => Some("urlMaps"),
                _ => None,
            };
            let reference = parse_reference(&text, owner, default_collection)
                .ok_or_else(|| invalid_field(label, &text, "The URL is malformed."))?;
            let project = world
                .projects
                .get(&reference.project)
                .map_or(reference.project.clone(), |p| p.id.clone());
            let normalized = format!(
                "projects/{project}/{}/{}/{}",
                reference.scope, reference.collection, reference.name
            );
            if let Some(kind) = Kind::from_collection(&reference.collection) {
                let region = reference.scope.strip_prefix("regions/").unwrap_or("");
                if reference.scope.starts_with("zones/")
                    || world
                        .compute
                        .find(&project, region, kind, &reference.name)
                        .is_none()
                {
                    return Err(not_found(&normalized));
                }
                let structural = matches!(
                    field,
                    "defaultService" | "service" | "backendService" | "urlMap" | "target"
                );
                if structural && region != owner.region {
                    return Err(invalid_field(
                        label,
                        &text,
                        "Global resources may only reference global resources, and regional resources only \
                         resources in the same region.",
                    ));
                }
            }
            *value = json!(self_link(call, &normalized));
            Ok(())
        };
        visit_references(body, &parts, "", &mut check)?;
    }
    Ok(())
}

/// Every reference a stored resource holds, as paths from `projects/` on.
fn references_of(kind: Kind, value: &Map<String, Value>) -> Vec<String> {
    let mut found = Vec::new();
    let mut body = Value::Object(value.clone());
    for path in kind.reference_paths() {
        let parts: Vec<&str> = path.split('.').collect();
        let mut collect = |_: &str, _: &str, v: &mut Value| -> Result<(), ApiError> {
            if let Some(text) = v.as_str() {
                found.push(reference_path(text).to_string());
            }
            Ok(())
        };
        let _ = visit_references(&mut body, &parts, "", &mut collect);
    }
    found
}

/// The resources that reference `target`.
fn referrers(world: &World, target: &ResKey) -> Vec<ResKey> {
    let path = target.path();
    world
        .compute
        .resources
        .iter()
        .filter(|(k, v)| *k != target && references_of(k.kind, v).contains(&path))
        .map(|(k, _)| k.clone())
        .collect()
}

/// Output-only fields a client may echo back; the server owns them.
const SERVER_FIELDS: &[&str] = &[
    "id",
    "kind",
    "selfLink",
    "selfLinkWithId",
    "creationTimestamp",
    "fingerprint",
    "labelFingerprint",
    "region",
    "zone",
    "usedBy",
    "size",
    "status",
];

/// A client body with server-owned fields removed.
fn client_fields(kind: Kind, body: &Value) -> Result<Value, ApiError> {
    if !body.is_object() {
        return Err(ApiError::invalid(format!(
            "Required field 'resource' not specified ({}).",
            kind.schema()
        )));
    }
    let mut value = body.clone();
    if let Some(doc) = discovery().doc_for(Api::Compute, "v1") {
        doc.strip_read_only(kind.schema(), &mut value);
    }
    if let Some(map) = value.as_object_mut() {
        for field in SERVER_FIELDS {
            map.remove(*field);
        }
    }
    Ok(value)
}

fn sha256_hex(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `iap.oauth2ClientSecret` is input only: keep its SHA-256 as `oauth2ClientSecretSha256`. A
/// write that keeps the client id without a new secret keeps the old hash.
fn hash_iap_secret(
    value: &mut Value,
    previous: Option<&Map<String, Value>>,
) -> Result<(), ApiError> {
    let Some(iap) = value.get_mut("iap").and_then(Value::as_object_mut) else {
        return Ok(());
    };
    match iap.remove("oauth2ClientSecret") {
        Some(Value::String(secret)) if !secret.is_empty() => {
            if iap
                .get("oauth2ClientId")
                .and_then(Value::as_str)
                .unwrap_or("")
                .is_empty()
            {
                return Err(invalid_field(
                    "iap.oauth2ClientSecret",
                    "REDACTED",
                    "An OAuth2 client secret needs iap.oauth2ClientId.",
                ));
            }
            iap.insert(
                "oauth2ClientSecretSha256".into(),
                json!(sha256_hex(&secret)),
            );
        }
        _ => {
            let previous_iap = previous.and_then(|p| p.get("iap"));
            let same_client =
                previous_iap.and_then(|p| p.get("oauth2ClientId")) == iap.get("oauth2ClientId");
            match previous_iap.and_then(|p| p.get("oauth2ClientSecretSha256")) {
                Some(hash) if same_client && iap.get("oauth2ClientId").is_some() => {
                    iap.insert("oauth2ClientSecretSha256".into(), hash.clone());
                }
                _ => {
                    iap.remove("oauth2ClientSecretSha256");
                }
            }
        }
    }
    Ok(())
}

fn is_serverless_neg(world: &World, reference: &str) -> bool {
    let path = reference_path(reference);
    world.compute.resources.iter().any(|(k, v)| {
        k.kind == NetworkEndpointGroup
            && k.path() == path
            && v.get("networkEndpointType").and_then(Value::as_str) == Some("SERVERLESS")
    })
}

/// Kind-specific rules and server defaults (defaults only when `fill` is set: on insert).
fn validate_and_default(
    world: &World,
    key: &ResKey,
    value: &mut Value,
    fill: bool,
) -> Result<(), ApiError> {
    let Some(map) = value.as_object_mut() else {
        return Ok(());
    };
    let regional = !key.region.is_empty();
    match key.kind {
        BackendService => {
            if fill {
                map.entry("protocol").or_insert(json!("HTTP"));
                map.entry("loadBalancingScheme")
                    .or_insert(json!(if regional { "INTERNAL" } else { "EXTERNAL" }));
                map.entry("timeoutSec").or_insert(json!(30));
                map.entry("port").or_insert(json!(80));
                map.entry("portName").or_insert(json!("http"));
                map.entry("sessionAffinity").or_insert(json!("NONE"));
                map.entry("affinityCookieTtlSec").or_insert(json!(0));
                map.entry("connectionDraining")
                    .or_insert(json!({"drainingTimeoutSec": 300}));
            }
            let serverless = map
                .get("backends")
                .and_then(Value::as_array)
                .is_some_and(|b| {
                    b.iter()
                        .filter_map(|b| b.get("group")?.as_str())
                        .any(|g| is_serverless_neg(world, g))
                });
            let checks = map
                .get("healthChecks")
                .and_then(Value::as_array)
                .is_some_and(|h| !h.is_empty());
            if serverless && checks {
                return Err(invalid_field(
                    "healthChecks",
                    "",
                    "A backend service cannot have a health check with serverless network endpoint group backends.",
                ));
            }
        }
        NetworkEndpointGroup => {
            let platforms = ["cloudRun", "appEngine", "cloudFunction"];
            let given: Vec<&str> = platforms
                .iter()
                .copied()
                .filter(|p| map.contains_key(*p))
                .collect();
            if fill && !map.contains_key("networkEndpointType") && !given.is_empty() {
                map.insert("networkEndpointType".into(), json!("SERVERLESS"));
            }
            let kind = map
                .get("networkEndpointType")
                .and_then(Value::as_str)
                .unwrap_or("");
            if kind.is_empty() {
                return Err(invalid_field(
                    "networkEndpointType",
                    "",
                    "A regional network endpoint group needs a network endpoint type.",
                ));
            }
            if kind == "SERVERLESS" {
                if given.len() != 1 {
                    return Err(invalid_field(
                        "networkEndpointType",
                        kind,
                        "A serverless network endpoint group needs exactly one of cloudRun, appEngine, cloudFunction.",
                    ));
                }
                if let Some(run) = map.get("cloudRun") {
                    let has = |f: &str| {
                        run.get(f)
                            .and_then(Value::as_str)
                            .is_some_and(|s| !s.is_empty())
                    };
                    if !has("service") && !has("urlMask") {
                        return Err(invalid_field(
                            "cloudRun",
                            "",
                            "cloudRun needs a service or a urlMask.",
                        ));
                    }
                }
            }
            if fill {
                map.entry("size").or_insert(json!(0));
            }
        }
        UrlMap => {
            if !["defaultService", "defaultUrlRedirect", "defaultRouteAction"]
                .iter()
                .any(|f| map.contains_key(*f))
            {
                return Err(invalid_field(
                    "defaultService",
                    "",
                    "A URL map needs a defaultService, defaultUrlRedirect or defaultRouteAction.",
                ));
            }
        }
        TargetHttpsProxy => {
            if map
                .get("urlMap")
                .and_then(Value::as_str)
                .unwrap_or("")
                .is_empty()
            {
                return Err(invalid_field(
                    "urlMap",
                    "",
                    "A target HTTPS proxy needs a URL map.",
                ));
            }
            let certificates = map
                .get("sslCertificates")
                .and_then(Value::as_array)
                .is_some_and(|c| !c.is_empty());
            let certificate_map = !regional
                && map
                    .get("certificateMap")
                    .and_then(Value::as_str)
                    .is_some_and(|c| !c.is_empty());
            if !certificates && !certificate_map {
                return Err(invalid_field(
                    "sslCertificates",
                    "",
                    "At least one SSL certificate must be specified.",
                ));
            }
            if fill {
                map.entry("quicOverride").or_insert(json!("NONE"));
            }
        }
        TargetHttpProxy => {
            if map
                .get("urlMap")
                .and_then(Value::as_str)
                .unwrap_or("")
                .is_empty()
            {
                return Err(invalid_field(
                    "urlMap",
                    "",
                    "A target HTTP proxy needs a URL map.",
                ));
            }
        }
        ForwardingRule => {
            let target = map
                .get("target")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            let backend = map
                .get("backendService")
                .and_then(Value::as_str)
                .unwrap_or("");
            if target.is_empty() && backend.is_empty() {
                return Err(invalid_field(
                    "target",
                    "",
                    "A forwarding rule needs a target or a backendService.",
                ));
            }
            if fill {
                map.entry("IPProtocol").or_insert(json!("TCP"));
                map.entry("loadBalancingScheme")
                    .or_insert(json!("EXTERNAL"));
                map.entry("networkTier").or_insert(json!("PREMIUM"));
                map.entry("labelFingerprint")
                    .or_insert(json!("42WmSpB8rSM="));
                if !map.contains_key("portRange")
                    && !map.contains_key("ports")
                    && !map.contains_key("allPorts")
                {
                    let port = if target.contains("/targetHttpsProxies/") {
                        "443-443"
                    } else {
                        "80-80"
                    };
                    map.insert("portRange".into(), json!(port));
                }
                if let Some(Value::String(range)) = map.get_mut("portRange") {
                    if !range.contains('-') {
                        *range = format!("{range}-{range}");
                    }
                }
            }
        }
    }
    Ok(())
}

fn new_fingerprint(key: &ResKey, seq: u64) -> String {
    let digest = Sha256::digest(format!("{}#{seq}", key.path()).as_bytes());
    base64::engine::general_purpose::STANDARD.encode(&digest[..8])
}

/// A 19-digit uint64 id, unique within the world (the low digits are the sequence number).
fn new_id(seq: u64) -> String {
    let high: u64 = rand::thread_rng().gen_range(100_000_000..900_000_000);
    (high * 10_000_000_000 + seq % 10_000_000_000).to_string()
}

/// Check `requestId`; answer the operation of an earlier request with the same id, if any.
fn deduplicate(
    world: &mut World,
    call: &Call<'_>,
    project: &str,
) -> Result<Option<Value>, ApiError> {
    let Some(request_id) = call.query("requestId").filter(|r| !r.is_empty()) else {
        return Ok(None);
    };
    let valid = uuid::Uuid::parse_str(request_id).is_ok_and(|u| !u.is_nil());
    if !valid {
        return Err(ApiError::invalid(format!(
            "Invalid value for field 'requestId': '{request_id}'. The request ID must be a valid UUID with the \
             exception that zero UUID is not supported (00000000-0000-0000-0000-000000000000)."
        )));
    }
    let Some(op_key) = world
        .compute
        .request_ids
        .get(&(project.to_string(), request_id.to_string()))
    else {
        return Ok(None);
    };
    Ok(world
        .compute
        .operations
        .get(op_key)
        .map(|op| op.render(op.is_done(call.now))))
}

/// Start an operation on `target`; answers its first (running) state.
fn start_operation(
    world: &mut World,
    call: &Call<'_>,
    target: &ResKey,
    target_id: &str,
    op_type: &str,
) -> Value {
    let seq = world.next_seq();
    let now_ms = call.wall.unix_timestamp_nanos() / 1_000_000;
    let mut rng = rand::thread_rng();
    let name = format!(
        "operation-{now_ms}-{:013x}-{:08x}-{:08x}",
        rng.gen::<u64>() & 0xf_ffff_ffff_ffff,
        rng.gen::<u32>(),
        rng.gen::<u32>()
    );
    let op_path = format!(
        "projects/{}/{}/operations/{name}",
        target.project,
        target.scope()
    );
    let mut value = Map::new();
    value.insert("kind".into(), json!("compute#operation"));
    value.insert("id".into(), json!(new_id(seq)));
    value.insert("name".into(), json!(name));
    value.insert("operationType".into(), json!(op_type));
    value.insert("targetLink".into(), json!(self_link(call, &target.path())));
    value.insert("targetId".into(), json!(target_id));
    value.insert("user".into(), json!("user@example.com"));
    value.insert("insertTime".into(), json!(call.timestamp()));
    value.insert("startTime".into(), json!(call.timestamp()));
    value.insert("selfLink".into(), json!(self_link(call, &op_path)));
    if !target.region.is_empty() {
        value.insert(
            "region".into(),
            json!(self_link(
                call,
                &format!("projects/{}/regions/{}", target.project, target.region)
            )),
        );
    }
    if let Some(request_id) = call.query("requestId").filter(|r| !r.is_empty()) {
        value.insert("clientOperationId".into(), json!(request_id));
        world.compute.request_ids.insert(
            (target.project.clone(), request_id.to_string()),
            (target.project.clone(), target.region.clone(), name.clone()),
        );
    }
    let done_at = call.operation_done_at();
    let end_time = super::dispatch::rfc3339(
        call.wall
            + time::Duration::try_from(done_at.saturating_duration_since(call.now))
                .unwrap_or(time::Duration::ZERO),
    );
    let op = ComputeOp {
        value,
        done_at,
        polls_left: call.operation_polls(),
        end_time,
        error: call.operation_error(),
    };
    let first = op.render(false);
    world
        .compute
        .operations
        .insert((target.project.clone(), target.region.clone(), name), op);
    first
}

fn render_resource(
    world: &World,
    call: &Call<'_>,
    key: &ResKey,
    value: &Map<String, Value>,
) -> Value {
    let mut out = value.clone();
    if key.kind == BackendService {
        let used_by: Vec<Value> = referrers(world, key)
            .iter()
            .map(|k| json!({"reference": self_link(call, &k.path())}))
            .collect();
        if !used_by.is_empty() {
            out.insert("usedBy".into(), Value::Array(used_by));
        }
    }
    Value::Object(out)
}

fn get(
    world: &mut World,
    call: &Call<'_>,
    kind: Kind,
    regional: bool,
) -> Result<Outcome, ApiError> {
    let (project, region) = scope(world, call, regional)?;
    let name = call.param(kind.param())?;
    let key = world
        .compute
        .find(&project, &region, kind, name)
        .ok_or_else(|| {
            not_found(
                &ResKey {
                    project: project.clone(),
                    region: region.clone(),
                    kind,
                    name: name.to_string(),
                }
                .path(),
            )
        })?;
    let value = world
        .compute
        .resources
        .get(&key)
        .cloned()
        .unwrap_or_default();
    Ok(Outcome::Json(render_resource(world, call, &key, &value)))
}

/// One comparison of a list filter: (field path, operator, value).
type Clause = (String, String, String);

fn parse_filter(filter: &str) -> Result<Vec<Clause>, ApiError> {
    let pattern = Regex::new(
        r#"\(?\s*([A-Za-z0-9_.]+)\s*(!=|=|:|\beq\b|\bne\b)\s*("(?:[^"\\]|\\.)*"|[^\s()]+)\s*\)?"#,
    )
    .map_err(|e| ApiError::invalid(e.to_string()))?;
    let mut clauses = Vec::new();
    let mut leftover = filter.to_string();
    for capture in pattern.captures_iter(filter) {
        let (Some(all), Some(field), Some(op), Some(value)) = (
            capture.get(0),
            capture.get(1),
            capture.get(2),
            capture.get(3),
        ) else {
            continue;
        };
        leftover = leftover.replacen(all.as_str(), " ", 1);
        let value = value.as_str();
        let value = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(value);
        clauses.push((
            field.as_str().to_string(),
            op.as_str().to_string(),
            value.to_string(),
        ));
    }
    if leftover
        .split_whitespace()
        .any(|w| !w.eq_ignore_ascii_case("AND"))
    {
        return Err(ApiError::invalid(format!(
            "Invalid value for field 'filter': '{filter}'. Invalid list filter expression."
        )));
    }
    Ok(clauses)
}

fn field_text(value: &Value, path: &str) -> Option<String> {
    let mut current = value;
    for part in path.split('.') {
        current = current.get(part)?;
    }
    Some(match current {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    })
}

fn matches(value: &Value, clauses: &[Clause]) -> bool {
    clauses.iter().all(|(field, op, expected)| {
        let actual = field_text(value, field);
        match op.as_str() {
            "=" => actual.as_deref() == Some(expected.as_str()),
            "!=" => actual.as_deref() != Some(expected.as_str()),
            ":" => actual.is_some_and(|a| expected == "*" || a.contains(expected.as_str())),
            _ => {
                let full = Regex::new(&format!("^(?:{expected})$")).ok();
                let hit = matches!((&full, &actual), (Some(re), Some(a)) if re.is_match(a));
                if op == "eq" {
                    hit
                } else {
                    !hit
                }
            }
        }
    })
}

/// The slice of `total` items a list call asks for: from `pageToken` (an offset), `maxResults`
/// items (500 at most, compute's limit).
fn page_bounds(call: &Call<'_>, total: usize) -> Result<(usize, usize), ApiError> {
    let start = match call.query("pageToken").filter(|t| !t.is_empty()) {
        Some(token) => token
            .parse::<usize>()
            .map_err(|_| ApiError::invalid("Invalid value for field 'pageToken'."))?,
        None => 0,
    };
    let size = call
        .query("maxResults")
        .and_then(|m| m.parse::<usize>().ok())
        .filter(|m| *m > 0)
        .unwrap_or(500)
        .min(500);
    let start = start.min(total);
    Ok((start, start.saturating_add(size).min(total)))
}

fn list(
    world: &mut World,
    call: &Call<'_>,
    kind: Kind,
    regional: bool,
) -> Result<Outcome, ApiError> {
    let (project, region) = scope(world, call, regional)?;
    let clauses = parse_filter(call.query("filter").unwrap_or(""))?;
    let items: Vec<Value> = world
        .compute
        .resources
        .iter()
        .filter(|(k, _)| k.project == project && k.region == region && k.kind == kind)
        .map(|(k, v)| render_resource(world, call, k, v))
        .filter(|v| matches(v, &clauses))
        .collect();
    let (start, end) = page_bounds(call, items.len())?;
    let scope_path = if regional {
        format!("regions/{region}")
    } else {
        "global".to_string()
    };
    let list_path = format!("projects/{project}/{scope_path}/{}", kind.collection());
    let mut out = Map::new();
    out.insert("kind".into(), json!(format!("{}List", kind.kind_string())));
    out.insert("id".into(), json!(list_path));
    if start < end {
        out.insert("items".into(), Value::Array(items[start..end].to_vec()));
    }
    if end < items.len() {
        out.insert("nextPageToken".into(), json!(end.to_string()));
    }
    out.insert("selfLink".into(), json!(self_link(call, &list_path)));
    Ok(Outcome::Json(Value::Object(out)))
}

/// `{collection}.aggregatedList`: every resource of the kind in the project, global and regional
/// (regional only when `regional_only`), grouped by scope (`global`, `regions/{r}`), paged across
/// scopes by `maxResults`. A scope the kind is known in (`global` always, for a kind with a global
/// collection) but with nothing on this page answers Google's `NO_RESULTS_ON_PAGE` warning.
fn aggregated_list(
    world: &mut World,
    call: &Call<'_>,
    kind: Kind,
    regional_only: bool,
) -> Result<Outcome, ApiError> {
    let (project, _) = scope(world, call, false)?;
    let clauses = parse_filter(call.query("filter").unwrap_or(""))?;
    let items: Vec<(String, Value)> = world
        .compute
        .resources
        .iter()
        .filter(|(k, _)| k.project == project && k.kind == kind)
        .filter(|(k, _)| !(regional_only && k.region.is_empty()))
        .map(|(k, v)| (k.scope(), render_resource(world, call, k, v)))
        .filter(|(_, v)| matches(v, &clauses))
        .collect();
    let (start, end) = page_bounds(call, items.len())?;
    let mut scopes: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    if !regional_only && kind != NetworkEndpointGroup {
        scopes.insert("global".into(), Vec::new());
    }
    for (scope, _) in &items {
        scopes.entry(scope.clone()).or_default();
    }
    for (scope, item) in &items[start..end] {
        scopes.entry(scope.clone()).or_default().push(item.clone());
    }
    let scoped: Map<String, Value> = scopes
        .into_iter()
        .map(|(scope, list)| {
            let entry = if list.is_empty() {
                json!({"warning": {
                    "code": "NO_RESULTS_ON_PAGE",
                    "message": format!("There are no results for scope '{scope}' on this page."),
                    "data": [{"key": "scope", "value": scope}],
                }})
            } else {
                json!({ kind.collection(): list })
            };
            (scope, entry)
        })
        .collect();
    let list_path = format!("projects/{project}/aggregated/{}", kind.collection());
    let mut out = Map::new();
    out.insert("kind".into(), json!(kind.aggregated_kind()));
    out.insert("id".into(), json!(list_path));
    out.insert("items".into(), Value::Object(scoped));
    if end < items.len() {
        out.insert("nextPageToken".into(), json!(end.to_string()));
    }
    out.insert("selfLink".into(), json!(self_link(call, &list_path)));
    Ok(Outcome::Json(Value::Object(out)))
}

fn insert(
    world: &mut World,
    call: &Call<'_>,
    kind: Kind,
    regional: bool,
) -> Result<Outcome, ApiError> {
    let (project, region) = scope(world, call, regional)?;
    if let Some(previous) = deduplicate(world, call, &project)? {
        return Ok(Outcome::Json(previous));
    }
    let name = call
        .body
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    if name.is_empty() {
        return Err(ApiError::invalid(
            "Required field 'resource.name' not specified",
        ));
    }
    if !valid_name(&name) {
        return Err(invalid_field(
            "name",
            &name,
            "Must be a match of regex '(?:[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?)'",
        ));
    }
    let key = ResKey {
        project: project.clone(),
        region: region.clone(),
        kind,
        name: name.clone(),
    };
    if world.compute.resources.contains_key(&key) {
        return Err(ApiError::already_exists(format!(
            "The resource '{}' already exists",
            key.path()
        )));
    }
    let mut value = client_fields(kind, call.body)?;
    normalize_references(world, call, &key, &mut value)?;
    hash_iap_secret(&mut value, None)?;
    validate_and_default(world, &key, &mut value, true)?;
    let seq = world.next_seq();
    let id = new_id(seq);
    if let Some(map) = value.as_object_mut() {
        map.insert("kind".into(), json!(kind.kind_string()));
        map.insert("id".into(), json!(id));
        map.insert("creationTimestamp".into(), json!(call.timestamp()));
        map.insert("name".into(), json!(name));
        map.insert("selfLink".into(), json!(self_link(call, &key.path())));
        if regional {
            map.insert(
                "region".into(),
                json!(self_link(
                    call,
                    &format!("projects/{project}/regions/{region}")
                )),
            );
        }
        if kind.has_fingerprint() {
            map.insert("fingerprint".into(), json!(new_fingerprint(&key, seq)));
        }
        if kind == ForwardingRule && !map.contains_key("IPAddress") {
            let first = if regional { 35 } else { 34 };
            let address = format!(
                "{first}.{}.{}.{}",
                (seq >> 16) % 200 + 20,
                (seq >> 8) % 256,
                seq % 254 + 1
            );
            map.insert("IPAddress".into(), json!(address));
        }
    }
    let first = start_operation(world, call, &key, &id, "insert");
    if call.operation_error().is_none() {
        if let Value::Object(map) = value {
            world.compute.resources.insert(key, map);
        }
    }
    Ok(Outcome::Json(first))
}

/// RFC 7386 JSON merge patch.
fn merge_patch(target: &mut Value, patch: &Value) {
    let Some(patch) = patch.as_object() else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = json!({});
    }
    if let Some(target) = target.as_object_mut() {
        for (key, value) in patch {
            if value.is_null() {
                target.remove(key);
            } else {
                merge_patch(target.entry(key.clone()).or_insert(Value::Null), value);
            }
        }
    }
}

/// Shared body of patch (merge) and update (replace).
fn modify(
    world: &mut World,
    call: &Call<'_>,
    kind: Kind,
    regional: bool,
    merge: bool,
) -> Result<Outcome, ApiError> {
    let (project, region) = scope(world, call, regional)?;
    if let Some(previous) = deduplicate(world, call, &project)? {
        return Ok(Outcome::Json(previous));
    }
    let name = call.param(kind.param())?;
    let key = world
        .compute
        .find(&project, &region, kind, name)
        .ok_or_else(|| {
            not_found(
                &ResKey {
                    project: project.clone(),
                    region: region.clone(),
                    kind,
                    name: name.to_string(),
                }
                .path(),
            )
        })?;
    let existing = world
        .compute
        .resources
        .get(&key)
        .cloned()
        .unwrap_or_default();
    let current = existing
        .get("fingerprint")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    match call.body.get("fingerprint").and_then(Value::as_str).filter(|f| !f.is_empty()) {
        None => {
            return Err(ApiError::condition_not_met(format!(
                "Required field 'fingerprint' not specified: an up-to-date fingerprint must be provided to update \
                 the {}.",
                kind.schema()
            )))
        }
        Some(given) if given != current => {
            return Err(ApiError::condition_not_met("Supplied fingerprint does not match current metadata fingerprint."))
        }
        Some(_) => {}
    }
    if let Some(body_name) = call
        .body
        .get("name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
    {
        if body_name != key.name {
            return Err(invalid_field(
                "name",
                body_name,
                "The name of a resource cannot be changed.",
            ));
        }
    }
    let input = client_fields(kind, call.body)?;
    let server: Map<String, Value> = existing
        .iter()
        .filter(|(k, _)| SERVER_FIELDS.contains(&k.as_str()) || *k == "name")
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let mut value = if merge {
        let mut merged = Value::Object(existing.clone());
        merge_patch(&mut merged, &input);
        merged
    } else {
        input.clone()
    };
    if let Some(map) = value.as_object_mut() {
        map.extend(server);
    }
    normalize_references(world, call, &key, &mut value)?;
    hash_iap_secret(&mut value, Some(&existing))?;
    validate_and_default(world, &key, &mut value, !merge)?;
    let seq = world.next_seq();
    if let Some(map) = value.as_object_mut() {
        map.insert("fingerprint".into(), json!(new_fingerprint(&key, seq)));
    }
    let id = existing
        .get("id")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let first = start_operation(
        world,
        call,
        &key,
        &id,
        if merge { "patch" } else { "update" },
    );
    if call.operation_error().is_none() {
        if let Value::Object(map) = value {
            world.compute.resources.insert(key, map);
        }
    }
    Ok(Outcome::Json(first))
}

fn patch(
    world: &mut World,
    call: &Call<'_>,
    kind: Kind,
    regional: bool,
) -> Result<Outcome, ApiError> {
    modify(world, call, kind, regional, true)
}

fn update(
    world: &mut World,
    call: &Call<'_>,
    kind: Kind,
    regional: bool,
) -> Result<Outcome, ApiError> {
    modify(world, call, kind, regional, false)
}

fn delete(
    world: &mut World,
    call: &Call<'_>,
    kind: Kind,
    regional: bool,
) -> Result<Outcome, ApiError> {
    let (project, region) = scope(world, call, regional)?;
    if let Some(previous) = deduplicate(world, call, &project)? {
        return Ok(Outcome::Json(previous));
    }
    let name = call.param(kind.param())?;
    let key = world
        .compute
        .find(&project, &region, kind, name)
        .ok_or_else(|| {
            not_found(
                &ResKey {
                    project: project.clone(),
                    region: region.clone(),
                    kind,
                    name: name.to_string(),
                }
                .path(),
            )
        })?;
    if let Some(user) = referrers(world, &key).first() {
        return Err(ApiError::new(
            400,
            "FAILED_PRECONDITION",
            "resourceInUseByAnotherResource",
            format!(
                "The {} resource '{}' is already being used by '{}'",
                kind.snake(),
                key.path(),
                user.path()
            ),
        ));
    }
    let id = world
        .compute
        .resources
        .get(&key)
        .and_then(|v| v.get("id"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let first = start_operation(world, call, &key, &id, "delete");
    if call.operation_error().is_none() {
        world.compute.resources.remove(&key);
        if kind == BackendService {
            let region = (!key.region.is_empty()).then_some(key.region.as_str());
            super::iap::forget_backend_service(world, &key.project, region, &key.name);
        }
    }
    Ok(Outcome::Json(first))
}

fn operation_key(world: &mut World, call: &Call<'_>, regional: bool) -> Result<OpKey, ApiError> {
    let (project, region) = scope(world, call, regional)?;
    let name = call.param("operation")?;
    let key = (project.clone(), region.clone(), name.to_string());
    if world.compute.operations.contains_key(&key) {
        return Ok(key);
    }
    let scope_path = if regional {
        format!("regions/{region}")
    } else {
        "global".to_string()
    };
    Err(not_found(&format!(
        "projects/{project}/{scope_path}/operations/{name}"
    )))
}

fn operation_get(
    world: &mut World,
    call: &Call<'_>,
    _: Kind,
    regional: bool,
) -> Result<Outcome, ApiError> {
    let key = operation_key(world, call, regional)?;
    let op = world
        .compute
        .operations
        .get_mut(&key)
        .ok_or_else(|| ApiError::not_found("Operation not found."))?;
    if op.polls_left > 0 {
        op.polls_left -= 1;
        return Ok(Outcome::Json(op.render(false)));
    }
    Ok(Outcome::Json(op.render(call.now >= op.done_at)))
}

/// Compute's wait returns after at most about two minutes.
const MAX_WAIT: Duration = Duration::from_secs(120);

fn operation_wait(
    world: &mut World,
    call: &Call<'_>,
    _: Kind,
    regional: bool,
) -> Result<Outcome, ApiError> {
    let key = operation_key(world, call, regional)?;
    Ok(Outcome::WaitCompute {
        key,
        deadline: call.now + MAX_WAIT,
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
        .compute
        .operations
        .get_mut(key)
        .ok_or_else(|| ApiError::not_found("Operation not found."))?;
    if now >= op.done_at {
        op.polls_left = 0;
    }
    let done = op.is_done(now);
    let value = op.render(done);
    if done || now >= deadline {
        Ok((value, None))
    } else {
        Ok((value, Some(op.done_at)))
    }
}

/// Compute state for the admin dump.
pub(crate) fn dump(world: &World, now: Instant) -> Value {
    let resources: Vec<Value> = world
        .compute
        .resources
        .iter()
        .map(|(k, v)| json!({"path": k.path(), "resource": v}))
        .collect();
    let operations: Vec<Value> = world
        .compute
        .operations
        .values()
        .map(|op| op.render(op.is_done(now)))
        .collect();
    json!({"resources": resources, "operations": operations})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner(region: &str) -> ResKey {
        ResKey {
            project: "p".into(),
            region: region.into(),
            kind: UrlMap,
            name: "m".into(),
        }
    }

    #[test]
    fn references_in_every_form() {
        let global = owner("");
        for text in [
            "https://www.googleapis.com/compute/v1/projects/p/global/backendServices/bs",
            "https://compute.googleapis.com/compute/v1/projects/p/global/backendServices/bs",
            "projects/p/global/backendServices/bs",
            "global/backendServices/bs",
        ] {
            let r = parse_reference(text, &global, None).expect(text);
            assert_eq!(
                (
                    r.project.as_str(),
                    r.scope.as_str(),
                    r.collection.as_str(),
                    r.name.as_str()
                ),
                ("p", "global", "backendServices", "bs")
            );
        }
        let bare = parse_reference("bs", &owner("europe-west1"), Some("backendServices")).unwrap();
        assert_eq!(bare.scope, "regions/europe-west1");
        assert!(parse_reference("bs", &global, None).is_none());
        assert!(parse_reference("projects/p/bogus", &global, None).is_none());
    }

    #[test]
    fn merge_patch_semantics() {
        let mut target =
            json!({"a": 1, "iap": {"enabled": false, "oauth2ClientId": "x"}, "list": [1, 2]});
        merge_patch(
            &mut target,
            &json!({"iap": {"enabled": true, "oauth2ClientId": null}, "list": [3], "b": "n"}),
        );
        assert_eq!(
            target,
            json!({"a": 1, "iap": {"enabled": true}, "list": [3], "b": "n"})
        );
    }

    #[test]
    fn filters() {
        let v = json!({"name": "web-backend", "loadBalancingScheme": "EXTERNAL", "iap": {"enabled": true}});
        assert!(matches(
            &v,
            &parse_filter("name = \"web-backend\"").unwrap()
        ));
        assert!(matches(&v, &parse_filter("name eq web-.*").unwrap()));
        assert!(!matches(
            &v,
            &parse_filter("(name != web-backend) AND (iap.enabled = true)").unwrap()
        ));
        assert!(matches(
            &v,
            &parse_filter("iap.enabled = true loadBalancingScheme = EXTERNAL").unwrap()
        ));
        assert!(parse_filter("name ~~ x").is_err());
        assert!(parse_filter("").unwrap().is_empty());
    }

    #[test]
    fn iap_secret_is_hashed_and_kept() {
        let mut v =
            json!({"iap": {"enabled": true, "oauth2ClientId": "id", "oauth2ClientSecret": "abc"}});
        hash_iap_secret(&mut v, None).unwrap();
        let hash = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert_eq!(
            v,
            json!({"iap": {"enabled": true, "oauth2ClientId": "id", "oauth2ClientSecretSha256": hash}})
        );
        let previous = v.as_object().cloned();
        let mut again = json!({"iap": {"enabled": false, "oauth2ClientId": "id"}});
        hash_iap_secret(&mut again, previous.as_ref()).unwrap();
        assert_eq!(again["iap"]["oauth2ClientSecretSha256"], hash);
        let mut other = json!({"iap": {"enabled": true, "oauth2ClientId": "other"}});
        hash_iap_secret(&mut other, previous.as_ref()).unwrap();
        assert!(other["iap"].get("oauth2ClientSecretSha256").is_none());
        let mut orphan = json!({"iap": {"enabled": true, "oauth2ClientSecret": "abc"}});
        assert!(hash_iap_secret(&mut orphan, None).is_err());
    }

    #[test]
    fn ids_fit_uint64() {
        for seq in [1, 9_999_999_999, u64::MAX] {
            let id = new_id(seq);
            assert_eq!(id.len(), 19, "{id}");
            assert!(id.parse::<u64>().is_ok(), "{id}");
        }
    }

    #[test]
    fn aggregated_list_kinds_follow_the_discovery_document() {
        let doc = discovery().doc_for(Api::Compute, "v1").expect("compute v1");
        let mut served = 0;
        for kind in KINDS {
            let id = format!("compute.{}.aggregatedList", kind.collection());
            if !ROUTES.iter().any(|(_, route, _)| *route == id) {
                continue;
            }
            served += 1;
            let method = discovery()
                .method(Api::Compute, "v1", &id)
                .unwrap_or_else(|| panic!("{id} in the discovery document"));
            let schema = method.response.as_deref().expect("a response schema");
            let field = doc.field(schema, &["kind"]).expect("kind");
            assert_eq!(
                field["default"].as_str(),
                Some(kind.aggregated_kind().as_str()),
                "{id}"
            );
        }
        assert_eq!(served, 5);
    }

    #[test]
    fn kind_strings() {
        assert_eq!(BackendService.kind_string(), "compute#backendService");
        assert_eq!(TargetHttpsProxy.kind_string(), "compute#targetHttpsProxy");
        assert_eq!(Kind::from_collection("urlMaps"), Some(UrlMap));
    }
}
