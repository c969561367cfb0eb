//! iaprun_iap_settings end to end with the real terraform CLI against iaprun-emulator: field-by-field
//! update masks, drift, settings of others left alone, removing a block, import, destroy, the OAuth
//! client secret (sensitive, and write-only on 1.11), and the checks that learn from the settings.

use serde_json::json;

use crate::support::{newest, terraform_binaries};
use crate::world::{provider_header, World, PROJECT, REGION};

fn resource_name(project: &str) -> String {
    format!("projects/{project}/iap_web/cloud_run-{REGION}/services/hello")
}

const CORS: &str = "    cors_settings {\n      allow_http_options = true\n    }\n";
const DOMAINS: &str = "    allowed_domains_settings {\n      enable  = true\n      domains = [\"example.com\"]\n    }\n";
const PROGRAMMATIC: &str = "    oauth_settings {\n      programmatic_clients = [\"1234-ci.apps.googleusercontent.com\"]\n    }\n";
const REAUTH: &str = "    reauth_settings {\n      method      = \"LOGIN\"\n      max_age     = \"3600s\"\n      policy_type = \"MINIMUM\"\n    }\n";

/// A configuration of `iaprun_iap_settings.web` with the given access settings blocks and
/// `application_settings` lines.
fn config(resource: &str, access: &[&str], application: &str, extra: &str) -> String {
    let header = provider_header("");
    let access: String = access.concat();
    format!(
        r#"{header}
variable "secret" {{
  type      = string
  sensitive = true
  default   = "{SECRET}"
}}

resource "iaprun_iap_settings" "web" {{
  resource = "{resource}"
  access_settings {{
{access}  }}
  application_settings {{
    access_denied_page_settings {{
      access_denied_page_uri = "https://example.com/denied"
    }}
{application}  }}
}}
{extra}"#
    )
}

const SECRET: &str = "GOCSPX-settings-secret-5e1d0c";

async fn world() -> World {
    let world = World::start().await;
    world.run_service("hello", json!({})).await;
    world
}

