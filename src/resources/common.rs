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
    if ctx.settings.project_unknown {
        planned.set_attr("project", Value::unknown());
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
    Ok(Some(RunServiceFacts {
        location: name.location.clone(),
        name: name.service.clone(),
        iap_enabled: service.iap_enabled,
        ingress: service.ingress.clone().unwrap_or_default(),
        default_uri_disabled: service.default_uri_disabled,
        invoker_iam_disabled: service.invoker_iam_disabled,
        h2c: service.uses_h2c(),
        invoker_members,
    }))
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

// ---- lifecycle: what a resource added, and when its checks run (DESIGN.md §5, §5b) -----------

/// The `invoker_grants` attribute: the grants this resource added, recorded in state so that a
/// destroy (a replacement's destroy half included) can undo exactly them.
pub fn invoker_grants_attribute() -> Attribute {
    Attribute::string_set("invoker_grants").computed().description(
        "The Cloud Run services (`projects/{project}/locations/{location}/services/{name}`) on which this resource added `roles/run.invoker` for the IAP service agent. Destroying the resource removes exactly these grants (a grant that existed before is never claimed), unless another IAP-enabled path still routes to the service.",
    )
}

/// The `checks_after` attribute: the one-run fix path (docs/checks.md).
pub fn checks_after_attribute() -> Attribute {
    Attribute::string_list("checks_after").optional().description(
        "Values of the resources whose change in this run fixes a finding (for example `[tostring(google_compute_backend_service.app.enable_cdn)]` or a `terraform_data` id). While one is unknown at plan, or differs from the last apply, the live checks wait for apply and run there on a fresh read, after those resources, before any change. See the one-run fix path in the checks documentation.",
    )
}

/// The grants recorded by an earlier apply: the state's `invoker_grants`, else (state written by
/// an older version) the private state's.
pub fn recorded_grants(state: &Value, private: &Private) -> std::collections::BTreeSet<String> {
    let recorded = state.get("invoker_grants");
    if !recorded.is_null() {
        return recorded.strings().into_iter().map(str::to_string).collect();
    }
    private
        .invoker_grants
        .keys()
        .filter_map(|k| service_from_key(k).ok())
        .map(|s| s.to_string())
        .collect()
}

/// A Cloud Run service from `projects/P/locations/L/services/S` or `P/L/S`.
pub fn service_from_key(key: &str) -> Result<google::ServiceName, String> {
    let parsed = names::parse_service_id(key)?;
    match (parsed.project, parsed.location) {
        (Some(p), Some(l)) => Ok(google::ServiceName::new(p, l, parsed.service)),
        _ => Err(format!("{key:?} is not a full service name")),
    }
}

/// Whether an error says the IAP service agent named in a policy does not exist yet: Google
/// propagates a just-provisioned agent for a while (400 "Service account ... does not exist").
fn is_agent_not_propagated(error: &google::Error) -> bool {
    error.http_status() == Some(400) && {
        let message = error.message();
        message.contains("does not exist") && message.contains("gcp-sa-iap")
    }
}

/// [`grant_invoker`], retrying while the agent is still propagating, until `deadline`; the error
/// then names the agent.
pub async fn grant_invoker_propagated(
    ctx: &Context,
    name: &google::ServiceName,
    member: &str,
    deadline: Instant,
) -> Result<bool, google::Error> {
    let mut pause = Duration::from_millis(500);
    loop {
        match grant_invoker(ctx, name, member, deadline).await {
            Err(e) if is_agent_not_propagated(&e) => {
                if Instant::now() + pause >= deadline {
                    return Err(e.with_hint(format!(
                        "The IAP service agent {member} was still unknown to IAM when the timeout ran out; Google takes a while to propagate a new agent. Apply again, or raise the resource's timeouts"
                    )));
                }
                tracing::debug!(%name, agent = member, "IAP service agent not propagated yet; retrying");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(5));
            }
            other => return other,
        }
    }
}

