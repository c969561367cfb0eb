//! Every known limitation of IAP in front of Cloud Run, as a named check.
//!
//! [`CATALOGUE`] lists each check once: name, default severity, what it catches and its source (a
//! public document a user can look up). The submodules hold the checks, grouped by the object they
//! inspect (`members`: access-binding members; `service`: a Cloud Run service; `backend`: a load
//! balancer backend service and what fronts it). Each check is a function over plain facts that
//! returns [`Finding`]s, with its tests right below it. Resources gather the facts through the APIs
//! and call these functions; none re-implements a rule. Values unknown at plan are skipped;
//! Terraform plans the resource again at apply once they are known, and the checks run then, before
//! anything is changed.

use std::collections::BTreeSet;

use crate::framework::{Attr, AttributePath, Diagnostic, Diagnostics, Severity};

/// One entry of the catalogue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Check {
    pub name: &'static str,
    pub severity: Severity,
    /// What it catches, one line.
    pub catches: &'static str,
    /// What breaks at run time when the setup is left as it is.
    pub consequence: &'static str,
    /// Where the limitation is documented.
    pub source: &'static str,
    /// How to fix the setup.
    pub fix: &'static str,
}

/// Every check, in the order of DESIGN.md section 5.
pub const CATALOGUE: &[Check] = &[
    Check {
        name: "double_iap",
        severity: Severity::Error,
        catches: "IAP enabled on both the Cloud Run service and a load balancer backend service in front of it.",
        consequence: "Google does not support this combination: users face two IAP checks with different OAuth clients and sign-in may fail or loop.",
        source: "Cloud Run IAP documentation: \"You cannot configure IAP on both the load balancer and the Cloud Run service.\"",
        fix: "Choose one: remove iaprun_service_iap for this service, or disable IAP on the backend service. Moving from one to the other takes one run: remove the one resource and add the other in the same edit.",
    },
    Check {
        name: "http2_classic_lb",
        severity: Severity::Error,
        catches: "End-to-end HTTP/2 (an h2c container port, or backend protocol HTTP2/H2C) behind a classic (EXTERNAL) load balancer with IAP.",
        consequence: "Requests end in an infinite redirect loop.",
        source: "IAP for Cloud Run documentation (cloud.google.com/iap/docs/enabling-cloud-run), an earlier version: \"Cloud Run services with HTTP/2 enabled encounter an infinite redirect loop upon request when secured with IAP.\" Current docs limit this to the classic Application Load Balancer and recommend the global external Application Load Balancer.",
        fix: "Use the global external Application Load Balancer (loadBalancingScheme EXTERNAL_MANAGED), or serve HTTP/1 (port name http1).",
    },
    Check {
        name: "http2_direct",
        severity: Severity::Warning,
        catches: "An h2c (end-to-end HTTP/2) port on a Cloud Run service with IAP enabled directly.",
        consequence: "Older IAP documentation reports an infinite redirect loop for any HTTP/2 service behind IAP; current documentation only names the classic load balancer.",
        source: "IAP for Cloud Run documentation (cloud.google.com/iap/docs/enabling-cloud-run): the HTTP/2 limitation, in its earlier and current versions.",
        fix: "Verify the service in a browser after apply, or serve HTTP/1 (port name http1). Ignore with ignore_checks = [\"http2_direct\"] once verified.",
    },
    Check {
        name: "envoy_jwt_header",
        severity: Severity::Warning,
        catches: "IAP on an Envoy-based (EXTERNAL_MANAGED) load balancer backend.",
        consequence: "Older IAP documentation says the X-Goog-IAP-JWT-Assertion header is missing behind Envoy-based load balancers, so apps that verify it reject every request. Current documentation no longer lists this.",
        source: "IAP for Cloud Run documentation (cloud.google.com/iap/docs/enabling-cloud-run), an earlier version: \"Cloud Run services served by a Envoy based load balancer mode ... do not have the X-Goog-IAP-JWT-Assertion IAP header.\"",
        fix: "If the app verifies X-Goog-IAP-JWT-Assertion, test that it arrives; otherwise ignore with ignore_checks = [\"envoy_jwt_header\"].",
    },
    Check {
        name: "cdn_enabled",
        severity: Severity::Error,
        catches: "Cloud CDN enabled on the backend service that IAP protects.",
        consequence: "Google documents IAP as incompatible with Cloud CDN: responses cached at the edge can be served without passing IAP.",
        source: "IAP for Cloud Run documentation (cloud.google.com/iap/docs/enabling-cloud-run): \"IAP is incompatible with Cloud CDN.\" The Google provider accepts the combination without a check.",
        fix: "Disable Cloud CDN (enableCDN = false) on this backend service, or serve cacheable content from another backend.",
    },
    Check {
        name: "run_app_bypass",
        severity: Severity::Error,
        catches: "Load-balancer IAP while the Cloud Run service accepts all ingress and its default run.app URL is enabled.",
        consequence: "Anyone can skip IAP by calling the service's run.app URL directly.",
        source: "IAP for Cloud Run documentation (cloud.google.com/iap/docs/enabling-cloud-run): \"To prevent traffic from routing through a Cloud Run service's default run.app URL, disable the default URL. Otherwise, configure your ingress settings.\"",
        fix: "Set the service's ingress to INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER or disable the default URL (default_uri_disabled = true), or use iaprun_service_iap (direct IAP protects every path).",
    },
    Check {
        name: "public_invoker",
        severity: Severity::Warning,
        catches: "allUsers or allAuthenticatedUsers holds roles/run.invoker, or invoker IAM is disabled, on a service behind IAP.",
        consequence: "Clients inside the network (or through run.app) can call the service without passing IAP. Older IAP docs required allUsers as invoker; current docs grant the IAP service agent instead.",
        source: "IAP for Cloud Run documentation (cloud.google.com/iap/docs/enabling-cloud-run): an earlier version required the allUsers invoker; the current one says to grant roles/run.invoker to service-PROJECT_NUMBER@gcp-sa-iap.iam.gserviceaccount.com.",
        fix: "Remove allUsers/allAuthenticatedUsers from roles/run.invoker (and turn invoker IAM back on); keep grant_iap_invoker = true.",
    },
    Check {
        name: "missing_invoker",
        severity: Severity::Error,
        catches: "The IAP service agent lacks roles/run.invoker on the Cloud Run service and grant_iap_invoker is false.",
        consequence: "Users who pass IAP get 403 \"Your client does not have permission to get URL from this server\".",
        source: "IAP for Cloud Run documentation (cloud.google.com/iap/docs/enabling-cloud-run): grant the invoker permission to service-[PROJECT-NUMBER]@gcp-sa-iap.iam.gserviceaccount.com; troubleshooting entry \"Your client does not have permission to get URL\".",
        fix: "Set grant_iap_invoker = true, or grant roles/run.invoker to the IAP service agent yourself.",
    },
    Check {
        name: "no_https_frontend",
        severity: Severity::Warning,
        catches: "No HTTPS forwarding rule reaches the backend service.",
        consequence: "IAP only works over HTTPS: without an HTTPS frontend users cannot sign in.",
        source: "IAP for Cloud Run documentation (cloud.google.com/iap/docs/enabling-cloud-run), an earlier version: \"At least one protocol in the load balancer frontend configuration must be HTTPS.\"",
        fix: "Add a target HTTPS proxy and forwarding rule whose URL map routes to this backend service.",
    },
    Check {
        name: "passthrough_lb",
        severity: Severity::Error,
        catches: "IAP on a backend service whose scheme or protocol IAP does not support (INTERNAL, EXTERNAL_PASSTHROUGH, TCP, SSL, UDP).",
        consequence: "Google rejects IAP on passthrough Network Load Balancers; the apply fails or IAP never applies.",
        source: "Compute API BackendServiceIAP: \"IAP is not available for internal and external passthrough Network Load Balancers.\"",
        fix: "Put the Cloud Run service behind an Application Load Balancer (EXTERNAL, EXTERNAL_MANAGED or INTERNAL_MANAGED, protocol HTTP/HTTPS).",
    },
    Check {
        name: "neg_mismatch",
        severity: Severity::Error,
        catches: "A serverless NEG behind the backend points at a Cloud Run service that does not exist or lives in another region.",
        consequence: "The load balancer answers 5xx for that backend; IAP protects nothing that exists.",
        source: "Compute API NetworkEndpointGroup.cloudRun: \"Cloud Run service must be in the same project and located in the same region as the Serverless NEG.\"",
        fix: "Point the NEG at an existing service in the NEG's region.",
    },
    Check {
        name: "managed_oauth_external",
        severity: Severity::Warning,
        catches: "The Google-managed OAuth client is used while members are outside the project's organization.",
        consequence: "With the Google-managed OAuth client only users within the organization can sign in; outside members are refused.",
        source: "IAP for Cloud Run documentation (cloud.google.com/iap/docs/enabling-cloud-run): \"IAP uses a Google-managed OAuth client ... Only users within the organization can access the IAP-enabled application.\" The organization's domain comes from Resource Manager (organizations.get displayName).",
        fix: "Give the IAP resource a custom OAuth client: iaprun_iap_settings with access_settings { oauth_settings { client_id, client_secret_wo } } (or oauth2_client_id on iaprun_backend_iap). A binding whose resource is iaprun_iap_settings.NAME.resource is planned after the settings and sees the planned client.",
    },
    Check {
        name: "public_member",
        severity: Severity::Error,
        catches: "allUsers or allAuthenticatedUsers given access through IAP.",
        consequence: "The application becomes public (allUsers) or open to any Google account (allAuthenticatedUsers): IAP protects nothing.",
        source: "IAP access control documentation: roles/iap.httpsResourceAccessor grants access to the app.",
        fix: "Grant access to users, groups or domains instead.",
    },
    Check {
        name: "member_format",
        severity: Severity::Error,
        catches: "A malformed member, or a mixed-case email that Google stores in lower case.",
        consequence: "Google rejects the policy, or stores the member in lower case so that every plan shows a change.",
        source: "IAM Policy reference: members are user:, group:, serviceAccount:, domain:, principal:// or principalSet:// strings; emails are compared case-insensitively.",
        fix: "Write members as TYPE:lower-case-email (for example user:alice@example.com).",
    },
    Check {
        name: "target_missing",
        severity: Severity::Error,
        catches: "The Cloud Run service or backend service does not exist.",
        consequence: "The apply fails with NOT_FOUND.",
        source: "Cloud Run Admin API and Compute API: GET on a missing resource answers 404.",
        fix: "Create the service first (and reference it, so Terraform orders the two), or fix the name, location and project.",
    },
    Check {
        name: "iap_api_disabled",
        severity: Severity::Error,
        catches: "iap.googleapis.com is not enabled in the project.",
        consequence: "Every IAP call fails with 403 SERVICE_DISABLED.",
        source: "IAP documentation: enable the IAP API before configuring IAP.",
        fix: "Enable it (google_project_service with service = \"iap.googleapis.com\", or gcloud services enable iap.googleapis.com).",
    },
    Check {
        name: "no_organization",
        severity: Severity::Warning,
        catches: "Direct IAP on a Cloud Run service in a project without an organization.",
        consequence: "Older Cloud Run IAP documentation required the project to be in an organization; newer documentation adds a no-organization mode that needs a custom OAuth setup.",
        source: "Cloud Run IAP documentation (preview era): the project must belong to an organization.",
        fix: "Move the project into an organization, or give the service a custom OAuth client with iaprun_iap_settings (resource = this resource's iap_resource_name, access_settings { oauth_settings { client_id, client_secret_wo } }).",
    },
    Check {
        name: "binding_conflict",
        severity: Severity::Error,
        catches: "Two access resources in one configuration claim the same (resource, role, condition) binding authoritatively, or an iaprun_access_member overlaps an iaprun_access_binding.",
        consequence: "They undo each other on every apply: a binding sets the member list to its own, removing the other's members, and destroying a binding removes every member of its role and condition.",
        source: "The google provider's IAP IAM pages: an _iam_binding works with an _iam_member only if they do not grant the same role; the two (or two _iam_binding) on one role fight (terraform-provider-google issues #2449, #17329, #28785), and that provider does not detect it. Only resources planned in the same run are compared, and only once their resource, role and condition are known.",
        fix: "Keep one iaprun_access_binding per (resource, role, condition), or use only iaprun_access_member resources (one per member) where several modules grant the same role.",
    },
];

