//! One configuration creates the Cloud Run services and the load balancer (terraform_data +
//! curl, standing in for the google provider) and puts IAP on them: one plan, one apply, an empty
//! re-plan; checks that wait for apply; destroy while a finding holds; the one-run fix path.

use std::path::Path;

use serde_json::{json, Value};

use crate::support::compose::{
    create_backend, create_https_frontend, create_neg, create_run_service, delete_load_balancer,
    delete_run_service, provider_mutations, rest, rest_resource, services_behind_load_balancer,
    terraform_with_terraform_data,
};
use crate::support::{terraform_binaries, Workspace};
use crate::world::{members_of, provider_header, World, PROJECT, REGION};

const INVOKER: &str = "roles/run.invoker";
const ACCESSOR: &str = "roles/iap.httpsResourceAccessor";

/// `terraform_data` resources that create (and on destroy delete) two Cloud Run services: one for
/// direct IAP ("direct-app"), one behind a global load balancer ("lb-app" → NEG → "lb-backend").
fn world_resources(base: &str, lb_app: Value, scheme: &str) -> String {
    let direct = rest_resource(
        "direct_app",
        base,
        &[create_run_service(
            PROJECT,
            REGION,
            "direct-app",
            json!({"ingress": "INGRESS_TRAFFIC_ALL"}),
        )],
        &[delete_run_service(PROJECT, REGION, "direct-app")],
        "",
    );
    let mut create = vec![
        create_run_service(PROJECT, REGION, "lb-app", lb_app),
        create_neg(PROJECT, REGION, "lb-app-neg", "lb-app"),
        create_backend(
            PROJECT,
            REGION,
            "lb-backend",
            &["lb-app-neg"],
            json!({"loadBalancingScheme": scheme}),
        ),
    ];
    create.extend(create_https_frontend(PROJECT, "lb-backend", scheme));
    let mut destroy = delete_load_balancer(PROJECT, REGION, "lb-backend", &["lb-app-neg"]);
    destroy.push(delete_run_service(PROJECT, REGION, "lb-app"));
    let lb = rest_resource("lb_app", base, &create, &destroy, "");
    format!("{direct}\n{lb}")
}

/// The whole composition: the world above, IAP on both paths and a binding on each.
fn composed_config(base: &str, lb_app: Value, scheme: &str) -> String {
    let header = provider_header("");
    let world = world_resources(base, lb_app, scheme);
    format!(
        r#"{header}
{world}
resource "iaprun_service_iap" "direct" {{
  service    = "direct-app"
  depends_on = [terraform_data.direct_app]
}}

resource "iaprun_backend_iap" "lb" {{
  backend_service = "lb-backend"
  ignore_checks   = ["envoy_jwt_header"]
  depends_on      = [terraform_data.lb_app]
}}

resource "iaprun_access_binding" "direct" {{
  resource = iaprun_service_iap.direct.iap_resource_name
  members  = ["group:eng@example.com"]
}}

resource "iaprun_access_binding" "lb" {{
  resource = iaprun_backend_iap.lb.iap_resource_name
  members  = ["group:ops@example.com"]
}}
"#
    )
}

