use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use rand::SeedableRng;
use serde_json::json;

use super::*;
use crate::google::testutil::{fast_retries, Reply, Stub};
use crate::google::{ServiceName, EMULATOR_TOKEN};

fn policy(initial_ms: u64, max_ms: u64) -> RetryPolicy {
    RetryPolicy {
        initial_delay: Duration::from_millis(initial_ms),
        max_delay: Duration::from_millis(max_ms),
        multiplier: 2.0,
        max_attempts: 10,
        deadline: Duration::from_secs(60),
    }
}

fn api_error(status: u16, body: Value) -> ApiError {
    ApiError::from_body(status, body.to_string().as_bytes())
}

fn svc() -> ServiceName {
    ServiceName::new("p", "us-central1", "svc")
}

fn error_body(code: u16, status: &str, reason: Option<&str>) -> Value {
    let mut error =
        json!({"code": code, "message": format!("{status} happened"), "status": status});
    if let Some(reason) = reason {
        error["details"] = json!([{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": reason, "domain": "googleapis.com"}]);
    }
    json!({ "error": error })
}

fn compute_error(code: u16, reason: &str) -> Value {
    json!({"error": {"code": code, "message": reason, "errors": [{"message": reason, "domain": "global", "reason": reason}]}})
}

fn service_json() -> Value {
    json!({"name": "projects/p/locations/us-central1/services/svc", "etag": "\"e1\""})
}

// --- pure functions -------------------------------------------------------------------------

#[test]
fn backoff_grows_and_stays_within_bounds() {
    let p = policy(100, 1_000);
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    for attempt in 1..=20u32 {
        let base = (100.0 * 2f64.powi(attempt as i32 - 1)).min(1_000.0);
        for _ in 0..50 {
            let d = backoff_delay(&p, attempt, &mut rng).as_secs_f64() * 1000.0;
            assert!(
                d >= base / 2.0 - 1e-6 && d <= base + 1e-6,
                "attempt {attempt}: {d} not in [{}, {base}]",
                base / 2.0
            );
        }
    }
    // Huge attempt numbers and odd policies do not overflow or panic.
    assert!(backoff_delay(&p, u32::MAX, &mut rng) <= Duration::from_secs(1));
    let zero = policy(0, 0);
    assert_eq!(backoff_delay(&zero, 3, &mut rng), Duration::ZERO);
}

#[test]
fn retry_after_parsing() {
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777); // Sun, 06 Nov 1994 08:49:37 GMT
    assert_eq!(parse_retry_after("3", now), Some(Duration::from_secs(3)));
    assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
    assert_eq!(
        parse_retry_after("Sun, 06 Nov 1994 08:49:47 GMT", now),
        Some(Duration::from_secs(10))
    );
    assert_eq!(
        parse_retry_after("Sun, 06 Nov 1994 08:49:00 GMT", now),
        Some(Duration::ZERO),
        "a date in the past means now"
    );
    assert_eq!(parse_retry_after("soon", now), None);
    assert_eq!(parse_retry_after("-5", now), None);
    assert_eq!(parse_retry_after("", now), None);
}

#[test]
fn retry_predicates() {
    for code in [500, 502, 503, 504] {
        assert!(is_transient_server_error(&api_error(code, json!({}))));
        assert!(is_retryable_api_error(
            Api::Run,
            &api_error(code, json!({}))
        ));
    }
    for code in [400, 401, 403, 404, 409, 412, 501] {
        assert!(
            !is_transient_server_error(&api_error(code, json!({}))),
            "{code}"
        );
    }
    let limited = api_error(429, error_body(429, "RESOURCE_EXHAUSTED", None));
    assert!(is_rate_limited(&limited));
    assert!(is_retryable_api_error(Api::Iap, &limited));
    let rate = api_error(
        429,
        error_body(429, "RESOURCE_EXHAUSTED", Some("RATE_LIMIT_EXCEEDED")),
    );
    assert!(is_retryable_api_error(Api::Run, &rate));
    // A hard quota does not lift by waiting: reported at once.
    for reason in ["QUOTA_EXCEEDED", "RESOURCE_EXHAUSTED"] {
        let hard = api_error(429, error_body(429, "RESOURCE_EXHAUSTED", Some(reason)));
        assert!(!is_rate_limited(&hard), "{reason}");
        assert!(!is_retryable_api_error(Api::Run, &hard), "{reason}");
    }
    let compute_hard = api_error(429, compute_error(429, "quotaExceeded"));
    assert!(!is_retryable_api_error(Api::Compute, &compute_hard));
    let compute_rate = api_error(429, compute_error(429, "rateLimitExceeded"));
    assert!(is_retryable_api_error(Api::Compute, &compute_rate));

    for reason in [
        "rateLimitExceeded",
        "userRateLimitExceeded",
        "CONCURRENT_OPERATIONS_QUOTA_EXCEEDED",
    ] {
        let e = api_error(403, compute_error(403, reason));
        assert!(is_compute_retryable_403(&e), "{reason}");
        assert!(is_retryable_api_error(Api::Compute, &e), "{reason}");
        assert!(
            !is_retryable_api_error(Api::Run, &e),
            "{reason} outside compute"
        );
    }
    let denied = api_error(403, error_body(403, "PERMISSION_DENIED", None));
    assert!(!is_retryable_api_error(Api::Compute, &denied));
    let disabled = api_error(
        403,
        error_body(403, "PERMISSION_DENIED", Some("SERVICE_DISABLED")),
    );
    assert!(!is_retryable_api_error(Api::ServiceUsage, &disabled));

    let not_ready = api_error(400, compute_error(400, "resourceNotReady"));
    assert!(is_compute_resource_not_ready(&not_ready));
    assert!(is_retryable_api_error(Api::Compute, &not_ready));
    assert!(!is_retryable_api_error(
        Api::Compute,
        &api_error(400, compute_error(400, "invalid"))
    ));
    let busy = api_error(409, compute_error(409, "operationInProgress"));
    assert!(is_compute_operation_in_progress(&busy));
    assert!(!is_retryable_api_error(
        Api::Compute,
        &api_error(409, compute_error(409, "alreadyExists"))
    ));
    assert!(!is_retryable_api_error(
        Api::Run,
        &api_error(409, error_body(409, "ABORTED", None))
    ));
}

#[test]
fn redaction_hides_secrets_at_any_depth() {
    let body = json!({
        "fingerprint": "f", "iap": {"enabled": true, "oauth2ClientSecret": "hunter2", "oauth2ClientSecretSha256": "abc"},
        "list": [{"clientSecret": "s2"}], "access_token": "ya29.x", "private_key": "-----BEGIN"
    });
    let text = redacted(&body).to_string();
    for secret in ["hunter2", "s2", "ya29.x", "-----BEGIN"] {
        assert!(!text.contains(secret), "{secret} leaked: {text}");
    }
    assert!(text.contains("\"abc\""), "hash kept: {text}");
    assert!(text.contains("\"fingerprint\":\"f\""));
}

#[test]
fn base_url_validation_and_joining() {
    let base = parse_base_url("run", "http://127.0.0.1:9/prefix").expect("base");
    let url = base.join(["v2", "projects", "p q", "services", "a?b#c/d"]);
    assert_eq!(
        url.as_str(),
        "http://127.0.0.1:9/prefix/v2/projects/p%20q/services/a%3Fb%23c%2Fd"
    );
    assert!(parse_base_url("run", "ftp://x/").is_err());
    assert!(parse_base_url("run", "http://x/?a=b").is_err());
    assert!(parse_base_url("run", "/relative").is_err());
}

// --- against a stub server ------------------------------------------------------------------

#[tokio::test]
async fn sends_bearer_token_user_agent_and_encoded_path() {
    let stub = Stub::start(|_, _| Reply::json(200, service_json())).await;
    let clients = stub.clients();
    let name = ServiceName::new("p", "us-central1", "a b");
    clients.run.service(&name).await.expect("service");
    let seen = stub.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].method, "GET");
    assert_eq!(
        seen[0].path,
        "/v2/projects/p/locations/us-central1/services/a%20b"
    );
    assert_eq!(
        seen[0].authorization.as_deref(),
        Some(format!("Bearer {EMULATOR_TOKEN}").as_str())
    );
    assert!(seen[0]
        .user_agent
        .as_deref()
        .is_some_and(|ua| ua.starts_with("terraform-provider-iaprun/")));
}

