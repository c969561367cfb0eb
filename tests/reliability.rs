//! Reliability and security end to end: transient API faults, failed operations, slow and dropped
//! connections, the provider killed mid-apply, 200 bindings racing an out-of-band writer, secrets
//! kept out of Terraform's trace logs, and IAM writes that never start from a cached read.
//! Scenarios and what each proves: docs/reliability.md.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use iaprun::emulator::FaultSpec;
use iaprun::framework::server::Server;
use iaprun::framework::{
    ApplyRequest, Block, ClientCapabilities, ConfigureRequest, ReadRequest, Value as TfValue,
};
use iaprun::provider::IaprunProvider;

use crate::access_binding::{
    assert_slot_bindings, four_iap_resources, many_bindings, members, ACCESSOR,
};
use crate::support::{newest, Workspace};
use crate::world::{provider_header, World, PROJECT, REGION};

const INVOKER: &str = "roles/run.invoker";
const TUNNEL: &str = "roles/iap.tunnelResourceAccessor";

fn fault(spec: Value) -> FaultSpec {
    serde_json::from_value(spec).expect("fault spec")
}

/// A Cloud Run service `direct` for direct IAP, and `hello` behind a global backend `web` with an
/// HTTPS frontend; `user:existing@example.com` already invokes both services.
async fn mixed_world(world: &World) {
    world.run_service("direct", json!({})).await;
    world.load_balanced_service("hello", "web").await;
    for service in ["direct", "hello"] {
        world
            .set_run_members(service, INVOKER, &["user:existing@example.com"])
            .await;
    }
}

/// Direct IAP on `direct`, IAP on backend `web`, and an access binding on each.
fn mixed_config(provider_settings: &str) -> String {
    format!(
        r#"{}
resource "iaprun_service_iap" "direct" {{
  service = "direct"
}}

resource "iaprun_backend_iap" "web" {{
  backend_service = "web"
}}

resource "iaprun_access_binding" "direct" {{
  resource = iaprun_service_iap.direct.iap_resource_name
  members  = ["user:a@example.com", "group:g@example.com"]
}}

resource "iaprun_access_binding" "web" {{
  resource = iaprun_backend_iap.web.iap_resource_name
  members  = ["user:b@example.com"]
}}
"#,
        provider_header(&format!("{provider_settings}\n"))
    )
}

/// Everything `mixed_config` describes holds in the emulator.
async fn assert_mixed_world_converged(world: &World) {
    assert_eq!(world.run_service_json("direct").await["iapEnabled"], true);
    assert_eq!(
        world.backend_json("web", None).await["iap"]["enabled"],
        true
    );
    for service in ["direct", "hello"] {
        let invokers = world.run_members(service, INVOKER).await;
        assert!(
            invokers.contains(&world.iap_agent()),
            "{service}: {invokers:?}"
        );
        assert!(
            invokers.contains(&"user:existing@example.com".to_string()),
            "{service}: {invokers:?}"
        );
    }
    let number = world.emulator.project_number(PROJECT).expect("number");
    let direct = format!("projects/{number}/iap_web/cloud_run-{REGION}/services/direct");
    assert_eq!(
        members(&world.iap_policy(&direct).await, ACCESSOR, None),
        vec!["group:g@example.com", "user:a@example.com"]
    );
    let web = format!("projects/{number}/iap_web/compute/services/web");
    assert_eq!(
        members(&world.iap_policy(&web).await, ACCESSOR, None),
        vec!["user:b@example.com"]
    );
}

