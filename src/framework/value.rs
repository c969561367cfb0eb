//! Terraform's type system (cty) as plain Rust: types, values, nulls and unknowns.
//!
//! Sets are kept sorted and free of duplicates, so two sets with the same elements compare equal
//! with `==` whatever order Terraform or an API sent them in.

use std::collections::BTreeMap;
use std::fmt;

/// A cty type, as it appears in schemas (`"string"`, `["set","string"]`, `["object",{...}]`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Type {
    String,
    Number,
    Bool,
    List(Box<Type>),
    Set(Box<Type>),
    Map(Box<Type>),
    Object(BTreeMap<String, Type>),
    Tuple(Vec<Type>),
}

impl Type {
    pub fn list(element: Type) -> Self {
        Type::List(Box::new(element))
    }

    pub fn set(element: Type) -> Self {
        Type::Set(Box::new(element))
    }

    pub fn map(element: Type) -> Self {
        Type::Map(Box::new(element))
    }

    /// The type in cty's JSON form, as the `type` field of a schema attribute carries it.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::json;
        match self {
            Type::String => json!("string"),
            Type::Number => json!("number"),
            Type::Bool => json!("bool"),
            Type::List(e) => json!(["list", e.to_json()]),
            Type::Set(e) => json!(["set", e.to_json()]),
            Type::Map(e) => json!(["map", e.to_json()]),
            Type::Object(attrs) => {
                let fields: serde_json::Map<String, serde_json::Value> = attrs
                    .iter()
                    .map(|(k, t)| (k.clone(), t.to_json()))
                    .collect();
                json!(["object", fields])
            }
            Type::Tuple(elems) => {
                json!(["tuple", elems.iter().map(Type::to_json).collect::<Vec<_>>()])
            }
        }
    }

    /// Parses cty's JSON type form. `dynamic` is not supported: no schema of ours uses it.
    pub fn from_json(json: &serde_json::Value) -> Result<Self, String> {
        use serde_json::Value as J;
        match json {
            J::String(s) => match s.as_str() {
                "string" => Ok(Type::String),
                "number" => Ok(Type::Number),
                "bool" => Ok(Type::Bool),
                other => Err(format!("unsupported type {other:?}")),
            },
            J::Array(parts) => {
                let kind = parts
                    .first()
                    .and_then(J::as_str)
                    .ok_or("type array without a kind")?;
                let arg = parts.get(1).ok_or("type array without an argument")?;
                match kind {
                    "list" => Ok(Type::list(Type::from_json(arg)?)),
                    "set" => Ok(Type::set(Type::from_json(arg)?)),
                    "map" => Ok(Type::map(Type::from_json(arg)?)),
                    "object" => {
                        let fields = arg.as_object().ok_or("object type without attributes")?;
                        let mut attrs = BTreeMap::new();
                        for (k, v) in fields {
                            attrs.insert(k.clone(), Type::from_json(v)?);
                        }
                        Ok(Type::Object(attrs))
                    }
                    "tuple" => {
                        let elems = arg.as_array().ok_or("tuple type without elements")?;
                        Ok(Type::Tuple(
                            elems
                                .iter()
                                .map(Type::from_json)
                                .collect::<Result<_, _>>()?,
                        ))
                    }
                    other => Err(format!("unsupported type kind {other:?}")),
                }
            }
            _ => Err("a type must be a string or an array".to_string()),
        }
    }
}

/// A cty number, kept as its canonical decimal text so large and exact values survive round trips.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Number(String);

