//! Checks on a load balancer backend service with IAP and on what fronts it.

use super::facts::{BackendFacts, RunServiceFacts};
use super::service;
use super::timing::Judged;
use super::Finding;
use crate::framework::{Attr, AttributePath, Diagnostics};

/// Checks of the custom OAuth client: id and secret together, one kind of secret, no empty id.
pub fn oauth_client_config<N>(
    id: &Attr<String>,
    secret: &Attr<String>,
    (secret_wo, version): (&Attr<String>, &Attr<N>),
) -> Diagnostics {
    let mut diags = Diagnostics::new();
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
    if !version.is_null() && secret_wo.is_null() {
        diags.attribute_error(
            AttributePath::attr("oauth2_client_secret_wo_version"),
            "Version without a write-only secret",
            "oauth2_client_secret_wo_version only has an effect together with oauth2_client_secret_wo.",
        );
    }
    diags
}

fn at_backend() -> Option<AttributePath> {
    Some(AttributePath::attr("backend_service"))
}

/// `cdn_enabled`: Cloud CDN on the backend IAP protects. IAP docs: "IAP is incompatible
/// with Cloud CDN." Reads: `enableCDN`.
pub fn cdn_enabled(backend: &BackendFacts) -> Vec<Finding> {
    if !backend.cdn_enabled {
        return vec![];
    }
    vec![Finding::new(
        "cdn_enabled",
        at_backend(),
        format!(
            "Backend service {} has Cloud CDN enabled (enableCDN = true).",
            backend.name
        ),
    )]
}

#[cfg(test)]
mod cdn_enabled_tests {
    use super::fixtures::backend;
    use super::*;

    #[test]
    fn fires_only_with_cdn() {
        let mut b = backend("EXTERNAL_MANAGED", "HTTPS");
        assert!(cdn_enabled(&b).is_empty());
        b.cdn_enabled = true;
        let f = cdn_enabled(&b);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].path, Some(AttributePath::attr("backend_service")));
        assert!(f[0].detail.contains("web"));
    }
}

/// `http2_classic_lb`: end-to-end HTTP/2 behind a classic (EXTERNAL) load balancer with IAP ends in
/// an infinite redirect loop (seed 001; current docs limit it to the classic load balancer). Reads:
/// `loadBalancingScheme`, `protocol`, the Cloud Run services' port names.
pub fn http2_classic_lb(backend: &BackendFacts) -> Vec<Finding> {
    if backend.scheme != "EXTERNAL" {
        return vec![];
    }
    let mut why = Vec::new();
    if matches!(backend.protocol.as_str(), "HTTP2" | "H2C") {
        why.push(format!("its protocol is {}", backend.protocol));
    }
    for s in backend.services().filter(|s| s.h2c) {
        why.push(format!("Cloud Run service {} serves h2c", s.label()));
    }
    if why.is_empty() {
        return vec![];
    }
    vec![Finding::new(
        "http2_classic_lb",
        at_backend(),
        format!("Backend service {} is on a classic load balancer (loadBalancingScheme EXTERNAL) and {}.", backend.name, why.join(", and ")),
    )]
}

#[cfg(test)]
mod http2_classic_lb_tests {
    use super::fixtures::{backend, svc, with_service};
    use super::*;

    #[test]
    fn loops_only_behind_the_classic_lb() {
        assert_eq!(http2_classic_lb(&backend("EXTERNAL", "HTTP2")).len(), 1);
        assert!(http2_classic_lb(&backend("EXTERNAL_MANAGED", "HTTP2")).is_empty());
        assert!(http2_classic_lb(&backend("EXTERNAL", "HTTPS")).is_empty());
        let mut s = svc();
        s.h2c = true;
        let f = http2_classic_lb(&with_service(backend("EXTERNAL", "HTTPS"), s.clone()));
        assert!(f[0].detail.contains("us-central1/hello serves h2c"));
        assert!(
            http2_classic_lb(&with_service(backend("EXTERNAL_MANAGED", "HTTPS"), s)).is_empty()
        );
    }
}

/// `envoy_jwt_header`: older IAP docs say Envoy-based (EXTERNAL_MANAGED) load balancers do
/// not pass `X-Goog-IAP-JWT-Assertion`. Current docs no longer list it: a warning. Reads:
/// `loadBalancingScheme`.
pub fn envoy_jwt_header(backend: &BackendFacts) -> Vec<Finding> {
    if backend.scheme != "EXTERNAL_MANAGED" {
        return vec![];
    }
    vec![Finding::new(
        "envoy_jwt_header",
        at_backend(),
        format!("Backend service {} is on an Envoy-based load balancer (loadBalancingScheme EXTERNAL_MANAGED).", backend.name),
    )]
}

#[cfg(test)]
mod envoy_jwt_header_tests {
    use super::fixtures::backend;
    use super::*;

