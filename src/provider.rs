//! The iaprun provider: its settings (DESIGN.md section 3), how they become API clients and the
//! run-time context ([`Context`]) resources run with.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::framework::timeouts::parse_duration;
use crate::framework::{
    AnyDataSource, AnyResource, Attribute, AttributePath, Block, ConfigureRequest, Diagnostics,
    Provider, Schema, Value,
};
use crate::google;
use crate::names;
use crate::resources::Context;

/// Env var that points every API at an iaprun-emulator (or another emulator) at `host:port`.
pub const EMULATOR_HOST_ENV: &str = "IAPRUN_EMULATOR_HOST";

/// Per-API endpoint settings: (attribute, environment variable, what it overrides).
pub const ENDPOINT_SETTINGS: [(&str, &str, &str); 5] = [
    (
        "run_custom_endpoint",
        "GOOGLE_CLOUD_RUN_V2_CUSTOM_ENDPOINT",
        "Cloud Run Admin API",
    ),
    (
        "iap_custom_endpoint",
        "GOOGLE_IAP_CUSTOM_ENDPOINT",
        "Identity-Aware Proxy API",
    ),
    (
        "compute_custom_endpoint",
        "GOOGLE_COMPUTE_CUSTOM_ENDPOINT",
        "Compute Engine API",
    ),
    (
        "service_usage_custom_endpoint",
        "GOOGLE_SERVICE_USAGE_CUSTOM_ENDPOINT",
        "Service Usage API",
    ),
    (
        "resource_manager_custom_endpoint",
        "GOOGLE_RESOURCE_MANAGER_CUSTOM_ENDPOINT",
        "Cloud Resource Manager API",
    ),
];

const PROJECT_ENV: [&str; 4] = [
    "GOOGLE_PROJECT",
    "GOOGLE_CLOUD_PROJECT",
    "GCLOUD_PROJECT",
    "CLOUDSDK_CORE_PROJECT",
];
const REGION_ENV: [&str; 2] = ["GOOGLE_REGION", "GCLOUD_REGION"];
const CREDENTIALS_ENV: [&str; 4] = [
    "GOOGLE_CREDENTIALS",
    "GOOGLE_CLOUD_KEYFILE_JSON",
    "GCLOUD_KEYFILE_JSON",
    "GOOGLE_APPLICATION_CREDENTIALS",
];
const ACCESS_TOKEN_ENV: &str = "GOOGLE_OAUTH_ACCESS_TOKEN";
const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// The provider block's schema.
pub fn provider_schema() -> Schema {
    let mut block = Block::new(
        "The iaprun provider puts Identity-Aware Proxy in front of Cloud Run services and checks the known \
         pitfalls at plan time. Settings fall back to the environment variables the google provider reads.",
    )
    .attribute(Attribute::string("project").optional().description(
        "Default project id for resources that do not set `project`. Falls back to `GOOGLE_PROJECT`, `GOOGLE_CLOUD_PROJECT`, `GCLOUD_PROJECT` or `CLOUDSDK_CORE_PROJECT`.",
    ))
    .attribute(Attribute::string("region").optional().description(
        "Default region (for example `us-central1`) for resources that do not set `location` or `region`. Falls back to `GOOGLE_REGION` or `GCLOUD_REGION`.",
    ))
    .attribute(Attribute::string("credentials").optional().description(
        "A service-account key file path or its JSON content. The key's `token_uri` is honoured. Falls back to `GOOGLE_CREDENTIALS`, `GOOGLE_CLOUD_KEYFILE_JSON`, `GCLOUD_KEYFILE_JSON` or `GOOGLE_APPLICATION_CREDENTIALS`, then to application default credentials. Conflicts with `access_token`.",
    ))
    .attribute(Attribute::string("access_token").optional().sensitive().description(
        "An OAuth 2.0 access token used as is. Falls back to `GOOGLE_OAUTH_ACCESS_TOKEN`. Conflicts with `credentials`.",
    ));
    for (name, env, api) in ENDPOINT_SETTINGS {
        block = block.attribute(Attribute::string(name).optional().description(format!(
            "Base URL of the {api}, for private endpoints or an emulator. Falls back to `{env}`; `IAPRUN_EMULATOR_HOST` overrides every endpoint."
        )));
    }
    block = block.attribute(Attribute::string("request_timeout").optional().description(
        "Time limit of one HTTP request to a Google API, as a duration such as `60s` or `2m` (default `60s`). Long-running operations are bounded by the resources' `timeouts` instead.",
    ));
    Schema::new(0, block)
}

