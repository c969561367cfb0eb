//! Compute Engine v1: backend services (get, aggregated list, IAP patch), serverless NEGs (get,
//! aggregated list), URL maps, target proxies and forwarding rules.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use serde::Deserialize;
use serde_json::{Map, Value};

use super::error::Error;
pub use super::operation::ComputeOperation;
use super::operation::{wait_compute, OperationScope};
use super::run::ServiceName;
use super::transport::{Api, BaseUrl, Call, Replay, Transport};

/// Largest page requested from list methods (compute's maximum).
const PAGE_SIZE: &str = "500";
/// A list longer than this many pages is treated as a server bug, not followed forever.
const MAX_PAGES: usize = 1000;
/// The Compute Engine API, as a disabled-API error names it.
pub const COMPUTE_SERVICE: &str = "compute.googleapis.com";

/// Global or regional compute resource.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Scope {
    Global,
    Region(String),
}

impl Scope {
    fn prefix<'a>(&'a self, project: &'a str) -> Vec<&'a str> {
        match self {
            Scope::Global => vec!["projects", project, "global"],
            Scope::Region(region) => vec!["projects", project, "regions", region],
        }
    }

    /// The region of a regional scope.
    pub fn region(&self) -> Option<&str> {
        match self {
            Scope::Global => None,
            Scope::Region(region) => Some(region),
        }
    }

    fn operation_scope(&self) -> OperationScope<'_> {
        match self {
            Scope::Global => OperationScope::Global,
            Scope::Region(region) => OperationScope::Region(region),
        }
    }
}

/// Identifies a backend service.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BackendServiceRef {
    pub project: String,
    pub scope: Scope,
    pub name: String,
}

impl BackendServiceRef {
    /// A global backend service.
    pub fn global(project: impl Into<String>, name: impl Into<String>) -> BackendServiceRef {
        BackendServiceRef {
            project: project.into(),
            scope: Scope::Global,
            name: name.into(),
        }
    }

    /// A regional backend service.
    pub fn regional(
        project: impl Into<String>,
        region: impl Into<String>,
        name: impl Into<String>,
    ) -> BackendServiceRef {
        BackendServiceRef {
            project: project.into(),
            scope: Scope::Region(region.into()),
            name: name.into(),
        }
    }
}

impl fmt::Display for BackendServiceRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.scope {
            Scope::Global => write!(
                f,
                "projects/{}/global/backendServices/{}",
                self.project, self.name
            ),
            Scope::Region(region) => write!(
                f,
                "projects/{}/regions/{}/backendServices/{}",
                self.project, region, self.name
            ),
        }
    }
}

/// A backend service: the fields the provider reads, plus the whole object.
#[derive(Debug, Clone, PartialEq)]
pub struct BackendService {
    pub name: String,
    pub id: Option<String>,
    pub self_link: Option<String>,
    /// Region URL for a regional backend service.
    pub region: Option<String>,
    pub fingerprint: Option<String>,
    /// `EXTERNAL` (classic), `EXTERNAL_MANAGED`, `INTERNAL_MANAGED`, ...
    pub load_balancing_scheme: Option<String>,
    /// `HTTP`, `HTTPS`, `HTTP2`, `H2C`, `TCP`, ...
    pub protocol: Option<String>,
    pub enable_cdn: bool,
    /// Absent in the API means IAP was never configured (disabled).
    pub iap: Option<BackendServiceIap>,
    /// `backends[].group` URLs (for serverless NEGs, `.../networkEndpointGroups/{neg}`).
    pub backend_groups: Vec<String>,
    /// `usedBy[].reference` URLs (URL maps and others).
    pub used_by: Vec<String>,
    pub raw: Value,
}

/// The `iap` block as read (the secret is input-only and never returned).
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BackendServiceIap {
    #[serde(default)]
    pub enabled: Option<bool>,
    #[serde(default)]
    pub oauth2_client_id: Option<String>,
    #[serde(default)]
    pub oauth2_client_secret_sha256: Option<String>,
}

impl BackendServiceIap {
    /// Whether IAP is on.
    pub fn is_enabled(&self) -> bool {
        self.enabled.unwrap_or(false)
    }
}

/// The IAP change to send. `None` fields are left as they are (merge-patch semantics).
#[derive(Clone, PartialEq, Eq, Default)]
pub struct IapPatch {
    pub enabled: bool,
    /// `Some("")` clears a custom client (back to the Google-managed one).
    pub oauth2_client_id: Option<String>,
    pub oauth2_client_secret: Option<String>,
}

