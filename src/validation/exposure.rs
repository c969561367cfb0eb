//! Audit-only rules: exposure of a Cloud Run service that no single resource sees, because it
//! depends on every path that reaches the service (its run.app URL and each load balancer backend
//! over a serverless NEG). The `iaprun_audit` data source applies them with the catalogue's checks;
//! resources cannot turn them off with `ignore_checks`, as no resource reports them.

use super::facts::{BackendFacts, RunServiceFacts};
use super::{Check, Finding};
use crate::framework::Severity;

/// The rules only the audit applies, described like the catalogue's checks.
pub const AUDIT_RULES: &[Check] = &[
    Check {
        name: "unprotected_path",
        severity: Severity::Error,
        catches: "A load balancer path without IAP to a Cloud Run service that IAP guards on another path.",
        consequence: "Whoever reaches the backend service without IAP reaches the Cloud Run service without signing in: IAP on the other path protects nothing.",
        source: "Cloud Run IAP documentation: IAP on a backend service guards only the traffic through that backend; Forseti's IAP scanner (retired) reported the same gap as alternate services reaching a protected backend without IAP.",
        fix: "Enable IAP on that backend service too (iaprun_backend_iap), remove the serverless NEG from it, or enable IAP on the Cloud Run service itself (iaprun_service_iap), which guards every path.",
    },
    Check {
        name: "no_iap",
        severity: Severity::Error,
        catches: "A Cloud Run service reachable from the internet with no IAP on any path and no invoker restriction.",
        consequence: "Anyone on the internet can call the service: allUsers/allAuthenticatedUsers hold roles/run.invoker (or invoker IAM is disabled) and nothing in front asks who the caller is.",
        source: "Cloud Run documentation: allUsers as roles/run.invoker or invokerIamDisabled makes a service public; ingress INGRESS_TRAFFIC_ALL accepts internet traffic on the run.app URL, and ALL or INTERNAL_LOAD_BALANCER accept external Application Load Balancers.",
        fix: "Put IAP in front (iaprun_service_iap), or remove allUsers/allAuthenticatedUsers from roles/run.invoker and turn invoker IAM back on, or restrict ingress (INGRESS_TRAFFIC_INTERNAL_ONLY). A service public by design can be filtered out of the check by name.",
    },
];

/// A backend service as findings name it: `web` (global) or `europe-west1/web` (regional).
pub fn backend_label(backend: &BackendFacts) -> String {
    match &backend.region {
        Some(region) => format!("{region}/{}", backend.name),
        None => backend.name.clone(),
    }
}

/// `unprotected_path`: the service has no IAP of its own, some backend reaching it enables IAP,
/// and another backend reaching it does not: that one is a way around IAP. Direct IAP guards every
/// path, so a service with direct IAP never has one. Reads: Run `iapEnabled`, the backend services'
/// `iap.enabled` and their serverless NEGs' `cloudRun.service`. Source: see [`AUDIT_RULES`].
pub fn unprotected_path(service: &RunServiceFacts, reaching: &[&BackendFacts]) -> Vec<Finding> {
    if service.iap_enabled {
        return vec![];
    }
    let guarded: Vec<String> = reaching
        .iter()
        .filter(|b| b.iap_enabled)
        .map(|b| backend_label(b))
        .collect();
    if guarded.is_empty() {
        return vec![];
    }
    reaching
        .iter()
        .filter(|b| !b.iap_enabled)
        .map(|b| {
            Finding::new(
                "unprotected_path",
                None,
                format!(
                    "Cloud Run service {} is protected by IAP on backend service {}, but backend service {} (loadBalancingScheme {}) reaches it too, with IAP off.",
                    service.label(),
                    guarded.join(", "),
                    backend_label(b),
                    b.scheme
                ),
            )
        })
        .collect()
}

#[cfg(test)]
mod unprotected_path_tests {
    use super::*;

    fn backend(name: &str, iap: bool) -> BackendFacts {
        BackendFacts {
            name: name.into(),
            scheme: "EXTERNAL_MANAGED".into(),
            iap_enabled: iap,
            ..Default::default()
        }
    }

    #[test]
    fn fires_on_each_path_without_iap_next_to_one_with_it() {
        let svc = RunServiceFacts {
            name: "hello".into(),
            location: "us-central1".into(),
            ..Default::default()
        };
        let (guarded, open) = (backend("web", true), backend("side", false));
        let found = unprotected_path(&svc, &[&guarded, &open]);
        assert_eq!(found.len(), 1);
        assert!(
            found[0]
                .detail
                .contains("backend service web, but backend service side"),
            "{}",
            found[0].detail
        );
        assert!(
            unprotected_path(&svc, &[&guarded, &backend("web2", true)]).is_empty(),
            "every path has IAP"
        );
        assert!(
            unprotected_path(&svc, &[&open]).is_empty(),
            "IAP guards no path: no_iap's business"
        );
        let direct = RunServiceFacts {
            iap_enabled: true,
            ..svc
        };
        assert!(
            unprotected_path(&direct, &[&guarded, &open]).is_empty(),
            "direct IAP guards every path"
        );
    }
}

