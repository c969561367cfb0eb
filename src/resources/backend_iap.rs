//! `iaprun_backend_iap`: IAP enabled on a load balancer backend service (global or regional) that
//! fronts Cloud Run through serverless NEGs, with an optional custom OAuth client.

use async_trait::async_trait;

use super::common;
use crate::framework::{
    ApplyRequest, ApplyResponse, Attribute, AttributePath, Block, DeleteRequest, Diagnostic,
    Diagnostics, ImportResponse, PlanRequest, ReadRequest, ReadResponse, Resource, Schema,
    ValidateRequest, Value,
};
use crate::google::{self, BackendServiceRef, IapPatch, Scope, ServiceName};
use crate::names;
use crate::provider::Context;
use crate::validation::{
    self,
    facts::{BackendFacts, NegFacts},
};

/// The resource type.
pub struct BackendIap;

pub const TYPE_NAME: &str = "iaprun_backend_iap";

// ---- schema ----------------------------------------------------------------------------------

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
        .attribute(Attribute::bool("iap_enabled").computed().description(
            "Whether IAP is enabled on the backend service as last read. A change made outside Terraform shows as drift and the next apply restores it.",
        ))
        .attribute(Attribute::bool("iap_invoker_granted").computed().description(
            "Whether the IAP service agent holds `roles/run.invoker` on every Cloud Run service behind the backend, as last read. A grant removed outside Terraform, or a serverless NEG added later, shows as drift and the next apply grants it.",
        ))
        .attribute(common::invoker_grants_attribute())
        .attribute(common::checks_after_attribute())
        .attribute(Attribute::string("oauth2_client_secret_sha256").computed().sensitive().description(
            "SHA-256 of the OAuth client secret as the API reports it; a secret rotated outside Terraform changes it.",
        ))
        .block(crate::framework::schema::timeouts_block(true, true, true)),
    )
}

// ---- validate --------------------------------------------------------------------------------

