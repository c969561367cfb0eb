//! Moving the google provider's IAP IAM resources to the access resources: a `moved` block
//! (Terraform 1.8+) plans no change and applies without an IAM write; Terraform 1.0 refuses the
//! block and the documented alternative (`state rm`, `import`) gets to the same empty plan. The
//! google provider cannot be installed offline: a stand-in served in-process answers for it
//! with the schemas of its IAP IAM types, and is never asked to read, plan or apply anything.

use std::sync::{Arc, Mutex};

use serde_json::{json, Value};

use iaprun::framework::{
    AnyResource, ApplyRequest, ApplyResponse, Attribute, Block, ConfigureRequest, DeleteRequest,
    Diagnostic, Diagnostics, NestedBlock, Nesting, Provider, ReadRequest, ReadResponse, Schema,
};

use crate::access_binding::{members, ACCESSOR};
use crate::support::plugin::{self, messages, unary};
use crate::support::{terraform_binaries, Launch, PluginProcess, Reattached, Terraform, Workspace};
use crate::world::{provider_header, World, PROJECT, REGION};

const GOOGLE: &str = "registry.terraform.io/hashicorp/google";
const BINDING: &str = "google_iap_web_cloud_run_service_iam_binding";
const MEMBER: &str = "google_iap_web_backend_service_iam_member";
const EXPRESSION: &str = r#"request.time < timestamp("2030-01-01T00:00:00Z")"#;

// ---- a stand-in for the google provider --------------------------------------------------------

/// One google IAP IAM type with the attributes the google provider's schema gives it; every call
/// beyond the schema is recorded (a move must not need any).
struct GoogleIamType {
    type_name: &'static str,
    /// The parent attributes: (name, required).
    parent: &'static [(&'static str, bool)],
    calls: Arc<Mutex<Vec<String>>>,
}

impl GoogleIamType {
    fn record(&self, call: &str) -> Diagnostics {
        self.calls
            .lock()
            .expect("calls")
            .push(format!("{call} {}", self.type_name));
        Diagnostic::error("Stand-in", "The google stand-in only describes schemas.").into()
    }
}

#[async_trait::async_trait]
impl AnyResource<()> for GoogleIamType {
    fn type_name(&self) -> &'static str {
        self.type_name
    }

    fn schema(&self) -> Schema {
        let condition = Block::new("An IAM condition.")
            .attribute(Attribute::string("expression").required())
            .attribute(Attribute::string("title").required())
            .attribute(Attribute::string("description").optional());
        let mut block = Block::new("A google provider IAP IAM type.")
            .attribute(Attribute::string("id").optional().computed())
            .attribute(Attribute::string("role").required())
            .attribute(Attribute::string("etag").computed())
            .block(NestedBlock::new("condition", Nesting::List, condition));
        block = if self.type_name.ends_with("_iam_member") {
            block.attribute(Attribute::string("member").required())
        } else {
            block.attribute(Attribute::string_set("members").required())
        };
        for (name, required) in self.parent {
            let attribute = Attribute::string(name);
            block = block.attribute(if *required {
                attribute.required()
            } else {
                attribute.optional().computed()
            });
        }
        Schema::new(0, block)
    }

    async fn create(&self, _: &(), _: ApplyRequest) -> ApplyResponse {
        ApplyResponse {
            diagnostics: self.record("create"),
            ..ApplyResponse::default()
        }
    }

    async fn read(&self, _: &(), req: ReadRequest) -> ReadResponse {
        ReadResponse {
            diagnostics: self.record("read"),
            state: req.state,
            private: req.private,
        }
    }

    async fn update(&self, _: &(), _: ApplyRequest) -> ApplyResponse {
        ApplyResponse {
            diagnostics: self.record("update"),
            ..ApplyResponse::default()
        }
    }

    async fn delete(&self, _: &(), req: DeleteRequest) -> ApplyResponse {
        ApplyResponse {
            state: req.prior_state,
            private: req.prior_private,
            diagnostics: self.record("delete"),
        }
    }
}

/// The google provider as far as a state holding its IAP IAM resources needs it: their schemas.
struct GoogleStandIn {
    calls: Arc<Mutex<Vec<String>>>,
}

