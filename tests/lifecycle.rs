//! Lifecycle truthfulness (DESIGN.md §5b): replacement on an effective change, grants recorded,
//! never adopted and never leaked, backend grants that re-converge, a failed create that reports
//! what exists, agent propagation, custom endpoints, and the smaller items of issue 16.

use serde_json::{json, Value};

use crate::support::compose::{
    create_neg, create_run_service, rest, rest_resource, terraform_with_terraform_data,
};
use crate::support::{newest, terraform_binaries, Workspace};
use crate::world::{members_of, provider_header, World, PROJECT, REGION, REQUIRED_PROVIDERS};

const INVOKER: &str = "roles/run.invoker";
const ACCESSOR: &str = "roles/iap.httpsResourceAccessor";

/// A provider block without project or region: both come from the environment.
fn env_provider(resources: &str) -> String {
    format!("\n{REQUIRED_PROVIDERS}\nprovider \"iaprun\" {{}}\n\n{resources}\n")
}

/// The members of `role` on a Cloud Run service in any project and region.
async fn run_members_in(world: &World, project: &str, region: &str, name: &str) -> Vec<String> {
    let (status, policy) = world
        .call(
            "GET",
            &format!("/v2/projects/{project}/locations/{region}/services/{name}:getIamPolicy"),
            None,
        )
        .await;
    assert!(status.is_success(), "{policy}");
    members_of(&policy, INVOKER)
}

async fn run_iap_in(world: &World, project: &str, region: &str, name: &str) -> Value {
    let (status, service) = world
        .call(
            "GET",
            &format!("/v2/projects/{project}/locations/{region}/services/{name}"),
            None,
        )
        .await;
    assert!(status.is_success(), "{service}");
    service["iapEnabled"].clone()
}

fn agent_of(world: &World, project: &str) -> String {
    let number = world.emulator.project_number(project).expect("number");
    format!("serviceAccount:service-{number}@gcp-sa-iap.iam.gserviceaccount.com")
}

