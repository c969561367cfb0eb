//! `iaprun_access_binding`: who may pass IAP. An IAM binding on an IAP resource, authoritative for its
//! (role, condition) pair only; every other binding of the policy is preserved.

use std::collections::BTreeSet;
use std::time::Instant;

use super::from_google;
use super::prelude::*;
use crate::names::{IapResource, IapTarget};

/// The resource type.
pub struct AccessBinding;

/// The role that lets a principal pass IAP.
pub const DEFAULT_ROLE: &str = "roles/iap.httpsResourceAccessor";

/// Config, plan and state of one `iaprun_access_binding`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Model {
    pub id: Attr<String>,
    #[serde(flatten)]
    pub access: Access,
    pub members: Attr<BTreeSet<String>>,
    pub etag: Attr<String>,
}

/// What both access resources have: the binding they act on and the checks they skip.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Access {
    pub resource: Attr<String>,
    pub role: Attr<String>,
    pub ignore_checks: Attr<BTreeSet<String>>,
    pub condition: Attr<Condition>,
}

/// The `condition` block.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Condition {
    pub title: Attr<String>,
    pub description: Attr<String>,
    pub expression: Attr<String>,
}

impl Access {
    /// The role, its default when unset.
    pub(super) fn role(&self) -> String {
        self.role.as_deref().unwrap_or(DEFAULT_ROLE).to_string()
    }

    /// The condition block as an IAM condition (`None` when unset).
    pub(super) fn iam_condition(&self) -> Option<google::Condition> {
        let c = self.condition.get()?;
        let expression = c.expression.as_deref().unwrap_or_default();
        let mut condition = google::Condition::new(c.title.as_deref()?, expression);
        condition.description = c.description.get().cloned();
        Some(condition)
    }

    /// The condition's title (null without a condition).
    pub(super) fn title(&self) -> Attr<String> {
        self.condition.get().map_or(Attr::Null, |c| c.title.clone())
    }

    /// The resource's id: resource, role, `who` (a member) and the condition's title, if any.
    pub(super) fn id(&self, resource: &str, who: Option<&str>, title: Option<&str>) -> String {
        let parts = [Some(resource), Some(&self.role()), who, title];
        parts.into_iter().flatten().collect::<Vec<_>>().join(" ")
    }

    /// The state of an import: the id names resource, role and the condition's title.
    pub(super) fn imported(resource: String, role: String, title: Option<String>) -> Access {
        Access {
            resource: Attr::Known(resource),
            role: Attr::Known(role),
            condition: Attr::from_option(title.map(|t| Condition {
                title: Attr::Known(t),
                ..Condition::default()
            })),
            ..Access::default()
        }
    }

    /// Checks shared by both access resources: `ignore_checks`, `resource`, `role`, `condition`.
    pub(super) fn validate(&self) -> Diagnostics {
        let mut diags = validation::common_config(&Attr::Null, &self.ignore_checks);
        let condition = self.condition.get().map(|c| [&c.title, &c.expression]);
        let target = validation::access_config(&self.resource, &self.role, condition);
        diags.extend(target);
        diags
    }

    /// Refreshes role and condition from the binding of `policy` they name, when `wanted`; the
    /// binding found.
    pub(super) fn refresh<'p>(
        &mut self,
        policy: &'p google::Policy,
        wanted: impl Fn(&google::Binding) -> bool,
    ) -> Option<&'p google::Binding> {
        let role = self.role();
        // After an import only the condition's title is known: then the title alone matches.
        let title_only = self.condition.get().is_some_and(|c| c.expression.is_null());
        let found = policy.binding(&role, self.iam_condition().as_ref(), title_only);
        let found = found.filter(|b| wanted(b))?;
        if let Some(c) = &found.condition {
            self.condition = Attr::Known(Condition {
                title: Attr::from_option(c.title.clone()),
                description: Attr::from_option(c.description.clone()),
                expression: Attr::Known(c.expression.clone()),
            });
        }
        self.role = Attr::Known(role);
        Some(found)
    }
}

/// The `condition` block, shared with `iaprun_access_member`.
pub(super) fn condition_block(what: &str) -> NestedBlock {
    NestedBlock::single(
        "condition",
        Block::new(format!("An IAM condition (policy version 3) limiting when the {what} applies. Changing it replaces the resource."))
            .attribute(Attribute::string("title").required().description("Title of the condition; part of the id."))
            .attribute(Attribute::string("description").optional().description("Description of the condition."))
            .attribute(Attribute::string("expression").required().description(
                "CEL expression, such as `request.time < timestamp(\"2030-01-01T00:00:00Z\")`.",
            )),
    )
    .force_new()
}