#[async_trait::async_trait]
impl Provider for GoogleStandIn {
    type Context = ();

    fn schema(&self) -> Schema {
        Schema::new(0, Block::new("Stand-in for the google provider."))
    }

    async fn configure(&self, _: ConfigureRequest) -> Result<(), Diagnostics> {
        Ok(())
    }

    fn resources(&self) -> Vec<Arc<dyn AnyResource<()>>> {
        let run: &'static [(&'static str, bool)] = &[
            ("project", false),
            ("location", false),
            ("cloud_run_service_name", true),
        ];
        let backend: &'static [(&'static str, bool)] =
            &[("project", false), ("web_backend_service", true)];
        [(BINDING, run), (MEMBER, backend)]
            .into_iter()
            .map(|(type_name, parent)| {
                Arc::new(GoogleIamType {
                    type_name,
                    parent,
                    calls: self.calls.clone(),
                }) as Arc<dyn AnyResource<()>>
            })
            .collect()
    }
}

// ---- the world and the state the google provider left ------------------------------------------

/// The Cloud Run service's IAP resource and the backend service's.
fn iap_resources() -> (String, String) {
    (
        format!("projects/{PROJECT}/iap_web/cloud_run-{REGION}/services/svc-a"),
        format!("projects/{PROJECT}/iap_web/compute/services/web"),
    )
}

/// A Cloud Run service and a backend service in front of another, whose IAP policies already hold
/// what the google provider granted, next to someone else's binding.
async fn world_granted_by_google() -> World {
    let world = World::start().await;
    world.run_service("svc-a", json!({})).await;
    world.run_service("svc-b", json!({})).await;
    world.neg("neg-b", "svc-b").await;
    world.backend("web", None, &["neg-b"], json!({})).await;
    let (run, backend) = iap_resources();
    world
        .set_iap_policy(
            &run,
            json!({"version": 3, "bindings": [
                {"role": ACCESSOR, "members": ["user:a@example.com", "group:g@example.com"],
                 "condition": {"title": "office", "description": "Office hours", "expression": EXPRESSION}},
                {"role": "roles/iap.tunnelResourceAccessor", "members": ["user:other@example.com"]}
            ]}),
        )
        .await;
    world
        .set_iap_members(
            &backend,
            ACCESSOR,
            &["user:alice@example.com", "user:bob@example.com"],
        )
        .await;
    world
}

/// terraform.tfstate as the google provider leaves it after an apply of the two grants, with
/// the policies' current etags.
fn google_state(terraform: &Terraform, etags: (&str, &str)) -> String {
    let (run, backend) = iap_resources();
    let instance = |attributes: Value| {
        json!([{
            "schema_version": 0,
            "attributes": attributes,
            "sensitive_attributes": [],
            "private": "bnVsbA=="
        }])
    };
    let resource = |type_name: &str, name: &str, attributes: Value| {
        json!({
            "mode": "managed",
            "type": type_name,
            "name": name,
            "provider": format!("provider[\"{GOOGLE}\"]"),
            "instances": instance(attributes)
        })
    };
    json!({
        "version": 4,
        "terraform_version": terraform.version,
        "serial": 3,
        "lineage": "6f1c2a5e-1d1b-4c59-9a53-0c7a8f2b9e41",
        "outputs": {},
        "resources": [
            resource(BINDING, "office", json!({
                "cloud_run_service_name": run,
                "condition": [{"description": "Office hours", "expression": EXPRESSION, "title": "office"}],
                "etag": etags.0,
                "id": format!("{run}/{ACCESSOR}/office"),
                "location": REGION,
                "members": ["group:g@example.com", "user:a@example.com"],
                "project": PROJECT,
                "role": ACCESSOR
            })),
            resource(MEMBER, "alice", json!({
                "condition": [],
                "etag": etags.1,
                "id": format!("{backend}/{ACCESSOR}/user:alice@example.com"),
                "member": "user:alice@example.com",
                "project": PROJECT,
                "role": ACCESSOR,
                "web_backend_service": backend
            }))
        ]
    })
    .to_string()
}

