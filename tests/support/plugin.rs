//! Starting a provider binary the way go-plugin does and talking gRPC to it without Terraform:
//! the handshake environment, a go-plugin-like client certificate (ECDSA P-521, CA flag), the
//! handshake line, and a channel (TCP or unix socket) with TLS pinned to the server certificate
//! it announced. The tests start this provider; the benchmarks start a Go provider as well.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use base64::Engine;
use iaprun::protocol::{PinnedCertificate, MAGIC_COOKIE_KEY, MAGIC_COOKIE_VALUE};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use tonic::transport::{Channel, Endpoint, Uri};

use super::terraform::provider_binary;

/// A client certificate made the way go-plugin's AutoMTLS makes Terraform's.
pub struct ClientIdentity {
    pub pem: String,
    pub der: CertificateDer<'static>,
    key: PrivatePkcs8KeyDer<'static>,
}

impl ClientIdentity {
    /// Self-signed ECDSA P-521, `CN=localhost`, CA flag set, client and server auth.
    pub fn generate() -> Self {
        use rcgen::{
            BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
            KeyUsagePurpose, PKCS_ECDSA_P521_SHA512,
        };
        let key = KeyPair::generate_for(&PKCS_ECDSA_P521_SHA512).expect("P-521 key");
        let mut params =
            CertificateParams::new(vec!["localhost".to_string()]).expect("certificate params");
        params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        params
            .distinguished_name
            .push(DnType::OrganizationName, "HashiCorp");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
            KeyUsagePurpose::KeyAgreement,
            KeyUsagePurpose::KeyCertSign,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ClientAuth,
            ExtendedKeyUsagePurpose::ServerAuth,
        ];
        let cert = params.self_signed(&key).expect("self-signed certificate");
        Self {
            pem: cert.pem(),
            der: cert.der().clone(),
            key: PrivatePkcs8KeyDer::from(key.serialize_der()),
        }
    }
}

/// How to start the plugin.
#[derive(Default)]
pub struct Launch {
    /// The plugin executable; `None` is this provider as cargo built it.
    pub binary: Option<PathBuf>,
    /// Pass this certificate in `PLUGIN_CLIENT_CERT` (AutoMTLS); `None` serves plaintext.
    pub client: Option<Arc<ClientIdentity>>,
    /// Leave the magic cookie out, as when a person runs the binary.
    pub without_cookie: bool,
    /// More environment variables.
    pub env: Vec<(String, String)>,
}

/// Where a plugin listens: go-plugin servers announce a TCP address or a unix socket.
pub use iaprun::protocol::Address;

/// The unix socket's path, panicking on a TCP address.
#[track_caller]
pub fn socket_path(address: &Address) -> &std::path::Path {
    match address {
        Address::Unix(path) => path,
        Address::Tcp(address) => panic!("the plugin listens on TCP {address}, not a unix socket"),
    }
}

/// What the handshake line said.
#[derive(Debug, Clone)]
pub struct Handshake {
    pub line: String,
    pub address: Address,
    pub server_certificate: Option<Vec<u8>>,
    /// From spawning the process to reading the complete line.
    pub elapsed: Duration,
}

/// A running provider process, killed when dropped.
pub struct PluginProcess {
    child: Child,
    pub handshake: Handshake,
    client: Option<Arc<ClientIdentity>>,
    stderr: mpsc::Receiver<String>,
    /// The plugin's `TMPDIR` when the launch chose none: a plugin killed on drop cannot remove its
    /// socket's directory, so it goes with this one instead of staying in the system's.
    temporary: Option<tempfile::TempDir>,
}

/// Spawns the plugin binary with `launch`'s environment and the cookie.
pub fn spawn(launch: &Launch) -> Child {
    let mut command = command(launch);
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {}: {e}", command.get_program().to_string_lossy()))
}

/// The plugin binary with `launch`'s environment and the cookie, as go-plugin starts it.
pub fn command(launch: &Launch) -> Command {
    let binary = launch.binary.clone().unwrap_or_else(provider_binary);
    let mut command = Command::new(&binary);
    for (key, _) in std::env::vars_os() {
        let key_text = key.to_string_lossy();
        if key_text.starts_with("PLUGIN_") || key_text.starts_with("TF_") {
            command.env_remove(&key);
        }
    }
    if !launch.without_cookie {
        command.env(MAGIC_COOKIE_KEY, MAGIC_COOKIE_VALUE);
    }
    command
        .env("PLUGIN_PROTOCOL_VERSIONS", "5,6")
        .env("PLUGIN_MIN_PORT", "10000")
        .env("PLUGIN_MAX_PORT", "25000");
    if let Some(client) = &launch.client {
        command.env("PLUGIN_CLIENT_CERT", &client.pem);
    }
    for (key, value) in &launch.env {
        command.env(key, value);
    }
    command
}

