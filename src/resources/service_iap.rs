//! `iaprun_service_iap`: IAP enabled directly on a Cloud Run service (Run Admin API v2 `iapEnabled`),
//! with the IAP service agent provisioned and granted `roles/run.invoker` on the service.

use async_trait::async_trait;

use super::common;
use crate::framework::{
    ApplyRequest, ApplyResponse, Attribute, AttributePath, Block, DeleteRequest, Diagnostic,
    Diagnostics, ImportResponse, PlanRequest, ReadRequest, ReadResponse, Resource, Schema,
    ValidateRequest, Value,
};
use crate::google::{self, ServiceName};
use crate::names;
use crate::provider::Context;
use crate::validation;

/// The resource type.
pub struct ServiceIap;

pub const TYPE_NAME: &str = "iaprun_service_iap";

// ---- schema ----------------------------------------------------------------------------------

fn schema() -> Schema {
    Schema::new(
        0,
        Block::new(
            "Enables Identity-Aware Proxy directly on a Cloud Run service (no load balancer). In one step it provisions the IAP service agent, grants it `roles/run.invoker` on the service and sets `iapEnabled`. Destroying it turns IAP off and removes only the grant it added.",
        )
        .attribute(common::id_attribute("projects/{project}/locations/{location}/services/{service}"))
        .attribute(
            Attribute::string("service")
                .required()
                .force_new()
                .description("Name of the Cloud Run service. Changing it replaces the resource."),
        )
        .attribute(Attribute::string("location").optional().computed().force_new().description(
            "Region of the service, such as `us-central1`. Defaults to the provider's `region`. Changing it replaces the resource.",
        ))
        .attribute(common::project_attribute())
        .attribute(common::grant_iap_invoker_attribute("the service"))
        .attribute(common::ignore_checks_attribute())
        .attribute(Attribute::string("project_number").computed().description("Number of the project."))
        .attribute(Attribute::string("iap_resource_name").computed().description(
            "The IAP resource name of the service, `projects/{project_number}/iap_web/cloud_run-{location}/services/{service}`: use it as `resource` of `iaprun_access_binding`.",
        ))
        .attribute(Attribute::string("iap_service_agent").computed().description(
            "The IAP service agent, `service-{project_number}@gcp-sa-iap.iam.gserviceaccount.com`.",
        ))
        .attribute(Attribute::string("uri").computed().description("The service's main URI; IAP protects it."))
        .attribute(Attribute::bool("iap_enabled").computed().description(
            "Whether IAP is enabled on the service as last read. A change made outside Terraform shows as drift and the next apply restores it.",
        ))
        .attribute(Attribute::bool("iap_invoker_granted").computed().description(
            "Whether the IAP service agent holds `roles/run.invoker` on the service as last read.",
        ))
        .attribute(common::invoker_grants_attribute())
        .attribute(common::checks_after_attribute())
        .block(crate::framework::schema::timeouts_block(true, true, true)),
    )
}

// ---- validate --------------------------------------------------------------------------------

fn validate(config: &Value) -> Diagnostics {
    let mut diags = common::validate_common(config);
    diags.extend(common::validate_timeouts(config));
    if let Some(s) = config.get_str("service") {
        if !names::is_run_service(s) {
            diags.attribute_error(
                AttributePath::attr("service"),
                "Invalid service name",
                format!("{s:?} is not a Cloud Run service name: lower-case letters, digits and hyphens, starting with a letter, at most 49 characters. Give the name, not the full resource path."),
            );
        }
    }
    if let Some(l) = config.get_str("location") {
        if !names::is_region(l) {
            diags.attribute_error(
                AttributePath::attr("location"),
                "Invalid location",
                format!("{l:?} is not a region such as us-central1; Cloud Run services live in regions, not zones."),
            );
        }
    }
    diags
}

// ---- plan ------------------------------------------------------------------------------------

/// The service this instance designates, when project, location and service are all known.
fn service_name(value: &Value) -> Option<ServiceName> {
    Some(ServiceName::new(
        value.get_str("project")?,
        value.get_str("location")?,
        value.get_str("service")?,
    ))
}

/// Fills the identity attributes that follow from the project number.
fn set_identity(state: &mut Value, name: &ServiceName, project_number: &str) {
    state.set_attr("id", Value::string(name.to_string()));
    state.set_attr("project_number", Value::from(project_number));
    state.set_attr(
        "iap_resource_name",
        Value::string(google::cloud_run_resource(
            project_number,
            &name.location,
            &name.service,
        )),
    );
    state.set_attr(
        "iap_service_agent",
        Value::string(google::iap_service_agent_email(project_number)),
    );
}