/// The `resource` attribute, shared with `iaprun_access_member`.
pub(super) fn resource_attribute() -> Attribute {
    Attribute::string("resource").required().force_new().description(
        "IAP resource name, such as `iaprun_service_iap.x.iap_resource_name`: `projects/{project}/iap_web/cloud_run-{region}/services/{service}`, `projects/{project}/iap_web/compute/services/{backend}` or `projects/{project}/iap_web/compute-{region}/services/{backend}`. Project id or number. Changing it replaces the resource.",
    )
}

/// The `role` attribute, shared with `iaprun_access_member`.
pub(super) fn role_attribute() -> Attribute {
    Attribute::string("role").optional().computed().force_new().default(DEFAULT_ROLE).description(
        "Role to bind. Defaults to `roles/iap.httpsResourceAccessor` (IAP-secured Web App User). Changing it replaces the resource.",
    )
}

/// Plans `resource` (the attribute `field` picks): the same policy written with the project id
/// instead of its number (or back) is no change. Returns the configured name and the canonical IAP
/// resource; no diagnostics at all while the name is unknown.
pub(super) async fn plan_resource<M: Send>(
    ctx: &Context,
    plan: &mut Plan<M>,
    field: fn(&mut M) -> &mut Attr<String>,
) -> Result<(String, IapResource), Diagnostics> {
    let Some(resource) = field(&mut plan.config).get().cloned() else {
        return Err(Diagnostics::new());
    };
    let target = common::canonical(ctx, &resource).await?;
    let prior = plan.prior.as_mut().and_then(|p| field(p).get().cloned());
    if let Some(prior_resource) = prior.filter(|r| *r != resource) {
        if common::canonical(ctx, &prior_resource)
            .await
            .is_ok_and(|t| t == target)
        {
            *field(&mut plan.planned) = Attr::Known(prior_resource);
            plan.requires_replace
                .retain(|p| *p != AttributePath::attr("resource"));
        }
    }
    Ok((resource, target))
}

/// The IAM policy of an IAP resource for a refresh, read once per process for all access
/// resources on it; `None` when the IAP resource no longer exists.
pub(super) async fn refresh_policy(
    ctx: &Context,
    resource: &str,
) -> Result<Option<google::Policy>, Diagnostic> {
    let key = common::canonical(ctx, resource).await?.to_string();
    let read = ctx
        .policies
        .get_or_fetch(&key, || ctx.clients.iap.iam_policy(&key))
        .await;
    common::unless_gone(read, || format!("read the IAM policy of {resource}"))
}

/// The refresh result when the IAP resource itself is gone.
pub(super) fn resource_gone<M>(resource: &str, type_name: &str) -> Read<M> {
    Read::Gone(Some(Diagnostic::warning(
        "IAP resource deleted outside Terraform",
        format!("{resource} no longer exists, so this {type_name} was removed from the state."),
    )))
}

/// Edits the IAM policy of `target` (never starting from the refresh cache: the IAM writer starts
/// from its own etag-guarded copy); the refresh cache takes the policy written, or forgets the
/// policy when the write fails.
pub(super) async fn edit_policy(
    ctx: &Context,
    target: &IapResource,
    deadline: Instant,
    edit: impl FnMut(&mut google::Policy) -> bool,
) -> Result<google::Policy, google::Error> {
    let key = target.to_string();
    let written = ctx
        .clients
        .iap
        .modify_iam_policy(&key, deadline, edit)
        .await;
    match &written {
        Ok(policy) => ctx.policies.put(&key, policy.clone()),
        Err(_) => ctx.policies.invalidate(&key),
    }
    written
}

/// [`edit_policy`] for an access resource's create or update (`doing`: what, for the error). A write
/// that finds the IAP resource missing, its target deleted since the check (whose yes the apply
/// keeps), reads the target again and then fails on `target_missing`.
pub(super) async fn write_policy(
    ctx: &Context,
    access: &Access,
    target: &IapResource,
    deadline: Instant,
    doing: &str,
    edit: impl FnMut(&mut google::Policy) -> bool,
) -> Result<google::Policy, Diagnostic> {
    let error = match edit_policy(ctx, target, deadline, edit).await {
        Ok(policy) => return Ok(policy),
        Err(e) => e,
    };
    if error.is_not_found() {
        ctx.live_targets.forget(&target.to_string());
        if let Ok(findings) = checks(ctx, &[], target, true).await {
            common::refuse(findings, &access.ignore_checks)?;
        }
    }
    Err(common::api_error(doing, &error))
}

