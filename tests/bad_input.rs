//! A corpus of malformed configurations: each is rejected at `terraform validate` or `plan` with an
//! error diagnostic whose range points at the attribute at fault, and none makes a mutating API call.
//! One initialised workspace per worker thread; main.tf is rewritten per case, `validate -json`
//! runs first and `plan -json` only when validation passes.

use std::sync::Mutex;

use serde_json::{json, Value};

use crate::support::{newest, Workspace};
use crate::world::{provider_block, World, PROJECT, REGION, REQUIRED_PROVIDERS};

/// One malformed configuration: its name, the attribute its error must point at (a word that
/// appears on the line the diagnostic's range starts on), and the HCL after `required_providers`.
struct Case {
    name: &'static str,
    attribute: &'static str,
    hcl: String,
}

/// A valid provider block plus `body`.
fn with_provider(body: &str) -> String {
    format!("{}\n{body}\n", provider_block(""))
}

/// A provider block with `settings` instead of the defaults, plus a valid resource.
fn provider_only(settings: &str) -> String {
    format!(
        "provider \"iaprun\" {{\n{settings}\n}}\n\nresource \"iaprun_service_iap\" \"s\" {{\n  service  = \"svc-a\"\n  project  = \"{PROJECT}\"\n  location = \"{REGION}\"\n}}\n"
    )
}

fn resource_name(service: &str) -> String {
    format!("projects/{PROJECT}/iap_web/cloud_run-{REGION}/services/{service}")
}

/// An access binding on svc-a with these attribute lines.
fn binding(lines: &str) -> String {
    with_provider(&format!(
        "resource \"iaprun_access_binding\" \"b\" {{\n  resource = \"{}\"\n{lines}\n}}",
        resource_name("svc-a")
    ))
}

fn binding_members(members: &str) -> String {
    binding(&format!("  members  = [{members}]"))
}

fn binding_resource(resource: &str) -> String {
    with_provider(&format!(
        "resource \"iaprun_access_binding\" \"b\" {{\n  resource = \"{resource}\"\n  members  = [\"user:a@example.com\"]\n}}"
    ))
}

fn binding_condition(title: &str, expression: &str) -> String {
    binding(&format!(
        "  members  = [\"user:a@example.com\"]\n  condition {{\n    title      = \"{title}\"\n    expression = \"{expression}\"\n  }}"
    ))
}

fn service_iap(lines: &str) -> String {
    with_provider(&format!(
        "resource \"iaprun_service_iap\" \"s\" {{\n{lines}\n}}"
    ))
}

fn backend_iap(lines: &str) -> String {
    with_provider(&format!(
        "variable \"secret\" {{\n  type      = string\n  sensitive = true\n  default   = \"s3cret\"\n}}\n\nresource \"iaprun_backend_iap\" \"b\" {{\n{lines}\n}}"
    ))
}

fn import(to: &str, id: &str) -> String {
    let body = match to {
        "iaprun_service_iap.s" => "resource \"iaprun_service_iap\" \"s\" {\n  service = \"svc-a\"\n}".to_string(),
        "iaprun_backend_iap.b" => "resource \"iaprun_backend_iap\" \"b\" {\n  backend_service = \"web\"\n}".to_string(),
        "iaprun_access_member.m" => format!(
            "resource \"iaprun_access_member\" \"m\" {{\n  resource = \"{}\"\n  member   = \"user:bob@example.com\"\n}}",
            resource_name("svc-a")
        ),
        _ => format!(
            "resource \"iaprun_access_binding\" \"b\" {{\n  resource = \"{}\"\n  members  = [\"user:a@example.com\"]\n}}",
            resource_name("svc-a")
        ),
    };
    with_provider(&format!(
        "import {{\n  to = {to}\n  id = \"{id}\"\n}}\n\n{body}"
    ))
}

fn case(name: &'static str, attribute: &'static str, hcl: String) -> Case {
    Case {
        name,
        attribute,
        hcl,
    }
}

