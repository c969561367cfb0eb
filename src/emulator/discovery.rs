//! Google's discovery documents, embedded, and the request conformance check built on them.
//!
//! Every API request is matched to a discovery method (HTTP method plus path template, `{+x}` being
//! reserved expansion that may contain `/`), then its query parameters and JSON body are checked
//! against the method's declared parameters and request schema. The emulator dispatches on the
//! matched method id, so every route it serves is a method the documents declare.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, OnceLock};

use regex::Regex;
use serde::Serialize;
use serde_json::{Map, Value};

/// The Google API a request belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum Api {
    /// Cloud Run Admin API v2.
    Run,
    /// Identity-Aware Proxy API v1.
    Iap,
    /// Compute Engine API v1.
    Compute,
    /// Service Usage API v1 and v1beta1.
    ServiceUsage,
    /// Cloud Resource Manager API v1 and v3.
    ResourceManager,
}

impl Api {
    /// Compute answers errors in its legacy shape.
    pub fn legacy_errors(self) -> bool {
        matches!(self, Api::Compute)
    }

    /// The service that must be enabled in the project for this API to answer.
    pub fn service_name(self) -> Option<&'static str> {
        match self {
            Api::Run => Some("run.googleapis.com"),
            Api::Iap => Some("iap.googleapis.com"),
            Api::Compute => Some("compute.googleapis.com"),
            Api::ServiceUsage | Api::ResourceManager => None,
        }
    }
}

struct Source {
    api: Api,
    version: &'static str,
    text: &'static str,
}

const RUN: &str = include_str!("discovery/run.v2.json");
const IAP: &str = include_str!("discovery/iap.v1.json");
const COMPUTE: &str = include_str!("discovery/compute.v1.trimmed.json");
const SERVICE_USAGE: &str = include_str!("discovery/serviceusage.v1beta1.json");
const SERVICE_USAGE_V1: &str = include_str!("discovery/serviceusage.v1.json");
const CRM_V1: &str = include_str!("discovery/cloudresourcemanager.v1.json");
const CRM_V3: &str = include_str!("discovery/cloudresourcemanager.v3.json");

/// Order matters only for ties in specificity: IAP's catch-all `^.*$` names come last.
const SOURCES: &[Source] = &[
    Source {
        api: Api::Run,
        version: "v2",
        text: RUN,
    },
    Source {
        api: Api::Compute,
        version: "v1",
        text: COMPUTE,
    },
    Source {
        api: Api::ServiceUsage,
        version: "v1beta1",
        text: SERVICE_USAGE,
    },
    Source {
        api: Api::ServiceUsage,
        version: "v1",
        text: SERVICE_USAGE_V1,
    },
    Source {
        api: Api::ResourceManager,
        version: "v1",
        text: CRM_V1,
    },
    Source {
        api: Api::ResourceManager,
        version: "v3",
        text: CRM_V3,
    },
    Source {
        api: Api::Iap,
        version: "v1",
        text: IAP,
    },
];

#[derive(Debug, Clone)]
enum Part {
    Literal(String),
    Variable { name: String, reserved: bool },
}

/// One discovery method, as served at one path template.
#[derive(Debug)]
pub struct Method {
    /// The API the method belongs to.
    pub api: Api,
    /// The API version, e.g. `v2`.
    pub version: &'static str,
    /// The discovery method id, e.g. `run.projects.locations.services.get`.
    pub id: String,
    /// `GET`, `POST`, `PATCH`, `PUT` or `DELETE`.
    pub http_method: String,
    /// The full path template, e.g. `/v2/{+name}:wait`.
    pub template: String,
    parts: Vec<Part>,
    literal_len: usize,
    doc: usize,
    parameters: Map<String, Value>,
    /// Request body schema name.
    pub request: Option<String>,
    /// Response schema name.
    pub response: Option<String>,
}

impl Method {
    /// The declaration of a query parameter of this method.
    pub(crate) fn query_parameter(&self, name: &str) -> Option<&Value> {
        self.parameters
            .get(name)
            .filter(|p| p.get("location").and_then(Value::as_str) == Some("query"))
    }

    /// Whether this method answers with a long-running operation.
    pub fn returns_operation(&self) -> bool {
        matches!(
            self.response.as_deref(),
            Some("Operation" | "GoogleLongrunningOperation")
        )
    }
}

