//! One error type for every Google API call, parsed from both error formats Google uses.

use std::fmt;
use std::time::Duration;

use serde_json::Value;

/// Anything that can go wrong talking to a Google API.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The API answered with an error status.
    #[error("{0}")]
    Api(Box<ApiError>),
    /// A long-running operation finished with an error.
    #[error("operation {name} failed: {error}")]
    Operation { name: String, error: Box<ApiError> },
    /// The request never got an HTTP answer (connection refused, reset, timed out).
    #[error("{request}: {message}")]
    Transport { request: String, message: String },
    /// The answer could not be understood (malformed, oversized or wrong-typed JSON).
    #[error("unexpected response from {what}: {message}")]
    Decode { what: String, message: String },
    /// No access token could be obtained, or the token was rejected.
    #[error("authentication failed: {0}")]
    Auth(String),
    /// The client configuration is unusable (bad endpoint URL, unreadable key).
    #[error("invalid Google client configuration: {0}")]
    Config(String),
    /// The caller's deadline passed before the work finished.
    #[error("timed out after {} waiting for {what}", seconds(*.after))]
    Timeout { what: String, after: Duration },
    /// Terraform asked the provider to stop.
    #[error("cancelled: Terraform asked the provider to stop")]
    Cancelled,
}

fn seconds(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

/// An error answer from a Google API, in either the AIP-193 or compute's legacy format.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ApiError {
    /// HTTP status code (for operation errors, the status Google maps the error to).
    pub http_status: u16,
    /// Canonical status name such as `NOT_FOUND` or `ABORTED`; compute often omits it.
    pub status: Option<String>,
    /// `ErrorInfo.reason`, or compute's `errors[0].reason` / operation `errors[0].code`.
    pub reason: Option<String>,
    /// Human-readable message from Google.
    pub message: String,
    /// `ErrorInfo.metadata.service`, e.g. `iap.googleapis.com` when that API is disabled.
    pub service: Option<String>,
    /// `ErrorInfo.metadata.activationUrl` for a disabled API.
    pub activation_url: Option<String>,
    /// Delay Google asked for, from `Retry-After` or `google.rpc.RetryInfo`.
    pub retry_delay: Option<Duration>,
    /// The request that failed, as `METHOD path` (no query, no headers).
    pub request: Option<String>,
    /// Extra advice added by the client for a Terraform diagnostic.
    pub hint: Option<String>,
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut text = String::new();
        if let Some(request) = &self.request {
            text.push_str(request);
            text.push_str(": ");
        }
        text.push_str(&format!("HTTP {}", self.http_status));
        if let Some(status) = &self.status {
            text.push(' ');
            text.push_str(status);
        }
        if !self.message.is_empty() {
            text.push_str(": ");
            text.push_str(&self.message);
        }
        if let Some(reason) = &self.reason {
            if !self.message.contains(reason.as_str()) {
                text.push_str(&format!(" (reason: {reason})"));
            }
        }
        if self.is_service_disabled() {
            let service = self.service.as_deref().unwrap_or("the API");
            let mut advice = format!("Enable {service} in the project");
            if let Some(url) = &self.activation_url {
                advice.push_str(&format!(" at {url}"));
            }
            advice.push_str(", wait a few minutes, and retry.");
            append_sentence(&mut text, &advice);
        }
        if let Some(hint) = &self.hint {
            append_sentence(&mut text, hint);
        }
        f.write_str(&text)
    }
}

/// The organization policy that refused IAM members: domain restricted sharing answers setIamPolicy
/// with 400 FAILED_PRECONDITION and a `PreconditionFailure` naming
/// `constraints/iam.allowedPolicyMemberDomains` (research/api_contract.md §7, #17), whose message
/// alone does not say which policy or member.
fn org_policy_hint(detail: &Value) -> Option<String> {
    const CONSTRAINT: &str = "constraints/iam.allowedPolicyMemberDomains";
    let subjects: Vec<&str> = detail
        .get("violations")?
        .as_array()?
        .iter()
        .filter(|v| v.get("type").and_then(Value::as_str) == Some(CONSTRAINT))
        .map(|v| v.get("subject").and_then(Value::as_str).unwrap_or("?"))
        .collect();
    if subjects.is_empty() {
        return None;
    }
    Some(format!(
        "The organization policy {CONSTRAINT} (domain restricted sharing) allows only members of \
         the organization's permitted customers, and refused {}. Remove those members, or ask an \
         organization policy administrator to allow them for this project.",
        subjects.join(", ")
    ))
}

