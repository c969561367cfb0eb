//! The foundation of the provider as Terraform sees it: the schemas every supported terraform reads
//! match DESIGN.md, bad input is reported on the attribute at fault, and the plugin process
//! behaves as go-plugin expects (mutual TLS, Shutdown, the magic cookie, SIGINT).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::plugin;
use crate::support::{
    flatten, terraform_binaries, ClientIdentity, Launch, PluginProcess, Terraform, Workspace,
};
use crate::world::{provider_header, World, PROJECT, REGION};

const SOURCE: &str = "registry.terraform.io/iaprun/iaprun";
const RESOURCE_TYPES: [&str; 5] = [
    "iaprun_service_iap",
    "iaprun_backend_iap",
    "iaprun_access_binding",
    "iaprun_iap_settings",
    "iaprun_access_member",
];

// ---- schemas --------------------------------------------------------------------------------

/// How a configuration may set an attribute.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Mode {
    Required,
    /// Optional, nothing filled in when unset.
    Optional,
    /// Optional with a default the provider fills in, so also computed.
    Defaulted,
    /// Set by the provider only.
    Computed,
}

/// One attribute as DESIGN.md sections 3 and 4 describe it.
struct Expected {
    name: &'static str,
    mode: Mode,
    /// The attribute's type in `providers schema -json` form.
    ty: Value,
    sensitive: bool,
    write_only: bool,
}

fn attr(name: &'static str, mode: Mode, ty: Value) -> Expected {
    Expected {
        name,
        mode,
        ty,
        sensitive: false,
        write_only: false,
    }
}

fn string(name: &'static str, mode: Mode) -> Expected {
    attr(name, mode, json!("string"))
}

fn sensitive(mut e: Expected) -> Expected {
    e.sensitive = true;
    e
}

fn string_set() -> Value {
    json!(["set", "string"])
}

/// Section 3: every setting optional, only the access token sensitive.
fn provider_attributes() -> Vec<Expected> {
    let mut all = vec![
        string("project", Mode::Optional),
        string("region", Mode::Optional),
        string("credentials", Mode::Optional),
        sensitive(string("access_token", Mode::Optional)),
        string("request_timeout", Mode::Optional),
    ];
    for endpoint in [
        "run_custom_endpoint",
        "iap_custom_endpoint",
        "compute_custom_endpoint",
        "service_usage_custom_endpoint",
        "resource_manager_custom_endpoint",
    ] {
        all.push(string(endpoint, Mode::Optional));
    }
    all
}

/// Section 4, per resource type.
fn resource_attributes(resource_type: &str) -> Vec<Expected> {
    match resource_type {
        "iaprun_service_iap" => vec![
            string("service", Mode::Required),
            string("location", Mode::Defaulted),
            string("project", Mode::Defaulted),
            attr("grant_iap_invoker", Mode::Defaulted, json!("bool")),
            attr("ignore_checks", Mode::Optional, string_set()),
            string("id", Mode::Computed),
            string("project_number", Mode::Computed),
            string("iap_resource_name", Mode::Computed),
            string("jwt_audience", Mode::Computed),
            string("iap_service_agent", Mode::Computed),
            string("uri", Mode::Computed),
            // Issue 16: what the resource added, in state; issue 15: the one-run fix path.
            attr("invoker_grants", Mode::Computed, string_set()),
            attr("checks_after", Mode::Optional, json!(["list", "string"])),
        ],
        "iaprun_backend_iap" => vec![
            string("backend_service", Mode::Required),
            string("region", Mode::Optional),
            string("project", Mode::Defaulted),
            string("oauth2_client_id", Mode::Optional),
            sensitive(string("oauth2_client_secret", Mode::Optional)),
            Expected {
                write_only: true,
                ..sensitive(string("oauth2_client_secret_wo", Mode::Optional))
            },
            attr(
                "oauth2_client_secret_wo_version",
                Mode::Optional,
                json!("number"),
            ),
            attr("grant_iap_invoker", Mode::Defaulted, json!("bool")),
            attr("ignore_checks", Mode::Optional, string_set()),
            string("id", Mode::Computed),
            string("project_number", Mode::Computed),
            string("iap_resource_name", Mode::Computed),
            string("backend_service_id", Mode::Computed),
            string("jwt_audience", Mode::Computed),
            string("load_balancing_scheme", Mode::Computed),
            attr(
                "cloud_run_services",
                Mode::Computed,
                json!(["list", "string"]),
            ),
            attr("invoker_grants", Mode::Computed, string_set()),
            attr("checks_after", Mode::Optional, json!(["list", "string"])),
        ],
        "iaprun_access_binding" => vec![
            string("resource", Mode::Required),
            string("role", Mode::Defaulted),
            attr("members", Mode::Required, string_set()),
            attr("ignore_checks", Mode::Optional, string_set()),
            string("id", Mode::Computed),
            string("etag", Mode::Computed),
        ],
        "iaprun_iap_settings" => vec![
            string("resource", Mode::Required),
            string("id", Mode::Computed),
        ],
        "iaprun_access_member" => vec![
            string("resource", Mode::Required),
            string("role", Mode::Defaulted),
            string("member", Mode::Required),
            attr("ignore_checks", Mode::Optional, string_set()),
            string("id", Mode::Computed),
        ],
        other => panic!("no expectation for {other}"),
    }
}