/// The member checks that need no API, on `members` (`members[...]` paths).
pub(super) fn member_checks(
    members: &[&str],
    ignore_checks: &Attr<BTreeSet<String>>,
) -> Diagnostics {
    let found = validation::member_format(members);
    let found = found.into_iter().chain(validation::public_member(members));
    validation::report(found, &validation::ignored(ignore_checks))
}

impl Model {
    /// What the configuration asks for: a change in it is a change the user makes.
    fn intent(&self) -> impl PartialEq + '_ {
        (&self.access, &self.members)
    }
}

#[async_trait]
impl Resource<Context> for AccessBinding {
    type Model = Model;
    type Private = ();
    const TYPE_NAME: &'static str = "iaprun_access_binding";

    fn schema() -> Schema {
        Schema::new(
        0,
        Block::new(
            "Grants access through IAP: an IAM binding on an IAP resource (a Cloud Run service with direct IAP, or a backend service). Authoritative for its role and condition only: members of other roles and other conditions, including those added outside Terraform, are preserved. Safe under parallel apply. Where several modules (or people outside Terraform) grant the same role and condition, use `iaprun_access_member` instead; the two on one role and condition are reported at plan (`binding_conflict`).",
        )
        .attribute(Attribute::string("id").computed().description(
            "`{resource} {role}`, followed by ` {condition title}` when a condition is set.",
        ))
        .attribute(resource_attribute())
        .attribute(role_attribute())
        .attribute(Attribute::string_set("members").required().description(
            "Principals that hold the role: `user:EMAIL`, `group:EMAIL`, `serviceAccount:EMAIL`, `domain:DOMAIN`, `principal://...` or `principalSet://...`. Emails in lower case.",
        ))
        .attribute(common::ignore_checks_attribute())
        .attribute(Attribute::string("etag").computed().description("Etag of the IAM policy after the last write or read."))
        .block(condition_block("binding")),
    )
    }

    fn validate(config: &Model, _: ClientCapabilities) -> Diagnostics {
        let mut diags = config.access.validate();
        if config.members.get().is_some_and(BTreeSet::is_empty) {
            // Applying an empty binding would remove it, and the next read would lose the resource.
            diags.attribute_error(
                AttributePath::attr("members"),
                "No members",
                "members is empty. An IAM binding needs at least one member; to remove the binding, remove this resource.",
            );
        }
        if let Some(members) = config.members.known_elements() {
            let known: Vec<&str> = members.iter().map(String::as_str).collect();
            diags.extend(member_checks(&known, &config.access.ignore_checks));
        }
        diags
    }

    async fn plan(&self, ctx: &Context, plan: &mut Plan<Model>) -> Diagnostics {
        let (resource, target) = match plan_resource(ctx, plan, |m| &mut m.access.resource).await {
            Ok(planned) => planned,
            Err(d) => return d,
        };
        // A role removed from the configuration falls back to the default: another binding.
        plan.replace_on_change("role", |m| &m.access.role);
        let (prior, planned) = (plan.prior.as_ref(), &mut plan.planned);
        let replace = &plan.requires_replace;
        let title = plan.config.access.title();
        if planned.access.role.get().is_some() && title.is_known() {
            let resource = planned.access.resource.get().unwrap_or(&resource);
            planned.id = Attr::Known(planned.access.id(resource, None, title.as_deref()));
        }
        let replacing = !replace.is_empty();
        let intent_changed = prior.is_some_and(|p| p.intent() != planned.intent());
        // Any write returns the policy's new etag, which other writers of the policy move too.
        planned.etag = match prior {
            Some(prior) if !replacing && !intent_changed => prior.etag.clone(),
            _ => Attr::unknown(),
        };
        let members = plan.config.members.known_elements();
        let listed = members
            .as_ref()
            .map_or("members = (known after apply)".to_string(), |m| {
                format!("members = {m:?}")
            });
        let known: Vec<&str> = match (&plan.config.members, &members) {
            (Attr::Known(_), Some(m)) => m.iter().map(String::as_str).collect(),
            _ => vec![],
        };
        let at = validation::timing::at_plan(prior.is_none() || replacing, false, intent_changed);
        let (kind, access) = (validation::AccessKind::Binding, &plan.planned.access);
        plan_checks(ctx, kind, access, (&resource, &target), listed, &known, at).await
    }

    async fn create(&self, ctx: &Context, change: Change<'_, Model, ()>) -> Applied<Model> {
        write(ctx, change).await
    }

