//! `iaprun_access_binding`: who may pass IAP. An IAM binding on an IAP resource, authoritative for its
//! (role, condition) pair only; every other binding of the policy is preserved.

use async_trait::async_trait;

use super::common;
use crate::framework::{
    ApplyRequest, ApplyResponse, Attribute, AttributePath, Block, DeleteRequest, Diagnostic,
    Diagnostics, ImportResponse, NestedBlock, PlanRequest, ReadRequest, ReadResponse, Resource,
    Schema, ValidateRequest, Value,
};
use crate::google;
use crate::names::{self, IapResource, IapTarget};
use crate::provider::Context;
use crate::validation;

/// The resource type.
pub struct AccessBinding;

pub const TYPE_NAME: &str = "iaprun_access_binding";

/// The role that lets a principal pass IAP.
pub const DEFAULT_ROLE: &str = "roles/iap.httpsResourceAccessor";

// ---- schema ----------------------------------------------------------------------------------

fn schema() -> Schema {
    Schema::new(
        0,
        Block::new(
            "Grants access through IAP: an IAM binding on an IAP resource (a Cloud Run service with direct IAP, or a backend service). Authoritative for its role and condition only: members of other roles and other conditions, including those added outside Terraform, are preserved. Safe under parallel apply.",
        )
        .attribute(Attribute::string("id").computed().description(
            "`{resource} {role}`, followed by ` {condition title}` when a condition is set.",
        ))
        .attribute(Attribute::string("resource").required().force_new().description(
            "IAP resource name, such as `iaprun_service_iap.x.iap_resource_name`: `projects/{project}/iap_web/cloud_run-{region}/services/{service}`, `projects/{project}/iap_web/compute/services/{backend}` or `projects/{project}/iap_web/compute-{region}/services/{backend}`. Project id or number. Changing it replaces the resource.",
        ))
        .attribute(Attribute::string("role").optional().computed().force_new().description(
            "Role to bind. Defaults to `roles/iap.httpsResourceAccessor` (IAP-secured Web App User). Changing it replaces the resource.",
        ))
        .attribute(Attribute::string_set("members").required().description(
            "Principals that hold the role: `user:EMAIL`, `group:EMAIL`, `serviceAccount:EMAIL`, `domain:DOMAIN`, `principal://...` or `principalSet://...`. Emails in lower case.",
        ))
        .attribute(common::ignore_checks_attribute())
        .attribute(Attribute::string("etag").computed().description("Etag of the IAM policy after the last write or read."))
        .block(NestedBlock::single(
            "condition",
            Block::new("An IAM condition (policy version 3) limiting when the binding applies. Changing it replaces the resource.")
                .attribute(Attribute::string("title").required().description("Title of the condition; part of the id."))
                .attribute(Attribute::string("description").optional().description("Description of the condition."))
                .attribute(Attribute::string("expression").required().description(
                    "CEL expression, such as `request.time < timestamp(\"2030-01-01T00:00:00Z\")`.",
                )),
        )),
    )
}

// ---- validate --------------------------------------------------------------------------------

