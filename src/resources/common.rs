//! Pieces every resource type shares, once: common attributes, the project lookup, the invoker
//! grants the IAP service agent is given, the reads plan-time checks need, the steps of an apply.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::context::Context;
use crate::framework::timeouts::Timeouts;
use crate::framework::{Attr, Attribute, AttributePath, Diagnostic, Diagnostics, Failure, Plan};
use crate::google::{self, IapAgent, ServiceName};
use crate::names::{self, IapResource, IapTarget};
use crate::validation::timing::{AtPlan, Judged};
use crate::validation::{self, facts::RunServiceFacts, Finding};

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

/// `grant_iap_invoker` (the grant on `granted_on`), `ignore_checks`, `project_number` and the IAP
/// resource name of the `what` (`name`: its form), in the schema order of both IAP resources.
pub fn grant_and_identity(granted_on: &str, what: &str, name: &str) -> [Attribute; 4] {
    [
        Attribute::bool("grant_iap_invoker").optional().computed().default(true).description(format!(
            "Grant `roles/run.invoker` on {granted_on} to the IAP service agent `service-PROJECT_NUMBER@gcp-sa-iap.iam.gserviceaccount.com`, provisioning the agent first. Defaults to `true`. Without this grant users who pass IAP get 403 \"Your client does not have permission to get URL\"."
        )),
        ignore_checks_attribute(),
        Attribute::string("project_number").computed().description("Number of the project."),
        Attribute::string("iap_resource_name").computed().description(format!(
            "The IAP resource name of the {what}, {name}: use it as `resource` of `iaprun_access_binding`."
        )),
    ]
}

/// `iap_enabled` (on the `what`), `iap_invoker_granted` (`granted`), `invoker_grants` and
/// `checks_after`, in the schema order of both IAP resources.
pub fn iap_state(what: &str, granted: &str) -> [Attribute; 4] {
    [
        Attribute::bool("iap_enabled").computed().description(format!(
            "Whether IAP is enabled on the {what} as last read. A change made outside Terraform shows as drift and the next apply restores it."
        )),
        Attribute::bool("iap_invoker_granted").computed().description(granted),
        // The grants this resource added, recorded in state so that a destroy (a replacement's
        // destroy half included) can undo exactly them.
        Attribute::string_set("invoker_grants").computed().description(
            "The Cloud Run services (`projects/{project}/locations/{location}/services/{name}`) on which this resource added `roles/run.invoker` for the IAP service agent. Destroying the resource removes exactly these grants (a grant that existed before is never claimed), unless another IAP-enabled path still routes to the service. Such a grant is kept, leaves this record, and is recorded by no other resource, so it stays after the other path is gone: remove it by hand with `gcloud run services remove-iam-policy-binding` once nothing needs it. A grant whose other paths cannot be looked up (an API error) is kept too, with a warning: turning `grant_iap_invoker` off (or taking its service from behind the backend) leaves it recorded, and the next plan shows an update whose apply tries again; a destroy says it was left in place, with the command that removes it.",
        ),
        // The one-run fix path (docs/checks.md).
        Attribute::string_list("checks_after").optional().description(
            "Values of the resources whose change in this run fixes a finding (for example `[tostring(google_compute_backend_service.app.enable_cdn)]` or a `terraform_data` id). While one is unknown at plan, or differs from the last apply, the live checks wait for apply and run there on a fresh read, after those resources, before any change. See the one-run fix path in the checks documentation.",
        ),
    ]
}

/// The `id` attribute.
pub fn id_attribute(format: &str) -> Attribute {
    Attribute::string("id")
        .computed()
        .description(format!("Identifier of the resource: `{format}`."))
}

// ---- checks --------------------------------------------------------------------------------

