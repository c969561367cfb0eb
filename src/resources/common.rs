//! Pieces the three resources share: common attributes, defaults, the not-yet-implemented stub.

use std::time::{Duration, Instant};

use crate::framework::{Attribute, AttributePath, Diagnostic, Diagnostics, Value};
use crate::google;
use crate::names;
use crate::provider::{parse_duration, Context};
use crate::validation::{self, facts::RunServiceFacts, Finding};

/// The `project` attribute: optional, defaults to the provider's project, forces replacement.
pub fn project_attribute() -> Attribute {
    Attribute::string("project")
        .optional()
        .computed()
        .force_new()
        .description("Project id (or number). Defaults to the provider's `project`. Changing it replaces the resource.")
}

/// The `ignore_checks` attribute.
pub fn ignore_checks_attribute() -> Attribute {
    Attribute::string_set("ignore_checks").optional().description(
        "Names of plan-time checks to turn off for this resource (see the checks table in the provider docs). An unknown name is an error.",
    )
}

/// The `grant_iap_invoker` attribute.
pub fn grant_iap_invoker_attribute(what: &str) -> Attribute {
    Attribute::bool("grant_iap_invoker").optional().computed().description(format!(
        "Grant `roles/run.invoker` on {what} to the IAP service agent `service-PROJECT_NUMBER@gcp-sa-iap.iam.gserviceaccount.com`, provisioning the agent first. Defaults to `true`. Without this grant users who pass IAP get 403 \"Your client does not have permission to get URL\"."
    ))
}

/// The `id` attribute.
pub fn id_attribute(format: &str) -> Attribute {
    Attribute::string("id")
        .computed()
        .description(format!("Identifier of the resource: `{format}`."))
}

/// Checks shared by every resource: `ignore_checks` names and a valid `project`.
pub fn validate_common(config: &Value) -> Diagnostics {
    let mut diags = validation::ignore_checks_known(config);
    if let Some(p) = config.get_str("project") {
        if !names::is_project(p) {
            diags.attribute_error(
                AttributePath::attr("project"),
                "Invalid project",
                format!("{p:?} is not a project id or number: a project id has 6 to 30 lower-case letters, digits or hyphens and starts with a letter."),
            );
        }
    }
    diags
}

/// Fills `project` from the provider when the config leaves it null; an error when neither has one.
pub fn plan_project(ctx: &Context, config: &Value, planned: &mut Value, diags: &mut Diagnostics) {
    if !config.get("project").is_null() {
        return;
    }
    match ctx.project(None) {
        Some(p) => planned.set_attr("project", Value::from(p)),
        None => diags.attribute_error(
            AttributePath::attr("project"),
            "No project",
            "Set project on this resource or in the provider block (or GOOGLE_PROJECT in the environment).",
        ),
    }
}

/// The timeout for `operation` ("create", "update", "delete") from the `timeouts` block.
pub fn timeout(config_or_state: &Value, operation: &str) -> Duration {
    config_or_state
        .get("timeouts")
        .get_str(operation)
        .and_then(parse_duration)
        .unwrap_or(Duration::from_secs(20 * 60))
}

/// Checks the `timeouts` block's durations.
pub fn validate_timeouts(config: &Value) -> Diagnostics {
    let mut diags = Diagnostics::new();
    if let Value::Object(t) = config.get("timeouts") {
        for (name, v) in t {
            if let Some(text) = v.as_str() {
                if parse_duration(text).is_none_or(|d| d.is_zero()) {
                    diags.attribute_error(
                        AttributePath::attr("timeouts").then_attr(name),
                        "Invalid duration",
                        format!("{text:?} is not a positive duration such as 30s, 10m or 1h."),
                    );
                }
            }
        }
    }
    diags
}

/// A diagnostic for a failed API call: what was being done, and Google's own message.
pub fn api_error(doing: &str, error: &google::Error) -> Diagnostic {
    Diagnostic::error(format!("Failed to {doing}"), format!("{error}"))
}

/// The deadline of an operation, from `timeouts`.
pub fn deadline(config_or_state: &Value, operation: &str) -> Instant {
    Instant::now() + timeout(config_or_state, operation)
}