// ---- replacement on an effective change ---------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_new_provider_project_or_region_replaces_and_the_old_target_is_left_clean() {
    for terraform in terraform_binaries() {
        let world = World::start().await;
        let other = "other-project";
        world
            .run_service_in(PROJECT, REGION, "hello", json!({}))
            .await;
        world
            .run_service_in(other, REGION, "hello", json!({}))
            .await;
        world
            .run_service_in(other, "europe-west1", "hello", json!({}))
            .await;
        let config = env_provider(
            r#"resource "iaprun_service_iap" "hello" {
  service = "hello"
}"#,
        );
        let mut ws = world.workspace(&terraform, &config);
        ws.env("GOOGLE_PROJECT", PROJECT)
            .env("GOOGLE_REGION", REGION);
        let v = &terraform.version;
        ws.apply().expect_success();
        assert_eq!(run_iap_in(&world, PROJECT, REGION, "hello").await, true);

        // Another project through the provider default: a replacement, never an in-place move.
        ws.env("GOOGLE_PROJECT", other);
        let plan = ws
            .assert_plan(2, &format!("{v}: new provider project"))
            .output();
        assert!(plan.contains("must be replaced"), "{v}: {plan}");
        ws.apply().expect_success();
        assert_ne!(
            run_iap_in(&world, PROJECT, REGION, "hello").await,
            true,
            "{v}"
        );
        assert!(
            !run_members_in(&world, PROJECT, REGION, "hello")
                .await
                .contains(&agent_of(&world, PROJECT)),
            "{v}: no grant of ours is left on the old service"
        );
        assert_eq!(run_iap_in(&world, other, REGION, "hello").await, true);
        assert!(run_members_in(&world, other, REGION, "hello")
            .await
            .contains(&agent_of(&world, other)));

        // The same project by its number: nothing to do.
        let number = world.emulator.project_number(other).expect("number");
        ws.env("GOOGLE_PROJECT", &number);
        ws.assert_plan(0, &format!("{v}: project id and number are one project"));

        // Another region through the provider default: a replacement too.
        ws.env("GOOGLE_PROJECT", other)
            .env("GOOGLE_REGION", "europe-west1");
        let plan = ws
            .assert_plan(2, &format!("{v}: new provider region"))
            .output();
        assert!(plan.contains("must be replaced"), "{v}: {plan}");
        ws.apply().expect_success();
        assert_ne!(
            run_iap_in(&world, other, REGION, "hello").await,
            true,
            "{v}"
        );
        assert!(!run_members_in(&world, other, REGION, "hello")
            .await
            .contains(&agent_of(&world, other)));
        assert_eq!(
            run_iap_in(&world, other, "europe-west1", "hello").await,
            true
        );
        ws.destroy().expect_success();
        assert_ne!(
            run_iap_in(&world, other, "europe-west1", "hello").await,
            true
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn removing_an_explicit_role_replaces_the_binding_and_revokes_the_old_role() {
    for terraform in terraform_binaries() {
        let world = World::start().await;
        world.run_service("hello", json!({})).await;
        let header = provider_header("");
        let config = |role: &str| {
            format!(
                r#"{header}
resource "iaprun_service_iap" "hello" {{
  service = "hello"
}}

resource "iaprun_access_binding" "users" {{
  resource = iaprun_service_iap.hello.iap_resource_name
  members  = ["group:eng@example.com"]
{role}
}}
"#
            )
        };
        let ws = world.workspace(
            &terraform,
            &config(r#"  role     = "roles/iap.tunnelResourceAccessor""#),
        );
        let v = &terraform.version;
        ws.apply().expect_success();
        let number = world.emulator.project_number(PROJECT).expect("number");
        let resource = format!("projects/{number}/iap_web/cloud_run-{REGION}/services/hello");
        let policy = world.iap_policy(&resource).await;
        assert_eq!(
            members_of(&policy, "roles/iap.tunnelResourceAccessor"),
            vec!["group:eng@example.com"]
        );

        ws.write("main.tf", &config(""));
        let plan = ws
            .assert_plan(2, &format!("{v}: the default role is another binding"))
            .output();
        assert!(plan.contains("must be replaced"), "{v}: {plan}");
        ws.apply().expect_success();
        let policy = world.iap_policy(&resource).await;
        assert_eq!(
            members_of(&policy, "roles/iap.tunnelResourceAccessor"),
            Vec::<String>::new(),
            "{v}: the old role's access is revoked: {policy}"
        );
        assert_eq!(members_of(&policy, ACCESSOR), vec!["group:eng@example.com"]);
        ws.assert_plan(0, &format!("{v}: converged"));
    }
}

// ---- backend grants re-converge ------------------------------------------------------------------

/// Adds a serverless NEG to a global backend service out of band.
async fn add_neg_to_backend(world: &World, backend: &str, neg: &str) {
    edit_backend_negs(world, backend, |backends| {
        backends.push(json!({"group": format!("projects/{PROJECT}/regions/{REGION}/networkEndpointGroups/{neg}")}));
    })
    .await;
}

/// Takes a serverless NEG off a global backend service out of band.
async fn remove_neg_from_backend(world: &World, backend: &str, neg: &str) {
    let suffix = format!("/networkEndpointGroups/{neg}");
    edit_backend_negs(world, backend, |backends| {
        backends.retain(|b| !b["group"].as_str().is_some_and(|g| g.ends_with(&suffix)));
    })
    .await;
}

/// Edits the `backends` of a global backend service out of band (fingerprint-guarded PATCH).
async fn edit_backend_negs(world: &World, backend: &str, edit: impl FnOnce(&mut Vec<Value>)) {
    let current = world.backend_json(backend, None).await;
    let mut backends = current["backends"].as_array().cloned().unwrap_or_default();
    edit(&mut backends);
    let (status, op) = world
        .call(
            "PATCH",
            &format!("/compute/v1/projects/{PROJECT}/global/backendServices/{backend}"),
            Some(json!({"fingerprint": current["fingerprint"], "backends": backends})),
        )
        .await;
    assert!(status.is_success(), "{op}");
    let link = op["selfLink"].as_str().expect("operation");
    let path = &link[link.find("/compute/v1/").expect("compute path")..];
    let (status, done) = world.call("POST", &format!("{path}/wait"), None).await;
    assert!(status.is_success() && done.get("error").is_none(), "{done}");
}

/// Cloud Run service "app" behind global backend "web" (serverless NEG, HTTPS frontend), and a
/// configuration that puts IAP on the backend.
async fn backend_world(world: &World) -> String {
    world.load_balanced_service("app", "web").await;
    let header = provider_header("");
    format!(
        r#"{header}
resource "iaprun_backend_iap" "web" {{
  backend_service = "web"
  ignore_checks   = ["envoy_jwt_header"]
}}
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn backend_grants_drift_when_removed_and_a_later_neg_is_granted() {
    for terraform in terraform_binaries() {
        let world = World::start().await;
        let config = backend_world(&world).await;
        let ws = world.workspace(&terraform, &config);
        let v = &terraform.version;
        ws.apply().expect_success();
        let agent = world.iap_agent();
        assert!(world.run_members("app", INVOKER).await.contains(&agent));

        // Removed out of band: drift, and the next apply restores it.
        world.set_run_members("app", INVOKER, &[]).await;
        let plan = ws
            .assert_plan(2, &format!("{v}: the removed grant is drift"))
            .output();
        assert!(plan.contains("iap_invoker_granted"), "{v}: {plan}");
        ws.apply().expect_success();
        assert!(
            world.run_members("app", INVOKER).await.contains(&agent),
            "{v}"
        );
        ws.assert_plan(0, &format!("{v}: converged"));

        // A NEG added later behind the backend: its service is granted on the next apply.
        world.run_service("late", json!({})).await;
        world.neg("late-neg", "late").await;
        add_neg_to_backend(&world, "web", "late-neg").await;
        ws.assert_plan(2, &format!("{v}: a new service behind the backend"));
        ws.apply().expect_success();
        assert!(
            world.run_members("late", INVOKER).await.contains(&agent),
            "{v}"
        );
        ws.assert_plan(0, &format!("{v}: converged"));
        let state = ws.show_json();
        let grants =
            state["values"]["root_module"]["resources"][0]["values"]["invoker_grants"].clone();
        assert_eq!(
            grants,
            json!([
                format!("projects/{PROJECT}/locations/{REGION}/services/app"),
                format!("projects/{PROJECT}/locations/{REGION}/services/late"),
            ]),
            "{v}: what it added is recorded in state"
        );
        ws.destroy().expect_success();
        assert!(!world.run_members("app", INVOKER).await.contains(&agent));
        assert!(!world.run_members("late", INVOKER).await.contains(&agent));
    }
}

/// A NEG taken off the backend: the grant this resource added on its service is drift, and the
/// next apply releases it (the other service behind the backend keeps its grant).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_grant_on_a_service_taken_off_the_backend_is_released() {
    let world = World::start().await;
    let config = backend_world(&world).await;
    world.run_service("late", json!({})).await;
    world.neg("late-neg", "late").await;
    add_neg_to_backend(&world, "web", "late-neg").await;
    let ws = world.workspace(&newest(), &config);
    ws.apply().expect_success();
    let agent = world.iap_agent();
    assert!(world.run_members("app", INVOKER).await.contains(&agent));
    assert!(world.run_members("late", INVOKER).await.contains(&agent));

    remove_neg_from_backend(&world, "web", "app-neg").await;
    ws.assert_plan(2, "a grant on a service no longer behind the backend");
    ws.apply().expect_success();
    assert!(
        !world.run_members("app", INVOKER).await.contains(&agent),
        "the grant on the service taken off the backend is released"
    );
    assert!(world.run_members("late", INVOKER).await.contains(&agent));
    ws.assert_plan(0, "converged");
    let state = ws.show_json();
    let grants = state["values"]["root_module"]["resources"][0]["values"]["invoker_grants"].clone();
    assert_eq!(
        grants,
        json!([format!(
            "projects/{PROJECT}/locations/{REGION}/services/late"
        )])
    );
}

/// The Cloud Run service behind the backend deleted out of band (its NEG stays): its grant went
/// with it, so the record forgets it and the plan stays empty (`neg_mismatch` warns).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_deleted_service_behind_the_backend_plans_no_grant_release() {
    let world = World::start().await;
    let config = backend_world(&world).await;
    let ws = world.workspace(&newest(), &config);
    ws.apply().expect_success();
    world.delete_run_service("app").await;
    let plan = ws.assert_plan(0, "nothing to release on a deleted service");
    assert!(plan.output().contains("neg_mismatch"), "{}", plan.output());
    ws.apply().expect_success();
    let state = ws.show_json();
    let values = &state["values"]["root_module"]["resources"][0]["values"];
    assert_eq!(values["invoker_grants"], json!([]), "the refresh forgot it");
    ws.destroy().expect_success();
}

// ---- never claim, never leak ---------------------------------------------------------------------

/// Google's own sample: IAP on the service and the agent's grant made by
/// google_cloud_run_service_iam_binding. Then iaprun's resources come and go: the grant stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_grant_that_existed_before_create_survives_destroy_for_both_types() {
    let world = World::start().await;
    world
        .run_service("direct", json!({"ingress": "INGRESS_TRAFFIC_ALL"}))
        .await;
    world.load_balanced_service("app", "web").await;
    world.provision_iap_agent().await;
    let agent = world.iap_agent();
    world.set_run_members("direct", INVOKER, &[&agent]).await;
    world.set_run_members("app", INVOKER, &[&agent]).await;
    world.set_run_iap("direct", true).await;
    let header = provider_header("");
    let config = format!(
        r#"{header}
resource "iaprun_service_iap" "direct" {{
  service = "direct"
}}

resource "iaprun_backend_iap" "web" {{
  backend_service = "web"
  ignore_checks   = ["envoy_jwt_header"]
}}
"#
    );
    let ws = world.workspace(&newest(), &config);
    ws.apply().expect_success();
    let state = ws.show_json();
    for r in state["values"]["root_module"]["resources"]
        .as_array()
        .expect("resources")
    {
        assert_eq!(
            r["values"]["invoker_grants"],
            json!([]),
            "nothing claimed: {r}"
        );
    }
    ws.destroy().expect_success();
    assert_eq!(
        world.run_members("direct", INVOKER).await,
        vec![agent.clone()]
    );
    assert_eq!(world.run_members("app", INVOKER).await, vec![agent]);
}

/// Backend "web" with IAP applied from the configuration (its grant added), then another load
/// balancer, "admin", with IAP on in front of the same service. Returns the workspace, its
/// configuration and the IAP agent's member.
async fn two_iap_backends(world: &World) -> (Workspace, String, String) {
    let config = backend_world(world).await;
    let ws = world.workspace(&newest(), &config);
    ws.apply().expect_success();
    let agent = world.iap_agent();
    assert!(world.run_members("app", INVOKER).await.contains(&agent));
    world
        .backend(
            "admin",
            None,
            &["app-neg"],
            json!({"iap": {"enabled": true}}),
        )
        .await;
    (ws, config, agent)
}

/// Two IAP-enabled backends in front of one service: the one this resource manages goes, the
/// other still needs the agent's grant, which stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_grant_still_needed_by_another_iap_path_survives_destroy() {
    let world = World::start().await;
    let (ws, _, agent) = two_iap_backends(&world).await;
    let destroy = ws.destroy().expect_success();
    assert!(
        world.run_members("app", INVOKER).await.contains(&agent),
        "still needed by backend admin: {destroy}"
    );
}

