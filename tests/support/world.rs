//! Builds worlds in an in-process iaprun-emulator through the real REST APIs (what a user's other
//! tooling would do), and reads them back, for the resource tests and the benchmarks. The request
//! bodies are `compose`'s, which Terraform configurations send with curl.

use serde_json::{json, Value};

use iaprun::emulator::{self, Emulator, Options};

use super::compose::{
    create_backend, create_https_frontend, create_neg, create_run_service, rest, Rest,
};
use super::terraform::{Run, Terraform, Workspace};

/// The project every world is built in.
pub const PROJECT: &str = "world-project";
/// The region every world is built in.
pub const REGION: &str = "us-central1";

/// Output-only fields of a Cloud Run service that a write leaves out.
const RUN_OUTPUT_ONLY: [&str; 6] = [
    "uri",
    "urls",
    "conditions",
    "terminalCondition",
    "reconciling",
    "trafficStatuses",
];

/// An emulator plus a client for its REST APIs.
pub struct World {
    pub emulator: Emulator,
    http: reqwest::Client,
}

/// A test failure message for an unexpected HTTP answer.
fn expect_ok(what: &str, status: reqwest::StatusCode, body: &Value) {
    assert!(status.is_success(), "{what}: HTTP {status}: {body}");
}

impl World {
    /// Starts an emulator on 127.0.0.1:0.
    pub async fn start() -> World {
        World::with_options(Options::default()).await
    }

    pub async fn with_options(options: Options) -> World {
        let emulator = emulator::spawn(options).await.expect("emulator starts");
        World {
            emulator,
            http: reqwest::Client::new(),
        }
    }

    /// An initialised workspace for `main_tf` whose provider calls this world's emulator.
    pub fn workspace(&self, terraform: &Terraform, main_tf: &str) -> Workspace {
        let mut ws = Workspace::new(terraform, main_tf);
        ws.env("IAPRUN_EMULATOR_HOST", &self.host());
        ws.init();
        ws
    }

    /// `host:port`, for IAPRUN_EMULATOR_HOST.
    pub fn host(&self) -> String {
        self.emulator.host()
    }

    pub async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (reqwest::StatusCode, Value) {
        let url = format!("{}{}", self.emulator.base_url().trim_end_matches('/'), path);
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = self.http.request(method, url).bearer_auth("world-builder");
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("emulator answers");
        let status = resp.status();
        let text = resp.text().await.expect("body");
        let value = serde_json::from_str(&text).unwrap_or(Value::Null);
        (status, value)
    }

    async fn ok(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let (status, value) = self.call(method, path, body).await;
        expect_ok(&format!("{method} {path}"), status, &value);
        value
    }

    /// Disables an API (`compute.googleapis.com`, ...) of a project through Service Usage.
    pub async fn disable_api(&self, project: &str, api: &str) {
        let path = format!("/v1/projects/{project}/services/{api}:disable");
        self.ok("POST", &path, Some(json!({}))).await;
    }

    /// Waits for a Cloud Run operation.
    async fn wait_run(&self, op: &Value) {
        let name = op["name"].as_str().expect("operation name");
        let done = self
            .ok(
                "POST",
                &format!("/v2/{name}:wait"),
                Some(json!({"timeout": "60s"})),
            )
            .await;
        assert!(done.get("error").is_none(), "operation failed: {done}");
    }

    /// Creates a Cloud Run service; `extra` fields (ingress, template ports, ...) merge over the defaults.
    pub async fn run_service(&self, name: &str, extra: Value) {
        self.run_service_in(PROJECT, REGION, name, extra).await;
    }

    /// Cloud Run service `service` behind serverless NEG `<service>-neg` and global backend
    /// service `backend` with an HTTPS frontend: the usual load-balanced service.
    pub async fn load_balanced_service(&self, service: &str, backend: &str) {
        self.run_service(service, json!({})).await;
        let neg = format!("{service}-neg");
        self.neg(&neg, service).await;
        self.backend(backend, None, &[neg.as_str()], json!({}))
            .await;
        self.https_frontend(backend).await;
    }