#[tokio::test]
async fn policy_reads_request_version_3_in_the_query_or_the_body() {
    let stub = Stub::start(|_, _| Reply::json(200, json!({"version": 3, "etag": "BwA="}))).await;
    let clients = stub.clients();
    clients.run.iam_policy(&svc()).await.expect("run policy");
    clients
        .iap
        .iam_policy("projects/1/iap_web/compute/services/web")
        .await
        .expect("iap policy");
    let seen = stub.seen();
    assert_eq!(seen.len(), 2);
    // Run's getIamPolicy is a GET: the version rides in the query, there is no body.
    assert_eq!(seen[0].method, "GET");
    assert_eq!(seen[0].query, "options.requestedPolicyVersion=3");
    assert_eq!(seen[0].body, Value::Null);
    // IAP's is a POST: the version rides in the body.
    assert_eq!(seen[1].method, "POST");
    assert_eq!(seen[1].query, "");
    assert_eq!(
        seen[1].body,
        json!({"options": {"requestedPolicyVersion": 3}})
    );
}

#[tokio::test]
async fn retries_transient_errors_on_reads() {
    for status in [429u16, 500, 502, 503, 504] {
        let stub = Stub::start(move |_, n| {
            if n < 2 {
                Reply::json(
                    status,
                    json!({"error": {"code": status, "message": "try again"}}),
                )
            } else {
                Reply::json(200, service_json())
            }
        })
        .await;
        let service = stub.clients().run.service(&svc()).await.expect("retried");
        assert_eq!(service.etag.as_deref(), Some("\"e1\""));
        assert_eq!(stub.count(), 3, "status {status}");
    }
}