/// The catalogue entry of a check name (the audit-only rules included).
pub fn check(name: &str) -> Option<&'static Check> {
    CATALOGUE
        .iter()
        .chain(exposure::AUDIT_RULES)
        .find(|c| c.name == name)
}

/// One problem a check found, before `ignore_checks` and severity are applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub check: &'static str,
    /// The attribute at fault, if one is.
    pub path: Option<AttributePath>,
    /// What was inspected and what is wrong with it, specific to this config.
    pub detail: String,
}

impl Finding {
    pub fn new(
        check: &'static str,
        path: Option<AttributePath>,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            check,
            path,
            detail: detail.into(),
        }
    }

    /// The check's severity (an error for a name outside the catalogue).
    pub fn severity(&self) -> Severity {
        check(self.check).map_or(Severity::Error, |c| c.severity)
    }

    /// What breaks, the fix and the source, from the catalogue ("" for an unknown check).
    pub fn explanation(&self) -> String {
        check(self.check).map_or_else(String::new, |c| {
            format!(
                "What breaks: {}\nFix: {}\nSource: {}",
                c.consequence, c.fix, c.source
            )
        })
    }

    /// The diagnostic Terraform shows: summary naming the check, detail with cause, consequence and fix.
    pub fn to_diagnostic(&self) -> Diagnostic {
        let entry = check(self.check);
        let severity = self.severity();
        let summary = match entry {
            Some(c) => format!("{}: {}", c.name, c.catches.trim_end_matches('.')),
            None => self.check.to_string(),
        };
        let mut detail = self.detail.clone();
        if let Some(c) = entry {
            detail.push_str(&format!(
                "\n\n{}\nTo accept this risk, add \"{}\" to ignore_checks.",
                self.explanation(),
                c.name
            ));
        }
        Diagnostic {
            severity,
            summary,
            detail,
            path: self.path.clone(),
        }
    }
}