/// The same two backends, and `grant_iap_invoker` turned off on the managed one: the other still
/// routes to the service with IAP on, so the grant stays (and is no longer this resource's).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn turning_the_grant_off_keeps_it_while_another_iap_path_needs_it() {
    let world = World::start().await;
    let (ws, config, agent) = two_iap_backends(&world).await;
    let off = config.replace(
        "  backend_service = \"web\"\n",
        "  backend_service = \"web\"\n  grant_iap_invoker = false\n",
    );
    assert_ne!(off, config);
    ws.write("main.tf", &off);
    ws.apply().expect_success();
    assert!(
        world.run_members("app", INVOKER).await.contains(&agent),
        "still needed by backend admin"
    );
    let state = ws.show_json();
    let values = &state["values"]["root_module"]["resources"][0]["values"];
    assert_eq!(values["invoker_grants"], json!([]), "no longer claimed");
    ws.assert_plan(0, "converged with grant off");
}

/// Direct IAP on Cloud Run service "hello", the agent's grant on.
fn direct_config() -> String {
    let header = provider_header("");
    format!(
        r#"{header}
resource "iaprun_service_iap" "hello" {{
  service = "hello"
}}
"#
    )
}

/// Service "hello" with direct IAP applied from the configuration (the agent's grant added).
/// Returns the workspace, its configuration and the IAP agent's member.
async fn direct_grant(world: &World) -> (Workspace, String, String) {
    world.run_service("hello", json!({})).await;
    let config = direct_config();
    let ws = world.workspace(&newest(), &config);
    ws.apply().expect_success();
    let agent = world.iap_agent();
    assert!(world.run_members("hello", INVOKER).await.contains(&agent));
    (ws, config, agent)
}

