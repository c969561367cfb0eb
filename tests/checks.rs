//! The known-limitation checks (DESIGN.md section 5) end to end through the real terraform CLI:
//! every check fires with its name, default severity and the range of the attribute at fault, a
//! near-miss configuration stays silent, all error checks show in one plan that changes nothing,
//! a check whose input is unknown at plan stops the apply before any mutation, and `ignore_checks`
//! turns a firing check off.
//!
//! One emulator world holds every case as its own resource, so one `terraform plan -json` judges
//! them all; the validate-time and apply-time cases run in their own workspaces at the same time.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value};

use crate::support::{newest, Terraform, Workspace};
use crate::world::{provider_header, World, PROJECT, REGION};

/// DESIGN.md section 5: every check and its default severity (the contract).
const TABLE: &[(&str, &str)] = &[
    ("double_iap", "error"),
    ("http2_classic_lb", "error"),
    ("http2_direct", "warning"),
    ("envoy_jwt_header", "warning"),
    ("cdn_enabled", "error"),
    ("run_app_bypass", "error"),
    ("public_invoker", "warning"),
    ("missing_invoker", "error"),
    ("no_https_frontend", "warning"),
    ("passthrough_lb", "error"),
    ("neg_mismatch", "error"),
    ("managed_oauth_external", "warning"),
    ("public_member", "error"),
    ("member_format", "error"),
    ("target_missing", "error"),
    ("iap_api_disabled", "error"),
    ("no_organization", "warning"),
    ("binding_conflict", "error"),
];

/// What a check's detail must tell: the run-time failure, and what older documentation said where
/// the default severity follows newer documentation.
const DETAIL_MENTIONS: &[(&str, &str)] = &[
    ("double_iap", "has IAP enabled directly"),
    ("http2_classic_lb", "infinite redirect loop"),
    ("http2_direct", "Older IAP documentation"),
    (
        "envoy_jwt_header",
        "Older IAP documentation says the X-Goog-IAP-JWT-Assertion header",
    ),
    ("cdn_enabled", "enableCDN = true"),
    ("run_app_bypass", "run.app URL directly"),
    (
        "public_invoker",
        "Older IAP documentation asked for allUsers",
    ),
    (
        "missing_invoker",
        "Your client does not have permission to get URL",
    ),
    ("no_https_frontend", "IAP only works over HTTPS"),
    ("passthrough_lb", "passthrough"),
    ("neg_mismatch", "does not exist in"),
    (
        "managed_oauth_external",
        "outside the organization's domain example.com",
    ),
    ("public_member", "pass IAP"),
    (
        "member_format",
        "Fix: Write members as TYPE:lower-case-email",
    ),
    ("target_missing", "does not exist in"),
    ("iap_api_disabled", "SERVICE_DISABLED"),
    (
        "no_organization",
        "Older Cloud Run IAP documentation required",
    ),
    (
        "binding_conflict",
        "Terraform does not tell providers the address of other resources",
    ),
];

/// What a pending `double_iap` says at plan: the other layer is on now and the run may remove it.
const PENDING: &str = "This run may still remove that IAP";

const INVOKER: &str = "roles/run.invoker";
/// A project outside any organization.
const NO_ORG_PROJECT: &str = "noorg-project";
/// A project where iap.googleapis.com is disabled.
const NO_IAP_PROJECT: &str = "noiap-project";
const OTHER_REGION: &str = "europe-west1";

fn severity_of(check: &str) -> &'static str {
    TABLE
        .iter()
        .find(|(name, _)| *name == check)
        .map(|(_, severity)| *severity)
        .unwrap_or_else(|| panic!("{check} is not in the table"))
}

/// One resource of a configuration and the checks it must trigger, each with the attribute at fault.
struct Case {
    kind: &'static str,
    name: &'static str,
    body: String,
    expect: Vec<(&'static str, &'static str)>,
}

impl Case {
    fn new(kind: &'static str, name: &'static str, body: &str) -> Case {
        Case {
            kind,
            name,
            body: body.trim().to_string(),
            expect: vec![],
        }
    }

