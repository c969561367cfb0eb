//! `iaprun_access_binding`: who may pass IAP. An IAM binding on an IAP resource, authoritative for its
//! (role, condition) pair only; every other binding of the policy is preserved.

use async_trait::async_trait;

use super::common;
use crate::framework::{
    ApplyRequest, ApplyResponse, Attribute, AttributePath, Block, DeleteRequest, Diagnostics,
    ImportResponse, NestedBlock, ReadRequest, ReadResponse, Resource, Schema, ValidateRequest,
    Value,
};
use crate::names::IapResource;
use crate::provider::Context;
use crate::validation;

/// The resource type.
pub struct AccessBinding;

pub const TYPE_NAME: &str = "iaprun_access_binding";

/// The role that lets a principal pass IAP.
pub const DEFAULT_ROLE: &str = "roles/iap.httpsResourceAccessor";

// ---- schema ----------------------------------------------------------------------------------

fn schema() -> Schema {
    Schema::new(
        0,
        Block::new(
            "Grants access through IAP: an IAM binding on an IAP resource (a Cloud Run service with direct IAP, or a backend service). Authoritative for its role and condition only: members of other roles and other conditions, including those added outside Terraform, are preserved. Safe under parallel apply.",
        )
        .attribute(Attribute::string("id").computed().description(
            "`{resource} {role}`, followed by ` {condition title}` when a condition is set.",
        ))
        .attribute(Attribute::string("resource").required().force_new().description(
            "IAP resource name, such as `iaprun_service_iap.x.iap_resource_name`: `projects/{project}/iap_web/cloud_run-{region}/services/{service}`, `projects/{project}/iap_web/compute/services/{backend}` or `projects/{project}/iap_web/compute-{region}/services/{backend}`. Project id or number. Changing it replaces the resource.",
        ))
        .attribute(Attribute::string("role").optional().computed().force_new().description(
            "Role to bind. Defaults to `roles/iap.httpsResourceAccessor` (IAP-secured Web App User). Changing it replaces the resource.",
        ))
        .attribute(Attribute::string_set("members").required().description(
            "Principals that hold the role: `user:EMAIL`, `group:EMAIL`, `serviceAccount:EMAIL`, `domain:DOMAIN`, `principal://...` or `principalSet://...`. Emails in lower case.",
        ))
        .attribute(common::ignore_checks_attribute())
        .attribute(Attribute::string("etag").computed().description("Etag of the IAM policy after the last write or read."))
        .block(NestedBlock::single(
            "condition",
            Block::new("An IAM condition (policy version 3) limiting when the binding applies. Changing it replaces the resource.")
                .attribute(Attribute::string("title").required().description("Title of the condition; part of the id."))
                .attribute(Attribute::string("description").optional().description("Description of the condition."))
                .attribute(Attribute::string("expression").required().description(
                    "CEL expression, such as `request.time < timestamp(\"2030-01-01T00:00:00Z\")`.",
                )),
        )),
    )
}

// ---- validate --------------------------------------------------------------------------------

fn validate(config: &Value) -> Diagnostics {
    let mut diags = common::validate_common(config);
    if let Some(r) = config.get_str("resource") {
        if let Err(e) = IapResource::parse(r) {
            diags.attribute_error(
                AttributePath::attr("resource"),
                "Invalid IAP resource name",
                e,
            );
        }
    }
    if let Some(role) = config.get_str("role") {
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
    let members = config.get("members");
    if members.is_known() {
        let known: Vec<&str> = members.strings();
        let ignore = validation::ignored(config);
        diags.extend(validation::report(
            validation::member_format(&known),
            &ignore,
        ));
        diags.extend(validation::report(
            validation::public_member(&known),
            &ignore,
        ));
    }
    let condition = config.get("condition");
    if let Value::Object(_) = condition {
        for field in ["title", "expression"] {
            if condition
                .get_str(field)
                .is_some_and(|t| t.trim().is_empty())
            {
                diags.attribute_error(
                    AttributePath::attr("condition").then_attr(field),
                    "Empty condition field",
                    format!("The condition's {field} must not be empty."),
                );
            }
        }
        if condition.get_str("title").is_some_and(|t| t.len() > 100) {
            diags.attribute_error(
                AttributePath::attr("condition").then_attr("title"),
                "Condition title too long",
                "IAM limits condition titles to 100 characters.",
            );
        }
    }
    diags
}

#[async_trait]
impl Resource<Context> for AccessBinding {
    fn type_name(&self) -> &'static str {
        TYPE_NAME
    }

    fn schema(&self) -> Schema {
        schema()
    }

    fn validate(&self, req: &ValidateRequest) -> Diagnostics {
        validate(&req.config)
    }

    async fn create(&self, _ctx: &Context, _req: ApplyRequest) -> ApplyResponse {
        common::not_implemented(TYPE_NAME, "Create", Value::Null)
    }

    async fn read(&self, _ctx: &Context, req: ReadRequest) -> ReadResponse {
        ReadResponse {
            state: req.state,
            private: req.private,
            diagnostics: Diagnostics::new(),
        }
    }

    async fn update(&self, _ctx: &Context, req: ApplyRequest) -> ApplyResponse {
        common::not_implemented(TYPE_NAME, "Update", req.prior_state)
    }

    async fn delete(&self, _ctx: &Context, req: DeleteRequest) -> ApplyResponse {
        common::not_implemented(TYPE_NAME, "Delete", req.prior_state)
    }

    async fn import(&self, _ctx: &Context, id: &str) -> ImportResponse {
        let mut diagnostics = Diagnostics::new();
        match parse_import_id(id) {
            Err(e) => diagnostics.error("Invalid import id", e),
            Ok(_) => diagnostics.error(
                "Not implemented yet",
                "Import of iaprun_access_binding is not implemented in this build.",
            ),
        }
        ImportResponse {
            diagnostics,
            ..ImportResponse::default()
        }
    }
}

