//! Checks on the Cloud Run services IAP protects (direct IAP, or behind a load balancer).

use super::facts::{iap_service_agent, BackendFacts, RunServiceFacts};
use super::timing::{self, Judged};
use super::Finding;
use crate::framework::{AttributePath, Diagnostic};

/// `http2_direct`: an `h2c` port on a service with IAP enabled directly. Older IAP documentation
/// (seed 001) reports an infinite redirect loop for any HTTP/2 service behind IAP; the current one only
/// names the classic load balancer, so this is a warning. Reads: `template.containers[].ports[].name`.
pub fn http2_direct(service: &RunServiceFacts) -> Vec<Finding> {
    if !service.h2c {
        return vec![];
    }
    vec![Finding::new(
        "http2_direct",
        Some(AttributePath::attr("service")),
        format!(
            "Cloud Run service {} serves end-to-end HTTP/2 (a container port named h2c). Older IAP documentation says HTTP/2 services behind IAP end in an infinite redirect loop; current documentation limits the loop to the classic load balancer.",
            service.label()
        ),
    )]
}

#[cfg(test)]
mod http2_direct_tests {
    use super::*;

    #[test]
    fn fires_on_h2c_only() {
        let mut s = RunServiceFacts {
            name: "hello".into(),
            location: "us-central1".into(),
            ..Default::default()
        };
        assert!(http2_direct(&s).is_empty());
        s.h2c = true;
        let f = http2_direct(&s);
        assert_eq!(f.len(), 1);
        assert!(f[0].detail.contains("us-central1/hello"));
    }
}

/// `public_invoker`: `allUsers`/`allAuthenticatedUsers` hold `roles/run.invoker`, or invoker IAM is
/// disabled, on a service IAP protects: clients that reach the service by another path (internal
/// networks, run.app) skip IAP. An earlier version of the IAP docs required allUsers; current docs grant the IAP
/// service agent instead. Reads: `invokerIamDisabled`, the service's IAM policy.
pub fn public_invoker(service: &RunServiceFacts, path: AttributePath) -> Vec<Finding> {
    let public = service.public_invokers();
    if public.is_empty() && !service.invoker_iam_disabled {
        return vec![];
    }
    let how = if service.invoker_iam_disabled {
        "has invoker IAM disabled (invokerIamDisabled = true)".to_string()
    } else {
        format!("grants roles/run.invoker to {}", public.join(" and "))
    };
    vec![Finding::new(
        "public_invoker",
        Some(path),
        format!(
            "Cloud Run service {} {how}. Anyone who reaches the service other than through IAP can call it. Older IAP documentation asked for allUsers as invoker; current documentation grants roles/run.invoker to the IAP service agent instead, which this provider does with grant_iap_invoker.",
            service.label()
        ),
    )]
}

#[cfg(test)]
mod public_invoker_tests {
    use super::*;

    #[test]
    fn fires_on_public_members_or_disabled_invoker_iam() {
        let mut s = RunServiceFacts {
            name: "hello".into(),
            location: "us-central1".into(),
            invoker_members: Some(vec![
                "serviceAccount:service-1@gcp-sa-iap.iam.gserviceaccount.com".into(),
            ]),
            ..Default::default()
        };
        assert!(public_invoker(&s, AttributePath::attr("service")).is_empty());
        s.invoker_members = Some(vec!["allUsers".into()]);
        assert!(public_invoker(&s, AttributePath::attr("service"))[0]
            .detail
            .contains("allUsers"));
        s.invoker_members = Some(vec![]);
        s.invoker_iam_disabled = true;
        assert!(public_invoker(&s, AttributePath::attr("service"))[0]
            .detail
            .contains("invokerIamDisabled"));
    }
}

/// `missing_invoker`: the IAP service agent lacks `roles/run.invoker` while `grant_iap_invoker` is
/// false, and nothing else lets IAP through: users get 403 "Your client does not have permission to
/// get URL from this server" (seed 000, troubleshooting). Reads: the service's IAM policy and
/// `invokerIamDisabled`.
pub fn missing_invoker(
    service: &RunServiceFacts,
    project_number: &str,
    grant_iap_invoker: bool,
) -> Vec<Finding> {
    if grant_iap_invoker || service.invoker_iam_disabled || !service.public_invokers().is_empty() {
        return vec![];
    }
    let agent = iap_service_agent(project_number);
    if service.has_invoker(&format!("serviceAccount:{agent}")) != Some(false) {
        return vec![];
    }
    vec![Finding::new(
        "missing_invoker",
        Some(AttributePath::attr("grant_iap_invoker")),
        format!(
            "The IAP service agent {agent} does not hold roles/run.invoker on Cloud Run service {}, and grant_iap_invoker is false. Users who pass IAP will get 403 \"Your client does not have permission to get URL from this server\".",
            service.label()
        ),
    )]
}