    /// The case must trigger `check`, reported on `attribute`.
    fn fires(mut self, check: &'static str, attribute: &'static str) -> Case {
        self.expect.push((check, attribute));
        self
    }

    fn address(&self) -> String {
        format!("{}.{}", self.kind, self.name)
    }
}

/// A configuration of many cases, with the line of each resource block and attribute.
struct Config {
    text: String,
    /// address → (first line, last line) of its block, 1-based.
    blocks: BTreeMap<String, (usize, usize)>,
}

impl Config {
    fn new(prelude: &str, cases: &[Case]) -> Config {
        let header = provider_header("");
        let mut text = format!(
            r#"{header}{prelude}
"#
        );
        let mut blocks = BTreeMap::new();
        for case in cases {
            text.push('\n');
            let first = text.lines().count() + 1;
            text.push_str(&format!(
                "resource \"{}\" \"{}\" {{\n",
                case.kind, case.name
            ));
            for line in case.body.lines() {
                text.push_str(&format!("  {}\n", line.trim()));
            }
            text.push_str("}\n");
            blocks.insert(case.address(), (first, text.lines().count()));
        }
        Config { text, blocks }
    }

    /// The line where `attribute` is set in the block of `address` (Terraform points a set element's
    /// diagnostic at the attribute holding the set).
    fn attribute_line(&self, address: &str, attribute: &str) -> usize {
        let (first, last) = self.blocks[address];
        (first..=last)
            .find(|&n| {
                let line = self
                    .text
                    .lines()
                    .nth(n - 1)
                    .unwrap_or_default()
                    .trim_start();
                line.strip_prefix(attribute)
                    .is_some_and(|rest| rest.trim_start().starts_with('='))
            })
            .unwrap_or_else(|| panic!("{address} sets no {attribute}"))
    }

    /// The resource block holding a line.
    fn block_at(&self, line: usize) -> Option<&str> {
        self.blocks
            .iter()
            .find(|(_, (first, last))| (*first..=*last).contains(&line))
            .map(|(address, _)| address.as_str())
    }

    /// What every case must report: address → {(check, line of the attribute at fault)}.
    fn expected(&self, cases: &[Case]) -> BTreeMap<String, BTreeSet<(String, usize)>> {
        cases
            .iter()
            .map(|c| {
                let found = c
                    .expect
                    .iter()
                    .map(|(check, attr)| {
                        (check.to_string(), self.attribute_line(&c.address(), attr))
                    })
                    .collect();
                (c.address(), found)
            })
            .collect()
    }

    /// Groups diagnostics by the resource whose block holds their range, after checking each one's
    /// summary names a check of the table with its severity. Every case gets an entry.
    #[track_caller]
    fn judge(&self, diagnostics: &[Value]) -> BTreeMap<String, BTreeSet<(String, usize)>> {
        let mut found: BTreeMap<String, BTreeSet<(String, usize)>> = self
            .blocks
            .keys()
            .map(|a| (a.clone(), BTreeSet::new()))
            .collect();
        for d in diagnostics {
            let summary = d["summary"].as_str().unwrap_or_default();
            let check = summary.split(':').next().unwrap_or_default();
            let severity = TABLE
                .iter()
                .find(|(name, _)| *name == check)
                .map(|(_, s)| *s)
                .unwrap_or_else(|| {
                    panic!("diagnostic does not name a check in its summary: {d:#}")
                });
            let detail = d["detail"].as_str().unwrap_or_default();
            // A layer on now that the run may still remove: the apply waits for it (and stops on
            // the error if it stays), so the plan only warns.
            let severity = if detail.contains(PENDING) {
                "warning"
            } else {
                severity
            };
            assert_eq!(d["severity"], severity, "severity of {check}: {d:#}");
            assert!(
                detail.contains("What breaks:") && detail.contains("Fix:"),
                "{check}: the detail says what breaks and the fix: {d:#}"
            );
            for (_, mention) in DETAIL_MENTIONS.iter().filter(|(c, _)| *c == check) {
                assert!(
                    detail.contains(mention),
                    "{check} mentions {mention:?}: {d:#}"
                );
            }
            let line = d["range"]["start"]["line"]
                .as_u64()
                .unwrap_or_else(|| panic!("{check} has no range: {d:#}"))
                as usize;
            let address = self
                .block_at(line)
                .unwrap_or_else(|| panic!("{check} at line {line} is outside every case: {d:#}"));
            if let Some(reported) = d["address"].as_str() {
                assert_eq!(reported, address, "{d:#}");
            }
            found
                .entry(address.to_string())
                .or_default()
                .insert((check.to_string(), line));
        }
        found
    }
}