#[tokio::test]
async fn gives_up_after_max_attempts() {
    let stub = Stub::start(|_, _| Reply::json(503, error_body(503, "UNAVAILABLE", None))).await;
    let err = stub
        .clients()
        .run
        .service(&svc())
        .await
        .expect_err("always 503");
    assert_eq!(stub.count(), fast_retries().max_attempts as usize);
    assert_eq!(err.http_status(), Some(503));
    assert_eq!(err.status(), Some("UNAVAILABLE"));
}

#[tokio::test]
async fn does_not_retry_client_errors() {
    for (status, body) in [
        (400, error_body(400, "INVALID_ARGUMENT", None)),
        (403, error_body(403, "PERMISSION_DENIED", None)),
        (404, error_body(404, "NOT_FOUND", None)),
        (409, error_body(409, "ABORTED", None)),
    ] {
        let stub = Stub::start(move |_, _| Reply::json(status, body.clone())).await;
        let err = stub.clients().run.service(&svc()).await.expect_err("error");
        assert_eq!(stub.count(), 1, "status {status} was retried");
        assert_eq!(err.http_status(), Some(status));
    }
}

#[tokio::test]
async fn retry_after_header_is_recorded_and_bounds_the_wait() {
    // The server asks for 1 hour; the call's budget is 30 s, so it fails at once instead of
    // sleeping, and reports the delay Google asked for.
    let stub = Stub::start(|_, _| {
        Reply::json(429, error_body(429, "RESOURCE_EXHAUSTED", None)).header("retry-after", "3600")
    })
    .await;
    let err = stub.clients().run.service(&svc()).await.expect_err("429");
    assert_eq!(stub.count(), 1);
    assert_eq!(err.retry_delay(), Some(Duration::from_secs(3600)));

    // RetryInfo in the body works the same way.
    let stub = Stub::start(|_, _| {
        let mut body = error_body(503, "UNAVAILABLE", None);
        body["error"]["details"] =
            json!([{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "7200s"}]);
        Reply::json(503, body)
    })
    .await;
    let err = stub.clients().run.service(&svc()).await.expect_err("503");
    assert_eq!(stub.count(), 1);
    assert_eq!(err.retry_delay(), Some(Duration::from_secs(7200)));

    // A zero Retry-After is honoured as "retry now".
    let stub = Stub::start(|_, n| {
        if n == 0 {
            Reply::json(503, error_body(503, "UNAVAILABLE", None)).header("retry-after", "0")
        } else {
            Reply::json(200, service_json())
        }
    })
    .await;
    stub.clients().run.service(&svc()).await.expect("retried");
    assert_eq!(stub.count(), 2);
}

