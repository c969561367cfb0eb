//! iaprun-emulator driven over HTTP, the way the provider's Google client will drive it.

use std::time::Duration;

use base64::Engine;
use iaprun::emulator::{self, Emulator, FaultKind, FaultSpec, Options, ProjectUpdate};
use reqwest::{Client, Method};
use serde_json::{json, Value};

const PROJECT: &str = "demo-project";
const REGION: &str = "us-central1";

struct Api {
    emulator: Emulator,
    http: Client,
}

impl Api {
    async fn start(options: Options) -> Api {
        let emulator = emulator::spawn(options).await.expect("emulator starts");
        Api {
            emulator,
            http: Client::new(),
        }
    }

    async fn new() -> Api {
        Api::start(Options::default()).await
    }

    async fn send(&self, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.emulator.base_url()))
            .bearer_auth("ya29.test-token");
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request is answered");
        let status = response.status().as_u16();
        let text = response.text().await.expect("body");
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        self.send(Method::GET, path, None).await
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.send(Method::POST, path, Some(body)).await
    }

    async fn patch(&self, path: &str, body: Value) -> (u16, Value) {
        self.send(Method::PATCH, path, Some(body)).await
    }

    /// Create a Cloud Run service, wait for its operation, and answer the service as GET shows it.
    async fn create_service(&self, name: &str, extra: Value) -> Value {
        let mut body = json!({"template": {"containers": [{"image": "us-docker.pkg.dev/cloudrun/container/hello"}]}});
        if let (Some(target), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
            target.extend(extra.clone());
        }
        let (status, op) = self
            .post(
                &format!("/v2/projects/{PROJECT}/locations/{REGION}/services?serviceId={name}"),
                body,
            )
            .await;
        assert_eq!(status, 200, "{op}");
        self.wait_run(&op).await;
        let (status, service) = self.get(&Api::service_path(name)).await;
        assert_eq!(status, 200, "{service}");
        service
    }

    /// Wait for a Cloud Run operation with operations.wait.
    async fn wait_run(&self, op: &Value) -> Value {
        let name = op["name"].as_str().expect("operation name");
        let (status, done) = self
            .post(&format!("/v2/{name}:wait"), json!({"timeout": "60s"}))
            .await;
        assert_eq!(status, 200, "{done}");
        assert_eq!(done["done"], true, "{done}");
        done
    }

    fn service_path(name: &str) -> String {
        format!("/v2/projects/{PROJECT}/locations/{REGION}/services/{name}")
    }

    fn assert_conformant(&self) {
        assert!(
            self.emulator.mismatches().is_empty(),
            "{:?}",
            self.emulator.mismatches()
        );
        assert!(
            self.emulator.response_problems().is_empty(),
            "{:?}",
            self.emulator.response_problems()
        );
    }
}

#[tokio::test]
async fn run_service_lifecycle() {
    let api = Api::new().await;
    let path = format!("/v2/projects/{PROJECT}/locations/{REGION}/services?serviceId=hello");
    let body = json!({"template": {"containers": [{"image": "gcr.io/p/hello"}]}});
    let (status, op) = api.post(&path, body).await;
    assert_eq!(status, 200);
    let name = op["name"].as_str().unwrap();
    assert!(
        name.starts_with(&format!(
            "projects/{PROJECT}/locations/{REGION}/operations/"
        )),
        "{name}"
    );
    assert!(
        op.get("done").is_none(),
        "a fresh operation omits done:false: {op}"
    );
    assert_eq!(
        op["metadata"]["@type"],
        "type.googleapis.com/google.cloud.run.v2.Service"
    );

    let (status, polled) = api.get(&format!("/v2/{name}")).await;
    assert_eq!(status, 200);
    assert_eq!(polled["done"], true);
    assert_eq!(
        polled["response"]["name"],
        format!("projects/{PROJECT}/locations/{REGION}/services/hello")
    );

    let (status, service) = api.get(&Api::service_path("hello")).await;
    assert_eq!(status, 200);
    assert_eq!(service["generation"], "1");
    assert_eq!(
        service["template"]["containers"][0]["ports"],
        json!([{"name": "http1", "containerPort": 8080}])
    );
    assert_eq!(service["ingress"], "INGRESS_TRAFFIC_ALL");
    assert_eq!(service["terminalCondition"]["state"], "CONDITION_SUCCEEDED");
    assert!(service["uri"]
        .as_str()
        .unwrap()
        .starts_with("https://hello-"));
    assert!(
        service.get("iapEnabled").is_none(),
        "false booleans are omitted"
    );
    assert!(service["etag"].is_string());

    // Full-object PATCH, no mask: the Google provider's way.
    let mut desired = service.clone();
    desired["iapEnabled"] = json!(true);
    let (status, op) = api.patch(&Api::service_path("hello"), desired).await;
    assert_eq!(status, 200, "{op}");
    api.wait_run(&op).await;
    let (_, after) = api.get(&Api::service_path("hello")).await;
    assert_eq!(after["iapEnabled"], true);
    assert_eq!(after["generation"], "2");
    assert_ne!(after["etag"], service["etag"]);
    assert_eq!(
        after["latestCreatedRevision"], service["latestCreatedRevision"],
        "no new revision for service-level fields"
    );

    let (status, list) = api
        .get(&format!(
            "/v2/projects/{PROJECT}/locations/{REGION}/services"
        ))
        .await;
    assert_eq!(status, 200);
    assert_eq!(list["services"].as_array().map(Vec::len), Some(1));

    let (status, op) = api
        .send(Method::DELETE, &Api::service_path("hello"), None)
        .await;
    assert_eq!(status, 200);
    api.wait_run(&op).await;
    let (status, error) = api.get(&Api::service_path("hello")).await;
    assert_eq!(status, 404);
    assert_eq!(error["error"]["status"], "NOT_FOUND");
    assert_eq!(error["error"]["code"], 404);
    assert!(error["error"]["message"]
        .as_str()
        .unwrap()
        .contains("'hello' of kind 'SERVICE'"));
    api.assert_conformant();
}

