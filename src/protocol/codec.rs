//! cty values on the wire: msgpack (what Terraform sends and what we always reply with) and the JSON
//! fallback, both decoded against the schema's type so every object carries exactly its attributes.
//!
//! Unknown values are msgpack extensions. Any extension code decodes as unknown; code 12 carries
//! refinements (what Terraform already knows about the future value). Input is untrusted: every
//! malformed byte sequence gives an error naming the attribute, never a panic.

use std::collections::BTreeMap;
use std::fmt;

use rmp::Marker;
use rmpv::Value as Mp;

use crate::framework::json;
use crate::framework::{AttributePath, Number, Refinements, Type, Value};

use super::proto::tfplugin5::DynamicValue;

/// Deepest msgpack nesting accepted. Our schemas nest a few levels; rmpv's own limit (1024) still
/// overflows a 2 MiB thread stack in debug builds, so untrusted input is cut off far earlier.
const MAX_NESTING: usize = 64;

/// The extension code of a wholly unknown value.
const EXT_UNKNOWN: i8 = 0;
/// The extension code of an unknown value with refinements.
const EXT_REFINED: i8 = 12;

// Refinement map keys (cty's msgpack encoding).
const REFINE_NULLNESS: u64 = 1;
const REFINE_STRING_PREFIX: u64 = 2;
const REFINE_NUMBER_LOWER: u64 = 3;
const REFINE_NUMBER_UPPER: u64 = 4;
const REFINE_LENGTH_MIN: u64 = 5;
const REFINE_LENGTH_MAX: u64 = 6;

/// A value that does not fit its type, or bytes that are not a value at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodecError {
    /// Where in the value the problem is (the root for whole-value problems).
    pub path: AttributePath,
    pub message: String,
}

impl CodecError {
    fn new(path: &AttributePath, message: impl Into<String>) -> Self {
        Self {
            path: path.clone(),
            message: message.into(),
        }
    }
}

impl fmt::Display for CodecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_root() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

impl std::error::Error for CodecError {}

/// Decodes a DynamicValue: msgpack when present, else JSON; an absent or empty one is null.
pub fn decode_dynamic(value: Option<&DynamicValue>, ty: &Type) -> Result<Value, CodecError> {
    match value {
        Some(dv) if !dv.msgpack.is_empty() => decode_msgpack(&dv.msgpack, ty),
        Some(dv) if !dv.json.is_empty() => decode_json(&dv.json, ty),
        _ => Ok(Value::Null),
    }
}

/// Decodes the JSON form of a DynamicValue (what Terraform sends for upgraded state) as a value of `ty`.
pub fn decode_json(bytes: &[u8], ty: &Type) -> Result<Value, CodecError> {
    let parsed: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| CodecError::new(&AttributePath::root(), format!("invalid JSON value: {e}")))?;
    json::decode(&parsed, ty).map_err(|e| CodecError::new(&AttributePath::root(), e))
}

/// Encodes a value as a msgpack DynamicValue.
pub fn encode_dynamic(value: &Value, ty: &Type) -> Result<DynamicValue, CodecError> {
    Ok(DynamicValue {
        msgpack: encode_msgpack(value, ty)?,
        json: Vec::new(),
    })
}

/// Decodes msgpack bytes as a value of `ty`.
pub fn decode_msgpack(bytes: &[u8], ty: &Type) -> Result<Value, CodecError> {
    let mut reader = Reader { bytes };
    let value = reader.value(ty).map_err(Fault::into_error)?;
    if !reader.bytes.is_empty() {
        return Err(CodecError::new(
            &AttributePath::root(),
            format!("{} unexpected bytes after the value", reader.bytes.len()),
        ));
    }
    Ok(value)
}

/// Encodes a value of `ty` as msgpack. Objects get exactly the type's attributes (null where the
/// value lacks one); a value that does not fit the type is an error, as it would be in Terraform.
pub fn encode_msgpack(value: &Value, ty: &Type) -> Result<Vec<u8>, CodecError> {
    let mut out = Vec::new();
    write_value(&mut out, value, ty)?;
    Ok(out)
}

fn type_name(ty: &Type) -> &'static str {
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

fn msgpack_kind(raw: &Mp) -> &'static str {
    match raw {
        Mp::Nil => "nil",
        Mp::Boolean(_) => "a bool",
        Mp::Integer(_) => "an integer",
        Mp::F32(_) | Mp::F64(_) => "a float",
        Mp::String(_) => "a string",
        Mp::Binary(_) => "binary data",
        Mp::Array(_) => "an array",
        Mp::Map(_) => "a map",
        Mp::Ext(..) => "an extension",
    }
}

fn value_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Unknown(_) => "unknown",
        Value::Bool(_) => "a bool",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::List(_) => "a list",
        Value::Set(_) => "a set",
        Value::Map(_) => "a map",
        Value::Object(_) => "an object",
        Value::Tuple(_) => "a tuple",
    }
}

/// Why decoding stopped: bytes that are not msgpack at all (reported for the whole value), or a
/// value that does not fit its type (reported where it is).
enum Fault {
    Malformed(String),
    Misfit(CodecError),
}

impl Fault {
    fn misfit(message: impl Into<String>) -> Self {
        Fault::Misfit(CodecError::new(&AttributePath::root(), message))
    }

    fn into_error(self) -> CodecError {
        match self {
            Fault::Malformed(m) => {
                CodecError::new(&AttributePath::root(), format!("malformed msgpack: {m}"))
            }
            Fault::Misfit(e) => e,
        }
    }
}

