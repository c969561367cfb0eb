//! iaprun_backend_iap end to end: global and regional backend services fronting Cloud Run, the
//! Google-managed and custom OAuth clients, drift, import and destroy, with the real terraform CLI
//! against a load balancer built in iaprun-emulator.

use serde_json::{json, Value};

use crate::support::{newest, terraform_binaries, Terraform};
use crate::world::{provider_header, World, PROJECT, REGION};

const INVOKER: &str = "roles/run.invoker";

fn terraform_versions() -> Vec<Terraform> {
    terraform_binaries()
}

fn config(region: Option<&str>, extra: &str) -> String {
    let region = region
        .map(|r| format!("  region = \"{r}\"\n"))
        .unwrap_or_default();
    let header = provider_header("");
    format!(
        r#"{header}
variable "secret" {{
  type      = string
  sensitive = true
  default   = "s3cret-one"
}}

resource "iaprun_backend_iap" "web" {{
  backend_service = "web"
{region}{extra}
}}
"#
    )
}

/// A load balancer world: Cloud Run service `hello` behind a serverless NEG, a backend service
/// `web` (global or regional) and, for the global one, an HTTPS frontend.
async fn load_balancer(region: Option<&str>) -> World {
    let world = World::start().await;
    world.run_service("hello", json!({})).await;
    world.neg("hello-neg", "hello").await;
    world
        .backend("web", region, &["hello-neg"], json!({}))
        .await;
    if region.is_none() {
        world.https_frontend("web").await;
    }
    world
        .set_run_members("hello", INVOKER, &["user:existing@example.com"])
        .await;
    world
}