/// The target of an apply with its project number: the plan left it unknown only by a provider bug
/// (`what`: the attributes it comes from, `planned` its project); an unreadable project changes
/// nothing.
pub async fn apply_target<M: Clone, T>(
    ctx: &Context,
    prior: &Option<M>,
    (target, planned): (Option<T>, &Iap),
    what: &str,
) -> Result<(T, String), Failure<M>> {
    let Some(target) = target else {
        let detail = format!("{what} must be known at apply. This is a bug in the provider.");
        let d = Diagnostic::error("Incomplete plan", detail);
        return Err(Failure::new(prior.clone(), d));
    };
    let project = planned.project.as_deref().unwrap_or_default();
    let number = project_number(ctx, project).await;
    Ok((target, number.map_err(Failure::unchanged(prior))?))
}

/// A diagnostic for a failed API call: what was being done, and Google's own message.
pub fn api_error(doing: &str, error: &google::Error) -> Diagnostic {
    Diagnostic::error(format!("Failed to {doing}"), format!("{error}"))
}

/// The result of a call on an object that may be gone: gone is `Ok(None)`, another error says
/// what was being done.
pub fn unless_gone<T>(
    result: Result<T, google::Error>,
    doing: impl FnOnce() -> String,
) -> Result<Option<T>, Diagnostic> {
    google::found(result).map_err(|e| api_error(&doing(), &e))
}

/// The first error among the findings `ignore_checks` leaves: right before a change, it stops it.
pub fn refuse(
    findings: Vec<Finding>,
    ignore_checks: &Attr<BTreeSet<String>>,
) -> Result<(), Diagnostic> {
    let found = validation::report(findings, &validation::ignored(ignore_checks));
    found
        .into_iter()
        .find(Diagnostic::is_error)
        .map_or(Ok(()), Err)
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

/// Project-level checks: the IAP API is enabled and, for direct IAP, the project has an
/// organization. A read that fails leaves its check not run (a warning), but a project not found:
/// the read of the project number before the checks reports that.
pub async fn project_findings(ctx: &Context, project: &str, direct: bool) -> Judged {
    let mut judged = Judged::default();
    let usage = &ctx.clients.service_usage;
    match usage.service_state(project, google::IAP_SERVICE).await {
        Ok(state) => judged.usual.extend(validation::target::iap_api_disabled(
            project,
            Some(&state),
        )),
        Err(e) if e.is_not_found() => {}
        Err(e) => judged.not_run.push(validation::timing::not_run(
            "iap_api_disabled",
            "the Identity-Aware Proxy API enabled in the project",
            &format!("reading the state of {} in project {project} from Service Usage failed: {e}", google::IAP_SERVICE),
            &format!("Give the provider's credentials serviceusage.services.get in the project (for example through roles/serviceusage.serviceUsageViewer), or check by hand that the API is enabled (gcloud services list --enabled --project={project})"),
        )),
    }
    if !direct {
        return judged;
    }
    match ctx.project_info(project).await {
        Ok(info) => judged.usual.extend(validation::target::no_organization(
            project,
            Some(info.parent.is_some()),
        )),
        Err(e) if e.is_not_found() => {}
        Err(e) => judged.not_run.push(validation::timing::not_run(
            "no_organization",
            "direct IAP in a project without an organization",
            &format!("reading project {project} from Resource Manager failed: {e}"),
            &format!("Give the provider's credentials resourcemanager.projects.get on the project (for example through roles/browser), or check by hand that it belongs to an organization (gcloud projects get-ancestors {project})"),
        )),
    }
    judged
}

// ---- target reads --------------------------------------------------------------------------

/// Reads what the checks need to know about a Cloud Run service; `None` when it does not exist.
pub async fn run_service_facts(
    ctx: &Context,
    name: &ServiceName,
) -> Result<Option<RunServiceFacts>, google::Error> {
    let Some(service) = google::found(ctx.clients.run.service(name).await)? else {
        return Ok(None);
    };
    let (invoker_members, refused) = match ctx.clients.run.iam_policy(name).await {
        Ok(policy) => (Some(policy.members(google::INVOKER_ROLE, None)), None),
        // The checks that need the policy say they did not run.
        Err(e) if e.is_permission_denied() => (None, Some(e.to_string())),
        Err(e) => return Err(e),
    };
    let mut facts = service_facts(&name.location, &name.service, &service, invoker_members);
    facts.invoker_policy_error = refused;
    Ok(Some(facts))
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
        invoker_policy_error: None,
    }
}

