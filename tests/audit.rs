//! data "iaprun_audit": the collector and its rules against a world of 28 Cloud Run services in two
//! regions, built through the real REST APIs, where each finding has a near miss; compute's
//! aggregatedList in the emulator; the calls the audit makes (each policy once, nothing mutating);
//! the data source through terraform: examples/audit's check block warns in plan about exactly the
//! exposed services of a world built in the same configuration, and it reads on Terraform 1.0.3.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value};

use iaprun::google::{Clients, Config};
use iaprun::resources::audit::collect;
use iaprun::validation::audit::{evaluate, Report};

use crate::support::compose::{create_backend, create_neg, create_run_service, Rest};
use crate::support::{terraform_binaries, Workspace};
use crate::world::{provider_header, World, PROJECT, REGION};

/// The second audited region.
pub const OTHER_REGION: &str = "europe-west1";

/// Stands for the IAP service agent's member in the world's steps (its number is the project's).
pub const AGENT: &str = "IAP_AGENT";

fn step(method: &str, path: String, body: Value) -> Value {
    json!({"method": method, "path": path, "body": body})
}

/// A call of the kit's REST world builder as a step.
fn step_of(call: Rest) -> Value {
    step(call.method, call.path, call.body.unwrap_or(Value::Null))
}

/// A Cloud Run service; `extra` merges over an internal-load-balancer-only default.
fn service(region: &str, name: &str, extra: Value) -> Value {
    step_of(create_run_service(PROJECT, region, name, extra))
}

/// Replaces the invoker members of a service.
fn invokers(region: &str, name: &str, members: &[&str]) -> Value {
    step(
        "POST",
        format!("/v2/projects/{PROJECT}/locations/{region}/services/{name}:setIamPolicy"),
        json!({"policy": {"bindings": [{"role": "roles/run.invoker", "members": members}]}}),
    )
}

/// Replaces the IAP accessors of an IAP resource (`iap_web/...` tail).
fn accessors(tail: &str, members: &[&str]) -> Value {
    step(
        "POST",
        format!("/v1/projects/{PROJECT}/iap_web/{tail}:setIamPolicy"),
        json!({"policy": {"bindings": [{"role": "roles/iap.httpsResourceAccessor", "members": members}]}}),
    )
}

/// A serverless NEG for a service (which need not exist).
fn neg(region: &str, name: &str, target: &str) -> Value {
    step_of(create_neg(PROJECT, region, name, target))
}

/// A global backend service over NEGs of the world's region; `extra` merges over a classic HTTPS one.
fn backend(name: &str, negs: &[&str], extra: Value) -> Value {
    let mut classic = json!({"loadBalancingScheme": "EXTERNAL"});
    if let (Some(c), Some(e)) = (classic.as_object_mut(), extra.as_object()) {
        c.extend(e.clone());
    }
    step_of(create_backend(PROJECT, REGION, name, negs, classic))
}

/// A compute object of the world's project (`scope` is `global` or `regions/{r}`).
fn compute(scope: &str, collection: &str, body: Value) -> Value {
    step(
        "POST",
        format!("/compute/v1/projects/{PROJECT}/{scope}/{collection}"),
        body,
    )
}

/// A frontend of load balancing `scheme`: a URL map with `default` and `routes` (path → backend
/// service of the map's scope), a target proxy over it (HTTPS with a certificate, or HTTP) and a
/// forwarding rule.
fn frontend(
    scope: &str,
    name: &str,
    scheme: &str,
    https: bool,
    default: &str,
    routes: &[(&str, &str)],
) -> Vec<Value> {
    let link = |tail: String| format!("projects/{PROJECT}/{scope}/{tail}");
    let service = |backend: &str| link(format!("backendServices/{backend}"));
    let rules: Vec<Value> = routes
        .iter()
        .map(|(path, backend)| json!({"paths": [path], "service": service(backend)}))
        .collect();
    let (proxies, proxy, port) = if https {
        let certificate = link(format!("sslCertificates/{name}-cert"));
        (
            "targetHttpsProxies",
            json!({"name": format!("{name}-proxy"), "urlMap": link(format!("urlMaps/{name}-map")), "sslCertificates": [certificate]}),
            "443",
        )
    } else {
        (
            "targetHttpProxies",
            json!({"name": format!("{name}-proxy"), "urlMap": link(format!("urlMaps/{name}-map"))}),
            "80",
        )
    };
    vec![
        compute(
            scope,
            "urlMaps",
            json!({
                "name": format!("{name}-map"),
                "defaultService": service(default),
                "hostRules": [{"hosts": ["*"], "pathMatcher": "paths"}],
                "pathMatchers": [{"name": "paths", "defaultService": service(default), "pathRules": rules}],
            }),
        ),
        compute(scope, proxies, proxy),
        compute(
            scope,
            "forwardingRules",
            json!({
                "name": format!("{name}-rule"),
                "loadBalancingScheme": scheme,
                "IPProtocol": "TCP",
                "portRange": port,
                "target": link(format!("{proxies}/{name}-proxy")),
            }),
        ),
    ]
}

