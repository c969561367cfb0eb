//! `iaprun_backend_iap`: IAP enabled on a load balancer backend service (global or regional) that
//! fronts Cloud Run through serverless NEGs, with an optional custom OAuth client.

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
use crate::google::{self, BackendServiceRef, IapPatch, Scope, ServiceName};
use crate::names;
use crate::validation::{
    self,
    facts::{BackendFacts, NegFacts, RunServiceFacts},
    service::Layer,
    timing::Judged,
};

/// The resource type.
pub struct BackendIap;

pub const TYPE_NAME: &str = "iaprun_backend_iap";

/// Config, plan and state of one `iaprun_backend_iap`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Model {
    pub id: Attr<String>,
    pub backend_service: Attr<String>,
    pub region: Attr<String>,
    pub project: Attr<String>,
    pub oauth2_client_id: Attr<String>,
    pub oauth2_client_secret: Attr<String>,
    pub oauth2_client_secret_wo: Attr<String>,
    pub oauth2_client_secret_wo_version: Attr<serde_json::Number>,
    pub grant_iap_invoker: Attr<bool>,
    pub ignore_checks: Attr<BTreeSet<String>>,
    pub project_number: Attr<String>,
    pub iap_resource_name: Attr<String>,
    pub backend_service_id: Attr<String>,
    pub jwt_audience: Attr<String>,
    pub load_balancing_scheme: Attr<String>,
    pub cloud_run_services: Attr<Vec<String>>,
    pub iap_enabled: Attr<bool>,
    pub iap_invoker_granted: Attr<bool>,
    pub invoker_grants: Attr<BTreeSet<String>>,
    pub checks_after: Attr<Vec<String>>,
    pub oauth2_client_secret_sha256: Attr<String>,
    pub timeouts: Attr<Timeouts>,
}

impl Model {
    /// The backend service this instance designates, when its project and name are known.
    fn backend_ref(&self) -> Option<BackendServiceRef> {
        let (project, name) = (
            self.project.get()?.as_str(),
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
        self.id = Attr::Known(r.to_string());
        self.project_number = project_number.into();
        let resource = google::backend_service_resource(project_number, region_of(r), &r.name);
        self.iap_resource_name = Attr::Known(resource);
    }

    /// What the configuration asks for: a change in it is a change the user makes.
    fn intent(&self) -> impl PartialEq + '_ {
        (
            (&self.backend_service, &self.region, &self.project),
            (&self.oauth2_client_id, &self.oauth2_client_secret),
            (
                &self.oauth2_client_secret_wo_version,
                &self.grant_iap_invoker,
            ),
            (&self.ignore_checks, &self.timeouts),
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
        self.jwt_audience = Attr::from_option(
            backend
                .id
                .as_deref()
                .map(|id| google::backend_service_jwt_audience(number, region_of(r), id)),
        );
    }

    /// What the last read learned about the backend and the services behind it.
    fn set_read(&mut self, backend: &google::BackendService, facts: &BackendFacts) {
        self.load_balancing_scheme = Attr::from_option(backend.load_balancing_scheme.clone());
        self.cloud_run_services = Attr::Known(facts.services().map(|s| s.label()).collect());
    }
}

fn region_of(r: &BackendServiceRef) -> Option<&str> {
    match &r.scope {
        Scope::Region(region) => Some(region),
        Scope::Global => None,
    }
}

#[async_trait]
impl Resource<Context> for BackendIap {
    type Model = Model;
    type Private = Private;
    const TYPE_NAME: &'static str = TYPE_NAME;