/// The configuration of [`direct_grant`] with `grant_iap_invoker = false`.
fn grant_off(config: &str) -> String {
    let off = config.replace(
        "  service = \"hello\"\n",
        "  service = \"hello\"\n  grant_iap_invoker = false\n",
    );
    assert_ne!(off, config);
    off
}

/// Destroys the workspace of [`direct_grant`]: the agent's grant on "hello" goes with it.
async fn assert_destroy_releases(world: &World, ws: &Workspace, agent: &str) {
    ws.destroy().expect_success();
    assert!(
        !world
            .run_members("hello", INVOKER)
            .await
            .iter()
            .any(|m| m == agent),
        "destroy released the grant it added"
    );
}

/// Direct IAP needs no Compute Engine API: in a project where it is disabled no load balancer can
/// route to the service, so turning the grant off, and destroy, remove the grant this resource
/// added (compute's 403 SERVICE_DISABLED is not a lookup failure that keeps it).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn grants_are_released_in_a_project_with_compute_disabled() {
    let world = World::start().await;
    let (ws, config, agent) = direct_grant(&world).await;
    world.disable_api(PROJECT, "compute.googleapis.com").await;

    ws.write("main.tf", &grant_off(&config));
    ws.apply().expect_success();
    assert!(
        !world.run_members("hello", INVOKER).await.contains(&agent),
        "grant turned off: released"
    );

    ws.write("main.tf", &config);
    ws.apply().expect_success();
    assert!(world.run_members("hello", INVOKER).await.contains(&agent));
    assert_destroy_releases(&world, &ws, &agent).await;
}

/// Turning the grant off while the lookup of other IAP paths fails (here compute refuses the NEG
/// list): the grant stays, and so does its record, and a warning says so, with Google's error.
/// The next plan is not empty: once the lookup works again, that apply releases the grant.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_grant_kept_on_a_failed_lookup_stays_recorded_and_the_next_apply_releases_it() {
    let world = World::start().await;
    let (ws, config, agent) = direct_grant(&world).await;
    world.deny_neg_list();
    ws.write("main.tf", &grant_off(&config));
    let applied = ws.apply().expect_success();
    world
        .assert_grant_kept_on_apply(&ws, &applied, "hello")
        .await;
    world.emulator.clear_faults();
    ws.assert_plan(2, "a release left for the next apply");
    let applied = ws.apply().expect_success();
    assert!(
        !applied.flat_output().contains("left in place"),
        "{applied}"
    );
    assert!(
        !world.run_members("hello", INVOKER).await.contains(&agent),
        "released"
    );
    ws.assert_plan(0, "released: nothing left to apply");
}

