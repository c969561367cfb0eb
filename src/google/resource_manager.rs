//! Cloud Resource Manager v1: project id ↔ number and the project's parent.

use std::sync::Arc;

use serde::Deserialize;

use super::error::Error;
use super::operation::with_verb;
use super::transport::{Api, BaseUrl, Call, Replay, Transport};

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

#[derive(Deserialize)]
struct AncestryWire {
    #[serde(default)]
    ancestor: Vec<AncestorWire>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AncestorWire {
    resource_id: ProjectParent,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct OrganizationWire {
    #[serde(default)]
    display_name: Option<String>,
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

    /// projects.getIamPolicy (v1, a read-only POST; version 3 requested): the project's own policy,
    /// where a role granted reaches every resource of the project.
    pub async fn project_iam_policy(&self, project: &str) -> Result<super::iam::Policy, Error> {
        let url = self.base.join(with_verb(
            &["v1"],
            &format!("projects/{project}"),
            "getIamPolicy",
        ));
        let call = Call::post(Api::ResourceManager, url)
            .body(serde_json::json!({ "options": { "requestedPolicyVersion": 3 } }))
            .replay(Replay::Safe);
        self.transport.send_as(call).await
    }

    /// The organization id above a project (through its folders), `None` without one. Reads the
    /// parent from projects.get and, for a project in a folder, projects.getAncestry (v1).
    pub async fn organization_of(&self, project: &Project) -> Result<Option<String>, Error> {
        match &project.parent {
            None => return Ok(None),
            Some(p) if p.kind == "organization" => return Ok(Some(p.id.clone())),
            Some(_) => {}
        }
        let name = format!("projects/{}", project.project_id);
        let url = self.base.join(with_verb(&["v1"], &name, "getAncestry"));
        // A read despite the POST: safe to replay.
        let call = Call::post(Api::ResourceManager, url)
            .body(serde_json::json!({}))
            .replay(Replay::Safe);
        let wire: AncestryWire = self.transport.send_as(call).await?;
        Ok(wire
            .ancestor
            .into_iter()
            .find(|a| a.resource_id.kind == "organization")
            .map(|a| a.resource_id.id))
    }

    /// The primary domain of an organization: organizations.get (v1) `displayName`.
    pub async fn organization_domain(&self, organization: &str) -> Result<Option<String>, Error> {
        let url = self.base.join(["v1", "organizations", organization]);
        let wire: OrganizationWire = self
            .transport
            .send_as(Call::get(Api::ResourceManager, url))
            .await?;
        Ok(wire.display_name.filter(|d| !d.trim().is_empty()))
    }
}
