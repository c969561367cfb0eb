//! iaprun_access_binding end to end: parallel apply under injected conflicts, coalesced refresh,
//! writes folded per policy, drift, import, conditions and destroy, with the real terraform CLI
//! against iaprun-emulator.

use serde_json::{json, Value};

use iaprun::emulator::FaultSpec;
use iaprun::framework::model::from_value;
use iaprun::framework::{ClientCapabilities, Diagnostics, Resource, Schema, Value as TfValue};
use iaprun::resources::access_binding::AccessBinding;
use iaprun::resources::Context;

use crate::support::{newest, terraform_binaries, Workspace};
use crate::world::{header_with_resources, provider_header, World, PROJECT, REGION};

pub(crate) const ACCESSOR: &str = "roles/iap.httpsResourceAccessor";

/// Two Cloud Run services (direct IAP) and two backend services (global and regional) over them.
pub(crate) async fn four_iap_resources(world: &World) -> Vec<String> {
    world.run_service("svc-a", json!({})).await;
    world.run_service("svc-b", json!({})).await;
    world.neg("neg-a", "svc-a").await;
    world.neg("neg-b", "svc-b").await;
    world.backend("web", None, &["neg-a"], json!({})).await;
    world
        .backend(
            "regional",
            Some(REGION),
            &["neg-b"],
            json!({"loadBalancingScheme": "EXTERNAL_MANAGED"}),
        )
        .await;
    let number = world
        .emulator
        .project_number(PROJECT)
        .expect("project number");
    vec![
        format!("projects/{PROJECT}/iap_web/cloud_run-{REGION}/services/svc-a"),
        // The project number names the same policy as the id.
        format!("projects/{number}/iap_web/cloud_run-{REGION}/services/svc-b"),
        format!("projects/{PROJECT}/iap_web/compute/services/web"),
        format!("projects/{PROJECT}/iap_web/compute-{REGION}/services/regional"),
    ]
}

pub(crate) fn many_bindings(resources: &[String], count: usize) -> String {
    format!(
        r#"{}
resource "iaprun_access_binding" "b" {{
  count    = {count}
  resource = local.resources[count.index % length(local.resources)]
  members  = ["user:u${{count.index}}@example.com", "group:team${{count.index % 7}}@example.com"]
  condition {{
    title      = "slot-${{count.index}}"
    expression = "request.time < timestamp(\"2030-01-01T00:00:00Z\")"
  }}
}}
"#,
        header_with_resources(resources)
    )
}

/// The members of (role, condition title) in a policy.
pub(crate) fn members(policy: &Value, role: &str, title: Option<&str>) -> Vec<String> {
    let mut out: Vec<String> = policy["bindings"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|b| b["role"] == role && b["condition"]["title"].as_str() == title)
        .flat_map(|b| b["members"].as_array().cloned().unwrap_or_default())
        .filter_map(|m| m.as_str().map(str::to_string))
        .collect();
    out.sort();
    out
}

