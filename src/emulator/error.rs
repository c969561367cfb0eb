//! API errors in Google's two JSON shapes: AIP-193 (Run, IAP, Service Usage, Resource Manager) and
//! compute's legacy `errors[]` shape.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

/// One error answer; rendered per API flavour at the edge.
#[derive(Debug, Clone)]
pub(crate) struct ApiError {
    pub code: u16,
    pub status: &'static str,
    /// Legacy (compute) `errors[0].reason`.
    pub reason: &'static str,
    pub message: String,
    pub details: Vec<Value>,
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(
        code: u16,
        status: &'static str,
        reason: &'static str,
        message: impl Into<String>,
    ) -> Self {
        ApiError {
            code,
            status,
            reason,
            message: message.into(),
            details: Vec::new(),
            retry_after: None,
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(400, "INVALID_ARGUMENT", "invalid", message)
    }

    pub fn failed_precondition(message: impl Into<String>) -> Self {
        Self::new(400, "FAILED_PRECONDITION", "failedPrecondition", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(404, "NOT_FOUND", "notFound", message)
    }

    pub fn already_exists(message: impl Into<String>) -> Self {
        Self::new(409, "ALREADY_EXISTS", "alreadyExists", message)
    }

    pub fn aborted(message: impl Into<String>) -> Self {
        Self::new(409, "ABORTED", "aborted", message)
    }

    pub fn permission_denied(message: impl Into<String>) -> Self {
        Self::new(403, "PERMISSION_DENIED", "forbidden", message)
    }

    /// Compute's stale or missing fingerprint.
    pub fn condition_not_met(message: impl Into<String>) -> Self {
        Self::new(412, "FAILED_PRECONDITION", "conditionNotMet", message)
    }

    pub fn unimplemented(message: impl Into<String>) -> Self {
        Self::new(501, "UNIMPLEMENTED", "notImplemented", message)
    }

    pub fn unauthenticated() -> Self {
        Self::new(
            401,
            "UNAUTHENTICATED",
            "required",
            "Request is missing required authentication credential. Expected OAuth 2 access token, login cookie \
             or other valid authentication credential. See \
             https://developers.google.com/identity/sign-in/web/devconsole-project.",
        )
        .with_detail(json!({
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": "CREDENTIALS_MISSING",
            "domain": "googleapis.com",
        }))
    }

    /// The concurrent-modification answer of IAM's setIamPolicy.
    pub fn concurrent_policy_change() -> Self {
        Self::aborted(
            "There were concurrent policy changes. Please retry the whole read-modify-write with exponential backoff.",
        )
    }

    /// A generic status answer (fault injection) with the usual reason for its code.
    pub fn from_code(code: u16, message: Option<String>) -> Self {
        let (status, reason, text) = match code {
            400 => (
                "INVALID_ARGUMENT",
                "invalid",
                "Request contains an invalid argument.",
            ),
            401 => (
                "UNAUTHENTICATED",
                "required",
                "Request had invalid authentication credentials.",
            ),
            403 => (
                "PERMISSION_DENIED",
                "forbidden",
                "The caller does not have permission",
            ),
            404 => ("NOT_FOUND", "notFound", "Requested entity was not found."),
            409 => ("ABORTED", "aborted", "The operation was aborted."),
            412 => (
                "FAILED_PRECONDITION",
                "conditionNotMet",
                "Precondition check failed.",
            ),
            429 => (
                "RESOURCE_EXHAUSTED",
                "rateLimitExceeded",
                "Quota exceeded: rate limit exceeded.",
            ),
            500 => ("INTERNAL", "backendError", "Internal error encountered."),
            501 => (
                "UNIMPLEMENTED",
                "notImplemented",
                "Operation is not implemented.",
            ),
            502 => ("UNAVAILABLE", "backendError", "Bad gateway."),
            503 => (
                "UNAVAILABLE",
                "backendError",
                "The service is currently unavailable.",
            ),
            504 => (
                "DEADLINE_EXCEEDED",
                "backendError",
                "The deadline expired before the operation could complete.",
            ),
            _ => ("UNKNOWN", "backendError", "Unknown error."),
        };
        let mut error = Self::new(
            code,
            status,
            reason,
            message.unwrap_or_else(|| text.to_string()),
        );
        if code == 429 {
            error = error.with_detail(json!({
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "RATE_LIMIT_EXCEEDED",
                "domain": "googleapis.com",
            }));
        }
        error
    }

    pub fn with_detail(mut self, detail: Value) -> Self {
        self.details.push(detail);
        self
    }

    pub fn with_retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self.details.push(json!({
            "@type": "type.googleapis.com/google.rpc.RetryInfo",
            "retryDelay": format!("{seconds}s"),
        }));
        self
    }

    /// The JSON body, in the legacy compute shape or AIP-193.
    pub fn body(&self, legacy: bool) -> Value {
        if legacy {
            let domain = if matches!(self.reason, "rateLimitExceeded" | "accessNotConfigured") {
                "usageLimits"
            } else {
                "global"
            };
            let mut error = json!({
                "code": self.code,
                "message": self.message,
                "errors": [{"message": self.message, "domain": domain, "reason": self.reason}],
            });
            if !self.details.is_empty() {
                error["details"] = Value::Array(self.details.clone());
            }
            json!({ "error": error })
        } else {
            let mut error =
                json!({"code": self.code, "message": self.message, "status": self.status});
            if !self.details.is_empty() {
                error["details"] = Value::Array(self.details.clone());
            }
            json!({ "error": error })
        }
    }

    pub fn response(&self, legacy: bool) -> Response {
        let mut response = json_response(self.code, &self.body(legacy));
        if let Some(seconds) = self.retry_after {
            if let Ok(value) = HeaderValue::from_str(&seconds.to_string()) {
                response.headers_mut().insert("retry-after", value);
            }
        }
        if self.code == 401 {
            response.headers_mut().insert(
                "www-authenticate",
                HeaderValue::from_static("Bearer realm=\"https://accounts.google.com/\""),
            );
        }
        response
    }
}

/// A JSON response the way Google's front ends send it.
pub(crate) fn json_response(code: u16, body: &Value) -> Response {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let text = serde_json::to_string_pretty(body).unwrap_or_else(|_| "{}".to_string());
    let mut response = (status, text).into_response();
    response.headers_mut().insert(
        "content-type",
        HeaderValue::from_static("application/json; charset=UTF-8"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aip193_shape() {
        let body = ApiError::not_found("gone").body(false);
        assert_eq!(
            body,
            json!({"error": {"code": 404, "message": "gone", "status": "NOT_FOUND"}})
        );
    }

    #[test]
    fn legacy_shape() {
        let body = ApiError::condition_not_met("stale").body(true);
        assert_eq!(
            body,
            json!({"error": {"code": 412, "message": "stale",
                   "errors": [{"message": "stale", "domain": "global", "reason": "conditionNotMet"}]}})
        );
    }

    #[test]
    fn retry_info_detail() {
        let body = ApiError::from_code(429, None)
            .with_retry_after(2)
            .body(false);
        let details = body["error"]["details"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert!(details.iter().any(|d| d["retryDelay"] == "2s"));
        assert_eq!(body["error"]["status"], "RESOURCE_EXHAUSTED");
    }
}
