//! The google provider's IAP IAM resources (`google_iap_web_*_iam_binding` and `_iam_member`) read
//! from their stored state, so that a `moved` block hands them to the access resources without a
//! destroy and a create. Attribute names and resource name forms: the google provider's generated
//! IAP IAM files (`google/services/iap/iam_iap_web_*.go`, `google/tpgiamresource/`).

use serde_json::{Map, Value as Json};

use super::access_binding::{Access, Condition};
use crate::framework::{Attr, Diagnostic, Diagnostics, MoveSource};
use crate::names::{IapResource, IapTarget};

/// The providers whose resources are taken over.
pub const PROVIDERS: &[&str] = &[
    "registry.terraform.io/hashicorp/google",
    "registry.terraform.io/hashicorp/google-beta",
];

/// The binding types `iaprun_access_binding` takes over.
pub const BINDING_TYPES: &[&str] = &[
    "google_iap_web_cloud_run_service_iam_binding",
    "google_iap_web_backend_service_iam_binding",
    "google_iap_web_region_backend_service_iam_binding",
];

/// The member types `iaprun_access_member` takes over.
pub const MEMBER_TYPES: &[&str] = &[
    "google_iap_web_cloud_run_service_iam_member",
    "google_iap_web_backend_service_iam_member",
    "google_iap_web_region_backend_service_iam_member",
];

/// The schema version every google provider release has written for these types.
const SCHEMA_VERSION: i64 = 0;

/// What kind of IAP resource a google type grants on, and the attributes that name it.
#[derive(Debug, Clone, Copy)]
struct Parent {
    /// The attribute holding the name (full IAP resource name or a shorter form).
    name: &'static str,
    /// The attribute holding the location or region, for regional kinds.
    location: Option<&'static str>,
    kind: Kind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    CloudRun,
    Backend,
    RegionBackend,
}

/// The parent of a google IAP IAM type (`google_iap_web_{parent}_iam_{binding,member}`).
fn parent(type_name: &str) -> Option<Parent> {
    let middle = type_name.strip_prefix("google_iap_web_")?;
    let middle = middle
        .strip_suffix("_iam_binding")
        .or_else(|| middle.strip_suffix("_iam_member"))?;
    Some(match middle {
        "cloud_run_service" => Parent {
            name: "cloud_run_service_name",
            location: Some("location"),
            kind: Kind::CloudRun,
        },
        "backend_service" => Parent {
            name: "web_backend_service",
            location: None,
            kind: Kind::Backend,
        },
        "region_backend_service" => Parent {
            name: "web_region_backend_service",
            location: Some("region"),
            kind: Kind::RegionBackend,
        },
        _ => return None,
    })
}

/// The grant a google IAP IAM resource's state describes.
#[derive(Debug, Clone)]
pub struct Moved<'a> {
    /// `resource`, `role` and `condition` (`ignore_checks` unset).
    pub access: Access,
    /// The policy etag the google provider last saw.
    pub etag: Attr<String>,
    /// The source's attributes, for the type-specific ones (`members`, `member`).
    attributes: &'a Map<String, Json>,
    type_name: &'a str,
}

impl Moved<'_> {
    /// The resource name, as in `access`.
    pub fn resource(&self) -> String {
        self.access.resource.get().cloned().unwrap_or_default()
    }

    /// A required string attribute of the source.
    pub fn string(&self, name: &str) -> Result<String, Diagnostic> {
        required_string(self.type_name, self.attributes, name)
    }

    /// A required set of strings of the source.
    pub fn strings(&self, name: &str) -> Result<Vec<String>, Diagnostic> {
        let items = self
            .attributes
            .get(name)
            .and_then(Json::as_array)
            .ok_or_else(|| missing(self.type_name, name, "a list of strings"))?;
        items
            .iter()
            .map(|m| m.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| missing(self.type_name, name, "a list of strings"))
    }
}

