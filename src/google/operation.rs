//! Waiting for long-running operations: Cloud Run (`:wait`), Compute (`/wait`) and
//! Service Usage (`operations.get`, never for an already-done operation).

use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::{json, Value};

use super::error::{format_google_duration, ApiError, Error};
use super::transport::{name_segments, Api, BaseUrl, Call, Replay, Transport};

/// Longest single server-side wait requested from Cloud Run.
const RUN_WAIT_SLICE: Duration = Duration::from_secs(30);
/// Compute's operations.wait blocks for up to about two minutes; allow a little more.
const COMPUTE_WAIT_TIMEOUT: Duration = Duration::from_secs(130);
/// A compute wait answering sooner than this without DONE returned early (best effort).
const COMPUTE_EARLY_ANSWER: Duration = Duration::from_secs(60);

/// A `google.longrunning.Operation` (Cloud Run, Service Usage).
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Operation {
    /// Operation name, e.g. `projects/p/locations/l/operations/id`.
    #[serde(default)]
    pub name: String,
    /// Whether the operation has finished.
    #[serde(default)]
    pub done: bool,
    /// `google.rpc.Status` when it failed.
    #[serde(default)]
    pub error: Option<Value>,
    /// The result when it succeeded (e.g. the Cloud Run Service).
    #[serde(default)]
    pub response: Option<Value>,
    /// Service-specific progress data.
    #[serde(default)]
    pub metadata: Option<Value>,
}

impl Operation {
    /// The response of a finished operation, or its error.
    pub fn outcome(&self) -> Result<Value, Error> {
        if let Some(status) = &self.error {
            return Err(Error::Operation {
                name: self.name.clone(),
                error: Box::new(ApiError::from_rpc_status(status)),
            });
        }
        Ok(self.response.clone().unwrap_or(Value::Null))
    }
}

/// A compute `Operation` (`compute#operation`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ComputeOperation {
    #[serde(default)]
    pub name: String,
    /// `PENDING`, `RUNNING` or `DONE`.
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub target_link: Option<String>,
    #[serde(default)]
    pub self_link: Option<String>,
    #[serde(default)]
    pub client_operation_id: Option<String>,
    #[serde(default)]
    pub error: Option<Value>,
    #[serde(default)]
    pub http_error_status_code: Option<i64>,
    #[serde(default)]
    pub http_error_message: Option<String>,
    #[serde(default)]
    pub warnings: Option<Value>,
}

impl ComputeOperation {
    /// Whether the operation has finished (successfully or not).
    pub fn is_done(&self) -> bool {
        self.status == "DONE"
    }

    /// The error of a finished operation, built from `error.errors[]` and `httpError*`.
    pub fn failure(&self) -> Option<Error> {
        let errors = self
            .error
            .as_ref()
            .and_then(|e| e.get("errors"))
            .and_then(Value::as_array)
            .filter(|a| !a.is_empty());
        if errors.is_none() && self.http_error_status_code.is_none_or(|c| c < 400) {
            return None;
        }
        let errors = errors.map(Vec::as_slice).unwrap_or_default();
        let messages: Vec<&str> = errors
            .iter()
            .filter_map(|e| e.get("message").and_then(Value::as_str))
            .collect();
        let mut message = messages.join("; ");
        if message.is_empty() {
            message = self
                .http_error_message
                .clone()
                .unwrap_or_else(|| "the operation failed".into());
        }
        let http_status = self
            .http_error_status_code
            .and_then(|c| u16::try_from(c).ok())
            .unwrap_or(400);
        Some(Error::Operation {
            name: self.name.clone(),
            error: Box::new(ApiError {
                http_status,
                reason: errors
                    .first()
                    .and_then(|e| e.get("code"))
                    .and_then(Value::as_str)
                    .map(str::to_string),
                message,
                ..ApiError::default()
            }),
        })
    }
}

/// Path segments of `name` with `:verb` appended to the last one.
pub(crate) fn with_verb(prefix: &[&str], name: &str, verb: &str) -> Vec<String> {
    let mut segments: Vec<String> = prefix.iter().map(|s| s.to_string()).collect();
    segments.extend(name_segments(name).map(str::to_string));
    if let Some(last) = segments.last_mut() {
        last.push(':');
        last.push_str(verb);
    }
    segments
}

