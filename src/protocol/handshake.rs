//! The go-plugin handshake: check that Terraform started us, agree on protocol 5, set up mutual TLS
//! with the certificate Terraform passed, and announce the address on stdout.
//!
//! TLS detail: Terraform's client certificate is a self-signed ECDSA P-521 certificate with the CA
//! flag set. Stock verifiers reject it (ring cannot verify P-521; webpki refuses a CA certificate
//! as an end entity), and Go then silently sends no certificate. So the server pins it instead:
//! the client must present exactly the certificate from `PLUGIN_CLIENT_CERT` and prove it holds
//! the key, checked with aws-lc-rs's signature algorithms (P-521 included).

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use base64::Engine;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};

use super::transport::Address;

/// The environment variable go-plugin uses for the magic cookie.
pub const MAGIC_COOKIE_KEY: &str = "TF_PLUGIN_MAGIC_COOKIE";
/// Terraform's magic cookie value (the same from Terraform 0.12 on).
pub const MAGIC_COOKIE_VALUE: &str =
    "d602bf8f470bc67ca7faa0386276bbdd4330efaf76d1a219cb4d6991ca9872b2";
/// The app protocol version we speak.
pub const PROTOCOL_VERSION: u32 = 5;

/// What a person running the binary by hand is told.
pub const NOT_LAUNCHED_BY_TERRAFORM: &str = "This binary is terraform-provider-iaprun, a Terraform provider plugin that puts Identity-Aware Proxy in front of Cloud Run services. It is not meant to be run directly: Terraform starts it itself when a configuration uses the provider (required_providers { iaprun = { source = \"iaprun/iaprun\" } }) and talks to it over gRPC. Install it where Terraform finds providers and run `terraform init` and `terraform plan` in your configuration; see the README for installation and usage.";

/// Why the handshake could not happen.
#[derive(Debug)]
pub enum HandshakeError {
    /// The magic cookie is missing or wrong: someone ran the binary by hand.
    NotLaunchedByTerraform,
    /// The client offered no protocol version we speak.
    UnsupportedProtocol(String),
    /// `PLUGIN_CLIENT_CERT` is not a PEM certificate.
    BadClientCertificate(String),
    /// Our own certificate or TLS setup failed.
    Tls(String),
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotLaunchedByTerraform => f.write_str(NOT_LAUNCHED_BY_TERRAFORM),
            Self::UnsupportedProtocol(offered) => write!(
                f,
                "Terraform offered plugin protocol versions {offered:?}, but this provider speaks only version {PROTOCOL_VERSION}. Use Terraform 0.12 or later (1.x recommended)."
            ),
            Self::BadClientCertificate(why) => write!(
                f,
                "PLUGIN_CLIENT_CERT does not hold a PEM certificate ({why}); Terraform sets it, so this provider may have been started by something else."
            ),
            Self::Tls(why) => write!(f, "could not set up TLS: {why}"),
        }
    }
}

impl std::error::Error for HandshakeError {}

/// How Terraform asked to be served, from the plugin's environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launch {
    /// Terraform's client certificate (DER) when mutual TLS is on; `None` means plaintext.
    pub client_certificate: Option<CertificateDer<'static>>,
    /// `PLUGIN_UNIX_SOCKET_DIR`: where to make the socket's directory; `None` means the temporary
    /// directory.
    pub socket_dir: Option<PathBuf>,
}

/// Reads the launch settings through `var` (the process environment in production).
pub fn read_environment(var: impl Fn(&str) -> Option<String>) -> Result<Launch, HandshakeError> {
    if var(MAGIC_COOKIE_KEY).as_deref() != Some(MAGIC_COOKIE_VALUE) {
        return Err(HandshakeError::NotLaunchedByTerraform);
    }
    // Absent on very old clients, which only speak the default version.
    if let Some(offered) = var("PLUGIN_PROTOCOL_VERSIONS") {
        let wanted = PROTOCOL_VERSION.to_string();
        if !offered.split(',').any(|v| v.trim() == wanted) {
            return Err(HandshakeError::UnsupportedProtocol(offered));
        }
    }
    let tls_disabled = var("TF_DISABLE_PLUGIN_TLS").is_some_and(|v| !v.is_empty());
    let client_certificate = match var("PLUGIN_CLIENT_CERT").filter(|v| !v.is_empty()) {
        Some(pem) if !tls_disabled => Some(
            CertificateDer::from_pem_slice(pem.as_bytes())
                .map_err(|e| HandshakeError::BadClientCertificate(e.to_string()))?,
        ),
        _ => None,
    };
    // go-plugin treats an empty value as unset too.
    let socket_dir = var("PLUGIN_UNIX_SOCKET_DIR")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from);
    Ok(Launch {
        client_certificate,
        socket_dir,
    })
}