/// Appends a sentence, adding a full stop to the previous one only when it lacks one.
fn append_sentence(text: &mut String, sentence: &str) {
    if !text.ends_with('.') {
        text.push('.');
    }
    text.push(' ');
    text.push_str(sentence);
}

impl ApiError {
    /// Parses an error body of any Google format; falls back to the raw text.
    pub fn from_body(http_status: u16, body: &[u8]) -> ApiError {
        let mut error = ApiError {
            http_status,
            ..ApiError::default()
        };
        let parsed: Option<Value> = serde_json::from_slice(body).ok();
        match parsed.as_ref().and_then(|v| v.get("error")) {
            Some(Value::Object(obj)) => error.fill_from_status_object(obj),
            // OAuth token endpoints answer {"error":"invalid_grant","error_description":"..."}.
            Some(Value::String(code)) => {
                error.reason = Some(code.clone());
                error.message = parsed
                    .as_ref()
                    .and_then(|v| v.get("error_description"))
                    .and_then(Value::as_str)
                    .unwrap_or(code)
                    .to_string();
            }
            _ => error.message = plain_text_excerpt(body),
        }
        if error.message.is_empty() {
            error.message = default_reason_phrase(http_status).to_string();
        }
        error
    }

    /// Builds an error from a `google.rpc.Status` object (Run and Service Usage operations).
    pub fn from_rpc_status(status: &Value) -> ApiError {
        let mut error = ApiError::default();
        if let Some(obj) = status.as_object() {
            error.fill_from_status_object(obj);
        }
        // In a google.rpc.Status, `code` is the gRPC code, not an HTTP status.
        let grpc = status.get("code").and_then(Value::as_i64).unwrap_or(2);
        let (name, http) = grpc_code(grpc);
        error.http_status = http;
        if error.status.is_none() {
            error.status = Some(name.to_string());
        }
        if error.message.is_empty() {
            error.message = name.to_string();
        }
        error
    }

    fn fill_from_status_object(&mut self, obj: &serde_json::Map<String, Value>) {
        if let Some(message) = obj.get("message").and_then(Value::as_str) {
            self.message = message.to_string();
        }
        if let Some(status) = obj.get("status").and_then(Value::as_str) {
            if !status.is_empty() {
                self.status = Some(status.to_string());
            }
        }
        // Compute's legacy list: {"errors":[{"domain","reason","message"}]}.
        if let Some(first) = obj
            .get("errors")
            .and_then(Value::as_array)
            .and_then(|a| a.first())
        {
            if let Some(reason) = first.get("reason").and_then(Value::as_str) {
                self.reason = Some(reason.to_string());
            }
            if self.message.is_empty() {
                if let Some(message) = first.get("message").and_then(Value::as_str) {
                    self.message = message.to_string();
                }
            }
        }
        for detail in obj
            .get("details")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default()
        {
            let kind = detail.get("@type").and_then(Value::as_str).unwrap_or("");
            if kind.ends_with("google.rpc.ErrorInfo") {
                // ErrorInfo is the documented machine-readable reason; it wins over errors[].
                if let Some(reason) = detail.get("reason").and_then(Value::as_str) {
                    self.reason = Some(reason.to_string());
                }
                let metadata = detail.get("metadata");
                let field = |name: &str| {
                    metadata
                        .and_then(|m| m.get(name))
                        .and_then(Value::as_str)
                        .map(str::to_string)
                };
                self.service = self.service.take().or_else(|| field("service"));
                self.activation_url = self
                    .activation_url
                    .take()
                    .or_else(|| field("activationUrl"));
            } else if kind.ends_with("google.rpc.RetryInfo") {
                self.retry_delay = detail
                    .get("retryDelay")
                    .and_then(Value::as_str)
                    .and_then(parse_google_duration);
            } else if kind.ends_with("google.rpc.PreconditionFailure") {
                self.hint = self.hint.take().or_else(|| org_policy_hint(detail));
            }
        }
    }

    /// True for 404 NOT_FOUND.
    pub fn is_not_found(&self) -> bool {
        self.http_status == 404
    }

    /// True for 409 ABORTED: a concurrent change (stale etag); redo the read-modify-write.
    pub fn is_conflict(&self) -> bool {
        self.http_status == 409
            && match self.status.as_deref() {
                Some(status) => status == "ABORTED",
                None => !self.is_already_exists(),
            }
    }

