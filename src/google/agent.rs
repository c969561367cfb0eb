//! The IAP service agent of a project, over several APIs: provisioned through Service Usage,
//! granted and revoked `roles/run.invoker` on Cloud Run services, and the IAP-enabled paths to a
//! service that still need its grant.

use std::time::{Duration, Instant};

use super::{found, iap_service_agent_email, BackendServiceRef, Clients, Error, ServiceName};

/// The role the IAP service agent needs on Cloud Run services.
pub const INVOKER_ROLE: &str = "roles/run.invoker";

/// The IAP service agent of one project.
pub struct IapAgent {
    pub project: String,
    pub project_number: String,
    /// `serviceAccount:service-{number}@gcp-sa-iap.iam.gserviceaccount.com`.
    pub member: String,
}

impl IapAgent {
    /// The agent of `project`, whose number is `project_number`.
    pub fn new(project: &str, project_number: &str) -> Self {
        Self {
            project: project.to_string(),
            project_number: project_number.to_string(),
            member: format!("serviceAccount:{}", iap_service_agent_email(project_number)),
        }
    }

    /// Creates the agent if the project does not have it yet, and waits for it.
    pub async fn provision(&self, clients: &Clients, deadline: Instant) -> Result<(), Error> {
        let usage = &clients.service_usage;
        let provisioned = usage.iap_service_agent(&self.project, &self.project_number, deadline);
        provisioned.await.map(drop)
    }

    /// Grants the agent roles/run.invoker on `service`; true when this call added it (a grant
    /// found in place is somebody else's and never claimed). Right after the agent is provisioned
    /// IAM may not know it yet (400 "Service account ... does not exist"): retried until `deadline`,
    /// then the error names the agent.
    pub async fn grant(
        &self,
        clients: &Clients,
        service: &ServiceName,
        deadline: Instant,
    ) -> Result<bool, Error> {
        let mut pause = Duration::from_millis(500);
        loop {
            let mut added = false;
            let result = clients
                .run
                .modify_iam_policy(service, deadline, |policy| {
                    added = policy.add_member(INVOKER_ROLE, &self.member, None);
                    added
                })
                .await;
            match result {
                Ok(_) => return Ok(added),
                Err(e) if is_agent_not_propagated(&e) => {
                    if Instant::now() + pause >= deadline {
                        return Err(e.with_hint(format!(
                            "The IAP service agent {} was still unknown to IAM when the timeout ran out; Google takes a while to propagate a new agent. Apply again, or raise the resource's timeouts",
                            self.member
                        )));
                    }
                    tracing::debug!(%service, agent = %self.member, "IAP service agent not propagated yet; retrying");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(5));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Removes the agent's roles/run.invoker on `service`; a service gone is no error.
    pub async fn revoke(
        &self,
        clients: &Clients,
        service: &ServiceName,
        deadline: Instant,
    ) -> Result<(), Error> {
        let revoked = clients.run.modify_iam_policy(service, deadline, |policy| {
            policy.remove_member(INVOKER_ROLE, &self.member, None)
        });
        found(revoked.await).map(drop)
    }

    /// Whether the agent holds roles/run.invoker on `service` now.
    pub async fn granted(&self, clients: &Clients, service: &ServiceName) -> Result<bool, Error> {
        let policy = clients.run.iam_policy(service).await?;
        Ok(policy.has_member(INVOKER_ROLE, &self.member, None))
    }

    /// Whether the agent holds roles/run.invoker on every one of `services` (false when unreadable).
    pub async fn granted_everywhere(&self, clients: &Clients, services: &[ServiceName]) -> bool {
        for name in services {
            if !self.granted(clients, name).await.unwrap_or(false) {
                return false;
            }
        }
        true
    }
}

/// Whether an error says the IAP service agent named in a policy does not exist yet: Google
/// propagates a just-provisioned agent for a while (400 "Service account ... does not exist").
fn is_agent_not_propagated(error: &Error) -> bool {
    error.http_status() == Some(400) && {
        let message = error.message();
        message.contains("does not exist") && message.contains("gcp-sa-iap")
    }
}

impl Clients {
    /// The IAP-enabled paths that still route to a Cloud Run service: its own direct IAP (when
    /// `direct`) and every backend service with IAP on (global, or in the service's region) over a
    /// serverless NEG for it, except `except`. Described for diagnostics.
    pub async fn iap_paths_to(
        &self,
        name: &ServiceName,
        direct: bool,
        except: Option<&BackendServiceRef>,
    ) -> Result<Vec<String>, Error> {
        let mut paths = Vec::new();
        if direct {
            match found(self.run.service(name).await)? {
                Some(s) if s.iap_enabled => paths.push(format!("direct IAP on {name}")),
                Some(_) => {}
                None => return Ok(paths),
            }
        }
        let backends = self.compute.iap_backends_to(name, except).await?;
        paths.extend(
            backends
                .iter()
                .map(|b| format!("backend service {b} (IAP on)")),
        );
        Ok(paths)
    }
}