/// Logs the start of a real wait (the operation was not done when it came back), so that a long step
/// shows under `TF_LOG=debug`; returns whether it logged.
fn log_wait_start(what: &str, done: bool) -> bool {
    if !done {
        tracing::debug!(operation = %what, "waiting for long-running operation");
    }
    !done
}

/// Logs the end of a wait that `log_wait_start` announced.
fn log_wait_end(what: &str, started: Instant, announced: bool) {
    if announced {
        tracing::debug!(
            operation = %what,
            waited_ms = started.elapsed().as_millis() as u64,
            "long-running operation finished"
        );
    }
}

fn timeout_error(what: String, started: Instant) -> Error {
    Error::Timeout {
        what,
        after: started.elapsed(),
    }
}

/// Turns a failed wait request into a timeout when the deadline is what cut it short.
fn deadline_aware(error: Error, what: &str, started: Instant, deadline: Instant) -> Error {
    if matches!(error, Error::Transport { .. }) && Instant::now() >= deadline {
        timeout_error(what.to_string(), started)
    } else {
        error
    }
}

/// Waits for a Cloud Run operation with `:wait` until done or `deadline`; returns its
/// response (the Service).
pub(crate) async fn wait_run(
    transport: &Transport,
    base: &BaseUrl,
    mut op: Operation,
    deadline: Instant,
) -> Result<Value, Error> {
    let started = Instant::now();
    let what = format!("Cloud Run operation {}", op.name);
    let announced = log_wait_start(&what, op.done);
    let mut early = 0;
    loop {
        if op.done {
            log_wait_end(&what, started, announced);
            return op.outcome();
        }
        if op.name.is_empty() {
            return Err(Error::decode("Cloud Run", "operation without a name"));
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(timeout_error(what, started));
        }
        let slice = RUN_WAIT_SLICE.min(remaining.mul_f64(0.9));
        let asked = Instant::now();
        let url = base.join(with_verb(&["v2"], &op.name, "wait"));
        let call = Call::post(Api::Run, url)
            .body(json!({ "timeout": format_google_duration(round_ms(slice)) }))
            .replay(Replay::Safe)
            .deadline(Some(deadline))
            .timeout(slice + Duration::from_secs(10));
        op = transport
            .send_as(call)
            .await
            .map_err(|e| deadline_aware(e, &what, started, deadline))?;
        if !op.done && asked.elapsed() < slice / 2 {
            // The wait is best-effort and came back early; pace the next one.
            early += 1;
            transport.pause(pace(transport, early, deadline)).await?;
        }
    }
}

/// Where a compute operation lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum OperationScope<'a> {
    Global,
    Region(&'a str),
}

/// Waits for a compute operation with `operations.wait` until DONE or `deadline`.
pub(crate) async fn wait_compute(
    transport: &Transport,
    base: &BaseUrl,
    project: &str,
    scope: OperationScope<'_>,
    mut op: ComputeOperation,
    deadline: Instant,
) -> Result<ComputeOperation, Error> {
    let started = Instant::now();
    let what = format!("compute operation {}", op.name);
    let announced = log_wait_start(&what, op.is_done());
    let mut early = 0;
    loop {
        if op.is_done() {
            log_wait_end(&what, started, announced);
            return match op.failure() {
                Some(error) => Err(error),
                None => Ok(op),
            };
        }
        if op.name.is_empty() {
            return Err(Error::decode("Compute", "operation without a name"));
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(timeout_error(what, started));
        }
        let url = match &scope {
            OperationScope::Global => base.join([
                "projects",
                project,
                "global",
                "operations",
                op.name.as_str(),
                "wait",
            ]),
            OperationScope::Region(region) => base.join([
                "projects",
                project,
                "regions",
                region,
                "operations",
                op.name.as_str(),
                "wait",
            ]),
        };
        let asked = Instant::now();
        let call = Call::post(Api::Compute, url)
            .replay(Replay::Safe)
            .deadline(Some(deadline))
            .timeout(COMPUTE_WAIT_TIMEOUT.min(remaining.max(Duration::from_secs(1))));
        op = transport
            .send_as(call)
            .await
            .map_err(|e| deadline_aware(e, &what, started, deadline))?;
        if !op.is_done() && asked.elapsed() < COMPUTE_EARLY_ANSWER {
            early += 1;
            transport.pause(pace(transport, early, deadline)).await?;
        }
    }
}

