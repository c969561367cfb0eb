//! Plain facts about the Google objects the checks inspect. Resources gather them through the APIs
//! (read-only) and hand them to the checks, which stay pure functions and easy to test.

/// What the checks need to know about a Cloud Run service.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunServiceFacts {
    pub location: String,
    pub name: String,
    /// Run Admin API v2 `iapEnabled`.
    pub iap_enabled: bool,
    /// `ingress`, e.g. `INGRESS_TRAFFIC_ALL`; empty when unknown.
    pub ingress: String,
    /// `defaultUriDisabled`: the run.app URL is off.
    pub default_uri_disabled: bool,
    /// `invokerIamDisabled`: anyone may invoke.
    pub invoker_iam_disabled: bool,
    /// Some container port is named `h2c` (end-to-end HTTP/2).
    pub h2c: bool,
    /// Members holding `roles/run.invoker`; `None` when the policy could not be read.
    pub invoker_members: Option<Vec<String>>,
    /// Why the policy could not be read (Google's error), when a read was refused.
    pub invoker_policy_error: Option<String>,
}

impl RunServiceFacts {
    /// Whether `member` holds roles/run.invoker (case-insensitively, as IAM compares emails).
    pub fn has_invoker(&self, member: &str) -> Option<bool> {
        self.invoker_members
            .as_ref()
            .map(|ms| ms.iter().any(|m| m.eq_ignore_ascii_case(member)))
    }

    /// The public principals holding roles/run.invoker.
    pub fn public_invokers(&self) -> Vec<&str> {
        self.invoker_members
            .iter()
            .flatten()
            .map(String::as_str)
            .filter(|m| *m == "allUsers" || *m == "allAuthenticatedUsers")
            .collect()
    }

    /// `location/name`, as `cloud_run_services` lists it.
    pub fn label(&self) -> String {
        format!("{}/{}", self.location, self.name)
    }
}

/// A serverless NEG behind a backend service and the Cloud Run service it points at.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NegFacts {
    pub name: String,
    pub region: String,
    /// `cloudRun.service`; `None` when the NEG uses a URL mask or is not a Cloud Run NEG.
    pub run_service: Option<String>,
    pub url_mask: Option<String>,
    /// The service `run_service` names, looked up in the NEG's region; `None` when it does not exist.
    pub service: Option<RunServiceFacts>,
}

/// What the checks need to know about a backend service and what fronts it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BackendFacts {
    pub name: String,
    /// Set for a regional backend service.
    pub region: Option<String>,
    /// `loadBalancingScheme`: EXTERNAL (classic), EXTERNAL_MANAGED (Envoy), INTERNAL_MANAGED, ...
    pub scheme: String,
    /// `protocol`: HTTP, HTTPS, HTTP2, H2C, TCP, ...
    pub protocol: String,
    /// `enableCDN`.
    pub cdn_enabled: bool,
    pub iap_enabled: bool,
    /// `iap.oauth2ClientId`; `None` for the Google-managed client.
    pub oauth2_client_id: Option<String>,
    pub negs: Vec<NegFacts>,
    /// Whether an HTTPS forwarding rule reaches the backend; `None` when it could not be determined.
    pub https_frontend: Option<bool>,
}

impl BackendFacts {
    /// The Cloud Run services behind the backend that exist.
    pub fn services(&self) -> impl Iterator<Item = &RunServiceFacts> {
        self.negs.iter().filter_map(|n| n.service.as_ref())
    }
}

/// The IAP service agent of a project: it must hold roles/run.invoker on services behind IAP.
pub fn iap_service_agent(project_number: &str) -> String {
    format!("service-{project_number}@gcp-sa-iap.iam.gserviceaccount.com")
}
