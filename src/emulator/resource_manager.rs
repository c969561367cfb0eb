//! Cloud Resource Manager v1 / v3: projects (created on first use, id and number interchangeable)
//! and their organizations.

use serde_json::{json, Map, Value};

use super::dispatch::{Call, Outcome, Route};
use super::error::ApiError;
use super::state::{Project, World};

/// The routes this module serves.
pub(crate) const ROUTES: &[Route] = &[
    ("v1", "cloudresourcemanager.projects.get", v1_project),
    (
        "v1",
        "cloudresourcemanager.projects.getAncestry",
        v1_ancestry,
    ),
    (
        "v1",
        "cloudresourcemanager.organizations.get",
        v1_organization,
    ),
    (
        "v1",
        "cloudresourcemanager.projects.getIamPolicy",
        v1_get_iam_policy,
    ),
    (
        "v1",
        "cloudresourcemanager.projects.setIamPolicy",
        v1_set_iam_policy,
    ),
    ("v3", "cloudresourcemanager.projects.get", v3_project),
    (
        "v3",
        "cloudresourcemanager.organizations.get",
        v3_organization,
    ),
];

/// Resource Manager answers 403 for anything the caller cannot see, including projects that do not exist.
fn hidden(what: &str) -> ApiError {
    ApiError::permission_denied(format!("The caller does not have permission ({what})."))
        .with_detail(json!({"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "IAM_PERMISSION_DENIED",
                            "domain": "cloudresourcemanager.googleapis.com"}))
}

fn project<'a>(
    world: &'a mut World,
    call: &Call<'_>,
    ident: &str,
) -> Result<&'a Project, ApiError> {
    let wall = call.timestamp();
    world
        .projects
        .resolve(ident, &wall)
        .map(|p| &*p)
        .map_err(|_| hidden(&format!("projects/{ident}")))
}

fn v1_view(project: &Project) -> Value {
    let mut out = Map::new();
    out.insert("projectNumber".into(), json!(project.number));
    out.insert("projectId".into(), json!(project.id));
    out.insert("lifecycleState".into(), json!("ACTIVE"));
    out.insert("name".into(), json!(project.id));
    out.insert("createTime".into(), json!(project.create_time));
    if let Some(parent) = &project.parent {
        out.insert(
            "parent".into(),
            json!({"type": parent.kind, "id": parent.id}),
        );
    }
    Value::Object(out)
}

fn v1_project(world: &mut World, call: &Call<'_>) -> Result<Outcome, ApiError> {
    let ident = call.param("projectId")?;
    Ok(Outcome::Json(v1_view(project(world, call, ident)?)))
}

fn v1_ancestry(world: &mut World, call: &Call<'_>) -> Result<Outcome, ApiError> {
    let ident = call.param("projectId")?;
    let project = project(world, call, ident)?;
    let mut ancestors = vec![json!({"resourceId": {"type": "project", "id": project.id}})];
    if let Some(parent) = &project.parent {
        ancestors.push(json!({"resourceId": {"type": parent.kind, "id": parent.id}}));
    }
    Ok(Outcome::Json(json!({ "ancestor": ancestors })))
}

fn v3_project(world: &mut World, call: &Call<'_>) -> Result<Outcome, ApiError> {
    let name = call.param("name")?;
    let ident = name.strip_prefix("projects/").unwrap_or(name);
    let project = project(world, call, ident)?;
    let mut out = Map::new();
    out.insert("name".into(), json!(format!("projects/{}", project.number)));
    if let Some(parent) = &project.parent {
        out.insert(
            "parent".into(),
            json!(format!("{}s/{}", parent.kind, parent.id)),
        );
    }
    out.insert("projectId".into(), json!(project.id));
    out.insert("state".into(), json!("ACTIVE"));
    out.insert("displayName".into(), json!(project.id));
    out.insert("createTime".into(), json!(project.create_time));
    out.insert("updateTime".into(), json!(project.create_time));
    out.insert("etag".into(), json!(format!("W/\"{}\"", project.number)));
    Ok(Outcome::Json(Value::Object(out)))
}

/// The domain of an organization some project belongs to.
fn organization_domain(world: &World, id: &str) -> Option<String> {
    if id == super::state::DEFAULT_ORGANIZATION {
        let domain = world
            .projects
            .all()
            .find(|p| {
                p.parent
                    .as_ref()
                    .is_some_and(|parent| parent.kind == "organization" && parent.id == id)
            })
            .map(|p| p.organization_domain.clone());
        return Some(
            domain.unwrap_or_else(|| super::state::DEFAULT_ORGANIZATION_DOMAIN.to_string()),
        );
    }
    world
        .projects
        .all()
        .find(|p| {
            p.parent
                .as_ref()
                .is_some_and(|parent| parent.kind == "organization" && parent.id == id)
        })
        .map(|p| p.organization_domain.clone())
}

fn organization_id<'a>(call: &Call<'a>) -> Result<&'a str, ApiError> {
    let name = call.param("name")?;
    Ok(name.strip_prefix("organizations/").unwrap_or(name))
}

fn v1_organization(world: &mut World, call: &Call<'_>) -> Result<Outcome, ApiError> {
    let id = organization_id(call)?;
    let domain =
        organization_domain(world, id).ok_or_else(|| hidden(&format!("organizations/{id}")))?;
    Ok(Outcome::Json(json!({
        "name": format!("organizations/{id}"),
        "displayName": domain,
        "owner": {"directoryCustomerId": format!("C0{}", id.chars().take(7).collect::<String>())},
        "lifecycleState": "ACTIVE",
        "creationTime": "2020-01-01T00:00:00Z",
    })))
}

fn v3_organization(world: &mut World, call: &Call<'_>) -> Result<Outcome, ApiError> {
    let id = organization_id(call)?;
    let domain =
        organization_domain(world, id).ok_or_else(|| hidden(&format!("organizations/{id}")))?;
    Ok(Outcome::Json(json!({
        "name": format!("organizations/{id}"),
        "displayName": domain,
        "directoryCustomerId": format!("C0{}", id.chars().take(7).collect::<String>()),
        "state": "ACTIVE",
        "createTime": "2020-01-01T00:00:00Z",
        "updateTime": "2020-01-01T00:00:00Z",
        "etag": format!("W/\"{id}\""),
    })))
}

/// projects.getIamPolicy (v1): the project's own policy (`options.requestedPolicyVersion` in the body).
fn v1_get_iam_policy(world: &mut World, call: &Call<'_>) -> Result<Outcome, ApiError> {
    let requested = call
        .body
        .get("options")
        .and_then(|o| o.get("requestedPolicyVersion"))
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let project = project(world, call, call.param("resource")?)?;
    project.policy.render(requested).map(Outcome::Json)
}

/// projects.setIamPolicy (v1), with the etag and member rules of every IAM policy.
fn v1_set_iam_policy(world: &mut World, call: &Call<'_>) -> Result<Outcome, ApiError> {
    let (id, mut policy) = {
        let project = project(world, call, call.param("resource")?)?;
        (project.id.clone(), project.policy.clone())
    };
    let etag = super::iam::new_etag(world.next_seq());
    policy.apply(
        call.body.get("policy"),
        call.body.get("updateMask").and_then(Value::as_str),
        etag,
        &super::run::member_rules(world, &id),
    )?;
    let rendered = policy.render(3)?;
    let wall = call.timestamp();
    if let Ok(p) = world.projects.resolve(&id, &wall) {
        p.policy = policy;
    }
    Ok(Outcome::Json(rendered))
}