    #[test]
    fn follows_the_scheme() {
        assert_eq!(
            envoy_jwt_header(&backend("EXTERNAL_MANAGED", "HTTPS")).len(),
            1
        );
        assert!(envoy_jwt_header(&backend("EXTERNAL", "HTTPS")).is_empty());
        assert!(envoy_jwt_header(&backend("INTERNAL_MANAGED", "HTTPS")).is_empty());
    }
}

/// `passthrough_lb`: IAP on a scheme or protocol it does not support. Compute API: "IAP is not
/// available for internal and external passthrough Network Load Balancers." Reads:
/// `loadBalancingScheme`, `protocol`.
pub fn passthrough_lb(backend: &BackendFacts) -> Vec<Finding> {
    let bad_scheme = matches!(
        backend.scheme.as_str(),
        "INTERNAL" | "EXTERNAL_PASSTHROUGH" | "INTERNAL_SELF_MANAGED"
    );
    let bad_protocol = matches!(
        backend.protocol.as_str(),
        "TCP" | "SSL" | "UDP" | "UNSPECIFIED"
    );
    if !bad_scheme && !bad_protocol {
        return vec![];
    }
    vec![Finding::new(
        "passthrough_lb",
        at_backend(),
        format!(
            "Backend service {} has loadBalancingScheme {} and protocol {}; IAP only works on Application Load Balancers (HTTP, HTTPS, HTTP2).",
            backend.name, backend.scheme, backend.protocol
        ),
    )]
}

#[cfg(test)]
mod passthrough_lb_tests {
    use super::fixtures::backend;
    use super::*;

    #[test]
    fn fires_on_passthrough_schemes_and_non_http_protocols() {
        assert_eq!(passthrough_lb(&backend("INTERNAL", "TCP")).len(), 1);
        assert_eq!(
            passthrough_lb(&backend("EXTERNAL_PASSTHROUGH", "HTTP")).len(),
            1
        );
        assert_eq!(passthrough_lb(&backend("EXTERNAL_MANAGED", "TCP")).len(), 1);
        assert!(passthrough_lb(&backend("INTERNAL_MANAGED", "HTTP")).is_empty());
        assert!(passthrough_lb(&backend("EXTERNAL", "HTTP2")).is_empty());
    }
}

/// `run_app_bypass`: load-balancer IAP while a Cloud Run service behind it accepts all ingress with
/// its run.app URL enabled: anyone can skip IAP through run.app (seed 000). Reads: Run `ingress`,
/// `defaultUriDisabled`.
pub fn run_app_bypass(backend: &BackendFacts) -> Vec<Finding> {
    backend
        .services()
        .filter(|s| s.ingress == "INGRESS_TRAFFIC_ALL" && !s.default_uri_disabled && !s.iap_enabled)
        .map(|s| {
            Finding::new(
                "run_app_bypass",
                at_backend(),
                format!(
                    "Cloud Run service {} behind backend service {} accepts all ingress (INGRESS_TRAFFIC_ALL) and its run.app URL is enabled.",
                    s.label(),
                    backend.name
                ),
            )
        })
        .collect()
}

#[cfg(test)]
mod run_app_bypass_tests {
    use super::fixtures::{backend, svc, with_service};
    use super::*;

    #[test]
    fn needs_all_ingress_and_the_default_url() {
        let b = backend("EXTERNAL_MANAGED", "HTTPS");
        assert!(run_app_bypass(&with_service(b.clone(), svc())).is_empty());
        let mut open = svc();
        open.ingress = "INGRESS_TRAFFIC_ALL".into();
        let f = run_app_bypass(&with_service(b.clone(), open.clone()));
        assert_eq!(f.len(), 1);
        assert!(f[0].detail.contains("us-central1/hello"));
        open.default_uri_disabled = true;
        assert!(run_app_bypass(&with_service(b, open)).is_empty());
    }
}

