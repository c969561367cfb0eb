//! Google's system parameters, accepted on every API as Google's front end accepts them: `alt`
//! (with `;enum-encoding=int`), `fields` (partial responses), `prettyPrint`, `$.xgafv`, `key`,
//! `quotaUser`, `access_token`... Names and allowed values come from each discovery document's
//! top-level `parameters`; each name may also be written with a leading `$` (`$alt`, `$fields`),
//! as Google's generated REST clients do.

use std::collections::BTreeMap;

use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::discovery::{Doc, Method};
use super::enums;

/// What the system parameters of one request ask for.
#[derive(Debug, Default)]
pub(crate) struct SystemParams {
    numeric_enums: bool,
    fields: Option<Selection>,
    compact: bool,
}

/// A `fields` selector: field name → sub-selection (`None`: the whole field). `*` selects all.
#[derive(Debug, Default, Clone, PartialEq)]
struct Selection(BTreeMap<String, Option<Selection>>);

/// The system parameter a query name stands for, if it is one (method parameters win).
fn system_name<'a>(doc: &Doc, method: &Method, name: &'a str) -> Option<&'a str> {
    if method.query_parameter(name).is_some() {
        return None;
    }
    if doc.system_parameter(name).is_some() {
        return Some(name);
    }
    name.strip_prefix('$')
        .filter(|bare| doc.system_parameter(bare).is_some())
}

impl SystemParams {
    /// Take the system parameters out of a query; the rest are the method's. `Err` names the
    /// offending parameter.
    pub fn split(
        doc: &Doc,
        method: &Method,
        query: Vec<(String, String)>,
    ) -> Result<(Vec<(String, String)>, SystemParams), String> {
        let mut params = SystemParams::default();
        let mut rest = Vec::new();
        for (name, value) in query {
            let Some(system) = system_name(doc, method, &name) else {
                rest.push((name, value));
                continue;
            };
            let declared = doc.system_parameter(system);
            let allowed = declared
                .and_then(|d| d.get("enum"))
                .and_then(Value::as_array);
            let invalid = || format!("Invalid value at '{name}', \"{value}\"");
            match system {
                "alt" => {
                    let mut options = value.split(';');
                    let format = options.next().unwrap_or_default();
                    if !allowed.is_some_and(|a| a.iter().any(|v| v.as_str() == Some(format))) {
                        return Err(invalid());
                    }
                    if format != "json" {
                        return Err(format!(
                            "iaprun-emulator answers JSON only: {name}={value} is not supported."
                        ));
                    }
                    for option in options {
                        match option.trim() {
                            "enum-encoding=int" => params.numeric_enums = true,
                            "enum-encoding=string" | "" => params.numeric_enums = false,
                            _ => return Err(invalid()),
                        }
                    }
                }
                "prettyPrint" => match value.as_str() {
                    "true" => params.compact = false,
                    "false" => params.compact = true,
                    _ => return Err(invalid()),
                },
                "fields" => {
                    params.fields = Some(
                        Selection::parse(&value)
                            .map_err(|e| format!("Invalid field selection {value}: {e}"))?,
                    );
                }
                _ => {
                    if allowed
                        .is_some_and(|a| !a.iter().any(|v| v.as_str() == Some(value.as_str())))
                    {
                        return Err(invalid());
                    }
                }
            }
        }
        Ok((rest, params))
    }

    /// The 200 answer: enums as numbers if asked, trimmed to `fields`, pretty unless
    /// `prettyPrint=false`.
    pub fn answer(&self, doc: Option<&Doc>, method: &Method, mut body: Value) -> Response {
        if self.numeric_enums {
            if let Some(doc) = doc {
                enums::response_to_numbers(doc, method, &mut body);
            }
        }
        if let Some(fields) = &self.fields {
            fields.apply(&mut body);
        }
        let text = if self.compact {
            serde_json::to_string(&body)
        } else {
            serde_json::to_string_pretty(&body)
        }
        .unwrap_or_else(|_| "{}".to_string());
        let mut response = text.into_response();
        response.headers_mut().insert(
            "content-type",
            HeaderValue::from_static("application/json; charset=UTF-8"),
        );
        response
    }
}

/// A query's access token (`access_token` or `oauth_token`), which authenticates like a bearer header.
pub(crate) fn has_query_token(raw_query: &str) -> bool {
    serde_urlencoded::from_str::<Vec<(String, String)>>(raw_query)
        .unwrap_or_default()
        .iter()
        .any(|(name, value)| {
            matches!(name.trim_start_matches('$'), "access_token" | "oauth_token")
                && !value.trim().is_empty()
        })
}

impl Selection {
    /// Parse `a,b/c,d(e,f/g)`.
    fn parse(text: &str) -> Result<Selection, String> {
        let mut chars = text.chars().peekable();
        let selection = Self::parse_list(&mut chars, 0)?;
        match chars.next() {
            None => Ok(selection),
            Some(c) => Err(format!("unexpected '{c}'")),
        }
    }