fn corpus() -> Vec<Case> {
    let long = "a".repeat(300);
    let very_long_member = format!("\"user:{long}@example.com\"");
    let long_title = "t".repeat(101);
    vec![
        // members
        case("member without type", "members", binding_members("\"bob@example.com\"")),
        case("member in upper case", "members", binding_members("\"user:Bob@Example.com\"")),
        case("public allUsers", "members", binding_members("\"allUsers\"")),
        case("public allAuthenticatedUsers", "members", binding_members("\"allAuthenticatedUsers\"")),
        case("member with empty email", "members", binding_members("\"user:\"")),
        case("empty member", "members", binding_members("\"\"")),
        case("member with spaces", "members", binding_members("\" user:a@example.com\"")),
        case("service account not an email", "members", binding_members("\"serviceAccount:robot\"")),
        case("group with two at signs", "members", binding_members("\"group:team@@example.com\"")),
        case("empty domain", "members", binding_members("\"domain:\"")),
        case("deleted principal", "members", binding_members("\"deleted:user:x@example.com?uid=1\"")),
        case("unicode member", "members", binding_members("\"user:bjørn@exämple.com\"")),
        case("very long member", "members", binding_members(&very_long_member)),
        case("no members", "members", binding_members("")),
        // roles
        case("role without roles/", "role", binding("  members  = [\"user:a@example.com\"]\n  role     = \"iap.httpsResourceAccessor\"")),
        case("role roles/ only", "role", binding("  members  = [\"user:a@example.com\"]\n  role     = \"roles/\"")),
        case("role with a space", "role", binding("  members  = [\"user:a@example.com\"]\n  role     = \"roles/iap httpsResourceAccessor\"")),
        case("empty role", "role", binding("  members  = [\"user:a@example.com\"]\n  role     = \"\"")),
        case("custom role without /roles/", "role", binding("  members  = [\"user:a@example.com\"]\n  role     = \"projects/world-project/custom\"")),
        // IAP resource names
        case("cloud-run with a hyphen", "resource", binding_resource(&format!("projects/{PROJECT}/iap_web/cloud-run-{REGION}/services/svc-a"))),
        case("bare service as resource", "resource", binding_resource("svc-a")),
        case("zone in resource", "resource", binding_resource(&format!("projects/{PROJECT}/iap_web/cloud_run-us-central1-a/services/svc-a"))),
        case("bad project in resource", "resource", binding_resource("projects/Bad_Project/iap_web/compute/services/web")),
        case("upper-case backend in resource", "resource", binding_resource(&format!("projects/{PROJECT}/iap_web/compute/services/Web"))),
        case("empty resource", "resource", binding_resource("")),
        case("very long resource", "resource", binding_resource(&format!("projects/{PROJECT}/iap_web/compute/services/{long}"))),
        case("app engine resource", "resource", binding_resource(&format!("projects/{PROJECT}/iap_web/appengine-x/services/default"))),
        // conditions
        case("empty condition title", "title", binding_condition("", "request.time < timestamp(\\\"2030-01-01T00:00:00Z\\\")")),
        case("empty condition expression", "expression", binding_condition("t", "")),
        case("blank condition expression", "expression", binding_condition("t", "   ")),
        case("condition title too long", "title", binding_condition(&long_title, "true")),
        // projects
        case("upper-case project", "project", service_iap("  service = \"svc-a\"\n  project = \"UPPER-project\"")),
        case("project too short", "project", service_iap("  service = \"svc-a\"\n  project = \"ab\"")),
        case("project with underscore", "project", service_iap("  service = \"svc-a\"\n  project = \"my_project\"")),
        case("provider project with a space", "project", provider_only(&format!("  project = \"bad project\"\n  region  = \"{REGION}\""))),
        // regions
        case("zone as location", "location", service_iap("  service  = \"svc-a\"\n  location = \"us-central1-a\"")),
        case("continent as region", "region", backend_iap("  backend_service = \"web\"\n  region          = \"europe\"")),
        case("provider region in upper case", "region", provider_only(&format!("  project = \"{PROJECT}\"\n  region  = \"US-CENTRAL1\""))),
        case("empty location", "location", service_iap("  service  = \"svc-a\"\n  location = \"\"")),
        // Cloud Run service names
        case("service in upper case", "service", service_iap("  service = \"Hello\"")),
        case("service as a full path", "service", service_iap(&format!("  service = \"projects/{PROJECT}/locations/{REGION}/services/svc-a\""))),
        case("service name too long", "service", service_iap(&format!("  service = \"{}\"", "s".repeat(60)))),
        case("service ending with a hyphen", "service", service_iap("  service = \"hello-\"")),
        case("empty service", "service", service_iap("  service = \"\"")),
        case("unicode service", "service", service_iap("  service = \"héllo\"")),
        // backend service names
        case("backend with underscore", "backend_service", backend_iap("  backend_service = \"web_backend\"")),
        case("backend as a URL", "backend_service", backend_iap(&format!("  backend_service = \"https://www.googleapis.com/compute/v1/projects/{PROJECT}/global/backendServices/web\""))),
        case("backend starting with a digit", "backend_service", backend_iap("  backend_service = \"1web\"")),
        // conflicting and incomplete settings
        case("secret without client id", "oauth2_client_secret", backend_iap("  backend_service      = \"web\"\n  oauth2_client_secret = var.secret")),
        case("client id without secret", "oauth2_client_id", backend_iap("  backend_service  = \"web\"\n  oauth2_client_id = \"1234-x.apps.googleusercontent.com\"")),
        case("empty client id", "oauth2_client_id", backend_iap("  backend_service      = \"web\"\n  oauth2_client_id     = \"\"\n  oauth2_client_secret = var.secret")),
        case("both secrets", "oauth2_client_secret_wo", backend_iap("  backend_service         = \"web\"\n  oauth2_client_id        = \"1234-x.apps.googleusercontent.com\"\n  oauth2_client_secret    = var.secret\n  oauth2_client_secret_wo = var.secret")),
        case("secret version without write-only secret", "oauth2_client_secret_wo_version", backend_iap("  backend_service                 = \"web\"\n  oauth2_client_id                = \"1234-x.apps.googleusercontent.com\"\n  oauth2_client_secret            = var.secret\n  oauth2_client_secret_wo_version = 1")),
        case("credentials and access token", "access_token", provider_only(&format!("  project      = \"{PROJECT}\"\n  region       = \"{REGION}\"\n  credentials  = \"/nonexistent/key.json\"\n  access_token = \"ya29.x\""))),
        case("empty access token", "access_token", provider_only(&format!("  project      = \"{PROJECT}\"\n  region       = \"{REGION}\"\n  access_token = \"\""))),
        case("credentials that are broken JSON", "credentials", provider_only(&format!("  project     = \"{PROJECT}\"\n  region      = \"{REGION}\"\n  credentials = \"{{not json\""))),
        case("endpoint not http", "run_custom_endpoint", provider_only(&format!("  project             = \"{PROJECT}\"\n  region              = \"{REGION}\"\n  run_custom_endpoint = \"ftp://example.com/\""))),
        case("zero request timeout", "request_timeout", provider_only(&format!("  project         = \"{PROJECT}\"\n  region          = \"{REGION}\"\n  request_timeout = \"0s\""))),
        case("request timeout not a duration", "request_timeout", provider_only(&format!("  project         = \"{PROJECT}\"\n  region          = \"{REGION}\"\n  request_timeout = \"soon\""))),
        case("create timeout not a duration", "create", service_iap("  service = \"svc-a\"\n  timeouts {\n    create = \"forever\"\n  }")),
        // check names
        case("unknown check name", "ignore_checks", service_iap("  service       = \"svc-a\"\n  ignore_checks = [\"no_such_check\"]")),
        case("empty check name", "ignore_checks", binding("  members       = [\"user:a@example.com\"]\n  ignore_checks = [\"\"]")),
        case("unicode check name", "ignore_checks", backend_iap("  backend_service = \"web\"\n  ignore_checks   = [\"ingress_ünknown\"]")),
        // import ids
        case("service import id with four parts", "id", import("iaprun_service_iap.s", "a/b/c/d")),
        case("service import id with a zone", "id", import("iaprun_service_iap.s", &format!("{PROJECT}/us-central1-a/svc-a"))),
        case("backend import id in a zone", "id", import("iaprun_backend_iap.b", &format!("projects/{PROJECT}/zones/us-central1-a/backendServices/web"))),
        case("binding import id without role", "id", import("iaprun_access_binding.b", &resource_name("svc-a"))),
        case("binding import id with a bad resource", "id", import("iaprun_access_binding.b", "not-a-resource roles/iap.httpsResourceAccessor")),
        case("member import id without type", "id", import("iaprun_access_member.m", &format!("{} roles/iap.httpsResourceAccessor bob@example.com", resource_name("svc-a")))),
        case("member import id in upper case", "id", import("iaprun_access_member.m", &format!("{} roles/iap.httpsResourceAccessor user:Bob@example.com", resource_name("svc-a")))),
    ]
}

