//! Checks on access-binding members: who may pass IAP.

use super::Finding;
use crate::framework::AttributePath;
use crate::names;

/// Public principals that must never pass IAP.
const PUBLIC_PRINCIPALS: [&str; 2] = ["allUsers", "allAuthenticatedUsers"];

/// `public_member`: `allUsers`/`allAuthenticatedUsers` in an IAP access binding makes the app public.
/// Reads: the binding's `members`. Source: IAP access control docs (roles/iap.httpsResourceAccessor).
pub fn public_member(members: &[&str]) -> Vec<Finding> {
    members
        .iter()
        .filter(|m| PUBLIC_PRINCIPALS.contains(m))
        .map(|m| {
            Finding::new(
                "public_member",
                Some(AttributePath::attr("members").then_key(m)),
                format!(
                    "The member {m:?} would let anyone{} pass IAP.",
                    if *m == "allUsers" {
                        ""
                    } else {
                        " with a Google account"
                    }
                ),
            )
        })
        .collect()
}

#[cfg(test)]
mod public_member_tests {
    use super::*;

    #[test]
    fn fires_on_public_principals_only() {
        let found = public_member(&["user:a@example.com", "allAuthenticatedUsers"]);
        assert_eq!(found.len(), 1);
        assert_eq!(
            found[0].path,
            Some(AttributePath::attr("members").then_key("allAuthenticatedUsers"))
        );
        assert!(public_member(&["user:allusers@example.com", "domain:example.com"]).is_empty());
    }
}

/// `member_format`: a member Google would reject, or one it would store differently (mixed-case
/// emails are lower-cased by IAM, so the plan would never converge). Reads: `members`.
/// Source: IAM Policy reference (member syntax).
pub fn member_format(members: &[&str]) -> Vec<Finding> {
    members
        .iter()
        .filter_map(|m| member_problem(m).map(|why| (m, why)))
        .map(|(m, why)| {
            Finding::new(
                "member_format",
                Some(AttributePath::attr("members").then_key(m)),
                format!("The member {m:?} {why}."),
            )
        })
        .collect()
}

fn member_problem(member: &str) -> Option<String> {
    if PUBLIC_PRINCIPALS.contains(&member) {
        return None; // well-formed; public_member judges it
    }
    if member.trim() != member || member.is_empty() {
        return Some("is empty or has surrounding spaces".to_string());
    }
    if let Some(rest) = member
        .strip_prefix("principal://")
        .or_else(|| member.strip_prefix("principalSet://"))
    {
        return (!rest.starts_with("iam.googleapis.com/")
            || rest.len() <= "iam.googleapis.com/".len())
        .then(|| {
            "must be principal://iam.googleapis.com/... or principalSet://iam.googleapis.com/..."
                .to_string()
        });
    }
    if member.ends_with(".apps.googleusercontent.com") && !member.contains('@') {
        // IAP docs: OAuth client ids are not IAM members; IAP takes them in `programmaticClients`.
        return Some("is an OAuth client id, not an IAM member: to let that client call the app, list it in programmatic_clients of an iaprun_iap_settings (access_settings { oauth_settings { programmatic_clients } })".to_string());
    }
    let Some((kind, id)) = member.split_once(':') else {
        return Some("has no type prefix: write user:EMAIL, group:EMAIL, serviceAccount:EMAIL, domain:DOMAIN, principal://... or principalSet://...".to_string());
    };
    match kind {
        "serviceAccount" if is_kubernetes_service_account(id) => None,
        "user" | "group" | "serviceAccount" => {
            if !is_email(id) {
                Some(format!("does not hold a valid email after {kind}:"))
            } else if id.chars().any(|c| c.is_ascii_uppercase()) {
                Some(format!(
                    "has upper-case letters; Google stores emails in lower case, so every plan would show a change. Write {kind}:{}",
                    id.to_ascii_lowercase()
                ))
            } else {
                None
            }
        }
        "domain" => {
            if !is_domain(id) {
                Some("does not hold a valid domain name after domain:".to_string())
            } else if id.chars().any(|c| c.is_ascii_uppercase()) {
                Some(format!("has upper-case letters; write domain:{}", id.to_ascii_lowercase()))
            } else {
                None
            }
        }
        "deleted" => Some("names a deleted principal, which cannot be granted access".to_string()),
        "projectOwner" | "projectEditor" | "projectViewer" => {
            Some("is a convenience value that IAP resources do not accept".to_string())
        }
        other => Some(format!("has an unknown type {other:?}; use user, group, serviceAccount, domain, principal:// or principalSet://")),
    }
}