#[tokio::test]
async fn compute_specific_retries() {
    let stub = Stub::start(|_, n| match n {
        0 => Reply::json(403, compute_error(403, "rateLimitExceeded")),
        1 => Reply::json(400, compute_error(400, "resourceNotReady")),
        _ => Reply::json(
            200,
            json!({"name": "neg", "networkEndpointType": "SERVERLESS"}),
        ),
    })
    .await;
    let neg = stub
        .clients()
        .compute
        .network_endpoint_group("p", "r", "neg")
        .await
        .expect("retried");
    assert_eq!(neg.network_endpoint_type.as_deref(), Some("SERVERLESS"));
    assert_eq!(stub.count(), 3);

    let stub = Stub::start(|_, _| Reply::json(403, compute_error(403, "forbidden"))).await;
    let err = stub
        .clients()
        .compute
        .network_endpoint_group("p", "r", "neg")
        .await
        .expect_err("forbidden");
    assert_eq!(stub.count(), 1);
    assert!(err.is_permission_denied());
}

#[tokio::test]
async fn unsafe_calls_are_not_retried() {
    let stub = Stub::start(|_, _| Reply::json(503, error_body(503, "UNAVAILABLE", None))).await;
    let clients = stub.clients();
    // setIamPolicy without an etag could clobber a concurrent change if repeated.
    let unguarded = crate::google::Policy::default();
    clients
        .iap
        .set_iam_policy("projects/p/iap_web/compute/services/bs", &unguarded)
        .await
        .expect_err("503");
    assert_eq!(stub.count(), 1);
    // With the etag it is guarded, so it is retried.
    let guarded = crate::google::Policy {
        etag: Some("BwE=".into()),
        ..Default::default()
    };
    clients
        .iap
        .set_iam_policy("projects/p/iap_web/compute/services/bs", &guarded)
        .await
        .expect_err("503");
    assert_eq!(stub.count(), 1 + fast_retries().max_attempts as usize);
}

#[tokio::test]
async fn static_token_rejection_is_not_retried_and_explained() {
    let stub = Stub::start(|_, _| {
        Reply::json(401, json!({"error": {"code": 401, "message": "Request had invalid authentication credentials.", "status": "UNAUTHENTICATED"}}))
    })
    .await;
    let clients = stub.clients_with(
        Credentials::AccessToken("ya29.secret-token".into()),
        fast_retries(),
    );
    let err = clients.run.service(&svc()).await.expect_err("401");
    assert_eq!(stub.count(), 1);
    let text = err.to_string();
    assert!(text.contains("UNAUTHENTICATED"), "{text}");
    assert!(text.contains("access token"), "{text}");
    assert!(!text.contains("ya29.secret-token"), "{text}");
    assert_eq!(
        stub.seen()[0].authorization.as_deref(),
        Some("Bearer ya29.secret-token")
    );
}

/// A throwaway RSA key as PKCS#8 PEM (generated once; slow in debug builds).
pub(crate) fn test_key_pem() -> &'static str {
    static KEY: OnceLock<String> = OnceLock::new();
    KEY.get_or_init(|| {
        use rsa::pkcs8::EncodePrivateKey;
        let key = rsa::RsaPrivateKey::new(&mut rand::thread_rng(), 2048).expect("generate RSA key");
        key.to_pkcs8_pem(rsa::pkcs8::LineEnding::LF)
            .expect("encode key")
            .to_string()
    })
}