/// Follows a Service Usage operation: a done one is used as is (polling
/// `operations/finished.DONE_OPERATION` fails), otherwise `operations.get` with backoff.
pub(crate) async fn wait_service_usage(
    transport: &Transport,
    base: &BaseUrl,
    mut op: Operation,
    deadline: Instant,
) -> Result<Value, Error> {
    let started = Instant::now();
    let what = format!("Service Usage operation {}", op.name);
    let announced = log_wait_start(&what, op.done);
    let mut polls = 0;
    loop {
        if op.done {
            log_wait_end(&what, started, announced);
            return op.outcome();
        }
        if op.name.is_empty() {
            return Err(Error::decode("Service Usage", "operation without a name"));
        }
        if Instant::now() >= deadline {
            return Err(timeout_error(what, started));
        }
        polls += 1;
        transport.pause(pace(transport, polls, deadline)).await?;
        let mut segments = vec!["v1beta1".to_string()];
        segments.extend(name_segments(&op.name).map(str::to_string));
        let call = Call::get(Api::ServiceUsage, base.join(segments)).deadline(Some(deadline));
        op = transport
            .send_as(call)
            .await
            .map_err(|e| deadline_aware(e, &what, started, deadline))?;
    }
}

/// Backoff between polls, never past the deadline.
fn pace(transport: &Transport, attempt: u32, deadline: Instant) -> Duration {
    transport
        .backoff(attempt)
        .min(deadline.saturating_duration_since(Instant::now()))
}

fn round_ms(d: Duration) -> Duration {
    Duration::from_millis(d.as_millis().min(u128::from(u64::MAX)) as u64)
        .max(Duration::from_millis(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_operation_outcome() {
        let ok: Operation = serde_json::from_value(json!({
            "name": "projects/p/locations/l/operations/1", "done": true,
            "response": {"@type": "type.googleapis.com/google.cloud.run.v2.Service", "name": "s"}}))
        .expect("op");
        assert_eq!(ok.outcome().expect("ok")["name"], "s");
        let failed: Operation = serde_json::from_value(json!({
            "name": "op", "done": true, "error": {"code": 9, "message": "Revision failed"}}))
        .expect("op");
        let err = failed.outcome().expect_err("failed op");
        assert_eq!(err.http_status(), Some(400));
        assert_eq!(err.status(), Some("FAILED_PRECONDITION"));
        assert!(err.to_string().contains("operation op failed"), "{err}");
        assert!(err.to_string().contains("Revision failed"), "{err}");
    }

    #[test]
    fn compute_operation_failure() {
        let op: ComputeOperation = serde_json::from_value(json!({
            "name": "operation-1", "status": "DONE", "httpErrorStatusCode": 412,
            "httpErrorMessage": "PRECONDITION FAILED",
            "error": {"errors": [{"code": "CONDITION_NOT_MET", "message": "Invalid fingerprint."},
                                  {"code": "OTHER", "message": "second"}]}}))
        .expect("op");
        let err = op.failure().expect("failure");
        assert!(err.is_precondition_failed());
        assert_eq!(err.reason(), Some("CONDITION_NOT_MET"));
        assert_eq!(err.message(), "Invalid fingerprint.; second");

        let ok: ComputeOperation =
            serde_json::from_value(json!({"name": "operation-2", "status": "DONE"})).expect("op");
        assert!(ok.is_done());
        assert!(ok.failure().is_none());

        let only_http: ComputeOperation = serde_json::from_value(json!({
            "name": "operation-3", "status": "DONE", "httpErrorStatusCode": 403, "httpErrorMessage": "FORBIDDEN"}))
        .expect("op");
        let err = only_http.failure().expect("failure");
        assert_eq!(err.http_status(), Some(403));
        assert_eq!(err.message(), "FORBIDDEN");
    }

    #[test]
    fn verb_segments() {
        assert_eq!(
            with_verb(&["v2"], "projects/p/locations/l/operations/o", "wait"),
            vec![
                "v2",
                "projects",
                "p",
                "locations",
                "l",
                "operations",
                "o:wait"
            ]
        );
    }
}
