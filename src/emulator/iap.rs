//! IAP v1: IAM policies and settings of IAP web resources: Cloud Run services
//! (`iap_web/cloud_run-{region}/services/{name}`), global and regional backend services
//! (`iap_web/compute[-{region}]/services/{name or id}`), and the levels above them. A project id
//! and its number name the same resource.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use super::compute;
use super::discovery::{discovery, Api};
use super::dispatch::{Call, Outcome, Route};
use super::error::ApiError;
use super::iam::{self, Policy};
use super::run::{camel, member_rules, ServiceKey};
use super::state::World;

/// The routes this module serves.
pub(crate) const ROUTES: &[Route] = &[
    ("v1", "iap.getIamPolicy", get_iam_policy),
    ("v1", "iap.setIamPolicy", set_iam_policy),
    ("v1", "iap.testIamPermissions", test_iam_permissions),
    ("v1", "iap.getIapSettings", get_settings),
    ("v1", "iap.updateIapSettings", update_settings),
    ("v1", "iap.validateAttributeExpression", validate_expression),
];

/// All IAP state, keyed by canonical resource name (`projects/{number}/iap_web/...`).
#[derive(Default)]
pub(crate) struct IapState {
    pub policies: BTreeMap<String, Policy>,
    pub settings: BTreeMap<String, Map<String, Value>>,
}

/// An IAP resource name resolved against the world.
struct Resolved {
    /// Canonical name: project number, backend services by name.
    key: String,
    project: String,
}

fn invalid(resource: &str) -> ApiError {
    ApiError::invalid(format!(
        "Invalid IAP resource name '{resource}'. Expected projects/{{project}}/iap_web[/compute[-{{region}}]|/cloud_run-{{region}}][/services/{{name}}]."
    ))
}

fn missing(resource: &str, what: &str) -> ApiError {
    ApiError::not_found(format!(
        "The IAP resource '{resource}' does not exist: {what} was not found."
    ))
}

fn resolve(world: &mut World, call: &Call<'_>, resource: &str) -> Result<Resolved, ApiError> {
    let parts: Vec<&str> = resource.split('/').collect();
    let (label, rest) = match parts.as_slice() {
        ["projects", label, "iap_web", rest @ ..] => (*label, rest),
        _ => return Err(invalid(resource)),
    };
    let wall = call.timestamp();
    let project = world
        .projects
        .resolve(label, &wall)
        .map_err(|e| e.to_api(label, false))?;
    let (project_id, number) = (project.id.clone(), project.number.clone());
    let base = format!("projects/{number}/iap_web");
    let key = match rest {
        [] => base,
        [kind] => {
            parse_kind(kind).ok_or_else(|| invalid(resource))?;
            format!("{base}/{kind}")
        }
        [kind, "services", name] if !name.is_empty() => match parse_kind(kind)
            .ok_or_else(|| invalid(resource))?
        {
            Kind::Compute(region) => {
                let found =
                    compute::find_backend_service(world, &project_id, region.as_deref(), name)
                        .ok_or_else(|| missing(resource, &format!("backend service '{name}'")))?;
                format!("{base}/{kind}/services/{found}")
            }
            Kind::CloudRun(region) => {
                let key = ServiceKey {
                    project: project_id.clone(),
                    location: region,
                    name: name.to_string(),
                };
                if !world.run.services.contains_key(&key) {
                    return Err(missing(resource, &format!("Cloud Run service '{name}'")));
                }
                format!("{base}/{kind}/services/{name}")
            }
        },
        _ => return Err(invalid(resource)),
    };
    Ok(Resolved {
        key,
        project: project_id,
    })
}

enum Kind {
    /// Global (None) or regional backend services.
    Compute(Option<String>),
    CloudRun(String),
}

fn parse_kind(kind: &str) -> Option<Kind> {
    if kind == "compute" {
        return Some(Kind::Compute(None));
    }
    if let Some(region) = kind.strip_prefix("compute-").filter(|r| !r.is_empty()) {
        return Some(Kind::Compute(Some(region.to_string())));
    }
    kind.strip_prefix("cloud_run-")
        .filter(|r| !r.is_empty())
        .map(|r| Kind::CloudRun(r.to_string()))
}

