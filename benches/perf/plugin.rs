//! Launching a provider binary the way Terraform's go-plugin client does, reading its handshake
//! line, and calling it over the channel it announced (TCP or unix socket, mutual TLS when it
//! published a certificate).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tonic::transport::{Channel, Endpoint, Uri};

/// Terraform's go-plugin magic cookie value.
pub const MAGIC_COOKIE: &str = "d602bf8f470bc67ca7faa0386276bbdd4330efaf76d1a219cb4d6991ca9872b2";

/// The client certificate go-plugin's AutoMTLS would pass in `PLUGIN_CLIENT_CERT`.
pub struct ClientIdentity {
    pub pem: String,
    der: CertificateDer<'static>,
    key: PrivatePkcs8KeyDer<'static>,
}

impl ClientIdentity {
    /// A self-signed ECDSA P-521 certificate for `localhost`, as Terraform makes one per run.
    pub fn generate() -> Self {
        use rcgen::{
            BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
            KeyUsagePurpose, PKCS_ECDSA_P521_SHA512,
        };
        let key = KeyPair::generate_for(&PKCS_ECDSA_P521_SHA512).expect("P-521 key pair");
        let mut params =
            CertificateParams::new(vec!["localhost".to_string()]).expect("certificate params");
        params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
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

/// Where the plugin listens.
#[derive(Debug, Clone)]
pub enum Address {
    Tcp(std::net::SocketAddr),
    Unix(PathBuf),
}

/// The parsed handshake line.
#[derive(Debug, Clone)]
pub struct Handshake {
    pub address: Address,
    pub server_certificate: Option<Vec<u8>>,
}

/// Parses `CORE|APP|NETWORK|ADDRESS|grpc|CERT`.
pub fn parse_handshake(line: &str) -> Result<Handshake, String> {
    let fields: Vec<&str> = line.trim_end().split('|').collect();
    if fields.len() < 5 || fields[0] != "1" || fields[4] != "grpc" {
        return Err(format!("not a go-plugin gRPC handshake line: {line:?}"));
    }
    let address = match fields[2] {
        "tcp" => Address::Tcp(
            fields[3]
                .parse()
                .map_err(|e| format!("address {:?}: {e}", fields[3]))?,
        ),
        "unix" => Address::Unix(PathBuf::from(fields[3])),
        other => return Err(format!("network {other:?}")),
    };
    let server_certificate = match fields.get(5).copied().unwrap_or_default() {
        "" => None,
        text => Some(
            base64::engine::general_purpose::STANDARD_NO_PAD
                .decode(text.trim_end_matches('='))
                .map_err(|e| format!("certificate: {e}"))?,
        ),
    };
    Ok(Handshake {
        address,
        server_certificate,
    })
}

/// A provider process, killed on drop.
pub struct Plugin {
    child: Child,
    pub handshake: Handshake,
    /// From spawning the process to reading the complete handshake line.
    pub startup: Duration,
}

/// The go-plugin launch environment for `binary`, with `scratch` as its temporary directory (where
/// old go-plugin servers put their unix sockets).
pub fn command(binary: &Path, client: &ClientIdentity, scratch: &Path) -> Command {
    let mut command = Command::new(binary);
    for (key, _) in std::env::vars_os() {
        let text = key.to_string_lossy();
        if text.starts_with("PLUGIN_") || text.starts_with("TF_") {
            command.env_remove(&key);
        }
    }
    command
        .env("TF_PLUGIN_MAGIC_COOKIE", MAGIC_COOKIE)
        .env("PLUGIN_PROTOCOL_VERSIONS", "5")
        .env("PLUGIN_MIN_PORT", "10000")
        .env("PLUGIN_MAX_PORT", "25000")
        .env("PLUGIN_CLIENT_CERT", &client.pem)
        .env("TMPDIR", scratch)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    command
}

impl Plugin {
    /// Starts the plugin and waits for its handshake line.
    pub fn start(binary: &Path, client: &ClientIdentity, scratch: &Path) -> Result<Self, String> {
        let mut command = command(binary, client, scratch);
        let started = Instant::now();
        let mut child = command
            .spawn()
            .map_err(|e| format!("{}: {e}", binary.display()))?;
        let stdout = child.stdout.take().expect("piped stdout");
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        let read = reader.read_line(&mut line);
        let startup = started.elapsed();
        // Keep reading so the plugin never blocks on a full pipe.
        std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
        let mut plugin = Self {
            child,
            handshake: Handshake {
                address: Address::Unix(PathBuf::new()),
                server_certificate: None,
            },
            startup,
        };
        read.map_err(|e| format!("reading the handshake: {e}"))?;
        plugin.handshake = parse_handshake(&line)?;
        Ok(plugin)
    }

    /// A gRPC channel to the plugin, presenting `client` when it announced a certificate.
    pub async fn channel(&self, client: &ClientIdentity) -> Result<Channel, String> {
        let tls = self
            .handshake
            .server_certificate
            .as_ref()
            .map(|server| tls_connector(server.clone(), client));
        let address = self.handshake.address.clone();
        let connect = tower::service_fn(move |_: Uri| {
            let (address, tls) = (address.clone(), tls.clone());
            async move { connect(address, tls).await }
        });
        // The URI is only a label: the connector decides where the connection goes.
        Endpoint::from_static("http://localhost")
            .connect_with_connector(connect)
            .await
            .map_err(|e| format!("connecting to the plugin: {e}"))
    }
}

impl Drop for Plugin {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

type Io = hyper_util::rt::TokioIo<Box<dyn Stream>>;

/// A byte stream the channel can run over.
trait Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin> Stream for T {}

async fn connect(
    address: Address,
    tls: Option<tokio_rustls::TlsConnector>,
) -> Result<Io, std::io::Error> {
    let raw: Box<dyn Stream> = match address {
        Address::Tcp(addr) => {
            let tcp = tokio::net::TcpStream::connect(addr).await?;
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
    Ok(hyper_util::rt::TokioIo::new(stream))
}

fn tls_connector(server: Vec<u8>, client: &ClientIdentity) -> tokio_rustls::TlsConnector {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier = Arc::new(PinnedServer {
        der: server,
        algorithms: provider.signature_verification_algorithms,
    });
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_auth_cert(
            vec![client.der.clone()],
            PrivateKeyDer::Pkcs8(client.key.clone_key()),
        )
        .expect("client certificate");
    config.alpn_protocols = vec![b"h2".to_vec()];
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

/// Trusts exactly the certificate from the handshake line, as go-plugin's client does.
#[derive(Debug)]
struct PinnedServer {
    der: Vec<u8>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for PinnedServer {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if end_entity.as_ref() == self.der.as_slice() {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// `GetProviderSchema.Request` (no fields).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Empty {}

/// Just enough of `GetProviderSchema.Response` to see that it carries resource schemas.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SchemaReply {
    #[prost(map = "string, message", tag = "2")]
    pub resource_schemas: std::collections::HashMap<String, Empty>,
}

/// One GetSchema round trip (tfplugin5's GetProviderSchema).
pub async fn get_schema(channel: Channel) -> Result<SchemaReply, tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready()
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let codec = tonic_prost::ProstCodec::<Empty, SchemaReply>::default();
    let path = http::uri::PathAndQuery::from_static("/tfplugin5.Provider/GetSchema");
    grpc.unary(tonic::Request::new(Empty {}), path, codec)
        .await
        .map(tonic::Response::into_inner)
}
