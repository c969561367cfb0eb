//! `iaprun_service_iap`: IAP enabled directly on a Cloud Run service (Run Admin API v2 `iapEnabled`),
//! with the IAP service agent provisioned and granted `roles/run.invoker` on the service.

use std::collections::{BTreeMap, BTreeSet};

use super::common::{Iap, Private};
use super::prelude::*;
use crate::google::ServiceName;
use crate::names::IapResource;
use crate::validation::{service::Layer, timing::Judged};

/// The resource type.
pub struct ServiceIap;

/// Config, plan and state of one `iaprun_service_iap`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Model {
    pub service: Attr<String>,
    pub location: Attr<String>,
    #[serde(flatten)]
    pub iap: Iap,
    pub iap_service_agent: Attr<String>,
    pub uri: Attr<String>,
}

impl Model {
    /// The service this instance designates, when project, location and service are all known.
    fn service_name(&self) -> Option<ServiceName> {
        let (project, location) = (self.iap.project.get()?, self.location.get()?);
        Some(ServiceName::new(
            project.as_str(),
            location.as_str(),
            self.service.get()?.as_str(),
        ))
    }

    /// What the configuration asks for: a change in it is a change the user makes.
    fn intent(&self) -> impl PartialEq + '_ {
        (&self.service, &self.location, self.iap.intent())
    }

    /// Fills the identity attributes that follow from the project number.
    fn set_identity(&mut self, name: &ServiceName, project_number: &str) {
        let (location, service) = (&name.location, &name.service);
        let resource = google::cloud_run_resource(project_number, location, service);
        self.iap
            .identify(name.to_string(), project_number, resource);
        let audience = google::cloud_run_jwt_audience(project_number, location, service);
        self.iap.jwt_audience = Attr::Known(audience);
        self.iap_service_agent = Attr::Known(google::iap_service_agent_email(project_number));
    }
}

