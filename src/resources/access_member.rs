//! `iaprun_access_member`: one principal allowed through IAP. Adds exactly its member to the
//! (role, condition) binding and removes exactly it; the form that composes across modules.

use std::collections::BTreeSet;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::access_binding::{self as binding, Condition, DEFAULT_ROLE};
use super::common;
use super::Context;
use crate::framework::{
    Applied, Attr, Attribute, AttributePath, Block, Change, ClientCapabilities, Delete, Deleted,
    Diagnostic, Diagnostics, Failure, Plan, Read, Resource, Schema,
};
use crate::google;
use crate::names;
use crate::validation::{self, Finding};

/// The resource type.
pub struct AccessMember;

pub const TYPE_NAME: &str = "iaprun_access_member";

/// Config, plan and state of one `iaprun_access_member`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Model {
    pub id: Attr<String>,
    pub resource: Attr<String>,
    pub role: Attr<String>,
    pub member: Attr<String>,
    pub ignore_checks: Attr<BTreeSet<String>>,
    pub condition: Attr<Condition>,
}

impl Model {
    fn role(&self) -> String {
        self.role
            .get()
            .map_or(DEFAULT_ROLE, String::as_str)
            .to_string()
    }

    fn member(&self) -> String {
        self.member.get().cloned().unwrap_or_default()
    }

    fn id(&self, resource: &str, title: Option<&str>) -> String {
        let id = format!("{resource} {} {}", self.role(), self.member());
        title.map_or(id.clone(), |t| format!("{id} {t}"))
    }
}

/// The member checks report on `members[...]`; this resource has one `member`.
fn at_member(findings: Vec<Finding>) -> Vec<Finding> {
    findings
        .into_iter()
        .map(|f| Finding {
            path: Some(AttributePath::attr("member")),
            ..f
        })
        .collect()
}

#[async_trait]
impl Resource<Context> for AccessMember {
    type Model = Model;
    type Private = ();
    const TYPE_NAME: &'static str = TYPE_NAME;

    fn schema() -> Schema {
        Schema::new(
            0,
            Block::new("Lets one principal through IAP: adds one member to an IAM binding on an IAP resource and, on destroy, removes exactly that member. Every other member of the binding, and every other binding, is left alone, so several modules (and people outside Terraform) can grant the same role on one resource. Use it instead of `iaprun_access_binding` wherever the member list is not owned by one place; the two must not manage the same role and condition (`binding_conflict`).")
                .attribute(Attribute::string("id").computed().description(
                    "`{resource} {role} {member}`, followed by ` {condition title}` when a condition is set.",
                ))
                .attribute(binding::resource_attribute())
                .attribute(binding::role_attribute())
                .attribute(Attribute::string("member").required().force_new().description(
                    "The principal: `user:EMAIL`, `group:EMAIL`, `serviceAccount:EMAIL`, `domain:DOMAIN`, `principal://...` or `principalSet://...`. Emails in lower case. Changing it replaces the resource.",
                ))
                .attribute(common::ignore_checks_attribute())
                .block(binding::condition_block("member")),
        )
    }

    fn validate(config: &Model, _: ClientCapabilities) -> Diagnostics {
        let mut diags = common::validate_common(&Attr::Null, &config.ignore_checks);
        diags.extend(binding::validate_target(
            &config.resource,
            &config.role,
            &config.condition,
        ));
        if let Some(member) = config.member.get() {
            let ignore = common::ignored(&config.ignore_checks);
            let one = [member.as_str()];
            diags.extend(validation::report(
                at_member(validation::member_format(&one)),
                &ignore,
            ));
            diags.extend(validation::report(
                at_member(validation::public_member(&one)),
                &ignore,
            ));
        }
        diags
    }

