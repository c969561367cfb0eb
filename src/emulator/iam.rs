//! IAM policy semantics shared by Cloud Run and IAP: etags, versions, conditions, member rules.

use std::collections::BTreeSet;

use base64::Engine;
use serde_json::{json, Map, Value};

use super::error::ApiError;
use super::state::{parse_agent_email, Projects};

/// The etag of a policy nobody has written.
pub(crate) const NEVER_SET_ETAG: &str = "ACAB";

/// One binding: a role granted to members, optionally under a condition.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Binding {
    pub role: String,
    pub members: BTreeSet<String>,
    pub condition: Option<Map<String, Value>>,
}

/// An IAM policy attached to one resource.
#[derive(Clone, Debug, Default)]
pub(crate) struct Policy {
    /// None until the first setIamPolicy.
    pub etag: Option<String>,
    pub bindings: Vec<Binding>,
    pub audit_configs: Option<Value>,
}

/// What member strings a write may contain.
pub(crate) struct MemberRules<'a> {
    pub projects: &'a Projects,
    /// The owning project's organization policy rejects allUsers / allAuthenticatedUsers.
    pub restrict_public: bool,
}

/// A fresh policy etag (base64 bytes, like Google's `BwY...` values).
pub(crate) fn new_etag(seq: u64) -> String {
    let mut bytes = vec![0x07, 0x06];
    bytes.extend_from_slice(&seq.to_be_bytes()[2..]);
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

impl Policy {
    pub fn etag(&self) -> &str {
        self.etag.as_deref().unwrap_or(NEVER_SET_ETAG)
    }

    pub fn has_conditions(&self) -> bool {
        self.bindings.iter().any(|b| b.condition.is_some())
    }

    /// The policy as getIamPolicy answers it for a requested version.
    pub fn render(&self, requested_version: i64) -> Result<Value, ApiError> {
        if ![0, 1, 3].contains(&requested_version) {
            return Err(ApiError::invalid(format!(
                "Invalid requested policy version {requested_version}; valid values are 0, 1 and 3."
            )));
        }
        let Some(etag) = &self.etag else {
            return Ok(json!({ "etag": NEVER_SET_ETAG }));
        };
        if self.has_conditions() && requested_version < 3 {
            return Err(ApiError::invalid(format!(
                "The policy contains conditional role bindings; it can only be read with requested policy version 3 \
                 (requested: {requested_version})."
            )));
        }
        let mut out = Map::new();
        out.insert(
            "version".into(),
            json!(if self.has_conditions() { 3 } else { 1 }),
        );
        out.insert("etag".into(), json!(etag));
        if !self.bindings.is_empty() {
            let bindings: Vec<Value> = self
                .bindings
                .iter()
                .map(|b| {
                    let mut binding =
                        json!({"role": b.role, "members": b.members.iter().collect::<Vec<_>>()});
                    if let Some(condition) = &b.condition {
                        binding["condition"] = Value::Object(condition.clone());
                    }
                    binding
                })
                .collect();
            out.insert("bindings".into(), Value::Array(bindings));
        }
        if let Some(audit) = &self.audit_configs {
            out.insert("auditConfigs".into(), audit.clone());
        }
        Ok(Value::Object(out))
    }

    /// setIamPolicy: check the etag, validate and normalise the new policy, store it under `new_etag`.
    pub fn apply(
        &mut self,
        policy: Option<&Value>,
        update_mask: Option<&str>,
        new_etag: String,
        rules: &MemberRules<'_>,
    ) -> Result<(), ApiError> {
        let Some(policy) = policy.and_then(Value::as_object) else {
            return Err(ApiError::invalid("Invalid request: 'policy' is required."));
        };
        if let Some(etag) = policy
            .get("etag")
            .and_then(Value::as_str)
            .filter(|e| !e.is_empty())
        {
            if etag != self.etag() {
                return Err(ApiError::concurrent_policy_change());
            }
        }
        let version = match policy.get("version") {
            None | Some(Value::Null) => 0,
            Some(v) => v
                .as_i64()
                .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
                .ok_or_else(|| ApiError::invalid("Invalid policy version."))?,
        };
        if ![0, 1, 3].contains(&version) {
            return Err(ApiError::invalid(format!(
                "Invalid policy version {version}; valid values are 0, 1 and 3."
            )));
        }
        let mask: Vec<&str> = match update_mask.map(str::trim).filter(|m| !m.is_empty()) {
            Some(mask) => mask.split(',').map(str::trim).collect(),
            None => vec!["bindings", "etag"],
        };
        for path in &mask {
            if !["bindings", "etag", "auditConfigs", "version"].contains(path) {
                return Err(ApiError::invalid(format!(
                    "Invalid update_mask path '{path}' for a policy."
                )));
            }
        }
        let mut bindings = self.bindings.clone();
        if mask.contains(&"bindings") {
            bindings = parse_bindings(policy.get("bindings"), rules)?;
            if version < 3 && bindings.iter().any(|b| b.condition.is_some()) {
                return Err(ApiError::invalid(format!(
                    "Conditional role bindings require policy version 3; the policy has version {version}."
                )));
            }
        }
        if mask.contains(&"auditConfigs") {
            self.audit_configs = policy
                .get("auditConfigs")
                .filter(|a| a.as_array().is_some_and(|a| !a.is_empty()))
                .cloned();
        }
        self.bindings = bindings;
        self.etag = Some(new_etag);
        Ok(())
    }
}

fn parse_bindings(
    bindings: Option<&Value>,
    rules: &MemberRules<'_>,
) -> Result<Vec<Binding>, ApiError> {
    let mut out: Vec<Binding> = Vec::new();
    let items = match bindings {
        None | Some(Value::Null) => return Ok(out),
        Some(Value::Array(items)) => items,
        Some(_) => {
            return Err(ApiError::invalid(
                "Invalid policy: 'bindings' must be a list.",
            ))
        }
    };
    for item in items {
        let role = item.get("role").and_then(Value::as_str).unwrap_or_default();
        if role.is_empty() {
            return Err(ApiError::invalid(
                "Invalid policy: every binding needs a role.",
            ));
        }
        if !(role.starts_with("roles/") || role.contains("/roles/")) {
            return Err(ApiError::invalid(format!(
                "Role ({role}) does not exist in the resource's hierarchy."
            )));
        }
        let condition = match item.get("condition") {
            None | Some(Value::Null) => None,
            Some(Value::Object(condition)) => {
                let expression = condition
                    .get("expression")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                if expression.trim().is_empty() {
                    return Err(ApiError::invalid(format!(
                        "Invalid condition in binding for role {role}: 'expression' is required."
                    )));
                }
                let kept: Map<String, Value> = condition
                    .iter()
                    .filter(|(k, v)| {
                        ["title", "description", "expression", "location"].contains(&k.as_str())
                            && v.as_str().is_some_and(|s| !s.is_empty())
                    })
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                Some(kept)
            }
            Some(_) => {
                return Err(ApiError::invalid(
                    "Invalid policy: 'condition' must be an object.",
                ))
            }
        };
        let mut members = BTreeSet::new();
        if let Some(list) = item.get("members").and_then(Value::as_array) {
            for member in list {
                let text = member.as_str().unwrap_or_default();
                members.insert(normalize_member(text, rules)?);
            }
        }
        if members.is_empty() {
            continue;
        }
        match out
            .iter_mut()
            .find(|b| b.role == role && b.condition == condition)
        {
            Some(existing) => existing.members.extend(members),
            None => out.push(Binding {
                role: role.to_string(),
                members,
                condition,
            }),
        }
    }
    out.sort_by(|a, b| {
        a.role.cmp(&b.role).then_with(|| {
            let title = |c: &Option<Map<String, Value>>| {
                c.as_ref()
                    .and_then(|c| c.get("title"))
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string()
            };
            title(&a.condition).cmp(&title(&b.condition))
        })
    });
    Ok(out)
}

/// Validate a member string and return it the way IAM stores it (e-mail addresses lowercased).
pub(crate) fn normalize_member(member: &str, rules: &MemberRules<'_>) -> Result<String, ApiError> {
    if member == "allUsers" || member == "allAuthenticatedUsers" {
        if rules.restrict_public {
            return Err(ApiError::failed_precondition(
                "One or more users named in the policy do not belong to a permitted customer.",
            )
            .with_detail(json!({
                "@type": "type.googleapis.com/google.rpc.PreconditionFailure",
                "violations": [{"type": "constraints/iam.allowedPolicyMemberDomains", "subject": format!("{member}"),
                                "description": "User allUsers is not in permitted organization."}],
            })));
        }
        return Ok(member.to_string());
    }
    if member.starts_with("principal://")
        || member.starts_with("principalSet://")
        || member.starts_with("deleted:")
    {
        return Ok(member.to_string());
    }
    let unknown = || {
        ApiError::invalid(format!(
            "Invalid principal '{member}': members must be allUsers, allAuthenticatedUsers, or start with user:, \
             group:, serviceAccount:, domain:, principal:// or principalSet://."
        ))
    };
    let (kind, rest) = member.split_once(':').ok_or_else(unknown)?;
    match kind {
        "user" | "group" | "serviceAccount" => {
            let (local, domain) = rest.split_once('@').ok_or_else(unknown)?;
            if local.is_empty() || domain.is_empty() || domain.contains('@') {
                return Err(unknown());
            }
            let email = rest.to_ascii_lowercase();
            if kind == "serviceAccount" {
                if let Some((number, service)) = parse_agent_email(&email) {
                    if let Some(project) = rules.projects.by_number(&number) {
                        let propagating = project
                            .agents_propagating
                            .get(&service)
                            .is_some_and(|at| std::time::Instant::now() < *at);
                        if !project.agents.contains(&service) || propagating {
                            return Err(ApiError::invalid(format!(
                                "Service account {email} does not exist."
                            )));
                        }
                    }
                }
            }
            Ok(format!("{kind}:{email}"))
        }
        "domain" if !rest.is_empty() => Ok(format!("domain:{}", rest.to_ascii_lowercase())),
        "projectOwner" | "projectEditor" | "projectViewer" if !rest.is_empty() => {
            Ok(member.to_string())
        }
        _ => Err(unknown()),
    }
}

/// testIamPermissions: the emulator's caller holds every permission asked about.
pub(crate) fn test_permissions(body: &Value) -> Value {
    let permissions: Vec<Value> = body
        .get("permissions")
        .and_then(Value::as_array)
        .map(|p| p.iter().filter(|v| v.is_string()).cloned().collect())
        .unwrap_or_default();
    if permissions.is_empty() {
        json!({})
    } else {
        json!({ "permissions": permissions })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(projects: &Projects) -> MemberRules<'_> {
        MemberRules {
            projects,
            restrict_public: false,
        }
    }

    #[test]
    fn never_set_policy() {
        assert_eq!(
            Policy::default().render(3).unwrap(),
            json!({"etag": "ACAB"})
        );
    }

    #[test]
    fn write_normalises_and_changes_etag() {
        let projects = Projects::default();
        let mut p = Policy::default();
        let body = json!({"bindings": [
            {"role": "roles/run.invoker", "members": ["user:Alice@Example.com", "user:bob@example.com"]},
            {"role": "roles/run.invoker", "members": ["user:alice@example.com"]},
            {"role": "roles/viewer", "members": []}]});
        p.apply(Some(&body), None, new_etag(1), &rules(&projects))
            .unwrap();
        let out = p.render(1).unwrap();
        assert_eq!(
            out["bindings"],
            json!([{"role": "roles/run.invoker",
            "members": ["user:alice@example.com", "user:bob@example.com"]}])
        );
        assert_eq!(out["version"], 1);
        assert_ne!(out["etag"], "ACAB");
    }

    #[test]
    fn stale_etag_is_aborted() {
        let projects = Projects::default();
        let mut p = Policy::default();
        p.apply(
            Some(&json!({"etag": "ACAB"})),
            None,
            new_etag(1),
            &rules(&projects),
        )
        .unwrap();
        let err = p
            .apply(
                Some(&json!({"etag": "ACAB"})),
                None,
                new_etag(2),
                &rules(&projects),
            )
            .unwrap_err();
        assert_eq!((err.code, err.status), (409, "ABORTED"));
        // Without an etag the write is unconditional.
        p.apply(Some(&json!({})), None, new_etag(3), &rules(&projects))
            .unwrap();
    }

    #[test]
    fn conditions_need_version_three() {
        let projects = Projects::default();
        let mut p = Policy::default();
        let binding = json!({"role": "roles/iap.httpsResourceAccessor", "members": ["user:a@x.com"],
                             "condition": {"title": "t", "expression": "true"}});
        let err = p.apply(
            Some(&json!({"bindings": [binding.clone()]})),
            None,
            new_etag(1),
            &rules(&projects),
        );
        assert_eq!(err.unwrap_err().code, 400);
        p.apply(
            Some(&json!({"version": 3, "bindings": [binding]})),
            None,
            new_etag(2),
            &rules(&projects),
        )
        .unwrap();
        assert_eq!(p.render(1).unwrap_err().status, "INVALID_ARGUMENT");
        assert_eq!(p.render(3).unwrap()["version"], 3);
    }

    #[test]
    fn member_rules() {
        let mut projects = Projects::default();
        let number = projects
            .resolve("agent-project", "t")
            .map(|p| p.number.clone())
            .unwrap();
        let agent = format!("serviceAccount:service-{number}@gcp-sa-iap.iam.gserviceaccount.com");
        assert!(normalize_member(&agent, &rules(&projects)).is_err());
        assert!(normalize_member("bob", &rules(&projects)).is_err());
        assert!(normalize_member("user:", &rules(&projects)).is_err());
        assert_eq!(
            normalize_member("domain:Example.com", &rules(&projects)).unwrap(),
            "domain:example.com"
        );
        let strict = MemberRules {
            projects: &projects,
            restrict_public: true,
        };
        assert_eq!(
            normalize_member("allUsers", &strict).unwrap_err().status,
            "FAILED_PRECONDITION"
        );
    }
}
