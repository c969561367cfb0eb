//! When the live checks run (DESIGN.md §5 "When checks run"): at plan against what exists, at
//! apply right before the first mutating call against a fresh read, never as a reason to refuse
//! a destroy. These pure functions decide it from the plan's values; docs/checks.md explains it.

use std::collections::BTreeSet;

use super::{report, Finding};
use crate::framework::{Attr, Diagnostic, Diagnostics, Severity};

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

/// Decides how the live checks treat this plan: `creating` (no prior state, or a replacement),
/// `deferred` (see [`checks_after_deferred`]), `intent_changed`: some attribute the configuration
/// sets differs from the prior state.
pub fn at_plan(creating: bool, deferred: bool, intent_changed: bool) -> AtPlan {
    if deferred {
        AtPlan::Deferred
    } else if creating || intent_changed {
        AtPlan::Enforce
    } else {
        AtPlan::Standing
    }
}

/// `checks_after` defers the live checks while any of its values is unknown, or differs from the
/// values the last apply recorded (none on create): the resources it comes from change in this run.
pub fn checks_after_deferred(
    prior: Option<&Attr<Vec<String>>>,
    planned: &Attr<Vec<String>>,
) -> bool {
    match planned {
        Attr::Null => false,
        Attr::Unknown(_) => true,
        Attr::Known(now) => prior.and_then(Attr::get) != Some(now),
    }
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

    #[test]
    fn create_and_changes_enforce_refresh_and_drift_are_standing() {
        assert_eq!(at_plan(true, false, false), AtPlan::Enforce);
        assert_eq!(at_plan(false, false, true), AtPlan::Enforce);
        assert_eq!(at_plan(false, false, false), AtPlan::Standing);
        assert_eq!(at_plan(true, true, false), AtPlan::Deferred);
    }

    #[test]
    fn checks_after_defers_while_unknown_or_changed() {
        let known = |xs: &[&str]| Attr::Known(xs.iter().map(|x| x.to_string()).collect::<Vec<_>>());
        let applied = known(&["x"]);
        assert!(!checks_after_deferred(Some(&applied), &applied));
        assert!(checks_after_deferred(Some(&applied), &known(&["y"])));
        assert!(checks_after_deferred(Some(&applied), &Attr::unknown()));
        assert!(checks_after_deferred(None, &applied), "create");
        assert!(!checks_after_deferred(None, &Attr::Null));
        assert!(!checks_after_deferred(Some(&applied), &Attr::Null));
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
