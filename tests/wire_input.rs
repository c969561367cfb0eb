//! Untrusted wire input never panics: DynamicValue bytes (msgpack and JSON) decoded against every
//! schema type the provider serves, and arbitrary API answers (wrong types, missing fields,
//! invalid JSON, huge and deeply nested bodies) fed to every typed Google API call.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use axum::response::IntoResponse;
use proptest::prelude::*;
use serde_json::{json, Value as Json};

use iaprun::framework::Type;
use iaprun::google::{
    BackendServiceRef, Clients, Config, IapPatch, Policy, RetryPolicy, Scope, ServiceName,
};

use crate::support::wire::schema_types;

/// Attribute and block names of every schema (plus a stranger), so generated objects often
/// have the right keys with the wrong values.
fn schema_keys() -> Vec<String> {
    fn collect(ty: &Type, out: &mut Vec<String>) {
        match ty {
            Type::Object(fields) => {
                for (name, field) in fields {
                    out.push(name.clone());
                    collect(field, out);
                }
            }
            Type::List(e) | Type::Set(e) | Type::Map(e) => collect(e, out),
            Type::Tuple(items) => items.iter().for_each(|t| collect(t, out)),
            _ => {}
        }
    }
    let mut keys = Vec::new();
    for ty in schema_types() {
        collect(&ty, &mut keys);
    }
    keys.sort();
    keys.dedup();
    keys.push("not_an_attribute".into());
    keys
}

/// A msgpack value tree whose map keys come from `keys`.
fn arb_msgpack(keys: Vec<String>) -> impl Strategy<Value = rmpv::Value> {
    let leaf = prop_oneof![
        Just(rmpv::Value::Nil),
        any::<bool>().prop_map(rmpv::Value::from),
        any::<i64>().prop_map(rmpv::Value::from),
        any::<f64>().prop_map(rmpv::Value::from),
        ".{0,12}".prop_map(rmpv::Value::from),
        prop::collection::vec(any::<u8>(), 0..8).prop_map(rmpv::Value::Binary),
        (any::<i8>(), prop::collection::vec(any::<u8>(), 0..6))
            .prop_map(|(code, data)| rmpv::Value::Ext(code, data)),
    ];
    leaf.prop_recursive(4, 48, 6, move |inner| {
        let key = prop::sample::select(keys.clone());
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(rmpv::Value::Array),
            prop::collection::vec((key, inner), 0..8).prop_map(|pairs| rmpv::Value::Map(
                pairs
                    .into_iter()
                    .map(|(k, v)| (rmpv::Value::from(k), v))
                    .collect()
            )),
        ]
    })
}

/// A JSON tree whose object keys come from `keys`.
fn arb_json(keys: Vec<String>) -> impl Strategy<Value = Json> {
    let leaf = prop_oneof![
        Just(Json::Null),
        any::<bool>().prop_map(Json::from),
        any::<i64>().prop_map(Json::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(Json::Null, Json::Number)),
        ".{0,12}".prop_map(Json::from),
    ];
    leaf.prop_recursive(4, 48, 6, move |inner| {
        let key = prop::sample::select(keys.clone());
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Json::Array),
            prop::collection::vec((key, inner), 0..8)
                .prop_map(|pairs| Json::Object(pairs.into_iter().collect())),
        ]
    })
}

/// A decoded value must really be of the type: it encodes again.
fn check_decoded(
    result: Result<iaprun::framework::Value, iaprun::protocol::CodecError>,
    ty: &Type,
) {
    if let Ok(value) = result {
        assert!(
            iaprun::protocol::encode_msgpack(&value, ty).is_ok(),
            "decoded a value that does not fit its type: {value:?}"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_bytes_decode_to_an_error_or_a_value_of_every_schema_type(
        bytes in prop::collection::vec(any::<u8>(), 0..256)
    ) {
        for ty in schema_types() {
            check_decoded(iaprun::protocol::decode_msgpack(&bytes, &ty), &ty);
            check_decoded(iaprun::protocol::decode_json(&bytes, &ty), &ty);
        }
    }

    #[test]
    fn schema_shaped_msgpack_with_wrong_values_never_panics(value in arb_msgpack(schema_keys())) {
        let mut bytes = Vec::new();
        rmpv::encode::write_value(&mut bytes, &value).expect("encode");
        for ty in schema_types() {
            check_decoded(iaprun::protocol::decode_msgpack(&bytes, &ty), &ty);
        }
    }

    #[test]
    fn schema_shaped_json_with_wrong_values_never_panics(value in arb_json(schema_keys())) {
        let bytes = serde_json::to_vec(&value).expect("json");
        for ty in schema_types() {
            check_decoded(iaprun::protocol::decode_json(&bytes, &ty), &ty);
        }
    }
}

#[test]
fn deeply_nested_and_truncated_values_are_errors() {
    let deep_msgpack: Vec<u8> = std::iter::repeat_n(0x91u8, 100_000).collect();
    let deep_json = "[".repeat(100_000);
    for ty in schema_types() {
        assert!(iaprun::protocol::decode_msgpack(&deep_msgpack, &ty).is_err());
        assert!(iaprun::protocol::decode_json(deep_json.as_bytes(), &ty).is_err());
        // A map header promising 2^32-1 entries with none following.
        assert!(iaprun::protocol::decode_msgpack(&[0xdf, 0xff, 0xff, 0xff, 0xff], &ty).is_err());
        assert!(iaprun::protocol::decode_msgpack(&[0xdb, 0xff, 0xff, 0xff, 0xff], &ty).is_err());
    }
}

// ---- API answers -------------------------------------------------------------------------------

/// What the stub answers to every request.
#[derive(Clone)]
struct Answer {
    status: u16,
    body: Vec<u8>,
}

impl std::fmt::Debug for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown = &self.body[..self.body.len().min(2000)];
        write!(
            f,
            "HTTP {} {:?}",
            self.status,
            String::from_utf8_lossy(shown)
        )
    }
}

