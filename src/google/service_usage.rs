//! Service Usage: the IAP service agent (v1beta1 generateServiceIdentity) and API state (v1).

use std::sync::Arc;
use std::time::Instant;

use serde::Deserialize;

use super::error::Error;
use super::operation::{wait_service_usage, with_verb, Operation};
use super::transport::{Api, BaseUrl, Call, Replay, Transport};

/// The API whose service agent IAP uses to invoke Cloud Run.
pub const IAP_SERVICE: &str = "iap.googleapis.com";

/// `service-{PROJECT_NUMBER}@gcp-sa-iap.iam.gserviceaccount.com`.
pub fn iap_service_agent_email(project_number: &str) -> String {
    format!("service-{project_number}@gcp-sa-iap.iam.gserviceaccount.com")
}

/// A service identity as returned by generateServiceIdentity (fields may be missing).
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceIdentity {
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub unique_id: Option<String>,
}

#[derive(Deserialize)]
struct ServiceWire {
    #[serde(default)]
    state: Option<String>,
}

/// Service Usage client.
#[derive(Debug, Clone)]
pub struct ServiceUsageClient {
    transport: Arc<Transport>,
    base: BaseUrl,
}

impl ServiceUsageClient {
    pub(crate) fn new(transport: Arc<Transport>, base: BaseUrl) -> ServiceUsageClient {
        ServiceUsageClient { transport, base }
    }

    /// services.generateServiceIdentity (v1beta1), following its operation when not done.
    pub async fn generate_service_identity(
        &self,
        project: &str,
        service: &str,
        deadline: Instant,
    ) -> Result<ServiceIdentity, Error> {
        let parent = format!("projects/{project}/services/{service}");
        let url = self
            .base
            .join(with_verb(&["v1beta1"], &parent, "generateServiceIdentity"));
        // Idempotent: generating an existing identity returns it again.
        let call = Call::post(Api::ServiceUsage, url)
            .replay(Replay::Safe)
            .deadline(Some(deadline));
        let op: Operation = self.transport.send_as(call).await?;
        let response = wait_service_usage(&self.transport, &self.base, op, deadline).await?;
        if response.is_null() {
            return Ok(ServiceIdentity::default());
        }
        serde_json::from_value(response).map_err(|e| Error::decode("generateServiceIdentity", e))
    }

    /// Provisions the IAP service agent and returns its email, falling back to the
    /// documented `service-{PN}@gcp-sa-iap...` form when the API returns none.
    pub async fn iap_service_agent(
        &self,
        project: &str,
        project_number: &str,
        deadline: Instant,
    ) -> Result<String, Error> {
        let identity = self
            .generate_service_identity(project, IAP_SERVICE, deadline)
            .await?;
        Ok(identity
            .email
            .filter(|e| !e.trim().is_empty())
            .unwrap_or_else(|| iap_service_agent_email(project_number)))
    }

    /// services.get (v1): `ENABLED`, `DISABLED` or `STATE_UNSPECIFIED`.
    pub async fn service_state(&self, project: &str, service: &str) -> Result<String, Error> {
        let url = self
            .base
            .join(["v1", "projects", project, "services", service]);
        let wire: ServiceWire = self
            .transport
            .send_as(Call::get(Api::ServiceUsage, url))
            .await?;
        Ok(wire.state.unwrap_or_else(|| "STATE_UNSPECIFIED".into()))
    }

    /// Whether `service` is enabled in `project`.
    pub async fn is_enabled(&self, project: &str, service: &str) -> Result<bool, Error> {
        Ok(self.service_state(project, service).await? == "ENABLED")
    }
}
