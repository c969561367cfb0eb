//! `iaprun-emulator`: an offline emulator of the Google REST APIs the provider uses (Cloud Run
//! Admin v2, IAP v1, Compute v1, Service Usage v1/v1beta1, Resource Manager v1/v3, OAuth token),
//! checked request by request against Google's discovery documents.
//!
//! Tests start one in-process with [`spawn`]; the binary wraps [`serve`].

mod admin;
mod compute;
pub mod discovery;
mod dispatch;
mod enums;
mod error;
mod faults;
mod iam;
mod iap;
mod operation;
mod resource_manager;
mod run;
mod seed;
mod service_usage;
mod state;
mod system;
mod token;

use std::collections::BTreeMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::response::Response;
use axum::routing::post;
use axum::Router;
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, Notify};
use tokio::task::{JoinHandle, JoinSet};
use tower::ServiceExt;

pub use faults::{FaultKind, FaultSpec};
pub use seed::{SeedSummary, SECTIONS as SEED_SECTIONS};
pub use state::{Mismatch, Parent, RequestRecord};

use state::{lock, Shared};

/// How an emulator behaves.
#[derive(Clone, Debug)]
pub struct Options {
    /// Added to every API request before it is handled.
    pub latency_ms: u64,
    /// How long long-running operations take to complete.
    pub operation_delay_ms: u64,
    /// Append one JSON line per API request to this file.
    pub request_log: Option<PathBuf>,
    /// Accept API requests without a bearer token.
    pub open: bool,
    /// Prefix of compute `selfLink`s.
    pub self_link_base: String,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            latency_ms: 0,
            operation_delay_ms: 0,
            request_log: None,
            open: false,
            self_link_base: "https://www.googleapis.com/compute/v1/".to_string(),
        }
    }
}

/// The state behind one emulator's router.
#[derive(Clone)]
pub struct EmulatorState(Arc<Shared>);

impl EmulatorState {
    /// Fresh state; opens the request log file if one is configured.
    pub fn new(options: Options) -> io::Result<EmulatorState> {
        Ok(EmulatorState(Arc::new(Shared::new(options)?)))
    }
}

/// Lets a handler drop its connection without answering (the `reset` fault).
#[derive(Clone)]
pub(crate) struct ConnKill(pub Arc<Notify>);

/// The emulator's HTTP routes: the Google APIs, `POST /token`, and the admin API under `/__emulator/`.
pub fn router(state: EmulatorState) -> Router {
    Router::new()
        .route("/token", post(token::exchange))
        .nest("/__emulator", admin::router())
        .fallback(api_fallback)
        .with_state(state)
}

async fn api_fallback(State(state): State<EmulatorState>, request: Request) -> Response {
    let kill = request.extensions().get::<ConnKill>().cloned();
    dispatch::api(state.0.clone(), kill, request).await
}

/// Serve on an already-bound listener until `shutdown` completes.
pub async fn serve<F>(listener: TcpListener, options: Options, shutdown: F) -> io::Result<()>
where
    F: Future<Output = ()> + Send,
{
    serve_state(listener, EmulatorState::new(options)?, shutdown).await
}

/// Serve an existing state (built by a seed, say) on an already-bound listener until `shutdown`.
pub async fn serve_state<F>(
    listener: TcpListener,
    state: EmulatorState,
    shutdown: F,
) -> io::Result<()>
where
    F: Future<Output = ()> + Send,
{
    let app = router(state);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    connections.spawn(serve_connection(app.clone(), stream));
                }
                Err(error) => {
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    connections.shutdown().await;
    Ok(())
}

async fn serve_connection(app: Router, stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let kill = ConnKill(Arc::new(Notify::new()));
    let service_kill = kill.clone();
    let service =
        hyper::service::service_fn(move |mut request: http::Request<hyper::body::Incoming>| {
            request.extensions_mut().insert(service_kill.clone());
            let app = app.clone();
            async move { app.oneshot(request.map(axum::body::Body::new)).await }
        });
    let connection =
        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service);
    tokio::select! {
        result = connection => {
            if let Err(error) = result {
                tracing::debug!(%error, "connection ended with an error");
            }
        }
        () = kill.0.notified() => tracing::debug!("connection dropped by a reset fault"),
    }
}

/// Changes to a project through the admin API (fields left out stay as they are).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProjectUpdate {
    /// `null` removes the parent (a project outside any organization).
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub parent: Option<Option<Parent>>,
    /// The organization's domain (shown as the organization's display name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organization_domain: Option<String>,
    /// Service name → enabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub services: Option<BTreeMap<String, bool>>,
    /// Services whose agents exist already (as if generateServiceIdentity had run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_agents: Option<Vec<String>>,
    /// Organization policy rejecting allUsers / allAuthenticatedUsers in IAM policies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restrict_public_members: Option<bool>,
}