/// The attributes the configuration sets: a change in one is a change the user asks for.
const CONFIGURED: &[&str] = &[
    "service",
    "location",
    "project",
    "grant_iap_invoker",
    "ignore_checks",
    "timeouts",
];

/// Computed attributes that describe the object: unknown again when the resource is replaced.
const COMPUTED: &[&str] = &[
    "id",
    "project_number",
    "iap_resource_name",
    "iap_service_agent",
    "uri",
    "invoker_grants",
];

async fn plan(ctx: &Context, req: &mut PlanRequest) -> Diagnostics {
    let mut diags = Diagnostics::new();
    if req.planned_state.is_null() {
        return diags;
    }
    let config = req.config.clone();
    let prior = req.prior_state.clone();
    let planned = &mut req.planned_state;
    common::plan_project(ctx, &config, planned, &mut diags);
    if config.get("location").is_null() && ctx.settings.region_unknown {
        planned.set_attr("location", Value::unknown());
    } else if config.get("location").is_null() {
        match ctx.region(None) {
            Some(region) => planned.set_attr("location", Value::from(region)),
            None => diags.attribute_error(
                AttributePath::attr("location"),
                "No location",
                "Set location on this resource or region in the provider block (or GOOGLE_REGION).",
            ),
        }
    }
    if config.get("grant_iap_invoker").is_null() {
        planned.set_attr("grant_iap_invoker", Value::Bool(true));
    }
    // A new provider default is a new target: replace, never move IAP in place.
    common::plan_project_identity(ctx, &prior, &config, planned, &mut req.requires_replace).await;
    common::plan_replace_on_change(&prior, planned, "location", &mut req.requires_replace);
    let replacing = !req.requires_replace.is_empty();
    if replacing {
        for a in COMPUTED {
            planned.set_attr(a, Value::unknown());
        }
    }
    let grant = planned.get("grant_iap_invoker").as_bool();
    planned.set_attr("iap_enabled", Value::Bool(true));
    let prior_grant = prior.get("grant_iap_invoker").as_bool();
    match grant {
        Some(true) => planned.set_attr("iap_invoker_granted", Value::Bool(true)),
        // Turning the grant off may revoke it; otherwise whoever manages the grant keeps it as read.
        _ if prior.is_null() || prior_grant != Some(false) => {
            planned.set_attr("iap_invoker_granted", Value::unknown())
        }
        _ => {}
    }
    let intent_changed = validation::timing::intent_changed(&prior, planned, CONFIGURED);
    // What this resource adds may change whenever anything is applied.
    if !prior.is_null()
        && (intent_changed
            || prior.get("iap_enabled") != planned.get("iap_enabled")
            || prior.get("iap_invoker_granted") != planned.get("iap_invoker_granted"))
    {
        planned.set_attr("invoker_grants", Value::unknown());
    }
    if diags.has_errors() {
        return diags;
    }
    let Some(name) = service_name(planned) else {
        return diags; // unknown until apply: checked then, when Terraform plans again
    };
    let project = match ctx.project_info(&name.project).await {
        Ok(p) => p,
        Err(e) => {
            diags.push(
                common::api_error(&format!("read project {}", name.project), &e)
                    .at(AttributePath::attr("project")),
            );
            return diags;
        }
    };
    set_identity(planned, &name, &project.project_number);
    let at = if replacing {
        validation::timing::AtPlan::Enforce
    } else {
        validation::timing::at_plan(&prior, planned, intent_changed)
    };
    let ignore = validation::ignored(&config);
    let findings = checks(ctx, &name, &project.project_number, grant, false).await;
    match findings {
        Ok(findings) => diags.extend(validation::timing::report_at_plan(findings, &ignore, at)),
        Err(d) => diags.push(d),
    }
    diags
}