fn iap(backend: &Value) -> &Value {
    &backend["iap"]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn global_and_regional_lifecycle() {
    for (terraform, region) in terraform_versions()
        .into_iter()
        .flat_map(|t| [(t.clone(), None), (t, Some(REGION))])
    {
        let world = load_balancer(region).await;
        // Warnings (envoy_jwt_header; no_https_frontend for the regional one) do not stop the apply.
        let ws = world.workspace(&terraform, &config(region, ""));
        let what = format!("{} {:?}", terraform.version, region);

        ws.apply().expect_success();
        let backend = world.backend_json("web", region).await;
        assert_eq!(iap(&backend)["enabled"], true, "{what}: {backend}");
        assert!(
            world
                .run_members("hello", INVOKER)
                .await
                .contains(&world.iap_agent()),
            "{what}: invoker granted"
        );
        let state = ws.show_json();
        let values = &state["values"]["root_module"]["resources"][0]["values"];
        assert_eq!(
            values["cloud_run_services"],
            json!([format!("{REGION}/hello")]),
            "{what}: {values}"
        );
        let expected_name = match region {
            Some(r) => format!("compute-{r}"),
            None => "compute".to_string(),
        };
        assert!(
            values["iap_resource_name"]
                .as_str()
                .is_some_and(|n| n.contains(&format!("/iap_web/{expected_name}/services/web"))),
            "{what}: {values}"
        );
        assert_eq!(ws.plan_detailed_exitcode().code(), 0, "{what}: re-plan");

        // Disabled out of band: drift, apply restores.
        world
            .patch_backend_iap("web", region, json!({"enabled": false}))
            .await;
        let plan = ws.plan_detailed_exitcode();
        assert_eq!(plan.code(), 2, "{what}: {plan}");
        assert!(plan.stdout.contains("iap_enabled"), "{what}: {plan}");
        ws.apply().expect_success();
        assert_eq!(
            iap(&world.backend_json("web", region).await)["enabled"],
            true,
            "{what}"
        );

        // Import, then no changes.
        ws.run(&["state", "rm", "iaprun_backend_iap.web"])
            .expect_success();
        let id = match region {
            Some(r) => format!("projects/{PROJECT}/regions/{r}/backendServices/web"),
            None => format!("projects/{PROJECT}/global/backendServices/web"),
        };
        ws.run(&["import", "-no-color", "iaprun_backend_iap.web", &id])
            .expect_success();
        let plan = ws.plan_detailed_exitcode();
        assert_eq!(plan.code(), 0, "{what}: import then plan:\n{plan}");

        ws.destroy().expect_success();
        assert_ne!(
            iap(&world.backend_json("web", region).await)["enabled"],
            true,
            "{what}: destroy disables IAP"
        );
        world.assert_conformant();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn custom_client_secret_rotation_and_back_to_managed() {
    let world = load_balancer(None).await;
    let managed = config(None, "  ignore_checks = [\"envoy_jwt_header\"]\n");
    let custom = config(
        None,
        "  ignore_checks = [\"envoy_jwt_header\"]\n  oauth2_client_id     = \"client-1.apps.googleusercontent.com\"\n  oauth2_client_secret = var.secret\n",
    );
    let ws = world.workspace(&newest(), &managed);
    ws.apply().expect_success();
    assert!(iap(&world.backend_json("web", None).await)
        .get("oauth2ClientId")
        .is_none_or(|c| c == ""));

    ws.write("main.tf", &custom);
    let plan = ws.plan_detailed_exitcode();
    assert_eq!(plan.code(), 2, "{plan}");
    assert!(
        plan.stdout.contains("update in-place"),
        "managed to custom is an in-place update:\n{plan}"
    );
    ws.apply().expect_success();
    let backend = world.backend_json("web", None).await;
    assert_eq!(
        iap(&backend)["oauth2ClientId"],
        "client-1.apps.googleusercontent.com"
    );
    assert_eq!(ws.plan_detailed_exitcode().code(), 0);

    // The secret rotated out of band: its SHA-256 changes, and the plan shows it.
    world
        .patch_backend_iap("web", None, json!({"enabled": true, "oauth2ClientId": "client-1.apps.googleusercontent.com", "oauth2ClientSecret": "rotated"}))
        .await;
    let plan = ws.plan_detailed_exitcode();
    assert_eq!(plan.code(), 2, "secret rotation detected:\n{plan}");
    assert!(
        plan.stdout.contains("oauth2_client_secret_sha256"),
        "{plan}"
    );
    ws.apply().expect_success();
    assert_eq!(
        ws.plan_detailed_exitcode().code(),
        0,
        "converged after restoring the secret"
    );

    ws.write("main.tf", &managed);
    ws.apply().expect_success();
    let backend = world.backend_json("web", None).await;
    assert!(
        iap(&backend).get("oauth2ClientId").is_none_or(|c| c == ""),
        "back to the managed client: {backend}"
    );
    assert_eq!(iap(&backend)["enabled"], true);
    assert_eq!(ws.plan_detailed_exitcode().code(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn write_only_secret_never_reaches_the_state() {
    let terraform = newest();
    if terraform.minor_version() < (1, 11) {
        panic!(
            "write-only attributes need Terraform 1.11+; the newest terraform here is {}",
            terraform.version
        );
    }
    let world = load_balancer(None).await;
    let extra = "  ignore_checks = [\"envoy_jwt_header\"]\n  oauth2_client_id                = \"client-1.apps.googleusercontent.com\"\n  oauth2_client_secret_wo         = var.secret\n  oauth2_client_secret_wo_version = 1\n";
    let ws = world.workspace(&terraform, &config(None, extra));
    ws.apply().expect_success();
    let backend = world.backend_json("web", None).await;
    assert_eq!(
        iap(&backend)["oauth2ClientId"],
        "client-1.apps.googleusercontent.com"
    );
    assert!(
        iap(&backend)["oauth2ClientSecretSha256"].is_string(),
        "the secret was sent: {backend}"
    );
    let state = std::fs::read_to_string(ws.dir().join("terraform.tfstate")).expect("state");
    assert!(
        !state.contains("s3cret-one"),
        "the write-only secret is in the state:\n{state}"
    );
    assert_eq!(
        ws.plan_detailed_exitcode().code(),
        0,
        "no changes with the same write-only secret"
    );
}

/// A backend's destroy whose lookup of the other IAP paths to a service behind it fails keeps the
/// grant there, and says so: which service, and the command that removes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_grant_kept_on_a_failed_lookup_at_destroy_is_a_warning() {
    let world = load_balancer(None).await;
    let ws = world.workspace(&newest(), &config(None, ""));
    ws.apply().expect_success();
    let agent = world.iap_agent();
    world.deny_neg_list();
    let destroyed = ws.destroy().expect_success();
    assert_ne!(iap(&world.backend_json("web", None).await)["enabled"], true);
    assert!(world.run_members("hello", INVOKER).await.contains(&agent));
    let shown = destroyed.flat_output();
    assert!(
        shown.contains("Warning: Invoker grant left in place"),
        "{destroyed}"
    );
    let command = format!("gcloud run services remove-iam-policy-binding hello --project={PROJECT} --region={REGION} --member={agent} --role={INVOKER}");
    assert!(shown.contains(&command), "{destroyed}");
}

/// Turning a backend's grant off while the lookup of the other IAP paths to the service behind it
/// fails keeps the grant and its record, and the apply says so: which service, and Google's error.
/// The next plan has that release to apply.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_grant_kept_on_a_failed_lookup_when_turned_off_is_a_warning() {
    let world = load_balancer(None).await;
    let ws = world.workspace(&newest(), &config(None, ""));
    ws.apply().expect_success();
    world.deny_neg_list();
    ws.write("main.tf", &config(None, "  grant_iap_invoker = false\n"));
    let applied = ws.apply().expect_success();
    world
        .assert_grant_kept_on_apply(&ws, &applied, "hello")
        .await;
    ws.assert_plan(2, "a release left for the next apply");
}

/// When the IAM policy of the Cloud Run service behind the backend cannot be read (permission
/// denied), the invoker checks cannot run: `public_invoker`, and `missing_invoker` with the grant
/// off, each warn at plan and at apply, and the change goes ahead (before, both skipped in silence).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn invoker_checks_that_cannot_run_warn_and_block_nothing() {
    let world = load_balancer(None).await;
    let ws = world.workspace(&newest(), &config(None, "  grant_iap_invoker = false\n"));
    let denied = "Permission 'run.services.getIamPolicy' denied on resource.";
    world.deny_reads("^/v2/.*:getIamPolicy$", denied);
    let warned = |run: &crate::support::Run| {
        let shown = run.flat_output();
        ["public_invoker", "missing_invoker"].iter().all(|check| {
            shown.contains(&format!("Warning: Check {check} could not run"))
                && shown.contains(&format!(r#"ignore_checks = ["{check}"]"#))
        }) && shown.contains(&format!(
            "reading the IAM policy of Cloud Run service hello in {REGION} failed"
        )) && shown.contains(denied)
    };
    let plan = ws.assert_plan(2, "create");
    assert!(warned(&plan), "{plan}");
    let applied = ws.apply().expect_success();
    assert!(warned(&applied), "{applied}");
    assert_eq!(iap(&world.backend_json("web", None).await)["enabled"], true);
}