/// A destroy whose lookup of the other IAP paths fails keeps the grant, and its record goes with
/// the resource: a warning names the grant, Google's error and the command that removes it. Both
/// Terraform versions show a destroy's warnings.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_grant_kept_on_a_failed_lookup_at_destroy_is_a_warning_saying_how_to_remove_it() {
    for terraform in terraform_binaries() {
        let v = terraform.minor_version();
        let world = World::start().await;
        world.run_service("hello", json!({})).await;
        let ws = world.workspace(&terraform, &direct_config());
        ws.apply().expect_success();
        let agent = world.iap_agent();
        world.deny_neg_list();
        let destroyed = ws.destroy().expect_success();
        assert!(
            world.run_members("hello", INVOKER).await.contains(&agent),
            "{v:?}: unknown whether another path needs it: kept"
        );
        let shown = destroyed.flat_output();
        for said in [
            "Warning: Invoker grant left in place".to_string(),
            format!("on Cloud Run service projects/{PROJECT}/locations/{REGION}/services/hello"),
            "Required 'compute.networkEndpointGroups.list' permission.".to_string(),
            format!("gcloud run services remove-iam-policy-binding hello --project={PROJECT} --region={REGION} --member={agent} --role={INVOKER}"),
        ] {
            assert!(shown.contains(&said), "{v:?}: {said:?} in\n{destroyed}");
        }
        assert!(
            ws.show_json()["values"].is_null(),
            "{v:?}: the resource is gone"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rename_leaves_no_grant_and_no_iap_on_the_old_target() {
    let world = World::start().await;
    // Direct IAP moves from "one" to "two"; the load balancer IAP from web-a ("three") to web-b ("four").
    for service in ["one", "two", "three", "four"] {
        world.run_service(service, json!({})).await;
    }
    world.neg("three-neg", "three").await;
    world.neg("four-neg", "four").await;
    world
        .backend("web-a", None, &["three-neg"], json!({}))
        .await;
    world.backend("web-b", None, &["four-neg"], json!({})).await;
    world.https_frontend("web-a").await;
    world.https_frontend("web-b").await;
    let header = provider_header("");
    let config = |service: &str, backend: &str| {
        format!(
            r#"{header}
resource "iaprun_service_iap" "s" {{
  service = "{service}"
}}

resource "iaprun_backend_iap" "b" {{
  backend_service = "{backend}"
  ignore_checks   = ["envoy_jwt_header"]
}}
"#
        )
    };
    let ws = world.workspace(&newest(), &config("one", "web-a"));
    ws.apply().expect_success();
    let agent = world.iap_agent();
    assert!(world.run_members("one", INVOKER).await.contains(&agent));
    assert!(world.run_members("three", INVOKER).await.contains(&agent));
    ws.write("main.tf", &config("two", "web-b"));
    ws.apply().expect_success();
    assert_ne!(world.run_service_json("one").await["iapEnabled"], true);
    assert!(!world.run_members("one", INVOKER).await.contains(&agent));
    assert!(!world.run_members("three", INVOKER).await.contains(&agent));
    assert_ne!(
        world.backend_json("web-a", None).await["iap"]["enabled"],
        true
    );
    assert!(world.run_members("two", INVOKER).await.contains(&agent));
    assert!(world.run_members("four", INVOKER).await.contains(&agent));
    ws.destroy().expect_success();
    assert!(!world.run_members("two", INVOKER).await.contains(&agent));
    assert!(!world.run_members("four", INVOKER).await.contains(&agent));
}

/// The grant fails after IAP went on (as a kill there would leave it): the state holds the object
/// as it is, the next apply converges, destroy cleans up.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_create_cut_off_after_iap_on_reports_it_and_the_next_apply_converges() {
    for terraform in terraform_binaries() {
        let world = World::start().await;
        world.run_service("hello", json!({})).await;
        let header = provider_header("");
        let config = format!(
            r#"{header}
resource "iaprun_service_iap" "hello" {{
  service = "hello"
}}
"#
        );
        let ws = world.workspace(&terraform, &config);
        let v = &terraform.version;
        world
            .emulator
            .add_fault(
                serde_json::from_value(json!({"kind": "status", "status": 400, "method": "POST",
                    "path_regex": "/services/hello:setIamPolicy$", "message": "Injected failure."}))
                .expect("fault"),
            )
            .expect("fault");
        let apply = ws.apply();
        assert!(!apply.success(), "{v}: {apply}");
        assert_eq!(world.run_service_json("hello").await["iapEnabled"], true);
        let state = ws.show_json();
        let resource = &state["values"]["root_module"]["resources"][0];
        assert_eq!(
            resource["values"]["iap_enabled"], true,
            "{v}: the state knows: {state}"
        );
        ws.apply().expect_success();
        ws.assert_plan(0, &format!("{v}: converged"));
        assert!(world
            .run_members("hello", INVOKER)
            .await
            .contains(&world.iap_agent()));
        ws.destroy().expect_success();
        assert_ne!(world.run_service_json("hello").await["iapEnabled"], true);
        assert!(!world
            .run_members("hello", INVOKER)
            .await
            .contains(&world.iap_agent()));
    }
}

// ---- propagation ---------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn grants_wait_out_agent_propagation_within_the_timeout() {
    for (timeout, succeeds) in [
        ("", true),
        ("  timeouts {\n    create = \"4s\"\n  }", false),
    ] {
        let world = World::start().await;
        world.run_service("hello", json!({})).await;
        world
            .emulator
            .add_fault(
                serde_json::from_value(json!({"kind": "agent_propagation", "delay_ms": 10000,
                    "path_regex": ":generateServiceIdentity$"}))
                .expect("fault"),
            )
            .expect("fault");
        let header = provider_header("");
        let config = format!(
            r#"{header}
resource "iaprun_service_iap" "hello" {{
  service = "hello"
{timeout}
}}
"#
        );
        let ws = world.workspace(&newest(), &config);
        let apply = ws.apply();
        let agent = world.iap_agent();
        let rejected = world
            .emulator
            .requests()
            .iter()
            .filter(|r| r.path.ends_with(":setIamPolicy") && r.status == 400)
            .count();
        assert!(rejected > 0, "the fault fired: {apply}");
        if succeeds {
            assert!(apply.success(), "{apply}");
            assert!(world.run_members("hello", INVOKER).await.contains(&agent));
        } else {
            assert!(!apply.success(), "{apply}");
            let email = agent.trim_start_matches("serviceAccount:");
            assert!(
                apply.output().replace('\n', " ").contains(email),
                "the error names the agent: {apply}"
            );
        }
    }
}

