//! When the live checks run (DESIGN.md §5 "When checks run"): at plan against what exists, at
//! apply right before the first mutating call against a fresh read, never as a reason to refuse
//! a destroy. These pure functions decide it from the plan's values; docs/checks.md explains it.

use std::collections::BTreeSet;
use std::time::Duration;

use super::{report, Finding};
use crate::framework::{Attr, Diagnostic, Diagnostics, Severity};

/// The findings of the live checks, by how a plan and an apply treat them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Judged {
    /// Reported as [`AtPlan`] says; an error stops the apply.
    pub usual: Vec<Finding>,
    /// Caused by another resource that switches IAP on in this run: they fail the plan even when
    /// this resource does not change.
    pub forced: Vec<Finding>,
    /// Another IAP layer is on now and this run may still remove it (a move between direct and
    /// load-balancer IAP, whose two halves Terraform does not order): a warning at plan; the apply
    /// waits for it to turn off.
    pub pending: Vec<Finding>,
    /// Checks that could not run (a read they need failed), by name, each with the warning that
    /// says why and what to do: never a reason to stop, silent when the check is ignored.
    pub not_run: Vec<(&'static str, Diagnostic)>,
}

impl Judged {
    /// Findings reported as usual.
    pub fn usual(findings: Vec<Finding>) -> Self {
        Self {
            usual: findings,
            ..Self::default()
        }
    }

    /// Adds `other`'s findings to these.
    pub fn extend(&mut self, other: Judged) {
        self.usual.extend(other.usual);
        self.forced.extend(other.forced);
        self.pending.extend(other.pending);
        self.not_run.extend(other.not_run);
    }

    /// The warnings of the checks that could not run, but those `ignore` turns off.
    pub fn not_run_warnings(&self, ignore: &BTreeSet<String>) -> Diagnostics {
        let not_ignored = self.not_run.iter().filter(|(c, _)| !ignore.contains(*c));
        not_ignored.map(|(_, warning)| warning.clone()).collect()
    }

    /// These findings for a resource whose own layer is on already: another layer on now is a
    /// double IAP that stands (nothing of this resource moves), reported as usual.
    pub fn standing_layer(mut self) -> Self {
        self.usual.append(&mut self.pending);
        self
    }

    /// Every finding, however it is treated (the audit has no run to wait for).
    pub fn all(self) -> Vec<Finding> {
        let mut all = self.usual;
        all.extend(self.forced);
        all.extend(self.pending);
        all
    }
}

/// The entry of [`Judged::not_run`] for `check` (which catches `what`), whose read `failed` (what
/// was read, and Google's error): a warning that says so, that the change goes on, and `fix`.
pub fn not_run(
    check: &'static str,
    what: &str,
    failed: &str,
    fix: &str,
) -> (&'static str, Diagnostic) {
    let detail = format!("The {check} check ({what}) could not run: {failed}\n\nThe plan and the apply go on without it. {fix}; ignore_checks = [\"{check}\"] turns the check and this warning off.");
    (
        check,
        Diagnostic::warning(format!("Check {check} could not run"), detail),
    )
}

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

/// The diagnostics of `judged` for a plan treated as `at`: forced findings fail the plan unless the
/// checks wait for apply; pending ones are warnings that say what the apply will do, and so are
/// checks that could not run.
pub fn report_judged_at_plan(judged: Judged, ignore: &BTreeSet<String>, at: AtPlan) -> Diagnostics {
    let not_run = judged.not_run_warnings(ignore);
    let mut diags = report_at_plan(judged.usual, ignore, at);
    let forced = match at {
        AtPlan::Deferred => AtPlan::Deferred,
        _ => AtPlan::Enforce,
    };
    diags.extend(report_at_plan(judged.forced, ignore, forced));
    if at != AtPlan::Deferred {
        diags.extend(not_run);
        let pending = judged
            .pending
            .into_iter()
            .map(|f| noted(f, PENDING_AT_PLAN));
        diags.extend(report(pending, ignore).into_iter().map(|d| Diagnostic {
            severity: Severity::Warning,
            ..d
        }));
    }
    diags
}