fn validate(config: &Value, write_only_allowed: bool) -> Diagnostics {
    let mut diags = common::validate_common(config);
    diags.extend(common::validate_timeouts(config));
    if let Some(n) = config.get_str("backend_service") {
        if !names::is_compute_name(n) {
            diags.attribute_error(
                AttributePath::attr("backend_service"),
                "Invalid backend service name",
                format!("{n:?} is not a backend service name: lower-case letters, digits and hyphens, starting with a letter, at most 63 characters. Give the name, not its URL."),
            );
        }
    }
    if let Some(r) = config.get_str("region") {
        if !names::is_region(r) {
            diags.attribute_error(
                AttributePath::attr("region"),
                "Invalid region",
                format!("{r:?} is not a region such as us-central1. Leave region unset for a global backend service."),
            );
        }
    }
    let id = config.get("oauth2_client_id");
    let secret = config.get("oauth2_client_secret");
    let secret_wo = config.get("oauth2_client_secret_wo");
    if !secret.is_null() && !secret_wo.is_null() {
        diags.attribute_error(
            AttributePath::attr("oauth2_client_secret_wo"),
            "Conflicting secrets",
            "Set either oauth2_client_secret or oauth2_client_secret_wo, not both.",
        );
    }
    if !secret_wo.is_null() && !write_only_allowed {
        diags.attribute_error(
            AttributePath::attr("oauth2_client_secret_wo"),
            "Write-only attributes not supported",
            "This Terraform version does not support write-only attributes (Terraform 1.11+ does). Use oauth2_client_secret instead, or upgrade Terraform.",
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
    if let Some(i) = id.as_str() {
        if i.trim().is_empty() {
            diags.attribute_error(
                AttributePath::attr("oauth2_client_id"),
                "Empty OAuth client id",
                "Leave oauth2_client_id unset (null) to use the Google-managed OAuth client; an empty string is not a client id.",
            );
        }
    }
    if !config.get("oauth2_client_secret_wo_version").is_null()
        && secret_wo.is_null()
        && secret_wo.is_known()
    {
        diags.attribute_error(
            AttributePath::attr("oauth2_client_secret_wo_version"),
            "Version without a write-only secret",
            "oauth2_client_secret_wo_version only has an effect together with oauth2_client_secret_wo.",
        );
    }
    diags
}

// ---- plan ------------------------------------------------------------------------------------

/// The backend service this instance designates, when its project and name are known.
fn backend_ref(value: &Value) -> Option<BackendServiceRef> {
    let project = value.get_str("project")?;
    let name = value.get_str("backend_service")?;
    match value.get("region") {
        Value::Null => Some(BackendServiceRef::global(project, name)),
        Value::String(region) => Some(BackendServiceRef::regional(project, region.as_str(), name)),
        _ => None,
    }
}

fn region_of(r: &BackendServiceRef) -> Option<&str> {
    match &r.scope {
        Scope::Region(region) => Some(region),
        Scope::Global => None,
    }
}

fn set_identity(state: &mut Value, r: &BackendServiceRef, project_number: &str) {
    state.set_attr("id", Value::string(r.to_string()));
    state.set_attr("project_number", Value::from(project_number));
    state.set_attr(
        "iap_resource_name",
        Value::string(google::backend_service_resource(
            project_number,
            region_of(r),
            &r.name,
        )),
    );
}

/// The client secret the configuration gives (state-stored or write-only), if any.
fn configured_secret(config: &Value) -> &Value {
    match config.get("oauth2_client_secret") {
        Value::Null => config.get("oauth2_client_secret_wo"),
        secret => secret,
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
    let backend = match ctx.clients.compute.backend_service(r).await {
        Ok(b) => b,
        Err(e) if e.is_not_found() => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut negs = Vec::new();
    for group in &backend.backend_groups {
        let Some((project, region, name)) = neg_parts(group) else {
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
    let https_frontend = https_frontend(ctx, r, &backend).await;
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

/// `(project, region, name)` of a serverless NEG URL (full or partial).
fn neg_parts(url: &str) -> Option<(String, String, String)> {
    let path = &url[url.find("projects/")?..];
    let parts: Vec<&str> = path.split('/').collect();
    match parts.as_slice() {
        ["projects", p, "regions", r, "networkEndpointGroups", n] => {
            Some((p.to_string(), r.to_string(), n.to_string()))
        }
        _ => None,
    }
}

/// Whether an HTTPS forwarding rule reaches the backend (rule → target HTTPS proxy → URL map);
/// `None` when the chain could not be read.
async fn https_frontend(
    ctx: &Context,
    r: &BackendServiceRef,
    backend: &google::BackendService,
) -> Option<bool> {
    let compute = &ctx.clients.compute;
    let self_link = backend.self_link.clone().unwrap_or_else(|| r.to_string());
    let rules = compute.forwarding_rules(&r.project, &r.scope).await.ok()?;
    for rule in rules.iter().filter(|rule| rule.is_https()) {
        let Some(target) = &rule.target else { continue };
        let Some(proxy_name) = target.rsplit('/').next() else {
            continue;
        };
        let Ok(proxy) = compute
            .target_https_proxy(&r.project, &r.scope, proxy_name)
            .await
        else {
            continue;
        };
        let Some(map_name) = proxy.url_map.as_deref().and_then(|u| u.rsplit('/').next()) else {
            continue;
        };
        let Ok(map) = compute.url_map(&r.project, &r.scope, map_name).await else {
            continue;
        };
        if map
            .backend_services()
            .iter()
            .any(|s| google::same_resource(s, &self_link))
        {
            return Some(true);
        }
    }
    Some(false)
}

/// The attributes the configuration sets: a change in one is a change the user asks for.
const CONFIGURED: &[&str] = &[
    "backend_service",
    "region",
    "project",
    "oauth2_client_id",
    "oauth2_client_secret",
    "oauth2_client_secret_wo_version",
    "grant_iap_invoker",
    "ignore_checks",
    "timeouts",
];

/// Computed attributes that describe the object: unknown again when the resource is replaced.
const COMPUTED: &[&str] = &[
    "id",
    "project_number",
    "iap_resource_name",
    "load_balancing_scheme",
    "cloud_run_services",
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
    if config.get("grant_iap_invoker").is_null() {
        planned.set_attr("grant_iap_invoker", Value::Bool(true));
    }
    planned.set_attr("iap_enabled", Value::Bool(true));
    let sha = match (config.get("oauth2_client_id"), configured_secret(&config)) {
        (Value::Null, _) => Value::Null,
        (_, Value::String(secret)) => Value::string(secret_sha256(secret)),
        _ => Value::unknown(),
    };
    planned.set_attr("oauth2_client_secret_sha256", sha);
    common::plan_project_identity(ctx, &prior, &config, planned, &mut req.requires_replace).await;
    let replacing = !req.requires_replace.is_empty();
    if replacing {
        for a in COMPUTED {
            planned.set_attr(a, Value::unknown());
        }
    }
    let grant = planned.get("grant_iap_invoker").as_bool();
    match grant {
        Some(true) => planned.set_attr("iap_invoker_granted", Value::Bool(true)),
        _ if prior.is_null() || prior.get("grant_iap_invoker").as_bool() != Some(false) => {
            planned.set_attr("iap_invoker_granted", Value::unknown())
        }
        _ => {}
    }
    let intent_changed = validation::timing::intent_changed(&prior, planned, CONFIGURED);
    let changing = prior.is_null()
        || replacing
        || intent_changed
        || prior.get("iap_enabled") != planned.get("iap_enabled")
        || prior.get("iap_invoker_granted") != planned.get("iap_invoker_granted")
        || prior.get("oauth2_client_secret_sha256") != planned.get("oauth2_client_secret_sha256")
        || prior.get("checks_after") != planned.get("checks_after");
    if changing {
        // What the backend fronts is read at apply: a NEG added in this run (before the apply
        // reaches this resource) must not make the final plan differ from this one.
        planned.set_attr("cloud_run_services", Value::unknown());
        planned.set_attr("invoker_grants", Value::unknown());
        if planned.get("load_balancing_scheme").is_null() {
            planned.set_attr("load_balancing_scheme", Value::unknown());
        }
    }
    if diags.has_errors() {
        return diags;
    }
    let Some(r) = backend_ref(planned) else {
        return diags; // unknown until apply: checked then, when Terraform plans again
    };
    let project = match ctx.project_info(&r.project).await {
        Ok(p) => p,
        Err(e) => {
            diags.push(
                common::api_error(&format!("read project {}", r.project), &e)
                    .at(AttributePath::attr("project")),
            );
            return diags;
        }
    };
    set_identity(planned, &r, &project.project_number);
    // Access bindings planned after this one judge their members by the client configured here.
    if let Some(resource) = planned.get_str("iap_resource_name") {
        let client = config.get("oauth2_client_id");
        if client.is_known() {
            ctx.custom_oauth_clients.put(resource, !client.is_null());
        }
    }
    let at = if replacing {
        validation::timing::AtPlan::Enforce
    } else {
        validation::timing::at_plan(&prior, planned, intent_changed)
    };
    if at == validation::timing::AtPlan::Deferred {
        return diags;
    }
    let facts = match backend_facts(ctx, &r).await {
        Ok(f) => f,
        Err(e) => {
            diags.push(
                common::api_error(&format!("read backend service {r}"), &e)
                    .at(AttributePath::attr("backend_service")),
            );
            return diags;
        }
    };
    let Some((_, facts)) = facts else {
        // Not there yet: the configuration may create it in this run; checked at apply.
        return diags;
    };
    let findings = checks(ctx, &r, &facts, &project.project_number, grant).await;
    diags.extend(validation::timing::report_at_plan(
        findings,
        &validation::ignored(&config),
        at,
    ));
    diags
}

/// The live checks of a backend service with IAP (read-only API calls).
async fn checks(
    ctx: &Context,
    r: &BackendServiceRef,
    facts: &BackendFacts,
    project_number: &str,
    grant: Option<bool>,
) -> Vec<validation::Finding> {
    use crate::validation::{backend, service};
    let mut findings = common::project_findings(ctx, &r.project, false).await;
    findings.extend(backend::passthrough_lb(facts));
    findings.extend(backend::cdn_enabled(facts));
    findings.extend(backend::http2_classic_lb(facts));
    findings.extend(backend::envoy_jwt_header(facts));
    findings.extend(backend::run_app_bypass(facts));
    findings.extend(backend::neg_mismatch(facts));
    findings.extend(backend::no_https_frontend(facts));
    let service_key = |s: &validation::facts::RunServiceFacts| {
        format!("{project_number}/{}/{}", s.location, s.name)
    };
    let behind: Vec<String> = facts.services().map(service_key).collect();
    let planned_direct = ctx.plan_backend_iap(&r.to_string(), &behind);
    findings.extend(service::double_iap(
        facts,
        |s| s.iap_enabled || planned_direct.contains(&service_key(s)),
        AttributePath::attr("backend_service"),
    ));
    let project_invokers = if grant == Some(false) {
        ctx.clients
            .resource_manager
            .project_iam_policy(&r.project)
            .await
            .ok()
            .map(|p| p.members(common::INVOKER_ROLE, None))
    } else {
        None
    };
    for s in facts.services() {
        findings.extend(service::public_invoker(
            s,
            AttributePath::attr("backend_service"),
        ));
        if let Some(grant) = grant {
            findings.extend(service::missing_invoker_in_project(
                s,
                project_number,
                grant,
                project_invokers.as_deref(),
            ));
        }
    }
    findings
}

/// `target_missing` for a backend service that is still missing at apply.
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

// ---- create, read, update, delete -------------------------------------------------------------

/// Applies the desired state (create or update): the live checks on a fresh read first (an error
/// finding stops it with nothing changed), then IAP on the backend, then the agent's grant on
/// every Cloud Run service behind it. On failure the returned state tells what really exists.
async fn converge(
    ctx: &Context,
    prior: &Value,
    planned: &Value,
    config: &Value,
    private: &[u8],
    operation: &str,
) -> ApplyResponse {
    let private = common::Private::decode(private);
    let unchanged = |d: Diagnostics| ApplyResponse {
        state: prior.clone(),
        private: private.encode(),
        diagnostics: d,
    };
    let Some(r) = backend_ref(planned) else {
        return unchanged(
            Diagnostic::error(
                "Incomplete plan",
                "project and backend_service must be known at apply. This is a bug in the provider.",
            )
            .into(),
        );
    };
    let deadline = common::deadline(config, operation);
    let project = match ctx.project_info(&r.project).await {
        Ok(p) => p,
        Err(e) => {
            return unchanged(common::api_error(&format!("read project {}", r.project), &e).into())
        }
    };
    let grant = planned.get("grant_iap_invoker").as_bool().unwrap_or(true);
    let ignore = validation::ignored(config);
    // Right before the first change, on a fresh read: nothing changes while an error finding holds.
    let (backend, facts) = match backend_facts(ctx, &r).await {
        Ok(Some(found)) => found,
        Ok(None) => return unchanged(validation::report([backend_missing(&r)], &ignore)),
        Err(e) => {
            return unchanged(common::api_error(&format!("read backend service {r}"), &e).into())
        }
    };
    let mut diagnostics = validation::report(
        checks(ctx, &r, &facts, &project.project_number, Some(grant)).await,
        &ignore,
    );
    if diagnostics.has_errors() {
        return unchanged(diagnostics);
    }
    let mut next = planned.clone();
    set_identity(&mut next, &r, &project.project_number);
    let agent_member = format!(
        "serviceAccount:{}",
        google::iap_service_agent_email(&project.project_number)
    );
    let behind: Vec<ServiceName> = facts
        .services()
        .map(|s| ServiceName::new(r.project.as_str(), s.location.as_str(), s.name.as_str()))
        .collect();
    let mut grants = common::recorded_grants(prior, &private);
    // What exists after a failure part-way.
    let record = |next: &Value, grants: &std::collections::BTreeSet<String>, iap_on: bool| {
        let mut state = next.clone();
        state.set_attr("iap_enabled", Value::Bool(iap_on));
        state.set_attr("invoker_grants", Value::string_set(grants.iter().cloned()));
        state.set_attr("iap_invoker_granted", Value::Bool(false));
        state.set_attr(
            "cloud_run_services",
            Value::string_list(facts.services().map(|s| s.label())),
        );
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
            .iap_service_agent(&r.project, &project.project_number, deadline)
            .await
        {
            return unchanged(common::api_error("provision the IAP service agent", &e).into());
        }
    }
    let had_custom_client = backend
        .iap
        .as_ref()
        .and_then(|i| i.oauth2_client_id.as_deref())
        .is_some_and(|c| !c.trim().is_empty());
    let patch = match config.get_str("oauth2_client_id") {
        Some(id) => IapPatch {
            enabled: true,
            oauth2_client_id: Some(id.to_string()),
            oauth2_client_secret: configured_secret(config).as_str().map(str::to_string),
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
            let state = match (prior.is_null(), on) {
                (true, Some(true)) => record(&next, &grants, true),
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
    if grant {
        for name in &behind {
            match common::grant_invoker_propagated(ctx, name, &agent_member, deadline).await {
                Ok(true) => {
                    grants.insert(name.to_string());
                }
                Ok(false) => {}
                Err(e) => {
                    let d = common::api_error(
                        &format!("grant roles/run.invoker on {name} to the IAP service agent"),
                        &e,
                    );
                    return fail(record(&next, &grants, true), d, &diagnostics);
                }
            }
        }
    }
    // Grants this resource added that it no longer needs: on services no longer behind the
    // backend, or all of them once grant_iap_invoker is false.
    let behind_keys: std::collections::BTreeSet<String> =
        behind.iter().map(|n| n.to_string()).collect();
    for recorded in grants.clone() {
        if grant && behind_keys.contains(&recorded) {
            continue;
        }
        let Ok(name) = common::service_from_key(&recorded) else {
            continue;
        };
        let released = if grant {
            common::release_grant(
                ctx,
                &name,
                &agent_member,
                Some(&r),
                deadline,
                &mut diagnostics,
            )
            .await
        } else {
            common::revoke_invoker(ctx, &name, &agent_member, deadline).await
        };
        if let Err(e) = released {
            let d = common::api_error(
                &format!("remove the invoker grant this resource added on {name}"),
                &e,
            );
            return fail(record(&next, &grants, true), d, &diagnostics);
        }
        grants.remove(&recorded);
    }
    let iap = updated.iap.clone().unwrap_or_default();
    next.set_attr(
        "load_balancing_scheme",
        Value::opt_string(updated.load_balancing_scheme.clone()),
    );
    next.set_attr(
        "cloud_run_services",
        Value::string_list(facts.services().map(|s| s.label())),
    );
    if next.get("oauth2_client_secret_sha256").is_unknown() {
        next.set_attr(
            "oauth2_client_secret_sha256",
            Value::opt_string(iap.oauth2_client_secret_sha256.clone()),
        );
    }
    let granted = if grant {
        true
    } else {
        agent_granted_everywhere(ctx, &behind, &agent_member).await
    };
    next.set_attr("iap_invoker_granted", Value::Bool(granted));
    next.set_attr("invoker_grants", Value::string_set(grants.iter().cloned()));
    ApplyResponse {
        state: common::finalize(next),
        private: Vec::new(),
        diagnostics,
    }
}

/// Whether the agent holds roles/run.invoker on every one of `services` (false when unreadable).
async fn agent_granted_everywhere(ctx: &Context, services: &[ServiceName], agent: &str) -> bool {
    for name in services {
        match ctx.clients.run.iam_policy(name).await {
            Ok(policy) if policy.has_member(common::INVOKER_ROLE, agent, None) => {}
            _ => return false,
        }
    }
    true
}

async fn read(ctx: &Context, req: ReadRequest) -> ReadResponse {
    let mut diagnostics = Diagnostics::new();
    let mut state = req.state.clone();
    let Some(r) = backend_ref(&state) else {
        return ReadResponse {
            state,
            private: req.private,
            diagnostics,
        };
    };
    let (backend, facts) = match backend_facts(ctx, &r).await {
        Ok(Some(found)) => found,
        Ok(None) => {
            diagnostics.warning(
                "Backend service deleted outside Terraform",
                format!("The backend service {r} no longer exists, so {TYPE_NAME} was removed from the state."),
            );
            return ReadResponse {
                state: Value::Null,
                private: Vec::new(),
                diagnostics,
            };
        }
        Err(e) => {
            diagnostics.push(common::api_error(&format!("read backend service {r}"), &e));
            return ReadResponse {
                state,
                private: req.private,
                diagnostics,
            };
        }
    };
    let project_number = match state.get_str("project_number") {
        Some(n) => n.to_string(),
        None => match ctx.project_info(&r.project).await {
            Ok(p) => p.project_number.clone(),
            Err(e) => {
                diagnostics.push(common::api_error(
                    &format!("read project {}", r.project),
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
    set_identity(&mut state, &r, &project_number);
    let iap = backend.iap.clone().unwrap_or_default();
    state.set_attr("iap_enabled", Value::Bool(iap.is_enabled()));
    state.set_attr(
        "oauth2_client_id",
        Value::opt_string(
            iap.oauth2_client_id
                .clone()
                .filter(|c| !c.trim().is_empty()),
        ),
    );
    state.set_attr(
        "oauth2_client_secret_sha256",
        Value::opt_string(iap.oauth2_client_secret_sha256.clone()),
    );
    state.set_attr(
        "load_balancing_scheme",
        Value::opt_string(backend.load_balancing_scheme.clone()),
    );
    state.set_attr(
        "cloud_run_services",
        Value::string_list(facts.services().map(|s| s.label())),
    );
    if state.get("grant_iap_invoker").is_null() {
        state.set_attr("grant_iap_invoker", Value::Bool(true));
    }
    let agent = format!(
        "serviceAccount:{}",
        google::iap_service_agent_email(&project_number)
    );
    // The facts carry each service's invoker members already: no second policy read.
    let granted = facts
        .services()
        .all(|s| s.has_invoker(&agent) == Some(true));
    state.set_attr("iap_invoker_granted", Value::Bool(granted));
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
    let Some(r) = backend_ref(&prior) else {
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
        .compute
        .patch_backend_service_iap(
            &r,
            &IapPatch {
                enabled: false,
                ..IapPatch::default()
            },
            deadline,
        )
        .await
    {
        Ok(_) => {}
        Err(e) if e.is_not_found() => {}
        Err(e) => {
            return fail(
                common::api_error(&format!("disable IAP on backend service {r}"), &e),
                &grants,
                &diagnostics,
            )
        }
    }
    let member = prior
        .get_str("project_number")
        .map(|n| format!("serviceAccount:{}", google::iap_service_agent_email(n)))
        .or_else(|| private.invoker_grants.values().next().cloned());
    if let Some(member) = member {
        for recorded in grants.clone() {
            let Ok(name) = common::service_from_key(&recorded) else {
                continue;
            };
            if let Err(e) =
                common::release_grant(ctx, &name, &member, Some(&r), deadline, &mut diagnostics)
                    .await
            {
                return fail(
                    common::api_error(
                        &format!("remove the invoker grant this resource added on {name}"),
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
    let parsed = match names::parse_backend_service_id(id) {
        Ok(p) => p,
        Err(e) => {
            diagnostics.error("Invalid import id", e);
            return ImportResponse {
                diagnostics,
                ..ImportResponse::default()
            };
        }
    };
    let Some(project) = ctx.project(parsed.project.as_deref()) else {
        diagnostics.error(
            "Incomplete import id",
            format!("{id:?} lacks the project and the provider sets no default. Use projects/PROJECT/global/backendServices/NAME."),
        );
        return ImportResponse {
            diagnostics,
            ..ImportResponse::default()
        };
    };
    let mut state = schema().block.empty_value();
    state.set_attr("backend_service", Value::from(parsed.name.as_str()));
    state.set_attr("region", Value::opt_string(parsed.region.clone()));
    state.set_attr("project", Value::from(project));
    state.set_attr("grant_iap_invoker", Value::Bool(true));
    ImportResponse {
        state,
        private: Vec::new(),
        diagnostics,
    }
}

#[async_trait]
impl Resource<Context> for BackendIap {
    fn type_name(&self) -> &'static str {
        TYPE_NAME
    }

    fn schema(&self) -> Schema {
        schema()
    }

    fn validate(&self, req: &ValidateRequest) -> Diagnostics {
        validate(
            &req.config,
            req.client_capabilities.write_only_attributes_allowed,
        )
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
