//! `iaprun_access_binding`: who may pass IAP. An IAM binding on an IAP resource, authoritative for its
//! (role, condition) pair only; every other binding of the policy is preserved.

use std::collections::BTreeSet;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::common;
use super::Context;
use crate::framework::{
    Applied, Attr, Attribute, AttributePath, Block, Change, ClientCapabilities, Delete, Deleted,
    Diagnostic, Diagnostics, Failure, NestedBlock, Plan, Read, Resource, Schema, Value,
};
use crate::google;
use crate::names::{self, IapResource, IapTarget};
use crate::validation;

/// The resource type.
pub struct AccessBinding;

pub const TYPE_NAME: &str = "iaprun_access_binding";

/// The role that lets a principal pass IAP.
pub const DEFAULT_ROLE: &str = "roles/iap.httpsResourceAccessor";

/// Config, plan and state of one `iaprun_access_binding`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Model {
    pub id: Attr<String>,
    pub resource: Attr<String>,
    pub role: Attr<String>,
    pub members: Attr<BTreeSet<String>>,
    pub ignore_checks: Attr<BTreeSet<String>>,
    pub etag: Attr<String>,
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

impl Model {
    fn role(&self) -> String {
        self.role
            .get()
            .map_or(DEFAULT_ROLE, String::as_str)
            .to_string()
    }

    fn iam_condition(&self) -> Option<google::Condition> {
        iam_condition(&self.condition)
    }

    fn title(&self) -> Attr<String> {
        self.condition.get().map_or(Attr::Null, |c| c.title.clone())
    }
}

/// The condition block as an IAM condition (`None` when unset).
pub(super) fn iam_condition(condition: &Attr<Condition>) -> Option<google::Condition> {
    let c = condition.get()?;
    let expression = c.expression.as_deref().unwrap_or_default();
    let mut condition = google::Condition::new(c.title.as_deref()?, expression);
    condition.description = c.description.get().cloned();
    Some(condition)
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

/// Validation of `resource`, `role` and `condition`, shared with `iaprun_access_member`.
pub(super) fn validate_target(
    resource: &Attr<String>,
    role: &Attr<String>,
    condition: &Attr<Condition>,
) -> Diagnostics {
    let mut diags = Diagnostics::new();
    if let Some(Err(e)) = resource.get().map(|r| IapResource::parse(r)) {
        diags.attribute_error(
            AttributePath::attr("resource"),
            "Invalid IAP resource name",
            e,
        );
    }
    if let Some(role) = role.get() {
        let valid = (role.starts_with("roles/") && role.len() > "roles/".len())
            || (role.starts_with("projects/") || role.starts_with("organizations/"))
                && role.contains("/roles/");
        if !valid || role.contains(char::is_whitespace) {
            diags.attribute_error(
                AttributePath::attr("role"),
                "Invalid role",
                format!("{role:?} is not a role name such as roles/iap.httpsResourceAccessor or projects/PROJECT/roles/CUSTOM."),
            );
        }
    }
    if let Some(condition) = condition.get() {
        for (field, value) in [
            ("title", &condition.title),
            ("expression", &condition.expression),
        ] {
            if value.get().is_some_and(|t| t.trim().is_empty()) {
                diags.attribute_error(
                    AttributePath::attr("condition").then_attr(field),
                    "Empty condition field",
                    format!("The condition's {field} must not be empty."),
                );
            }
        }
        if condition.title.get().is_some_and(|t| t.len() > 100) {
            diags.attribute_error(
                AttributePath::attr("condition").then_attr("title"),
                "Condition title too long",
                "IAM limits condition titles to 100 characters.",
            );
        }
    }
    diags
}

/// The binding of (`role`, `condition`) in `policy`. After an import only the condition's title
/// is known: then the title alone matches.
pub(super) fn find_binding<'p>(
    policy: &'p google::Policy,
    role: &str,
    condition: &Attr<Condition>,
) -> Option<&'p google::Binding> {
    let wanted = iam_condition(condition);
    let title_only = condition.get().is_some_and(|c| c.expression.is_null());
    policy.bindings.iter().find(|b| {
        b.role == role
            && match (&wanted, &b.condition) {
                (None, None) => true,
                (Some(w), Some(c)) if title_only => w.title == c.title,
                (Some(w), Some(c)) => w.same_as(c),
                _ => false,
            }
    })
}

