//! `--seed FILE`: a world described in JSON, built at start-up through the emulator's own REST
//! routes (each entry becomes the API calls a user's tooling would make, operations waited for), so
//! a seeded object is exactly what the API would have made. A bad entry stops the load with an
//! error naming it (`run_services[1] (projects/p/locations/r/services/s): ...`).

use std::collections::BTreeMap;
use std::path::Path;

use axum::body::Body;
use http::Request;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};
use tower::ServiceExt;

use super::{router, EmulatorState, Parent, ProjectUpdate};

/// The sections of a seed file, in the order they are built (later ones refer to earlier ones).
pub const SECTIONS: &[&str] = &[
    "projects",
    "run_services",
    "network_endpoint_groups",
    "backend_services",
    "url_maps",
    "target_http_proxies",
    "target_https_proxies",
    "forwarding_rules",
    "iap_settings",
    "iap_policies",
];

/// A project: its number, parent and services.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProjectEntry {
    id: String,
    /// The project number (default: derived from the id, as on first use).
    #[serde(default)]
    number: Option<String>,
    /// `{"type": "organization"|"folder", "id": "..."}`, or null for none.
    #[serde(default, deserialize_with = "super::present")]
    parent: Option<Option<Parent>>,
    #[serde(default)]
    organization_domain: Option<String>,
    #[serde(default)]
    services: Option<BTreeMap<String, bool>>,
    #[serde(default)]
    service_agents: Option<Vec<String>>,
    #[serde(default)]
    restrict_public_members: Option<bool>,
}

/// A Cloud Run service: `spec` is the `GoogleCloudRunV2Service` body of the create call.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RunServiceEntry {
    project: String,
    location: String,
    name: String,
    spec: Value,
    /// Written with setIamPolicy after the create (`{"bindings": [...]}`).
    #[serde(default)]
    iam_policy: Option<Value>,
}

/// A compute resource: `spec` is the insert body (with its `name`); `region` for regional ones.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ComputeEntry {
    project: String,
    #[serde(default)]
    region: Option<String>,
    spec: Value,
}

/// IAP settings of an IAP resource (`projects/{p}/iap_web/...`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IapSettingsEntry {
    resource: String,
    settings: Value,
}

/// The IAM policy of an IAP resource.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IapPolicyEntry {
    resource: String,
    policy: Value,
}

/// What a seed built.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SeedSummary {
    /// Section name → entries built.
    pub built: BTreeMap<String, usize>,
}

impl std::fmt::Display for SeedSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = SECTIONS
            .iter()
            .filter_map(|section| Some(format!("{section}: {}", self.built.get(*section)?)))
            .collect();
        if parts.is_empty() {
            write!(f, "nothing")
        } else {
            write!(f, "{}", parts.join(", "))
        }
    }
}

/// One REST call of the seed, answered by the emulator's router.
struct Caller {
    state: EmulatorState,
}

