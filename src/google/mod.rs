//! Google API clients: one module per API over one shared transport (auth, retries, LRO waits).

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

mod agent;
mod compute;
mod error;
pub mod iam;
mod iap;
mod operation;
mod resource_manager;
mod run;
mod service_usage;
mod transport;

#[cfg(test)]
mod testutil;

pub use agent::{IapAgent, INVOKER_ROLE};
pub use compute::{
    https_backends, neg_parts, resource_path, same_resource, BackendService, BackendServiceIap,
    BackendServiceRef, CloudRunTarget, ComputeClient, ComputeOperation, ForwardingRule, IapPatch,
    NetworkEndpointGroup, Scope, TargetProxy, UrlMap, COMPUTE_SERVICE,
};
pub use error::{
    empty_if_disabled, format_google_duration, found, grpc_code, parse_google_duration, ApiError,
    Error,
};
pub use iam::{normalize_member, Binding, Condition, Policy};
pub use iap::{
    backend_service_jwt_audience, backend_service_resource, cloud_run_jwt_audience,
    cloud_run_resource, IapClient, IapSettings,
};
pub use operation::Operation;
pub use resource_manager::{Project, ProjectParent, ResourceManagerClient};
pub use run::{ContainerPort, RunClient, RunService, ServiceName};
pub use service_usage::{
    iap_service_agent_email, ServiceIdentity, ServiceUsageClient, IAP_SERVICE,
};
pub use transport::{backoff_delay, parse_retry_after, RetryPolicy, StopHandle};

use transport::Transport;

/// OAuth scope requested for every API used here.
pub const CLOUD_PLATFORM_SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";

/// The bearer token sent to the emulator: not a secret, only non-empty as the emulator requires.
pub const EMULATOR_TOKEN: &str = "iaprun-emulator-token";

/// Everything needed to build the clients.
#[derive(Debug, Clone)]
pub struct Config {
    /// Base URLs of each API.
    pub endpoints: Endpoints,
    /// How to obtain access tokens.
    pub credentials: Credentials,
    /// Time limit for one HTTP request (not for a whole retried call or an operation wait).
    pub request_timeout: Duration,
    /// `User-Agent` header value.
    pub user_agent: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            endpoints: Endpoints::google(),
            credentials: Credentials::ApplicationDefault,
            request_timeout: Duration::from_secs(60),
            user_agent: default_user_agent(),
        }
    }
}

impl Config {
    /// A configuration sending every API to an emulator at `host:port`.
    pub fn emulator(host_port: &str) -> Config {
        Config {
            endpoints: Endpoints::emulator(host_port),
            credentials: Credentials::Emulator,
            ..Config::default()
        }
    }
}

/// `terraform-provider-iaprun/<version>`.
pub fn default_user_agent() -> String {
    format!("terraform-provider-iaprun/{}", env!("CARGO_PKG_VERSION"))
}

/// Base URLs, without the version segment except for compute (as in the provider's
/// `*_custom_endpoint` settings).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoints {
    pub run: String,
    pub iap: String,
    pub compute: String,
    pub service_usage: String,
    pub resource_manager: String,
}

impl Endpoints {
    /// Google's public endpoints.
    pub fn google() -> Endpoints {
        Endpoints {
            run: "https://run.googleapis.com/".into(),
            iap: "https://iap.googleapis.com/".into(),
            compute: "https://compute.googleapis.com/compute/v1/".into(),
            service_usage: "https://serviceusage.googleapis.com/".into(),
            resource_manager: "https://cloudresourcemanager.googleapis.com/".into(),
        }
    }

    /// Every API at `http://host:port` with the same path suffixes (`IAPRUN_EMULATOR_HOST`).
    pub fn emulator(host_port: &str) -> Endpoints {
        let base = format!("http://{}/", host_port.trim_end_matches('/'));
        Endpoints {
            run: base.clone(),
            iap: base.clone(),
            compute: format!("{base}compute/v1/"),
            service_usage: base.clone(),
            resource_manager: base,
        }
    }
}

/// A custom endpoint as the base URL the clients join their paths to: with a trailing `/`, and
/// for every API but compute without a trailing API version segment (`v1/`, `v2/`, `v1beta1/`),
/// since the clients add the version themselves. The google provider's `GOOGLE_*_CUSTOM_ENDPOINT`
/// values carry it (`https://run.googleapis.com/v2/`); compute's base includes `compute/v1/`.
pub fn endpoint_base(url: &str, compute: bool) -> String {
    let mut base = url.trim_end_matches('/').to_string();
    if !compute {
        if let Some((head, last)) = base.rsplit_once('/') {
            if is_api_version(last) && !head.ends_with(':') && !head.ends_with('/') {
                base = head.to_string();
            }
        }
    }
    base.push('/');
    base
}

/// `v1`, `v2`, `v3`, `v1beta1`, `v2alpha`, ...
fn is_api_version(segment: &str) -> bool {
    let Some(rest) = segment.strip_prefix('v') else {
        return false;
    };
    let digits = rest.chars().take_while(char::is_ascii_digit).count();
    if digits == 0 {
        return false;
    }
    let tail = &rest[digits..];
    let tail = tail
        .strip_prefix("alpha")
        .or_else(|| tail.strip_prefix("beta"))
        .unwrap_or(tail);
    tail.chars().all(|c| c.is_ascii_digit())
}

