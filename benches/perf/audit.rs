//! Figure 8: the audit of a project of 500 Cloud Run services in 3 regions, against an emulator
//! answering every request 20 ms late: the calls it makes (from the emulator's request log) and its wall time.

use std::time::Instant;

use futures::stream::{self, StreamExt, TryStreamExt};
use serde_json::{json, Value};

use iaprun::emulator::Options;
use iaprun::google::{Clients, Config};
use iaprun::resources::audit::{collect, POLICY_READS_IN_FLIGHT};
use iaprun::validation::audit::evaluate;

use super::support::compose::{create_backend, create_neg, create_run_service, Rest};
use super::support::world::World;
use super::Row;

const SERVICES: usize = 500;
const REGIONS: [&str; 3] = ["us-central1", "europe-west1", "asia-east1"];
const LATENCY_MS: u64 = 20;
const PROJECT: &str = "audit-project";
/// Services per page of Run services.list (the client asks for 100).
const RUN_PAGE: usize = 100;

/// Services `i % 10`: 0 public with ingress ALL (no_iap), 1 direct IAP, 2 behind a backend with
/// IAP per region (the first five of each region also behind one without: unprotected_path); one
/// HTTPS frontend (URL map, proxy, forwarding rule) reaches the backends with IAP.
fn build_steps() -> Vec<(String, Value)> {
    // Every step is a POST: the path and body of one of the kit's REST builders, or written here.
    let post = |call: Rest| (call.path, call.body.unwrap_or(Value::Null));
    let mut steps = Vec::new();
    let mut negs: Vec<Vec<String>> = vec![Vec::new(); REGIONS.len()];
    for i in 0..SERVICES {
        let region = REGIONS[i % REGIONS.len()];
        let name = format!("svc-{i}");
        let ingress = if i % 10 == 0 {
            "INGRESS_TRAFFIC_ALL"
        } else {
            "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER"
        };
        steps.push(post(create_run_service(
            PROJECT,
            region,
            &name,
            json!({"ingress": ingress, "iapEnabled": i % 10 == 1}),
        )));
        if i % 10 == 0 {
            steps.push((
                format!("/v2/projects/{PROJECT}/locations/{region}/services/{name}:setIamPolicy"),
                json!({"policy": {"bindings": [{"role": "roles/run.invoker", "members": ["allUsers"]}]}}),
            ));
        }
        if i % 10 == 2 {
            let neg = format!("{name}-neg");
            steps.push(post(create_neg(PROJECT, region, &neg, &name)));
            negs[i % REGIONS.len()].push(neg);
        }
    }
    for (region, groups) in REGIONS.iter().zip(&negs) {
        let groups: Vec<&str> = groups.iter().map(String::as_str).collect();
        steps.push(post(create_backend(
            PROJECT,
            region,
            &format!("guarded-{region}"),
            &groups,
            json!({"loadBalancingScheme": "EXTERNAL", "iap": {"enabled": true}}),
        )));
        steps.push(post(create_backend(
            PROJECT,
            region,
            &format!("side-{region}"),
            &groups[..5],
            json!({"loadBalancingScheme": "EXTERNAL"}),
        )));
    }
    let global = format!("/compute/v1/projects/{PROJECT}/global");
    let guarded = |r: &str| format!("global/backendServices/guarded-{r}");
    let routes: Vec<Value> = REGIONS
        .iter()
        .map(|r| json!({"paths": [format!("/{r}/*")], "service": guarded(r)}))
        .collect();
    steps.push((
        format!("{global}/urlMaps"),
        json!({"name": "web", "defaultService": guarded(REGIONS[0]),
               "hostRules": [{"hosts": ["*"], "pathMatcher": "regions"}],
               "pathMatchers": [{"name": "regions", "defaultService": guarded(REGIONS[0]), "pathRules": routes}]}),
    ));
    steps.push((
        format!("{global}/targetHttpsProxies"),
        json!({"name": "web", "urlMap": "global/urlMaps/web", "sslCertificates": ["global/sslCertificates/web"]}),
    ));
    steps.push((
        format!("{global}/forwardingRules"),
        json!({"name": "web", "target": "global/targetHttpsProxies/web"}),
    ));
    steps
}