    fn schema() -> Schema {
        Schema::new(
        0,
        Block::new(
            "Enables Identity-Aware Proxy on a load balancer backend service that fronts Cloud Run through serverless NEGs. Uses the Google-managed OAuth client unless `oauth2_client_id` is set, grants the IAP service agent `roles/run.invoker` on every Cloud Run service behind the backend, and checks the load balancer for known pitfalls at plan time. Destroying it disables IAP on the backend.",
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
        .attribute(common::grant_iap_invoker_attribute("every Cloud Run service behind the backend's serverless NEGs"))
        .attribute(common::ignore_checks_attribute())
        .attribute(Attribute::string("project_number").computed().description("Number of the project."))
        .attribute(Attribute::string("iap_resource_name").computed().description(
            "The IAP resource name of the backend service, `projects/{project_number}/iap_web/compute/services/{name}` (regional: `compute-{region}`): use it as `resource` of `iaprun_access_binding`.",
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
        .attribute(common::iap_enabled_attribute("backend service"))
        .attribute(Attribute::bool("iap_invoker_granted").computed().description(
            "Whether the IAP service agent holds `roles/run.invoker` on every Cloud Run service behind the backend, as last read. A grant removed outside Terraform, or a serverless NEG added later, shows as drift and the next apply grants it.",
        ))
        .attribute(common::invoker_grants_attribute())
        .attribute(common::checks_after_attribute())
        .attribute(Attribute::string("oauth2_client_secret_sha256").computed().sensitive().description(
            "SHA-256 of the OAuth client secret as the API reports it; a secret rotated outside Terraform changes it.",
        ))
        .block(timeouts_block(true, true, true)),
    )
    }

    fn validate(config: &Model, _: ClientCapabilities) -> Diagnostics {
        let mut diags = common::validate_common(&config.project, &config.ignore_checks);
        common::check_name(&mut diags, "backend_service", &config.backend_service);
        common::check_name(&mut diags, "region", &config.region);
        diags.extend(validate_client(config));
        diags
    }

    async fn plan(&self, ctx: &Context, plan: &mut Plan<Model>) -> Diagnostics {
        let (config, planned) = (&plan.config, &mut plan.planned);
        let prior = plan.prior.as_ref();
        let mut diags = common::plan_project(ctx, &config.project, &mut planned.project);
        planned.iap_enabled = Attr::Known(true);
        planned.oauth2_client_secret_sha256 =
            match (&config.oauth2_client_id, config.configured_secret()) {
                (Attr::Null, _) => Attr::Null,
                (_, Attr::Known(secret)) => Attr::Known(secret_sha256(secret)),
                _ => Attr::unknown(),
            };
        let replace = &mut plan.requires_replace;
        common::plan_project_identity(
            ctx,
            prior.map(|p| &p.project),
            &config.project,
            &mut planned.project,
            replace,
        )
        .await;
        let replacing = !replace.is_empty();
        let grant = planned.grant_iap_invoker.get().copied();
        match grant {
            Some(true) => planned.iap_invoker_granted = Attr::Known(true),
            _ if prior.is_none_or(|p| p.grant_iap_invoker.get() != Some(&false)) => {
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
                || p.oauth2_client_secret_sha256 != planned.oauth2_client_secret_sha256
                || p.checks_after != planned.checks_after
        });
        if changing {
            // What the backend fronts is read at apply: a NEG added in this run (before the
            // apply reaches this resource) must not make the final plan differ from this one.
            planned.cloud_run_services = Attr::unknown();
            planned.invoker_grants = Attr::unknown();
            if replacing || planned.load_balancing_scheme.is_null() {
                planned.load_balancing_scheme = Attr::unknown();
            }
        }
        if replacing {
            planned.id = Attr::unknown();
            planned.project_number = Attr::unknown();
            planned.iap_resource_name = Attr::unknown();
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
            planned.iap_resource_name.get(),
            config.oauth2_client_id.is_known(),
        ) {
            ctx.custom_oauth_clients
                .put(resource, !config.oauth2_client_id.is_null());
        }
        let deferred = validation::timing::checks_after_deferred(
            prior.map(|p| &p.checks_after),
            &planned.checks_after,
        );
        let at =
            validation::timing::at_plan(prior.is_none() || replacing, deferred, intent_changed);
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
        let switching_on = prior.is_none_or(|p| replacing || p.iap_enabled != Attr::Known(true));
        let judged = checks(ctx, &r, &facts, &number, grant, switching_on, false).await;
        diags.extend(validation::timing::report_judged_at_plan(
            judged,
            &common::ignored(&config.ignore_checks),
            at,
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
                    format!("The backend service {r} no longer exists, so {TYPE_NAME} was removed from the state."),
                ))))
            }
            Err(e) => return Err(common::api_error(&format!("read backend service {r}"), &e)),
        };
        let number =
            common::recorded_project_number(ctx, &state.project_number, &r.project).await?;
        state.set_identity(&r, &number);
        state.set_audience(&r, &number, &backend);
        let iap = backend.iap.clone().unwrap_or_default();
        state.iap_enabled = Attr::Known(iap.is_enabled());
        let client = iap.oauth2_client_id.filter(|c| !c.trim().is_empty());
        state.oauth2_client_id = Attr::from_option(client);
        state.oauth2_client_secret_sha256 = Attr::from_option(iap.oauth2_client_secret_sha256);
        state.set_read(&backend, &facts);
        // The facts carry each service's invoker members already: no second policy read.
        let agent = Agent::new(&r.project, &number);
        let granted = facts
            .services()
            .all(|s| s.has_invoker(&agent.member) == Some(true));
        state.iap_invoker_granted = Attr::Known(granted);
        if state.invoker_grants.is_null() {
            // A state from before grants were recorded in it, or an import, which added nothing.
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
        let Some(r) = prior.backend_ref() else {
            return Ok(());
        };
        // A move to direct IAP in this run waits for this removal (and its grant release).
        let mut services = Vec::new();
        if let Some((key, behind)) = removal_keys(ctx, &prior, &r).await {
            ctx.plan_backend_removal(&key);
            services = behind;
        }
        let _removal = ctx.begin_removal(services);
        let off = IapPatch {
            enabled: false,
            ..IapPatch::default()
        };
        match ctx
            .clients
            .compute
            .patch_backend_service_iap(&r, &off, deadline)
            .await
        {
            Ok(_) => {}
            Err(e) if e.is_not_found() => {}
            Err(e) => {
                return Err(common::api_error(
                    &format!("disable IAP on backend service {r}"),
                    &e,
                ))
            }
        }
        let agent = Agent::new(
            &r.project,
            prior.project_number.as_deref().unwrap_or_default(),
        );
        let mut grants = common::recorded_grants(Some(&prior.invoker_grants), private);
        common::release_grants(
            ctx,
            &agent.member,
            &mut grants,
            |_| false,
            Some(Some(&r)),
            deadline,
        )
        .await
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
            project: project.into(),
            grant_iap_invoker: Attr::Known(true),
            ..Model::default()
        })
    }
}