/// `missing_invoker` when the project's own IAM policy is known too: the agent may hold
/// `roles/run.invoker` on the project, as seed 001 tells users to grant it ("add the Cloud Run
/// Invoker role to the principal" on the project's IAM page), which reaches every service. Reads:
/// the project's IAM policy (`project_invokers`: the unconditional invoker members; `None` when
/// the policy could not be read, which decides nothing).
pub fn missing_invoker_in_project(
    service: &RunServiceFacts,
    project_number: &str,
    grant_iap_invoker: bool,
    project_invokers: Option<&[String]>,
) -> Vec<Finding> {
    let agent = format!("serviceAccount:{}", iap_service_agent(project_number));
    if project_invokers.is_some_and(|ms| ms.iter().any(|m| m.eq_ignore_ascii_case(&agent))) {
        return vec![];
    }
    missing_invoker(service, project_number, grant_iap_invoker)
}

/// The invoker checks that could not run on `service` because reading its IAM policy was refused
/// (`invoker_policy_error`): `public_invoker`, and `missing_invoker` where it would run
/// (`grant_iap_invoker` false and no project-level grant to the agent).
pub fn invoker_checks_not_run(
    service: &RunServiceFacts,
    project_number: &str,
    grant: Option<bool>,
    project_invokers: Option<&[String]>,
) -> Vec<(&'static str, Diagnostic)> {
    let Some(error) = &service.invoker_policy_error else {
        return vec![];
    };
    let failed = format!(
        "reading the IAM policy of Cloud Run service {} in {} failed: {error}",
        service.name, service.location
    );
    let fix = format!("Give the provider's credentials run.services.getIamPolicy on the service (for example through roles/run.viewer), or check its roles/run.invoker members by hand (gcloud run services get-iam-policy {} --region={})", service.name, service.location);
    let mut not_run = vec![timing::not_run(
        "public_invoker",
        "allUsers or allAuthenticatedUsers holding roles/run.invoker on a service behind IAP",
        &failed,
        &fix,
    )];
    let agent = format!("serviceAccount:{}", iap_service_agent(project_number));
    let granted_in_project =
        project_invokers.is_some_and(|ms| ms.iter().any(|m| m.eq_ignore_ascii_case(&agent)));
    if grant == Some(false) && !granted_in_project {
        not_run.push(timing::not_run(
            "missing_invoker",
            "the IAP service agent without roles/run.invoker on the service while grant_iap_invoker is false",
            &failed,
            &fix,
        ));
    }
    not_run
}

#[cfg(test)]
mod invoker_checks_not_run_tests {
    use super::*;

    #[test]
    fn a_refused_policy_read_leaves_the_invoker_checks_that_would_run_not_run() {
        let mut service = RunServiceFacts {
            name: "hello".into(),
            location: "us-central1".into(),
            ..Default::default()
        };
        let checks = |s: &RunServiceFacts, grant, project: Option<&[String]>| -> Vec<&str> {
            let not_run = invoker_checks_not_run(s, "42", grant, project);
            not_run.into_iter().map(|(c, _)| c).collect()
        };
        assert!(checks(&service, Some(false), None).is_empty(), "read");
        service.invoker_policy_error = Some("Permission denied".into());
        assert_eq!(checks(&service, Some(true), None), ["public_invoker"]);
        assert_eq!(
            checks(&service, Some(false), None),
            ["public_invoker", "missing_invoker"]
        );
        let agent = "serviceAccount:service-42@gcp-sa-iap.iam.gserviceaccount.com".to_string();
        let in_project = Some(std::slice::from_ref(&agent));
        assert_eq!(
            checks(&service, Some(false), in_project),
            ["public_invoker"]
        );
        let (_, warning) = &invoker_checks_not_run(&service, "42", None, None)[0];
        assert_eq!(warning.summary, "Check public_invoker could not run");
        assert!(warning.detail.contains("Permission denied"), "{warning:?}");
    }
}

#[cfg(test)]
mod missing_invoker_in_project_tests {
    use super::*;

    #[test]
    fn a_project_level_grant_to_the_agent_satisfies_it() {
        let service = RunServiceFacts {
            name: "hello".into(),
            location: "us-central1".into(),
            invoker_members: Some(vec![]),
            ..Default::default()
        };
        let agent = "serviceAccount:service-42@gcp-sa-iap.iam.gserviceaccount.com".to_string();
        let other = "user:someone@example.com".to_string();
        assert!(missing_invoker_in_project(
            &service,
            "42",
            false,
            Some(std::slice::from_ref(&agent))
        )
        .is_empty());
        assert!(missing_invoker_in_project(
            &service,
            "42",
            false,
            Some(&[agent
                .to_uppercase()
                .replace("SERVICEACCOUNT", "serviceAccount")])
        )
        .is_empty());
        assert_eq!(
            missing_invoker_in_project(&service, "42", false, Some(&[other])).len(),
            1
        );
        assert_eq!(
            missing_invoker_in_project(&service, "42", false, None).len(),
            1
        );
        assert!(missing_invoker_in_project(&service, "42", true, None).is_empty());
    }
}