/// The backend service an IAP resource names (`None`: a Cloud Run service).
fn backend_of(target: &IapResource) -> Option<google::BackendServiceRef> {
    let project = target.project.as_str();
    match &target.target {
        IapTarget::CloudRun { .. } => None,
        IapTarget::BackendService { name } => {
            Some(google::BackendServiceRef::global(project, name))
        }
        IapTarget::RegionBackendService { region, name } => Some(
            google::BackendServiceRef::regional(project, region.as_str(), name.as_str()),
        ),
    }
}

/// Whether the Cloud Run service or backend service behind an IAP resource exists.
pub async fn target_exists(ctx: &Context, target: &IapResource) -> Result<bool, google::Error> {
    let found = match (&target.target, backend_of(target)) {
        (_, Some(r)) => ctx.clients.compute.backend_service(&r).await.map(drop),
        (IapTarget::CloudRun { region, service }, None) => {
            let name = ServiceName::new(target.project.as_str(), region.as_str(), service.as_str());
            ctx.clients.run.service(&name).await.map(drop)
        }
        _ => Ok(()),
    };
    Ok(google::found(found)?.is_some())
}

/// Whether the IAP resource has a custom OAuth client as Google reports it now: the backend
/// service's `iap.oauth2ClientId`, or the IAP settings' `accessSettings.oauthSettings.clientId`.
pub async fn custom_oauth_client(
    ctx: &Context,
    target: &IapResource,
) -> Result<bool, google::Error> {
    if let Some(r) = backend_of(target) {
        let backend = ctx.clients.compute.backend_service(&r).await?;
        if backend.oauth2_client_id().is_some() {
            return Ok(true);
        }
    }
    let settings = ctx.clients.iap.iap_settings(&target.to_string()).await?;
    Ok(settings.oauth_client_id.is_some())
}

/// [`custom_oauth_client`] as planned earlier in this run (a settings or backend resource), else as
/// read once per process.
pub async fn planned_custom_client(
    ctx: &Context,
    target: &IapResource,
) -> Result<bool, google::Error> {
    let key = target.to_string();
    let custom = || custom_oauth_client(ctx, target);
    ctx.custom_oauth_clients.get_or_fetch(&key, custom).await
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

/// Removes the recorded grants of the `agent` but those `keep` names (forgetting each one removed),
/// except where an IAP-enabled path still routes to the service: the service's own direct IAP
/// (when `direct`) or a backend service with IAP on other than `except`. Such a grant stays, and
/// is forgotten too (whoever manages that path owns it now). A lookup failure keeps the grant:
/// removing access someone may need is worse than leaving it; it stays recorded too, so a later
/// apply or destroy releases it, and a warning of the call `by` says so in `warnings`. Returns the
/// first failure to remove one after trying them all.
pub async fn release_grants(
    ctx: &Context,
    agent: &IapAgent,
    grants: &mut BTreeSet<String>,
    keep: impl Fn(&str) -> bool,
    (direct, except): (bool, Option<&google::BackendServiceRef>),
    deadline: Instant,
    (by, warnings): (Releaser, &mut Diagnostics),
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
        let still_needed = match ctx.clients.iap_paths_to(&name, direct, except).await {
            Ok(paths) => !paths.is_empty(),
            Err(e) => {
                // Unknown whether another path needs it: not removed, and still this resource's.
                tracing::warn!(service = %name, error = %e, "invoker grant kept: could not look up the other IAP paths to the service");
                warnings.push(grant_left_in_place(agent, &name, &e, by));
                continue;
            }
        };
        if still_needed {
            tracing::info!(service = %name, "invoker grant kept: another IAP-enabled path still routes to the service");
            grants.remove(&key);
            continue;
        }
        if let Err(e) = agent.revoke(&ctx.clients, &name, deadline).await {
            let doing = format!("remove the invoker grant this resource added on {name}");
            first_error.get_or_insert(api_error(&doing, &e));
            continue;
        }
        grants.remove(&key);
    }
    first_error.map_or(Ok(()), Err)
}

