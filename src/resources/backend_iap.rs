//! `iaprun_backend_iap`: IAP enabled on a load balancer backend service (global or regional) that
//! fronts Cloud Run through serverless NEGs, with an optional custom OAuth client.

use std::collections::BTreeSet;

use super::common::{Iap, Private};
use super::prelude::*;
use crate::google::{BackendServiceRef, IapPatch, ServiceName};
use crate::validation::facts::{BackendFacts, NegFacts, RunServiceFacts};
use crate::validation::{service::Layer, timing::Judged};

/// The resource type.
pub struct BackendIap;

/// Config, plan and state of one `iaprun_backend_iap`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Model {
    pub backend_service: Attr<String>,
    pub region: Attr<String>,
    #[serde(flatten)]
    pub iap: Iap,
    pub oauth2_client_id: Attr<String>,
    pub oauth2_client_secret: Attr<String>,
    pub oauth2_client_secret_wo: Attr<String>,
    pub oauth2_client_secret_wo_version: Attr<serde_json::Number>,
    pub backend_service_id: Attr<String>,
    pub load_balancing_scheme: Attr<String>,
    pub cloud_run_services: Attr<Vec<String>>,
    pub oauth2_client_secret_sha256: Attr<String>,
}

impl Model {
    /// The backend service this instance designates, when its project and name are known.
    fn backend_ref(&self) -> Option<BackendServiceRef> {
        let (project, name) = (
            self.iap.project.get()?.as_str(),
            self.backend_service.get()?.as_str(),
        );
        match &self.region {
            Attr::Null => Some(BackendServiceRef::global(project, name)),
            Attr::Known(region) => {
                Some(BackendServiceRef::regional(project, region.as_str(), name))
            }
            Attr::Unknown(_) => None,
        }
    }

    fn set_identity(&mut self, r: &BackendServiceRef, project_number: &str) {
        let resource = google::backend_service_resource(project_number, r.scope.region(), &r.name);
        self.iap.identify(r.to_string(), project_number, resource);
    }

    /// What the configuration asks for: a change in it is a change the user makes.
    fn intent(&self) -> impl PartialEq + '_ {
        (
            (&self.backend_service, &self.region, self.iap.intent()),
            (&self.oauth2_client_id, &self.oauth2_client_secret),
            &self.oauth2_client_secret_wo_version,
        )
    }

    /// The client secret the configuration gives (state-stored or write-only), if any.
    fn configured_secret(&self) -> &Attr<String> {
        match &self.oauth2_client_secret {
            Attr::Null => &self.oauth2_client_secret_wo,
            secret => secret,
        }
    }

    /// `backend_service_id` and `jwt_audience` from the backend service as read.
    fn set_audience(
        &mut self,
        r: &BackendServiceRef,
        number: &str,
        backend: &google::BackendService,
    ) {
        self.backend_service_id = Attr::from_option(backend.id.clone());
        self.iap.jwt_audience = Attr::from_option(
            backend
                .id
                .as_deref()
                .map(|id| google::backend_service_jwt_audience(number, r.scope.region(), id)),
        );
    }

    /// Whether a grant this resource recorded is on a service no longer behind the backend (its
    /// NEG taken off since): the next apply releases it, so the plan must not be empty.
    fn grant_left_behind(&self) -> bool {
        let (Some(grants), Some(behind)) =
            (self.iap.invoker_grants.get(), self.cloud_run_services.get())
        else {
            return false;
        };
        grants
            .iter()
            .any(|key| match common::parse_service_key(key) {
                Ok(name) => !behind.contains(&format!("{}/{}", name.location, name.service)),
                Err(_) => false,
            })
    }

    /// What the last read learned about the backend and the services behind it.
    fn set_read(&mut self, backend: &google::BackendService, facts: &BackendFacts) {
        self.load_balancing_scheme = Attr::from_option(backend.load_balancing_scheme.clone());
        self.cloud_run_services = Attr::Known(facts.services().map(|s| s.label()).collect());
    }
}