pub async fn audit_at_scale() -> Result<Row, String> {
    let world = World::with_options(Options {
        latency_ms: LATENCY_MS,
        ..Options::default()
    })
    .await;
    let emulator = &world.emulator;
    // Services first (NEGs need nothing, backends need their NEGs), each group in parallel.
    let steps = build_steps();
    let (services, rest): (Vec<_>, Vec<_>) = steps
        .into_iter()
        .partition(|(p, _)| p.contains("serviceId="));
    let (frontends, rest): (Vec<_>, Vec<_>) = rest
        .into_iter()
        .partition(|(p, _)| p.contains("/global/") && !p.ends_with("/backendServices"));
    let (backends, middle): (Vec<_>, Vec<_>) = rest
        .into_iter()
        .partition(|(p, _)| p.ends_with("/backendServices"));
    let builder = &world;
    // The frontend's three objects one after another, each needing the one before.
    let frontends = frontends.into_iter().map(|step| vec![step]);
    for group in [services, middle, backends].into_iter().chain(frontends) {
        stream::iter(group)
            .map(|(path, body)| async move {
                match builder.call("POST", &path, Some(body)).await {
                    (status, _) if status.is_success() => Ok(()),
                    (status, answer) => Err(format!("{path}: HTTP {status}: {answer}")),
                }
            })
            .buffer_unordered(64)
            .try_collect::<Vec<()>>()
            .await?;
    }
    emulator.clear_requests();

    let clients = Clients::new(Config::emulator(&emulator.host())).map_err(|e| e.to_string())?;
    let regions: Vec<String> = REGIONS.iter().map(|r| r.to_string()).collect();
    emulator.clear_requests();
    let started = Instant::now();
    let facts = collect(&clients, PROJECT, &regions)
        .await
        .map_err(|e| format!("audit: {e}"))?;
    let report = evaluate(&facts);
    let elapsed = started.elapsed();
    let requests = emulator.requests();
    let writes = requests
        .iter()
        .filter(|r| r.method != "GET" && !r.path.ends_with(":getIamPolicy"))
        .count();
    if report.services.len() != SERVICES || writes > 0 {
        return Err(format!(
            "audit saw {} services (expected {SERVICES}) and made {writes} writes",
            report.services.len()
        ));
    }
    let direct = (0..SERVICES).filter(|i| i % 10 == 1).count();
    let pages: usize = (0..REGIONS.len())
        .map(|r| {
            let in_region = (0..SERVICES).filter(|i| i % REGIONS.len() == r).count();
            in_region.div_ceil(RUN_PAGE).max(1)
        })
        .sum();
    // No IAP policy names a member outside the organization: no IAP settings read.
    let bound = 2 + pages + 6 + SERVICES + direct + REGIONS.len();
    let calls = requests.len();
    let sequential_ms = calls as f64 * LATENCY_MS as f64;
    let wall_ms = elapsed.as_secs_f64() * 1000.0;
    let findings = report.findings.len();
    eprintln!(
        "perf: audit of {SERVICES} services: {calls} calls (bound {bound}), {wall_ms:.0} ms, {findings} findings"
    );
    world.shutdown().await;
    Ok(Row::new(format!(
        "8. audit of {SERVICES} services in {} regions, {LATENCY_MS} ms latency ({POLICY_READS_IN_FLIGHT} policy reads in flight)",
        REGIONS.len()
    ))
    .ours(format!(
        "{wall_ms:.0} ms, {calls} calls ({findings} findings)"
    ))
    .target(
        format!("calls ≤ {bound} (1 project + 1 organization + {pages} Run list pages + 6 compute lists + 1 policy per service and per IAP resource); wall ≤ 0.25 × {sequential_ms:.0} ms (the calls one after another)"),
        calls <= bound && wall_ms <= 0.25 * sequential_ms,
    ))
}