/// Where access tokens come from.
#[derive(Clone)]
pub enum Credentials {
    /// A ready OAuth access token (`access_token`, `GOOGLE_OAUTH_ACCESS_TOKEN`).
    AccessToken(String),
    /// Service-account key JSON text; its `token_uri` is honoured.
    ServiceAccountJson(String),
    /// Path to a service-account key file; its `token_uri` is honoured.
    ServiceAccountFile(PathBuf),
    /// Application default credentials, looked up on first use.
    ApplicationDefault,
    /// No lookup; sends [`EMULATOR_TOKEN`].
    Emulator,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::AccessToken(_) => f.write_str("AccessToken(<redacted>)"),
            Credentials::ServiceAccountJson(_) => f.write_str("ServiceAccountJson(<redacted>)"),
            Credentials::ServiceAccountFile(path) => {
                f.debug_tuple("ServiceAccountFile").field(path).finish()
            }
            Credentials::ApplicationDefault => f.write_str("ApplicationDefault"),
            Credentials::Emulator => f.write_str("Emulator"),
        }
    }
}

/// One client per API, all sharing one transport. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Clients {
    pub run: RunClient,
    pub iap: IapClient,
    pub compute: ComputeClient,
    pub service_usage: ServiceUsageClient,
    pub resource_manager: ResourceManagerClient,
    transport: Arc<Transport>,
}

impl Clients {
    /// Builds the clients with the default retry policy.
    pub fn new(config: Config) -> Result<Clients, Error> {
        Clients::with_retry_policy(config, RetryPolicy::default())
    }

    /// Builds the clients with a custom retry policy (tests use small delays).
    pub fn with_retry_policy(config: Config, retry: RetryPolicy) -> Result<Clients, Error> {
        let endpoints = config.endpoints.clone();
        let transport = Arc::new(Transport::new(config, retry)?);
        let base = |name: &str, url: &str| transport::parse_base_url(name, url);
        let iam = Arc::new(iam::IamWriter::new(transport.clone()));
        Ok(Clients {
            run: RunClient::new(transport.clone(), base("run", &endpoints.run)?, iam.clone()),
            iap: IapClient::new(transport.clone(), base("iap", &endpoints.iap)?, iam),
            compute: ComputeClient::new(transport.clone(), base("compute", &endpoints.compute)?),
            service_usage: ServiceUsageClient::new(
                transport.clone(),
                base("service_usage", &endpoints.service_usage)?,
            ),
            resource_manager: ResourceManagerClient::new(
                transport.clone(),
                base("resource_manager", &endpoints.resource_manager)?,
            ),
            transport,
        })
    }

    /// A handle that makes every in-flight and future call fail with [`Error::Cancelled`].
    pub fn stop_handle(&self) -> StopHandle {
        self.transport.stop_handle()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_redacts_secrets() {
        let token = Credentials::AccessToken("ya29.very-secret".into());
        let key = Credentials::ServiceAccountJson(
            r#"{"private_key":"-----BEGIN PRIVATE KEY-----\nMIIE"}"#.into(),
        );
        let config = Config {
            credentials: token.clone(),
            ..Config::default()
        };
        for text in [
            format!("{token:?}"),
            format!("{key:?}"),
            format!("{config:?}"),
            format!("{config:#?}"),
        ] {
            assert!(!text.contains("ya29"), "{text}");
            assert!(!text.contains("PRIVATE KEY"), "{text}");
            assert!(text.contains("redacted"), "{text}");
        }
        let file = Credentials::ServiceAccountFile("/tmp/key.json".into());
        assert!(format!("{file:?}").contains("/tmp/key.json"));
    }

    #[test]
    fn endpoints() {
        let e = Endpoints::emulator("127.0.0.1:8085");
        assert_eq!(e.run, "http://127.0.0.1:8085/");
        assert_eq!(e.compute, "http://127.0.0.1:8085/compute/v1/");
        assert_eq!(e.resource_manager, "http://127.0.0.1:8085/");
        let g = Endpoints::google();
        assert_eq!(g.compute, "https://compute.googleapis.com/compute/v1/");
        assert_eq!(g.run, "https://run.googleapis.com/");
    }

    #[test]
    fn custom_endpoints_lose_the_version_the_clients_add() {
        let cases = [
            ("http://127.0.0.1:9/v2/", false, "http://127.0.0.1:9/"),
            (
                "https://run.googleapis.com/v2",
                false,
                "https://run.googleapis.com/",
            ),
            (
                "https://iap.googleapis.com/v1/",
                false,
                "https://iap.googleapis.com/",
            ),
            (
                "https://serviceusage.googleapis.com/v1beta1/",
                false,
                "https://serviceusage.googleapis.com/",
            ),
            (
                "https://private.example.com/run/",
                false,
                "https://private.example.com/run/",
            ),
            (
                "https://run.googleapis.com/",
                false,
                "https://run.googleapis.com/",
            ),
            (
                "http://127.0.0.1:9/compute/v1/",
                true,
                "http://127.0.0.1:9/compute/v1/",
            ),
            (
                "http://127.0.0.1:9/compute/v1",
                true,
                "http://127.0.0.1:9/compute/v1/",
            ),
            ("http://v1/", false, "http://v1/"),
        ];
        for (url, compute, want) in cases {
            assert_eq!(endpoint_base(url, compute), want, "{url}");
        }
    }

    #[test]
    fn bad_endpoint_is_a_config_error() {
        let mut config = Config::emulator("127.0.0.1:1");
        config.endpoints.iap = "not a url".into();
        let err = Clients::new(config).expect_err("bad URL accepted");
        assert!(matches!(err, Error::Config(_)), "{err}");
        assert!(err.to_string().contains("iap"), "{err}");
    }

    #[test]
    fn bad_key_json_is_a_config_error() {
        let config = Config {
            credentials: Credentials::ServiceAccountJson("{not json".into()),
            ..Config::emulator("127.0.0.1:1")
        };
        let err = Clients::new(config).expect_err("bad key accepted");
        assert!(matches!(err, Error::Config(_)), "{err}");
        assert!(!err.to_string().contains("{not json"), "{err}");
    }
}
