//! Everything that knows gRPC and tfplugin5: the go-plugin handshake, its unix-socket (or TCP)
//! transport and mutual TLS, the `tfplugin5.Provider` service over a framework [`Provider`], the
//! msgpack value codec, and the go-plugin controller, stdio, broker and health services. No
//! generated type leaves this module.

use std::future::Future;
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::Router;
use tonic::transport::Server;

use crate::framework::Provider;

mod codec;
mod convert;
mod handshake;
mod plugin;
mod service;
mod transport;

// The value codec is public for the property tests and fuzz targets that feed it untrusted bytes.
pub use codec::{decode_json, decode_msgpack, encode_msgpack, CodecError};
pub use handshake::{
    HandshakeError, PinnedCertificate, MAGIC_COOKIE_KEY, MAGIC_COOKIE_VALUE, PROTOCOL_VERSION,
};
pub use transport::{Address, Listener};

/// Generated protocol types; nothing generated leaves this module.
#[allow(
    clippy::all,
    clippy::pedantic,
    missing_docs,
    unreachable_pub,
    dead_code
)]
mod proto {
    pub mod tfplugin5 {
        tonic::include_proto!("tfplugin5");
    }
    pub mod plugin {
        tonic::include_proto!("plugin");
    }
}

/// Largest message accepted or sent; Terraform allows far more than tonic's 4 MiB default.
const MAX_MESSAGE_SIZE: usize = 256 * 1024 * 1024;
/// How long a connection may take to finish its TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long in-flight calls may run on after Shutdown before the server stops regardless.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);

/// Why serving ended in failure.
#[derive(Debug)]
pub enum ServeError {
    /// The handshake could not happen (not started by Terraform, no common protocol, bad TLS input).
    Handshake(HandshakeError),
    /// Binding, writing the handshake line, or installing signal handlers failed.
    Io(std::io::Error),
    /// The gRPC server failed.
    Transport(tonic::transport::Error),
}

impl std::fmt::Display for ServeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Handshake(e) => write!(f, "{e}"),
            Self::Io(e) => write!(f, "I/O error: {e}"),
            Self::Transport(e) => write!(f, "gRPC server error: {e}"),
        }
    }
}

impl std::error::Error for ServeError {}

impl From<HandshakeError> for ServeError {
    fn from(e: HandshakeError) -> Self {
        Self::Handshake(e)
    }
}

impl From<std::io::Error> for ServeError {
    fn from(e: std::io::Error) -> Self {
        Self::Io(e)
    }
}

/// The plugin entry point: checks that Terraform started us, binds a unix socket in a private
/// directory (TCP on 127.0.0.1 where that fails), prints the handshake line, and serves `provider`
/// until Terraform shuts us down, our parent process exits, or SIGTERM or SIGHUP arrives; the
/// socket's directory is removed on each of these. SIGINT is ignored: Terraform sends Stop instead.
pub async fn serve<P: Provider>(provider: P) -> Result<(), ServeError> {
    let launch = handshake::read_environment(|key| std::env::var(key).ok())?;
    plugin::ignore_interrupts()?;
    let (terminated, parent_exited) = (plugin::terminated()?, plugin::parent_exited());
    let shutdown = async move {
        tokio::select! {
            () = parent_exited => {}
            () = terminated => {}
        }
    };
    let (tls, certificate) = match launch.client_certificate {
        Some(client_certificate) => {
            let identity = handshake::server_identity()?;
            let config = handshake::tls_config(&identity, client_certificate)?;
            (Some(config), Some(identity.certificate))
        }
        None => (None, None),
    };
    let announce = |address: &Address| -> Result<(), ServeError> {
        let line = handshake::handshake_line(address, certificate.as_ref());
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "{line}")?;
        stdout.flush()?;
        tracing::debug!(network = address.network(), %address, tls = tls.is_some(), "plugin started");
        Ok(())
    };
    let base = transport::socket_base(launch.socket_dir.as_deref());
    match transport::bind_unix(&base) {
        Ok(socket) => {
            announce(&Address::Unix(socket.path))?;
            let served = serve_with(socket.listener, tls, provider, shutdown).await;
            socket.directory.remove();
            served?;
        }
        Err(e) => {
            tracing::debug!(base = %base.display(), error = %e, "no unix socket; serving on TCP 127.0.0.1 instead");
            let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
            announce(&Address::Tcp(listener.local_addr()?))?;
            serve_with(listener, tls, provider, shutdown).await?;
        }
    }
    tracing::debug!("plugin stopped");
    Ok(())
}