/// The iaprun resources that take the two grants over, with `moved` blocks when `moved`.
fn configuration(moved: bool) -> String {
    let (run, backend) = iap_resources();
    let moves = format!(
        r#"
moved {{
  from = {BINDING}.office
  to   = iaprun_access_binding.office
}}

moved {{
  from = {MEMBER}.alice
  to   = iaprun_access_member.alice
}}
"#
    );
    format!(
        r#"{}
{}
resource "iaprun_access_binding" "office" {{
  resource = "{run}"
  members  = ["user:a@example.com", "group:g@example.com"]
  condition {{
    title       = "office"
    description = "Office hours"
    expression  = {EXPRESSION:?}
  }}
}}

resource "iaprun_access_member" "alice" {{
  resource = "{backend}"
  member   = "user:alice@example.com"
}}
"#,
        provider_header(""),
        if moved { moves.as_str() } else { "" }
    )
}

/// Both policies, to compare before and after.
async fn policies(world: &World) -> (Value, Value) {
    let (run, backend) = iap_resources();
    (
        world.iap_policy(&run).await,
        world.iap_policy(&backend).await,
    )
}

/// A world granted by the google provider, and a workspace holding its state that Terraform runs
/// with the stand-in for the google provider.
struct Migration {
    world: World,
    ws: Workspace,
    /// What the stand-in was asked beyond schemas.
    google_calls: Arc<Mutex<Vec<String>>>,
    /// Serves the stand-in while the migration lives.
    _google: Reattached,
}

impl Migration {
    /// With `moved` blocks in the configuration when `moved`.
    async fn start(terraform: &Terraform, moved: bool) -> Migration {
        let world = world_granted_by_google().await;
        let google_calls = Arc::new(Mutex::new(Vec::new()));
        let calls = google_calls.clone();
        let google = Reattached::serve(GoogleStandIn { calls }, GOOGLE);
        let (run_policy, backend_policy) = policies(&world).await;
        let etag = |p: &Value| p["etag"].as_str().unwrap_or_default().to_string();
        let mut ws = Workspace::new(terraform, &configuration(moved));
        ws.env("IAPRUN_EMULATOR_HOST", &world.host());
        ws.env("TF_REATTACH_PROVIDERS", &google.env_value());
        ws.write(
            "terraform.tfstate",
            &google_state(terraform, (&etag(&run_policy), &etag(&backend_policy))),
        );
        Migration {
            world,
            ws,
            google_calls,
            _google: google,
        }
    }

    /// The google stand-in was asked for nothing but schemas.
    #[track_caller]
    fn assert_google_untouched(&self) {
        let calls = self.google_calls.lock().expect("calls");
        assert!(
            calls.is_empty(),
            "the google stand-in was asked for more than schemas: {calls:?}"
        );
    }
}

