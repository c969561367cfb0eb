//! Checks of access resources: their configuration, and two of them fighting over one IAM binding.

use super::Finding;
use crate::framework::{Attr, AttributePath, Diagnostics};
use crate::names::IapResource;

/// Checks of an access resource's `resource`, `role` and condition `title` and `expression`.
pub fn access_config(
    resource: &Attr<String>,
    role: &Attr<String>,
    condition: Option<[&Attr<String>; 2]>,
) -> Diagnostics {
    let mut diags = Diagnostics::new();
    if let Some(Err(e)) = resource.get().map(|r| IapResource::parse(r)) {
        diags.attribute_error(
            AttributePath::attr("resource"),
            "Invalid IAP resource name",
            e,
        );
    }
    if let Some(role) = role.get() {
        let valid = (role.starts_with("roles/") && role.len() > "roles/".len())
            || (role.starts_with("projects/") || role.starts_with("organizations/"))
                && role.contains("/roles/");
        if !valid || role.contains(char::is_whitespace) {
            diags.attribute_error(
                AttributePath::attr("role"),
                "Invalid role",
                format!("{role:?} is not a role name such as roles/iap.httpsResourceAccessor or projects/PROJECT/roles/CUSTOM."),
            );
        }
    }
    if let Some([title, expression]) = condition {
        for (field, value) in [("title", title), ("expression", expression)] {
            if value.get().is_some_and(|t| t.trim().is_empty()) {
                diags.attribute_error(
                    AttributePath::attr("condition").then_attr(field),
                    "Empty condition field",
                    format!("The condition's {field} must not be empty."),
                );
            }
        }
        if title.get().is_some_and(|t| t.len() > 100) {
            diags.attribute_error(
                AttributePath::attr("condition").then_attr("title"),
                "Condition title too long",
                "IAM limits condition titles to 100 characters.",
            );
        }
    }
    diags
}

/// The two access resource types, by how they treat a (resource, role, condition) binding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AccessKind {
    /// `iaprun_access_binding`: authoritative, sets the binding's member list.
    Binding,
    /// `iaprun_access_member`: adds and removes one member.
    Member,
}

impl AccessKind {
    /// Whether two access resources of these kinds on one binding undo each other: unless both
    /// are members (members among themselves compose).
    pub fn at_odds(self, other: AccessKind) -> bool {
        self == AccessKind::Binding || other == AccessKind::Binding
    }

    fn type_name(self) -> &'static str {
        match self {
            AccessKind::Binding => "iaprun_access_binding",
            AccessKind::Member => "iaprun_access_member",
        }
    }
}

/// One access resource planned in this run: the binding it touches and how it names itself.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PlannedAccess {
    pub kind: AccessKind,
    /// The IAP resource with its project as a number, so id and number forms compare equal.
    pub resource: String,
    pub role: String,
    /// The condition's (title, description, expression); IAM tells bindings apart by all three.
    pub condition: Option<(String, String, String)>,
    /// The resource's configuration as written (`resource = "...", members = [...]`): Terraform
    /// does not tell a provider the address of another resource, so this is how it is named.
    pub config: String,
}

impl PlannedAccess {
    /// Whether both touch the same (resource, role, condition) binding.
    pub fn same_binding(&self, other: &PlannedAccess) -> bool {
        self.resource == other.resource
            && self.role == other.role
            && self.condition == other.condition
    }

    fn label(&self) -> String {
        let mut s = format!("role {} on {}", self.role, self.resource);
        if let Some((title, _, _)) = &self.condition {
            s.push_str(&format!(" under the condition titled {title:?}"));
        }
        s
    }
}

