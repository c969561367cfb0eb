//! The audit of a whole project, as pure evaluation: given every Cloud Run service of the audited
//! regions, every backend service and the serverless NEGs joining them, which checks hold on which
//! service. Every rule is a catalogue check (the same functions the resources call) or an
//! audit-only rule of [`super::exposure`]; nothing here re-states a rule. The `iaprun_audit` data
//! source gathers the facts (read-only API calls) and renders the report.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::facts::{BackendFacts, RunServiceFacts};
use super::{backend, exposure, managed_oauth_external, public_member, service, target, Finding};

/// A Cloud Run service as audited.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditedService {
    pub run: RunServiceFacts,
    pub uri: Option<String>,
    /// Members of roles/iap.httpsResourceAccessor on its direct IAP resource; read only when
    /// direct IAP is on, `None` when not read.
    pub iap_members: Option<Vec<String>>,
    /// Whether its IAP settings name a custom OAuth client; read only when [`settings_matter`],
    /// `None` when not read.
    pub settings_client: Option<bool>,
}

/// A backend service as audited.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditedBackend {
    /// Its serverless NEGs are those in audited regions, each with the service it names there.
    pub facts: BackendFacts,
    /// Compute's numeric `id` (the JWT audience uses it).
    pub id: Option<String>,
    /// Members of roles/iap.httpsResourceAccessor on its IAP resource; read only when IAP is on.
    pub iap_members: Option<Vec<String>>,
    /// Whether its IAP settings name a custom OAuth client; read only when the backend names none
    /// itself and [`settings_matter`], `None` when not read.
    pub settings_client: Option<bool>,
}

impl AuditedBackend {
    /// Whether its IAP uses a custom OAuth client: the backend's own `iap.oauth2ClientId`, else
    /// its IAP settings; `None` when unknown.
    pub fn custom_oauth_client(&self) -> Option<bool> {
        match self.facts.oauth2_client_id {
            Some(_) => Some(true),
            None => self.settings_client,
        }
    }
}

/// Everything the audit evaluates.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProjectFacts {
    pub project: String,
    pub project_number: String,
    /// Whether the project has a parent (an organization, or a folder in one); `None` unknown.
    pub has_organization: Option<bool>,
    /// The primary domain of the project's organization; `None` when unknown or none.
    pub organization_domain: Option<String>,
    pub services: Vec<AuditedService>,
    pub backends: Vec<AuditedBackend>,
}

/// One finding of the audit, on one service (`location/name`). The data source outputs it as is.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditFinding {
    pub service: String,
    /// The check's name.
    pub check: String,
    /// `error` or `warning`.
    pub severity: String,
    /// What was found, specific to this service.
    pub summary: String,
    /// What breaks, the fix and the source (from the catalogue).
    pub detail: String,
}

impl AuditFinding {
    fn new(service: &str, finding: Finding) -> Self {
        AuditFinding {
            service: service.to_string(),
            check: finding.check.to_string(),
            severity: finding.severity().as_str().to_string(),
            detail: finding.explanation(),
            summary: finding.detail,
        }
    }
}

/// A load balancer path to a service: a backend service over one of its serverless NEGs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackendPath {
    pub name: String,
    /// `None` for a global backend service.
    pub region: Option<String>,
    pub load_balancing_scheme: String,
    pub iap_enabled: bool,
}

/// What the audit reports about one Cloud Run service. The data source outputs it as is.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceReport {
    pub name: String,
    pub location: String,
    pub uri: Option<String>,
    pub ingress: String,
    pub default_uri_disabled: bool,
    pub iap_enabled: bool,
    /// allUsers/allAuthenticatedUsers invoker or invoker IAM disabled; `None` when the policy
    /// could not be read.
    pub public_invoker: Option<bool>,
    /// The IAP service agent holds roles/run.invoker; `None` when the policy could not be read.
    pub agent_has_invoker: Option<bool>,
    pub backends: Vec<BackendPath>,
    /// The `aud` of the IAP JWT on each path with IAP.
    pub jwt_audiences: Vec<String>,
    pub findings: Vec<AuditFinding>,
}

