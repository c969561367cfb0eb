//! Fault injection: the next matching requests fail, slow down, drop the connection, or start
//! operations that end badly.

use std::time::Duration;

use rand::Rng;
use regex::Regex;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::error::ApiError;

/// What a fault does to a matching request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// Answer `status` (e.g. 429, 503, 500), with `Retry-After` and a RetryInfo detail when
    /// `retry_after` is set.
    Status,
    /// Answer 409 ABORTED as for a stale etag.
    StaleEtag,
    /// Answer compute's 412 conditionNotMet as for a stale fingerprint.
    StaleFingerprint,
    /// The matching mutation is not applied; its operation completes with error {code, message}.
    OperationError,
    /// The matching mutation's operation takes `delay_ms` longer and/or reports not-done for `polls` polls.
    OperationDelay,
    /// Answer normally, `delay_ms` later.
    Delay,
    /// Drop the connection without any answer.
    Reset,
    /// The matching `generateServiceIdentity` that provisions a new service agent succeeds, but IAM
    /// writes naming that agent fail with 400 "Service account ... does not exist." for
    /// `delay_ms` (Google's agents take a while to propagate).
    AgentPropagation,
}

/// A fault, as posted to `/__emulator/faults`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultSpec {
    /// What the fault does.
    pub kind: FaultKind,
    /// HTTP method to match (any when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Regular expression searched in the request path (any path when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_regex: Option<String>,
    /// How many matching requests the fault affects (1 when neither count nor probability is set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u32>,
    /// Chance that a matching request is affected (unlimited count unless `count` is set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probability: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// HTTP status answered by a `status` fault.
    pub status: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// `Retry-After` seconds (also a RetryInfo detail) for a `status` fault.
    pub retry_after: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// Error message of a `status`, `stale_*` or `operation_error` fault.
    pub message: Option<String>,
    /// google.rpc.Code for `operation_error` (default 13, INTERNAL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// Extra time for `delay` and `operation_delay` faults.
    pub delay_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// Polls an `operation_delay` fault answers "not done".
    pub polls: Option<u32>,
}

impl FaultSpec {
    /// A fault of this kind for every method and path, once.
    pub fn new(kind: FaultKind) -> FaultSpec {
        FaultSpec {
            kind,
            method: None,
            path_regex: None,
            count: None,
            probability: None,
            status: None,
            retry_after: None,
            message: None,
            code: None,
            delay_ms: None,
            polls: None,
        }
    }

    fn is_terminal(&self) -> bool {
        matches!(
            self.kind,
            FaultKind::Status
                | FaultKind::StaleEtag
                | FaultKind::StaleFingerprint
                | FaultKind::Reset
        )
    }

    fn is_operation(&self) -> bool {
        matches!(
            self.kind,
            FaultKind::OperationError | FaultKind::OperationDelay | FaultKind::AgentPropagation
        )
    }

    /// The error this terminal fault answers, or None for `reset` (no answer at all).
    pub(crate) fn into_error(self, path: &str) -> Option<ApiError> {
        match self.kind {
            FaultKind::Status => {
                let mut error = ApiError::from_code(self.status.unwrap_or(503), self.message);
                if let Some(seconds) = self.retry_after {
                    error = error.with_retry_after(seconds);
                }
                Some(error)
            }
            FaultKind::StaleEtag => Some(if path.ends_with(":setIamPolicy") {
                ApiError::concurrent_policy_change()
            } else {
                ApiError::aborted(self.message.unwrap_or_else(|| {
                    "The etag in the request does not match the current etag of the resource."
                        .into()
                }))
            }),
            FaultKind::StaleFingerprint => {
                Some(ApiError::condition_not_met(self.message.unwrap_or_else(
                    || "Supplied fingerprint does not match current metadata fingerprint.".into(),
                )))
            }
            _ => None,
        }
    }
}

/// What happens to an operation a request starts.
#[derive(Clone, Debug, Default)]
pub(crate) struct OpFault {
    pub error: Option<(i32, String)>,
    pub extra_delay: Duration,
    pub polls: u32,
    /// How long a service agent this call provisions stays unusable in IAM policies.
    pub agent_propagation: Duration,
}