    /// True for 409 ALREADY_EXISTS (never retried).
    pub fn is_already_exists(&self) -> bool {
        self.http_status == 409
            && (self.status.as_deref() == Some("ALREADY_EXISTS")
                || self.reason.as_deref() == Some("alreadyExists"))
    }

    /// True for 412: compute's stale `fingerprint` (`conditionNotMet`).
    pub fn is_precondition_failed(&self) -> bool {
        self.http_status == 412
    }

    /// True for 403 SERVICE_DISABLED: the API is not enabled in the project.
    pub fn is_service_disabled(&self) -> bool {
        self.http_status == 403
            && matches!(
                self.reason.as_deref(),
                Some("SERVICE_DISABLED") | Some("accessNotConfigured")
            )
    }

    /// True for a 403 that is a real permission problem (not a disabled API, not a rate limit).
    pub fn is_permission_denied(&self) -> bool {
        self.http_status == 403
            && !self.is_service_disabled()
            && !matches!(
                self.reason.as_deref(),
                Some("rateLimitExceeded")
                    | Some("userRateLimitExceeded")
                    | Some("CONCURRENT_OPERATIONS_QUOTA_EXCEEDED")
                    | Some("RATE_LIMIT_EXCEEDED")
            )
    }

    /// True for 401 UNAUTHENTICATED.
    pub fn is_unauthenticated(&self) -> bool {
        self.http_status == 401
    }
}

impl Error {
    /// The API error behind this error, for an HTTP error or a failed operation.
    pub fn api(&self) -> Option<&ApiError> {
        match self {
            Error::Api(e) => Some(e),
            Error::Operation { error, .. } => Some(error),
            _ => None,
        }
    }

    /// HTTP status, when the API answered.
    pub fn http_status(&self) -> Option<u16> {
        self.api().map(|e| e.http_status)
    }

    /// Canonical Google status name (`NOT_FOUND`, `ABORTED`, ...), when known.
    pub fn status(&self) -> Option<&str> {
        self.api().and_then(|e| e.status.as_deref())
    }

    /// Machine-readable reason (`SERVICE_DISABLED`, `conditionNotMet`, ...), when known.
    pub fn reason(&self) -> Option<&str> {
        self.api().and_then(|e| e.reason.as_deref())
    }

    /// Google's message, or this error's text.
    pub fn message(&self) -> String {
        match self.api() {
            Some(e) => e.message.clone(),
            None => self.to_string(),
        }
    }

    /// Delay Google asked for before a retry, if any.
    pub fn retry_delay(&self) -> Option<Duration> {
        self.api().and_then(|e| e.retry_delay)
    }

    /// 404: the resource does not exist.
    pub fn is_not_found(&self) -> bool {
        self.api().is_some_and(ApiError::is_not_found)
    }

    /// 409 ABORTED: concurrent change; distinct from ALREADY_EXISTS.
    pub fn is_conflict(&self) -> bool {
        self.api().is_some_and(ApiError::is_conflict)
    }

    /// 409 ALREADY_EXISTS.
    pub fn is_already_exists(&self) -> bool {
        self.api().is_some_and(ApiError::is_already_exists)
    }

    /// 412: stale compute fingerprint.
    pub fn is_precondition_failed(&self) -> bool {
        self.api().is_some_and(ApiError::is_precondition_failed)
    }

    /// 403 SERVICE_DISABLED.
    pub fn is_service_disabled(&self) -> bool {
        self.api().is_some_and(ApiError::is_service_disabled)
    }

    /// 403 that is a genuine permission denial.
    pub fn is_permission_denied(&self) -> bool {
        self.api().is_some_and(ApiError::is_permission_denied)
    }

    /// Adds advice to an API error's message; other errors are returned unchanged.
    pub fn with_hint(mut self, hint: impl Into<String>) -> Error {
        if let Error::Api(e) | Error::Operation { error: e, .. } = &mut self {
            e.hint = Some(hint.into());
        }
        self
    }

    pub(crate) fn decode(what: impl Into<String>, message: impl fmt::Display) -> Error {
        Error::Decode {
            what: what.into(),
            message: message.to_string(),
        }
    }
}