    /// Creates a Cloud Run service in another project or region (see `run_service`).
    pub async fn run_service_in(&self, project: &str, region: &str, name: &str, extra: Value) {
        let create = create_run_service(project, region, name, extra);
        let op = self.ok(create.method, &create.path, create.body).await;
        self.wait_run(&op).await;
    }

    pub fn run_path(name: &str) -> String {
        format!("/v2/projects/{PROJECT}/locations/{REGION}/services/{name}")
    }

    /// The Cloud Run service as the API returns it (Null when missing).
    pub async fn run_service_json(&self, name: &str) -> Value {
        let (status, v) = self.call("GET", &Self::run_path(name), None).await;
        if status == reqwest::StatusCode::NOT_FOUND {
            return Value::Null;
        }
        expect_ok("get service", status, &v);
        v
    }

    /// Sets `iapEnabled` out of band (read, modify, write with etag).
    pub async fn set_run_iap(&self, name: &str, enabled: bool) {
        let mut service = self.run_service_json(name).await;
        service["iapEnabled"] = json!(enabled);
        self.write_run_service(name, service).await;
    }

    /// Writes `service` (a read of `name`, changed) back out of band, as another tool would:
    /// without the fields the API fills in, and with its etag. Waits for the operation.
    pub async fn write_run_service(&self, name: &str, mut service: Value) {
        if let Some(fields) = service.as_object_mut() {
            for output_only in RUN_OUTPUT_ONLY {
                fields.remove(output_only);
            }
        }
        let op = self.ok("PATCH", &Self::run_path(name), Some(service)).await;
        self.wait_run(&op).await;
    }

    /// Deletes a Cloud Run service out of band.
    pub async fn delete_run_service(&self, name: &str) {
        let op = self.ok("DELETE", &Self::run_path(name), None).await;
        self.wait_run(&op).await;
    }

    /// The members holding `role` on a Cloud Run service.
    pub async fn run_members(&self, name: &str, role: &str) -> Vec<String> {
        let policy = self
            .ok(
                "GET",
                &format!("{}:getIamPolicy", Self::run_path(name)),
                None,
            )
            .await;
        members_of(&policy, role)
    }

    /// Replaces the members of `role` on a Cloud Run service (out of band).
    pub async fn set_run_members(&self, name: &str, role: &str, members: &[&str]) {
        let mut policy = self
            .ok(
                "GET",
                &format!("{}:getIamPolicy", Self::run_path(name)),
                None,
            )
            .await;
        set_members(&mut policy, role, members);
        self.ok(
            "POST",
            &format!("{}:setIamPolicy", Self::run_path(name)),
            Some(json!({"policy": policy})),
        )
        .await;
    }

    /// Creates the IAP service agent out of band (as `gcloud beta services identity create`).
    pub async fn provision_iap_agent(&self) {
        self.ok(
            "POST",
            &format!(
                "/v1beta1/projects/{PROJECT}/services/iap.googleapis.com:generateServiceIdentity"
            ),
            None,
        )
        .await;
    }

    /// The IAP service agent member of the world's project.
    pub fn iap_agent(&self) -> String {
        let number = self
            .emulator
            .project_number(PROJECT)
            .expect("project number");
        format!("serviceAccount:service-{number}@gcp-sa-iap.iam.gserviceaccount.com")
    }

    /// The IAM policy of an IAP resource.
    pub async fn iap_policy(&self, resource: &str) -> Value {
        self.ok(
            "POST",
            &format!("/v1/{resource}:getIamPolicy"),
            Some(json!({"options": {"requestedPolicyVersion": 3}})),
        )
        .await
    }

    /// Writes an IAP policy binding out of band (keeping the others).
    pub async fn set_iap_members(&self, resource: &str, role: &str, members: &[&str]) {
        let mut policy = self.iap_policy(resource).await;
        set_members(&mut policy, role, members);
        self.set_iap_policy(resource, policy).await;
    }

    /// Writes a whole IAP policy out of band (guarded by the etag it carries); returns the
    /// policy as written.
    pub async fn set_iap_policy(&self, resource: &str, policy: Value) -> Value {
        self.ok(
            "POST",
            &format!("/v1/{resource}:setIamPolicy"),
            Some(json!({"policy": policy})),
        )
        .await
    }