/// The faults that fired for one request.
#[derive(Default)]
pub(crate) struct Fired {
    pub delay: Duration,
    pub terminal: Option<FaultSpec>,
    pub operation: Option<OpFault>,
}

struct Active {
    id: u64,
    spec: FaultSpec,
    regex: Option<Regex>,
    remaining: Option<u32>,
    fired: u32,
}

/// The registered faults.
#[derive(Default)]
pub(crate) struct Faults {
    next_id: u64,
    active: Vec<Active>,
}

impl Faults {
    /// Register a fault; returns its id.
    pub fn add(&mut self, spec: FaultSpec) -> Result<u64, String> {
        let regex = match &spec.path_regex {
            Some(pattern) => {
                Some(Regex::new(pattern).map_err(|e| format!("invalid path_regex: {e}"))?)
            }
            None => None,
        };
        if let Some(p) = spec.probability {
            if !(0.0..=1.0).contains(&p) {
                return Err("probability must be between 0 and 1".into());
            }
        }
        if spec.count == Some(0) {
            return Err("count must be at least 1".into());
        }
        if spec.kind == FaultKind::Status && !spec.status.is_some_and(|s| (400..=599).contains(&s))
        {
            return Err("a status fault needs \"status\" between 400 and 599".into());
        }
        if matches!(spec.kind, FaultKind::Delay) && spec.delay_ms.is_none() {
            return Err("a delay fault needs \"delay_ms\"".into());
        }
        if spec.kind == FaultKind::AgentPropagation && spec.delay_ms.is_none() {
            return Err("an agent_propagation fault needs \"delay_ms\"".into());
        }
        if spec.kind == FaultKind::OperationDelay && spec.delay_ms.is_none() && spec.polls.is_none()
        {
            return Err("an operation_delay fault needs \"delay_ms\" or \"polls\"".into());
        }
        let remaining = match (spec.count, spec.probability) {
            (Some(count), _) => Some(count),
            (None, Some(_)) => None,
            (None, None) => Some(1),
        };
        self.next_id += 1;
        let id = self.next_id;
        self.active.push(Active {
            id,
            spec,
            regex,
            remaining,
            fired: 0,
        });
        Ok(id)
    }

    pub fn remove(&mut self, id: u64) -> bool {
        let before = self.active.len();
        self.active.retain(|a| a.id != id);
        before != self.active.len()
    }

    pub fn clear(&mut self) {
        self.active.clear();
    }

    /// The faults still registered, with their remaining counts.
    pub fn list(&self) -> Value {
        Value::Array(
            self.active
                .iter()
                .map(|a| {
                    let mut v = serde_json::to_value(&a.spec).unwrap_or(Value::Null);
                    v["id"] = json!(a.id);
                    v["remaining"] = json!(a.remaining);
                    v["fired"] = json!(a.fired);
                    v
                })
                .collect(),
        )
    }

    /// Decide which faults affect this request, using up their counts.
    pub fn fire(&mut self, method: &str, path: &str, starts_operation: bool) -> Fired {
        let mut fired = Fired::default();
        let mut rng = rand::thread_rng();
        for active in &mut self.active {
            let spec = &active.spec;
            if spec
                .method
                .as_deref()
                .is_some_and(|m| !m.eq_ignore_ascii_case(method))
            {
                continue;
            }
            if active.regex.as_ref().is_some_and(|re| !re.is_match(path)) {
                continue;
            }
            if spec.is_operation() && !starts_operation {
                continue;
            }
            if spec.is_terminal() && fired.terminal.is_some() {
                continue;
            }
            if spec.is_operation() && fired.operation.is_some() {
                continue;
            }
            if let Some(p) = spec.probability {
                if rng.gen::<f64>() >= p {
                    continue;
                }
            }
            active.fired += 1;
            if let Some(remaining) = active.remaining.as_mut() {
                *remaining = remaining.saturating_sub(1);
            }
            match spec.kind {
                FaultKind::Delay => {
                    fired.delay += Duration::from_millis(spec.delay_ms.unwrap_or(0))
                }
                FaultKind::OperationError => {
                    fired.operation = Some(OpFault {
                        error: Some((
                            spec.code.unwrap_or(13),
                            spec.message
                                .clone()
                                .unwrap_or_else(|| "Internal error encountered.".into()),
                        )),
                        ..OpFault::default()
                    })
                }
                FaultKind::OperationDelay => {
                    fired.operation = Some(OpFault {
                        error: None,
                        extra_delay: Duration::from_millis(spec.delay_ms.unwrap_or(0)),
                        polls: spec.polls.unwrap_or(0),
                        ..OpFault::default()
                    })
                }
                FaultKind::AgentPropagation => {
                    fired.operation = Some(OpFault {
                        agent_propagation: Duration::from_millis(spec.delay_ms.unwrap_or(0)),
                        ..OpFault::default()
                    })
                }
                _ => fired.terminal = Some(spec.clone()),
            }
        }
        self.active.retain(|a| a.remaining != Some(0));
        fired
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: u16) -> FaultSpec {
        FaultSpec {
            status: Some(code),
            ..FaultSpec::new(FaultKind::Status)
        }
    }