// ---- custom endpoints ----------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_google_providers_custom_endpoint_variables_reach_the_apis() {
    for terraform in terraform_binaries() {
        let world = World::start().await;
        world
            .run_service("hello", json!({"ingress": "INGRESS_TRAFFIC_ALL"}))
            .await;
        world.load_balanced_service("app", "web").await;
        let header = provider_header("");
        let config = format!(
            r#"{header}
resource "iaprun_service_iap" "hello" {{
  service = "hello"
}}

resource "iaprun_backend_iap" "web" {{
  backend_service = "web"
  ignore_checks   = ["envoy_jwt_header"]
}}

resource "iaprun_access_binding" "users" {{
  resource = iaprun_service_iap.hello.iap_resource_name
  members  = ["group:eng@example.com"]
}}
"#
        );
        let base = world.emulator.base_url();
        let base = base.trim_end_matches('/');
        let mut ws = Workspace::new(&terraform, &config);
        ws.env("GOOGLE_OAUTH_ACCESS_TOKEN", "custom-endpoint-token")
            .env(
                "GOOGLE_CLOUD_RUN_V2_CUSTOM_ENDPOINT",
                &format!("{base}/v2/"),
            )
            .env("GOOGLE_IAP_CUSTOM_ENDPOINT", &format!("{base}/v1/"))
            .env(
                "GOOGLE_COMPUTE_CUSTOM_ENDPOINT",
                &format!("{base}/compute/v1/"),
            )
            .env(
                "GOOGLE_SERVICE_USAGE_CUSTOM_ENDPOINT",
                &format!("{base}/v1/"),
            )
            .env(
                "GOOGLE_RESOURCE_MANAGER_CUSTOM_ENDPOINT",
                &format!("{base}/v1/"),
            );
        ws.init();
        let v = &terraform.version;
        ws.apply().expect_success();
        ws.assert_plan(0, &format!("{v}: read back through the same endpoints"));
        assert_eq!(world.run_service_json("hello").await["iapEnabled"], true);
        let doubled: Vec<String> = world
            .emulator
            .requests()
            .into_iter()
            .map(|r| r.path)
            .filter(|p| p.contains("/v2/v2/") || p.contains("/v1/v1/"))
            .collect();
        assert_eq!(doubled, Vec::<String>::new(), "{v}");
        ws.destroy().expect_success();
    }
}

// ---- smaller items ------------------------------------------------------------------------------

