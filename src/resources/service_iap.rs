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

async fn plan(ctx: &Context, req: &mut PlanRequest) -> Diagnostics {
    let mut diags = Diagnostics::new();
    if req.planned_state.is_null() {
        return diags;
    }
    let config = req.config.clone();
    let planned = &mut req.planned_state;
    common::plan_project(ctx, &config, planned, &mut diags);
    if config.get("location").is_null() {
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
    let grant = planned.get("grant_iap_invoker").as_bool();
    planned.set_attr("iap_enabled", Value::Bool(true));
    let prior_grant = req.prior_state.get("grant_iap_invoker").as_bool();
    match grant {
        Some(true) => planned.set_attr("iap_invoker_granted", Value::Bool(true)),
        // Turning the grant off may revoke it; otherwise whoever manages the grant keeps it as read.
        _ if req.prior_state.is_null() || prior_grant != Some(false) => {
            planned.set_attr("iap_invoker_granted", Value::unknown())
        }
        _ => {}
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
    diags.extend(checks(ctx, &config, &name, &project.project_number, grant).await);
    diags
}

/// The plan-time checks of a service with direct IAP (read-only API calls).
async fn checks(
    ctx: &Context,
    config: &Value,
    name: &ServiceName,
    project_number: &str,
    grant: Option<bool>,
) -> Diagnostics {
    let ignore = validation::ignored(config);
    let mut findings = common::project_findings(ctx, &name.project, true).await;
    match common::run_service_facts(ctx, name).await {
        Ok(None) => findings.push(validation::target::target_missing(
            "Cloud Run service",
            &name.service,
            &format!("{} of project {}", name.location, name.project),
            AttributePath::attr("service"),
        )),
        Ok(Some(facts)) => {
            let key = format!("{project_number}/{}/{}", name.location, name.service);
            let fronting = ctx.plan_direct_iap(&key);
            findings.extend(validation::service::double_iap_planned(&facts, &fronting));
            findings.extend(validation::service::http2_direct(&facts));
            findings.extend(validation::service::public_invoker(
                &facts,
                AttributePath::attr("service"),
            ));
            if let Some(grant) = grant {
                findings.extend(validation::service::missing_invoker(
                    &facts,
                    project_number,
                    grant,
                ));
            }
        }
        Err(e) => {
            return common::api_error(&format!("read Cloud Run service {name}"), &e)
                .at(AttributePath::attr("service"))
                .into()
        }
    }
    validation::report(findings, &ignore)
}

// ---- create, read, update, delete -------------------------------------------------------------

/// Applies the desired state (create or update) step by step; on failure the returned state tells
/// what really exists so the next apply converges.
async fn converge(
    ctx: &Context,
    prior: &Value,
    planned: &Value,
    config: &Value,
    private: &[u8],
    operation: &str,
) -> ApplyResponse {
    let mut diagnostics = Diagnostics::new();
    let mut private = common::Private::decode(private);
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
    // What exists before this apply changes anything.
    let mut state = if prior.is_null() {
        Value::Null
    } else {
        prior.clone()
    };
    let fail = |state: Value, private: &common::Private, d: Diagnostic| ApplyResponse {
        state: common::finalize(state),
        private: private.encode(),
        diagnostics: d.into(),
    };
    let project = match ctx.project_info(&name.project).await {
        Ok(p) => p,
        Err(e) => {
            return fail(
                state,
                &private,
                common::api_error(&format!("read project {}", name.project), &e),
            )
        }
    };
    let mut next = planned.clone();
    set_identity(&mut next, &name, &project.project_number);
    let agent_member = format!(
        "serviceAccount:{}",
        google::iap_service_agent_email(&project.project_number)
    );
    let grant = planned.get("grant_iap_invoker").as_bool().unwrap_or(true);
    let key = name.to_string();
    if grant {
        if let Err(e) = ctx
            .clients
            .service_usage
            .iap_service_agent(&name.project, &project.project_number, deadline)
            .await
        {
            return fail(
                state,
                &private,
                common::api_error("provision the IAP service agent", &e),
            );
        }
        match common::grant_invoker(ctx, &name, &agent_member, deadline).await {
            Ok(added) => {
                // A create that finds IAP already on adopts the agent's grant: it is what an
                // interrupted earlier apply of this resource left (see docs/reliability.md).
                let adopted = !added
                    && prior.is_null()
                    && ctx
                        .clients
                        .run
                        .service(&name)
                        .await
                        .is_ok_and(|s| s.iap_enabled);
                if added || adopted {
                    private
                        .invoker_grants
                        .insert(key.clone(), agent_member.clone());
                }
            }
            Err(e) => {
                return fail(
                    state,
                    &private,
                    common::api_error(
                        &format!("grant roles/run.invoker on {name} to the IAP service agent"),
                        &e,
                    ),
                );
            }
        }
        if state.is_null() {
            // The grant exists now: record the object so a failure below leaves nothing unknown to Terraform.
            state = next.clone();
            state.set_attr("iap_enabled", Value::Bool(false));
            state.set_attr("iap_invoker_granted", Value::Bool(true));
            state.set_attr("uri", Value::Null);
        } else {
            state.set_attr("iap_invoker_granted", Value::Bool(true));
        }
    } else if let Some(member) = private.invoker_grants.get(&key).cloned() {
        if let Err(e) = common::revoke_invoker(ctx, &name, &member, deadline).await {
            return fail(
                state,
                &private,
                common::api_error(
                    &format!("remove the invoker grant this resource added on {name}"),
                    &e,
                ),
            );
        }
        private.invoker_grants.remove(&key);
    }
    match ctx.clients.run.set_iap_enabled(&name, true, deadline).await {
        Ok(service) => {
            next.set_attr("uri", Value::opt_string(service.uri.clone()));
            if !grant {
                let granted = match ctx.clients.run.iam_policy(&name).await {
                    Ok(policy) => policy.has_member(common::INVOKER_ROLE, &agent_member, None),
                    Err(_) => false,
                };
                next.set_attr("iap_invoker_granted", Value::Bool(granted));
            }
            ApplyResponse {
                state: common::finalize(next),
                private: private.encode(),
                diagnostics,
            }
        }
        Err(e) => {
            let mut d = common::api_error(&format!("enable IAP on Cloud Run service {name}"), &e);
            if e.is_not_found() {
                d = d.at(AttributePath::attr("service"));
            }
            if prior.is_null() {
                // A failed create undoes its grant and leaves no state: a tainted object would be
                // replaced, and Terraform hands the destroy half of a replacement no private
                // state, so the grant recorded there would be left behind.
                let rolled_back = match private.invoker_grants.get(&key).cloned() {
                    Some(member) => common::revoke_invoker(ctx, &name, &member, deadline)
                        .await
                        .is_ok(),
                    None => true,
                };
                if rolled_back {
                    private.invoker_grants.remove(&key);
                    state = Value::Null;
                }
            }
            fail(state, &private, d)
        }
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
    ReadResponse {
        state: common::finalize(state),
        private: req.private,
        diagnostics,
    }
}

async fn delete(ctx: &Context, req: DeleteRequest) -> ApplyResponse {
    let prior = req.prior_state;
    let mut private = common::Private::decode(&req.prior_private);
    let Some(name) = service_name(&prior) else {
        return ApplyResponse::default();
    };
    let deadline = common::deadline(&prior, "delete");
    let fail = |d: Diagnostic, private: &common::Private| ApplyResponse {
        state: prior.clone(),
        private: private.encode(),
        diagnostics: d.into(),
    };
    match ctx
        .clients
        .run
        .set_iap_enabled(&name, false, deadline)
        .await
    {
        Ok(_) => {}
        Err(e) if e.is_not_found() => return ApplyResponse::default(),
        Err(e) => {
            return fail(
                common::api_error(&format!("disable IAP on Cloud Run service {name}"), &e),
                &private,
            )
        }
    }
    if let Some(member) = private.invoker_grants.get(&name.to_string()).cloned() {
        if let Err(e) = common::revoke_invoker(ctx, &name, &member, deadline).await {
            return fail(
                common::api_error(
                    &format!("remove the invoker grant this resource added on {name}"),
                    &e,
                ),
                &private,
            );
        }
        private.invoker_grants.clear();
    }
    ApplyResponse::default()
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
