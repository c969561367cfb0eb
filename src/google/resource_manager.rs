//! Cloud Resource Manager v1: project id ↔ number and the project's parent.

use std::sync::Arc;

use serde::Deserialize;

use super::error::Error;
use super::transport::{Api, BaseUrl, Call, Transport};

/// A project as the provider needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Project {
    pub project_id: String,
    pub project_number: String,
    /// `ACTIVE`, `DELETE_REQUESTED`, ...
    pub lifecycle_state: Option<String>,
    /// Organization or folder; `None` for a project outside any organization.
    pub parent: Option<ProjectParent>,
}

/// The parent of a project.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ProjectParent {
    /// `organization` or `folder`.
    #[serde(rename = "type")]
    pub kind: String,
    pub id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ProjectWire {
    #[serde(default)]
    project_id: Option<String>,
    #[serde(default)]
    project_number: Option<String>,
    #[serde(default)]
    lifecycle_state: Option<String>,
    #[serde(default)]
    parent: Option<ProjectParent>,
}

/// Cloud Resource Manager client.
#[derive(Debug, Clone)]
pub struct ResourceManagerClient {
    transport: Arc<Transport>,
    base: BaseUrl,
}

impl ResourceManagerClient {
    pub(crate) fn new(transport: Arc<Transport>, base: BaseUrl) -> ResourceManagerClient {
        ResourceManagerClient { transport, base }
    }

    /// projects.get (v1). A missing project answers 403 like a denied one.
    pub async fn project(&self, project: &str) -> Result<Project, Error> {
        let url = self.base.join(["v1", "projects", project]);
        let wire: ProjectWire = match self
            .transport
            .send_as(Call::get(Api::ResourceManager, url))
            .await
        {
            Ok(wire) => wire,
            Err(e) if e.http_status() == Some(403) && !e.is_service_disabled() => {
                return Err(e.with_hint(format!(
                    "The project {project:?} does not exist, or the credentials lack \
                     resourcemanager.projects.get on it (Google answers both with 403)"
                )))
            }
            Err(e) => return Err(e),
        };
        let project_number = wire
            .project_number
            .filter(|n| !n.is_empty())
            .ok_or_else(|| Error::decode("projects.get", "projectNumber is missing"))?;
        if !project_number.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Error::decode(
                "projects.get",
                format!("projectNumber {project_number:?} is not a number"),
            ));
        }
        Ok(Project {
            project_id: wire.project_id.unwrap_or_else(|| project.to_string()),
            project_number,
            lifecycle_state: wire.lifecycle_state,
            parent: wire.parent,
        })
    }
}