/// The condition block as read from a binding.
pub(super) fn read_condition(binding: &google::Binding) -> Attr<Condition> {
    Attr::from_option(binding.condition.as_ref().map(|c| Condition {
        title: Attr::from_option(c.title.clone()),
        description: Attr::from_option(c.description.clone()),
        expression: Attr::Known(c.expression.clone()),
    }))
}

/// Plans `resource`: the same policy written with the project id instead of its number (or back)
/// is no change. Returns the configured name and the canonical IAP resource (`None` while unknown).
pub(super) async fn plan_resource(
    ctx: &Context,
    prior: Option<&Attr<String>>,
    config: &Attr<String>,
    planned: &mut Attr<String>,
    requires_replace: &mut Vec<AttributePath>,
) -> Result<Option<(String, IapResource)>, Diagnostics> {
    let Some(resource) = config.get().cloned() else {
        return Ok(None);
    };
    let target = common::canonical(ctx, &resource)
        .await
        .map_err(Diagnostics::from)?;
    if let Some(prior_resource) = prior.and_then(Attr::get).filter(|r| **r != resource) {
        if common::canonical(ctx, prior_resource)
            .await
            .is_ok_and(|t| t == target)
        {
            *planned = Attr::Known(prior_resource.clone());
            requires_replace.retain(|p| *p != AttributePath::attr("resource"));
        }
    }
    Ok(Some((resource, target)))
}

