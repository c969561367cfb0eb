//! `data "iaprun_audit"`: the IAP exposure of every Cloud Run service of a project.
//!
//! Reading gathers the facts with a bounded number of read-only calls: the project (for its number),
//! one paged Run `services.list` per region, one paged compute `aggregatedList` each for network
//! endpoint groups and backend services (every region at once), then each IAM policy once, at most
//! [`POLICY_READS_IN_FLIGHT`] at a time: the Run policy of every service, the IAP policy of every
//! service with direct IAP and of every backend with IAP in front of an audited service. The
//! evaluation is [`crate::validation::audit::evaluate`].

use std::collections::{BTreeMap, BTreeSet};

use futures::stream::{self, StreamExt, TryStreamExt};

use super::common::{service_facts, INVOKER_ROLE};
use crate::google::{self, Clients, Policy};
use crate::validation::audit::{AuditedBackend, AuditedService, ProjectFacts};
use crate::validation::facts::{BackendFacts, NegFacts};

/// IAM policy reads in flight at once.
pub const POLICY_READS_IN_FLIGHT: usize = 32;

/// The IAP role whose members pass IAP.
const ACCESSOR_ROLE: &str = "roles/iap.httpsResourceAccessor";

/// One policy to read.
enum PolicyRead {
    /// The Run policy of `services[i]`.
    Invoker(usize),
    /// The IAP policy of `services[i]` (direct IAP).
    DirectIap(usize),
    /// The IAP policy of `backends[i]`.
    BackendIap(usize),
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

/// A policy that cannot be read (denied, or its object gone since the list) is unknown, not an error.
fn unknown_if_unreadable(
    result: Result<Policy, google::Error>,
) -> Result<Option<Policy>, google::Error> {
    match result {
        Ok(policy) => Ok(Some(policy)),
        Err(e) if e.is_permission_denied() || e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
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
    let (info, lists, negs, backends) = futures::try_join!(
        clients.resource_manager.project(project),
        lists,
        clients.compute.network_endpoint_groups_aggregated(project),
        clients.compute.backend_services_aggregated(project),
    )?;
    let project_id = info.project_id.clone();
    let number = info.project_number.clone();

    let mut services: Vec<AuditedService> = Vec::new();
    for (region, listed) in lists {
        for service in listed {
            let name = service.service_id().to_string();
            services.push(AuditedService {
                run: service_facts(&region, &name, &service, None),
                uri: service.uri.clone(),
                iap_members: None,
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
                https_frontend: None,
            },
            id: b.id.clone(),
            iap_members: None,
        })
        .filter(|b| !b.facts.negs.is_empty())
        .collect();

    let mut reads: Vec<PolicyRead> = (0..services.len()).map(PolicyRead::Invoker).collect();
    reads.extend(
        services
            .iter()
            .enumerate()
            .filter(|(_, s)| s.run.iap_enabled)
            .map(|(i, _)| PolicyRead::DirectIap(i)),
    );
    reads.extend(
        backends
            .iter()
            .enumerate()
            .filter(|(_, b)| b.facts.iap_enabled && b.facts.services().next().is_some())
            .map(|(i, _)| PolicyRead::BackendIap(i)),
    );
    let policies: Vec<(PolicyRead, Option<Policy>)> = stream::iter(reads)
        .map(|read| {
            let (services, backends, project_id, number) =
                (&services, &backends, &project_id, &number);
            async move {
                let result = match &read {
                    PolicyRead::Invoker(i) => {
                        let run = &services[*i].run;
                        let name = google::ServiceName::new(project_id, &run.location, &run.name);
                        clients.run.iam_policy(&name).await
                    }
                    PolicyRead::DirectIap(i) => {
                        let run = &services[*i].run;
                        let resource = google::cloud_run_resource(number, &run.location, &run.name);
                        clients.iap.iam_policy(&resource).await
                    }
                    PolicyRead::BackendIap(i) => {
                        let b = &backends[*i].facts;
                        let resource =
                            google::backend_service_resource(number, b.region.as_deref(), &b.name);
                        clients.iap.iam_policy(&resource).await
                    }
                };
                Ok::<_, google::Error>((read, unknown_if_unreadable(result)?))
            }
        })
        .buffer_unordered(POLICY_READS_IN_FLIGHT)
        .try_collect()
        .await?;
    for (read, policy) in policies {
        match read {
            PolicyRead::Invoker(i) => {
                services[i].run.invoker_members = policy.map(|p| role_members(&p, INVOKER_ROLE));
            }
            PolicyRead::DirectIap(i) => {
                services[i].iap_members = policy.map(|p| role_members(&p, ACCESSOR_ROLE));
            }
            PolicyRead::BackendIap(i) => {
                backends[i].iap_members = policy.map(|p| role_members(&p, ACCESSOR_ROLE));
            }
        }
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
        services,
        backends,
    })
}
