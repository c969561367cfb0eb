//! `iaprun_access_member`: one principal allowed through IAP. Adds exactly its member to the
//! (role, condition) binding and removes exactly it; the form that composes across modules.

use super::access_binding::{self as binding, Access};
use super::from_google;
use super::prelude::*;

/// The resource type.
pub struct AccessMember;

/// Config, plan and state of one `iaprun_access_member`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Model {
    pub id: Attr<String>,
    #[serde(flatten)]
    pub access: Access,
    pub member: Attr<String>,
}

impl Model {
    fn member(&self) -> String {
        self.member.get().cloned().unwrap_or_default()
    }

    /// `{resource} {role} {member}`, then the condition's title.
    fn id(&self, resource: &str) -> String {
        let title = self.access.title();
        self.access
            .id(resource, Some(&self.member()), title.as_deref())
    }
}

#[async_trait]
impl Resource<Context> for AccessMember {
    type Model = Model;
    type Private = ();
    const TYPE_NAME: &'static str = "iaprun_access_member";

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
        let mut diags = config.access.validate();
        if let Some(member) = config.member.get() {
            let checks = binding::member_checks(&[member.as_str()], &config.access.ignore_checks);
            diags.extend(checks.into_iter().map(on_member));
        }
        diags
    }

    async fn plan(&self, ctx: &Context, plan: &mut Plan<Model>) -> Diagnostics {
        let planned = binding::plan_resource(ctx, plan, |m| &mut m.access.resource).await;
        let (resource, target) = match planned {
            Ok(planned) => planned,
            Err(d) => return d,
        };
        let planned = &mut plan.planned;
        let title = plan.config.access.title();
        if planned.access.role.is_known() && planned.member.is_known() && !title.is_unknown() {
            let resource = planned.access.resource.get().unwrap_or(&resource).clone();
            planned.id = Attr::Known(planned.id(&resource));
        }
        let member = plan.config.member.get();
        let what = member.map_or("(known after apply)".into(), |m| format!("{m:?}"));
        let members: Vec<&str> = member.map(String::as_str).into_iter().collect();
        // Every attribute forces replacement: any plan with a prior state and no replacement is a refresh.
        let creating = plan.prior.is_none() || !plan.requires_replace.is_empty();
        let at = validation::timing::at_plan(creating, false, false);
        let kind = validation::AccessKind::Member;
        let (access, what) = (&plan.planned.access, format!("member = {what}"));
        let diags =
            binding::plan_checks(ctx, kind, access, (&resource, &target), what, &members, at);
        diags.await.into_iter().map(on_member).collect()
    }

    async fn create(&self, ctx: &Context, change: Change<'_, Model, ()>) -> Applied<Model> {
        let Change {
            prior,
            mut planned,
            deadline,
            ..
        } = change;
        let resource = planned.access.resource.get().cloned().unwrap_or_default();
        let member = planned.member();
        let target = binding::checked_target(ctx, &planned.access, &[member.as_str()])
            .await
            .map_err(|d| Failure::new(prior.clone(), on_member(d)))?;
        let (role, condition) = (planned.access.role(), planned.access.iam_condition());
        let edit = |p: &mut google::Policy| p.add_member(&role, &member, condition.as_ref());
        let doing = format!("add {member} to the {role} binding on {target}");
        binding::write_policy(ctx, &planned.access, &target, deadline, &doing, edit)
            .await
            .map_err(Failure::unchanged(&prior))?;
        planned.id = Attr::Known(planned.id(&resource));
        Ok(planned)
    }

    async fn read(&self, ctx: &Context, mut state: Model) -> Result<Read<Model>, Diagnostic> {
        let Some(resource) = state.access.resource.get().cloned() else {
            return Ok(Read::Found(state));
        };
        let Some(policy) = binding::refresh_policy(ctx, &resource).await? else {
            return Ok(binding::resource_gone(&resource, Self::TYPE_NAME));
        };
        // Drift: the member left the binding (or the binding is gone); the plan adds it back.
        let member = google::normalize_member(&state.member());
        let has = |b: &google::Binding| {
            b.members
                .iter()
                .any(|m| google::normalize_member(m) == member)
        };
        if state.access.refresh(&policy, has).is_none() {
            return Ok(Read::Gone(None));
        }
        state.id = Attr::Known(state.id(&resource));
        Ok(Read::Found(state))
    }

    async fn delete(&self, ctx: &Context, delete: Delete<'_, Model, ()>) -> Deleted {
        let access = &delete.prior.access;
        let target = common::canonical(ctx, access.resource.as_deref().unwrap_or_default()).await?;
        let (role, member) = (access.role(), delete.prior.member());
        let condition = access.iam_condition();
        let edit = |p: &mut google::Policy| p.remove_member(&role, &member, condition.as_ref());
        let removed = binding::edit_policy(ctx, &target, delete.deadline, edit).await;
        let doing = || format!("remove {member} from the {role} binding on {target}");
        common::unless_gone(removed, doing).map(drop)
    }

    const MOVE_SOURCES: MoveSources = MoveSources {
        providers: from_google::PROVIDERS,
        types: from_google::MEMBER_TYPES,
    };

    fn move_from(source: &MoveSource<'_>) -> Result<Model, Diagnostics> {
        let moved = from_google::read(source)?;
        let mut model = Model {
            member: Attr::Known(moved.string("member")?),
            access: moved.access.clone(),
            ..Model::default()
        };
        model.id = Attr::Known(model.id(&moved.resource()));
        Ok(model)
    }

    async fn import(&self, _: &Context, id: &str) -> Result<Model, Diagnostic> {
        let (resource, role, member, title) = names::parse_access_member_id(id)
            .map_err(|e| Diagnostic::error("Invalid import id", e))?;
        // A member IAM cannot hold would only surface as "non-existent remote object".
        if let Some(found) = validation::member_format(&[member.as_str()]).pop() {
            let detail = format!("{id:?} is not an id IAM can hold. {}", found.detail);
            return Err(Diagnostic::error("Invalid import id", detail));
        }
        let mut model = Model {
            access: Access::imported(resource.to_string(), role, title),
            member: Attr::Known(member),
            ..Model::default()
        };
        model.id = Attr::Known(model.id(&resource.to_string()));
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