/// Turns findings into diagnostics, dropping those whose check is in `ignore`.
pub fn report(
    findings: impl IntoIterator<Item = Finding>,
    ignore: &BTreeSet<String>,
) -> Diagnostics {
    findings
        .into_iter()
        .filter(|f| !ignore.contains(f.check))
        .map(|f| f.to_diagnostic())
        .collect()
}

/// `ignore_checks` may only name checks of the catalogue.
pub fn ignore_checks_known(names: &BTreeSet<String>) -> Diagnostics {
    let mut diags = Diagnostics::new();
    for name in names {
        if !CATALOGUE.iter().any(|c| c.name == *name) {
            let known: Vec<&str> = CATALOGUE.iter().map(|c| c.name).collect();
            diags.attribute_error(
                AttributePath::attr("ignore_checks").then_key(name),
                "Unknown check name",
                format!(
                    "{name:?} is not a check of this provider. Known checks: {}.",
                    known.join(", ")
                ),
            );
        }
    }
    diags
}

/// The check names `ignore_checks` turns off (none while unknown).
pub fn ignored(ignore_checks: &Attr<BTreeSet<String>>) -> BTreeSet<String> {
    ignore_checks.get().cloned().unwrap_or_default()
}

/// Checks shared by every resource: `ignore_checks` names and a valid `project`.
pub fn common_config(
    project: &Attr<String>,
    ignore_checks: &Attr<BTreeSet<String>>,
) -> Diagnostics {
    let mut diags = ignore_checks_known(&ignored(ignore_checks));
    if let Some(p) = project.get().filter(|p| !crate::names::is_project(p)) {
        diags.attribute_error(
            AttributePath::attr("project"),
            "Invalid project",
            format!("{p:?} is not a project id or number: a project id has 6 to 30 lower-case letters, digits or hyphens and starts with a letter."),
        );
    }
    diags
}