/// The world, as REST calls in order. Each finding, and next to it its near miss:
/// - no_iap: `open` (ingress ALL, allUsers) / `private` (ALL, a user), `internal-public` (allUsers,
///   internal only), `hidden-url` (allUsers, ALL, run.app URL off, no load balancer);
///   `lb-public` (allUsers behind an external LB without IAP, ingress internal-and-LB);
///   `eu-open` in the other region (found only when that region is audited);
/// - unprotected_path: `two-doors` (LB with IAP + LB without) / `two-guarded` (two LBs with IAP),
///   `direct-side` (direct IAP + LB without: direct IAP guards every path);
/// - run_app_bypass: `bypass` (LB IAP, ingress ALL, run.app URL on) / `bypass-closed` (URL off);
/// - double_iap: `double` (direct IAP + LB IAP) / `direct-side`;
/// - public_invoker: `public-iap` (direct IAP, allUsers invoker) / `direct-ok`;
/// - missing_invoker: `no-agent` (direct IAP, agent lacks invoker) / `direct-ok`;
/// - public_member: `public-member` (allUsers through IAP) / `direct-ok` (a group);
/// - http2_direct: `h2c-direct` / `h2c-plain` (h2c without IAP);
/// - cdn_enabled: `cached` (CDN on its IAP backend) / `two-guarded`;
/// - envoy_jwt_header: `envoy` (EXTERNAL_MANAGED with IAP) / `lb-public` (EXTERNAL_MANAGED, no IAP);
/// - http2_classic_lb: `h2-classic` (classic LB with IAP, protocol HTTP2) / `two-guarded` (HTTPS);
/// - neg_mismatch: `ghost` (a NEG of an IAP backend naming a missing service);
/// - no_https_frontend: `http-only` (its IAP backend reached by an HTTP forwarding rule only) /
///   `both-fronts` (reached by that HTTP rule and an HTTPS one), `internal-managed` (a regional
///   HTTPS frontend);
/// - passthrough_lb: `passthrough` (IAP on a regional INTERNAL backend, which no HTTPS rule can
///   reach either: no_https_frontend too) / `internal-managed` (INTERNAL_MANAGED);
/// - managed_oauth_external: `outside-direct` (direct IAP, a member outside the organization's
///   domain, Google's OAuth client) / `outside-custom` (a custom client in its IAP settings),
///   `outside-lb` (the backend names its own client).
///
/// Every other backend with IAP is reached by an HTTPS frontend.
pub fn world_steps() -> Vec<Value> {
    let agent = AGENT;
    let r = REGION;
    let all = json!({"ingress": "INGRESS_TRAFFIC_ALL"});
    let direct = json!({"iapEnabled": true});
    let h2c = json!({"template": {"containers": [{"image": "us-docker.pkg.dev/cloudrun/container/hello", "ports": [{"name": "h2c", "containerPort": 8080}]}]}});
    let iap_on = json!({"iap": {"enabled": true}});
    let mut steps = vec![step(
        "POST",
        format!("/v1beta1/projects/{PROJECT}/services/iap.googleapis.com:generateServiceIdentity"),
        Value::Null,
    )];
    steps.extend([
        service(r, "open", all.clone()),
        invokers(r, "open", &["allUsers"]),
        service(r, "private", all.clone()),
        invokers(r, "private", &["user:dev@example.com"]),
        service(
            r,
            "internal-public",
            json!({"ingress": "INGRESS_TRAFFIC_INTERNAL_ONLY"}),
        ),
        invokers(r, "internal-public", &["allUsers"]),
        service(
            r,
            "hidden-url",
            json!({"ingress": "INGRESS_TRAFFIC_ALL", "defaultUriDisabled": true}),
        ),
        invokers(r, "hidden-url", &["allUsers"]),
        service(r, "lb-public", json!({})),
        invokers(r, "lb-public", &["allUsers"]),
        service(OTHER_REGION, "eu-open", all.clone()),
        invokers(OTHER_REGION, "eu-open", &["allAuthenticatedUsers"]),
        service(r, "two-doors", json!({})),
        invokers(r, "two-doors", &[agent]),
        service(r, "two-guarded", json!({})),
        invokers(r, "two-guarded", &[agent]),
        service(r, "direct-side", direct.clone()),
        invokers(r, "direct-side", &[agent]),
        service(r, "bypass", all.clone()),
        invokers(r, "bypass", &[agent]),
        service(
            r,
            "bypass-closed",
            json!({"ingress": "INGRESS_TRAFFIC_ALL", "defaultUriDisabled": true}),
        ),
        invokers(r, "bypass-closed", &[agent]),
        service(r, "double", direct.clone()),
        invokers(r, "double", &[agent]),
        service(r, "public-iap", direct.clone()),
        invokers(r, "public-iap", &[agent, "allUsers"]),
        service(r, "direct-ok", direct.clone()),
        invokers(r, "direct-ok", &[agent]),
        accessors(
            &format!("cloud_run-{r}/services/direct-ok"),
            &["group:staff@example.com"],
        ),
        service(r, "no-agent", direct.clone()),
        invokers(r, "no-agent", &["user:dev@example.com"]),
        service(r, "public-member", direct.clone()),
        invokers(r, "public-member", &[agent]),
        accessors(
            &format!("cloud_run-{r}/services/public-member"),
            &["allUsers"],
        ),
        service(r, "h2c-direct", {
            let mut s = h2c.clone();
            s["iapEnabled"] = json!(true);
            s
        }),
        invokers(r, "h2c-direct", &[agent]),
        service(r, "h2c-plain", h2c),
        service(r, "cached", json!({})),
        invokers(r, "cached", &[agent]),
        service(r, "envoy", json!({})),
        invokers(r, "envoy", &[agent]),
        service(r, "h2-classic", json!({})),
        invokers(r, "h2-classic", &[agent]),
    ]);
    for name in [
        "http-only",
        "both-fronts",
        "passthrough",
        "internal-managed",
        "outside-lb",
    ] {
        steps.push(service(r, name, json!({})));
        steps.push(invokers(r, name, &[agent]));
    }
    let outside = "user:partner@other.org";
    for name in ["outside-direct", "outside-custom"] {
        steps.extend([
            service(r, name, direct.clone()),
            invokers(r, name, &[agent]),
            accessors(&format!("cloud_run-{r}/services/{name}"), &[outside]),
        ]);
    }
    steps.push(step(
        "PATCH",
        format!("/v1/projects/{PROJECT}/iap_web/cloud_run-{r}/services/outside-custom:iapSettings?updateMask=iapSettings.accessSettings.oauthSettings.clientId"),
        json!({"accessSettings": {"oauthSettings": {"clientId": "custom-client.apps.googleusercontent.com"}}}),
    ));
    for (neg_name, target) in [
        ("lb-public-neg", "lb-public"),
        ("two-doors-neg", "two-doors"),
        ("two-guarded-neg", "two-guarded"),
        ("direct-side-neg", "direct-side"),
        ("bypass-neg", "bypass"),
        ("bypass-closed-neg", "bypass-closed"),
        ("double-neg", "double"),
        ("cached-neg", "cached"),
        ("envoy-neg", "envoy"),
        ("h2-classic-neg", "h2-classic"),
        ("ghost-neg", "ghost"),
        ("http-only-neg", "http-only"),
        ("both-fronts-neg", "both-fronts"),
        ("passthrough-neg", "passthrough"),
        ("internal-managed-neg", "internal-managed"),
        ("outside-lb-neg", "outside-lb"),
    ] {
        steps.push(neg(r, neg_name, target));
    }
    steps.extend([
        backend(
            "plain-lb",
            &["lb-public-neg"],
            json!({"loadBalancingScheme": "EXTERNAL_MANAGED"}),
        ),
        backend(
            "guarded-lb",
            &[
                "two-doors-neg",
                "two-guarded-neg",
                "bypass-neg",
                "bypass-closed-neg",
                "double-neg",
            ],
            iap_on.clone(),
        ),
        backend(
            "guarded-lb-2",
            &["two-guarded-neg", "ghost-neg"],
            iap_on.clone(),
        ),
        backend("side-lb", &["two-doors-neg", "direct-side-neg"], json!({})),
        backend(
            "cdn-lb",
            &["cached-neg"],
            json!({"iap": {"enabled": true}, "enableCDN": true}),
        ),
        backend(
            "envoy-lb",
            &["envoy-neg"],
            json!({"iap": {"enabled": true}, "loadBalancingScheme": "EXTERNAL_MANAGED"}),
        ),
        backend(
            "h2-lb",
            &["h2-classic-neg"],
            json!({"iap": {"enabled": true}, "protocol": "HTTP2"}),
        ),
        backend("http-lb", &["http-only-neg"], iap_on.clone()),
        backend("both-lb", &["both-fronts-neg"], iap_on.clone()),
        backend(
            "own-client-lb",
            &["outside-lb-neg"],
            json!({"iap": {"enabled": true, "oauth2ClientId": "own-client.apps.googleusercontent.com", "oauth2ClientSecret": "own-secret"}}),
        ),
    ]);
    let regional = |name: &str, neg: &str, scheme: &str, protocol: &str| {
        compute(
            &format!("regions/{r}"),
            "backendServices",
            json!({"name": name, "loadBalancingScheme": scheme, "protocol": protocol, "iap": {"enabled": true},
                   "backends": [{"group": format!("projects/{PROJECT}/regions/{r}/networkEndpointGroups/{neg}")}]}),
        )
    };
    steps.push(regional(
        "passthrough-lb",
        "passthrough-neg",
        "INTERNAL",
        "TCP",
    ));
    steps.push(regional(
        "ilb",
        "internal-managed-neg",
        "INTERNAL_MANAGED",
        "HTTPS",
    ));
    for lb in [
        "guarded-lb",
        "guarded-lb-2",
        "cdn-lb",
        "envoy-lb",
        "h2-lb",
        "http-lb",
        "both-lb",
    ] {
        steps.push(accessors(
            &format!("compute/services/{lb}"),
            &["group:staff@example.com"],
        ));
    }
    steps.push(accessors("compute/services/own-client-lb", &[outside]));
    steps.push(accessors(
        &format!("compute-{r}/services/ilb"),
        &["group:staff@example.com"],
    ));
    let web_routes = [
        ("/two/*", "guarded-lb-2"),
        ("/cdn/*", "cdn-lb"),
        ("/h2/*", "h2-lb"),
        ("/both/*", "both-lb"),
        ("/own/*", "own-client-lb"),
    ];
    let http_routes = [("/both/*", "both-lb")];
    steps.extend(frontend(
        "global",
        "web",
        "EXTERNAL",
        true,
        "guarded-lb",
        &web_routes,
    ));
    steps.extend(frontend(
        "global",
        "envoy",
        "EXTERNAL_MANAGED",
        true,
        "envoy-lb",
        &[],
    ));
    steps.extend(frontend(
        "global",
        "plain",
        "EXTERNAL",
        false,
        "http-lb",
        &http_routes,
    ));
    let regional_scope = format!("regions/{r}");
    steps.extend(frontend(
        &regional_scope,
        "ilb",
        "INTERNAL_MANAGED",
        true,
        "ilb",
        &[],
    ));
    steps
}

