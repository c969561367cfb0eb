//! Building the emulated Google project the scenarios run against, through the emulator's REST API.

use serde_json::{json, Value};

use iaprun::emulator::Emulator;

/// The project every scenario uses.
pub const PROJECT: &str = "bench-project";
/// The region every scenario uses.
pub const REGION: &str = "us-central1";

/// A REST client for one emulator.
pub struct World<'a> {
    pub emulator: &'a Emulator,
    http: reqwest::Client,
}

impl<'a> World<'a> {
    pub fn new(emulator: &'a Emulator) -> Self {
        Self {
            emulator,
            http: reqwest::Client::new(),
        }
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Value,
    ) -> Result<Value, String> {
        let url = format!("{}{path}", self.emulator.base_url());
        let response = self
            .http
            .request(method, &url)
            .bearer_auth("bench")
            .json(&body)
            .send()
            .await
            .map_err(|e| format!("{url}: {e}"))?;
        let status = response.status();
        let value: Value = response.json().await.unwrap_or(Value::Null);
        if status.is_success() {
            Ok(value)
        } else {
            Err(format!("{url}: HTTP {status}: {value}"))
        }
    }

    /// A Cloud Run service behind an internal load balancer only (waits for its operation).
    pub async fn run_service(&self, name: &str) -> Result<(), String> {
        let op = self
            .call(
                reqwest::Method::POST,
                &format!("/v2/projects/{PROJECT}/locations/{REGION}/services?serviceId={name}"),
                json!({
                    "ingress": "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER",
                    "template": {"containers": [{"image": "us-docker.pkg.dev/cloudrun/container/hello"}]}
                }),
            )
            .await?;
        let op_name = op["name"].as_str().ok_or("operation without a name")?;
        let done = self
            .call(
                reqwest::Method::POST,
                &format!("/v2/{op_name}:wait"),
                json!({"timeout": "60s"}),
            )
            .await?;
        match done.get("error") {
            Some(error) => Err(format!("creating {name}: {error}")),
            None => Ok(()),
        }
    }

    /// Creates the project's IAP service agent (as `gcloud beta services identity create`).
    pub async fn iap_agent(&self) -> Result<(), String> {
        self.call(
            reqwest::Method::POST,
            &format!(
                "/v1beta1/projects/{PROJECT}/services/iap.googleapis.com:generateServiceIdentity"
            ),
            json!({}),
        )
        .await
        .map(drop)
    }
}

/// The IAP resource name of a Cloud Run service with direct IAP.
pub fn cloud_run_iap_resource(service: &str) -> String {
    format!("projects/{PROJECT}/iap_web/cloud_run-{REGION}/services/{service}")
}
