//! TLS identities: certificates from PEM files, chosen by SNI, or a self-signed one for
//! localhost generated at start (the zero-config default); and [`ReadOnce`] over
//! [`Counted`], how the HTTP/1 edge reads and writes a TLS stream.

use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{ready, Context, Poll};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use tokio::io::{AsyncBufRead, AsyncRead, AsyncWrite, DuplexStream, ReadBuf};
use tokio::net::TcpStream;

use crate::body::BoxError;
use crate::server_names::ServerNames;

pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A certificate chain and its key, ready to serve.
pub fn load_pem(cert: &Path, key: &Path) -> Result<Arc<CertifiedKey>, BoxError> {
    let read = |path: &Path| {
        read_bounded(path, MAX_PEM_SIZE).map_err(|e| format!("{}: {e}", path.display()))
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&read(cert)?)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: {e}", cert.display()))?;
    let key = PrivateKeyDer::from_pem_slice(&read(key)?)
        .map_err(|e| format!("{}: {e}", key.display()))?;
    Ok(Arc::new(CertifiedKey::from_der(chain, key, &provider())?))
}

/// Certificate chains and keys are a few KiB; a path naming something endless
/// (`/dev/zero`, a FIFO that never closes) must not take the process's memory.
const MAX_PEM_SIZE: u64 = 1 << 20;

/// The contents of `path`, or an error if it holds more than `limit` bytes (read at most
/// `limit + 1` of them).
pub fn read_bounded(path: &Path, limit: u64) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut data = Vec::new();
    std::fs::File::open(path)?
        .take(limit + 1)
        .read_to_end(&mut data)?;
    if data.len() as u64 > limit {
        return Err(std::io::Error::other(format!("larger than {limit} bytes")));
    }
    Ok(data)
}

/// A fresh self-signed certificate for localhost, 127.0.0.1 and ::1.
pub fn self_signed() -> Result<Arc<CertifiedKey>, BoxError> {
    let cert = rcgen::generate_simple_self_signed(vec![
        "localhost".into(),
        "127.0.0.1".into(),
        "::1".into(),
    ])?;
    let key = PrivatePkcs8KeyDer::from(cert.key_pair.serialize_der());
    Ok(Arc::new(CertifiedKey::from_der(
        vec![cert.cert.der().clone()],
        key.into(),
        &provider(),
    )?))
}

/// Picks a certificate by SNI as the server names pick a server ([`ServerNames`]);
/// clients without SNI, or asking for a name no server has, get the first one.
#[derive(Debug)]
pub struct CertResolver(ServerNames<Arc<CertifiedKey>>);

impl CertResolver {
    /// `certs`: each certificate with the server names (lower case, as the config
    /// keeps them) to serve it for; the first name given wins.
    pub fn new(certs: Vec<(Arc<CertifiedKey>, Vec<String>)>) -> Result<Self, BoxError> {
        let (names, _repeated) = ServerNames::new(certs).ok_or("no certificate")?;
        Ok(CertResolver(names))
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.pick(|| hello.server_name()).clone())
    }
}

/// The rustls server config for a listener offering `alpn`, over TCP or QUIC.
///
/// Resumption: over TCP with session tickets (one random key for the process, tickets
/// valid 12 hours), so that any number of clients resume, as nginx's default; rustls's own
/// session cache keeps only the last 256. Over QUIC the cache stays, since rustls
/// accepts 0-RTT data only from a session it holds (a ticket could be replayed).
pub fn server_config(
    resolver: Arc<CertResolver>,
    alpn: &[&[u8]],
    quic: bool,
) -> Result<rustls::ServerConfig, BoxError> {
    let versions: &[&rustls::SupportedProtocolVersion] = if quic {
        &[&rustls::version::TLS13]
    } else {
        rustls::DEFAULT_VERSIONS
    };
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(versions)?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    if quic {
        // quinn requires this exact value to enable 0-RTT; HTTP/3 marks early
        // requests so that filters can refuse methods that are not safe.
        config.max_early_data_size = u32::MAX;
    } else {
        config.ticketer = ticketer()?;
    }
    Ok(config)
}

/// The process's session ticket key (rotated by rustls), shared by every TCP listener,
/// so that a client resumes on any address of the server (IPv4 or IPv6, say).
fn ticketer() -> Result<Arc<dyn rustls::server::ProducesTickets>, rustls::Error> {
    static TICKETER: OnceLock<Arc<dyn rustls::server::ProducesTickets>> = OnceLock::new();
    if let Some(ticketer) = TICKETER.get() {
        return Ok(ticketer.clone());
    }
    let made = rustls::crypto::ring::Ticketer::new()?;
    Ok(TICKETER.get_or_init(|| made).clone())
}

/// A socket under TLS that counts the bytes written to it: TLS takes up to 64 KiB of a
/// response in before its records go out, so the HTTP/1 send timeout watches these.
pub struct Counted<T> {
    io: T,
    sent: u64,
}

impl<T> Counted<T> {
    pub fn new(io: T) -> Self {
        Counted { io, sent: 0 }
    }

    /// Bytes written to the socket so far.
    pub fn sent(&self) -> u64 {
        self.sent
    }

    fn count(&mut self, written: Poll<io::Result<usize>>) -> Poll<io::Result<usize>> {
        if let Poll::Ready(Ok(n)) = written {
            self.sent += n as u64;
        }
        written
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Counted<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Counted<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.io).poll_write(cx, buf);
        self.count(written)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.count(written)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// A socket that can tell, without reading, that a read would find nothing yet.
pub trait ReadReady {
    /// Ready once a read may find something (bytes, the end, an error), and until a
    /// read comes up short; else the task is woken when one may.
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
}

impl ReadReady for TcpStream {
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        TcpStream::poll_read_ready(self, cx)
    }
}

/// In-memory pipes (tests) cannot tell: they are always read.
impl ReadReady for DuplexStream {
    fn poll_read_ready(&self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// A TLS stream whose reads return the plaintext at hand. tokio-rustls's `poll_read`
/// tries the socket again after each chunk until it would block; a caller that parses
/// what it got first (the HTTP/1 edge) pays that attempt, about 500 instructions, on
/// every request for nothing. And a read that would find nothing costs only the
/// socket's readiness check, not that read path: the HTTP/1 edge makes two per proxied
/// request, waiting for the next and watching the client while the handler waits
/// (callgrind: about 520 instructions per proxied request less).
pub struct ReadOnce<T>(pub T);

impl<T: ReadReady + AsyncRead + AsyncWrite + Unpin> AsyncRead
    for ReadOnce<tokio_rustls::server::TlsStream<Counted<T>>>
{
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let (socket, tls) = self.0.get_ref();
        // rustls decrypts every whole record it reads: with no plaintext (nor
        // close_notify) at hand, only the socket can bring more. It stays ready until
        // a read comes up short, and a ready socket is read: no wake-up is lost.
        if tls.wants_read() {
            ready!(socket.io.poll_read_ready(cx))?;
        }
        let data = ready!(Pin::new(&mut self.0).poll_fill_buf(cx))?;
        let n = data.len().min(buf.remaining());
        buf.put_slice(&data[..n]);
        Pin::new(&mut self.0).consume(n);
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for ReadOnce<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

impl<T> ReadOnce<tokio_rustls::server::TlsStream<Counted<T>>> {
    /// Bytes of TLS records written to the socket so far, for
    /// [`serve_with_sent`](crate::http1::serve_with_sent).
    pub fn sent(&self) -> u64 {
        self.0.get_ref().0.sent()
    }
}