fn requested_version(body: &Value) -> Result<i64, ApiError> {
    match body
        .get("options")
        .and_then(|o| o.get("requestedPolicyVersion"))
    {
        None | Some(Value::Null) => Ok(0),
        Some(v) => v
            .as_i64()
            .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
            .ok_or_else(|| ApiError::invalid("Invalid requested policy version.")),
    }
}

fn get_iam_policy(world: &mut World, call: &Call<'_>) -> Result<Outcome, ApiError> {
    let resolved = resolve(world, call, call.param("resource")?)?;
    let version = requested_version(call.body)?;
    let policy = world
        .iap
        .policies
        .get(&resolved.key)
        .cloned()
        .unwrap_or_default();
    policy.render(version).map(Outcome::Json)
}

fn set_iam_policy(world: &mut World, call: &Call<'_>) -> Result<Outcome, ApiError> {
    let resolved = resolve(world, call, call.param("resource")?)?;
    let etag = iam::new_etag(world.next_seq());
    let mut policy = world
        .iap
        .policies
        .get(&resolved.key)
        .cloned()
        .unwrap_or_default();
    policy.apply(
        call.body.get("policy"),
        None,
        etag,
        &member_rules(world, &resolved.project),
    )?;
    let rendered = policy.render(3)?;
    world.iap.policies.insert(resolved.key, policy);
    Ok(Outcome::Json(rendered))
}

fn test_iam_permissions(world: &mut World, call: &Call<'_>) -> Result<Outcome, ApiError> {
    resolve(world, call, call.param("resource")?)?;
    Ok(Outcome::Json(iam::test_permissions(call.body)))
}

fn render_settings(name: &str, stored: Option<&Map<String, Value>>) -> Value {
    let mut out = stored.cloned().unwrap_or_default();
    out.insert("name".into(), json!(name));
    Value::Object(out)
}

fn get_settings(world: &mut World, call: &Call<'_>) -> Result<Outcome, ApiError> {
    let name = call.param("name")?;
    let resolved = resolve(world, call, name)?;
    Ok(Outcome::Json(render_settings(
        name,
        world.iap.settings.get(&resolved.key),
    )))
}

fn update_settings(world: &mut World, call: &Call<'_>) -> Result<Outcome, ApiError> {
    let name = call.param("name")?;
    let resolved = resolve(world, call, name)?;
    let mut input = call.body.clone();
    if !input.is_object() {
        return Err(ApiError::invalid("The request body must be IapSettings."));
    }
    let doc = discovery().doc_for(Api::Iap, "v1");
    if let Some(doc) = doc {
        doc.normalize("IapSettings", &mut input, true);
    }
    let mut input = match input {
        Value::Object(map) => map,
        _ => Map::new(),
    };
    input.remove("name");
    let existing = world
        .iap
        .settings
        .get(&resolved.key)
        .cloned()
        .unwrap_or_default();
    let mut stored = match call
        .query("updateMask")
        .map(str::trim)
        .filter(|m| !m.is_empty())
    {
        None => input,
        Some(mask) => {
            let mut stored = existing;
            for path in mask.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                let parts = mask_path(doc, path)?;
                let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
                let value = lookup(&input, &parts).cloned();
                if parts.last() == Some(&"clientSecret") && value.is_none() {
                    // Clearing the input-only secret clears what is kept of it.
                    let mut hash = parts.clone();
                    if let Some(last) = hash.last_mut() {
                        *last = "clientSecretSha256";
                    }
                    assign(&mut stored, &hash, None);
                }
                assign(&mut stored, &parts, value);
            }
            stored
        }
    };
    hash_client_secret(&mut stored);
    let mut value = Value::Object(stored);
    if let Some(doc) = doc {
        doc.normalize("IapSettings", &mut value, false);
    }
    let stored = match value {
        Value::Object(map) => map,
        _ => Map::new(),
    };
    let rendered = render_settings(name, Some(&stored));
    world.iap.settings.insert(resolved.key, stored);
    Ok(Outcome::Json(rendered))
}