/// The checks each service must get (`location/name` → sorted check names); every other service
/// of the audited regions gets none.
pub fn expected_findings(with_other_region: bool) -> BTreeMap<String, Vec<String>> {
    let mut expected: BTreeMap<String, Vec<String>> = [
        ("open", vec!["no_iap"]),
        ("lb-public", vec!["no_iap"]),
        ("two-doors", vec!["unprotected_path"]),
        ("bypass", vec!["run_app_bypass"]),
        ("double", vec!["double_iap"]),
        ("public-iap", vec!["public_invoker"]),
        ("no-agent", vec!["missing_invoker"]),
        ("public-member", vec!["public_member"]),
        ("h2c-direct", vec!["http2_direct"]),
        ("cached", vec!["cdn_enabled"]),
        ("envoy", vec!["envoy_jwt_header"]),
        ("h2-classic", vec!["http2_classic_lb"]),
        ("ghost", vec!["neg_mismatch"]),
        ("http-only", vec!["no_https_frontend"]),
        ("passthrough", vec!["no_https_frontend", "passthrough_lb"]),
        ("outside-direct", vec!["managed_oauth_external"]),
    ]
    .into_iter()
    .map(|(name, checks)| {
        let checks = checks.into_iter().map(str::to_string).collect();
        (format!("{REGION}/{name}"), checks)
    })
    .collect();
    if with_other_region {
        expected.insert(format!("{OTHER_REGION}/eu-open"), vec!["no_iap".into()]);
    }
    expected
}