/// A server answering every request with the current [`Answer`].
async fn stub() -> (SocketAddr, Arc<Mutex<Answer>>) {
    let answer = Arc::new(Mutex::new(Answer {
        status: 200,
        body: b"{}".to_vec(),
    }));
    let shared = answer.clone();
    let app = axum::Router::new().fallback(move || {
        let a = shared.lock().expect("answer").clone();
        async move {
            (
                StatusCode::from_u16(a.status).unwrap_or(StatusCode::OK),
                [("content-type", "application/json")],
                a.body,
            )
                .into_response()
        }
    });
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (addr, answer)
}

fn clients(addr: SocketAddr) -> Clients {
    let mut config = Config::emulator(&addr.to_string());
    config.request_timeout = Duration::from_secs(5);
    // No retries and tiny pauses: each call sees the answer once or a few times while polling.
    let retry = RetryPolicy {
        initial_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(2),
        multiplier: 1.0,
        max_attempts: 1,
        deadline: Duration::from_secs(5),
    };
    Clients::with_retry_policy(config, retry).expect("clients")
}

/// Calls every typed API method once; each returns Ok or Err, never panics. Returns the calls
/// that succeeded, so a caller can tell that bad answers are refused.
async fn call_everything(c: &Clients) -> Vec<String> {
    let service = ServiceName::new("p-project", "us-central1", "svc");
    let global = BackendServiceRef::global("p-project", "web");
    let regional = BackendServiceRef::regional("p-project", "us-central1", "web");
    let region = Scope::Region("us-central1".into());
    let resource = "projects/p-project/iap_web/compute/services/web";
    let soon = || Instant::now() + Duration::from_millis(300);
    let mut accepted = Vec::new();
    let mut count = |name: &str, failed: bool| {
        if !failed {
            accepted.push(name.to_string());
        }
    };
    count("run.service", c.run.service(&service).await.is_err());
    count("run.iam_policy", c.run.iam_policy(&service).await.is_err());
    count(
        "run.set_iap_enabled",
        c.run.set_iap_enabled(&service, true, soon()).await.is_err(),
    );
    count(
        "run.set_iam_policy",
        c.run
            .set_iam_policy(&service, &Policy::default())
            .await
            .is_err(),
    );
    count(
        "run.modify_iam_policy",
        c.run
            .modify_iam_policy(&service, soon(), |p| {
                p.add_member("roles/run.invoker", "user:a@example.com", None)
            })
            .await
            .is_err(),
    );
    count("iap.iam_policy", c.iap.iam_policy(resource).await.is_err());
    count(
        "iap.set_iam_policy",
        c.iap
            .set_iam_policy(resource, &Policy::default())
            .await
            .is_err(),
    );
    count(
        "iap.modify_iam_policy",
        c.iap
            .modify_iam_policy(resource, soon(), |p| {
                p.set_binding(
                    "roles/iap.httpsResourceAccessor",
                    None,
                    &["user:a@example.com".to_string()],
                )
            })
            .await
            .is_err(),
    );
    count(
        "iap.iap_settings",
        c.iap.iap_settings(resource).await.is_err(),
    );
    for r in [&global, &regional] {
        count(
            "compute.backend_service",
            c.compute.backend_service(r).await.is_err(),
        );
        let patch = IapPatch {
            enabled: true,
            ..IapPatch::default()
        };
        count(
            "compute.patch_backend_service_iap",
            c.compute
                .patch_backend_service_iap(r, &patch, soon())
                .await
                .is_err(),
        );
    }
    count(
        "compute.network_endpoint_group",
        c.compute
            .network_endpoint_group("p-project", "us-central1", "neg")
            .await
            .is_err(),
    );
    for scope in [&Scope::Global, &region] {
        count(
            "compute.url_map",
            c.compute.url_map("p-project", scope, "m").await.is_err(),
        );
        count(
            "compute.url_maps",
            c.compute.url_maps("p-project", scope).await.is_err(),
        );
        count(
            "compute.target_https_proxy",
            c.compute
                .target_https_proxy("p-project", scope, "x")
                .await
                .is_err(),
        );
        count(
            "compute.target_https_proxies",
            c.compute
                .target_https_proxies("p-project", scope)
                .await
                .is_err(),
        );
        count(
            "compute.target_http_proxy",
            c.compute
                .target_http_proxy("p-project", scope, "x")
                .await
                .is_err(),
        );
        count(
            "compute.target_http_proxies",
            c.compute
                .target_http_proxies("p-project", scope)
                .await
                .is_err(),
        );
        count(
            "compute.forwarding_rule",
            c.compute
                .forwarding_rule("p-project", scope, "f")
                .await
                .is_err(),
        );
        count(
            "compute.forwarding_rules",
            c.compute
                .forwarding_rules("p-project", scope)
                .await
                .is_err(),
        );
    }
    count(
        "service_usage.service_state",
        c.service_usage
            .service_state("p-project", "iap.googleapis.com")
            .await
            .is_err(),
    );
    count(
        "service_usage.iap_service_agent",
        c.service_usage
            .iap_service_agent("p-project", "123", soon())
            .await
            .is_err(),
    );
    count(
        "resource_manager.project",
        c.resource_manager.project("p-project").await.is_err(),
    );
    accepted
}