impl From<CodecError> for Fault {
    fn from(e: CodecError) -> Self {
        Fault::Misfit(e)
    }
}

/// `result` with `step` in front of its error's path. Paths are built only for an error, on its
/// way out: a value that decodes or encodes costs no path at all.
fn within<T>(
    step: impl FnOnce() -> crate::framework::Step,
    result: Result<T, CodecError>,
) -> Result<T, CodecError> {
    result.map_err(|mut e| {
        e.path.steps.insert(0, step());
        e
    })
}

/// [`within`] for decoding: bytes that are not msgpack stay an error of the whole value.
fn decoding_within<T>(
    step: impl FnOnce() -> crate::framework::Step,
    result: Result<T, Fault>,
) -> Result<T, Fault> {
    match result {
        Err(Fault::Misfit(e)) => Err(Fault::Misfit(within(step, Err(e))?)),
        other => other,
    }
}

/// What a msgpack marker starts, as far as the codec tells markers apart. One exhaustive match
/// here, so a caller that singles out a kind cannot miss one of its markers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MarkerKind {
    Nil,
    Bool,
    Integer,
    Float,
    String,
    Binary,
    Array,
    Map,
    /// Terraform's unknown values (and anything else in an extension type).
    Extension,
    Reserved,
}

impl MarkerKind {
    fn of(marker: Marker) -> Self {
        match marker {
            Marker::Null => Self::Nil,
            Marker::True | Marker::False => Self::Bool,
            Marker::FixPos(_)
            | Marker::FixNeg(_)
            | Marker::U8
            | Marker::U16
            | Marker::U32
            | Marker::U64
            | Marker::I8
            | Marker::I16
            | Marker::I32
            | Marker::I64 => Self::Integer,
            Marker::F32 | Marker::F64 => Self::Float,
            Marker::FixStr(_) | Marker::Str8 | Marker::Str16 | Marker::Str32 => Self::String,
            Marker::Bin8 | Marker::Bin16 | Marker::Bin32 => Self::Binary,
            Marker::FixArray(_) | Marker::Array16 | Marker::Array32 => Self::Array,
            Marker::FixMap(_) | Marker::Map16 | Marker::Map32 => Self::Map,
            Marker::FixExt1
            | Marker::FixExt2
            | Marker::FixExt4
            | Marker::FixExt8
            | Marker::FixExt16
            | Marker::Ext8
            | Marker::Ext16
            | Marker::Ext32 => Self::Extension,
            Marker::Reserved => Self::Reserved,
        }
    }

    /// The kind as an error message names what it found.
    fn described(self) -> &'static str {
        match self {
            Self::Nil => "nil",
            Self::Bool => "a bool",
            Self::Integer => "an integer",
            Self::Float => "a float",
            Self::String => "a string",
            Self::Binary => "binary data",
            Self::Array => "an array",
            Self::Map => "a map",
            Self::Extension => "an extension",
            Self::Reserved => "the reserved marker",
        }
    }
}