    #[test]
    fn counts_are_honoured() {
        let mut faults = Faults::default();
        faults
            .add(FaultSpec {
                count: Some(2),
                path_regex: Some(":setIamPolicy$".into()),
                ..status(429)
            })
            .unwrap();
        assert!(faults
            .fire("POST", "/v1/x:getIamPolicy", false)
            .terminal
            .is_none());
        assert!(faults
            .fire("POST", "/v1/x:setIamPolicy", false)
            .terminal
            .is_some());
        assert!(faults
            .fire("POST", "/v1/x:setIamPolicy", false)
            .terminal
            .is_some());
        assert!(faults
            .fire("POST", "/v1/x:setIamPolicy", false)
            .terminal
            .is_none());
    }

    #[test]
    fn method_filter_and_operation_faults() {
        let mut faults = Faults::default();
        faults
            .add(FaultSpec {
                method: Some("patch".into()),
                ..FaultSpec::new(FaultKind::OperationError)
            })
            .unwrap();
        assert!(faults.fire("GET", "/v2/x", false).operation.is_none());
        assert!(
            faults.fire("PATCH", "/v2/x", false).operation.is_none(),
            "needs an operation-starting method"
        );
        assert!(faults.fire("PATCH", "/v2/x", true).operation.is_some());
        assert!(faults.fire("PATCH", "/v2/x", true).operation.is_none());
    }

    #[test]
    fn agent_propagation_rides_on_the_provisioning_call() {
        let mut faults = Faults::default();
        assert!(faults
            .add(FaultSpec::new(FaultKind::AgentPropagation))
            .is_err());
        faults
            .add(FaultSpec {
                path_regex: Some(":generateServiceIdentity$".into()),
                delay_ms: Some(10_000),
                ..FaultSpec::new(FaultKind::AgentPropagation)
            })
            .unwrap();
        assert!(faults
            .fire("POST", "/v1/x:setIamPolicy", true)
            .operation
            .is_none());
        let fired = faults
            .fire(
                "POST",
                "/v1beta1/projects/p/services/iap.googleapis.com:generateServiceIdentity",
                true,
            )
            .operation
            .expect("the provisioning call carries the fault");
        assert_eq!(fired.agent_propagation, Duration::from_secs(10));
        assert!(fired.error.is_none() && fired.extra_delay.is_zero());
    }

    #[test]
    fn validation() {
        let mut faults = Faults::default();
        assert!(faults.add(FaultSpec::new(FaultKind::Status)).is_err());
        assert!(faults
            .add(FaultSpec {
                path_regex: Some("(".into()),
                ..status(503)
            })
            .is_err());
        assert!(faults
            .add(FaultSpec {
                probability: Some(2.0),
                ..status(503)
            })
            .is_err());
    }

    #[test]
    fn probability_zero_never_fires() {
        let mut faults = Faults::default();
        faults
            .add(FaultSpec {
                probability: Some(0.0),
                ..status(503)
            })
            .unwrap();
        for _ in 0..20 {
            assert!(faults.fire("GET", "/", false).terminal.is_none());
        }
    }
}
