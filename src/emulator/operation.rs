//! google.longrunning.Operation as Cloud Run (and Service Usage) serve it.

use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};

/// A long-running operation whose outcome is fixed when it starts and revealed once it is done.
#[derive(Clone, Debug)]
pub(crate) struct LongOp {
    pub name: String,
    pub metadata: Value,
    /// `Ok(response)` or `Err(google.rpc.Status)`.
    pub result: Result<Value, Value>,
    pub done_at: Instant,
    /// Polls (operations.get) still answered "not done" even after `done_at` (fault injection).
    pub polls_left: u32,
}

impl LongOp {
    pub fn new(
        name: String,
        metadata: Value,
        result: Result<Value, Value>,
        done_at: Instant,
        polls: u32,
    ) -> LongOp {
        LongOp {
            name,
            metadata,
            result,
            done_at,
            polls_left: polls,
        }
    }

    pub fn is_done(&self, now: Instant) -> bool {
        now >= self.done_at && self.polls_left == 0
    }

    /// operations.get: every poll uses up one of the injected "not done yet" answers.
    pub fn poll(&mut self, now: Instant) -> Value {
        if self.polls_left > 0 {
            self.polls_left -= 1;
            return self.render(false);
        }
        self.render(now >= self.done_at)
    }

    /// operations.wait: the injected polls do not apply once the time has come.
    pub fn settle(&mut self, now: Instant) {
        if now >= self.done_at {
            self.polls_left = 0;
        }
    }

    /// The operation in proto3 JSON (`done: false` is omitted, as Google omits it).
    pub fn render(&self, done: bool) -> Value {
        let mut out = Map::new();
        out.insert("name".into(), json!(self.name));
        if !self.metadata.is_null() {
            out.insert("metadata".into(), self.metadata.clone());
        }
        if done {
            out.insert("done".into(), json!(true));
            match &self.result {
                Ok(response) => out.insert("response".into(), response.clone()),
                Err(status) => out.insert("error".into(), status.clone()),
            };
        }
        Value::Object(out)
    }
}

/// Parse a google-duration such as `"60s"` or `"1.5s"`.
pub(crate) fn parse_duration(text: &str) -> Option<Duration> {
    let seconds: f64 = text.strip_suffix('s')?.parse().ok()?;
    (seconds.is_finite() && seconds >= 0.0).then(|| Duration::from_secs_f64(seconds.min(86_400.0)))
}

/// A google.rpc.Status value.
pub(crate) fn rpc_status(code: i32, message: &str) -> Value {
    json!({"code": code, "message": message})
}

/// The name of a google.rpc.Code.
pub(crate) fn rpc_code_name(code: i32) -> &'static str {
    match code {
        0 => "OK",
        1 => "CANCELLED",
        2 => "UNKNOWN",
        3 => "INVALID_ARGUMENT",
        4 => "DEADLINE_EXCEEDED",
        5 => "NOT_FOUND",
        6 => "ALREADY_EXISTS",
        7 => "PERMISSION_DENIED",
        8 => "RESOURCE_EXHAUSTED",
        9 => "FAILED_PRECONDITION",
        10 => "ABORTED",
        11 => "OUT_OF_RANGE",
        12 => "UNIMPLEMENTED",
        14 => "UNAVAILABLE",
        15 => "DATA_LOSS",
        16 => "UNAUTHENTICATED",
        _ => "INTERNAL",
    }
}

/// The HTTP status of a google.rpc.Code.
pub(crate) fn rpc_code_http(code: i32) -> u16 {
    match code {
        1 => 499,
        3 | 9 | 11 => 400,
        4 => 504,
        5 => 404,
        6 | 10 => 409,
        7 => 403,
        8 => 429,
        12 => 501,
        14 => 503,
        16 => 401,
        _ => 500,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn done_is_omitted_until_done() {
        let now = Instant::now();
        let mut op = LongOp::new("ops/1".into(), Value::Null, Ok(json!({"x": 1})), now, 1);
        assert_eq!(op.poll(now), json!({"name": "ops/1"}));
        assert_eq!(
            op.poll(now),
            json!({"name": "ops/1", "done": true, "response": {"x": 1}})
        );
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("60s"), Some(Duration::from_secs(60)));
        assert_eq!(parse_duration("0.5s"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("5m"), None);
    }
}
