//! Pieces the three resources share: common attributes, defaults, the not-yet-implemented stub.

use std::time::Duration;

use crate::framework::{Attribute, AttributePath, Diagnostics, Value};
use crate::names;
use crate::provider::{parse_duration, Context};
use crate::validation;

/// The `project` attribute: optional, defaults to the provider's project, forces replacement.
pub fn project_attribute() -> Attribute {
    Attribute::string("project")
        .optional()
        .computed()
        .force_new()
        .description("Project id (or number). Defaults to the provider's `project`. Changing it replaces the resource.")
}

/// The `ignore_checks` attribute.
pub fn ignore_checks_attribute() -> Attribute {
    Attribute::string_set("ignore_checks").optional().description(
        "Names of plan-time checks to turn off for this resource (see the checks table in the provider docs). An unknown name is an error.",
    )
}

/// The `grant_iap_invoker` attribute.
pub fn grant_iap_invoker_attribute(what: &str) -> Attribute {
    Attribute::bool("grant_iap_invoker").optional().computed().description(format!(
        "Grant `roles/run.invoker` on {what} to the IAP service agent `service-PROJECT_NUMBER@gcp-sa-iap.iam.gserviceaccount.com`, provisioning the agent first. Defaults to `true`. Without this grant users who pass IAP get 403 \"Your client does not have permission to get URL\"."
    ))
}

/// The `id` attribute.
pub fn id_attribute(format: &str) -> Attribute {
    Attribute::string("id")
        .computed()
        .description(format!("Identifier of the resource: `{format}`."))
}

/// Checks shared by every resource: `ignore_checks` names and a valid `project`.
pub fn validate_common(config: &Value) -> Diagnostics {
    let mut diags = validation::ignore_checks_known(config);
    if let Some(p) = config.get_str("project") {
        if !names::is_project(p) {
            diags.attribute_error(
                AttributePath::attr("project"),
                "Invalid project",
                format!("{p:?} is not a project id or number: a project id has 6 to 30 lower-case letters, digits or hyphens and starts with a letter."),
            );
        }
    }
    diags
}

/// Fills `project` from the provider when the config leaves it null; an error when neither has one.
pub fn plan_project(ctx: &Context, config: &Value, planned: &mut Value, diags: &mut Diagnostics) {
    if !config.get("project").is_null() {
        return;
    }
    match ctx.project(None) {
        Some(p) => planned.set_attr("project", Value::from(p)),
        None => diags.attribute_error(
            AttributePath::attr("project"),
            "No project",
            "Set project on this resource or in the provider block (or GOOGLE_PROJECT in the environment).",
        ),
    }
}

/// The timeout for `operation` ("create", "update", "delete") from the `timeouts` block.
pub fn timeout(config_or_state: &Value, operation: &str) -> Duration {
    config_or_state
        .get("timeouts")
        .get_str(operation)
        .and_then(parse_duration)
        .unwrap_or(Duration::from_secs(20 * 60))
}

/// Checks the `timeouts` block's durations.
pub fn validate_timeouts(config: &Value) -> Diagnostics {
    let mut diags = Diagnostics::new();
    if let Value::Object(t) = config.get("timeouts") {
        for (name, v) in t {
            if let Some(text) = v.as_str() {
                if parse_duration(text).is_none_or(|d| d.is_zero()) {
                    diags.attribute_error(
                        AttributePath::attr("timeouts").then_attr(name),
                        "Invalid duration",
                        format!("{text:?} is not a positive duration such as 30s, 10m or 1h."),
                    );
                }
            }
        }
    }
    diags
}

/// The answer of an operation whose remote side is not built yet: an error that changes nothing.
pub fn not_implemented(
    type_name: &str,
    operation: &str,
    prior: Value,
) -> crate::framework::ApplyResponse {
    let mut diagnostics = Diagnostics::new();
    diagnostics.error(
        "Not implemented yet",
        format!("{operation} of {type_name} is not implemented in this build of the provider; nothing was changed."),
    );
    crate::framework::ApplyResponse {
        state: prior,
        private: vec![],
        diagnostics,
    }
}
