//! Typed models: a resource declares its state as a serde struct and reads and writes
//! [`Value`]s through it. [`Attr`] keeps Terraform's three states (null, unknown, known) apart
//! where a plan needs them; an unknown or partly unknown value round-trips unchanged, refinements
//! included.
//!
//! The bridge goes through JSON: a value not wholly known travels as a marker naming a slot that
//! holds the original [`Value`], so nothing is lost between decoding a plan and encoding it again.

use std::cell::RefCell;

use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value as Json;

use super::schema::Block;
use super::value::Value;

/// An attribute that may be null, unknown (until apply) or known.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Attr<T> {
    #[default]
    Null,
    /// Not known until apply; holds the original value (refinements, known parts).
    Unknown(Value),
    Known(T),
}

impl<T> Attr<T> {
    /// A wholly unknown value.
    pub fn unknown() -> Self {
        Attr::Unknown(Value::unknown())
    }

    /// Known for `Some`, null for `None`.
    pub fn from_option(value: Option<T>) -> Self {
        value.map_or(Attr::Null, Attr::Known)
    }

    /// The value when known.
    pub fn get(&self) -> Option<&T> {
        match self {
            Attr::Known(v) => Some(v),
            _ => None,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Attr::Null)
    }

    pub fn is_unknown(&self) -> bool {
        matches!(self, Attr::Unknown(_))
    }

    /// Null or a value: anything but unknown.
    pub fn is_known(&self) -> bool {
        !self.is_unknown()
    }
}

impl Attr<String> {
    pub fn as_deref(&self) -> Option<&str> {
        self.get().map(String::as_str)
    }
}

impl<T: Clone> Attr<T> {
    /// The value when known, else `default`.
    pub fn or(&self, default: T) -> T {
        self.get().cloned().unwrap_or(default)
    }
}

impl From<&str> for Attr<String> {
    fn from(s: &str) -> Self {
        Attr::Known(s.to_string())
    }
}

const SLOT_KEY: &str = "\u{0}iaprun-slot";

thread_local! {
    /// Values that JSON cannot carry, by index, for the conversion running on this thread.
    static SLOTS: RefCell<Vec<Value>> = const { RefCell::new(Vec::new()) };
}

fn park(value: Value) -> Json {
    let index = SLOTS.with(|s| {
        let mut slots = s.borrow_mut();
        slots.push(value);
        slots.len() - 1
    });
    serde_json::json!({ SLOT_KEY: index })
}

/// The parked value a slot marker names, if `json` is one.
pub(crate) fn unpark(json: &Json) -> Option<Value> {
    let index = json.as_object()?.get(SLOT_KEY)?.as_u64()?;
    let index = usize::try_from(index).ok()?;
    SLOTS.with(|s| s.borrow().get(index).cloned())
}

impl<T: Serialize> Serialize for Attr<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Attr::Null => serializer.serialize_none(),
            Attr::Unknown(v) => park(v.clone()).serialize(serializer),
            Attr::Known(v) => v.serialize(serializer),
        }
    }
}

impl<'de, T: DeserializeOwned> Deserialize<'de> for Attr<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let json = Json::deserialize(deserializer)?;
        if json.is_null() {
            return Ok(Attr::Null);
        }
        if let Some(value) = unpark(&json) {
            return Ok(Attr::Unknown(value));
        }
        T::deserialize(json)
            .map(Attr::Known)
            .map_err(D::Error::custom)
    }
}

fn to_json(value: &Value) -> Json {
    match value {
        Value::Object(fields) => Json::Object(
            fields
                .iter()
                .map(|(k, v)| (k.clone(), to_json(v)))
                .collect(),
        ),
        v if !v.is_wholly_known() => park(v.clone()),
        Value::Null | Value::Unknown(_) => Json::Null,
        Value::Bool(b) => Json::Bool(*b),
        Value::Number(n) => n.as_str().parse().map_or(Json::Null, Json::Number),
        Value::String(s) => Json::String(s.clone()),
        Value::List(items) | Value::Set(items) | Value::Tuple(items) => {
            Json::Array(items.iter().map(to_json).collect())
        }
        Value::Map(m) => Json::Object(m.iter().map(|(k, v)| (k.clone(), to_json(v))).collect()),
    }
}

/// Runs `f` with an empty slot table, leaving none behind.
fn with_slots<T>(f: impl FnOnce() -> T) -> T {
    SLOTS.with(|s| s.borrow_mut().clear());
    let out = f();
    SLOTS.with(|s| s.borrow_mut().clear());
    out
}

/// Reads a model from an object value (config, plan or state).
pub fn from_value<M: DeserializeOwned>(value: &Value) -> Result<M, String> {
    with_slots(|| serde_json::from_value(to_json(value)).map_err(|e| e.to_string()))
}

/// Writes a model as an object value of `block`; attributes the model lacks are null.
pub fn to_value<M: Serialize>(model: &M, block: &Block) -> Result<Value, String> {
    with_slots(|| {
        let json = serde_json::to_value(model).map_err(|e| e.to_string())?;
        super::json::decode_block(block, &json)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::{Attribute, NestedBlock, Refinements};

    #[derive(Debug, Default, Serialize, Deserialize, PartialEq)]
    struct Thing {
        name: Attr<String>,
        tags: Attr<std::collections::BTreeSet<String>>,
        size: Attr<serde_json::Number>,
        inner: Attr<Inner>,
    }

    #[derive(Debug, Default, Serialize, Deserialize, PartialEq)]
    struct Inner {
        on: Attr<bool>,
    }

    fn block() -> Block {
        Block::new("t")
            .attribute(Attribute::string("name").optional())
            .attribute(Attribute::string_set("tags").optional())
            .attribute(Attribute::number("size").optional())
            .attribute(Attribute::string("extra").computed())
            .block(NestedBlock::single(
                "inner",
                Block::new("i").attribute(Attribute::bool("on").optional()),
            ))
    }

    #[test]
    fn null_unknown_and_known_round_trip_exactly() {
        let refined = Value::Unknown(Refinements {
            not_null: true,
            ..Refinements::default()
        });
        let partial = Value::Set(vec![Value::from("a"), Value::unknown()]);
        let value = Value::object([
            ("name", refined.clone()),
            ("tags", partial.clone()),
            (
                "size",
                Value::Number(
                    crate::framework::Number::parse("12345678901234567890.5").expect("n"),
                ),
            ),
            ("extra", Value::Null),
            ("inner", Value::object([("on", Value::Bool(true))])),
        ]);
        let thing: Thing = from_value(&value).expect("decodes");
        assert_eq!(thing.name, Attr::Unknown(refined));
        assert_eq!(thing.tags, Attr::Unknown(partial));
        assert_eq!(thing.inner.get().and_then(|i| i.on.get()), Some(&true));
        assert_eq!(to_value(&thing, &block()).expect("encodes"), value);

        let empty = to_value(&Thing::default(), &block()).expect("encodes");
        assert_eq!(empty, block().empty_value());
    }
}