const PENDING_AT_PLAN: &str = "This run may still remove that IAP: the other half of a move between direct and load-balancer IAP, which Terraform plans in no set order (and before Terraform 1.3 without showing it to the provider). The apply waits for it to turn off before changing anything, up to this resource's timeout, and stops with nothing changed if it stays on.";

/// A finding whose detail goes on with `note`.
fn noted(f: Finding, note: &str) -> Finding {
    Finding {
        detail: format!("{} {note}", f.detail),
        ..f
    }
}

/// Pending findings still holding at the apply's deadline, after waiting `waited`: errors.
pub fn pending_at_apply(
    pending: Vec<Finding>,
    ignore: &BTreeSet<String>,
    waited: Duration,
) -> Diagnostics {
    let note = format!(
        "The apply waited {}s (this resource's timeout) for that IAP to turn off; it stayed on, and nothing was changed.",
        waited.as_secs()
    );
    report(pending.into_iter().map(|f| noted(f, &note)), ignore)
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
    fn forced_findings_fail_a_standing_plan_and_pending_ones_warn() {
        let f = |check| vec![Finding::new(check, None, "both layers")];
        let none = BTreeSet::new();
        let forced = Judged {
            forced: f("double_iap"),
            ..Judged::default()
        };
        let standing = report_judged_at_plan(forced.clone(), &none, AtPlan::Standing);
        assert!(standing.has_errors(), "{standing:?}");
        assert!(report_judged_at_plan(forced.clone(), &none, AtPlan::Deferred).is_empty());
        let ignore = BTreeSet::from(["double_iap".to_string()]);
        assert!(report_judged_at_plan(forced, &ignore, AtPlan::Enforce).is_empty());

        let pending = Judged {
            pending: f("double_iap"),
            ..Judged::default()
        };
        let warned = report_judged_at_plan(pending.clone(), &none, AtPlan::Enforce);
        assert_eq!(warned.len(), 1);
        assert!(!warned.has_errors());
        assert!(warned.iter().all(|d| d.detail.contains("The apply waits")));
        assert!(report_judged_at_plan(pending.clone(), &none, AtPlan::Deferred).is_empty());
        assert!(report_judged_at_plan(pending.clone(), &ignore, AtPlan::Enforce).is_empty());

        let late = pending_at_apply(pending.pending, &none, Duration::from_secs(7));
        assert!(late.has_errors());
        assert!(late.iter().all(|d| d.detail.contains("waited 7s")));
    }

    #[test]
    fn a_check_that_could_not_run_warns_unless_ignored_or_waiting_for_apply() {
        let warning = Diagnostic::warning("Check double_iap did not run", "why, and what to do");
        let judged = Judged {
            usual: vec![Finding::new("double_iap", None, "both layers")],
            not_run: vec![("double_iap", warning.clone())],
            ..Judged::default()
        };
        let none = BTreeSet::new();
        for at in [AtPlan::Enforce, AtPlan::Standing] {
            let diags = report_judged_at_plan(judged.clone(), &none, at);
            assert!(diags.iter().any(|d| *d == warning), "{at:?}: {diags:?}");
        }
        let deferred = report_judged_at_plan(judged.clone(), &none, AtPlan::Deferred);
        assert!(deferred.is_empty(), "{deferred:?}");
        let ignore = BTreeSet::from(["double_iap".to_string()]);
        assert!(judged.not_run_warnings(&ignore).is_empty());
        assert!(report_judged_at_plan(judged, &ignore, AtPlan::Enforce).is_empty());
    }

    #[test]
    fn judged_keeps_every_finding() {
        let f = |detail: &str| Finding::new("double_iap", None, detail);
        let mut judged = Judged::usual(vec![f("a")]);
        judged.extend(Judged {
            usual: vec![],
            forced: vec![f("b")],
            pending: vec![f("c")],
            not_run: vec![],
        });
        let details: Vec<String> = judged.clone().all().into_iter().map(|f| f.detail).collect();
        assert_eq!(details, ["a", "b", "c"]);
        let standing = judged.standing_layer();
        assert!(standing.pending.is_empty());
        let usual: Vec<&str> = standing.usual.iter().map(|f| f.detail.as_str()).collect();
        assert_eq!(usual, ["a", "c"]);
        assert_eq!(standing.forced.len(), 1);
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