/// Reads msgpack straight from the bytes, led by the type: no intermediate tree. Recursion follows
/// the type, never the input, so nesting is bounded by the schema; rarely seen parts (numbers,
/// unknown values) are read whole with rmpv under [`MAX_NESTING`].
struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn peek(&self) -> Result<Marker, Fault> {
        match self.bytes.first().map(|b| Marker::from_u8(*b)) {
            Some(Marker::Reserved) => Err(Fault::Malformed("reserved marker 0xc1".into())),
            Some(marker) => Ok(marker),
            None => Err(Fault::Malformed("the value ends early".into())),
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], Fault> {
        if self.bytes.len() < n {
            return Err(Fault::Malformed("the value ends early".into()));
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    /// A big-endian length of `width` bytes.
    fn length(&mut self, width: usize) -> Result<usize, Fault> {
        let bytes = self.take(width)?;
        let n = bytes.iter().fold(0u64, |n, b| (n << 8) | u64::from(*b));
        usize::try_from(n).map_err(|_| Fault::Malformed("length out of range".into()))
    }

    /// Consumes the marker of a string and returns its length.
    fn string_length(&mut self, marker: Marker) -> Result<Option<usize>, Fault> {
        let width = match marker {
            Marker::FixStr(n) => {
                self.take(1)?;
                return Ok(Some(usize::from(n)));
            }
            Marker::Str8 => 1,
            Marker::Str16 => 2,
            Marker::Str32 => 4,
            _ => return Ok(None),
        };
        self.take(1)?;
        self.length(width).map(Some)
    }

    /// Consumes the marker of an array or map (whichever `map` says) and returns its length.
    fn collection_length(&mut self, marker: Marker, map: bool) -> Result<Option<usize>, Fault> {
        let width = match (marker, map) {
            (Marker::FixArray(n), false) | (Marker::FixMap(n), true) => {
                self.take(1)?;
                return Ok(Some(usize::from(n)));
            }
            (Marker::Array16, false) | (Marker::Map16, true) => 2,
            (Marker::Array32, false) | (Marker::Map32, true) => 4,
            _ => return Ok(None),
        };
        self.take(1)?;
        self.length(width).map(Some)
    }

    fn string(&mut self, marker: Marker) -> Result<Option<&'a str>, Fault> {
        let Some(len) = self.string_length(marker)? else {
            return Ok(None);
        };
        let bytes = self.take(len)?;
        std::str::from_utf8(bytes)
            .map(Some)
            .map_err(|_| Fault::misfit("string is not valid UTF-8"))
    }

    /// A map key, which must be a string.
    fn key(&mut self) -> Result<&'a str, Fault> {
        let marker = self.peek()?;
        match self.string(marker) {
            Ok(Some(key)) => Ok(key),
            Ok(None) => Err(Fault::misfit(format!(
                "map keys must be strings, found {}",
                MarkerKind::of(marker).described()
            ))),
            Err(Fault::Misfit(_)) => Err(Fault::misfit("map key is not valid UTF-8")),
            Err(e) => Err(e),
        }
    }

    /// One whole value, generically.
    fn raw(&mut self) -> Result<Mp, Fault> {
        rmpv::decode::read_value_with_max_depth(&mut self.bytes, MAX_NESTING)
            .map_err(|e| Fault::Malformed(e.to_string()))
    }

    /// Elements of an array of `len`, each decoded by `element`. Never preallocates more than
    /// the bytes left could hold (every element takes at least one).
    fn elements(
        &mut self,
        len: usize,
        mut element: impl FnMut(&mut Self, usize) -> Result<Value, Fault>,
    ) -> Result<Vec<Value>, Fault> {
        let mut values = Vec::with_capacity(len.min(self.bytes.len()));
        for i in 0..len {
            values.push(element(self, i)?);
        }
        Ok(values)
    }

    fn value(&mut self, ty: &Type) -> Result<Value, Fault> {
        use crate::framework::Step;
        let marker = self.peek()?;
        let mismatch = || {
            Fault::misfit(format!(
                "expected {}, found {}",
                type_name(ty),
                MarkerKind::of(marker).described()
            ))
        };
        let index = |i: usize| Step::Index(i64::try_from(i).unwrap_or(i64::MAX));
        match MarkerKind::of(marker) {
            MarkerKind::Nil => {
                self.take(1)?;
                return Ok(Value::Null);
            }
            MarkerKind::Extension => {
                let Mp::Ext(code, payload) = self.raw()? else {
                    return Err(Fault::Malformed("extension expected".into()));
                };
                let refinements = if code == EXT_REFINED {
                    decode_refinements(&payload)?
                } else {
                    Refinements::default()
                };
                return Ok(Value::Unknown(refinements));
            }
            _ => {}
        }
        match ty {
            Type::String => match self.string(marker)? {
                Some(s) => Ok(Value::String(s.to_string())),
                None => Err(mismatch()),
            },
            Type::Number => Ok(Value::Number(decode_number(&self.raw()?)?)),
            Type::Bool => match marker {
                Marker::True | Marker::False => {
                    self.take(1)?;
                    Ok(Value::Bool(marker == Marker::True))
                }
                _ => Err(mismatch()),
            },
            Type::List(element) => {
                let len = self
                    .collection_length(marker, false)?
                    .ok_or_else(mismatch)?;
                self.elements(len, |r, i| decoding_within(|| index(i), r.value(element)))
                    .map(Value::List)
            }
            Type::Set(element) => {
                let len = self
                    .collection_length(marker, false)?
                    .ok_or_else(mismatch)?;
                // Set elements have no address of their own: errors point at the set.
                self.elements(len, |r, _| r.value(element)).map(Value::set)
            }
            Type::Tuple(types) => {
                let len = self
                    .collection_length(marker, false)?
                    .ok_or_else(mismatch)?;
                if len != types.len() {
                    return Err(Fault::misfit(format!(
                        "expected a tuple of {} elements, found {len}",
                        types.len(),
                    )));
                }
                self.elements(len, |r, i| decoding_within(|| index(i), r.value(&types[i])))
                    .map(Value::Tuple)
            }
            Type::Map(element) => {
                let len = self.collection_length(marker, true)?.ok_or_else(mismatch)?;
                let mut map = BTreeMap::new();
                for _ in 0..len {
                    let key = self.key()?;
                    let value =
                        decoding_within(|| Step::Key(key.to_string()), self.value(element))?;
                    if map.insert(key.to_string(), value).is_some() {
                        return Err(Fault::misfit(format!("duplicate map key {key:?}")));
                    }
                }
                Ok(Value::Map(map))
            }
            Type::Object(attributes) => {
                let len = self.collection_length(marker, true)?.ok_or_else(mismatch)?;
                let mut object = BTreeMap::new();
                for _ in 0..len {
                    let key = self.key()?;
                    let Some((name, attribute_type)) = attributes.get_key_value(key) else {
                        return Err(Fault::misfit(format!("unsupported attribute {key:?}")));
                    };
                    let value = decoding_within(
                        || Step::Attribute(name.clone()),
                        self.value(attribute_type),
                    )?;
                    if object.insert(name.clone(), value).is_some() {
                        return Err(Fault::misfit(format!("attribute {name:?} given twice")));
                    }
                }
                if let Some(missing) = attributes.keys().find(|k| !object.contains_key(*k)) {
                    return Err(Fault::misfit(format!(
                        "attribute {missing:?} is missing: an object of this type needs all {} attributes, {} given",
                        attributes.len(),
                        object.len()
                    )));
                }
                Ok(Value::Object(object))
            }
        }
    }
}

fn decode_number(raw: &Mp) -> Result<Number, CodecError> {
    let number = match raw {
        Mp::Integer(i) => i
            .as_i64()
            .map(Number::from)
            .or_else(|| i.as_u64().and_then(|u| Number::parse(&u.to_string()))),
        Mp::F32(f) => exact_float_number(f64::from(*f)),
        Mp::F64(f) => exact_float_number(*f),
        Mp::String(s) => s.as_str().and_then(Number::parse),
        other => {
            return Err(CodecError::new(
                &AttributePath::root(),
                format!("expected a number, found {}", msgpack_kind(other)),
            ))
        }
    };
    number.ok_or_else(|| CodecError::new(&AttributePath::root(), "not a finite number"))
}