/// Checks a block's attributes against `expected`. Attributes the design does not name may exist
/// ("details may grow") but only as computed values a configuration cannot set.
fn check_attributes(
    what: &str,
    block: &Value,
    expected: &[Expected],
    write_only_known: bool,
    problems: &mut Vec<String>,
) {
    let attributes = block["attributes"].as_object().cloned().unwrap_or_default();
    for e in expected {
        let Some(a) = attributes.get(e.name) else {
            problems.push(format!("{what}: attribute {} is missing", e.name));
            continue;
        };
        let flag = |key: &str| a.get(key).and_then(Value::as_bool).unwrap_or(false);
        let (required, optional, computed) = (flag("required"), flag("optional"), flag("computed"));
        let mode_ok = match e.mode {
            Mode::Required => required && !optional && !computed,
            Mode::Optional => optional && !required && !computed,
            Mode::Defaulted => optional && computed && !required,
            Mode::Computed => computed && !optional && !required,
        };
        if !mode_ok {
            problems.push(format!(
                "{what}.{}: expected {:?}, got required={required} optional={optional} computed={computed}",
                e.name, e.mode
            ));
        }
        if a["type"] != e.ty {
            problems.push(format!(
                "{what}.{}: type {} instead of {}",
                e.name, a["type"], e.ty
            ));
        }
        if flag("sensitive") != e.sensitive {
            problems.push(format!(
                "{what}.{}: sensitive={} instead of {}",
                e.name,
                flag("sensitive"),
                e.sensitive
            ));
        }
        // Terraform before 1.11 does not know write-only attributes and prints no such flag.
        if write_only_known && flag("write_only") != e.write_only {
            problems.push(format!(
                "{what}.{}: write_only={} instead of {}",
                e.name,
                flag("write_only"),
                e.write_only
            ));
        }
        let described = a["description"]
            .as_str()
            .is_some_and(|d| !d.trim().is_empty());
        if !described {
            problems.push(format!("{what}.{}: no description", e.name));
        }
    }
    for (name, a) in &attributes {
        if expected.iter().any(|e| e.name == name) {
            continue;
        }
        let settable = a["required"] == true || a["optional"] == true;
        if settable || a["computed"] != true {
            problems.push(format!(
                "{what}.{name}: not in the design, yet a configuration can set it ({a})"
            ));
        }
    }
}

/// A nested block's attribute: name, required, optional, type.
type NestedAttribute = (String, bool, bool, Value);