/// Serves `provider` and the go-plugin services on an already-bound listener (TCP or unix), with
/// mutual TLS when `tls` is given (plaintext h2c otherwise), until GRPCController.Shutdown is called
/// or `shutdown` resolves. Tests use this directly.
pub async fn serve_with<P: Provider, L: Listener>(
    listener: L,
    tls: Option<Arc<rustls::ServerConfig>>,
    provider: P,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let (stop, stop_requested) = watch::channel(false);
    let external = stop.clone();
    let watcher = tokio::spawn(async move {
        shutdown.await;
        external.send_replace(true);
    });

    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_service_status("plugin", tonic_health::ServingStatus::Serving)
        .await;
    let provider_service = service::ProviderGrpc::new(Arc::new(provider), MAX_MESSAGE_SIZE);
    let router = Server::builder()
        .add_service(provider_service)
        .add_service(
            proto::plugin::grpc_controller_server::GrpcControllerServer::new(
                plugin::Controller::new(stop),
            ),
        )
        .add_service(proto::plugin::grpc_stdio_server::GrpcStdioServer::new(
            plugin::Stdio,
        ))
        .add_service(proto::plugin::grpc_broker_server::GrpcBrokerServer::new(
            plugin::Broker,
        ))
        .add_service(health_service);

    let result = match tls {
        Some(config) => {
            let acceptor = tokio_rustls::TlsAcceptor::from(config);
            let incoming = accept(listener, stop_requested.clone(), move |stream| {
                let acceptor = acceptor.clone();
                async move {
                    match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await
                    {
                        Ok(Ok(stream)) => Some(stream),
                        Ok(Err(e)) => {
                            tracing::debug!(error = %e, "TLS handshake refused");
                            None
                        }
                        Err(_) => {
                            tracing::debug!("TLS handshake timed out");
                            None
                        }
                    }
                }
            });
            run(router, incoming, stop_requested).await
        }
        None => {
            let incoming = accept(listener, stop_requested.clone(), |stream| async move {
                Some(stream)
            });
            run(router, incoming, stop_requested).await
        }
    };
    watcher.abort();
    result
}

