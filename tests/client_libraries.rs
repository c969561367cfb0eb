//! Google's own Python client libraries against the emulator, over their REST transports, as a new
//! user would try it: google-cloud-run, google-cloud-iap, google-cloud-resource-manager,
//! google-cloud-service-usage and google-cloud-compute, pinned, installed from PyPI into target/
//! once per checkout. The Python side is tests/clients/test_*.py (unittest); each test here runs
//! one of those files against a fresh emulator and checks what the emulator saw.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Instant;

use iaprun::emulator::{self, Emulator, Options};
use serde_json::{json, Value};

use crate::support::python::{pip_into, Pip};

/// The libraries and the packages that decide their behaviour, pinned.
const REQUIREMENTS: &[&str] = &[
    "google-cloud-run==0.16.2",
    "google-cloud-iap==1.23.0",
    "google-cloud-resource-manager==1.19.0",
    "google-cloud-service-usage==1.18.0",
    "google-cloud-compute==1.57.0",
    "google-api-core==2.44.0",
    "google-auth==2.63.0",
    "googleapis-common-protos==1.76.0",
    "grpc-google-iam-v1==0.14.6",
    "proto-plus==1.29.0",
    "protobuf==7.36.2",
    "requests==2.34.2",
];

/// Where the libraries are installed (the first test to ask installs them; failing to is fatal).
fn libraries() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        pip_into("python-clients", Pip::Install, REQUIREMENTS).unwrap_or_else(|e| {
            panic!("the client-library tests need Google's Python client libraries from PyPI: {e}")
        })
    })
}

fn clients_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/clients")
}

/// What one script run left behind.
struct Suite {
    emulator: Emulator,
    output: String,
}