/// A float as the number it is exactly (not its shortest rendering), so it re-encodes as the same
/// float and Terraform sees the identical value.
fn exact_float_number(f: f64) -> Option<Number> {
    if !f.is_finite() {
        return None;
    }
    Number::parse(&exact_decimal(f))
}

/// The exact decimal expansion of a finite float, without trailing zeros.
fn exact_decimal(f: f64) -> String {
    if f == 0.0 {
        return "0".to_string();
    }
    // 1074 fractional digits are enough for the smallest subnormal: the expansion is exact.
    let text = format!("{f:.1074}");
    let trimmed = text.trim_end_matches('0').trim_end_matches('.');
    trimmed.to_string()
}

/// Decimal text (`-1.50`, `2e3`, `+.5`) in canonical fixed-point form (`-1.5`, `2000`, `0.5`);
/// `None` for text that is not a decimal or whose exponent is absurdly large.
fn canonical_decimal(text: &str) -> Option<String> {
    let (negative, unsigned) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let (mantissa, exponent) = match unsigned.find(['e', 'E']) {
        Some(at) => (
            unsigned.get(..at)?,
            unsigned.get(at + 1..)?.parse::<i64>().ok()?,
        ),
        None => (unsigned, 0),
    };
    if exponent.abs() > 1200 {
        return None;
    }
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if (whole.is_empty() && fraction.is_empty())
        || !whole
            .bytes()
            .chain(fraction.bytes())
            .all(|b| b.is_ascii_digit())
    {
        return None;
    }
    // digits × 10^(exponent - fraction length)
    let digits = format!("{whole}{fraction}");
    let scale = exponent - i64::try_from(fraction.len()).ok()?;
    let digits = digits.trim_start_matches('0');
    if digits.is_empty() {
        return Some("0".to_string());
    }
    let (int_part, frac_part) = if scale >= 0 {
        let zeros = usize::try_from(scale).ok()?;
        (format!("{digits}{}", "0".repeat(zeros)), String::new())
    } else {
        let shift = usize::try_from(-scale).ok()?;
        if shift >= digits.len() {
            (
                "0".to_string(),
                format!("{}{digits}", "0".repeat(shift - digits.len())),
            )
        } else {
            let split = digits.len() - shift;
            (
                digits.get(..split)?.to_string(),
                digits.get(split..)?.to_string(),
            )
        }
    };
    let frac_part = frac_part.trim_end_matches('0');
    let sign = if negative { "-" } else { "" };
    Some(if frac_part.is_empty() {
        format!("{sign}{int_part}")
    } else {
        format!("{sign}{int_part}.{frac_part}")
    })
}

/// A number in the form cty itself uses: an integer when it fits 64 bits, a float when a float
/// holds it exactly, otherwise its decimal text.
fn encode_number(number: &Number) -> Mp {
    if let Some(i) = number.as_i64() {
        return Mp::from(i);
    }
    if let Some(canonical) = canonical_decimal(number.as_str()) {
        if let Ok(i) = canonical.parse::<i64>() {
            return Mp::from(i);
        }
        if let Ok(f) = number.as_str().parse::<f64>() {
            if f.is_finite() && exact_decimal(f) == canonical {
                return Mp::F64(f);
            }
        }
    }
    Mp::from(number.as_str())
}

/// rmp's result when writing into a `Vec`, which cannot fail but is checked all the same.
fn wrote<T, E: fmt::Display>(result: Result<T, E>) -> Result<(), CodecError> {
    result
        .map(drop)
        .map_err(|e| CodecError::new(&AttributePath::root(), format!("msgpack encoding: {e}")))
}

/// A length as msgpack carries it.
fn wire_length(len: usize) -> Result<u32, CodecError> {
    u32::try_from(len).map_err(|_| {
        CodecError::new(
            &AttributePath::root(),
            format!("{len} elements are more than msgpack can carry"),
        )
    })
}