#[async_trait]
impl Resource<Context> for BackendIap {
    type Model = Model;
    type Private = Private;
    const TYPE_NAME: &'static str = "iaprun_backend_iap";

    fn schema() -> Schema {
        Schema::new(
        0,
        Block::new(
            "Enables Identity-Aware Proxy on a load balancer backend service that fronts Cloud Run through serverless NEGs. Uses the Google-managed OAuth client unless `oauth2_client_id` is set, grants the IAP service agent `roles/run.invoker` on every Cloud Run service behind the backend, and checks the load balancer for known pitfalls at plan time. Destroying it disables IAP on the backend and removes the invoker grants it added; a custom OAuth client id and secret stay on the backend service, as `gcloud iap web disable` leaves them.",
        )
        .attribute(common::id_attribute(
            "projects/{project}/global/backendServices/{name}` or `projects/{project}/regions/{region}/backendServices/{name}",
        ))
        .attribute(Attribute::string("backend_service").required().force_new().description(
            "Name of the backend service. Changing it replaces the resource.",
        ))
        .attribute(Attribute::string("region").optional().force_new().description(
            "Region of a regional backend service. Leave unset for a global backend service. Changing it replaces the resource.",
        ))
        .attribute(common::project_attribute())
        .attribute(Attribute::string("oauth2_client_id").optional().description(
            "Client id of a custom OAuth client. Leave unset to use the Google-managed OAuth client (only users of your organization can sign in).",
        ))
        .attribute(Attribute::string("oauth2_client_secret").optional().sensitive().description(
            "Secret of the custom OAuth client. Stored in state (sensitive); prefer `oauth2_client_secret_wo` on Terraform 1.11+. A secret rotated outside Terraform shows as drift through the API's SHA-256 of it.",
        ))
        .attribute(Attribute::string("oauth2_client_secret_wo").optional().sensitive().write_only().description(
            "Write-only secret of the custom OAuth client (Terraform 1.11+): never stored in plan or state. Change `oauth2_client_secret_wo_version` to send a new value.",
        ))
        .attribute(Attribute::number("oauth2_client_secret_wo_version").optional().description(
            "Version of `oauth2_client_secret_wo`; changing it sends the write-only secret again.",
        ))
        .attributes(common::grant_and_identity(
            "every Cloud Run service behind the backend's serverless NEGs",
            "backend service",
            "`projects/{project_number}/iap_web/compute/services/{name}` (regional: `compute-{region}`)",
        ))
        .attribute(Attribute::string("backend_service_id").computed().description(
            "Compute's numeric `id` of the backend service (the google provider's `generated_id`).",
        ))
        .attribute(Attribute::string("jwt_audience").computed().description(
            "The `aud` claim IAP puts in the `X-Goog-IAP-JWT-Assertion` header behind this backend, `/projects/{project_number}/global/backendServices/{backend_service_id}` (regional: `/projects/{project_number}/regions/{region}/backendServices/{backend_service_id}`): the audience your application must verify. It uses the numeric id, not the name.",
        ))
        .attribute(Attribute::string("load_balancing_scheme").computed().description(
            "The backend service's load balancing scheme (`EXTERNAL` is the classic Application Load Balancer, `EXTERNAL_MANAGED` the Envoy-based one).",
        ))
        .attribute(Attribute::string_list("cloud_run_services").computed().description(
            "The Cloud Run services behind the backend's serverless NEGs, as `location/name`.",
        ))
        .attributes(common::iap_state("backend service", "Whether the IAP service agent holds `roles/run.invoker` on every Cloud Run service behind the backend, as last read. A grant removed outside Terraform, or a serverless NEG added later, shows as drift and the next apply grants it. For a NEG the same run adds, put a value that changes with the backend's NEG list in `checks_after` (for example `[jsonencode(google_compute_backend_service.app.backend)]`): the grant then lands in that run."))
        .attribute(Attribute::string("oauth2_client_secret_sha256").computed().sensitive().description(
            "SHA-256 of the OAuth client secret as the API reports it; a secret rotated outside Terraform changes it.",
        ))
        .block(timeouts_block(true, true, true)),
    )
    }