// ---- faults ------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_fifth_of_requests_rate_limited_or_unavailable_still_converges() {
    let world = World::start().await;
    mixed_world(&world).await;
    let ws = world.workspace(&newest(), &mixed_config(""));
    world.emulator.clear_requests();
    // 10% answer 429 and another ~10% 503, both with Retry-After: 1, on every API.
    world
        .emulator
        .add_fault(fault(
            json!({"kind": "status", "status": 429, "retry_after": 1, "probability": 0.1}),
        ))
        .expect("fault");
    world
        .emulator
        .add_fault(fault(
            json!({"kind": "status", "status": 503, "retry_after": 1, "probability": 0.11}),
        ))
        .expect("fault");
    ws.apply().expect_success();
    ws.assert_plan(0, "under the same faults");
    world.emulator.clear_faults();

    let requests = world.emulator.requests();
    let faulted = requests
        .iter()
        .filter(|r| r.status == 429 || r.status == 503)
        .count();
    assert!(
        faulted > 0,
        "the faults fired ({} requests, none faulted)",
        requests.len()
    );
    assert_mixed_world_converged(&world).await;
    ws.assert_plan(0, "after the faults");
    world.assert_conformant();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_backend_operation_is_reported_with_googles_message_and_the_next_apply_converges()
{
    let world = World::start().await;
    mixed_world(&world).await;
    let ws = world.workspace(&newest(), &mixed_config(""));
    world
        .emulator
        .add_fault(fault(json!({
            "kind": "operation_error", "method": "PATCH", "path_regex": "/global/backendServices/web$",
            "code": 9, "message": "injected: backend service web is being reconfigured"
        })))
        .expect("fault");
    let failed = ws.apply();
    assert!(
        !failed.success(),
        "the operation error fails the apply:\n{failed}"
    );
    assert!(
        failed
            .stderr
            .contains("injected: backend service web is being reconfigured"),
        "Google's message reaches the user:\n{failed}"
    );
    // The independent resources were created; state holds what exists.
    let state = ws.show_json();
    let resources = state["values"]["root_module"]["resources"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let addresses: Vec<&str> = resources
        .iter()
        .filter_map(|r| r["address"].as_str())
        .collect();
    assert!(
        addresses.contains(&"iaprun_service_iap.direct"),
        "{addresses:?}"
    );
    assert_eq!(
        world.backend_json("web", None).await["iap"]["enabled"],
        Value::Null,
        "the failed change was not applied"
    );
    // The failed create undid its invoker grant and left no state: a tainted object's grant would
    // outlive the replacement (Terraform gives its destroy no private state).
    assert!(
        !addresses.contains(&"iaprun_backend_iap.web"),
        "{addresses:?}"
    );
    assert!(
        !world
            .run_members("hello", INVOKER)
            .await
            .contains(&world.iap_agent()),
        "the grant made before the failure was rolled back"
    );
    ws.apply().expect_success();
    assert_mixed_world_converged(&world).await;
    ws.assert_plan(0, "converged after the failure");
    // Destroy leaves nothing of ours behind: no agent grant, IAP off, pre-existing members kept.
    ws.destroy().expect_success();
    assert_nothing_left(&world).await;
}

/// After destroy: IAP off everywhere, the IAP agent's grants gone, the pre-existing invoker kept.
async fn assert_nothing_left(world: &World) {
    assert!(
        world
            .run_service_json("direct")
            .await
            .get("iapEnabled")
            .is_none_or(|v| v == false),
        "IAP off on direct"
    );
    let web = world.backend_json("web", None).await;
    assert!(
        web["iap"]["enabled"].as_bool() != Some(true),
        "IAP off on web: {web}"
    );
    for service in ["direct", "hello"] {
        assert_eq!(
            world.run_members(service, INVOKER).await,
            vec!["user:existing@example.com".to_string()],
            "{service}: only the pre-existing invoker is left"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slow_and_dropped_connections_are_retried_or_reported_never_hung() {
    let world = World::start().await;
    mixed_world(&world).await;
    let ws = world.workspace(&newest(), &mixed_config("  request_timeout = \"2s\""));
    world.emulator.clear_requests();
    // Two reads answered after the request timeout and two dropped connections: all retried.
    world
        .emulator
        .add_fault(fault(json!({"kind": "delay", "method": "GET", "path_regex": "/services/direct$", "delay_ms": 4000, "count": 2})))
        .expect("fault");
    world
        .emulator
        .add_fault(fault(
            json!({"kind": "reset", "path_regex": ":getIamPolicy$", "count": 2}),
        ))
        .expect("fault");
    world
        .emulator
        .add_fault(fault(
            json!({"kind": "reset", "method": "GET", "path_regex": "^/compute/", "count": 2}),
        ))
        .expect("fault");
    ws.apply().expect_success();
    let dropped = world
        .emulator
        .requests()
        .iter()
        .filter(|r| r.status == 0)
        .count();
    assert!(dropped >= 4, "the resets fired: {dropped}");
    assert_mixed_world_converged(&world).await;

    // A mutation that always answers after the request timeout: the apply fails within the
    // resource's timeout with a timeout diagnostic instead of hanging.
    world.run_service("slow", json!({})).await;
    let slow = r#"
resource "iaprun_service_iap" "slow" {
  service = "slow"
  timeouts {
    create = "12s"
  }
}
"#;
    ws.write(
        "main.tf",
        &format!("{}{slow}", mixed_config("  request_timeout = \"2s\"")),
    );
    world
        .emulator
        .add_fault(fault(json!({"kind": "delay", "method": "PATCH", "path_regex": "/services/slow$", "delay_ms": 6000, "probability": 1.0})))
        .expect("fault");
    let ws = Arc::new(ws);
    let run = {
        let ws = ws.clone();
        tokio::time::timeout(
            Duration::from_secs(180),
            tokio::task::spawn_blocking(move || ws.apply()),
        )
        .await
        .expect("terraform apply ends instead of hanging on a slow API")
        .expect("apply thread")
    };
    assert!(!run.success(), "{run}");
    let text = run.stderr.to_lowercase();
    assert!(
        text.contains("timed out") || text.contains("timeout") || text.contains("deadline"),
        "the diagnostic says the request timed out:\n{run}"
    );
    world.emulator.clear_faults();
    ws.apply().expect_success();
    ws.assert_plan(0, "after the slow API recovered");
}

// ---- the provider killed in the middle of an apply ---------------------------------------------

/// Pids of running provider processes started from this workspace's mirror or .terraform.
fn provider_pids(ws: &Workspace) -> Vec<i32> {
    let root: PathBuf = ws.dir().parent().map(Path::to_path_buf).expect("root");
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(exe) = std::fs::read_link(entry.path().join("exe")) else {
            continue;
        };
        let name = exe.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if exe.starts_with(&root) && name.starts_with("terraform-provider-iaprun") {
            pids.push(pid);
        }
    }
    pids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_provider_killed_mid_apply_leaves_nothing_terraform_does_not_know_about() {
    let world = World::start().await;
    mixed_world(&world).await;
    let ws = Arc::new(world.workspace(&newest(), &mixed_config("")));
    // Both enabling operations stay running long enough for the kill to land while the provider
    // waits on them, after the invoker grants are made and the changes are accepted.
    for path in ["/services/direct$", "/global/backendServices/web$"] {
        world
            .emulator
            .add_fault(fault(json!({"kind": "operation_delay", "method": "PATCH", "path_regex": path, "delay_ms": 4000})))
            .expect("fault");
    }
    world.emulator.clear_requests();
    let apply = {
        let ws = ws.clone();
        tokio::task::spawn_blocking(move || ws.apply())
    };
    // Wait until both enabling PATCHes were accepted, then SIGKILL every provider process.
    let mut killed = Vec::new();
    for _ in 0..600 {
        let patched = world
            .emulator
            .requests()
            .iter()
            .filter(|r| r.method == "PATCH" && r.status == 200)
            .count();
        if patched >= 2 {
            for pid in provider_pids(&ws) {
                // SAFETY: kill(2) on a pid this test found running from its own workspace.
                unsafe { libc::kill(pid, libc::SIGKILL) };
                killed.push(pid);
            }
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!killed.is_empty(), "found the provider mid-apply to kill");
    let interrupted = apply.await.expect("apply thread");
    assert!(
        !interrupted.success(),
        "the killed apply fails:\n{interrupted}"
    );
    // Let the orphaned operations finish, as they would at Google.
    tokio::time::sleep(Duration::from_millis(4500)).await;
    world.emulator.clear_faults();
    assert_eq!(
        world.run_service_json("direct").await["iapEnabled"],
        true,
        "the interrupted create did enable IAP"
    );

    let plan = ws.plan_detailed_exitcode();
    assert_eq!(
        plan.code(),
        2,
        "the next plan completes what was cut off:\n{plan}"
    );
    ws.apply().expect_success();
    assert_mixed_world_converged(&world).await;
    ws.assert_plan(0, "converged after the kill");
    let state = ws.show_json();
    let resources = state["values"]["root_module"]["resources"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(resources.len(), 4, "{state}");

    // Terraform now owns everything the killed run created: destroy removes all of it.
    ws.destroy().expect_success();
    assert_nothing_left(&world).await;
    world.assert_conformant();
}

// ---- concurrency -------------------------------------------------------------------------------

/// Adds `member` to `role` of an IAP policy by etag-guarded read-modify-write, retrying
/// conflicts (the injected ones included). Returns once the write succeeded.
async fn add_member_out_of_band(world: &World, resource: &str, role: &str, member: &str) {
    for _ in 0..200 {
        let (status, mut policy) = world
            .call(
                "POST",
                &format!("/v1/{resource}:getIamPolicy"),
                Some(json!({"options": {"requestedPolicyVersion": 3}})),
            )
            .await;
        if !status.is_success() {
            continue;
        }
        let bindings = policy["bindings"].as_array_mut();
        let mut bindings = bindings.map(std::mem::take).unwrap_or_default();
        match bindings
            .iter_mut()
            .find(|b| b["role"] == role && b.get("condition").is_none())
        {
            Some(b) => b["members"]
                .as_array_mut()
                .expect("members")
                .push(json!(member)),
            None => bindings.push(json!({"role": role, "members": [member]})),
        }
        policy["bindings"] = Value::Array(bindings);
        let (status, _) = world
            .call(
                "POST",
                &format!("/v1/{resource}:setIamPolicy"),
                Some(json!({"policy": policy})),
            )
            .await;
        if status.is_success() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("could not add {member} to {role} of {resource}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_bindings_race_conflicts_and_an_out_of_band_writer_and_lose_nothing() {
    let world = Arc::new(World::start().await);
    let mut resources = four_iap_resources(&world).await;
    world.run_service("svc-c", json!({})).await;
    resources.push(format!(
        "projects/{PROJECT}/iap_web/cloud_run-{REGION}/services/svc-c"
    ));
    let ws = Arc::new(world.workspace(&newest(), &many_bindings(&resources, 200)));
    world
        .emulator
        .add_fault(fault(json!({
            "kind": "stale_etag", "method": "POST", "path_regex": ":setIamPolicy$", "probability": 0.3
        })))
        .expect("fault");
    world.emulator.clear_requests();

    let done = Arc::new(AtomicBool::new(false));
    let writer = {
        let (world, resources, done) = (world.clone(), resources.clone(), done.clone());
        tokio::spawn(async move {
            let mut written = Vec::new();
            let mut n = 0usize;
            // At least one write per resource, then on until the apply ends.
            while !done.load(Ordering::SeqCst) || n < resources.len() {
                let resource = &resources[n % resources.len()];
                let member = format!("user:oob{n}@example.com");
                add_member_out_of_band(&world, resource, TUNNEL, &member).await;
                written.push((resource.clone(), member));
                n += 1;
                // A busy neighbour, not a tight loop: a writer that changes the policy between
                // every read and write of ours would make any read-modify-write give up.
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            written
        })
    };
    let apply = {
        let ws = ws.clone();
        tokio::task::spawn_blocking(move || {
            ws.run(&["apply", "-auto-approve", "-no-color", "-parallelism=50"])
        })
        .await
        .expect("apply thread")
    };
    done.store(true, Ordering::SeqCst);
    let written = writer.await.expect("writer");
    apply.expect_success();
    world.emulator.clear_faults();

    let conflicts = world
        .emulator
        .requests()
        .iter()
        .filter(|r| r.path.ends_with(":setIamPolicy") && r.status == 409)
        .count();
    assert!(conflicts > 0, "the fault injected conflicts");
    assert_slot_bindings(&world, &resources, 200).await;
    for resource in &resources {
        let policy = world.iap_policy(resource).await;
        let mut want: Vec<String> = written
            .iter()
            .filter(|(r, _)| r == resource)
            .map(|(_, m)| m.clone())
            .collect();
        want.sort();
        assert_eq!(
            members(&policy, TUNNEL, None),
            want,
            "every out-of-band member of {resource} is still there"
        );
    }
    ws.assert_plan(0, "200 bindings converged");
}

// ---- IAM safety --------------------------------------------------------------------------------

/// The engine Terraform's requests reach (`framework::server::Server`), in this process, over the
/// real provider configured against the emulator.
async fn configured_engine(world: &World) -> Server<IaprunProvider> {
    let server = Server::new(Arc::new(IaprunProvider::default()));
    let mut config = server.provider_schema().block.empty_value();
    let base = format!("http://{}/", world.host());
    config.set_attr("project", TfValue::from(PROJECT));
    config.set_attr("region", TfValue::from(REGION));
    config.set_attr("access_token", TfValue::from("test-token"));
    for name in [
        "run_custom_endpoint",
        "iap_custom_endpoint",
        "service_usage_custom_endpoint",
        "resource_manager_custom_endpoint",
    ] {
        config.set_attr(name, TfValue::from(base.as_str()));
    }
    config.set_attr(
        "compute_custom_endpoint",
        TfValue::from(format!("{base}compute/v1/").as_str()),
    );
    let configured = server
        .configure(ConfigureRequest {
            terraform_version: "1.11.4".into(),
            config,
            client_capabilities: ClientCapabilities::default(),
        })
        .await;
    assert!(!configured.has_errors(), "configured: {configured:?}");
    server
}

/// What a configuration holding `state`'s values says: its computed-only attributes are null.
fn config_of(block: &Block, state: &TfValue) -> TfValue {
    let mut config = state.clone();
    for attribute in block
        .attributes
        .iter()
        .filter(|a| a.computed && !a.optional)
    {
        config.set_attr(&attribute.name, TfValue::Null);
    }
    config
}

/// The etag the setIamPolicy requests since the log was cleared carried.
fn written_etags(world: &World) -> Vec<String> {
    world
        .emulator
        .requests()
        .iter()
        .filter(|r| r.path.ends_with(":setIamPolicy") && r.status == 200)
        .filter_map(|r| r.body["policy"]["etag"].as_str().map(str::to_string))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_binding_write_starts_from_a_fresh_read_and_keeps_every_other_binding() {
    let world = World::start().await;
    world.run_service("svc-a", json!({})).await;
    let resource = format!("projects/{PROJECT}/iap_web/cloud_run-{REGION}/services/svc-a");
    world
        .set_iap_members(&resource, ACCESSOR, &["user:a@example.com"])
        .await;
    let engine = configured_engine(&world).await;
    let binding = engine
        .resource("iaprun_access_binding")
        .expect("access binding resource");

    // Import and refresh: the context now caches the policy as it is now.
    let imported = engine
        .import_resource(binding, &format!("{resource} {ACCESSOR}"))
        .await;
    assert!(
        !imported.diagnostics.has_errors(),
        "{:?}",
        imported.diagnostics
    );
    let read = engine
        .read_resource(
            binding,
            ReadRequest {
                state: imported.state,
                private: imported.private,
            },
        )
        .await;
    assert!(!read.diagnostics.has_errors(), "{:?}", read.diagnostics);
    let state = read.state;
    let cached_etag = state.get_str("etag").expect("etag").to_string();

    // Out of band: another role, a conditional binding of the same role, and the unconditioned
    // binding itself gain members; the cache does not know.
    world
        .set_iap_members(&resource, TUNNEL, &["user:tunnel@example.com"])
        .await;
    let mut policy = world.iap_policy(&resource).await;
    policy["bindings"]
        .as_array_mut()
        .expect("bindings")
        .push(json!({
            "role": ACCESSOR, "members": ["user:office@example.com"],
            "condition": {"title": "office", "expression": "request.time.getHours(\"UTC\") >= 9"}
        }));
    policy["version"] = json!(3);
    let answer = world.set_iap_policy(&resource, policy).await;
    let fresh_etag = answer["etag"].as_str().expect("etag").to_string();
    assert_ne!(fresh_etag, cached_etag);
    let number = world.emulator.project_number(PROJECT).expect("number");
    let key = format!("projects/{number}/iap_web/cloud_run-{REGION}/services/svc-a");
    let ctx = engine.configured().expect("configured context");
    let cached = ctx
        .policies
        .get_or_fetch(&key, || async {
            Err::<iaprun::google::Policy, _>(iaprun::google::Error::Config(
                "the refresh left the policy cached".into(),
            ))
        })
        .await
        .expect("cached policy");
    assert_eq!(
        cached.etag.as_deref(),
        Some(cached_etag.as_str()),
        "the cache is stale"
    );

    // Update the binding through the stale context: plan, then apply, as Terraform does.
    world.emulator.clear_requests();
    let mut proposed = state.clone();
    proposed.set_attr(
        "members",
        TfValue::string_set(["user:a@example.com", "user:new@example.com"]),
    );
    let config = config_of(&binding.schema.block, &proposed);
    let planned = engine
        .plan_resource(
            binding,
            state.clone(),
            proposed,
            config.clone(),
            read.private.clone(),
        )
        .await;
    assert!(
        !planned.diagnostics.has_errors() && planned.requires_replace.is_empty(),
        "{planned:?}"
    );
    let updated = engine
        .apply_resource(
            binding,
            ApplyRequest {
                prior_state: state.clone(),
                planned_state: planned.planned_state,
                config,
                planned_private: planned.planned_private,
            },
        )
        .await;
    assert!(
        !updated.diagnostics.has_errors(),
        "{:?}",
        updated.diagnostics
    );
    assert_eq!(
        written_etags(&world),
        vec![fresh_etag],
        "the write used the etag of a fresh read, not the cached one"
    );
    let after = world.iap_policy(&resource).await;
    assert_eq!(
        members(&after, ACCESSOR, None),
        vec!["user:a@example.com", "user:new@example.com"]
    );
    assert_eq!(
        members(&after, TUNNEL, None),
        vec!["user:tunnel@example.com"]
    );
    assert_eq!(
        members(&after, ACCESSOR, Some("office")),
        vec!["user:office@example.com"]
    );

    // Delete removes exactly this (role, no condition) binding.
    let destroy = engine
        .plan_resource(
            binding,
            updated.state.clone(),
            TfValue::Null,
            TfValue::Null,
            updated.private,
        )
        .await;
    assert!(destroy.planned_state.is_null(), "{destroy:?}");
    let deleted = engine
        .apply_resource(
            binding,
            ApplyRequest {
                prior_state: updated.state,
                planned_state: TfValue::Null,
                config: TfValue::Null,
                planned_private: destroy.planned_private,
            },
        )
        .await;
    assert!(
        !deleted.diagnostics.has_errors(),
        "{:?}",
        deleted.diagnostics
    );
    let after = world.iap_policy(&resource).await;
    assert!(members(&after, ACCESSOR, None).is_empty(), "{after}");
    assert_eq!(
        members(&after, TUNNEL, None),
        vec!["user:tunnel@example.com"]
    );
    assert_eq!(
        members(&after, ACCESSOR, Some("office")),
        vec!["user:office@example.com"]
    );
    world.assert_conformant();
}

// ---- secrets -----------------------------------------------------------------------------------

const ACCESS_TOKEN: &str = "ya29.reliability-access-token-4f1c9e";
const CLIENT_SECRET: &str = "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2a7b";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn trace_logs_never_show_the_access_token_or_the_client_secret() {
    let world = World::start().await;
    world.load_balanced_service("hello", "web").await;
    let base = format!("http://{}/", world.host());
    // No IAPRUN_EMULATOR_HOST: the provider authenticates with the access token on every call.
    let provider = format!(
        r#"  access_token                     = "{ACCESS_TOKEN}"
  run_custom_endpoint              = "{base}"
  iap_custom_endpoint              = "{base}"
  service_usage_custom_endpoint    = "{base}"
  resource_manager_custom_endpoint = "{base}"
  compute_custom_endpoint          = "{base}compute/v1/""#
    );
    let main_tf = format!(
        r#"{}
variable "client_secret" {{
  type      = string
  sensitive = true
  default   = "{CLIENT_SECRET}"
}}

resource "iaprun_backend_iap" "web" {{
  backend_service      = "web"
  oauth2_client_id     = "1234-reliability.apps.googleusercontent.com"
  oauth2_client_secret = var.client_secret
}}
"#,
        provider_header(&format!("{provider}\n"))
    );
    let ws = Workspace::new(&newest(), &main_tf);
    ws.init();
    let log = ws.dir().join("trace.log");
    let log_path = log.to_str().expect("path");
    let env = [("TF_LOG", "trace"), ("TF_LOG_PATH", log_path)];
    let mut outputs = Vec::new();
    for args in [
        &["apply", "-auto-approve", "-no-color"][..],
        &["plan", "-no-color"][..],
        &["destroy", "-auto-approve", "-no-color"][..],
    ] {
        let run = ws.run_with_env(args, &env);
        outputs.push(run.expect_success());
    }
    let trace = std::fs::read_to_string(&log).expect("trace log");
    assert!(
        trace.contains("google api response"),
        "the provider's own trace lines are in the log"
    );
    let sent_secret = world.emulator.requests().iter().any(|r| {
        r.path.ends_with("/global/backendServices/web")
            && r.body["iap"]["oauth2ClientSecret"].is_string()
    });
    assert!(
        sent_secret,
        "the secret was sent (the emulator logs it redacted)"
    );
    for secret in [ACCESS_TOKEN, CLIENT_SECRET] {
        assert!(
            !trace.contains(secret),
            "{secret} appears in the trace log at line {:?}",
            trace.lines().find(|l| l.contains(secret))
        );
        for run in &outputs {
            assert!(
                !run.stdout.contains(secret) && !run.stderr.contains(secret),
                "{secret} in the output of {run}"
            );
        }
    }
}