/// The IAM policy of an IAP resource for a refresh, read once per process for all access
/// resources on it; `None` when the IAP resource no longer exists.
pub(super) async fn refresh_policy(
    ctx: &Context,
    resource: &str,
) -> Result<Option<google::Policy>, Diagnostic> {
    let key = common::canonical(ctx, resource).await?.to_string();
    match ctx
        .policies
        .get_or_fetch(&key, || ctx.clients.iap.iam_policy(&key))
        .await
    {
        Ok(p) => Ok(Some(p)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(common::api_error(
            &format!("read the IAM policy of {resource}"),
            &e,
        )),
    }
}

/// The refresh result when the IAP resource itself is gone.
pub(super) fn resource_gone<M>(resource: &str, type_name: &str) -> Read<M> {
    Read::Gone(Some(Diagnostic::warning(
        "IAP resource deleted outside Terraform",
        format!("{resource} no longer exists, so this {type_name} was removed from the state."),
    )))
}

fn binding_id(resource: &str, role: &str, title: Option<&str>) -> String {
    match title {
        Some(t) => format!("{resource} {role} {t}"),
        None => format!("{resource} {role}"),
    }
}

/// The members known at plan: all of a known set, the known elements of a partly known one.
fn known_members(members: &Attr<BTreeSet<String>>) -> Option<Vec<String>> {
    match members {
        Attr::Known(set) => Some(set.iter().cloned().collect()),
        Attr::Unknown(Value::Unknown(_)) => None,
        Attr::Unknown(partial) => Some(partial.strings().into_iter().map(str::to_string).collect()),
        Attr::Null => Some(Vec::new()),
    }
}

#[async_trait]
impl Resource<Context> for AccessBinding {
    type Model = Model;
    type Private = ();
    const TYPE_NAME: &'static str = TYPE_NAME;

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
        let mut diags = common::validate_common(&Attr::Null, &config.ignore_checks);
        diags.extend(validate_target(
            &config.resource,
            &config.role,
            &config.condition,
        ));
        if config.members.get().is_some_and(BTreeSet::is_empty) {
            // Applying an empty binding would remove it, and the next read would lose the resource.
            diags.attribute_error(
                AttributePath::attr("members"),
                "No members",
                "members is empty. An IAM binding needs at least one member; to remove the binding, remove this resource.",
            );
        }
        if let Some(members) = known_members(&config.members) {
            let known: Vec<&str> = members.iter().map(String::as_str).collect();
            let ignore = common::ignored(&config.ignore_checks);
            diags.extend(validation::report(
                validation::member_format(&known),
                &ignore,
            ));
            diags.extend(validation::report(
                validation::public_member(&known),
                &ignore,
            ));
        }
        diags
    }

    async fn plan(&self, ctx: &Context, plan: &mut Plan<Model>) -> Diagnostics {
        let (resource, target) = match plan_resource(
            ctx,
            plan.prior.as_ref().map(|p| &p.resource),
            &plan.config.resource,
            &mut plan.planned.resource,
            &mut plan.requires_replace,
        )
        .await
        {
            Ok(Some(planned)) => planned,
            Ok(None) => return Diagnostics::new(),
            Err(d) => return d,
        };
        // A role removed from the configuration falls back to the default: another binding.
        common::replace_on_change(
            plan.prior.as_ref().map(|p| &p.role),
            &plan.planned.role,
            "role",
            &mut plan.requires_replace,
        );
        let title = plan.config.title();
        if let (Some(role), true) = (plan.planned.role.get(), title.is_known()) {
            let resource = plan.planned.resource.get().unwrap_or(&resource);
            plan.planned.id = Attr::Known(binding_id(resource, role, title.as_deref()));
        }
        let replacing = !plan.requires_replace.is_empty();
        let intent = |m: &Model| {
            (
                m.resource.clone(),
                m.role.clone(),
                m.members.clone(),
                m.condition.clone(),
                m.ignore_checks.clone(),
            )
        };
        let intent_changed = plan
            .prior
            .as_ref()
            .is_some_and(|p| intent(p) != intent(&plan.planned));
        // Any write returns the policy's new etag, which other writers of the policy move too.
        plan.planned.etag = match &plan.prior {
            Some(prior) if !replacing && !intent_changed => prior.etag.clone(),
            _ => Attr::unknown(),
        };
        let ignore = common::ignored(&plan.config.ignore_checks);
        let members = known_members(&plan.config.members);
        let listed = members
            .as_ref()
            .map_or("members = (known after apply)".to_string(), |m| {
                format!("members = {m:?}")
            });
        let described = describe(
            &resource,
            &plan.planned.role,
            &plan.config.condition,
            listed,
        );
        let mut diags = conflicts(
            ctx,
            validation::AccessKind::Binding,
            &target,
            &plan.planned.role,
            &plan.config.condition,
            described,
            &ignore,
        );
        let known: Vec<&str> = match (&plan.config.members, &members) {
            (Attr::Known(_), Some(m)) => m.iter().map(String::as_str).collect(),
            _ => vec![],
        };
        let at =
            validation::timing::at_plan(plan.prior.is_none() || replacing, false, intent_changed);
        match checks(ctx, &known, &target, false).await {
            Ok(findings) => diags.extend(validation::timing::report_at_plan(findings, &ignore, at)),
            Err(d) => diags.push(d),
        }
        diags
    }

    async fn create(&self, ctx: &Context, change: Change<'_, Model, ()>) -> Applied<Model> {
        write(ctx, change).await
    }

    async fn read(&self, ctx: &Context, mut state: Model) -> Result<Read<Model>, Diagnostic> {
        let Some(resource) = state.resource.get().cloned() else {
            return Ok(Read::Found(state));
        };
        let Some(policy) = refresh_policy(ctx, &resource).await? else {
            return Ok(resource_gone(&resource, TYPE_NAME));
        };
        let role = state.role();
        let binding = find_binding(&policy, &role, &state.condition);
        let Some(binding) = binding else {
            return Ok(Read::Gone(None));
        };
        let normalized = |members: &mut dyn Iterator<Item = &String>| -> BTreeSet<String> {
            members.map(|m| google::normalize_member(m)).collect()
        };
        let state_members = state.members.get().cloned().unwrap_or_default();
        if normalized(&mut binding.members.iter()) != normalized(&mut state_members.iter()) {
            state.members = Attr::Known(binding.members.iter().cloned().collect());
        }
        if binding.condition.is_some() {
            state.condition = read_condition(binding);
        }
        let title = binding.condition.as_ref().and_then(|c| c.title.as_deref());
        state.id = Attr::Known(binding_id(&resource, &role, title));
        state.role = Attr::Known(role);
        state.etag = Attr::from_option(policy.etag.clone());
        Ok(Read::Found(state))
    }

    async fn delete(&self, ctx: &Context, delete: Delete<'_, Model, ()>) -> Deleted {
        let Delete {
            prior, deadline, ..
        } = delete;
        let resource = prior.resource.get().cloned().unwrap_or_default();
        let target = common::canonical(ctx, &resource).await?;
        let key = target.to_string();
        let (role, condition) = (prior.role(), prior.iam_condition());
        let removed = ctx
            .clients
            .iap
            .modify_iam_policy(&key, deadline, |policy| {
                policy.set_binding(&role, condition.as_ref(), &[])
            })
            .await;
        match removed {
            Ok(policy) => ctx.policies.put(&key, policy),
            Err(e) if e.is_not_found() => {}
            Err(e) => {
                ctx.policies.invalidate(&key);
                let doing = format!("remove the {role} binding from {target}");
                return Err(common::api_error(&doing, &e));
            }
        }
        Ok(())
    }

    async fn import(&self, _: &Context, id: &str) -> Result<Model, Diagnostic> {
        let (resource, role, title) = names::parse_access_binding_id(id)
            .map_err(|e| Diagnostic::error("Invalid import id", e))?;
        let resource = resource.to_string();
        Ok(Model {
            id: Attr::Known(binding_id(&resource, &role, title.as_deref())),
            resource: Attr::Known(resource),
            role: Attr::Known(role),
            members: Attr::Known(BTreeSet::new()),
            condition: Attr::from_option(title.map(|t| Condition {
                title: Attr::Known(t),
                ..Condition::default()
            })),
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
    let resource = planned.resource.get().cloned().unwrap_or_default();
    let target = match common::canonical(ctx, &resource).await {
        Ok(t) => t,
        Err(d) => return Err(Failure::new(prior, d)),
    };
    // Right before the write, on a fresh read: nothing changes while an error finding holds.
    let members: Vec<&str> = planned
        .members
        .get()
        .into_iter()
        .flatten()
        .map(String::as_str)
        .collect();
    let found = match checks(ctx, &members, &target, true).await {
        Ok(findings) => validation::report(findings, &common::ignored(&planned.ignore_checks)),
        Err(d) => return Err(Failure::new(prior, d)),
    };
    if let Some(d) = found.into_iter().find(Diagnostic::is_error) {
        return Err(Failure::new(prior, d));
    }
    let key = target.to_string();
    let (role, condition) = (planned.role(), planned.iam_condition());
    let members: Vec<String> = planned
        .members
        .get()
        .into_iter()
        .flatten()
        .cloned()
        .collect();
    let written = ctx
        .clients
        .iap
        .modify_iam_policy(&key, deadline, |policy| {
            policy.set_binding(&role, condition.as_ref(), &members)
        })
        .await;
    match written {
        Ok(policy) => {
            planned.etag = Attr::from_option(policy.etag.clone());
            if planned.id.is_unknown() {
                let title = condition.as_ref().and_then(|c| c.title.as_deref());
                planned.id = Attr::Known(binding_id(&resource, &role, title));
            }
            ctx.policies.put(&key, policy);
            Ok(planned)
        }
        Err(e) => {
            ctx.policies.invalidate(&key);
            let d = common::api_error(&format!("set the {role} binding on {target}"), &e);
            Err(Failure::new(prior, d))
        }
    }
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
    let exists = if at_apply {
        common::target_exists(ctx, target).await
    } else {
        ctx.targets
            .get_or_fetch(&key, || common::target_exists(ctx, target))
            .await
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
    let custom = ctx
        .custom_oauth_clients
        .get_or_fetch(&target.to_string(), || {
            common::custom_oauth_client(ctx, target)
        })
        .await;
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
/// on its (resource, role, condition). Skipped while the role or condition is unknown.
pub(super) fn conflicts(
    ctx: &Context,
    kind: validation::AccessKind,
    target: &IapResource,
    role: &Attr<String>,
    condition: &Attr<Condition>,
    config: String,
    ignore: &BTreeSet<String>,
) -> Diagnostics {
    let (Some(role), Some(condition)) = (role.get(), condition_key(condition)) else {
        return Diagnostics::new();
    };
    let this = validation::PlannedAccess {
        kind,
        resource: target.to_string(),
        role: role.clone(),
        condition,
        config,
    };
    let others = ctx.plan_access(this.clone());
    validation::report(validation::binding_conflict(&this, &others), ignore)
}

/// How `binding_conflict` names a resource to the other: its configuration, briefly.
pub(super) fn describe(
    resource: &str,
    role: &Attr<String>,
    condition: &Attr<Condition>,
    what: String,
) -> String {
    let mut s = format!(
        "resource = {resource:?}, role = {:?}, {what}",
        role.get().map_or(DEFAULT_ROLE, String::as_str)
    );
    if let Some(title) = condition.get().and_then(|c| c.title.get()) {
        s.push_str(&format!(", condition title {title:?}"));
    }
    s
}