/// The live checks of a service with direct IAP (read-only API calls). `at_apply`: a missing
/// service is an error only then (at plan the configuration may still create it).
async fn checks(
    ctx: &Context,
    name: &ServiceName,
    project_number: &str,
    grant: Option<bool>,
    at_apply: bool,
) -> Result<Vec<validation::Finding>, Diagnostic> {
    let mut findings = common::project_findings(ctx, &name.project, true).await;
    match common::run_service_facts(ctx, name).await {
        Ok(None) if at_apply => findings.push(validation::target::target_missing(
            "Cloud Run service",
            &name.service,
            &format!("{} of project {}", name.location, name.project),
            AttributePath::attr("service"),
        )),
        Ok(None) => return Ok(vec![]),
        Ok(Some(facts)) => {
            let key = format!("{project_number}/{}/{}", name.location, name.service);
            let mut fronting = ctx.plan_direct_iap(&key);
            // Seen from the service: a live IAP-enabled backend in front of it.
            if let Ok(paths) = common::iap_paths_to(ctx, name, false, None).await {
                fronting.extend(
                    paths
                        .iter()
                        .map(|p| p.trim_start_matches("backend service ").to_string()),
                );
            }
            findings.extend(validation::service::double_iap_planned(&facts, &fronting));
            findings.extend(validation::service::http2_direct(&facts));
            findings.extend(validation::service::public_invoker(
                &facts,
                AttributePath::attr("service"),
            ));
            if let Some(grant) = grant {
                let project_invokers = project_invokers(ctx, &name.project).await;
                findings.extend(validation::service::missing_invoker_in_project(
                    &facts,
                    project_number,
                    grant,
                    project_invokers.as_deref(),
                ));
            }
        }
        Err(e) => {
            return Err(
                common::api_error(&format!("read Cloud Run service {name}"), &e)
                    .at(AttributePath::attr("service")),
            )
        }
    }
    Ok(findings)
}

/// The unconditional `roles/run.invoker` members of a project's own policy; `None` when unreadable.
async fn project_invokers(ctx: &Context, project: &str) -> Option<Vec<String>> {
    ctx.clients
        .resource_manager
        .project_iam_policy(project)
        .await
        .ok()
        .map(|p| p.members(common::INVOKER_ROLE, None))
}

// ---- create, read, update, delete -------------------------------------------------------------

/// Applies the desired state (create or update) step by step: the live checks on a fresh read
/// first (an error finding stops it with nothing changed), then IAP on, then the agent's grant.
/// On failure the returned state tells what really exists, grants added included.
async fn converge(
    ctx: &Context,
    prior: &Value,
    planned: &Value,
    config: &Value,
    private: &[u8],
    operation: &str,
) -> ApplyResponse {
    let mut diagnostics = Diagnostics::new();
    let private = common::Private::decode(private);
    let Some(name) = service_name(planned) else {
        diagnostics.error(
            "Incomplete plan",
            "project, location and service must be known at apply. This is a bug in the provider.",
        );
        return ApplyResponse {
            state: prior.clone(),
            private: private.encode(),
            diagnostics,
        };
    };
    let deadline = common::deadline(config, operation);
    let unchanged = |d: Diagnostics| ApplyResponse {
        state: prior.clone(),
        private: private.encode(),
        diagnostics: d,
    };
    let project = match ctx.project_info(&name.project).await {
        Ok(p) => p,
        Err(e) => {
            return unchanged(
                common::api_error(&format!("read project {}", name.project), &e).into(),
            )
        }
    };
    let grant = planned.get("grant_iap_invoker").as_bool().unwrap_or(true);
    // Right before the first change, on a fresh read: nothing changes while an error finding holds.
    match checks(ctx, &name, &project.project_number, Some(grant), true).await {
        Ok(findings) => {
            let found = validation::report(findings, &validation::ignored(config));
            if found.has_errors() {
                return unchanged(found);
            }
            diagnostics.extend(found);
        }
        Err(d) => return unchanged(d.into()),
    }
    let mut next = planned.clone();
    set_identity(&mut next, &name, &project.project_number);
    let agent_member = format!(
        "serviceAccount:{}",
        google::iap_service_agent_email(&project.project_number)
    );
    let key = name.to_string();
    let mut grants = common::recorded_grants(prior, &private);
    // What exists, for a failure part-way: the prior object, or (create) the object once changed.
    let record =
        |next: &Value, iap_enabled: Option<bool>, grants: &std::collections::BTreeSet<String>| {
            let mut state = next.clone();
            if let Some(on) = iap_enabled {
                state.set_attr("iap_enabled", Value::Bool(on));
            }
            state.set_attr("invoker_grants", Value::string_set(grants.iter().cloned()));
            state.set_attr("iap_invoker_granted", Value::Bool(grants.contains(&key)));
            common::finalize(state)
        };
    let fail = |state: Value, d: Diagnostic, diagnostics: &Diagnostics| {
        let mut all = diagnostics.clone();
        all.push(d);
        ApplyResponse {
            state,
            private: Vec::new(),
            diagnostics: all,
        }
    };
    if grant {
        if let Err(e) = ctx
            .clients
            .service_usage
            .iap_service_agent(&name.project, &project.project_number, deadline)
            .await
        {
            return unchanged(common::api_error("provision the IAP service agent", &e).into());
        }
    }
    // IAP first: should the run stop before the grant, the next apply finds IAP on and no grant,
    // and adds (and records) it; a grant it finds is never claimed.
    let service = match ctx.clients.run.set_iap_enabled(&name, true, deadline).await {
        Ok(service) => service,
        Err(e) => {
            let mut d = common::api_error(&format!("enable IAP on Cloud Run service {name}"), &e);
            if e.is_not_found() {
                d = d.at(AttributePath::attr("service"));
            }
            // The change may have landed (an operation that timed out): report what is there.
            let on = ctx
                .clients
                .run
                .service(&name)
                .await
                .ok()
                .map(|s| s.iap_enabled);
            let state = match (prior.is_null(), on) {
                (true, Some(true)) => record(&next, Some(true), &grants),
                (true, _) => Value::Null,
                (false, on) => {
                    let mut state = prior.clone();
                    if let Some(on) = on {
                        state.set_attr("iap_enabled", Value::Bool(on));
                    }
                    state
                }
            };
            return fail(state, d, &diagnostics);
        }
    };
    next.set_attr("uri", Value::opt_string(service.uri.clone()));
    if grant {
        match common::grant_invoker_propagated(ctx, &name, &agent_member, deadline).await {
            Ok(true) => {
                grants.insert(key.clone());
            }
            Ok(false) => {}
            Err(e) => {
                let d = common::api_error(
                    &format!("grant roles/run.invoker on {name} to the IAP service agent"),
                    &e,
                );
                return fail(record(&next, Some(true), &grants), d, &diagnostics);
            }
        }
        next.set_attr("iap_invoker_granted", Value::Bool(true));
    } else {
        for recorded in grants.clone() {
            let Ok(service) = common::service_from_key(&recorded) else {
                continue;
            };
            if let Err(e) = common::revoke_invoker(ctx, &service, &agent_member, deadline).await {
                let d = common::api_error(
                    &format!("remove the invoker grant this resource added on {service}"),
                    &e,
                );
                return fail(record(&next, Some(true), &grants), d, &diagnostics);
            }
            grants.remove(&recorded);
        }
        let granted = match ctx.clients.run.iam_policy(&name).await {
            Ok(policy) => policy.has_member(common::INVOKER_ROLE, &agent_member, None),
            Err(_) => false,
        };
        next.set_attr("iap_invoker_granted", Value::Bool(granted));
    }
    next.set_attr("invoker_grants", Value::string_set(grants.iter().cloned()));
    ApplyResponse {
        state: common::finalize(next),
        private: Vec::new(),
        diagnostics,
    }
}