/// `binding_conflict`: `this` and another access resource planned in the same run claim one
/// (resource, role, condition) binding in a way that makes them undo each other: two
/// `iaprun_access_binding` (each apply sets the member list to its own), or an
/// `iaprun_access_member` next to an `iaprun_access_binding` (the binding removes the member on
/// every apply, the member adds it back). Members among themselves compose. Reads: the planned
/// `resource` (project id and number are one project), `role` and `condition` of every access
/// resource planned in this provider process. Source: research/google_provider.md section 2.6
/// (the google provider documents that `_binding` and `_member` on one role fight; TPG #2449,
/// #17329, #28785).
pub fn binding_conflict(this: &PlannedAccess, others: &[PlannedAccess]) -> Vec<Finding> {
    others
        .iter()
        .filter(|o| this.same_binding(o))
        .filter(|o| this.kind.at_odds(o.kind))
        .map(|other| {
            let keep = match (this.kind, other.kind) {
                (AccessKind::Binding, AccessKind::Binding) => {
                    "Keep one iaprun_access_binding for this role and condition and move the other's members into it (or turn both into iaprun_access_member resources, one per member, if several modules must grant it).".to_string()
                }
                _ => "Keep the iaprun_access_binding if one place owns the whole member list: move the member into its members and remove the iaprun_access_member. Keep the iaprun_access_member resources if several modules add members: replace the binding by one iaprun_access_member per member.".to_string(),
            };
            Finding::new(
                "binding_conflict",
                Some(AttributePath::attr("resource")),
                format!(
                    "This {} and another {} in this configuration both manage {}: {}. The other one is the {} with {} (Terraform does not tell providers the address of other resources, so it is named by its configuration). {}",
                    this.kind.type_name(),
                    other.kind.type_name(),
                    this.label(),
                    match (this.kind, other.kind) {
                        (AccessKind::Binding, AccessKind::Binding) => "each apply of either sets the member list to its own and removes the other's members",
                        _ => "every apply of the binding removes the member, every apply of the member adds it back, and destroying the binding removes it",
                    },
                    other.kind.type_name(),
                    other.config,
                    keep
                ),
            )
        })
        .collect()
}

#[cfg(test)]
mod binding_conflict_tests {
    use super::*;

    fn access(kind: AccessKind, title: Option<&str>, config: &str) -> PlannedAccess {
        PlannedAccess {
            kind,
            resource: "projects/123/iap_web/compute/services/web".into(),
            role: "roles/iap.httpsResourceAccessor".into(),
            condition: title.map(|t| (t.into(), String::new(), "true".into())),
            config: config.into(),
        }
    }

    #[test]
    fn two_bindings_on_one_pair_conflict_and_name_the_other() {
        let this = access(AccessKind::Binding, None, "a");
        let other = access(AccessKind::Binding, None, "members = [\"user:b@x.com\"]");
        let f = binding_conflict(&this, &[other]);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].check, "binding_conflict");
        assert_eq!(f[0].path, Some(AttributePath::attr("resource")));
        assert!(f[0].detail.contains("members = [\"user:b@x.com\"]"));
        assert!(f[0].detail.contains("Keep one iaprun_access_binding"));
    }

    #[test]
    fn a_member_conflicts_with_a_binding_from_either_side() {
        let member = access(AccessKind::Member, Some("t"), "member = \"user:m@x.com\"");
        let binding = access(AccessKind::Binding, Some("t"), "members = []");
        let from_member = binding_conflict(&member, std::slice::from_ref(&binding));
        assert_eq!(from_member.len(), 1);
        assert!(from_member[0]
            .detail
            .contains("iaprun_access_binding with members = []"));
        assert_eq!(binding_conflict(&binding, &[member]).len(), 1);
    }

    #[test]
    fn members_compose_and_near_misses_stay_silent() {
        let member = access(AccessKind::Member, None, "m");
        assert!(binding_conflict(&member, &[access(AccessKind::Member, None, "n")]).is_empty());
        let binding = access(AccessKind::Binding, Some("office"), "b");
        // Another condition title, another role, another resource: another binding.
        let mut near = vec![
            access(AccessKind::Binding, Some("office-2"), "c"),
            access(AccessKind::Member, None, "d"),
        ];
        let mut other_role = access(AccessKind::Binding, Some("office"), "e");
        other_role.role = "roles/iap.tunnelResourceAccessor".into();
        let mut other_resource = access(AccessKind::Binding, Some("office"), "f");
        other_resource.resource = "projects/123/iap_web/compute/services/api".into();
        near.extend([other_role, other_resource]);
        assert!(binding_conflict(&binding, &near).is_empty());
    }
}
