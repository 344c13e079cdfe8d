//! The client role: downloads `REQUESTS` into `/downloads` (by URL path) the way the
//! testcase asks, then closes its connections and exits.
//!
//! Lines starting with `interop:` on stdout report what a testcase is about (a resumed
//! session, 0-RTT accepted, a key update, a migration), for tests and local runners.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::Uri;
use tokio::io::{AsyncWrite, AsyncWriteExt, BufWriter};

use crate::testcase::Testcase;
use crate::tls::CountingVerifier;
use crate::{paths, quic, tls, Error};

/// Bytes received on a connection before the keyupdate testcase updates keys or the
/// connectionmigration testcase moves: by then the handshake is confirmed, and the
/// runner wants a key update "during the first MB".
const HOOK_AFTER: u64 = 64 * 1024;

/// What the client needs to run.
pub struct Options {
    pub testcase: Testcase,
    pub requests: Vec<Uri>,
    pub downloads: PathBuf,
    pub keylog: Option<PathBuf>,
    /// Where to send packets instead of what the URLs' host resolves to.
    pub connect: Option<SocketAddr>,
}

/// Downloads every request; an error fails the testcase.
pub async fn run(opts: Options) -> Result<(), Error> {
    let first = opts.requests.first().ok_or("REQUESTS is empty")?;
    let host = first.host().ok_or("URL without a host")?;
    // `http` keeps the brackets of an IPv6 literal; TLS wants the bare address.
    let server_name = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let port = first.port_u16().unwrap_or(443);
    for url in &opts.requests {
        if url.host() != first.host() || url.port_u16().unwrap_or(443) != port {
            return Err(format!("{url}: all URLs must name the same server").into());
        }
    }
    let target = match opts.connect {
        Some(addr) => addr,
        None => tokio::net::lookup_host((server_name.as_str(), port))
            .await?
            .next()
            .ok_or_else(|| format!("{server_name} does not resolve"))?,
    };

    let verifier = CountingVerifier::new();
    let crypto = tls::client_crypto(opts.testcase, opts.keylog.as_deref(), verifier.clone())?;
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    config.transport_config(quic::transport(false, opts.testcase));
    let mut endpoint = quic::endpoint(quic::bind(unspecified(target))?, None)?;
    endpoint.set_default_client_config(config);

    let client = Client {
        endpoint: endpoint.clone(),
        target,
        server_name,
        downloads: opts.downloads,
        testcase: opts.testcase,
        verifier,
    };
    let result = client.run(&opts.requests).await;
    // Let the CONNECTION_CLOSE frames go out before the process exits.
    let _ = tokio::time::timeout(Duration::from_secs(5), endpoint.wait_idle()).await;
    result
}

/// The wildcard address of `target`'s family, any port.
fn unspecified(target: SocketAddr) -> SocketAddr {
    if target.is_ipv6() {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    }
}

struct Client {
    endpoint: quinn::Endpoint,
    target: SocketAddr,
    server_name: String,
    downloads: PathBuf,
    testcase: Testcase,
    verifier: Arc<CountingVerifier>,
}

impl Client {
    async fn run(&self, urls: &[Uri]) -> Result<(), Error> {
        match self.testcase {
            Testcase::Multiconnect => {
                for (i, url) in urls.iter().enumerate() {
                    let conn = self.connect().await?;
                    println!("interop: connection {} established", i + 1);
                    self.fetch(&conn, std::slice::from_ref(url)).await?;
                }
                Ok(())
            }
            Testcase::Resumption | Testcase::ZeroRtt => {
                let (first, rest) = urls.split_first().ok_or("no URL")?;
                let conn = self.connect().await?;
                self.fetch(&conn, std::slice::from_ref(first)).await?;
                if self.testcase == Testcase::ZeroRtt {
                    self.fetch_0rtt(rest).await
                } else {
                    let certificates = self.verifier.certificates();
                    let conn = self.connect().await?;
                    self.report_resumed(certificates)?;
                    self.fetch(&conn, rest).await
                }
            }
            _ => {
                let conn = self.connect().await?;
                self.fetch(&conn, urls).await
            }
        }
    }

    async fn connect(&self) -> Result<quinn::Connection, Error> {
        Ok(self
            .endpoint
            .connect(self.target, &self.server_name)?
            .await?)
    }

    /// Connection 2 of zerortt: requests go out in 0-RTT packets, before the handshake
    /// completes. If the server rejects 0-RTT, quinn fails those streams and they are
    /// sent again once the handshake is done.
    async fn fetch_0rtt(&self, urls: &[Uri]) -> Result<(), Error> {
        let certificates = self.verifier.certificates();
        let connecting = self.endpoint.connect(self.target, &self.server_name)?;
        let (conn, accepted) = connecting
            .into_0rtt()
            .map_err(|_| "no session ticket for 0-RTT from connection 1")?;
        let fetching = self.fetch_streams(&conn, urls);
        let (accepted, result) = tokio::join!(accepted, fetching);
        println!("interop: 0-RTT accepted={accepted}");
        self.report_resumed(certificates)?;
        if accepted {
            result?;
        } else {
            self.fetch_streams(&conn, urls).await?;
        }
        close(&conn, self.testcase);
        Ok(())
    }

    /// Prints whether the latest handshake resumed a session (the server sent no
    /// certificate), and fails if it did not.
    fn report_resumed(&self, certificates_before: u64) -> Result<(), Error> {
        let resumed = self.verifier.certificates() == certificates_before;
        println!("interop: connection 2 resumed={resumed}");
        if resumed {
            Ok(())
        } else {
            Err("the server did not resume the TLS session".into())
        }
    }