    fn parse_list(
        chars: &mut std::iter::Peekable<std::str::Chars<'_>>,
        depth: usize,
    ) -> Result<Selection, String> {
        if depth > 32 {
            return Err("too deeply nested".into());
        }
        let mut selection = Selection::default();
        loop {
            let mut path = vec![String::new()];
            while let Some(&c) = chars.peek() {
                match c {
                    ',' | '(' | ')' => break,
                    '/' => path.push(String::new()),
                    c if c.is_whitespace() => {}
                    c => path.last_mut().map(|p| p.push(c)).unwrap_or_default(),
                }
                chars.next();
            }
            if path.iter().any(String::is_empty) {
                return Err("empty field name".into());
            }
            let mut sub = None;
            if chars.peek() == Some(&'(') {
                chars.next();
                sub = Some(Self::parse_list(chars, depth + 1)?);
                if chars.next() != Some(')') {
                    return Err("missing ')'".into());
                }
            }
            selection.insert(&path, sub);
            match chars.peek() {
                Some(',') => {
                    chars.next();
                }
                _ => return Ok(selection),
            }
        }
    }

    fn insert(&mut self, path: &[String], leaf: Option<Selection>) {
        let Some((first, rest)) = path.split_first() else {
            return;
        };
        let sub = if rest.is_empty() {
            leaf
        } else {
            let mut child = Selection::default();
            child.insert(rest, leaf);
            Some(child)
        };
        match (self.0.get_mut(first), sub) {
            (None, sub) => {
                self.0.insert(first.clone(), sub);
            }
            // A whole field stays whole; a whole field absorbs a narrower selection.
            (Some(slot @ Some(_)), None) => *slot = None,
            (Some(Some(old)), Some(new)) => {
                for (path, sub) in new.0 {
                    old.insert(&[path], sub);
                }
            }
            (Some(None), _) => {}
        }
    }

    /// Keep only the selected fields (lists are filtered element by element).
    fn apply(&self, value: &mut Value) {
        match value {
            Value::Object(object) => {
                if self.0.contains_key("*") {
                    return;
                }
                object.retain(|key, _| self.0.contains_key(key));
                for (key, child) in object.iter_mut() {
                    if let Some(Some(sub)) = self.0.get(key) {
                        sub.apply(child);
                    }
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|item| self.apply(item)),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::emulator::discovery::{discovery, Api};
    use serde_json::json;

    fn split(id: &str, query: &[(&str, &str)]) -> Result<Vec<(String, String)>, String> {
        let method = discovery().method(Api::Run, "v2", id).unwrap();
        let doc = discovery().doc(method).unwrap();
        let query = query
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        SystemParams::split(doc, method, query).map(|(rest, _)| rest)
    }

    #[test]
    fn system_parameters_leave_the_method_parameters() {
        let rest = split(
            "run.projects.locations.services.list",
            &[
                ("$alt", "json;enum-encoding=int"),
                ("pageSize", "5"),
                ("prettyPrint", "false"),
                ("$.xgafv", "2"),
                ("key", "k"),
                ("quotaUser", "q"),
                ("$fields", "services(name)"),
            ],
        )
        .unwrap();
        assert_eq!(rest, vec![("pageSize".to_string(), "5".to_string())]);
    }

    #[test]
    fn bad_system_values_are_named() {
        let get = "run.projects.locations.services.get";
        for (name, value) in [
            ("alt", "xml"),
            ("$alt", "json;enum-encoding=roman"),
            ("alt", "proto"),
            ("$.xgafv", "3"),
            ("prettyPrint", "yes"),
            ("fields", "a(b"),
        ] {
            let error = split(get, &[(name, value)]).unwrap_err();
            assert!(error.contains(value), "{name}={value}: {error}");
        }
    }

    #[test]
    fn field_selection() {
        let selection =
            Selection::parse("services(name,terminalCondition/state),nextPageToken").unwrap();
        let mut body = json!({"services": [{"name": "a", "uid": "u", "terminalCondition": {"state": "S", "type": "Ready"}}],
                              "nextPageToken": "t", "unreachable": []});
        selection.apply(&mut body);
        assert_eq!(
            body,
            json!({"services": [{"name": "a", "terminalCondition": {"state": "S"}}], "nextPageToken": "t"})
        );
        let mut whole = json!({"a": {"b": 1, "c": 2}, "d": 3});
        Selection::parse("a").unwrap().apply(&mut whole);
        assert_eq!(whole, json!({"a": {"b": 1, "c": 2}}));
        let mut all = json!({"a": 1});
        Selection::parse("*").unwrap().apply(&mut all);
        assert_eq!(all, json!({"a": 1}));
    }
}
