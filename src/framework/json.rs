//! cty's JSON value form, decoded against a type: used for stored state (UpgradeResourceState) and
//! as the fallback encoding of DynamicValue. JSON has no unknown values.

use std::collections::BTreeMap;

use serde_json::Value as Json;

use super::schema::{Block, Nesting};
use super::value::{Number, Type, Value};

/// Decodes JSON against a type. Objects must not carry attributes the type lacks; attributes
/// the JSON lacks become null.
pub fn decode(json: &Json, ty: &Type) -> Result<Value, String> {
    decode_at(json, ty, "value")
}

fn decode_at(json: &Json, ty: &Type, at: &str) -> Result<Value, String> {
    if let Some(parked) = super::model::unpark(json) {
        return Ok(parked);
    }
    if json.is_null() {
        return Ok(Value::Null);
    }
    let mismatch = || format!("{at}: expected {}, found {}", describe(ty), kind(json));
    match ty {
        Type::String => match json {
            Json::String(s) => Ok(Value::String(s.clone())),
            // cty converts primitive JSON to string when the type asks for one.
            Json::Number(n) => Ok(Value::String(n.to_string())),
            Json::Bool(b) => Ok(Value::String(b.to_string())),
            _ => Err(mismatch()),
        },
        Type::Number => match json {
            Json::Number(n) => Number::parse(&n.to_string())
                .map(Value::Number)
                .ok_or_else(mismatch),
            Json::String(s) => Number::parse(s).map(Value::Number).ok_or_else(mismatch),
            _ => Err(mismatch()),
        },
        Type::Bool => match json {
            Json::Bool(b) => Ok(Value::Bool(*b)),
            Json::String(s) if s == "true" || s == "false" => Ok(Value::Bool(s == "true")),
            _ => Err(mismatch()),
        },
        Type::List(e) | Type::Set(e) => {
            let items = json.as_array().ok_or_else(mismatch)?;
            let values = items
                .iter()
                .enumerate()
                .map(|(i, item)| decode_at(item, e, &format!("{at}[{i}]")))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(if matches!(ty, Type::Set(_)) {
                Value::set(values)
            } else {
                Value::List(values)
            })
        }
        Type::Tuple(types) => {
            let items = json.as_array().ok_or_else(mismatch)?;
            if items.len() != types.len() {
                return Err(format!(
                    "{at}: expected {} tuple elements, found {}",
                    types.len(),
                    items.len()
                ));
            }
            let values = items
                .iter()
                .zip(types)
                .enumerate()
                .map(|(i, (item, t))| decode_at(item, t, &format!("{at}[{i}]")))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Value::Tuple(values))
        }
        Type::Map(e) => {
            let fields = json.as_object().ok_or_else(mismatch)?;
            let mut map = BTreeMap::new();
            for (k, v) in fields {
                map.insert(k.clone(), decode_at(v, e, &format!("{at}[{k:?}]"))?);
            }
            Ok(Value::Map(map))
        }
        Type::Object(attrs) => {
            let fields = json.as_object().ok_or_else(mismatch)?;
            if let Some(extra) = fields.keys().find(|k| !attrs.contains_key(*k)) {
                return Err(format!("{at}: unsupported attribute {extra:?}"));
            }
            let mut obj = BTreeMap::new();
            for (name, t) in attrs {
                let v = match fields.get(name) {
                    Some(j) => decode_at(j, t, &format!("{at}.{name}"))?,
                    None => Value::Null,
                };
                obj.insert(name.clone(), v);
            }
            Ok(Value::Object(obj))
        }
    }
}

/// Encodes a value as JSON; unknown values cannot be represented and give an error.
pub fn encode(value: &Value) -> Result<Json, String> {
    Ok(match value {
        Value::Null => Json::Null,
        Value::Unknown(_) => return Err("unknown values have no JSON form".to_string()),
        Value::Bool(b) => Json::Bool(*b),
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => Json::from(i),
            (_, Some(u), _) => Json::from(u),
            (_, _, Some(f)) => serde_json::Number::from_f64(f)
                .map(Json::Number)
                .unwrap_or(Json::Null),
            _ => Json::String(n.to_string()),
        },
        Value::String(s) => Json::String(s.clone()),
        Value::List(v) | Value::Set(v) | Value::Tuple(v) => {
            Json::Array(v.iter().map(encode).collect::<Result<_, _>>()?)
        }
        Value::Map(m) | Value::Object(m) => {
            let mut out = serde_json::Map::new();
            for (k, v) in m {
                out.insert(k.clone(), encode(v)?);
            }
            Json::Object(out)
        }
    })
}