/// The whole audit.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Report {
    /// Sorted by location, then name.
    pub services: Vec<ServiceReport>,
    /// Every finding, in the order of `services` (findings on services that do not exist, such as
    /// a NEG naming a missing service, last).
    pub findings: Vec<AuditFinding>,
}

/// The JWT audience of direct IAP on a Cloud Run service.
pub fn direct_jwt_audience(project_number: &str, location: &str, service: &str) -> String {
    format!("/projects/{project_number}/locations/{location}/services/{service}")
}

/// The JWT audience of IAP on a backend service (by its numeric id).
pub fn backend_jwt_audience(project_number: &str, region: Option<&str>, id: &str) -> String {
    match region {
        Some(region) => {
            format!("/projects/{project_number}/regions/{region}/backendServices/{id}")
        }
        None => format!("/projects/{project_number}/global/backendServices/{id}"),
    }
}

/// The backend restricted to the NEGs that point at `run` (so each check speaks of that service).
fn restricted_to(backend: &BackendFacts, run: &RunServiceFacts) -> BackendFacts {
    BackendFacts {
        negs: backend
            .negs
            .iter()
            .filter(|n| n.region == run.location && n.run_service.as_deref() == Some(&run.name))
            .cloned()
            .collect(),
        ..backend.clone()
    }
}

/// Whether a serverless NEG of the backend points at `run`.
fn reaches(backend: &BackendFacts, run: &RunServiceFacts) -> bool {
    backend
        .negs
        .iter()
        .any(|n| n.region == run.location && n.run_service.as_deref() == Some(&run.name))
}

/// Findings on an IAP policy's members, each saying which policy it is.
fn on_policy(findings: Vec<Finding>, resource: &str) -> Vec<Finding> {
    findings
        .into_iter()
        .map(|mut f| {
            f.detail = format!("On the IAP policy of {resource}: {}", f.detail);
            f
        })
        .collect()
}

/// The member checks of one IAP layer: `public_member`, and `managed_oauth_external` when the
/// layer is known to use the Google-managed OAuth client and the organization's domain is known.
fn member_findings(
    members: Option<&Vec<String>>,
    custom_oauth_client: Option<bool>,
    organization_domain: Option<&str>,
    resource: &str,
) -> Vec<Finding> {
    let members: Vec<&str> = members.into_iter().flatten().map(String::as_str).collect();
    let mut found = public_member(&members);
    if let (Some(false), Some(domain)) = (custom_oauth_client, organization_domain) {
        found.extend(managed_oauth_external(&members, domain));
    }
    on_policy(found, resource)
}

/// Whether the findings on an IAP layer hinge on its IAP settings naming a custom OAuth client,
/// so that the audit reads them: accessors outside the organization's domain
/// (`managed_oauth_external`), or direct IAP in a project without an organization
/// (`no_organization`). A backend naming its own client never needs them.
pub fn settings_matter(
    members: Option<&Vec<String>>,
    direct: bool,
    has_organization: Option<bool>,
    organization_domain: Option<&str>,
) -> bool {
    let members: Vec<&str> = members.into_iter().flatten().map(String::as_str).collect();
    (direct && has_organization == Some(false))
        || organization_domain.is_some_and(|d| !managed_oauth_external(&members, d).is_empty())
}