/// Writes `value` of `ty` straight into `out`, in the form rmpv would write it.
fn write_value(out: &mut Vec<u8>, value: &Value, ty: &Type) -> Result<(), CodecError> {
    use crate::framework::Step;
    use rmp::encode;
    let index = |i: usize| Step::Index(i64::try_from(i).unwrap_or(i64::MAX));
    match (value, ty) {
        (Value::Null, _) => wrote(encode::write_nil(out)),
        (Value::Unknown(refinements), _) => wrote(rmpv::encode::write_value(
            out,
            &encode_unknown(refinements)?,
        )),
        (Value::String(s), Type::String) => wrote(encode::write_str(out, s)),
        (Value::Number(n), Type::Number) => {
            wrote(rmpv::encode::write_value(out, &encode_number(n)))
        }
        (Value::Bool(b), Type::Bool) => wrote(encode::write_bool(out, *b)),
        (Value::List(items), Type::List(element)) => {
            wrote(encode::write_array_len(out, wire_length(items.len())?))?;
            for (i, item) in items.iter().enumerate() {
                within(|| index(i), write_value(out, item, element))?;
            }
            Ok(())
        }
        (Value::Set(items), Type::Set(element)) => {
            wrote(encode::write_array_len(out, wire_length(items.len())?))?;
            items
                .iter()
                .try_for_each(|item| write_value(out, item, element))
        }
        (Value::Tuple(items), Type::Tuple(types)) => {
            if items.len() != types.len() {
                return Err(CodecError::new(
                    &AttributePath::root(),
                    format!(
                        "expected a tuple of {} elements, found {}",
                        types.len(),
                        items.len()
                    ),
                ));
            }
            wrote(encode::write_array_len(out, wire_length(items.len())?))?;
            for (i, (item, t)) in items.iter().zip(types).enumerate() {
                within(|| index(i), write_value(out, item, t))?;
            }
            Ok(())
        }
        (Value::Map(entries), Type::Map(element)) => {
            wrote(encode::write_map_len(out, wire_length(entries.len())?))?;
            for (key, item) in entries {
                wrote(encode::write_str(out, key))?;
                within(|| Step::Key(key.clone()), write_value(out, item, element))?;
            }
            Ok(())
        }
        (Value::Object(fields), Type::Object(attributes)) => {
            if let Some(extra) = fields.keys().find(|k| !attributes.contains_key(*k)) {
                return Err(CodecError::new(
                    &AttributePath::root(),
                    format!("the value has attribute {extra:?}, which the schema lacks"),
                ));
            }
            wrote(encode::write_map_len(out, wire_length(attributes.len())?))?;
            for (name, attribute_type) in attributes {
                wrote(encode::write_str(out, name))?;
                match fields.get(name) {
                    Some(item) => within(
                        || Step::Attribute(name.clone()),
                        write_value(out, item, attribute_type),
                    )?,
                    None => wrote(encode::write_nil(out))?,
                }
            }
            Ok(())
        }
        _ => Err(CodecError::new(
            &AttributePath::root(),
            format!("expected {}, found {}", type_name(ty), value_kind(value)),
        )),
    }
}

fn encode_unknown(refinements: &Refinements) -> Result<Mp, CodecError> {
    if refinements.is_empty() {
        return Ok(Mp::Ext(EXT_UNKNOWN, vec![0]));
    }
    let mut entries = Vec::new();
    if refinements.not_null {
        entries.push((Mp::from(REFINE_NULLNESS), Mp::Boolean(false)));
    }
    if let Some(prefix) = &refinements.string_prefix {
        entries.push((Mp::from(REFINE_STRING_PREFIX), Mp::from(prefix.as_str())));
    }
    for (key, bound) in [
        (REFINE_NUMBER_LOWER, &refinements.number_lower),
        (REFINE_NUMBER_UPPER, &refinements.number_upper),
    ] {
        if let Some((number, inclusive)) = bound {
            entries.push((
                Mp::from(key),
                Mp::Array(vec![encode_number(number), Mp::Boolean(*inclusive)]),
            ));
        }
    }
    for (key, bound) in [
        (REFINE_LENGTH_MIN, refinements.length_min),
        (REFINE_LENGTH_MAX, refinements.length_max),
    ] {
        if let Some(length) = bound {
            entries.push((Mp::from(key), Mp::from(length)));
        }
    }
    let mut payload = Vec::new();
    rmpv::encode::write_value(&mut payload, &Mp::Map(entries)).map_err(|e| {
        CodecError::new(&AttributePath::root(), format!("encoding refinements: {e}"))
    })?;
    Ok(Mp::Ext(EXT_REFINED, payload))
}