    async fn read(&self, ctx: &Context, mut state: Model) -> Result<Read<Model>, Diagnostic> {
        let Some(resource) = state.access.resource.get().cloned() else {
            return Ok(Read::Found(state));
        };
        let Some(policy) = refresh_policy(ctx, &resource).await? else {
            return Ok(resource_gone(&resource, Self::TYPE_NAME));
        };
        let Some(binding) = state.access.refresh(&policy, |_| true) else {
            return Ok(Read::Gone(None));
        };
        let normalized = |members: &mut dyn Iterator<Item = &String>| -> BTreeSet<String> {
            members.map(|m| google::normalize_member(m)).collect()
        };
        let state_members = state.members.get().cloned().unwrap_or_default();
        if normalized(&mut binding.members.iter()) != normalized(&mut state_members.iter()) {
            state.members = Attr::Known(binding.members.iter().cloned().collect());
        }
        let title = state.access.title();
        state.id = Attr::Known(state.access.id(&resource, None, title.as_deref()));
        state.etag = Attr::from_option(policy.etag.clone());
        Ok(Read::Found(state))
    }

    async fn delete(&self, ctx: &Context, delete: Delete<'_, Model, ()>) -> Deleted {
        let access = &delete.prior.access;
        let target = common::canonical(ctx, access.resource.as_deref().unwrap_or_default()).await?;
        let (role, condition) = (access.role(), access.iam_condition());
        let edit = |p: &mut google::Policy| p.set_binding(&role, condition.as_ref(), &[]);
        let removed = edit_policy(ctx, &target, delete.deadline, edit).await;
        common::unless_gone(removed, || {
            format!("remove the {role} binding from {target}")
        })
        .map(drop)
    }

    const MOVE_SOURCES: MoveSources = MoveSources {
        providers: from_google::PROVIDERS,
        types: from_google::BINDING_TYPES,
    };

    fn move_from(source: &MoveSource<'_>) -> Result<Model, Diagnostics> {
        let moved = from_google::read(source)?;
        let members = moved.strings("members")?;
        let title = moved.access.title();
        Ok(Model {
            id: Attr::Known(moved.access.id(&moved.resource(), None, title.as_deref())),
            members: Attr::Known(members.into_iter().collect()),
            etag: moved.etag,
            access: moved.access,
        })
    }

    async fn import(&self, _: &Context, id: &str) -> Result<Model, Diagnostic> {
        let (resource, role, title) = names::parse_access_binding_id(id)
            .map_err(|e| Diagnostic::error("Invalid import id", e))?;
        let access = Access::imported(resource.to_string(), role, title);
        Ok(Model {
            id: Attr::Known(access.id(&resource.to_string(), None, access.title().as_deref())),
            access,
            members: Attr::Known(BTreeSet::new()),
            ..Model::default()
        })
    }
}

/// Sets this binding (role, condition) to the planned members, keeping every other binding.
async fn write(ctx: &Context, change: Change<'_, Model, ()>) -> Applied<Model> {
    let Change {
        prior,
        mut planned,
        deadline,
        ..
    } = change;
    let resource = planned.access.resource.get().cloned().unwrap_or_default();
    let members: Vec<String> = planned
        .members
        .get()
        .into_iter()
        .flatten()
        .cloned()
        .collect();
    let listed: Vec<&str> = members.iter().map(String::as_str).collect();
    let target = checked_target(ctx, &planned.access, &listed)
        .await
        .map_err(Failure::unchanged(&prior))?;
    let (role, condition) = (planned.access.role(), planned.access.iam_condition());
    let edit = |p: &mut google::Policy| p.set_binding(&role, condition.as_ref(), &members);
    let doing = format!("set the {role} binding on {target}");
    let policy = write_policy(ctx, &planned.access, &target, deadline, &doing, edit)
        .await
        .map_err(Failure::unchanged(&prior))?;
    planned.etag = Attr::from_option(policy.etag.clone());
    if planned.id.is_unknown() {
        let title = planned.access.title();
        planned.id = Attr::Known(planned.access.id(&resource, None, title.as_deref()));
    }
    Ok(planned)
}

/// The IAP resource of an access write, after the live checks on a fresh read: nothing changes
/// while an error finding holds.
pub(super) async fn checked_target(
    ctx: &Context,
    access: &Access,
    members: &[&str],
) -> Result<IapResource, Diagnostic> {
    let target = common::canonical(ctx, access.resource.as_deref().unwrap_or_default()).await?;
    let findings = checks(ctx, members, &target, true).await?;
    common::refuse(findings, &access.ignore_checks)?;
    Ok(target)
}