/// Where credentials come from, in the order DESIGN.md section 3 gives.
#[derive(Clone, PartialEq, Eq)]
pub enum CredentialSource {
    /// `IAPRUN_EMULATOR_HOST` is set: no lookup.
    Emulator,
    AccessToken(String),
    /// A key file's JSON content.
    KeyJson(String),
    /// A key file's path.
    KeyFile(String),
    ApplicationDefault,
}

impl std::fmt::Debug for CredentialSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print a token or a key.
        f.write_str(match self {
            CredentialSource::Emulator => "Emulator",
            CredentialSource::AccessToken(_) => "AccessToken(<redacted>)",
            CredentialSource::KeyJson(_) => "KeyJson(<redacted>)",
            CredentialSource::KeyFile(_) => "KeyFile(..)",
            CredentialSource::ApplicationDefault => "ApplicationDefault",
        })
    }
}

/// The provider settings after environment fallbacks, ready to build API clients from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub project: Option<String>,
    pub region: Option<String>,
    /// The provider block's `project` / `region` is unknown at plan (it comes from a resource
    /// not yet applied): resources defaulting to it plan an unknown value, not the environment's.
    pub project_unknown: bool,
    pub region_unknown: bool,
    pub credentials: CredentialSource,
    /// Custom endpoints by attribute name; `None` uses Google's.
    pub endpoints: [(&'static str, Option<String>); 5],
    pub emulator_host: Option<String>,
    pub request_timeout: Duration,
}

impl Settings {
    /// Reads the provider block, falling back to the environment. `env` is injectable for tests.
    pub fn from_config(
        config: &Value,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Settings, Diagnostics> {
        let mut diags = validate_settings(config);
        let setting = |name: &str, vars: &[&str]| -> Option<String> {
            config
                .get_str(name)
                .map(str::to_string)
                .or_else(|| vars.iter().find_map(|v| env(v)))
                .filter(|s| !s.is_empty())
        };
        // An unknown value is not "unset": the environment must not stand in for it.
        let project = match config.get("project").is_unknown() {
            true => None,
            false => setting("project", &PROJECT_ENV),
        };
        let region = match config.get("region").is_unknown() {
            true => None,
            false => setting("region", &REGION_ENV),
        };
        if let Some(p) = project.as_deref().filter(|p| !names::is_project(p)) {
            diags.attribute_error(
                AttributePath::attr("project"),
                "Invalid project",
                format!("The project {p:?} (from the environment) is not a valid project id."),
            );
        }
        let emulator_host = env(EMULATOR_HOST_ENV).filter(|h| !h.is_empty());
        let credentials = if emulator_host.is_some() {
            CredentialSource::Emulator
        } else if let Some(token) = setting("access_token", &[ACCESS_TOKEN_ENV]) {
            CredentialSource::AccessToken(token)
        } else if let Some(creds) = setting("credentials", &CREDENTIALS_ENV) {
            if creds.trim_start().starts_with('{') {
                CredentialSource::KeyJson(creds)
            } else {
                CredentialSource::KeyFile(creds)
            }
        } else {
            CredentialSource::ApplicationDefault
        };
        let endpoints = ENDPOINT_SETTINGS.map(|(name, var, _)| (name, setting(name, &[var])));
        let request_timeout = config
            .get_str("request_timeout")
            .and_then(parse_duration)
            .unwrap_or(DEFAULT_REQUEST_TIMEOUT);
        if diags.has_errors() {
            return Err(diags);
        }
        Ok(Settings {
            project_unknown: config.get("project").is_unknown(),
            region_unknown: config.get("region").is_unknown(),
            project,
            region,
            credentials,
            endpoints,
            emulator_host,
            request_timeout,
        })
    }

    /// The custom endpoint for one of [`ENDPOINT_SETTINGS`], if any.
    pub fn endpoint(&self, attribute: &str) -> Option<&str> {
        self.endpoints
            .iter()
            .find(|(n, _)| *n == attribute)
            .and_then(|(_, v)| v.as_deref())
    }
}

/// Static checks of the provider block; unknown values are skipped.
pub fn validate_settings(config: &Value) -> Diagnostics {
    let mut diags = Diagnostics::new();
    if let Some(p) = config.get_str("project") {
        if !names::is_project(p) {
            diags.attribute_error(
                AttributePath::attr("project"),
                "Invalid project",
                format!("{p:?} is not a project id: 6 to 30 lower-case letters, digits or hyphens, starting with a letter."),
            );
        }
    }
    if let Some(r) = config.get_str("region") {
        if !names::is_region(r) {
            diags.attribute_error(
                AttributePath::attr("region"),
                "Invalid region",
                format!("{r:?} is not a region such as us-central1 (zones such as us-central1-a are not regions)."),
            );
        }
    }
    if !config.get("credentials").is_null() && !config.get("access_token").is_null() {
        diags.attribute_error(
            AttributePath::attr("access_token"),
            "Conflicting credentials",
            "Set either credentials or access_token, not both.",
        );
    }
    if let Some(c) = config.get_str("credentials") {
        if c.trim_start().starts_with('{') && serde_json::from_str::<serde_json::Value>(c).is_err()
        {
            diags.attribute_error(
                AttributePath::attr("credentials"),
                "Invalid credentials",
                "The credentials look like JSON but do not parse. Pass a service-account key file path or its whole JSON content.",
            );
        } else if c.trim().is_empty() {
            diags.attribute_error(
                AttributePath::attr("credentials"),
                "Invalid credentials",
                "The credentials are empty.",
            );
        }
    }
    if let Some(t) = config.get_str("access_token") {
        if t.trim().is_empty() {
            diags.attribute_error(
                AttributePath::attr("access_token"),
                "Invalid access token",
                "The access token is empty.",
            );
        }
    }
    for (name, _, api) in ENDPOINT_SETTINGS {
        if let Some(url) = config.get_str(name) {
            let ok = (url.starts_with("https://") || url.starts_with("http://"))
                && url.len() > "https://".len()
                && !url.contains(char::is_whitespace);
            if !ok {
                diags.attribute_error(
                    AttributePath::attr(name),
                    "Invalid endpoint",
                    format!("{url:?} is not an http(s) URL for the {api}, such as https://example.com/."),
                );
            }
        }
    }
    if let Some(t) = config.get_str("request_timeout") {
        if parse_duration(t).is_none_or(|d| d.is_zero()) {
            diags.attribute_error(
                AttributePath::attr("request_timeout"),
                "Invalid duration",
                format!("{t:?} is not a positive duration such as 30s, 2m or 1h30m."),
            );
        }
    }
    diags
}

/// The google::Config these settings describe.
pub fn client_config(settings: &Settings, terraform_version: &str) -> google::Config {
    let mut endpoints = match &settings.emulator_host {
        Some(host) => google::Endpoints::emulator(host),
        None => google::Endpoints::google(),
    };
    if settings.emulator_host.is_none() {
        for (name, url) in &settings.endpoints {
            let Some(url) = url else { continue };
            let url = google::endpoint_base(url, *name == "compute_custom_endpoint");
            match *name {
                "run_custom_endpoint" => endpoints.run = url,
                "iap_custom_endpoint" => endpoints.iap = url,
                "compute_custom_endpoint" => endpoints.compute = url,
                "service_usage_custom_endpoint" => endpoints.service_usage = url,
                _ => endpoints.resource_manager = url,
            }
        }
    }
    let credentials = match &settings.credentials {
        CredentialSource::Emulator => google::Credentials::Emulator,
        CredentialSource::AccessToken(t) => google::Credentials::AccessToken(t.clone()),
        CredentialSource::KeyJson(j) => google::Credentials::ServiceAccountJson(j.clone()),
        CredentialSource::KeyFile(p) => google::Credentials::ServiceAccountFile(p.into()),
        CredentialSource::ApplicationDefault => google::Credentials::ApplicationDefault,
    };
    let user_agent = if terraform_version.is_empty() {
        google::default_user_agent()
    } else {
        format!(
            "{} terraform/{terraform_version}",
            google::default_user_agent()
        )
    };
    google::Config {
        endpoints,
        credentials,
        request_timeout: settings.request_timeout,
        user_agent,
    }
}

/// The provider served by `terraform-provider-iaprun`.
#[derive(Debug, Default)]
pub struct IaprunProvider {
    /// Cancels in-flight API calls when Terraform sends Stop.
    stop: std::sync::Mutex<Option<google::StopHandle>>,
}

#[async_trait]
impl Provider for IaprunProvider {
    type Context = Context;

    fn schema(&self) -> Schema {
        provider_schema()
    }

    fn validate(&self, config: &Value) -> Diagnostics {
        validate_settings(config)
    }

    async fn configure(&self, req: ConfigureRequest) -> Result<Context, Diagnostics> {
        let settings = Settings::from_config(&req.config, &|name| std::env::var(name).ok())?;
        let clients = google::Clients::new(client_config(&settings, &req.terraform_version))
            .map_err(|e| {
                Diagnostics::from(crate::framework::Diagnostic::error(
                    "Cannot set up Google API clients",
                    format!("{e}. Check the provider's credentials and endpoint settings."),
                ))
            })?;
        let stop = clients.stop_handle();
        *self.stop.lock().unwrap_or_else(|p| p.into_inner()) = Some(stop);
        Ok(
            Context::new(settings.project.clone(), settings.region.clone(), clients)
                .with_unknown_defaults(settings.project_unknown, settings.region_unknown),
        )
    }

    fn resources(&self) -> Vec<Arc<dyn AnyResource<Context>>> {
        crate::resources::all()
    }

    fn data_sources(&self) -> Vec<Arc<dyn AnyDataSource<Context>>> {
        crate::resources::data_sources()
    }

    fn stop(&self) {
        if let Some(stop) = self.stop.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            stop.stop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(pairs: &[(&str, &str)]) -> Value {
        let mut obj = provider_schema().block.empty_value();
        for (k, v) in pairs {
            obj.set_attr(k, Value::from(*v));
        }
        obj
    }

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn block_values_win_over_environment() {
        let s = Settings::from_config(
            &config(&[("project", "from-config")]),
            &env(&[("GOOGLE_PROJECT", "from-env")]),
        )
        .expect("valid");
        assert_eq!(s.project.as_deref(), Some("from-config"));
        let s = Settings::from_config(
            &config(&[]),
            &env(&[
                ("GOOGLE_CLOUD_PROJECT", "from-env"),
                ("GOOGLE_REGION", "europe-west1"),
            ]),
        )
        .expect("valid");
        assert_eq!(
            (s.project.as_deref(), s.region.as_deref()),
            (Some("from-env"), Some("europe-west1"))
        );
    }

    #[test]
    fn an_unknown_project_or_region_is_not_replaced_by_the_environment() {
        let mut unknown = config(&[]);
        unknown.set_attr("project", Value::unknown());
        unknown.set_attr("region", Value::unknown());
        let s = Settings::from_config(
            &unknown,
            &env(&[
                ("GOOGLE_PROJECT", "from-env"),
                ("GOOGLE_REGION", "europe-west1"),
            ]),
        )
        .expect("valid");
        assert!(s.project_unknown && s.region_unknown);
        assert_eq!((s.project, s.region), (None, None));
    }

    #[test]
    fn credential_order_follows_the_design() {
        let s = Settings::from_config(
            &config(&[("access_token", "ya29.x")]),
            &env(&[(EMULATOR_HOST_ENV, "127.0.0.1:1")]),
        )
        .expect("valid");
        assert_eq!(s.credentials, CredentialSource::Emulator);
        let s = Settings::from_config(
            &config(&[]),
            &env(&[
                (ACCESS_TOKEN_ENV, "ya29.x"),
                ("GOOGLE_CREDENTIALS", "/k.json"),
            ]),
        )
        .expect("valid");
        assert_eq!(
            s.credentials,
            CredentialSource::AccessToken("ya29.x".into())
        );
        let s = Settings::from_config(
            &config(&[]),
            &env(&[("GOOGLE_APPLICATION_CREDENTIALS", "/k.json")]),
        )
        .expect("valid");
        assert_eq!(s.credentials, CredentialSource::KeyFile("/k.json".into()));
        let s = Settings::from_config(
            &config(&[("credentials", "{\"type\":\"service_account\"}")]),
            &env(&[]),
        )
        .expect("valid");
        assert!(matches!(s.credentials, CredentialSource::KeyJson(_)));
        assert!(
            !format!("{:?}", CredentialSource::AccessToken("ya29.secret".into()))
                .contains("secret")
        );
        let s = Settings::from_config(&config(&[]), &env(&[])).expect("valid");
        assert_eq!(s.credentials, CredentialSource::ApplicationDefault);
    }

    #[test]
    fn bad_settings_point_at_their_attribute() {
        let cases = [
            (vec![("project", "Bad_Project")], "project"),
            (vec![("region", "us-central1-a")], "region"),
            (vec![("credentials", "{not json")], "credentials"),
            (
                vec![("credentials", "/k.json"), ("access_token", "t")],
                "access_token",
            ),
            (
                vec![("iap_custom_endpoint", "ftp://x")],
                "iap_custom_endpoint",
            ),
            (vec![("request_timeout", "soon")], "request_timeout"),
            (vec![("request_timeout", "0s")], "request_timeout"),
        ];
        for (pairs, attr) in cases {
            let diags = validate_settings(&config(&pairs));
            assert!(diags.has_errors(), "{pairs:?}");
            assert_eq!(
                diags.iter().next().and_then(|d| d.path.clone()),
                Some(AttributePath::attr(attr)),
                "{pairs:?}"
            );
        }
        assert!(validate_settings(&config(&[
            ("project", "good-project"),
            ("region", "us-central1")
        ]))
        .is_empty());
    }
}