    async fn plan(&self, ctx: &Context, plan: &mut Plan<Model>) -> Diagnostics {
        let (resource, target) = match binding::plan_resource(
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
        let title = plan
            .config
            .condition
            .get()
            .map_or(Attr::Null, |c| c.title.clone());
        if plan.planned.role.is_known() && plan.planned.member.is_known() && !title.is_unknown() {
            let resource = plan.planned.resource.get().unwrap_or(&resource);
            plan.planned.id = Attr::Known(plan.planned.id(resource, title.as_deref()));
        }
        let ignore = common::ignored(&plan.config.ignore_checks);
        let member = plan
            .config
            .member
            .get()
            .map_or("(known after apply)".into(), |m| format!("{m:?}"));
        let described = binding::describe(
            &resource,
            &plan.planned.role,
            &plan.config.condition,
            format!("member = {member}"),
        );
        let mut diags = binding::conflicts(
            ctx,
            validation::AccessKind::Member,
            &target,
            &plan.planned.role,
            &plan.config.condition,
            described,
            &ignore,
        );
        let members: Vec<&str> = plan
            .config
            .member
            .get()
            .map(String::as_str)
            .into_iter()
            .collect();
        // Every attribute forces replacement: any plan with a prior state and no replacement is a refresh.
        let at = validation::timing::at_plan(
            plan.prior.is_none() || !plan.requires_replace.is_empty(),
            false,
            false,
        );
        let checks = match binding::checks(ctx, &members, &target, false).await {
            Ok(findings) => validation::timing::report_at_plan(findings, &ignore, at),
            Err(d) => d.into(),
        };
        diags.extend(checks.into_iter().map(on_member));
        diags
    }

    async fn create(&self, ctx: &Context, change: Change<'_, Model, ()>) -> Applied<Model> {
        let Change {
            prior,
            mut planned,
            deadline,
            ..
        } = change;
        let resource = planned.resource.get().cloned().unwrap_or_default();
        let target = common::canonical(ctx, &resource)
            .await
            .map_err(|d| Failure::new(prior.clone(), d))?;
        // Right before the write, on a fresh read: nothing changes while an error finding holds.
        let member = planned.member();
        let found = binding::checks(ctx, &[member.as_str()], &target, true)
            .await
            .map_err(|d| Failure::new(prior.clone(), d))?;
        let ignore = common::ignored(&planned.ignore_checks);
        if let Some(d) = validation::report(found, &ignore)
            .into_iter()
            .find(Diagnostic::is_error)
        {
            return Err(Failure::new(prior, on_member(d)));
        }
        let key = target.to_string();
        let role = planned.role();
        let condition = binding::iam_condition(&planned.condition);
        let written = ctx
            .clients
            .iap
            .modify_iam_policy(&key, deadline, |policy| {
                policy.add_member(&role, &member, condition.as_ref())
            })
            .await;
        match written {
            Ok(policy) => {
                ctx.policies.put(&key, policy);
                let title = condition.as_ref().and_then(|c| c.title.as_deref());
                planned.id = Attr::Known(planned.id(&resource, title));
                Ok(planned)
            }
            Err(e) => {
                ctx.policies.invalidate(&key);
                let d = common::api_error(
                    &format!("add {member} to the {role} binding on {target}"),
                    &e,
                );
                Err(Failure::new(prior, d))
            }
        }
    }

    async fn read(&self, ctx: &Context, mut state: Model) -> Result<Read<Model>, Diagnostic> {
        let Some(resource) = state.resource.get().cloned() else {
            return Ok(Read::Found(state));
        };
        let Some(policy) = binding::refresh_policy(ctx, &resource).await? else {
            return Ok(binding::resource_gone(&resource, TYPE_NAME));
        };
        let (role, member) = (state.role(), state.member());
        // Drift: the member left the binding (or the binding is gone); the plan adds it back.
        let Some(found) = binding::find_binding(&policy, &role, &state.condition).filter(|b| {
            b.members
                .iter()
                .any(|m| google::normalize_member(m) == google::normalize_member(&member))
        }) else {
            return Ok(Read::Gone(None));
        };
        if found.condition.is_some() {
            state.condition = binding::read_condition(found);
        }
        let title = found.condition.as_ref().and_then(|c| c.title.as_deref());
        state.id = Attr::Known(state.id(&resource, title));
        state.role = Attr::Known(role);
        Ok(Read::Found(state))
    }

    async fn delete(&self, ctx: &Context, delete: Delete<'_, Model, ()>) -> Deleted {
        let prior = delete.prior;
        let resource = prior.resource.get().cloned().unwrap_or_default();
        let target = common::canonical(ctx, &resource).await?;
        let key = target.to_string();
        let (role, member) = (prior.role(), prior.member());
        let condition = binding::iam_condition(&prior.condition);
        let removed = ctx
            .clients
            .iap
            .modify_iam_policy(&key, delete.deadline, |policy| {
                policy.remove_member(&role, &member, condition.as_ref())
            })
            .await;
        match removed {
            Ok(policy) => ctx.policies.put(&key, policy),
            Err(e) if e.is_not_found() => {}
            Err(e) => {
                ctx.policies.invalidate(&key);
                return Err(common::api_error(
                    &format!("remove {member} from the {role} binding on {target}"),
                    &e,
                ));
            }
        }
        Ok(())
    }

    async fn import(&self, _: &Context, id: &str) -> Result<Model, Diagnostic> {
        let (resource, role, member, title) = names::parse_access_member_id(id)
            .map_err(|e| Diagnostic::error("Invalid import id", e))?;
        let mut model = Model {
            resource: Attr::Known(resource.to_string()),
            role: Attr::Known(role),
            member: Attr::Known(member),
            condition: Attr::from_option(title.map(|t| Condition {
                title: Attr::Known(t),
                ..Condition::default()
            })),
            ..Model::default()
        };
        let title = model.condition.get().and_then(|c| c.title.get().cloned());
        model.id = Attr::Known(model.id(&resource.to_string(), title.as_deref()));
        Ok(model)
    }
}

/// The member checks are written for a binding's `members`; here they belong on `member`.
fn on_member(mut d: Diagnostic) -> Diagnostic {
    if d.path
        .as_ref()
        .is_some_and(|p| p.to_string().starts_with("members"))
    {
        d.path = Some(AttributePath::attr("member"));
    }
    d
}