async fn read(ctx: &Context, req: ReadRequest) -> ReadResponse {
    let mut state = req.state.clone();
    let Some(name) = service_name(&state) else {
        return ReadResponse {
            state,
            private: req.private,
            diagnostics: Diagnostics::new(),
        };
    };
    let mut diagnostics = Diagnostics::new();
    let service = match ctx.clients.run.service(&name).await {
        Ok(s) => s,
        Err(e) if e.is_not_found() => {
            diagnostics.warning(
                "Cloud Run service deleted outside Terraform",
                format!("The Cloud Run service {name} no longer exists, so {TYPE_NAME} was removed from the state. Recreate the service, or remove this resource from the configuration."),
            );
            return ReadResponse {
                state: Value::Null,
                private: Vec::new(),
                diagnostics,
            };
        }
        Err(e) => {
            diagnostics.push(common::api_error(
                &format!("read Cloud Run service {name}"),
                &e,
            ));
            return ReadResponse {
                state,
                private: req.private,
                diagnostics,
            };
        }
    };
    let project_number = match state.get_str("project_number") {
        Some(n) => n.to_string(),
        None => match ctx.project_info(&name.project).await {
            Ok(p) => p.project_number.clone(),
            Err(e) => {
                diagnostics.push(common::api_error(
                    &format!("read project {}", name.project),
                    &e,
                ));
                return ReadResponse {
                    state,
                    private: req.private,
                    diagnostics,
                };
            }
        },
    };
    set_identity(&mut state, &name, &project_number);
    state.set_attr("iap_enabled", Value::Bool(service.iap_enabled));
    state.set_attr("uri", Value::opt_string(service.uri.clone()));
    let agent = format!(
        "serviceAccount:{}",
        google::iap_service_agent_email(&project_number)
    );
    match ctx.clients.run.iam_policy(&name).await {
        Ok(policy) => state.set_attr(
            "iap_invoker_granted",
            Value::Bool(policy.has_member(common::INVOKER_ROLE, &agent, None)),
        ),
        Err(e) => {
            diagnostics.push(common::api_error(
                &format!("read the IAM policy of Cloud Run service {name}"),
                &e,
            ));
            return ReadResponse {
                state: req.state,
                private: req.private,
                diagnostics,
            };
        }
    }
    if state.get("grant_iap_invoker").is_null() {
        state.set_attr("grant_iap_invoker", Value::Bool(true));
    }
    // A state from before grants were recorded in it (or an import, which added nothing).
    let grants = common::recorded_grants(&state, &common::Private::decode(&req.private));
    state.set_attr("invoker_grants", Value::string_set(grants));
    ReadResponse {
        state: common::finalize(state),
        private: req.private,
        diagnostics,
    }
}