/// The custom OAuth client: id and secret together, one kind of secret, no empty id.
fn validate_client(config: &Model) -> Diagnostics {
    let mut diags = Diagnostics::new();
    let (id, secret, secret_wo) = (
        &config.oauth2_client_id,
        &config.oauth2_client_secret,
        &config.oauth2_client_secret_wo,
    );
    if !secret.is_null() && !secret_wo.is_null() {
        diags.attribute_error(
            AttributePath::attr("oauth2_client_secret_wo"),
            "Conflicting secrets",
            "Set either oauth2_client_secret or oauth2_client_secret_wo, not both.",
        );
    }
    if id.is_null() && (!secret.is_null() || !secret_wo.is_null()) {
        // On the secret that is set: the missing id has no line in the configuration to point at.
        let given = if secret.is_null() {
            "oauth2_client_secret_wo"
        } else {
            "oauth2_client_secret"
        };
        diags.attribute_error(
            AttributePath::attr(given),
            "OAuth client id missing",
            "A client secret was given without oauth2_client_id. Set both for a custom OAuth client, or neither for the Google-managed one.",
        );
    }
    if !id.is_null() && id.is_known() && secret.is_null() && secret_wo.is_null() {
        diags.attribute_error(
            AttributePath::attr("oauth2_client_id"),
            "OAuth client secret missing",
            "A custom OAuth client needs its secret: set oauth2_client_secret (or oauth2_client_secret_wo on Terraform 1.11+).",
        );
    }
    if id.get().is_some_and(|i| i.trim().is_empty()) {
        diags.attribute_error(
            AttributePath::attr("oauth2_client_id"),
            "Empty OAuth client id",
            "Leave oauth2_client_id unset (null) to use the Google-managed OAuth client; an empty string is not a client id.",
        );
    }
    if !config.oauth2_client_secret_wo_version.is_null() && secret_wo.is_null() {
        diags.attribute_error(
            AttributePath::attr("oauth2_client_secret_wo_version"),
            "Version without a write-only secret",
            "oauth2_client_secret_wo_version only has an effect together with oauth2_client_secret_wo.",
        );
    }
    diags
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
    let backend = match ctx.clients.compute.backend_service(r).await {
        Ok(b) => b,
        Err(e) if e.is_not_found() => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut negs = Vec::new();
    for group in &backend.backend_groups {
        let Some((project, region, name)) = google::neg_parts(group) else {
            continue;
        };
        let neg = match ctx
            .clients
            .compute
            .network_endpoint_group(&project, &region, &name)
            .await
        {
            Ok(n) => n,
            Err(e) if e.is_not_found() => continue,
            Err(e) => return Err(e),
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
        region: region_of(r).map(str::to_string),
        scheme: backend.load_balancing_scheme.clone().unwrap_or_default(),
        protocol: backend.protocol.clone().unwrap_or_default(),
        cdn_enabled: backend.enable_cdn,
        iap_enabled: backend.iap.as_ref().is_some_and(|i| i.is_enabled()),
        oauth2_client_id: backend
            .iap
            .as_ref()
            .and_then(|i| i.oauth2_client_id.clone())
            .filter(|c| !c.trim().is_empty()),
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
    let mut judged = Judged::usual(common::project_findings(ctx, &r.project, false).await);
    let key = |s: &RunServiceFacts| validation::backend::service_key(project_number, s);
    let behind: Vec<String> = facts.services().map(key).collect();
    let backend = validation::backend::backend_key(project_number, region_of(r), &r.name);
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
    let number = common::recorded_project_number(ctx, &state.project_number, &r.project)
        .await
        .ok()?;
    let backend = validation::backend::backend_key(&number, region_of(r), &r.name);
    let services = state.cloud_run_services.get().into_iter().flatten();
    let services = services.map(|label| format!("{number}/{label}")).collect();
    Some((backend, services))
}

/// `target_missing` for a backend service still missing at apply.
fn backend_missing(r: &BackendServiceRef) -> validation::Finding {
    let where_ = match region_of(r) {
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
    } = change;
    let Some(r) = planned.backend_ref() else {
        return Err(common::incomplete_plan(
            prior,
            "project and backend_service",
        ));
    };
    let number = match common::project_number(ctx, &r.project).await {
        Ok(n) => n,
        Err(d) => return Err(Failure::new(prior, d)),
    };
    let grant = planned.grant_iap_invoker.or(true);
    let ignore = common::ignored(&planned.ignore_checks);
    // Right before the first change, on a fresh read: nothing changes while an error finding holds.
    let switching_on = prior
        .as_ref()
        .is_none_or(|p| p.iap_enabled != Attr::Known(true));
    let (r_ref, number_ref, ignore_ref) = (&r, number.as_str(), &ignore);
    let judged = common::judge_before_change(ctx, &ignore, deadline, || async move {
        let (backend, facts) = match backend_facts(ctx, r_ref).await {
            Ok(Some(found)) => found,
            Ok(None) => {
                let found = validation::report([backend_missing(r_ref)], ignore_ref);
                return Err(found.into_iter().next().unwrap_or_else(|| {
                    Diagnostic::error(
                        "Backend service not found",
                        format!("The backend service {r_ref} does not exist."),
                    )
                }));
            }
            Err(e) => {
                return Err(common::api_error(
                    &format!("read backend service {r_ref}"),
                    &e,
                ))
            }
        };
        let judged = checks(
            ctx,
            r_ref,
            &facts,
            number_ref,
            Some(grant),
            switching_on,
            true,
        )
        .await;
        let services = facts
            .services()
            .map(|s| validation::backend::service_key(number_ref, s))
            .collect();
        Ok(common::Judgement {
            read: (backend, facts),
            judged,
            services,
        })
    })
    .await;
    let (backend, facts) = match judged {
        Ok(read) => read,
        Err(d) => return Err(Failure::new(prior, d)),
    };
    let mut next = planned.clone();
    next.set_identity(&r, &number);
    next.set_audience(&r, &number, &backend);
    let agent = Agent::new(&r.project, &number);
    let behind: Vec<ServiceName> = facts
        .services()
        .map(|s| ServiceName::new(r.project.as_str(), s.location.as_str(), s.name.as_str()))
        .collect();
    let mut grants = common::recorded_grants(prior.as_ref().map(|p| &p.invoker_grants), private);
    // Recorded in state from now on.
    private.invoker_grants.clear();
    let services: Vec<String> = facts.services().map(|s| s.label()).collect();
    // What exists after a failure part-way, IAP being on.
    let record = |next: &Model, grants: &BTreeSet<String>| {
        let mut state = next.clone();
        state.iap_enabled = Attr::Known(true);
        state.iap_invoker_granted = Attr::Known(false);
        state.invoker_grants = Attr::Known(grants.clone());
        state.cloud_run_services = Attr::Known(services.clone());
        state.load_balancing_scheme = Attr::from_option(backend.load_balancing_scheme.clone());
        state.oauth2_client_secret_sha256 = Attr::Null;
        state
    };
    if grant {
        if let Err(d) = agent.provision(ctx, deadline).await {
            return Err(Failure::new(prior, d));
        }
    }
    let had_custom_client = backend
        .iap
        .as_ref()
        .and_then(|i| i.oauth2_client_id.as_deref())
        .is_some_and(|c| !c.trim().is_empty());
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
    let updated = match ctx
        .clients
        .compute
        .patch_backend_service_iap(&r, &patch, deadline)
        .await
    {
        Ok(updated) => updated,
        Err(e) => {
            let d = common::api_error(&format!("enable IAP on backend service {r}"), &e);
            // The change may have landed (an operation that timed out): report what is there.
            let on = ctx
                .clients
                .compute
                .backend_service(&r)
                .await
                .ok()
                .map(|b| b.iap_enabled());
            let keep = |p: &mut Model, on: Option<bool>| {
                p.iap_enabled = on.map_or(p.iap_enabled.clone(), Attr::Known);
                p.invoker_grants = Attr::Known(grants.clone());
            };
            let landed = || record(&next, &grants);
            let state = common::after_failed_enable(prior, on, landed, keep);
            return Err(Failure::new(state, d));
        }
    };
    if grant {
        for name in &behind {
            match agent.grant(ctx, name, deadline).await {
                Ok(true) => {
                    grants.insert(name.to_string());
                }
                Ok(false) => {}
                Err(d) => return Err(Failure::new(Some(record(&next, &grants)), d)),
            }
        }
    }
    // Grants it added that it no longer needs: on services no longer behind the backend (unless
    // another IAP path needs them), or all of them once grant_iap_invoker is false.
    let behind_keys: BTreeSet<String> = behind.iter().map(|n| n.to_string()).collect();
    let released = if grant {
        let keep = |k: &str| behind_keys.contains(k);
        common::release_grants(
            ctx,
            &agent.member,
            &mut grants,
            keep,
            Some(Some(&r)),
            deadline,
        )
        .await
    } else {
        common::release_grants(ctx, &agent.member, &mut grants, |_| false, None, deadline).await
    };
    if let Err(d) = released {
        return Err(Failure::new(Some(record(&next, &grants)), d));
    }
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
    let granted = grant || agent_granted_everywhere(ctx, &agent, &behind).await;
    next.iap_enabled = Attr::Known(true);
    next.iap_invoker_granted = Attr::Known(granted);
    next.invoker_grants = Attr::Known(grants);
    Ok(next)
}

/// Whether the agent holds roles/run.invoker on every one of `services` (false when unreadable).
async fn agent_granted_everywhere(ctx: &Context, agent: &Agent, services: &[ServiceName]) -> bool {
    for name in services {
        if !agent.granted(ctx, name).await.unwrap_or(false) {
            return false;
        }
    }
    true
}