/// The update masks of the settings PATCH requests so far, each sorted.
fn masks(world: &World) -> Vec<Vec<String>> {
    world
        .emulator
        .requests()
        .iter()
        .filter(|r| r.method == "PATCH" && r.path.ends_with(":iapSettings"))
        .map(|r| {
            let query: Vec<(String, String)> =
                serde_urlencoded::from_str(&r.query).expect("query string");
            let mask = query
                .into_iter()
                .find(|(k, _)| k == "updateMask")
                .map(|(_, v)| v)
                .unwrap_or_default();
            let mut paths: Vec<String> = mask.split(',').map(str::to_string).collect();
            paths.sort();
            paths
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lifecycle_masks_drift_others_settings_import_destroy() {
    for terraform in terraform_binaries() {
        let what = terraform.version.clone();
        let world = world().await;
        let number = world.emulator.project_number(PROJECT).expect("project");
        let name = resource_name(PROJECT);
        // Someone else's setting, before Terraform.
        world
            .patch_iap_settings(
                &name,
                "iapSettings.applicationSettings.cookieDomain",
                json!({"applicationSettings": {"cookieDomain": "others.example.com"}}),
            )
            .await;
        let all = [CORS, PROGRAMMATIC, DOMAINS, REAUTH];
        let ws = world.workspace(&terraform, &config(&name, &all, "", ""));

        // Create: one PATCH naming exactly the configured fields; the other setting stays.
        ws.apply().expect_success();
        let expected: Vec<String> = [
            "accessSettings.allowedDomainsSettings.domains",
            "accessSettings.allowedDomainsSettings.enable",
            "accessSettings.corsSettings.allowHttpOptions",
            "accessSettings.oauthSettings.programmaticClients",
            "accessSettings.reauthSettings",
            "applicationSettings.accessDeniedPageSettings.accessDeniedPageUri",
        ]
        .iter()
        .map(|p| format!("iapSettings.{p}"))
        .collect();
        assert_eq!(masks(&world).last(), Some(&expected), "{what}");
        let s = world.iap_settings(&name).await;
        assert_eq!(
            s["accessSettings"]["corsSettings"]["allowHttpOptions"], true,
            "{what}: {s}"
        );
        assert_eq!(
            s["accessSettings"]["reauthSettings"],
            json!({"method": "LOGIN", "maxAge": "3600s", "policyType": "MINIMUM"}),
            "{what}"
        );
        assert_eq!(
            s["accessSettings"]["oauthSettings"]["programmaticClients"],
            json!(["1234-ci.apps.googleusercontent.com"])
        );
        assert_eq!(
            s["applicationSettings"]["cookieDomain"], "others.example.com",
            "{what}: {s}"
        );
        assert_eq!(ws.plan_detailed_exitcode().code(), 0, "{what}: re-plan");

        // An unmanaged field changed out of band is no drift.
        world
            .patch_iap_settings(
                &name,
                "iapSettings.applicationSettings.csmSettings.rctokenAud",
                json!({"applicationSettings": {"csmSettings": {"rctokenAud": "others-aud"}}}),
            )
            .await;
        assert_eq!(
            ws.plan_detailed_exitcode().code(),
            0,
            "{what}: unmanaged change is no drift"
        );

        // A managed field changed out of band: drift, and apply restores it, leaving the
        // unmanaged ones as they are.
        world
            .patch_iap_settings(&name, "iapSettings.accessSettings.corsSettings.allowHttpOptions,iapSettings.accessSettings.allowedDomainsSettings.domains", json!({"accessSettings": {"allowedDomainsSettings": {"domains": ["evil.example"]}}}))
            .await;
        let plan = ws.plan_detailed_exitcode();
        assert_eq!(plan.code(), 2, "{what}: {plan}");
        assert!(
            plan.stdout.contains("allow_http_options") && plan.stdout.contains("evil.example"),
            "{what}: {plan}"
        );
        ws.apply().expect_success();
        let s = world.iap_settings(&name).await;
        assert_eq!(
            s["accessSettings"]["corsSettings"]["allowHttpOptions"], true,
            "{what}"
        );
        assert_eq!(
            s["accessSettings"]["allowedDomainsSettings"]["domains"],
            json!(["example.com"])
        );
        assert_eq!(
            s["applicationSettings"]["csmSettings"]["rctokenAud"], "others-aud",
            "{what}: {s}"
        );
        assert_eq!(
            s["applicationSettings"]["cookieDomain"],
            "others.example.com"
        );

        // Removing a block clears just that block, with a mask naming only it.
        ws.write(
            "main.tf",
            &config(&name, &[CORS, PROGRAMMATIC, DOMAINS], "", ""),
        );
        ws.apply().expect_success();
        assert_eq!(
            masks(&world)
                .last()
                .map(|m| m.contains(&"iapSettings.accessSettings.reauthSettings".to_string())),
            Some(true)
        );
        let s = world.iap_settings(&name).await;
        assert!(
            s["accessSettings"].get("reauthSettings").is_none(),
            "{what}: {s}"
        );
        assert_eq!(
            s["accessSettings"]["corsSettings"]["allowHttpOptions"],
            true
        );
        assert_eq!(
            s["applicationSettings"]["cookieDomain"],
            "others.example.com"
        );
        assert_eq!(
            s["applicationSettings"]["csmSettings"]["rctokenAud"],
            "others-aud"
        );
        assert_eq!(
            ws.plan_detailed_exitcode().code(),
            0,
            "{what}: after removing a block"
        );

        // Destroy clears what it managed, nothing else.
        ws.destroy().expect_success();
        let s = world.iap_settings(&name).await;
        assert!(s.get("accessSettings").is_none(), "{what}: {s}");
        assert!(
            s["applicationSettings"]
                .get("accessDeniedPageSettings")
                .is_none(),
            "{what}: {s}"
        );
        assert_eq!(
            s["applicationSettings"]["cookieDomain"], "others.example.com",
            "{what}: {s}"
        );
        assert_eq!(
            s["applicationSettings"]["csmSettings"]["rctokenAud"],
            "others-aud"
        );

        // Import by the name with the project number takes over every setting; a configuration
        // that names them all (project id) plans no change.
        ws.apply().expect_success();
        ws.run(&["state", "rm", "iaprun_iap_settings.web"])
            .expect_success();
        let others = "    cookie_domain = \"others.example.com\"\n    csm_settings {\n      rctoken_aud = \"others-aud\"\n    }\n";
        ws.write(
            "main.tf",
            &config(&name, &[CORS, PROGRAMMATIC, DOMAINS], others, ""),
        );
        ws.run(&[
            "import",
            "-no-color",
            "iaprun_iap_settings.web",
            &resource_name(&number),
        ])
        .expect_success();
        let plan = ws.plan_detailed_exitcode();
        assert_eq!(plan.code(), 0, "{what}: import then plan:\n{plan}");
        ws.destroy().expect_success();
        let s = world.iap_settings(&name).await;
        assert_eq!(
            s,
            json!({"name": name}),
            "{what}: destroy after import clears what it took over"
        );
        world.assert_conformant();
    }
}

/// The OAuth client secret: sensitive in state on Terraform 1.0, write-only on 1.11 (nowhere in
/// state, plan JSON or trace logs); rotated outside Terraform it shows as drift of its SHA-256.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn client_secret_sensitive_and_write_only() {
    let variants = terraform_binaries()
        .into_iter()
        .flat_map(|t| [(t.clone(), false), (t, true)])
        .filter(|(t, write_only)| !write_only || t.minor_version() >= (1, 11));
    for (terraform, write_only) in variants {
        let what = format!("{} write-only={write_only}", terraform.version);
        let world = world().await;
        let name = resource_name(PROJECT);
        let secret = if write_only {
            "      client_secret_wo         = var.secret\n      client_secret_wo_version = 1\n"
        } else {
            "      client_secret = var.secret\n"
        };
        let oauth = format!("    oauth_settings {{\n      client_id = \"1234-web.apps.googleusercontent.com\"\n{secret}    }}\n");
        let mut main_tf = config(&name, &[&oauth], "", "");
        if write_only {
            // An ephemeral variable (1.10+) is kept out of the plan file too.
            main_tf = main_tf.replace(
                &format!("  default   = \"{SECRET}\"\n"),
                "  ephemeral = true\n",
            );
        }
        let mut ws = world.workspace(&terraform, &main_tf);
        ws.env("TF_VAR_secret", SECRET);
        let log = ws.dir().join("trace.log");
        // Trace logs on the write-only run (Terraform 1.0.3 itself panics on a marked value
        // when it traces this plan).
        let trace = [
            ("TF_LOG", "trace"),
            ("TF_LOG_PATH", log.to_str().expect("path")),
        ];
        let env = if write_only { &trace[..] } else { &[][..] };
        ws.run_with_env(&["plan", "-out=tfplan", "-no-color"], env)
            .expect_success();
        let plan_json = ws.run(&["show", "-json", "tfplan"]).expect_success().stdout;
        ws.run_with_env(&["apply", "-no-color", "tfplan"], env)
            .expect_success();
        let s = world.iap_settings(&name).await;
        let oauth_api = &s["accessSettings"]["oauthSettings"];
        assert_eq!(
            oauth_api["clientId"], "1234-web.apps.googleusercontent.com",
            "{what}"
        );
        let sha = oauth_api["clientSecretSha256"]
            .as_str()
            .expect("secret sent")
            .to_string();
        let state = std::fs::read_to_string(ws.dir().join("terraform.tfstate")).expect("state");
        assert!(state.contains(&sha), "{what}: the hash is in state");
        if write_only {
            assert!(
                !state.contains(SECRET),
                "{what}: write-only secret in state"
            );
            assert!(
                !plan_json.contains(SECRET),
                "{what}: write-only secret in the plan JSON"
            );
        }
        assert_eq!(
            ws.run_with_env(&["plan", "-detailed-exitcode", "-no-color"], env)
                .code(),
            0,
            "{what}"
        );

        // Rotated outside Terraform: the plan shows the hash changing; apply sends it again.
        // Terraform 1.0.3 itself panics rendering a change of a block that holds a sensitive
        // value ("value is marked, so must be unmarked first"): checked on newer Terraform.
        if terraform.minor_version() < (1, 11) {
            continue;
        }
        world
            .patch_iap_settings(
                &name,
                "iapSettings.accessSettings.oauthSettings.clientSecret",
                json!({"accessSettings": {"oauthSettings": {"clientSecret": "rotated"}}}),
            )
            .await;
        let plan = ws.plan_detailed_exitcode();
        assert_eq!(plan.code(), 2, "{what}: {plan}");
        assert!(
            plan.stdout.contains("client_secret_sha256"),
            "{what}: {plan}"
        );
        ws.run_with_env(&["apply", "-auto-approve", "-no-color"], env)
            .expect_success();
        let s = world.iap_settings(&name).await;
        assert_eq!(
            s["accessSettings"]["oauthSettings"]["clientSecretSha256"],
            sha.as_str()
        );
        ws.run_with_env(&["destroy", "-auto-approve", "-no-color"], env)
            .expect_success();
        assert!(world
            .iap_settings(&name)
            .await
            .get("accessSettings")
            .is_none());
        if write_only {
            let trace = std::fs::read_to_string(&log).expect("trace log");
            assert!(
                trace.contains("iapSettings"),
                "{what}: the provider's calls are traced"
            );
            let at = trace.lines().find(|l| l.contains(SECRET));
            assert!(at.is_none(), "{what}: secret in the trace log at {at:?}");
        }
        world.assert_conformant();
    }
}

/// `managed_oauth_external` learns from settings planned in the same run: a binding whose
/// resource is the settings' resource is planned after them and sees the custom client.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn managed_oauth_external_learns_the_planned_custom_client() {
    let world = world().await;
    let name = resource_name(PROJECT);
    let binding = |resource: &str| {
        format!("resource \"iaprun_access_binding\" \"outside\" {{\n  resource = {resource}\n  members  = [\"user:bob@other.org\"]\n}}\n")
    };
    let oauth = "    oauth_settings {\n      client_id     = \"1234-web.apps.googleusercontent.com\"\n      client_secret = var.secret\n    }\n";
    let ws = world.workspace(
        &newest(),
        &config(
            &name,
            &[CORS],
            "",
            &binding("iaprun_iap_settings.web.resource"),
        ),
    );
    let plan = ws.plan_detailed_exitcode();
    assert_eq!(plan.code(), 2, "{plan}");
    assert!(
        plan.stdout.contains("managed_oauth_external")
            || plan.stderr.contains("managed_oauth_external"),
        "managed client: the check fires\n{plan}"
    );

    ws.write(
        "main.tf",
        &config(
            &name,
            &[oauth],
            "",
            &binding("iaprun_iap_settings.web.resource"),
        ),
    );
    let plan = ws.plan_detailed_exitcode();
    assert_eq!(plan.code(), 2, "{plan}");
    assert!(
        !plan.stdout.contains("managed_oauth_external")
            && !plan.stderr.contains("managed_oauth_external"),
        "custom client planned: no warning\n{plan}"
    );
    ws.apply().expect_success();
    // Applied: the next plan reads the client from the API.
    ws.write(
        "main.tf",
        &config(&name, &[oauth], "", &binding(&format!("\"{name}\""))),
    );
    let plan = ws.plan_detailed_exitcode();
    assert!(
        !plan.stdout.contains("managed_oauth_external")
            && !plan.stderr.contains("managed_oauth_external"),
        "{plan}"
    );
}

/// Malformed values are refused at plan on the attribute at fault, and nothing is sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_values_and_expressions_fail_the_plan() {
    let world = world().await;
    let name = resource_name(PROJECT);
    let bad = "    reauth_settings {\n      method  = \"SMS\"\n      max_age = \"1h\"\n    }\n    oauth_settings {\n      programmatic_clients = [\"ci@p.iam.gserviceaccount.com\"]\n    }\n";
    let ws = world.workspace(&newest(), &config(&name, &[bad], "", ""));
    let before = world.mutating_requests();
    let plan = ws.plan_detailed_exitcode();
    assert_eq!(plan.code(), 1, "{plan}");
    for expected in [
        "Invalid re-authentication method",
        "Invalid duration",
        "Invalid OAuth client id",
        "method",
        "max_age",
        "programmatic_clients",
    ] {
        assert!(plan.stderr.contains(expected), "{expected}:\n{plan}");
    }
    let expression = "    attribute_propagation_settings {\n      enable     = true\n      expression = \"attributes.saml_attributes.filter(a, a.name in ['team']\"\n    }\n";
    ws.write("main.tf", &config(&name, &[CORS], expression, ""));
    let plan = ws.plan_detailed_exitcode();
    assert_eq!(plan.code(), 1, "{plan}");
    assert!(
        plan.stderr.contains("Invalid attribute expression") && plan.stderr.contains("closed"),
        "{plan}"
    );
    assert_eq!(world.mutating_requests(), before, "nothing changed");
    let good = expression.replace("'team']", "'team'])");
    ws.write("main.tf", &config(&name, &[CORS], &good, ""));
    assert_eq!(ws.plan_detailed_exitcode().code(), 2);
    world.assert_conformant();
}