#[cfg(test)]
mod catalogue_tests {
    use super::*;

    #[test]
    fn names_are_unique_and_documented() {
        let names: BTreeSet<&str> = CATALOGUE.iter().map(|c| c.name).collect();
        assert_eq!(names.len(), CATALOGUE.len());
        assert_eq!(CATALOGUE.len(), 18);
        for c in CATALOGUE {
            assert!(
                !c.catches.is_empty() && !c.source.is_empty() && !c.fix.is_empty(),
                "{}",
                c.name
            );
        }
    }

    /// The source reaches users in every diagnostic and in the audit's findings: it must name a
    /// document they can find, not one of the project's own research notes.
    #[test]
    fn sources_name_public_documents() {
        for c in CATALOGUE {
            for internal in ["Seed 0", "research/", ".md"] {
                assert!(
                    !c.source.contains(internal),
                    "{}: source cites {internal:?}: {}",
                    c.name,
                    c.source
                );
            }
        }
    }

    #[test]
    fn unknown_ignore_names_are_errors_on_the_element() {
        let config: BTreeSet<String> = ["cdn_enabled", "no_such_check"].map(String::from).into();
        let diags = ignore_checks_known(&config);
        assert_eq!(diags.len(), 1);
        let d = diags.iter().next().expect("one diagnostic");
        assert_eq!(
            d.path,
            Some(AttributePath::attr("ignore_checks").then_key("no_such_check"))
        );
        assert!(d.detail.contains("cdn_enabled"));
    }