/// The near misses: services that must come out clean.
pub const NEAR_MISSES: &[&str] = &[
    "private",
    "internal-public",
    "hidden-url",
    "two-guarded",
    "direct-side",
    "bypass-closed",
    "direct-ok",
    "h2c-plain",
    "both-fronts",
    "internal-managed",
    "outside-custom",
    "outside-lb",
];

/// Builds the world through the REST APIs (operations finish at once in the default emulator).
pub async fn build(world: &World) {
    let mut agent = None;
    for s in world_steps() {
        let mut text = s.to_string();
        if text.contains(AGENT) {
            // Known once the first step has created the project and its agent.
            text = text.replace(AGENT, agent.get_or_insert_with(|| world.iap_agent()));
        }
        let s: Value = serde_json::from_str(&text).expect("step");
        let method = s["method"].as_str().expect("method");
        let path = s["path"].as_str().expect("path");
        let body = (!s["body"].is_null()).then(|| s["body"].clone());
        let (status, answer) = world.call(method, path, body).await;
        assert!(status.is_success(), "{method} {path}: {status} {answer}");
    }
}

/// Findings by service, each service's check names sorted.
pub fn findings_by_service(report: &Report) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for f in &report.findings {
        out.entry(f.service.clone())
            .or_default()
            .push(f.check.clone());
    }
    out.values_mut().for_each(|v| v.sort_unstable());
    out
}