/// Reads what every google IAP IAM type has: the IAP resource, role, condition and etag. Errors
/// name the attribute of the source state at fault and what is supported.
pub fn read<'a>(source: &MoveSource<'a>) -> Result<Moved<'a>, Diagnostics> {
    let type_name = source.type_name;
    let Some(parent) = parent(type_name) else {
        return Err(Diagnostic::error(
            "Move from this resource type not supported",
            format!("{type_name} is not one of the google provider's IAP IAM types on a Cloud Run service or a backend service."),
        )
        .into());
    };
    if source.schema_version != SCHEMA_VERSION {
        return Err(Diagnostic::error(
            "Unsupported source schema version",
            format!(
                "The {type_name} state was written with schema version {}; iaprun reads version {SCHEMA_VERSION}, the one google provider releases write for this type. Move the resource with a google provider release that writes version {SCHEMA_VERSION}, or import the object instead.",
                source.schema_version
            ),
        )
        .into());
    }
    let attributes = source.state.as_object().ok_or_else(|| {
        Diagnostic::error(
            "Unreadable source state",
            format!("The {type_name} state is not a JSON object of attributes."),
        )
    })?;
    let resource = resource_name(type_name, parent, attributes)?;
    let role = required_string(type_name, attributes, "role")?;
    let condition = condition(type_name, attributes)?;
    let etag = attributes
        .get("etag")
        .and_then(Json::as_str)
        .filter(|e| !e.is_empty())
        .map(str::to_string);
    Ok(Moved {
        access: Access {
            resource: Attr::Known(resource),
            role: Attr::Known(role),
            ignore_checks: Attr::Null,
            condition: Attr::from_option(condition),
        },
        etag: Attr::from_option(etag),
        attributes,
        type_name,
    })
}

fn missing(type_name: &str, name: &str, what: &str) -> Diagnostic {
    Diagnostic::error(
        "Incomplete source state",
        format!("The {type_name} state has no {name} ({what} expected). Refresh it with the google provider (`terraform apply -refresh-only`) before moving it, or import the object instead."),
    )
}