impl Number {
    /// Parses decimal text (`12`, `-1.5`, `1e3`); `None` if it is not a finite number.
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        if let Ok(i) = text.parse::<i64>() {
            return Some(Self(i.to_string()));
        }
        if let Ok(u) = text.parse::<u64>() {
            return Some(Self(u.to_string()));
        }
        let valid = !text.is_empty()
            && text
                .chars()
                .all(|c| c.is_ascii_digit() || matches!(c, '-' | '+' | '.' | 'e' | 'E'))
            && text.parse::<f64>().map(f64::is_finite).unwrap_or(false);
        valid.then(|| Self(text.to_string()))
    }

    pub fn from_f64(f: f64) -> Option<Self> {
        if !f.is_finite() {
            return None;
        }
        if f.fract() == 0.0 && f.abs() < 9.0e15 {
            return Some(Self((f as i64).to_string()));
        }
        Some(Self(f.to_string()))
    }

    pub fn as_i64(&self) -> Option<i64> {
        self.0.parse().ok()
    }

    pub fn as_u64(&self) -> Option<u64> {
        self.0.parse().ok()
    }

    pub fn as_f64(&self) -> Option<f64> {
        self.0.parse().ok()
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<i64> for Number {
    fn from(i: i64) -> Self {
        Self(i.to_string())
    }
}

impl fmt::Display for Number {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What Terraform already knows about an unknown value (cty refinements, msgpack extension 12).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Refinements {
    /// The value will not be null.
    pub not_null: bool,
    /// A string value will start with this prefix.
    pub string_prefix: Option<String>,
    /// Number bounds: (bound, inclusive).
    pub number_lower: Option<(Number, bool)>,
    pub number_upper: Option<(Number, bool)>,
    /// Collection length bounds.
    pub length_min: Option<u64>,
    pub length_max: Option<u64>,
}

impl Refinements {
    pub fn is_empty(&self) -> bool {
        *self == Refinements::default()
    }
}

/// A value of some [`Type`]; objects hold every attribute of their type (null when unset).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum Value {
    #[default]
    Null,
    Unknown(Refinements),
    Bool(bool),
    Number(Number),
    String(String),
    List(Vec<Value>),
    /// Sorted and deduplicated; build with [`Value::set`].
    Set(Vec<Value>),
    Map(BTreeMap<String, Value>),
    Object(BTreeMap<String, Value>),
    Tuple(Vec<Value>),
}

static NULL: Value = Value::Null;

impl Value {
    /// A wholly unknown value with no refinements.
    pub fn unknown() -> Self {
        Value::Unknown(Refinements::default())
    }

    pub fn string(s: impl Into<String>) -> Self {
        Value::String(s.into())
    }

    /// A string, or null for `None`.
    pub fn opt_string(s: Option<impl Into<String>>) -> Self {
        s.map_or(Value::Null, |s| Value::String(s.into()))
    }

    /// A set, sorted and deduplicated.
    pub fn set(elements: impl IntoIterator<Item = Value>) -> Self {
        let mut elements: Vec<Value> = elements.into_iter().collect();
        elements.sort();
        elements.dedup();
        Value::Set(elements)
    }

    /// A set of strings.
    pub fn string_set<S: Into<String>>(items: impl IntoIterator<Item = S>) -> Self {
        Value::set(items.into_iter().map(|s| Value::String(s.into())))
    }

    /// A list of strings.
    pub fn string_list<S: Into<String>>(items: impl IntoIterator<Item = S>) -> Self {
        Value::List(items.into_iter().map(|s| Value::String(s.into())).collect())
    }

    /// An object from attribute pairs.
    pub fn object<K: Into<String>>(pairs: impl IntoIterator<Item = (K, Value)>) -> Self {
        Value::Object(pairs.into_iter().map(|(k, v)| (k.into(), v)).collect())
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    pub fn is_unknown(&self) -> bool {
        matches!(self, Value::Unknown(_))
    }

    /// Known at the top level (it may still contain unknown elements).
    pub fn is_known(&self) -> bool {
        !self.is_unknown()
    }

    /// Known all the way down.
    pub fn is_wholly_known(&self) -> bool {
        match self {
            Value::Unknown(_) => false,
            Value::List(v) | Value::Set(v) | Value::Tuple(v) => {
                v.iter().all(Value::is_wholly_known)
            }
            Value::Map(m) | Value::Object(m) => m.values().all(Value::is_wholly_known),
            _ => true,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }

    pub fn as_number(&self) -> Option<&Number> {
        match self {
            Value::Number(n) => Some(n),
            _ => None,
        }
    }

    /// Elements of a list, set or tuple; empty for anything else.
    pub fn elements(&self) -> &[Value] {
        match self {
            Value::List(v) | Value::Set(v) | Value::Tuple(v) => v,
            _ => &[],
        }
    }

    /// The string elements of a list or set (non-strings are skipped).
    pub fn strings(&self) -> Vec<&str> {
        self.elements().iter().filter_map(Value::as_str).collect()
    }

    /// An object's attribute, or null when this is not an object or lacks it.
    pub fn get(&self, name: &str) -> &Value {
        match self {
            Value::Object(m) | Value::Map(m) => m.get(name).unwrap_or(&NULL),
            _ => &NULL,
        }
    }

    /// A string attribute of an object.
    pub fn get_str(&self, name: &str) -> Option<&str> {
        self.get(name).as_str()
    }

    /// Sets an attribute on an object (no effect on other kinds of value).
    pub fn set_attr(&mut self, name: &str, value: Value) {
        if let Value::Object(m) = self {
            m.insert(name.to_string(), value);
        }
    }

    /// The object's attributes, if it is one.
    pub fn as_object(&self) -> Option<&BTreeMap<String, Value>> {
        match self {
            Value::Object(m) => Some(m),
            _ => None,
        }
    }

    /// A null value of the given type's shape: objects get every attribute set to null.
    pub fn null_object(ty: &Type) -> Self {
        match ty {
            Type::Object(attrs) => {
                Value::Object(attrs.keys().map(|k| (k.clone(), Value::Null)).collect())
            }
            _ => Value::Null,
        }
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::String(s.to_string())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::String(s)
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Value::Bool(b)
    }
}

impl From<i64> for Value {
    fn from(i: i64) -> Self {
        Value::Number(Number::from(i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets_compare_equal_whatever_the_order() {
        let a = Value::string_set(["b", "a", "a"]);
        let b = Value::string_set(["a", "b"]);
        assert_eq!(a, b);
        assert_eq!(a.strings(), vec!["a", "b"]);
    }

    #[test]
    fn type_json_round_trips() {
        let ty = Type::Object(BTreeMap::from([
            ("members".to_string(), Type::set(Type::String)),
            ("n".to_string(), Type::Number),
            ("m".to_string(), Type::map(Type::list(Type::Bool))),
        ]));
        let json = ty.to_json();
        assert_eq!(json[0], "object");
        assert_eq!(json[1]["members"], serde_json::json!(["set", "string"]));
        assert_eq!(Type::from_json(&json), Ok(ty));
        assert!(Type::from_json(&serde_json::json!("dynamic")).is_err());
        assert!(Type::from_json(&serde_json::json!(["list"])).is_err());
    }

    #[test]
    fn numbers_keep_exact_text() {
        assert_eq!(
            Number::parse("007").map(|n| n.to_string()),
            Some("7".to_string())
        );
        assert_eq!(
            Number::parse("18446744073709551615").and_then(|n| n.as_u64()),
            Some(u64::MAX)
        );
        assert_eq!(Number::parse("1.5").and_then(|n| n.as_f64()), Some(1.5));
        assert_eq!(Number::parse("abc"), None);
        assert_eq!(Number::parse("inf"), None);
        assert_eq!(
            Number::from_f64(3.0).map(|n| n.to_string()),
            Some("3".to_string())
        );
    }

    #[test]
    fn get_on_missing_attribute_is_null() {
        let obj = Value::object([("a", Value::from("x"))]);
        assert_eq!(obj.get_str("a"), Some("x"));
        assert!(obj.get("b").is_null());
        assert!(Value::from(true).get("a").is_null());
        assert!(!Value::List(vec![Value::unknown()]).is_wholly_known());
    }
}
