//! The iaprun provider: its settings, the configured context resources run with, and the registry
//! of resource types. (Stub: settings and resources are being filled in on main.)

use std::sync::Arc;

use async_trait::async_trait;

use crate::framework::{
    Attribute, Block, ConfigureRequest, Diagnostics, Provider, Resource, Schema,
};

/// What every resource receives once the provider block is configured.
#[derive(Debug, Default)]
pub struct Context {
    pub project: Option<String>,
    pub region: Option<String>,
}

/// The provider served by `terraform-provider-iaprun`.
#[derive(Debug, Default)]
pub struct IaprunProvider;

#[async_trait]
impl Provider for IaprunProvider {
    type Context = Context;

    fn schema(&self) -> Schema {
        Schema::new(
            0,
            Block::new("Settings of the iaprun provider.")
                .attribute(
                    Attribute::string("project")
                        .optional()
                        .description("Default project."),
                )
                .attribute(
                    Attribute::string("region")
                        .optional()
                        .description("Default region."),
                ),
        )
    }

    async fn configure(&self, req: ConfigureRequest) -> Result<Context, Diagnostics> {
        Ok(Context {
            project: req.config.get_str("project").map(str::to_string),
            region: req.config.get_str("region").map(str::to_string),
        })
    }

    fn resources(&self) -> Vec<Arc<dyn Resource<Context>>> {
        vec![]
    }
}