/// Replaces whatever is still unknown (values only the API could have told) with null, so a
/// returned state is always wholly known.
pub fn finalize(value: Value) -> Value {
    match value {
        Value::Unknown(_) => Value::Null,
        Value::Object(m) => Value::Object(m.into_iter().map(|(k, v)| (k, finalize(v))).collect()),
        Value::List(v) => Value::List(v.into_iter().map(finalize).collect()),
        Value::Set(v) => Value::set(v.into_iter().map(finalize)),
        Value::Map(m) => Value::Map(m.into_iter().map(|(k, v)| (k, finalize(v))).collect()),
        other => other,
    }
}

/// Private state: what this resource instance did that the API cannot tell (for example which
/// grants it added), kept by Terraform next to the state.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Private {
    /// Members this resource added as roles/run.invoker, by Cloud Run service (`project/location/name`).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub invoker_grants: std::collections::BTreeMap<String, String>,
}

impl Private {
    pub fn decode(bytes: &[u8]) -> Self {
        serde_json::from_slice(bytes).unwrap_or_default()
    }

    pub fn encode(&self) -> Vec<u8> {
        if *self == Private::default() {
            return Vec::new();
        }
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// Reads what the checks need to know about a Cloud Run service; `None` when it does not exist.
pub async fn run_service_facts(
    ctx: &Context,
    name: &google::ServiceName,
) -> Result<Option<RunServiceFacts>, google::Error> {
    let service = match ctx.clients.run.service(name).await {
        Ok(s) => s,
        Err(e) if e.is_not_found() => return Ok(None),
        Err(e) => return Err(e),
    };
    let invoker_members = match ctx.clients.run.iam_policy(name).await {
        Ok(policy) => Some(policy.members(INVOKER_ROLE, None)),
        Err(e) if e.is_permission_denied() => None,
        Err(e) => return Err(e),
    };
    Ok(Some(service_facts(
        &name.location,
        &name.service,
        &service,
        invoker_members,
    )))
}

/// The check facts of a Cloud Run service as read, with its invoker members (`None`: unknown).
pub fn service_facts(
    location: &str,
    name: &str,
    service: &google::RunService,
    invoker_members: Option<Vec<String>>,
) -> RunServiceFacts {
    RunServiceFacts {
        location: location.to_string(),
        name: name.to_string(),
        iap_enabled: service.iap_enabled,
        ingress: service.ingress.clone().unwrap_or_default(),
        default_uri_disabled: service.default_uri_disabled,
        invoker_iam_disabled: service.invoker_iam_disabled,
        h2c: service.uses_h2c(),
        invoker_members,
    }
}

/// The role the IAP service agent needs on Cloud Run services.
pub const INVOKER_ROLE: &str = "roles/run.invoker";

/// Grants roles/run.invoker on a service to `member`; true when this call added it.
pub async fn grant_invoker(
    ctx: &Context,
    name: &google::ServiceName,
    member: &str,
    deadline: Instant,
) -> Result<bool, google::Error> {
    let mut added = false;
    ctx.clients
        .run
        .modify_iam_policy(name, deadline, |policy| {
            added = policy.add_member(INVOKER_ROLE, member, None);
            added
        })
        .await?;
    Ok(added)
}

/// Removes roles/run.invoker of `member` from a service (a missing service is fine).
pub async fn revoke_invoker(
    ctx: &Context,
    name: &google::ServiceName,
    member: &str,
    deadline: Instant,
) -> Result<(), google::Error> {
    match ctx
        .clients
        .run
        .modify_iam_policy(name, deadline, |policy| {
            policy.remove_member(INVOKER_ROLE, member, None)
        })
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if e.is_not_found() => Ok(()),
        Err(e) => Err(e),
    }
}

/// Project-level checks: the IAP API is enabled and, for direct IAP, the project has an organization.
pub async fn project_findings(ctx: &Context, project: &str, direct: bool) -> Vec<Finding> {
    let mut findings = Vec::new();
    if let Ok(state) = ctx
        .clients
        .service_usage
        .service_state(project, google::IAP_SERVICE)
        .await
    {
        findings.extend(validation::target::iap_api_disabled(project, Some(&state)));
    }
    if direct {
        if let Ok(info) = ctx.project_info(project).await {
            findings.extend(validation::target::no_organization(
                project,
                Some(info.parent.is_some()),
            ));
        }
    }
    findings
}
