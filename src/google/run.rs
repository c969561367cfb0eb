//! Cloud Run Admin API v2: services (get, list, IAP toggle by full-object PATCH) and service IAM.

use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use serde::Deserialize;
use serde_json::{json, Value};

use super::error::Error;
use super::iam::{IamWriter, Policy, PolicyStore};
use super::operation::{wait_run, with_verb, Operation};
use super::transport::{Api, BaseUrl, Call, Replay, Transport};

/// `projects/{project}/locations/{location}/services/{service}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ServiceName {
    pub project: String,
    pub location: String,
    pub service: String,
}

impl ServiceName {
    /// A service name from its parts.
    pub fn new(
        project: impl Into<String>,
        location: impl Into<String>,
        service: impl Into<String>,
    ) -> ServiceName {
        ServiceName {
            project: project.into(),
            location: location.into(),
            service: service.into(),
        }
    }

    fn segments(&self) -> [&str; 7] {
        [
            "v2",
            "projects",
            &self.project,
            "locations",
            &self.location,
            "services",
            &self.service,
        ]
    }
}

impl fmt::Display for ServiceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "projects/{}/locations/{}/services/{}",
            self.project, self.location, self.service
        )
    }
}

/// Services asked for per page of services.list (the API documents no maximum).
const LIST_PAGE_SIZE: &str = "100";
/// A list longer than this many pages is treated as a server bug, not followed forever.
const MAX_PAGES: usize = 1000;

/// One page of services.list.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListPage {
    #[serde(default)]
    services: Option<Vec<Value>>,
    #[serde(default)]
    next_page_token: Option<String>,
}

/// A Cloud Run service: the fields the provider reads, plus the whole object.
#[derive(Debug, Clone, PartialEq)]
pub struct RunService {
    pub name: String,
    pub uri: Option<String>,
    pub etag: Option<String>,
    /// Direct IAP on the service (absent in the API means false).
    pub iap_enabled: bool,
    /// Public invocation without the run.invoker check.
    pub invoker_iam_disabled: bool,
    /// `INGRESS_TRAFFIC_*`, as reported.
    pub ingress: Option<String>,
    /// The run.app URL is disabled.
    pub default_uri_disabled: bool,
    pub launch_stage: Option<String>,
    /// `template.containers[].ports[]`, in order.
    pub ports: Vec<ContainerPort>,
    /// The whole object as received, so a PATCH keeps fields this client does not know.
    pub raw: Value,
}

/// One container port of the service template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerPort {
    /// Name of the container that declares the port.
    pub container: Option<String>,
    /// `http1` or `h2c` (end-to-end HTTP/2).
    pub name: Option<String>,
    pub container_port: Option<i64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ServiceWire {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    uri: Option<String>,
    #[serde(default)]
    etag: Option<String>,
    #[serde(default)]
    iap_enabled: Option<bool>,
    #[serde(default)]
    invoker_iam_disabled: Option<bool>,
    #[serde(default)]
    ingress: Option<String>,
    #[serde(default)]
    default_uri_disabled: Option<bool>,
    #[serde(default)]
    launch_stage: Option<String>,
    #[serde(default)]
    template: Option<TemplateWire>,
}

#[derive(Deserialize)]
struct TemplateWire {
    #[serde(default)]
    containers: Option<Vec<ContainerWire>>,
}

#[derive(Deserialize)]
struct ContainerWire {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    ports: Option<Vec<PortWire>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PortWire {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    container_port: Option<i64>,
}

impl RunService {
    /// Reads the typed fields out of a Service object (an operation response's `@type` is
    /// dropped).
    pub fn from_value(mut raw: Value) -> Result<RunService, Error> {
        if let Some(map) = raw.as_object_mut() {
            map.remove("@type");
        }
        let wire: ServiceWire = serde_json::from_value(raw.clone())
            .map_err(|e| Error::decode("Cloud Run service", e))?;
        let ports = wire
            .template
            .and_then(|t| t.containers)
            .unwrap_or_default()
            .into_iter()
            .flat_map(|c| {
                let container = c.name;
                c.ports
                    .unwrap_or_default()
                    .into_iter()
                    .map(move |p| ContainerPort {
                        container: container.clone(),
                        name: p.name,
                        container_port: p.container_port,
                    })
            })
            .collect();
        Ok(RunService {
            name: wire.name.unwrap_or_default(),
            uri: wire.uri,
            etag: wire.etag,
            iap_enabled: wire.iap_enabled.unwrap_or(false),
            invoker_iam_disabled: wire.invoker_iam_disabled.unwrap_or(false),
            ingress: wire.ingress,
            default_uri_disabled: wire.default_uri_disabled.unwrap_or(false),
            launch_stage: wire.launch_stage,
            ports,
            raw,
        })
    }

    /// The service id: the last segment of `name`.
    pub fn service_id(&self) -> &str {
        self.name.rsplit('/').next().unwrap_or_default()
    }