impl PluginProcess {
    /// Starts the provider and reads its handshake line (panics after 60 s, Terraform's limit).
    pub fn start(mut launch: Launch) -> Self {
        let chosen = |key: &str| launch.env.iter().any(|(k, _)| k == key);
        let temporary = (!chosen("TMPDIR") && !chosen("PLUGIN_UNIX_SOCKET_DIR"))
            .then(|| tempfile::tempdir().expect("a temporary directory for the plugin"));
        if let Some(dir) = &temporary {
            launch
                .env
                .push(("TMPDIR".into(), dir.path().display().to_string()));
        }
        let started = Instant::now();
        let child = spawn(&launch);
        let mut process = Self::read_handshake(child, launch.client, started);
        process.temporary = temporary;
        process
    }

    /// Takes over a started plugin (stdout and stderr piped) and reads its handshake line.
    pub fn read_handshake(
        mut child: Child,
        client: Option<Arc<ClientIdentity>>,
        started: Instant,
    ) -> Self {
        let stdout = child.stdout.take().expect("stdout");
        let (line_tx, line_rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            let _ = reader.read_line(&mut line);
            // Timed here, so the figure holds no thread hand-over.
            let _ = line_tx.send((line, Instant::now()));
            // Keep draining, as go-plugin does, so the provider never blocks on a full pipe.
            let _ = std::io::copy(&mut reader, &mut std::io::sink());
        });
        let stderr = drain_stderr(&mut child);
        let (line, read_at) = line_rx
            .recv_timeout(Duration::from_secs(60))
            .expect("a handshake line within 60 s");
        let elapsed = read_at - started;
        let handshake = parse_handshake(line.trim_end_matches('\n'), elapsed);
        Self {
            child,
            handshake,
            client,
            stderr,
            temporary: None,
        }
    }

    /// A gRPC channel to the provider: mutual TLS with the launch's client certificate when the
    /// provider announced a certificate, plaintext otherwise.
    pub async fn channel(&self) -> Result<Channel, tonic::transport::Error> {
        let address = self.handshake.address.clone();
        match (&self.handshake.server_certificate, &self.client) {
            (Some(server), Some(client)) => {
                tls_channel(address, server.clone(), Some(client.clone())).await
            }
            _ => plaintext_channel(address).await,
        }
    }

    /// A channel presenting `client` (or no certificate) to whatever the server announced.
    pub async fn channel_as(
        &self,
        client: Option<Arc<ClientIdentity>>,
    ) -> Result<Channel, tonic::transport::Error> {
        let server = self
            .handshake
            .server_certificate
            .clone()
            .expect("the provider announced a TLS certificate");
        tls_channel(self.handshake.address.clone(), server, client).await
    }

    /// Waits up to `limit` for the process to exit by itself.
    pub fn wait_for_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Sends a signal to the process.
    pub fn signal(&self, signal: libc::c_int) {
        let pid = libc::pid_t::try_from(self.child.id()).expect("pid");
        // SAFETY: kill(2) on our own child's pid.
        let rc = unsafe { libc::kill(pid, signal) };
        assert_eq!(rc, 0, "kill failed: {}", std::io::Error::last_os_error());
    }

    /// Stderr lines written so far.
    pub fn stderr_lines(&self) -> Vec<String> {
        self.stderr.try_iter().collect()
    }
}