fn decode_refinements(payload: &[u8]) -> Result<Refinements, CodecError> {
    let bad = |what: &str| {
        CodecError::new(
            &AttributePath::root(),
            format!("malformed unknown-value refinements: {what}"),
        )
    };
    let mut reader = payload;
    let raw = rmpv::decode::read_value_with_max_depth(&mut reader, MAX_NESTING)
        .map_err(|e| bad(&e.to_string()))?;
    let Mp::Map(entries) = raw else {
        return Err(bad("not a map"));
    };
    let mut refinements = Refinements::default();
    for (key, value) in &entries {
        let Some(key) = key.as_u64() else {
            // Keys we do not understand are ignored, as cty ignores them.
            continue;
        };
        match key {
            REFINE_NULLNESS => {
                let is_null = value
                    .as_bool()
                    .ok_or_else(|| bad("nullness is not a bool"))?;
                refinements.not_null = !is_null;
            }
            REFINE_STRING_PREFIX => {
                let prefix = value
                    .as_str()
                    .ok_or_else(|| bad("string prefix is not a string"))?;
                refinements.string_prefix = Some(prefix.to_string());
            }
            REFINE_NUMBER_LOWER | REFINE_NUMBER_UPPER => {
                let (number, inclusive) = match value.as_array().map(Vec::as_slice) {
                    Some([number, Mp::Boolean(inclusive)]) => (number, *inclusive),
                    _ => return Err(bad("number bound is not [number, bool]")),
                };
                let number = decode_number(number)?;
                if key == REFINE_NUMBER_LOWER {
                    refinements.number_lower = Some((number, inclusive));
                } else {
                    refinements.number_upper = Some((number, inclusive));
                }
            }
            REFINE_LENGTH_MIN | REFINE_LENGTH_MAX => {
                let length = value
                    .as_u64()
                    .ok_or_else(|| bad("length bound is not a non-negative integer"))?;
                if key == REFINE_LENGTH_MIN {
                    refinements.length_min = Some(length);
                } else {
                    refinements.length_max = Some(length);
                }
            }
            _ => {}
        }
    }
    Ok(refinements)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::Step;
    use proptest::prelude::*;

    fn hex(text: &str) -> Vec<u8> {
        let clean: String = text.chars().filter(|c| !c.is_whitespace()).collect();
        (0..clean.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&clean[i..i + 2], 16).expect("test hex"))
            .collect()
    }

    fn obj_type(pairs: &[(&str, Type)]) -> Type {
        Type::Object(
            pairs
                .iter()
                .map(|(k, t)| (k.to_string(), t.clone()))
                .collect(),
        )
    }

    /// Named wire fixtures: (name, type, hex bytes, value). Each decodes to the value and the
    /// value encodes back to exactly these bytes.
    fn fixtures() -> Vec<(&'static str, Type, &'static str, Value)> {
        let prefix = Refinements {
            not_null: true,
            string_prefix: Some("pre-".to_string()),
            ..Refinements::default()
        };
        vec![
            ("null", Type::String, "c0", Value::Null),
            ("unknown-string", Type::String, "d40000", Value::unknown()),
            (
                "refined-prefix",
                Type::String,
                "c7 09 0c 82 01 c2 02 a4 70 72 65 2d",
                Value::Unknown(prefix),
            ),
            ("string", Type::String, "a3 61 62 63", Value::from("abc")),
            ("true", Type::Bool, "c3", Value::from(true)),
            ("int", Type::Number, "2a", Value::from(42)),
            ("negative-int", Type::Number, "d0 9c", Value::from(-100)),
            (
                "float",
                Type::Number,
                "cb 3f f8 00 00 00 00 00 00",
                Value::Number(Number::parse("1.5").expect("number")),
            ),
            (
                "inexact-decimal-as-string",
                Type::Number,
                "a3 30 2e 31",
                Value::Number(Number::parse("0.1").expect("number")),
            ),
            (
                "set-of-strings",
                Type::set(Type::String),
                "92 a1 61 a1 62",
                Value::string_set(["b", "a"]),
            ),
            (
                "map",
                Type::map(Type::Bool),
                "81 a1 6b c2",
                Value::Map(BTreeMap::from([("k".to_string(), Value::from(false))])),
            ),
            (
                "object-with-unset-attribute",
                obj_type(&[("id", Type::String), ("name", Type::String)]),
                "82 a2 69 64 c0 a4 6e 61 6d 65 a1 6e",
                Value::object([("id", Value::Null), ("name", Value::from("n"))]),
            ),
            (
                "tuple",
                Type::Tuple(vec![Type::String, Type::Number]),
                "92 a1 78 01",
                Value::Tuple(vec![Value::from("x"), Value::from(1)]),
            ),
            (
                "list-with-unknown",
                Type::list(Type::String),
                "92 a1 61 d4 00 00",
                Value::List(vec![Value::from("a"), Value::unknown()]),
            ),
        ]
    }

    #[test]
    fn named_fixtures_decode_and_encode_exactly() {
        for (name, ty, bytes, value) in fixtures() {
            let bytes = hex(bytes);
            assert_eq!(
                decode_msgpack(&bytes, &ty).as_ref(),
                Ok(&value),
                "decoding fixture {name}"
            );
            assert_eq!(
                encode_msgpack(&value, &ty).as_ref(),
                Ok(&bytes),
                "encoding fixture {name}"
            );
        }
    }

    #[test]
    fn any_extension_code_is_unknown_and_number_forms_are_accepted() {
        // go-cty writes code 0 with one byte; other writers use an empty payload or other codes.
        for bytes in ["d4 00 00", "c7 00 00", "d4 05 00", "c7 00 07"] {
            assert_eq!(
                decode_msgpack(&hex(bytes), &Type::String),
                Ok(Value::unknown()),
                "{bytes}"
            );
        }
        let n = |text| Value::Number(Number::parse(text).expect("number"));
        assert_eq!(
            decode_msgpack(&hex("cf ff ff ff ff ff ff ff ff"), &Type::Number),
            Ok(n("18446744073709551615"))
        );
        assert_eq!(
            decode_msgpack(&hex("ca 3f c0 00 00"), &Type::Number),
            Ok(n("1.5"))
        );
        assert_eq!(
            decode_msgpack(&hex("a4 31 65 2b 33"), &Type::Number),
            Ok(n("1e+3"))
        );
        // A big integer that no float holds exactly travels as text, as cty sends it.
        assert_eq!(
            encode_msgpack(&n("18446744073709551615"), &Type::Number),
            Ok(hex(
                "b4 31 38 34 34 36 37 34 34 30 37 33 37 30 39 35 35 31 36 31 35"
            ))
        );
        assert_eq!(
            encode_msgpack(&n("1e3"), &Type::Number),
            Ok(hex("cd 03 e8"))
        );
    }

    #[test]
    fn refinements_of_every_kind_round_trip_and_unknown_keys_are_ignored() {
        let all = Refinements {
            not_null: true,
            string_prefix: Some("x".to_string()),
            number_lower: Some((Number::from(1), true)),
            number_upper: Some((Number::parse("2.5").expect("number"), false)),
            length_min: Some(1),
            length_max: Some(9),
        };
        let bytes = encode_msgpack(&Value::Unknown(all.clone()), &Type::Number).expect("encodes");
        assert_eq!(bytes.get(..1), Some(&[0xc7][..]), "ext8 framing");
        assert_eq!(bytes.get(2), Some(&0x0c), "extension code 12");
        assert_eq!(
            decode_msgpack(&bytes, &Type::Number),
            Ok(Value::Unknown(all))
        );

        // {1: false, 99: "future"}: key 99 means nothing to us yet.
        let with_future_key = hex("c7 06 0c 82 01 c2 63 a1 66");
        assert_eq!(
            decode_msgpack(&with_future_key, &Type::String),
            Ok(Value::Unknown(Refinements {
                not_null: true,
                ..Refinements::default()
            }))
        );
    }

    #[test]
    fn objects_must_have_exactly_their_attributes() {
        let ty = obj_type(&[("a", Type::String), ("b", Type::String)]);
        // {"a": "x"}: b missing.
        let err = decode_msgpack(&hex("81 a1 61 a1 78"), &ty).expect_err("missing attribute");
        assert!(err.message.contains("\"b\" is missing"), "{err}");
        // {"a": nil, "b": nil, "c": nil}: c unknown to the schema.
        let err = decode_msgpack(&hex("83 a1 61 c0 a1 62 c0 a1 63 c0"), &ty).expect_err("extra");
        assert!(err.message.contains("unsupported attribute \"c\""), "{err}");
        // Encoding fills absent attributes with nil and refuses ones the schema lacks.
        let partial = Value::object([("b", Value::from("y"))]);
        assert_eq!(
            encode_msgpack(&partial, &ty),
            Ok(hex("82 a1 61 c0 a1 62 a1 79"))
        );
        let extra = Value::object([("z", Value::Null)]);
        assert!(encode_msgpack(&extra, &ty).is_err());
    }

    #[test]
    fn errors_name_the_attribute_path() {
        let ty = obj_type(&[("rules", Type::list(obj_type(&[("port", Type::Number)])))]);
        // {"rules": [{"port": 1}, {"port": true}]}
        let bytes = hex("81 a5 72 75 6c 65 73 92 81 a4 70 6f 72 74 01 81 a4 70 6f 72 74 c3");
        let err = decode_msgpack(&bytes, &ty).expect_err("bool is not a number");
        assert_eq!(
            err.path,
            AttributePath::attr("rules").then_index(1).then_attr("port")
        );
        assert_eq!(
            err.to_string(),
            "rules[1].port: expected a number, found a bool"
        );

        let value = Value::object([("rules", Value::List(vec![Value::from("oops")]))]);
        let err = encode_msgpack(&value, &ty).expect_err("string is not an object");
        assert_eq!(
            err.path.steps,
            vec![Step::Attribute("rules".into()), Step::Index(0)]
        );
    }

    #[test]
    fn bytes_that_end_early_are_malformed_as_a_whole_and_misfits_keep_their_path() {
        let ty = obj_type(&[("tags", Type::map(Type::Bool))]);
        // {"tags": {"k": <nothing>}: the bytes stop inside the map.
        let err = decode_msgpack(&hex("81 a4 74 61 67 73 81 a1 6b"), &ty).expect_err("truncated");
        assert!(err.path.is_root(), "{err}");
        assert!(err.message.starts_with("malformed msgpack"), "{err}");
        // {"tags": {"k": "yes"}}: well-formed, but not a bool.
        let err = decode_msgpack(&hex("81 a4 74 61 67 73 81 a1 6b a3 79 65 73"), &ty)
            .expect_err("misfit");
        assert_eq!(err.path, AttributePath::attr("tags").then_key("k"));
        assert_eq!(err.message, "expected a bool, found a string");
        // {"tags": {1: true}}
        let err = decode_msgpack(&hex("81 a4 74 61 67 73 81 01 c3"), &ty).expect_err("int key");
        assert_eq!(err.path, AttributePath::attr("tags"));
        assert_eq!(err.message, "map keys must be strings, found an integer");
        // The reserved marker is no value at all.
        let err = decode_msgpack(&hex("c1"), &Type::Bool).expect_err("reserved");
        assert!(err.message.starts_with("malformed msgpack"), "{err}");
    }

    #[test]
    fn malformed_input_is_an_error() {
        let strings = Type::list(Type::String);
        let cases = [
            ("", Type::Bool, "no bytes"),
            ("92 a1 61", strings.clone(), "truncated array"),
            ("a3 61", Type::String, "truncated string"),
            ("c0 c0", Type::Bool, "trailing bytes"),
            (
                "dd ff ff ff ff",
                strings,
                "array claiming 4 billion elements",
            ),
            (
                "c7 03 0c 92 01 02",
                Type::String,
                "refinements that are not a map",
            ),
            ("a2 ff fe", Type::String, "invalid UTF-8"),
            ("a3 61 62 63", Type::Bool, "string where a bool belongs"),
            ("cb 7f f8 00 00 00 00 00 00", Type::Number, "NaN"),
        ];
        for (bytes, ty, why) in cases {
            assert!(decode_msgpack(&hex(bytes), &ty).is_err(), "{why}");
        }
    }

    #[test]
    fn dynamic_values_prefer_msgpack_then_json_and_default_to_null() {
        let ty = obj_type(&[("a", Type::String)]);
        assert_eq!(decode_dynamic(None, &ty), Ok(Value::Null));
        let json = DynamicValue {
            msgpack: vec![],
            json: br#"{"a":"j"}"#.to_vec(),
        };
        assert_eq!(
            decode_dynamic(Some(&json), &ty),
            Ok(Value::object([("a", Value::from("j"))]))
        );
        let both = DynamicValue {
            msgpack: hex("81 a1 61 a1 6d"),
            json: br#"{"a":"j"}"#.to_vec(),
        };
        assert_eq!(
            decode_dynamic(Some(&both), &ty),
            Ok(Value::object([("a", Value::from("m"))]))
        );
        let encoded = encode_dynamic(&Value::Null, &ty).expect("encodes");
        assert_eq!(encoded.msgpack, vec![0xc0]);
        assert!(encoded.json.is_empty());
    }

    #[test]
    fn canonical_decimals() {
        for (text, canonical) in [
            ("1.50", Some("1.5")),
            ("2e3", Some("2000")),
            ("-0.00", Some("0")),
            ("+.5", Some("0.5")),
            ("12.5e-3", Some("0.0125")),
            ("1e99999", None),
            ("1.2.3", None),
            ("e5", None),
        ] {
            assert_eq!(canonical_decimal(text).as_deref(), canonical, "{text}");
        }
        assert_eq!(exact_decimal(0.5), "0.5");
        assert!(exact_decimal(0.1).starts_with("0.1000000000000000055511151231257827"));
    }

    fn arb_type() -> impl Strategy<Value = Type> {
        let leaf = prop_oneof![Just(Type::String), Just(Type::Number), Just(Type::Bool)];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                inner.clone().prop_map(Type::list),
                inner.clone().prop_map(Type::set),
                inner.clone().prop_map(Type::map),
                prop::collection::btree_map("[a-z_]{1,6}", inner.clone(), 0..4)
                    .prop_map(Type::Object),
                prop::collection::vec(inner, 0..3).prop_map(Type::Tuple),
            ]
        })
    }

    fn arb_number() -> impl Strategy<Value = Number> {
        prop_oneof![
            any::<i64>().prop_map(Number::from),
            any::<u64>().prop_filter_map("fits", |u| Number::parse(&u.to_string())),
            any::<f64>().prop_filter_map("finite", Number::from_f64),
            (any::<i32>(), 1u32..6).prop_filter_map("decimal", |(m, places)| {
                let text = format!("{m}");
                let digits = text.trim_start_matches('-');
                let (sign, body) = if m < 0 { ("-", digits) } else { ("", digits) };
                let padded = format!("{body:0>width$}", width = places as usize + 1);
                let split = padded.len() - places as usize;
                let decimal = format!("{sign}{}.{}", &padded[..split], &padded[split..]);
                canonical_decimal(&decimal).and_then(|c| Number::parse(&c))
            }),
        ]
    }

    fn arb_refinements() -> impl Strategy<Value = Refinements> {
        (
            any::<bool>(),
            proptest::option::of("[a-z]{0,5}"),
            proptest::option::of((arb_number(), any::<bool>())),
            proptest::option::of((arb_number(), any::<bool>())),
            proptest::option::of(any::<u64>()),
            proptest::option::of(any::<u64>()),
        )
            .prop_map(|(not_null, prefix, lower, upper, min, max)| Refinements {
                not_null,
                string_prefix: prefix,
                number_lower: lower,
                number_upper: upper,
                length_min: min,
                length_max: max,
            })
    }

    /// A value of `ty`, with nulls and unknowns at any level.
    fn arb_value(ty: Type) -> BoxedStrategy<Value> {
        let special = prop_oneof![
            Just(Value::Null),
            arb_refinements().prop_map(Value::Unknown)
        ];
        let known: BoxedStrategy<Value> = match ty {
            Type::String => ".{0,8}".prop_map(Value::String).boxed(),
            Type::Number => arb_number().prop_map(Value::Number).boxed(),
            Type::Bool => any::<bool>().prop_map(Value::Bool).boxed(),
            Type::List(e) => prop::collection::vec(arb_value(*e), 0..4)
                .prop_map(Value::List)
                .boxed(),
            Type::Set(e) => prop::collection::vec(arb_value(*e), 0..4)
                .prop_map(Value::set)
                .boxed(),
            Type::Map(e) => prop::collection::btree_map(".{0,4}", arb_value(*e), 0..4)
                .prop_map(Value::Map)
                .boxed(),
            Type::Object(attrs) => {
                let fields: Vec<BoxedStrategy<(String, Value)>> = attrs
                    .into_iter()
                    .map(|(k, t)| arb_value(t).prop_map(move |v| (k.clone(), v)).boxed())
                    .collect();
                fields
                    .prop_map(|pairs| Value::Object(pairs.into_iter().collect()))
                    .boxed()
            }
            Type::Tuple(types) => {
                let elems: Vec<BoxedStrategy<Value>> = types.into_iter().map(arb_value).collect();
                elems.prop_map(Value::Tuple).boxed()
            }
        };
        prop_oneof![1 => special, 6 => known].boxed()
    }

    fn arb_typed_value() -> impl Strategy<Value = (Type, Value)> {
        arb_type().prop_flat_map(|ty| arb_value(ty.clone()).prop_map(move |v| (ty.clone(), v)))
    }

    proptest! {
        #[test]
        fn msgpack_round_trips_any_value_of_any_type((ty, value) in arb_typed_value()) {
            let bytes = encode_msgpack(&value, &ty).expect("a value of the type encodes");
            prop_assert_eq!(decode_msgpack(&bytes, &ty), Ok(value));
        }

        #[test]
        fn random_bytes_never_panic(ty in arb_type(), bytes in prop::collection::vec(any::<u8>(), 0..64)) {
            // An error is fine; a success must be a value of the type, so it encodes again.
            if let Ok(value) = decode_msgpack(&bytes, &ty) {
                prop_assert!(encode_msgpack(&value, &ty).is_ok(), "{:?}", value);
            }
        }

        #[test]
        fn corrupted_encodings_never_panic((ty, value) in arb_typed_value(), flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4)) {
            let mut bytes = encode_msgpack(&value, &ty).expect("encodes");
            for (at, byte) in flips {
                let i = at.index(bytes.len());
                bytes[i] = byte;
            }
            if let Ok(value) = decode_msgpack(&bytes, &ty) {
                prop_assert!(encode_msgpack(&value, &ty).is_ok(), "{:?}", value);
            }
        }
    }
}