/// The `diagnostic` objects of a `plan -json` stream.
fn plan_diagnostics(run: &crate::support::Run) -> Vec<Value> {
    run.json_lines()
        .into_iter()
        .filter(|l| l["type"] == "diagnostic")
        .map(|l| l["diagnostic"].clone())
        .collect()
}

fn h2c_template() -> Value {
    json!({"template": {"containers": [{
        "image": "us-docker.pkg.dev/cloudrun/container/hello",
        "ports": [{"name": "h2c", "containerPort": 8080}]
    }]}})
}

/// Every pitfall and its near miss side by side in the world's project, plus a project without an
/// organization and one with the IAP API disabled.
async fn pitfall_world() -> World {
    let w = World::start().await;
    w.run_service("plain", json!({})).await;
    w.run_service("h2c", h2c_template()).await;
    w.run_service("open", json!({"ingress": "INGRESS_TRAFFIC_ALL"}))
        .await;
    w.run_service(
        "open-nouri",
        json!({"ingress": "INGRESS_TRAFFIC_ALL", "defaultUriDisabled": true}),
    )
    .await;
    w.run_service("public", json!({})).await;
    w.set_run_members("public", INVOKER, &["allUsers"]).await;
    w.run_service("no-invoker-iam", json!({"invokerIamDisabled": true}))
        .await;
    w.run_service("agent-ok", json!({})).await;
    w.provision_iap_agent().await;
    let agent = w.iap_agent();
    w.set_run_members("agent-ok", INVOKER, &[&agent]).await;
    w.run_service("direct-iap", json!({})).await;
    w.set_run_iap("direct-iap", true).await;
    w.run_service("both", json!({})).await;
    // Services for direct IAP only: none is behind a backend that this plan puts IAP on.
    w.run_service("d-plain", json!({})).await;
    w.run_service("d-h2c", h2c_template()).await;
    w.run_service("d-public", json!({})).await;
    w.set_run_members("d-public", INVOKER, &["allUsers"]).await;
    w.run_service("d-agent-ok", json!({})).await;
    w.set_run_members("d-agent-ok", INVOKER, &[&agent]).await;

    w.update_project(NO_ORG_PROJECT, json!({"parent": null}));
    w.run_service_in(NO_ORG_PROJECT, REGION, "plain", json!({}))
        .await;
    w.update_project(
        NO_IAP_PROJECT,
        json!({"services": {"iap.googleapis.com": false}}),
    );
    w.run_service_in(NO_IAP_PROJECT, REGION, "plain", json!({}))
        .await;

    for service in [
        "plain",
        "h2c",
        "open",
        "open-nouri",
        "public",
        "agent-ok",
        "direct-iap",
        "both",
    ] {
        w.neg(&format!("{service}-neg"), service).await;
    }
    w.neg("ghost-neg", "ghost").await;
    w.neg_in(OTHER_REGION, "far-neg", "plain").await;

    let classic = |extra: Value| {
        let mut body = json!({"loadBalancingScheme": "EXTERNAL", "protocol": "HTTPS"});
        if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
            b.extend(e.clone());
        }
        body
    };
    let envoy = json!({"loadBalancingScheme": "EXTERNAL_MANAGED", "protocol": "HTTPS"});
    let global: Vec<(&str, &str, Value)> = vec![
        ("good", "plain-neg", classic(json!({}))),
        ("custom", "plain-neg", classic(json!({}))),
        ("envoy", "plain-neg", envoy.clone()),
        ("cdn", "plain-neg", classic(json!({"enableCDN": true}))),
        ("h2c-classic", "h2c-neg", classic(json!({}))),
        (
            "http2-classic",
            "plain-neg",
            classic(json!({"protocol": "HTTP2"})),
        ),
        ("h2c-envoy", "h2c-neg", envoy),
        ("bypass", "open-neg", classic(json!({}))),
        ("bypass-nouri", "open-nouri-neg", classic(json!({}))),
        ("public", "public-neg", classic(json!({}))),
        ("ghost", "ghost-neg", classic(json!({}))),
        (
            "far",
            "",
            classic(json!({"backends": [{"group": format!(
                "projects/{PROJECT}/regions/{OTHER_REGION}/networkEndpointGroups/far-neg"
            )}]})),
        ),
        ("double", "direct-iap-neg", classic(json!({}))),
        ("both", "both-neg", classic(json!({}))),
        ("agent-ok", "agent-ok-neg", classic(json!({}))),
    ];
    for (name, neg, extra) in global {
        let negs: Vec<&str> = [neg].into_iter().filter(|n| !n.is_empty()).collect();
        w.backend(name, None, &negs, extra).await;
        w.https_frontend(name).await;
    }
    w.backend("http-only", None, &["plain-neg"], classic(json!({})))
        .await;
    w.http_frontend("http-only").await;
    w.backend(
        "internal",
        Some(REGION),
        &["plain-neg"],
        json!({"loadBalancingScheme": "INTERNAL", "protocol": "TCP"}),
    )
    .await;
    w.backend(
        "internal-managed",
        Some(REGION),
        &["plain-neg"],
        json!({"loadBalancingScheme": "INTERNAL_MANAGED", "protocol": "HTTP"}),
    )
    .await;
    w.emulator.clear_requests();
    w
}

