//! `data "iaprun_audit"`: the IAP exposure of every Cloud Run service of a project.
//!
//! Reading gathers the facts with a bounded number of read-only calls ([`collect`]): the project
//! (for its number and parent) and its organization (for its domain), one paged Run
//! `services.list` per region, one paged compute `aggregatedList` each for network endpoint
//! groups, backend services, forwarding rules, target HTTPS proxies and URL maps (every region at
//! once) and the paged list of global forwarding rules (which has no aggregated form): a fixed
//! number of lists whatever the number of services. Then each IAM policy once, at most
//! [`POLICY_READS_IN_FLIGHT`] at a time: the Run policy of every service, the IAP policy of every
//! service with direct IAP and of every backend with IAP in front of an audited service; last, the
//! IAP settings of those IAP resources whose OAuth client decides a finding
//! ([`settings_matter`]). The evaluation is [`crate::validation::audit::evaluate`].

use std::collections::{BTreeMap, BTreeSet};

use futures::stream::{self, StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};

use super::common::{api_error, service_facts};
use super::Context;
use crate::framework::{
    Attr, Attribute, AttributePath, Block, DataSource, Diagnostic, Diagnostics, Schema, Type,
};
use crate::google::{self, Clients, Policy};
use crate::names;
use crate::validation::audit::{
    evaluate, settings_matter, AuditFinding, AuditedBackend, AuditedService, ProjectFacts,
    ServiceReport,
};
use crate::validation::facts::{BackendFacts, NegFacts};

/// The data source.
pub struct Audit;

/// Its configuration and result.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct AuditModel {
    pub project: Attr<String>,
    pub regions: Attr<Vec<String>>,
    pub services: Attr<Vec<ServiceReport>>,
    pub findings: Attr<Vec<AuditFinding>>,
}

fn object(fields: &[(&str, Type)]) -> Type {
    Type::Object(
        fields
            .iter()
            .map(|(name, ty)| (name.to_string(), ty.clone()))
            .collect(),
    )
}

/// The type of [`AuditFinding`].
fn finding_type() -> Type {
    object(&[
        ("service", Type::String),
        ("check", Type::String),
        ("severity", Type::String),
        ("summary", Type::String),
        ("detail", Type::String),
    ])
}

/// The type of [`ServiceReport`].
fn service_type() -> Type {
    let backend = object(&[
        ("name", Type::String),
        ("region", Type::String),
        ("load_balancing_scheme", Type::String),
        ("iap_enabled", Type::Bool),
    ]);
    object(&[
        ("name", Type::String),
        ("location", Type::String),
        ("uri", Type::String),
        ("ingress", Type::String),
        ("default_uri_disabled", Type::Bool),
        ("iap_enabled", Type::Bool),
        ("public_invoker", Type::Bool),
        ("agent_has_invoker", Type::Bool),
        ("backends", Type::list(backend)),
        ("jwt_audiences", Type::list(Type::String)),
        ("findings", Type::list(finding_type())),
    ])
}

#[async_trait::async_trait]
impl DataSource<Context> for Audit {
    type Model = AuditModel;
    const TYPE_NAME: &'static str = "iaprun_audit";

    fn schema() -> Schema {
        let project = Attribute::string("project").optional().computed();
        let regions = Attribute::string_list("regions").optional().computed();
        let services = Attribute::new("services", Type::list(service_type())).computed();
        let findings = Attribute::new("findings", Type::list(finding_type())).computed();
        Schema::new(
            0,
            Block::new("The IAP exposure of every Cloud Run service of a project, whoever deployed it. For each service: its ingress, run.app URL, IAP on the service and on each load balancer backend that reaches it through a serverless NEG, its invokers and JWT audiences, and the findings of the plan-time checks applied to what exists, plus `unprotected_path` (a load balancer path without IAP to a service IAP guards elsewhere) and `no_iap` (reachable from the internet with no IAP and no invoker restriction). Read-only; meant for `check` blocks (Terraform 1.5+) and outputs. The calls are bounded: the project and its organization, one Run list per region, six compute lists whatever the number of services (aggregatedList of serverless NEGs, backend services, forwarding rules, target HTTPS proxies and URL maps, and the list of global forwarding rules; when the project's Compute Engine API is disabled they answer 403 and count as empty, for then it has no load balancer), each IAM policy once, 32 at a time, and the IAP settings of a protected resource only where its OAuth client decides a finding (a member outside the organization, or direct IAP in a project without one).")
                .attribute(project.description("Project whose Cloud Run services are audited (id or number). Defaults to the provider's `project`."))
                .attribute(regions.description("Regions whose Cloud Run services are audited. Defaults to the provider's `region`."))
                .attribute(services.description("Every Cloud Run service of the regions, sorted by location and name: `name`, `location`, `uri`, `ingress` (`INGRESS_TRAFFIC_*`), `default_uri_disabled`, `iap_enabled` (direct IAP), `public_invoker` (allUsers/allAuthenticatedUsers hold roles/run.invoker or invoker IAM is disabled; null when the policy cannot be read), `agent_has_invoker` (the IAP service agent holds roles/run.invoker; null when unknown), `backends` (each backend service reaching it through a serverless NEG: `name`, `region` (null when global), `load_balancing_scheme`, `iap_enabled`), `jwt_audiences` (the `aud` of the IAP JWT on each path with IAP) and `findings` (as in `findings`)."))
                .attribute(findings.description("Every finding: `service` (`location/name`), `check` (a check name of the provider's checks table, `unprotected_path` or `no_iap`), `severity` (`error` or `warning`), `summary` (what was found on this service) and `detail` (what breaks, the fix and the source).")),
        )
    }