/// Maps a google.rpc.Code number to its name and HTTP status (the table in google/rpc/code.proto).
pub fn grpc_code(code: i64) -> (&'static str, u16) {
    match code {
        0 => ("OK", 200),
        1 => ("CANCELLED", 499),
        3 => ("INVALID_ARGUMENT", 400),
        4 => ("DEADLINE_EXCEEDED", 504),
        5 => ("NOT_FOUND", 404),
        6 => ("ALREADY_EXISTS", 409),
        7 => ("PERMISSION_DENIED", 403),
        8 => ("RESOURCE_EXHAUSTED", 429),
        9 => ("FAILED_PRECONDITION", 400),
        10 => ("ABORTED", 409),
        11 => ("OUT_OF_RANGE", 400),
        12 => ("UNIMPLEMENTED", 501),
        13 => ("INTERNAL", 500),
        14 => ("UNAVAILABLE", 503),
        15 => ("DATA_LOSS", 500),
        16 => ("UNAUTHENTICATED", 401),
        _ => ("UNKNOWN", 500),
    }
}

/// Parses a protobuf JSON duration such as `"30s"`, `"1.5s"` or `"0.000001s"`.
pub fn parse_google_duration(text: &str) -> Option<Duration> {
    let number = text.trim().strip_suffix('s')?;
    let (whole, fraction) = match number.split_once('.') {
        Some((w, f)) => (w, f),
        None => (number, ""),
    };
    if whole.is_empty() && fraction.is_empty() {
        return None;
    }
    if !whole.bytes().all(|b| b.is_ascii_digit()) || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let secs: u64 = if whole.is_empty() {
        0
    } else {
        whole.parse().ok()?
    };
    let mut nanos: u32 = 0;
    for (i, digit) in fraction.bytes().take(9).enumerate() {
        nanos += u32::from(digit - b'0') * 10u32.pow(8 - i as u32);
    }
    Some(Duration::new(secs, nanos))
}

/// Formats a duration the way protobuf JSON expects (`"12.5s"`).
pub fn format_google_duration(d: Duration) -> String {
    let nanos = d.subsec_nanos();
    if nanos == 0 {
        return format!("{}s", d.as_secs());
    }
    let fraction = format!("{nanos:09}");
    format!("{}.{}s", d.as_secs(), fraction.trim_end_matches('0'))
}

fn plain_text_excerpt(body: &[u8]) -> String {
    const LIMIT: usize = 300;
    let text = String::from_utf8_lossy(body);
    let text: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let text = text.trim();
    if text.chars().count() > LIMIT {
        let cut: String = text.chars().take(LIMIT).collect();
        format!("{cut}…")
    } else {
        text.to_string()
    }
}

fn default_reason_phrase(status: u16) -> &'static str {
    http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("unexpected HTTP status")
}

/// A list of what `service` (e.g. `compute.googleapis.com`) holds in a project where that API is
/// disabled: empty, for nothing of it can exist there. Other errors, a disabled API the answer
/// names as another one included, stay errors.
pub fn empty_if_disabled<T: Default>(result: Result<T, Error>, service: &str) -> Result<T, Error> {
    match result {
        Err(e)
            if e.is_service_disabled()
                && e.api()
                    .and_then(|a| a.service.as_deref())
                    .is_none_or(|s| s == service) =>
        {
            Ok(T::default())
        }
        other => other,
    }
}