/// A parsed discovery document.
pub struct Doc {
    /// The API the document describes.
    pub api: Api,
    /// The API version.
    pub version: &'static str,
    schemas: Map<String, Value>,
    /// The system parameters every method of the API accepts (`alt`, `fields`, `$.xgafv`...).
    parameters: Map<String, Value>,
}

/// All embedded documents and their methods.
pub struct Discovery {
    docs: Vec<Doc>,
    methods: Vec<Method>,
}

/// A request matched to its method, with decoded path parameters.
#[derive(Debug)]
pub struct Matched<'a> {
    /// The matched method.
    pub method: &'a Method,
    /// Path parameters, percent-decoded.
    pub params: BTreeMap<String, String>,
}

/// The parsed documents, built on first use.
pub fn discovery() -> &'static Discovery {
    static CELL: OnceLock<Discovery> = OnceLock::new();
    CELL.get_or_init(Discovery::load)
}

fn cached_regex(pattern: &str) -> Option<Regex> {
    static CACHE: OnceLock<Mutex<HashMap<String, Option<Regex>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    let mut cache = cache.lock().unwrap_or_else(|e| e.into_inner());
    cache
        .entry(pattern.to_string())
        .or_insert_with(|| Regex::new(&format!("^(?:{pattern})$")).ok())
        .clone()
}

fn parse_template(template: &str) -> Vec<Part> {
    let mut parts = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        if open > 0 {
            parts.push(Part::Literal(rest[..open].to_string()));
        }
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else {
            parts.push(Part::Literal(rest[open..].to_string()));
            return parts;
        };
        let inner = &after[..close];
        let (name, reserved) = match inner.strip_prefix('+') {
            Some(name) => (name.to_string(), true),
            None => (inner.to_string(), false),
        };
        parts.push(Part::Variable { name, reserved });
        rest = &after[close + 1..];
    }
    if !rest.is_empty() {
        parts.push(Part::Literal(rest.to_string()));
    }
    parts
}

/// Backtracking match of a path against template parts; variables are non-empty, and a simple
/// (non-reserved) variable never spans a `/`.
fn match_parts(parts: &[Part], path: &str, out: &mut Vec<(String, String)>) -> bool {
    let Some((first, rest)) = parts.split_first() else {
        return path.is_empty();
    };
    match first {
        Part::Literal(literal) => match path.strip_prefix(literal.as_str()) {
            Some(remaining) => match_parts(rest, remaining, out),
            None => false,
        },
        Part::Variable { name, reserved } => {
            let limit = if *reserved {
                path.len()
            } else {
                path.find('/').unwrap_or(path.len())
            };
            for end in (1..=limit).rev() {
                if !path.is_char_boundary(end) {
                    continue;
                }
                out.push((name.clone(), path[..end].to_string()));
                if match_parts(rest, &path[end..], out) {
                    return true;
                }
                out.pop();
            }
            false
        }
    }
}