    fn validate(config: &AuditModel) -> Diagnostics {
        let mut diags = Diagnostics::new();
        if let Some(p) = config.project.get().filter(|p| !names::is_project(p)) {
            diags.attribute_error(
                AttributePath::attr("project"),
                "Invalid project",
                format!("{p:?} is not a project id or number: a project id has 6 to 30 lower-case letters, digits or hyphens and starts with a letter."),
            );
        }
        if let Some(regions) = config.regions.get() {
            if regions.is_empty() {
                diags.attribute_error(
                    AttributePath::attr("regions"),
                    "No region",
                    "List at least one region, or leave regions out to audit the provider's region.",
                );
            }
            for (i, region) in regions.iter().enumerate() {
                if !names::is_region(region) {
                    diags.attribute_error(
                        AttributePath::attr("regions").then_index(i as i64),
                        "Invalid region",
                        format!("{region:?} is not a region name such as us-central1."),
                    );
                }
            }
        }
        diags
    }

    async fn read(&self, ctx: &Context, mut config: AuditModel) -> Result<AuditModel, Diagnostics> {
        let Some(project) = ctx.project(config.project.as_deref()).map(str::to_string) else {
            return Err(Diagnostic::error(
                "No project",
                "Set project on this data source or in the provider block (or GOOGLE_PROJECT in the environment).",
            )
            .at(AttributePath::attr("project"))
            .into());
        };
        let regions = match config.regions.get() {
            Some(regions) => regions.clone(),
            None => match ctx.region(None) {
                Some(region) => vec![region.to_string()],
                None => {
                    return Err(Diagnostic::error(
                        "No region",
                        "Set regions on this data source or region in the provider block (or GOOGLE_REGION in the environment).",
                    )
                    .at(AttributePath::attr("regions"))
                    .into())
                }
            },
        };
        let facts = collect(&ctx.clients, &project, &regions)
            .await
            .map_err(|e| Diagnostics::from(api_error(&format!("audit project {project}"), &e)))?;
        let report = evaluate(&facts);
        config.project = Attr::Known(project);
        config.regions = Attr::Known(regions);
        config.services = Attr::Known(report.services);
        config.findings = Attr::Known(report.findings);
        Ok(config)
    }
}

// ---- collecting the facts ------------------------------------------------------------------

/// IAM policy reads in flight at once.
pub const POLICY_READS_IN_FLIGHT: usize = 32;

/// The IAP role whose members pass IAP.
const ACCESSOR_ROLE: &str = "roles/iap.httpsResourceAccessor";

/// An IAP layer of the audit: direct IAP on `services[i]`, or IAP on `backends[i]`.
#[derive(Clone, Copy)]
enum IapLayer {
    Direct(usize),
    Backend(usize),
}

/// One read of the audit, after the lists.
#[derive(Clone, Copy)]
enum Read {
    /// The Run policy of `services[i]`.
    Invoker(usize),
    /// The IAP policy of a layer.
    IapPolicy(IapLayer),
    /// The IAP settings of a layer (for its OAuth client).
    IapSettings(IapLayer),
}

/// What a read found; `None` when it could not be read.
enum Found {
    Invoker(usize, Option<Policy>),
    IapPolicy(IapLayer, Option<Policy>),
    /// Whether the settings name a custom OAuth client.
    IapSettings(IapLayer, Option<bool>),
}

/// Members of `role` in any binding (conditional ones included: a condition narrows when, not who).
fn role_members(policy: &Policy, role: &str) -> Vec<String> {
    policy
        .bindings
        .iter()
        .filter(|b| b.role == role)
        .flat_map(|b| b.members.iter().cloned())
        .collect()
}