/// One `updateMask` path of updateIapSettings, as field names below `IapSettings`. The documented
/// form carries the `iapSettings.` prefix; Google's client libraries send the path below the
/// message (camelCase or snake_case), which is accepted too. It must name a field of the discovery
/// document that is not output only, and name the reauth settings only as a whole ("All IAP reauth
/// settings must always be set together, using the field mask:
/// `iapSettings.accessSettings.reauthSettings`").
fn mask_path(doc: Option<&super::discovery::Doc>, path: &str) -> Result<Vec<String>, ApiError> {
    let bad = |why: &str| {
        ApiError::invalid(format!(
            "Invalid update_mask path '{path}' for IapSettings: {why}"
        ))
    };
    let field = path
        .strip_prefix("iapSettings.")
        .or_else(|| path.strip_prefix("iap_settings."))
        .unwrap_or(path);
    let parts: Vec<String> = field.split('.').map(camel).collect();
    let names: Vec<&str> = parts.iter().map(String::as_str).collect();
    if names.len() > 2 && names.starts_with(&["accessSettings", "reauthSettings"]) {
        return Err(bad("all IAP reauth settings must be set together, using the field mask iapSettings.accessSettings.reauthSettings."));
    }
    if let Some(doc) = doc {
        match doc.field("IapSettings", &names) {
            None => return Err(bad("no such field.")),
            Some(f) if f.get("readOnly").and_then(Value::as_bool) == Some(true) => {
                return Err(bad("the field is output only."))
            }
            Some(_) => {}
        }
    }
    Ok(parts)
}

/// `clientSecret` is input only: every one (the OAuth client's, the workforce pool's) is kept as
/// its SHA-256 (hex), reported as `clientSecretSha256` beside it.
fn hash_client_secret(settings: &mut Map<String, Value>) {
    if let Some(Value::String(secret)) = settings.remove("clientSecret") {
        let digest = Sha256::digest(secret.as_bytes());
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        settings.insert("clientSecretSha256".into(), json!(hex));
    }
    for child in settings.values_mut() {
        if let Value::Object(child) = child {
            hash_client_secret(child);
        }
    }
}

/// validateAttributeExpression: the expression must parse (brackets and string literals closed)
/// and act on `attributes.`, the form the discovery document describes
/// (`attributes.saml_attributes.filter(attribute, attribute.name in [...])`).
fn validate_expression(world: &mut World, call: &Call<'_>) -> Result<Outcome, ApiError> {
    resolve(world, call, call.param("name")?)?;
    let expression = call.query("expression").unwrap_or_default();
    cel_syntax(expression).map_err(ApiError::invalid)?;
    if !expression.trim_start().starts_with("attributes.") {
        return Err(ApiError::invalid(format!(
            "Invalid attribute expression '{expression}': IAP attribute expressions select from attributes (attributes.saml_attributes or attributes.iap_attributes)."
        )));
    }
    Ok(Outcome::Json(json!({})))
}

/// A syntax check of a CEL expression: not empty, brackets balanced, string literals closed.
fn cel_syntax(expression: &str) -> Result<(), String> {
    if expression.trim().is_empty() {
        return Err("The attribute expression is empty.".into());
    }
    let mut open = Vec::new();
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for c in expression.chars() {
        if let Some(q) = quote {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == q {
                quote = None;
            }
            continue;
        }
        match c {
            '"' | '\'' => quote = Some(c),
            '(' | '[' | '{' => open.push(c),
            ')' | ']' | '}' => {
                let wanted = match c {
                    ')' => '(',
                    ']' => '[',
                    _ => '{',
                };
                if open.pop() != Some(wanted) {
                    return Err(format!("Invalid attribute expression: unbalanced '{c}'."));
                }
            }
            _ => {}
        }
    }
    if quote.is_some() {
        return Err("Invalid attribute expression: a string literal is not closed.".into());
    }
    match open.pop() {
        Some(c) => Err(format!(
            "Invalid attribute expression: '{c}' is not closed."
        )),
        None => Ok(()),
    }
}