/// `no_organization` points to the settings fix, and is quiet once the service has a custom client.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_organization_points_to_the_settings_and_goes_quiet_once_applied() {
    const NO_ORG: &str = "noorg-project";
    let world = World::start().await;
    world.update_project(NO_ORG, json!({"parent": null}));
    world
        .run_service_in(NO_ORG, REGION, "hello", json!({}))
        .await;
    let main_tf = format!(
        r#"{}
resource "iaprun_service_iap" "hello" {{
  service = "hello"
  project = "{NO_ORG}"
}}

resource "iaprun_iap_settings" "hello" {{
  resource = iaprun_service_iap.hello.iap_resource_name
  access_settings {{
    oauth_settings {{
      client_id     = "1234-web.apps.googleusercontent.com"
      client_secret = "{SECRET}"
    }}
  }}
}}
"#,
        provider_header("")
    );
    let ws = world.workspace(&newest(), &main_tf);
    let plan = ws.plan_detailed_exitcode();
    assert_eq!(plan.code(), 2, "{plan}");
    let warning = plan
        .stdout
        .find("no_organization")
        .map(|i| &plan.stdout[i..])
        .unwrap_or_default();
    assert!(
        warning.contains("iaprun_iap_settings"),
        "the warning names the fix:\n{plan}"
    );
    ws.apply().expect_success();
    let plan = ws.plan_detailed_exitcode();
    assert_eq!(plan.code(), 0, "{plan}");
    assert!(
        !plan.stdout.contains("no_organization"),
        "the fix is in place:\n{plan}"
    );
}