/// Accepts connections until stopped, preparing each one (the TLS handshake) on its own task so a
/// slow client cannot hold up the others.
fn accept<L, IO, F, Fut>(
    listener: L,
    stop_requested: watch::Receiver<bool>,
    prepare: F,
) -> ReceiverStream<std::io::Result<IO>>
where
    L: Listener,
    IO: Send + 'static,
    F: Fn(L::Stream) -> Fut + Send + 'static,
    Fut: Future<Output = Option<IO>> + Send + 'static,
{
    let (sender, receiver) = mpsc::channel(16);
    tokio::spawn(async move {
        let stopped = plugin::stopped(stop_requested);
        tokio::pin!(stopped);
        loop {
            let accepted = tokio::select! {
                _ = &mut stopped => return,
                accepted = listener.accept() => accepted,
            };
            match accepted {
                Ok(stream) => {
                    let sender = sender.clone();
                    let prepared = prepare(stream);
                    tokio::spawn(async move {
                        if let Some(io) = prepared.await {
                            let _ = sender.send(Ok(io)).await;
                        }
                    });
                }
                Err(e) => {
                    // Transient (e.g. out of file descriptors): wait a little and go on.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    });
    ReceiverStream::new(receiver)
}

/// Runs the router over `incoming` until stopped; in-flight calls get a short grace period.
async fn run<IO>(
    router: Router,
    incoming: ReceiverStream<std::io::Result<IO>>,
    stop_requested: watch::Receiver<bool>,
) -> Result<(), ServeError>
where
    IO: tokio::io::AsyncRead
        + tokio::io::AsyncWrite
        + tonic::transport::server::Connected
        + Unpin
        + Send
        + 'static,
{
    let server =
        router.serve_with_incoming_shutdown(incoming, plugin::stopped(stop_requested.clone()));
    tokio::pin!(server);
    let deadline = async {
        plugin::stopped(stop_requested).await;
        tokio::time::sleep(SHUTDOWN_GRACE).await;
    };
    tokio::select! {
        result = &mut server => result.map_err(ServeError::Transport),
        () = deadline => {
            tracing::debug!("connections still open after the shutdown grace period; stopping anyway");
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::IaprunProvider;
    use proto::plugin::grpc_controller_client::GrpcControllerClient;
    use proto::tfplugin5::provider_client::ProviderClient;
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;

    /// The real provider served in plaintext on `listener` until Shutdown.
    fn spawn_plaintext(listener: impl Listener) -> tokio::task::JoinHandle<Result<(), ServeError>> {
        #[allow(clippy::default_constructed_unit_structs)]
        let provider = IaprunProvider::default();
        tokio::spawn(serve_with(listener, None, provider, std::future::pending()))
    }

    /// GetSchema and the health check answer on `channel`, and Shutdown then ends `server`.
    async fn answers_then_stops_on_shutdown(
        channel: tonic::transport::Channel,
        server: tokio::task::JoinHandle<Result<(), ServeError>>,
    ) {
        let schema = ProviderClient::new(channel.clone())
            .get_schema(proto::tfplugin5::get_provider_schema::Request {})
            .await
            .expect("GetSchema")
            .into_inner();
        let provider = schema.provider.expect("provider schema");
        assert!(!provider.block.expect("block").attributes.is_empty());

        let health = HealthClient::new(channel.clone())
            .check(tonic_health::pb::HealthCheckRequest {
                service: "plugin".into(),
            })
            .await
            .expect("health")
            .into_inner();
        assert_eq!(health.status, ServingStatus::Serving as i32);

        GrpcControllerClient::new(channel)
            .shutdown(proto::plugin::Empty {})
            .await
            .expect("Shutdown");
        let finished = tokio::time::timeout(Duration::from_secs(30), server)
            .await
            .expect("the server stops after Shutdown")
            .expect("task");
        assert!(finished.is_ok(), "{finished:?}");
    }

    #[tokio::test]
    async fn plaintext_server_answers_and_stops_on_controller_shutdown() {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.expect("bind");
        let address = listener.local_addr().expect("address");
        let server = spawn_plaintext(listener);
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{address}"))
            .expect("endpoint")
            .connect()
            .await
            .expect("connect");
        answers_then_stops_on_shutdown(channel, server).await;
    }

    #[tokio::test]
    async fn a_unix_socket_listener_serves_the_same() {
        let directory = tempfile::tempdir().expect("directory");
        let path = directory.path().join("plugin.sock");
        let server = spawn_plaintext(tokio::net::UnixListener::bind(&path).expect("bind"));
        let connect = tower::service_fn(move |_: tonic::transport::Uri| {
            let path = path.clone();
            async move {
                let stream = tokio::net::UnixStream::connect(path).await?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
            }
        });
        // The URI only labels the connection; the connector decides where it goes.
        let channel = tonic::transport::Endpoint::from_static("http://localhost")
            .connect_with_connector(connect)
            .await
            .expect("connect over the unix socket");
        answers_then_stops_on_shutdown(channel, server).await;
    }

    #[tokio::test]
    async fn the_shutdown_future_stops_the_server() {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.expect("bind");
        let (trigger, fired) = tokio::sync::oneshot::channel::<()>();
        #[allow(clippy::default_constructed_unit_structs)]
        let server = tokio::spawn(serve_with(
            listener,
            None,
            IaprunProvider::default(),
            async {
                let _ = fired.await;
            },
        ));
        trigger.send(()).expect("server waiting");
        let finished = tokio::time::timeout(Duration::from_secs(30), server)
            .await
            .expect("the server stops")
            .expect("task");
        assert!(finished.is_ok(), "{finished:?}");
    }
}