impl Caller {
    async fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value, String> {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header("authorization", "Bearer iaprun-emulator-seed")
            .header("content-type", "application/json")
            .body(match body {
                Some(body) => Body::from(body.to_string()),
                None => Body::empty(),
            })
            .map_err(|e| e.to_string())?;
        let response = router(self.state.clone())
            .oneshot(request)
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 64 * 1024 * 1024)
            .await
            .map_err(|e| e.to_string())?;
        let value: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(value);
        }
        let error = &value["error"];
        let label = error["status"]
            .as_str()
            .or_else(|| error["errors"][0]["reason"].as_str())
            .unwrap_or("");
        Err(format!(
            "{method} {path} answered {} {label}: {}",
            status.as_u16(),
            error["message"].as_str().unwrap_or("(no message)")
        ))
    }

    /// Waits for a Cloud Run operation; its error is the entry's error.
    async fn wait_run(&self, operation: Value) -> Result<(), String> {
        let name = operation["name"].as_str().ok_or("no operation name")?;
        let mut done = operation.clone();
        while done["done"] != json!(true) {
            done = self
                .call(
                    "POST",
                    &format!("/v2/{name}:wait"),
                    Some(&json!({"timeout": "600s"})),
                )
                .await?;
        }
        match done.get("error") {
            Some(error) => Err(format!(
                "operation {name} failed: {}",
                error["message"].as_str().unwrap_or("(no message)")
            )),
            None => Ok(()),
        }
    }

    /// Waits for a compute operation.
    async fn wait_compute(&self, operation: Value) -> Result<(), String> {
        let link = operation["selfLink"]
            .as_str()
            .ok_or("no operation selfLink")?;
        let path = link
            .find("projects/")
            .map(|at| format!("/compute/v1/{}/wait", &link[at..]))
            .ok_or("operation selfLink without projects/")?;
        let mut done = operation.clone();
        while done["status"] != json!("DONE") {
            done = self.call("POST", &path, None).await?;
        }
        match done.get("error") {
            Some(error) => Err(format!(
                "operation {} failed: {}",
                done["name"].as_str().unwrap_or_default(),
                error["errors"][0]["message"]
                    .as_str()
                    .unwrap_or("(no message)")
            )),
            None => Ok(()),
        }
    }
}

/// Where a compute section's resources live: (global collection, regional collection).
fn compute_collection(section: &str) -> (&'static str, &'static str) {
    match section {
        "network_endpoint_groups" => ("", "networkEndpointGroups"),
        "backend_services" => ("backendServices", "backendServices"),
        "url_maps" => ("urlMaps", "urlMaps"),
        "target_http_proxies" => ("targetHttpProxies", "targetHttpProxies"),
        "target_https_proxies" => ("targetHttpsProxies", "targetHttpsProxies"),
        _ => ("forwardingRules", "forwardingRules"),
    }
}

fn entries<T: DeserializeOwned>(
    seed: &serde_json::Map<String, Value>,
    section: &str,
) -> Result<Vec<(String, T)>, String> {
    let Some(value) = seed.get(section) else {
        return Ok(Vec::new());
    };
    let Some(items) = value.as_array() else {
        return Err(format!("{section}: expected a list of entries"));
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let at = format!("{section}[{i}]");
            T::deserialize(item)
                .map(|entry| (at.clone(), entry))
                .map_err(|e| format!("{at}: {e}"))
        })
        .collect()
}