/// Every binding `many_bindings(resources, count)` declares holds exactly its two members.
pub(crate) async fn assert_slot_bindings(world: &World, resources: &[String], count: usize) {
    for (i, r) in resources.iter().enumerate() {
        let policy = world.iap_policy(r).await;
        for n in (i..count).step_by(resources.len()) {
            let title = format!("slot-{n}");
            let got = members(&policy, ACCESSOR, Some(&title));
            let mut want = vec![
                format!("group:team{}@example.com", n % 7),
                format!("user:u{n}@example.com"),
            ];
            want.sort();
            assert_eq!(got, want, "{r} {title}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hundred_bindings_in_parallel_under_conflicts_keep_every_member() {
    let world = World::start().await;
    let resources = four_iap_resources(&world).await;
    for r in &resources {
        world
            .set_iap_members(
                r,
                "roles/iap.tunnelResourceAccessor",
                &["user:oob@example.com"],
            )
            .await;
    }
    let ws = world.workspace(&newest(), &many_bindings(&resources, 100));
    world.inject_iam_conflicts(0.3);
    ws.run(&["apply", "-auto-approve", "-no-color", "-parallelism=50"])
        .expect_success();
    world.emulator.clear_faults();

    assert!(world.iam_conflicts() > 0, "the fault injected conflicts");
    for r in &resources {
        let policy = world.iap_policy(r).await;
        assert_eq!(
            members(&policy, "roles/iap.tunnelResourceAccessor", None),
            vec!["user:oob@example.com"],
            "{r}"
        );
    }
    assert_slot_bindings(&world, &resources, 100).await;

    // Refresh coalesces reads: one getIamPolicy per IAP resource for 100 bindings.
    world.emulator.clear_requests();
    let plan = ws.plan_detailed_exitcode();
    assert_eq!(plan.code(), 0, "second plan has no changes:\n{plan}");
    let reads = world.iap_policy_reads();
    assert_eq!(
        reads, 4,
        "getIamPolicy calls during refresh of 100 bindings over 4 IAP resources"
    );
    assert!(
        world.mutating_requests().is_empty(),
        "plan changed nothing: {:?}",
        world.mutating_requests()
    );
    world.assert_conformant();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hundred_bindings_on_one_policy_at_parallelism_fifty_fold_into_far_fewer_writes() {
    const BINDINGS: usize = 100;
    const CONFLICTS: usize = 3;
    for terraform in terraform_binaries() {
        let v = &terraform.version;
        let world = World::start().await;
        world.run_service("svc-a", json!({})).await;
        world
            .set_iap_members(
                &format!("projects/{PROJECT}/iap_web/cloud_run-{REGION}/services/svc-a"),
                "roles/iap.tunnelResourceAccessor",
                &["user:oob@example.com"],
            )
            .await;
        // One policy under both of its names: by project id and by project number.
        let number = world.emulator.project_number(PROJECT).expect("number");
        let resources = [PROJECT, number.as_str()]
            .map(|p| format!("projects/{p}/iap_web/cloud_run-{REGION}/services/svc-a"));
        let mut ws = Workspace::new(&terraform, &many_bindings(&resources, BINDINGS));
        ws.env("IAPRUN_EMULATOR_HOST", &world.host());
        ws.init();
        // setIamPolicy takes half a second, as Google's often does: the edits Terraform sends meanwhile
        // queue behind the write in flight.
        for fault in [
            json!({"kind": "delay", "delay_ms": 500, "method": "POST", "path_regex": ":setIamPolicy$", "probability": 1.0}),
            json!({"kind": "stale_etag", "method": "POST", "path_regex": ":setIamPolicy$", "count": CONFLICTS}),
        ] {
            let fault: FaultSpec = serde_json::from_value(fault).expect("fault");
            world.emulator.add_fault(fault).expect("fault added");
        }
        world.emulator.clear_requests();
        ws.run(&["apply", "-auto-approve", "-no-color", "-parallelism=50"])
            .expect_success();

        assert_eq!(world.iam_conflicts(), CONFLICTS, "{v}: the fault fired");
        let (reads, writes) = (world.iap_policy_reads(), world.iap_policy_writes());
        // One write per binding without folding.
        assert!(
            writes <= BINDINGS / 4 + CONFLICTS,
            "{v}: {writes} setIamPolicy calls for {BINDINGS} bindings"
        );
        // The policy is read once; after that only a conflict makes a write re-read.
        assert!(reads <= 1 + CONFLICTS, "{v}: {reads} getIamPolicy calls");
        let policy = world.iap_policy(&resources[0]).await;
        for n in 0..BINDINGS {
            let title = format!("slot-{n}");
            let mut want = vec![
                format!("group:team{}@example.com", n % 7),
                format!("user:u{n}@example.com"),
            ];
            want.sort();
            assert_eq!(
                members(&policy, ACCESSOR, Some(&title)),
                want,
                "{v}: {title}"
            );
        }
        assert_eq!(
            members(&policy, "roles/iap.tunnelResourceAccessor", None),
            vec!["user:oob@example.com"],
            "{v}"
        );
        assert_eq!(ws.plan_detailed_exitcode().code(), 0, "{v}: converged");

        // Removals fold the same way and remove exactly what the bindings added.
        world.emulator.clear_requests();
        ws.run(&["destroy", "-auto-approve", "-no-color", "-parallelism=50"])
            .expect_success();
        let writes = world.iap_policy_writes();
        assert!(
            writes <= BINDINGS / 4,
            "{v}: {writes} setIamPolicy calls destroying {BINDINGS} bindings"
        );
        assert_eq!(
            world.iap_policy(&resources[0]).await["bindings"],
            json!([{"role": "roles/iap.tunnelResourceAccessor", "members": ["user:oob@example.com"]}]),
            "{v}"
        );
        world.emulator.clear_faults();
        world.assert_conformant();
    }
}

/// GETs of a Cloud Run service (its target check) since the request log was cleared.
fn service_reads(world: &World, service: &str) -> usize {
    let path = format!("/services/{service}");
    let requests = world.emulator.requests();
    requests
        .iter()
        .filter(|r| r.method == "GET" && r.path.ends_with(&path))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_apply_reads_each_target_once_and_a_target_gone_since_the_plan_fails_on_target_missing()
{
    let world = World::start().await;
    let resources = four_iap_resources(&world).await;
    world.run_service("doomed", json!({})).await;
    let doomed = format!("projects/{PROJECT}/iap_web/cloud_run-{REGION}/services/doomed");
    let all: Vec<String> = resources.iter().cloned().chain([doomed]).collect();
    let ws = world.workspace(&newest(), &many_bindings(&all, 50));
    let plan = ["plan", "-input=false", "-no-color", "-out=tfplan"];
    ws.run(&plan).expect_success();
    world.delete_run_service("doomed").await;
    world.emulator.clear_requests();
    let apply = ws.run(&[
        "apply",
        "-input=false",
        "-no-color",
        "-parallelism=20",
        "tfplan",
    ]);

    // Ten bindings on each Cloud Run service, one read of it for all ten.
    assert_eq!(service_reads(&world, "svc-a"), 1, "{apply}");
    assert_eq!(service_reads(&world, "svc-b"), 1, "{apply}");
    // The service deleted since the plan: each of its bindings reads it afresh and stops on
    // target_missing, writing nothing.
    assert!(!apply.success(), "{apply}");
    let output = format!("{}{}", apply.stdout, apply.stderr);
    assert!(output.contains("target_missing:"), "{apply}");
    assert!(service_reads(&world, "doomed") >= 1, "{apply}");
    let writes_to_doomed = world
        .emulator
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/services/doomed:setIamPolicy"))
        .count();
    assert_eq!(writes_to_doomed, 0, "{apply}");
    // The bindings on the other four were all written.
    for (i, r) in resources.iter().enumerate() {
        let policy = world.iap_policy(r).await;
        for n in (i..50).step_by(all.len()) {
            let got = members(&policy, ACCESSOR, Some(&format!("slot-{n}")));
            assert!(
                got.contains(&format!("user:u{n}@example.com")),
                "{r} slot-{n}: {got:?}"
            );
        }
    }
    world.assert_conformant();
}

fn one_binding(resource: &str, members: &[&str], condition: &str) -> String {
    let members = members
        .iter()
        .map(|m| format!("\"{m}\""))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        r#"{}
resource "iaprun_access_binding" "b" {{
  resource = "{resource}"
  members  = [{members}]
{condition}
}}
"#,
        provider_header("")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn drift_import_conditions_and_destroy() {
    let world = World::start().await;
    world.run_service("svc-a", json!({})).await;
    let resource = format!("projects/{PROJECT}/iap_web/cloud_run-{REGION}/services/svc-a");
    world
        .set_iap_members(
            &resource,
            "roles/iap.tunnelResourceAccessor",
            &["user:other@example.com"],
        )
        .await;
    let condition = r#"  condition {
    title       = "office"
    description = "Office hours only"
    expression  = "request.time.getHours(\"Europe/Berlin\") >= 9"
  }"#;
    let ws = world.workspace(
        &newest(),
        &one_binding(
            &resource,
            &["user:a@example.com", "group:g@example.com"],
            condition,
        ),
    );
    ws.apply().expect_success();
    let policy = world.iap_policy(&resource).await;
    assert_eq!(
        members(&policy, ACCESSOR, Some("office")),
        vec!["group:g@example.com", "user:a@example.com"]
    );
    let bound = policy["bindings"]
        .as_array()
        .expect("bindings")
        .iter()
        .find(|b| b["condition"]["title"] == "office")
        .cloned()
        .expect("binding");
    assert_eq!(
        bound["condition"]["description"], "Office hours only",
        "condition round trip: {bound}"
    );
    assert_eq!(policy["version"], 3);
    assert_eq!(ws.plan_detailed_exitcode().code(), 0);

    // A member added out of band to this (role, condition) is drift; apply removes it again.
    let mut policy = world.iap_policy(&resource).await;
    for b in policy["bindings"].as_array_mut().expect("bindings") {
        if b["condition"]["title"] == "office" {
            b["members"]
                .as_array_mut()
                .expect("members")
                .push(json!("user:intruder@example.com"));
        }
    }
    world.set_iap_policy(&resource, policy).await;
    let plan = ws.plan_detailed_exitcode();
    assert_eq!(plan.code(), 2, "{plan}");
    assert!(plan.stdout.contains("user:intruder@example.com"), "{plan}");
    ws.apply().expect_success();
    assert_eq!(
        members(&world.iap_policy(&resource).await, ACCESSOR, Some("office")),
        vec!["group:g@example.com", "user:a@example.com"]
    );

    // Import by "RESOURCE ROLE TITLE", then no changes.
    ws.run(&["state", "rm", "iaprun_access_binding.b"])
        .expect_success();
    let id = format!("{resource} {ACCESSOR} office");
    ws.run(&["import", "-no-color", "iaprun_access_binding.b", &id])
        .expect_success();
    assert_eq!(ws.plan_detailed_exitcode().code(), 0, "import then plan");

    // Destroy removes only this binding.
    ws.destroy().expect_success();
    let policy = world.iap_policy(&resource).await;
    assert!(members(&policy, ACCESSOR, Some("office")).is_empty());
    assert_eq!(
        members(&policy, "roles/iap.tunnelResourceAccessor", None),
        vec!["user:other@example.com"]
    );
    world.assert_conformant();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn project_id_and_number_name_the_same_binding_and_removal_out_of_band_is_drift() {
    let world = World::start().await;
    world.run_service("svc-a", json!({})).await;
    let by_id = format!("projects/{PROJECT}/iap_web/cloud_run-{REGION}/services/svc-a");
    let number = world.emulator.project_number(PROJECT).expect("number");
    let by_number = format!("projects/{number}/iap_web/cloud_run-{REGION}/services/svc-a");
    let ws = world.workspace(&newest(), &one_binding(&by_id, &["user:a@example.com"], ""));
    ws.apply().expect_success();
    ws.write(
        "main.tf",
        &one_binding(&by_number, &["user:a@example.com"], ""),
    );
    let plan = ws.plan_detailed_exitcode();
    assert_eq!(
        plan.code(),
        0,
        "the same policy written with the project number is no change:\n{plan}"
    );

    // The binding removed out of band: it leaves the state and the plan creates it again.
    world.set_iap_members(&by_id, ACCESSOR, &[]).await;
    let plan = ws.plan_detailed_exitcode();
    assert_eq!(plan.code(), 2, "{plan}");
    assert!(plan.stdout.contains("will be created"), "{plan}");
    ws.apply().expect_success();
    assert_eq!(
        members(&world.iap_policy(&by_id).await, ACCESSOR, None),
        vec!["user:a@example.com"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_bindings_fail_validate_on_the_attribute_and_change_nothing() {
    let world = World::start().await;
    world.run_service("svc-a", json!({})).await;
    let resource = format!("projects/{PROJECT}/iap_web/cloud_run-{REGION}/services/svc-a");
    let ws = world.workspace(
        &newest(),
        &one_binding(&resource, &["allUsers", "user:Bob@Example.com"], ""),
    );
    world.emulator.clear_requests();
    let run = ws.validate_json();
    assert_eq!(run.code(), 1, "{run}");
    let diags = run.json()["diagnostics"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let summaries: Vec<&str> = diags.iter().filter_map(|d| d["summary"].as_str()).collect();
    assert!(
        summaries.iter().any(|s| s.starts_with("public_member")),
        "{summaries:?}"
    );
    assert!(
        summaries.iter().any(|s| s.starts_with("member_format")),
        "{summaries:?}"
    );
    for d in &diags {
        let line = d["range"]["start"]["line"].as_u64().unwrap_or(0);
        let text = ws_line(&ws, line);
        assert!(
            text.contains("members"),
            "diagnostic points at the members line, got line {line}: {text:?}"
        );
    }
    let apply = ws.apply();
    assert!(!apply.success());
    assert!(
        world.mutating_requests().is_empty(),
        "{:?}",
        world.mutating_requests()
    );
}

fn ws_line(ws: &Workspace, line: u64) -> String {
    let text = std::fs::read_to_string(ws.dir().join("main.tf")).expect("main.tf");
    text.lines()
        .nth(line.saturating_sub(1) as usize)
        .unwrap_or_default()
        .to_string()
}

fn validate(config: &TfValue) -> Diagnostics {
    let model = from_value(config).expect("fits the model");
    <AccessBinding as Resource<Context>>::validate(&model, ClientCapabilities::default())
}

fn schema() -> Schema {
    <AccessBinding as Resource<Context>>::schema()
}

#[test]
fn validate_points_at_each_bad_attribute() {
    let mut config = schema().block.empty_value();
    config.set_attr(
        "resource",
        TfValue::from("projects/p-123456/iap_web/cloud-run-us-central1/services/x"),
    );
    config.set_attr("role", TfValue::from("viewer"));
    config.set_attr(
        "members",
        TfValue::string_set(["allUsers", "user:Bob@example.com"]),
    );
    config.set_attr("ignore_checks", TfValue::string_set(["nope"]));
    let diags = validate(&config);
    let paths: Vec<String> = diags
        .iter()
        .filter_map(|d| d.path.as_ref())
        .map(|p| p.to_string())
        .collect();
    for expected in [
        "resource",
        "role",
        "members[\"allUsers\"]",
        "members[\"user:Bob@example.com\"]",
        "ignore_checks[\"nope\"]",
    ] {
        assert!(
            paths.iter().any(|p| p == expected),
            "{expected} not in {paths:?}"
        );
    }
    config.set_attr("ignore_checks", TfValue::string_set(["public_member"]));
    config.set_attr("members", TfValue::string_set(["allUsers"]));
    config.set_attr(
        "resource",
        TfValue::from("projects/p-123456/iap_web/compute/services/x"),
    );
    config.set_attr("role", TfValue::Null);
    assert!(
        validate(&config).is_empty(),
        "ignored check must not report"
    );
    config.set_attr("members", TfValue::unknown());
    assert!(validate(&config).is_empty(), "unknown members are skipped");
}
