//! What a newcomer runs first: the quickstart script end to end, every configuration under
//! examples/ through `terraform validate`, and the module composition and load-balancer examples
//! applied on the emulator with an empty re-plan.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::{json, Value};

use crate::support::{terraform_binaries, Terraform, Workspace};
use crate::world::{members_of, World, PROJECT, REGION};

const INVOKER: &str = "roles/run.invoker";
const ACCESSOR: &str = "roles/iap.httpsResourceAccessor";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Every directory under examples/ that holds a `.tf` file, relative to the repository, sorted.
fn example_dirs() -> Vec<String> {
    fn walk(dir: &Path, out: &mut Vec<String>) {
        let mut entries: Vec<PathBuf> = fs::read_dir(dir)
            .expect("read examples directory")
            .map(|e| e.expect("directory entry").path())
            .collect();
        entries.sort();
        if entries
            .iter()
            .any(|p| p.extension().is_some_and(|e| e == "tf"))
        {
            let relative = dir.strip_prefix(repo()).expect("under the repository");
            out.push(relative.to_string_lossy().into_owned());
        }
        for entry in entries.iter().filter(|p| p.is_dir()) {
            walk(entry, out);
        }
    }
    let mut dirs = Vec::new();
    walk(&repo().join("examples"), &mut dirs);
    dirs
}

/// Copies the files of `from` (recursively) into `to`.
pub(crate) fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).expect("create destination");
    for entry in fs::read_dir(from).expect("read source directory") {
        let path = entry.expect("directory entry").path();
        let target = to.join(path.file_name().expect("file name"));
        if path.is_dir() {
            copy_tree(&path, &target);
        } else {
            fs::copy(&path, &target).expect("copy example file");
        }
    }
}

/// Runs examples/quickstart/run.sh with the binaries cargo built for the tests (so the script
/// does not nest a cargo build) and the given extra environment, outside any caller TF_* setting.
fn run_quickstart(extra_env: &[(&str, &str)]) -> (bool, String, String) {
    let mut command = Command::new("bash");
    command
        .arg(repo().join("examples/quickstart/run.sh"))
        .current_dir(repo())
        .stdin(Stdio::null())
        .env(
            "IAPRUN_PROVIDER_BIN",
            env!("CARGO_BIN_EXE_terraform-provider-iaprun"),
        )
        .env("IAPRUN_EMULATOR_BIN", env!("CARGO_BIN_EXE_iaprun-emulator"))
        .env("TMPDIR", env!("CARGO_TARGET_TMPDIR"));
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("TF_") {
            command.env_remove(&key);
        }
    }
    for (key, value) in extra_env {
        command.env(key, value);
    }
    let output = command.output().expect("bash runs the quickstart");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn quickstart_script_applies_replans_empty_and_logs_operation_waits() {
    for terraform in terraform_binaries() {
        let terraform_path = terraform.path.to_string_lossy().into_owned();
        let (ok, stdout, stderr) = run_quickstart(&[
            ("TERRAFORM", &terraform_path),
            ("TF_LOG", "debug"),
            ("QUICKSTART_OPERATION_DELAY_MS", "300"),
        ]);
        let what = format!("Terraform {}\n--- stdout ---\n{stdout}", terraform.version);
        assert!(ok, "{what}\n--- stderr ---\n{stderr}");

        // One line per step, in order, none failed; the prebuilt binaries were used.
        let steps: Vec<&str> = stdout.lines().filter(|l| l.starts_with('[')).collect();
        assert_eq!(steps.len(), 8, "{what}");
        for (i, line) in steps.iter().enumerate() {
            assert!(line.starts_with(&format!("[{}/8] ", i + 1)), "{what}");
            assert!(!line.ends_with("FAILED"), "{what}");
        }
        assert!(steps[0].contains(": skipped, using "), "{what}");
        assert!(
            steps[1].contains(&format!("Terraform v{}", terraform.version)),
            "{what}"
        );
        assert!(
            steps[6].ends_with("Apply complete! Resources: 2 added, 0 changed, 0 destroyed."),
            "{what}"
        );
        assert!(steps[7].contains("No changes"), "{what}");
        // The state it ends with, and the outputs of examples/quickstart/main.tf.
        assert!(
            stdout.contains("\n  iaprun_access_binding.engineering\n  iaprun_service_iap.hello\n"),
            "{what}"
        );
        assert!(
            stdout.contains("iap_resource_name = \"projects/")
                && stdout.contains("/iap_web/cloud_run-us-central1/services/hello\""),
            "{what}"
        );

        // Under TF_LOG=debug the provider's log shows the long step: the wait for the Cloud Run
        // operation that turns IAP on, from start to finish.
        let provider_lines: Vec<&str> = stderr
            .lines()
            .filter(|l| l.contains("[DEBUG] provider.terraform-provider-iaprun"))
            .collect();
        for message in [
            "waiting for long-running operation",
            "long-running operation finished",
        ] {
            assert!(
                provider_lines
                    .iter()
                    .any(|l| l.contains(message) && l.contains("Cloud Run operation projects/")),
                "Terraform {}: no provider debug line '{message}' in {} provider lines",
                terraform.version,
                provider_lines.len()
            );
        }
        assert!(
            provider_lines
                .iter()
                .any(|l| l.contains("google api response") && l.contains(":wait")),
            "Terraform {}: the operation wait call is not logged",
            terraform.version
        );
    }
}