impl Drop for PluginProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn drain_stderr(child: &mut Child) -> mpsc::Receiver<String> {
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Reads all of a finished child's stderr.
pub fn read_all_stderr(child: &mut Child) -> String {
    let mut text = String::new();
    if let Some(mut stderr) = child.stderr.take() {
        let _ = stderr.read_to_string(&mut text);
    }
    text
}

/// Parses `1|5|NETWORK|ADDR|grpc|CERT`, asserting the fields Terraform checks; a TCP address is
/// on the loopback interface.
pub fn parse_handshake(line: &str, elapsed: Duration) -> Handshake {
    let fields: Vec<&str> = line.split('|').collect();
    assert_eq!(fields.len(), 6, "six fields in {line:?}");
    assert_eq!(fields[0], "1", "core protocol version");
    assert_eq!(fields[1], "5", "app protocol version");
    assert_eq!(fields[4], "grpc", "protocol");
    let address = match fields[2] {
        "tcp" => {
            let address: SocketAddr = fields[3].parse().expect("address is IP:port");
            assert!(address.ip().is_loopback(), "{address} is loopback");
            Address::Tcp(address)
        }
        "unix" => {
            let path = PathBuf::from(fields[3]);
            assert!(
                path.is_absolute(),
                "{} is an absolute socket path",
                fields[3]
            );
            Address::Unix(path)
        }
        network => panic!("network {network:?} is neither tcp nor unix in {line:?}"),
    };
    let server_certificate = (!fields[5].is_empty()).then(|| {
        assert!(!fields[5].contains('='), "unpadded base64");
        base64::engine::general_purpose::STANDARD_NO_PAD
            .decode(fields[5])
            .expect("standard base64 without padding")
    });
    Handshake {
        line: line.to_string(),
        address,
        server_certificate,
        elapsed,
    }
}

/// A plaintext channel (what a plugin without AutoMTLS serves).
pub async fn plaintext_channel(address: Address) -> Result<Channel, tonic::transport::Error> {
    channel_over(address, None).await
}

/// A channel over TLS (ALPN h2) that pins `server` and presents `client`, if any.
pub async fn tls_channel(
    address: Address,
    server: Vec<u8>,
    client: Option<Arc<ClientIdentity>>,
) -> Result<Channel, tonic::transport::Error> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier = Arc::new(PinnedCertificate::new(
        CertificateDer::from(server),
        provider.signature_verification_algorithms,
    ));
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut config = match client {
        Some(client) => builder
            .with_client_auth_cert(
                vec![client.der.clone()],
                PrivateKeyDer::Pkcs8(client.key.clone_key()),
            )
            .expect("client certificate"),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    channel_over(address, Some(connector)).await
}

/// A byte stream a channel runs over: TCP or a unix socket, with or without TLS.
trait Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin> Stream for T {}

async fn channel_over(
    address: Address,
    tls: Option<tokio_rustls::TlsConnector>,
) -> Result<Channel, tonic::transport::Error> {
    let connect = tower::service_fn(move |_: Uri| {
        let (address, tls) = (address.clone(), tls.clone());
        async move {
            let raw: Box<dyn Stream> = match address {
                Address::Tcp(address) => {
                    let tcp = tokio::net::TcpStream::connect(address).await?;
                    // As go-plugin's client: small gRPC frames go out at once.
                    tcp.set_nodelay(true)?;
                    Box::new(tcp)
                }
                Address::Unix(path) => Box::new(tokio::net::UnixStream::connect(path).await?),
            };
            let stream: Box<dyn Stream> = match tls {
                Some(connector) => {
                    let name = ServerName::try_from("localhost").expect("server name");
                    Box::new(connector.connect(name, raw).await?)
                }
                None => raw,
            };
            Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
        }
    });
    // The URI only labels the connection; the connector decides where it goes.
    Endpoint::from_static("http://localhost")
        .connect_with_connector(connect)
        .await
}

/// Unary gRPC calls by method path, with message types defined by the caller (tests do not see
/// the provider's generated types).
pub async fn unary<Req, Resp>(
    channel: Channel,
    path: &'static str,
    request: Req,
) -> Result<Resp, tonic::Status>
where
    Req: prost::Message + Send + Sync + 'static,
    Resp: prost::Message + Default + Send + Sync + 'static,
{
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready()
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let codec = tonic_prost::ProstCodec::<Req, Resp>::default();
    let path = tonic::codegen::http::uri::PathAndQuery::from_static(path);
    grpc.unary(tonic::Request::new(request), path, codec)
        .await
        .map(tonic::Response::into_inner)
}

/// Just enough of tfplugin5 and go-plugin for tests to read a schema, move a resource's state and
/// shut a plugin down.
pub mod messages {
    use super::HashMap;

