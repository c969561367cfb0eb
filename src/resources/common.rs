//! Pieces every resource type shares, once: common attributes and checks, the project lookup, the
//! IAP service agent and the invoker grants it is given, and the reads plan-time checks need.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use super::context::Context;
use crate::framework::{Attr, Attribute, AttributePath, Diagnostic, Diagnostics, Failure};
use crate::google::{self, ServiceName};
use crate::names::{self, IapResource, IapTarget};
use crate::validation::{self, facts::RunServiceFacts, Finding};

/// The role the IAP service agent needs on Cloud Run services.
pub const INVOKER_ROLE: &str = "roles/run.invoker";

// ---- attributes ----------------------------------------------------------------------------

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

/// The `grant_iap_invoker` attribute, `true` unless set.
pub fn grant_iap_invoker_attribute(what: &str) -> Attribute {
    Attribute::bool("grant_iap_invoker").optional().computed().default(true).description(format!(
        "Grant `roles/run.invoker` on {what} to the IAP service agent `service-PROJECT_NUMBER@gcp-sa-iap.iam.gserviceaccount.com`, provisioning the agent first. Defaults to `true`. Without this grant users who pass IAP get 403 \"Your client does not have permission to get URL\"."
    ))
}

/// The computed `iap_enabled` attribute of an IAP-protected `what`.
pub fn iap_enabled_attribute(what: &str) -> Attribute {
    Attribute::bool("iap_enabled").computed().description(format!(
        "Whether IAP is enabled on the {what} as last read. A change made outside Terraform shows as drift and the next apply restores it."
    ))
}

/// The `id` attribute.
pub fn id_attribute(format: &str) -> Attribute {
    Attribute::string("id")
        .computed()
        .description(format!("Identifier of the resource: `{format}`."))
}

// ---- checks --------------------------------------------------------------------------------

/// The check names `ignore_checks` turns off (none while unknown).
pub fn ignored(ignore_checks: &Attr<BTreeSet<String>>) -> BTreeSet<String> {
    ignore_checks.get().cloned().unwrap_or_default()
}

/// Checks shared by every resource: `ignore_checks` names and a valid `project`.
pub fn validate_common(
    project: &Attr<String>,
    ignore_checks: &Attr<BTreeSet<String>>,
) -> Diagnostics {
    let mut diags = validation::ignore_checks_known(&ignored(ignore_checks));
    if let Some(p) = project.get().filter(|p| !names::is_project(p)) {
        diags.attribute_error(
            AttributePath::attr("project"),
            "Invalid project",
            format!("{p:?} is not a project id or number: a project id has 6 to 30 lower-case letters, digits or hyphens and starts with a letter."),
        );
    }
    diags
}

