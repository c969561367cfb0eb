//! The Google API client layer (`iaprun::google`) against the in-process emulator: every typed
//! call the resources make, both error formats, retries with Retry-After, what is never retried,
//! long-running operations, etag conflicts and the service-account token exchange.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use iaprun::emulator::RequestRecord;
use iaprun::google::{
    cloud_run_resource, iap_service_agent_email, BackendServiceRef, Clients, Condition, Config,
    Credentials, Error, IapPatch, RetryPolicy, Scope, ServiceName, IAP_SERVICE,
};

use crate::world::{World, PROJECT, REGION};

/// Quick retries so the tests spend their time on behaviour, not on backoff.
fn fast_retries() -> RetryPolicy {
    RetryPolicy {
        initial_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(40),
        multiplier: 2.0,
        max_attempts: 5,
        deadline: Duration::from_secs(30),
    }
}

fn clients_for(world: &World, retry: RetryPolicy) -> Clients {
    Clients::with_retry_policy(Config::emulator(&world.host()), retry).expect("clients")
}

fn deadline() -> Instant {
    Instant::now() + Duration::from_secs(60)
}

/// A Cloud Run service behind a serverless NEG, a global backend service with an HTTPS frontend,
/// and a regional backend service.
async fn load_balanced_world() -> World {
    let world = World::start().await;
    world.run_service("svc-a", json!({})).await;
    world.neg("neg-a", "svc-a").await;
    world
        .backend("web", None, &["neg-a"], json!({"protocol": "HTTPS"}))
        .await;
    world
        .backend(
            "regional",
            Some(REGION),
            &["neg-a"],
            json!({"loadBalancingScheme": "EXTERNAL_MANAGED"}),
        )
        .await;
    world.https_frontend("web").await;
    world.emulator.clear_requests();
    world
}

fn service_a() -> ServiceName {
    ServiceName::new(PROJECT, REGION, "svc-a")
}

/// Registers a fault through the emulator's admin API.
async fn add_fault(world: &World, fault: Value) {
    let response = reqwest::Client::new()
        .post(format!("{}/__emulator/faults", world.emulator.base_url()))
        .json(&fault)
        .send()
        .await
        .expect("admin API answers");
    assert!(
        response.status().is_success(),
        "fault {fault} refused: {}",
        response.text().await.unwrap_or_default()
    );
}

/// Logged requests whose path ends with `suffix`.
fn requests_to(world: &World, method: &str, suffix: &str) -> Vec<RequestRecord> {
    world
        .emulator
        .requests()
        .into_iter()
        .filter(|r| r.method == method && r.path.ends_with(suffix))
        .collect()
}

fn statuses(records: &[RequestRecord]) -> Vec<u16> {
    records.iter().map(|r| r.status).collect()
}

