//! iaprun_access_member end to end: members from two modules and from outside Terraform compose,
//! many members under injected conflicts, coalesced refresh, drift and import; `binding_conflict`
//! at plan; the JWT audiences of both IAP resources. Real terraform against iaprun-emulator.

use serde_json::{json, Value};

use crate::access_binding::{members, ACCESSOR};
use crate::support::{newest, terraform_binaries, Run, Terraform, Workspace};
use crate::world::{header_with_resources, provider_header, World, PROJECT, REGION};

/// Adds `member` to the unconditional `role` binding out of band, keeping everyone else.
async fn add_member_out_of_band(world: &World, resource: &str, role: &str, member: &str) {
    let mut current = members(&world.iap_policy(resource).await, role, None);
    current.push(member.to_string());
    let refs: Vec<&str> = current.iter().map(String::as_str).collect();
    world.set_iap_members(resource, role, &refs).await;
}

/// A module granting its members on a resource it is given, one iaprun_access_member each.
const TEAM_MODULE: &str = r#"
terraform {
  required_providers {
    iaprun = { source = "iaprun/iaprun" }
  }
}
variable "resource" { type = string }
variable "members" { type = set(string) }
resource "iaprun_access_member" "this" {
  for_each = var.members
  resource = var.resource
  member   = each.value
}
"#;

/// The root configuration: Cloud Run "shared" with direct IAP and the team modules given. Where
/// Terraform has `terraform_data` (1.4+) the service itself is created in the same configuration
/// through the emulator's REST API, as another provider would.
fn shared_config(terraform: &Terraform, modules: &[(&str, &str)]) -> String {
    let in_config = has_terraform_data(terraform);
    let world = if in_config {
        format!(
            r#"
resource "terraform_data" "service" {{
  provisioner "local-exec" {{
    command = "curl -sf -X POST -H 'Authorization: Bearer world' -H 'Content-Type: application/json' -d '{{\"template\":{{\"containers\":[{{\"image\":\"us-docker.pkg.dev/cloudrun/container/hello\"}}]}}}}' \"http://$IAPRUN_EMULATOR_HOST/v2/projects/{PROJECT}/locations/{REGION}/services?serviceId=shared\""
  }}
}}
"#
        )
    } else {
        String::new()
    };
    // Unknown until the service exists, so the plan-time checks wait for apply.
    let service = if in_config {
        "${substr(terraform_data.service.id, 0, 0)}shared"
    } else {
        "shared"
    };
    let modules: String = modules
        .iter()
        .map(|(name, member)| {
            format!(
                r#"
module "{name}" {{
  source   = "./team"
  resource = iaprun_service_iap.shared.iap_resource_name
  members  = ["{member}"]
}}
"#
            )
        })
        .collect();
    format!(
        r#"{}{world}
resource "iaprun_service_iap" "shared" {{
  service = "{service}"
}}
{modules}"#,
        provider_header("")
    )
}