    /// Fetches `urls` concurrently on `conn`, then closes it.
    async fn fetch(&self, conn: &quinn::Connection, urls: &[Uri]) -> Result<(), Error> {
        let result = self.fetch_streams(conn, urls).await;
        close(conn, self.testcase);
        result
    }

    async fn fetch_streams(&self, conn: &quinn::Connection, urls: &[Uri]) -> Result<(), Error> {
        let hooks = Arc::new(Hooks {
            conn: conn.clone(),
            endpoint: self.endpoint.clone(),
            testcase: self.testcase,
            received: AtomicU64::new(0),
            fired: AtomicBool::new(false),
        });
        let h3 = match self.testcase {
            Testcase::Http3 => Some(h3_tokio::client::new(conn.clone(), Default::default()).await?),
            _ => None,
        };
        let mut tasks = tokio::task::JoinSet::new();
        for url in urls {
            let path = paths::under(&self.downloads, url.path())
                .ok_or_else(|| format!("{url}: no file name in the URL path"))?;
            let (url, conn, h3, hooks) = (url.clone(), conn.clone(), h3.clone(), hooks.clone());
            tasks.spawn(async move {
                let result = match h3 {
                    Some(h3) => get_h3(&h3, &url, &path, &hooks).await,
                    None => get_hq(&conn, &url, &path, &hooks).await,
                };
                result.map_err(|e| Error::from(format!("{url}: {}", with_causes(&*e))))
            });
        }
        let mut first_error = None;
        while let Some(joined) = tasks.join_next().await {
            if let Err(e) = joined.map_err(Error::from).and_then(|r| r) {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// An error and its causes ("connection lost: timed out"): the cause is what tells a
/// stalled connection from a closed one in a runner's log.
fn with_causes(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text = format!("{text}: {c}");
        cause = c.source();
    }
    text
}

/// Closes with NO_ERROR: 0 for hq-interop, H3_NO_ERROR for HTTP/3.
fn close(conn: &quinn::Connection, testcase: Testcase) {
    let code = match testcase {
        Testcase::Http3 => h3_tokio::Code::H3_NO_ERROR.0,
        _ => 0,
    };
    conn.close(quinn::VarInt::from_u64(code).unwrap_or_default(), b"");
}

/// hq-interop: `GET /path\r\n` on a new stream, FIN, then the body until FIN.
async fn get_hq(
    conn: &quinn::Connection,
    url: &Uri,
    path: &std::path::Path,
    hooks: &Hooks,
) -> Result<(), Error> {
    let (mut send, mut recv) = conn.open_bi().await?;
    send.write_all(format!("GET {}\r\n", url.path()).as_bytes())
        .await?;
    send.finish()?;
    let mut file = create(path).await?;
    while let Some(chunk) = recv.read_chunk(usize::MAX, true).await? {
        hooks.received(chunk.bytes.len());
        file.write_all(&chunk.bytes).await?;
    }
    file.flush().await?;
    Ok(())
}

/// HTTP/3: GET, a 200 response, then the body.
async fn get_h3(
    h3: &h3_tokio::client::SendRequest,
    url: &Uri,
    path: &std::path::Path,
    hooks: &Hooks,
) -> Result<(), Error> {
    let mut stream = h3
        .send_request(http::Request::get(url.clone()).body(())?)
        .await?;
    stream.finish()?;
    let response = stream.recv_response().await?;
    if response.status() != http::StatusCode::OK {
        return Err(format!("status {}", response.status()).into());
    }
    let mut file = create(path).await?;
    while let Some(chunk) = stream.recv_data().await? {
        hooks.received(chunk.len());
        file.write_all(&chunk).await?;
    }
    file.flush().await?;
    Ok(())
}

async fn create(path: &std::path::Path) -> Result<impl AsyncWrite + Unpin, Error> {
    if let Some(parent) = path.parent() {
        tokio::fs::create_dir_all(parent).await?;
    }
    let file = tokio::fs::File::create(path)
        .await
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(BufWriter::with_capacity(64 * 1024, file))
}

/// What happens once a connection has received [`HOOK_AFTER`] bytes: a key update
/// (keyupdate) or a move to a new local port (connectionmigration).
struct Hooks {
    conn: quinn::Connection,
    endpoint: quinn::Endpoint,
    testcase: Testcase,
    received: AtomicU64,
    fired: AtomicBool,
}

impl Hooks {
    fn received(&self, n: usize) {
        let total = self.received.fetch_add(n as u64, Ordering::Relaxed) + n as u64;
        if total < HOOK_AFTER || self.fired.swap(true, Ordering::Relaxed) {
            return;
        }
        match self.testcase {
            Testcase::KeyUpdate => {
                self.conn.force_key_update();
                println!("interop: key update initiated after {total} bytes");
            }
            Testcase::ConnectionMigration => match self.migrate() {
                Ok((from, to)) => {
                    println!("interop: migrated from {from} to {to} after {total} bytes")
                }
                Err(e) => println!("interop: migration failed: {e}"),
            },
            _ => {}
        }
    }

    /// Active migration of the client's own address: a new socket (new port), and quinn
    /// switches to a fresh connection ID and probes the path.
    fn migrate(&self) -> std::io::Result<(SocketAddr, SocketAddr)> {
        let from = self.endpoint.local_addr()?;
        let socket = quic::bind(SocketAddr::new(from.ip(), 0))?;
        self.endpoint.rebind(socket)?;
        Ok((from, self.endpoint.local_addr()?))
    }
}