    fn compute(path: &str) -> String {
        format!("/compute/v1/projects/{PROJECT}/{path}")
    }

    /// Makes a compute call and waits for the operation it starts.
    async fn compute_call(&self, call: Rest) {
        let op = self.ok(call.method, &call.path, call.body).await;
        let link = op["selfLink"].as_str().expect("operation selfLink");
        let path = &link[link.find("projects/").expect("projects/ in selfLink")..];
        let done = self
            .ok("POST", &format!("/compute/v1/{path}/wait"), None)
            .await;
        assert!(
            done.get("error").is_none(),
            "compute operation failed: {done}"
        );
    }

    async fn compute_insert(&self, collection: &str, body: Value) {
        self.compute_call(rest("POST", Self::compute(collection), Some(body)))
            .await;
    }

    /// A serverless NEG in the world's region pointing at a Cloud Run service.
    pub async fn neg(&self, name: &str, service: &str) {
        self.neg_in(REGION, name, service).await;
    }

    /// A serverless NEG in `region` pointing at a Cloud Run service (which need not exist there).
    pub async fn neg_in(&self, region: &str, name: &str, service: &str) {
        self.compute_call(create_neg(PROJECT, region, name, service))
            .await;
    }

    /// A backend service (global when `region` is None) over the given NEGs of the world's
    /// region; `extra` merges over it.
    pub async fn backend(&self, name: &str, region: Option<&str>, negs: &[&str], extra: Value) {
        let mut create = create_backend(PROJECT, REGION, name, negs, extra);
        if let Some(r) = region {
            create.path = Self::compute(&format!("regions/{r}/backendServices"));
        }
        self.compute_call(create).await;
    }

    /// An HTTPS frontend (URL map, target HTTPS proxy, forwarding rule) for a global backend service.
    pub async fn https_frontend(&self, backend: &str) {
        for call in create_https_frontend(PROJECT, backend, "EXTERNAL_MANAGED") {
            self.compute_call(call).await;
        }
    }

    /// A plain-HTTP frontend (URL map, target HTTP proxy, port-80 forwarding rule) for a global
    /// backend service: it reaches the backend, but not over HTTPS.
    pub async fn http_frontend(&self, backend: &str) {
        let map = format!("{backend}-http-map");
        let proxy = format!("{backend}-http-proxy");
        self.compute_insert(
            "global/urlMaps",
            json!({"name": map, "defaultService": format!("global/backendServices/{backend}")}),
        )
        .await;
        self.compute_insert(
            "global/targetHttpProxies",
            json!({"name": proxy, "urlMap": format!("global/urlMaps/{map}")}),
        )
        .await;
        self.compute_insert(
            "global/forwardingRules",
            json!({"name": format!("{backend}-http"), "loadBalancingScheme": "EXTERNAL", "IPProtocol": "TCP", "portRange": "80", "target": format!("global/targetHttpProxies/{proxy}")}),
        )
        .await;
    }

    /// Changes a project's emulator attributes (`parent`, `services`, `organization_domain`, ...;
    /// see docs/emulator.md), creating the project if needed.
    pub fn update_project(&self, project: &str, update: Value) {
        let update = serde_json::from_value(update).expect("a valid project update");
        self.emulator
            .update_project(project, update)
            .expect("project update");
    }

    /// A backend service as the API returns it.
    pub async fn backend_json(&self, name: &str, region: Option<&str>) -> Value {
        let path = match region {
            Some(r) => Self::compute(&format!("regions/{r}/backendServices/{name}")),
            None => Self::compute(&format!("global/backendServices/{name}")),
        };
        self.ok("GET", &path, None).await
    }