/// The API error inside an `Error::Api`, or a panic naming what came instead.
#[track_caller]
fn api_error(result: Result<impl std::fmt::Debug, Error>) -> iaprun::google::ApiError {
    match result {
        Err(Error::Api(e)) => *e,
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_calls_read_and_write_what_the_resources_use() {
    let world = load_balanced_world().await;
    let clients = clients_for(&world, fast_retries());
    let number = world.emulator.project_number(PROJECT).expect("number");

    // Resource Manager and Service Usage.
    let project = clients
        .resource_manager
        .project(PROJECT)
        .await
        .expect("project");
    assert_eq!(project.project_id, PROJECT);
    assert_eq!(project.project_number, number);
    let parent = project.parent.expect("an organization parent");
    assert_eq!(
        (parent.kind.as_str(), parent.id.as_str()),
        ("organization", "100200300400")
    );
    assert_eq!(
        clients
            .service_usage
            .service_state(PROJECT, IAP_SERVICE)
            .await
            .expect("services.get"),
        "ENABLED"
    );
    let identity = clients
        .service_usage
        .generate_service_identity(PROJECT, IAP_SERVICE, deadline())
        .await
        .expect("generateServiceIdentity");
    assert_eq!(identity.email, Some(iap_service_agent_email(&number)));
    let agent = format!("serviceAccount:{}", iap_service_agent_email(&number));

    // Cloud Run: get, IAP on through an etag-guarded PATCH and its operation, IAM policy.
    let service = clients.run.service(&service_a()).await.expect("service");
    assert_eq!(
        service.name,
        format!("projects/{PROJECT}/locations/{REGION}/services/svc-a")
    );
    assert!(!service.iap_enabled);
    assert_eq!(
        service.ingress.as_deref(),
        Some("INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER")
    );
    assert!(service.uri.is_some());
    let etag = service.etag.clone().expect("service etag");
    let updated = clients
        .run
        .set_iap_enabled(&service_a(), true, deadline())
        .await
        .expect("IAP on");
    assert!(updated.iap_enabled);
    assert_eq!(world.run_service_json("svc-a").await["iapEnabled"], true);
    let patches = requests_to(&world, "PATCH", "/services/svc-a");
    assert_eq!(patches.len(), 1, "one PATCH");
    assert_eq!(
        patches[0].body["etag"],
        etag.as_str(),
        "guarded by the read etag"
    );
    assert_eq!(patches[0].body["iapEnabled"], true);
    clients
        .run
        .set_iap_enabled(&service_a(), true, deadline())
        .await
        .expect("IAP already on");
    assert_eq!(
        requests_to(&world, "PATCH", "/services/svc-a").len(),
        1,
        "nothing written when IAP is already on"
    );

    let mut policy = clients
        .run
        .iam_policy(&service_a())
        .await
        .expect("getIamPolicy");
    let read = requests_to(&world, "GET", "/services/svc-a:getIamPolicy");
    assert_eq!(read[0].query, "options.requestedPolicyVersion=3");
    let old_etag = policy.etag.clone();
    assert!(policy.add_member("roles/run.invoker", &agent, None));
    let written = clients
        .run
        .set_iam_policy(&service_a(), &policy)
        .await
        .expect("setIamPolicy");
    assert_ne!(written.etag, old_etag, "a write changes the etag");
    assert_eq!(
        world.run_members("svc-a", "roles/run.invoker").await,
        vec![agent.clone()]
    );
    clients
        .run
        .modify_iam_policy(&service_a(), deadline(), |p| {
            p.add_member("roles/run.invoker", "user:ops@example.com", None)
        })
        .await
        .expect("read-modify-write");
    let mut invokers = world.run_members("svc-a", "roles/run.invoker").await;
    invokers.sort();
    assert_eq!(
        invokers,
        vec![agent.clone(), "user:ops@example.com".to_string()]
    );

    // IAP: policy with a condition (version 3) and settings.
    let resource = cloud_run_resource(&number, REGION, "svc-a");
    let mut iap_policy = clients.iap.iam_policy(&resource).await.expect("IAP policy");
    assert!(iap_policy.bindings.is_empty());
    let office = Condition::new(
        "office",
        "request.time < timestamp(\"2030-01-01T00:00:00Z\")",
    );
    iap_policy.add_member(
        "roles/iap.httpsResourceAccessor",
        "user:alice@example.com",
        Some(&office),
    );
    iap_policy.prepare_for_write();
    clients
        .iap
        .set_iam_policy(&resource, &iap_policy)
        .await
        .expect("IAP setIamPolicy");
    let reread = clients
        .iap
        .iam_policy(&resource)
        .await
        .expect("IAP policy again");
    assert_eq!(reread.version, Some(3));
    assert_eq!(
        reread.members("roles/iap.httpsResourceAccessor", Some(&office)),
        vec!["user:alice@example.com"]
    );
    let get_bodies: Vec<Value> = requests_to(&world, "POST", ":getIamPolicy")
        .into_iter()
        .map(|r| r.body)
        .collect();
    assert!(
        get_bodies
            .iter()
            .all(|b| b["options"]["requestedPolicyVersion"] == 3),
        "{get_bodies:?}"
    );
    let settings = clients
        .iap
        .iap_settings(&resource)
        .await
        .expect("iapSettings");
    assert_eq!(settings.name, resource);
    assert_eq!(settings.oauth_client_id, None);

    // Compute: backend services (global and regional) patched with fingerprint and requestId.
    let global = BackendServiceRef::global(PROJECT, "web");
    let before = clients
        .compute
        .backend_service(&global)
        .await
        .expect("backend");
    assert!(!before.iap_enabled());
    assert_eq!(
        before.load_balancing_scheme.as_deref(),
        Some("EXTERNAL_MANAGED")
    );
    assert_eq!(before.backend_groups.len(), 1);
    assert!(before.backend_groups[0].ends_with("/regions/us-central1/networkEndpointGroups/neg-a"));
    assert!(
        before
            .used_by
            .iter()
            .any(|u| u.ends_with("/global/urlMaps/web-map")),
        "{:?}",
        before.used_by
    );
    let after = clients
        .compute
        .patch_backend_service_iap(
            &global,
            &IapPatch {
                enabled: true,
                oauth2_client_id: Some("client-1.apps.googleusercontent.com".into()),
                oauth2_client_secret: Some("the-secret".into()),
            },
            deadline(),
        )
        .await
        .expect("patch global backend");
    assert!(after.iap_enabled());
    let iap = after.iap.clone().expect("iap block");
    assert_eq!(
        iap.oauth2_client_id.as_deref(),
        Some("client-1.apps.googleusercontent.com")
    );
    let secret_sha = format!("{:x}", Sha256::digest(b"the-secret"));
    assert_eq!(iap.oauth2_client_secret_sha256, Some(secret_sha));
    assert_ne!(after.fingerprint, before.fingerprint);
    let patch = requests_to(&world, "PATCH", "/global/backendServices/web");
    assert_eq!(patch.len(), 1);
    assert_eq!(
        patch[0].body["fingerprint"],
        before.fingerprint.clone().expect("fingerprint").as_str()
    );
    let request_id = patch[0]
        .query
        .strip_prefix("requestId=")
        .expect("requestId in the query");
    assert!(uuid::Uuid::parse_str(request_id).is_ok(), "{request_id}");

    let regional = BackendServiceRef::regional(PROJECT, REGION, "regional");
    let patched = clients
        .compute
        .patch_backend_service_iap(
            &regional,
            &IapPatch {
                enabled: true,
                ..IapPatch::default()
            },
            deadline(),
        )
        .await
        .expect("patch regional backend");
    assert!(patched.iap_enabled());
    assert!(world.backend_json("regional", Some(REGION)).await["iap"]["enabled"] == true);
    assert_eq!(
        requests_to(
            &world,
            "PATCH",
            "/regions/us-central1/backendServices/regional"
        )
        .len(),
        1
    );

    // Compute: the serverless NEG and the frontend, by get and by list.
    let neg = clients
        .compute
        .network_endpoint_group(PROJECT, REGION, "neg-a")
        .await
        .expect("NEG");
    assert_eq!(neg.network_endpoint_type.as_deref(), Some("SERVERLESS"));
    assert_eq!(
        neg.cloud_run.and_then(|c| c.service).as_deref(),
        Some("svc-a")
    );
    let map = clients
        .compute
        .url_map(PROJECT, &Scope::Global, "web-map")
        .await
        .expect("URL map");
    assert!(map
        .backend_services()
        .iter()
        .any(|s| s.ends_with("/global/backendServices/web")));
    let maps = clients
        .compute
        .url_maps(PROJECT, &Scope::Global)
        .await
        .expect("URL maps");
    assert_eq!(
        maps.iter().map(|m| m.name.as_str()).collect::<Vec<_>>(),
        ["web-map"]
    );
    let proxy = clients
        .compute
        .target_https_proxy(PROJECT, &Scope::Global, "web-proxy")
        .await
        .expect("HTTPS proxy");
    assert!(proxy
        .url_map
        .as_deref()
        .is_some_and(|m| m.ends_with("/global/urlMaps/web-map")));
    let proxies = clients
        .compute
        .target_https_proxies(PROJECT, &Scope::Global)
        .await
        .expect("HTTPS proxies");
    assert_eq!(proxies.len(), 1);
    assert!(clients
        .compute
        .target_http_proxies(PROJECT, &Scope::Global)
        .await
        .expect("HTTP proxies")
        .is_empty());
    let rule = clients
        .compute
        .forwarding_rule(PROJECT, &Scope::Global, "web-https")
        .await
        .expect("forwarding rule");
    assert!(rule.is_https(), "{rule:?}");
    assert!(rule
        .target
        .as_deref()
        .is_some_and(|t| t.ends_with("/global/targetHttpsProxies/web-proxy")));
    let rules = clients
        .compute
        .forwarding_rules(PROJECT, &Scope::Global)
        .await
        .expect("forwarding rules");
    assert_eq!(rules.len(), 1);
    assert!(clients
        .compute
        .forwarding_rules(PROJECT, &Scope::Region(REGION.into()))
        .await
        .expect("regional forwarding rules")
        .is_empty());
    for list in requests_to(&world, "GET", "/forwardingRules") {
        assert!(list.query.contains("maxResults=500"), "{}", list.query);
    }
    world.assert_conformant();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_error_formats_parse_into_one_error_type_and_are_not_retried() {
    let world = load_balanced_world().await;
    let clients = clients_for(&world, fast_retries());

    // AIP-193 format (Cloud Run): status name and message kept.
    let missing = ServiceName::new(PROJECT, REGION, "nowhere");
    let e = api_error(clients.run.service(&missing).await);
    assert_eq!(
        (e.http_status, e.status.as_deref()),
        (404, Some("NOT_FOUND"))
    );
    assert!(e.message.contains("nowhere"), "{e}");
    assert!(e.is_not_found());

    // Compute's legacy format: reason from errors[], message kept.
    let e = api_error(
        clients
            .compute
            .backend_service(&BackendServiceRef::global(PROJECT, "nowhere"))
            .await,
    );
    assert_eq!(
        (e.http_status, e.reason.as_deref()),
        (404, Some("notFound"))
    );
    assert!(e.message.contains("nowhere"), "{e}");
    assert!(e.is_not_found());

    // A disabled API in both formats: ErrorInfo's reason and service, compute's legacy reason.
    world
        .emulator
        .update_project(
            PROJECT,
            serde_json::from_value(
                json!({"services": {"iap.googleapis.com": false, "compute.googleapis.com": false}}),
            )
            .expect("update"),
        )
        .expect("disable APIs");
    let number = world.emulator.project_number(PROJECT).expect("number");
    let e = api_error(
        clients
            .iap
            .iam_policy(&cloud_run_resource(&number, REGION, "svc-a"))
            .await,
    );
    assert_eq!(
        (e.http_status, e.status.as_deref(), e.reason.as_deref()),
        (403, Some("PERMISSION_DENIED"), Some("SERVICE_DISABLED"))
    );
    assert_eq!(e.service.as_deref(), Some("iap.googleapis.com"));
    assert!(e.is_service_disabled());
    assert!(e.to_string().contains("Enable iap.googleapis.com"), "{e}");
    let e = api_error(
        clients
            .compute
            .backend_service(&BackendServiceRef::global(PROJECT, "web"))
            .await,
    );
    // Compute's body also carries an ErrorInfo, whose reason wins over errors[].reason.
    assert_eq!(
        (e.http_status, e.reason.as_deref()),
        (403, Some("SERVICE_DISABLED"))
    );
    assert_eq!(e.service.as_deref(), Some("compute.googleapis.com"));
    assert!(e.is_service_disabled(), "{e:?}");

    // Resource Manager hides missing projects behind 403 and the client says so.
    let e = clients
        .resource_manager
        .project("999999999999")
        .await
        .expect_err("unknown project number");
    assert_eq!(e.http_status(), Some(403));
    assert!(e.to_string().contains("does not exist"), "{e}");

    // None of these was retried: one request each.
    let log = world.emulator.requests();
    let failures: Vec<String> = log
        .iter()
        .map(|r| format!("{} {} {}", r.method, r.path, r.status))
        .collect();
    assert_eq!(log.len(), 5, "{failures:#?}");
    assert!(
        log.iter().all(|r| r.status == 404 || r.status == 403),
        "{failures:#?}"
    );
    world.assert_conformant();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_errors_are_retried_honouring_retry_after() {
    let world = load_balanced_world().await;
    let clients = clients_for(&world, fast_retries());

    // Two 503s on a Cloud Run read, then the answer.
    add_fault(&world, json!({"kind": "status", "status": 503, "method": "GET", "path_regex": "/services/svc-a$", "count": 2})).await;
    let service = clients
        .run
        .service(&service_a())
        .await
        .expect("read after 503s");
    assert_eq!(
        service.name,
        format!("projects/{PROJECT}/locations/{REGION}/services/svc-a")
    );
    assert_eq!(
        statuses(&requests_to(&world, "GET", "/services/svc-a")),
        [503, 503, 200]
    );

    // A compute list page answering 503 is asked again.
    add_fault(
        &world,
        json!({"kind": "status", "status": 503, "method": "GET", "path_regex": "/global/urlMaps$"}),
    )
    .await;
    let maps = clients
        .compute
        .url_maps(PROJECT, &Scope::Global)
        .await
        .expect("list after 503");
    assert_eq!(maps.len(), 1);
    assert_eq!(
        statuses(&requests_to(&world, "GET", "/global/urlMaps")),
        [503, 200]
    );

    // 429 with Retry-After: 1 on an IAP policy read (a read-only POST): the retry waits for it.
    let number = world.emulator.project_number(PROJECT).expect("number");
    let resource = cloud_run_resource(&number, REGION, "svc-a");
    add_fault(&world, json!({"kind": "status", "status": 429, "method": "POST", "path_regex": ":getIamPolicy$", "retry_after": 1})).await;
    let started = Instant::now();
    clients
        .iap
        .iam_policy(&resource)
        .await
        .expect("read after 429");
    let waited = started.elapsed();
    assert_eq!(
        statuses(&requests_to(&world, "POST", ":getIamPolicy")),
        [429, 200]
    );
    // A lower bound, not a speed claim: the 5 ms backoff would have retried at once.
    assert!(
        waited >= Duration::from_secs(1),
        "retried after {waited:?}, before Retry-After"
    );

    // When Retry-After lies beyond the call's retry budget the client gives up at once, with
    // the delay Google asked for, instead of retrying early.
    let impatient = clients_for(
        &world,
        RetryPolicy {
            deadline: Duration::from_secs(2),
            ..fast_retries()
        },
    );
    world.emulator.clear_requests();
    add_fault(&world, json!({"kind": "status", "status": 429, "method": "GET", "path_regex": "/global/backendServices/web$", "retry_after": 30})).await;
    let e = api_error(
        impatient
            .compute
            .backend_service(&BackendServiceRef::global(PROJECT, "web"))
            .await,
    );
    assert_eq!(e.http_status, 429);
    assert_eq!(e.retry_delay, Some(Duration::from_secs(30)));
    assert_eq!(
        requests_to(&world, "GET", "/global/backendServices/web").len(),
        1
    );
    world.assert_conformant();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_errors_and_unguarded_writes_are_not_retried() {
    let world = load_balanced_world().await;
    let clients = clients_for(&world, fast_retries());
    let number = world.emulator.project_number(PROJECT).expect("number");
    let resource = cloud_run_resource(&number, REGION, "svc-a");

    // 400 and 403 PERMISSION_DENIED would fail again: one request each, faults left over.
    add_fault(&world, json!({"kind": "status", "status": 400, "method": "GET", "path_regex": "/services/svc-a$", "count": 3, "message": "bad request injected"})).await;
    let e = api_error(clients.run.service(&service_a()).await);
    assert_eq!(
        (e.http_status, e.status.as_deref()),
        (400, Some("INVALID_ARGUMENT"))
    );
    assert_eq!(e.message, "bad request injected");
    assert_eq!(
        statuses(&requests_to(&world, "GET", "/services/svc-a")),
        [400]
    );

    add_fault(&world, json!({"kind": "status", "status": 403, "method": "POST", "path_regex": ":getIamPolicy$", "count": 3})).await;
    let e = api_error(clients.iap.iam_policy(&resource).await);
    assert_eq!(
        (e.http_status, e.status.as_deref()),
        (403, Some("PERMISSION_DENIED"))
    );
    assert!(e.is_permission_denied());
    assert_eq!(
        statuses(&requests_to(&world, "POST", ":getIamPolicy")),
        [403]
    );

    add_fault(&world, json!({"kind": "status", "status": 403, "method": "GET", "path_regex": "/networkEndpointGroups/neg-a$", "count": 3})).await;
    let e = clients
        .compute
        .network_endpoint_group(PROJECT, REGION, "neg-a")
        .await
        .expect_err("403");
    assert_eq!(e.http_status(), Some(403));
    assert_eq!(
        requests_to(&world, "GET", "/networkEndpointGroups/neg-a").len(),
        1
    );
    world.emulator.clear_faults();

    // A setIamPolicy without an etag might clobber a concurrent change if repeated: not retried.
    let mut policy = clients.iap.iam_policy(&resource).await.expect("policy");
    policy.etag = None;
    policy.add_member(
        "roles/iap.httpsResourceAccessor",
        "user:a@example.com",
        None,
    );
    add_fault(&world, json!({"kind": "status", "status": 503, "method": "POST", "path_regex": ":setIamPolicy$", "count": 3})).await;
    let e = api_error(clients.iap.set_iam_policy(&resource, &policy).await);
    assert_eq!(e.http_status, 503);
    assert_eq!(
        statuses(&requests_to(&world, "POST", ":setIamPolicy")),
        [503]
    );
    world.assert_conformant();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_running_operations_succeed_and_fail() {
    let world = load_balanced_world().await;
    let clients = clients_for(&world, fast_retries());

    // An operation that reports "not done" first is followed to the end.
    add_fault(&world, json!({"kind": "operation_delay", "method": "PATCH", "path_regex": "/services/svc-a$", "delay_ms": 300})).await;
    let service = clients
        .run
        .set_iap_enabled(&service_a(), true, deadline())
        .await
        .expect("slow operation");
    assert!(service.iap_enabled);
    assert!(
        !requests_to(&world, "POST", ":wait").is_empty(),
        "the operation was waited for"
    );

    // A failed Cloud Run operation: its google.rpc.Status becomes the error; nothing changed.
    add_fault(&world, json!({"kind": "operation_error", "method": "PATCH", "path_regex": "/services/svc-a$", "code": 9, "message": "revision failed to start"})).await;
    let e = clients
        .run
        .set_iap_enabled(&service_a(), false, deadline())
        .await
        .expect_err("failed operation");
    let Error::Operation { name, error } = &e else {
        panic!("expected an operation error, got {e:?}");
    };
    assert!(name.contains("/operations/"), "{name}");
    assert_eq!(error.status.as_deref(), Some("FAILED_PRECONDITION"));
    assert_eq!(error.message, "revision failed to start");
    assert_eq!(world.run_service_json("svc-a").await["iapEnabled"], true);

    // A failed compute operation (error.errors[] and httpErrorStatusCode).
    add_fault(&world, json!({"kind": "operation_error", "method": "PATCH", "path_regex": "/global/backendServices/web$", "code": 13, "message": "backend update failed"})).await;
    let e = clients
        .compute
        .patch_backend_service_iap(
            &BackendServiceRef::global(PROJECT, "web"),
            &IapPatch {
                enabled: true,
                ..IapPatch::default()
            },
            deadline(),
        )
        .await
        .expect_err("failed compute operation");
    let Error::Operation { error, .. } = &e else {
        panic!("expected an operation error, got {e:?}");
    };
    assert!(error.message.contains("backend update failed"), "{e}");
    assert!(world.backend_json("web", None).await["iap"]["enabled"] != true);

    // Service Usage: a failed generateServiceIdentity operation.
    add_fault(&world, json!({"kind": "operation_error", "method": "POST", "path_regex": ":generateServiceIdentity$", "code": 7, "message": "agent denied"})).await;
    let e = clients
        .service_usage
        .generate_service_identity(PROJECT, IAP_SERVICE, deadline())
        .await
        .expect_err("failed identity operation");
    let Error::Operation { error, .. } = &e else {
        panic!("expected an operation error, got {e:?}");
    };
    assert_eq!(error.status.as_deref(), Some("PERMISSION_DENIED"));
    assert_eq!(error.message, "agent denied");
    world.assert_conformant();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etag_conflicts_are_a_distinct_error_and_read_modify_write_recovers() {
    let world = load_balanced_world().await;
    let clients = clients_for(&world, fast_retries());
    let number = world.emulator.project_number(PROJECT).expect("number");
    let resource = cloud_run_resource(&number, REGION, "svc-a");

    // A write with the etag of a policy someone else changed since: 409 ABORTED, told apart.
    let mut stale = clients.iap.iam_policy(&resource).await.expect("policy");
    world
        .set_iap_members(
            &resource,
            "roles/iap.tunnelResourceAccessor",
            &["user:oob@example.com"],
        )
        .await;
    stale.add_member(
        "roles/iap.httpsResourceAccessor",
        "user:a@example.com",
        None,
    );
    world.emulator.clear_requests();
    let e = clients
        .iap
        .set_iam_policy(&resource, &stale)
        .await
        .expect_err("stale etag");
    assert!(e.is_conflict(), "{e:?}");
    assert!(!e.is_not_found() && !e.is_precondition_failed() && !e.is_permission_denied());
    assert_eq!((e.http_status(), e.status()), (Some(409), Some("ABORTED")));
    assert_eq!(
        statuses(&requests_to(&world, "POST", ":setIamPolicy")),
        [409]
    );

    // Read-modify-write re-reads after a conflict and keeps the other change.
    add_fault(
        &world,
        json!({"kind": "stale_etag", "method": "POST", "path_regex": ":setIamPolicy$"}),
    )
    .await;
    let written = clients
        .iap
        .modify_iam_policy(&resource, deadline(), |p| {
            p.set_binding(
                "roles/iap.httpsResourceAccessor",
                None,
                &["user:a@example.com".to_string()],
            )
        })
        .await
        .expect("modify after a conflict");
    assert_eq!(
        written.members("roles/iap.httpsResourceAccessor", None),
        vec!["user:a@example.com"]
    );
    assert_eq!(
        written.members("roles/iap.tunnelResourceAccessor", None),
        vec!["user:oob@example.com"]
    );
    assert_eq!(
        statuses(&requests_to(&world, "POST", ":setIamPolicy")),
        [409, 409, 200]
    );

    // Compute's stale fingerprint (412) is re-read and sent again with a new requestId.
    world.emulator.clear_requests();
    add_fault(&world, json!({"kind": "stale_fingerprint", "method": "PATCH", "path_regex": "/global/backendServices/web$"})).await;
    let patched = clients
        .compute
        .patch_backend_service_iap(
            &BackendServiceRef::global(PROJECT, "web"),
            &IapPatch {
                enabled: true,
                ..IapPatch::default()
            },
            deadline(),
        )
        .await
        .expect("patch after a stale fingerprint");
    assert!(patched.iap_enabled());
    let patches = requests_to(&world, "PATCH", "/global/backendServices/web");
    assert_eq!(statuses(&patches), [412, 200]);
    assert_ne!(
        patches[0].query, patches[1].query,
        "a new requestId per attempt"
    );
    world.assert_conformant();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_policy_that_never_stops_changing_ends_in_an_error_naming_the_attempts() {
    let world = load_balanced_world().await;
    let retry = fast_retries();
    let budget = retry.max_attempts * iaprun::google::iam::CONFLICT_ATTEMPTS_FACTOR;
    let clients = clients_for(&world, retry);
    let number = world.emulator.project_number(PROJECT).expect("number");
    let resource = cloud_run_resource(&number, REGION, "svc-a");
    add_fault(
        &world,
        json!({"kind": "stale_etag", "method": "POST", "path_regex": ":setIamPolicy$", "count": 1000}),
    )
    .await;
    world.emulator.clear_requests();
    let e = clients
        .iap
        .modify_iam_policy(&resource, deadline(), |p| {
            p.set_binding(
                "roles/iap.httpsResourceAccessor",
                None,
                &["user:a@example.com".to_string()],
            )
        })
        .await
        .expect_err("conflicts without end");
    assert!(e.is_conflict(), "{e:?}");
    assert!(
        e.to_string()
            .contains(&format!("gave up after {budget} attempts")),
        "{e}"
    );
    // More cycles than a failed call gets, and no more than the budget.
    let sets = requests_to(&world, "POST", ":setIamPolicy");
    assert!(budget > fast_retries().max_attempts);
    assert_eq!(sets.len(), budget as usize);
    assert!(sets.iter().all(|r| r.status == 409));
    world.assert_conformant();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_writer_backing_off_after_a_conflict_lets_the_next_writer_of_the_policy_go() {
    let world = load_balanced_world().await;
    // A backoff far longer than a read and a write against the local emulator.
    let clients = clients_for(
        &world,
        RetryPolicy {
            initial_delay: Duration::from_millis(500),
            max_delay: Duration::from_millis(500),
            multiplier: 1.0,
            max_attempts: 3,
            deadline: Duration::from_secs(30),
        },
    );
    let number = world.emulator.project_number(PROJECT).expect("number");
    let resource = cloud_run_resource(&number, REGION, "svc-a");
    add_fault(
        &world,
        json!({"kind": "stale_etag", "method": "POST", "path_regex": ":setIamPolicy$"}),
    )
    .await;
    world.emulator.clear_requests();

    let writer = |role: &'static str, member: &'static str| {
        let (clients, resource) = (clients.clone(), resource.clone());
        tokio::spawn(async move {
            clients
                .iap
                .modify_iam_policy(&resource, deadline(), |p| {
                    p.set_binding(role, None, &[member.to_string()])
                })
                .await
        })
    };
    let first = writer("roles/iap.httpsResourceAccessor", "user:a@example.com");
    let second = writer("roles/iap.tunnelResourceAccessor", "user:b@example.com");
    first.await.expect("task").expect("first writer");
    second.await.expect("task").expect("second writer");

    // Whoever wrote first met the conflict; the other writer's write came next, during that
    // backoff, instead of waiting behind the retry.
    let sets = requests_to(&world, "POST", ":setIamPolicy");
    assert_eq!(statuses(&sets), [409, 200, 200]);
    let roles = |record: &RequestRecord| -> Vec<String> {
        record.body["policy"]["bindings"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|b| b["role"].as_str().map(str::to_string))
            .collect()
    };
    let conflicted = roles(&sets[0]);
    assert_eq!(conflicted.len(), 1, "{:?}", sets[0].body);
    assert!(
        !roles(&sets[1]).contains(&conflicted[0]),
        "the retry went before the other writer: {:?}",
        sets[1].body
    );
    // The last write holds both bindings: nothing was lost.
    assert_eq!(roles(&sets[2]).len(), 2, "{:?}", sets[2].body);
    world.assert_conformant();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_generated_service_account_key_is_exchanged_for_a_token_at_its_token_uri() {
    let world = World::start().await;
    world.run_service("svc-a", json!({})).await;
    let key = world
        .emulator
        .service_account_key(PROJECT, "deployer")
        .await
        .expect("key");
    assert_eq!(
        key["token_uri"],
        format!("{}/token", world.emulator.base_url())
    );
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("temp dir");
    let key_file = dir.path().join("key.json");
    std::fs::write(&key_file, key.to_string()).expect("key file");
    for credentials in [
        Credentials::ServiceAccountJson(key.to_string()),
        Credentials::ServiceAccountFile(key_file.clone()),
    ] {
        world.emulator.clear_requests();
        let config = Config {
            credentials: credentials.clone(),
            ..Config::emulator(&world.host())
        };
        let clients = Clients::with_retry_policy(config, fast_retries()).expect("clients");
        clients.run.service(&service_a()).await.expect("first call");
        clients
            .run
            .service(&service_a())
            .await
            .expect("second call");
        let log: Vec<(String, u16)> = world
            .emulator
            .requests()
            .into_iter()
            .map(|r| (format!("{} {}", r.method, r.path), r.status))
            .collect();
        let get = format!("GET {}", World::run_path("svc-a"));
        assert_eq!(
            log,
            [
                ("POST /token".to_string(), 200),
                (get.clone(), 200),
                (get, 200)
            ],
            "{credentials:?}: one exchange, the token reused"
        );
    }

    // A refused exchange is an authentication error, and no API request goes out.
    world.emulator.clear_requests();
    add_fault(&world, json!({"kind": "status", "status": 400, "method": "POST", "path_regex": "^/token$", "count": 10})).await;
    let config = Config {
        credentials: Credentials::ServiceAccountJson(key.to_string()),
        ..Config::emulator(&world.host())
    };
    let clients = Clients::with_retry_policy(config, fast_retries()).expect("clients");
    let e = clients
        .run
        .service(&service_a())
        .await
        .expect_err("refused token");
    assert!(matches!(e, Error::Auth(_)), "{e:?}");
    assert!(
        !e.to_string().contains("PRIVATE KEY"),
        "no key material in the error: {e}"
    );
    assert!(world.emulator.requests().iter().all(|r| r.path == "/token"));
    world.assert_conformant();
}