/// Each malformed value is reported on its own attribute (list elements by index), offline.
#[test]
fn validate_reports_each_bad_value_on_its_attribute() {
    use iaprun::framework::{AttributePath, ClientCapabilities, Resource};
    use iaprun::resources::iap_settings::{IapSettings, Model};
    use iaprun::resources::Context;

    let config: Model = serde_json::from_value(json!({
        "resource": "projects/p/iap_web/cloud-run-us-central1/services/s",
        "access_settings": {
            "reauth_settings": {"method": "SMS", "max_age": "1h", "policy_type": "MAXIMUM"},
            "allowed_domains_settings": {"domains": ["example.com", "https://example.org"]},
            "oauth_settings": {
                "programmatic_clients": ["1-ok.apps.googleusercontent.com", "ci@p.iam.gserviceaccount.com"],
                "client_secret_wo_version": 1
            }
        },
        "application_settings": {
            "access_denied_page_settings": {"access_denied_page_uri": "example.com/denied"},
            "cookie_domain": "not a domain",
            "attribute_propagation_settings": {"output_credentials": ["JWT", "COOKIE"]}
        }
    }))
    .expect("model");
    let diags =
        <IapSettings as Resource<Context>>::validate(&config, ClientCapabilities::default());
    let paths: Vec<String> = diags
        .iter()
        .filter_map(|d| d.path.as_ref().map(AttributePath::to_string))
        .collect();
    let attr = |parts: &[&str]| {
        let mut p = AttributePath::attr(parts[0]);
        for part in &parts[1..] {
            p = p.then_attr(part);
        }
        p
    };
    let expected = [
        attr(&["resource"]),
        attr(&["access_settings", "reauth_settings", "method"]),
        attr(&["access_settings", "reauth_settings", "policy_type"]),
        attr(&["access_settings", "reauth_settings", "max_age"]),
        attr(&["access_settings", "allowed_domains_settings", "domains"]).then_index(1),
        attr(&["access_settings", "oauth_settings", "programmatic_clients"]).then_index(1),
        attr(&[
            "access_settings",
            "oauth_settings",
            "client_secret_wo_version",
        ]),
        attr(&[
            "application_settings",
            "access_denied_page_settings",
            "access_denied_page_uri",
        ]),
        attr(&["application_settings", "cookie_domain"]),
        attr(&[
            "application_settings",
            "attribute_propagation_settings",
            "output_credentials",
        ])
        .then_index(1),
    ];
    for path in &expected {
        assert!(paths.contains(&path.to_string()), "{path} in {paths:?}");
    }
    assert_eq!(paths.len(), expected.len(), "nothing else: {paths:?}");

    let empty: Model = serde_json::from_value(
        json!({"resource": "projects/p/iap_web/cloud_run-us-central1/services/s"}),
    )
    .expect("model");
    let diags = <IapSettings as Resource<Context>>::validate(&empty, ClientCapabilities::default());
    assert!(
        diags.iter().any(|d| d.summary == "Nothing to manage"),
        "a resource with no settings is refused"
    );
}