impl EmulatorState {
    /// Build the world a seed file describes; the error names the file and the entry at fault.
    pub async fn seed_file(&self, path: &Path) -> Result<SeedSummary, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read seed file {}: {e}", path.display()))?;
        self.seed_json(&text)
            .await
            .map_err(|e| format!("seed file {}: {e}", path.display()))
    }

    /// Build the world a seed document describes (see docs/emulator.md for the format).
    pub async fn seed_json(&self, text: &str) -> Result<SeedSummary, String> {
        let value: Value =
            serde_json::from_str(text).map_err(|e| format!("not valid JSON: {e}"))?;
        let Value::Object(seed) = value else {
            return Err(
                "expected a JSON object with the sections {}".replace("{}", &SECTIONS.join(", "))
            );
        };
        if let Some(unknown) = seed.keys().find(|k| !SECTIONS.contains(&k.as_str())) {
            return Err(format!(
                "unknown section '{unknown}' (the sections are {})",
                SECTIONS.join(", ")
            ));
        }
        // Every entry is read before anything is built, so a typo late in the file costs nothing.
        let projects: Vec<(String, ProjectEntry)> = entries(&seed, "projects")?;
        let services: Vec<(String, RunServiceEntry)> = entries(&seed, "run_services")?;
        let mut compute = Vec::new();
        for section in &SECTIONS[2..8] {
            compute.push((*section, entries::<ComputeEntry>(&seed, section)?));
        }
        let settings: Vec<(String, IapSettingsEntry)> = entries(&seed, "iap_settings")?;
        let policies: Vec<(String, IapPolicyEntry)> = entries(&seed, "iap_policies")?;

        let caller = Caller {
            state: self.clone(),
        };
        let mut summary = SeedSummary::default();
        for (at, project) in projects {
            self.seed_project(&project)
                .map_err(|e| format!("{at} ({}): {e}", project.id))?;
            *summary.built.entry("projects".into()).or_default() += 1;
        }
        for (at, service) in services {
            let name = format!(
                "projects/{}/locations/{}/services/{}",
                service.project, service.location, service.name
            );
            let built = async {
                let parent = name
                    .rsplit_once("/services/")
                    .map(|(p, _)| p)
                    .unwrap_or_default();
                let operation = caller
                    .call(
                        "POST",
                        &format!("/v2/{parent}/services?serviceId={}", service.name),
                        Some(&service.spec),
                    )
                    .await?;
                caller.wait_run(operation).await?;
                if let Some(policy) = &service.iam_policy {
                    caller
                        .call(
                            "POST",
                            &format!("/v2/{name}:setIamPolicy"),
                            Some(&json!({ "policy": policy })),
                        )
                        .await?;
                }
                Ok::<(), String>(())
            };
            built.await.map_err(|e| format!("{at} ({name}): {e}"))?;
            *summary.built.entry("run_services".into()).or_default() += 1;
        }
        for (section, items) in compute {
            let (global, regional) = compute_collection(section);
            for (at, entry) in items {
                let collection = match (&entry.region, global) {
                    (Some(region), _) => format!("regions/{region}/{regional}"),
                    (None, "") => return Err(format!("{at}: a region is required")),
                    (None, global) => format!("global/{global}"),
                };
                let path = format!("/compute/v1/projects/{}/{collection}", entry.project);
                let label = format!(
                    "projects/{}/{collection}/{}",
                    entry.project,
                    entry.spec["name"].as_str().unwrap_or("?")
                );
                let built = async {
                    let operation = caller.call("POST", &path, Some(&entry.spec)).await?;
                    caller.wait_compute(operation).await
                };
                built.await.map_err(|e| format!("{at} ({label}): {e}"))?;
                *summary.built.entry(section.to_string()).or_default() += 1;
            }
        }
        for (at, entry) in settings {
            let mut body = entry.settings.clone();
            if let Some(object) = body.as_object_mut() {
                object.insert("name".into(), json!(entry.resource));
            }
            caller
                .call(
                    "PATCH",
                    &format!("/v1/{}:iapSettings", entry.resource),
                    Some(&body),
                )
                .await
                .map_err(|e| format!("{at} ({}): {e}", entry.resource))?;
            *summary.built.entry("iap_settings".into()).or_default() += 1;
        }
        for (at, entry) in policies {
            caller
                .call(
                    "POST",
                    &format!("/v1/{}:setIamPolicy", entry.resource),
                    Some(&json!({ "policy": entry.policy })),
                )
                .await
                .map_err(|e| format!("{at} ({}): {e}", entry.resource))?;
            *summary.built.entry("iap_policies".into()).or_default() += 1;
        }
        Ok(summary)
    }

    fn seed_project(&self, entry: &ProjectEntry) -> Result<(), String> {
        let shared = &self.0;
        if let Some(number) = &entry.number {
            let wall = super::dispatch::rfc3339(time::OffsetDateTime::now_utc());
            super::state::lock(&shared.world)
                .projects
                .create_numbered(&entry.id, number, &wall)?;
        }
        let update = ProjectUpdate {
            parent: entry.parent.clone(),
            organization_domain: entry.organization_domain.clone(),
            services: entry.services.clone(),
            service_agents: entry.service_agents.clone(),
            restrict_public_members: entry.restrict_public_members,
        };
        super::admin::update_project(shared, &entry.id, update).map(|_| ())
    }
}
