//! Enum encodings: Google's front ends read an enum field as its name or its number, and print
//! numbers when the request asks `$alt=json;enum-encoding=int` (as Google's generated REST clients
//! do). The numbers are the positions in the discovery documents' `enum` lists, which follow the
//! proto declarations; `SPARSE` holds the few proto enums whose numbers are not their positions.
//! Compute is left alone: its clients declare enum fields as strings.

use serde_json::Value;

use super::discovery::{Api, Doc, Method};

/// Proto enums whose numbers skip or are declared out of order, by their discovery value lists
/// (as `google/api/launch_stage.proto`, `google/cloud/run/v2/condition.proto` and
/// `google/cloud/iap/v1/service.proto` number them). Matched on the whole list, so a document that
/// adds a value falls back to positions rather than to wrong numbers for the others.
const SPARSE: &[&[(&str, i64)]] = &[
    &[
        ("LAUNCH_STAGE_UNSPECIFIED", 0),
        ("UNIMPLEMENTED", 6),
        ("PRELAUNCH", 7),
        ("EARLY_ACCESS", 1),
        ("ALPHA", 2),
        ("BETA", 3),
        ("GA", 4),
        ("DEPRECATED", 5),
    ],
    &[
        ("COMMON_REASON_UNDEFINED", 0),
        ("UNKNOWN", 1),
        ("REVISION_FAILED", 3),
        ("PROGRESS_DEADLINE_EXCEEDED", 4),
        ("CONTAINER_MISSING", 6),
        ("CONTAINER_PERMISSION_DENIED", 7),
        ("CONTAINER_IMAGE_UNAUTHORIZED", 8),
        ("CONTAINER_IMAGE_AUTHORIZATION_CHECK_FAILED", 9),
        ("ENCRYPTION_KEY_PERMISSION_DENIED", 10),
        ("ENCRYPTION_KEY_CHECK_FAILED", 11),
        ("SECRETS_ACCESS_CHECK_FAILED", 12),
        ("WAITING_FOR_OPERATION", 13),
        ("IMMEDIATE_RETRY", 14),
        ("POSTPONED_RETRY", 15),
        ("INTERNAL", 16),
        ("VPC_NETWORK_NOT_FOUND", 17),
    ],
    &[
        ("IDENTITY_SOURCE_UNSPECIFIED", 0),
        ("WORKFORCE_IDENTITY_FEDERATION", 3),
    ],
];

/// Whether an API's enum fields are proto enums (so numbers mean something to its clients).
pub(crate) fn numeric(api: Api) -> bool {
    api != Api::Compute
}

fn sparse(values: &[Value]) -> Option<&'static [(&'static str, i64)]> {
    SPARSE.iter().copied().find(|table| {
        table.len() == values.len()
            && table
                .iter()
                .zip(values)
                .all(|((name, _), value)| value.as_str() == Some(name))
    })
}

/// The number of `name` in a discovery enum list.
pub(crate) fn number_of(values: &[Value], name: &str) -> Option<i64> {
    let position = values.iter().position(|v| v.as_str() == Some(name))?;
    match sparse(values) {
        Some(table) => table.get(position).map(|(_, n)| *n),
        None => i64::try_from(position).ok(),
    }
}

/// The name of enum number `number` in a discovery enum list.
pub(crate) fn name_of(values: &[Value], number: i64) -> Option<&str> {
    let position = match sparse(values) {
        Some(table) => table.iter().position(|(_, n)| *n == number)?,
        None => usize::try_from(number).ok()?,
    };
    values.get(position).and_then(Value::as_str)
}

