//! The `timeouts { create update delete }` block: one builder, one parser, one default.

use std::time::{Duration, Instant};

use super::diagnostics::Diagnostics;
use super::model::Attr;
use super::path::AttributePath;
use super::schema::{Attribute, Block, NestedBlock};
use super::value::Value;

/// How long an operation may take when the configuration does not say.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(20 * 60);

/// The block's name in every schema.
const BLOCK: &str = "timeouts";

/// The conventional `timeouts { create update delete }` block, durations such as "20m".
pub fn timeouts_block(create: bool, update: bool, delete: bool) -> NestedBlock {
    let mut block =
        Block::new("How long each operation may take, as a duration such as `30s`, `10m` or `1h`.");
    for (enabled, name) in [(create, "create"), (update, "update"), (delete, "delete")] {
        if enabled {
            block = block.attribute(
                Attribute::string(name)
                    .optional()
                    .description(format!("Time limit for {name} (default `20m`).")),
            );
        }
    }
    NestedBlock::single(BLOCK, block)
}

/// Parses a Go-style duration (`90s`, `2m`, `1h30m`, `500ms`).
pub fn parse_duration(text: &str) -> Option<Duration> {
    let mut rest = text.trim();
    if rest.is_empty() {
        return None;
    }
    let mut total = Duration::ZERO;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(rest.len());
        let (number, after) = rest.split_at(digits);
        let amount: f64 = number.parse().ok()?;
        let unit_len = after
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_len);
        let seconds = match unit {
            "ms" => amount / 1000.0,
            "s" => amount,
            "m" => amount * 60.0,
            "h" => amount * 3600.0,
            _ => return None,
        };
        total = total.checked_add(Duration::try_from_secs_f64(seconds).ok()?)?;
        rest = next;
    }
    Some(total)
}

/// The deadline of `operation` ("create", "update", "delete") from an object's `timeouts` block.
pub fn deadline(object: &Value, operation: &str) -> Instant {
    let limit = object
        .get(BLOCK)
        .get_str(operation)
        .and_then(parse_duration)
        .unwrap_or(DEFAULT_TIMEOUT);
    Instant::now() + limit
}

/// Checks the durations of a configuration's `timeouts` block.
pub fn validate(config: &Value) -> Diagnostics {
    let mut diags = Diagnostics::new();
    if let Value::Object(t) = config.get(BLOCK) {
        for (name, v) in t {
            if let Some(text) = v.as_str() {
                if parse_duration(text).is_none_or(|d| d.is_zero()) {
                    diags.attribute_error(
                        AttributePath::attr(BLOCK).then_attr(name),
                        "Invalid duration",
                        format!("{text:?} is not a positive duration such as 30s, 10m or 1h."),
                    );
                }
            }
        }
    }
    diags
}

/// The `timeouts` block in a model; the engine reads it, resources only carry it along.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Timeouts {
    pub create: Attr<String>,
    pub update: Attr<String>,
    pub delete: Attr<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_like_go() {
        assert_eq!(parse_duration("90s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("1.5m"), Some(Duration::from_secs(90)));
        for bad in ["", "10", "s", "1d", "-1s", "1e400s"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }
}
