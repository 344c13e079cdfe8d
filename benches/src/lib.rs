//! What the benchmark binaries share: the TLS and QUIC setup (identical for every
//! implementation under test, so only the HTTP/3 layer differs), the routes, and the
//! raw-quinn wire protocol. See `benches/README.md` for what is measured and how.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rustls::pki_types::{CertificateDer, PrivatePkcs8KeyDer};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// ALPN of the raw-quinn baseline: not HTTP/3, so no HTTP/3 client can talk to it by
/// mistake.
pub const ALPN_RAW: &[u8] = b"bench-raw";

/// Body of `GET /`.
pub const HELLO: &[u8] = b"hello, world\n";

/// Body chunk size for `/bytes/N` and the raw protocol.
pub const CHUNK: usize = 64 * 1024;

/// Concurrent bidirectional streams a server allows per connection: above the 100
/// streams the single-connection load case keeps in flight, so the client never waits
/// for stream credit.
pub const MAX_STREAMS: u32 = 1000;

/// One 64 KiB buffer, allocated once: every body chunk is a slice of it (a refcount
/// bump), so the benchmark measures the stacks, not the allocator or a pattern
/// generator.
pub fn chunk_buffer() -> Bytes {
    Bytes::from(vec![b'x'; CHUNK])
}

/// `n` bytes as slices of `buf`, at most `buf.len()` each: no allocation per chunk.
pub fn chunks(buf: &Bytes, n: u64) -> impl Iterator<Item = Bytes> + '_ {
    let size = buf.len() as u64;
    (0..n.div_ceil(size)).map(move |i| buf.slice(..(n - i * size).min(size) as usize))
}

/// The HTTP routes of the benchmark servers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `GET /`: 200 with [`HELLO`].
    Hello,
    /// `GET /bytes/N`: 200 with N bytes.
    Bytes(u64),
    NotFound,
}

pub fn route(method: &http::Method, path: &str) -> Route {
    if method != http::Method::GET {
        return Route::NotFound;
    }
    if path == "/" {
        return Route::Hello;
    }
    match path.strip_prefix("/bytes/").map(str::parse) {
        Some(Ok(n)) => Route::Bytes(n),
        _ => Route::NotFound,
    }
}

/// A response head with `content-length`, the same for every HTTP/3 implementation.
pub fn response_head(status: http::StatusCode, len: u64) -> http::Response<()> {
    let mut resp = http::Response::new(());
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(http::header::CONTENT_LENGTH, http::HeaderValue::from(len));
    resp
}

/// Idle timeout of every connection. quinn's default is 30 s; a load generator that
/// waits for the server to close after its GOAWAY (oha against a server that does not
/// close) then stalls that long after the run, so keep it short.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(5);

/// The quinn transport settings of every server (and of `h3-bench-download`), whatever
/// the HTTP/3 layer above it: quinn's defaults (flow-control windows, congestion
/// control) except for the stream limit and [`IDLE_TIMEOUT`].
pub fn transport_config() -> Arc<quinn::TransportConfig> {
    let mut transport = quinn::TransportConfig::default();
    transport.max_concurrent_bidi_streams(MAX_STREAMS.into());
    transport.max_idle_timeout(Some(
        IDLE_TIMEOUT
            .try_into()
            .expect("5 s is a valid idle timeout"),
    ));
    Arc::new(transport)
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A QUIC server configuration: TLS 1.3 with a fresh self-signed certificate for
/// localhost, offering `alpn`, with [`transport_config`].
pub fn server_config(alpn: &[u8]) -> Result<quinn::ServerConfig, BoxError> {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])?;
    let key = PrivatePkcs8KeyDer::from(cert.key_pair.serialize_der());
    let mut tls = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_single_cert(vec![cert.cert.der().clone()], key.into())?;
    tls.alpn_protocols = vec![alpn.to_vec()];
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls)?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    config.transport_config(transport_config());
    Ok(config)
}

/// A QUIC client configuration offering `alpn` that accepts any server certificate:
/// the servers use throwaway self-signed ones.
pub fn client_config(alpn: &[u8]) -> Result<quinn::ClientConfig, BoxError> {
    let mut tls = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(NoVerify(provider())))
        .with_no_client_auth();
    tls.alpn_protocols = vec![alpn.to_vec()];
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls)?;
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    config.transport_config(transport_config());
    Ok(config)
}

/// Accepts any server certificate (signatures are still checked).
#[derive(Debug)]
struct NoVerify(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        let get = http::Method::GET;
        assert_eq!(route(&get, "/"), Route::Hello);
        assert_eq!(route(&get, "/bytes/1024"), Route::Bytes(1024));
        assert_eq!(route(&get, "/bytes/"), Route::NotFound);
        assert_eq!(route(&get, "/bytes/-1"), Route::NotFound);
        assert_eq!(route(&http::Method::POST, "/"), Route::NotFound);
        assert_eq!(route(&get, "/nope"), Route::NotFound);
    }

    #[test]
    fn chunks_cover_n() {
        let buf = chunk_buffer();
        let sizes = |n| chunks(&buf, n).map(|c| c.len()).collect::<Vec<_>>();
        assert_eq!(sizes(2 * CHUNK as u64 + 5), [CHUNK, CHUNK, 5]);
        assert_eq!(sizes(CHUNK as u64), [CHUNK]);
        assert_eq!(sizes(0), Vec::<usize>::new());
    }
}