/// The plan-time checks of an access resource: `binding_conflict` with the access resources
/// planned before it in this run (`what`: its members, briefly), then the live checks of `members`.
pub(super) async fn plan_checks(
    ctx: &Context,
    kind: validation::AccessKind,
    access: &Access,
    (resource, target): (&str, &IapResource),
    what: String,
    members: &[&str],
    at: validation::timing::AtPlan,
) -> Diagnostics {
    let ignore = validation::ignored(&access.ignore_checks);
    let mut diags = conflicts(ctx, kind, (resource, target), access, what, &ignore);
    match checks(ctx, members, target, false).await {
        Ok(findings) => diags.extend(validation::timing::report_at_plan(findings, &ignore, at)),
        Err(d) => diags.push(d),
    }
    diags
}

/// The live checks: the IAP resource's target must exist (an error only at apply: at plan the
/// configuration may still create it), and the OAuth client suits the members.
pub(super) async fn checks(
    ctx: &Context,
    members: &[&str],
    target: &IapResource,
    at_apply: bool,
) -> Result<Vec<validation::Finding>, Diagnostic> {
    let project = &target.project;
    let key = target.to_string();
    let read = || common::target_exists(ctx, target);
    let exists = if at_apply {
        ctx.live_targets.check(&key, read).await
    } else {
        let exists = ctx.targets.get_or_fetch(&key, read).await;
        if matches!(exists, Ok(true)) {
            ctx.live_targets.saw(&key);
        }
        exists
    };
    match exists {
        Ok(true) => Ok(oauth_findings(ctx, members, target).await),
        Ok(false) if !at_apply => Ok(vec![]),
        Ok(false) => {
            let (kind, name) = match &target.target {
                IapTarget::CloudRun { service, .. } => ("Cloud Run service", service),
                IapTarget::BackendService { name }
                | IapTarget::RegionBackendService { name, .. } => ("backend service", name),
            };
            Ok(vec![validation::target::target_missing(
                kind,
                name,
                &format!("project {project}"),
                AttributePath::attr("resource"),
            )])
        }
        Err(e) => Err(
            common::api_error(&format!("look up the target of {target}"), &e)
                .at(AttributePath::attr("resource")),
        ),
    }
}

/// `managed_oauth_external` for the configured members: only when the IAP resource uses the
/// Google-managed OAuth client and the project's organization domain is known. Anything that cannot
/// be read (or is unknown at plan) yields no finding.
async fn oauth_findings(
    ctx: &Context,
    members: &[&str],
    target: &IapResource,
) -> Vec<validation::Finding> {
    if members.is_empty() {
        return vec![];
    }
    let custom = common::planned_custom_client(ctx, target).await;
    if !matches!(custom, Ok(false)) {
        return vec![];
    }
    match ctx.organization_domain(&target.project).await {
        Ok(Some(domain)) => validation::managed_oauth_external(members, &domain),
        _ => vec![],
    }
}

/// The condition as `binding_conflict` compares it (title, description, expression); `None`
/// while any part is unknown.
pub(super) fn condition_key(
    condition: &Attr<Condition>,
) -> Option<Option<(String, String, String)>> {
    let text = |a: &Attr<String>| match a {
        Attr::Unknown(_) => None,
        a => Some(a.get().cloned().unwrap_or_default()),
    };
    match condition {
        Attr::Null => Some(None),
        Attr::Unknown(_) => None,
        Attr::Known(c) => Some(Some((
            text(&c.title)?,
            text(&c.description)?,
            text(&c.expression)?,
        ))),
    }
}

/// `binding_conflict`: records this access resource as planned in this run and reports the others
/// on its (resource, role, condition), naming it by `what`. Skipped while the role or condition is
/// unknown.
fn conflicts(
    ctx: &Context,
    kind: validation::AccessKind,
    (resource, target): (&str, &IapResource),
    access: &Access,
    what: String,
    ignore: &BTreeSet<String>,
) -> Diagnostics {
    let (Some(role), Some(condition)) = (access.role.get(), condition_key(&access.condition))
    else {
        return Diagnostics::new();
    };
    let this = validation::PlannedAccess {
        kind,
        resource: target.to_string(),
        role: role.clone(),
        condition,
        config: describe(resource, access, what),
    };
    let others = ctx.plan_access(this.clone());
    validation::report(validation::binding_conflict(&this, &others), ignore)
}

/// How `binding_conflict` names a resource to the other: its configuration, briefly.
fn describe(resource: &str, access: &Access, what: String) -> String {
    let mut s = format!(
        "resource = {resource:?}, role = {:?}, {what}",
        access.role()
    );
    if let Some(title) = access.title().get() {
        s.push_str(&format!(", condition title {title:?}"));
    }
    s
}