/// Everything the composed configuration promises holds in the emulator.
async fn assert_composed(world: &World) {
    let agent = world.iap_agent();
    let direct = world.run_service_json("direct-app").await;
    assert_eq!(direct["iapEnabled"], true, "{direct}");
    assert!(world
        .run_members("direct-app", INVOKER)
        .await
        .contains(&agent));
    assert!(world.run_members("lb-app", INVOKER).await.contains(&agent));
    let backend = world.backend_json("lb-backend", None).await;
    assert_eq!(backend["iap"]["enabled"], true, "{backend}");
    let number = world.emulator.project_number(PROJECT).expect("number");
    let direct_policy = world
        .iap_policy(&format!(
            "projects/{number}/iap_web/cloud_run-{REGION}/services/direct-app"
        ))
        .await;
    assert_eq!(
        members_of(&direct_policy, ACCESSOR),
        vec!["group:eng@example.com"]
    );
    let lb_policy = world
        .iap_policy(&format!(
            "projects/{number}/iap_web/compute/services/lb-backend"
        ))
        .await;
    assert_eq!(
        members_of(&lb_policy, ACCESSOR),
        vec!["group:ops@example.com"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_configuration_creates_the_services_the_load_balancer_and_the_iap() {
    for terraform in terraform_with_terraform_data() {
        let world = World::start().await;
        let base = world.emulator.base_url();
        let config = composed_config(&base, json!({}), "EXTERNAL_MANAGED");
        let ws = world.workspace(&terraform, &config);
        let v = &terraform.version;

        let plan = ws
            .assert_plan(2, &format!("{v}: one plan for everything"))
            .stdout;
        assert!(
            plan.contains("iaprun_service_iap.direct will be created"),
            "{plan}"
        );
        assert!(
            plan.contains("iaprun_backend_iap.lb will be created"),
            "{plan}"
        );
        assert!(
            world.run_service_json("direct-app").await.is_null(),
            "the plan built nothing"
        );
        ws.apply().expect_success();
        assert_composed(&world).await;
        ws.assert_plan(0, &format!("{v}: converged in one apply"));

        let destroy = ws.destroy().expect_success();
        assert!(
            world.run_service_json("direct-app").await.is_null(),
            "{destroy}"
        );
        assert!(
            world.run_service_json("lb-app").await.is_null(),
            "{destroy}"
        );
        world.assert_conformant();
    }
}

/// The reusable module under examples/modules, twice, each on a service the configuration creates.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_reusable_module_composes_with_services_created_in_the_same_run() {
    for terraform in terraform_with_terraform_data() {
        let world = World::start().await;
        let base = world.emulator.base_url();
        let header = provider_header("");
        let resources = world_resources(&base, json!({}), "EXTERNAL_MANAGED");
        let config = format!(
            r#"{header}
{resources}
module "direct" {{
  source     = "../examples/modules/iap-cloud-run"
  mode       = "direct"
  service    = "direct-app"
  members    = ["group:eng@example.com"]
  depends_on = [terraform_data.direct_app]
}}

module "lb" {{
  source          = "../examples/modules/iap-cloud-run"
  mode            = "backend"
  backend_service = "lb-backend"
  members         = ["group:ops@example.com"]
  ignore_checks   = ["envoy_jwt_header"]
  depends_on      = [terraform_data.lb_app]
}}

output "protected" {{
  value = concat(module.direct.cloud_run_services, module.lb.cloud_run_services)
}}
"#
        );
        let mut ws = Workspace::new(&terraform, "");
        crate::examples::copy_tree(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/modules"),
            &ws.dir().join("examples/modules"),
        );
        ws.enter("root");
        ws.write("main.tf", &config);
        ws.env("IAPRUN_EMULATOR_HOST", &world.host());
        ws.init();
        let v = &terraform.version;

        ws.assert_plan(
            2,
            &format!("{v}: the module plans on services still to be made"),
        );
        ws.apply().expect_success();
        assert_composed(&world).await;
        ws.assert_plan(0, &format!("{v}: converged in one apply"));
        let outputs = ws.show_json()["values"]["outputs"]["protected"]["value"].clone();
        assert_eq!(
            outputs,
            json!([format!("{REGION}/direct-app"), format!("{REGION}/lb-app")])
        );
        ws.destroy().expect_success();
        assert!(world.run_service_json("lb-app").await.is_null());
    }
}

/// The service the configuration creates speaks h2c behind a classic load balancer: the plan
/// cannot know (nothing exists yet), the apply stops at `http2_classic_lb` before any change.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn checks_deferred_to_apply_stop_it_before_any_change() {
    for terraform in terraform_with_terraform_data() {
        let world = World::start().await;
        let base = world.emulator.base_url();
        let h2c = json!({"template": {"containers": [{
            "image": "us-docker.pkg.dev/cloudrun/container/hello",
            "ports": [{"name": "h2c", "containerPort": 8080}]
        }]}});
        let config = composed_config(&base, h2c, "EXTERNAL");
        let ws = world.workspace(&terraform, &config);
        let v = &terraform.version;

        ws.assert_plan(2, &format!("{v}: nothing to check at plan yet"));
        let apply = ws.apply();
        assert!(!apply.success(), "{v}: {apply}");
        let output = apply.output();
        assert!(output.contains("http2_classic_lb"), "{v}: {apply}");
        assert!(
            world.backend_json("lb-backend", None).await.is_object(),
            "the configuration built the backend"
        );
        let touched: Vec<String> = provider_mutations(&world.emulator.requests())
            .into_iter()
            .filter(|m| m.contains("lb-backend") || m.contains("lb-app"))
            .collect();
        assert_eq!(
            touched,
            Vec::<String>::new(),
            "{v}: nothing changed on the load balancer path: {apply}"
        );
        let backend = world.backend_json("lb-backend", None).await;
        assert_ne!(backend["iap"]["enabled"], true, "{backend}");
        assert!(!world
            .run_members("lb-app", INVOKER)
            .await
            .contains(&world.iap_agent()));
        // The backend's IAP was never created; a plain destroy would plan it again first (and stop
        // on the finding, as every plan that creates it must): -refresh=false skips that plan.
        ws.run(&[
            "destroy",
            "-auto-approve",
            "-refresh=false",
            "-input=false",
            "-no-color",
        ])
        .expect_success();
        assert!(world.run_service_json("lb-app").await.is_null());
    }
}

/// A world where every IAP resource type is applied and then a live error finding holds for each:
/// the backend's service switched to ingress ALL (`run_app_bypass`), the directly protected
/// service put behind another IAP-enabled backend (`double_iap`), and for the binding's target
/// the same `double_iap`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn destroy_succeeds_while_a_live_error_finding_holds() {
    for terraform in terraform_binaries() {
        let world = World::start().await;
        world
            .run_service("direct-app", json!({"ingress": "INGRESS_TRAFFIC_ALL"}))
            .await;
        world.load_balanced_service("lb-app", "lb-backend").await;
        let header = provider_header("");
        let config = format!(
            r#"{header}
resource "iaprun_service_iap" "direct" {{
  service = "direct-app"
}}

resource "iaprun_backend_iap" "lb" {{
  backend_service = "lb-backend"
  ignore_checks   = ["envoy_jwt_header"]
}}

resource "iaprun_access_binding" "direct" {{
  resource = iaprun_service_iap.direct.iap_resource_name
  members  = ["group:eng@example.com"]
}}
"#
        );
        let ws = world.workspace(&terraform, &config);
        let v = &terraform.version;
        ws.apply().expect_success();

        // Out of band: the findings.
        let mut service = world.run_service_json("lb-app").await;
        service["ingress"] = json!("INGRESS_TRAFFIC_ALL");
        world.write_run_service("lb-app", service).await;
        world.neg("direct-app-neg", "direct-app").await;
        world
            .backend(
                "other-backend",
                None,
                &["direct-app-neg"],
                json!({"iap": {"enabled": true}}),
            )
            .await;
        let plan = ws.run(&["plan", "-input=false", "-no-color"]);
        let shown = plan.output();
        assert!(
            shown.contains("run_app_bypass"),
            "{v}: the finding holds: {plan}"
        );
        assert!(
            shown.contains("double_iap"),
            "{v}: the finding holds: {plan}"
        );

        world.emulator.clear_requests();
        let destroy = ws.destroy();
        assert!(
            destroy.success(),
            "{v}: destroy is never blocked by a finding: {destroy}"
        );
        assert_ne!(
            world.run_service_json("direct-app").await["iapEnabled"],
            true,
            "{v}"
        );
        let backend = world.backend_json("lb-backend", None).await;
        assert_ne!(backend["iap"]["enabled"], true, "{v}: {backend}");
        assert!(!world
            .run_members("lb-app", INVOKER)
            .await
            .contains(&world.iap_agent()));
    }
}

