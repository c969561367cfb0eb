//! iaprun_service_iap end to end: the real terraform CLI against iaprun-emulator.

use serde_json::json;

use crate::support::{newest, terraform_binaries};
use crate::world::{provider_header, World, PROJECT, REGION};

const INVOKER: &str = "roles/run.invoker";

fn config(extra: &str) -> String {
    let header = provider_header("");
    format!(
        r#"{header}
resource "iaprun_service_iap" "hello" {{
  service = "hello"
{extra}
}}
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn apply_drift_and_destroy_on_every_terraform() {
    for terraform in terraform_binaries() {
        let world = World::start().await;
        world.run_service("hello", json!({})).await;
        world.provision_iap_agent().await;
        world
            .set_run_members("hello", INVOKER, &["user:existing@example.com"])
            .await;
        let ws = world.workspace(&terraform, &config(""));
        let v = &terraform.version;

        ws.apply().expect_success();
        assert_eq!(
            world.run_service_json("hello").await["iapEnabled"],
            true,
            "{v}: IAP enabled"
        );
        let members = world.run_members("hello", INVOKER).await;
        assert!(
            members.contains(&world.iap_agent()),
            "{v}: agent granted: {members:?}"
        );
        assert!(
            members.contains(&"user:existing@example.com".to_string()),
            "{v}: {members:?}"
        );
        ws.assert_plan(0, &format!("{v}: second plan"));

        // IAP switched off out of band: drift in plan and plan -refresh-only, apply restores it.
        world.set_run_iap("hello", false).await;
        let out = ws
            .assert_plan(2, &format!("{v}: IAP off out of band"))
            .stdout;
        assert!(
            out.contains("iap_enabled") && out.contains("false -> true"),
            "{v}: {out}"
        );
        let refresh = ws.run(&["plan", "-refresh-only", "-detailed-exitcode", "-no-color"]);
        assert_eq!(
            refresh.code(),
            2,
            "{v}: refresh-only shows the change:\n{refresh}"
        );
        ws.apply().expect_success();
        assert_eq!(
            world.run_service_json("hello").await["iapEnabled"],
            true,
            "{v}: restored"
        );

        // The grant removed out of band: drift, and apply grants it again.
        world
            .set_run_members("hello", INVOKER, &["user:existing@example.com"])
            .await;
        let out = ws
            .assert_plan(2, &format!("{v}: grant removed out of band"))
            .stdout;
        assert!(out.contains("iap_invoker_granted"), "{v}: {out}");
        ws.apply().expect_success();
        assert!(
            world
                .run_members("hello", INVOKER)
                .await
                .contains(&world.iap_agent()),
            "{v}: grant restored"
        );
        ws.assert_plan(0, &format!("{v}: converged"));

        ws.destroy().expect_success();
        assert!(
            world
                .run_service_json("hello")
                .await
                .get("iapEnabled")
                .is_none(),
            "{v}: IAP off after destroy"
        );
        let members = world.run_members("hello", INVOKER).await;
        assert!(
            !members.contains(&world.iap_agent()),
            "{v}: the grant this resource added is gone: {members:?}"
        );
        assert_eq!(
            members,
            vec!["user:existing@example.com".to_string()],
            "{v}: pre-existing member untouched"
        );
        world.assert_conformant();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_grant_that_existed_before_create_survives_destroy() {
    let world = World::start().await;
    world.run_service("hello", json!({})).await;
    world.provision_iap_agent().await;
    world
        .set_run_members("hello", INVOKER, &[&world.iap_agent()])
        .await;
    let ws = world.workspace(&newest(), &config(""));
    ws.apply().expect_success();
    ws.destroy().expect_success();
    assert_eq!(
        world.run_members("hello", INVOKER).await,
        vec![world.iap_agent()]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_service_deleted_out_of_band_leaves_state_with_a_warning() {
    let world = World::start().await;
    world.run_service("hello", json!({})).await;
    let ws = world.workspace(&newest(), &config(""));
    ws.apply().expect_success();
    world.delete_run_service("hello").await;
    let plan = ws.plan_detailed_exitcode();
    assert_eq!(
        plan.code(),
        2,
        "the service is gone: the plan recreates it (another resource may create the service in the same run):\n{plan}"
    );
    let all = plan.output();
    assert!(all.contains("deleted outside Terraform"), "{plan}");
    // Still missing at apply: target_missing stops it before any change.
    world.emulator.clear_requests();
    let apply = ws.apply();
    assert!(!apply.success(), "{apply}");
    assert!(apply.output().contains("target_missing"), "{apply}");
    assert_eq!(world.mutating_requests(), Vec::<String>::new(), "{apply}");
    ws.run(&["apply", "-refresh-only", "-auto-approve", "-no-color"])
        .expect_success();
    let state = ws.show_json();
    assert!(
        state["values"]["root_module"]["resources"]
            .as_array()
            .is_none_or(|r| r.is_empty()),
        "{state}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn import_in_every_id_form_then_plan_has_no_changes() {
    let world = World::start().await;
    world.run_service("hello", json!({})).await;
    world.provision_iap_agent().await;
    world
        .set_run_members("hello", INVOKER, &[&world.iap_agent()])
        .await;
    world.set_run_iap("hello", true).await;
    let ws = world.workspace(&newest(), &config(""));
    for id in [
        format!("projects/{PROJECT}/locations/{REGION}/services/hello"),
        format!("{PROJECT}/{REGION}/hello"),
        format!("{REGION}/hello"),
        "hello".to_string(),
    ] {
        ws.run(&["import", "-no-color", "iaprun_service_iap.hello", &id])
            .expect_success();
        ws.assert_plan(0, &format!("plan after importing {id}"));
        ws.run(&["state", "rm", "iaprun_service_iap.hello"])
            .expect_success();
    }
    let bad = ws.run(&["import", "-no-color", "iaprun_service_iap.hello", "a/b/c/d"]);
    assert!(
        !bad.success() && bad.stderr.contains("Invalid import id"),
        "{bad}"
    );
    // An import claims no grant (docs/resources/service_iap.md, Import): destroy leaves it.
    ws.run(&["import", "-no-color", "iaprun_service_iap.hello", "hello"])
        .expect_success();
    ws.destroy().expect_success();
    assert_ne!(world.run_service_json("hello").await["iapEnabled"], true);
    assert!(world
        .run_members("hello", INVOKER)
        .await
        .contains(&world.iap_agent()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_operation_leaves_state_that_the_next_apply_converges_from() {
    let world = World::start().await;
    world.run_service("hello", json!({})).await;
    let ws = world.workspace(&newest(), &config(""));
    let fault: iaprun::emulator::FaultSpec = serde_json::from_value(json!({
        "kind": "operation_error", "method": "PATCH", "path_regex": "/services/hello$",
        "message": "injected: the revision failed to become ready", "code": 13
    }))
    .expect("fault spec");
    world.emulator.add_fault(fault).expect("fault added");
    let failed = ws.apply();
    assert!(
        !failed.success(),
        "the injected operation error fails the apply:\n{failed}"
    );
    assert!(
        failed.stderr.contains("injected: the revision failed"),
        "Google's message is shown:\n{failed}"
    );
    // The failed create undid the grant it made before IAP failed: nothing exists that the
    // state does not hold (a tainted object's grant would outlive its replacement).
    let state = ws.show_json();
    assert!(
        state["values"]["root_module"]["resources"]
            .as_array()
            .is_none_or(|r| r.is_empty()),
        "{state}"
    );
    assert!(!world
        .run_members("hello", INVOKER)
        .await
        .contains(&world.iap_agent()));
    ws.apply().expect_success();
    assert_eq!(world.run_service_json("hello").await["iapEnabled"], true);
    ws.assert_plan(0, "converged after the failure");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn grant_can_be_turned_off_in_place() {
    let world = World::start().await;
    world.run_service("hello", json!({})).await;
    let ws = world.workspace(&newest(), &config(""));
    ws.apply().expect_success();
    ws.write(
        "main.tf",
        &config("  grant_iap_invoker = false\n  ignore_checks = [\"missing_invoker\"]"),
    );
    let out = ws.assert_plan(2, "grant turned off").stdout;
    assert!(out.contains("update in-place"), "{out}");
    ws.apply().expect_success();
    assert!(
        !world
            .run_members("hello", INVOKER)
            .await
            .contains(&world.iap_agent()),
        "the resource's own grant is revoked"
    );
    ws.assert_plan(0, "converged with grant off");
}

/// When the backend services that could front the service cannot be listed (here compute refuses
/// the NEG list), `double_iap` cannot run: a warning says which check, Google's error and what to
/// do, at apply (the checks wait for it on create, as `checks_after` differs) and at plan, and the
/// change goes ahead. `ignore_checks` turns it off; a disabled Compute Engine API means no load
/// balancer, which is no warning.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn double_iap_that_cannot_run_warns_and_blocks_nothing() {
    let world = World::start().await;
    world.run_service("hello", json!({})).await;
    let config = config(r#"  checks_after = ["1"]"#);
    let ws = world.workspace(&newest(), &config);
    world.deny_neg_list();
    let warned = |run: &crate::support::Run| {
        let shown = run.flat_output();
        shown.contains("Warning: Check double_iap could not run")
            && shown.contains("Required 'compute.networkEndpointGroups.list' permission.")
            && shown.contains(&format!(
                "Cloud Run service projects/{PROJECT}/locations/{REGION}/services/hello"
            ))
            && shown.contains(r#"ignore_checks = ["double_iap"]"#)
    };
    let plan = ws.assert_plan(2, "create");
    assert!(!warned(&plan), "the checks wait for apply:\n{plan}");
    let applied = ws.apply().expect_success();
    assert!(warned(&applied), "{applied}");
    assert_eq!(world.run_service_json("hello").await["iapEnabled"], true);

    let plan = ws.assert_plan(0, "applied");
    assert!(warned(&plan), "{plan}");

    let ignoring = config.replace(
        "checks_after",
        "ignore_checks = [\"double_iap\"]\n  checks_after",
    );
    ws.write("main.tf", &ignoring);
    let plan = ws.assert_plan(2, "ignore_checks changed");
    assert!(
        !plan.flat_output().contains("double_iap could not run"),
        "{plan}"
    );

    world.emulator.clear_faults();
    world.disable_api(PROJECT, "compute.googleapis.com").await;
    ws.write("main.tf", &config);
    let plan = ws.assert_plan(0, "as applied");
    assert!(!plan.flat_output().contains("could not run"), "{plan}");
}

/// When Service Usage refuses the read of the IAP API's state, `iap_api_disabled` cannot run: a
/// warning at plan and at apply says so with Google's error, and the change goes ahead.
/// `ignore_checks` turns it off.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn iap_api_disabled_that_cannot_run_warns_and_blocks_nothing() {
    let world = World::start().await;
    world.run_service("hello", json!({})).await;
    let ws = world.workspace(&newest(), &config(""));
    let denied = "Permission 'serviceusage.services.get' denied on resource.";
    world.deny_reads("/services/iap\\.googleapis\\.com$", denied);
    let warned = |run: &crate::support::Run| {
        let shown = run.flat_output();
        shown.contains("Warning: Check iap_api_disabled could not run")
            && shown.contains(denied)
            && shown.contains(&format!("iap.googleapis.com in project {PROJECT}"))
            && shown.contains(r#"ignore_checks = ["iap_api_disabled"]"#)
    };
    let plan = ws.assert_plan(2, "create");
    assert!(warned(&plan), "{plan}");
    let applied = ws.apply().expect_success();
    assert!(warned(&applied), "{applied}");
    assert_eq!(world.run_service_json("hello").await["iapEnabled"], true);

    ws.write(
        "main.tf",
        &config(r#"  ignore_checks = ["iap_api_disabled"]"#),
    );
    let plan = ws.assert_plan(2, "ignore_checks changed");
    assert!(!plan.flat_output().contains("could not run"), "{plan}");
}
