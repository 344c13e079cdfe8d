//! One self-signed certificate per process and the TLS/QUIC configurations built on it.
//!
//! The certificate is valid for `localhost` and `127.0.0.1`; the client configurations
//! trust exactly that certificate. Everything uses rustls' *ring* provider, passed
//! explicitly to every builder (and also installed as the process default, once).

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::SupportedProtocolVersion;

/// The ALPN token for HTTP/3.
pub const ALPN_H3: &[u8] = b"h3";

/// Maximum concurrent bidirectional (request) streams a test server allows per connection.
pub const MAX_CONCURRENT_BIDI_STREAMS: u32 = 200;

struct TestCert {
    cert: CertificateDer<'static>,
    key: PrivatePkcs8KeyDer<'static>,
    /// The same pair in PEM, for servers configured by file (edge's tests).
    cert_pem: String,
    key_pem: String,
}

fn test_cert() -> &'static TestCert {
    static CERT: OnceLock<TestCert> = OnceLock::new();
    CERT.get_or_init(|| {
        let rcgen::CertifiedKey { cert, key_pair } =
            rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".into()])
                .expect("generate self-signed certificate");
        TestCert {
            cert: cert.der().clone(),
            key: PrivatePkcs8KeyDer::from(key_pair.serialize_der()),
            cert_pem: cert.pem(),
            key_pem: key_pair.serialize_pem(),
        }
    })
}

/// The self-signed certificate (DER), the same for the whole process.
pub fn cert_der() -> CertificateDer<'static> {
    test_cert().cert.clone()
}

/// The private key of [`cert_der`] (PKCS#8 DER).
pub fn key_der() -> PrivateKeyDer<'static> {
    PrivateKeyDer::Pkcs8(test_cert().key.clone_key())
}

/// [`cert_der`] and [`key_der`] as PEM: (certificate, private key).
pub fn pem() -> (&'static str, &'static str) {
    (&test_cert().cert_pem, &test_cert().key_pem)
}

/// The *ring* crypto provider. Also installs it as the process-wide default the first
/// time it is called (an already installed default is left in place).
pub fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| {
            // Err means another provider is already the default: that is fine, every
            // configuration made here passes its provider explicitly.
            let _ = rustls::crypto::ring::default_provider().install_default();
            Arc::new(rustls::crypto::ring::default_provider())
        })
        .clone()
}

fn alpn_vec(alpn: &[&[u8]]) -> Vec<Vec<u8>> {
    alpn.iter().map(|p| p.to_vec()).collect()
}

fn server_crypto_with(
    alpn: &[&[u8]],
    versions: &[&'static SupportedProtocolVersion],
) -> rustls::ServerConfig {
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(versions)
        .expect("ring supports the requested TLS versions")
        .with_no_client_auth()
        .with_single_cert(vec![cert_der()], key_der())
        .expect("valid certificate and key");
    config.alpn_protocols = alpn_vec(alpn);
    config
}

fn client_crypto_with(
    alpn: &[&[u8]],
    versions: &[&'static SupportedProtocolVersion],
) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(cert_der())
        .expect("add test certificate to roots");
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(versions)
        .expect("ring supports the requested TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn_vec(alpn);
    config
}

/// A rustls server configuration presenting the test certificate, offering `alpn`
/// (TLS 1.2 and 1.3, rustls' safe defaults).
pub fn server_crypto(alpn: &[&[u8]]) -> rustls::ServerConfig {
    server_crypto_with(alpn, rustls::DEFAULT_VERSIONS)
}

/// A rustls client configuration trusting only the test certificate, offering `alpn`
/// (TLS 1.2 and 1.3, rustls' safe defaults).
pub fn client_crypto(alpn: &[&[u8]]) -> rustls::ClientConfig {
    client_crypto_with(alpn, rustls::DEFAULT_VERSIONS)
}

/// A quinn server configuration: ALPN `h3`, TLS 1.3 only, 0-RTT accepted, and up to
/// [`MAX_CONCURRENT_BIDI_STREAMS`] concurrent request streams per connection.
pub fn quinn_server_config() -> quinn::ServerConfig {
    let mut crypto = server_crypto_with(&[ALPN_H3], &[&rustls::version::TLS13]);
    // quinn accepts 0-RTT only with this exact value (QUIC has no early data limit).
    crypto.max_early_data_size = u32::MAX;
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(crypto)
        .expect("TLS 1.3 server config with the QUIC initial cipher suite");
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    let mut transport = quinn::TransportConfig::default();
    transport.max_concurrent_bidi_streams(MAX_CONCURRENT_BIDI_STREAMS.into());
    config.transport_config(Arc::new(transport));
    config
}

/// A quinn client configuration: ALPN `h3`, TLS 1.3, 0-RTT when resuming, trusting only
/// the test certificate.
pub fn quinn_client_config() -> quinn::ClientConfig {
    let mut crypto = client_crypto_with(&[ALPN_H3], &[&rustls::version::TLS13]);
    crypto.enable_early_data = true;
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(crypto)
        .expect("TLS 1.3 client config with the QUIC initial cipher suite");
    quinn::ClientConfig::new(Arc::new(crypto))
}

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// A quinn server endpoint on `127.0.0.1:0` with [`quinn_server_config`].
/// Must be called inside a tokio runtime.
pub fn server_endpoint() -> quinn::Endpoint {
    quinn::Endpoint::server(quinn_server_config(), loopback()).expect("bind server endpoint")
}

/// A quinn client endpoint on `127.0.0.1:0` whose default client configuration is
/// [`quinn_client_config`]. Must be called inside a tokio runtime.
pub fn client_endpoint() -> quinn::Endpoint {
    let mut endpoint = quinn::Endpoint::client(loopback()).expect("bind client endpoint");
    endpoint.set_default_client_config(quinn_client_config());
    endpoint
}

/// Connects `endpoint` to `addr` with server name `localhost` (panics on failure).
pub async fn connect(endpoint: &quinn::Endpoint, addr: SocketAddr) -> quinn::Connection {
    endpoint
        .connect(addr, "localhost")
        .expect("start QUIC connection")
        .await
        .expect("QUIC handshake")
}