/// Percent-decoding of a path segment (invalid escapes are kept verbatim).
pub fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            if let Some(byte) = hex {
                out.push(byte);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl Discovery {
    fn load() -> Discovery {
        let mut docs = Vec::new();
        let mut methods = Vec::new();
        for source in SOURCES {
            let value: Value = match serde_json::from_str(source.text) {
                Ok(value) => value,
                Err(error) => {
                    tracing::error!(api = ?source.api, %error, "embedded discovery document does not parse");
                    continue;
                }
            };
            let doc_index = docs.len();
            let service_path = value
                .get("servicePath")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            let schemas = value
                .get("schemas")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            if let Some(resources) = value.get("resources").and_then(Value::as_object) {
                collect_methods(resources, source, doc_index, &service_path, &mut methods);
            }
            let parameters = value
                .get("parameters")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            docs.push(Doc {
                api: source.api,
                version: source.version,
                schemas,
                parameters,
            });
        }
        Discovery { docs, methods }
    }

    /// Every method of every embedded document.
    pub fn methods(&self) -> &[Method] {
        &self.methods
    }

    /// The method with this id in this API version.
    pub fn method(&self, api: Api, version: &str, id: &str) -> Option<&Method> {
        self.methods
            .iter()
            .find(|m| m.api == api && m.version == version && m.id == id)
    }

    /// Find the method serving `http_method path`: the most specific template whose path parameters
    /// satisfy their declared patterns. `Err(true)` when the path exists under another HTTP method.
    pub fn find(&self, http_method: &str, path: &str) -> Result<Matched<'_>, bool> {
        let mut best: Option<(usize, Matched<'_>)> = None;
        let mut path_known = false;
        for (index, method) in self.methods.iter().enumerate() {
            let mut captured = Vec::new();
            if !match_parts(&method.parts, path, &mut captured) {
                continue;
            }
            let mut params = BTreeMap::new();
            let mut fits = true;
            for (name, raw) in captured {
                let value = percent_decode(&raw);
                if let Some(pattern) = method
                    .parameters
                    .get(&name)
                    .and_then(|p| p.get("pattern"))
                    .and_then(Value::as_str)
                {
                    if !cached_regex(pattern).is_some_and(|re| re.is_match(&value)) {
                        fits = false;
                        break;
                    }
                }
                params.insert(name, value);
            }
            if !fits {
                continue;
            }
            if !method.http_method.eq_ignore_ascii_case(http_method) {
                path_known = true;
                continue;
            }
            let better = match &best {
                None => true,
                Some((best_index, best_match)) => {
                    method.literal_len > best_match.method.literal_len
                        || (method.literal_len == best_match.method.literal_len
                            && index < *best_index)
                }
            };
            if better {
                best = Some((index, Matched { method, params }));
            }
        }
        best.map(|(_, matched)| matched).ok_or(path_known)
    }

    /// The document a method comes from.
    pub(crate) fn doc(&self, method: &Method) -> Option<&Doc> {
        self.docs.get(method.doc)
    }

    /// The document of an API version.
    pub fn doc_for(&self, api: Api, version: &str) -> Option<&Doc> {
        self.docs
            .iter()
            .find(|d| d.api == api && d.version == version)
    }

    /// Problems with a request's query string (unknown names, ill-typed or out-of-enum values).
    pub fn check_query(&self, method: &Method, query: &[(String, String)]) -> Vec<String> {
        let mut problems = Vec::new();
        for (name, value) in query {
            let declared = method
                .parameters
                .get(name)
                .filter(|p| p.get("location").and_then(Value::as_str) == Some("query"));
            let Some(declared) = declared else {
                problems.push(format!(
                    "Invalid JSON payload received. Unknown name \"{name}\": Cannot bind query parameter. \
                     Field '{name}' could not be found in request message."
                ));
                continue;
            };
            let kind = declared
                .get("type")
                .and_then(Value::as_str)
                .unwrap_or("string");
            let ok = match kind {
                "boolean" => value == "true" || value == "false",
                "integer" => value.parse::<i64>().is_ok(),
                "number" => value.parse::<f64>().is_ok(),
                _ => true,
            };
            if !ok {
                problems.push(format!(
                    "Invalid value at '{name}' ({}), \"{value}\"",
                    type_label(kind)
                ));
                continue;
            }
            if let Some(allowed) = declared.get("enum").and_then(Value::as_array) {
                if !allowed.iter().any(|a| a.as_str() == Some(value.as_str())) {
                    problems.push(format!(
                        "Invalid value at '{name}' (TYPE_ENUM), \"{value}\""
                    ));
                }
            }
        }
        problems
    }

    /// Problems with a request body: fields missing from the request schema, wrong JSON types,
    /// values outside an enum.
    pub fn check_body(&self, method: &Method, body: Option<&Value>) -> Vec<String> {
        let mut problems = Vec::new();
        let Some(body) = body else {
            return problems;
        };
        let Some(doc) = self.doc(method) else {
            return problems;
        };
        match &method.request {
            None => {
                if body.as_object().is_some_and(|o| !o.is_empty())
                    || !(body.is_object() || body.is_null())
                {
                    problems.push(format!(
                        "Invalid JSON payload received. {} takes no request body.",
                        method.id
                    ));
                }
            }
            Some(name) => {
                let schema = Value::Object(Map::from_iter([(
                    "$ref".to_string(),
                    Value::String(name.clone()),
                )]));
                doc.check(&schema, body, "", &mut problems, 0);
            }
        }
        problems
    }

    /// Problems with a response body against the method's response schema (the emulator's own
    /// fidelity check, used by tests).
    pub fn check_response(&self, method: &Method, body: &Value) -> Vec<String> {
        let mut problems = Vec::new();
        if let (Some(doc), Some(name)) = (self.doc(method), &method.response) {
            let schema = Value::Object(Map::from_iter([(
                "$ref".to_string(),
                Value::String(name.clone()),
            )]));
            doc.check(&schema, body, "", &mut problems, 0);
        }
        problems
    }
}

fn collect_methods(
    resources: &Map<String, Value>,
    source: &Source,
    doc: usize,
    service_path: &str,
    out: &mut Vec<Method>,
) {
    for resource in resources.values() {
        if let Some(methods) = resource.get("methods").and_then(Value::as_object) {
            for method in methods.values() {
                let id = method
                    .get("id")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                let path = method
                    .get("path")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let template = format!("/{service_path}{path}");
                let parts = parse_template(&template);
                let literal_len = parts
                    .iter()
                    .map(|p| match p {
                        Part::Literal(l) => l.len(),
                        Part::Variable { .. } => 0,
                    })
                    .sum();
                let schema_ref = |key: &str| {
                    method
                        .get(key)
                        .and_then(|r| r.get("$ref"))
                        .and_then(Value::as_str)
                        .map(str::to_string)
                };
                out.push(Method {
                    api: source.api,
                    version: source.version,
                    id,
                    http_method: method
                        .get("httpMethod")
                        .and_then(Value::as_str)
                        .unwrap_or("GET")
                        .to_string(),
                    template,
                    parts,
                    literal_len,
                    doc,
                    parameters: method
                        .get("parameters")
                        .and_then(Value::as_object)
                        .cloned()
                        .unwrap_or_default(),
                    request: schema_ref("request"),
                    response: schema_ref("response"),
                });
            }
        }
        if let Some(children) = resource.get("resources").and_then(Value::as_object) {
            collect_methods(children, source, doc, service_path, out);
        }
    }
}

fn type_label(kind: &str) -> &'static str {
    match kind {
        "boolean" => "TYPE_BOOL",
        "integer" => "TYPE_INT64",
        "number" => "TYPE_DOUBLE",
        "object" => "TYPE_MESSAGE",
        "array" => "TYPE_REPEATED",
        _ => "TYPE_STRING",
    }
}