/// The server's certificate and key, made fresh for each process.
pub struct ServerIdentity {
    pub certificate: CertificateDer<'static>,
    key: PrivatePkcs8KeyDer<'static>,
}

/// A self-signed ECDSA P-256 certificate for `localhost`, valid for server authentication: what
/// Go's TLS client checks once the handshake line has put it in its trust pool.
pub fn server_identity() -> Result<ServerIdentity, HandshakeError> {
    use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose, KeyUsagePurpose};
    let tls = |e: rcgen::Error| HandshakeError::Tls(e.to_string());
    let key = RingP256Key::generate()?;
    let mut params = CertificateParams::new(vec!["localhost".to_string()]).map_err(tls)?;
    params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    params
        .distinguished_name
        .push(DnType::OrganizationName, "terraform-provider-iaprun");
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    // The certificate lives as long as this process; the margin absorbs clock skew.
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(365);
    let certificate = params.self_signed(&key).map_err(tls)?;
    Ok(ServerIdentity {
        certificate: certificate.der().clone(),
        key: key.pkcs8,
    })
}

/// An ECDSA P-256 key made and used with ring, whose random numbers come straight from the OS.
/// aws-lc's generator seeds itself from CPU jitter on first use, about 50 ms of CPU: too much for
/// a process Terraform starts three times per plan. aws-lc only verifies signatures here (the
/// client's P-521 key), which needs no random numbers.
struct RingP256Key {
    pair: ring::signature::EcdsaKeyPair,
    pkcs8: PrivatePkcs8KeyDer<'static>,
    random: ring::rand::SystemRandom,
}

impl RingP256Key {
    fn generate() -> Result<Self, HandshakeError> {
        use ring::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};
        let failed = |what: &str| HandshakeError::Tls(format!("{what} a P-256 key failed"));
        let random = ring::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &random)
            .map_err(|_| failed("generating"))?;
        let pair =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref(), &random)
                .map_err(|_| failed("loading"))?;
        Ok(Self {
            pair,
            pkcs8: PrivatePkcs8KeyDer::from(pkcs8.as_ref().to_vec()),
            random,
        })
    }
}

impl rcgen::PublicKeyData for RingP256Key {
    fn der_bytes(&self) -> &[u8] {
        use ring::signature::KeyPair;
        self.pair.public_key().as_ref()
    }

    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        &rcgen::PKCS_ECDSA_P256_SHA256
    }
}

impl rcgen::SigningKey for RingP256Key {
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        self.pair
            .sign(&self.random, message)
            .map(|signature| signature.as_ref().to_vec())
            .map_err(|_| rcgen::Error::RingUnspecified)
    }
}

/// ring for key exchange, ciphers, our signatures and random numbers; aws-lc-rs only to verify
/// signatures, because Terraform's client key is P-521, which ring cannot verify.
fn crypto_provider() -> rustls::crypto::CryptoProvider {
    rustls::crypto::CryptoProvider {
        signature_verification_algorithms: rustls::crypto::aws_lc_rs::default_provider()
            .signature_verification_algorithms,
        ..rustls::crypto::ring::default_provider()
    }
}

/// Trusts exactly one certificate, byte for byte, as go-plugin does at both ends: the provider
/// pins the client certificate Terraform passed, a client pins the server certificate of the
/// handshake line. The peer proves it holds the key through handshake signatures checked with
/// `algorithms` (aws-lc-rs's, for P-521).
#[derive(Debug)]
pub struct PinnedCertificate {
    expected: CertificateDer<'static>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl PinnedCertificate {
    /// Pins `expected`, verifying handshake signatures with `algorithms`.
    pub fn new(expected: CertificateDer<'static>, algorithms: WebPkiSupportedAlgorithms) -> Self {
        Self {
            expected,
            algorithms,
        }
    }

    fn is_expected(&self, end_entity: &CertificateDer<'_>) -> Result<(), rustls::Error> {
        if end_entity.as_ref() == self.expected.as_ref() {
            Ok(())
        } else {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            ))
        }
    }
}

