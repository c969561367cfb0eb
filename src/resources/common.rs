//! Pieces every resource type shares, once: common attributes and checks, the project lookup, the
//! IAP service agent and the invoker grants it is given, and the reads plan-time checks need.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

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
    if ctx.project_unknown() {
        // The provider's project comes from a resource not applied yet: not the environment's.
        *planned = Attr::unknown();
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

    /// Grants the agent roles/run.invoker on `service`; true when this call added it (a grant
    /// found in place is somebody else's and never claimed). Right after the agent is provisioned
    /// IAM may not know it yet (400 "Service account ... does not exist"): retried until `deadline`,
    /// then the error names the agent.
    pub async fn grant(
        &self,
        ctx: &Context,
        service: &ServiceName,
        deadline: Instant,
    ) -> Result<bool, Diagnostic> {
        let mut pause = Duration::from_millis(500);
        loop {
            let mut added = false;
            let result = ctx
                .clients
                .run
                .modify_iam_policy(service, deadline, |policy| {
                    added = policy.add_member(INVOKER_ROLE, &self.member, None);
                    added
                })
                .await;
            let doing = format!("grant roles/run.invoker on {service} to the IAP service agent");
            match result {
                Ok(_) => return Ok(added),
                Err(e) if is_agent_not_propagated(&e) => {
                    if Instant::now() + pause >= deadline {
                        let e = e.with_hint(format!(
                            "The IAP service agent {} was still unknown to IAM when the timeout ran out; Google takes a while to propagate a new agent. Apply again, or raise the resource's timeouts",
                            self.member
                        ));
                        return Err(api_error(&doing, &e));
                    }
                    tracing::debug!(%service, agent = %self.member, "IAP service agent not propagated yet; retrying");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(5));
                }
                Err(e) => return Err(api_error(&doing, &e)),
            }
        }
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

/// Whether an error says the IAP service agent named in a policy does not exist yet: Google
/// propagates a just-provisioned agent for a while (400 "Service account ... does not exist").
fn is_agent_not_propagated(error: &google::Error) -> bool {
    error.http_status() == Some(400) && {
        let message = error.message();
        message.contains("does not exist") && message.contains("gcp-sa-iap")
    }
}

/// The grants an earlier apply recorded: the state's `invoker_grants`, and those a state written
/// by an older version kept in private state (they move to the state on the next apply).
pub fn recorded_grants(
    state: Option<&Attr<BTreeSet<String>>>,
    private: &Private,
) -> BTreeSet<String> {
    let mut grants = state.and_then(Attr::get).cloned().unwrap_or_default();
    grants.extend(
        private
            .invoker_grants
            .keys()
            .filter_map(|k| parse_service_key(k).ok())
            .map(|s| s.to_string()),
    );
    grants
}

/// The IAP-enabled paths that still route to a Cloud Run service: its own direct IAP (when
/// `direct`) and every backend service with IAP on (global, or in the service's region) over a
/// serverless NEG for it, except `except`. Described for diagnostics.
pub async fn iap_paths_to(
    ctx: &Context,
    name: &ServiceName,
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
    let backends = iap_backends_to(ctx, name, except).await?;
    paths.extend(
        backends
            .iter()
            .map(|b| format!("backend service {b} (IAP on)")),
    );
    Ok(paths)
}

/// The backend services with IAP on (global, or in the service's region) over a serverless NEG
/// for a Cloud Run service, except `except`.
pub async fn iap_backends_to(
    ctx: &Context,
    name: &ServiceName,
    except: Option<&google::BackendServiceRef>,
) -> Result<Vec<google::BackendServiceRef>, google::Error> {
    let mut found = Vec::new();
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
        return Ok(found);
    }
    for scope in [
        google::Scope::Global,
        google::Scope::Region(name.location.clone()),
    ] {
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
                let _collection = parts.next();
                parts.next() == Some(name.location.as_str()) && negs.iter().any(|n| n == neg)
            });
            if fronts {
                found.push(this);
            }
        }
    }
    Ok(found)
}