impl fmt::Debug for IapPatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IapPatch")
            .field("enabled", &self.enabled)
            .field("oauth2_client_id", &self.oauth2_client_id)
            .field(
                "oauth2_client_secret",
                &self.oauth2_client_secret.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

impl IapPatch {
    fn to_value(&self) -> Value {
        let mut map = Map::new();
        map.insert("enabled".into(), Value::Bool(self.enabled));
        if let Some(id) = &self.oauth2_client_id {
            map.insert("oauth2ClientId".into(), Value::String(id.clone()));
        }
        if let Some(secret) = &self.oauth2_client_secret {
            map.insert("oauth2ClientSecret".into(), Value::String(secret.clone()));
        }
        Value::Object(map)
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BackendServiceWire {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    self_link: Option<String>,
    #[serde(default)]
    region: Option<String>,
    #[serde(default)]
    fingerprint: Option<String>,
    #[serde(default)]
    load_balancing_scheme: Option<String>,
    #[serde(default)]
    protocol: Option<String>,
    #[serde(default, rename = "enableCDN")]
    enable_cdn: Option<bool>,
    #[serde(default)]
    iap: Option<BackendServiceIap>,
    #[serde(default)]
    backends: Option<Vec<BackendWire>>,
    #[serde(default)]
    used_by: Option<Vec<UsedByWire>>,
}

#[derive(Deserialize)]
struct BackendWire {
    #[serde(default)]
    group: Option<String>,
}

#[derive(Deserialize)]
struct UsedByWire {
    #[serde(default)]
    reference: Option<String>,
}

impl BackendService {
    /// Reads the typed fields out of a BackendService object.
    pub fn from_value(raw: Value) -> Result<BackendService, Error> {
        let w: BackendServiceWire = serde_json::from_value(raw.clone())
            .map_err(|e| Error::decode("compute backend service", e))?;
        Ok(BackendService {
            name: w.name.unwrap_or_default(),
            id: w.id,
            self_link: w.self_link,
            region: w.region,
            fingerprint: w.fingerprint,
            load_balancing_scheme: w.load_balancing_scheme,
            protocol: w.protocol,
            enable_cdn: w.enable_cdn.unwrap_or(false),
            iap: w.iap,
            backend_groups: w
                .backends
                .unwrap_or_default()
                .into_iter()
                .filter_map(|b| b.group)
                .collect(),
            used_by: w
                .used_by
                .unwrap_or_default()
                .into_iter()
                .filter_map(|u| u.reference)
                .collect(),
            raw,
        })
    }

    /// Whether IAP is on.
    pub fn iap_enabled(&self) -> bool {
        self.iap.as_ref().is_some_and(BackendServiceIap::is_enabled)
    }

    /// The custom OAuth client IAP uses (`None`: the Google-managed one; an empty id is none).
    pub fn oauth2_client_id(&self) -> Option<&str> {
        let id = self.iap.as_ref()?.oauth2_client_id.as_deref();
        id.filter(|c| !c.trim().is_empty())
    }

    /// The region of a regional backend service (the last segment of its `region` URL).
    pub fn region_name(&self) -> Option<&str> {
        self.region.as_deref().map(last_segment)
    }
}

/// The last path segment of a compute URL (`.../regions/us-central1` → `us-central1`).
fn last_segment(url: &str) -> &str {
    url.trim_end_matches('/').rsplit('/').next().unwrap_or(url)
}

/// A network endpoint group (serverless NEGs point at a Cloud Run service).
#[derive(Debug, Clone, PartialEq)]
pub struct NetworkEndpointGroup {
    pub name: String,
    pub self_link: Option<String>,
    pub region: Option<String>,
    /// `SERVERLESS` for Cloud Run.
    pub network_endpoint_type: Option<String>,
    pub cloud_run: Option<CloudRunTarget>,
    pub raw: Value,
}

/// `cloudRun` of a serverless NEG.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CloudRunTarget {
    #[serde(default)]
    pub service: Option<String>,
    #[serde(default)]
    pub tag: Option<String>,
    #[serde(default)]
    pub url_mask: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct NegWire {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    self_link: Option<String>,
    #[serde(default)]
    region: Option<String>,
    #[serde(default)]
    network_endpoint_type: Option<String>,
    #[serde(default)]
    cloud_run: Option<CloudRunTarget>,
}

impl NetworkEndpointGroup {
    /// The NEG's region (the last segment of its `region` URL); `None` for zonal or global NEGs.
    pub fn region_name(&self) -> Option<&str> {
        self.region.as_deref().map(last_segment)
    }

    fn from_value(raw: Value) -> Result<NetworkEndpointGroup, Error> {
        let w: NegWire = serde_json::from_value(raw.clone())
            .map_err(|e| Error::decode("compute network endpoint group", e))?;
        Ok(NetworkEndpointGroup {
            name: w.name.unwrap_or_default(),
            self_link: w.self_link,
            region: w.region,
            network_endpoint_type: w.network_endpoint_type,
            cloud_run: w.cloud_run,
            raw,
        })
    }
}

/// A URL map.
#[derive(Debug, Clone, PartialEq)]
pub struct UrlMap {
    pub name: String,
    pub self_link: Option<String>,
    pub default_service: Option<String>,
    pub raw: Value,
}

impl UrlMap {
    fn from_value(raw: Value) -> Result<UrlMap, Error> {
        let field = |k: &str| -> Result<Option<String>, Error> {
            match raw.get(k) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(_) => Err(Error::decode(
                    "compute URL map",
                    format!("{k} is not a string"),
                )),
            }
        };
        if !raw.is_object() {
            return Err(Error::decode("compute URL map", "not a JSON object"));
        }
        Ok(UrlMap {
            name: field("name")?.unwrap_or_default(),
            self_link: field("selfLink")?,
            default_service: field("defaultService")?,
            raw,
        })
    }

    /// Every backend (or bucket) URL the map routes to: default services, path rules, route
    /// rules and weighted or mirrored backends at any level. Test cases are not routes.
    pub fn backend_services(&self) -> Vec<String> {
        fn walk(value: &Value, out: &mut Vec<String>) {
            match value {
                Value::Object(map) => {
                    for (key, v) in map {
                        match (key.as_str(), v) {
                            ("tests", _) => {}
                            ("defaultService" | "service" | "backendService", Value::String(s)) => {
                                if !out.contains(s) {
                                    out.push(s.clone());
                                }
                            }
                            _ => walk(v, out),
                        }
                    }
                }
                Value::Array(items) => items.iter().for_each(|v| walk(v, out)),
                _ => {}
            }
        }
        let mut out = Vec::new();
        walk(&self.raw, &mut out);
        out
    }
}

/// A target HTTP or HTTPS proxy.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetProxy {
    pub name: String,
    pub self_link: Option<String>,
    pub url_map: Option<String>,
    pub raw: Value,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ProxyWire {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    self_link: Option<String>,
    #[serde(default)]
    url_map: Option<String>,
}

impl TargetProxy {
    fn from_value(raw: Value) -> Result<TargetProxy, Error> {
        let w: ProxyWire = serde_json::from_value(raw.clone())
            .map_err(|e| Error::decode("compute target proxy", e))?;
        Ok(TargetProxy {
            name: w.name.unwrap_or_default(),
            self_link: w.self_link,
            url_map: w.url_map,
            raw,
        })
    }
}

/// A forwarding rule.
#[derive(Debug, Clone, PartialEq)]
pub struct ForwardingRule {
    pub name: String,
    pub self_link: Option<String>,
    /// Target proxy URL (`.../targetHttpsProxies/...` for HTTPS).
    pub target: Option<String>,
    pub load_balancing_scheme: Option<String>,
    pub ip_protocol: Option<String>,
    pub port_range: Option<String>,
    pub raw: Value,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ForwardingRuleWire {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    self_link: Option<String>,
    #[serde(default)]
    target: Option<String>,
    #[serde(default)]
    load_balancing_scheme: Option<String>,
    #[serde(default, rename = "IPProtocol")]
    ip_protocol: Option<String>,
    #[serde(default)]
    port_range: Option<String>,
}

impl ForwardingRule {
    fn from_value(raw: Value) -> Result<ForwardingRule, Error> {
        let w: ForwardingRuleWire = serde_json::from_value(raw.clone())
            .map_err(|e| Error::decode("compute forwarding rule", e))?;
        Ok(ForwardingRule {
            name: w.name.unwrap_or_default(),
            self_link: w.self_link,
            target: w.target,
            load_balancing_scheme: w.load_balancing_scheme,
            ip_protocol: w.ip_protocol,
            port_range: w.port_range,
            raw,
        })
    }

    /// Whether the rule fronts a target HTTPS proxy.
    pub fn is_https(&self) -> bool {
        self.target
            .as_deref()
            .is_some_and(|t| t.contains("/targetHttpsProxies/"))
    }
}

/// A compute resource URL from `projects/` on: hosts and versions differ (selfLinks use
/// www.googleapis.com even when the call went to compute.googleapis.com).
pub fn resource_path(url: &str) -> &str {
    url.find("projects/")
        .map_or(url, |i| &url[i..])
        .trim_end_matches('/')
}

/// Compares two compute resource URLs by [`resource_path`].
pub fn same_resource(a: &str, b: &str) -> bool {
    resource_path(a) == resource_path(b)
}

/// The backend services (as [`resource_path`]s) an HTTPS forwarding rule among `rules` reaches:
/// rule → its target HTTPS proxy → that proxy's URL map → every backend the map routes to.
/// Proxies and maps are found by selfLink; a link to an object not given reaches nothing.
pub fn https_backends(
    rules: &[ForwardingRule],
    proxies: &[TargetProxy],
    maps: &[UrlMap],
) -> BTreeSet<String> {
    let proxies: BTreeMap<&str, &TargetProxy> = proxies
        .iter()
        .filter_map(|p| Some((resource_path(p.self_link.as_deref()?), p)))
        .collect();
    let maps: BTreeMap<&str, &UrlMap> = maps
        .iter()
        .filter_map(|m| Some((resource_path(m.self_link.as_deref()?), m)))
        .collect();
    rules
        .iter()
        .filter(|rule| rule.is_https())
        .filter_map(|rule| proxies.get(resource_path(rule.target.as_deref()?)))
        .filter_map(|proxy| maps.get(resource_path(proxy.url_map.as_deref()?)))
        .flat_map(|map| map.backend_services())
        .map(|backend| resource_path(&backend).to_string())
        .collect()
}

/// `(project, region, name)` of a serverless NEG URL (full or partial).
pub fn neg_parts(url: &str) -> Option<(String, String, String)> {
    let path = &url[url.find("projects/")?..];
    let parts: Vec<&str> = path.split('/').collect();
    match parts.as_slice() {
        ["projects", p, "regions", r, "networkEndpointGroups", n] => {
            Some((p.to_string(), r.to_string(), n.to_string()))
        }
        _ => None,
    }
}

/// Compute Engine v1 client.
#[derive(Debug, Clone)]
pub struct ComputeClient {
    transport: Arc<Transport>,
    base: BaseUrl,
}

impl ComputeClient {
    pub(crate) fn new(transport: Arc<Transport>, base: BaseUrl) -> ComputeClient {
        ComputeClient { transport, base }
    }

    fn url(&self, project: &str, scope: &Scope, rest: &[&str]) -> reqwest::Url {
        let mut segments = scope.prefix(project);
        segments.extend_from_slice(rest);
        self.base.join(segments)
    }

    async fn get(&self, project: &str, scope: &Scope, rest: &[&str]) -> Result<Value, Error> {
        let call = Call::get(Api::Compute, self.url(project, scope, rest));
        self.transport.send(call).await
    }

    /// Every page of a compute list at `url` (`maxResults` and `pageToken` added), each checked to
    /// be a JSON object. `what` names the list in errors.
    async fn pages(&self, what: &str, url: reqwest::Url) -> Result<Vec<Value>, Error> {
        let mut pages = Vec::new();
        let mut token: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let mut page_url = url.clone();
            {
                let mut query = page_url.query_pairs_mut();
                query.append_pair("maxResults", PAGE_SIZE);
                if let Some(token) = &token {
                    query.append_pair("pageToken", token);
                }
            }
            let page = self
                .transport
                .send(Call::get(Api::Compute, page_url))
                .await?;
            // Anything but an object is a broken answer, not an empty page.
            if !page.is_object() {
                return Err(Error::decode(what, "the page is not a JSON object"));
            }
            let next = page
                .get("nextPageToken")
                .and_then(Value::as_str)
                .filter(|t| !t.is_empty())
                .map(str::to_string);
            pages.push(page);
            if next.is_some() && next == token {
                return Err(Error::decode(
                    what,
                    "the same page token was returned twice",
                ));
            }
            match next {
                Some(next) => token = Some(next),
                None => return Ok(pages),
            }
        }
        Err(Error::decode(
            what,
            format!("more than {MAX_PAGES} pages of results"),
        ))
    }

    async fn list(
        &self,
        project: &str,
        scope: &Scope,
        collection: &str,
    ) -> Result<Vec<Value>, Error> {
        let url = self.url(project, scope, &[collection]);
        let mut items = Vec::new();
        for page in self.pages(collection, url).await? {
            match page.get("items") {
                None | Some(Value::Null) => {}
                Some(Value::Array(page_items)) => items.extend(page_items.iter().cloned()),
                Some(_) => return Err(Error::decode(collection, "items is not a list")),
            }
        }
        Ok(items)
    }

    /// `{collection}.aggregatedList`: every item of every page of
    /// `projects/{project}/aggregated/{collection}`, whatever its scope (`global`, `regions/{r}`,
    /// `zones/{z}`; each item names its own), read by `parse`. Scopes answering only a `warning`
    /// (no results) are skipped. Without `returnPartialSuccess` an unreachable scope fails the
    /// call rather than leaving a silent gap.
    async fn aggregated<T>(
        &self,
        project: &str,
        collection: &str,
        parse: fn(Value) -> Result<T, Error>,
    ) -> Result<Vec<T>, Error> {
        let what = format!("{collection} aggregated list");
        let url = self
            .base
            .join(["projects", project, "aggregated", collection]);
        let mut items = Vec::new();
        for page in self.pages(&what, url).await? {
            match page.get("items") {
                None | Some(Value::Null) => {}
                Some(Value::Object(scopes)) => {
                    for (scope, scoped) in scopes {
                        match scoped.get(collection) {
                            None | Some(Value::Null) => {}
                            Some(Value::Array(list)) => {
                                for item in list {
                                    items.push(parse(item.clone())?);
                                }
                            }
                            Some(_) => {
                                return Err(Error::decode(
                                    &what,
                                    format!("items[{scope:?}].{collection} is not a list"),
                                ))
                            }
                        }
                    }
                }
                Some(_) => return Err(Error::decode(&what, "items is not an object")),
            }
        }
        Ok(items)
    }

    /// backendServices.aggregatedList: every backend service of the project, global and
    /// regional, in one paged call.
    pub async fn backend_services_aggregated(
        &self,
        project: &str,
    ) -> Result<Vec<BackendService>, Error> {
        self.aggregated(project, "backendServices", BackendService::from_value)
            .await
    }

    /// networkEndpointGroups.aggregatedList: every NEG of the project (serverless NEGs are in
    /// `regions/{r}` scopes), in one paged call.
    pub async fn network_endpoint_groups_aggregated(
        &self,
        project: &str,
    ) -> Result<Vec<NetworkEndpointGroup>, Error> {
        self.aggregated(
            project,
            "networkEndpointGroups",
            NetworkEndpointGroup::from_value,
        )
        .await
    }

    /// backendServices.get / regionBackendServices.get.
    pub async fn backend_service(&self, r: &BackendServiceRef) -> Result<BackendService, Error> {
        let raw = self
            .get(&r.project, &r.scope, &["backendServices", &r.name])
            .await?;
        BackendService::from_value(raw)
    }

    /// Patches the `iap` block: GET for the fingerprint, PATCH `{fingerprint, iap}` with a
    /// fresh `requestId` (reused by transport retries, so the server deduplicates), wait for
    /// the operation, and read the result. A 412 stale fingerprint re-reads and tries again
    /// with a new requestId, a bounded number of times.
    pub async fn patch_backend_service_iap(
        &self,
        r: &BackendServiceRef,
        iap: &IapPatch,
        deadline: Instant,
    ) -> Result<BackendService, Error> {
        let max_attempts = self.transport.retry.max_attempts.max(1);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let current = self.backend_service(r).await?;
            let mut body = Map::new();
            if let Some(fingerprint) = &current.fingerprint {
                body.insert("fingerprint".into(), Value::String(fingerprint.clone()));
            }
            body.insert("iap".into(), iap.to_value());
            let result = match self.patch(r, Value::Object(body), deadline).await {
                Ok(op) => {
                    self.wait_operation(&r.project, &r.scope, op, deadline)
                        .await
                }
                Err(e) => Err(e),
            };
            match result {
                Ok(_) => return self.backend_service(r).await,
                Err(e) if e.is_precondition_failed() => {
                    let delay = self.transport.backoff(attempt);
                    if attempt >= max_attempts || Instant::now() + delay >= deadline {
                        return Err(e.with_hint(format!(
                            "The backend service {r} kept changing concurrently; gave up after {attempt} attempts"
                        )));
                    }
                    tracing::debug!(backend_service = %r, attempt, "stale fingerprint, re-reading");
                    self.transport.pause(delay).await?;
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn patch(
        &self,
        r: &BackendServiceRef,
        body: Value,
        deadline: Instant,
    ) -> Result<ComputeOperation, Error> {
        let mut url = self.url(&r.project, &r.scope, &["backendServices", &r.name]);
        url.query_pairs_mut()
            .append_pair("requestId", &uuid::Uuid::new_v4().to_string());
        // The requestId makes a repeat of this exact request a no-op on the server.
        let call = Call::patch(Api::Compute, url)
            .body(body)
            .replay(Replay::Safe)
            .deadline(Some(deadline));
        self.transport.send_as(call).await
    }

    /// Waits for a compute operation (globalOperations / regionOperations `wait`).
    pub async fn wait_operation(
        &self,
        project: &str,
        scope: &Scope,
        op: ComputeOperation,
        deadline: Instant,
    ) -> Result<ComputeOperation, Error> {
        wait_compute(
            &self.transport,
            &self.base,
            project,
            scope.operation_scope(),
            op,
            deadline,
        )
        .await
    }

    /// regionNetworkEndpointGroups.get (serverless NEGs are regional).
    pub async fn network_endpoint_group(
        &self,
        project: &str,
        region: &str,
        name: &str,
    ) -> Result<NetworkEndpointGroup, Error> {
        let scope = Scope::Region(region.to_string());
        let raw = self
            .get(project, &scope, &["networkEndpointGroups", name])
            .await?;
        NetworkEndpointGroup::from_value(raw)
    }

    /// backendServices.list / regionBackendServices.list (all pages).
    pub async fn backend_services(
        &self,
        project: &str,
        scope: &Scope,
    ) -> Result<Vec<BackendService>, Error> {
        self.list(project, scope, "backendServices")
            .await?
            .into_iter()
            .map(BackendService::from_value)
            .collect()
    }

    /// regionNetworkEndpointGroups.list (all pages).
    pub async fn network_endpoint_groups(
        &self,
        project: &str,
        region: &str,
    ) -> Result<Vec<NetworkEndpointGroup>, Error> {
        self.list(
            project,
            &Scope::Region(region.to_string()),
            "networkEndpointGroups",
        )
        .await?
        .into_iter()
        .map(NetworkEndpointGroup::from_value)
        .collect()
    }

    /// The backend services with IAP on (global, or in the service's region) over a serverless NEG
    /// for a Cloud Run service, except `except`.
    pub async fn iap_backends_to(
        &self,
        name: &ServiceName,
        except: Option<&BackendServiceRef>,
    ) -> Result<Vec<BackendServiceRef>, Error> {
        let mut found = Vec::new();
        // Direct IAP needs no Compute Engine API: where it is disabled, no load balancer exists.
        let negs = self.network_endpoint_groups(&name.project, &name.location);
        let negs: Vec<String> = super::empty_if_disabled(negs.await, COMPUTE_SERVICE)?
            .into_iter()
            .filter(|n| {
                n.cloud_run.as_ref().and_then(|r| r.service.as_deref())
                    == Some(name.service.as_str())
            })
            .map(|n| n.name)
            .collect();
        if negs.is_empty() {
            return Ok(found);
        }
        for scope in [Scope::Global, Scope::Region(name.location.clone())] {
            for backend in self.backend_services(&name.project, &scope).await? {
                let this = BackendServiceRef {
                    project: name.project.clone(),
                    scope: scope.clone(),
                    name: backend.name.clone(),
                };
                if except.is_some_and(|e| e.to_string() == this.to_string())
                    || !backend.iap_enabled()
                {
                    continue;
                }
                let fronts = backend.backend_groups.iter().any(|g| {
                    neg_parts(g).is_some_and(|(_, region, neg)| {
                        region == name.location && negs.contains(&neg)
                    })
                });
                if fronts {
                    found.push(this);
                }
            }
        }
        Ok(found)
    }

    /// urlMaps.get / regionUrlMaps.get.
    pub async fn url_map(&self, project: &str, scope: &Scope, name: &str) -> Result<UrlMap, Error> {
        UrlMap::from_value(self.get(project, scope, &["urlMaps", name]).await?)
    }

    /// urlMaps.list / regionUrlMaps.list (all pages).
    pub async fn url_maps(&self, project: &str, scope: &Scope) -> Result<Vec<UrlMap>, Error> {
        self.list(project, scope, "urlMaps")
            .await?
            .into_iter()
            .map(UrlMap::from_value)
            .collect()
    }

    /// targetHttpsProxies.get / regionTargetHttpsProxies.get.
    pub async fn target_https_proxy(
        &self,
        project: &str,
        scope: &Scope,
        name: &str,
    ) -> Result<TargetProxy, Error> {
        TargetProxy::from_value(
            self.get(project, scope, &["targetHttpsProxies", name])
                .await?,
        )
    }

    /// targetHttpsProxies.list / regionTargetHttpsProxies.list (all pages).
    pub async fn target_https_proxies(
        &self,
        project: &str,
        scope: &Scope,
    ) -> Result<Vec<TargetProxy>, Error> {
        self.list(project, scope, "targetHttpsProxies")
            .await?
            .into_iter()
            .map(TargetProxy::from_value)
            .collect()
    }

    /// targetHttpProxies.get / regionTargetHttpProxies.get.
    pub async fn target_http_proxy(
        &self,
        project: &str,
        scope: &Scope,
        name: &str,
    ) -> Result<TargetProxy, Error> {
        TargetProxy::from_value(
            self.get(project, scope, &["targetHttpProxies", name])
                .await?,
        )
    }

    /// targetHttpProxies.list / regionTargetHttpProxies.list (all pages).
    pub async fn target_http_proxies(
        &self,
        project: &str,
        scope: &Scope,
    ) -> Result<Vec<TargetProxy>, Error> {
        self.list(project, scope, "targetHttpProxies")
            .await?
            .into_iter()
            .map(TargetProxy::from_value)
            .collect()
    }

    /// globalForwardingRules.get / forwardingRules.get.
    pub async fn forwarding_rule(
        &self,
        project: &str,
        scope: &Scope,
        name: &str,
    ) -> Result<ForwardingRule, Error> {
        ForwardingRule::from_value(self.get(project, scope, &["forwardingRules", name]).await?)
    }

    /// globalForwardingRules.list / forwardingRules.list (all pages).
    pub async fn forwarding_rules(
        &self,
        project: &str,
        scope: &Scope,
    ) -> Result<Vec<ForwardingRule>, Error> {
        self.list(project, scope, "forwardingRules")
            .await?
            .into_iter()
            .map(ForwardingRule::from_value)
            .collect()
    }

    /// Whether an HTTPS forwarding rule of the backend's scope reaches it ([`https_backends`]),
    /// reading each rule's proxy and URL map until one does; `None` when the rules cannot be listed.
    pub async fn https_frontend(
        &self,
        r: &BackendServiceRef,
        backend: &BackendService,
    ) -> Option<bool> {
        let self_link = backend.self_link.clone().unwrap_or_else(|| r.to_string());
        let rules = self.forwarding_rules(&r.project, &r.scope).await.ok()?;
        for rule in rules.iter().filter(|rule| rule.is_https()) {
            let Some(proxy_name) = rule.target.as_deref().map(last_segment) else {
                continue;
            };
            let Ok(proxy) = self
                .target_https_proxy(&r.project, &r.scope, proxy_name)
                .await
            else {
                continue;
            };
            let Some(map_name) = proxy.url_map.as_deref().map(last_segment) else {
                continue;
            };
            let Ok(map) = self.url_map(&r.project, &r.scope, map_name).await else {
                continue;
            };
            if https_backends(std::slice::from_ref(rule), &[proxy], &[map])
                .contains(resource_path(&self_link))
            {
                return Some(true);
            }
        }
        Some(false)
    }

    /// forwardingRules.aggregatedList: the regional forwarding rules of every region, in one
    /// paged call (the discovery document promises global ones only for the other aggregated
    /// lists; see [`ComputeClient::https_reached_backends`]).
    pub async fn forwarding_rules_aggregated(
        &self,
        project: &str,
    ) -> Result<Vec<ForwardingRule>, Error> {
        self.aggregated(project, "forwardingRules", ForwardingRule::from_value)
            .await
    }

    /// targetHttpsProxies.aggregatedList: every target HTTPS proxy, global and regional, in one
    /// paged call.
    pub async fn target_https_proxies_aggregated(
        &self,
        project: &str,
    ) -> Result<Vec<TargetProxy>, Error> {
        self.aggregated(project, "targetHttpsProxies", TargetProxy::from_value)
            .await
    }

    /// urlMaps.aggregatedList: every URL map, global and regional, in one paged call.
    pub async fn url_maps_aggregated(&self, project: &str) -> Result<Vec<UrlMap>, Error> {
        self.aggregated(project, "urlMaps", UrlMap::from_value)
            .await
    }

    /// The backend services of the project an HTTPS forwarding rule reaches ([`https_backends`]),
    /// from four paged lists whatever the project's size, made at once: forwardingRules
    /// aggregatedList and globalForwardingRules list (which has no aggregated form), then
    /// targetHttpsProxies and urlMaps aggregatedList. A rule both lists return counts once.
    pub async fn https_reached_backends(&self, project: &str) -> Result<BTreeSet<String>, Error> {
        let rules = async {
            let (mut regional, global) = futures::try_join!(
                self.forwarding_rules_aggregated(project),
                self.forwarding_rules(project, &Scope::Global),
            )?;
            regional.extend(global);
            Ok::<_, Error>(regional)
        };
        let (rules, proxies, maps) = futures::try_join!(
            rules,
            self.target_https_proxies_aggregated(project),
            self.url_maps_aggregated(project),
        )?;
        Ok(https_backends(&rules, &proxies, &maps))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_backend_service() {
        let bs = BackendService::from_value(json!({
            "name": "bs", "id": "123", "fingerprint": "abc=", "loadBalancingScheme": "EXTERNAL_MANAGED",
            "protocol": "HTTPS", "enableCDN": true,
            "iap": {"enabled": true, "oauth2ClientId": "cid", "oauth2ClientSecretSha256": "ff"},
            "backends": [{"group": "https://www.googleapis.com/compute/v1/projects/p/regions/r/networkEndpointGroups/neg"}],
            "usedBy": [{"reference": "https://www.googleapis.com/compute/v1/projects/p/global/urlMaps/um"}]
        }))
        .expect("backend service");
        assert!(bs.iap_enabled());
        assert!(bs.enable_cdn);
        assert_eq!(bs.fingerprint.as_deref(), Some("abc="));
        assert_eq!(bs.backend_groups.len(), 1);
        assert_eq!(bs.used_by.len(), 1);
        assert_eq!(
            bs.iap.as_ref().and_then(|i| i.oauth2_client_id.as_deref()),
            Some("cid")
        );
        let bare = BackendService::from_value(json!({"name": "b"})).expect("bare");
        assert!(!bare.iap_enabled());
        assert!(BackendService::from_value(json!({"iap": {"enabled": "true"}})).is_err());
    }

    #[test]
    fn url_map_collects_every_route_target() {
        let um = UrlMap::from_value(json!({
            "name": "um", "defaultService": "projects/p/global/backendServices/a",
            "pathMatchers": [{
                "name": "m", "defaultService": "projects/p/global/backendServices/b",
                "pathRules": [{"paths": ["/x"], "service": "projects/p/global/backendServices/c"}],
                "routeRules": [{"priority": 1, "routeAction": {"weightedBackendServices": [
                    {"backendService": "projects/p/global/backendServices/d", "weight": 100}]}}],
                "defaultRouteAction": {"requestMirrorPolicy": {"backendService": "projects/p/global/backendServices/e"}}
            }],
            "tests": [{"host": "h", "path": "/", "service": "projects/p/global/backendServices/t"}]
        }))
        .expect("url map");
        let found = um.backend_services();
        for name in ["a", "b", "c", "d", "e"] {
            assert!(
                found.iter().any(|s| s.ends_with(&format!("/{name}"))),
                "{name} missing from {found:?}"
            );
        }
        assert!(!found.iter().any(|s| s.ends_with("/t")));
    }

    #[test]
    fn forwarding_rule_https() {
        let fr = ForwardingRule::from_value(json!({
            "name": "fr", "IPProtocol": "TCP", "portRange": "443-443",
            "target": "https://www.googleapis.com/compute/v1/projects/p/global/targetHttpsProxies/px"}))
        .expect("rule");
        assert!(fr.is_https());
        assert_eq!(fr.ip_protocol.as_deref(), Some("TCP"));
        let http =
            ForwardingRule::from_value(json!({"target": "projects/p/global/targetHttpProxies/px"}))
                .expect("rule");
        assert!(!http.is_https());
    }

    #[test]
    fn same_resource_ignores_host() {
        assert!(same_resource(
            "https://www.googleapis.com/compute/v1/projects/p/global/backendServices/bs",
            "https://compute.googleapis.com/compute/v1/projects/p/global/backendServices/bs"
        ));
        assert!(same_resource(
            "projects/p/global/backendServices/bs",
            "http://127.0.0.1:1/compute/v1/projects/p/global/backendServices/bs"
        ));
        assert!(!same_resource(
            "projects/p/global/backendServices/bs",
            "projects/p/global/backendServices/bs2"
        ));
    }

    #[tokio::test]
    async fn aggregated_lists_follow_pages_across_scopes_and_skip_warnings() {
        use crate::google::testutil::{Reply, Stub};
        let stub = Stub::start(|seen, _| {
            let page = if seen.query.contains("pageToken=t1") {
                json!({"items": {
                    "regions/europe-west1": {"backendServices": [
                        {"name": "eu", "region": "https://www.googleapis.com/compute/v1/projects/p/regions/europe-west1"}]},
                    "global": {"warning": {"code": "NO_RESULTS_ON_PAGE", "message": "none"}}}})
            } else {
                json!({"items": {
                    "global": {"backendServices": [{"name": "web", "iap": {"enabled": true}}]},
                    "regions/us-central1": {"warning": {"code": "NO_RESULTS_ON_PAGE", "message": "none"}}},
                    "nextPageToken": "t1"})
            };
            Reply::json(200, page)
        })
        .await;
        let clients = stub.clients();
        let all = clients
            .compute
            .backend_services_aggregated("p")
            .await
            .expect("two pages");
        let names: Vec<(&str, Option<&str>)> = all
            .iter()
            .map(|b| (b.name.as_str(), b.region_name()))
            .collect();
        assert_eq!(names, vec![("web", None), ("eu", Some("europe-west1"))]);
        assert!(all[0].iap_enabled());
        let seen = stub.seen();
        assert_eq!(seen.len(), 2);
        assert_eq!(
            seen[0].path,
            "/compute/v1/projects/p/aggregated/backendServices"
        );
        assert!(
            seen[0].query.contains("maxResults=500"),
            "{}",
            seen[0].query
        );
        assert!(seen[1].query.contains("pageToken=t1"));

        let looping =
            Stub::start(|_, _| Reply::json(200, json!({"items": {}, "nextPageToken": "same"})))
                .await;
        let err = looping
            .clients()
            .compute
            .network_endpoint_groups_aggregated("p")
            .await
            .expect_err("a repeated token is not followed forever");
        assert!(err.to_string().contains("same page token"), "{err}");
        let bad = Stub::start(|_, _| {
            Reply::json(
                200,
                json!({"items": {"global": {"networkEndpointGroups": {"a": 1}}}}),
            )
        })
        .await;
        assert!(matches!(
            bad.clients()
                .compute
                .network_endpoint_groups_aggregated("p")
                .await,
            Err(Error::Decode { .. })
        ));
    }

    #[test]
    fn https_backends_follow_rule_proxy_and_map() {
        let link = |path: &str| format!("https://www.googleapis.com/compute/v1/projects/p/{path}");
        let rule = |name: &str, target: String| {
            ForwardingRule::from_value(json!({"name": name, "target": target})).expect("rule")
        };
        let proxy = |name: &str, map: &str| {
            TargetProxy::from_value(json!({"name": name,
                "selfLink": link(&format!("global/targetHttpsProxies/{name}")),
                "urlMap": link(&format!("global/urlMaps/{map}"))}))
            .expect("proxy")
        };
        let map = |name: &str, backend: &str| {
            UrlMap::from_value(json!({"name": name,
                "selfLink": link(&format!("global/urlMaps/{name}")),
                "defaultService": link(&format!("global/backendServices/{backend}"))}))
            .expect("map")
        };
        let rules = [
            rule("https", link("global/targetHttpsProxies/px")),
            // An HTTP rule to a map whose backend no HTTPS rule reaches.
            rule("http", link("global/targetHttpProxies/plain")),
            // An HTTPS rule whose proxy was not listed.
            rule("dangling", link("global/targetHttpsProxies/gone")),
        ];
        let found = https_backends(
            &rules,
            &[proxy("px", "web"), proxy("unused", "other")],
            &[
                map("web", "bs"),
                map("plain", "http-only"),
                map("other", "o"),
            ],
        );
        assert_eq!(
            found.into_iter().collect::<Vec<_>>(),
            ["projects/p/global/backendServices/bs"]
        );
        assert!(https_backends(&rules, &[proxy("px", "web")], &[]).is_empty());
    }

    #[tokio::test]
    async fn https_reached_backends_reads_four_lists_once_each() {
        use crate::google::testutil::{Reply, Stub};
        let stub = Stub::start(|seen, _| {
            let link = |path: &str| format!("https://www.googleapis.com/compute/v1/projects/p/{path}");
            let body = match seen.path.rsplit('/').next().unwrap_or_default() {
                "forwardingRules" if seen.path.contains("/aggregated/") => json!({"items": {
                    "regions/r": {"forwardingRules": [
                        {"name": "ilb", "target": link("regions/r/targetHttpsProxies/ilb")}]}}}),
                "forwardingRules" => json!({"items": [
                    {"name": "web", "target": link("global/targetHttpsProxies/web")}]}),
                "targetHttpsProxies" => json!({"items": {
                    "global": {"targetHttpsProxies": [{"name": "web",
                        "selfLink": link("global/targetHttpsProxies/web"), "urlMap": link("global/urlMaps/web")}]},
                    "regions/r": {"targetHttpsProxies": [{"name": "ilb",
                        "selfLink": link("regions/r/targetHttpsProxies/ilb"), "urlMap": link("regions/r/urlMaps/ilb")}]}}}),
                _ => json!({"items": {
                    "global": {"urlMaps": [{"name": "web", "selfLink": link("global/urlMaps/web"),
                        "defaultService": link("global/backendServices/web")}]},
                    "regions/r": {"urlMaps": [{"name": "ilb", "selfLink": link("regions/r/urlMaps/ilb"),
                        "defaultService": link("regions/r/backendServices/ilb")}]}}}),
            };
            Reply::json(200, body)
        })
        .await;
        let found = stub
            .clients()
            .compute
            .https_reached_backends("p")
            .await
            .expect("reached");
        assert_eq!(
            found.into_iter().collect::<Vec<_>>(),
            [
                "projects/p/global/backendServices/web",
                "projects/p/regions/r/backendServices/ilb"
            ]
        );
        let mut paths: Vec<String> = stub.seen().into_iter().map(|s| s.path).collect();
        paths.sort();
        assert_eq!(
            paths,
            [
                "/compute/v1/projects/p/aggregated/forwardingRules",
                "/compute/v1/projects/p/aggregated/targetHttpsProxies",
                "/compute/v1/projects/p/aggregated/urlMaps",
                "/compute/v1/projects/p/global/forwardingRules",
            ]
        );
    }

    #[test]
    fn iap_patch_debug_hides_secret() {
        let patch = IapPatch {
            enabled: true,
            oauth2_client_id: Some("cid".into()),
            oauth2_client_secret: Some("hunter2".into()),
        };
        let text = format!("{patch:?}");
        assert!(!text.contains("hunter2"));
        assert!(text.contains("redacted"));
        assert_eq!(
            patch.to_value(),
            json!({"enabled": true, "oauth2ClientId": "cid", "oauth2ClientSecret": "hunter2"})
        );
        assert_eq!(
            IapPatch {
                enabled: false,
                ..IapPatch::default()
            }
            .to_value(),
            json!({"enabled": false})
        );
    }
}