/// Apply `leaf` to every enum value in `value`, walking it along `schema`.
fn walk(
    doc: &Doc,
    schema: &Value,
    value: &mut Value,
    leaf: &mut dyn FnMut(&[Value], &mut Value),
    depth: usize,
) {
    if depth > 64 {
        return;
    }
    let schema = doc.resolve(schema);
    match value {
        Value::Object(object) => {
            let properties = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties");
            for (key, child) in object.iter_mut() {
                if let Some(property) = properties.and_then(|p| p.get(key)).or(additional) {
                    walk(doc, property, child, leaf, depth + 1);
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for item in items.iter_mut() {
                    walk(doc, item_schema, item, leaf, depth + 1);
                }
            }
        }
        _ => {
            if let Some(values) = schema.get("enum").and_then(Value::as_array) {
                leaf(values, value);
            }
        }
    }
}

fn schema_ref(name: &str) -> Value {
    serde_json::json!({ "$ref": name })
}

/// Rewrite enum numbers in a request body to their names (Google accepts either); numbers the
/// enum does not have are left for the conformance check to reject.
pub(crate) fn body_to_names(doc: &Doc, method: &Method, body: &mut Value) {
    let (true, Some(request)) = (numeric(method.api), &method.request) else {
        return;
    };
    walk(
        doc,
        &schema_ref(request),
        body,
        &mut |values, value| {
            if let Some(name) = value.as_i64().and_then(|n| name_of(values, n)) {
                *value = Value::String(name.to_string());
            }
        },
        0,
    );
}

/// Rewrite enum-typed query parameters given as numbers to their names.
pub(crate) fn query_to_names(method: &Method, query: &mut [(String, String)]) {
    if !numeric(method.api) {
        return;
    }
    for (name, value) in query.iter_mut() {
        let values = method
            .query_parameter(name)
            .and_then(|p| p.get("enum"))
            .and_then(Value::as_array);
        if let Some(found) = values.and_then(|v| name_of(v, value.parse().ok()?)) {
            *value = found.to_string();
        }
    }
}

/// Rewrite enum names in a response to their numbers (`enum-encoding=int`).
pub(crate) fn response_to_numbers(doc: &Doc, method: &Method, body: &mut Value) {
    let (true, Some(response)) = (numeric(method.api), &method.response) else {
        return;
    };
    walk(
        doc,
        &schema_ref(response),
        body,
        &mut |values, value| {
            if let Some(number) = value.as_str().and_then(|name| number_of(values, name)) {
                *value = Value::from(number);
            }
        },
        0,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::emulator::discovery::discovery;
    use serde_json::json;

    #[test]
    fn positions_and_sparse_numbers() {
        let plain = [json!("STATE_UNSPECIFIED"), json!("CONDITION_PENDING")];
        assert_eq!(number_of(&plain, "CONDITION_PENDING"), Some(1));
        assert_eq!(name_of(&plain, 1), Some("CONDITION_PENDING"));
        assert_eq!(name_of(&plain, 2), None);
        let doc = discovery().doc_for(Api::Run, "v2").unwrap();
        let stage = doc.schema("GoogleCloudRunV2Service").unwrap()["properties"]["launchStage"]
            ["enum"]
            .as_array()
            .unwrap();
        assert_eq!(number_of(stage, "GA"), Some(4));
        assert_eq!(name_of(stage, 6), Some("UNIMPLEMENTED"));
    }

    #[test]
    fn every_sparse_table_names_a_document_enum() {
        // A table that matches no list any more (a value added upstream) would silently stop
        // applying: fail here instead.
        let mut lists = Vec::new();
        for (api, version) in [(Api::Run, "v2"), (Api::Iap, "v1")] {
            let doc = discovery().doc_for(api, version).unwrap();
            collect_enums(&serde_json::to_value(doc_schemas(doc)).unwrap(), &mut lists);
        }
        for table in SPARSE {
            assert!(
                lists.iter().any(|l| sparse(l) == Some(*table)),
                "{:?} matches no enum list",
                table[0]
            );
        }
    }

    fn doc_schemas(doc: &Doc) -> Vec<Value> {
        [
            "GoogleCloudRunV2Service",
            "GoogleCloudRunV2Condition",
            "AccessSettings",
        ]
        .iter()
        .filter_map(|n| doc.schema(n).cloned())
        .collect()
    }

    fn collect_enums(value: &Value, out: &mut Vec<Vec<Value>>) {
        match value {
            Value::Object(o) => {
                if let Some(list) = o.get("enum").and_then(Value::as_array) {
                    out.push(list.clone());
                }
                o.values().for_each(|v| collect_enums(v, out));
            }
            Value::Array(a) => a.iter().for_each(|v| collect_enums(v, out)),
            _ => {}
        }
    }

    #[test]
    fn request_and_response_rewrites() {
        let d = discovery();
        let method = d
            .method(Api::Run, "v2", "run.projects.locations.services.create")
            .unwrap();
        let doc = d.doc(method).unwrap();
        let mut body =
            json!({"ingress": 1, "launchStage": 4, "template": {"executionEnvironment": 2}});
        body_to_names(doc, method, &mut body);
        assert_eq!(
            body,
            json!({"ingress": "INGRESS_TRAFFIC_ALL", "launchStage": "GA",
                   "template": {"executionEnvironment": "EXECUTION_ENVIRONMENT_GEN2"}})
        );
        let get = d
            .method(Api::Run, "v2", "run.projects.locations.services.get")
            .unwrap();
        let mut answer = json!({"ingress": "INGRESS_TRAFFIC_INTERNAL_ONLY", "launchStage": "GA",
            "terminalCondition": {"state": "CONDITION_SUCCEEDED", "reason": "REVISION_FAILED"},
            "labels": {"GA": "GA"}});
        response_to_numbers(doc, get, &mut answer);
        assert_eq!(
            answer,
            json!({"ingress": 2, "launchStage": 4,
                   "terminalCondition": {"state": 4, "reason": 3}, "labels": {"GA": "GA"}})
        );
    }

    #[test]
    fn compute_keeps_names() {
        let d = discovery();
        let method = d
            .method(Api::Compute, "v1", "compute.backendServices.get")
            .unwrap();
        let mut answer = json!({"loadBalancingScheme": "EXTERNAL_MANAGED"});
        response_to_numbers(d.doc(method).unwrap(), method, &mut answer);
        assert_eq!(answer, json!({"loadBalancingScheme": "EXTERNAL_MANAGED"}));
    }
}