/// The handshake-signature methods, the same in both verifier traits.
macro_rules! pinned_signatures {
    () => {
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
    };
}

impl ClientCertVerifier for PinnedCertificate {
    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // No hints: Go's client then offers its only certificate.
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.is_expected(end_entity)
            .inspect_err(|_| {
                tracing::debug!("refused a TLS client: not the certificate Terraform passed");
            })
            .map(|()| ClientCertVerified::assertion())
    }

    pinned_signatures!();
}

impl ServerCertVerifier for PinnedCertificate {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.is_expected(end_entity)
            .map(|()| ServerCertVerified::assertion())
    }

    pinned_signatures!();
}

/// A TLS server configuration (TLS 1.2+, ALPN h2) that requires `client_certificate`.
pub fn tls_config(
    identity: &ServerIdentity,
    client_certificate: CertificateDer<'static>,
) -> Result<Arc<rustls::ServerConfig>, HandshakeError> {
    let provider = Arc::new(crypto_provider());
    let verifier = Arc::new(PinnedCertificate::new(
        client_certificate,
        provider.signature_verification_algorithms,
    ));
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| HandshakeError::Tls(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            vec![identity.certificate.clone()],
            PrivateKeyDer::Pkcs8(identity.key.clone_key()),
        )
        .map_err(|e| HandshakeError::Tls(e.to_string()))?;
    // grpc-go clients (Terraform 1.12+) refuse servers that do not negotiate h2.
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// The line go-plugin reads from our stdout:
/// `CORE|APP|NETWORK|ADDRESS|PROTOCOL|SERVER_CERT`, NETWORK `unix` with the socket's path or `tcp`
/// with IP:port, the certificate as unpadded standard base64 (padding breaks Go's decoder) and
/// empty without TLS.
pub fn handshake_line(
    address: &Address,
    server_certificate: Option<&CertificateDer<'_>>,
) -> String {
    let certificate = server_certificate
        .map(|c| base64::engine::general_purpose::STANDARD_NO_PAD.encode(c.as_ref()))
        .unwrap_or_default();
    let network = address.network();
    format!("1|{PROTOCOL_VERSION}|{network}|{address}|grpc|{certificate}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        let map: HashMap<&str, &str> = pairs.iter().copied().collect();
        move |k| map.get(k).map(|v| v.to_string())
    }

    fn client_pem() -> (String, Vec<u8>) {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P521_SHA512).expect("key");
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
            .expect("params")
            .self_signed(&key)
            .expect("cert");
        (cert.pem(), cert.der().to_vec())
    }

    #[test]
    fn the_cookie_is_required() {
        assert!(matches!(
            read_environment(env(&[])),
            Err(HandshakeError::NotLaunchedByTerraform)
        ));
        assert!(matches!(
            read_environment(env(&[(MAGIC_COOKIE_KEY, "nope")])),
            Err(HandshakeError::NotLaunchedByTerraform)
        ));
        let message = HandshakeError::NotLaunchedByTerraform.to_string();
        assert!(message.contains("Terraform provider plugin") && message.contains("README"));
    }

    #[test]
    fn protocol_five_must_be_offered() {
        let ok = read_environment(env(&[
            (MAGIC_COOKIE_KEY, MAGIC_COOKIE_VALUE),
            ("PLUGIN_PROTOCOL_VERSIONS", "6, 5"),
        ]))
        .expect("5 is offered");
        assert_eq!(ok.client_certificate, None, "no certificate: plaintext");
        assert!(matches!(
            read_environment(env(&[
                (MAGIC_COOKIE_KEY, MAGIC_COOKIE_VALUE),
                ("PLUGIN_PROTOCOL_VERSIONS", "6"),
            ])),
            Err(HandshakeError::UnsupportedProtocol(v)) if v == "6"
        ));
    }

    #[test]
    fn the_client_certificate_turns_tls_on_unless_disabled() {
        let (pem, der) = client_pem();
        let launch = read_environment(env(&[
            (MAGIC_COOKIE_KEY, MAGIC_COOKIE_VALUE),
            ("PLUGIN_CLIENT_CERT", &pem),
        ]))
        .expect("valid");
        assert_eq!(launch.client_certificate.map(|c| c.to_vec()), Some(der));
        let plain = read_environment(env(&[
            (MAGIC_COOKIE_KEY, MAGIC_COOKIE_VALUE),
            ("PLUGIN_CLIENT_CERT", &pem),
            ("TF_DISABLE_PLUGIN_TLS", "1"),
        ]))
        .expect("valid");
        assert_eq!(plain.client_certificate, None);
        assert!(matches!(
            read_environment(env(&[
                (MAGIC_COOKIE_KEY, MAGIC_COOKIE_VALUE),
                ("PLUGIN_CLIENT_CERT", "not a certificate"),
            ])),
            Err(HandshakeError::BadClientCertificate(_))
        ));
    }

    #[test]
    fn the_handshake_line_has_six_fields_and_unpadded_base64() {
        let identity = server_identity().expect("identity");
        let socket = Address::Unix(PathBuf::from("/tmp/iaprun-plugin-Ab3/plugin.sock"));
        let line = handshake_line(&socket, Some(&identity.certificate));
        let fields: Vec<&str> = line.split('|').collect();
        assert_eq!(fields.len(), 6);
        assert_eq!(
            &fields[..5],
            [
                "1",
                "5",
                "unix",
                "/tmp/iaprun-plugin-Ab3/plugin.sock",
                "grpc"
            ]
        );
        assert!(!fields[5].contains('='), "no padding");
        let der = base64::engine::general_purpose::STANDARD_NO_PAD
            .decode(fields[5])
            .expect("standard base64");
        assert_eq!(der, identity.certificate.to_vec());
        assert_eq!(
            handshake_line(&socket, None),
            "1|5|unix|/tmp/iaprun-plugin-Ab3/plugin.sock|grpc|"
        );
    }

    #[test]
    fn the_tcp_fallback_announces_ip_and_port() {
        let address = Address::Tcp("127.0.0.1:4242".parse().expect("address"));
        assert_eq!(
            handshake_line(&address, None),
            "1|5|tcp|127.0.0.1:4242|grpc|"
        );
    }

    #[test]
    fn the_socket_directory_comes_from_plugin_unix_socket_dir() {
        let cookie = (MAGIC_COOKIE_KEY, MAGIC_COOKIE_VALUE);
        let set = read_environment(env(&[cookie, ("PLUGIN_UNIX_SOCKET_DIR", "/run/plugins")]))
            .expect("valid");
        assert_eq!(set.socket_dir, Some(PathBuf::from("/run/plugins")));
        let empty =
            read_environment(env(&[cookie, ("PLUGIN_UNIX_SOCKET_DIR", "")])).expect("valid");
        assert_eq!(empty.socket_dir, None, "empty means unset, as in go-plugin");
        assert_eq!(
            read_environment(env(&[cookie])).expect("valid").socket_dir,
            None
        );
    }

    #[test]
    fn the_verifier_pins_one_certificate_and_offers_p521() {
        let (_, der) = client_pem();
        let identity = server_identity().expect("identity");
        let config = tls_config(&identity, CertificateDer::from(der.clone())).expect("config");
        assert_eq!(config.alpn_protocols, vec![b"h2".to_vec()]);
        let verifier = PinnedCertificate::new(
            CertificateDer::from(der.clone()),
            rustls::crypto::aws_lc_rs::default_provider().signature_verification_algorithms,
        );
        assert!(verifier.client_auth_mandatory());
        assert!(ClientCertVerifier::supported_verify_schemes(&verifier)
            .contains(&SignatureScheme::ECDSA_NISTP521_SHA512));
        let now = UnixTime::now();
        assert!(verifier
            .verify_client_cert(&CertificateDer::from(der), &[], now)
            .is_ok());
        let (_, other) = client_pem();
        assert!(verifier
            .verify_client_cert(&CertificateDer::from(other), &[], now)
            .is_err());
    }

    #[test]
    fn a_client_pins_the_server_certificate_of_the_handshake_line() {
        let identity = server_identity().expect("identity");
        let verifier = PinnedCertificate::new(
            identity.certificate.clone(),
            rustls::crypto::aws_lc_rs::default_provider().signature_verification_algorithms,
        );
        let name = ServerName::try_from("localhost").expect("server name");
        let now = UnixTime::now();
        assert!(verifier
            .verify_server_cert(&identity.certificate, &[], &name, &[], now)
            .is_ok());
        let stranger = server_identity().expect("another identity");
        assert!(verifier
            .verify_server_cert(&stranger.certificate, &[], &name, &[], now)
            .is_err());
    }
}
