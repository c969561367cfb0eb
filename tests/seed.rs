//! `iaprun-emulator --seed FILE`: a world with every kind of object built at start-up and read back
//! through the APIs, malformed seeds refused naming the entry at fault, and the reusable module's
//! `terraform test` suite run against a seeded emulator, as docs/emulator.md "Test your module
//! offline" tells users to.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde_json::Value;
use tokio::io::AsyncBufReadExt;

use crate::support::terraform_binaries;
use crate::support::Workspace;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A running `iaprun-emulator --seed FILE` (killed on drop).
struct Seeded {
    _child: tokio::process::Child,
    url: String,
    http: reqwest::Client,
}

impl Seeded {
    /// Starts the binary with `seed`; panics with its stderr unless it prints its address.
    async fn start(seed: &Path) -> Seeded {
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_iaprun-emulator"))
            .args(["--listen", "127.0.0.1:0", "--seed"])
            .arg(seed)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("the emulator binary starts");
        let stdout = child.stdout.take().expect("stdout");
        let first = tokio::io::BufReader::new(stdout)
            .lines()
            .next_line()
            .await
            .expect("reads stdout");
        let Some(url) = first
            .as_deref()
            .and_then(|l| l.strip_prefix("iaprun-emulator listening on "))
        else {
            let output = child.wait_with_output().await.expect("exits");
            panic!(
                "no address printed ({:?}); stderr:\n{}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            );
        };
        Seeded {
            url: url.to_string(),
            _child: child,
            http: reqwest::Client::new(),
        }
    }

    fn host(&self) -> &str {
        self.url.trim_start_matches("http://")
    }

    /// GET an API path; panics unless 200.
    async fn get(&self, path: &str) -> Value {
        let response = self
            .http
            .get(format!("{}{path}", self.url))
            .bearer_auth("seed-test")
            .send()
            .await
            .expect("answer");
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        assert_eq!(status, 200, "GET {path}: {body:#}");
        body
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        let response = self
            .http
            .post(format!("{}{path}", self.url))
            .bearer_auth("seed-test")
            .json(&body)
            .send()
            .await
            .expect("answer");
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        assert_eq!(status, 200, "POST {path}: {body:#}");
        body
    }
}

fn members(policy: &Value, role: &str) -> Vec<String> {
    crate::world::members_of(policy, role)
}

#[tokio::test]
async fn seed_with_every_kind_of_object_loads() {
    let seeded = Seeded::start(&repo().join("tests/seeds/every-kind.json")).await;

    // Projects: the numbers, organization and folder the file gives; ids and numbers alias.
    let project = seeded.get("/v1/projects/seeded-project").await;
    assert_eq!(project["projectNumber"], "271828182845");
    assert_eq!(project["parent"]["type"], "organization");
    assert_eq!(project["parent"]["id"], "555666777888");
    let foldered = seeded.get("/v3/projects/161803398874").await;
    assert_eq!(foldered["projectId"], "foldered-project");
    assert_eq!(foldered["parent"], "folders/424242");
    let admin = seeded.get("/__emulator/projects/seeded-project").await;
    assert_eq!(admin["organization_domain"], "seeded.example");
    assert_eq!(
        admin["service_agents"],
        serde_json::json!(["iap.googleapis.com"])
    );
    let admin = seeded.get("/__emulator/projects/foldered-project").await;
    assert_eq!(admin["restrict_public_members"], true);
    let usage = seeded
        .get("/v1/projects/seeded-project/services/secretmanager.googleapis.com")
        .await;
    assert_eq!(usage["state"], "ENABLED");
    let usage = seeded
        .get("/v1/projects/foldered-project/services/iap.googleapis.com")
        .await;
    assert_eq!(usage["state"], "DISABLED");

    // Cloud Run services, ready, with their ingress, ports, labels and IAM.
    let web = seeded
        .get("/v2/projects/seeded-project/locations/us-central1/services/web")
        .await;
    assert_eq!(web["ingress"], "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER");
    assert_eq!(web["labels"]["team"], "web");
    let port = &web["template"]["containers"][0]["ports"][0];
    assert_eq!(
        (&port["name"], &port["containerPort"]),
        (&"h2c".into(), &9000.into())
    );
    assert_eq!(web["terminalCondition"]["state"], "CONDITION_SUCCEEDED");
    let policy = seeded
        .get("/v2/projects/seeded-project/locations/us-central1/services/web:getIamPolicy")
        .await;
    assert_eq!(
        members(&policy, "roles/run.invoker"),
        ["serviceAccount:service-271828182845@gcp-sa-iap.iam.gserviceaccount.com"]
    );
    let direct = seeded
        .get("/v2/projects/seeded-project/locations/europe-west1/services/direct")
        .await;
    assert_eq!(direct["iapEnabled"], true);

    // The load balancer, link by link.
    let compute = "/compute/v1/projects/seeded-project";
    let neg = seeded
        .get(&format!(
            "{compute}/regions/us-central1/networkEndpointGroups/web-neg"
        ))
        .await;
    assert_eq!(neg["cloudRun"]["service"], "web");
    let backend = seeded
        .get(&format!("{compute}/global/backendServices/web-backend"))
        .await;
    assert_eq!(backend["iap"]["enabled"], true);
    assert!(backend["backends"][0]["group"]
        .as_str()
        .is_some_and(|g| g.ends_with("/regions/us-central1/networkEndpointGroups/web-neg")));
    let regional = seeded
        .get(&format!(
            "{compute}/regions/us-central1/backendServices/regional-backend"
        ))
        .await;
    assert_eq!(regional["protocol"], "HTTP");
    let map = seeded
        .get(&format!("{compute}/global/urlMaps/web-map"))
        .await;
    assert!(map["defaultService"]
        .as_str()
        .is_some_and(|s| s.ends_with("/global/backendServices/web-backend")));
    for (proxy, kind) in [
        ("web-http-proxy", "targetHttpProxies"),
        ("web-https-proxy", "targetHttpsProxies"),
    ] {
        let proxy = seeded
            .get(&format!("{compute}/global/{kind}/{proxy}"))
            .await;
        assert!(proxy["urlMap"]
            .as_str()
            .is_some_and(|s| s.ends_with("/global/urlMaps/web-map")));
    }
    for (rule, port, target) in [
        (
            "web-https",
            "443-443",
            "/global/targetHttpsProxies/web-https-proxy",
        ),
        (
            "web-http",
            "80-80",
            "/global/targetHttpProxies/web-http-proxy",
        ),
    ] {
        let rule = seeded
            .get(&format!("{compute}/global/forwardingRules/{rule}"))
            .await;
        assert!(
            rule["target"].as_str().is_some_and(|t| t.ends_with(target)),
            "{rule:#}"
        );
        assert_eq!(rule["portRange"], port);
    }

    // IAP settings and policies, by project id or number alike.
    let settings = seeded
        .get("/v1/projects/271828182845/iap_web/compute/services/web-backend:iapSettings")
        .await;
    assert_eq!(
        settings["accessSettings"]["corsSettings"]["allowHttpOptions"],
        true
    );
    let resource = "projects/seeded-project/iap_web/compute/services/web-backend";
    let policy = seeded
        .post(
            &format!("/v1/{resource}:getIamPolicy"),
            serde_json::json!({}),
        )
        .await;
    assert_eq!(
        members(&policy, "roles/iap.httpsResourceAccessor"),
        ["group:web@seeded.example"]
    );
    let resource = "projects/271828182845/iap_web/cloud_run-europe-west1/services/direct";
    let policy = seeded
        .post(
            &format!("/v1/{resource}:getIamPolicy"),
            serde_json::json!({}),
        )
        .await;
    assert_eq!(
        members(&policy, "roles/iap.httpsResourceAccessor"),
        ["user:alice@seeded.example"]
    );
}

/// Seeds that are wrong in one entry each, and what the error must say about it.
const MALFORMED: &[(&str, &str, &[&str])] = &[
    (
        "two projects claim one number",
        r#"{"projects": [{"id": "first-project", "number": "111111111111"},
                          {"id": "second-project", "number": "111111111111"}]}"#,
        &[
            "projects[1] (second-project)",
            "111111111111 already names project 'first-project'",
        ],
    ),
    (
        "a Cloud Run service without its location",
        r#"{"run_services": [{"project": "p-project", "name": "web", "spec": {}}]}"#,
        &["run_services[0]", "missing field `location`"],
    ),
    (
        "a Cloud Run service the API refuses",
        r#"{"run_services": [
             {"project": "p-project", "location": "us-central1", "name": "ok",
              "spec": {"template": {"containers": [{"image": "gcr.io/p/ok"}]}}},
             {"project": "p-project", "location": "us-central1", "name": "bad",
              "spec": {"ingress": "EVERYONE", "template": {"containers": [{"image": "gcr.io/p/bad"}]}}}]}"#,
        &[
            "run_services[1] (projects/p-project/locations/us-central1/services/bad)",
            "400 INVALID_ARGUMENT",
            "'ingress'",
            "EVERYONE",
        ],
    ),
    (
        "a misspelt key in a NEG",
        r#"{"network_endpoint_groups": [{"project": "p-project", "regoin": "us-central1", "spec": {"name": "n"}}]}"#,
        &["network_endpoint_groups[0]", "unknown field `regoin`"],
    ),
    (
        "an IAP policy on a service that does not exist",
        r#"{"iap_policies": [{"resource": "projects/p-project/iap_web/cloud_run-us-central1/services/ghost",
                              "policy": {"bindings": []}}]}"#,
        &[
            "iap_policies[0] (projects/p-project/iap_web/cloud_run-us-central1/services/ghost)",
            "404 NOT_FOUND",
        ],
    ),
    (
        "a backend service twice",
        r#"{"backend_services": [{"project": "p-project", "spec": {"name": "b", "protocol": "HTTPS"}},
                                 {"project": "p-project", "spec": {"name": "b", "protocol": "HTTPS"}}]}"#,
        &[
            "backend_services[1] (projects/p-project/global/backendServices/b)",
            "409",
            "already exists",
        ],
    ),
    (
        "a misspelt section",
        r#"{"servcies": []}"#,
        &["unknown section 'servcies'", "run_services"],
    ),
    (
        "not JSON",
        r#"{"projects": [{"id": "p-project"}],}"#,
        &["not valid JSON", "line 1 column"],
    ),
];