/// The one-run fix path (docs/checks.md): the run that turns Cloud CDN off on the backend also
/// puts IAP on it. `checks_after` carries the fixing resource's value; while it is unknown or
/// changed at plan, the live checks wait for apply and run there, after the fix, before any change.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_finding_is_fixed_in_the_same_run_that_applies_iap() {
    for terraform in terraform_with_terraform_data() {
        for fixes in [true, false] {
            let world = World::start().await;
            let base = world.emulator.base_url();
            let header = provider_header("");
            let mut create = vec![
                create_run_service(PROJECT, REGION, "lb-app", json!({})),
                create_neg(PROJECT, REGION, "lb-app-neg", "lb-app"),
                create_backend(
                    PROJECT,
                    REGION,
                    "lb-backend",
                    &["lb-app-neg"],
                    json!({"loadBalancingScheme": "EXTERNAL", "enableCDN": true}),
                ),
            ];
            create.extend(create_https_frontend(PROJECT, "lb-backend", "EXTERNAL"));
            let lb = rest_resource("lb", &base, &create, &[], "");
            let ws = world.workspace(&terraform, &format!("{header}\n{lb}"));
            let v = &terraform.version;
            ws.apply().expect_success();
            assert_eq!(
                world.backend_json("lb-backend", None).await["enableCDN"],
                true
            );

            // Stands in for `enable_cdn = false` on google_compute_backend_service; the control
            // run's stand-in changes nothing.
            let cdn = if fixes { json!(false) } else { json!(true) };
            let fixer = rest_resource(
                "cdn_off",
                &base,
                &[rest(
                    "PATCH",
                    format!("/compute/v1/projects/{PROJECT}/global/backendServices/lb-backend"),
                    Some(json!({"enableCDN": cdn})),
                )],
                &[],
                "  depends_on = [terraform_data.lb]",
            );
            let iap = |checks_after: &str| {
                format!(
                    r#"{header}
{lb}
{fixer}
resource "iaprun_backend_iap" "lb" {{
  backend_service = "lb-backend"
  depends_on      = [terraform_data.cdn_off]
{checks_after}
}}
"#
                )
            };
            // Without the path, the plan reports the finding the run would fix.
            ws.write("main.tf", &iap(""));
            let plan = ws.plan_detailed_exitcode();
            assert_eq!(plan.code(), 1, "{v}: {plan}");
            assert!(plan.stderr.contains("cdn_enabled"), "{v}: {plan}");

            ws.write(
                "main.tf",
                &iap("  checks_after    = [terraform_data.cdn_off.id]"),
            );
            ws.assert_plan(2, &format!("{v}: the checks wait for apply"));
            world.emulator.clear_requests();
            let apply = ws.apply();
            let backend = world.backend_json("lb-backend", None).await;
            if fixes {
                assert!(apply.success(), "{v}: {apply}");
                assert_eq!(backend["enableCDN"], false, "{backend}");
                assert_eq!(backend["iap"]["enabled"], true, "{backend}");
                ws.assert_plan(0, &format!("{v}: converged"));
            } else {
                // The path defers the checks, it never skips them.
                assert!(!apply.success(), "{v}: {apply}");
                assert!(apply.output().contains("cdn_enabled"), "{v}: {apply}");
                let requests: Vec<_> = world
                    .emulator
                    .requests()
                    .into_iter()
                    .filter(|r| r.body.get("enableCDN").is_none()) // the stand-in's own PATCH
                    .collect();
                let changed = provider_mutations(&requests);
                assert_eq!(changed, Vec::<String>::new(), "{v}: {apply}");
                assert_ne!(backend["iap"]["enabled"], true, "{backend}");
            }
        }
    }
}