fn join(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_string()
    } else {
        format!("{path}.{name}")
    }
}

fn is_duration(text: &str) -> bool {
    let Some(number) = text.strip_suffix('s') else {
        return false;
    };
    let number = number.strip_prefix('-').unwrap_or(number);
    let (whole, fraction) = number.split_once('.').unwrap_or((number, "0"));
    !whole.is_empty()
        && whole.bytes().all(|b| b.is_ascii_digit())
        && !fraction.is_empty()
        && fraction.bytes().all(|b| b.is_ascii_digit())
}

impl Doc {
    /// A schema by name.
    pub fn schema(&self, name: &str) -> Option<&Value> {
        self.schemas.get(name)
    }

    /// The schema of the field at `path` (property names) below the schema `name`; `None` when
    /// there is no such field.
    pub fn field(&self, name: &str, path: &[&str]) -> Option<&Value> {
        let mut current = self.schemas.get(name)?;
        for part in path {
            current = self.resolve(current).get("properties")?.get(*part)?;
        }
        Some(current)
    }

    /// A system parameter of the API (declared at the document's top level), by name.
    pub(crate) fn system_parameter(&self, name: &str) -> Option<&Value> {
        self.parameters.get(name)
    }

    /// Follow `$ref`s to the schema they name.
    pub(crate) fn resolve<'a>(&'a self, schema: &'a Value) -> &'a Value {
        let mut current = schema;
        for _ in 0..8 {
            match current
                .get("$ref")
                .and_then(Value::as_str)
                .and_then(|r| self.schemas.get(r))
            {
                Some(next) => current = next,
                None => break,
            }
        }
        current
    }