/// The IAP-enabled paths that still route to a Cloud Run service: its own direct IAP (when
/// `direct`) and every backend service with IAP on (global, or in the service's region) over a
/// serverless NEG for it, except `except`. Described for diagnostics.
pub async fn iap_paths_to(
    ctx: &Context,
    name: &google::ServiceName,
    direct: bool,
    except: Option<&google::BackendServiceRef>,
) -> Result<Vec<String>, google::Error> {
    let mut paths = Vec::new();
    if direct {
        match ctx.clients.run.service(name).await {
            Ok(s) if s.iap_enabled => paths.push(format!("direct IAP on {name}")),
            Ok(_) => {}
            Err(e) if e.is_not_found() => return Ok(paths),
            Err(e) => return Err(e),
        }
    }
    let compute = &ctx.clients.compute;
    let negs: Vec<String> = compute
        .network_endpoint_groups(&name.project, &name.location)
        .await?
        .into_iter()
        .filter(|n| {
            n.cloud_run.as_ref().and_then(|r| r.service.as_deref()) == Some(name.service.as_str())
        })
        .map(|n| n.name)
        .collect();
    if negs.is_empty() {
        return Ok(paths);
    }
    let region = google::Scope::Region(name.location.clone());
    for scope in [google::Scope::Global, region] {
        for backend in compute.backend_services(&name.project, &scope).await? {
            let this = match &scope {
                google::Scope::Global => {
                    google::BackendServiceRef::global(name.project.as_str(), backend.name.as_str())
                }
                google::Scope::Region(r) => google::BackendServiceRef::regional(
                    name.project.as_str(),
                    r.as_str(),
                    backend.name.as_str(),
                ),
            };
            if except.is_some_and(|e| e.to_string() == this.to_string()) || !backend.iap_enabled() {
                continue;
            }
            let fronts = backend.backend_groups.iter().any(|g| {
                let mut parts = g.rsplit('/');
                let neg = parts.next().unwrap_or_default();
                let _kind = parts.next();
                let region = parts.next().unwrap_or_default();
                region == name.location && negs.iter().any(|n| n == neg)
            });
            if fronts {
                paths.push(format!("backend service {this} (IAP on)"));
            }
        }
    }
    Ok(paths)
}

/// Removes a recorded grant unless another IAP-enabled path still needs it; a kept grant is
/// reported as a warning. Errors are the revoke's (a lookup failure keeps the grant: removing
/// access someone may need is worse than leaving it).
pub async fn release_grant(
    ctx: &Context,
    name: &google::ServiceName,
    member: &str,
    except: Option<&google::BackendServiceRef>,
    deadline: Instant,
    diagnostics: &mut Diagnostics,
) -> Result<(), google::Error> {
    let paths = match iap_paths_to(ctx, name, true, except).await {
        Ok(paths) => paths,
        Err(e) => vec![format!("(could not be determined: {e})")],
    };
    if !paths.is_empty() {
        diagnostics.warning(
            "Invoker grant kept",
            format!(
                "roles/run.invoker of {member} on {name} was added by this resource, but is kept: it is still needed by {}. Whoever manages that path owns it now.",
                paths.join(", ")
            ),
        );
        return Ok(());
    }
    revoke_invoker(ctx, name, member, deadline).await
}

/// Plans `project` for an attribute that defaults to the provider's: an effective change (a new
/// provider default) replaces the resource; a project id and its number name the same project
/// and change nothing.
pub async fn plan_project_identity(
    ctx: &Context,
    prior: &Value,
    config: &Value,
    planned: &mut Value,
    requires_replace: &mut Vec<AttributePath>,
) {
    let path = AttributePath::attr("project");
    let (Some(before), Some(now)) = (prior.get_str("project"), planned.get_str("project")) else {
        return;
    };
    if before == now {
        return;
    }
    let same = match (ctx.project_info(before).await, ctx.project_info(now).await) {
        (Ok(a), Ok(b)) => a.project_number == b.project_number,
        _ => false,
    };
    if same {
        requires_replace.retain(|p| *p != path);
        if config.get("project").is_null() {
            planned.set_attr("project", Value::from(before));
        }
    } else if !requires_replace.contains(&path) {
        requires_replace.push(path);
    }
}

/// Plans an attribute (`location`, `role`) whose default may change: a different effective
/// value replaces the resource.
pub fn plan_replace_on_change(
    prior: &Value,
    planned: &Value,
    attribute: &str,
    requires_replace: &mut Vec<AttributePath>,
) {
    let path = AttributePath::attr(attribute);
    let (before, now) = (prior.get(attribute), planned.get(attribute));
    if !prior.is_null()
        && !before.is_null()
        && now.is_known()
        && before != now
        && !requires_replace.contains(&path)
    {
        requires_replace.push(path);
    }
}