    /// Patches a backend service's `iap` out of band (merge patch with the current fingerprint).
    pub async fn patch_backend_iap(&self, name: &str, region: Option<&str>, iap: Value) {
        let current = self.backend_json(name, region).await;
        let path = match region {
            Some(r) => Self::compute(&format!("regions/{r}/backendServices/{name}")),
            None => Self::compute(&format!("global/backendServices/{name}")),
        };
        let body = json!({"fingerprint": current["fingerprint"], "iap": iap});
        let op = self
            .ok(
                "PATCH",
                &format!("{path}?requestId={}", uuid::Uuid::new_v4()),
                Some(body),
            )
            .await;
        let link = op["selfLink"].as_str().expect("operation selfLink");
        let op_path = &link[link.find("projects/").expect("projects/")..];
        self.ok("POST", &format!("/compute/v1/{op_path}/wait"), None)
            .await;
    }

    /// The IAP settings of an IAP resource (`projects/.../iap_web/...`) as the API returns them.
    pub async fn iap_settings(&self, resource: &str) -> Value {
        self.ok("GET", &format!("/v1/{resource}:iapSettings"), None)
            .await
    }

    /// Updates IAP settings out of band: exactly the `iapSettings.`-prefixed `mask` paths.
    pub async fn patch_iap_settings(&self, resource: &str, mask: &str, settings: Value) {
        let path = format!("/v1/{resource}:iapSettings?updateMask={mask}");
        self.ok("PATCH", &path, Some(settings)).await;
    }

    /// Answers the given share of setIamPolicy calls with a stale-etag conflict (409 ABORTED), as
    /// a concurrent writer would cause, and clears the request log.
    pub fn inject_iam_conflicts(&self, probability: f64) {
        let fault: iaprun::emulator::FaultSpec = serde_json::from_value(json!({
            "kind": "stale_etag", "method": "POST", "path_regex": ":setIamPolicy$", "probability": probability
        }))
        .expect("fault");
        self.emulator.add_fault(fault).expect("fault added");
        self.emulator.clear_requests();
    }

    /// Refuses every serverless NEG list with 403 PERMISSION_DENIED, as for credentials without
    /// `compute.networkEndpointGroups.list`: the IAP paths to a Cloud Run service cannot be looked up.
    pub fn deny_neg_list(&self) {
        self.deny_reads(
            "/networkEndpointGroups$",
            "Required 'compute.networkEndpointGroups.list' permission.",
        );
    }

    /// Refuses every GET whose path matches `path_regex` with 403 PERMISSION_DENIED and `message`,
    /// as for credentials that lack the permission to read it.
    pub fn deny_reads(&self, path_regex: &str, message: &str) {
        let fault: iaprun::emulator::FaultSpec = serde_json::from_value(json!({
            "kind": "status", "status": 403, "method": "GET", "path_regex": path_regex,
            "probability": 1.0, "message": message
        }))
        .expect("fault");
        self.emulator.add_fault(fault).expect("fault added");
    }

    /// After an apply (`applied`) of the only resource in `ws` that turned its grant off while the
    /// NEG list was denied ([`World::deny_neg_list`]): the agent's grant on Cloud Run service
    /// `service` is still there and still recorded, and the apply said so, with Google's error.
    pub async fn assert_grant_kept_on_apply(&self, ws: &Workspace, applied: &Run, service: &str) {
        let agent = self.iap_agent();
        let name = format!("projects/{PROJECT}/locations/{REGION}/services/{service}");
        let members = self.run_members(service, "roles/run.invoker").await;
        assert!(
            members.contains(&agent),
            "unknown whether another path needs it: kept"
        );
        let shown = applied.flat_output();
        for said in [
            "Warning: Invoker grant left in place".to_string(),
            format!("This apply left roles/run.invoker for the IAP service agent ({agent}) on Cloud Run service {name}"),
            "Required 'compute.networkEndpointGroups.list' permission.".to_string(),
            "the next apply tries again to remove it".to_string(),
        ] {
            assert!(shown.contains(&said), "{said:?} in\n{applied}");
        }
        let state = ws.show_json();
        let values = &state["values"]["root_module"]["resources"][0]["values"];
        assert_eq!(
            values["invoker_grants"],
            json!([name]),
            "still this resource's"
        );
    }

    /// How many setIamPolicy calls were refused as conflicts since the request log was cleared.
    pub fn iam_conflicts(&self) -> usize {
        self.emulator
            .requests()
            .iter()
            .filter(|r| r.path.ends_with(":setIamPolicy") && r.status == 409)
            .count()
    }