/// A Kubernetes service account through Workload Identity, in the form the IAM policy reference
/// (IAP v1 discovery document, `Binding.members`) gives: `{project}.svc.id.goog[{namespace}/{name}]`.
fn is_kubernetes_service_account(id: &str) -> bool {
    let Some((project, rest)) = id.split_once(".svc.id.goog[") else {
        return false;
    };
    let Some((namespace, name)) = rest.strip_suffix(']').and_then(|r| r.split_once('/')) else {
        return false;
    };
    // Kubernetes names: a namespace is a DNS label, a service account name a DNS subdomain.
    let kubernetes_name = |s: &str, max: usize, dots: bool| {
        !s.is_empty()
            && s.len() <= max
            && s.chars().all(|c| {
                c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || (dots && c == '.')
            })
    };
    names::is_project(project)
        && !names::is_project_number(project)
        && kubernetes_name(namespace, 63, false)
        && kubernetes_name(name, 253, true)
}

fn is_email(text: &str) -> bool {
    let Some((local, domain)) = text.rsplit_once('@') else {
        return false;
    };
    !local.is_empty()
        && local.len() <= 64
        && local
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._%+-'".contains(c))
        && is_domain(domain)
}

fn is_domain(text: &str) -> bool {
    text.len() <= 253
        && text.contains('.')
        && text.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

#[cfg(test)]
mod member_format_tests {
    use super::*;

    #[test]
    fn accepts_every_documented_member_kind() {
        let good = [
            "user:alice@example.com",
            "group:admins@example.com",
            "serviceAccount:svc@my-project.iam.gserviceaccount.com",
            "serviceAccount:my-project.svc.id.goog[my-namespace/my-ksa]",
            "domain:example.com",
            "principal://iam.googleapis.com/locations/global/workforcePools/p/subject/s",
            "principalSet://iam.googleapis.com/locations/global/workforcePools/p/*",
            "allUsers",
        ];
        assert!(
            member_format(&good).is_empty(),
            "{:?}",
            member_format(&good)
        );
    }

    #[test]
    fn rejects_malformed_and_mixed_case_members() {
        let cases = [
            ("alice@example.com", "no type prefix"),
            ("user:alice", "valid email"),
            ("user:Alice@Example.com", "user:alice@example.com"),
            ("domain:Example.com", "domain:example.com"),
            ("domain:localhost", "valid domain"),
            ("deleted:user:a@b.com?uid=1", "deleted"),
            ("robot:x@y.z", "unknown type"),
            ("principal://example.com/x", "iam.googleapis.com"),
            (" user:a@b.com", "spaces"),
            ("", "empty"),
            ("user:ünicode@example.com", "valid email"),
            (
                "serviceAccount:my-project.svc.id.goog[My-NS/ksa]",
                "valid email",
            ),
            ("serviceAccount:my-project.svc.id.goog[ns]", "valid email"),
            (
                "serviceAccount:123456789.svc.id.goog[ns/ksa]",
                "valid email",
            ),
            (
                "1234-abc.apps.googleusercontent.com",
                "programmatic_clients",
            ),
            (
                "user:1234-abc.apps.googleusercontent.com",
                "programmatic_clients",
            ),
        ];
        for (member, expected) in cases {
            let found = member_format(&[member]);
            assert_eq!(found.len(), 1, "{member}");
            assert!(
                found[0].detail.contains(expected),
                "{member}: {}",
                found[0].detail
            );
            assert_eq!(
                found[0].path,
                Some(AttributePath::attr("members").then_key(member))
            );
        }
    }
}

/// `managed_oauth_external`: with the Google-managed OAuth client only users within the organization
/// can sign in (seed 000), so members outside the organization's domain would be refused. Reads: the
/// backend's `iap.oauth2ClientId` or IAP settings `oauthSettings.clientId`, and the organization's
/// domain (Resource Manager). Group and domain members are judged by their domain too.
pub fn managed_oauth_external(members: &[&str], organization_domain: &str) -> Vec<Finding> {
    let domain = organization_domain.to_ascii_lowercase();
    members
        .iter()
        .filter_map(|m| {
            let (kind, id) = m.split_once(':')?;
            let member_domain = match kind {
                "user" | "group" => id.rsplit_once('@')?.1,
                "domain" => id,
                _ => return None,
            };
            let inside = member_domain.eq_ignore_ascii_case(&domain)
                || member_domain.to_ascii_lowercase().ends_with(&format!(".{domain}"));
            (!inside).then(|| {
                Finding::new(
                    "managed_oauth_external",
                    Some(AttributePath::attr("members").then_key(m)),
                    format!("The member {m:?} is outside the organization's domain {domain}, and the IAP resource uses the Google-managed OAuth client."),
                )
            })
        })
        .collect()
}

#[cfg(test)]
mod managed_oauth_external_tests {
    use super::*;

    #[test]
    fn fires_on_members_outside_the_organization_domain() {
        let found = managed_oauth_external(
            &[
                "user:alice@example.com",
                "group:eng@EXAMPLE.com",
                "user:bob@other.org",
                "domain:sub.example.com",
                "serviceAccount:x@p.iam.gserviceaccount.com",
            ],
            "example.com",
        );
        assert_eq!(found.len(), 1);
        assert_eq!(
            found[0].path,
            Some(AttributePath::attr("members").then_key("user:bob@other.org"))
        );
    }
}