fn lookup<'a>(map: &'a Map<String, Value>, parts: &[&str]) -> Option<&'a Value> {
    let (first, rest) = parts.split_first()?;
    let child = map.get(*first)?;
    if rest.is_empty() {
        Some(child)
    } else {
        lookup(child.as_object()?, rest)
    }
}

fn assign(map: &mut Map<String, Value>, parts: &[&str], value: Option<Value>) {
    let Some((first, rest)) = parts.split_first() else {
        return;
    };
    if rest.is_empty() {
        match value {
            Some(v) => map.insert(first.to_string(), v),
            None => map.remove(*first),
        };
        return;
    }
    let child = map.entry(first.to_string()).or_insert_with(|| json!({}));
    if !child.is_object() {
        *child = json!({});
    }
    if let Some(child) = child.as_object_mut() {
        assign(child, rest, value);
    }
}

fn forget(world: &mut World, key: &str) {
    world.iap.policies.remove(key);
    world.iap.settings.remove(key);
}

/// Drop the IAP policy and settings of a deleted Cloud Run service.
pub(crate) fn forget_run_service(world: &mut World, key: &ServiceKey) {
    if let Some(number) = world.projects.get(&key.project).map(|p| p.number.clone()) {
        forget(
            world,
            &format!(
                "projects/{number}/iap_web/cloud_run-{}/services/{}",
                key.location, key.name
            ),
        );
    }
}

/// Drop the IAP policy and settings of a deleted backend service.
pub(crate) fn forget_backend_service(
    world: &mut World,
    project: &str,
    region: Option<&str>,
    name: &str,
) {
    if let Some(number) = world.projects.get(project).map(|p| p.number.clone()) {
        let kind = region.map_or_else(|| "compute".to_string(), |r| format!("compute-{r}"));
        forget(
            world,
            &format!("projects/{number}/iap_web/{kind}/services/{name}"),
        );
    }
}

/// IAP state for the admin dump.
pub(crate) fn dump(world: &World) -> Value {
    let policies: Map<String, Value> = world
        .iap
        .policies
        .iter()
        .map(|(k, p)| (k.clone(), p.render(3).unwrap_or(Value::Null)))
        .collect();
    let settings: Map<String, Value> = world
        .iap
        .settings
        .iter()
        .map(|(k, s)| (k.clone(), Value::Object(s.clone())))
        .collect();
    json!({"policies": policies, "settings": settings})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds() {
        assert!(matches!(parse_kind("compute"), Some(Kind::Compute(None))));
        assert!(
            matches!(parse_kind("compute-europe-west1"), Some(Kind::Compute(Some(r))) if r == "europe-west1")
        );
        assert!(
            matches!(parse_kind("cloud_run-us-central1"), Some(Kind::CloudRun(r)) if r == "us-central1")
        );
        assert!(parse_kind("cloud-run-us-central1").is_none());
        assert!(parse_kind("appengine-x").is_none());
    }

    #[test]
    fn cel() {
        assert!(cel_syntax("attributes.saml_attributes.filter(a, a.name in [\"x\"])").is_ok());
        assert!(
            cel_syntax("f(\"a)\")").is_ok(),
            "brackets inside strings do not count"
        );
        assert!(cel_syntax("  ").is_err());
        assert!(cel_syntax("f(a").unwrap_err().contains("not closed"));
        assert!(cel_syntax("f(a]").is_err());
        assert!(cel_syntax("f(\"a)").unwrap_err().contains("string literal"));
    }

    #[test]
    fn client_secret_is_hashed() {
        let mut settings =
            json!({"accessSettings": {"oauthSettings": {"clientId": "id", "clientSecret": "abc"}}});
        if let Some(map) = settings.as_object_mut() {
            hash_client_secret(map);
        }
        assert_eq!(
            settings["accessSettings"]["oauthSettings"]["clientSecretSha256"],
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!(settings["accessSettings"]["oauthSettings"]
            .get("clientSecret")
            .is_none());
    }
}