/// The call that releases grants, for what a grant kept on a failed lookup becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Releaser {
    /// A create or update: the grant stays recorded, and the next apply tries again.
    Apply,
    /// A destroy: the grant's record goes with the resource.
    Destroy,
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
        .map(|p| p.members(google::INVOKER_ROLE, None))
}

/// Parses the `project/location/name` keys of [`Private::invoker_grants`] and the names of the
/// state's `invoker_grants`: the one parser of recorded grants.
pub fn parse_service_key(key: &str) -> Result<ServiceName, String> {
    let parsed = names::parse_service_id(key)?;
    match (parsed.project, parsed.location) {
        (Some(p), Some(l)) => Ok(ServiceName::new(p, l, parsed.service)),
        _ => Err(format!("{key:?} is not a full service name")),
    }
}

/// The state a failed switch of IAP to on leaves: on create, the object `landed` describes when
/// the change landed anyway (`on`: IAP as read after the failure, e.g. an operation that timed
/// out) and nothing otherwise; on update, the prior object with IAP as read and the grants held.
pub fn after_failed_enable<M>(
    prior: Option<M>,
    on: Option<bool>,
    grants: &BTreeSet<String>,
    iap: fn(&mut M) -> &mut Iap,
    landed: impl FnOnce() -> M,
) -> Option<M> {
    match prior {
        None if on == Some(true) => Some(landed()),
        None => None,
        Some(mut p) => {
            let state = iap(&mut p);
            state.iap_enabled = on.map_or(state.iap_enabled.clone(), Attr::Known);
            state.invoker_grants = Attr::Known(grants.clone());
            Some(p)
        }
    }
}

// ---- what both IAP resources share -----------------------------------------------------------

/// The attributes `iaprun_service_iap` and `iaprun_backend_iap` share: the project, the agent's
/// grant, the checks and their timing.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Iap {
    pub id: Attr<String>,
    pub project: Attr<String>,
    pub grant_iap_invoker: Attr<bool>,
    pub ignore_checks: Attr<BTreeSet<String>>,
    pub project_number: Attr<String>,
    pub iap_resource_name: Attr<String>,
    pub jwt_audience: Attr<String>,
    pub iap_enabled: Attr<bool>,
    pub iap_invoker_granted: Attr<bool>,
    pub invoker_grants: Attr<BTreeSet<String>>,
    pub checks_after: Attr<Vec<String>>,
    pub timeouts: Attr<Timeouts>,
}

impl Iap {
    /// What the configuration asks for here: a change in it is a change the user makes.
    pub fn intent(&self) -> impl PartialEq + '_ {
        (
            &self.project,
            &self.grant_iap_invoker,
            &self.ignore_checks,
            &self.timeouts,
        )
    }

    /// The state of an import: the project, and the grant on (its default).
    pub fn imported(project: &str) -> Iap {
        Iap {
            project: project.into(),
            grant_iap_invoker: Attr::Known(true),
            ..Iap::default()
        }
    }

    /// The attributes that follow from the target and the project number.
    pub fn identify(&mut self, id: String, project_number: &str, resource: String) {
        self.id = Attr::Known(id);
        self.project_number = project_number.into();
        self.iap_resource_name = Attr::Known(resource);
    }

    /// Whether an apply from `prior` (`None`: a create) turns this layer of IAP on: a create, a
    /// replacement, or IAP found off.
    pub fn switches_on(prior: Option<&Iap>, replacing: bool) -> bool {
        prior.is_none_or(|p| replacing || p.iap_enabled != Attr::Known(true))
    }

    /// Whether the grant is off while grants are still recorded: an apply kept them on a failed
    /// lookup of the other IAP paths, and the next apply tries again to release them.
    pub fn releases_recorded_grants(&self) -> bool {
        self.grant_iap_invoker.get() == Some(&false)
            && self.invoker_grants.get().is_some_and(|g| !g.is_empty())
    }

    /// After a refresh: a state from before grants were recorded in it (its private state holds
    /// them until the next apply), or an import, which added nothing, records none.
    pub fn read_grants(&mut self) {
        if self.invoker_grants.is_null() {
            self.invoker_grants = Attr::Known(BTreeSet::new());
        }
    }
}