#[tokio::test]
async fn run_create_errors() {
    let api = Api::new().await;
    api.create_service("dup", json!({})).await;
    let body = json!({"template": {"containers": [{"image": "x"}]}});
    let (status, error) = api
        .post(
            &format!("/v2/projects/{PROJECT}/locations/{REGION}/services?serviceId=dup"),
            body.clone(),
        )
        .await;
    assert_eq!(
        (status, error["error"]["status"].as_str()),
        (409, Some("ALREADY_EXISTS"))
    );
    let (status, _) = api
        .post(
            &format!("/v2/projects/{PROJECT}/locations/{REGION}/services?serviceId=Bad_Name"),
            body.clone(),
        )
        .await;
    assert_eq!(status, 400);
    let (status, error) = api
        .post(
            &format!("/v2/projects/{PROJECT}/locations/{REGION}/services?serviceId=noimage"),
            json!({"template": {}}),
        )
        .await;
    assert_eq!(
        (status, error["error"]["status"].as_str()),
        (400, Some("INVALID_ARGUMENT"))
    );
    let (status, _) = api
        .post(
            &format!("/v2/projects/Bad_Project/locations/{REGION}/services?serviceId=x"),
            body,
        )
        .await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn run_patch_etag_mask_and_validate_only() {
    let api = Api::new().await;
    let service = api
        .create_service("svc", json!({"description": "first"}))
        .await;

    let mut stale = service.clone();
    stale["etag"] = json!("\"stale\"");
    let (status, error) = api.patch(&Api::service_path("svc"), stale).await;
    assert_eq!(
        (status, error["error"]["status"].as_str()),
        (409, Some("ABORTED"))
    );

    // No etag: accepted.
    let mut no_etag = service.clone();
    no_etag.as_object_mut().unwrap().remove("etag");
    no_etag["description"] = json!("second");
    let (status, op) = api.patch(&Api::service_path("svc"), no_etag).await;
    assert_eq!(status, 200, "{op}");
    api.wait_run(&op).await;

    // An update mask touches only the listed field.
    let (status, op) = api
        .patch(
            &format!("{}?updateMask=iapEnabled", Api::service_path("svc")),
            json!({"iapEnabled": true}),
        )
        .await;
    assert_eq!(status, 200, "{op}");
    api.wait_run(&op).await;
    let (_, now) = api.get(&Api::service_path("svc")).await;
    assert_eq!(now["iapEnabled"], true);
    assert_eq!(now["description"], "second");
    assert_eq!(
        now["template"]["containers"][0]["image"],
        "us-docker.pkg.dev/cloudrun/container/hello"
    );

    // Without a mask the template is required.
    let (status, _) = api
        .patch(&Api::service_path("svc"), json!({"iapEnabled": false}))
        .await;
    assert_eq!(status, 400);

    // validateOnly answers a finished operation and persists nothing.
    let mut change = now.clone();
    change["description"] = json!("not persisted");
    let (status, op) = api
        .patch(
            &format!("{}?validateOnly=true", Api::service_path("svc")),
            change,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(op["done"], true);
    assert_eq!(op["response"]["description"], "not persisted");
    let (_, after) = api.get(&Api::service_path("svc")).await;
    assert_eq!(after["description"], "second");
    let (status, _) = api
        .get(&format!("/v2/{}", op["name"].as_str().unwrap()))
        .await;
    assert_eq!(status, 404, "a validate-only operation is not stored");

    // Patching a missing service is NOT_FOUND.
    let (status, _) = api.patch(&Api::service_path("ghost"), now).await;
    assert_eq!(status, 404);
    api.assert_conformant();
}

#[tokio::test]
async fn project_id_and_number_alias() {
    let api = Api::new().await;
    api.create_service("alias", json!({})).await;
    let (status, project) = api.get(&format!("/v1/projects/{PROJECT}")).await;
    assert_eq!(status, 200);
    let number = project["projectNumber"].as_str().unwrap().to_string();
    assert_eq!(number.len(), 12);
    assert_eq!(Some(number.clone()), api.emulator.project_number(PROJECT));
    assert_eq!(project["parent"]["type"], "organization");

    let (status, by_number) = api
        .get(&format!(
            "/v2/projects/{number}/locations/{REGION}/services/alias"
        ))
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        by_number["name"],
        format!("projects/{number}/locations/{REGION}/services/alias")
    );

    let (status, v3) = api.get(&format!("/v3/projects/{number}")).await;
    assert_eq!(status, 200);
    assert_eq!(v3["projectId"], PROJECT);
    assert_eq!(v3["name"], format!("projects/{number}"));

    // A number nobody owns is hidden, as Resource Manager hides missing projects.
    let (status, error) = api.get("/v1/projects/999999999999").await;
    assert_eq!(
        (status, error["error"]["status"].as_str()),
        (403, Some("PERMISSION_DENIED"))
    );

    // The admin API can take the project out of its organization.
    api.emulator
        .update_project(
            PROJECT,
            ProjectUpdate {
                parent: Some(None),
                ..Default::default()
            },
        )
        .unwrap();
    let (_, project) = api.get(&format!("/v1/projects/{PROJECT}")).await;
    assert!(project.get("parent").is_none(), "{project}");
    let (_, v3) = api.get(&format!("/v3/projects/{PROJECT}")).await;
    assert!(v3.get("parent").is_none(), "{v3}");
    api.assert_conformant();
}

#[tokio::test]
async fn run_iam_policy_semantics() {
    let api = Api::new().await;
    api.create_service("iam", json!({})).await;
    let resource = Api::service_path("iam");
    let (status, policy) = api.get(&format!("{resource}:getIamPolicy")).await;
    assert_eq!((status, policy), (200, json!({"etag": "ACAB"})));

    let grant = json!({"policy": {"etag": "ACAB", "bindings": [
        {"role": "roles/run.invoker", "members": ["user:Alice@Example.com"]},
        {"role": "roles/run.viewer", "members": []}]}});
    let (status, written) = api
        .post(&format!("{resource}:setIamPolicy"), grant.clone())
        .await;
    assert_eq!(status, 200, "{written}");
    assert_eq!(
        written["bindings"],
        json!([{"role": "roles/run.invoker", "members": ["user:alice@example.com"]}])
    );
    assert_ne!(written["etag"], "ACAB");

    // The same etag again is stale.
    let (status, error) = api.post(&format!("{resource}:setIamPolicy"), grant).await;
    assert_eq!(status, 409);
    assert_eq!(error["error"]["status"], "ABORTED");
    assert_eq!(
        error["error"]["message"],
        "There were concurrent policy changes. Please retry the whole read-modify-write with exponential backoff."
    );

    // No etag: unconditional overwrite, with a condition at version 3.
    let conditional = json!({"policy": {"version": 3, "bindings": [{"role": "roles/run.invoker",
        "members": ["user:bob@example.com"],
        "condition": {"title": "until 2030", "expression": "request.time < timestamp(\"2030-01-01T00:00:00Z\")"}}]},
        "updateMask": "bindings"});
    let (status, written) = api
        .post(&format!("{resource}:setIamPolicy"), conditional)
        .await;
    assert_eq!(status, 200, "{written}");
    assert_eq!(written["version"], 3);
    let (status, error) = api
        .get(&format!(
            "{resource}:getIamPolicy?options.requestedPolicyVersion=1"
        ))
        .await;
    assert_eq!(
        (status, error["error"]["status"].as_str()),
        (400, Some("INVALID_ARGUMENT"))
    );
    let (status, read) = api
        .get(&format!(
            "{resource}:getIamPolicy?options.requestedPolicyVersion=3"
        ))
        .await;
    assert_eq!(status, 200);
    assert_eq!(read["bindings"][0]["condition"]["title"], "until 2030");

    let (status, _) = api
        .get(&format!("{}:getIamPolicy", Api::service_path("missing")))
        .await;
    assert_eq!(status, 404);
    api.assert_conformant();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_set_iam_policy_exactly_one_wins() {
    let api = Api::new().await;
    api.create_service("race", json!({})).await;
    let resource = format!(
        "{}{}:setIamPolicy",
        api.emulator.base_url(),
        Api::service_path("race")
    );
    let mut tasks = Vec::new();
    for i in 0..100 {
        let http = api.http.clone();
        let url = resource.clone();
        tasks.push(tokio::spawn(async move {
            let body = json!({"policy": {"etag": "ACAB", "bindings": [
                {"role": "roles/run.invoker", "members": [format!("user:u{i}@example.com")]}]}});
            http.post(url)
                .bearer_auth("t")
                .json(&body)
                .send()
                .await
                .map(|r| r.status().as_u16())
        }));
    }
    let mut statuses = Vec::new();
    for task in tasks {
        statuses.push(task.await.expect("task").expect("answered"));
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 409).count(),
        99,
        "{statuses:?}"
    );
    let (_, policy) = api
        .get(&format!("{}:getIamPolicy", Api::service_path("race")))
        .await;
    assert_eq!(
        policy["bindings"][0]["members"].as_array().map(Vec::len),
        Some(1)
    );
}

#[tokio::test]
async fn operations_follow_delay_and_wait_blocks() {
    let api = Api::start(Options {
        operation_delay_ms: 300,
        ..Options::default()
    })
    .await;
    let body = json!({"template": {"containers": [{"image": "x"}]}});
    let (_, op) = api
        .post(
            &format!("/v2/projects/{PROJECT}/locations/{REGION}/services?serviceId=slow"),
            body,
        )
        .await;
    // wait blocks until the operation is done (the timeout is far away).
    let done = api.wait_run(&op).await;
    assert_eq!(
        done["response"]["name"],
        format!("projects/{PROJECT}/locations/{REGION}/services/slow")
    );

    // Deterministic "not done yet": an injected number of polls, and time enough that a loaded
    // machine does not see the operation finish while the loop below reads the service.
    api.emulator
        .add_fault(FaultSpec {
            polls: Some(2),
            delay_ms: Some(3000),
            method: Some("PATCH".into()),
            ..FaultSpec::new(FaultKind::OperationDelay)
        })
        .unwrap();
    let (_, service) = api.get(&Api::service_path("slow")).await;
    let (_, op) = api.patch(&Api::service_path("slow"), service).await;
    let name = op["name"].as_str().unwrap();
    for _ in 0..2 {
        let (_, polled) = api.get(&format!("/v2/{name}")).await;
        assert!(polled.get("done").is_none(), "{polled}");
        let (_, service) = api.get(&Api::service_path("slow")).await;
        assert_eq!(service["reconciling"], true);
        assert_eq!(
            service["terminalCondition"]["state"],
            "CONDITION_RECONCILING"
        );
    }
    let started = std::time::Instant::now();
    api.wait_run(&op).await;
    assert!(
        started.elapsed() > Duration::from_millis(1000),
        "wait blocked"
    );
    let (_, polled) = api.get(&format!("/v2/{name}")).await;
    assert_eq!(polled["done"], true, "{polled}");
    api.assert_conformant();
}

#[tokio::test]
async fn operation_error_fault_leaves_the_service_unchanged() {
    let api = Api::new().await;
    let service = api.create_service("fail", json!({})).await;
    api.emulator
        .add_fault(FaultSpec {
            code: Some(9),
            message: Some("revision failed to start".into()),
            ..FaultSpec::new(FaultKind::OperationError)
        })
        .unwrap();
    let mut change = service.clone();
    change["iapEnabled"] = json!(true);
    let (_, op) = api.patch(&Api::service_path("fail"), change).await;
    let (_, done) = api
        .get(&format!("/v2/{}", op["name"].as_str().unwrap()))
        .await;
    assert_eq!(done["done"], true);
    assert_eq!(
        done["error"],
        json!({"code": 9, "message": "revision failed to start"})
    );
    let (_, after) = api.get(&Api::service_path("fail")).await;
    assert!(after.get("iapEnabled").is_none());
    assert_eq!(after["generation"], "1");
}

#[tokio::test]
async fn status_faults_carry_retry_after_and_counts_are_honoured() {
    let api = Api::new().await;
    api.create_service("busy", json!({})).await;
    let spec: FaultSpec = serde_json::from_value(
        json!({"method": "POST", "path_regex": ":setIamPolicy$", "count": 2,
        "kind": "status", "status": 429, "retry_after": 1}),
    )
    .unwrap();
    api.emulator.add_fault(spec).unwrap();
    let url = format!(
        "{}{}:setIamPolicy",
        api.emulator.base_url(),
        Api::service_path("busy")
    );
    for _ in 0..2 {
        let response = api
            .http
            .post(&url)
            .bearer_auth("t")
            .json(&json!({"policy": {}}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 429);
        assert_eq!(
            response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok()),
            Some("1")
        );
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["status"], "RESOURCE_EXHAUSTED");
        let details = body["error"]["details"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert!(details
            .iter()
            .any(|d| d["@type"] == "type.googleapis.com/google.rpc.RetryInfo"
                && d["retryDelay"] == "1s"));
    }
    // GETs never matched; the third POST goes through.
    let (status, _) = api
        .get(&format!("{}:getIamPolicy", Api::service_path("busy")))
        .await;
    assert_eq!(status, 200);
    let (status, _) = api
        .post(
            &format!("{}:setIamPolicy", Api::service_path("busy")),
            json!({"policy": {}}),
        )
        .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn faults_over_the_admin_api() {
    let api = Api::new().await;
    let admin = format!("{}/__emulator/faults", api.emulator.base_url());
    let added: Value = api
        .http
        .post(&admin)
        .json(&json!({"path_regex": "/v1/projects/", "kind": "stale_etag", "count": 1}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(added["id"].is_u64());
    let listed: Value = api
        .http
        .get(&admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed[0]["remaining"], 1);
    let (status, error) = api.get(&format!("/v1/projects/{PROJECT}")).await;
    assert_eq!(
        (status, error["error"]["status"].as_str()),
        (409, Some("ABORTED"))
    );
    let (status, _) = api.get(&format!("/v1/projects/{PROJECT}")).await;
    assert_eq!(status, 200);

    // Bad fault JSON is refused with a reason.
    let response = api
        .http
        .post(&admin)
        .json(&json!({"kind": "status"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
    let response = api
        .http
        .post(&admin)
        .json(&json!({"kind": "teleport"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);

    api.http
        .post(&admin)
        .json(&json!({"kind": "status", "status": 503, "probability": 1.0}))
        .send()
        .await
        .unwrap();
    let (status, _) = api.get(&format!("/v1/projects/{PROJECT}")).await;
    assert_eq!(status, 503);
    api.http.delete(&admin).send().await.unwrap();
    let (status, _) = api.get(&format!("/v1/projects/{PROJECT}")).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn reset_fault_drops_the_connection() {
    let api = Api::new().await;
    api.emulator
        .add_fault(FaultSpec {
            path_regex: Some("^/v1/projects/".into()),
            ..FaultSpec::new(FaultKind::Reset)
        })
        .unwrap();
    let result = api
        .http
        .get(format!("{}/v1/projects/{PROJECT}", api.emulator.base_url()))
        .bearer_auth("t")
        .send()
        .await;
    assert!(
        result.is_err(),
        "the connection is dropped without an answer"
    );
    let (status, _) = api.get(&format!("/v1/projects/{PROJECT}")).await;
    assert_eq!(status, 200);
    assert_eq!(api.emulator.requests().first().map(|r| r.status), Some(0));
}

#[tokio::test]
async fn bearer_token_is_required_unless_open() {
    let api = Api::new().await;
    let url = format!("{}/v1/projects/{PROJECT}", api.emulator.base_url());
    let response = api.http.get(&url).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 401);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["status"], "UNAUTHENTICATED");
    assert_eq!(body["error"]["code"], 401);
    // Compute answers in its legacy shape.
    let response = api
        .http
        .get(format!(
            "{}/compute/v1/projects/{PROJECT}/global/backendServices",
            api.emulator.base_url()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 401);
    let body: Value = response.json().await.unwrap();
    assert!(body["error"]["errors"][0]["reason"].is_string(), "{body}");

    let open = Api::start(Options {
        open: true,
        ..Options::default()
    })
    .await;
    let response = open
        .http
        .get(format!(
            "{}/v1/projects/{PROJECT}",
            open.emulator.base_url()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
}

#[tokio::test]
async fn conformance_rejects_unknown_fields_bad_enums_and_unknown_paths() {
    let api = Api::new().await;
    api.create_service("conf", json!({})).await;
    assert!(api.emulator.mismatches().is_empty());

    let (status, error) = api
        .patch(
            &format!("{}?updateMask=iapEnabled", Api::service_path("conf")),
            json!({"iap_enabled_typo": true}),
        )
        .await;
    assert_eq!(
        (status, error["error"]["status"].as_str()),
        (400, Some("INVALID_ARGUMENT"))
    );
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Unknown name \"iap_enabled_typo\""),
        "{error}"
    );

    let (status, error) = api
        .patch(
            &format!("{}?updateMask=ingress", Api::service_path("conf")),
            json!({"ingress": "INGRESS_EVERYONE"}),
        )
        .await;
    assert_eq!(status, 400);
    assert!(error["error"]["message"]
        .as_str()
        .unwrap()
        .contains("INGRESS_EVERYONE"));

    let (status, _) = api
        .get(&format!("{}?view=FULL", Api::service_path("conf")))
        .await;
    assert_eq!(status, 400);
    let (status, _) = api.get("/v2/projects/p/locations/l/nothings/x").await;
    assert_eq!(status, 404);

    let mismatches = api.emulator.mismatches();
    assert_eq!(mismatches.len(), 4, "{mismatches:?}");
    assert_eq!(
        mismatches[0].method_id.as_deref(),
        Some("run.projects.locations.services.patch")
    );
    assert!(mismatches[3].method_id.is_none());
    let over_http: Value = api
        .http
        .get(format!("{}/__emulator/mismatches", api.emulator.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(over_http.as_array().map(Vec::len), Some(4));
    // Nothing was changed by the rejected requests.
    let (_, service) = api.get(&Api::service_path("conf")).await;
    assert_eq!(service["ingress"], "INGRESS_TRAFFIC_ALL");
}

#[tokio::test]
async fn request_log_file_and_memory() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("requests.jsonl");
    let api = Api::start(Options {
        request_log: Some(log.clone()),
        ..Options::default()
    })
    .await;
    let (_, _) = api.get(&format!("/v1/projects/{PROJECT}?alt=json")).await;
    let (_, _) = api
        .post(&format!("/v1/projects/{PROJECT}:getAncestry"), json!({}))
        .await;
    let lines: Vec<Value> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(
        lines[0],
        json!({"method": "GET", "path": format!("/v1/projects/{PROJECT}"), "query": "alt=json", "body": null, "status": 200})
    );
    assert_eq!(lines[1]["body"], json!({}));
    assert_eq!(api.emulator.requests().len(), 2);
    let over_http: Value = api
        .http
        .get(format!("{}/__emulator/requests", api.emulator.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        over_http.as_array().map(Vec::len),
        Some(2),
        "admin requests are not logged"
    );
    api.http
        .post(format!(
            "{}/__emulator/requests/clear",
            api.emulator.base_url()
        ))
        .send()
        .await
        .unwrap();
    assert!(api.emulator.requests().is_empty());
}

fn b64(bytes: &[u8]) -> String {
    // Padded, as gcp_auth sends it.
    base64::engine::general_purpose::URL_SAFE.encode(bytes)
}

fn sign_jwt(key: &Value, claims: &Value) -> String {
    use rsa::pkcs8::DecodePrivateKey;
    use rsa::signature::{SignatureEncoding, Signer};
    let private = rsa::RsaPrivateKey::from_pkcs8_pem(key["private_key"].as_str().unwrap()).unwrap();
    let signer = rsa::pkcs1v15::SigningKey::<sha2::Sha256>::new(private);
    let header = b64(br#"{"alg":"RS256","typ":"JWT"}"#);
    let payload = b64(claims.to_string().as_bytes());
    let signature = signer.sign(format!("{header}.{payload}").as_bytes());
    format!("{header}.{payload}.{}", b64(&signature.to_bytes()))
}

#[tokio::test]
async fn token_exchange_with_a_generated_key() {
    let api = Api::new().await;
    let key: Value = api
        .http
        .post(format!(
            "{}/__emulator/service-accounts",
            api.emulator.base_url()
        ))
        .json(&json!({"project_id": PROJECT, "account_id": "deployer"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(key["type"], "service_account");
    assert_eq!(
        key["client_email"],
        format!("deployer@{PROJECT}.iam.gserviceaccount.com")
    );
    assert!(key["private_key"]
        .as_str()
        .unwrap()
        .starts_with("-----BEGIN PRIVATE KEY-----"));
    let token_uri = key["token_uri"].as_str().unwrap().to_string();
    assert_eq!(token_uri, format!("{}/token", api.emulator.base_url()));

    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let claims = json!({"iss": key["client_email"], "aud": token_uri, "iat": now, "exp": now + 3595, "sub": null,
                        "scope": "https://www.googleapis.com/auth/cloud-platform"});
    let assertion = sign_jwt(&key, &claims);
    assert!(assertion.ends_with('='), "padded segments are accepted");
    let exchange = |assertion: String| {
        let http = api.http.clone();
        let uri = token_uri.clone();
        async move {
            let response = http
                .post(uri)
                .form(&[
                    ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
                    ("assertion", assertion.as_str()),
                ])
                .send()
                .await
                .unwrap();
            (
                response.status().as_u16(),
                response.json::<Value>().await.unwrap(),
            )
        }
    };
    let (status, token) = exchange(assertion.clone()).await;
    assert_eq!(status, 200, "{token}");
    assert!(token["access_token"].as_str().unwrap().starts_with("ya29."));
    assert_eq!(token["expires_in"], 3599);
    assert_eq!(token["token_type"], "Bearer");

    // A tampered signature.
    let mut parts: Vec<String> = assertion.split('.').map(str::to_string).collect();
    parts[1] = b64(
        json!({"iss": key["client_email"], "aud": token_uri, "iat": now, "exp": now + 60,
                          "scope": "x"})
        .to_string()
        .as_bytes(),
    );
    let (status, error) = exchange(parts.join(".")).await;
    assert_eq!(
        (status, error["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    assert_eq!(error["error_description"], "Invalid JWT Signature.");

    // A token living longer than an hour.
    let long = sign_jwt(
        &key,
        &json!({"iss": key["client_email"], "aud": token_uri, "iat": now, "exp": now + 7200, "scope": "x"}),
    );
    let (status, error) = exchange(long).await;
    assert_eq!(
        (status, error["error"].as_str()),
        (400, Some("invalid_grant"))
    );

    // The wrong audience.
    let wrong = sign_jwt(
        &key,
        &json!({"iss": key["client_email"], "aud": "https://example.com/token", "iat": now,
                                       "exp": now + 60, "scope": "x"}),
    );
    let (status, _) = exchange(wrong).await;
    assert_eq!(status, 400);
    // Keys made through the handle work the same way.
    let other = api
        .emulator
        .service_account_key(PROJECT, "second-account")
        .await
        .unwrap();
    let claims = json!({"iss": other["client_email"], "aud": token_uri, "iat": now, "exp": now + 600, "scope": "x"});
    let (status, _) = exchange(sign_jwt(&other, &claims)).await;
    assert_eq!(status, 200);
    // The exchange is logged without its body.
    assert!(api
        .emulator
        .requests()
        .iter()
        .all(|r| r.path == "/token" && r.body.is_null()));
}

#[tokio::test]
async fn response_bodies_fit_the_discovery_schemas() {
    let api = Api::new().await;
    api.create_service(
        "shape",
        json!({"iapEnabled": true, "labels": {"team": "a"}}),
    )
    .await;
    api.get(&Api::service_path("shape")).await;
    api.get(&format!(
        "/v2/projects/{PROJECT}/locations/{REGION}/services"
    ))
    .await;
    api.post(
        &format!("{}:setIamPolicy", Api::service_path("shape")),
        json!({"policy": {"bindings": []}}),
    )
    .await;
    api.get(&format!("/v1/projects/{PROJECT}")).await;
    api.get(&format!("/v3/projects/{PROJECT}")).await;
    api.assert_conformant();
}

#[tokio::test]
async fn reset_forgets_everything() {
    let api = Api::new().await;
    api.create_service("gone", json!({})).await;
    api.emulator
        .add_fault(FaultSpec {
            status: Some(500),
            ..FaultSpec::new(FaultKind::Status)
        })
        .unwrap();
    let response = api
        .http
        .post(format!("{}/__emulator/reset", api.emulator.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let (status, _) = api.get(&Api::service_path("gone")).await;
    assert_eq!(
        status, 404,
        "the fault was cleared too, and the service is gone"
    );
    assert_eq!(api.emulator.requests().len(), 1);
}

#[tokio::test]
async fn binary_prints_its_address_first() {
    use tokio::io::AsyncBufReadExt;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_iaprun-emulator"))
        .args(["--listen", "127.0.0.1:0", "--operation-delay-ms", "5"])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("binary starts");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let first = lines
        .next_line()
        .await
        .expect("reads")
        .expect("a first line");
    let url = first
        .strip_prefix("iaprun-emulator listening on ")
        .expect("the contract's first line")
        .to_string();
    assert!(url.starts_with("http://127.0.0.1:"), "{first}");
    let response = Client::new()
        .get(format!("{url}/__emulator/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let response = Client::new()
        .get(format!("{url}/v1/projects/{PROJECT}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 401);
    // SIGTERM stops it cleanly.
    let pid = child.id().expect("running") as libc::pid_t;
    // SAFETY: sending a signal to our own child process.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let status = child.wait().await.expect("exits");
    assert!(status.success(), "{status:?}");

    let help = tokio::process::Command::new(env!("CARGO_BIN_EXE_iaprun-emulator"))
        .arg("--help")
        .output()
        .await
        .unwrap();
    assert!(help.status.success());
    assert!(String::from_utf8_lossy(&help.stdout).contains("--operation-delay-ms"));
    let bad = tokio::process::Command::new(env!("CARGO_BIN_EXE_iaprun-emulator"))
        .arg("--bogus")
        .output()
        .await
        .unwrap();
    assert!(!bad.status.success());
}

const COMPUTE: &str = "/compute/v1/projects/demo-project";

impl Api {
    /// Insert a compute resource and wait for its operation.
    async fn insert(&self, collection_path: &str, body: Value) -> Value {
        let (status, op) = self
            .post(&format!("{COMPUTE}/{collection_path}"), body)
            .await;
        assert_eq!(status, 200, "{op}");
        self.wait_compute(&op).await
    }

    async fn wait_compute(&self, op: &Value) -> Value {
        let link = op["selfLink"].as_str().expect("operation selfLink");
        let path = &link[link.find("/compute/v1/").expect("compute link")..];
        let (status, done) = self.post(&format!("{path}/wait"), json!({})).await;
        assert_eq!(status, 200, "{done}");
        assert_eq!(done["status"], "DONE", "{done}");
        done
    }

    /// A serverless NEG → backend service → URL map → HTTPS proxy → forwarding rule chain.
    async fn seed_load_balancer(&self) {
        self.insert(
            &format!("regions/{REGION}/networkEndpointGroups"),
            json!({"name": "hello-neg", "networkEndpointType": "SERVERLESS", "cloudRun": {"service": "hello"}}),
        )
        .await;
        self.insert(
            "global/backendServices",
            json!({"name": "hello-backend", "loadBalancingScheme": "EXTERNAL_MANAGED", "protocol": "HTTPS",
                   "backends": [{"group": format!("https://www.googleapis.com/compute/v1/projects/{PROJECT}/regions/{REGION}/networkEndpointGroups/hello-neg")}]}),
        )
        .await;
        self.insert(
            "global/urlMaps",
            json!({"name": "hello-map", "defaultService": "global/backendServices/hello-backend"}),
        )
        .await;
        self.insert(
            "global/targetHttpsProxies",
            json!({"name": "hello-proxy", "urlMap": format!("projects/{PROJECT}/global/urlMaps/hello-map"),
                   "sslCertificates": [format!("projects/{PROJECT}/global/sslCertificates/hello-cert")]}),
        )
        .await;
        self.insert(
            "global/forwardingRules",
            json!({"name": "hello-https", "loadBalancingScheme": "EXTERNAL_MANAGED",
                   "target": "global/targetHttpsProxies/hello-proxy"}),
        )
        .await;
    }
}

#[tokio::test]
async fn compute_load_balancer_chain() {
    let api = Api::new().await;
    api.seed_load_balancer().await;
    let link =
        |path: &str| format!("https://www.googleapis.com/compute/v1/projects/{PROJECT}/{path}");

    let (status, neg) = api
        .get(&format!(
            "{COMPUTE}/regions/{REGION}/networkEndpointGroups/hello-neg"
        ))
        .await;
    assert_eq!(status, 200);
    assert_eq!(neg["kind"], "compute#networkEndpointGroup");
    assert_eq!(neg["cloudRun"]["service"], "hello");
    assert_eq!(neg["region"], link(&format!("regions/{REGION}")));

    let (_, backend) = api
        .get(&format!("{COMPUTE}/global/backendServices/hello-backend"))
        .await;
    assert_eq!(
        backend["selfLink"],
        link("global/backendServices/hello-backend")
    );
    assert!(backend["fingerprint"].is_string());
    assert!(backend["id"]
        .as_str()
        .unwrap()
        .bytes()
        .all(|b| b.is_ascii_digit()));
    assert_eq!(
        backend["usedBy"],
        json!([{"reference": link("global/urlMaps/hello-map")}])
    );

    let (_, map) = api
        .get(&format!("{COMPUTE}/global/urlMaps/hello-map"))
        .await;
    assert_eq!(
        map["defaultService"],
        link("global/backendServices/hello-backend"),
        "partial references are stored as URLs"
    );
    let (_, rule) = api
        .get(&format!("{COMPUTE}/global/forwardingRules/hello-https"))
        .await;
    assert_eq!(
        rule["target"],
        link("global/targetHttpsProxies/hello-proxy")
    );
    assert_eq!(rule["portRange"], "443-443");

    // Backends may be fetched by numeric id too.
    let (status, by_id) = api
        .get(&format!(
            "{COMPUTE}/global/backendServices/{}",
            backend["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(
        (status, by_id["name"].as_str()),
        (200, Some("hello-backend"))
    );

    let (_, list) = api.get(&format!("{COMPUTE}/global/forwardingRules")).await;
    assert_eq!(list["kind"], "compute#forwardingRuleList");
    assert_eq!(list["items"].as_array().map(Vec::len), Some(1));
    let (_, filtered) = api
        .get(&format!(
            "{COMPUTE}/global/backendServices?filter=name%20%3D%20%22nope%22"
        ))
        .await;
    assert!(filtered.get("items").is_none(), "{filtered}");

    // Deleting in the wrong order is refused; in the right order it works.
    let (status, error) = api
        .send(
            Method::DELETE,
            &format!("{COMPUTE}/global/backendServices/hello-backend"),
            None,
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(
        error["error"]["errors"][0]["reason"],
        "resourceInUseByAnotherResource"
    );
    for path in [
        "global/forwardingRules/hello-https",
        "global/targetHttpsProxies/hello-proxy",
        "global/urlMaps/hello-map",
        "global/backendServices/hello-backend",
    ] {
        let (status, op) = api
            .send(Method::DELETE, &format!("{COMPUTE}/{path}"), None)
            .await;
        assert_eq!(status, 200, "{path}: {op}");
        api.wait_compute(&op).await;
    }
    let (status, error) = api
        .get(&format!("{COMPUTE}/global/backendServices/hello-backend"))
        .await;
    assert_eq!(status, 404);
    assert_eq!(
        error,
        json!({"error": {"code": 404,
            "message": format!("The resource 'projects/{PROJECT}/global/backendServices/hello-backend' was not found"),
            "errors": [{"message": format!("The resource 'projects/{PROJECT}/global/backendServices/hello-backend' was not found"),
                        "domain": "global", "reason": "notFound"}]}})
    );
    api.assert_conformant();
}

#[tokio::test]
async fn compute_reference_and_validation_errors() {
    let api = Api::new().await;
    let (status, error) = api
        .post(
            &format!("{COMPUTE}/global/urlMaps"),
            json!({"name": "m", "defaultService": "global/backendServices/none"}),
        )
        .await;
    assert_eq!(
        (status, error["error"]["errors"][0]["reason"].as_str()),
        (404, Some("notFound"))
    );
    let (status, _) = api
        .post(
            &format!("{COMPUTE}/global/backendServices"),
            json!({"name": "Bad_Name"}),
        )
        .await;
    assert_eq!(status, 400);
    let (status, _) = api
        .post(
            &format!("{COMPUTE}/regions/{REGION}/networkEndpointGroups"),
            json!({"name": "neg", "networkEndpointType": "SERVERLESS"}),
        )
        .await;
    assert_eq!(status, 400, "a serverless NEG needs a platform");
    api.insert("global/backendServices", json!({"name": "global-bs"}))
        .await;
    let (status, error) = api
        .post(
            &format!("{COMPUTE}/regions/{REGION}/urlMaps"),
            json!({"name": "m", "defaultService": "global/backendServices/global-bs"}),
        )
        .await;
    assert_eq!(
        status, 400,
        "a regional URL map cannot use a global backend: {error}"
    );
    let (status, error) = api
        .post(
            &format!("{COMPUTE}/global/backendServices"),
            json!({"name": "global-bs"}),
        )
        .await;
    assert_eq!(
        (status, error["error"]["errors"][0]["reason"].as_str()),
        (409, Some("alreadyExists"))
    );
    let (status, _) = api
        .post(
            &format!("{COMPUTE}/global/targetHttpsProxies"),
            json!({"name": "p", "urlMap": "x"}),
        )
        .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn compute_patch_fingerprint_and_iap_secret() {
    let api = Api::new().await;
    api.seed_load_balancer().await;
    let path = format!("{COMPUTE}/global/backendServices/hello-backend");
    let (_, before) = api.get(&path).await;
    let fingerprint = before["fingerprint"].as_str().unwrap().to_string();

    let (status, error) = api.patch(&path, json!({"iap": {"enabled": true}})).await;
    assert_eq!(status, 412);
    assert_eq!(
        error["error"]["errors"][0],
        json!({"message": error["error"]["message"], "domain": "global", "reason": "conditionNotMet"})
    );
    let (status, _) = api
        .patch(
            &path,
            json!({"fingerprint": "c3RhbGU=", "iap": {"enabled": true}}),
        )
        .await;
    assert_eq!(status, 412);

    let body = json!({"fingerprint": fingerprint, "iap": {"enabled": true, "oauth2ClientId": "client-1", "oauth2ClientSecret": "s3cret"}});
    let (status, op) = api.patch(&path, body).await;
    assert_eq!(status, 200, "{op}");
    assert_eq!(op["operationType"], "patch");
    api.wait_compute(&op).await;
    let (_, after) = api.get(&path).await;
    assert_eq!(after["iap"]["enabled"], true);
    assert_eq!(after["iap"]["oauth2ClientId"], "client-1");
    assert!(
        after["iap"].get("oauth2ClientSecret").is_none(),
        "the secret is never returned"
    );
    let expected: String = {
        use sha2::Digest;
        sha2::Sha256::digest(b"s3cret")
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    };
    assert_eq!(after["iap"]["oauth2ClientSecretSha256"], expected);
    assert_ne!(after["fingerprint"], before["fingerprint"]);
    assert_eq!(after["protocol"], "HTTPS", "merge patch keeps other fields");
    assert_eq!(after["backends"], before["backends"]);

    // The request log never carries the secret.
    let logged = api
        .emulator
        .requests()
        .into_iter()
        .find(|r| r.method == "PATCH" && r.status == 200)
        .unwrap();
    assert_eq!(logged.body["iap"]["oauth2ClientSecret"], "REDACTED");

    // PUT replaces: fields left out return to their defaults.
    let mut replacement = after.clone();
    replacement.as_object_mut().unwrap().remove("protocol");
    let (status, op) = api.send(Method::PUT, &path, Some(replacement)).await;
    assert_eq!(status, 200, "{op}");
    api.wait_compute(&op).await;
    let (_, replaced) = api.get(&path).await;
    assert_eq!(replaced["protocol"], "HTTP");
    assert_eq!(
        replaced["iap"]["oauth2ClientSecretSha256"], expected,
        "same client, no new secret: hash kept"
    );
    api.assert_conformant();
}

#[tokio::test]
async fn compute_request_id_deduplicates() {
    let api = Api::new().await;
    api.insert("global/backendServices", json!({"name": "dedup"}))
        .await;
    let path = format!("{COMPUTE}/global/backendServices/dedup");
    let (_, before) = api.get(&path).await;
    let request_id = "3f7c2b1e-9a4d-4c1b-8e2f-5a6b7c8d9e0f";
    let body = json!({"fingerprint": before["fingerprint"], "description": "once"});
    let (status, first) = api
        .patch(&format!("{path}?requestId={request_id}"), body.clone())
        .await;
    assert_eq!(status, 200);
    assert_eq!(first["clientOperationId"], request_id);
    api.wait_compute(&first).await;
    let (_, after_first) = api.get(&path).await;
    // The retry carries a fingerprint that is stale by now: still the same operation, not a 412.
    let (status, second) = api
        .patch(&format!("{path}?requestId={request_id}"), body)
        .await;
    assert_eq!(status, 200, "{second}");
    assert_eq!(second["name"], first["name"]);
    let (_, after_second) = api.get(&path).await;
    assert_eq!(
        after_second["fingerprint"], after_first["fingerprint"],
        "not applied twice"
    );

    let (status, _) = api
        .patch(
            &format!("{path}?requestId=not-a-uuid"),
            json!({"fingerprint": "x"}),
        )
        .await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn compute_operations_get_wait_and_faults() {
    let api = Api::start(Options {
        operation_delay_ms: 200,
        ..Options::default()
    })
    .await;
    let (_, op) = api
        .post(
            &format!("{COMPUTE}/global/backendServices"),
            json!({"name": "slow"}),
        )
        .await;
    assert_eq!(op["kind"], "compute#operation");
    assert_ne!(op["status"], "DONE");
    assert_eq!(op["operationType"], "insert");
    api.wait_compute(&op).await;

    api.emulator
        .add_fault(FaultSpec {
            polls: Some(1),
            ..FaultSpec::new(FaultKind::OperationDelay)
        })
        .unwrap();
    let (_, op) = api
        .post(
            &format!("{COMPUTE}/global/backendServices"),
            json!({"name": "polled"}),
        )
        .await;
    let name = op["name"].as_str().unwrap();
    let (_, polled) = api
        .get(&format!("{COMPUTE}/global/operations/{name}"))
        .await;
    assert_ne!(polled["status"], "DONE", "{polled}");
    api.wait_compute(&op).await;

    let (status, error) = api
        .get(&format!("{COMPUTE}/global/operations/operation-missing"))
        .await;
    assert_eq!(
        (status, error["error"]["errors"][0]["reason"].as_str()),
        (404, Some("notFound"))
    );
    let (status, _) = api
        .get(&format!("{COMPUTE}/regions/{REGION}/operations/{name}"))
        .await;
    assert_eq!(status, 404, "a global operation is not a regional one");

    api.emulator
        .add_fault(FaultSpec {
            code: Some(8),
            message: Some("quota".into()),
            ..FaultSpec::new(FaultKind::OperationError)
        })
        .unwrap();
    let (_, op) = api
        .post(
            &format!("{COMPUTE}/global/backendServices"),
            json!({"name": "failed"}),
        )
        .await;
    let done = api.wait_compute(&op).await;
    assert_eq!(done["error"]["errors"][0]["message"], "quota");
    assert_eq!(done["httpErrorStatusCode"], 429);
    let (status, _) = api
        .get(&format!("{COMPUTE}/global/backendServices/failed"))
        .await;
    assert_eq!(status, 404, "a failed insert creates nothing");

    api.emulator
        .add_fault(FaultSpec {
            method: Some("PATCH".into()),
            ..FaultSpec::new(FaultKind::StaleFingerprint)
        })
        .unwrap();
    let (status, error) = api
        .patch(
            &format!("{COMPUTE}/global/backendServices/slow"),
            json!({"fingerprint": "x"}),
        )
        .await;
    assert_eq!(
        (status, error["error"]["errors"][0]["reason"].as_str()),
        (412, Some("conditionNotMet"))
    );
    api.assert_conformant();
}

#[tokio::test]
async fn compute_regional_load_balancer() {
    let api = Api::new().await;
    let region = "europe-west1";
    api.insert(
        &format!("regions/{region}/networkEndpointGroups"),
        json!({"name": "neg", "cloudRun": {"service": "app"}}),
    )
    .await;
    api.insert(
        &format!("regions/{region}/backendServices"),
        json!({"name": "bs", "loadBalancingScheme": "EXTERNAL_MANAGED",
               "backends": [{"group": format!("projects/{PROJECT}/regions/{region}/networkEndpointGroups/neg")}]}),
    )
    .await;
    api.insert(
        &format!("regions/{region}/urlMaps"),
        json!({"name": "map", "defaultService": "bs"}),
    )
    .await;
    api.insert(
        &format!("regions/{region}/targetHttpsProxies"),
        json!({"name": "proxy", "urlMap": "map", "sslCertificates": [format!("regions/{region}/sslCertificates/c")]}),
    )
    .await;
    api.insert(
        &format!("regions/{region}/forwardingRules"),
        json!({"name": "rule", "loadBalancingScheme": "EXTERNAL_MANAGED",
               "target": format!("regions/{region}/targetHttpsProxies/proxy")}),
    )
    .await;
    let (_, neg) = api
        .get(&format!(
            "{COMPUTE}/regions/{region}/networkEndpointGroups/neg"
        ))
        .await;
    assert_eq!(neg["networkEndpointType"], "SERVERLESS");
    let (_, backend) = api
        .get(&format!("{COMPUTE}/regions/{region}/backendServices/bs"))
        .await;
    assert!(backend["region"]
        .as_str()
        .unwrap()
        .ends_with(&format!("/regions/{region}")));
    let (_, rules) = api
        .get(&format!("{COMPUTE}/regions/{region}/forwardingRules"))
        .await;
    assert_eq!(rules["items"][0]["name"], "rule");
    let (status, _) = api
        .get(&format!("{COMPUTE}/global/backendServices/bs"))
        .await;
    assert_eq!(status, 404, "a regional backend is not a global one");
    api.assert_conformant();
}

#[tokio::test]
async fn iap_policies_on_backends_and_services_with_aliases() {
    let api = Api::new().await;
    api.seed_load_balancer().await;
    api.create_service("web", json!({})).await;
    let number = api.emulator.project_number(PROJECT).unwrap();
    let (_, backend) = api
        .get(&format!("{COMPUTE}/global/backendServices/hello-backend"))
        .await;
    let backend_id = backend["id"].as_str().unwrap();

    let by_name = format!("/v1/projects/{PROJECT}/iap_web/compute/services/hello-backend");
    let by_number_and_id = format!("/v1/projects/{number}/iap_web/compute/services/{backend_id}");
    let (status, policy) = api
        .post(
            &format!("{by_name}:getIamPolicy"),
            json!({"options": {"requestedPolicyVersion": 3}}),
        )
        .await;
    assert_eq!((status, policy), (200, json!({"etag": "ACAB"})));
    let grant = json!({"policy": {"version": 3, "etag": "ACAB", "bindings": [
        {"role": "roles/iap.httpsResourceAccessor", "members": ["group:team@example.com"]}]}});
    let (status, written) = api
        .post(&format!("{by_number_and_id}:setIamPolicy"), grant)
        .await;
    assert_eq!(status, 200, "{written}");
    let (_, read) = api
        .post(&format!("{by_name}:getIamPolicy"), json!({}))
        .await;
    assert_eq!(
        read["bindings"], written["bindings"],
        "id and number name the same policy"
    );
    assert_eq!(read["etag"], written["etag"]);

    // Cloud Run direct IAP, by project number.
    let run_resource = format!("/v1/projects/{number}/iap_web/cloud_run-{REGION}/services/web");
    let (status, _) = api
        .post(
            &format!("{run_resource}:setIamPolicy"),
            json!({"policy": {"bindings": [
            {"role": "roles/iap.httpsResourceAccessor", "members": ["user:a@example.com"]}]}}),
        )
        .await;
    assert_eq!(status, 200);
    let (_, read) = api
        .post(
            &format!("/v1/projects/{PROJECT}/iap_web/cloud_run-{REGION}/services/web:getIamPolicy"),
            json!({}),
        )
        .await;
    assert_eq!(
        read["bindings"][0]["members"],
        json!(["user:a@example.com"])
    );

    // Targets that do not exist, and names that are not IAP resources.
    let (status, error) = api
        .post(
            &format!(
                "/v1/projects/{PROJECT}/iap_web/cloud_run-{REGION}/services/ghost:getIamPolicy"
            ),
            json!({}),
        )
        .await;
    assert_eq!(
        (status, error["error"]["status"].as_str()),
        (404, Some("NOT_FOUND"))
    );
    let (status, _) = api.post(&format!("/v1/projects/{PROJECT}/iap_web/compute-{REGION}/services/hello-backend:getIamPolicy"), json!({})).await;
    assert_eq!(status, 404, "the backend is global, not regional");
    let (status, _) = api
        .post(
            &format!("/v1/projects/{PROJECT}/iap_web/cloud-run-{REGION}/services/web:getIamPolicy"),
            json!({}),
        )
        .await;
    assert_eq!(status, 400);

    // IAP's setIamPolicy request has no updateMask: sending one is a conformance error.
    let (status, _) = api
        .post(
            &format!("{by_name}:setIamPolicy"),
            json!({"policy": {}, "updateMask": "bindings"}),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(api.emulator.mismatches().len(), 1);

    // Deleting the Cloud Run service drops its IAP policy.
    let (_, op) = api
        .send(Method::DELETE, &Api::service_path("web"), None)
        .await;
    api.wait_run(&op).await;
    api.create_service("web", json!({})).await;
    let (_, read) = api
        .post(&format!("{run_resource}:getIamPolicy"), json!({}))
        .await;
    assert_eq!(read, json!({"etag": "ACAB"}));
}

#[tokio::test]
async fn iap_settings() {
    let api = Api::new().await;
    api.create_service("web", json!({})).await;
    let name =
        format!("/v1/projects/{PROJECT}/iap_web/cloud_run-{REGION}/services/web:iapSettings");
    let (status, settings) = api.get(&name).await;
    assert_eq!(status, 200);
    assert_eq!(
        settings,
        json!({"name": format!("projects/{PROJECT}/iap_web/cloud_run-{REGION}/services/web")})
    );
    let (status, updated) = api
        .patch(
            &format!("{name}?updateMask=iapSettings.accessSettings.oauthSettings.clientId,iapSettings.accessSettings.oauthSettings.clientSecret"),
            json!({"accessSettings": {"oauthSettings": {"clientId": "cid", "clientSecret": "abc"}}}),
        )
        .await;
    assert_eq!(status, 200, "{updated}");
    let oauth = &updated["accessSettings"]["oauthSettings"];
    assert_eq!(oauth["clientId"], "cid");
    assert!(oauth.get("clientSecret").is_none());
    assert_eq!(
        oauth["clientSecretSha256"],
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    let (_, read) = api.get(&name).await;
    assert_eq!(read["accessSettings"]["oauthSettings"]["clientId"], "cid");

    // A masked update changes only the named fields; clearing the secret clears its hash.
    let (status, updated) = api
        .patch(
            &format!("{name}?updateMask=iapSettings.accessSettings.corsSettings.allowHttpOptions,iapSettings.accessSettings.oauthSettings.clientSecret"),
            json!({"accessSettings": {"corsSettings": {"allowHttpOptions": true}, "oauthSettings": {"clientId": "ignored"}}}),
        )
        .await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(
        updated["accessSettings"]["corsSettings"]["allowHttpOptions"],
        true
    );
    assert_eq!(
        updated["accessSettings"]["oauthSettings"],
        json!({"clientId": "cid"})
    );

    // Unknown or output-only fields, and parts of the reauth settings, are refused and change
    // nothing.
    for mask in [
        "iapSettings.accessSettings.noSuchSettings",
        "iapSettings.accessSettings.oauthSettings.clientSecretSha256",
        "iapSettings.accessSettings.reauthSettings.maxAge",
    ] {
        let (status, error) = api
            .patch(
                &format!("{name}?updateMask={mask}"),
                json!({"accessSettings": {"reauthSettings": {"maxAge": "60s"}}}),
            )
            .await;
        assert_eq!(status, 400, "{mask}: {error}");
        assert_eq!(error["error"]["status"], "INVALID_ARGUMENT", "{mask}");
    }
    let (status, updated) = api
        .patch(
            &format!("{name}?updateMask=iapSettings.accessSettings.reauthSettings"),
            json!({"accessSettings": {"reauthSettings": {"method": "LOGIN", "maxAge": "60s"}}}),
        )
        .await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(
        updated["accessSettings"]["reauthSettings"],
        json!({"method": "LOGIN", "maxAge": "60s"})
    );
    assert_eq!(
        updated["accessSettings"]["corsSettings"]["allowHttpOptions"],
        true
    );

    // Client libraries send the path below the message, without the prefix.
    let (status, updated) = api
        .patch(
            &format!("{name}?updateMask=applicationSettings.cookieDomain"),
            json!({"applicationSettings": {"cookieDomain": "a.example.com"}}),
        )
        .await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(
        updated["applicationSettings"]["cookieDomain"],
        "a.example.com"
    );
    assert_eq!(
        updated["accessSettings"]["corsSettings"]["allowHttpOptions"],
        true
    );

    // No mask replaces every setting.
    let (status, updated) = api
        .patch(
            &name,
            json!({"applicationSettings": {"cookieDomain": "example.com"}}),
        )
        .await;
    assert_eq!(status, 200, "{updated}");
    assert!(updated.get("accessSettings").is_none(), "{updated}");
    assert_eq!(
        updated["applicationSettings"]["cookieDomain"],
        "example.com"
    );

    // validateAttributeExpression: the documented form passes, a broken one is a 400.
    let validate = format!("/v1/projects/{PROJECT}/iap_web/cloud_run-{REGION}/services/web:validateAttributeExpression");
    let ok = "attributes.saml_attributes.filter(attribute, attribute.name in ['team'])";
    let (status, body) = api
        .post(
            &format!("{validate}?expression={}", urlencode(ok)),
            json!(null),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = api
        .post(
            &format!(
                "{validate}?expression={}",
                urlencode("attributes.x.filter(a,")
            ),
            json!(null),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    api.assert_conformant();
}

fn urlencode(text: &str) -> String {
    serde_urlencoded::to_string([("", text)]).expect("encodes")[1..].to_string()
}

#[tokio::test]
async fn service_usage_agents_and_api_state() {
    let api = Api::new().await;
    api.create_service("web", json!({})).await;
    let number = api.emulator.project_number(PROJECT).unwrap();
    let agent = format!("serviceAccount:service-{number}@gcp-sa-iap.iam.gserviceaccount.com");
    let grant =
        json!({"policy": {"bindings": [{"role": "roles/run.invoker", "members": [agent]}]}});

    // Before the agent exists, IAM refuses it.
    let (status, error) = api
        .post(
            &format!("{}:setIamPolicy", Api::service_path("web")),
            grant.clone(),
        )
        .await;
    assert_eq!(status, 400);
    assert!(error["error"]["message"]
        .as_str()
        .unwrap()
        .contains("does not exist"));

    let (status, op) = api
        .post(
            &format!(
                "/v1beta1/projects/{PROJECT}/services/iap.googleapis.com:generateServiceIdentity"
            ),
            json!({}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        op,
        json!({"name": "operations/finished.DONE_OPERATION", "done": true, "response": {
            "@type": "type.googleapis.com/google.api.serviceusage.v1beta1.ServiceIdentity",
            "email": format!("service-{number}@gcp-sa-iap.iam.gserviceaccount.com"),
            "uniqueId": op["response"]["uniqueId"]}})
    );
    let (status, _) = api
        .post(&format!("{}:setIamPolicy", Api::service_path("web")), grant)
        .await;
    assert_eq!(status, 200);
    let (status, _) = api.get("/v1beta1/operations/finished.DONE_OPERATION").await;
    assert_eq!(status, 400, "a DONE_OPERATION cannot be polled");

    let (status, service) = api
        .get(&format!(
            "/v1/projects/{PROJECT}/services/iap.googleapis.com"
        ))
        .await;
    assert_eq!(status, 200);
    assert_eq!(service["state"], "ENABLED");
    assert_eq!(
        service["name"],
        format!("projects/{number}/services/iap.googleapis.com")
    );

    let (status, op) = api
        .post(
            &format!("/v1/projects/{PROJECT}/services/iap.googleapis.com:disable"),
            json!({}),
        )
        .await;
    assert_eq!((status, op["done"].as_bool()), (200, Some(true)));
    let (_, service) = api
        .get(&format!(
            "/v1/projects/{number}/services/iap.googleapis.com"
        ))
        .await;
    assert_eq!(service["state"], "DISABLED");
    let (status, error) = api
        .post(
            &format!("/v1/projects/{PROJECT}/iap_web/cloud_run-{REGION}/services/web:getIamPolicy"),
            json!({}),
        )
        .await;
    assert_eq!(status, 403);
    assert_eq!(error["error"]["details"][0]["reason"], "SERVICE_DISABLED");
    api.post(
        &format!("/v1/projects/{PROJECT}/services/iap.googleapis.com:enable"),
        json!({}),
    )
    .await;
    let (status, _) = api
        .post(
            &format!("/v1/projects/{PROJECT}/iap_web/cloud_run-{REGION}/services/web:getIamPolicy"),
            json!({}),
        )
        .await;
    assert_eq!(status, 200);

    // Compute says so in its own format.
    api.emulator
        .update_project(
            PROJECT,
            ProjectUpdate {
                services: Some(
                    [("compute.googleapis.com".to_string(), false)]
                        .into_iter()
                        .collect(),
                ),
                ..Default::default()
            },
        )
        .unwrap();
    let (status, error) = api.get(&format!("{COMPUTE}/global/backendServices")).await;
    assert_eq!(
        (status, error["error"]["errors"][0]["reason"].as_str()),
        (403, Some("accessNotConfigured"))
    );
    api.assert_conformant();
}

#[tokio::test]
async fn organization_policy_and_organization_lookup() {
    let api = Api::new().await;
    api.create_service("pub", json!({})).await;
    let admin = format!("{}/__emulator/projects/{PROJECT}", api.emulator.base_url());
    let view: Value = api
        .http
        .patch(&admin)
        .json(&json!({"restrict_public_members": true, "organization_domain": "corp.example"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(view["restrict_public_members"], true);
    let public =
        json!({"policy": {"bindings": [{"role": "roles/run.invoker", "members": ["allUsers"]}]}});
    let (status, error) = api
        .post(
            &format!("{}:setIamPolicy", Api::service_path("pub")),
            public,
        )
        .await;
    assert_eq!(
        (status, error["error"]["status"].as_str()),
        (400, Some("FAILED_PRECONDITION"))
    );

    let (_, project) = api.get(&format!("/v1/projects/{PROJECT}")).await;
    let org = project["parent"]["id"].as_str().unwrap();
    let (status, organization) = api.get(&format!("/v1/organizations/{org}")).await;
    assert_eq!(status, 200);
    assert_eq!(organization["displayName"], "corp.example");
    let (status, _) = api.get("/v3/organizations/42").await;
    assert_eq!(status, 403);

    let state: Value = api
        .http
        .get(format!("{}/__emulator/state", api.emulator.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(state["projects"][0]["project_id"], PROJECT);
    assert_eq!(
        state["run"]["services"][0]["name"],
        format!("projects/{PROJECT}/locations/{REGION}/services/pub")
    );
}

#[tokio::test]
async fn list_paging() {
    let api = Api::new().await;
    for name in ["a-svc", "b-svc", "c-svc"] {
        api.create_service(name, json!({})).await;
        api.insert("global/backendServices", json!({"name": name}))
            .await;
    }
    let base = format!("/v2/projects/{PROJECT}/locations/{REGION}/services");
    let (_, first) = api.get(&format!("{base}?pageSize=2")).await;
    assert_eq!(first["services"].as_array().map(Vec::len), Some(2));
    let token = first["nextPageToken"].as_str().unwrap();
    let (_, second) = api
        .get(&format!("{base}?pageSize=2&pageToken={token}"))
        .await;
    assert_eq!(
        second["services"][0]["name"],
        format!("projects/{PROJECT}/locations/{REGION}/services/c-svc")
    );
    assert!(second.get("nextPageToken").is_none());
    let (status, _) = api
        .get(&format!("{base}?pageToken=18446744073709551615&pageSize=5"))
        .await;
    assert_eq!(status, 200);
    let (_, all_regions) = api
        .get(&format!("/v2/projects/{PROJECT}/locations/-/services"))
        .await;
    assert_eq!(all_regions["services"].as_array().map(Vec::len), Some(3));

    let (_, page) = api
        .get(&format!("{COMPUTE}/global/backendServices?maxResults=2"))
        .await;
    assert_eq!(page["items"].as_array().map(Vec::len), Some(2));
    let token = page["nextPageToken"].as_str().unwrap();
    let (_, rest) = api
        .get(&format!(
            "{COMPUTE}/global/backendServices?maxResults=2&pageToken={token}"
        ))
        .await;
    assert_eq!(rest["items"][0]["name"], "c-svc");
    let (status, _) = api
        .get(&format!(
            "{COMPUTE}/global/backendServices?pageToken=18446744073709551615&maxResults=5"
        ))
        .await;
    assert_eq!(status, 200);
    api.assert_conformant();
}