    /// How many IAP getIamPolicy calls were made since the request log was cleared.
    pub fn iap_policy_reads(&self) -> usize {
        self.emulator
            .requests()
            .iter()
            .filter(|r| r.path.ends_with(":getIamPolicy") && r.path.starts_with("/v1/"))
            .count()
    }

    /// How many IAP setIamPolicy calls (conflicts included) were made since the request log was
    /// cleared.
    pub fn iap_policy_writes(&self) -> usize {
        self.emulator
            .requests()
            .iter()
            .filter(|r| r.path.ends_with(":setIamPolicy") && r.path.starts_with("/v1/"))
            .count()
    }

    /// Requests whose method mutates state (anything but GET and the read-only POSTs).
    pub fn mutating_requests(&self) -> Vec<String> {
        self.emulator
            .requests()
            .into_iter()
            .filter(|r| {
                let read_only_post = r.path.ends_with(":getIamPolicy")
                    || r.path.ends_with(":testIamPermissions")
                    || r.path.ends_with(":getAncestry")
                    || r.path.ends_with(":validateAttributeExpression")
                    || r.path.ends_with(":wait")
                    || r.path.ends_with("/wait");
                r.method != "GET" && !read_only_post
            })
            .map(|r| format!("{} {}", r.method, r.path))
            .collect()
    }

    /// Stops the emulator and waits for it; dropping the world then checks conformance.
    pub async fn shutdown(mut self) {
        self.emulator.stop().await;
    }

    /// Every request so far conformed to Google's discovery documents.
    pub fn assert_conformant(&self) {
        let mismatches = self.emulator.mismatches();
        assert!(
            mismatches.is_empty(),
            "requests that do not match the discovery documents: {mismatches:#?}"
        );
    }
}

/// Every test that builds a world checks, at its end, that every request made in it conformed to
/// the discovery documents (DESIGN.md §7), whether or not it asked.
impl Drop for World {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            self.assert_conformant();
        }
    }
}

/// The `terraform` block that says where `iaprun` comes from.
pub const REQUIRED_PROVIDERS: &str = r#"terraform {
  required_providers {
    iaprun = { source = "iaprun/iaprun" }
  }
}
"#;

/// A provider block for the world's project and region, with `provider_settings` (whole lines,
/// or "") added inside it.
pub fn provider_block(provider_settings: &str) -> String {
    format!(
        r#"provider "iaprun" {{
  project = "{PROJECT}"
  region  = "{REGION}"
{provider_settings}}}
"#
    )
}

/// `required_providers` and a provider block for the world's project and region, with
/// `provider_settings` (whole lines, or "") added inside the provider block.
pub fn provider_header(provider_settings: &str) -> String {
    format!(
        "\n{REQUIRED_PROVIDERS}\n{}",
        provider_block(provider_settings)
    )
}

/// The provider header and `local.resources`, the given IAP resource names.
pub fn header_with_resources(resources: &[String]) -> String {
    format!("{}\n{}", provider_header(""), resources_local(resources))
}

/// A `locals` block whose `resources` lists the given IAP resource names.
pub fn resources_local(resources: &[String]) -> String {
    let list = resources
        .iter()
        .map(|r| format!("\"{r}\""))
        .collect::<Vec<_>>()
        .join(", ");
    format!("locals {{\n  resources = [{list}]\n}}\n")
}

/// The members of `role` (without condition) in a policy JSON.
pub fn members_of(policy: &Value, role: &str) -> Vec<String> {
    policy["bindings"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|b| b["role"] == role && b.get("condition").is_none())
        .flat_map(|b| b["members"].as_array().cloned().unwrap_or_default())
        .filter_map(|m| m.as_str().map(str::to_string))
        .collect()
}

fn set_members(policy: &mut Value, role: &str, members: &[&str]) {
    let mut bindings: Vec<Value> = policy["bindings"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|b| !(b["role"] == role && b.get("condition").is_none()))
        .collect();
    if !members.is_empty() {
        bindings.push(json!({"role": role, "members": members}));
    }
    policy["bindings"] = Value::Array(bindings);
}