// ---- services come and go behind the load balancer ------------------------------------------------

/// `var.services` behind load balancer "web" (for_each), IAP on its backend as
/// examples/load-balancer shows it (waiting for the frontend and the NEG list), a binding and a
/// member; `backend_iap_extra` is added inside `iaprun_backend_iap.web`, `outputs` after it.
fn services_config(base: &str, backend_iap_extra: &str, outputs: &str) -> String {
    let header = provider_header("");
    let world = services_behind_load_balancer(base, "web");
    format!(
        r#"{header}
{world}
resource "iaprun_backend_iap" "web" {{
  backend_service = "web"
  ignore_checks   = ["envoy_jwt_header"]
  depends_on      = [terraform_data.lb, terraform_data.backend_negs]
{backend_iap_extra}
}}

resource "iaprun_access_binding" "users" {{
  resource = iaprun_backend_iap.web.iap_resource_name
  members  = ["group:eng@example.com"]
}}

resource "iaprun_access_member" "alice" {{
  resource = iaprun_backend_iap.web.iap_resource_name
  role     = "roles/iap.tunnelResourceAccessor"
  member   = "user:alice@example.com"
}}

{outputs}
"#
    )
}

/// Sets `var.services`.
fn set_services(ws: &Workspace, services: &[&str]) {
    ws.write(
        "terraform.tfvars",
        &format!("services = {}\n", json!(services)),
    );
}