#[tokio::test]
async fn service_account_token_is_refreshed_once_after_401() {
    let issued = Arc::new(AtomicUsize::new(0));
    let counter = issued.clone();
    let stub = Stub::start(move |seen, _| {
        if seen.path == "/token" {
            let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
            return Reply::json(200, json!({"access_token": format!("tok-{n}"), "expires_in": 3600, "token_type": "Bearer"}));
        }
        if seen.authorization.as_deref() == Some("Bearer tok-1") {
            Reply::json(401, json!({"error": {"code": 401, "status": "UNAUTHENTICATED", "message": "expired"}}))
        } else {
            Reply::json(200, service_json())
        }
    })
    .await;
    let key = json!({
        "type": "service_account", "client_email": "sa@p.iam.gserviceaccount.com",
        "private_key": test_key_pem(), "token_uri": format!("http://{}/token", stub.addr), "project_id": "p"
    });
    let clients = stub.clients_with(
        Credentials::ServiceAccountJson(key.to_string()),
        fast_retries(),
    );
    clients.run.service(&svc()).await.expect("refreshed");
    assert_eq!(issued.load(Ordering::SeqCst), 2, "one refresh");
    let api_calls: Vec<_> = stub
        .seen()
        .into_iter()
        .filter(|s| s.path != "/token")
        .collect();
    assert_eq!(api_calls.len(), 2);
    assert_eq!(api_calls[1].authorization.as_deref(), Some("Bearer tok-2"));

    // A second call reuses the cached refreshed token.
    clients.run.service(&svc()).await.expect("cached");
    assert_eq!(issued.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn persistent_401_refreshes_only_once() {
    let stub = Stub::start(|seen, _| {
        if seen.path == "/token" {
            Reply::json(200, json!({"access_token": "tok", "expires_in": 3600}))
        } else {
            Reply::json(
                401,
                json!({"error": {"code": 401, "status": "UNAUTHENTICATED", "message": "nope"}}),
            )
        }
    })
    .await;
    let key = json!({"client_email": "sa@p.iam.gserviceaccount.com", "private_key": test_key_pem(),
                     "token_uri": format!("http://{}/token", stub.addr)});
    let clients = stub.clients_with(
        Credentials::ServiceAccountJson(key.to_string()),
        fast_retries(),
    );
    let err = clients.run.service(&svc()).await.expect_err("401");
    assert_eq!(err.http_status(), Some(401));
    let seen = stub.seen();
    assert_eq!(seen.iter().filter(|s| s.path != "/token").count(), 2);
    assert_eq!(seen.iter().filter(|s| s.path == "/token").count(), 2);
}

#[tokio::test]
async fn token_endpoint_failure_is_an_auth_error() {
    let stub = Stub::start(|_, _| {
        Reply::json(
            400,
            json!({"error": "invalid_grant", "error_description": "Invalid JWT Signature."}),
        )
    })
    .await;
    let key = json!({"client_email": "sa@p.iam.gserviceaccount.com", "private_key": test_key_pem(),
                     "token_uri": format!("http://{}/token", stub.addr)});
    let clients = stub.clients_with(
        Credentials::ServiceAccountJson(key.to_string()),
        fast_retries(),
    );
    let err = clients.run.service(&svc()).await.expect_err("no token");
    assert!(matches!(err, Error::Auth(_)), "{err}");
    assert!(!err.to_string().contains("PRIVATE KEY"));
    // The reason (here "Invalid JWT Signature.") is only in the log: the message says where.
    assert!(err.to_string().contains("TF_LOG=warn"), "{err}");
    assert!(
        stub.seen().iter().all(|s| s.path == "/token"),
        "no API call without a token"
    );
}

#[tokio::test]
async fn malformed_oversized_and_wrong_typed_answers_are_decode_errors() {
    let stub = Stub::start(|_, _| Reply::raw(200, "{not json")).await;
    let err = stub
        .clients()
        .run
        .service(&svc())
        .await
        .expect_err("malformed");
    assert!(matches!(err, Error::Decode { .. }), "{err}");

    let stub = Stub::start(|_, _| Reply::json(200, json!({"iapEnabled": "yes"}))).await;
    let err = stub
        .clients()
        .run
        .service(&svc())
        .await
        .expect_err("wrong type");
    assert!(matches!(err, Error::Decode { .. }), "{err}");

    let huge = "x".repeat(MAX_BODY_BYTES + 1);
    let stub = Stub::start(move |_, _| Reply::raw(200, huge.clone())).await;
    let err = stub.clients().run.service(&svc()).await.expect_err("huge");
    assert!(err.to_string().contains("larger than"), "{err}");
    assert_eq!(stub.count(), 1);
}

#[tokio::test]
async fn connection_failures_are_transport_errors() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    let config = Config::emulator(&addr.to_string());
    let clients =
        crate::google::Clients::with_retry_policy(config, fast_retries()).expect("clients");
    let err = clients.run.service(&svc()).await.expect_err("refused");
    assert!(matches!(err, Error::Transport { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("GET v2/projects/p/locations/us-central1/services/svc"),
        "{err}"
    );
}

/// A raw TCP server that drops the first `drops` connections, then answers `200 {}`-style.
async fn flaky_server(
    drops: usize,
    body: &'static str,
) -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let connections = Arc::new(AtomicUsize::new(0));
    let count = connections.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let n = count.fetch_add(1, Ordering::SeqCst);
            let mut buf = vec![0u8; 65536];
            let _ = socket.read(&mut buf).await;
            if n < drops {
                drop(socket);
                continue;
            }
            let response = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{}",
                body.len(),
                body
            );
            let _ = socket.write_all(response.as_bytes()).await;
            let _ = socket.shutdown().await;
        }
    });
    (addr, connections)
}