/// A read of an object that may not exist: `None` for 404, other errors as they are.
pub fn found<T>(result: Result<T, Error>) -> Result<Option<T>, Error> {
    match result {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(status: u16, body: Value) -> ApiError {
        ApiError::from_body(status, body.to_string().as_bytes())
    }

    #[test]
    fn a_member_refused_by_domain_restricted_sharing_names_the_policy_and_the_member() {
        let e = parse(
            400,
            json!({"error": {
                "code": 400, "status": "FAILED_PRECONDITION",
                "message": "One or more users named in the policy do not belong to a permitted customer.",
                "details": [{
                    "@type": "type.googleapis.com/google.rpc.PreconditionFailure",
                    "violations": [{"type": "constraints/iam.allowedPolicyMemberDomains",
                                    "subject": "allUsers",
                                    "description": "User allUsers is not in permitted organization."}]
                }]
            }}),
        );
        let text = e.to_string();
        assert!(text.contains("permitted customer."), "{text}");
        assert!(
            text.contains("constraints/iam.allowedPolicyMemberDomains (domain restricted sharing)"),
            "{text}"
        );
        assert!(text.contains("refused allUsers."), "{text}");
        // Another precondition names no member policy: no hint.
        let other = parse(
            400,
            json!({"error": {"code": 400, "status": "FAILED_PRECONDITION", "message": "no",
                "details": [{"@type": "type.googleapis.com/google.rpc.PreconditionFailure",
                             "violations": [{"type": "TOS", "subject": "x"}]}]}}),
        );
        assert_eq!(other.hint, None);
    }

    #[test]
    fn parses_aip193_with_error_info_and_retry_info() {
        let e = parse(
            429,
            json!({"error":{"code":429,"message":"Quota exceeded","status":"RESOURCE_EXHAUSTED",
                "details":[
                    {"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"RATE_LIMIT_EXCEEDED","domain":"googleapis.com","metadata":{"service":"run.googleapis.com"}},
                    {"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"2.5s"}]}}),
        );
        assert_eq!(e.http_status, 429);
        assert_eq!(e.status.as_deref(), Some("RESOURCE_EXHAUSTED"));
        assert_eq!(e.reason.as_deref(), Some("RATE_LIMIT_EXCEEDED"));
        assert_eq!(e.message, "Quota exceeded");
        assert_eq!(e.service.as_deref(), Some("run.googleapis.com"));
        assert_eq!(e.retry_delay, Some(Duration::from_millis(2500)));
    }

    #[test]
    fn parses_compute_legacy_format() {
        let e = parse(
            412,
            json!({"error":{"code":412,"message":"Invalid fingerprint.","errors":[
                {"message":"Invalid fingerprint.","domain":"global","reason":"conditionNotMet"}]}}),
        );
        assert_eq!(e.http_status, 412);
        assert_eq!(e.status, None);
        assert_eq!(e.reason.as_deref(), Some("conditionNotMet"));
        assert_eq!(e.message, "Invalid fingerprint.");
        assert!(e.is_precondition_failed());
        assert!(!e.is_conflict());
    }

    #[test]
    fn compute_message_falls_back_to_first_error() {
        let e = parse(
            403,
            json!({"error":{"code":403,"errors":[{"message":"Rate Limit Exceeded","domain":"usageLimits","reason":"rateLimitExceeded"}]}}),
        );
        assert_eq!(e.message, "Rate Limit Exceeded");
        assert_eq!(e.reason.as_deref(), Some("rateLimitExceeded"));
        assert!(!e.is_permission_denied());
    }

    #[test]
    fn service_disabled_is_detected_and_explained() {
        let e = parse(
            403,
            json!({"error":{"code":403,"message":"Cloud Identity-Aware Proxy API has not been used in project 1 before or it is disabled.","status":"PERMISSION_DENIED",
                "details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"SERVICE_DISABLED","domain":"googleapis.com",
                    "metadata":{"service":"iap.googleapis.com","activationUrl":"https://console.developers.google.com/apis/api/iap.googleapis.com/overview?project=1"}}]}}),
        );
        assert!(e.is_service_disabled());
        assert!(!e.is_permission_denied());
        let text = e.to_string();
        assert!(text.contains("Enable iap.googleapis.com"), "{text}");
        assert!(text.contains("activationUrl") || text.contains("overview?project=1"));
    }

    #[test]
    fn a_list_is_empty_only_where_the_api_it_belongs_to_is_disabled() {
        let disabled = |service: &str| {
            Error::Api(Box::new(parse(
                403,
                json!({"error":{"code":403,"message":"disabled","status":"PERMISSION_DENIED",
                    "details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"SERVICE_DISABLED",
                        "metadata":{"service":service}}]}}),
            )))
        };
        let compute = "compute.googleapis.com";
        let list = empty_if_disabled(Err::<Vec<u8>, _>(disabled(compute)), compute);
        assert_eq!(list.expect("empty"), Vec::<u8>::new());
        // Another API disabled (say the quota project's) says nothing about compute's resources.
        let other = empty_if_disabled(Err::<Vec<u8>, _>(disabled("iap.googleapis.com")), compute);
        assert!(other.is_err());
        // A real permission denial stays an error.
        let denied = Error::Api(Box::new(parse(
            403,
            json!({"error":{"code":403,"message":"Required 'compute.networkEndpointGroups.list' permission","errors":[{"reason":"forbidden"}]}}),
        )));
        assert!(empty_if_disabled(Err::<Vec<u8>, _>(denied), compute).is_err());
    }

    #[test]
    fn conflict_is_distinct_from_already_exists() {
        let aborted = parse(
            409,
            json!({"error":{"code":409,"message":"There were concurrent policy changes.","status":"ABORTED"}}),
        );
        let exists = parse(
            409,
            json!({"error":{"code":409,"message":"exists","status":"ALREADY_EXISTS"}}),
        );
        assert!(aborted.is_conflict());
        assert!(!aborted.is_already_exists());
        assert!(exists.is_already_exists());
        assert!(!exists.is_conflict());
    }

    #[test]
    fn permission_denied_and_not_found() {
        let denied = parse(
            403,
            json!({"error":{"code":403,"message":"denied","status":"PERMISSION_DENIED"}}),
        );
        assert!(denied.is_permission_denied());
        assert!(!denied.is_not_found());
        let missing = parse(
            404,
            json!({"error":{"code":404,"message":"gone","status":"NOT_FOUND"}}),
        );
        assert!(missing.is_not_found());
        assert!(!missing.is_permission_denied());
    }

    #[test]
    fn oauth_error_format() {
        let e = parse(
            400,
            json!({"error":"invalid_grant","error_description":"Invalid JWT Signature."}),
        );
        assert_eq!(e.reason.as_deref(), Some("invalid_grant"));
        assert_eq!(e.message, "Invalid JWT Signature.");
    }

    #[test]
    fn non_json_and_wrong_typed_bodies_do_not_panic() {
        let e = ApiError::from_body(502, b"<html>\n<b>Bad Gateway</b></html>");
        assert_eq!(e.http_status, 502);
        assert!(e.message.contains("Bad Gateway"));
        assert!(!e.message.contains('\n'));
        let e = ApiError::from_body(500, b"");
        assert_eq!(e.message, "Internal Server Error");
        let e = parse(
            500,
            json!({"error":{"code":"x","message":7,"errors":"nope","details":{"a":1}}}),
        );
        assert_eq!(e.http_status, 500);
        assert_eq!(e.message, "Internal Server Error");
        let e = parse(
            400,
            json!({"error":{"details":[{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":42}]}}),
        );
        assert_eq!(e.retry_delay, None);
        let long = "x".repeat(10_000);
        let e = ApiError::from_body(500, long.as_bytes());
        assert!(e.message.chars().count() <= 301);
    }

    #[test]
    fn rpc_status_maps_grpc_codes() {
        let e = ApiError::from_rpc_status(&json!({"code":10,"message":"etag mismatch"}));
        assert_eq!(e.http_status, 409);
        assert_eq!(e.status.as_deref(), Some("ABORTED"));
        assert!(e.is_conflict());
        let e = ApiError::from_rpc_status(&json!({"code":9}));
        assert_eq!(e.http_status, 400);
        assert_eq!(e.message, "FAILED_PRECONDITION");
        let e = ApiError::from_rpc_status(&json!("garbage"));
        assert_eq!(e.http_status, 500);
    }

    #[test]
    fn display_is_diagnostic_friendly() {
        let mut e = parse(
            404,
            json!({"error":{"code":404,"message":"Resource 'svc' of kind 'SERVICE' does not exist.","status":"NOT_FOUND"}}),
        );
        e.request = Some("GET v2/projects/p/locations/l/services/svc".into());
        let err = Error::Api(Box::new(e)).with_hint("Check the service name");
        assert_eq!(
            err.to_string(),
            "GET v2/projects/p/locations/l/services/svc: HTTP 404 NOT_FOUND: Resource 'svc' of kind 'SERVICE' does not exist. Check the service name"
        );
        assert!(err.is_not_found());
        assert_eq!(err.status(), Some("NOT_FOUND"));
    }

    #[test]
    fn google_durations() {
        assert_eq!(parse_google_duration("30s"), Some(Duration::from_secs(30)));
        assert_eq!(
            parse_google_duration("1.5s"),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(
            parse_google_duration(".25s"),
            Some(Duration::from_millis(250))
        );
        assert_eq!(
            parse_google_duration("0.000000001s"),
            Some(Duration::from_nanos(1))
        );
        assert_eq!(parse_google_duration("-1s"), None);
        assert_eq!(parse_google_duration("s"), None);
        assert_eq!(parse_google_duration("5"), None);
        assert_eq!(parse_google_duration("99999999999999999999999s"), None);
        assert_eq!(format_google_duration(Duration::from_secs(30)), "30s");
        assert_eq!(format_google_duration(Duration::from_millis(1500)), "1.5s");
    }
}