fn has_terraform_data(terraform: &Terraform) -> bool {
    let v: Vec<u64> = terraform
        .version
        .split('.')
        .filter_map(|p| p.parse().ok())
        .collect();
    v >= vec![1, 4]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_modules_and_an_out_of_band_member_compose_and_each_removes_only_its_own() {
    for terraform in terraform_binaries() {
        let what = format!("Terraform {}", terraform.version);
        let world = World::start().await;
        if !has_terraform_data(&terraform) {
            world.run_service("shared", json!({})).await;
        }
        let (alice, builders, oob) = (
            "user:alice@example.com",
            "group:builders@example.com",
            "user:oob@example.com",
        );
        let mut ws = Workspace::new(&terraform, &shared_config(&terraform, &[("team_a", alice)]));
        ws.env("IAPRUN_EMULATOR_HOST", &world.host());
        std::fs::create_dir_all(ws.dir().join("team")).expect("module directory");
        ws.write("team/main.tf", TEAM_MODULE);
        ws.init();
        ws.apply().expect_success();
        let number = world.emulator.project_number(PROJECT).expect("number");
        let resource = format!("projects/{number}/iap_web/cloud_run-{REGION}/services/shared");
        add_member_out_of_band(&world, &resource, ACCESSOR, oob).await;

        // The second module joins: all three are in the policy, and re-plans are empty.
        ws.write(
            "main.tf",
            &shared_config(&terraform, &[("team_a", alice), ("team_b", builders)]),
        );
        ws.init();
        ws.apply().expect_success();
        let policy = world.iap_policy(&resource).await;
        let mut want = vec![builders, oob, alice];
        want.sort();
        assert_eq!(members(&policy, ACCESSOR, None), want, "{what}: {policy}");
        let plan = ws.plan_detailed_exitcode();
        assert_eq!(plan.code(), 0, "{what}: the re-plan is not empty:\n{plan}");

        // One module leaves: only its member goes.
        ws.write(
            "main.tf",
            &shared_config(&terraform, &[("team_b", builders)]),
        );
        ws.apply().expect_success();
        let policy = world.iap_policy(&resource).await;
        assert_eq!(
            members(&policy, ACCESSOR, None),
            vec![builders, oob],
            "{what}: {policy}"
        );
        let plan = ws.plan_detailed_exitcode();
        assert_eq!(plan.code(), 0, "{what}: the re-plan is not empty:\n{plan}");
        world.assert_conformant();
    }
}

/// Ten Cloud Run services; their IAP resource names, half by project id and half by number.
async fn ten_resources(world: &World) -> Vec<String> {
    let number = world.emulator.project_number(PROJECT).expect("number");
    let mut out = Vec::new();
    for i in 0..10 {
        world.run_service(&format!("svc-{i}"), json!({})).await;
        let project = if i % 2 == 0 { PROJECT } else { number.as_str() };
        out.push(format!(
            "projects/{project}/iap_web/cloud_run-{REGION}/services/svc-{i}"
        ));
    }
    out
}

fn many_members(resources: &[String], count: usize) -> String {
    format!(
        r#"{}
resource "iaprun_access_member" "m" {{
  count    = {count}
  resource = local.resources[count.index % length(local.resources)]
  member   = "user:m${{count.index}}@example.com"
}}
"#,
        header_with_resources(resources)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_members_under_conflicts_keep_everyone_and_refresh_reads_each_policy_once() {
    let world = World::start().await;
    let resources = ten_resources(&world).await;
    for r in &resources {
        world
            .set_iap_members(r, ACCESSOR, &["user:oob@example.com"])
            .await;
    }
    let count = 200;
    let ws = world.workspace(&newest(), &many_members(&resources, count));
    world.inject_iam_conflicts(0.3);
    ws.run(&["apply", "-auto-approve", "-no-color", "-parallelism=20"])
        .expect_success();
    world.emulator.clear_faults();
    assert!(world.iam_conflicts() > 0, "the fault injected conflicts");
    for (i, r) in resources.iter().enumerate() {
        let got = members(&world.iap_policy(r).await, ACCESSOR, None);
        let mut want: Vec<String> = (i..count)
            .step_by(resources.len())
            .map(|n| format!("user:m{n}@example.com"))
            .collect();
        want.push("user:oob@example.com".into());
        want.sort();
        assert_eq!(got, want, "{r}");
    }

    // Refresh of 200 members over 10 IAP resources: one getIamPolicy per policy.
    world.emulator.clear_requests();
    let plan = ws.plan_detailed_exitcode();
    assert_eq!(plan.code(), 0, "second plan has no changes:\n{plan}");
    let reads = world.iap_policy_reads();
    assert_eq!(reads, 10, "getIamPolicy calls during the refresh");
    assert!(world.mutating_requests().is_empty());
    world.assert_conformant();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_member_is_drift_and_import_by_id_plans_empty() {
    let world = World::start().await;
    world.run_service("svc", json!({})).await;
    let resource = format!("projects/{PROJECT}/iap_web/cloud_run-{REGION}/services/svc");
    let config = format!(
        r#"{}
resource "iaprun_access_member" "m" {{
  resource = "{resource}"
  member   = "user:carol@example.com"
  condition {{
    title      = "office hours"
    expression = "request.time.getHours(\"Europe/Berlin\") >= 9"
  }}
}}
"#,
        provider_header("")
    );
    let ws = world.workspace(&newest(), &config);
    world
        .set_iap_members(&resource, ACCESSOR, &["user:other@example.com"])
        .await;
    ws.apply().expect_success();
    let policy = world.iap_policy(&resource).await;
    assert_eq!(
        members(&policy, ACCESSOR, Some("office hours")),
        vec!["user:carol@example.com"]
    );
    assert_eq!(
        members(&policy, ACCESSOR, None),
        vec!["user:other@example.com"]
    );

    // Removed out of band: the plan adds it back.
    let mut policy = world.iap_policy(&resource).await;
    if let Some(bindings) = policy["bindings"].as_array_mut() {
        bindings.retain(|b| b["condition"]["title"] != "office hours");
    }
    world.set_iap_policy(&resource, policy).await;
    let plan = ws.plan_detailed_exitcode();
    assert_eq!(plan.code(), 2, "{plan}");
    assert!(plan.stdout.contains("will be created"), "{plan}");
    ws.apply().expect_success();
    assert_eq!(
        members(
            &world.iap_policy(&resource).await,
            ACCESSOR,
            Some("office hours")
        ),
        vec!["user:carol@example.com"]
    );

    // Import by "RESOURCE ROLE MEMBER TITLE" (a title with a space), then no changes.
    ws.run(&["state", "rm", "iaprun_access_member.m"])
        .expect_success();
    let id = format!("{resource} {ACCESSOR} user:carol@example.com office hours");
    ws.run(&["import", "-no-color", "iaprun_access_member.m", &id])
        .expect_success();
    let plan = ws.plan_detailed_exitcode();
    assert_eq!(plan.code(), 0, "import then plan:\n{plan}");

    // Destroy removes only this member.
    ws.destroy().expect_success();
    let policy = world.iap_policy(&resource).await;
    assert!(members(&policy, ACCESSOR, Some("office hours")).is_empty());
    assert_eq!(
        members(&policy, ACCESSOR, None),
        vec!["user:other@example.com"]
    );
}

/// The addresses of the resources a run's `binding_conflict` errors are reported on.
fn conflict_addresses(run: &Run) -> Vec<String> {
    let text = format!("{}\n{}", run.stdout, run.stderr);
    let mut out: Vec<String> = text
        .split("Error: ")
        .filter(|block| block.starts_with("binding_conflict"))
        .filter_map(|block| {
            let with = block.split("with ").nth(1)?;
            Some(with.split(',').next()?.trim().to_string())
        })
        .collect();
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binding_conflict_fires_at_plan_for_both_shapes_and_a_near_miss_plans_cleanly() {
    for terraform in terraform_binaries() {
        let what = format!("Terraform {}", terraform.version);
        let world = World::start().await;
        world.run_service("svc-a", json!({})).await;
        world.run_service("svc-b", json!({})).await;
        let number = world.emulator.project_number(PROJECT).expect("number");
        let by_id = format!("projects/{PROJECT}/iap_web/cloud_run-{REGION}/services/svc-a");
        let by_number = format!("projects/{number}/iap_web/cloud_run-{REGION}/services/svc-a");
        let other = format!("projects/{PROJECT}/iap_web/cloud_run-{REGION}/services/svc-b");
        let condition = |title: &str| {
            format!(
                "  condition {{\n    title      = \"{title}\"\n    expression = \"true\"\n  }}\n"
            )
        };
        let header = provider_header("");
        // Two bindings on one (resource, role): one names the project by id, one by number.
        let two_bindings = format!(
            r#"
resource "iaprun_access_binding" "a" {{
  resource = "{by_id}"
  members  = ["user:a@example.com"]
}}
resource "iaprun_access_binding" "b" {{
  resource = "{by_number}"
  members  = ["user:b@example.com"]
}}
"#
        );
        // A member whose (resource, role, condition) a binding manages.
        let member_and_binding = format!(
            r#"
resource "iaprun_access_binding" "c" {{
  resource = "{other}"
  members  = ["user:c@example.com"]
{}}}
resource "iaprun_access_member" "d" {{
  resource = "{other}"
  member   = "user:d@example.com"
{}}}
"#,
            condition("weekdays"),
            condition("weekdays")
        );
        // Near misses: another condition title on the same resource and role.
        let near_misses = format!(
            r#"
resource "iaprun_access_binding" "e" {{
  resource = "{other}"
  members  = ["user:e@example.com"]
{}}}
resource "iaprun_access_member" "f" {{
  resource = "{other}"
  member   = "user:f@example.com"
{}}}
"#,
            condition("weekdays"),
            condition("weekends")
        );
        let ws = world.workspace(
            &terraform,
            &format!("{header}{two_bindings}{member_and_binding}"),
        );
        world.emulator.clear_requests();
        let plan = ws.plan_detailed_exitcode();
        assert_eq!(plan.code(), 1, "{what}: the plan fails:\n{plan}");
        let found = conflict_addresses(&plan);
        let pair = |a: &str, b: &str| found.iter().any(|f| f == a || f == b);
        assert!(
            pair("iaprun_access_binding.a", "iaprun_access_binding.b"),
            "{what}: {found:?}\n{plan}"
        );
        assert!(
            pair("iaprun_access_binding.c", "iaprun_access_member.d"),
            "{what}: {found:?}\n{plan}"
        );
        // The detail names the other resource by its configuration and says which to keep.
        let text = format!("{} {}", plan.stdout, plan.stderr)
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        let named = if found.iter().any(|f| f == "iaprun_access_binding.a") {
            "members = [\"user:b@example.com\"]"
        } else {
            "members = [\"user:a@example.com\"]"
        };
        assert!(
            text.contains("The other one is the iaprun_access_binding with resource = ")
                && text.contains(named),
            "{what}: the other binding is named by its configuration: {plan}"
        );
        assert!(
            text.contains("Keep one iaprun_access_binding for this role and condition"),
            "{what}: {plan}"
        );
        assert!(
            world.mutating_requests().is_empty(),
            "{what}: {:?}",
            world.mutating_requests()
        );

        ws.write("main.tf", &format!("{header}{near_misses}"));
        let plan = ws.plan_detailed_exitcode();
        assert_eq!(
            plan.code(),
            2,
            "{what}: the near miss plans cleanly:\n{plan}"
        );
        assert!(conflict_addresses(&plan).is_empty(), "{what}: {plan}");
        assert!(world.mutating_requests().is_empty(), "{what}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_audiences_follow_the_documented_forms_and_the_backend_id_is_computes() {
    let world = World::start().await;
    world
        .run_service("direct", json!({"ingress": "INGRESS_TRAFFIC_ALL"}))
        .await;
    world.run_service("global-svc", json!({})).await;
    world.run_service("regional-svc", json!({})).await;
    world.neg("global-neg", "global-svc").await;
    world.neg("regional-neg", "regional-svc").await;
    world.backend("web", None, &["global-neg"], json!({})).await;
    world.https_frontend("web").await;
    world
        .backend("web-r", Some(REGION), &["regional-neg"], json!({}))
        .await;
    let config = format!(
        r#"{}
resource "iaprun_service_iap" "direct" {{
  service = "direct"
}}
resource "iaprun_backend_iap" "global" {{
  backend_service = "web"
  ignore_checks   = ["envoy_jwt_header"]
}}
resource "iaprun_backend_iap" "regional" {{
  backend_service = "web-r"
  region          = "{REGION}"
  ignore_checks   = ["envoy_jwt_header", "no_https_frontend"]
}}
output "audiences" {{
  value = {{
    direct   = iaprun_service_iap.direct.jwt_audience
    global   = iaprun_backend_iap.global.jwt_audience
    regional = iaprun_backend_iap.regional.jwt_audience
    global_id   = iaprun_backend_iap.global.backend_service_id
    regional_id = iaprun_backend_iap.regional.backend_service_id
  }}
}}
"#,
        provider_header("")
    );
    let ws = world.workspace(&newest(), &config);
    ws.apply().expect_success();
    let out = ws.run(&["output", "-json", "audiences"]).expect_success();
    let got: Value = out.json();
    let number = world.emulator.project_number(PROJECT).expect("number");
    let global_id = world.backend_json("web", None).await["id"].clone();
    let regional_id = world.backend_json("web-r", Some(REGION)).await["id"].clone();
    assert!(
        global_id.is_string() && regional_id.is_string(),
        "{global_id} {regional_id}"
    );
    assert_ne!(global_id, json!("web"));
    let (g, r) = (
        global_id.as_str().unwrap_or_default(),
        regional_id.as_str().unwrap_or_default(),
    );
    assert_eq!(
        got,
        json!({
            "direct": format!("/projects/{number}/locations/{REGION}/services/direct"),
            "global": format!("/projects/{number}/global/backendServices/{g}"),
            "regional": format!("/projects/{number}/regions/{REGION}/backendServices/{r}"),
            "global_id": g,
            "regional_id": r,
        })
    );
    let plan = ws.plan_detailed_exitcode();
    assert_eq!(plan.code(), 0, "{plan}");
}

fn validate(config: &iaprun::framework::Value) -> iaprun::framework::Diagnostics {
    use iaprun::framework::{ClientCapabilities, Resource};
    use iaprun::resources::access_member::AccessMember;
    use iaprun::resources::Context;
    let model = iaprun::framework::model::from_value(config).expect("fits the model");
    <AccessMember as Resource<Context>>::validate(&model, ClientCapabilities::default())
}

#[test]
fn member_checks_point_at_the_member_attribute() {
    use iaprun::framework::{Resource, Value as TfValue};
    use iaprun::resources::access_member::AccessMember;
    use iaprun::resources::Context;
    let mut config = <AccessMember as Resource<Context>>::schema()
        .block
        .empty_value();
    config.set_attr(
        "resource",
        TfValue::from("projects/p-123456/iap_web/compute/services/x"),
    );
    for (member, check) in [
        ("allUsers", "public_member"),
        ("user:Bob@Example.com", "member_format"),
    ] {
        config.set_attr("member", TfValue::from(member));
        let diags = validate(&config);
        assert_eq!(diags.len(), 1, "{member}: {diags:?}");
        let d = diags.iter().next().expect("one");
        assert!(d.summary.starts_with(check), "{}", d.summary);
        assert_eq!(
            d.path.as_ref().map(|p| p.to_string()).as_deref(),
            Some("member")
        );
    }
    config.set_attr("member", TfValue::from("user:bob@example.com"));
    config.set_attr("role", TfValue::from("viewer"));
    let paths: Vec<String> = validate(&config)
        .iter()
        .filter_map(|d| d.path.as_ref().map(|p| p.to_string()))
        .collect();
    assert_eq!(paths, vec!["role"]);
}