/// A live IAP-enabled backend in front: a warning at plan naming it (the run may still remove it;
/// the apply waits for that, see `a_live_layer_nothing_removes_stops_the_apply_before_any_change`).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn double_iap_is_seen_from_the_service_when_a_live_backend_fronts_it() {
    let world = World::start().await;
    world.run_service("hello", json!({})).await;
    world.neg("hello-neg", "hello").await;
    world
        .backend(
            "web",
            None,
            &["hello-neg"],
            json!({"iap": {"enabled": true}}),
        )
        .await;
    let config = direct_config();
    let ws = world.workspace(&newest(), &config);
    world.emulator.clear_requests();
    let plan = ws.plan_detailed_exitcode();
    assert_eq!(plan.code(), 2, "{plan}");
    let shown = plan.output();
    assert!(shown.contains("Warning: double_iap"), "{plan}");
    assert!(
        shown.contains("global/web in front of it"),
        "names the backend: {plan}"
    );
    assert_eq!(world.mutating_requests(), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn missing_invoker_accepts_a_project_level_grant_to_the_agent() {
    let world = World::start().await;
    world.run_service("hello", json!({})).await;
    world.provision_iap_agent().await;
    let header = provider_header("");
    let config = format!(
        r#"{header}
resource "iaprun_service_iap" "hello" {{
  service           = "hello"
  grant_iap_invoker = false
}}
"#
    );
    let ws = world.workspace(&newest(), &config);
    let plan = ws.plan_detailed_exitcode();
    assert_eq!(plan.code(), 1, "no grant anywhere: {plan}");
    assert!(plan.stderr.contains("missing_invoker"), "{plan}");
    // Seed 001: the agent gets Cloud Run Invoker on the project's IAM page.
    let (status, policy) = world
        .call(
            "POST",
            &format!("/v1/projects/{PROJECT}:getIamPolicy"),
            Some(json!({})),
        )
        .await;
    assert!(status.is_success(), "{policy}");
    let (status, written) = world
        .call(
            "POST",
            &format!("/v1/projects/{PROJECT}:setIamPolicy"),
            Some(json!({"policy": {"etag": policy["etag"], "bindings": [{"role": INVOKER, "members": [world.iap_agent()]}]}})),
        )
        .await;
    assert!(status.is_success(), "{written}");
    let plan = ws.plan_detailed_exitcode();
    assert_eq!(plan.code(), 2, "a working setup: {plan}");
    assert!(!plan.stderr.contains("missing_invoker"), "{plan}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_secret_digest_is_sensitive() {
    let world = World::start().await;
    let ws = world.workspace(&newest(), &provider_header(""));
    let schema = ws.providers_schema_json();
    let attribute = &schema["provider_schemas"]["registry.terraform.io/iaprun/iaprun"]
        ["resource_schemas"]["iaprun_backend_iap"]["block"]["attributes"]
        ["oauth2_client_secret_sha256"];
    assert_eq!(attribute["sensitive"], true, "{attribute}");
}

/// Two bindings on one policy in one apply, one of them changing only `ignore_checks`: the other's
/// write moves the policy's etag, which must not make the result inconsistent with the plan.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_etag_moved_by_a_sibling_binding_is_no_inconsistent_result() {
    for terraform in terraform_binaries() {
        let world = World::start().await;
        world.run_service("hello", json!({})).await;
        let header = provider_header("");
        let config = |members: &str, ignore: &str| {
            format!(
                r#"{header}
resource "iaprun_service_iap" "hello" {{
  service = "hello"
}}

resource "iaprun_access_binding" "a" {{
  resource = iaprun_service_iap.hello.iap_resource_name
  members  = [{members}]
}}

resource "iaprun_access_binding" "b" {{
  resource      = iaprun_service_iap.hello.iap_resource_name
  role          = "roles/iap.tunnelResourceAccessor"
  members       = ["group:ops@example.com"]
  ignore_checks = [{ignore}]
}}
"#
            )
        };
        let ws = world.workspace(&terraform, &config(r#""group:eng@example.com""#, ""));
        let v = &terraform.version;
        ws.apply().expect_success();
        ws.write(
            "main.tf",
            &config(
                r#""group:eng@example.com", "user:new@example.com""#,
                r#""managed_oauth_external""#,
            ),
        );
        let apply = ws.apply();
        assert!(apply.success(), "{v}: {apply}");
        assert!(!apply.stderr.contains("inconsistent"), "{v}: {apply}");
        ws.assert_plan(0, &format!("{v}: converged"));
    }
}

/// A NEG added behind the backend in the same run, before the IAP resource is applied: the plan
/// left `cloud_run_services` to apply, so Terraform's final plan agrees with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_neg_added_in_the_same_run_does_not_break_the_final_plan() {
    for terraform in terraform_with_terraform_data() {
        let world = World::start().await;
        world.load_balanced_service("app", "web").await;
        let base = world.emulator.base_url();
        let header = provider_header("");
        let adds = rest_resource(
            "second",
            &base,
            &[
                create_run_service(PROJECT, REGION, "second", json!({})),
                create_neg(PROJECT, REGION, "second-neg", "second"),
                rest(
                    "PATCH",
                    format!("/compute/v1/projects/{PROJECT}/global/backendServices/web"),
                    Some(json!({"backends": [
                        {"group": format!("projects/{PROJECT}/regions/{REGION}/networkEndpointGroups/app-neg")},
                        {"group": format!("projects/{PROJECT}/regions/{REGION}/networkEndpointGroups/second-neg")}
                    ]})),
                ),
            ],
            &[],
            "",
        );
        let config = format!(
            r#"{header}
{adds}
resource "iaprun_backend_iap" "web" {{
  backend_service = "web"
  ignore_checks   = ["envoy_jwt_header"]
  depends_on      = [terraform_data.second]
}}
"#
        );
        let ws = world.workspace(&terraform, &config);
        let v = &terraform.version;
        ws.apply().expect_success();
        let state = ws.show_json();
        let web = state["values"]["root_module"]["resources"]
            .as_array()
            .expect("resources")
            .iter()
            .find(|r| r["type"] == "iaprun_backend_iap")
            .cloned()
            .expect("backend resource");
        assert_eq!(
            web["values"]["cloud_run_services"],
            json!([format!("{REGION}/app"), format!("{REGION}/second")]),
            "{v}"
        );
        assert!(world
            .run_members("second", INVOKER)
            .await
            .contains(&world.iap_agent()));
        ws.assert_plan(0, &format!("{v}: converged"));
    }
}

// ---- moving between direct and load-balancer IAP in one run --------------------------------------

/// Cloud Run service "app" behind serverless NEG "app-neg" and backend service "web" (Envoy, with
/// an HTTPS frontend); IAP on neither.
async fn move_world() -> World {
    let world = World::start().await;
    world.load_balanced_service("app", "web").await;
    world
}

/// Direct IAP on "app", with an access binding on it.
fn direct_layer() -> &'static str {
    r#"
resource "iaprun_service_iap" "app" {
  service = "app"
}

resource "iaprun_access_binding" "direct" {
  resource = iaprun_service_iap.app.iap_resource_name
  members  = ["group:eng@example.com"]
}
"#
}

/// Load-balancer IAP on "web" in front of "app", with an access binding on it.
fn lb_layer() -> &'static str {
    r#"
resource "iaprun_backend_iap" "web" {
  backend_service = "web"
  ignore_checks   = ["envoy_jwt_header"]
}

resource "iaprun_access_binding" "lb" {
  resource = iaprun_backend_iap.web.iap_resource_name
  members  = ["group:eng@example.com"]
}
"#
}

/// The position in the request log of the first request `method path` ending with `suffix`.
fn position(world: &World, method: &str, suffix: &str) -> Option<usize> {
    world
        .emulator
        .requests()
        .iter()
        .position(|r| r.method == method && r.path.ends_with(suffix))
}

/// IAP as it is on "app" (direct) and on "web" (load balancer).
async fn layers(world: &World) -> (bool, bool) {
    let direct = world.run_service_json("app").await["iapEnabled"] == true;
    let lb = world.backend_json("web", None).await["iap"]["enabled"] == true;
    (direct, lb)
}

/// The `invoker_grants` a resource in the state records.
fn recorded_grants(ws: &Workspace, address: &str) -> Value {
    let state = ws.show_json();
    let resources = state["values"]["root_module"]["resources"].clone();
    resources
        .as_array()
        .into_iter()
        .flatten()
        .find(|r| r["address"] == address)
        .map(|r| r["values"]["invoker_grants"].clone())
        .unwrap_or(Value::Null)
}