/// The accessor of a model's [`Iap`] attributes.
pub type IapOf<M> = fn(&mut M) -> &mut Iap;

/// Plans `project` from the provider when the configuration leaves it null (an error when neither
/// has one). An effective change (a new provider default) replaces the resource: a new target,
/// never IAP moved in place; a project id and its number name the same project and change nothing.
pub async fn plan_project<M: Send>(
    ctx: &Context,
    plan: &mut Plan<M>,
    iap: IapOf<M>,
) -> Diagnostics {
    let config = iap(&mut plan.config).project.clone();
    let prior = plan
        .prior
        .as_mut()
        .and_then(|p| iap(p).project.get().cloned());
    let planned = &mut iap(&mut plan.planned).project;
    let path = AttributePath::attr("project");
    if config.is_null() {
        if ctx.project_unknown() {
            // The provider's project comes from a resource not applied yet: not the environment's.
            *planned = Attr::unknown();
        } else if let Some(p) = ctx.project(None) {
            *planned = Attr::from(p);
        } else {
            return Diagnostic::error(
                "No project",
                "Set project on this resource or in the provider block (or GOOGLE_PROJECT in the environment).",
            )
            .at(path)
            .into();
        }
    }
    let (Some(before), Some(now)) = (prior, planned.get()) else {
        return Diagnostics::new();
    };
    if before == *now {
        return Diagnostics::new();
    }
    let same = match (ctx.project_info(&before).await, ctx.project_info(now).await) {
        (Ok(a), Ok(b)) => a.project_number == b.project_number,
        _ => false,
    };
    let replace = &mut plan.requires_replace;
    if same {
        replace.retain(|p| *p != path);
        if config.is_null() {
            *planned = Attr::Known(before);
        }
    } else if !replace.contains(&path) {
        replace.push(path);
    }
    Diagnostics::new()
}

/// Plans IAP on, the agent's grant, and what the apply learns anew (`more`: the type's own
/// attributes change). Returns whether the apply changes anything, and when the checks report.
pub fn plan_apply<M>(
    plan: &mut Plan<M>,
    iap: IapOf<M>,
    intent_changed: bool,
    more: bool,
) -> (bool, AtPlan) {
    let replacing = !plan.requires_replace.is_empty();
    let prior = plan.prior.as_mut().map(|p| iap(p).clone());
    let planned = iap(&mut plan.planned);
    planned.iap_enabled = Attr::Known(true);
    match planned.grant_iap_invoker.get() {
        Some(true) => planned.iap_invoker_granted = Attr::Known(true),
        // Turning the grant off may revoke it, and so does the apply after one that kept a recorded
        // grant (a failed lookup); otherwise whoever manages the grant keeps it as read.
        _ if prior.as_ref().is_none_or(|p| {
            p.grant_iap_invoker.get() != Some(&false) || p.releases_recorded_grants()
        }) =>
        {
            planned.iap_invoker_granted = Attr::unknown()
        }
        _ => {}
    }
    let changing = prior.as_ref().is_none_or(|p| {
        replacing
            || intent_changed
            || more
            || p.iap_enabled != planned.iap_enabled
            || p.iap_invoker_granted != planned.iap_invoker_granted
    });
    if changing {
        // What this resource adds is learnt at apply.
        planned.invoker_grants = Attr::unknown();
    }
    if replacing {
        planned.id = Attr::unknown();
        planned.project_number = Attr::unknown();
        planned.iap_resource_name = Attr::unknown();
    }
    let deferred = validation::timing::checks_after_deferred(
        prior.as_ref().map(|p| &p.checks_after),
        &planned.checks_after,
    );
    let at = validation::timing::at_plan(prior.is_none() || replacing, deferred, intent_changed);
    (changing, at)
}

