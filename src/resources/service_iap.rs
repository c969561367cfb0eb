//! `iaprun_service_iap`: IAP enabled directly on a Cloud Run service (Run Admin API v2 `iapEnabled`),
//! with the IAP service agent provisioned and granted `roles/run.invoker` on the service.

use std::collections::{BTreeMap, BTreeSet};

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
use crate::validation::{self, service::Layer, timing::Judged};

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
    pub jwt_audience: Attr<String>,
    pub iap_service_agent: Attr<String>,
    pub uri: Attr<String>,
    pub iap_enabled: Attr<bool>,
    pub iap_invoker_granted: Attr<bool>,
    pub invoker_grants: Attr<BTreeSet<String>>,
    pub checks_after: Attr<Vec<String>>,
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

    /// What the configuration asks for: a change in it is a change the user makes.
    fn intent(&self) -> impl PartialEq + '_ {
        (
            (&self.service, &self.location, &self.project),
            (&self.grant_iap_invoker, &self.ignore_checks, &self.timeouts),
        )
    }

    /// Fills the identity attributes that follow from the project number.
    fn set_identity(&mut self, name: &ServiceName, project_number: &str) {
        self.id = Attr::Known(name.to_string());
        self.project_number = project_number.into();
        let resource = google::cloud_run_resource(project_number, &name.location, &name.service);
        self.iap_resource_name = Attr::Known(resource);
        let audience =
            google::cloud_run_jwt_audience(project_number, &name.location, &name.service);
        self.jwt_audience = Attr::Known(audience);
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
        .attribute(Attribute::string("jwt_audience").computed().description(
            "The `aud` claim IAP puts in the `X-Goog-IAP-JWT-Assertion` header for this service, `/projects/{project_number}/locations/{location}/services/{service}`: the audience your application must verify.",
        ))
        .attribute(Attribute::string("iap_service_agent").computed().description(
            "The IAP service agent, `service-{project_number}@gcp-sa-iap.iam.gserviceaccount.com`.",
        ))
        .attribute(Attribute::string("uri").computed().description("The service's main URI; IAP protects it."))
        .attribute(common::iap_enabled_attribute("service"))
        .attribute(Attribute::bool("iap_invoker_granted").computed().description(
            "Whether the IAP service agent holds `roles/run.invoker` on the service as last read.",
        ))
        .attribute(common::invoker_grants_attribute())
        .attribute(common::checks_after_attribute())
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
        let prior = plan.prior.as_ref();
        let mut diags = common::plan_project(ctx, &config.project, &mut planned.project);
        if config.location.is_null() && ctx.region_unknown() {
            planned.location = Attr::unknown();
        } else if config.location.is_null() {
            match ctx.region(None) {
                Some(region) => planned.location = region.into(),
                None => diags.attribute_error(
                    AttributePath::attr("location"),
                    "No location",
                    "Set location on this resource or region in the provider block (or GOOGLE_REGION).",
                ),
            }
        }
        // A new provider default is a new target: replace, never move IAP in place.
        let replace = &mut plan.requires_replace;
        common::plan_project_identity(
            ctx,
            prior.map(|p| &p.project),
            &config.project,
            &mut planned.project,
            replace,
        )
        .await;
        common::replace_on_change(
            prior.map(|p| &p.location),
            &planned.location,
            "location",
            replace,
        );
        let replacing = !replace.is_empty();
        if replacing {
            planned.id = Attr::unknown();
            planned.project_number = Attr::unknown();
            planned.iap_resource_name = Attr::unknown();
            planned.iap_service_agent = Attr::unknown();
            planned.uri = Attr::unknown();
        }
        let grant = planned.grant_iap_invoker.get().copied();
        planned.iap_enabled = Attr::Known(true);
        let prior_grant = prior.map(|p| p.grant_iap_invoker.get().copied());
        match grant {
            Some(true) => planned.iap_invoker_granted = Attr::Known(true),
            // Turning the grant off may revoke it; otherwise whoever manages the grant keeps it as read.
            _ if prior_grant.is_none_or(|g| g != Some(false)) => {
                planned.iap_invoker_granted = Attr::unknown()
            }
            _ => {}
        }
        let intent_changed = prior.is_some_and(|p| p.intent() != planned.intent());
        let changing = prior.is_none_or(|p| {
            replacing
                || intent_changed
                || p.iap_enabled != planned.iap_enabled
                || p.iap_invoker_granted != planned.iap_invoker_granted
        });
        if changing {
            // What this resource adds is learnt at apply.
            planned.invoker_grants = Attr::unknown();
        }
        if diags.has_errors() {
            return diags;
        }
        let Some(name) = planned.service_name() else {
            return diags; // unknown until apply: checked then, when Terraform plans again
        };
        let number = match common::project_number(ctx, &name.project).await {
            Ok(n) => n,
            Err(d) => return d.at(AttributePath::attr("project")).into(),
        };
        planned.set_identity(&name, &number);
        let deferred = validation::timing::checks_after_deferred(
            prior.map(|p| &p.checks_after),
            &planned.checks_after,
        );
        let at =
            validation::timing::at_plan(prior.is_none() || replacing, deferred, intent_changed);
        let switching_on = prior.is_none_or(|p| replacing || p.iap_enabled != Attr::Known(true));
        match checks(ctx, &name, &number, grant, switching_on, false).await {
            Ok(judged) => diags.extend(validation::timing::report_judged_at_plan(
                judged,
                &common::ignored(&config.ignore_checks),
                at,
            )),
            Err(d) => diags.push(d),
        }
        diags
    }

    async fn plan_destroy(&self, ctx: &Context, prior: &Model) {
        if let Some(key) = direct_key(ctx, prior).await {
            ctx.plan_direct_removal(&key);
        }
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
        if state.invoker_grants.is_null() {
            // A state from before grants were recorded in it (the private state still holds
            // them until the next apply), or an import, which added nothing.
            state.invoker_grants = Attr::Known(BTreeSet::new());
        }
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
        // A move to load-balancer IAP in this run waits for this removal (and its grant release).
        let key = direct_key(ctx, &prior).await;
        if let Some(key) = &key {
            ctx.plan_direct_removal(key);
        }
        let _removal = ctx.begin_removal(key.into_iter().collect());
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
        let agent = Agent::new(
            &name.project,
            prior.project_number.as_deref().unwrap_or_default(),
        );
        let mut grants = common::recorded_grants(Some(&prior.invoker_grants), private);
        common::release_grants(
            ctx,
            &agent.member,
            &mut grants,
            |_| false,
            Some(None),
            deadline,
        )
        .await
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

/// The record key of the service a state's direct IAP covers (project number looked up when the
/// state lacks it).
async fn direct_key(ctx: &Context, state: &Model) -> Option<String> {
    let name = state.service_name()?;
    let number = common::recorded_project_number(ctx, &state.project_number, &name.project)
        .await
        .ok()?;
    Some(format!("{number}/{}/{}", name.location, name.service))
}

/// The live checks of a service with direct IAP (read-only API calls). `switching_on`: this run
/// turns direct IAP on (otherwise an IAP-enabled backend on now in front of it is a standing
/// double, not one this run may be moving away from). `at_apply`: a missing service is an error only then (at plan the
/// configuration may still create it), and only what is live counts as the other layer, not a
/// planned removal.
async fn checks(
    ctx: &Context,
    name: &ServiceName,
    project_number: &str,
    grant: Option<bool>,
    switching_on: bool,
    at_apply: bool,
) -> Result<Judged, Diagnostic> {
    let mut judged = Judged::usual(common::project_findings(ctx, &name.project, true).await);
    match common::run_service_facts(ctx, name).await {
        Ok(None) if at_apply => judged.usual.push(validation::target::target_missing(
            "Cloud Run service",
            &name.service,
            &format!("{} of project {}", name.location, name.project),
            AttributePath::attr("service"),
        )),
        Ok(None) => return Ok(Judged::default()),
        Ok(Some(facts)) => {
            let key = format!("{project_number}/{}/{}", name.location, name.service);
            let planned = ctx.plan_direct_iap(&key, switching_on);
            let mut fronting: BTreeMap<String, Layer> = planned
                .into_iter()
                .map(|(backend, on)| (backend, Layer::Planned { switching_on: on }))
                .collect();
            // Seen from the service: the live IAP-enabled backends in front of it.
            if let Ok(live) = common::iap_backends_to(ctx, name, None).await {
                for b in live {
                    let region = match &b.scope {
                        google::Scope::Global => None,
                        google::Scope::Region(r) => Some(r.as_str()),
                    };
                    let k = validation::backend::backend_key(project_number, region, &b.name);
                    let removed = !at_apply && ctx.backend_removed(&k);
                    fronting.entry(k).or_insert(Layer::of(true, None, removed));
                }
            }
            let fronting: Vec<(String, Layer)> = fronting
                .into_iter()
                .map(|(k, layer)| (validation::backend::backend_label(&k).to_string(), layer))
                .collect();
            let project_invokers = common::project_invokers(ctx, &name.project, grant).await;
            judged.extend(validation::service::direct_iap(
                &facts,
                &fronting,
                project_number,
                grant,
                project_invokers.as_deref(),
            ));
            if !switching_on {
                judged = judged.standing_layer();
            }
            if judged.usual.iter().any(|f| f.check == "no_organization")
                && has_custom_client(ctx, name, project_number).await
            {
                // The fix no_organization points to is in place.
                judged.usual.retain(|f| f.check != "no_organization");
            }
        }
        Err(e) => {
            return Err(
                common::api_error(&format!("read Cloud Run service {name}"), &e)
                    .at(AttributePath::attr("service")),
            )
        }
    }
    Ok(judged)
}

/// Whether the service's IAP settings name a custom OAuth client (known from a settings resource
/// planned earlier in this run, else read); false when unreadable.
async fn has_custom_client(ctx: &Context, name: &ServiceName, project_number: &str) -> bool {
    let resource = google::cloud_run_resource(project_number, &name.location, &name.service);
    let Ok(target) = crate::names::IapResource::parse(&resource) else {
        return false;
    };
    let custom = ctx
        .custom_oauth_clients
        .get_or_fetch(&resource, || common::custom_oauth_client(ctx, &target))
        .await;
    matches!(custom, Ok(true))
}

// ---- create and update ------------------------------------------------------------------------

/// Applies the desired state (create or update): the live checks on a fresh read first (an error
/// finding stops it with nothing changed), then IAP on, then the agent's grant. On failure the
/// returned state tells what really exists, the grants added included.
async fn converge(ctx: &Context, change: Change<'_, Model, Private>) -> Applied<Model> {
    let Change {
        prior,
        planned,
        deadline,
        private,
        ..
    } = change;
    let Some(name) = planned.service_name() else {
        return Err(common::incomplete_plan(
            prior,
            "project, location and service",
        ));
    };
    let number = match common::project_number(ctx, &name.project).await {
        Ok(n) => n,
        Err(d) => return Err(Failure::new(prior, d)),
    };
    let grant = planned.grant_iap_invoker.or(true);
    // Right before the first change, on a fresh read: nothing changes while an error finding holds.
    let switching_on = prior
        .as_ref()
        .is_none_or(|p| p.iap_enabled != Attr::Known(true));
    let ignore = common::ignored(&planned.ignore_checks);
    let (name_ref, number_ref) = (&name, number.as_str());
    let judged = common::judge_before_change(ctx, &ignore, deadline, || async move {
        let judged = checks(ctx, name_ref, number_ref, Some(grant), switching_on, true).await?;
        let key = format!("{number_ref}/{}/{}", name_ref.location, name_ref.service);
        Ok(common::Judgement {
            read: (),
            judged,
            services: vec![key],
        })
    })
    .await;
    if let Err(d) = judged {
        return Err(Failure::new(prior, d));
    }
    let mut next = planned.clone();
    next.set_identity(&name, &number);
    let agent = Agent::new(&name.project, &number);
    let key = name.to_string();
    let mut grants = common::recorded_grants(prior.as_ref().map(|p| &p.invoker_grants), private);
    // Recorded in state from now on.
    private.invoker_grants.clear();
    // What exists after a failure part-way, IAP being on.
    let record = |next: &Model, grants: &BTreeSet<String>| {
        let mut state = next.clone();
        state.iap_enabled = Attr::Known(true);
        state.uri = Attr::from_option(state.uri.get().cloned());
        state.iap_invoker_granted = Attr::Known(grants.contains(&key));
        state.invoker_grants = Attr::Known(grants.clone());
        state
    };
    if grant {
        if let Err(d) = agent.provision(ctx, deadline).await {
            return Err(Failure::new(prior, d));
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
            let keep = |p: &mut Model, on: Option<bool>| {
                p.iap_enabled = on.map_or(p.iap_enabled.clone(), Attr::Known);
                p.invoker_grants = Attr::Known(grants.clone());
            };
            let landed = || record(&next, &grants);
            let state = common::after_failed_enable(prior, on, landed, keep);
            return Err(Failure::new(state, d));
        }
    };
    next.uri = Attr::from_option(service.uri.clone());
    if grant {
        match agent.grant(ctx, &name, deadline).await {
            Ok(true) => {
                grants.insert(key.clone());
            }
            Ok(false) => {}
            Err(d) => return Err(Failure::new(Some(record(&next, &grants)), d)),
        }
        next.iap_invoker_granted = Attr::Known(true);
    } else {
        let released =
            common::release_grants(ctx, &agent.member, &mut grants, |_| false, None, deadline)
                .await;
        if let Err(d) = released {
            return Err(Failure::new(Some(record(&next, &grants)), d));
        }
        let granted = agent.granted(ctx, &name).await.unwrap_or(false);
        next.iap_invoker_granted = Attr::Known(granted);
    }
    next.iap_enabled = Attr::Known(true);
    next.invoker_grants = Attr::Known(grants);
    Ok(next)
}