/// `no_iap`: the service is reachable from the internet (its run.app URL with ingress ALL, or an
/// external Application Load Balancer with ingress ALL or INTERNAL_LOAD_BALANCER), no path has
/// IAP, and invocation is not restricted (public invoker or invoker IAM disabled). An unreadable
/// invoker policy is not a finding. Reads: Run `ingress`, `defaultUriDisabled`, `iapEnabled`,
/// `invokerIamDisabled`, the service's IAM policy, the backends' scheme and `iap.enabled`.
pub fn no_iap(service: &RunServiceFacts, reaching: &[&BackendFacts]) -> Vec<Finding> {
    if service.iap_enabled || reaching.iter().any(|b| b.iap_enabled) {
        return vec![];
    }
    let open = if service.invoker_iam_disabled {
        "has invoker IAM disabled (invokerIamDisabled = true)".to_string()
    } else {
        let public = service.public_invokers();
        if public.is_empty() {
            return vec![];
        }
        format!("grants roles/run.invoker to {}", public.join(" and "))
    };
    let all = service.ingress == "INGRESS_TRAFFIC_ALL";
    let mut paths = Vec::new();
    if all && !service.default_uri_disabled {
        paths.push("its run.app URL".to_string());
    }
    if all || service.ingress == "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER" {
        paths.extend(
            reaching
                .iter()
                .filter(|b| matches!(b.scheme.as_str(), "EXTERNAL" | "EXTERNAL_MANAGED"))
                .map(|b| format!("external backend service {}", backend_label(b))),
        );
    }
    if paths.is_empty() {
        return vec![];
    }
    vec![Finding::new(
        "no_iap",
        None,
        format!(
            "Cloud Run service {} {open}, has no IAP on any path, and is reachable from the internet through {} (ingress {}).",
            service.label(),
            paths.join(" and "),
            service.ingress
        ),
    )]
}

#[cfg(test)]
mod no_iap_tests {
    use super::*;

    fn open_service() -> RunServiceFacts {
        RunServiceFacts {
            name: "open".into(),
            location: "us-central1".into(),
            ingress: "INGRESS_TRAFFIC_ALL".into(),
            invoker_members: Some(vec!["allUsers".into()]),
            ..Default::default()
        }
    }

    fn lb(scheme: &str, iap: bool) -> BackendFacts {
        BackendFacts {
            name: "web".into(),
            scheme: scheme.into(),
            iap_enabled: iap,
            ..Default::default()
        }
    }

    #[test]
    fn fires_on_a_public_service_open_to_the_internet() {
        let found = no_iap(&open_service(), &[]);
        assert_eq!(found.len(), 1);
        assert!(found[0].detail.contains("allUsers"), "{}", found[0].detail);
        assert!(found[0].detail.contains("run.app URL"));
        let mut disabled = open_service();
        disabled.invoker_members = Some(vec![]);
        disabled.invoker_iam_disabled = true;
        assert!(no_iap(&disabled, &[])[0]
            .detail
            .contains("invokerIamDisabled"));
    }

    #[test]
    fn an_external_load_balancer_is_a_path_when_ingress_allows_it() {
        let mut svc = open_service();
        svc.ingress = "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER".into();
        assert!(no_iap(&svc, &[]).is_empty(), "no run.app, no load balancer");
        let external = lb("EXTERNAL_MANAGED", false);
        assert!(no_iap(&svc, &[&external])[0]
            .detail
            .contains("external backend service web"));
        assert!(
            no_iap(&svc, &[&lb("INTERNAL_MANAGED", false)]).is_empty(),
            "an internal load balancer is not the internet"
        );
    }

    #[test]
    fn near_misses_stay_silent() {
        let mut restricted = open_service();
        restricted.invoker_members = Some(vec!["user:a@example.com".into()]);
        assert!(no_iap(&restricted, &[]).is_empty(), "invoker restricted");
        let mut unknown = open_service();
        unknown.invoker_members = None;
        assert!(no_iap(&unknown, &[]).is_empty(), "unknown is not a finding");
        let mut internal = open_service();
        internal.ingress = "INGRESS_TRAFFIC_INTERNAL_ONLY".into();
        assert!(no_iap(&internal, &[]).is_empty(), "no internet ingress");
        let mut no_url = open_service();
        no_url.default_uri_disabled = true;
        assert!(no_iap(&no_url, &[]).is_empty(), "run.app URL disabled");
        let mut direct = open_service();
        direct.iap_enabled = true;
        assert!(no_iap(&direct, &[]).is_empty(), "direct IAP");
        assert!(
            no_iap(&open_service(), &[&lb("EXTERNAL", true)]).is_empty(),
            "IAP on the load balancer: run_app_bypass's business"
        );
    }
}

#[cfg(test)]
mod audit_rules_tests {
    use super::*;
    use crate::framework::AttributePath;
    use crate::validation::{check, ignore_checks_known, CATALOGUE};

    #[test]
    fn audit_rules_explain_themselves_but_are_not_ignorable_by_resources() {
        for rule in AUDIT_RULES {
            assert!(!CATALOGUE.iter().any(|c| c.name == rule.name));
            assert_eq!(check(rule.name), Some(rule));
            let f = Finding::new(rule.name, None, "x");
            assert_eq!(f.severity(), Severity::Error);
            assert!(f.explanation().contains("Fix: "), "{}", rule.name);
        }
        let names: std::collections::BTreeSet<String> = ["no_iap".to_string()].into();
        let diags = ignore_checks_known(&names);
        assert_eq!(diags.len(), 1);
        assert_eq!(
            diags.iter().next().and_then(|d| d.path.clone()),
            Some(AttributePath::attr("ignore_checks").then_key("no_iap"))
        );
    }
}