    #[test]
    fn severities_follow_the_design_table() {
        let warnings = [
            "http2_direct",
            "envoy_jwt_header",
            "public_invoker",
            "no_https_frontend",
            "managed_oauth_external",
            "no_organization",
        ];
        for c in CATALOGUE {
            let expected = if warnings.contains(&c.name) {
                Severity::Warning
            } else {
                Severity::Error
            };
            assert_eq!(c.severity, expected, "{}", c.name);
        }
    }

    #[test]
    fn a_diagnostic_names_the_check_and_says_what_breaks_and_the_fix() {
        let f = Finding::new(
            "missing_invoker",
            Some(AttributePath::attr("grant_iap_invoker")),
            "The agent lacks the role on Cloud Run service us-central1/hello.",
        );
        let d = f.to_diagnostic();
        assert_eq!(d.severity, Severity::Error);
        assert!(d.summary.starts_with("missing_invoker: "), "{}", d.summary);
        assert!(d
            .detail
            .starts_with("The agent lacks the role on Cloud Run service us-central1/hello."));
        assert!(d
            .detail
            .contains("Your client does not have permission to get URL"));
        assert!(d.detail.contains("Fix: Set grant_iap_invoker = true"));
        assert!(d.detail.contains("ignore_checks"));
        assert_eq!(d.path, Some(AttributePath::attr("grant_iap_invoker")));
    }

    #[test]
    fn ignored_findings_are_dropped() {
        let f = Finding::new("public_member", None, "x");
        assert_eq!(report([f.clone()], &BTreeSet::new()).len(), 1);
        assert!(report([f], &BTreeSet::from(["public_member".to_string()])).is_empty());
    }
}

mod access;
pub mod audit;
pub mod backend;
pub mod exposure;
pub mod facts;
mod members;
pub mod service;
pub mod settings;
pub mod target;
pub mod timing;

pub use access::{access_config, binding_conflict, AccessKind, PlannedAccess};
pub use members::{managed_oauth_external, member_format, public_member};