/// The grants an earlier apply recorded, recorded in state only from now on.
pub fn take_grants(prior: Option<&Iap>, private: &mut Private) -> BTreeSet<String> {
    let grants = recorded_grants(prior.map(|p| &p.invoker_grants), private);
    private.invoker_grants.clear();
    grants
}

/// The agent's grant on every service `behind` the target (when `grant`), recorded in `grants`
/// where this call added it; then the recorded grants no longer needed are released: all of them
/// once `grant` is off, and, for a `backend`, those on services no longer behind it (either way
/// unless another IAP-enabled path needs them). Returns whether the agent holds the grant on all of `behind`.
pub async fn converge_grants(
    ctx: &Context,
    agent: &IapAgent,
    grants: &mut BTreeSet<String>,
    (behind, backend): (&[ServiceName], Option<&google::BackendServiceRef>),
    grant: bool,
    deadline: Instant,
    warnings: &mut Diagnostics,
) -> Result<bool, Diagnostic> {
    // A grant kept on a failed lookup stays recorded: the next apply tries again.
    let kept = (Releaser::Apply, warnings);
    if !grant {
        // Stops granting by configuration; another IAP path to a service still needs the grant.
        // This resource's own layer does not count: direct IAP for a service, `backend` for one.
        let others = (backend.is_some(), backend);
        release_grants(ctx, agent, grants, |_| false, others, deadline, kept).await?;
        return Ok(agent.granted_everywhere(&ctx.clients, behind).await);
    }
    for name in behind {
        let granted = agent.grant(&ctx.clients, name, deadline).await;
        let doing = || format!("grant roles/run.invoker on {name} to the IAP service agent");
        if granted.map_err(|e| api_error(&doing(), &e))? {
            grants.insert(name.to_string());
        }
    }
    if let Some(r) = backend {
        let keep: BTreeSet<String> = behind.iter().map(|n| n.to_string()).collect();
        let keep = |k: &str| keep.contains(k);
        release_grants(ctx, agent, grants, keep, (true, Some(r)), deadline, kept).await?;
    }
    Ok(true)
}

/// On delete: releases the grants an earlier apply recorded, except where another IAP-enabled path
/// than the `backend` going away still routes to the service. A grant kept because that lookup
/// failed goes out of the state with the resource: it comes back as a warning, for the user to
/// remove by hand.
pub async fn release_recorded(
    ctx: &Context,
    prior: &Iap,
    private: &Private,
    backend: Option<&google::BackendServiceRef>,
    deadline: Instant,
    warnings: &mut Diagnostics,
) -> Result<(), Diagnostic> {
    let number = prior.project_number.as_deref().unwrap_or_default();
    let agent = IapAgent::new(prior.project.as_deref().unwrap_or_default(), number);
    let mut grants = recorded_grants(Some(&prior.invoker_grants), private);
    let keep = |_: &str| false;
    let others = (true, backend);
    // A failed destroy keeps the state, grants included: warnings only when it goes.
    let mut left = Diagnostics::new();
    let kept = (Releaser::Destroy, &mut left);
    release_grants(ctx, &agent, &mut grants, keep, others, deadline, kept).await?;
    warnings.extend(left);
    Ok(())
}