#[test]
fn quickstart_script_names_the_failing_step() {
    let (ok, stdout, stderr) = run_quickstart(&[("IAPRUN_PROVIDER_BIN", "/nonexistent/provider")]);
    assert!(!ok, "{stdout}");
    assert_eq!(
        stdout.trim_end(),
        "[1/8] build the provider and the emulator: FAILED"
    );
    assert!(
        stderr.contains("IAPRUN_PROVIDER_BIN=/nonexistent/provider is not an executable"),
        "{stderr}"
    );
}

/// Resource and data source examples follow the registry layout: resource.tf (data-source.tf)
/// without a provider block. They are validated together with examples/provider/provider.tf, as
/// the docs show them.
const RESOURCE_EXAMPLES: [&str; 2] = ["examples/resources/", "examples/data-sources/"];

/// Whether an example needs Terraform 1.11+ (write-only attributes) and `terraform` is older.
fn needs_write_only(dir: &str, terraform: &Terraform) -> bool {
    let uses_write_only = fs::read_dir(repo().join(dir))
        .expect("example directory")
        .filter_map(|e| fs::read_to_string(e.expect("entry").path()).ok())
        .any(|text| text.contains("_wo "));
    uses_write_only && terraform.minor_version() < (1, 11)
}

/// Whether an example needs Terraform 1.5+ (`check` blocks, declared with `required_version`) and
/// `terraform` is older.
fn needs_check_blocks(dir: &str, terraform: &Terraform) -> bool {
    let uses_checks = fs::read_dir(repo().join(dir))
        .expect("example directory")
        .filter_map(|e| fs::read_to_string(e.expect("entry").path()).ok())
        .any(|text| text.contains("\ncheck \""));
    uses_checks && terraform.minor_version() < (1, 5)
}