/// Field names of the Google resources the clients decode, so generated answers often look right.
fn google_keys() -> Vec<String> {
    [
        "name",
        "etag",
        "version",
        "bindings",
        "role",
        "members",
        "condition",
        "title",
        "expression",
        "iap",
        "enabled",
        "oauth2ClientId",
        "oauth2ClientSecretSha256",
        "done",
        "error",
        "code",
        "message",
        "details",
        "response",
        "metadata",
        "selfLink",
        "status",
        "operationType",
        "targetLink",
        "httpErrorStatusCode",
        "errors",
        "projectId",
        "projectNumber",
        "parent",
        "type",
        "id",
        "backends",
        "group",
        "loadBalancingScheme",
        "protocol",
        "fingerprint",
        "cloudRun",
        "service",
        "networkEndpointType",
        "iapEnabled",
        "uri",
        "urls",
        "ingress",
        "template",
        "containers",
        "ports",
        "defaultService",
        "pathMatchers",
        "pathRules",
        "routeRules",
        "hostRules",
        "urlMap",
        "target",
        "items",
        "nextPageToken",
        "state",
        "accessSettings",
        "oauthSettings",
        "clientId",
        "email",
        "invokerIamDisabled",
        "defaultUriDisabled",
        "region",
        "sslCertificates",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn arb_answer() -> impl Strategy<Value = Answer> {
    let status = prop::sample::select(vec![
        200u16, 200, 200, 200, 400, 403, 404, 409, 412, 429, 500, 503,
    ]);
    let body = prop_oneof![
        4 => arb_json(google_keys()).prop_map(|j| serde_json::to_vec(&j).expect("json")),
        1 => prop::collection::vec(any::<u8>(), 0..64),
        1 => ".{0,40}".prop_map(String::into_bytes),
    ];
    (status, body).prop_map(|(status, body)| Answer { status, body })
}

#[test]
fn arbitrary_api_answers_to_every_typed_call_are_errors_or_values_never_panics() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let (addr, answer) = runtime.block_on(stub());
    let c = clients(addr);
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(96));
    runner
        .run(&arb_answer(), |a| {
            *answer.lock().expect("answer") = a;
            runtime.block_on(call_everything(&c));
            Ok(())
        })
        .expect("no panic on any answer");

    // Specific malformed answers: every call refuses them.
    let big = {
        let mut b = b"{\"name\": \"".to_vec();
        b.extend(std::iter::repeat_n(b'x', 33 * 1024 * 1024));
        b.extend(b"\"}");
        b
    };
    let cases: Vec<(&str, Answer)> = vec![
        (
            "invalid JSON",
            Answer {
                status: 200,
                body: b"{\"name\": ".to_vec(),
            },
        ),
        (
            "an array",
            Answer {
                status: 200,
                body: b"[1, 2, 3]".to_vec(),
            },
        ),
        (
            "deep nesting",
            Answer {
                status: 200,
                body: "[".repeat(200_000).into_bytes(),
            },
        ),
        (
            "a body over the size limit",
            Answer {
                status: 200,
                body: big,
            },
        ),
        (
            "an error that is not JSON",
            Answer {
                status: 500,
                body: b"<html>oops</html>".to_vec(),
            },
        ),
    ];
    for (what, a) in cases {
        *answer.lock().expect("answer") = a;
        let accepted = runtime.block_on(call_everything(&c));
        assert!(accepted.is_empty(), "{what}: accepted by {accepted:?}");
    }
    // Wrong types in otherwise plausible answers.
    for body in [
        json!({"bindings": "everyone"}),
        json!({"iapEnabled": "yes", "name": 7}),
        json!({"iap": {"enabled": "true"}, "backends": {"group": 1}}),
        json!({"items": "none", "nextPageToken": 5}),
        json!({"done": "maybe", "error": 13}),
        json!({"projectNumber": [], "parent": "org"}),
    ] {
        *answer.lock().expect("answer") = Answer {
            status: 200,
            body: serde_json::to_vec(&body).expect("json"),
        };
        let accepted = runtime.block_on(call_everything(&c));
        assert!(accepted.len() < 33, "{body}: every call accepted it");
    }
}
