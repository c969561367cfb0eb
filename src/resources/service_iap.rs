//! `iaprun_service_iap`: IAP enabled directly on a Cloud Run service (Run Admin API v2 `iapEnabled`),
//! with the IAP service agent provisioned and granted `roles/run.invoker` on the service.

use std::collections::BTreeSet;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::common::{self, Agent, Private};
use super::Context;
use crate::framework::timeouts::{timeouts_block, Timeouts};
use crate::framework::{
    Applied, Attr, Attribute, AttributePath, Block, Change, ClientCapabilities, Delete, Deleted,
    Diagnostic, Diagnostics, Failure, Plan, Read, Resource, Schema,
};
use crate::google::{self, ServiceName};
use crate::names;
use crate::validation;

/// The resource type.
pub struct ServiceIap;

pub const TYPE_NAME: &str = "iaprun_service_iap";

/// Config, plan and state of one `iaprun_service_iap`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Model {
    pub id: Attr<String>,
    pub service: Attr<String>,
    pub location: Attr<String>,
    pub project: Attr<String>,
    pub grant_iap_invoker: Attr<bool>,
    pub ignore_checks: Attr<BTreeSet<String>>,
    pub project_number: Attr<String>,
    pub iap_resource_name: Attr<String>,
    pub iap_service_agent: Attr<String>,
    pub uri: Attr<String>,
    pub iap_enabled: Attr<bool>,
    pub iap_invoker_granted: Attr<bool>,
    pub timeouts: Attr<Timeouts>,
}

impl Model {
    /// The service this instance designates, when project, location and service are all known.
    fn service_name(&self) -> Option<ServiceName> {
        let (project, location) = (self.project.get()?, self.location.get()?);
        Some(ServiceName::new(
            project.as_str(),
            location.as_str(),
            self.service.get()?.as_str(),
        ))
    }

    /// Fills the identity attributes that follow from the project number.
    fn set_identity(&mut self, name: &ServiceName, project_number: &str) {
        self.id = Attr::Known(name.to_string());
        self.project_number = project_number.into();
        let resource = google::cloud_run_resource(project_number, &name.location, &name.service);
        self.iap_resource_name = Attr::Known(resource);
        self.iap_service_agent = Attr::Known(google::iap_service_agent_email(project_number));
    }
}

#[async_trait]
impl Resource<Context> for ServiceIap {
    type Model = Model;
    type Private = Private;
    const TYPE_NAME: &'static str = TYPE_NAME;

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
        .attribute(common::iap_enabled_attribute("service"))
        .attribute(Attribute::bool("iap_invoker_granted").computed().description(
            "Whether the IAP service agent holds `roles/run.invoker` on the service as last read.",
        ))
        .block(timeouts_block(true, true, true)),
    )
    }

    fn validate(config: &Model, _: ClientCapabilities) -> Diagnostics {
        let mut diags = common::validate_common(&config.project, &config.ignore_checks);
        common::check_name(&mut diags, "service", &config.service);
        common::check_name(&mut diags, "location", &config.location);
        diags
    }

    async fn plan(&self, ctx: &Context, plan: &mut Plan<Model>) -> Diagnostics {
        let (config, planned) = (&plan.config, &mut plan.planned);
        let mut diags = common::plan_project(ctx, &config.project, &mut planned.project);
        if config.location.is_null() {
            match ctx.region(None) {
                Some(region) => planned.location = region.into(),
                None => diags.attribute_error(
                    AttributePath::attr("location"),
                    "No location",
                    "Set location on this resource or region in the provider block (or GOOGLE_REGION).",
                ),
            }
        }
        let grant = planned.grant_iap_invoker.get().copied();
        planned.iap_enabled = Attr::Known(true);
        let prior_grant = plan
            .prior
            .as_ref()
            .map(|p| p.grant_iap_invoker.get().copied());
        match grant {
            Some(true) => planned.iap_invoker_granted = Attr::Known(true),
            // Turning the grant off may revoke it; otherwise whoever manages the grant keeps it as read.
            _ if prior_grant.is_none_or(|g| g != Some(false)) => {
                planned.iap_invoker_granted = Attr::unknown()
            }
            _ => {}
        }
        // Unknown until apply: checked then, when Terraform plans again.
        let Some(name) = planned.service_name().filter(|_| !diags.has_errors()) else {
            return diags;
        };
        match common::project_number(ctx, &name.project).await {
            Ok(number) => {
                planned.set_identity(&name, &number);
                diags.extend(checks(ctx, &config.ignore_checks, &name, &number, grant).await);
            }
            Err(d) => diags.push(d.at(AttributePath::attr("project"))),
        }
        diags
    }

    async fn create(&self, ctx: &Context, change: Change<'_, Model, Private>) -> Applied<Model> {
        converge(ctx, change).await
    }

    async fn read(&self, ctx: &Context, mut state: Model) -> Result<Read<Model>, Diagnostic> {
        let Some(name) = state.service_name() else {
            return Ok(Read::Found(state));
        };
        let service = match ctx.clients.run.service(&name).await {
            Ok(s) => s,
            Err(e) if e.is_not_found() => {
                return Ok(Read::Gone(Some(Diagnostic::warning(
                    "Cloud Run service deleted outside Terraform",
                    format!("The Cloud Run service {name} no longer exists, so {TYPE_NAME} was removed from the state. Recreate the service, or remove this resource from the configuration."),
                ))))
            }
            Err(e) => return Err(common::api_error(&format!("read Cloud Run service {name}"), &e)),
        };
        let number =
            common::recorded_project_number(ctx, &state.project_number, &name.project).await?;
        state.set_identity(&name, &number);
        state.iap_enabled = Attr::Known(service.iap_enabled);
        state.uri = Attr::from_option(service.uri.clone());
        let granted = Agent::new(&name.project, &number).granted(ctx, &name).await;
        let granted = granted.map_err(|e| {
            common::api_error(
                &format!("read the IAM policy of Cloud Run service {name}"),
                &e,
            )
        })?;
        state.iap_invoker_granted = Attr::Known(granted);
        Ok(Read::Found(state))
    }

    async fn delete(&self, ctx: &Context, delete: Delete<'_, Model, Private>) -> Deleted {
        let Delete {
            prior,
            deadline,
            private,
        } = delete;
        let Some(name) = prior.service_name() else {
            return Ok(());
        };
        match ctx
            .clients
            .run
            .set_iap_enabled(&name, false, deadline)
            .await
        {
            Ok(_) => {}
            Err(e) if e.is_not_found() => return Ok(()),
            Err(e) => {
                return Err(common::api_error(
                    &format!("disable IAP on Cloud Run service {name}"),
                    &e,
                ))
            }
        }
        common::revoke_grants(ctx, private, deadline).await
    }

    async fn import(&self, ctx: &Context, id: &str) -> Result<Model, Diagnostic> {
        let parsed =
            names::parse_service_id(id).map_err(|e| Diagnostic::error("Invalid import id", e))?;
        let (Some(project), Some(location)) = (
            ctx.project(parsed.project.as_deref()),
            ctx.region(parsed.location.as_deref()),
        ) else {
            return Err(Diagnostic::error(
                "Incomplete import id",
                format!("{id:?} lacks the project or location and the provider sets no default. Use projects/PROJECT/locations/REGION/services/SERVICE."),
            ));
        };
        Ok(Model {
            service: parsed.service.as_str().into(),
            location: location.into(),
            project: project.into(),
            grant_iap_invoker: Attr::Known(true),
            ..Model::default()
        })
    }
}