#[async_trait]
impl Resource<Context> for ServiceIap {
    type Model = Model;
    type Private = Private;
    const TYPE_NAME: &'static str = "iaprun_service_iap";

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
        .attributes(common::grant_and_identity("the service", "service", "`projects/{project_number}/iap_web/cloud_run-{location}/services/{service}`"))
        .attribute(Attribute::string("jwt_audience").computed().description(
            "The `aud` claim IAP puts in the `X-Goog-IAP-JWT-Assertion` header for this service, `/projects/{project_number}/locations/{location}/services/{service}`: the audience your application must verify.",
        ))
        .attribute(Attribute::string("iap_service_agent").computed().description(
            "The IAP service agent, `service-{project_number}@gcp-sa-iap.iam.gserviceaccount.com`.",
        ))
        .attribute(Attribute::string("uri").computed().description("The service's main URI; IAP protects it."))
        .attributes(common::iap_state("service", "Whether the IAP service agent holds `roles/run.invoker` on the service as last read."))
        .block(timeouts_block(true, true, true)),
    )
    }

    fn validate(config: &Model, _: ClientCapabilities) -> Diagnostics {
        let mut diags = validation::common_config(&config.iap.project, &config.iap.ignore_checks);
        validation::target::check_name(&mut diags, "service", &config.service);
        validation::target::check_name(&mut diags, "location", &config.location);
        diags
    }

    async fn plan(&self, ctx: &Context, plan: &mut Plan<Model>) -> Diagnostics {
        let mut diags = common::plan_project(ctx, plan, |m| &mut m.iap).await;
        let (config, planned) = (&plan.config, &mut plan.planned);
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
        plan.replace_on_change("location", |m| &m.location);
        let (prior, planned) = (plan.prior.as_ref(), &mut plan.planned);
        let replace = &plan.requires_replace;
        if !replace.is_empty() {
            planned.iap_service_agent = Attr::unknown();
            planned.uri = Attr::unknown();
        }
        let intent_changed = prior.is_some_and(|p| p.intent() != planned.intent());
        let switching_on = Iap::switches_on(prior.map(|p| &p.iap), !replace.is_empty());
        let (_, at) = common::plan_apply(plan, |m| &mut m.iap, intent_changed, false);
        let planned = &mut plan.planned;
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
        let grant = planned.iap.grant_iap_invoker.get().copied();
        match checks(ctx, &name, &number, grant, switching_on, false).await {
            Ok(judged) => diags.extend(validation::timing::report_judged_at_plan(
                judged,
                &validation::ignored(&plan.config.iap.ignore_checks),
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
                    format!("The Cloud Run service {name} no longer exists, so {} was removed from the state. Recreate the service, or remove this resource from the configuration.", Self::TYPE_NAME),
                ))))
            }
            Err(e) => return Err(common::api_error(&format!("read Cloud Run service {name}"), &e)),
        };
        let number =
            common::recorded_project_number(ctx, &state.iap.project_number, &name.project).await?;
        state.set_identity(&name, &number);
        state.iap.iap_enabled = Attr::Known(service.iap_enabled);
        state.uri = Attr::from_option(service.uri.clone());
        let agent = google::IapAgent::new(&name.project, &number);
        let granted = agent.granted(&ctx.clients, &name).await;
        let granted = granted.map_err(|e| {
            common::api_error(
                &format!("read the IAM policy of Cloud Run service {name}"),
                &e,
            )
        })?;
        state.iap.iap_invoker_granted = Attr::Known(granted);
        state.iap.read_grants();
        Ok(Read::Found(state))
    }

    async fn delete(&self, ctx: &Context, delete: Delete<'_, Model, Private>) -> Deleted {
        let Some(name) = delete.prior.service_name() else {
            return Ok(());
        };
        // A move to load-balancer IAP in this run waits for this removal (and its grant release).
        let key = direct_key(ctx, &delete.prior).await;
        if let Some(key) = &key {
            ctx.plan_direct_removal(key);
        }
        let _removal = ctx.begin_removal(key.into_iter().collect());
        let disabled = ctx
            .clients
            .run
            .set_iap_enabled(&name, false, delete.deadline);
        let doing = || format!("disable IAP on Cloud Run service {name}");
        if common::unless_gone(disabled.await, doing)?.is_none() {
            return Ok(());
        }
        let (prior, private) = (&delete.prior.iap, &*delete.private);
        let (deadline, warnings) = (delete.deadline, delete.warnings);
        common::release_recorded(ctx, prior, private, None, deadline, warnings).await
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
            iap: Iap::imported(project),
            ..Model::default()
        })
    }
}

/// The record key of the service a state's direct IAP covers (project number looked up when the
/// state lacks it).
async fn direct_key(ctx: &Context, state: &Model) -> Option<String> {
    let name = state.service_name()?;
    let recorded = &state.iap.project_number;
    let number = common::recorded_project_number(ctx, recorded, &name.project);
    let number = number.await.ok()?;
    Some(format!("{number}/{}/{}", name.location, name.service))
}