#[tokio::test]
async fn malformed_seeds_fail_naming_the_entry() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("temporary directory");
    for (i, (what, seed, expected)) in MALFORMED.iter().enumerate() {
        let file = dir.path().join(format!("seed-{i}.json"));
        std::fs::write(&file, seed).expect("write seed");
        let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_iaprun-emulator"))
            .args(["--listen", "127.0.0.1:0", "--seed"])
            .arg(&file)
            .env("RUST_LOG", "off")
            .stdin(Stdio::null())
            .output()
            .await
            .expect("the emulator binary runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{what}: {stderr}");
        assert!(
            output.stdout.is_empty(),
            "{what}: it must not start serving"
        );
        assert!(
            stderr.contains(&format!("iaprun-emulator: seed file {}: ", file.display())),
            "{what}: {stderr}"
        );
        for fragment in *expected {
            assert!(
                stderr.contains(fragment),
                "{what}: '{fragment}' not in {stderr}"
            );
        }
    }
}

/// docs/emulator.md "Test your module offline", as a user would do it: start the emulator with the
/// module's seed, point IAPRUN_EMULATOR_HOST at it, `terraform init` and `terraform test`. The
/// module's mocked-provider suite runs alongside (it needs no emulator).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn module_passes_terraform_test_on_a_seeded_emulator() {
    let newest = terraform_binaries()
        .into_iter()
        .max_by_key(|t| t.minor_version())
        .expect("a terraform");
    assert!(
        newest.minor_version() >= (1, 6),
        "`terraform test` needs Terraform 1.6 or later on PATH; the newest found is {}",
        newest.version
    );
    let module = repo().join("examples/modules/iap-cloud-run");
    let seeded = Seeded::start(&module.join("tests/emulator-seed.json")).await;
    let mut workspace = Workspace::new(
        &newest,
        &std::fs::read_to_string(module.join("main.tf")).expect("module main.tf"),
    );
    let tests = workspace.dir().join("tests");
    std::fs::create_dir_all(&tests).expect("tests directory");
    let mut suites = 0;
    for entry in std::fs::read_dir(module.join("tests")).expect("module tests") {
        let path = entry.expect("entry").path();
        if path.to_string_lossy().ends_with(".tftest.hcl") {
            std::fs::copy(&path, tests.join(path.file_name().expect("name"))).expect("copy");
            suites += 1;
        }
    }
    assert_eq!(suites, 3, "the module's test files");
    workspace.env("IAPRUN_EMULATOR_HOST", seeded.host());
    workspace.init();
    let run = tokio::task::spawn_blocking(move || {
        let run = workspace.run(&["test", "-no-color"]);
        (run, workspace)
    });
    let (run, _workspace) = run.await.expect("terraform test");
    assert!(run.success(), "{run}");
    // Every run block of every file ran and passed; nothing was skipped.
    assert!(run.stdout.contains("Success! 6 passed, 0 failed."), "{run}");
    // What the suites applied was destroyed again; the seeded world itself is intact.
    let policy = seeded
        .post(
            "/v1/projects/module-test-project/iap_web/cloud_run-us-central1/services/app:getIamPolicy",
            serde_json::json!({}),
        )
        .await;
    assert!(
        members(&policy, "roles/iap.httpsResourceAccessor").is_empty(),
        "{policy:#}"
    );
    let app = seeded
        .get("/v2/projects/module-test-project/locations/us-central1/services/app")
        .await;
    assert_eq!(app["ingress"], "INGRESS_TRAFFIC_ALL");
}