/// Names and flags of a nested block's attributes, for compact comparison.
fn nested_attributes(block: &Value) -> Vec<NestedAttribute> {
    let mut out: Vec<NestedAttribute> = block["attributes"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(name, a)| {
            (
                name.clone(),
                a["required"] == true,
                a["optional"] == true,
                a["type"].clone(),
            )
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn check_block_types(resource_type: &str, block: &Value, problems: &mut Vec<String>) {
    let block_types = block["block_types"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    let names: BTreeSet<&str> = block_types.keys().map(String::as_str).collect();
    let s = || json!("string");
    let (expected_names, nested): (Vec<&str>, Vec<NestedAttribute>) = match resource_type {
        "iaprun_access_binding" | "iaprun_access_member" => (
            vec!["condition"],
            vec![
                ("description".into(), false, true, s()),
                ("expression".into(), true, false, s()),
                ("title".into(), true, false, s()),
            ],
        ),
        // The settings blocks mirror the API (DESIGN 4); the first holds one attribute of its own.
        "iaprun_iap_settings" => (
            vec!["access_settings", "application_settings", "timeouts"],
            vec![(
                "identity_sources".into(),
                false,
                true,
                json!(["list", "string"]),
            )],
        ),
        _ => (
            vec!["timeouts"],
            vec![
                ("create".into(), false, true, s()),
                ("delete".into(), false, true, s()),
                ("update".into(), false, true, s()),
            ],
        ),
    };
    if names != expected_names.iter().copied().collect::<BTreeSet<_>>() {
        problems.push(format!(
            "{resource_type}: blocks {names:?} instead of {expected_names:?}"
        ));
        return;
    }
    let only = &block_types[expected_names[0]];
    if only["nesting_mode"] != "single" {
        problems.push(format!(
            "{resource_type}.{}: nesting mode {} instead of single",
            expected_names[0], only["nesting_mode"]
        ));
    }
    let got = nested_attributes(&only["block"]);
    if got != nested {
        problems.push(format!(
            "{resource_type}.{}: attributes {got:?} instead of {nested:?}",
            expected_names[0]
        ));
    }
}

/// A valid configuration that uses every resource type, both nested blocks and most settings.
fn valid_configuration() -> String {
    format!(
        r#"{header}
resource "iaprun_service_iap" "hello" {{
  service           = "hello"
  grant_iap_invoker = true
  ignore_checks     = ["no_organization"]
  timeouts {{
    create = "5m"
  }}
}}

resource "iaprun_backend_iap" "web" {{
  backend_service      = "web"
  oauth2_client_id     = "client-1.apps.googleusercontent.com"
  oauth2_client_secret = "not-a-real-secret"
  timeouts {{
    update = "5m"
  }}
}}

resource "iaprun_access_binding" "users" {{
  resource = iaprun_service_iap.hello.iap_resource_name
  members  = ["user:alice@example.com"]
  condition {{
    title      = "until-2030"
    expression = "request.time < timestamp(\"2030-01-01T00:00:00Z\")"
  }}
}}
"#,
        header = provider_header("  request_timeout = \"30s\"\n")
    )
}

/// init, validate and `providers schema -json` with one terraform; the schema problems found.
fn schema_problems(terraform: &Terraform) -> Vec<String> {
    let ws = Workspace::new(terraform, &valid_configuration());
    ws.init();
    let validate = ws.validate_json();
    assert!(validate.success(), "{validate}");
    assert_eq!(validate.json()["valid"], true, "{validate}");
    let schemas = ws.providers_schema_json();
    let ours = &schemas["provider_schemas"][SOURCE];
    assert!(ours.is_object(), "no schema for {SOURCE}: {schemas}");
    let write_only_known = terraform.minor_version() >= (1, 11);
    let mut problems = Vec::new();
    let provider = &ours["provider"]["block"];
    check_attributes(
        "provider",
        provider,
        &provider_attributes(),
        write_only_known,
        &mut problems,
    );
    if provider["block_types"]
        .as_object()
        .is_some_and(|b| !b.is_empty())
    {
        problems.push(format!(
            "provider: unexpected blocks {}",
            provider["block_types"]
        ));
    }
    let resources = ours["resource_schemas"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    let names: BTreeSet<&str> = resources.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        RESOURCE_TYPES.into_iter().collect(),
        "resource types"
    );
    for resource_type in RESOURCE_TYPES {
        let block = &resources[resource_type]["block"];
        check_attributes(
            resource_type,
            block,
            &resource_attributes(resource_type),
            write_only_known,
            &mut problems,
        );
        check_block_types(resource_type, block, &mut problems);
    }
    problems
        .into_iter()
        .map(|p| format!("terraform {}: {p}", terraform.version))
        .collect()
}

#[test]
fn every_terraform_installs_validates_and_reads_the_designed_schemas() {
    let binaries = terraform_binaries();
    assert!(
        binaries.len() >= 2,
        "both the newest terraform and {} are needed: {binaries:?}",
        crate::support::terraform::OLDEST_TERRAFORM
    );
    // One thread per terraform: the runs share nothing.
    let problems: Vec<String> = std::thread::scope(|scope| {
        let runs: Vec<_> = binaries
            .iter()
            .map(|t| scope.spawn(move || schema_problems(t)))
            .collect();
        runs.into_iter()
            .flat_map(|r| r.join().expect("schema run panicked"))
            .collect()
    });
    assert!(
        problems.is_empty(),
        "schema problems:\n{}",
        problems.join("\n")
    );
}

// ---- diagnostics on the attribute at fault ---------------------------------------------------

/// Unknown check names on every resource type and a malformed member.
fn invalid_configuration() -> String {
    format!(
        r#"{header}
resource "iaprun_service_iap" "hello" {{
  service       = "hello"
  ignore_checks = ["no_organization", "no_such_service_check"]
}}

resource "iaprun_backend_iap" "web" {{
  backend_service = "web"
  ignore_checks   = ["no_such_backend_check"]
}}

resource "iaprun_access_binding" "users" {{
  resource      = "projects/{PROJECT}/iap_web/cloud_run-{REGION}/services/hello"
  ignore_checks = ["public_member", "no_such_binding_check"]
  members       = ["alice@example.com"]
}}
"#,
        header = provider_header("")
    )
}

/// The 1-based number of the only line of `text` containing `needle`.
fn line_of(text: &str, needle: &str) -> u64 {
    let lines: Vec<usize> = text
        .lines()
        .enumerate()
        .filter(|(_, l)| l.contains(needle))
        .map(|(i, _)| i + 1)
        .collect();
    assert_eq!(lines.len(), 1, "{needle:?} on exactly one line");
    lines[0] as u64
}

/// Validate reports each problem on its line; bad import ids are refused by name. Returns problems.
fn diagnostics_problems(terraform: &Terraform, emulator_host: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let config = invalid_configuration();
    let mut ws = Workspace::new(terraform, &config);
    ws.env("IAPRUN_EMULATOR_HOST", emulator_host);
    ws.init();
    let run = ws.validate_json();
    assert_eq!(run.code(), 1, "{run}");
    let report = run.json();
    assert_eq!(report["valid"], false, "{run}");
    let diagnostics = report["diagnostics"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut expected = vec![
        ("Unknown check name", "no_such_service_check"),
        ("Unknown check name", "no_such_backend_check"),
        ("Unknown check name", "no_such_binding_check"),
        ("member_format", "alice@example.com"),
    ];
    for d in &diagnostics {
        let summary = d["summary"].as_str().unwrap_or_default();
        let detail = d["detail"].as_str().unwrap_or_default();
        let Some(position) = expected
            .iter()
            .position(|(s, name)| summary.starts_with(s) && detail.contains(name))
        else {
            problems.push(format!("unexpected diagnostic {d}"));
            continue;
        };
        let (_, name) = expected.remove(position);
        if d["severity"] != "error" {
            problems.push(format!("{name}: not an error: {d}"));
        }
        if d["range"]["filename"] != "main.tf" {
            problems.push(format!("{name}: no range in main.tf: {d}"));
        }
        let want = line_of(&config, name);
        if d["range"]["start"]["line"].as_u64() != Some(want) {
            problems.push(format!("{name}: expected on line {want}: {d}"));
        }
    }
    for (summary, name) in expected {
        problems.push(format!("no {summary:?} diagnostic naming {name}: {run}"));
    }
    // Only the unknown name is refused: a known one beside it passes.
    let known_names_pass = config.replace("no_such_service_check", "double_iap");
    ws.write("main.tf", &known_names_pass);
    let run = ws.validate_json();
    let remaining: Vec<String> = run.json()["diagnostics"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|d| d["detail"].as_str().map(str::to_string))
        .collect();
    if remaining.iter().any(|d| d.starts_with("\"double_iap\"")) {
        problems.push(format!("the known name double_iap was refused: {run}"));
    }

    // Bad import ids, one per resource type, against a valid configuration.
    ws.write("main.tf", &valid_configuration());
    for (address, id, because) in [
        (
            "iaprun_service_iap.hello",
            format!("projects/{PROJECT}/locations/{REGION}/services/Hello_World"),
            "\"Hello_World\" is not a valid Cloud Run service name",
        ),
        (
            "iaprun_backend_iap.web",
            format!("projects/{PROJECT}/zones/{REGION}-a/backendServices/web"),
            "is not a backend service id",
        ),
        (
            "iaprun_access_binding.users",
            format!("projects/{PROJECT}/iap_web/compute/services/web"),
            "is not an access binding id",
        ),
    ] {
        let run = ws.run(&["import", "-no-color", "-input=false", address, &id]);
        let stderr = flatten(&run.stderr);
        if run.success()
            || !stderr.contains("Error: Invalid import id")
            || !stderr.contains(because)
        {
            problems.push(format!(
                "import {address} {id:?} should fail with \"Invalid import id\" and {because:?}:\n{run}"
            ));
        }
    }
    let state = ws.run(&["state", "list"]);
    if !state.stdout.trim().is_empty() {
        problems.push(format!("failed imports left state behind: {state}"));
    }
    problems
        .into_iter()
        .map(|p| format!("terraform {}: {p}", terraform.version))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_check_names_members_and_import_ids_are_reported_on_what_is_wrong() {
    let world = World::start().await;
    world.emulator.clear_requests();
    let binaries = terraform_binaries();
    let host = world.host();
    let problems: Vec<String> = std::thread::scope(|scope| {
        let runs: Vec<_> = binaries
            .iter()
            .map(|t| {
                let host = host.as_str();
                scope.spawn(move || diagnostics_problems(t, host))
            })
            .collect();
        runs.into_iter()
            .flat_map(|r| r.join().expect("diagnostics run panicked"))
            .collect()
    });
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
    assert!(
        world.mutating_requests().is_empty(),
        "bad input changed something: {:?}",
        world.mutating_requests()
    );
    world.assert_conformant();
}

// ---- the plugin process ----------------------------------------------------------------------

/// A provider started with AutoMTLS, as Terraform starts it.
fn start_with_mtls() -> PluginProcess {
    PluginProcess::start(Launch {
        client: Some(Arc::new(ClientIdentity::generate())),
        ..Launch::default()
    })
}

#[tokio::test]
async fn only_the_client_holding_terraforms_certificate_can_call_the_provider() {
    let provider = start_with_mtls();
    assert!(
        provider.handshake.server_certificate.is_some(),
        "AutoMTLS announces a server certificate: {}",
        provider.handshake.line
    );

    // TLS without a client certificate, with a certificate Terraform did not send, and plaintext.
    let admitted = plugin::strangers_admitted(&provider).await;
    assert!(admitted.is_empty(), "{}", admitted.join("\n"));

    // The certificate from the handshake's exchange works, and the refusals did not harm the server.
    let channel = provider.channel().await.expect("mutual TLS channel");
    let schema = plugin::get_schema(channel.clone())
        .await
        .expect("GetSchema with Terraform's certificate");
    let names: BTreeSet<&str> = schema.resource_schemas.keys().map(String::as_str).collect();
    assert_eq!(names, RESOURCE_TYPES.into_iter().collect());
    let provider_attributes: BTreeSet<String> = schema
        .provider
        .and_then(|s| s.block)
        .map(|b| b.attributes.into_iter().map(|a| a.name).collect())
        .unwrap_or_default();
    assert!(
        provider_attributes.contains("access_token") && provider_attributes.contains("project"),
        "{provider_attributes:?}"
    );
    let health = plugin::health(channel).await.expect("health check");
    assert_eq!(health.status, 1, "the plugin service reports SERVING");
}

// Several threads: the client's connection tasks must run while this thread waits for the exit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_shutdown_ends_the_process() {
    let mut provider = start_with_mtls();
    let channel = provider.channel().await.expect("mutual TLS channel");
    plugin::get_schema(channel.clone())
        .await
        .expect("GetSchema before Shutdown");
    plugin::shutdown(channel).await.expect("Shutdown answers");
    let replied = Instant::now();
    // The generous limit only proves Shutdown ends the process; its speed is a benchmark's business.
    let status = provider
        .wait_for_exit(Duration::from_secs(5))
        .expect("the provider exits after Shutdown");
    eprintln!(
        "provider exited {} ms after the Shutdown reply",
        replied.elapsed().as_millis()
    );
    assert!(status.success(), "exit status after Shutdown: {status}");
}

#[test]
fn without_the_magic_cookie_the_binary_explains_itself() {
    let child = plugin::spawn(&Launch {
        without_cookie: true,
        ..Launch::default()
    });
    let output = child.wait_with_output().expect("the binary runs");
    assert!(!output.status.success(), "exit status {}", output.status);
    assert!(
        output.stdout.is_empty(),
        "no handshake line: {:?}",
        String::from_utf8_lossy(&output.stdout)
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    let text = stderr.trim();
    assert!(
        !text.contains("\n\n") && text.lines().count() <= 3,
        "one paragraph: {text:?}"
    );
    for words in [
        "terraform-provider-iaprun",
        "Terraform provider plugin",
        "not meant to be run directly",
        "terraform init",
    ] {
        assert!(text.contains(words), "{words:?} in {text:?}");
    }
}

#[tokio::test]
async fn sigint_leaves_the_provider_answering() {
    let mut provider = start_with_mtls();
    let channel = provider.channel().await.expect("mutual TLS channel");
    plugin::get_schema(channel.clone())
        .await
        .expect("GetSchema before SIGINT");
    provider.signal(libc::SIGINT);
    provider.signal(libc::SIGINT);
    // SIGINT's default action would end the process at once; give it the chance to.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(provider.is_running(), "the provider died of SIGINT");
    let schema = plugin::get_schema(channel.clone())
        .await
        .expect("GetSchema after SIGINT on the open connection");
    assert_eq!(schema.resource_schemas.len(), RESOURCE_TYPES.len());
    let fresh = provider
        .channel()
        .await
        .expect("a new connection after SIGINT");
    plugin::get_schema(fresh)
        .await
        .expect("GetSchema after SIGINT on a new connection");
    plugin::shutdown(channel).await.expect("Shutdown");
    assert!(provider.wait_for_exit(Duration::from_secs(5)).is_some());
}

/// Read coalescing in the run-time context: one call for concurrent reads, failures not cached.
#[tokio::test]
async fn concurrent_reads_make_one_call_and_failures_are_not_cached() {
    let cache: Arc<iaprun::resources::cache::Coalesced<u32, String>> =
        Arc::new(iaprun::resources::cache::Coalesced::default());
    let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let (cache, calls) = (cache.clone(), calls.clone());
        tasks.push(tokio::spawn(async move {
            cache
                .get_or_fetch("k", || async {
                    calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    tokio::task::yield_now().await;
                    Ok::<_, String>(7)
                })
                .await
        }));
    }
    for t in tasks {
        assert_eq!(t.await.expect("task"), Ok(7));
    }
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 1);

    let failed = cache
        .get_or_fetch("e", || async { Err::<u32, _>("down".to_string()) })
        .await;
    assert_eq!(failed, Err("down".to_string()));
    assert_eq!(cache.get_or_fetch("e", || async { Ok(3) }).await, Ok(3));

    cache.put("k", 9);
    assert_eq!(cache.get_or_fetch("k", || async { Ok(1) }).await, Ok(9));
    cache.invalidate("k");
    assert_eq!(cache.get_or_fetch("k", || async { Ok(1) }).await, Ok(1));
}