/// The live checks of a service with direct IAP (read-only API calls). `switching_on`: this run
/// turns direct IAP on (otherwise an IAP-enabled backend on now in front of it is a standing
/// double, not one this run may be moving away from). `at_apply`: a missing service is an error
/// only then (at plan the configuration may still create it), and only what is live counts, not
/// a planned removal.
async fn checks(
    ctx: &Context,
    name: &ServiceName,
    project_number: &str,
    grant: Option<bool>,
    switching_on: bool,
    at_apply: bool,
) -> Result<Judged, Diagnostic> {
    let mut judged = common::project_findings(ctx, &name.project, true).await;
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
            // Seen from the service: the live IAP-enabled backends in front of it (none where the
            // Compute Engine API is disabled). Unreadable, they leave double_iap unchecked.
            let mut not_run = Vec::new();
            match ctx.clients.compute.iap_backends_to(name, None).await {
                Ok(live) => {
                    for b in live {
                        let region = b.scope.region();
                        let k = validation::backend::backend_key(project_number, region, &b.name);
                        let removed = !at_apply && ctx.backend_removed(&k);
                        fronting.entry(k).or_insert(Layer::of(true, None, removed));
                    }
                }
                Err(e) => not_run.push(double_iap_not_run(name, &e)),
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
            judged.not_run.extend(not_run);
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

/// The warning that `double_iap` could not run: the backend services in front of the service
/// could not be listed (`error`, Google's).
fn double_iap_not_run(name: &ServiceName, error: &google::Error) -> (&'static str, Diagnostic) {
    let project = &name.project;
    validation::timing::not_run(
        "double_iap",
        "IAP on both this service and a load balancer backend service in front of it",
        &format!("listing the serverless NEGs and backend services of project {project} that could front Cloud Run service {name} failed: {error}"),
        "Give the provider's credentials read access to Compute Engine in the project (compute.networkEndpointGroups.list and compute.backendServices.list, for example through roles/compute.viewer), or check by hand that no backend service with IAP enabled routes to the service",
    )
}

/// Whether the service's IAP settings name a custom OAuth client; false when unreadable.
async fn has_custom_client(ctx: &Context, name: &ServiceName, project_number: &str) -> bool {
    let resource = google::cloud_run_resource(project_number, &name.location, &name.service);
    let Ok(target) = IapResource::parse(&resource) else {
        return false;
    };
    matches!(common::planned_custom_client(ctx, &target).await, Ok(true))
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
        warnings,
        ..
    } = change;
    let target = (planned.service_name(), &planned.iap);
    let what = "project, location and service";
    let (name, number) = common::apply_target(ctx, &prior, target, what).await?;
    let grant = planned.iap.grant_iap_invoker.or(true);
    // Right before the first change, on a fresh read: nothing changes while an error finding holds.
    let switching_on = Iap::switches_on(prior.as_ref().map(|p| &p.iap), false);
    let (name_ref, number_ref) = (&name, number.as_str());
    let ignore = &planned.iap.ignore_checks;
    common::judge_before_change(ctx, ignore, deadline, warnings, || async move {
        let judged = checks(ctx, name_ref, number_ref, Some(grant), switching_on, true).await?;
        let key = format!("{number_ref}/{}/{}", name_ref.location, name_ref.service);
        Ok(common::Judgement {
            read: (),
            judged,
            services: vec![key],
        })
    })
    .await
    .map_err(Failure::unchanged(&prior))?;
    let mut next = planned.clone();
    next.set_identity(&name, &number);
    let agent = google::IapAgent::new(&name.project, &number);
    let key = name.to_string();
    let mut grants = common::take_grants(prior.as_ref().map(|p| &p.iap), private);
    // What exists after a failure part-way, IAP being on.
    let record = |next: &Model, grants: &BTreeSet<String>| {
        let mut state = next.clone();
        state.iap.iap_enabled = Attr::Known(true);
        state.uri = Attr::from_option(state.uri.get().cloned());
        state.iap.iap_invoker_granted = Attr::Known(grants.contains(&key));
        state.iap.invoker_grants = Attr::Known(grants.clone());
        state
    };
    if grant {
        let provisioned = agent.provision(&ctx.clients, deadline).await;
        let provisioned =
            provisioned.map_err(|e| common::api_error("provision the IAP service agent", &e));
        provisioned.map_err(Failure::unchanged(&prior))?;
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
            let read = ctx.clients.run.service(&name).await;
            let on = read.ok().map(|s| s.iap_enabled);
            let landed = || record(&next, &grants);
            let state = common::after_failed_enable(prior, on, &grants, |m| &mut m.iap, landed);
            return Err(Failure::new(state, d));
        }
    };
    next.uri = Attr::from_option(service.uri.clone());
    let targets = (std::slice::from_ref(&name), None);
    let granted =
        common::converge_grants(ctx, &agent, &mut grants, targets, grant, deadline, warnings);
    let granted = granted.await;
    let granted = granted.map_err(|d| Failure::new(Some(record(&next, &grants)), d))?;
    next.iap.iap_enabled = Attr::Known(true);
    next.iap.iap_invoker_granted = Attr::Known(granted);
    next.iap.invoker_grants = Attr::Known(grants);
    Ok(next)
}