/// What cannot be read (denied, or its object gone since the list) is unknown, not an error.
fn unknown_if_unreadable<T>(result: Result<T, google::Error>) -> Result<Option<T>, google::Error> {
    match result {
        Ok(value) => Ok(Some(value)),
        Err(e) if e.is_permission_denied() || e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}

/// Compute's lists in a project whose Compute Engine API is disabled: empty, for no load balancer
/// can exist there (Cloud Run and direct IAP need no Compute), rather than an error.
fn empty_if_compute_disabled<T: Default>(
    result: Result<T, google::Error>,
) -> Result<T, google::Error> {
    google::empty_if_disabled(result, google::COMPUTE_SERVICE)
}

/// The project, and the domain of its organization when it has one that can be read
/// (organizations.get needs a permission on the organization an auditor of the project may lack).
async fn project_and_domain(
    clients: &Clients,
    project: &str,
) -> Result<(google::Project, Option<String>), google::Error> {
    let rm = &clients.resource_manager;
    let info = rm.project(project).await?;
    let domain = match unknown_if_unreadable(rm.organization_of(&info).await)?.flatten() {
        Some(org) => unknown_if_unreadable(rm.organization_domain(&org).await)?.flatten(),
        None => None,
    };
    Ok((info, domain))
}

/// Records what the reads found in the facts.
fn record(found: Vec<Found>, services: &mut [AuditedService], backends: &mut [AuditedBackend]) {
    let accessors = |p: Option<Policy>| p.map(|p| role_members(&p, ACCESSOR_ROLE));
    for found in found {
        match found {
            Found::Invoker(i, p) => {
                services[i].run.invoker_members = p.map(|p| role_members(&p, google::INVOKER_ROLE));
            }
            Found::IapPolicy(IapLayer::Direct(i), p) => services[i].iap_members = accessors(p),
            Found::IapPolicy(IapLayer::Backend(i), p) => backends[i].iap_members = accessors(p),
            Found::IapSettings(IapLayer::Direct(i), c) => services[i].settings_client = c,
            Found::IapSettings(IapLayer::Backend(i), c) => backends[i].settings_client = c,
        }
    }
}

/// Makes the reads, at most [`POLICY_READS_IN_FLIGHT`] at a time.
async fn read_all(
    clients: &Clients,
    reads: Vec<Read>,
    services: &[AuditedService],
    backends: &[AuditedBackend],
    project_id: &str,
    number: &str,
) -> Result<Vec<Found>, google::Error> {
    let iap_resource = |layer: IapLayer| match layer {
        IapLayer::Direct(i) => {
            let run = &services[i].run;
            google::cloud_run_resource(number, &run.location, &run.name)
        }
        IapLayer::Backend(i) => {
            let b = &backends[i].facts;
            google::backend_service_resource(number, b.region.as_deref(), &b.name)
        }
    };
    stream::iter(reads)
        .map(|read| async move {
            Ok::<_, google::Error>(match read {
                Read::Invoker(i) => {
                    let run = &services[i].run;
                    let name = google::ServiceName::new(project_id, &run.location, &run.name);
                    let policy = clients.run.iam_policy(&name).await;
                    Found::Invoker(i, unknown_if_unreadable(policy)?)
                }
                Read::IapPolicy(layer) => {
                    let policy = clients.iap.iam_policy(&iap_resource(layer)).await;
                    Found::IapPolicy(layer, unknown_if_unreadable(policy)?)
                }
                Read::IapSettings(layer) => {
                    let settings = clients.iap.iap_settings(&iap_resource(layer)).await;
                    let custom =
                        unknown_if_unreadable(settings)?.map(|s| s.oauth_client_id.is_some());
                    Found::IapSettings(layer, custom)
                }
            })
        })
        .buffer_unordered(POLICY_READS_IN_FLIGHT)
        .try_collect()
        .await
}

/// Gathers what the audit evaluates, for the Cloud Run services of `regions` in `project`.
pub async fn collect(
    clients: &Clients,
    project: &str,
    regions: &[String],
) -> Result<ProjectFacts, google::Error> {
    let mut seen = BTreeSet::new();
    let regions: Vec<&String> = regions.iter().filter(|r| seen.insert(*r)).collect();
    let lists = futures::future::try_join_all(regions.iter().map(|&region| async move {
        let services = clients.run.services(project, region).await?;
        Ok::<_, google::Error>((region.clone(), services))
    }));
    let compute = &clients.compute;
    let frontends = async {
        unknown_if_unreadable(empty_if_compute_disabled(
            compute.https_reached_backends(project).await,
        ))
    };
    let negs = async {
        empty_if_compute_disabled(compute.network_endpoint_groups_aggregated(project).await)
    };
    let backends =
        async { empty_if_compute_disabled(compute.backend_services_aggregated(project).await) };
    let ((info, organization_domain), lists, negs, backends, https_reached) = futures::try_join!(
        project_and_domain(clients, project),
        lists,
        negs,
        backends,
        frontends,
    )?;
    let project_id = info.project_id.clone();
    let number = info.project_number.clone();
    let has_organization = Some(info.parent.is_some());

    let mut services: Vec<AuditedService> = Vec::new();
    for (region, listed) in lists {
        for service in listed {
            let name = service.service_id().to_string();
            services.push(AuditedService {
                run: service_facts(&region, &name, &service, None),
                uri: service.uri.clone(),
                iap_members: None,
                settings_client: None,
            });
        }
    }
    let audited: BTreeSet<&str> = regions.iter().map(|r| r.as_str()).collect();
    let by_key: BTreeMap<(String, String), usize> = services
        .iter()
        .enumerate()
        .map(|(i, s)| ((s.run.location.clone(), s.run.name.clone()), i))
        .collect();

    // Serverless NEGs of audited regions, by the path of their selfLink.
    let serverless: Vec<(String, NegFacts)> = negs
        .iter()
        .filter_map(|neg| {
            let region = neg.region_name()?;
            let cloud_run = neg.cloud_run.as_ref()?;
            if !audited.contains(region) {
                return None;
            }
            let service = cloud_run.service.as_ref().and_then(|name| {
                by_key
                    .get(&(region.to_string(), name.clone()))
                    .map(|&i| services[i].run.clone())
            });
            Some((
                neg.self_link.clone().unwrap_or_default(),
                NegFacts {
                    name: neg.name.clone(),
                    region: region.to_string(),
                    run_service: cloud_run.service.clone(),
                    url_mask: cloud_run.url_mask.clone(),
                    service,
                },
            ))
        })
        .collect();
    let mut backends: Vec<AuditedBackend> = backends
        .iter()
        .map(|b| AuditedBackend {
            facts: BackendFacts {
                name: b.name.clone(),
                region: b.region_name().map(str::to_string),
                scheme: b.load_balancing_scheme.clone().unwrap_or_default(),
                protocol: b.protocol.clone().unwrap_or_default(),
                cdn_enabled: b.enable_cdn,
                iap_enabled: b.iap_enabled(),
                oauth2_client_id: b
                    .iap
                    .as_ref()
                    .and_then(|i| i.oauth2_client_id.clone())
                    .filter(|id| !id.is_empty()),
                negs: b
                    .backend_groups
                    .iter()
                    .filter_map(|group| {
                        serverless
                            .iter()
                            .find(|(link, _)| google::same_resource(link, group))
                            .map(|(_, neg)| neg.clone())
                    })
                    .collect(),
                https_frontend: https_reached.as_ref().and_then(|reached| {
                    let link = b.self_link.as_deref()?;
                    Some(reached.contains(google::resource_path(link)))
                }),
            },
            id: b.id.clone(),
            iap_members: None,
            settings_client: None,
        })
        .filter(|b| !b.facts.negs.is_empty())
        .collect();

    let mut reads: Vec<Read> = (0..services.len()).map(Read::Invoker).collect();
    let layers: Vec<IapLayer> = services
        .iter()
        .enumerate()
        .filter(|(_, s)| s.run.iap_enabled)
        .map(|(i, _)| IapLayer::Direct(i))
        .chain(
            backends
                .iter()
                .enumerate()
                .filter(|(_, b)| b.facts.iap_enabled && b.facts.services().next().is_some())
                .map(|(i, _)| IapLayer::Backend(i)),
        )
        .collect();
    reads.extend(layers.iter().map(|&layer| Read::IapPolicy(layer)));
    let found = read_all(clients, reads, &services, &backends, &project_id, &number).await?;
    record(found, &mut services, &mut backends);
    // Then the IAP settings of the layers whose findings hinge on their OAuth client.
    let domain = organization_domain.as_deref();
    let settings: Vec<Read> = layers
        .iter()
        .filter(|layer| match **layer {
            IapLayer::Direct(i) => settings_matter(
                services[i].iap_members.as_ref(),
                true,
                has_organization,
                domain,
            ),
            IapLayer::Backend(i) => {
                backends[i].facts.oauth2_client_id.is_none()
                    && settings_matter(
                        backends[i].iap_members.as_ref(),
                        false,
                        has_organization,
                        domain,
                    )
            }
        })
        .map(|&layer| Read::IapSettings(layer))
        .collect();
    if !settings.is_empty() {
        let found = read_all(
            clients,
            settings,
            &services,
            &backends,
            &project_id,
            &number,
        )
        .await?;
        record(found, &mut services, &mut backends);
    }
    // The NEGs carry copies of the service facts, taken before the invoker policies were read.
    for b in &mut backends {
        for neg in &mut b.facts.negs {
            if let Some(s) = neg.service.as_mut() {
                if let Some(&i) = by_key.get(&(s.location.clone(), s.name.clone())) {
                    *s = services[i].run.clone();
                }
            }
        }
    }
    Ok(ProjectFacts {
        project: project_id,
        project_number: number,
        has_organization,
        organization_domain,
        services,
        backends,
    })
}
