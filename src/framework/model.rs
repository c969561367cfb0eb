//! Typed models: a resource declares its state as a serde struct and reads and writes
//! [`Value`]s through it. [`Attr`] keeps Terraform's three states (null, unknown, known) apart
//! where a plan needs them; an unknown or partly unknown value round-trips unchanged, refinements
//! included.
//!
//! The bridge goes through JSON: a value not wholly known travels as a marker naming a slot that
//! holds the original [`Value`], so nothing is lost between decoding a plan and encoding it again.

use std::cell::RefCell;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{
    self, DeserializeOwned, DeserializeSeed, Error as _, MapAccess, SeqAccess, Visitor,
};
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

impl Attr<std::collections::BTreeSet<String>> {
    /// The elements known at plan: all of a known set, the known ones of a partly known set (`None`
    /// when wholly unknown), none of a null one.
    pub fn known_elements(&self) -> Option<Vec<String>> {
        match self {
            Attr::Known(set) => Some(set.iter().cloned().collect()),
            Attr::Unknown(Value::Unknown(_)) => None,
            Attr::Unknown(partial) => {
                Some(partial.strings().into_iter().map(str::to_string).collect())
            }
            Attr::Null => Some(Vec::new()),
        }
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
    serde_json::json!({ SLOT_KEY: park_slot(value) })
}

/// The parked value a slot marker names, if `json` is one.
pub(crate) fn unpark(json: &Json) -> Option<Value> {
    parked(json.as_object()?.get(SLOT_KEY)?.as_u64()?)
}

fn parked(slot: u64) -> Option<Value> {
    let index = usize::try_from(slot).ok()?;
    SLOTS.with(|s| s.borrow().get(index).cloned())
}

fn park_slot(value: Value) -> u64 {
    SLOTS.with(|s| {
        let mut slots = s.borrow_mut();
        slots.push(value);
        u64::try_from(slots.len() - 1).unwrap_or(u64::MAX)
    })
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

/// The newtype name an [`Attr`] asks for, so [`ValueDeserializer`] can hand it a value that is
/// null or not wholly known directly; every other deserializer ignores the name.
const ATTR_TOKEN: &str = "\u{0}iaprun-attr";

impl<'de, T: DeserializeOwned> Deserialize<'de> for Attr<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_newtype_struct(ATTR_TOKEN, AttrVisitor(PhantomData))
    }
}

struct AttrVisitor<T>(PhantomData<T>);

impl<'de, T: DeserializeOwned> Visitor<'de> for AttrVisitor<T> {
    type Value = Attr<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an attribute value")
    }

    /// From [`ValueDeserializer`]: null.
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Attr::Null)
    }

    /// From [`ValueDeserializer`]: a value not wholly known, parked in this slot.
    fn visit_u64<E: de::Error>(self, slot: u64) -> Result<Self::Value, E> {
        parked(slot)
            .map(Attr::Unknown)
            .ok_or_else(|| E::custom("an unknown value went missing"))
    }

    /// From [`ValueDeserializer`]: a known value.
    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        T::deserialize(deserializer).map(Attr::Known)
    }

    /// From any other deserializer (JSON): null, a slot marker, or a known value.
    fn visit_newtype_struct<D: Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
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
    with_slots(|| M::deserialize(ValueDeserializer(value)).map_err(|e| e.to_string()))
}

/// Reads a [`Value`] as serde data in place, as if it were its JSON form ([`to_json`]) but
/// without building that: objects and lists are walked, strings borrowed. An [`Attr`] gets a null
/// or not wholly known value handed over directly; numbers, enums and values not wholly known
/// elsewhere go through their JSON form, so they read exactly as JSON would.
struct ValueDeserializer<'de>(&'de Value);

impl ValueDeserializer<'_> {
    fn through_json<'de, V: Visitor<'de>>(
        &self,
        read: impl FnOnce(Json, V) -> Result<V::Value, serde_json::Error>,
        visitor: V,
    ) -> Result<V::Value, de::value::Error> {
        read(to_json(self.0), visitor).map_err(de::Error::custom)
    }
}