#[test]
fn every_example_validates() {
    let dirs = example_dirs();
    for expected in [
        "examples/provider",
        "examples/quickstart",
        "examples/load-balancer",
        "examples/modules/iap-cloud-run",
        "examples/modules/composition",
        "examples/modules/iap-access",
        "examples/resources/iaprun_access_member",
        "examples/audit",
        "examples/resources/iaprun_service_iap",
        "examples/resources/iaprun_backend_iap",
        "examples/resources/iaprun_access_binding",
        "examples/resources/iaprun_iap_settings",
        "examples/external-users",
        "examples/data-sources/iaprun_audit",
    ] {
        assert!(dirs.iter().any(|d| d == expected), "{expected} in {dirs:?}");
    }
    let validate_all = |terraform: Terraform| {
        let mut ws = Workspace::new(&terraform, "");
        copy_tree(&repo().join("examples"), &ws.dir().join("examples"));
        let mut failures = Vec::new();
        for dir in &dirs {
            ws.enter(dir);
            if RESOURCE_EXAMPLES
                .iter()
                .any(|prefix| dir.starts_with(prefix))
            {
                fs::copy(
                    repo().join("examples/provider/provider.tf"),
                    ws.dir().join("provider.tf"),
                )
                .expect("copy provider.tf");
            }
            if needs_check_blocks(dir, &terraform) {
                // Older Terraform refuses the configuration clearly: the check block, or the
                // required_version that declares it.
                let init = ws.run(&["init", "-input=false", "-no-color"]);
                let refused = init.stderr.contains("Unsupported Terraform Core version")
                    || init
                        .stderr
                        .contains("Blocks of type \"check\" are not expected here");
                if init.success() || !refused {
                    failures.push(format!(
                        "{dir} on Terraform {}: expected the required_version refusal, got {init}",
                        terraform.version
                    ));
                }
                continue;
            }
            ws.init();
            let run = ws.validate_json();
            let result = run.json();
            if needs_write_only(dir, &terraform) {
                // The example uses a write-only secret: older Terraform gets the provider's clear
                // refusal on that attribute, and nothing else.
                let summaries: Vec<&str> = result["diagnostics"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|d| d["summary"].as_str())
                    .collect();
                if summaries.is_empty()
                    || summaries
                        .iter()
                        .any(|s| !s.starts_with("Write-only attribute"))
                {
                    failures.push(format!(
                        "{dir} on Terraform {}: expected only the write-only refusal, got {summaries:?}",
                        terraform.version
                    ));
                }
                continue;
            }
            if result["valid"] != true || result["warning_count"] != 0 {
                failures.push(format!(
                    "{dir} on Terraform {}: {}",
                    terraform.version,
                    serde_json::to_string_pretty(&result["diagnostics"]).unwrap_or_default()
                ));
            }
        }
        failures
    };
    let failures: Vec<String> = std::thread::scope(|scope| {
        let handles: Vec<_> = terraform_binaries()
            .into_iter()
            .map(|t| scope.spawn(move || validate_all(t)))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("validation thread"))
            .collect()
    });
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn import_examples_name_resources_their_example_declares() {
    for dir in example_dirs()
        .iter()
        .filter(|d| d.starts_with(RESOURCE_EXAMPLES[0]))
    {
        let resource_type = dir.trim_start_matches(RESOURCE_EXAMPLES[0]);
        let config = fs::read_to_string(repo().join(dir).join("resource.tf")).expect("resource.tf");
        let imports = fs::read_to_string(repo().join(dir).join("import.sh")).expect("import.sh");
        let commands: Vec<&str> = imports
            .lines()
            .filter(|l| l.starts_with("terraform import "))
            .collect();
        assert!(!commands.is_empty(), "{dir}/import.sh has no import");
        for command in commands {
            let address = command
                .split_whitespace()
                .nth(2)
                .expect("an address after terraform import");
            let (kind, name) = address.split_once('.').expect("TYPE.NAME");
            assert_eq!(kind, resource_type, "{dir}: {command}");
            assert!(
                config.contains(&format!("resource \"{kind}\" \"{name}\"")),
                "{dir}: {address} is not declared in resource.tf"
            );
        }
    }
}

/// Applies `-var project=<world project>` plus `vars`, asserts success, then asserts that a second
/// plan finds nothing to change; returns the apply's output.
fn apply_and_replan(ws: &Workspace, vars: &[&str]) -> String {
    let project = format!("project={PROJECT}");
    let mut args = vec!["apply", "-auto-approve", "-input=false", "-no-color"];
    let mut plan = vec!["plan", "-detailed-exitcode", "-input=false", "-no-color"];
    for var in std::iter::once(project.as_str()).chain(vars.iter().copied()) {
        args.extend(["-var", var]);
        plan.extend(["-var", var]);
    }
    let applied = ws.run(&args).expect_success();
    let replan = ws.run(&plan);
    assert_eq!(replan.code(), 0, "the re-plan is not empty:\n{replan}");
    applied.stdout
}

fn outputs(ws: &Workspace) -> Value {
    let run = ws.run(&["output", "-json", "-no-color"]).expect_success();
    let all = run.json();
    let mut values = serde_json::Map::new();
    for (name, output) in all.as_object().expect("outputs object") {
        values.insert(name.clone(), output["value"].clone());
    }
    Value::Object(values)
}