fn clients(world: &World) -> Clients {
    Clients::new(Config::emulator(&world.host())).expect("clients")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_finding_on_its_service_and_none_on_the_near_misses() {
    let world = World::start().await;
    build(&world).await;
    world.emulator.clear_requests();
    let regions = [REGION.to_string(), OTHER_REGION.to_string()];
    let facts = collect(&clients(&world), PROJECT, &regions)
        .await
        .expect("audit");
    let report = evaluate(&facts);
    let requests = world.emulator.requests();
    let mutating = world.mutating_requests();

    assert_eq!(findings_by_service(&report), expected_findings(true));
    let audited: BTreeSet<String> = report
        .services
        .iter()
        .map(|s| format!("{}/{}", s.location, s.name))
        .collect();
    assert_eq!(audited.len(), 28, "{audited:?}");
    for near in NEAR_MISSES {
        let label = format!("{REGION}/{near}");
        assert!(audited.contains(&label), "{label} was not audited");
        assert!(
            !report.findings.iter().any(|f| f.service == label),
            "{label} is a near miss"
        );
    }
    for f in &report.findings {
        assert!(
            f.detail.contains("What breaks: ") && f.detail.contains("\nFix: "),
            "{f:?}"
        );
    }

    // What the report says about the paths to a service.
    let service = |name: &str| {
        report
            .services
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("{name} in the report"))
    };
    let number = world.emulator.project_number(PROJECT).expect("number");
    let doors = service("two-doors");
    let paths: Vec<(&str, bool)> = doors
        .backends
        .iter()
        .map(|b| (b.name.as_str(), b.iap_enabled))
        .collect();
    assert_eq!(paths, vec![("guarded-lb", true), ("side-lb", false)]);
    let guarded = world.backend_json("guarded-lb", None).await;
    assert_eq!(
        doors.jwt_audiences,
        vec![format!(
            "/projects/{number}/global/backendServices/{}",
            guarded["id"].as_str().expect("id")
        )]
    );
    assert_eq!(
        service("direct-ok").jwt_audiences,
        vec![format!(
            "/projects/{number}/locations/{REGION}/services/direct-ok"
        )]
    );
    assert_eq!(service("open").public_invoker, Some(true));
    assert_eq!(service("open").agent_has_invoker, Some(false));
    assert_eq!(service("direct-ok").agent_has_invoker, Some(true));
    assert_eq!(service("open").ingress, "INGRESS_TRAFFIC_ALL");
    assert!(service("hidden-url").default_uri_disabled);
    assert!(service("open")
        .uri
        .as_deref()
        .is_some_and(|u| u.starts_with("https://")));

    // The calls: no write, each list once, each policy once.
    assert!(mutating.is_empty(), "{mutating:?}");
    world.assert_conformant();
    assert!(world.emulator.response_problems().is_empty());
    let mut per_path: BTreeMap<String, usize> = BTreeMap::new();
    for r in &requests {
        *per_path
            .entry(format!("{} {}", r.method, r.path))
            .or_default() += 1;
    }
    let repeated: Vec<_> = per_path.iter().filter(|(_, n)| **n > 1).collect();
    assert!(repeated.is_empty(), "read more than once: {repeated:?}");
    let count = |f: &dyn Fn(&str) -> bool| requests.iter().filter(|r| f(&r.path)).count();
    assert_eq!(count(&|p| p.ends_with("/aggregated/backendServices")), 1);
    assert_eq!(
        count(&|p| p.ends_with("/aggregated/networkEndpointGroups")),
        1
    );
    assert_eq!(
        count(&|p| p.ends_with("/services")),
        2,
        "one list per region"
    );
    for list in [
        "/aggregated/forwardingRules",
        "/global/forwardingRules",
        "/aggregated/targetHttpsProxies",
        "/aggregated/urlMaps",
    ] {
        assert_eq!(count(&|p| p.ends_with(list)), 1, "{list}");
    }
    assert_eq!(
        count(&|p| p.starts_with("/v2/") && p.ends_with(":getIamPolicy")),
        28,
        "one Run policy per service"
    );
    // IAP policies: the 9 services with direct IAP and the 10 backends with IAP.
    assert_eq!(
        count(&|p| p.starts_with("/v1/") && p.ends_with(":getIamPolicy")),
        19
    );
    // IAP settings only where a member is outside the organization and no backend names a client.
    let settings: BTreeSet<&str> = requests
        .iter()
        .filter(|r| r.path.ends_with(":iapSettings"))
        .map(|r| r.path.as_str())
        .collect();
    let settings_of = |name: &str| {
        format!("/v1/projects/{number}/iap_web/cloud_run-{REGION}/services/{name}:iapSettings")
    };
    assert_eq!(
        settings,
        [settings_of("outside-custom"), settings_of("outside-direct")]
            .iter()
            .map(String::as_str)
            .collect()
    );
    assert_eq!(count(&|p| p.starts_with("/v1/organizations/")), 1);
    // The project, its organization, 2 Run lists, 6 compute lists, the policies, the settings.
    assert_eq!(requests.len(), 1 + 1 + 2 + 6 + 28 + 19 + 2, "{per_path:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_regions_asked_for_are_audited_and_unreadable_policies_are_unknown() {
    let world = World::start().await;
    build(&world).await;
    // The invoker policy of `open` cannot be read.
    world
        .emulator
        .add_fault(
            serde_json::from_value(json!({
                "kind": "status",
                "method": "GET",
                "path_regex": "services/open:getIamPolicy$",
                "status": 403,
                "count": 100
            }))
            .expect("fault spec"),
        )
        .expect("fault");
    // A region named twice is audited once.
    let facts = collect(
        &clients(&world),
        PROJECT,
        &[REGION.to_string(), REGION.to_string()],
    )
    .await
    .expect("audit");
    let report = evaluate(&facts);
    let mut expected = expected_findings(false);
    expected.remove(&format!("{REGION}/open"));
    assert_eq!(findings_by_service(&report), expected);
    let open = report
        .services
        .iter()
        .find(|s| s.name == "open")
        .expect("open is still listed");
    assert_eq!(open.public_invoker, None);
    assert_eq!(open.agent_has_invoker, None);
    assert!(report.services.iter().all(|s| s.location == REGION));
    assert_eq!(report.services.len(), 27);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_project_without_an_organization_warns_on_direct_iap_unless_its_settings_name_a_client() {
    let world = World::start().await;
    world.provision_iap_agent().await;
    world.update_project(PROJECT, json!({"parent": null}));
    let agent = world.iap_agent();
    for name in ["solo", "solo-custom"] {
        world.run_service(name, json!({"iapEnabled": true})).await;
        world
            .set_run_members(name, "roles/run.invoker", &[&agent])
            .await;
    }
    let settings = format!(
        "/v1/projects/{PROJECT}/iap_web/cloud_run-{REGION}/services/solo-custom:iapSettings"
    );
    let (status, answer) = world
        .call(
            "PATCH",
            &format!("{settings}?updateMask=iapSettings.accessSettings.oauthSettings.clientId"),
            Some(json!({"accessSettings": {"oauthSettings": {"clientId": "custom-client"}}})),
        )
        .await;
    assert!(status.is_success(), "{answer}");
    world.emulator.clear_requests();
    let facts = collect(&clients(&world), PROJECT, &[REGION.to_string()])
        .await
        .expect("audit");
    let report = evaluate(&facts);
    let expected: BTreeMap<String, Vec<String>> = [(
        format!("{REGION}/solo"),
        vec!["no_organization".to_string()],
    )]
    .into();
    assert_eq!(findings_by_service(&report), expected);
    let requests = world.emulator.requests();
    assert_eq!(
        requests
            .iter()
            .filter(|r| r.path.ends_with(":iapSettings"))
            .count(),
        2,
        "the settings of both services with direct IAP"
    );
    assert!(
        !requests.iter().any(|r| r.path.contains("/organizations/")),
        "no organization to read"
    );
    assert!(world.mutating_requests().is_empty());
}

/// Cloud Run and direct IAP need no Compute Engine API, so many projects have it disabled: no load
/// balancer can exist there, and the audit reads the services instead of failing on compute's 403.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_project_with_compute_disabled_is_audited_without_load_balancers() {
    let world = World::start().await;
    world.provision_iap_agent().await;
    let agent = world.iap_agent();
    world
        .run_service(
            "guarded",
            json!({"iapEnabled": true, "ingress": "INGRESS_TRAFFIC_ALL"}),
        )
        .await;
    world
        .set_run_members("guarded", "roles/run.invoker", &[&agent])
        .await;
    world
        .run_service("open", json!({"ingress": "INGRESS_TRAFFIC_ALL"}))
        .await;
    world
        .set_run_members("open", "roles/run.invoker", &["allUsers"])
        .await;
    world.disable_api(PROJECT, "compute.googleapis.com").await;
    let facts = collect(&clients(&world), PROJECT, &[REGION.to_string()])
        .await
        .expect("the audit reads a project whose Compute Engine API is disabled");
    let report = evaluate(&facts);
    let expected: BTreeMap<String, Vec<String>> =
        [(format!("{REGION}/open"), vec!["no_iap".to_string()])].into();
    assert_eq!(findings_by_service(&report), expected);
    assert!(report.services.iter().all(|s| s.backends.is_empty()));
    assert!(
        world
            .emulator
            .requests()
            .iter()
            .any(|r| r.path.starts_with("/compute/") && r.status == 403),
        "compute was asked and answered 403"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_emulator_serves_aggregated_lists_in_googles_shape_page_by_page() {
    let world = World::start().await;
    world.run_service("svc-a", json!({})).await;
    world.neg("neg-a", "svc-a").await;
    world.neg_in(OTHER_REGION, "neg-eu", "svc-eu").await;
    world.backend("web", None, &["neg-a"], json!({})).await;
    world
        .backend("regional", Some(REGION), &["neg-a"], json!({}))
        .await;
    let base = format!("/compute/v1/projects/{PROJECT}/aggregated");

    let (status, all) = world
        .call("GET", &format!("{base}/backendServices"), None)
        .await;
    assert!(status.is_success(), "{all}");
    assert_eq!(all["kind"], "compute#backendServiceAggregatedList");
    assert_eq!(all["items"]["global"]["backendServices"][0]["name"], "web");
    assert_eq!(
        all["items"][format!("regions/{REGION}")]["backendServices"][0]["name"],
        "regional"
    );
    assert!(all.get("nextPageToken").is_none());

    // One item per page: every page names each scope, with a warning where it has nothing.
    let mut names = Vec::new();
    let mut token = String::new();
    for _ in 0..5 {
        let (status, page) = world
            .call(
                "GET",
                &format!("{base}/networkEndpointGroups?maxResults=1&pageToken={token}"),
                None,
            )
            .await;
        assert!(status.is_success(), "{page}");
        assert_eq!(page["kind"], "compute#networkEndpointGroupAggregatedList");
        let scopes = page["items"].as_object().expect("items by scope");
        assert_eq!(
            scopes.keys().collect::<Vec<_>>(),
            vec![
                &format!("regions/{OTHER_REGION}"),
                &format!("regions/{REGION}")
            ]
        );
        for scoped in scopes.values() {
            match scoped.get("networkEndpointGroups") {
                Some(list) => names.extend(
                    list.as_array()
                        .expect("list")
                        .iter()
                        .map(|n| n["name"].as_str().expect("name").to_string()),
                ),
                None => assert_eq!(scoped["warning"]["code"], "NO_RESULTS_ON_PAGE"),
            }
        }
        match page["nextPageToken"].as_str() {
            Some(next) => token = next.to_string(),
            None => break,
        }
    }
    assert_eq!(names, vec!["neg-eu", "neg-a"]);
    let (status, filtered) = world
        .call(
            "GET",
            &format!("{base}/backendServices?filter=name%3Dweb"),
            None,
        )
        .await;
    assert!(status.is_success());
    assert!(filtered["items"][format!("regions/{REGION}")]
        .get("backendServices")
        .is_none());

    // The frontends: URL maps and HTTPS proxies aggregate global and regional ones; the
    // aggregated forwarding rules are the regional ones (globalForwardingRules.list has the rest).
    world.https_frontend("web").await;
    for step in frontend(
        &format!("regions/{REGION}"),
        "ilb",
        "INTERNAL_MANAGED",
        true,
        "regional",
        &[],
    ) {
        let path = step["path"].as_str().expect("path");
        let (status, answer) = world.call("POST", path, Some(step["body"].clone())).await;
        assert!(status.is_success(), "{path}: {answer}");
    }
    let names = |list: &Value, scope: &str, collection: &str| -> Vec<String> {
        list["items"][scope][collection]
            .as_array()
            .into_iter()
            .flatten()
            .map(|item| item["name"].as_str().expect("name").to_string())
            .collect()
    };
    let regional = format!("regions/{REGION}");
    for (collection, kind, global, in_region) in [
        (
            "urlMaps",
            "compute#urlMapsAggregatedList",
            "web-map",
            "ilb-map",
        ),
        (
            "targetHttpsProxies",
            "compute#targetHttpsProxyAggregatedList",
            "web-proxy",
            "ilb-proxy",
        ),
    ] {
        let (status, list) = world
            .call("GET", &format!("{base}/{collection}"), None)
            .await;
        assert!(status.is_success(), "{list}");
        assert_eq!(list["kind"], kind);
        assert_eq!(names(&list, "global", collection), [global]);
        assert_eq!(names(&list, &regional, collection), [in_region]);
    }
    let (status, rules) = world
        .call("GET", &format!("{base}/forwardingRules"), None)
        .await;
    assert!(status.is_success(), "{rules}");
    assert_eq!(rules["kind"], "compute#forwardingRuleAggregatedList");
    assert_eq!(
        rules["items"]
            .as_object()
            .map(|o| o.keys().collect::<Vec<_>>()),
        Some(vec![&regional]),
        "{rules}"
    );
    assert_eq!(names(&rules, &regional, "forwardingRules"), ["ilb-rule"]);
    world.assert_conformant();
    assert!(
        world.emulator.response_problems().is_empty(),
        "{:#?}",
        world.emulator.response_problems()
    );
}

// ---- end to end: the data source through terraform -------------------------------------------

/// Replays world.json (the steps of [`world_steps`]) against the emulator named by
/// IAPRUN_EMULATOR_HOST, as another tool in the same configuration would; the IAP agent's member
/// comes from generateServiceIdentity's answer.
const WORLD_SCRIPT: &str = r#"#!/usr/bin/env bash
set -euo pipefail
api="http://${IAPRUN_EMULATOR_HOST:?}"
agent=""
while IFS= read -r step; do
  method=$(jq -r .method <<<"$step")
  path=$(jq -r .path <<<"$step")
  body=$(jq -c .body <<<"$step")
  body=${body//IAP_AGENT/$agent}
  args=(-fsS -X "$method" -H "Authorization: Bearer world-builder" -H "Content-Type: application/json")
  if [ "$body" != null ]; then args+=(-d "$body"); fi
  answer=$(curl "${args[@]}" "$api$path")
  case "$path" in
    *:generateServiceIdentity) agent="serviceAccount:$(jq -r .response.email <<<"$answer")" ;;
  esac
done < <(jq -c '.[]' world.json)
"#;

/// Findings by service from a `findings` list as Terraform outputs it.
fn findings_from_output(findings: &Value) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for f in findings.as_array().expect("findings is a list") {
        out.entry(f["service"].as_str().expect("service").to_string())
            .or_default()
            .push(f["check"].as_str().expect("check").to_string());
    }
    out.values_mut().for_each(|v| v.sort_unstable());
    out
}

/// The configuration that builds the world next to examples/audit/main.tf: another tool's work in
/// the same configuration, as the google provider's would be.
const WORLD_TF: &str = r#"
resource "terraform_data" "world" {
  provisioner "local-exec" {
    command = "bash world.sh"
  }
}
"#;

#[test]
fn the_example_check_block_warns_about_every_exposed_service_in_plan_and_reads_change_nothing() {
    let terraform = terraform_binaries()
        .into_iter()
        .find(|t| t.minor_version() >= (1, 5))
        .expect("Terraform 1.5+ on PATH for check blocks");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let world = runtime.block_on(World::start());
    let example = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/audit/main.tf"),
    )
    .expect("examples/audit/main.tf");
    let mut ws = Workspace::new(&terraform, &example);
    ws.env("IAPRUN_EMULATOR_HOST", &world.host());
    ws.write("world.tf", WORLD_TF);
    ws.write("world.sh", WORLD_SCRIPT);
    ws.write(
        "world.json",
        &serde_json::to_string_pretty(&world_steps()).expect("steps"),
    );
    ws.write(
        "terraform.tfvars",
        &format!("project = \"{PROJECT}\"\nregions = [\"{REGION}\", \"{OTHER_REGION}\"]\n"),
    );
    ws.init();
    ws.run(&[
        "apply",
        "-auto-approve",
        "-input=false",
        "-no-color",
        "-target=terraform_data.world",
    ])
    .expect_success();

    // The plan reads the audit: the check block's assertion is a warning naming each exposed
    // service (and no near miss), the output table lists every service, and nothing is written.
    world.emulator.clear_requests();
    let plan = ws.plan_json().expect_success();
    let lines = plan.json_lines();
    let checks: Vec<String> = lines
        .iter()
        .filter(|l| {
            l["type"] == "diagnostic"
                && l["diagnostic"]["summary"] == "Check block assertion failed"
        })
        .map(|l| {
            assert_eq!(l["diagnostic"]["severity"], "warning", "{l}");
            l["diagnostic"]["detail"]
                .as_str()
                .expect("detail")
                .to_string()
        })
        .collect();
    assert_eq!(checks.len(), 1, "{plan}");
    let exposed_line = checks[0].as_str();
    let exposed: BTreeSet<&str> = exposed_line
        .split("without IAP: ")
        .nth(1)
        .and_then(|rest| rest.split(". ").next())
        .expect("the list of services")
        .split(", ")
        .map(str::trim)
        .collect();
    let expected: BTreeSet<String> = [
        "open",
        "lb-public",
        "two-doors",
        "bypass",
        "public-iap",
        "public-member",
    ]
    .iter()
    .map(|s| format!("{REGION}/{s}"))
    .chain([format!("{OTHER_REGION}/eu-open")])
    .collect();
    assert_eq!(
        exposed,
        expected.iter().map(String::as_str).collect::<BTreeSet<_>>(),
        "{exposed_line}"
    );
    assert!(
        world.mutating_requests().is_empty(),
        "{:?}",
        world.mutating_requests()
    );
    assert!(
        !world.emulator.requests().is_empty(),
        "the plan read the audit"
    );
    world.assert_conformant();

    ws.apply().expect_success();
    let outputs = ws.run(&["output", "-json"]).expect_success().json();
    assert_eq!(
        findings_from_output(&outputs["findings"]["value"]),
        expected_findings(true)
    );
    let table = outputs["audit"]["value"].as_str().expect("the table");
    assert_eq!(table.lines().count(), 1 + 28, "{table}");
    let doors = table
        .lines()
        .find(|l| l.starts_with("us-central1/two-doors "))
        .expect("a line for two-doors");
    assert!(
        doors.contains("load-balancer") && doors.ends_with("unprotected_path"),
        "{doors}"
    );
    for near in NEAR_MISSES {
        let line = table
            .lines()
            .find(|l| l.starts_with(&format!("{REGION}/{near} ")))
            .unwrap_or_else(|| panic!("{near} in {table}"));
        assert_eq!(
            line.split_whitespace().count(),
            3,
            "a near miss has no findings: {line}"
        );
    }
}

#[test]
fn the_data_source_reads_on_every_terraform_with_the_provider_region_by_default() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let world = runtime.block_on(World::start());
    // Terraform 1.0.3 has no terraform_data to build the world in the same run: built before.
    runtime.block_on(build(&world));
    for terraform in terraform_binaries() {
        world.emulator.clear_requests();
        let config = format!(
            r#"{}
data "iaprun_audit" "project" {{}}

output "findings" {{
  value = data.iaprun_audit.project.findings
}}

output "regions" {{
  value = data.iaprun_audit.project.regions
}}
"#,
            provider_header("")
        );
        let mut ws = Workspace::new(&terraform, &config);
        ws.env("IAPRUN_EMULATOR_HOST", &world.host());
        ws.init();
        ws.apply().expect_success();
        let outputs = ws.run(&["output", "-json"]).expect_success().json();
        assert_eq!(
            findings_from_output(&outputs["findings"]["value"]),
            expected_findings(false),
            "Terraform {}",
            terraform.version
        );
        assert_eq!(outputs["regions"]["value"], json!([REGION]));
        assert!(
            world.mutating_requests().is_empty(),
            "Terraform {}: {:?}",
            terraform.version,
            world.mutating_requests()
        );
    }
}

