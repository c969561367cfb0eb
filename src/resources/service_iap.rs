//! `iaprun_service_iap`: IAP enabled directly on a Cloud Run service (Run Admin API v2 `iapEnabled`),
//! with the IAP service agent provisioned and granted `roles/run.invoker` on the service.

use async_trait::async_trait;

use super::common;
use crate::framework::{
    ApplyRequest, ApplyResponse, Attribute, AttributePath, Block, DeleteRequest, Diagnostics,
    ImportResponse, ReadRequest, ReadResponse, Resource, Schema, ValidateRequest, Value,
};
use crate::names;
use crate::provider::Context;

/// The resource type.
pub struct ServiceIap;

pub const TYPE_NAME: &str = "iaprun_service_iap";

// ---- schema ----------------------------------------------------------------------------------

fn schema() -> Schema {
    Schema::new(
        0,
        Block::new(
            "Enables Identity-Aware Proxy directly on a Cloud Run service (no load balancer). In one step it provisions the IAP service agent, grants it `roles/run.invoker` on the service and sets `iapEnabled`. Destroying it turns IAP off and removes only the grant it added.",
        )
        .attribute(common::id_attribute("projects/{project}/locations/{location}/services/{service}"))
        .attribute(
            Attribute::string("service")
                .required()
                .force_new()
                .description("Name of the Cloud Run service. Changing it replaces the resource."),
        )
        .attribute(Attribute::string("location").optional().computed().force_new().description(
            "Region of the service, such as `us-central1`. Defaults to the provider's `region`. Changing it replaces the resource.",
        ))
        .attribute(common::project_attribute())
        .attribute(common::grant_iap_invoker_attribute("the service"))
        .attribute(common::ignore_checks_attribute())
        .attribute(Attribute::string("project_number").computed().description("Number of the project."))
        .attribute(Attribute::string("iap_resource_name").computed().description(
            "The IAP resource name of the service, `projects/{project_number}/iap_web/cloud_run-{location}/services/{service}`: use it as `resource` of `iaprun_access_binding`.",
        ))
        .attribute(Attribute::string("iap_service_agent").computed().description(
            "The IAP service agent, `service-{project_number}@gcp-sa-iap.iam.gserviceaccount.com`.",
        ))
        .attribute(Attribute::string("uri").computed().description("The service's main URI; IAP protects it."))
        .attribute(Attribute::bool("iap_enabled").computed().description(
            "Whether IAP is enabled on the service as last read. A change made outside Terraform shows as drift and the next apply restores it.",
        ))
        .attribute(Attribute::bool("iap_invoker_granted").computed().description(
            "Whether the IAP service agent holds `roles/run.invoker` on the service as last read.",
        ))
        .block(crate::framework::schema::timeouts_block(true, true, true)),
    )
}

// ---- validate --------------------------------------------------------------------------------

fn validate(config: &Value) -> Diagnostics {
    let mut diags = common::validate_common(config);
    diags.extend(common::validate_timeouts(config));
    if let Some(s) = config.get_str("service") {
        if !names::is_run_service(s) {
            diags.attribute_error(
                AttributePath::attr("service"),
                "Invalid service name",
                format!("{s:?} is not a Cloud Run service name: lower-case letters, digits and hyphens, starting with a letter, at most 49 characters. Give the name, not the full resource path."),
            );
        }
    }
    if let Some(l) = config.get_str("location") {
        if !names::is_region(l) {
            diags.attribute_error(
                AttributePath::attr("location"),
                "Invalid location",
                format!("{l:?} is not a region such as us-central1; Cloud Run services live in regions, not zones."),
            );
        }
    }
    diags
}

#[async_trait]
impl Resource<Context> for ServiceIap {
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
        if let Err(e) = names::parse_service_id(id) {
            diagnostics.error("Invalid import id", e);
        } else {
            diagnostics.error(
                "Not implemented yet",
                "Import of iaprun_service_iap is not implemented in this build.",
            );
        }
        ImportResponse {
            diagnostics,
            ..ImportResponse::default()
        }
    }
}