/// The findings on one service, given the backends that reach it: the resources' lists of checks
/// for each layer where IAP is on (a backend with IAP in front of it, direct IAP), applied as if
/// nothing granted the agent its role, then the audit-only rules. A finding two layers both report
/// (the invoker checks) is kept once.
fn service_findings(
    facts: &ProjectFacts,
    audited: &AuditedService,
    reaching: &[&AuditedBackend],
) -> Vec<Finding> {
    let run = &audited.run;
    let number = facts.project_number.as_str();
    let domain = facts.organization_domain.as_deref();
    let mut out = Vec::new();
    for b in reaching.iter().filter(|b| b.facts.iap_enabled) {
        out.extend(
            backend::backend_iap(
                &restricted_to(&b.facts, run),
                number,
                Some(false),
                |s| service::Layer::of(s.iap_enabled, None, false),
                // The audit reads no project policy: only service-level grants count.
                None,
            )
            .all(),
        );
        out.extend(member_findings(
            b.iap_members.as_ref(),
            b.custom_oauth_client(),
            domain,
            &format!("backend service {}", exposure::backend_label(&b.facts)),
        ));
    }
    if run.iap_enabled {
        out.extend(service::direct_iap(run, &[], number, Some(false), None).all());
        out.extend(member_findings(
            audited.iap_members.as_ref(),
            audited.settings_client,
            domain,
            &format!("Cloud Run service {}", run.label()),
        ));
        // A custom OAuth client is the fix no_organization points to.
        if audited.settings_client != Some(true) {
            out.extend(target::no_organization(
                &facts.project,
                facts.has_organization,
            ));
        }
    }
    let reaching_facts: Vec<&BackendFacts> = reaching.iter().map(|b| &b.facts).collect();
    out.extend(exposure::unprotected_path(run, &reaching_facts));
    out.extend(exposure::no_iap(run, &reaching_facts));
    let mut seen = std::collections::BTreeSet::new();
    out.retain(|f| seen.insert((f.check, f.detail.clone())));
    out
}

/// Evaluates every rule on every service of the project.
pub fn evaluate(facts: &ProjectFacts) -> Report {
    let agent = format!(
        "serviceAccount:{}",
        super::facts::iap_service_agent(&facts.project_number)
    );
    let mut services: Vec<&AuditedService> = facts.services.iter().collect();
    services.sort_by(|a, b| (&a.run.location, &a.run.name).cmp(&(&b.run.location, &b.run.name)));
    let mut report = Report::default();
    for audited in services {
        let run = &audited.run;
        let reaching: Vec<&AuditedBackend> = facts
            .backends
            .iter()
            .filter(|b| reaches(&b.facts, run))
            .collect();
        let label = run.label();
        let findings: Vec<AuditFinding> = service_findings(facts, audited, &reaching)
            .into_iter()
            .map(|f| AuditFinding::new(&label, f))
            .collect();
        let mut jwt_audiences = Vec::new();
        if run.iap_enabled {
            jwt_audiences.push(direct_jwt_audience(
                &facts.project_number,
                &run.location,
                &run.name,
            ));
        }
        for b in reaching.iter().filter(|b| b.facts.iap_enabled) {
            if let Some(id) = &b.id {
                jwt_audiences.push(backend_jwt_audience(
                    &facts.project_number,
                    b.facts.region.as_deref(),
                    id,
                ));
            }
        }
        report.findings.extend(findings.iter().cloned());
        report.services.push(ServiceReport {
            name: run.name.clone(),
            location: run.location.clone(),
            uri: audited.uri.clone(),
            ingress: run.ingress.clone(),
            default_uri_disabled: run.default_uri_disabled,
            iap_enabled: run.iap_enabled,
            public_invoker: run
                .invoker_members
                .as_ref()
                .map(|_| run.invoker_iam_disabled || !run.public_invokers().is_empty()),
            agent_has_invoker: run.has_invoker(&agent),
            backends: reaching
                .iter()
                .map(|b| BackendPath {
                    name: b.facts.name.clone(),
                    region: b.facts.region.clone(),
                    load_balancing_scheme: b.facts.scheme.clone(),
                    iap_enabled: b.facts.iap_enabled,
                })
                .collect(),
            jwt_audiences,
            findings,
        });
    }
    report.findings.extend(missing_neg_targets(facts));
    report
}