    fn validate(config: &Model, _: ClientCapabilities) -> Diagnostics {
        let mut diags = validation::common_config(&config.iap.project, &config.iap.ignore_checks);
        validation::target::check_name(&mut diags, "backend_service", &config.backend_service);
        validation::target::check_name(&mut diags, "region", &config.region);
        let (id, secret) = (&config.oauth2_client_id, &config.oauth2_client_secret);
        let wo = (
            &config.oauth2_client_secret_wo,
            &config.oauth2_client_secret_wo_version,
        );
        diags.extend(validation::backend::oauth_client_config(id, secret, wo));
        diags
    }

    async fn plan(&self, ctx: &Context, plan: &mut Plan<Model>) -> Diagnostics {
        let mut diags = common::plan_project(ctx, plan, |m| &mut m.iap).await;
        let (config, planned) = (&plan.config, &mut plan.planned);
        planned.oauth2_client_secret_sha256 =
            match (&config.oauth2_client_id, config.configured_secret()) {
                (Attr::Null, _) => Attr::Null,
                (_, Attr::Known(secret)) => Attr::Known(secret_sha256(secret)),
                _ => Attr::unknown(),
            };
        let prior = plan.prior.as_ref();
        let intent_changed = prior.is_some_and(|p| p.intent() != planned.intent());
        let more = prior.is_some_and(|p| {
            p.oauth2_client_secret_sha256 != planned.oauth2_client_secret_sha256
                || p.iap.checks_after != planned.iap.checks_after
                || p.grant_left_behind()
        });
        let replacing = !plan.requires_replace.is_empty();
        let switching_on = Iap::switches_on(prior.map(|p| &p.iap), replacing);
        let (changing, at) = common::plan_apply(plan, |m| &mut m.iap, intent_changed, more);
        let (config, planned) = (&plan.config, &mut plan.planned);
        if changing {
            // What the backend fronts is read at apply: a NEG added in this run (before the
            // apply reaches this resource) must not make the final plan differ from this one.
            planned.cloud_run_services = Attr::unknown();
            if replacing || planned.load_balancing_scheme.is_null() {
                planned.load_balancing_scheme = Attr::unknown();
            }
        }
        if diags.has_errors() {
            return diags;
        }
        let Some(r) = planned.backend_ref() else {
            return diags; // unknown until apply: checked then, when Terraform plans again
        };
        let number = match common::project_number(ctx, &r.project).await {
            Ok(n) => n,
            Err(d) => return d.at(AttributePath::attr("project")).into(),
        };
        planned.set_identity(&r, &number);
        // Access bindings planned after this one judge their members by the client configured here.
        if let (Some(resource), true) = (
            planned.iap.iap_resource_name.get(),
            config.oauth2_client_id.is_known(),
        ) {
            ctx.custom_oauth_clients
                .put(resource, !config.oauth2_client_id.is_null());
        }
        if at == validation::timing::AtPlan::Deferred {
            return diags;
        }
        let facts = match backend_facts(ctx, &r).await {
            Ok(f) => f,
            Err(e) => {
                let d = common::api_error(&format!("read backend service {r}"), &e);
                return d.at(AttributePath::attr("backend_service")).into();
            }
        };
        let Some((_, facts)) = facts else {
            // Not there yet: the configuration may create it in this run; checked at apply.
            return diags;
        };
        let grant = planned.iap.grant_iap_invoker.get().copied();
        let judged = checks(ctx, &r, &facts, &number, grant, switching_on, false).await;
        let ignore = validation::ignored(&config.iap.ignore_checks);
        diags.extend(validation::timing::report_judged_at_plan(
            judged, &ignore, at,
        ));
        diags
    }

    async fn plan_destroy(&self, ctx: &Context, prior: &Model) {
        if let Some(r) = prior.backend_ref() {
            if let Some((key, _)) = removal_keys(ctx, prior, &r).await {
                ctx.plan_backend_removal(&key);
            }
        }
    }

    async fn create(&self, ctx: &Context, change: Change<'_, Model, Private>) -> Applied<Model> {
        converge(ctx, change).await
    }