/// Each case is one resource; `fires` lists what it must report (nothing: a near miss).
fn plan_cases() -> Vec<Case> {
    const B: &str = "iaprun_backend_iap";
    const S: &str = "iaprun_service_iap";
    const A: &str = "iaprun_access_binding";
    let backend_resource =
        |name: &str| format!("resource = \"projects/{PROJECT}/iap_web/compute/services/{name}\"");
    vec![
        // Load balancer IAP: the near miss of every backend check first.
        Case::new(B, "good", r#"backend_service = "good""#),
        Case::new(B, "envoy", r#"backend_service = "envoy""#)
            .fires("envoy_jwt_header", "backend_service"),
        Case::new(B, "cdn", r#"backend_service = "cdn""#).fires("cdn_enabled", "backend_service"),
        Case::new(
            B,
            "cdn_ignored",
            "backend_service = \"cdn\"\nignore_checks = [\"cdn_enabled\"]",
        ),
        Case::new(B, "h2c_classic", r#"backend_service = "h2c-classic""#)
            .fires("http2_classic_lb", "backend_service"),
        Case::new(B, "http2_classic", r#"backend_service = "http2-classic""#)
            .fires("http2_classic_lb", "backend_service"),
        Case::new(B, "h2c_envoy", r#"backend_service = "h2c-envoy""#)
            .fires("envoy_jwt_header", "backend_service"),
        Case::new(B, "bypass", r#"backend_service = "bypass""#)
            .fires("run_app_bypass", "backend_service"),
        Case::new(B, "bypass_nouri", r#"backend_service = "bypass-nouri""#),
        Case::new(B, "public", r#"backend_service = "public""#)
            .fires("public_invoker", "backend_service"),
        Case::new(B, "http_only", r#"backend_service = "http-only""#)
            .fires("no_https_frontend", "backend_service"),
        Case::new(
            B,
            "internal",
            &format!("backend_service = \"internal\"\nregion = \"{REGION}\""),
        )
        .fires("passthrough_lb", "backend_service")
        .fires("no_https_frontend", "backend_service"),
        Case::new(
            B,
            "internal_managed",
            &format!("backend_service = \"internal-managed\"\nregion = \"{REGION}\""),
        )
        .fires("no_https_frontend", "backend_service"),
        Case::new(B, "ghost", r#"backend_service = "ghost""#)
            .fires("neg_mismatch", "backend_service"),
        Case::new(B, "far", r#"backend_service = "far""#).fires("neg_mismatch", "backend_service"),
        // Direct IAP on now (a warning: the run may remove it; the apply waits for that).
        Case::new(B, "double", r#"backend_service = "double""#)
            .fires("double_iap", "backend_service"),
        // Both layers planned in this run: the backend, planned after the service, sees it.
        Case::new(
            B,
            "both",
            "backend_service = \"both\"\ndepends_on = [iaprun_service_iap.both]",
        )
        .fires("double_iap", "backend_service"),
        // Missing at plan: the configuration may create it in the same run; checked at apply.
        Case::new(B, "missing", r#"backend_service = "nope""#),
        Case::new(
            B,
            "no_invoker",
            "backend_service = \"good\"\ngrant_iap_invoker = false",
        )
        .fires("missing_invoker", "grant_iap_invoker"),
        Case::new(
            B,
            "agent_ok",
            "backend_service = \"agent-ok\"\ngrant_iap_invoker = false",
        ),
        Case::new(
            B,
            "custom",
            "backend_service = \"custom\"\noauth2_client_id = \"custom.apps.googleusercontent.com\"\noauth2_client_secret = \"not-a-real-secret\"",
        ),
        // Direct IAP on Cloud Run.
        Case::new(S, "good", r#"service = "d-plain""#),
        Case::new(S, "both", r#"service = "both""#),
        Case::new(S, "h2c", r#"service = "d-h2c""#).fires("http2_direct", "service"),
        Case::new(S, "public", r#"service = "d-public""#).fires("public_invoker", "service"),
        Case::new(S, "invoker_iam_off", r#"service = "no-invoker-iam""#)
            .fires("public_invoker", "service"),
        Case::new(S, "no_invoker", "service = \"d-plain\"\ngrant_iap_invoker = false")
            .fires("missing_invoker", "grant_iap_invoker"),
        Case::new(S, "agent_ok", "service = \"d-agent-ok\"\ngrant_iap_invoker = false"),
        Case::new(S, "missing", r#"service = "ghost""#),
        Case::new(
            S,
            "no_org",
            &format!("service = \"plain\"\nproject = \"{NO_ORG_PROJECT}\""),
        )
        .fires("no_organization", "project"),
        Case::new(
            S,
            "no_iap_api",
            &format!("service = \"plain\"\nproject = \"{NO_IAP_PROJECT}\""),
        )
        .fires("iap_api_disabled", "project"),
        // Who may pass IAP. Members from variables are unknown to `terraform validate`, so the
        // member checks run in the plan, next to the others.
        Case::new(
            A,
            "outside",
            &format!(
                "{}\nmembers = [\"user:alice@example.com\", \"user:bob@other.org\"]",
                backend_resource("good")
            ),
        )
        .fires("managed_oauth_external", "members"),
        Case::new(
            A,
            "inside",
            &format!(
                "{}\nmembers = [\"user:alice@example.com\", \"group:eng@example.com\"]\n{}",
                backend_resource("good"),
                own_condition("inside")
            ),
        ),
        Case::new(
            A,
            "custom_client",
            "resource = iaprun_backend_iap.custom.iap_resource_name\nmembers = [\"user:bob@other.org\"]",
        ),
        Case::new(
            A,
            "missing",
            &format!(
                "{}\nmembers = [\"user:alice@example.com\"]",
                backend_resource("nope")
            ),
        ),
        Case::new(
            A,
            "public",
            &format!(
                "{}\nmembers = var.public_members\n{}",
                backend_resource("good"),
                own_condition("public")
            ),
        )
        .fires("public_member", "members"),
        Case::new(
            A,
            "format",
            &format!(
                "{}\nmembers = var.odd_members\n{}",
                backend_resource("good"),
                own_condition("format")
            ),
        )
        .fires("member_format", "members"),
        // Two bindings, and a member, on one (resource, role, condition). depends_on orders their
        // plans, so the later ones are those that see the first and report.
        Case::new(
            A,
            "claims",
            &format!(
                "{}\nmembers = [\"user:alice@example.com\"]\n{}",
                backend_resource("good"),
                own_condition("claimed")
            ),
        ),
        Case::new(
            A,
            "claims_too",
            &format!(
                "{}\nmembers = [\"user:bob@example.com\"]\n{}\ndepends_on = [iaprun_access_binding.claims]",
                backend_resource("good"),
                own_condition("claimed")
            ),
        )
        .fires("binding_conflict", "resource"),
        Case::new(
            "iaprun_access_member",
            "joins",
            &format!(
                "{}\nmember = \"user:carol@example.com\"\n{}\ndepends_on = [iaprun_access_binding.claims]",
                backend_resource("good"),
                own_condition("claimed")
            ),
        )
        .fires("binding_conflict", "resource"),
    ]
}

/// A condition block of its own, so that bindings on one IAP resource do not claim one
/// (role, condition) pair and trigger `binding_conflict`.
fn own_condition(title: &str) -> String {
    format!("condition {{\ntitle = \"{title}\"\nexpression = \"true\"\n}}")
}

const PLAN_PRELUDE: &str = r#"
variable "public_members" {
  type    = set(string)
  default = ["allUsers"]
}

variable "odd_members" {
  type    = set(string)
  default = ["User:alice@example.com"]
}
"#;

/// Cases judged by `terraform validate -json` (members written literally, one per line).
fn validate_cases() -> Vec<Case> {
    const A: &str = "iaprun_access_binding";
    let resource = format!("resource = \"projects/{PROJECT}/iap_web/compute/services/good\"");
    vec![
        Case::new(
            A,
            "fine",
            &format!("{resource}\nmembers = [\n\"user:alice@example.com\",\n\"domain:example.com\",\n]"),
        ),
        Case::new(
            A,
            "public",
            &format!("{resource}\nmembers = [\n\"user:alice@example.com\",\n\"allAuthenticatedUsers\",\n]"),
        )
        .fires("public_member", "members"),
        Case::new(
            A,
            "format",
            &format!("{resource}\nmembers = [\n\"user:alice@example.com\",\n\"user:Bob@Example.com\",\n]"),
        )
        .fires("member_format", "members"),
        Case::new(
            A,
            "public_ignored",
            &format!("{resource}\nmembers = [\"allUsers\"]\nignore_checks = [\"public_member\"]"),
        ),
    ]
}

/// Every check fires on its case with its severity and range, every near miss stays silent, all
/// error checks show in one plan that sends no mutating request, an unknown-at-plan input is
/// checked at apply before anything changes, and `ignore_checks` turns a check off.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_check_fires_on_its_attribute_and_near_misses_stay_silent() {
    let terraform = newest();
    let (world, late_world) = tokio::join!(pitfall_world(), late_world());

    let plan_cases = plan_cases();
    let plan_config = Config::new(PLAN_PRELUDE, &plan_cases);
    let validate_cases = validate_cases();
    let validate_config = Config::new("", &validate_cases);

    let (plan_run, validate_run, late) = std::thread::scope(|scope| {
        let plan = scope.spawn(|| {
            let mut ws = Workspace::new(&terraform, &plan_config.text);
            ws.env("IAPRUN_EMULATOR_HOST", &world.host());
            ws.init();
            ws.plan_json()
        });
        let validate = scope.spawn(|| {
            let ws = Workspace::new(&terraform, &validate_config.text);
            ws.init();
            ws.validate_json()
        });
        let late = scope.spawn(|| run_late(&terraform, &late_world));
        (
            plan.join().expect("plan thread"),
            validate.join().expect("validate thread"),
            late.join().expect("apply thread"),
        )
    });

    // One plan: every case reports exactly its checks, on the line of the attribute at fault.
    assert_eq!(plan_run.code(), 1, "the plan fails on errors: {plan_run}");
    let found = plan_config.judge(&plan_diagnostics(&plan_run));
    let expected = plan_config.expected(&plan_cases);
    for (address, want) in &expected {
        assert_eq!(
            found.get(address),
            Some(want),
            "{address}: (check, line) reported vs expected\n{}",
            plan_config.text
        );
    }
    // Every check of the table is covered here or by the validate run below.
    let validate_expected = validate_config.expected(&validate_cases);
    let (_, late_apply) = &late;
    let late_output = format!("{}{}", late_apply.stdout, late_apply.stderr);
    let fired: BTreeSet<&str> = expected
        .values()
        .chain(validate_expected.values())
        .flatten()
        .map(|(check, _)| check.as_str())
        // Only at apply: an object missing at plan may be created by the same run.
        .chain(
            late_output
                .contains("target_missing:")
                .then_some("target_missing"),
        )
        .collect();
    let all: BTreeSet<&str> = TABLE.iter().map(|(name, _)| *name).collect();
    assert_eq!(fired, all, "every check has a firing case");
    // All error checks in that one run.
    let errors_in_plan: BTreeSet<&str> = found
        .values()
        .flatten()
        .map(|(check, _)| check.as_str())
        .filter(|c| severity_of(c) == "error")
        .collect();
    let all_errors: BTreeSet<&str> = all
        .iter()
        .copied()
        .filter(|c| severity_of(c) == "error" && *c != "target_missing")
        .collect();
    assert_eq!(errors_in_plan, all_errors);
    assert_eq!(
        world.mutating_requests(),
        Vec::<String>::new(),
        "a plan changes nothing"
    );
    world.assert_conformant();

    // terraform validate: the member checks on the member at fault; an ignored check is silent.
    let validate = validate_run.json();
    assert_eq!(validate["valid"], false, "{validate_run}");
    let diagnostics = validate["diagnostics"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let found = validate_config.judge(&diagnostics);
    assert_eq!(
        found, validate_expected,
        "{validate_run}\n{}",
        validate_config.text
    );

    // Unknown at plan: silent then, fails the apply before any call that changes something.
    let (plan, apply) = late;
    assert_eq!(plan.code(), 0, "{plan}");
    assert!(
        !plan.stdout.contains("cdn_enabled"),
        "the backend is unknown at plan: {plan}"
    );
    assert!(!apply.success(), "{apply}");
    let output = format!("{}{}", apply.stdout, apply.stderr);
    assert!(
        output.contains("cdn_enabled: Cloud CDN enabled"),
        "checked at apply: {apply}"
    );
    assert!(output.contains("target_missing:"), "{apply}");
    assert_eq!(
        late_world.mutating_requests(),
        Vec::<String>::new(),
        "nothing changed: {apply}"
    );
    let backend = late_world.backend_json("cdn", None).await;
    assert_ne!(backend["iap"]["enabled"], true, "{backend}");
}

/// A backend with Cloud CDN whose name the configuration only knows at apply.
async fn late_world() -> World {
    let w = World::start().await;
    w.run_service("plain", json!({})).await;
    w.neg("plain-neg", "plain").await;
    w.backend(
        "cdn",
        None,
        &["plain-neg"],
        json!({"loadBalancingScheme": "EXTERNAL", "enableCDN": true}),
    )
    .await;
    w.https_frontend("cdn").await;
    w.emulator.clear_requests();
    w
}

/// Plans and applies a configuration whose backend name is unknown until `terraform_data` exists.
fn run_late(terraform: &Terraform, world: &World) -> (crate::support::Run, crate::support::Run) {
    let header = provider_header("");
    let config = format!(
        r#"{header}
resource "terraform_data" "gate" {{}}

resource "iaprun_backend_iap" "late" {{
  # "cdn", known only once terraform_data has an id.
  backend_service = "${{substr(terraform_data.gate.id, 0, 0)}}cdn"
}}

# Missing at plan and still missing at apply: target_missing then, before any change.
resource "iaprun_service_iap" "ghost" {{
  service    = "ghost"
  depends_on = [terraform_data.gate]
}}
"#
    );
    let mut ws = Workspace::new(terraform, &config);
    ws.env("IAPRUN_EMULATOR_HOST", &world.host());
    ws.init();
    let plan = ws.run(&["plan", "-input=false", "-no-color"]);
    let apply = ws.apply();
    (plan, apply)
}