/// The warning of a call (`by`) that left the `agent`'s grant on `service` in place because the
/// lookup of the other IAP paths to it failed (`error`).
fn grant_left_in_place(
    agent: &IapAgent,
    service: &ServiceName,
    error: &google::Error,
    by: Releaser,
) -> Diagnostic {
    let ServiceName {
        project,
        location,
        service: id,
    } = service;
    let member = &agent.member;
    let role = google::INVOKER_ROLE;
    let remove = format!("gcloud run services remove-iam-policy-binding {id} --project={project} --region={location} --member={member} --role={role}");
    let (call, record, fix) = match by {
        Releaser::Destroy => (
            "destroy",
            "No resource records the grant any more.",
            format!("Once nothing needs it, remove it by hand:\n  {remove}"),
        ),
        Releaser::Apply => (
            "apply",
            "The grant stays recorded in this resource's invoker_grants, so the next apply tries again to remove it (and so does a destroy).",
            format!("Once the lookup can succeed (it reads the Cloud Run service, and lists the serverless NEGs and backend services of the project: run.services.get, compute.networkEndpointGroups.list, compute.backendServices.list), apply again; or, once nothing needs the grant, remove it by hand:\n  {remove}"),
        ),
    };
    Diagnostic::warning(
        "Invoker grant left in place",
        format!("This {call} left {role} for the IAP service agent ({member}) on Cloud Run service {service}: looking up the other IAP paths to the service failed, so it is unknown whether a load balancer with IAP still needs the grant, and removing access that may be needed is worse than leaving it. {record} Google's error: {error}\n\n{fix}"),
    )
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
/// seconds, until `deadline`; the pending finding is then the error. The checks the last read could
/// not run go to `warnings`.
pub async fn judge_before_change<T, F, Fut>(
    ctx: &Context,
    ignore_checks: &Attr<BTreeSet<String>>,
    deadline: Instant,
    warnings: &mut Diagnostics,
    mut judge: F,
) -> Result<T, Diagnostic>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Judgement<T>, Diagnostic>>,
{
    let ignore = validation::ignored(ignore_checks);
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
        let not_run = judged.not_run_warnings(&ignore);
        let mut definite = judged.usual;
        definite.extend(judged.forced);
        let refused = refuse(definite, ignore_checks);
        let pending = !validation::report(judged.pending.clone(), &ignore).is_empty();
        let removing = ctx.removing(&services);
        if refused.is_err() || !pending && !removing {
            warnings.extend(not_run);
            return refused.map(|()| read);
        }
        if Instant::now() >= deadline {
            warnings.extend(not_run);
            let waited = started.elapsed();
            let late = validation::timing::pending_at_apply(judged.pending, &ignore, waited);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::emulator::{Emulator, FaultSpec, Options};
    use crate::google::{Clients, Config};

    const PROJECT: &str = "findings-project";

    /// An emulator whose reads of the IAP API's state and of the project answer `status`, and a
    /// context on it.
    async fn failing_reads(status: u16) -> (Emulator, Context) {
        let options = Options {
            open: true,
            ..Options::default()
        };
        let emulator = crate::emulator::spawn(options).await.expect("emulator");
        for path in ["/services/iap\\.googleapis\\.com$", "^/v1/projects/[^/]+$"] {
            let fault: FaultSpec = serde_json::from_value(serde_json::json!({
                "kind": "status", "status": status, "method": "GET", "path_regex": path,
                "probability": 1.0, "message": "refused by the test"
            }))
            .expect("fault");
            emulator.add_fault(fault).expect("fault added");
        }
        let clients = Clients::new(Config::emulator(&emulator.host())).expect("clients");
        (emulator, Context::new(None, None, clients))
    }

    #[tokio::test]
    async fn project_checks_whose_reads_fail_did_not_run_and_say_so() {
        let (_emulator, ctx) = failing_reads(403).await;
        let judged = project_findings(&ctx, PROJECT, true).await;
        assert!(judged.usual.is_empty(), "{judged:?}");
        let not_run: Vec<&str> = judged.not_run.iter().map(|(c, _)| *c).collect();
        assert_eq!(not_run, ["iap_api_disabled", "no_organization"]);
        for (check, warning) in &judged.not_run {
            assert_eq!(warning.summary, format!("Check {check} could not run"));
            assert!(
                warning.detail.contains("refused by the test"),
                "{warning:?}"
            );
            assert!(warning.detail.contains(PROJECT), "{warning:?}");
        }
        // Backend IAP has no no_organization check.
        let judged = project_findings(&ctx, PROJECT, false).await;
        let not_run: Vec<&str> = judged.not_run.iter().map(|(c, _)| *c).collect();
        assert_eq!(not_run, ["iap_api_disabled"]);
    }

    #[tokio::test]
    async fn a_project_not_found_leaves_the_project_checks_to_the_project_read() {
        let (_emulator, ctx) = failing_reads(404).await;
        let judged = project_findings(&ctx, PROJECT, true).await;
        assert_eq!(judged, Judged::default());
    }
}