#[cfg(test)]
mod missing_invoker_tests {
    use super::*;

    fn service(members: &[&str]) -> RunServiceFacts {
        RunServiceFacts {
            name: "hello".into(),
            location: "us-central1".into(),
            invoker_members: Some(members.iter().map(|m| m.to_string()).collect()),
            ..Default::default()
        }
    }

    #[test]
    fn fires_only_without_grant_and_without_agent() {
        let agent = "serviceAccount:service-42@gcp-sa-iap.iam.gserviceaccount.com";
        assert_eq!(missing_invoker(&service(&[]), "42", false).len(), 1);
        assert!(
            missing_invoker(&service(&[]), "42", true).is_empty(),
            "the resource grants it"
        );
        assert!(missing_invoker(&service(&[agent]), "42", false).is_empty());
        assert!(
            missing_invoker(&service(&["allUsers"]), "42", false).is_empty(),
            "public_invoker's business"
        );
        let mut unreadable = service(&[]);
        unreadable.invoker_members = None;
        assert!(
            missing_invoker(&unreadable, "42", false).is_empty(),
            "unknown is not a finding"
        );
    }
}

/// What a run does to one IAP layer over a Cloud Run service (IAP directly on the service, or on
/// a backend service in front of it), as far as this provider process has seen the plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layer {
    /// Off, and nothing planned so far turns it on.
    Off,
    /// On now, and nothing planned so far keeps or removes it.
    Live,
    /// On now, and a resource planned in this run removes it.
    Removed,
    /// A resource planned in this run keeps it on; `switching_on`: it turns it on in this run.
    Planned { switching_on: bool },
}

impl Layer {
    /// The layer from what is on now (`live`), its resource's plan in this run (`planned`: whether
    /// it switches the layer on) and whether a resource planned in this run removes it. A plan that
    /// keeps the layer wins over a removal (one instance destroyed, another created).
    pub fn of(live: bool, planned: Option<bool>, removed: bool) -> Layer {
        match (planned, live) {
            (Some(switching_on), _) => Layer::Planned { switching_on },
            (None, true) if removed => Layer::Removed,
            (None, true) => Layer::Live,
            (None, false) => Layer::Off,
        }
    }

    /// Files `finding` where a plan treats it (nothing when the layer is or goes off).
    fn judge(self, judged: &mut Judged, finding: impl FnOnce(&str) -> Finding) {
        let (list, how) = match self {
            Layer::Off | Layer::Removed => return,
            Layer::Live => (&mut judged.pending, ""),
            Layer::Planned { switching_on: true } => {
                (&mut judged.forced, " (this run turns it on)")
            }
            Layer::Planned {
                switching_on: false,
            } => (&mut judged.usual, " (this run keeps it)"),
        };
        list.push(finding(how));
    }
}

/// `double_iap`: IAP on the Cloud Run service and on a load balancer backend in front of it. Cloud
/// Run IAP documentation: "You cannot configure IAP on both the load balancer and the Cloud Run
/// service." `direct` tells what the run does to direct IAP on each service behind the backend.
/// Reads: Run `iapEnabled`, the backend's serverless NEGs.
pub fn double_iap(
    backend: &BackendFacts,
    direct: impl Fn(&RunServiceFacts) -> Layer,
    path: AttributePath,
) -> Judged {
    let mut judged = Judged::default();
    for s in backend.services() {
        direct(s).judge(&mut judged, |how| {
            Finding::new(
                "double_iap",
                Some(path.clone()),
                format!(
                    "Cloud Run service {} has IAP enabled directly{how}, and backend service {} in front of it enables IAP too.",
                    s.label(),
                    backend.name
                ),
            )
        });
    }
    judged
}

/// `double_iap`, seen from the Cloud Run service that direct IAP is being enabled on: `fronting`
/// are the backend services in front of it with IAP on now or planned in this run, each with what
/// the run does to it. Same source as [`double_iap`]. Reads: serverless NEGs' `cloudRun.service`
/// and the backend services over them.
pub fn double_iap_fronted(service: &RunServiceFacts, fronting: &[(String, Layer)]) -> Judged {
    let mut judged = Judged::default();
    for (backend, layer) in fronting {
        layer.judge(&mut judged, |how| {
            Finding::new(
                "double_iap",
                Some(AttributePath::attr("service")),
                format!(
                    "Cloud Run service {} gets IAP directly, and backend service {backend} in front of it has IAP enabled{how}.",
                    service.label()
                ),
            )
        });
    }
    judged
}