    async fn read(&self, ctx: &Context, mut state: Model) -> Result<Read<Model>, Diagnostic> {
        let Some(r) = state.backend_ref() else {
            return Ok(Read::Found(state));
        };
        let (backend, facts) = match backend_facts(ctx, &r).await {
            Ok(Some(found)) => found,
            Ok(None) => {
                return Ok(Read::Gone(Some(Diagnostic::warning(
                    "Backend service deleted outside Terraform",
                    format!(
                    "The backend service {r} no longer exists, so {} was removed from the state.",
                    Self::TYPE_NAME
                ),
                ))))
            }
            Err(e) => return Err(common::api_error(&format!("read backend service {r}"), &e)),
        };
        let number =
            common::recorded_project_number(ctx, &state.iap.project_number, &r.project).await?;
        state.set_identity(&r, &number);
        state.set_audience(&r, &number, &backend);
        let iap = backend.iap.clone().unwrap_or_default();
        state.iap.iap_enabled = Attr::Known(iap.is_enabled());
        let client = backend.oauth2_client_id().map(str::to_string);
        state.oauth2_client_id = Attr::from_option(client);
        state.oauth2_client_secret_sha256 = Attr::from_option(iap.oauth2_client_secret_sha256);
        state.set_read(&backend, &facts);
        // The facts carry each service's invoker members already: no second policy read.
        let agent = google::IapAgent::new(&r.project, &number);
        let granted = facts
            .services()
            .all(|s| s.has_invoker(&agent.member) == Some(true));
        state.iap.iap_invoker_granted = Attr::Known(granted);
        state.iap.read_grants();
        forget_grants_on_deleted_services(ctx, &mut state, &r, &facts).await;
        Ok(Read::Found(state))
    }

    async fn delete(&self, ctx: &Context, delete: Delete<'_, Model, Private>) -> Deleted {
        let Some(r) = delete.prior.backend_ref() else {
            return Ok(());
        };
        // A move to direct IAP in this run waits for this removal (and its grant release).
        let mut services = Vec::new();
        if let Some((key, behind)) = removal_keys(ctx, &delete.prior, &r).await {
            ctx.plan_backend_removal(&key);
            services = behind;
        }
        let _removal = ctx.begin_removal(services);
        let off = IapPatch::default();
        let compute = &ctx.clients.compute;
        let disabled = compute
            .patch_backend_service_iap(&r, &off, delete.deadline)
            .await;
        common::unless_gone(disabled, || format!("disable IAP on backend service {r}"))?;
        let (prior, private) = (&delete.prior.iap, &*delete.private);
        let (deadline, warnings) = (delete.deadline, delete.warnings);
        common::release_recorded(ctx, prior, private, Some(&r), deadline, warnings).await
    }

    async fn import(&self, ctx: &Context, id: &str) -> Result<Model, Diagnostic> {
        let parsed = names::parse_backend_service_id(id)
            .map_err(|e| Diagnostic::error("Invalid import id", e))?;
        let Some(project) = ctx.project(parsed.project.as_deref()) else {
            return Err(Diagnostic::error(
                "Incomplete import id",
                format!("{id:?} lacks the project and the provider sets no default. Use projects/PROJECT/global/backendServices/NAME."),
            ));
        };
        Ok(Model {
            backend_service: parsed.name.as_str().into(),
            region: Attr::from_option(parsed.region),
            iap: Iap::imported(project),
            ..Model::default()
        })
    }
}

