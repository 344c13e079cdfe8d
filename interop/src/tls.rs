//! TLS for both roles: certificates from `/certs`, the cipher suites a testcase allows,
//! the NSS key log, and a client that does not verify the server (the runner gives the
//! client no CA) but counts how often it was asked to, which tells a resumed handshake
//! (no Certificate message) from a full one.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{ring, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

use crate::testcase::Testcase;
use crate::Error;

/// The ring provider, restricted to ChaCha20-Poly1305 for the chacha20 testcase.
fn provider(testcase: Testcase) -> Arc<CryptoProvider> {
    let mut provider = ring::default_provider();
    if testcase == Testcase::ChaCha20 {
        provider.cipher_suites = vec![ring::cipher_suite::TLS13_CHACHA20_POLY1305_SHA256];
    }
    Arc::new(provider)
}

/// QUIC Initial packets are always protected with AES-128-GCM (RFC 9001 §5.2), whatever
/// suites TLS may negotiate.
fn initial_suite() -> rustls::quic::Suite {
    ring::cipher_suite::TLS13_AES_128_GCM_SHA256
        .tls13()
        .and_then(|suite| suite.quic_suite())
        .expect("ring's AES-128-GCM suite supports QUIC")
}

/// The server's TLS: certificate chain and key from `dir` (`cert.pem`, `priv.key`),
/// TLS 1.3 only, both ALPNs, session tickets and 0-RTT enabled.
pub fn server_crypto(
    dir: &Path,
    testcase: Testcase,
    keylog: Option<&Path>,
) -> Result<QuicServerConfig, Error> {
    let cert_path = dir.join("cert.pem");
    let key_path = dir.join("priv.key");
    let chain = CertificateDer::pem_file_iter(&cert_path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{}: {e}", cert_path.display()))?;
    let key = PrivateKeyDer::from_pem_file(&key_path)
        .map_err(|e| format!("{}: {e}", key_path.display()))?;
    let mut tls = rustls::ServerConfig::builder_with_provider(provider(testcase))
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    tls.alpn_protocols = vec![crate::testcase::HQ_ALPN.to_vec(), h3_tokio::ALPN.to_vec()];
    // quinn accepts 0 or u32::MAX; the transport's flow control bounds 0-RTT data.
    tls.max_early_data_size = u32::MAX;
    if let Some(path) = keylog {
        tls.key_log = Arc::new(KeyLog::open(path)?);
    }
    Ok(QuicServerConfig::with_initial(
        Arc::new(tls),
        initial_suite(),
    )?)
}

/// The client's TLS for a testcase: its one ALPN, early data for zerortt, and a verifier
/// that accepts any certificate and counts the calls.
pub fn client_crypto(
    testcase: Testcase,
    keylog: Option<&Path>,
    verifier: Arc<CountingVerifier>,
) -> Result<QuicClientConfig, Error> {
    let mut tls = rustls::ClientConfig::builder_with_provider(provider(testcase))
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    tls.alpn_protocols = vec![testcase.alpn().to_vec()];
    tls.enable_early_data = testcase == Testcase::ZeroRtt;
    if let Some(path) = keylog {
        tls.key_log = Arc::new(KeyLog::open(path)?);
    }
    Ok(QuicClientConfig::with_initial(
        Arc::new(tls),
        initial_suite(),
    )?)
}

/// Accepts every server certificate (the runner's client has no CA to check against),
/// still checking the handshake signature, and counts certificates seen: a resumed
/// handshake has none.
#[derive(Debug)]
pub struct CountingVerifier {
    provider: Arc<CryptoProvider>,
    certificates: AtomicU64,
}

impl CountingVerifier {
    pub fn new() -> Arc<CountingVerifier> {
        Arc::new(CountingVerifier {
            provider: Arc::new(ring::default_provider()),
            certificates: AtomicU64::new(0),
        })
    }

    /// How many server certificates have been presented so far.
    pub fn certificates(&self) -> u64 {
        self.certificates.load(Ordering::SeqCst)
    }
}

impl ServerCertVerifier for CountingVerifier {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.certificates.fetch_add(1, Ordering::SeqCst);
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Appends secrets in the NSS key log format to a file (what `SSLKEYLOGFILE` names; a
/// path given by flag works the same, which rustls's own `KeyLogFile` cannot do).
#[derive(Debug)]
struct KeyLog(Mutex<File>);

impl KeyLog {
    fn open(path: &Path) -> Result<KeyLog, Error> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| format!("key log {}: {e}", path.display()))?;
        Ok(KeyLog(Mutex::new(file)))
    }
}

impl rustls::KeyLog for KeyLog {
    fn log(&self, label: &str, client_random: &[u8], secret: &[u8]) {
        let line = format!("{label} {} {}\n", hex(client_random), hex(secret));
        let mut file = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(e) = file.write_all(line.as_bytes()) {
            tracing::warn!("writing the key log: {e}");
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