#[cfg(test)]
mod double_iap_tests {
    use super::*;
    use crate::validation::facts::NegFacts;

    fn hello() -> RunServiceFacts {
        RunServiceFacts {
            name: "hello".into(),
            location: "us-central1".into(),
            iap_enabled: true,
            ..Default::default()
        }
    }

    fn web() -> BackendFacts {
        BackendFacts {
            name: "web".into(),
            negs: vec![NegFacts {
                name: "neg".into(),
                region: "us-central1".into(),
                run_service: Some("hello".into()),
                service: Some(hello()),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn layers_follow_the_plan_before_what_is_live() {
        assert_eq!(Layer::of(false, None, false), Layer::Off);
        assert_eq!(Layer::of(false, None, true), Layer::Off);
        assert_eq!(Layer::of(true, None, false), Layer::Live);
        assert_eq!(Layer::of(true, None, true), Layer::Removed);
        assert_eq!(
            Layer::of(true, Some(false), true),
            Layer::Planned {
                switching_on: false
            }
        );
        assert_eq!(
            Layer::of(false, Some(true), false),
            Layer::Planned { switching_on: true }
        );
    }

    #[test]
    fn a_removed_direct_layer_is_no_finding_and_a_live_one_waits() {
        let path = || AttributePath::attr("backend_service");
        assert_eq!(
            double_iap(&web(), |_| Layer::Removed, path()),
            Judged::default()
        );
        assert_eq!(
            double_iap(&web(), |_| Layer::Off, path()),
            Judged::default()
        );
        let live = double_iap(&web(), |s| Layer::of(s.iap_enabled, None, false), path());
        assert!(live.usual.is_empty() && live.forced.is_empty());
        assert_eq!(live.pending.len(), 1);
        assert!(live.pending[0]
            .detail
            .contains("us-central1/hello has IAP enabled directly"));
        assert_eq!(live.pending[0].path, Some(path()));
    }

    #[test]
    fn a_planned_direct_layer_is_a_finding_forced_when_this_run_turns_it_on() {
        let path = || AttributePath::attr("backend_service");
        let kept = double_iap(
            &web(),
            |_| Layer::Planned {
                switching_on: false,
            },
            path(),
        );
        assert_eq!((kept.usual.len(), kept.forced.len()), (1, 0));
        assert!(kept.usual[0].detail.contains("this run keeps it"));
        let on = double_iap(&web(), |_| Layer::Planned { switching_on: true }, path());
        assert_eq!((on.usual.len(), on.forced.len()), (0, 1));
        assert!(on.forced[0].detail.contains("this run turns it on"));
    }

    #[test]
    fn seen_from_the_service_each_backend_is_judged_by_its_layer() {
        let s = hello();
        assert_eq!(double_iap_fronted(&s, &[]), Judged::default());
        let judged = double_iap_fronted(
            &s,
            &[
                ("global/old".to_string(), Layer::Removed),
                ("global/live".to_string(), Layer::Live),
                (
                    "global/new".to_string(),
                    Layer::Planned { switching_on: true },
                ),
                (
                    "global/kept".to_string(),
                    Layer::Planned {
                        switching_on: false,
                    },
                ),
            ],
        );
        assert_eq!(judged.pending.len(), 1);
        assert!(judged.pending[0]
            .detail
            .contains("backend service global/live"));
        assert!(judged.forced[0]
            .detail
            .contains("backend service global/new"));
        assert!(judged.usual[0]
            .detail
            .contains("backend service global/kept"));
        assert_eq!(judged.usual[0].path, Some(AttributePath::attr("service")));
        let all = judged.all();
        assert!(!all.iter().any(|f| f.detail.contains("global/old")));
        assert_eq!(all.len(), 3);
    }
}

/// Every check of a Cloud Run service with IAP enabled directly; `fronting` are the backends with
/// IAP in front of it (live, or planned in this run) and what the run does to each;
/// `project_invokers` the project's own invoker members when read.
pub fn direct_iap(
    facts: &RunServiceFacts,
    fronting: &[(String, Layer)],
    project_number: &str,
    grant: Option<bool>,
    project_invokers: Option<&[String]>,
) -> Judged {
    let mut judged = double_iap_fronted(facts, fronting);
    let mut findings = http2_direct(facts);
    findings.extend(public_invoker(facts, AttributePath::attr("service")));
    if let Some(grant) = grant {
        findings.extend(missing_invoker_in_project(
            facts,
            project_number,
            grant,
            project_invokers,
        ));
    }
    judged.usual.extend(findings);
    let not_run = invoker_checks_not_run(facts, project_number, grant, project_invokers);
    judged.not_run.extend(not_run);
    judged
}