impl<'de> Deserializer<'de> for ValueDeserializer<'de> {
    type Error = de::value::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        let fields = |entries: &'de std::collections::BTreeMap<String, Value>| Fields {
            entries: entries.iter(),
            value: None,
        };
        match self.0 {
            // As in `to_json`: an object is never parked whole, other values not wholly known are.
            Value::Object(entries) => visitor.visit_map(fields(entries)),
            v if !v.is_wholly_known() => self.through_json(|j, v| j.deserialize_any(v), visitor),
            Value::Map(entries) => visitor.visit_map(fields(entries)),
            Value::Null => visitor.visit_unit(),
            Value::Bool(b) => visitor.visit_bool(*b),
            Value::String(s) => visitor.visit_borrowed_str(s),
            Value::List(items) | Value::Set(items) | Value::Tuple(items) => {
                visitor.visit_seq(Elements(items.iter()))
            }
            _ => self.through_json(|j, v| j.deserialize_any(v), visitor),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match self.0 {
            Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        if name != ATTR_TOKEN {
            return visitor.visit_newtype_struct(self);
        }
        match self.0 {
            Value::Null => visitor.visit_none(),
            // An object is never parked whole: its attributes are, one by one.
            Value::Object(_) => visitor.visit_some(self),
            v if !v.is_wholly_known() => visitor.visit_u64(park_slot(v.clone())),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.through_json(|j, v| j.deserialize_enum(name, variants, v), visitor)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        unit unit_struct seq tuple tuple_struct map struct identifier ignored_any
    }
}

/// The attributes of an object (or entries of a map) for a visitor.
struct Fields<'de> {
    entries: std::collections::btree_map::Iter<'de, String, Value>,
    value: Option<&'de Value>,
}

impl<'de> MapAccess<'de> for Fields<'de> {
    type Error = de::value::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Self::Error> {
        let Some((key, value)) = self.entries.next() else {
            return Ok(None);
        };
        self.value = Some(value);
        seed.deserialize(de::value::BorrowedStrDeserializer::new(key))
            .map(Some)
    }

    fn next_value_seed<S: DeserializeSeed<'de>>(
        &mut self,
        seed: S,
    ) -> Result<S::Value, Self::Error> {
        let value = self
            .value
            .take()
            .ok_or_else(|| de::Error::custom("a value without its key"))?;
        seed.deserialize(ValueDeserializer(value))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.entries.len())
    }
}

/// The elements of a list, set or tuple for a visitor.
struct Elements<'de>(std::slice::Iter<'de, Value>);

impl<'de> SeqAccess<'de> for Elements<'de> {
    type Error = de::value::Error;

    fn next_element_seed<S: DeserializeSeed<'de>>(
        &mut self,
        seed: S,
    ) -> Result<Option<S::Value>, Self::Error> {
        self.0
            .next()
            .map(|item| seed.deserialize(ValueDeserializer(item)))
            .transpose()
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.0.len())
    }
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

    /// Plain serde fields next to `Attr`s: read from a value as from its JSON form.
    #[derive(Debug, Default, Deserialize, PartialEq)]
    #[serde(default)]
    struct Mixed {
        name: Option<String>,
        tags: Vec<String>,
        mode: Mode,
        size: Attr<serde_json::Number>,
        inner: Attr<Inner>,
        labels: std::collections::BTreeMap<String, String>,
    }

    #[derive(Debug, Default, Deserialize, PartialEq)]
    enum Mode {
        #[default]
        Off,
        On,
    }

    #[test]
    fn models_read_the_same_from_a_value_as_from_its_json_form() {
        let known = Value::object([
            ("name", Value::from("n")),
            ("tags", Value::string_list(["a", "b"])),
            ("mode", Value::from("On")),
            ("size", Value::from(7)),
            ("inner", Value::object([("on", Value::Bool(false))])),
            (
                "labels",
                Value::Map([("k".to_string(), Value::from("v"))].into()),
            ),
        ]);
        let sparse = Value::object([
            ("name", Value::Null),
            ("inner", Value::object([("on", Value::unknown())])),
        ]);
        for value in [known, sparse] {
            let through_json: Mixed =
                with_slots(|| serde_json::from_value(to_json(&value))).expect("JSON form reads");
            let direct: Mixed = from_value(&value).expect("value reads");
            assert_eq!(direct, through_json);
        }
        let direct: Mixed =
            from_value(&Value::object([("mode", Value::from("On"))])).expect("reads");
        assert_eq!(direct.mode, Mode::On);
        // A value that does not fit the model is an error either way.
        assert!(from_value::<Mixed>(&Value::object([("tags", Value::from("x"))])).is_err());
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