#[tokio::test]
async fn dropped_connections_are_retried_only_for_safe_calls() {
    let (addr, connections) = flaky_server(
        1,
        r#"{"name":"projects/p/locations/us-central1/services/svc"}"#,
    )
    .await;
    let clients = crate::google::Clients::with_retry_policy(
        Config::emulator(&addr.to_string()),
        fast_retries(),
    )
    .expect("clients");
    clients
        .run
        .service(&svc())
        .await
        .expect("retried after reset");
    assert_eq!(connections.load(Ordering::SeqCst), 2);

    let (addr, connections) = flaky_server(1, r#"{"bindings":[]}"#).await;
    let clients = crate::google::Clients::with_retry_policy(
        Config::emulator(&addr.to_string()),
        fast_retries(),
    )
    .expect("clients");
    let err = clients
        .iap
        .set_iam_policy("projects/p/iap_web", &crate::google::Policy::default())
        .await
        .expect_err("unsafe call not retried");
    assert!(matches!(err, Error::Transport { .. }), "{err}");
    assert_eq!(connections.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn stop_cancels_in_flight_and_future_calls() {
    let stub =
        Stub::start(|_, _| Reply::json(200, service_json()).delayed(Duration::from_secs(60))).await;
    let clients = stub.clients();
    let stop = clients.stop_handle();
    let run = clients.run.clone();
    let call = tokio::spawn(async move { run.service(&svc()).await });
    while stub.count() == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    stop.stop();
    let result = call.await.expect("join");
    assert!(matches!(result, Err(Error::Cancelled)), "{result:?}");
    assert!(stop.is_stopped());
    let again = clients.run.service(&svc()).await;
    assert!(matches!(again, Err(Error::Cancelled)));
    assert_eq!(stub.count(), 1, "no request after stop");
}

/// The gcloud fallback of application default credentials blocks the thread it runs on; on the
/// provider's one-thread runtime, `off_runtime` keeps that thread free for every other call.
#[tokio::test(flavor = "current_thread")]
async fn a_blocking_credential_lookup_leaves_the_runtime_thread_free() {
    let (unblock, blocked) = std::sync::mpsc::channel::<()>();
    let lookup = off_runtime(async move {
        // What `gcloud auth print-access-token` does to its thread: waits, blocking it.
        let freed = blocked.recv_timeout(Duration::from_secs(20)).is_ok();
        // Timers still work from the blocking pool: the runtime's thread drives them.
        tokio::time::sleep(Duration::from_millis(5)).await;
        freed
    });
    let other_call = async move {
        // Runs on the runtime's thread only while the lookup does not hold it.
        tokio::task::yield_now().await;
        unblock.send(()).unwrap();
    };
    let (freed, ()) = tokio::join!(lookup, other_call);
    assert!(
        freed.unwrap(),
        "the blocking lookup held the runtime's only thread"
    );
}