    /// `plugin.Empty`, `GetProviderSchema.Request` and friends.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Empty {}

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct GetSchemaResponse {
        #[prost(message, optional, tag = "1")]
        pub provider: Option<Schema>,
        #[prost(map = "string, message", tag = "2")]
        pub resource_schemas: HashMap<String, Schema>,
        #[prost(message, optional, tag = "6")]
        pub server_capabilities: Option<ServerCapabilities>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Schema {
        #[prost(int64, tag = "1")]
        pub version: i64,
        #[prost(message, optional, tag = "2")]
        pub block: Option<Block>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Block {
        #[prost(message, repeated, tag = "2")]
        pub attributes: Vec<Attribute>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Attribute {
        #[prost(string, tag = "1")]
        pub name: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ServerCapabilities {
        #[prost(bool, tag = "1")]
        pub plan_destroy: bool,
        #[prost(bool, tag = "2")]
        pub get_provider_schema_optional: bool,
        #[prost(bool, tag = "3")]
        pub move_resource_state: bool,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct RawState {
        #[prost(bytes = "vec", tag = "1")]
        pub json: Vec<u8>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct DynamicValue {
        #[prost(bytes = "vec", tag = "1")]
        pub msgpack: Vec<u8>,
        #[prost(bytes = "vec", tag = "2")]
        pub json: Vec<u8>,
    }

    /// A diagnostic without its attribute path.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Diagnostic {
        /// 1 = ERROR, 2 = WARNING.
        #[prost(int32, tag = "1")]
        pub severity: i32,
        #[prost(string, tag = "2")]
        pub summary: String,
        #[prost(string, tag = "3")]
        pub detail: String,
    }

    /// `MoveResourceState.Request` (protocol 5.5).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct MoveResourceStateRequest {
        #[prost(string, tag = "1")]
        pub source_provider_address: String,
        #[prost(string, tag = "2")]
        pub source_type_name: String,
        #[prost(int64, tag = "3")]
        pub source_schema_version: i64,
        #[prost(message, optional, tag = "4")]
        pub source_state: Option<RawState>,
        #[prost(string, tag = "5")]
        pub target_type_name: String,
        #[prost(bytes = "vec", tag = "6")]
        pub source_private: Vec<u8>,
    }

    /// `MoveResourceState.Response`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct MoveResourceStateResponse {
        #[prost(message, optional, tag = "1")]
        pub target_state: Option<DynamicValue>,
        #[prost(message, repeated, tag = "2")]
        pub diagnostics: Vec<Diagnostic>,
        #[prost(bytes = "vec", tag = "3")]
        pub target_private: Vec<u8>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct HealthCheckRequest {
        #[prost(string, tag = "1")]
        pub service: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct HealthCheckResponse {
        /// 1 = SERVING.
        #[prost(int32, tag = "1")]
        pub status: i32,
    }
}

/// Whether a GetSchema call over a channel made by `connect` fails (at connect or at the call).
async fn refused<F>(connect: F) -> Result<(), String>
where
    F: std::future::Future<Output = Result<Channel, tonic::transport::Error>>,
{
    let channel = match connect.await {
        Err(_) => return Ok(()),
        Ok(channel) => channel,
    };
    match get_schema(channel).await {
        Err(_) => Ok(()),
        Ok(answer) => Err(format!(
            "the call succeeded with {} resource schemas",
            answer.resource_schemas.len()
        )),
    }
}

/// Calls a provider started with AutoMTLS the ways a stranger could (TLS without a client
/// certificate, with a certificate Terraform did not send, plaintext) over the network its
/// handshake announced; returns a line for each attempt that got an answer.
pub async fn strangers_admitted(provider: &PluginProcess) -> Vec<String> {
    let stranger = Arc::new(ClientIdentity::generate());
    let attempts = [
        (
            "no client certificate",
            refused(provider.channel_as(None)).await,
        ),
        (
            "another client certificate",
            refused(provider.channel_as(Some(stranger))).await,
        ),
        (
            "plaintext",
            refused(plaintext_channel(provider.handshake.address.clone())).await,
        ),
    ];
    attempts
        .into_iter()
        .filter_map(|(what, outcome)| outcome.err().map(|e| format!("{what}: {e}")))
        .collect()
}

/// `tfplugin5.Provider/GetSchema`.
pub async fn get_schema(channel: Channel) -> Result<messages::GetSchemaResponse, tonic::Status> {
    unary(channel, "/tfplugin5.Provider/GetSchema", messages::Empty {}).await
}

/// `plugin.GRPCController/Shutdown`.
pub async fn shutdown(channel: Channel) -> Result<messages::Empty, tonic::Status> {
    unary(
        channel,
        "/plugin.GRPCController/Shutdown",
        messages::Empty {},
    )
    .await
}

/// `grpc.health.v1.Health/Check` for the service go-plugin names "plugin".
pub async fn health(channel: Channel) -> Result<messages::HealthCheckResponse, tonic::Status> {
    unary(
        channel,
        "/grpc.health.v1.Health/Check",
        messages::HealthCheckRequest {
            service: "plugin".into(),
        },
    )
    .await
}