/// A recorded grant on a Cloud Run service that no longer exists went with the service: nothing
/// is left to remove, and no apply is due for it. A service a NEG of the backend still names is
/// known from the facts; one no longer behind the backend (its NEG taken off in the run that
/// deleted it, the usual way to retire a service) is looked up. A failed lookup keeps the grant.
async fn forget_grants_on_deleted_services(
    ctx: &Context,
    state: &mut Model,
    r: &BackendServiceRef,
    facts: &BackendFacts,
) {
    let Attr::Known(grants) = &mut state.iap.invoker_grants else {
        return;
    };
    let project = r.project.as_str();
    for neg in facts.negs.iter().filter(|n| n.service.is_none()) {
        if let Some(service) = &neg.run_service {
            let name = ServiceName::new(project, neg.region.as_str(), service.as_str());
            grants.remove(&name.to_string());
        }
    }
    let behind: BTreeSet<String> = facts
        .services()
        .map(|s| ServiceName::new(project, s.location.as_str(), s.name.as_str()).to_string())
        .collect();
    for key in grants.clone().iter().filter(|k| !behind.contains(*k)) {
        let Ok(name) = common::parse_service_key(key) else {
            continue;
        };
        if matches!(
            google::found(ctx.clients.run.service(&name).await),
            Ok(None)
        ) {
            grants.remove(key);
        }
    }
}

/// SHA-256 of a secret in lower-case hex, as Compute reports `oauth2ClientSecretSha256`.
pub fn secret_sha256(secret: &str) -> String {
    use sha2::{Digest, Sha256};
    format!("{:x}", Sha256::digest(secret.as_bytes()))
}

/// What is known about the backend, its serverless NEGs, their Cloud Run services and its frontends.
async fn backend_facts(
    ctx: &Context,
    r: &BackendServiceRef,
) -> Result<Option<(google::BackendService, BackendFacts)>, google::Error> {
    let Some(backend) = google::found(ctx.clients.compute.backend_service(r).await)? else {
        return Ok(None);
    };
    let mut negs = Vec::new();
    for group in &backend.backend_groups {
        let Some((project, region, name)) = google::neg_parts(group) else {
            continue;
        };
        let neg = ctx
            .clients
            .compute
            .network_endpoint_group(&project, &region, &name);
        let Some(neg) = google::found(neg.await)? else {
            continue;
        };
        let run = neg.cloud_run.clone().unwrap_or_default();
        let service = match &run.service {
            Some(service) => {
                common::run_service_facts(
                    ctx,
                    &ServiceName::new(project.as_str(), region.as_str(), service.as_str()),
                )
                .await?
            }
            None => None,
        };
        negs.push(NegFacts {
            name,
            region,
            run_service: run.service,
            url_mask: run.url_mask,
            service,
        });
    }
    let https_frontend = ctx.clients.compute.https_frontend(r, &backend).await;
    let facts = BackendFacts {
        name: r.name.clone(),
        region: r.scope.region().map(str::to_string),
        scheme: backend.load_balancing_scheme.clone().unwrap_or_default(),
        protocol: backend.protocol.clone().unwrap_or_default(),
        cdn_enabled: backend.enable_cdn,
        iap_enabled: backend.iap_enabled(),
        oauth2_client_id: backend.oauth2_client_id().map(str::to_string),
        negs,
        https_frontend,
    };
    Ok(Some((backend, facts)))
}

/// The live checks of a backend service with IAP (read-only API calls). `switching_on`: this run
/// turns IAP on on it (otherwise direct IAP on now behind it is a standing double, not one this run
/// may be moving away from); `at_apply`: only what is live counts, not a planned removal.
async fn checks(
    ctx: &Context,
    r: &BackendServiceRef,
    facts: &BackendFacts,
    project_number: &str,
    grant: Option<bool>,
    switching_on: bool,
    at_apply: bool,
) -> Judged {
    let mut judged = common::project_findings(ctx, &r.project, false).await;
    let key = |s: &RunServiceFacts| validation::backend::service_key(project_number, s);
    let behind: Vec<String> = facts.services().map(key).collect();
    let backend = validation::backend::backend_key(project_number, r.scope.region(), &r.name);
    let planned_direct = ctx.plan_backend_iap(&backend, &behind, switching_on);
    let direct = |s: &RunServiceFacts| {
        let k = key(s);
        let removed = !at_apply && ctx.direct_removed(&k);
        Layer::of(s.iap_enabled, planned_direct.get(&k).copied(), removed)
    };
    let project_invokers = common::project_invokers(ctx, &r.project, grant).await;
    judged.extend(validation::backend::backend_iap(
        facts,
        project_number,
        grant,
        direct,
        project_invokers.as_deref(),
    ));
    if switching_on {
        judged
    } else {
        judged.standing_layer()
    }
}