/// The members of `role` under the condition titled `title` in a policy.
fn conditional_members(policy: &Value, role: &str, title: &str) -> Vec<String> {
    policy["bindings"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|b| b["role"] == role && b["condition"]["title"] == title)
        .flat_map(|b| b["members"].as_array().cloned().unwrap_or_default())
        .filter_map(|m| m.as_str().map(str::to_string))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn module_composition_applies_on_the_emulator_and_replans_empty() {
    for terraform in terraform_binaries() {
        // The world the composition expects: Cloud Run "frontend" reached directly, Cloud Run
        // "admin" behind a global external Application Load Balancer with backend "admin-backend".
        let world = World::start().await;
        world
            .run_service("frontend", json!({"ingress": "INGRESS_TRAFFIC_ALL"}))
            .await;
        world.load_balanced_service("admin", "admin-backend").await;

        let mut ws = Workspace::new(&terraform, "");
        copy_tree(
            &repo().join("examples/modules"),
            &ws.dir().join("examples/modules"),
        );
        ws.enter("examples/modules/composition");
        ws.env("IAPRUN_EMULATOR_HOST", &world.host());
        ws.init();
        let what = format!("Terraform {}", terraform.version);
        let applied = apply_and_replan(&ws, &[]);
        assert!(
            applied.contains("Resources: 6 added, 0 changed, 0 destroyed."),
            "{what}: {applied}"
        );

        // Both instances of the module did their job, each in its own mode.
        let agent = world.iap_agent();
        assert_eq!(
            world.run_service_json("frontend").await["iapEnabled"],
            true,
            "{what}"
        );
        assert_eq!(
            world.backend_json("admin-backend", None).await["iap"]["enabled"],
            true,
            "{what}"
        );
        for service in ["frontend", "admin"] {
            assert!(
                world.run_members(service, INVOKER).await.contains(&agent),
                "{what}: the IAP service agent may not invoke {service}"
            );
        }
        let out = outputs(&ws);
        let frontend = out["iap_resources"]["frontend"]
            .as_str()
            .expect("frontend IAP resource");
        let admin = out["iap_resources"]["admin"]
            .as_str()
            .expect("admin IAP resource");
        assert!(
            frontend.ends_with(&format!("/iap_web/cloud_run-{REGION}/services/frontend")),
            "{what}: {out}"
        );
        assert!(
            admin.ends_with("/iap_web/compute/services/admin-backend"),
            "{what}: {out}"
        );
        assert_eq!(
            out["protected_services"],
            json!([format!("{REGION}/frontend"), format!("{REGION}/admin")]),
            "{what}"
        );
        let frontend_policy = world.iap_policy(frontend).await;
        assert_eq!(
            members_of(&frontend_policy, ACCESSOR),
            ["group:engineering@example.com"],
            "{what}: {frontend_policy}"
        );
        // Two modules add members to the same role on the admin app; both are there.
        let admin_policy = world.iap_policy(admin).await;
        let mut admin_members = members_of(&admin_policy, ACCESSOR);
        admin_members.sort();
        assert_eq!(
            admin_members,
            ["group:admins@example.com", "group:oncall@example.com"],
            "{what}: {admin_policy}"
        );
        let number = world.emulator.project_number(PROJECT).expect("number");
        let backend_id = world.backend_json("admin-backend", None).await["id"].clone();
        assert_eq!(
            out["jwt_audiences"],
            json!({
                "frontend": format!("/projects/{number}/locations/{REGION}/services/frontend"),
                "admin": format!("/projects/{number}/global/backendServices/{}", backend_id.as_str().unwrap_or("?")),
            }),
            "{what}: {out}"
        );
        assert_eq!(
            conditional_members(&admin_policy, ACCESSOR, "audit-2027"),
            ["user:auditor@example.com"],
            "{what}: {admin_policy}"
        );
        world.assert_conformant();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_balancer_example_applies_on_the_emulator_and_replans_empty() {
    let example = fs::read_to_string(repo().join("examples/load-balancer/main.tf"))
        .expect("examples/load-balancer/main.tf");
    for terraform in terraform_binaries() {
        // The load balancer of examples/load-balancer/README.md, built through the Compute API.
        let world = World::start().await;
        world.load_balanced_service("app", "app-backend").await;

        let mut ws = Workspace::new(&terraform, &example);
        ws.env("IAPRUN_EMULATOR_HOST", &world.host());
        ws.init();
        let what = format!("Terraform {}", terraform.version);
        let applied = apply_and_replan(&ws, &[]);
        assert!(
            applied.contains("Resources: 2 added, 0 changed, 0 destroyed."),
            "{what}: {applied}"
        );
        // The example's setup is one the checks accept without a word.
        assert!(!applied.contains("Warning:"), "{what}: {applied}");

        assert_eq!(
            world.backend_json("app-backend", None).await["iap"]["enabled"],
            true,
            "{what}"
        );
        assert!(
            world
                .run_members("app", INVOKER)
                .await
                .contains(&world.iap_agent()),
            "{what}: invoker not granted"
        );
        let out = outputs(&ws);
        assert_eq!(
            out["protected_services"],
            json!([format!("{REGION}/app")]),
            "{what}"
        );
        let resource = out["iap_resource_name"].as_str().expect("IAP resource");
        assert_eq!(
            members_of(&world.iap_policy(resource).await, ACCESSOR),
            ["group:app-users@example.com"],
            "{what}"
        );
        world.assert_conformant();
    }
}

#[test]
fn readme_lists_every_check_with_its_severity_in_catalogue_order() {
    let readme = fs::read_to_string(repo().join("README.md")).expect("README.md");
    // Rows of the README's checks table: "| `name` | severity | ... |".
    let rows: Vec<(String, String)> = readme
        .lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let name = cells.get(1)?.strip_prefix('`')?.strip_suffix('`')?;
            let severity = *cells.get(2)?;
            matches!(severity, "error" | "warning")
                .then(|| (name.to_string(), severity.to_string()))
        })
        .collect();
    // The catalogue's table, then the audit's ("Audit a project").
    let catalogue: Vec<(String, String)> = iaprun::validation::CATALOGUE
        .iter()
        .chain(iaprun::validation::exposure::AUDIT_RULES)
        .map(|c| (c.name.to_string(), c.severity.as_str().to_string()))
        .collect();
    assert_eq!(rows, catalogue, "README.md's checks tables");
    assert!(
        readme.contains("(docs/checks.md)"),
        "README links the catalogue"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_users_example_applies_on_the_emulator_and_replans_empty() {
    let example = fs::read_to_string(repo().join("examples/external-users/main.tf"))
        .expect("examples/external-users/main.tf");
    let terraform = crate::support::newest();
    let world = World::start().await;
    world.run_service("partner-portal", json!({})).await;
    let mut ws = Workspace::new(&terraform, &example);
    ws.env("IAPRUN_EMULATOR_HOST", &world.host());
    ws.init();
    let secret = "GOCSPX-example-secret";
    let vars = [
        "oauth_client_id=1234567890-abc.apps.googleusercontent.com",
        &format!("oauth_client_secret={secret}")[..],
    ];
    let applied = apply_and_replan(&ws, &vars);
    // The custom client is planned with the binding: managed_oauth_external stays quiet.
    assert!(!applied.contains("managed_oauth_external"), "{applied}");
    let resource = format!("projects/{PROJECT}/iap_web/cloud_run-{REGION}/services/partner-portal");
    let number = world.emulator.project_number(PROJECT).expect("project");
    let settings = world
        .iap_settings(&resource.replace(PROJECT, &number))
        .await;
    let access = &settings["accessSettings"];
    assert_eq!(
        access["oauthSettings"]["clientId"],
        "1234567890-abc.apps.googleusercontent.com"
    );
    assert!(
        access["oauthSettings"]["clientSecretSha256"].is_string(),
        "{settings}"
    );
    assert_eq!(
        access["allowedDomainsSettings"]["domains"],
        json!(["partner.example", "example.com"])
    );
    let state = fs::read_to_string(ws.dir().join("terraform.tfstate")).expect("state");
    assert!(
        !state.contains(secret),
        "the write-only secret is in the state"
    );
    assert!(members_of(&world.iap_policy(&resource).await, ACCESSOR)
        .contains(&"domain:partner.example".to_string()));
    world.assert_conformant();
}
