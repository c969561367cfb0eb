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
    facts::{BackendFacts, NegFacts},
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
    pub load_balancing_scheme: Attr<String>,
    pub cloud_run_services: Attr<Vec<String>>,
    pub iap_enabled: Attr<bool>,
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

    /// The client secret the configuration gives (state-stored or write-only), if any.
    fn configured_secret(&self) -> &Attr<String> {
        match &self.oauth2_client_secret {
            Attr::Null => &self.oauth2_client_secret_wo,
            secret => secret,
        }
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
        .attribute(Attribute::string("load_balancing_scheme").computed().description(
            "The backend service's load balancing scheme (`EXTERNAL` is the classic Application Load Balancer, `EXTERNAL_MANAGED` the Envoy-based one).",
        ))
        .attribute(Attribute::string_list("cloud_run_services").computed().description(
            "The Cloud Run services behind the backend's serverless NEGs, as `location/name`.",
        ))
        .attribute(common::iap_enabled_attribute("backend service"))
        .attribute(Attribute::string("oauth2_client_secret_sha256").computed().description(
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
        let mut diags = common::plan_project(ctx, &config.project, &mut planned.project);
        planned.iap_enabled = Attr::Known(true);
        planned.oauth2_client_secret_sha256 =
            match (&config.oauth2_client_id, config.configured_secret()) {
                (Attr::Null, _) => Attr::Null,
                (_, Attr::Known(secret)) => Attr::Known(secret_sha256(secret)),
                _ => Attr::unknown(),
            };
        // Unknown until apply: checked then, when Terraform plans again.
        let Some(r) = planned.backend_ref().filter(|_| !diags.has_errors()) else {
            return diags;
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
        let facts = match backend_facts(ctx, &r).await {
            Ok(f) => f,
            Err(e) => {
                let d = common::api_error(&format!("read backend service {r}"), &e);
                return d.at(AttributePath::attr("backend_service")).into();
            }
        };
        if let Some((_, facts)) = &facts {
            planned.load_balancing_scheme = Attr::Known(facts.scheme.clone());
            planned.cloud_run_services = Attr::Known(facts.services().map(|s| s.label()).collect());
        }
        let grant = planned.grant_iap_invoker.get().copied();
        let facts = facts.as_ref().map(|(_, f)| f);
        diags.extend(checks(ctx, &config.ignore_checks, &r, facts, &number, grant).await);
        diags
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
        let iap = backend.iap.clone().unwrap_or_default();
        state.iap_enabled = Attr::Known(iap.is_enabled());
        let client = iap.oauth2_client_id.filter(|c| !c.trim().is_empty());
        state.oauth2_client_id = Attr::from_option(client);
        state.oauth2_client_secret_sha256 = Attr::from_option(iap.oauth2_client_secret_sha256);
        state.set_read(&backend, &facts);
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
        common::revoke_grants(ctx, private, deadline).await
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

/// The plan-time checks of a backend service with IAP (read-only API calls).
async fn checks(
    ctx: &Context,
    ignore_checks: &Attr<BTreeSet<String>>,
    r: &BackendServiceRef,
    facts: Option<&BackendFacts>,
    project_number: &str,
    grant: Option<bool>,
) -> Diagnostics {
    let ignore = common::ignored(ignore_checks);
    let mut findings = common::project_findings(ctx, &r.project, false).await;
    let Some(facts) = facts else {
        let where_ = match region_of(r) {
            Some(region) => format!("region {region} of project {}", r.project),
            None => format!("project {} (global)", r.project),
        };
        findings.push(validation::target::target_missing(
            "backend service",
            &r.name,
            &where_,
            AttributePath::attr("backend_service"),
        ));
        return validation::report(findings, &ignore);
    };
    let key = |s| validation::backend::service_key(project_number, s);
    let behind: Vec<String> = facts.services().map(key).collect();
    let planned_direct = ctx.plan_backend_iap(&r.to_string(), &behind);
    let checks = validation::backend::backend_iap(facts, project_number, grant, &planned_direct);
    findings.extend(checks);
    validation::report(findings, &ignore)
}

// ---- create and update ------------------------------------------------------------------------

async fn converge(ctx: &Context, change: Change<'_, Model, Private>) -> Applied<Model> {
    let (prior, planned, config) = (change.prior, change.planned, change.config);
    let (deadline, private) = (change.deadline, change.private);
    let Some(r) = planned.backend_ref() else {
        return Err(common::incomplete_plan(
            prior,
            "project and backend_service",
        ));
    };
    let creating = prior.is_none();
    let number = match common::project_number(ctx, &r.project).await {
        Ok(n) => n,
        Err(d) => return Err(Failure::new(prior, d)),
    };
    let (backend, facts) = match backend_facts(ctx, &r).await {
        Ok(Some(found)) => found,
        Ok(None) => {
            let d = Diagnostic::error(
                "Backend service not found",
                format!("The backend service {r} does not exist."),
            );
            return Err(Failure::new(
                prior,
                d.at(AttributePath::attr("backend_service")),
            ));
        }
        Err(e) => {
            let d = common::api_error(&format!("read backend service {r}"), &e);
            return Err(Failure::new(prior, d));
        }
    };
    let mut state = prior;
    let mut next = planned.clone();
    next.set_identity(&r, &number);
    let grant = planned.grant_iap_invoker.or(true);
    if grant {
        let agent = Agent::new(&r.project, &number);
        if let Err(d) = agent.provision(ctx, deadline).await {
            return Err(Failure::new(state, d));
        }
        for s in facts.services() {
            let name = ServiceName::new(r.project.as_str(), s.location.as_str(), s.name.as_str());
            // A create that finds IAP already on adopts the agent's grants: they are what an
            // interrupted earlier apply of this resource left (see docs/reliability.md).
            let adopt = async { creating && facts.iap_enabled };
            if let Err(d) = agent.grant(ctx, &name, adopt, private, deadline).await {
                return Err(Failure::new(state, d));
            }
            // A grant exists now: record the object so a failure below leaves nothing unknown.
            state.get_or_insert_with(|| Model {
                iap_enabled: Attr::Known(facts.iap_enabled),
                oauth2_client_secret_sha256: Attr::Null,
                ..next.clone()
            });
        }
    } else if let Err(d) = common::revoke_grants(ctx, private, deadline).await {
        return Err(Failure::new(state, d));
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
    match ctx
        .clients
        .compute
        .patch_backend_service_iap(&r, &patch, deadline)
        .await
    {
        Ok(updated) => {
            let sha = updated
                .iap
                .clone()
                .unwrap_or_default()
                .oauth2_client_secret_sha256;
            if next.load_balancing_scheme.is_unknown() {
                next.load_balancing_scheme =
                    Attr::from_option(updated.load_balancing_scheme.clone());
            }
            if next.cloud_run_services.is_unknown() {
                next.cloud_run_services =
                    Attr::Known(facts.services().map(|s| s.label()).collect());
            }
            if next.oauth2_client_secret_sha256.is_unknown() {
                next.oauth2_client_secret_sha256 = Attr::from_option(sha);
            }
            Ok(next)
        }
        Err(e) => {
            // A failed create undoes its grants and leaves no state: a tainted object would
            // be replaced, and Terraform hands the destroy half of a replacement no private
            // state, so the grants recorded there would be left behind.
            if creating && common::revoke_grants(ctx, private, deadline).await.is_ok() {
                state = None;
            }
            let d = common::api_error(&format!("enable IAP on backend service {r}"), &e);
            Err(Failure::new(state, d))
        }
    }
}