/// The record keys of what a state's IAP covers: the backend service and the Cloud Run services
/// behind it as last read (project number looked up when the state lacks it).
async fn removal_keys(
    ctx: &Context,
    state: &Model,
    r: &BackendServiceRef,
) -> Option<(String, Vec<String>)> {
    let recorded = &state.iap.project_number;
    let number = common::recorded_project_number(ctx, recorded, &r.project);
    let number = number.await.ok()?;
    let backend = validation::backend::backend_key(&number, r.scope.region(), &r.name);
    let services = state.cloud_run_services.get().into_iter().flatten();
    let services = services.map(|label| format!("{number}/{label}")).collect();
    Some((backend, services))
}

/// `target_missing` for a backend service still missing at apply.
fn backend_missing(r: &BackendServiceRef) -> validation::Finding {
    let where_ = match r.scope.region() {
        Some(region) => format!("region {region} of project {}", r.project),
        None => format!("project {} (global)", r.project),
    };
    validation::target::target_missing(
        "backend service",
        &r.name,
        &where_,
        AttributePath::attr("backend_service"),
    )
}

// ---- create and update ------------------------------------------------------------------------

/// Applies the desired state (create or update): the live checks on a fresh read first (an error
/// finding stops it with nothing changed), then IAP on the backend, then the agent's grant on every
/// Cloud Run service behind it. On failure the returned state tells what really exists.
async fn converge(ctx: &Context, change: Change<'_, Model, Private>) -> Applied<Model> {
    let Change {
        prior,
        planned,
        config,
        deadline,
        private,
        warnings,
    } = change;
    let target = (planned.backend_ref(), &planned.iap);
    let (r, number) =
        common::apply_target(ctx, &prior, target, "project and backend_service").await?;
    let grant = planned.iap.grant_iap_invoker.or(true);
    // Right before the first change, on a fresh read: nothing changes while an error finding holds.
    let switching_on = Iap::switches_on(prior.as_ref().map(|p| &p.iap), false);
    let (r_ref, number_ref) = (&r, number.as_str());
    let ignore = &planned.iap.ignore_checks;
    let judged = common::judge_before_change(ctx, ignore, deadline, warnings, || async move {
        let found = backend_facts(ctx, r_ref).await;
        let found =
            found.map_err(|e| common::api_error(&format!("read backend service {r_ref}"), &e));
        let Some((backend, facts)) = found? else {
            let found = validation::report([backend_missing(r_ref)], &validation::ignored(ignore));
            return Err(found.into_iter().next().unwrap_or_else(|| {
                Diagnostic::error(
                    "Backend service not found",
                    format!("The backend service {r_ref} does not exist."),
                )
            }));
        };
        let judged = checks(
            ctx,
            r_ref,
            &facts,
            number_ref,
            Some(grant),
            switching_on,
            true,
        );
        let judged = judged.await;
        let key = |s| validation::backend::service_key(number_ref, s);
        Ok(common::Judgement {
            services: facts.services().map(key).collect(),
            read: (backend, facts),
            judged,
        })
    });
    let (backend, facts) = judged.await.map_err(Failure::unchanged(&prior))?;
    let mut next = planned.clone();
    next.set_identity(&r, &number);
    next.set_audience(&r, &number, &backend);
    let agent = google::IapAgent::new(&r.project, &number);
    let behind: Vec<ServiceName> = facts
        .services()
        .map(|s| ServiceName::new(r.project.as_str(), s.location.as_str(), s.name.as_str()))
        .collect();
    let mut grants = common::take_grants(prior.as_ref().map(|p| &p.iap), private);
    let services: Vec<String> = facts.services().map(|s| s.label()).collect();
    // What exists after a failure part-way, IAP being on.
    let record = |next: &Model, grants: &BTreeSet<String>| {
        let mut state = next.clone();
        state.iap.iap_enabled = Attr::Known(true);
        state.iap.iap_invoker_granted = Attr::Known(false);
        state.iap.invoker_grants = Attr::Known(grants.clone());
        state.cloud_run_services = Attr::Known(services.clone());
        state.load_balancing_scheme = Attr::from_option(backend.load_balancing_scheme.clone());
        state.oauth2_client_secret_sha256 = Attr::Null;
        state
    };
    if grant {
        let provisioned = agent.provision(&ctx.clients, deadline).await;
        let provisioned =
            provisioned.map_err(|e| common::api_error("provision the IAP service agent", &e));
        provisioned.map_err(Failure::unchanged(&prior))?;
    }
    let had_custom_client = backend.oauth2_client_id().is_some();
    let patch = match config.oauth2_client_id.get() {
        Some(id) => IapPatch {
            enabled: true,
            oauth2_client_id: Some(id.clone()),
            oauth2_client_secret: config.configured_secret().get().cloned(),
        },
        // Back to the Google-managed client: the custom one must be cleared explicitly.
        None if had_custom_client => IapPatch {
            enabled: true,
            oauth2_client_id: Some(String::new()),
            oauth2_client_secret: Some(String::new()),
        },
        None => IapPatch {
            enabled: true,
            ..IapPatch::default()
        },
    };
    // IAP first: should the run stop before the grants, the next apply finds them missing and
    // adds (and records) them; a grant it finds is never claimed.
    let compute = &ctx.clients.compute;
    let updated = match compute
        .patch_backend_service_iap(&r, &patch, deadline)
        .await
    {
        Ok(updated) => updated,
        Err(e) => {
            let d = common::api_error(&format!("enable IAP on backend service {r}"), &e);
            // The change may have landed (an operation that timed out): report what is there.
            let on = compute
                .backend_service(&r)
                .await
                .ok()
                .map(|b| b.iap_enabled());
            let landed = || record(&next, &grants);
            let state = common::after_failed_enable(prior, on, &grants, |m| &mut m.iap, landed);
            return Err(Failure::new(state, d));
        }
    };
    let targets = (behind.as_slice(), Some(&r));
    let granted =
        common::converge_grants(ctx, &agent, &mut grants, targets, grant, deadline, warnings);
    let granted = granted.await;
    let granted = granted.map_err(|d| Failure::new(Some(record(&next, &grants)), d))?;
    let sha = updated
        .iap
        .clone()
        .unwrap_or_default()
        .oauth2_client_secret_sha256;
    next.load_balancing_scheme = Attr::from_option(updated.load_balancing_scheme.clone());
    next.cloud_run_services = Attr::Known(services.clone());
    if next.oauth2_client_secret_sha256.is_unknown() {
        next.oauth2_client_secret_sha256 = Attr::from_option(sha);
    }
    next.iap.iap_enabled = Attr::Known(true);
    next.iap.iap_invoker_granted = Attr::Known(granted);
    next.iap.invoker_grants = Attr::Known(grants);
    Ok(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A state that recorded `grants` and last read `behind` behind the backend.
    fn recorded(grants: &[&str], behind: &[&str]) -> Model {
        let mut state = Model::default();
        state.iap.invoker_grants = Attr::Known(grants.iter().map(|g| g.to_string()).collect());
        state.cloud_run_services = Attr::Known(behind.iter().map(|s| s.to_string()).collect());
        state
    }

    #[test]
    fn a_grant_is_left_behind_when_its_service_is_no_longer_behind_the_backend() {
        let hello = "projects/my-project/locations/us-central1/services/hello";
        let behind = ["us-central1/hello"];
        assert!(!recorded(&[hello], &behind).grant_left_behind());
        assert!(recorded(&[hello], &["europe-west1/hello"]).grant_left_behind());
        assert!(recorded(&[hello], &[]).grant_left_behind());
        // What the one parser of recorded grants does not read is no grant to release.
        assert!(!recorded(&["not a service/x/y/z"], &[]).grant_left_behind());
        assert!(!Model::default().grant_left_behind(), "nothing recorded");
    }
}
