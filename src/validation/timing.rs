//! When the live checks run (DESIGN.md §5 "When checks run"): at plan against what exists, at
//! apply right before the first mutating call against a fresh read, never as a reason to refuse
//! a destroy. These pure functions decide it from the plan's values; docs/checks.md explains it.

use std::collections::BTreeSet;

use super::{report, Finding};
use crate::framework::{Diagnostic, Diagnostics, Severity, Value};

/// How this plan treats the findings of the live checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AtPlan {
    /// Create, or a change the configuration asks for: error findings fail the plan.
    Enforce,
    /// The resource exists and the configuration asks for nothing new (a refresh, a drift repair,
    /// the refresh Terraform runs before a destroy): findings are shown as warnings; an apply that
    /// changes the resource checks again first and stops on errors.
    Standing,
    /// `checks_after` is unknown or changed: the run changes what the checks look at, so they
    /// wait for apply.
    Deferred,
}

/// Decides how the live checks treat this plan. `intent_changed`: some attribute the
/// configuration sets differs from the prior state.
pub fn at_plan(prior: &Value, planned: &Value, intent_changed: bool) -> AtPlan {
    if checks_after_deferred(prior, planned) {
        AtPlan::Deferred
    } else if prior.is_null() || intent_changed {
        AtPlan::Enforce
    } else {
        AtPlan::Standing
    }
}

/// `checks_after` defers the live checks while any of its values is unknown, or differs from the
/// values the last apply recorded (none on create): the resources it comes from change in this run.
pub fn checks_after_deferred(prior: &Value, planned: &Value) -> bool {
    let now = planned.get("checks_after");
    if now.is_null() && now.is_known() {
        return false;
    }
    !now.is_wholly_known() || prior.get("checks_after") != now
}

/// Whether any of `attributes` differs between the prior state and the plan (the configuration's
/// own attributes: a change the user asks for).
pub fn intent_changed(prior: &Value, planned: &Value, attributes: &[&str]) -> bool {
    !prior.is_null()
        && attributes
            .iter()
            .any(|a| prior.get(a) != planned.get(a) || !planned.get(a).is_wholly_known())
}

/// The diagnostics of `findings` for a plan treated as `at`.
pub fn report_at_plan(
    findings: Vec<Finding>,
    ignore: &BTreeSet<String>,
    at: AtPlan,
) -> Diagnostics {
    match at {
        AtPlan::Enforce => report(findings, ignore),
        AtPlan::Deferred => Diagnostics::new(),
        AtPlan::Standing => report(findings, ignore).into_iter().map(standing).collect(),
    }
}

/// An error finding about an object this plan does not change: a warning now, an error for the
/// next apply that changes the resource.
fn standing(d: Diagnostic) -> Diagnostic {
    if d.severity != Severity::Error {
        return d;
    }
    Diagnostic {
        severity: Severity::Warning,
        detail: format!(
            "{}\n\nThis plan changes nothing on this resource, so the finding does not stop it (nor a destroy); an apply that changes the resource checks again first and stops on it.",
            d.detail
        ),
        ..d
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(pairs: &[(&str, Value)]) -> Value {
        let mut v = Value::Object(Default::default());
        for (k, x) in pairs {
            v.set_attr(k, x.clone());
        }
        v
    }

    #[test]
    fn create_and_changes_enforce_refresh_and_drift_are_standing() {
        let prior = state(&[("service", Value::from("a"))]);
        assert_eq!(at_plan(&Value::Null, &prior, false), AtPlan::Enforce);
        assert_eq!(at_plan(&prior, &prior, true), AtPlan::Enforce);
        assert_eq!(at_plan(&prior, &prior, false), AtPlan::Standing);
        let planned = state(&[("service", Value::from("b"))]);
        assert!(intent_changed(&prior, &planned, &["service"]));
        assert!(!intent_changed(&prior, &prior, &["service"]));
        assert!(!intent_changed(&Value::Null, &planned, &["service"]));
    }

    #[test]
    fn checks_after_defers_while_unknown_or_changed() {
        let list = |xs: &[&str]| Value::List(xs.iter().map(|x| Value::from(*x)).collect());
        let applied = state(&[("checks_after", list(&["x"]))]);
        assert!(!checks_after_deferred(&applied, &applied));
        assert!(checks_after_deferred(
            &applied,
            &state(&[("checks_after", list(&["y"]))])
        ));
        assert!(checks_after_deferred(
            &applied,
            &state(&[("checks_after", Value::List(vec![Value::unknown()]))])
        ));
        assert!(checks_after_deferred(&Value::Null, &applied), "create");
        let unset = state(&[("checks_after", Value::Null)]);
        assert!(!checks_after_deferred(&Value::Null, &unset));
        assert_eq!(at_plan(&applied, &applied, true), AtPlan::Enforce);
        assert_eq!(at_plan(&Value::Null, &applied, false), AtPlan::Deferred);
    }

    #[test]
    fn standing_errors_are_warnings_and_deferred_findings_wait() {
        let findings = || {
            vec![
                Finding::new("cdn_enabled", None, "CDN on"),
                Finding::new("envoy_jwt_header", None, "Envoy"),
            ]
        };
        let none = BTreeSet::new();
        let enforced = report_at_plan(findings(), &none, AtPlan::Enforce);
        assert!(enforced.has_errors());
        let standing = report_at_plan(findings(), &none, AtPlan::Standing);
        assert_eq!(standing.len(), 2);
        assert!(!standing.has_errors());
        assert!(standing
            .iter()
            .any(|d| d.summary.starts_with("cdn_enabled") && d.detail.contains("checks again")));
        assert!(report_at_plan(findings(), &none, AtPlan::Deferred).is_empty());
        let ignore = BTreeSet::from(["cdn_enabled".to_string()]);
        assert!(!report_at_plan(findings(), &ignore, AtPlan::Enforce).has_errors());
    }
}