#[test]
fn bad_regions_and_projects_are_refused_on_the_attribute_before_any_call() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let world = runtime.block_on(World::start());
    let terraform = terraform_binaries()
        .into_iter()
        .next()
        .expect("a terraform binary");
    let config = format!(
        r#"{}
data "iaprun_audit" "regions" {{
  regions = ["{REGION}", "Not A Region"]
}}

data "iaprun_audit" "none" {{
  regions = []
}}

data "iaprun_audit" "project" {{
  project = "Bad_Project"
}}
"#,
        provider_header("")
    );
    let mut ws = Workspace::new(&terraform, &config);
    ws.env("IAPRUN_EMULATOR_HOST", &world.host());
    ws.init();
    let run = ws.validate_json();
    let result = run.json();
    let found: BTreeSet<(String, String)> = result["diagnostics"]
        .as_array()
        .expect("diagnostics")
        .iter()
        .map(|d| {
            (
                d["summary"].as_str().unwrap_or_default().to_string(),
                d["snippet"]["code"]
                    .as_str()
                    .unwrap_or_default()
                    .trim()
                    .to_string(),
            )
        })
        .collect();
    let expected: BTreeSet<(String, String)> = [
        (
            "Invalid region",
            format!("regions = [\"{REGION}\", \"Not A Region\"]"),
        ),
        ("No region", "regions = []".to_string()),
        ("Invalid project", "project = \"Bad_Project\"".to_string()),
    ]
    .into_iter()
    .map(|(s, c)| (s.to_string(), c))
    .collect();
    assert_eq!(found, expected, "{run}");
    assert!(world.emulator.requests().is_empty());
}