fn required_string(
    type_name: &str,
    attributes: &Map<String, Json>,
    name: &str,
) -> Result<String, Diagnostic> {
    attributes
        .get(name)
        .and_then(Json::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .ok_or_else(|| missing(type_name, name, "a non-empty string"))
}

/// The IAP resource name the source grants on. The google provider stores the full name in the
/// name attribute after any read; the shorter forms it accepts (`{project}/{location}/{name}`,
/// `{location}/{name}`, `{name}`) take the rest from `project` and the location attribute.
fn resource_name(
    type_name: &str,
    parent: Parent,
    attributes: &Map<String, Json>,
) -> Result<String, Diagnostic> {
    let name = required_string(type_name, attributes, parent.name)?;
    let composed = if name.starts_with("projects/") {
        name.clone()
    } else {
        let parts: Vec<&str> = name.split('/').collect();
        let levels = 2 + usize::from(parent.location.is_some());
        if parts.len() > levels {
            return Err(unreadable_name(
                type_name,
                parent.name,
                &name,
                "it has too many parts",
            ));
        }
        // Missing leading parts come from the attributes: project first, then the location.
        let mut given = parts.into_iter().rev();
        let service = given.next().unwrap_or_default().to_string();
        let location = match parent.location {
            Some(attribute) => Some(match given.next() {
                Some(l) => l.to_string(),
                None => required_string(type_name, attributes, attribute)?,
            }),
            None => None,
        };
        let project = match given.next() {
            Some(p) => p.to_string(),
            None => required_string(type_name, attributes, "project")?,
        };
        let kind = match (parent.kind, location) {
            (Kind::CloudRun, Some(l)) => format!("cloud_run-{l}"),
            (Kind::RegionBackend, Some(l)) => format!("compute-{l}"),
            _ => "compute".to_string(),
        };
        format!("projects/{project}/iap_web/{kind}/services/{service}")
    };
    let parsed = IapResource::parse(&composed)
        .map_err(|e| unreadable_name(type_name, parent.name, &name, &e))?;
    let kind = match parsed.target {
        IapTarget::CloudRun { .. } => Kind::CloudRun,
        IapTarget::BackendService { .. } => Kind::Backend,
        IapTarget::RegionBackendService { .. } => Kind::RegionBackend,
    };
    if kind != parent.kind {
        return Err(unreadable_name(
            type_name,
            parent.name,
            &name,
            "it names another kind of IAP resource than this type grants on",
        ));
    }
    Ok(parsed.to_string())
}

fn unreadable_name(type_name: &str, attribute: &str, name: &str, why: &str) -> Diagnostic {
    Diagnostic::error(
        "Unreadable source state",
        format!("The {attribute} of the {type_name} state, {name:?}, does not name an IAP resource: {why}. Refresh it with the google provider before moving it, or import the object instead."),
    )
}

/// The `condition` list (zero or one element). An empty description is the google provider's
/// way of writing none; here none is null, as a configuration without it plans.
fn condition(
    type_name: &str,
    attributes: &Map<String, Json>,
) -> Result<Option<Condition>, Diagnostic> {
    let items = match attributes.get("condition") {
        None | Some(Json::Null) => return Ok(None),
        Some(Json::Array(items)) => items,
        Some(_) => {
            return Err(missing(
                type_name,
                "condition",
                "a list of at most one condition",
            ))
        }
    };
    let Some(first) = items.first() else {
        return Ok(None);
    };
    let condition = first
        .as_object()
        .filter(|_| items.len() == 1)
        .ok_or_else(|| missing(type_name, "condition", "a list of at most one condition"))?;
    let text = |name: &str| {
        condition
            .get(name)
            .and_then(Json::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    let (Some(title), Some(expression)) = (text("title"), text("expression")) else {
        return Err(missing(
            type_name,
            "condition title and expression",
            "non-empty strings",
        ));
    };
    Ok(Some(Condition {
        title: Attr::Known(title),
        description: Attr::from_option(text("description")),
        expression: Attr::Known(expression),
    }))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;

    use super::*;
    use crate::framework::server::Server;
    use crate::framework::{Resource, Value};
    use crate::provider::IaprunProvider;
    use crate::resources::access_binding::{self, AccessBinding};
    use crate::resources::access_member::{self, AccessMember};

    const GOOGLE: &str = "registry.terraform.io/hashicorp/google";
    const RUN: &str = "projects/p-123456/iap_web/cloud_run-us-central1/services/hello";
    const ACCESSOR: &str = "roles/iap.httpsResourceAccessor";

    fn source<'a>(type_name: &'a str, state: &'a Json) -> MoveSource<'a> {
        MoveSource {
            provider: GOOGLE,
            type_name,
            schema_version: 0,
            state,
        }
    }

    /// A `google_iap_web_cloud_run_service_iam_binding` as the google provider stores it.
    fn run_binding() -> Json {
        json!({
            "id": format!("{RUN}/{ACCESSOR}/office"),
            "project": "p-123456",
            "location": "us-central1",
            "cloud_run_service_name": RUN,
            "role": ACCESSOR,
            "members": ["user:a@example.com", "group:g@example.com"],
            "condition": [{"title": "office", "description": "", "expression": "request.time < timestamp(\"2030-01-01T00:00:00Z\")"}],
            "etag": "BwYAAAAAAAE="
        })
    }

    fn binding(type_name: &str, state: &Json) -> Result<access_binding::Model, Diagnostics> {
        AccessBinding::move_from(&source(type_name, state))
    }

    fn detail(result: Result<impl std::fmt::Debug, Diagnostics>) -> String {
        let diagnostics = result.expect_err("an error");
        diagnostics
            .iter()
            .map(|d| format!("{}: {}", d.summary, d.detail))
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn a_cloud_run_binding_becomes_an_access_binding_with_its_condition_and_etag() {
        let moved = binding(BINDING_TYPES[0], &run_binding()).expect("moved");
        assert_eq!(moved.access.resource.get().map(String::as_str), Some(RUN));
        assert_eq!(moved.access.role.get().map(String::as_str), Some(ACCESSOR));
        let members: Vec<&str> = moved
            .members
            .get()
            .expect("members")
            .iter()
            .map(String::as_str)
            .collect();
        assert_eq!(members, ["group:g@example.com", "user:a@example.com"]);
        let condition = moved.access.condition.get().expect("condition");
        assert_eq!(condition.title.get().map(String::as_str), Some("office"));
        assert!(
            condition.description.is_null(),
            "an empty description is none: {condition:?}"
        );
        assert!(condition
            .expression
            .get()
            .is_some_and(|e| e.starts_with("request.time <")));
        assert_eq!(moved.etag.get().map(String::as_str), Some("BwYAAAAAAAE="));
        assert_eq!(
            moved.id.get().cloned(),
            Some(format!("{RUN} {ACCESSOR} office"))
        );
        assert!(moved.access.ignore_checks.is_null());

        // A description the condition has is kept; no condition at all is null.
        let mut state = run_binding();
        state["condition"][0]["description"] = json!("Office hours");
        let moved = binding(BINDING_TYPES[0], &state).expect("moved");
        let condition = moved.access.condition.get().expect("condition");
        assert_eq!(
            condition.description.get().map(String::as_str),
            Some("Office hours")
        );
        state["condition"] = json!([]);
        state["etag"] = json!("");
        let moved = binding(BINDING_TYPES[0], &state).expect("moved");
        assert!(moved.access.condition.is_null());
        assert!(moved.etag.is_null());
        assert_eq!(moved.id.get().cloned(), Some(format!("{RUN} {ACCESSOR}")));
    }

    #[test]
    fn shorter_names_take_project_and_location_from_their_attributes() {
        let cases = [
            (
                BINDING_TYPES[0],
                json!({"cloud_run_service_name": "hello", "project": "p-123456", "location": "us-central1"}),
                RUN,
            ),
            (
                BINDING_TYPES[0],
                json!({"cloud_run_service_name": "us-central1/hello", "project": "p-123456"}),
                RUN,
            ),
            (
                BINDING_TYPES[0],
                json!({"cloud_run_service_name": "p-123456/us-central1/hello"}),
                RUN,
            ),
            (
                BINDING_TYPES[1],
                json!({"web_backend_service": "projects/p-123456/iap_web/compute/services/web", "project": "p-123456"}),
                "projects/p-123456/iap_web/compute/services/web",
            ),
            (
                BINDING_TYPES[1],
                json!({"web_backend_service": "p-123456/web"}),
                "projects/p-123456/iap_web/compute/services/web",
            ),
            (
                BINDING_TYPES[2],
                json!({"web_region_backend_service": "projects/p-123456/iap_web/compute-europe-west1/services/web", "region": "europe-west1"}),
                "projects/p-123456/iap_web/compute-europe-west1/services/web",
            ),
            (
                BINDING_TYPES[2],
                json!({"web_region_backend_service": "web", "region": "europe-west1", "project": "p-123456"}),
                "projects/p-123456/iap_web/compute-europe-west1/services/web",
            ),
        ];
        for (type_name, parent, expected) in cases {
            let mut state = json!({"role": ACCESSOR, "members": ["user:a@example.com"]});
            for (k, v) in parent.as_object().expect("object") {
                state[k] = v.clone();
            }
            let moved =
                binding(type_name, &state).unwrap_or_else(|e| panic!("{type_name} {state}: {e:?}"));
            assert_eq!(
                moved.access.resource.get().map(String::as_str),
                Some(expected),
                "{type_name} {state}"
            );
        }
    }

    #[test]
    fn a_member_becomes_an_access_member() {
        let state = json!({
            "id": format!("projects/p-123456/iap_web/compute/services/web/{ACCESSOR}/user:a@example.com"),
            "project": "p-123456",
            "web_backend_service": "projects/p-123456/iap_web/compute/services/web",
            "role": ACCESSOR,
            "member": "user:a@example.com",
            "condition": [],
            "etag": "BwYAAAAAAAE="
        });
        let moved: access_member::Model =
            AccessMember::move_from(&source(MEMBER_TYPES[1], &state)).expect("moved");
        assert_eq!(
            moved.member.get().map(String::as_str),
            Some("user:a@example.com")
        );
        assert_eq!(
            moved.id.get().cloned(),
            Some(format!(
                "projects/p-123456/iap_web/compute/services/web {ACCESSOR} user:a@example.com"
            ))
        );
        assert!(moved.access.condition.is_null());
    }

    #[test]
    fn incomplete_or_unknown_source_states_are_errors_that_say_what_is_read() {
        let mut newer = run_binding();
        let with_version = |state: &Json, version| {
            AccessBinding::move_from(&MoveSource {
                schema_version: version,
                ..source(BINDING_TYPES[0], state)
            })
        };
        assert!(
            detail(with_version(&newer, 1)).contains("schema version 1; iaprun reads version 0")
        );
        let problems = [
            ("role", json!(null), "has no role"),
            ("members", json!(null), "has no members"),
            ("members", json!([1]), "has no members"),
            (
                "cloud_run_service_name",
                json!(null),
                "has no cloud_run_service_name",
            ),
            (
                "cloud_run_service_name",
                json!("projects/p-123456/iap_web/compute/services/web"),
                "another kind of IAP resource",
            ),
            ("cloud_run_service_name", json!("a/b/c/d"), "too many parts"),
            (
                "cloud_run_service_name",
                json!("projects/p-123456/iap_web/cloud-run-us-central1/services/x"),
                "underscore",
            ),
            (
                "condition",
                json!([{"title": "a", "expression": "true"}, {"title": "b", "expression": "true"}]),
                "at most one condition",
            ),
            (
                "condition",
                json!([{"title": "", "expression": "true"}]),
                "condition title and expression",
            ),
        ];
        for (attribute, value, expected) in problems {
            newer = run_binding();
            newer[attribute] = value;
            let message = detail(binding(BINDING_TYPES[0], &newer));
            assert!(message.contains(expected), "{attribute}: {message}");
            assert!(
                message.contains(BINDING_TYPES[0]),
                "names the source type: {message}"
            );
        }
        assert!(detail(binding(BINDING_TYPES[0], &json!([]))).contains("not a JSON object"));
    }

    fn engine() -> Server<IaprunProvider> {
        Server::new(Arc::new(IaprunProvider::default()))
    }

    fn move_into(
        target: &str,
        provider: &str,
        type_name: &str,
        state: &Json,
    ) -> Result<Value, Diagnostics> {
        let engine = engine();
        let rt = engine.resource(target).expect("registered");
        let raw = serde_json::to_vec(state).expect("JSON");
        engine.move_state(rt, provider, type_name, 0, &raw)
    }

    #[test]
    fn the_engine_takes_over_only_the_declared_providers_and_types() {
        let state = run_binding();
        for provider in [
            GOOGLE,
            "registry.terraform.io/hashicorp/google-beta",
            "hashicorp/google",
        ] {
            let value = move_into("iaprun_access_binding", provider, BINDING_TYPES[0], &state)
                .unwrap_or_else(|e| panic!("{provider}: {e:?}"));
            assert_eq!(value.get("resource"), &Value::from(RUN));
            assert!(value.get("ignore_checks").is_null());
        }
        let other = detail(move_into(
            "iaprun_access_binding",
            "registry.terraform.io/example/google",
            BINDING_TYPES[0],
            &state,
        ));
        assert!(other.contains("registry.terraform.io/hashicorp/google or registry.terraform.io/hashicorp/google-beta only"), "{other}");
        let member = detail(move_into(
            "iaprun_access_member",
            GOOGLE,
            BINDING_TYPES[0],
            &state,
        ));
        assert!(
            member.contains(MEMBER_TYPES.join(", ").as_str()),
            "{member}"
        );
        let project_wide = detail(move_into(
            "iaprun_access_binding",
            GOOGLE,
            "google_iap_web_iam_binding",
            &state,
        ));
        assert!(
            project_wide.contains(BINDING_TYPES.join(", ").as_str()),
            "{project_wide}"
        );
        let none = detail(move_into(
            "iaprun_service_iap",
            GOOGLE,
            "google_cloud_run_v2_service",
            &json!({}),
        ));
        assert!(
            none.contains("cannot take over resources of other types"),
            "{none}"
        );
        let engine = engine();
        let rt = engine
            .resource("iaprun_access_binding")
            .expect("registered");
        let empty = detail(engine.move_state(rt, GOOGLE, BINDING_TYPES[0], 0, b""));
        assert!(empty.contains("no JSON form"), "{empty}");
    }

    /// Odd values, as a hand-edited or corrupt state may hold them.
    fn odd_values() -> Vec<Json> {
        let long = "a/".repeat(5000);
        vec![
            json!(null),
            json!(true),
            json!(0),
            json!(-1.5),
            json!(""),
            json!(" "),
            json!("/"),
            json!("//"),
            json!("projects/"),
            json!("projects/p-123456/iap_web/cloud_run-/services/"),
            json!("projects/p-123456/iap_web/compute-/services/web"),
            json!("projects/\u{0}/iap_web/compute/services/web"),
            json!("é/ü/ß"),
            json!("roles/x y"),
            json!(long),
            json!([]),
            json!([null]),
            json!([""]),
            json!([{}]),
            json!([{"title": 1, "expression": []}]),
            json!([{"title": "t", "expression": "e", "description": 7}]),
            json!({}),
            json!({"a": [1, {"b": null}]}),
        ]
    }

    #[test]
    fn no_source_state_makes_the_move_panic_and_what_moves_encodes_with_the_schema() {
        let engine = engine();
        let sources: Vec<(&str, &str)> = BINDING_TYPES
            .iter()
            .map(|t| ("iaprun_access_binding", *t))
            .chain(MEMBER_TYPES.iter().map(|t| ("iaprun_access_member", *t)))
            .collect();
        let attributes = [
            "cloud_run_service_name",
            "web_backend_service",
            "web_region_backend_service",
            "project",
            "location",
            "region",
            "role",
            "members",
            "member",
            "condition",
            "etag",
            "id",
        ];
        let base = json!({
            "cloud_run_service_name": "hello",
            "web_backend_service": "web",
            "web_region_backend_service": "web",
            "project": "p-123456",
            "location": "us-central1",
            "region": "europe-west1",
            "role": ACCESSOR,
            "members": ["user:a@example.com"],
            "member": "user:a@example.com",
            "condition": [],
            "etag": "BwYAAAAAAAE="
        });
        let mut states: Vec<Json> = odd_values();
        for attribute in attributes {
            for odd in odd_values() {
                let mut state = base.clone();
                state[attribute] = odd;
                states.push(state);
            }
        }
        let (mut moved, mut refused) = (0, 0);
        for (target, source_type) in sources {
            let rt = engine.resource(target).expect("registered");
            for state in &states {
                let raw = serde_json::to_vec(state).expect("JSON");
                for version in [0, -1, i64::MAX] {
                    let result = engine.move_state(rt, GOOGLE, source_type, version, &raw);
                    let Ok(value) = result else {
                        refused += 1;
                        continue;
                    };
                    moved += 1;
                    crate::protocol::encode_msgpack(&value, &rt.value_type)
                        .unwrap_or_else(|e| panic!("{source_type} {state}: {e:?}"));
                    for attribute in ["id", "resource", "role"] {
                        assert!(
                            value.get_str(attribute).is_some_and(|s| !s.is_empty()),
                            "{source_type} {state}: {attribute} in {value:?}"
                        );
                    }
                }
            }
        }
        assert!(moved > 0 && refused > 0, "{moved} moved, {refused} refused");
    }
}