/// The plan-time checks of a service with direct IAP (read-only API calls).
async fn checks(
    ctx: &Context,
    ignore_checks: &Attr<BTreeSet<String>>,
    name: &ServiceName,
    project_number: &str,
    grant: Option<bool>,
) -> Diagnostics {
    let ignore = common::ignored(ignore_checks);
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
            let checks = validation::service::direct_iap(&facts, &fronting, project_number, grant);
            findings.extend(checks);
        }
        Err(e) => {
            return common::api_error(&format!("read Cloud Run service {name}"), &e)
                .at(AttributePath::attr("service"))
                .into()
        }
    }
    validation::report(findings, &ignore)
}

// ---- create and update ------------------------------------------------------------------------

/// Applies the desired state (create or update) step by step; on failure the returned state tells
/// what really exists so the next apply converges.
async fn converge(ctx: &Context, change: Change<'_, Model, Private>) -> Applied<Model> {
    let (planned, deadline, private) = (change.planned, change.deadline, change.private);
    let Some(name) = planned.service_name() else {
        return Err(common::incomplete_plan(
            change.prior,
            "project, location and service",
        ));
    };
    let creating = change.prior.is_none();
    // What exists before this apply changes anything.
    let mut state = change.prior;
    let number = match common::project_number(ctx, &name.project).await {
        Ok(n) => n,
        Err(d) => return Err(Failure::new(state, d)),
    };
    let mut next = planned.clone();
    next.set_identity(&name, &number);
    let agent = Agent::new(&name.project, &number);
    let grant = planned.grant_iap_invoker.or(true);
    if grant {
        // A create that finds IAP already on adopts the agent's grant: it is what an
        // interrupted earlier apply of this resource left (see docs/reliability.md).
        let adopt = async {
            creating
                && ctx
                    .clients
                    .run
                    .service(&name)
                    .await
                    .is_ok_and(|s| s.iap_enabled)
        };
        let granted = match agent.provision(ctx, deadline).await {
            Ok(()) => agent.grant(ctx, &name, adopt, private, deadline).await,
            Err(d) => Err(d),
        };
        if let Err(d) = granted {
            return Err(Failure::new(state, d));
        }
        // The grant exists now: record the object so a failure below leaves nothing unknown to Terraform.
        let recorded = state.get_or_insert_with(|| Model {
            iap_enabled: Attr::Known(false),
            uri: Attr::Null,
            ..next.clone()
        });
        recorded.iap_invoker_granted = Attr::Known(true);
    } else if let Err(d) = common::revoke_grants(ctx, private, deadline).await {
        return Err(Failure::new(state, d));
    }
    match ctx.clients.run.set_iap_enabled(&name, true, deadline).await {
        Ok(service) => {
            next.uri = Attr::from_option(service.uri.clone());
            if !grant {
                let granted = agent.granted(ctx, &name).await.unwrap_or(false);
                next.iap_invoker_granted = Attr::Known(granted);
            }
            Ok(next)
        }
        Err(e) => {
            let mut d = common::api_error(&format!("enable IAP on Cloud Run service {name}"), &e);
            if e.is_not_found() {
                d = d.at(AttributePath::attr("service"));
            }
            // A failed create undoes its grant and leaves no state: a tainted object would be
            // replaced, and Terraform hands the destroy half of a replacement no private
            // state, so the grant recorded there would be left behind.
            if creating && common::revoke_grants(ctx, private, deadline).await.is_ok() {
                state = None;
            }
            Err(Failure::new(state, d))
        }
    }
}