/// Decodes stored state JSON against a block: attributes the JSON lacks (added to the schema since)
/// become null and missing repeated blocks become empty, so old state always fits the new schema.
/// Attributes the schema no longer has are dropped.
pub fn decode_block(block: &Block, json: &Json) -> Result<Value, String> {
    if let Some(parked) = super::model::unpark(json) {
        return Ok(parked);
    }
    let fields = json.as_object().ok_or("state is not a JSON object")?;
    let mut obj = BTreeMap::new();
    for a in &block.attributes {
        let v = match fields.get(&a.name) {
            Some(j) => decode_at(j, &a.ty, &a.name)?,
            None => Value::Null,
        };
        obj.insert(a.name.clone(), v);
    }
    for b in &block.blocks {
        let raw = fields.get(&b.type_name).filter(|j| !j.is_null());
        let v = match (b.nesting, raw) {
            (Nesting::Single, None) => Value::Null,
            (Nesting::Group, None) => b.block.empty_value(),
            (Nesting::List, None) => Value::List(vec![]),
            (Nesting::Set, None) => Value::Set(vec![]),
            (Nesting::Map, None) => Value::Map(BTreeMap::new()),
            (Nesting::Single | Nesting::Group, Some(j)) => decode_block(&b.block, j)?,
            (Nesting::List | Nesting::Set, Some(j)) => {
                let items = j
                    .as_array()
                    .ok_or_else(|| format!("{} is not a list", b.type_name))?;
                let values = items
                    .iter()
                    .map(|i| decode_block(&b.block, i))
                    .collect::<Result<Vec<_>, _>>()?;
                if b.nesting == Nesting::Set {
                    Value::set(values)
                } else {
                    Value::List(values)
                }
            }
            (Nesting::Map, Some(j)) => {
                let items = j
                    .as_object()
                    .ok_or_else(|| format!("{} is not a map", b.type_name))?;
                let mut map = BTreeMap::new();
                for (k, i) in items {
                    map.insert(k.clone(), decode_block(&b.block, i)?);
                }
                Value::Map(map)
            }
        };
        obj.insert(b.type_name.clone(), v);
    }
    Ok(Value::Object(obj))
}

fn describe(ty: &Type) -> &'static str {
    match ty {
        Type::String => "a string",
        Type::Number => "a number",
        Type::Bool => "a bool",
        Type::List(_) => "a list",
        Type::Set(_) => "a set",
        Type::Map(_) => "a map",
        Type::Object(_) => "an object",
        Type::Tuple(_) => "a tuple",
    }
}

fn kind(json: &Json) -> &'static str {
    match json {
        Json::Null => "null",
        Json::Bool(_) => "a bool",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "an array",
        Json::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::schema::{timeouts_block, Attribute};
    use serde_json::json;

    #[test]
    fn old_state_gains_nulls_for_new_attributes_and_drops_removed_ones() {
        let block = Block::new("r")
            .attribute(Attribute::string("service").required())
            .attribute(Attribute::bool("grant_iap_invoker").optional())
            .attribute(Attribute::string_set("ignore_checks").optional())
            .block(timeouts_block(true, true, true));
        let state = decode_block(&block, &json!({"service": "s", "gone": 1})).expect("decodes");
        assert_eq!(state.get_str("service"), Some("s"));
        assert!(state.get("grant_iap_invoker").is_null());
        assert!(state.get("timeouts").is_null());
        assert!(state.get("gone").is_null());
        assert_eq!(state.as_object().map(|o| o.len()), Some(4));
    }

    #[test]
    fn typed_decode_rejects_mismatches_with_a_path() {
        let ty = Type::Object(BTreeMap::from([(
            "members".to_string(),
            Type::set(Type::String),
        )]));
        let err = decode(&json!({"members": "x"}), &ty).expect_err("must fail");
        assert!(err.contains("value.members"), "{err}");
        let err = decode(&json!({"other": 1}), &ty).expect_err("must fail");
        assert!(err.contains("unsupported attribute"), "{err}");
        let ok = decode(&json!({"members": ["b", "a"]}), &ty).expect("decodes");
        assert_eq!(
            encode(&ok).expect("encodes"),
            json!({"members": ["a", "b"]})
        );
    }

    #[test]
    fn unknowns_have_no_json_form() {
        assert!(encode(&Value::List(vec![Value::unknown()])).is_err());
    }
}