/// `neg_mismatch`: a serverless NEG points at a Cloud Run service that does not exist in the NEG's
/// region. Compute API: "Cloud Run service must be in the same project and located in the same region
/// as the Serverless NEG." Reads: NEG `cloudRun.service`, `region`; Run `services.get`.
pub fn neg_mismatch(backend: &BackendFacts) -> Vec<Finding> {
    backend
        .negs
        .iter()
        .filter_map(|n| match (&n.run_service, &n.service) {
            (Some(name), None) => Some(Finding::new(
                "neg_mismatch",
                at_backend(),
                format!(
                    "Serverless NEG {} (region {}) behind backend service {} points at Cloud Run service {name:?}, which does not exist in {}.",
                    n.name, n.region, backend.name, n.region
                ),
            )),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod neg_mismatch_tests {
    use super::fixtures::{backend, svc, with_service};
    use super::*;
    use crate::validation::facts::NegFacts;

    #[test]
    fn fires_on_a_neg_whose_service_is_not_in_its_region() {
        let mut b = backend("EXTERNAL_MANAGED", "HTTPS");
        b.negs.push(NegFacts {
            name: "neg".into(),
            region: "europe-west1".into(),
            run_service: Some("hello".into()),
            service: None,
            ..Default::default()
        });
        assert!(neg_mismatch(&b)[0]
            .detail
            .contains("does not exist in europe-west1"));
        assert!(
            neg_mismatch(&with_service(backend("EXTERNAL_MANAGED", "HTTPS"), svc())).is_empty()
        );
        let masked = NegFacts {
            name: "mask".into(),
            region: "us-central1".into(),
            url_mask: Some("<service>.example.com".into()),
            ..Default::default()
        };
        let mut b = backend("EXTERNAL_MANAGED", "HTTPS");
        b.negs.push(masked);
        assert!(neg_mismatch(&b).is_empty(), "a URL mask names no service");
    }
}

/// `no_https_frontend`: no HTTPS forwarding rule reaches the backend: IAP needs an HTTPS frontend
/// (seed 001). Reads: forwarding rules → target HTTPS proxies → URL maps.
pub fn no_https_frontend(backend: &BackendFacts) -> Vec<Finding> {
    if backend.https_frontend != Some(false) {
        return vec![];
    }
    vec![Finding::new(
        "no_https_frontend",
        at_backend(),
        format!("No HTTPS forwarding rule routes to backend service {} (through a target HTTPS proxy and its URL map).", backend.name),
    )]
}

#[cfg(test)]
mod no_https_frontend_tests {
    use super::fixtures::backend;
    use super::*;

    #[test]
    fn fires_only_when_no_https_rule_is_known_to_reach_the_backend() {
        let mut b = backend("EXTERNAL_MANAGED", "HTTPS");
        assert!(no_https_frontend(&b).is_empty());
        b.https_frontend = Some(false);
        assert_eq!(no_https_frontend(&b).len(), 1);
        b.https_frontend = None;
        assert!(
            no_https_frontend(&b).is_empty(),
            "undetermined is not a finding"
        );
    }
}

/// Backend facts for the tests of every check in this file.
#[cfg(test)]
mod fixtures {
    use crate::validation::facts::{BackendFacts, NegFacts, RunServiceFacts};

    pub fn backend(scheme: &str, protocol: &str) -> BackendFacts {
        BackendFacts {
            name: "web".into(),
            scheme: scheme.into(),
            protocol: protocol.into(),
            https_frontend: Some(true),
            ..Default::default()
        }
    }

    pub fn with_service(mut b: BackendFacts, s: RunServiceFacts) -> BackendFacts {
        b.negs.push(NegFacts {
            name: "neg".into(),
            region: s.location.clone(),
            run_service: Some(s.name.clone()),
            service: Some(s),
            ..Default::default()
        });
        b
    }

    pub fn svc() -> RunServiceFacts {
        RunServiceFacts {
            name: "hello".into(),
            location: "us-central1".into(),
            ingress: "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER".into(),
            ..Default::default()
        }
    }
}

/// The key of a Cloud Run service in the record of IAP planned in this run.
pub fn service_key(project_number: &str, s: &RunServiceFacts) -> String {
    format!("{project_number}/{}/{}", s.location, s.name)
}

/// The key of a backend service in the record of IAP planned in this run:
/// `{project_number}/{region or "global"}/{name}`; its label drops the number.
pub fn backend_key(project_number: &str, region: Option<&str>, name: &str) -> String {
    format!("{project_number}/{}/{name}", region.unwrap_or("global"))
}

/// How a backend's key reads in a finding: `global/web`, `us-central1/web`.
pub fn backend_label(key: &str) -> &str {
    key.split_once('/').map_or(key, |(_, label)| label)
}

#[cfg(test)]
mod key_tests {
    use super::*;

    #[test]
    fn keys_carry_the_project_number_and_labels_drop_it() {
        let global = backend_key("42", None, "web");
        assert_eq!(global, "42/global/web");
        assert_eq!(backend_label(&global), "global/web");
        let regional = backend_key("42", Some("us-central1"), "web");
        assert_eq!(backend_label(&regional), "us-central1/web");
        let s = fixtures::svc();
        assert_eq!(service_key("42", &s), "42/us-central1/hello");
    }
}

/// Every check of a backend service with IAP and the services behind it; `direct` tells what this
/// run does to direct IAP on each of those services; `project_invokers` the project's own invoker
/// members when read.
pub fn backend_iap(
    facts: &BackendFacts,
    project_number: &str,
    grant: Option<bool>,
    direct: impl Fn(&RunServiceFacts) -> service::Layer,
    project_invokers: Option<&[String]>,
) -> Judged {
    let mut findings = passthrough_lb(facts);
    findings.extend(cdn_enabled(facts));
    findings.extend(http2_classic_lb(facts));
    findings.extend(envoy_jwt_header(facts));
    findings.extend(run_app_bypass(facts));
    findings.extend(neg_mismatch(facts));
    findings.extend(no_https_frontend(facts));
    let mut judged = service::double_iap(facts, direct, AttributePath::attr("backend_service"));
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
                project_invokers,
            ));
        }
        let not_run = service::invoker_checks_not_run(s, project_number, grant, project_invokers);
        judged.not_run.extend(not_run);
    }
    judged.usual.extend(findings);
    judged
}