fn validate(config: &Value) -> Diagnostics {
    let mut diags = common::validate_common(config);
    if let Some(r) = config.get_str("resource") {
        if let Err(e) = IapResource::parse(r) {
            diags.attribute_error(
                AttributePath::attr("resource"),
                "Invalid IAP resource name",
                e,
            );
        }
    }
    if let Some(role) = config.get_str("role") {
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
    let members = config.get("members");
    if members.is_known() && !members.is_null() && members.elements().is_empty() {
        // Applying an empty binding would remove it, and the next read would lose the resource.
        diags.attribute_error(
            AttributePath::attr("members"),
            "No members",
            "members is empty. An IAM binding needs at least one member; to remove the binding, remove this resource.",
        );
    }
    if members.is_known() {
        let known: Vec<&str> = members.strings();
        let ignore = validation::ignored(config);
        diags.extend(validation::report(
            validation::member_format(&known),
            &ignore,
        ));
        diags.extend(validation::report(
            validation::public_member(&known),
            &ignore,
        ));
    }
    let condition = config.get("condition");
    if let Value::Object(_) = condition {
        for field in ["title", "expression"] {
            if condition
                .get_str(field)
                .is_some_and(|t| t.trim().is_empty())
            {
                diags.attribute_error(
                    AttributePath::attr("condition").then_attr(field),
                    "Empty condition field",
                    format!("The condition's {field} must not be empty."),
                );
            }
        }
        if condition.get_str("title").is_some_and(|t| t.len() > 100) {
            diags.attribute_error(
                AttributePath::attr("condition").then_attr("title"),
                "Condition title too long",
                "IAM limits condition titles to 100 characters.",
            );
        }
    }
    diags
}

// ---- plan ------------------------------------------------------------------------------------

/// The condition block as an IAM condition (`None` when unset).
fn condition_of(value: &Value) -> Option<google::Condition> {
    let c = value.get("condition");
    let title = c.get_str("title")?;
    let mut condition = google::Condition::new(title, c.get_str("expression").unwrap_or_default());
    condition.description = c.get_str("description").map(str::to_string);
    Some(condition)
}

fn role_of(value: &Value) -> String {
    value.get_str("role").unwrap_or(DEFAULT_ROLE).to_string()
}

fn binding_id(resource: &str, role: &str, title: Option<&str>) -> String {
    match title {
        Some(t) => format!("{resource} {role} {t}"),
        None => format!("{resource} {role}"),
    }
}

/// The IAP resource with its project written as a number: one name for one policy, whichever form
/// the configuration uses. It keys the read cache and the write lock.
async fn canonical(ctx: &Context, resource: &str) -> Result<IapResource, Diagnostic> {
    let parsed = IapResource::parse(resource).map_err(|e| {
        Diagnostic::error("Invalid IAP resource name", e).at(AttributePath::attr("resource"))
    })?;
    if names::is_project_number(&parsed.project) {
        return Ok(parsed);
    }
    let project = ctx.project_info(&parsed.project).await.map_err(|e| {
        common::api_error(&format!("read project {}", parsed.project), &e)
            .at(AttributePath::attr("resource"))
    })?;
    Ok(parsed.with_project(&project.project_number))
}

async fn plan(ctx: &Context, req: &mut PlanRequest) -> Diagnostics {
    let mut diags = Diagnostics::new();
    if req.planned_state.is_null() {
        return diags;
    }
    let config = req.config.clone();
    let prior = req.prior_state.clone();
    let planned = &mut req.planned_state;
    if config.get("role").is_null() {
        planned.set_attr("role", Value::from(DEFAULT_ROLE));
    }
    let Some(resource) = config.get_str("resource").map(str::to_string) else {
        return diags;
    };
    let target = match canonical(ctx, &resource).await {
        Ok(t) => t,
        Err(d) => {
            diags.push(d);
            return diags;
        }
    };
    // The same policy written with the project id instead of its number (or back) is no change.
    if let Some(prior_resource) = prior.get_str("resource") {
        if prior_resource != resource {
            if let Ok(prior_target) = canonical(ctx, prior_resource).await {
                if prior_target == target {
                    planned.set_attr("resource", Value::from(prior_resource));
                    req.requires_replace
                        .retain(|p| *p != AttributePath::attr("resource"));
                }
            }
        }
    }
    // A different condition is a different binding: replace.
    if !prior.is_null()
        && prior.get("condition") != config.get("condition")
        && config.get("condition").is_wholly_known()
    {
        let path = AttributePath::attr("condition");
        if !req.requires_replace.contains(&path) {
            req.requires_replace.push(path);
        }
    }
    // A role removed from the configuration falls back to the default: a different binding.
    common::plan_replace_on_change(&prior, planned, "role", &mut req.requires_replace);
    let role = planned.get_str("role").map(str::to_string);
    let title = config.get("condition").get("title");
    if let (Some(role), true) = (role, title.is_known()) {
        let resource = planned.get_str("resource").unwrap_or(&resource).to_string();
        planned.set_attr(
            "id",
            Value::string(binding_id(&resource, &role, title.as_str())),
        );
    }
    let replacing = !req.requires_replace.is_empty();
    let mut without_etag = planned.clone();
    without_etag.set_attr("etag", prior.get("etag").clone());
    if prior.is_null() || replacing || without_etag != prior {
        // Any write returns the policy's new etag, which other writers of the policy move too.
        planned.set_attr("etag", Value::unknown());
    } else {
        // The generic plan may have marked it unknown for a replacement this plan just ruled out.
        planned.set_attr("etag", prior.get("etag").clone());
    }
    let intent_changed = validation::timing::intent_changed(
        &prior,
        planned,
        &["resource", "role", "members", "condition", "ignore_checks"],
    );
    let at = if replacing {
        validation::timing::AtPlan::Enforce
    } else {
        validation::timing::at_plan(&prior, planned, intent_changed)
    };
    match checks(ctx, &config, &target, false).await {
        Ok(findings) => diags.extend(validation::timing::report_at_plan(
            findings,
            &validation::ignored(&config),
            at,
        )),
        Err(d) => diags.push(d),
    }
    diags
}

/// The live checks: the IAP resource's target must exist (an error only at apply: at plan the
/// configuration may still create it), and the OAuth client suits the members.
async fn checks(
    ctx: &Context,
    config: &Value,
    target: &IapResource,
    at_apply: bool,
) -> Result<Vec<validation::Finding>, Diagnostic> {
    let project = &target.project;
    let key = target.to_string();
    let exists = if at_apply {
        target_exists(ctx, target).await
    } else {
        ctx.targets
            .get_or_fetch(&key, || target_exists(ctx, target))
            .await
    };
    match exists {
        Ok(true) => Ok(oauth_findings(ctx, config, target).await),
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
    config: &Value,
    target: &IapResource,
) -> Vec<validation::Finding> {
    let members = config.get("members");
    if !members.is_wholly_known() {
        return vec![];
    }
    let custom = ctx
        .custom_oauth_clients
        .get_or_fetch(&target.to_string(), || custom_oauth_client(ctx, target))
        .await;
    if !matches!(custom, Ok(false)) {
        return vec![];
    }
    match ctx.organization_domain(&target.project).await {
        Ok(Some(domain)) => validation::managed_oauth_external(&members.strings(), &domain),
        _ => vec![],
    }
}

/// Whether the IAP resource has a custom OAuth client as Google reports it now: the backend
/// service's `iap.oauth2ClientId`, or the IAP settings' `accessSettings.oauthSettings.clientId`.
async fn custom_oauth_client(ctx: &Context, target: &IapResource) -> Result<bool, google::Error> {
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

/// Whether the Cloud Run service or backend service behind an IAP resource exists.
async fn target_exists(ctx: &Context, target: &IapResource) -> Result<bool, google::Error> {
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

// ---- create, read, update, delete -------------------------------------------------------------

async fn write(ctx: &Context, planned: &Value, prior: &Value, operation: &str) -> ApplyResponse {
    let resource = planned.get_str("resource").unwrap_or_default().to_string();
    let target = match canonical(ctx, &resource).await {
        Ok(t) => t,
        Err(d) => {
            return ApplyResponse {
                state: prior.clone(),
                private: Vec::new(),
                diagnostics: d.into(),
            }
        }
    };
    // Right before the write, on a fresh read: nothing changes while an error finding holds.
    let unchanged = |d: Diagnostics| ApplyResponse {
        state: prior.clone(),
        private: Vec::new(),
        diagnostics: d,
    };
    let found = match checks(ctx, planned, &target, true).await {
        Ok(findings) => validation::report(findings, &validation::ignored(planned)),
        Err(d) => return unchanged(d.into()),
    };
    if found.has_errors() {
        return unchanged(found);
    }
    let key = target.to_string();
    let role = role_of(planned);
    let condition = condition_of(planned);
    let members: Vec<String> = planned
        .get("members")
        .strings()
        .into_iter()
        .map(str::to_string)
        .collect();
    let deadline = common::deadline(planned, operation);
    let result = ctx
        .clients
        .iap
        .modify_iam_policy(&key, deadline, |policy| {
            policy.set_binding(&role, condition.as_ref(), &members)
        })
        .await;
    match result {
        Ok(policy) => {
            let mut state = planned.clone();
            state.set_attr("etag", Value::opt_string(policy.etag.clone()));
            ctx.policies.put(&key, policy);
            ApplyResponse {
                state: common::finalize(state),
                private: Vec::new(),
                diagnostics: found,
            }
        }
        Err(e) => {
            ctx.policies.invalidate(&key);
            let state = if prior.is_null() {
                Value::Null
            } else {
                prior.clone()
            };
            ApplyResponse {
                state,
                private: Vec::new(),
                diagnostics: common::api_error(&format!("set the {role} binding on {target}"), &e)
                    .into(),
            }
        }
    }
}

async fn read(ctx: &Context, req: ReadRequest) -> ReadResponse {
    let mut diagnostics = Diagnostics::new();
    let state = req.state;
    let Some(resource) = state.get_str("resource").map(str::to_string) else {
        return ReadResponse {
            state,
            private: req.private,
            diagnostics,
        };
    };
    let target = match canonical(ctx, &resource).await {
        Ok(t) => t,
        Err(d) => {
            diagnostics.push(d);
            return ReadResponse {
                state,
                private: req.private,
                diagnostics,
            };
        }
    };
    let key = target.to_string();
    let policy = match ctx
        .policies
        .get_or_fetch(&key, || ctx.clients.iap.iam_policy(&key))
        .await
    {
        Ok(p) => p,
        Err(e) if e.is_not_found() => {
            diagnostics.warning(
                "IAP resource deleted outside Terraform",
                format!(
                    "{resource} no longer exists, so this {TYPE_NAME} was removed from the state."
                ),
            );
            return ReadResponse {
                state: Value::Null,
                private: Vec::new(),
                diagnostics,
            };
        }
        Err(e) => {
            diagnostics.push(common::api_error(
                &format!("read the IAM policy of {resource}"),
                &e,
            ));
            return ReadResponse {
                state,
                private: req.private,
                diagnostics,
            };
        }
    };
    let role = role_of(&state);
    // After an import only the condition's title is known: match on it and read the rest.
    let wanted = condition_of(&state);
    let binding = policy.bindings.iter().find(|b| {
        b.role == role
            && match (&wanted, &b.condition) {
                (None, None) => true,
                (Some(w), Some(c)) if state.get("condition").get("expression").is_null() => {
                    w.title == c.title
                }
                (Some(w), Some(c)) => w.same_as(c),
                _ => false,
            }
    });
    let Some(binding) = binding else {
        return ReadResponse {
            state: Value::Null,
            private: Vec::new(),
            diagnostics,
        };
    };
    let mut next = state.clone();
    let api_members: std::collections::BTreeSet<String> = binding
        .members
        .iter()
        .map(|m| google::normalize_member(m))
        .collect();
    let state_members: std::collections::BTreeSet<String> = state
        .get("members")
        .strings()
        .into_iter()
        .map(google::normalize_member)
        .collect();
    if api_members != state_members {
        next.set_attr(
            "members",
            Value::string_set(binding.members.iter().cloned()),
        );
    }
    if let Some(c) = &binding.condition {
        next.set_attr(
            "condition",
            Value::object([
                ("title", Value::opt_string(c.title.clone())),
                ("description", Value::opt_string(c.description.clone())),
                ("expression", Value::from(c.expression.as_str())),
            ]),
        );
    }
    next.set_attr("role", Value::from(role.as_str()));
    next.set_attr("etag", Value::opt_string(policy.etag.clone()));
    next.set_attr(
        "id",
        Value::string(binding_id(
            &resource,
            &role,
            binding.condition.as_ref().and_then(|c| c.title.as_deref()),
        )),
    );
    ReadResponse {
        state: common::finalize(next),
        private: req.private,
        diagnostics,
    }
}

async fn delete(ctx: &Context, req: DeleteRequest) -> ApplyResponse {
    let prior = req.prior_state;
    let resource = prior.get_str("resource").unwrap_or_default().to_string();
    let target = match canonical(ctx, &resource).await {
        Ok(t) => t,
        Err(d) => {
            return ApplyResponse {
                state: prior.clone(),
                private: Vec::new(),
                diagnostics: d.into(),
            }
        }
    };
    let key = target.to_string();
    let role = role_of(&prior);
    let condition = condition_of(&prior);
    let deadline = common::deadline(&prior, "delete");
    match ctx
        .clients
        .iap
        .modify_iam_policy(&key, deadline, |policy| {
            policy.set_binding(&role, condition.as_ref(), &[])
        })
        .await
    {
        Ok(policy) => {
            ctx.policies.put(&key, policy);
            ApplyResponse::default()
        }
        Err(e) if e.is_not_found() => ApplyResponse::default(),
        Err(e) => {
            ctx.policies.invalidate(&key);
            ApplyResponse {
                state: prior.clone(),
                private: Vec::new(),
                diagnostics: common::api_error(
                    &format!("remove the {role} binding from {target}"),
                    &e,
                )
                .into(),
            }
        }
    }
}

#[async_trait]
impl Resource<Context> for AccessBinding {
    fn type_name(&self) -> &'static str {
        TYPE_NAME
    }

    fn schema(&self) -> Schema {
        schema()
    }

    fn validate(&self, req: &ValidateRequest) -> Diagnostics {
        validate(&req.config)
    }

    async fn modify_plan(&self, ctx: &Context, req: &mut PlanRequest) -> Diagnostics {
        plan(ctx, req).await
    }

    async fn create(&self, ctx: &Context, req: ApplyRequest) -> ApplyResponse {
        write(ctx, &req.planned_state, &Value::Null, "create").await
    }

    async fn read(&self, ctx: &Context, req: ReadRequest) -> ReadResponse {
        read(ctx, req).await
    }

    async fn update(&self, ctx: &Context, req: ApplyRequest) -> ApplyResponse {
        write(ctx, &req.planned_state, &req.prior_state, "update").await
    }

    async fn delete(&self, ctx: &Context, req: DeleteRequest) -> ApplyResponse {
        delete(ctx, req).await
    }

    async fn import(&self, _ctx: &Context, id: &str) -> ImportResponse {
        let mut diagnostics = Diagnostics::new();
        let (resource, role, title) = match parse_import_id(id) {
            Ok(parts) => parts,
            Err(e) => {
                diagnostics.error("Invalid import id", e);
                return ImportResponse {
                    diagnostics,
                    ..ImportResponse::default()
                };
            }
        };
        let mut state = schema().block.empty_value();
        state.set_attr("resource", Value::string(resource.to_string()));
        state.set_attr("role", Value::from(role.as_str()));
        state.set_attr("members", Value::Set(vec![]));
        if let Some(t) = &title {
            state.set_attr(
                "condition",
                Value::object([
                    ("title", Value::from(t.as_str())),
                    ("description", Value::Null),
                    ("expression", Value::Null),
                ]),
            );
        }
        state.set_attr(
            "id",
            Value::string(binding_id(&resource.to_string(), &role, title.as_deref())),
        );
        ImportResponse {
            state,
            private: Vec::new(),
            diagnostics,
        }
    }
}

// ---- import ----------------------------------------------------------------------------------

/// Parses `RESOURCE ROLE` or `RESOURCE ROLE CONDITION_TITLE` (the title may contain spaces).
pub fn parse_import_id(id: &str) -> Result<(IapResource, String, Option<String>), String> {
    let mut parts = id.splitn(3, ' ');
    let (Some(resource), Some(role)) = (parts.next(), parts.next()) else {
        return Err(format!(
            "{id:?} is not an access binding id. Use \"RESOURCE ROLE\" or \"RESOURCE ROLE CONDITION_TITLE\", for example \"projects/my-project/iap_web/cloud_run-us-central1/services/hello roles/iap.httpsResourceAccessor\"."
        ));
    };
    let resource = IapResource::parse(resource)?;
    if !role.starts_with("roles/") && !role.contains("/roles/") {
        return Err(format!(
            "{role:?} is not a role name such as roles/iap.httpsResourceAccessor."
        ));
    }
    let title = parts
        .next()
        .map(str::to_string)
        .filter(|t| !t.trim().is_empty());
    Ok((resource, role.to_string(), title))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn import_ids_with_and_without_condition() {
        let (r, role, title) = parse_import_id(
            "projects/p-123456/iap_web/compute/services/web roles/iap.httpsResourceAccessor",
        )
        .expect("parses");
        assert_eq!(
            r.to_string(),
            "projects/p-123456/iap_web/compute/services/web"
        );
        assert_eq!((role.as_str(), title), (DEFAULT_ROLE, None));
        let (_, _, title) = parse_import_id(
            "projects/p-123456/iap_web/compute/services/web roles/iap.httpsResourceAccessor office hours",
        )
        .expect("parses");
        assert_eq!(title.as_deref(), Some("office hours"));
        for bad in [
            "",
            "projects/p-123456/iap_web/compute/services/web",
            "nonsense roles/x",
            "projects/p-123456/iap_web/compute/services/web viewer",
        ] {
            assert!(parse_import_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn validate_points_at_each_bad_attribute() {
        let mut config = schema().block.empty_value();
        config.set_attr(
            "resource",
            Value::from("projects/p-123456/iap_web/cloud-run-us-central1/services/x"),
        );
        config.set_attr("role", Value::from("viewer"));
        config.set_attr(
            "members",
            Value::string_set(["allUsers", "user:Bob@example.com"]),
        );
        config.set_attr("ignore_checks", Value::string_set(["nope"]));
        let diags = validate(&config);
        let paths: Vec<String> = diags
            .iter()
            .filter_map(|d| d.path.as_ref())
            .map(|p| p.to_string())
            .collect();
        for expected in [
            "resource",
            "role",
            "members[\"allUsers\"]",
            "members[\"user:Bob@example.com\"]",
            "ignore_checks[\"nope\"]",
        ] {
            assert!(
                paths.iter().any(|p| p == expected),
                "{expected} not in {paths:?}"
            );
        }
        config.set_attr("ignore_checks", Value::string_set(["public_member"]));
        config.set_attr("members", Value::string_set(["allUsers"]));
        config.set_attr(
            "resource",
            Value::from("projects/p-123456/iap_web/compute/services/x"),
        );
        config.set_attr("role", Value::Null);
        assert!(
            validate(&config).is_empty(),
            "ignored check must not report"
        );
        config.set_attr("members", Value::unknown());
        assert!(validate(&config).is_empty(), "unknown members are skipped");
    }
}