/// How each name attribute is checked: (attribute, valid, summary, what is wrong with the value).
type NameRule = (&'static str, fn(&str) -> bool, &'static str, &'static str);

const NAME_RULES: [NameRule; 4] = [
    ("service", names::is_run_service, "Invalid service name", "is not a Cloud Run service name: lower-case letters, digits and hyphens, starting with a letter, at most 49 characters. Give the name, not the full resource path."),
    ("location", names::is_region, "Invalid location", "is not a region such as us-central1; Cloud Run services live in regions, not zones."),
    ("backend_service", names::is_compute_name, "Invalid backend service name", "is not a backend service name: lower-case letters, digits and hyphens, starting with a letter, at most 63 characters. Give the name, not its URL."),
    ("region", names::is_region, "Invalid region", "is not a region such as us-central1. Leave region unset for a global backend service."),
];

/// An error on the name attribute `attribute` when its value is known and not a valid name.
pub fn check_name(diags: &mut Diagnostics, attribute: &str, value: &Attr<String>) {
    let Some((_, valid, summary, why)) = NAME_RULES.iter().find(|r| r.0 == attribute) else {
        return;
    };
    if let Some(v) = value.get().filter(|v| !valid(v)) {
        let path = AttributePath::attr(attribute);
        diags.attribute_error(path, *summary, format!("{v:?} {why}"));
    }
}

/// Plans `project` from the provider when the config leaves it null; an error when neither has one.
pub fn plan_project(
    ctx: &Context,
    config: &Attr<String>,
    planned: &mut Attr<String>,
) -> Diagnostics {
    if !config.is_null() {
        return Diagnostics::new();
    }
    match ctx.project(None) {
        Some(p) => {
            *planned = Attr::from(p);
            Diagnostics::new()
        }
        None => Diagnostic::error(
            "No project",
            "Set project on this resource or in the provider block (or GOOGLE_PROJECT in the environment).",
        )
        .at(AttributePath::attr("project"))
        .into(),
    }
}

/// The failure of an apply whose plan left `what` unknown: a provider bug.
pub fn incomplete_plan<M>(prior: Option<M>, what: &str) -> Failure<M> {
    let detail = format!("{what} must be known at apply. This is a bug in the provider.");
    Failure::new(prior, Diagnostic::error("Incomplete plan", detail))
}

/// A diagnostic for a failed API call: what was being done, and Google's own message.
pub fn api_error(doing: &str, error: &google::Error) -> Diagnostic {
    Diagnostic::error(format!("Failed to {doing}"), format!("{error}"))
}

// ---- the project ---------------------------------------------------------------------------

/// The number of a project given by id or number, read once per process.
pub async fn project_number(ctx: &Context, project: &str) -> Result<String, Diagnostic> {
    match ctx.project_info(project).await {
        Ok(p) => Ok(p.project_number.clone()),
        Err(e) => Err(api_error(&format!("read project {project}"), &e)),
    }
}

/// The project number a state already records, else looked up.
pub async fn recorded_project_number(
    ctx: &Context,
    recorded: &Attr<String>,
    project: &str,
) -> Result<String, Diagnostic> {
    match recorded.get() {
        Some(n) => Ok(n.clone()),
        None => project_number(ctx, project).await,
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

// ---- target reads --------------------------------------------------------------------------

/// Reads what the checks need to know about a Cloud Run service; `None` when it does not exist.
pub async fn run_service_facts(
    ctx: &Context,
    name: &ServiceName,
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

/// Whether the Cloud Run service or backend service behind an IAP resource exists.
pub async fn target_exists(ctx: &Context, target: &IapResource) -> Result<bool, google::Error> {
    let project = target.project.as_str();
    let found = match &target.target {
        IapTarget::CloudRun { region, service } => {
            let name = google::ServiceName::new(project, region.as_str(), service.as_str());
            ctx.clients.run.service(&name).await.map(|_| ())
        }
        IapTarget::BackendService { name } => ctx
            .clients
            .compute
            .backend_service(&google::BackendServiceRef::global(project, name.as_str()))
            .await
            .map(|_| ()),
        IapTarget::RegionBackendService { region, name } => ctx
            .clients
            .compute
            .backend_service(&google::BackendServiceRef::regional(
                project,
                region.as_str(),
                name.as_str(),
            ))
            .await
            .map(|_| ()),
    };
    match found {
        Ok(()) => Ok(true),
        Err(e) if e.is_not_found() => Ok(false),
        Err(e) => Err(e),
    }
}

/// Whether the IAP resource has a custom OAuth client as Google reports it now: the backend
/// service's `iap.oauth2ClientId`, or the IAP settings' `accessSettings.oauthSettings.clientId`.
pub async fn custom_oauth_client(
    ctx: &Context,
    target: &IapResource,
) -> Result<bool, google::Error> {
    let project = target.project.as_str();
    let backend = match &target.target {
        IapTarget::CloudRun { .. } => None,
        IapTarget::BackendService { name } => {
            Some(google::BackendServiceRef::global(project, name.as_str()))
        }
        IapTarget::RegionBackendService { region, name } => Some(
            google::BackendServiceRef::regional(project, region.as_str(), name.as_str()),
        ),
    };
    if let Some(r) = backend {
        let backend = ctx.clients.compute.backend_service(&r).await?;
        let client = backend
            .iap
            .as_ref()
            .and_then(|i| i.oauth2_client_id.as_deref());
        if client.is_some_and(|c| !c.trim().is_empty()) {
            return Ok(true);
        }
    }
    let settings = ctx.clients.iap.iap_settings(&target.to_string()).await?;
    Ok(settings.oauth_client_id.is_some())
}

/// The IAP resource with its project written as a number: one name for one policy, whichever form
/// the configuration uses. It keys the read cache and the write lock.
pub async fn canonical(ctx: &Context, resource: &str) -> Result<IapResource, Diagnostic> {
    let parsed = IapResource::parse(resource).map_err(|e| {
        Diagnostic::error("Invalid IAP resource name", e).at(AttributePath::attr("resource"))
    })?;
    if names::is_project_number(&parsed.project) {
        return Ok(parsed);
    }
    let project = ctx.project_info(&parsed.project).await.map_err(|e| {
        api_error(&format!("read project {}", parsed.project), &e)
            .at(AttributePath::attr("resource"))
    })?;
    Ok(parsed.with_project(&project.project_number))
}

// ---- the IAP service agent -----------------------------------------------------------------

/// Private state: what this resource instance did that the API cannot tell, kept by Terraform
/// next to the state.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Private {
    /// Members this resource added as roles/run.invoker, by Cloud Run service (`project/location/name`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub invoker_grants: BTreeMap<String, String>,
}

/// The IAP service agent of one project.
pub struct Agent {
    pub project: String,
    pub project_number: String,
    /// `serviceAccount:service-{number}@gcp-sa-iap.iam.gserviceaccount.com`.
    pub member: String,
}

impl Agent {
    pub fn new(project: &str, project_number: &str) -> Self {
        Self {
            project: project.to_string(),
            project_number: project_number.to_string(),
            member: format!(
                "serviceAccount:{}",
                google::iap_service_agent_email(project_number)
            ),
        }
    }

    /// Creates the agent if the project does not have it yet, and waits for it.
    pub async fn provision(&self, ctx: &Context, deadline: Instant) -> Result<(), Diagnostic> {
        ctx.clients
            .service_usage
            .iap_service_agent(&self.project, &self.project_number, deadline)
            .await
            .map(drop)
            .map_err(|e| api_error("provision the IAP service agent", &e))
    }

    /// Grants the agent roles/run.invoker on `service`, recording it in `private` when this call
    /// added it or `adopt` says it is this resource's own from an interrupted earlier apply.
    pub async fn grant(
        &self,
        ctx: &Context,
        service: &ServiceName,
        adopt: impl std::future::Future<Output = bool>,
        private: &mut Private,
        deadline: Instant,
    ) -> Result<(), Diagnostic> {
        let mut added = false;
        ctx.clients
            .run
            .modify_iam_policy(service, deadline, |policy| {
                added = policy.add_member(INVOKER_ROLE, &self.member, None);
                added
            })
            .await
            .map_err(|e| {
                api_error(
                    &format!("grant roles/run.invoker on {service} to the IAP service agent"),
                    &e,
                )
            })?;
        if added || adopt.await {
            private
                .invoker_grants
                .insert(service.to_string(), self.member.clone());
        }
        Ok(())
    }

    /// Whether the agent holds roles/run.invoker on `service` now (false when unreadable).
    pub async fn granted(
        &self,
        ctx: &Context,
        service: &ServiceName,
    ) -> Result<bool, google::Error> {
        let policy = ctx.clients.run.iam_policy(service).await?;
        Ok(policy.has_member(INVOKER_ROLE, &self.member, None))
    }
}

/// Removes every invoker grant `private` records, forgetting each one removed; the first failure
/// is returned after trying them all.
pub async fn revoke_grants(
    ctx: &Context,
    private: &mut Private,
    deadline: Instant,
) -> Result<(), Diagnostic> {
    let mut first_error = None;
    for (key, member) in private.invoker_grants.clone() {
        let Ok(name) = parse_service_key(&key) else {
            continue;
        };
        let revoked = ctx
            .clients
            .run
            .modify_iam_policy(&name, deadline, |policy| {
                policy.remove_member(INVOKER_ROLE, &member, None)
            })
            .await;
        match revoked {
            Ok(_) => {}
            Err(e) if e.is_not_found() => {}
            Err(e) => {
                let doing = format!("remove the invoker grant this resource added on {name}");
                first_error.get_or_insert(api_error(&doing, &e));
                continue;
            }
        }
        private.invoker_grants.remove(&key);
    }
    first_error.map_or(Ok(()), Err)
}

/// Parses the `project/location/name` keys of [`Private::invoker_grants`].
fn parse_service_key(key: &str) -> Result<ServiceName, String> {
    let parsed = names::parse_service_id(key)?;
    match (parsed.project, parsed.location) {
        (Some(p), Some(l)) => Ok(ServiceName::new(p, l, parsed.service)),
        _ => Err(format!("{key:?} is not a full service name")),
    }
}