async fn delete(ctx: &Context, req: DeleteRequest) -> ApplyResponse {
    let prior = req.prior_state;
    let private = common::Private::decode(&req.prior_private);
    let Some(name) = service_name(&prior) else {
        return ApplyResponse::default();
    };
    let deadline = common::deadline(&prior, "delete");
    let mut diagnostics = Diagnostics::new();
    let mut grants = common::recorded_grants(&prior, &private);
    let fail =
        |d: Diagnostic, grants: &std::collections::BTreeSet<String>, diagnostics: &Diagnostics| {
            let mut state = prior.clone();
            state.set_attr("invoker_grants", Value::string_set(grants.iter().cloned()));
            let mut all = diagnostics.clone();
            all.push(d);
            ApplyResponse {
                state,
                private: Vec::new(),
                diagnostics: all,
            }
        };
    match ctx
        .clients
        .run
        .set_iap_enabled(&name, false, deadline)
        .await
    {
        Ok(_) => {}
        Err(e) if e.is_not_found() => {}
        Err(e) => {
            return fail(
                common::api_error(&format!("disable IAP on Cloud Run service {name}"), &e),
                &grants,
                &diagnostics,
            )
        }
    }
    let member = prior
        .get_str("iap_service_agent")
        .map(|a| format!("serviceAccount:{a}"))
        .or_else(|| private.invoker_grants.values().next().cloned());
    if let Some(member) = member {
        for recorded in grants.clone() {
            let Ok(service) = common::service_from_key(&recorded) else {
                continue;
            };
            if let Err(e) =
                common::release_grant(ctx, &service, &member, None, deadline, &mut diagnostics)
                    .await
            {
                return fail(
                    common::api_error(
                        &format!("remove the invoker grant this resource added on {service}"),
                        &e,
                    ),
                    &grants,
                    &diagnostics,
                );
            }
            grants.remove(&recorded);
        }
    }
    ApplyResponse {
        diagnostics,
        ..ApplyResponse::default()
    }
}

// ---- import ----------------------------------------------------------------------------------

fn import(ctx: &Context, id: &str) -> ImportResponse {
    let mut diagnostics = Diagnostics::new();
    let parsed = match names::parse_service_id(id) {
        Ok(p) => p,
        Err(e) => {
            diagnostics.error("Invalid import id", e);
            return ImportResponse {
                diagnostics,
                ..ImportResponse::default()
            };
        }
    };
    let (Some(project), Some(location)) = (
        ctx.project(parsed.project.as_deref()),
        ctx.region(parsed.location.as_deref()),
    ) else {
        diagnostics.error(
            "Incomplete import id",
            format!("{id:?} lacks the project or location and the provider sets no default. Use projects/PROJECT/locations/REGION/services/SERVICE."),
        );
        return ImportResponse {
            diagnostics,
            ..ImportResponse::default()
        };
    };
    let mut state = schema().block.empty_value();
    state.set_attr("service", Value::from(parsed.service.as_str()));
    state.set_attr("location", Value::from(location));
    state.set_attr("project", Value::from(project));
    state.set_attr("grant_iap_invoker", Value::Bool(true));
    ImportResponse {
        state,
        private: Vec::new(),
        diagnostics,
    }
}

#[async_trait]
impl Resource<Context> for ServiceIap {
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
        converge(
            ctx,
            &Value::Null,
            &req.planned_state,
            &req.config,
            &req.planned_private,
            "create",
        )
        .await
    }

    async fn read(&self, ctx: &Context, req: ReadRequest) -> ReadResponse {
        read(ctx, req).await
    }

    async fn update(&self, ctx: &Context, req: ApplyRequest) -> ApplyResponse {
        converge(
            ctx,
            &req.prior_state,
            &req.planned_state,
            &req.config,
            &req.planned_private,
            "update",
        )
        .await
    }

    async fn delete(&self, ctx: &Context, req: DeleteRequest) -> ApplyResponse {
        delete(ctx, req).await
    }

    async fn import(&self, ctx: &Context, id: &str) -> ImportResponse {
        import(ctx, id)
    }
}