/// Runs tests/clients/`script` against a fresh emulator; it must pass exactly `tests` tests.
async fn run_suite(script: &str, project: &str, tests: usize) -> Suite {
    let site = libraries().clone();
    let emulator = emulator::spawn(Options::default())
        .await
        .expect("emulator starts");
    let started = Instant::now();
    let output = tokio::process::Command::new("python3")
        .arg(clients_dir().join(script))
        .current_dir(clients_dir())
        .env("PYTHONPATH", &site)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("IAPRUN_EMULATOR_URL", emulator.base_url())
        .env("CLIENT_TEST_PROJECT", project)
        // Nothing from the caller's Google setup may send the libraries elsewhere.
        .env_remove("GOOGLE_APPLICATION_CREDENTIALS")
        .env_remove("GOOGLE_CLOUD_UNIVERSE_DOMAIN")
        .env_remove("GOOGLE_API_USE_CLIENT_CERTIFICATE")
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .expect("python3 runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    eprintln!("{script}: {:.1} s\n{text}", started.elapsed().as_secs_f64());
    assert!(output.status.success(), "{script} failed:\n{text}");
    assert!(
        text.contains(&format!("\nRan {tests} tests in ")),
        "{script} did not run its {tests} tests:\n{text}"
    );
    let mismatches = emulator.mismatches();
    assert!(
        mismatches.is_empty(),
        "{script}: requests the discovery documents do not allow: {mismatches:#?}"
    );
    let problems = emulator.response_problems();
    assert!(
        problems.is_empty(),
        "{script}: answers outside the response schemas: {problems:#?}"
    );
    Suite {
        emulator,
        output: text,
    }
}

impl Suite {
    /// The API requests (path, decoded query) whose path starts with `prefix`.
    fn requests_under(&self, prefix: &str) -> Vec<(String, Vec<(String, String)>)> {
        self.emulator
            .requests()
            .into_iter()
            .filter(|r| r.path.starts_with(prefix))
            .map(|r| {
                let query = serde_urlencoded::from_str(&r.query).unwrap_or_default();
                (r.path, query)
            })
            .collect()
    }

    /// Asserts the library asked for numeric enums on its own calls (not only on operation polls).
    fn assert_numeric_enums(&self, prefix: &str) {
        let requests = self.requests_under(prefix);
        let numeric = requests
            .iter()
            .filter(|(_, q)| {
                q.iter()
                    .any(|(k, v)| k == "$alt" && v == "json;enum-encoding=int")
            })
            .count();
        assert!(
            numeric > 0,
            "no request under {prefix} asked for numeric enums: {requests:?}\n{}",
            self.output
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloud_run_services_operations_iam_and_errors() {
    let suite = run_suite("test_run.py", "client-run-project", 6).await;
    suite.assert_numeric_enums("/v2/");
    // The services the library created are really there, with the ingress it sent as a number.
    let state = suite.emulator.state();
    let text = state["run"].to_string();
    assert!(
        text.contains("INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER"),
        "{state:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iap_policies_and_settings() {
    let suite = run_suite("test_iap.py", "client-iap-project", 4).await;
    suite.assert_numeric_enums("/v1/projects/");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resource_manager_projects_and_organizations() {
    let suite = run_suite("test_resource_manager.py", "client-crm-project", 4).await;
    suite.assert_numeric_enums("/v3/");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_usage_enable_disable_and_batches() {
    let suite = run_suite("test_service_usage.py", "client-usage-project", 4).await;
    suite.assert_numeric_enums("/v1/projects/");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compute_load_balancer_operations_and_fingerprints() {
    let suite = run_suite("test_compute.py", "client-compute-project", 4).await;
    let requests = suite.requests_under("/compute/v1/");
    // The operation polls went to the emulator too (see the workaround in tests/clients/harness.py).
    assert!(
        requests.iter().any(|(p, _)| p.contains("/operations/")),
        "{requests:?}"
    );
}

/// What the libraries rely on, seen on the wire: `$alt=json;enum-encoding=int` answers enums as
/// numbers (the proto numbers, also where they skip), `fields` trims the answer, `prettyPrint=false`
/// compacts it, the other system parameters are accepted, and numbers are read in request bodies.
#[tokio::test]
async fn system_parameters_on_the_wire() {
    let emulator = emulator::spawn(Options::default())
        .await
        .expect("emulator starts");
    let http = reqwest::Client::new();
    let base = format!(
        "{}/v2/projects/wire-project/locations/us-central1/services",
        emulator.base_url()
    );
    // The body names ingress by its number (3: INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER).
    let created = http
        .post(format!(
            "{base}?serviceId=wire&key=k&quotaUser=q&%24.xgafv=2"
        ))
        .bearer_auth("t")
        .json(&json!({"ingress": 3, "template": {"containers": [{"image": "gcr.io/x/y"}]}}))
        .send()
        .await
        .expect("answer");
    assert_eq!(
        created.status(),
        200,
        "{}",
        created.text().await.unwrap_or_default()
    );
    let op: Value = created.json().await.expect("json");
    let wait = format!(
        "{}/v2/{}:wait",
        emulator.base_url(),
        op["name"].as_str().expect("name")
    );
    http.post(wait)
        .bearer_auth("t")
        .json(&json!({"timeout": "10s"}))
        .send()
        .await
        .expect("wait");

    let get = |query: &'static str| {
        let request = http.get(format!("{base}/wire?{query}")).bearer_auth("t");
        async move {
            let response = request.send().await.expect("answer");
            (
                response.status().as_u16(),
                response.text().await.expect("text"),
            )
        }
    };
    let (status, text) = get("%24alt=json%3Benum-encoding%3Dint&fields=ingress,launchStage,terminalCondition/state&prettyPrint=false").await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(
        serde_json::from_str::<Value>(&text).expect("json"),
        json!({"ingress": 3, "launchStage": 4, "terminalCondition": {"state": 4}})
    );
    assert!(!text.contains('\n'), "prettyPrint=false: {text}");
    let (_, text) = get("alt=json&%24fields=ingress").await;
    assert_eq!(
        serde_json::from_str::<Value>(&text).expect("json"),
        json!({"ingress": "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER"})
    );
    assert!(text.contains('\n'), "pretty by default: {text}");
    // Bad system parameter values are refused, naming the parameter.
    for query in [
        "alt=xml",
        "%24alt=json%3Benum-encoding%3Droman",
        "%24.xgafv=9",
        "prettyPrint=maybe",
        "fields=a(b",
    ] {
        let (status, text) = get(query).await;
        assert_eq!(status, 400, "{query}: {text}");
        let decoded: Vec<(String, String)> = serde_urlencoded::from_str(query).expect("query");
        assert!(
            text.contains(&decoded[0].1.replace('"', "\\\"")),
            "{query}: {text}"
        );
    }
    // An access token in the query authenticates like a bearer header.
    let response = reqwest::get(format!("{base}/wire?access_token=t"))
        .await
        .expect("answer");
    assert_eq!(response.status(), 200);
    assert!(emulator.response_problems().is_empty());
}