/// The moved blocks on Terraform 1.8 and later: the plan moves both and changes nothing; the apply
/// writes no IAM policy; the next plan is empty.
async fn moves_without_a_change(terraform: &Terraform) {
    let migration = Migration::start(terraform, true).await;
    let (world, ws) = (&migration.world, &migration.ws);
    ws.init();
    let before = policies(world).await;

    // A binding moved to a member is refused with what is supported, and nothing changes.
    let (run, _) = iap_resources();
    ws.write(
        "main.tf",
        &format!(
            r#"{}
moved {{
  from = {BINDING}.office
  to   = iaprun_access_member.office
}}

resource "iaprun_access_member" "office" {{
  resource = "{run}"
  member   = "user:a@example.com"
}}
"#,
            provider_header("")
        ),
    );
    let writes = world.iap_policy_writes();
    let refused = ws.plan_detailed_exitcode();
    assert_eq!(refused.code(), 1, "{refused}");
    assert!(
        refused
            .output()
            .contains("Move from this resource type not supported")
            && refused.output().contains(MEMBER),
        "{refused}"
    );
    assert_eq!(
        world.iap_policy_writes(),
        writes,
        "a refused move wrote a policy"
    );
    ws.write("main.tf", &configuration(true));

    let plan = ws.run(&["plan", "-out=moves.tfplan", "-input=false", "-no-color"]);
    assert!(plan.success(), "{plan}");
    assert!(
        plan.stdout.contains(&format!(
            "# {BINDING}.office has moved to iaprun_access_binding.office"
        )),
        "{plan}"
    );
    assert!(
        plan.stdout.contains("0 to add, 0 to change, 0 to destroy"),
        "{plan}"
    );
    let shown = ws
        .run(&["show", "-json", "-no-color", "moves.tfplan"])
        .expect_success()
        .json();
    let changes: Vec<(String, String, Value)> = shown["resource_changes"]
        .as_array()
        .expect("resource_changes")
        .iter()
        .map(|c| {
            (
                c["address"].as_str().unwrap_or_default().to_string(),
                c["previous_address"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                c["change"]["actions"].clone(),
            )
        })
        .collect();
    assert_eq!(
        changes,
        vec![
            (
                "iaprun_access_binding.office".to_string(),
                format!("{BINDING}.office"),
                json!(["no-op"])
            ),
            (
                "iaprun_access_member.alice".to_string(),
                format!("{MEMBER}.alice"),
                json!(["no-op"])
            ),
        ],
        "{shown}"
    );

    ws.run(&["apply", "-input=false", "-no-color", "moves.tfplan"])
        .expect_success();
    assert_eq!(
        world.iap_policy_writes(),
        writes,
        "the move wrote an IAM policy"
    );
    assert_eq!(policies(world).await, before, "the move changed a policy");
    ws.assert_plan(0, "the plan after the move");

    let state = ws.show_json();
    let resources = state["values"]["root_module"]["resources"]
        .as_array()
        .expect("resources");
    let types: Vec<&str> = resources
        .iter()
        .filter_map(|r| r["type"].as_str())
        .collect();
    assert_eq!(
        types,
        ["iaprun_access_binding", "iaprun_access_member"],
        "{state}"
    );
    assert_eq!(
        resources[0]["values"]["id"],
        format!("{run} {ACCESSOR} office"),
        "{state}"
    );
    assert_eq!(resources[0]["values"]["etag"], before.0["etag"], "{state}");
    migration.assert_google_untouched();

    // `ignore_checks`, which the google resources lack, is an in-place update that keeps the grant.
    let ignoring = configuration(true).replace(
        "  member   = \"user:alice@example.com\"\n",
        "  member   = \"user:alice@example.com\"\n  ignore_checks = [\"public_member\"]\n",
    );
    assert_ne!(ignoring, configuration(true));
    ws.write("main.tf", &ignoring);
    let plan = ws.assert_plan(2, "ignore_checks set after the move");
    assert!(
        plan.stdout.contains("0 to add, 1 to change, 0 to destroy"),
        "{plan}"
    );
    ws.apply().expect_success();
    assert_eq!(
        world.iap_policy_writes(),
        writes,
        "ignore_checks wrote an IAM policy"
    );
    assert_eq!(
        policies(world).await,
        before,
        "ignore_checks changed a policy"
    );
    ws.assert_plan(0, "ignore_checks applied");

    // The moved resources are ours now: a member dropped from the configuration leaves the binding.
    ws.write(
        "main.tf",
        &configuration(true).replace(
            r#"["user:a@example.com", "group:g@example.com"]"#,
            r#"["user:a@example.com"]"#,
        ),
    );
    ws.apply().expect_success();
    let policy = world.iap_policy(&run).await;
    assert_eq!(
        members(&policy, ACCESSOR, Some("office")),
        ["user:a@example.com"]
    );
    assert_eq!(
        members(&policy, "roles/iap.tunnelResourceAccessor", None),
        ["user:other@example.com"]
    );
    world.assert_conformant();
}

/// Terraform before 1.1 refuses `moved` blocks; the alternative, `state rm` and `import`, ends at
/// the same empty plan without an IAM write.
async fn older_terraform_imports_instead(terraform: &Terraform) {
    let migration = Migration::start(terraform, true).await;
    let (world, ws) = (&migration.world, &migration.ws);
    let refused = ws.run(&["init", "-input=false", "-no-color"]);
    assert!(!refused.success(), "{refused}");
    assert!(
        refused
            .output()
            .contains(r#"Blocks of type "moved" are not expected here"#),
        "{refused}"
    );

    ws.write("main.tf", &configuration(false));
    ws.init();
    let writes = world.iap_policy_writes();
    let (run, backend) = iap_resources();
    ws.run(&[
        "state",
        "rm",
        &format!("{BINDING}.office"),
        &format!("{MEMBER}.alice"),
    ])
    .expect_success();
    let binding_id = format!("{run} {ACCESSOR} office");
    let member_id = format!("{backend} {ACCESSOR} user:alice@example.com");
    for (address, id) in [
        ("iaprun_access_binding.office", binding_id.as_str()),
        ("iaprun_access_member.alice", member_id.as_str()),
    ] {
        ws.run(&["import", "-input=false", "-no-color", address, id])
            .expect_success();
    }
    ws.assert_plan(0, "the plan after state rm and import");
    assert_eq!(
        world.iap_policy_writes(),
        writes,
        "the import wrote an IAM policy"
    );
    migration.assert_google_untouched();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn google_iap_iam_resources_move_to_access_resources_without_a_change() {
    for terraform in terraform_binaries() {
        if terraform.minor_version() >= (1, 8) {
            moves_without_a_change(&terraform).await;
        } else {
            older_terraform_imports_instead(&terraform).await;
        }
    }
}

// ---- the protocol ----------------------------------------------------------------------------

/// The provider process answers MoveResourceState over the wire, as Terraform calls it: the
/// moved state decodes with the target's schema, and an unsupported source is a diagnostic.
#[tokio::test]
async fn move_resource_state_over_the_wire() {
    let provider = PluginProcess::start(Launch::default());
    let channel = provider.channel().await.expect("channel");
    let schema = plugin::get_schema(channel.clone())
        .await
        .expect("GetSchema");
    assert!(
        schema
            .server_capabilities
            .is_some_and(|c| c.move_resource_state),
        "the capability is announced"
    );
    let (run, _) = iap_resources();
    let state = json!({
        "cloud_run_service_name": run,
        "condition": [],
        "etag": "BwYAAAAAAAE=",
        "members": ["user:a@example.com"],
        "project": PROJECT,
        "location": REGION,
        "role": ACCESSOR
    });
    let request = |source_type: &str, target: &str| messages::MoveResourceStateRequest {
        source_provider_address: GOOGLE.to_string(),
        source_type_name: source_type.to_string(),
        source_schema_version: 0,
        source_state: Some(messages::RawState {
            json: serde_json::to_vec(&state).expect("JSON"),
        }),
        target_type_name: target.to_string(),
        source_private: b"{\"google\":1}".to_vec(),
    };
    let path = "/tfplugin5.Provider/MoveResourceState";
    let moved: messages::MoveResourceStateResponse = unary(
        channel.clone(),
        path,
        request(BINDING, "iaprun_access_binding"),
    )
    .await
    .expect("MoveResourceState");
    assert!(moved.diagnostics.is_empty(), "{:?}", moved.diagnostics);
    assert!(
        moved.target_private.is_empty(),
        "the google provider's private state stays behind"
    );
    let ty = iaprun::resources::all()
        .into_iter()
        .find(|r| r.type_name() == "iaprun_access_binding")
        .expect("registered")
        .schema()
        .value_type();
    let bytes = moved.target_state.expect("target state").msgpack;
    let value = iaprun::protocol::decode_msgpack(&bytes, &ty).expect("msgpack of the schema");
    assert_eq!(value.get_str("resource"), Some(run.as_str()));
    assert_eq!(
        value.get_str("id"),
        Some(format!("{run} {ACCESSOR}").as_str())
    );
    assert_eq!(value.get_str("etag"), Some("BwYAAAAAAAE="));

    let refused: messages::MoveResourceStateResponse = unary(
        channel,
        path,
        request("google_iap_web_iam_binding", "iaprun_access_binding"),
    )
    .await
    .expect("an answer, not a status");
    assert!(refused.target_state.is_none());
    let summaries: Vec<&str> = refused
        .diagnostics
        .iter()
        .map(|d| d.summary.as_str())
        .collect();
    assert_eq!(summaries, ["Move from this resource type not supported"]);
    assert!(
        refused.diagnostics[0].detail.contains(BINDING),
        "{:?}",
        refused.diagnostics
    );
}