/// One edit swaps iaprun_service_iap for iaprun_backend_iap (and the binding with it), then back.
/// Terraform plans and applies the removal of one layer and the creation of the other in no set
/// order: the plan has no double_iap error, the apply turns the old layer off before the new one
/// on (the request log proves it), the new resource records the agent's grant it adds, and the
/// next plan is empty. On Terraform 1.0.3 too, which never shows the provider a planned destroy.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn moving_between_direct_and_load_balancer_iap_takes_one_run_each_way() {
    for terraform in terraform_binaries() {
        let world = move_world().await;
        let header = provider_header("");
        let ws = world.workspace(&terraform, &format!("{header}{}", direct_layer()));
        let v = &terraform.version;
        ws.apply().expect_success();
        assert_eq!(layers(&world).await, (true, false), "{v}");
        let app = format!("projects/{PROJECT}/locations/{REGION}/services/app");

        let steps = [
            (lb_layer(), "iaprun_backend_iap.web", (false, true)),
            (direct_layer(), "iaprun_service_iap.app", (true, false)),
        ];
        for (layer, address, expected) in steps {
            ws.write("main.tf", &format!("{header}{layer}"));
            let plan = ws
                .assert_plan(2, &format!("{v}: {address} plans without an error"))
                .output();
            assert!(!plan.contains("Error"), "{v}: {plan}");
            world.emulator.clear_requests();
            let apply = ws.apply().expect_success();
            assert_eq!(layers(&world).await, expected, "{v}: {apply}");
            let web = "/global/backendServices/web";
            let (off, on) = if expected.1 {
                (
                    position(&world, "PATCH", "/services/app"),
                    position(&world, "PATCH", web),
                )
            } else {
                (
                    position(&world, "PATCH", web),
                    position(&world, "PATCH", "/services/app"),
                )
            };
            let (off, on) = (off.expect("old layer off"), on.expect("new layer on"));
            assert!(off < on, "{v}: the old layer went off first: {apply}");
            assert!(
                world
                    .run_members("app", INVOKER)
                    .await
                    .contains(&world.iap_agent()),
                "{v}: the agent may invoke app"
            );
            assert_eq!(
                recorded_grants(&ws, address),
                json!([app]),
                "{v}: {address}"
            );
            ws.assert_plan(0, &format!("{v}: {address} converged in one run"));
        }
        let number = world.emulator.project_number(PROJECT).expect("number");
        let lb_policy = world
            .iap_policy(&format!("projects/{number}/iap_web/compute/services/web"))
            .await;
        assert_eq!(
            members_of(&lb_policy, ACCESSOR),
            Vec::<String>::new(),
            "{v}"
        );
        world.assert_conformant();
    }
}

/// A genuine double_iap still fails the plan, whichever of the two resources Terraform plans first:
/// the configuration keeps one layer and adds the other. Nothing changes, at plan nor at apply.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_layer_the_run_keeps_and_one_it_adds_fail_the_plan() {
    for terraform in terraform_binaries() {
        for (kept, added) in [(direct_layer(), lb_layer()), (lb_layer(), direct_layer())] {
            let world = move_world().await;
            let header = provider_header("");
            let ws = world.workspace(&terraform, &format!("{header}{kept}"));
            let v = &terraform.version;
            ws.apply().expect_success();
            let before = layers(&world).await;
            ws.write("main.tf", &format!("{header}{kept}{added}"));
            world.emulator.clear_requests();
            let plan = ws.plan_detailed_exitcode();
            assert_eq!(plan.code(), 1, "{v}: {plan}");
            assert!(plan.stderr.contains("Error: double_iap"), "{v}: {plan}");
            let apply = ws.apply();
            assert!(!apply.success(), "{v}: {apply}");
            assert!(apply.stderr.contains("double_iap"), "{v}: {apply}");
            assert_eq!(world.mutating_requests(), Vec::<String>::new(), "{v}");
            assert_eq!(layers(&world).await, before, "{v}");
        }
    }
}

/// A live layer that nothing in the configuration manages: the plan cannot know the run does not
/// remove it (the removal may be planned later, or never shown to the provider), so it warns; the
/// apply waits for it up to the resource's timeout, then stops on double_iap with nothing changed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_live_layer_nothing_removes_stops_the_apply_before_any_change() {
    for terraform in terraform_binaries() {
        let world = move_world().await;
        world.set_run_iap("app", true).await;
        world.neg("other-neg", "other").await;
        world.run_service("other", json!({})).await;
        world
            .backend(
                "front",
                None,
                &["other-neg"],
                json!({"iap": {"enabled": true}}),
            )
            .await;
        world.https_frontend("front").await;
        let header = provider_header("");
        let config = format!(
            r#"{header}
resource "iaprun_backend_iap" "web" {{
  backend_service = "web"
  ignore_checks   = ["envoy_jwt_header"]
  timeouts {{
    create = "3s"
  }}
}}

resource "iaprun_service_iap" "other" {{
  service = "other"
  timeouts {{
    create = "3s"
  }}
}}
"#
        );
        let ws = world.workspace(&terraform, &config);
        let v = &terraform.version;
        let plan = ws
            .assert_plan(2, &format!("{v}: a warning, not an error"))
            .output();
        assert!(plan.contains("Warning: double_iap"), "{v}: {plan}");
        world.emulator.clear_requests();
        let apply = ws.apply();
        assert!(!apply.success(), "{v}: {apply}");
        for stuck in ["us-central1/app has IAP enabled directly", "global/front"] {
            assert!(apply.stderr.contains(stuck), "{v}: {apply}");
        }
        assert!(apply.stderr.contains("waited 3s"), "{v}: {apply}");
        assert_eq!(world.mutating_requests(), Vec::<String>::new(), "{v}");
        assert_eq!(layers(&world).await, (true, false), "{v}");
        assert_ne!(
            world.run_service_json("other").await["iapEnabled"],
            true,
            "{v}"
        );
    }
}