// ---- import ----------------------------------------------------------------------------------

/// Parses `RESOURCE ROLE` or `RESOURCE ROLE CONDITION_TITLE` (the title may contain spaces).
pub fn parse_import_id(id: &str) -> Result<(IapResource, String, Option<String>), String> {
    let mut parts = id.splitn(3, ' ');
    let (Some(resource), Some(role)) = (parts.next(), parts.next()) else {
        return Err(format!(
            "{id:?} is not an access binding id. Use \"RESOURCE ROLE\" or \"RESOURCE ROLE CONDITION_TITLE\", for example \"projects/my-project/iap_web/cloud_run-us-central1/services/hello roles/iap.httpsResourceAccessor\"."
        ));
    };
    let resource = IapResource::parse(resource)?;
    if !role.starts_with("roles/") && !role.contains("/roles/") {
        return Err(format!(
            "{role:?} is not a role name such as roles/iap.httpsResourceAccessor."
        ));
    }
    let title = parts
        .next()
        .map(str::to_string)
        .filter(|t| !t.trim().is_empty());
    Ok((resource, role.to_string(), title))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn import_ids_with_and_without_condition() {
        let (r, role, title) = parse_import_id(
            "projects/p-123456/iap_web/compute/services/web roles/iap.httpsResourceAccessor",
        )
        .expect("parses");
        assert_eq!(
            r.to_string(),
            "projects/p-123456/iap_web/compute/services/web"
        );
        assert_eq!((role.as_str(), title), (DEFAULT_ROLE, None));
        let (_, _, title) = parse_import_id(
            "projects/p-123456/iap_web/compute/services/web roles/iap.httpsResourceAccessor office hours",
        )
        .expect("parses");
        assert_eq!(title.as_deref(), Some("office hours"));
        for bad in [
            "",
            "projects/p-123456/iap_web/compute/services/web",
            "nonsense roles/x",
            "projects/p-123456/iap_web/compute/services/web viewer",
        ] {
            assert!(parse_import_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn validate_points_at_each_bad_attribute() {
        let mut config = schema().block.empty_value();
        config.set_attr(
            "resource",
            Value::from("projects/p-123456/iap_web/cloud-run-us-central1/services/x"),
        );
        config.set_attr("role", Value::from("viewer"));
        config.set_attr(
            "members",
            Value::string_set(["allUsers", "user:Bob@example.com"]),
        );
        config.set_attr("ignore_checks", Value::string_set(["nope"]));
        let diags = validate(&config);
        let paths: Vec<String> = diags
            .iter()
            .filter_map(|d| d.path.as_ref())
            .map(|p| p.to_string())
            .collect();
        for expected in [
            "resource",
            "role",
            "members[\"allUsers\"]",
            "members[\"user:Bob@example.com\"]",
            "ignore_checks[\"nope\"]",
        ] {
            assert!(
                paths.iter().any(|p| p == expected),
                "{expected} not in {paths:?}"
            );
        }
        config.set_attr("ignore_checks", Value::string_set(["public_member"]));
        config.set_attr("members", Value::string_set(["allUsers"]));
        config.set_attr(
            "resource",
            Value::from("projects/p-123456/iap_web/compute/services/x"),
        );
        config.set_attr("role", Value::Null);
        assert!(
            validate(&config).is_empty(),
            "ignored check must not report"
        );
        config.set_attr("members", Value::unknown());
        assert!(validate(&config).is_empty(), "unknown members are skipped");
    }
}