/// `neg_mismatch` for every backend whose serverless NEG names a service missing in its region,
/// reported on that (missing) service, once per backend and NEG.
fn missing_neg_targets(facts: &ProjectFacts) -> Vec<AuditFinding> {
    let mut by_target: BTreeMap<String, Vec<AuditFinding>> = BTreeMap::new();
    for b in &facts.backends {
        for neg in b.facts.negs.iter().filter(|n| n.service.is_none()) {
            let Some(target) = &neg.run_service else {
                continue;
            };
            let only = BackendFacts {
                negs: vec![neg.clone()],
                ..b.facts.clone()
            };
            let label = format!("{}/{target}", neg.region);
            for f in backend::neg_mismatch(&only) {
                by_target
                    .entry(label.clone())
                    .or_default()
                    .push(AuditFinding::new(&label, f));
            }
        }
    }
    by_target.into_values().flatten().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validation::facts::NegFacts;

    const PN: &str = "42";

    fn svc(name: &str, f: impl FnOnce(&mut RunServiceFacts)) -> AuditedService {
        let mut run = RunServiceFacts {
            name: name.into(),
            location: "us-central1".into(),
            ingress: "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER".into(),
            invoker_members: Some(vec![format!(
                "serviceAccount:{}",
                super::super::facts::iap_service_agent(PN)
            )]),
            ..Default::default()
        };
        f(&mut run);
        AuditedService {
            run,
            uri: Some(format!("https://{name}.run.app")),
            iap_members: None,
            settings_client: None,
        }
    }

    fn lb(name: &str, iap: bool, targets: &[&AuditedService]) -> AuditedBackend {
        AuditedBackend {
            facts: BackendFacts {
                name: name.into(),
                scheme: "EXTERNAL_MANAGED".into(),
                protocol: "HTTPS".into(),
                iap_enabled: iap,
                negs: targets
                    .iter()
                    .map(|t| NegFacts {
                        name: format!("{}-neg", t.run.name),
                        region: t.run.location.clone(),
                        run_service: Some(t.run.name.clone()),
                        service: Some(t.run.clone()),
                        url_mask: None,
                    })
                    .collect(),
                https_frontend: Some(true),
                ..Default::default()
            },
            id: Some(format!("{}000", name.len())),
            iap_members: iap.then(|| vec!["group:staff@example.com".into()]),
            settings_client: None,
        }
    }

    /// A project in an organization of domain example.com.
    fn project(services: Vec<AuditedService>, backends: Vec<AuditedBackend>) -> ProjectFacts {
        ProjectFacts {
            project: "p".into(),
            project_number: PN.into(),
            has_organization: Some(true),
            organization_domain: Some("example.com".into()),
            services,
            backends,
        }
    }

    fn checks_on<'a>(report: &'a Report, service: &str) -> Vec<&'a str> {
        report
            .findings
            .iter()
            .filter(|f| f.service == format!("us-central1/{service}"))
            .map(|f| f.check.as_str())
            .collect()
    }

    #[test]
    fn each_finding_lands_on_its_service_and_near_misses_stay_clean() {
        let guarded = svc("guarded", |_| {});
        let side = svc("side-door", |_| {});
        let public = svc("public", |s| {
            s.ingress = "INGRESS_TRAFFIC_ALL".into();
            s.invoker_members = Some(vec!["allUsers".into()]);
        });
        let direct = svc("direct", |s| s.iap_enabled = true);
        let backends = vec![
            lb("web", true, &[&guarded, &side]),
            lb("other", false, &[&side, &direct]),
        ];
        let mut facts = project(vec![guarded, side, public, direct], backends);
        // The NEG of a backend naming a service missing in its region.
        facts.backends[0].facts.negs.push(NegFacts {
            name: "ghost-neg".into(),
            region: "us-central1".into(),
            run_service: Some("ghost".into()),
            service: None,
            url_mask: None,
        });
        let report = evaluate(&facts);
        assert_eq!(checks_on(&report, "guarded"), vec!["envoy_jwt_header"]);
        assert_eq!(
            checks_on(&report, "side-door"),
            vec!["envoy_jwt_header", "unprotected_path"]
        );
        assert_eq!(checks_on(&report, "public"), vec!["no_iap"]);
        assert!(
            checks_on(&report, "direct").is_empty(),
            "direct IAP guards the path without it"
        );
        assert_eq!(checks_on(&report, "ghost"), vec!["neg_mismatch"]);
        let public = report.findings.iter().find(|f| f.check == "no_iap");
        let public = public.expect("no_iap");
        assert_eq!(public.severity, "error");
        assert!(public.summary.contains("us-central1/public"));
        assert!(public.detail.starts_with("What breaks: "));
        assert!(public.detail.contains("\nFix: "));

        let by_name: BTreeMap<&str, &ServiceReport> = report
            .services
            .iter()
            .map(|s| (s.name.as_str(), s))
            .collect();
        assert_eq!(
            by_name.keys().copied().collect::<Vec<_>>(),
            vec!["direct", "guarded", "public", "side-door"]
        );
        assert_eq!(by_name["public"].public_invoker, Some(true));
        assert_eq!(by_name["public"].agent_has_invoker, Some(false));
        assert_eq!(by_name["guarded"].agent_has_invoker, Some(true));
        assert_eq!(
            by_name["direct"].jwt_audiences,
            vec!["/projects/42/locations/us-central1/services/direct"]
        );
        assert_eq!(
            by_name["guarded"].jwt_audiences,
            vec!["/projects/42/global/backendServices/3000"]
        );
        assert_eq!(by_name["side-door"].backends.len(), 2);
        assert_eq!(by_name["side-door"].findings.len(), 2);
    }

    #[test]
    fn the_catalogue_checks_apply_only_where_iap_guards_the_service() {
        let h2c_direct = svc("h2c-direct", |s| {
            s.iap_enabled = true;
            s.h2c = true;
        });
        let h2c_plain = svc("h2c-plain", |s| s.h2c = true);
        let no_agent = svc("no-agent", |s| {
            s.iap_enabled = true;
            s.invoker_members = Some(vec![]);
        });
        let no_agent_no_iap = svc("no-agent-no-iap", |s| s.invoker_members = Some(vec![]));
        let bypass = svc("bypass", |s| s.ingress = "INGRESS_TRAFFIC_ALL".into());
        let double = svc("double", |s| s.iap_enabled = true);
        let mut cdn = lb("cdn", true, &[&bypass, &double]);
        cdn.facts.cdn_enabled = true;
        cdn.facts.scheme = "EXTERNAL".into();
        let mut public_iap = svc("public-iap", |s| s.iap_enabled = true);
        public_iap.iap_members = Some(vec!["allUsers".into()]);
        let facts = project(
            vec![
                h2c_direct,
                h2c_plain,
                no_agent,
                no_agent_no_iap,
                bypass,
                double,
                public_iap,
            ],
            vec![cdn],
        );
        let report = evaluate(&facts);
        assert_eq!(checks_on(&report, "h2c-direct"), vec!["http2_direct"]);
        assert!(checks_on(&report, "h2c-plain").is_empty());
        assert_eq!(checks_on(&report, "no-agent"), vec!["missing_invoker"]);
        assert!(checks_on(&report, "no-agent-no-iap").is_empty());
        assert_eq!(
            checks_on(&report, "bypass"),
            vec!["cdn_enabled", "run_app_bypass"]
        );
        assert_eq!(
            checks_on(&report, "double"),
            vec!["cdn_enabled", "double_iap"]
        );
        assert_eq!(checks_on(&report, "public-iap"), vec!["public_member"]);
        let member = report
            .findings
            .iter()
            .find(|f| f.check == "public_member")
            .expect("public_member");
        assert!(member
            .summary
            .starts_with("On the IAP policy of Cloud Run service us-central1/public-iap"));
    }

    #[test]
    fn frontends_oauth_clients_and_the_organization_follow_what_was_read() {
        let outside = Some(vec!["user:partner@other.org".to_string()]);
        let http_only = svc("http-only", |_| {});
        let https = svc("https", |_| {});
        let mut managed = svc("managed", |s| s.iap_enabled = true);
        managed.iap_members = outside.clone();
        managed.settings_client = Some(false);
        let mut custom = svc("custom", |s| s.iap_enabled = true);
        custom.iap_members = outside.clone();
        custom.settings_client = Some(true);
        // Settings not read: the client is unknown, so no finding.
        let mut unknown = svc("unknown", |s| s.iap_enabled = true);
        unknown.iap_members = outside.clone();
        let passthrough = svc("passthrough", |_| {});
        let lb_outside = svc("lb-outside", |_| {});
        let mut http_lb = lb("http-lb", true, &[&http_only]);
        http_lb.facts.https_frontend = Some(false);
        let mut internal = lb("internal", true, &[&passthrough]);
        internal.facts.scheme = "INTERNAL".into();
        let mut own_client = lb("own-client", true, &[&lb_outside]);
        own_client.iap_members = outside.clone();
        own_client.facts.oauth2_client_id = Some("cid".into());
        // The backend names its own client: settings saying otherwise do not matter.
        own_client.settings_client = Some(false);
        let mut backends = vec![lb("https-lb", true, &[&https]), http_lb, own_client];
        // Classic load balancers: no envoy_jwt_header to tell apart.
        backends
            .iter_mut()
            .for_each(|b| b.facts.scheme = "EXTERNAL".into());
        backends.push(internal);
        let mut facts = ProjectFacts {
            project: "p".into(),
            project_number: PN.into(),
            has_organization: Some(true),
            organization_domain: Some("example.com".into()),
            backends,
            services: vec![
                http_only,
                https,
                managed,
                custom,
                unknown,
                passthrough,
                lb_outside,
            ],
        };
        let report = evaluate(&facts);
        assert_eq!(checks_on(&report, "http-only"), vec!["no_https_frontend"]);
        assert!(checks_on(&report, "https").is_empty());
        assert_eq!(
            checks_on(&report, "managed"),
            vec!["managed_oauth_external"]
        );
        assert!(checks_on(&report, "custom").is_empty());
        assert!(checks_on(&report, "unknown").is_empty());
        assert_eq!(checks_on(&report, "passthrough"), vec!["passthrough_lb"]);
        assert!(checks_on(&report, "lb-outside").is_empty());
        let oauth = report
            .findings
            .iter()
            .find(|f| f.check == "managed_oauth_external")
            .expect("managed_oauth_external");
        assert!(oauth.summary.starts_with(
            "On the IAP policy of Cloud Run service us-central1/managed: The member \"user:partner@other.org\""
        ));

        // Without an organization: no_organization on direct IAP unless the settings name a
        // client, and no domain to judge members by.
        facts.has_organization = Some(false);
        facts.organization_domain = None;
        let report = evaluate(&facts);
        assert_eq!(checks_on(&report, "managed"), vec!["no_organization"]);
        assert_eq!(checks_on(&report, "unknown"), vec!["no_organization"]);
        assert!(checks_on(&report, "custom").is_empty());
    }

    #[test]
    fn settings_are_read_only_where_a_finding_hinges_on_them() {
        let inside = Some(vec!["group:staff@example.com".to_string()]);
        let outside = Some(vec!["user:partner@other.org".to_string()]);
        let domain = Some("example.com");
        assert!(settings_matter(outside.as_ref(), false, Some(true), domain));
        assert!(!settings_matter(inside.as_ref(), true, Some(true), domain));
        assert!(!settings_matter(outside.as_ref(), false, Some(true), None));
        assert!(settings_matter(None, true, Some(false), None));
        assert!(!settings_matter(None, false, Some(false), None));
        assert!(!settings_matter(None, true, None, None));
    }
}
