//! `iaprun_backend_iap`: IAP enabled on a load balancer backend service (global or regional) that
//! fronts Cloud Run through serverless NEGs, with an optional custom OAuth client.

use async_trait::async_trait;

use super::common;
use crate::framework::{
    ApplyRequest, ApplyResponse, Attribute, AttributePath, Block, DeleteRequest, Diagnostics,
    ImportResponse, ReadRequest, ReadResponse, Resource, Schema, ValidateRequest, Value,
};
use crate::names;
use crate::provider::Context;

/// The resource type.
pub struct BackendIap;

pub const TYPE_NAME: &str = "iaprun_backend_iap";

// ---- schema ----------------------------------------------------------------------------------

fn schema() -> Schema {
    Schema::new(
        0,
        Block::new(
            "Enables Identity-Aware Proxy on a load balancer backend service that fronts Cloud Run through serverless NEGs. Uses the Google-managed OAuth client unless `oauth2_client_id` is set, grants the IAP service agent `roles/run.invoker` on every Cloud Run service behind the backend, and checks the load balancer for known pitfalls at plan time. Destroying it disables IAP on the backend.",
        )
        .attribute(common::id_attribute(
            "projects/{project}/global/backendServices/{name}` or `projects/{project}/regions/{region}/backendServices/{name}",
        ))
        .attribute(Attribute::string("backend_service").required().force_new().description(
            "Name of the backend service. Changing it replaces the resource.",
        ))
        .attribute(Attribute::string("region").optional().force_new().description(
            "Region of a regional backend service. Leave unset for a global backend service. Changing it replaces the resource.",
        ))
        .attribute(common::project_attribute())
        .attribute(Attribute::string("oauth2_client_id").optional().description(
            "Client id of a custom OAuth client. Leave unset to use the Google-managed OAuth client (only users of your organization can sign in).",
        ))
        .attribute(Attribute::string("oauth2_client_secret").optional().sensitive().description(
            "Secret of the custom OAuth client. Stored in state (sensitive); prefer `oauth2_client_secret_wo` on Terraform 1.11+. A secret rotated outside Terraform shows as drift through the API's SHA-256 of it.",
        ))
        .attribute(Attribute::string("oauth2_client_secret_wo").optional().sensitive().write_only().description(
            "Write-only secret of the custom OAuth client (Terraform 1.11+): never stored in plan or state. Change `oauth2_client_secret_wo_version` to send a new value.",
        ))
        .attribute(Attribute::number("oauth2_client_secret_wo_version").optional().description(
            "Version of `oauth2_client_secret_wo`; changing it sends the write-only secret again.",
        ))
        .attribute(common::grant_iap_invoker_attribute("every Cloud Run service behind the backend's serverless NEGs"))
        .attribute(common::ignore_checks_attribute())
        .attribute(Attribute::string("project_number").computed().description("Number of the project."))
        .attribute(Attribute::string("iap_resource_name").computed().description(
            "The IAP resource name of the backend service, `projects/{project_number}/iap_web/compute/services/{name}` (regional: `compute-{region}`): use it as `resource` of `iaprun_access_binding`.",
        ))
        .attribute(Attribute::string("load_balancing_scheme").computed().description(
            "The backend service's load balancing scheme (`EXTERNAL` is the classic Application Load Balancer, `EXTERNAL_MANAGED` the Envoy-based one).",
        ))
        .attribute(Attribute::string_list("cloud_run_services").computed().description(
            "The Cloud Run services behind the backend's serverless NEGs, as `location/name`.",
        ))
        .attribute(Attribute::bool("iap_enabled").computed().description(
            "Whether IAP is enabled on the backend service as last read. A change made outside Terraform shows as drift and the next apply restores it.",
        ))
        .attribute(Attribute::string("oauth2_client_secret_sha256").computed().description(
            "SHA-256 of the OAuth client secret as the API reports it; a secret rotated outside Terraform changes it.",
        ))
        .block(crate::framework::schema::timeouts_block(true, true, true)),
    )
}

// ---- validate --------------------------------------------------------------------------------

fn validate(config: &Value, write_only_allowed: bool) -> Diagnostics {
    let mut diags = common::validate_common(config);
    diags.extend(common::validate_timeouts(config));
    if let Some(n) = config.get_str("backend_service") {
        if !names::is_compute_name(n) {
            diags.attribute_error(
                AttributePath::attr("backend_service"),
                "Invalid backend service name",
                format!("{n:?} is not a backend service name: lower-case letters, digits and hyphens, starting with a letter, at most 63 characters. Give the name, not its URL."),
            );
        }
    }
    if let Some(r) = config.get_str("region") {
        if !names::is_region(r) {
            diags.attribute_error(
                AttributePath::attr("region"),
                "Invalid region",
                format!("{r:?} is not a region such as us-central1. Leave region unset for a global backend service."),
            );
        }
    }
    let id = config.get("oauth2_client_id");
    let secret = config.get("oauth2_client_secret");
    let secret_wo = config.get("oauth2_client_secret_wo");
    if !secret.is_null() && !secret_wo.is_null() {
        diags.attribute_error(
            AttributePath::attr("oauth2_client_secret_wo"),
            "Conflicting secrets",
            "Set either oauth2_client_secret or oauth2_client_secret_wo, not both.",
        );
    }
    if !secret_wo.is_null() && !write_only_allowed {
        diags.attribute_error(
            AttributePath::attr("oauth2_client_secret_wo"),
            "Write-only attributes not supported",
            "This Terraform version does not support write-only attributes (Terraform 1.11+ does). Use oauth2_client_secret instead, or upgrade Terraform.",
        );
    }
    if id.is_null() && (!secret.is_null() || !secret_wo.is_null()) {
        diags.attribute_error(
            AttributePath::attr("oauth2_client_id"),
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
    if let Some(i) = id.as_str() {
        if i.trim().is_empty() {
            diags.attribute_error(
                AttributePath::attr("oauth2_client_id"),
                "Empty OAuth client id",
                "Leave oauth2_client_id unset (null) to use the Google-managed OAuth client; an empty string is not a client id.",
            );
        }
    }
    if !config.get("oauth2_client_secret_wo_version").is_null()
        && secret_wo.is_null()
        && secret_wo.is_known()
    {
        diags.attribute_error(
            AttributePath::attr("oauth2_client_secret_wo_version"),
            "Version without a write-only secret",
            "oauth2_client_secret_wo_version only has an effect together with oauth2_client_secret_wo.",
        );
    }
    diags
}

#[async_trait]
impl Resource<Context> for BackendIap {
    fn type_name(&self) -> &'static str {
        TYPE_NAME
    }

    fn schema(&self) -> Schema {
        schema()
    }

    fn validate(&self, req: &ValidateRequest) -> Diagnostics {
        validate(
            &req.config,
            req.client_capabilities.write_only_attributes_allowed,
        )
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
        if let Err(e) = names::parse_backend_service_id(id) {
            diagnostics.error("Invalid import id", e);
        } else {
            diagnostics.error(
                "Not implemented yet",
                "Import of iaprun_backend_iap is not implemented in this build.",
            );
        }
        ImportResponse {
            diagnostics,
            ..ImportResponse::default()
        }
    }
}