    fn check(
        &self,
        schema: &Value,
        value: &Value,
        path: &str,
        problems: &mut Vec<String>,
        depth: usize,
    ) {
        if value.is_null() || depth > 64 {
            return;
        }
        let schema = self.resolve(schema);
        let kind = schema.get("type").and_then(Value::as_str).unwrap_or("any");
        let shown = || serde_json::to_string(value).unwrap_or_default();
        let at = if path.is_empty() {
            String::new()
        } else {
            format!(" at '{path}'")
        };
        match kind {
            "object" => {
                let Some(object) = value.as_object() else {
                    problems.push(format!(
                        "Invalid JSON payload received. Expected an object{at}, got {}.",
                        shown()
                    ));
                    return;
                };
                let properties = schema.get("properties").and_then(Value::as_object);
                let additional = schema.get("additionalProperties");
                for (key, child) in object {
                    if let Some(property) = properties.and_then(|p| p.get(key)) {
                        self.check(property, child, &join(path, key), problems, depth + 1);
                    } else if let Some(additional) = additional {
                        self.check(
                            additional,
                            child,
                            &format!("{path}[{key}]"),
                            problems,
                            depth + 1,
                        );
                    } else if properties.is_some() || schema.get("$ref").is_some() {
                        problems.push(format!(
                            "Invalid JSON payload received. Unknown name \"{key}\"{at}: Cannot find field."
                        ));
                    }
                }
            }
            "array" => {
                let Some(items) = value.as_array() else {
                    problems.push(format!("Invalid value{at} (TYPE_REPEATED), {}", shown()));
                    return;
                };
                if let Some(item_schema) = schema.get("items") {
                    for (i, item) in items.iter().enumerate() {
                        self.check(
                            item_schema,
                            item,
                            &format!("{path}[{i}]"),
                            problems,
                            depth + 1,
                        );
                    }
                }
            }
            "string" => {
                let format = schema.get("format").and_then(Value::as_str).unwrap_or("");
                let integral = matches!(format, "int64" | "uint64");
                match value {
                    Value::String(text) => {
                        if integral && text.parse::<i128>().is_err() {
                            problems.push(format!(
                                "Invalid value at '{path}' (TYPE_INT64), \"{text}\""
                            ));
                        } else if format == "google-duration" && !is_duration(text) {
                            problems.push(format!(
                                "Invalid value at '{path}' (type.googleapis.com/google.protobuf.Duration), \
                                 Field '{path}', Illegal duration format; duration must end with 's'"
                            ));
                        } else if let Some(allowed) = schema.get("enum").and_then(Value::as_array) {
                            if !allowed.iter().any(|a| a.as_str() == Some(text.as_str())) {
                                problems.push(format!(
                                    "Invalid value at '{path}' (TYPE_ENUM), \"{text}\""
                                ));
                            }
                        }
                    }
                    Value::Number(number)
                        if integral && (number.as_i64().is_some() || number.as_u64().is_some()) => {
                    }
                    Value::Number(number) if schema.get("enum").is_some() => {
                        problems.push(format!("Invalid value at '{path}' (TYPE_ENUM), {number}"))
                    }
                    _ => problems.push(format!(
                        "Invalid value at '{path}' (TYPE_STRING), {}",
                        shown()
                    )),
                }
            }
            "integer" => {
                let ok = match value {
                    Value::Number(n) => n.as_i64().is_some() || n.as_u64().is_some(),
                    Value::String(s) => s.parse::<i64>().is_ok(),
                    _ => false,
                };
                if !ok {
                    problems.push(format!(
                        "Invalid value at '{path}' (TYPE_INT32), {}",
                        shown()
                    ));
                }
            }
            "number" => {
                let ok = match value {
                    Value::Number(_) => true,
                    Value::String(s) => {
                        s.parse::<f64>().is_ok()
                            || matches!(s.as_str(), "NaN" | "Infinity" | "-Infinity")
                    }
                    _ => false,
                };
                if !ok {
                    problems.push(format!(
                        "Invalid value at '{path}' (TYPE_DOUBLE), {}",
                        shown()
                    ));
                }
            }
            "boolean" if !value.is_boolean() => {
                problems.push(format!(
                    "Invalid value at '{path}' (TYPE_BOOL), {}",
                    shown()
                ));
            }
            _ => {}
        }
    }

    /// Rewrite `value` the way a proto3 JSON encoder would print it: fields holding their default
    /// (false, 0, "", empty list or object, `*_UNSPECIFIED` enum) are dropped, int64 numbers become
    /// strings; map entries are kept. With `drop_read_only`, output-only fields are removed too
    /// (used to turn a client's full object into the stored spec).
    pub fn normalize(&self, schema_name: &str, value: &mut Value, drop_read_only: bool) {
        let schema = Value::Object(Map::from_iter([(
            "$ref".to_string(),
            Value::String(schema_name.to_string()),
        )]));
        self.normalize_value(&schema, value, drop_read_only, 0);
    }