/// Removes the recorded grants of `member` but those `keep` names (forgetting each one removed),
/// except, when `except` is given, where another IAP-enabled path than `except` still routes to
/// the service: such a grant stays, and is
/// forgotten too (whoever manages that path owns it now). A lookup failure keeps the grant:
/// removing access someone may need is worse than leaving it. The first failure is returned after
/// trying them all.
pub async fn release_grants(
    ctx: &Context,
    member: &str,
    grants: &mut BTreeSet<String>,
    keep: impl Fn(&str) -> bool,
    except: Option<Option<&google::BackendServiceRef>>,
    deadline: Instant,
) -> Result<(), Diagnostic> {
    let mut first_error = None;
    for key in grants.clone() {
        if keep(&key) {
            continue;
        }
        let Ok(name) = parse_service_key(&key) else {
            grants.remove(&key);
            continue;
        };
        // `except: None`: revoke regardless (the resource stops granting, by configuration).
        let still_needed = match except {
            None => false,
            Some(except) => match iap_paths_to(ctx, &name, true, except).await {
                Ok(paths) => !paths.is_empty(),
                Err(_) => true,
            },
        };
        if still_needed {
            tracing::info!(service = %name, "invoker grant kept: another IAP-enabled path still routes to the service");
            grants.remove(&key);
            continue;
        }
        let revoked = ctx
            .clients
            .run
            .modify_iam_policy(&name, deadline, |policy| {
                policy.remove_member(INVOKER_ROLE, member, None)
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
        grants.remove(&key);
    }
    first_error.map_or(Ok(()), Err)
}

/// The unconditional `roles/run.invoker` members of a project's own policy, read only when
/// `missing_invoker` can fire (`grant_iap_invoker` false); `None` when not read or unreadable.
pub async fn project_invokers(
    ctx: &Context,
    project: &str,
    grant: Option<bool>,
) -> Option<Vec<String>> {
    if grant != Some(false) {
        return None;
    }
    ctx.clients
        .resource_manager
        .project_iam_policy(project)
        .await
        .ok()
        .map(|p| p.members(INVOKER_ROLE, None))
}

/// Plans `project` for an attribute that defaults to the provider's: an effective change (a new
/// provider default) replaces the resource; a project id and its number name the same project and
/// change nothing.
pub async fn plan_project_identity(
    ctx: &Context,
    prior: Option<&Attr<String>>,
    config: &Attr<String>,
    planned: &mut Attr<String>,
    requires_replace: &mut Vec<AttributePath>,
) {
    let path = AttributePath::attr("project");
    let (Some(before), Some(now)) = (prior.and_then(Attr::get), planned.get()) else {
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
        if config.is_null() {
            *planned = Attr::Known(before.clone());
        }
    } else if !requires_replace.contains(&path) {
        requires_replace.push(path);
    }
}

/// A different effective value of `attribute` (`location`, `role`: their defaults may change)
/// replaces the resource.
pub fn replace_on_change<T: PartialEq>(
    prior: Option<&Attr<T>>,
    planned: &Attr<T>,
    attribute: &str,
    requires_replace: &mut Vec<AttributePath>,
) {
    let path = AttributePath::attr(attribute);
    let changed = match (prior.and_then(Attr::get), planned.get()) {
        (Some(before), Some(now)) => before != now,
        _ => false,
    };
    if changed && !requires_replace.contains(&path) {
        requires_replace.push(path);
    }
}

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

/// Parses the `project/location/name` keys of [`Private::invoker_grants`].
fn parse_service_key(key: &str) -> Result<ServiceName, String> {
    let parsed = names::parse_service_id(key)?;
    match (parsed.project, parsed.location) {
        (Some(p), Some(l)) => Ok(ServiceName::new(p, l, parsed.service)),
        _ => Err(format!("{key:?} is not a full service name")),
    }
}

/// The state a failed switch of IAP to on leaves: on create, the object `landed` describes when
/// the change landed anyway (`on`: IAP as read after the failure, e.g. an operation that timed
/// out) and nothing otherwise; on update, the prior object as `keep` corrects it.
pub fn after_failed_enable<M>(
    prior: Option<M>,
    on: Option<bool>,
    landed: impl FnOnce() -> M,
    keep: impl FnOnce(&mut M, Option<bool>),
) -> Option<M> {
    match prior {
        None if on == Some(true) => Some(landed()),
        None => None,
        Some(mut p) => {
            keep(&mut p, on);
            Some(p)
        }
    }
}

// ---- the checks right before the first change --------------------------------------------------

/// What one fresh read and the live checks found, for [`judge_before_change`].
pub struct Judgement<T> {
    /// What was read, for the change that follows.
    pub read: T,
    pub judged: validation::timing::Judged,
    /// The record keys of the Cloud Run services the resource protects.
    pub services: Vec<String>,
}

/// The live checks right before the first change, each time on a fresh read (`judge`): an error
/// finding stops the apply with nothing changed. Another IAP layer still on in front of the same
/// services (a pending `double_iap`), or being removed by this process, is waited for: a move
/// between direct and load-balancer IAP removes it in the same run, and Terraform runs the two
/// halves in no set order. The wait reads again whenever such a removal finishes here, and every few
/// seconds, until `deadline`; the pending finding is then the error.
pub async fn judge_before_change<T, F, Fut>(
    ctx: &Context,
    ignore: &BTreeSet<String>,
    deadline: Instant,
    mut judge: F,
) -> Result<T, Diagnostic>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Judgement<T>, Diagnostic>>,
{
    let started = Instant::now();
    let mut pause = Duration::from_millis(250);
    loop {
        // Taken before the read: a removal finishing during it still wakes the wait below.
        let mut seen = ctx.removals();
        let Judgement {
            read,
            judged,
            services,
        } = judge().await?;
        let mut definite = judged.usual;
        definite.extend(judged.forced);
        let reported = validation::report(definite, ignore);
        if let Some(d) = reported.into_iter().find(Diagnostic::is_error) {
            return Err(d);
        }
        let pending = !validation::report(judged.pending.clone(), ignore).is_empty();
        let removing = ctx.removing(&services);
        if !pending && !removing {
            return Ok(read);
        }
        if Instant::now() >= deadline {
            let waited = started.elapsed();
            let late = validation::timing::pending_at_apply(judged.pending, ignore, waited);
            return Err(late.into_iter().next().unwrap_or_else(|| {
                Diagnostic::error(
                    "IAP removal still running",
                    format!("A removal of IAP in front of {} in this run was still running when this resource's timeout ran out; nothing was changed. Apply again.", services.join(", ")),
                )
            }));
        }
        tracing::info!(services = ?services, pending, removing, "waiting for the other IAP layer to turn off");
        ctx.await_removal(&mut seen, pause, deadline).await;
        pause = (pause * 2).min(Duration::from_secs(5));
    }
}
