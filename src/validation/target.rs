//! Checks on the project and on the object IAP is switched on for.

use super::Finding;
use crate::framework::AttributePath;

/// `target_missing`: the Cloud Run service or backend service does not exist, so the apply would fail
/// with NOT_FOUND. Reads: Run `services.get` / Compute `backendServices.get` (404).
pub fn target_missing(kind: &str, name: &str, where_: &str, path: AttributePath) -> Finding {
    Finding::new(
        "target_missing",
        Some(path),
        format!("The {kind} {name:?} does not exist in {where_}."),
    )
}

/// `iap_api_disabled`: iap.googleapis.com is not enabled, so every IAP call fails with 403
/// SERVICE_DISABLED. Reads: Service Usage v1 `services.get` `state`.
pub fn iap_api_disabled(project: &str, state: Option<&str>) -> Vec<Finding> {
    match state {
        Some("DISABLED") => vec![Finding::new(
            "iap_api_disabled",
            None,
            format!("The Identity-Aware Proxy API (iap.googleapis.com) is not enabled in project {project}."),
        )],
        _ => vec![],
    }
}

/// `no_organization`: direct IAP in a project without an organization. Older Cloud Run IAP
/// documentation required one; newer documentation offers a no-organization mode with a custom OAuth
/// setup. Reads: Resource Manager `projects.get` `parent`.
pub fn no_organization(project: &str, has_parent: Option<bool>) -> Vec<Finding> {
    match has_parent {
        Some(false) => vec![Finding::new(
            "no_organization",
            None,
            format!("Project {project} does not belong to an organization (it has no parent)."),
        )],
        _ => vec![],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn project_checks_fire_on_their_condition_only() {
        assert_eq!(iap_api_disabled("p", Some("DISABLED")).len(), 1);
        assert!(iap_api_disabled("p", Some("ENABLED")).is_empty());
        assert!(iap_api_disabled("p", None).is_empty());
        assert_eq!(no_organization("p", Some(false)).len(), 1);
        assert!(
            no_organization("p", Some(true)).is_empty() && no_organization("p", None).is_empty()
        );
        let f = target_missing(
            "Cloud Run service",
            "hello",
            "us-central1 of project p",
            AttributePath::attr("service"),
        );
        assert!(f.detail.contains("\"hello\" does not exist in us-central1"));
    }
}