    fn normalize_value(
        &self,
        schema: &Value,
        value: &mut Value,
        drop_read_only: bool,
        depth: usize,
    ) {
        if depth > 64 {
            return;
        }
        let schema = self.resolve(schema);
        let kind = schema.get("type").and_then(Value::as_str).unwrap_or("any");
        match (kind, value) {
            ("object", Value::Object(object)) => {
                let properties = schema.get("properties").and_then(Value::as_object);
                let additional = schema.get("additionalProperties");
                let keys: Vec<String> = object.keys().cloned().collect();
                for key in keys {
                    if let Some(property) = properties.and_then(|p| p.get(&key)) {
                        let read_only =
                            property.get("readOnly").and_then(Value::as_bool) == Some(true);
                        if drop_read_only && read_only {
                            object.remove(&key);
                            continue;
                        }
                        if let Some(child) = object.get_mut(&key) {
                            self.normalize_value(property, child, drop_read_only, depth + 1);
                            if is_default(self.resolve(property), child) {
                                object.remove(&key);
                            }
                        }
                    } else if let Some(additional) = additional {
                        if let Some(child) = object.get_mut(&key) {
                            self.normalize_value(additional, child, drop_read_only, depth + 1);
                        }
                    }
                }
            }
            ("array", Value::Array(items)) => {
                if let Some(item_schema) = schema.get("items") {
                    for item in items.iter_mut() {
                        self.normalize_value(item_schema, item, drop_read_only, depth + 1);
                    }
                }
            }
            ("string", value @ Value::Number(_)) => {
                let format = schema.get("format").and_then(Value::as_str).unwrap_or("");
                if matches!(format, "int64" | "uint64") {
                    *value = Value::String(value.to_string());
                }
            }
            _ => {}
        }
    }
}

impl Doc {
    /// Remove the fields a schema marks output-only (recursively), leaving everything else as is.
    pub fn strip_read_only(&self, schema_name: &str, value: &mut Value) {
        let schema = Value::Object(Map::from_iter([(
            "$ref".to_string(),
            Value::String(schema_name.to_string()),
        )]));
        self.strip_value(&schema, value, 0);
    }

    fn strip_value(&self, schema: &Value, value: &mut Value, depth: usize) {
        if depth > 64 {
            return;
        }
        let schema = self.resolve(schema);
        match value {
            Value::Object(object) => {
                let Some(properties) = schema.get("properties").and_then(Value::as_object) else {
                    return;
                };
                object.retain(|key, _| {
                    properties
                        .get(key)
                        .and_then(|p| p.get("readOnly"))
                        .and_then(Value::as_bool)
                        != Some(true)
                });
                for (key, child) in object.iter_mut() {
                    if let Some(property) = properties.get(key) {
                        self.strip_value(property, child, depth + 1);
                    }
                }
            }
            Value::Array(items) => {
                if let Some(item_schema) = schema.get("items") {
                    for item in items.iter_mut() {
                        self.strip_value(item_schema, item, depth + 1);
                    }
                }
            }
            _ => {}
        }
    }
}

