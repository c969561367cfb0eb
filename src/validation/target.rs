//! Checks on the project and on the object IAP is switched on for.

use super::Finding;
use crate::framework::{Attr, AttributePath, Diagnostics};
use crate::names;

/// How each name attribute is checked: (attribute, valid, summary, what is wrong with the value).
type NameRule = (&'static str, fn(&str) -> bool, &'static str, &'static str);

const NAME_RULES: [NameRule; 4] = [
    ("service", names::is_run_service, "Invalid service name", "is not a Cloud Run service name: lower-case letters, digits and hyphens, starting with a letter, at most 49 characters. Give the name, not the full resource path."),
    ("location", names::is_region, "Invalid location", "is not a region such as us-central1; Cloud Run services live in regions, not zones."),
    ("backend_service", names::is_compute_name, "Invalid backend service name", "is not a backend service name: lower-case letters, digits and hyphens, starting with a letter, at most 63 characters. Give the name, not its URL."),
    ("region", names::is_region, "Invalid region", "is not a region such as us-central1. Leave region unset for a global backend service."),
];

/// An error on the name attribute `attribute` when its value is known and not a valid name.
pub fn check_name(diags: &mut Diagnostics, attribute: &str, value: &Attr<String>) {
    let Some((_, valid, summary, why)) = NAME_RULES.iter().find(|r| r.0 == attribute) else {
        return;
    };
    if let Some(v) = value.get().filter(|v| !valid(v)) {
        let path = AttributePath::attr(attribute);
        diags.attribute_error(path, *summary, format!("{v:?} {why}"));
    }
}

/// `target_missing`: the Cloud Run service or backend service does not exist, so the apply would fail
/// with NOT_FOUND. Source: Cloud Run Admin API and Compute API (GET on a missing resource answers
/// 404). Reads: Run `services.get` / Compute `backendServices.get`.
pub fn target_missing(kind: &str, name: &str, where_: &str, path: AttributePath) -> Finding {
    Finding::new(
        "target_missing",
        Some(path),
        format!("The {kind} {name:?} does not exist in {where_}."),
    )
}

#[cfg(test)]
mod target_missing_tests {
    use super::*;

    #[test]
    fn names_the_object_and_where_it_was_looked_up() {
        let f = target_missing(
            "Cloud Run service",
            "hello",
            "us-central1 of project p",
            AttributePath::attr("service"),
        );
        assert_eq!(f.check, "target_missing");
        assert_eq!(f.path, Some(AttributePath::attr("service")));
        assert!(f.detail.contains("\"hello\" does not exist in us-central1"));
    }
}

/// `iap_api_disabled`: iap.googleapis.com is not enabled, so every IAP call fails with 403
/// SERVICE_DISABLED. Source: IAP documentation (enable the API first). Reads: Service Usage v1
/// `services.get` `state`. Reported on `project`, the attribute that designates the project.
pub fn iap_api_disabled(project: &str, state: Option<&str>) -> Vec<Finding> {
    match state {
        Some("DISABLED") => vec![Finding::new(
            "iap_api_disabled",
            Some(AttributePath::attr("project")),
            format!("The Identity-Aware Proxy API (iap.googleapis.com) is not enabled in project {project} (Service Usage reports it DISABLED)."),
        )],
        _ => vec![],
    }
}

#[cfg(test)]
mod iap_api_disabled_tests {
    use super::*;

    #[test]
    fn fires_only_when_the_api_is_reported_disabled() {
        let f = iap_api_disabled("p", Some("DISABLED"));
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].path, Some(AttributePath::attr("project")));
        assert!(f[0].detail.contains("project p"));
        assert!(iap_api_disabled("p", Some("ENABLED")).is_empty());
        assert!(
            iap_api_disabled("p", None).is_empty(),
            "unknown is not a finding"
        );
    }
}

/// `no_organization`: direct IAP in a project without an organization. Older Cloud Run IAP
/// documentation required one; newer documentation offers a no-organization mode with a custom OAuth
/// setup, hence a warning. Reads: Resource Manager v1 `projects.get` `parent`. Reported on `project`.
pub fn no_organization(project: &str, has_parent: Option<bool>) -> Vec<Finding> {
    match has_parent {
        Some(false) => vec![Finding::new(
            "no_organization",
            Some(AttributePath::attr("project")),
            format!("Project {project} does not belong to an organization (Resource Manager reports no parent). Older Cloud Run IAP documentation required an organization; current documentation also allows projects without one, with a custom OAuth client in the service's IAP settings: iaprun_iap_settings with resource = this resource's iap_resource_name and access_settings {{ oauth_settings {{ client_id, client_secret_wo }} }}."),
        )],
        _ => vec![],
    }
}

#[cfg(test)]
mod no_organization_tests {
    use super::*;

    #[test]
    fn fires_only_without_a_parent() {
        let f = no_organization("p", Some(false));
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].path, Some(AttributePath::attr("project")));
        assert!(f[0].detail.contains("Older"));
        assert!(
            f[0].detail.contains("iaprun_iap_settings"),
            "points to the fix"
        );
        assert!(no_organization("p", Some(true)).is_empty());
        assert!(no_organization("p", None).is_empty());
    }
}