    /// Whether any container port is `h2c` (end-to-end HTTP/2).
    pub fn uses_h2c(&self) -> bool {
        self.ports.iter().any(|p| p.name.as_deref() == Some("h2c"))
    }
}

/// Cloud Run Admin API v2 client.
#[derive(Debug, Clone)]
pub struct RunClient {
    transport: Arc<Transport>,
    base: BaseUrl,
    iam: Arc<IamWriter>,
}

impl RunClient {
    pub(crate) fn new(transport: Arc<Transport>, base: BaseUrl, iam: Arc<IamWriter>) -> RunClient {
        RunClient {
            transport,
            base,
            iam,
        }
    }

    /// services.get.
    pub async fn service(&self, name: &ServiceName) -> Result<RunService, Error> {
        let call = Call::get(Api::Run, self.base.join(name.segments()));
        let raw = self.transport.send(call).await?;
        RunService::from_value(raw)
    }

    /// services.list of one location, every page (`pageSize` [`LIST_PAGE_SIZE`]).
    pub async fn services(&self, project: &str, location: &str) -> Result<Vec<RunService>, Error> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let mut url =
                self.base
                    .join(["v2", "projects", project, "locations", location, "services"]);
            {
                let mut query = url.query_pairs_mut();
                query.append_pair("pageSize", LIST_PAGE_SIZE);
                if let Some(token) = &token {
                    query.append_pair("pageToken", token);
                }
            }
            let page: ListPage = self.transport.send_as(Call::get(Api::Run, url)).await?;
            for raw in page.services.unwrap_or_default() {
                out.push(RunService::from_value(raw)?);
            }
            let next = page.next_page_token.filter(|t| !t.is_empty());
            if next.is_some() && next == token {
                return Err(Error::decode(
                    "Cloud Run services list",
                    "the same page token was returned twice",
                ));
            }
            match next {
                Some(next) => token = Some(next),
                None => return Ok(out),
            }
        }
        Err(Error::decode(
            "Cloud Run services list",
            format!("more than {MAX_PAGES} pages of results"),
        ))
    }

    /// Turns direct IAP on or off: GET, set `iapEnabled`, PATCH the full object with its
    /// etag, wait for the operation. Nothing is written when it already has that value.
    pub async fn set_iap_enabled(
        &self,
        name: &ServiceName,
        enabled: bool,
        deadline: Instant,
    ) -> Result<RunService, Error> {
        self.update_service(name, deadline, |service| {
            let Some(map) = service.as_object_mut() else {
                return false;
            };
            let current = map
                .get("iapEnabled")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            if current == enabled {
                return false;
            }
            map.insert("iapEnabled".into(), Value::Bool(enabled));
            true
        })
        .await
    }

    /// Read-modify-write of a service: `modify` edits the full object and reports whether it
    /// changed it; the object is PATCHed back without an update mask (never `allowMissing`),
    /// guarded by its etag, and the whole cycle repeats on 409 ABORTED until `deadline`.
    pub async fn update_service(
        &self,
        name: &ServiceName,
        deadline: Instant,
        mut modify: impl FnMut(&mut Value) -> bool,
    ) -> Result<RunService, Error> {
        let max_attempts = self.transport.retry.max_attempts.max(1);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let current = self.service(name).await?;
            let mut body = current.raw.clone();
            if !modify(&mut body) {
                return Ok(current);
            }
            let result = match self.patch(name, body, deadline).await {
                Ok(op) => wait_run(&self.transport, &self.base, op, deadline).await,
                Err(e) => Err(e),
            };
            match result {
                Ok(response) if response.get("name").is_some() => {
                    return RunService::from_value(response)
                }
                Ok(_) => return self.service(name).await,
                Err(e) if e.is_conflict() => {
                    let delay = self.transport.backoff(attempt);
                    if attempt >= max_attempts || Instant::now() + delay >= deadline {
                        return Err(e.with_hint(format!(
                            "The service {name} kept changing concurrently; gave up after {attempt} attempts"
                        )));
                    }
                    tracing::debug!(service = %name, attempt, "Cloud Run etag conflict, re-reading");
                    self.transport.pause(delay).await?;
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn patch(
        &self,
        name: &ServiceName,
        body: Value,
        deadline: Instant,
    ) -> Result<Operation, Error> {
        // With an etag a repeated PATCH cannot clobber anything: a duplicate is refused with
        // 409 ABORTED and the caller re-reads. Without one, a retry might.
        let replay = if body.get("etag").and_then(Value::as_str).is_some() {
            Replay::Safe
        } else {
            Replay::Unsafe
        };
        let call = Call::patch(Api::Run, self.base.join(name.segments()))
            .body(body)
            .replay(replay)
            .deadline(Some(deadline));
        self.transport.send_as(call).await
    }

    /// Waits for a Cloud Run operation; returns its response.
    pub async fn wait_operation(&self, op: Operation, deadline: Instant) -> Result<Value, Error> {
        wait_run(&self.transport, &self.base, op, deadline).await
    }

    /// services.getIamPolicy (version 3 requested so conditional bindings survive a rewrite).
    pub async fn iam_policy(&self, name: &ServiceName) -> Result<Policy, Error> {
        let mut url = self
            .base
            .join(with_verb(&["v2"], &name.to_string(), "getIamPolicy"));
        url.query_pairs_mut()
            .append_pair("options.requestedPolicyVersion", "3");
        self.transport.send_as(Call::get(Api::Run, url)).await
    }

    /// services.setIamPolicy with `{policy}`; retried only when the policy carries an etag.
    pub async fn set_iam_policy(
        &self,
        name: &ServiceName,
        policy: &Policy,
    ) -> Result<Policy, Error> {
        let url = self
            .base
            .join(with_verb(&["v2"], &name.to_string(), "setIamPolicy"));
        let replay = if policy.etag.is_some() {
            Replay::Safe
        } else {
            Replay::Unsafe
        };
        let call = Call::post(Api::Run, url)
            .body(json!({ "policy": policy.to_value() }))
            .replay(replay);
        self.transport.send_as(call).await
    }

    /// Etag-guarded read-modify-write of the service's IAM policy (see [`Policy`] helpers).
    pub async fn modify_iam_policy(
        &self,
        name: &ServiceName,
        deadline: Instant,
        modify: impl FnMut(&mut Policy) -> bool,
    ) -> Result<Policy, Error> {
        let store = RunPolicy {
            client: self.clone(),
            name: name.clone(),
        };
        self.iam.read_modify_write(store, deadline, modify).await
    }
}

#[derive(Clone)]
struct RunPolicy {
    client: RunClient,
    name: ServiceName,
}

impl PolicyStore for RunPolicy {
    fn key(&self) -> String {
        format!("run {}", self.name)
    }

    async fn read(&self) -> Result<Policy, Error> {
        self.client.iam_policy(&self.name).await
    }

    async fn write(&self, policy: &Policy) -> Result<Policy, Error> {
        self.client.set_iam_policy(&self.name, policy).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_service_fields_and_defaults() {
        let raw = json!({
            "@type": "type.googleapis.com/google.cloud.run.v2.Service",
            "name": "projects/p/locations/l/services/s", "uri": "https://s-abc.a.run.app",
            "etag": "\"CK1\"", "iapEnabled": true, "ingress": "INGRESS_TRAFFIC_ALL",
            "launchStage": "GA", "futureField": {"x": 1},
            "template": {"containers": [
                {"name": "app", "image": "i", "ports": [{"name": "h2c", "containerPort": 8080}]},
                {"name": "sidecar"}]}
        });
        let s = RunService::from_value(raw).expect("service");
        assert!(s.iap_enabled);
        assert!(!s.invoker_iam_disabled);
        assert!(!s.default_uri_disabled);
        assert_eq!(s.etag.as_deref(), Some("\"CK1\""));
        assert_eq!(s.ingress.as_deref(), Some("INGRESS_TRAFFIC_ALL"));
        assert_eq!(
            s.ports,
            vec![ContainerPort {
                container: Some("app".into()),
                name: Some("h2c".into()),
                container_port: Some(8080)
            }]
        );
        assert!(s.uses_h2c());
        assert!(s.raw.get("@type").is_none());
        assert_eq!(s.raw["futureField"]["x"], 1);
    }

    #[test]
    fn wrong_types_are_decode_errors() {
        for bad in [
            json!({"iapEnabled": "yes"}),
            json!({"template": {"containers": {"a": 1}}}),
            json!([1, 2]),
            json!({"template": {"containers": [{"ports": [{"containerPort": "80"}]}]}}),
        ] {
            let err = RunService::from_value(bad).expect_err("accepted bad service");
            assert!(matches!(err, Error::Decode { .. }), "{err}");
        }
        let nulls = RunService::from_value(json!({"iapEnabled": null, "template": null}))
            .expect("nulls are absent values");
        assert!(!nulls.iap_enabled);
    }

    #[tokio::test]
    async fn services_list_follows_every_page() {
        use crate::google::testutil::{Reply, Stub};
        let stub = Stub::start(|seen, _| {
            let page = if seen.query.contains("pageToken=next") {
                json!({"services": [{"name": "projects/p/locations/l/services/b", "iapEnabled": true}]})
            } else {
                json!({"services": [{"name": "projects/p/locations/l/services/a"}], "nextPageToken": "next"})
            };
            Reply::json(200, page)
        })
        .await;
        let listed = stub
            .clients()
            .run
            .services("p", "l")
            .await
            .expect("two pages");
        let ids: Vec<&str> = listed.iter().map(RunService::service_id).collect();
        assert_eq!(ids, vec!["a", "b"]);
        assert!(listed[1].iap_enabled);
        let seen = stub.seen();
        assert_eq!(seen.len(), 2);
        assert_eq!(seen[0].path, "/v2/projects/p/locations/l/services");
        assert!(seen[0].query.contains("pageSize=100"), "{}", seen[0].query);
        assert!(seen[1].query.contains("pageToken=next"));
    }

    #[test]
    fn names() {
        let n = ServiceName::new("p", "us-central1", "svc");
        assert_eq!(
            n.to_string(),
            "projects/p/locations/us-central1/services/svc"
        );
    }
}