/// Whether the IAP service agent holds the invoker role on each of `services`.
async fn agent_granted(world: &World, services: &[&str]) -> Vec<bool> {
    let agent = world.iap_agent();
    let mut granted = Vec::new();
    for service in services {
        granted.push(world.run_members(service, INVOKER).await.contains(&agent));
    }
    granted
}

/// The backend service "web" no longer exists.
async fn assert_backend_gone(world: &World, v: &str) {
    let path = format!("/compute/v1/projects/{PROJECT}/global/backendServices/web");
    let (status, body) = world.call("GET", &path, None).await;
    assert_eq!(status.as_u16(), 404, "{v}: {body}");
}

/// Retiring a service from the load balancer in the usual way (its Cloud Run service and its NEG
/// deleted, the backend's NEG list shortened, all in one run) leaves nothing to apply: the grant
/// the backend IAP recorded on it went with the service, so the next plan plans no release of it,
/// and destroy leaves someone else's grant on a service of theirs.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_service_retired_from_the_load_balancer_leaves_nothing_to_apply() {
    for terraform in terraform_with_terraform_data() {
        let world = World::start().await;
        world.run_service("theirs", json!({})).await;
        world.provision_iap_agent().await;
        let agent = world.iap_agent();
        world.set_run_members("theirs", INVOKER, &[&agent]).await;
        let config = services_config(&world.emulator.base_url(), "", "");
        let ws = world.workspace(&terraform, &config);
        let v = &terraform.version;
        set_services(&ws, &["alpha", "beta"]);
        ws.apply().expect_success();
        assert_eq!(
            agent_granted(&world, &["alpha", "beta"]).await,
            [true, true]
        );
        ws.assert_plan(0, &format!("{v}: converged in one apply"));

        set_services(&ws, &["alpha"]);
        ws.run(&[
            "apply",
            "-auto-approve",
            "-parallelism=1",
            "-input=false",
            "-no-color",
        ])
        .expect_success();
        assert!(world.run_service_json("beta").await.is_null(), "{v}");
        ws.assert_plan(
            0,
            &format!("{v}: the retired service leaves nothing to apply"),
        );
        assert_eq!(agent_granted(&world, &["alpha"]).await, [true], "{v}");

        ws.destroy().expect_success();
        assert!(world.run_service_json("alpha").await.is_null(), "{v}");
        assert_backend_gone(&world, v).await;
        assert_eq!(agent_granted(&world, &["theirs"]).await, [true], "{v}");
        world.assert_conformant();
    }
}

/// With `checks_after` on the resource that sets the backend's NEG list (docs/resources/
/// backend_iap.md), services added and removed with `for_each` are granted and released in the
/// run that adds or removes them, whatever the flags: every next plan is empty, outputs included.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn services_added_and_removed_behind_the_load_balancer_converge_in_one_apply_each() {
    for terraform in terraform_with_terraform_data() {
        let world = World::start().await;
        let config = services_config(
            &world.emulator.base_url(),
            "  checks_after    = [terraform_data.backend_negs.id]",
            "output \"protected\" {\n  value = iaprun_backend_iap.web.cloud_run_services\n}",
        );
        let ws = world.workspace(&terraform, &config);
        let v = &terraform.version;
        let apply = |flag: &str| {
            let args = ["apply", "-auto-approve", "-input=false", "-no-color", flag];
            ws.run(&args[..if flag.is_empty() { 4 } else { 5 }])
                .expect_success();
        };
        let steps: [(&[&str], &str); 4] = [
            (&["alpha"], ""),
            (&["alpha", "beta"], "-refresh=false"),
            (&["beta", "gamma"], "-parallelism=1"),
            (&["beta", "gamma"], "-replace=iaprun_backend_iap.web"),
        ];
        for (services, flag) in steps {
            set_services(&ws, services);
            apply(flag);
            let context = format!("{v}: {services:?} after apply {flag}");
            ws.assert_plan(0, &context);
            assert!(
                agent_granted(&world, services).await.iter().all(|g| *g),
                "{context}"
            );
            let protected = &ws.show_json()["values"]["outputs"]["protected"]["value"];
            let labels: Vec<String> = services.iter().map(|s| format!("{REGION}/{s}")).collect();
            assert_eq!(protected, &json!(labels), "{context}");
        }
        assert!(world.run_service_json("alpha").await.is_null(), "{v}");
        ws.destroy().expect_success();
        assert_backend_gone(&world, v).await;
        world.assert_conformant();
    }
}