/// The id of the case's import block, if it has one.
fn import_id(hcl: &str) -> Option<String> {
    hcl.contains("import {").then(|| {
        hcl.lines()
            .find_map(|l| l.trim().strip_prefix("id = \""))
            .map(|rest| rest.trim_end_matches('"').to_string())
            .unwrap_or_default()
    })
}

/// The text of `line` (1-based) of the case's main.tf.
fn line_of(hcl: &str, line: u64) -> &str {
    hcl.lines()
        .nth(line.saturating_sub(1) as usize)
        .unwrap_or_default()
}

/// Error diagnostics of `terraform validate -json` (one JSON document).
fn validate_errors(ws: &Workspace) -> Vec<Value> {
    let run = ws.validate_json();
    run.json()["diagnostics"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|d| d["severity"] == "error")
        .collect()
}

/// Error diagnostics of `terraform plan -json` (JSON lines).
fn plan_errors(ws: &Workspace) -> Vec<Value> {
    let run = ws.plan_json();
    run.json_lines()
        .into_iter()
        .filter(|l| l["type"] == "diagnostic" && l["diagnostic"]["severity"] == "error")
        .map(|l| l["diagnostic"].clone())
        .collect()
}

/// Runs one case; `Err` says how it was not rejected properly.
fn run_case(ws: &Workspace, case: &Case) -> Result<&'static str, String> {
    let hcl = format!("{REQUIRED_PROVIDERS}\n{}", case.hcl);
    ws.write("main.tf", &hcl);
    let mut stage = "validate";
    let mut errors = validate_errors(ws);
    if errors.is_empty() {
        stage = "plan";
        errors = plan_errors(ws);
    }
    if errors.is_empty() {
        return Err("accepted by validate and plan".to_string());
    }
    if let Some(id) = import_id(&case.hcl) {
        // Terraform attaches no source range to ImportResourceState diagnostics: the error must
        // say the import id is at fault and what is wrong with it.
        let explained = errors.iter().any(|d| {
            d["summary"] == "Invalid import id"
                && d["detail"].as_str().is_some_and(|t| t.contains("is not"))
        });
        return if explained {
            Ok(stage)
        } else {
            Err(format!(
                "{stage} errors do not explain the import id {id:?}: {errors:?}"
            ))
        };
    }
    let pointing = errors.iter().any(|d| {
        let line = d["range"]["start"]["line"].as_u64().unwrap_or(0);
        d["range"]["filename"] == "main.tf" && line_of(&hcl, line).contains(case.attribute)
    });
    if !pointing {
        let found: Vec<String> = errors
            .iter()
            .map(|d| {
                let line = d["range"]["start"]["line"].as_u64().unwrap_or(0);
                format!(
                    "{:?} at line {line} {:?}",
                    d["summary"].as_str().unwrap_or_default(),
                    line_of(&hcl, line)
                )
            })
            .collect();
        return Err(format!(
            "{stage} errors do not point at {}: {found:?}",
            case.attribute
        ));
    }
    Ok(stage)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_malformed_config_is_rejected_on_its_attribute_and_changes_nothing() {
    let world = World::start().await;
    world.run_service("svc-a", json!({})).await;
    world.load_balanced_service("hello", "web").await;
    let corpus = corpus();
    assert!(corpus.len() >= 40, "{} cases", corpus.len());
    let initial = format!("{REQUIRED_PROVIDERS}\n{}", with_provider(""));
    // Two workspaces, each initialised once, share the cases.
    let workspaces = [
        world.workspace(&newest(), &initial),
        world.workspace(&newest(), &initial),
    ];
    world.emulator.clear_requests();
    let next = Mutex::new(0usize);
    let outcomes: Mutex<Vec<(usize, Result<&'static str, String>)>> = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for ws in &workspaces {
            let (next, outcomes, corpus) = (&next, &outcomes, &corpus);
            scope.spawn(move || loop {
                let index = {
                    let mut n = next.lock().expect("counter");
                    *n += 1;
                    *n - 1
                };
                let Some(case) = corpus.get(index) else {
                    break;
                };
                let outcome = run_case(ws, case);
                outcomes.lock().expect("outcomes").push((index, outcome));
            });
        }
    });
    let mut outcomes = outcomes.into_inner().expect("outcomes");
    outcomes.sort_by_key(|(i, _)| *i);
    let failures: Vec<String> = outcomes
        .iter()
        .filter_map(|(i, o)| {
            o.as_ref()
                .err()
                .map(|e| format!("{}: {e}", corpus[*i].name))
        })
        .collect();
    let at_plan: Vec<&str> = outcomes
        .iter()
        .filter(|(_, o)| o.as_ref().is_ok_and(|s| *s == "plan"))
        .map(|(i, _)| corpus[*i].name)
        .collect();
    eprintln!("rejected at plan (the rest at validate): {at_plan:?}");
    assert!(
        failures.is_empty(),
        "{} of {} cases not rejected properly:\n{}",
        failures.len(),
        corpus.len(),
        failures.join("\n")
    );
    assert!(
        world.mutating_requests().is_empty(),
        "no case changed anything: {:?}",
        world.mutating_requests()
    );
}