fn present<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

/// A running in-process emulator; stops when dropped.
pub struct Emulator {
    addr: SocketAddr,
    state: EmulatorState,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<io::Result<()>>>,
}

/// Start an emulator on 127.0.0.1 with a free port.
pub async fn spawn(options: Options) -> io::Result<Emulator> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let state = EmulatorState::new(options)?;
    let (sender, receiver) = oneshot::channel::<()>();
    let task = tokio::spawn(serve_state(listener, state.clone(), async move {
        let _ = receiver.await;
    }));
    Ok(Emulator {
        addr,
        state,
        shutdown: Some(sender),
        task: Some(task),
    })
}

impl Emulator {
    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `host:port`, the value for `IAPRUN_EMULATOR_HOST`.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// `http://host:port`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn shared(&self) -> &Shared {
        &self.state.0
    }

    /// Every API request so far, oldest first.
    pub fn requests(&self) -> Vec<RequestRecord> {
        lock(&self.shared().journal).requests.clone()
    }

    /// Forget the in-memory request log (the file is kept).
    pub fn clear_requests(&self) {
        lock(&self.shared().journal).requests.clear();
    }

    /// Requests that did not conform to the discovery documents.
    pub fn mismatches(&self) -> Vec<Mismatch> {
        lock(&self.shared().journal).mismatches.clone()
    }

    /// Forget recorded mismatches.
    pub fn clear_mismatches(&self) {
        lock(&self.shared().journal).mismatches.clear();
    }

    /// Emulator answers that do not fit the documents' response schemas (emulator bugs).
    pub fn response_problems(&self) -> Vec<Mismatch> {
        lock(&self.shared().journal).response_problems.clone()
    }

    /// Register a fault; returns its id.
    pub fn add_fault(&self, spec: FaultSpec) -> Result<u64, String> {
        lock(&self.shared().faults).add(spec)
    }

    /// Remove one fault.
    pub fn remove_fault(&self, id: u64) -> bool {
        lock(&self.shared().faults).remove(id)
    }

    /// Remove every fault.
    pub fn clear_faults(&self) {
        lock(&self.shared().faults).clear();
    }

    /// Forget all state, faults and the in-memory journal.
    pub fn reset(&self) {
        self.shared().reset();
    }

    /// A JSON dump of the world, as `GET /__emulator/state` answers it.
    pub fn state(&self) -> Value {
        admin::dump(self.shared())
    }

    /// The project's number (the project is created if needed); None for an invalid id.
    pub fn project_number(&self, project_id: &str) -> Option<String> {
        let wall = dispatch::rfc3339(time::OffsetDateTime::now_utc());
        lock(&self.shared().world)
            .projects
            .resolve(project_id, &wall)
            .ok()
            .map(|p| p.number.clone())
    }

    /// Change a project's attributes; answers the project's admin view.
    pub fn update_project(&self, project: &str, update: ProjectUpdate) -> Result<Value, String> {
        admin::update_project(self.shared(), project, update)
    }

    /// Create a service-account key the token endpoint accepts; answers the key file JSON
    /// (`token_uri` points at this emulator).
    pub async fn service_account_key(
        &self,
        project_id: &str,
        account_id: &str,
    ) -> Result<Value, String> {
        let state = self.state.clone();
        let (project, account) = (project_id.to_string(), account_id.to_string());
        let token_uri = format!("{}/token", self.base_url());
        tokio::task::spawn_blocking(move || {
            token::create_account(&state.0, Some(&project), Some(&account), None, &token_uri)
        })
        .await
        .map_err(|e| e.to_string())?
    }

    /// Build the world a seed file describes (as `iaprun-emulator --seed FILE` does).
    pub async fn seed_file(&self, path: &std::path::Path) -> Result<SeedSummary, String> {
        self.state.seed_file(path).await
    }

    /// Build the world a seed document (the JSON text of a seed file) describes.
    pub async fn seed_json(&self, text: &str) -> Result<SeedSummary, String> {
        self.state.seed_json(text).await
    }

    /// Stop serving and wait for the server task.
    pub async fn shutdown(mut self) {
        self.stop().await;
    }

    /// [`Emulator::shutdown`] for an owner that keeps the emulator (its journal stays readable).
    pub async fn stop(&mut self) {
        if let Some(sender) = self.shutdown.take() {
            let _ = sender.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        if let Some(sender) = self.shutdown.take() {
            let _ = sender.send(());
        }
    }
}