/// A proto3 default value of a field with this (resolved) schema, which the JSON encoding omits:
/// false, 0 (also int64 "0"), "", an `*_UNSPECIFIED` enum, an empty list or message.
fn is_default(schema: &Value, value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => {
            let format = schema.get("format").and_then(Value::as_str).unwrap_or("");
            s.is_empty()
                || (schema.get("enum").is_some() && s.ends_with("_UNSPECIFIED"))
                || (matches!(format, "int64" | "uint64") && s == "0")
        }
        Value::Array(items) => items.is_empty(),
        Value::Object(object) => object.is_empty(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn documents_load() {
        let d = discovery();
        assert_eq!(d.docs.len(), SOURCES.len());
        assert!(d
            .method(Api::Run, "v2", "run.projects.locations.services.patch")
            .is_some());
        assert!(d
            .method(Api::ServiceUsage, "v1", "serviceusage.services.get")
            .is_some());
        assert!(d
            .method(
                Api::ServiceUsage,
                "v1",
                "serviceusage.services.generateServiceIdentity"
            )
            .is_none());
    }

    #[test]
    fn reserved_expansion_and_custom_verbs() {
        let d = discovery();
        let m = d
            .find(
                "POST",
                "/v2/projects/p/locations/us-central1/operations/abc:wait",
            )
            .unwrap();
        assert_eq!(m.method.id, "run.projects.locations.operations.wait");
        assert_eq!(
            m.params["name"],
            "projects/p/locations/us-central1/operations/abc"
        );
        let m = d
            .find("GET", "/v2/projects/p/locations/l/services/s:getIamPolicy")
            .unwrap();
        assert_eq!(m.method.id, "run.projects.locations.services.getIamPolicy");
        let m = d
            .find("GET", "/v2/projects/p/locations/l/services/s")
            .unwrap();
        assert_eq!(m.method.id, "run.projects.locations.services.get");
    }

    #[test]
    fn shared_v1_prefix_is_dispatched_by_shape() {
        let d = discovery();
        let m = d
            .find(
                "POST",
                "/v1/projects/123/iap_web/compute/services/bs:getIamPolicy",
            )
            .unwrap();
        assert_eq!(
            (m.method.api, m.method.id.as_str()),
            (Api::Iap, "iap.getIamPolicy")
        );
        let m = d
            .find("GET", "/v1/projects/p/services/iap.googleapis.com")
            .unwrap();
        assert_eq!((m.method.api, m.method.version), (Api::ServiceUsage, "v1"));
        let m = d.find("GET", "/v1/projects/my-project").unwrap();
        assert_eq!(
            (m.method.api, m.method.id.as_str()),
            (Api::ResourceManager, "cloudresourcemanager.projects.get")
        );
        let m = d
            .find("POST", "/v1/projects/my-project:getIamPolicy")
            .unwrap();
        assert_eq!(m.method.api, Api::ResourceManager);
        let m = d
            .find("GET", "/compute/v1/projects/p/global/backendServices/bs")
            .unwrap();
        assert_eq!(m.method.id, "compute.backendServices.get");
        let m = d
            .find(
                "POST",
                "/compute/v1/projects/p/regions/r/operations/op-1/wait",
            )
            .unwrap();
        assert_eq!(m.method.id, "compute.regionOperations.wait");
    }

    #[test]
    fn wrong_http_method_is_reported() {
        assert!(matches!(
            discovery().find("DELETE", "/v1/projects/p/iap_web/compute:getIamPolicy"),
            Err(true)
        ));
        assert!(matches!(
            discovery().find("GET", "/nothing/here"),
            Err(false)
        ));
    }

    #[test]
    fn query_check() {
        let d = discovery();
        let m = d
            .method(Api::Run, "v2", "run.projects.locations.services.patch")
            .unwrap();
        let ok = vec![
            ("updateMask".to_string(), "iapEnabled".to_string()),
            ("validateOnly".to_string(), "true".to_string()),
        ];
        assert!(d.check_query(m, &ok).is_empty());
        let bad = vec![
            ("bogus".to_string(), "1".to_string()),
            ("validateOnly".to_string(), "yes".to_string()),
        ];
        assert_eq!(d.check_query(m, &bad).len(), 2);
    }

    #[test]
    fn body_check_finds_unknown_fields_and_bad_enums() {
        let d = discovery();
        let m = d
            .method(Api::Run, "v2", "run.projects.locations.services.patch")
            .unwrap();
        let good = json!({"iapEnabled": true, "ingress": "INGRESS_TRAFFIC_ALL", "generation": "3",
                          "template": {"containers": [{"image": "x", "ports": [{"name": "h2c", "containerPort": 8080}]}]},
                          "labels": {"a": "b"}});
        assert!(
            d.check_body(m, Some(&good)).is_empty(),
            "{:?}",
            d.check_body(m, Some(&good))
        );
        let bad = json!({"iapEnabld": true, "ingress": "EVERYONE", "template": {"containers": [{"imag": "x"}]}});
        let problems = d.check_body(m, Some(&bad));
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems
            .iter()
            .any(|p| p.contains("Unknown name \"iapEnabld\"")));
        assert!(problems
            .iter()
            .any(|p| p.contains("at 'template.containers[0]'")));
        assert!(problems.iter().any(|p| p.contains("'ingress'")));
    }

    #[test]
    fn normalize_drops_defaults_and_read_only() {
        let d = discovery();
        let doc = d.doc_for(Api::Run, "v2").unwrap();
        let mut v = json!({"iapEnabled": false, "uid": "x", "ingress": "INGRESS_TRAFFIC_ALL", "labels": {"k": ""},
                           "template": {"containers": []}});
        doc.normalize("GoogleCloudRunV2Service", &mut v, true);
        assert_eq!(
            v,
            json!({"ingress": "INGRESS_TRAFFIC_ALL", "labels": {"k": ""}})
        );
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%2Fb%3A"), "a/b:");
        assert_eq!(percent_decode("100%"), "100%");
    }
}
