//! The server role: serves the files of `/www` over hq-interop or HTTP/3 (chosen per
//! connection by ALPN) until it is killed.
//!
//! Only a few testcases change the server: `retry` (a Retry for every connection whose
//! address is not yet validated), `chacha20` (only that cipher suite), and
//! `connectionmigration` (a preferred address, when one is configured).

use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::BytesMut;
use h3_tokio::RequestStream;
use http::{Request, Response, StatusCode};
use tokio::io::AsyncReadExt;

use crate::testcase::Testcase;
use crate::{paths, quic, tls, Error};

/// Longest hq-interop request accepted (`GET /path\r\n`; the zerortt testcase uses
/// 250-character file names).
const MAX_REQUEST: usize = 4096;

/// What the server needs to run.
pub struct Options {
    pub testcase: Testcase,
    pub listen: SocketAddr,
    pub www: PathBuf,
    pub certs: PathBuf,
    pub keylog: Option<PathBuf>,
    pub preferred_v4: Option<SocketAddrV4>,
    pub preferred_v6: Option<SocketAddrV6>,
}

/// Runs the server until the process is killed.
pub async fn run(opts: Options) -> Result<(), Error> {
    let crypto = tls::server_crypto(&opts.certs, opts.testcase, opts.keylog.as_deref())?;
    let mut config = quic::server_config(crypto, opts.testcase);
    if opts.testcase == Testcase::ConnectionMigration {
        if opts.preferred_v4.is_none() && opts.preferred_v6.is_none() {
            tracing::warn!("connectionmigration without --preferred-v4/--preferred-v6: no preferred address offered");
        }
        config.preferred_address_v4(opts.preferred_v4);
        config.preferred_address_v6(opts.preferred_v6);
    }
    let endpoint = quic::endpoint(quic::bind(opts.listen)?, Some(config))?;
    println!("interop: listening on {}", endpoint.local_addr()?);
    let www = Arc::new(opts.www);
    while let Some(incoming) = endpoint.accept().await {
        let remote = incoming.remote_address();
        if opts.testcase == Testcase::Retry && !incoming.remote_address_validated() {
            match incoming.retry() {
                Ok(()) => {
                    println!("interop: sent Retry to {remote}");
                    continue;
                }
                Err(e) => {
                    tracing::warn!("cannot send Retry to {remote}");
                    tokio::spawn(connection(e.into_incoming(), www.clone()));
                    continue;
                }
            }
        }
        tokio::spawn(connection(incoming, www.clone()));
    }
    Ok(())
}

/// Handshakes and serves one connection, logging how it ended.
async fn connection(incoming: quinn::Incoming, www: Arc<PathBuf>) {
    let remote = incoming.remote_address();
    let validated = incoming.remote_address_validated();
    let result = async {
        let mut connecting = incoming.accept()?;
        let alpn = connecting
            .handshake_data()
            .await?
            .downcast::<quinn::crypto::rustls::HandshakeData>()
            .ok()
            .and_then(|data| data.protocol)
            .unwrap_or_default();
        // Serve 0-RTT requests at once (the zerortt testcase expects them acted on).
        let conn = match connecting.into_0rtt() {
            Ok((conn, _)) => conn,
            Err(connecting) => connecting.await?,
        };
        println!(
            "interop: connection from {remote} alpn={} address_validated={validated}",
            String::from_utf8_lossy(&alpn)
        );
        if alpn == h3_tokio::ALPN {
            serve_h3(conn.clone(), &www).await?;
        } else {
            serve_hq(conn.clone(), &www).await;
        }
        Ok::<_, Error>(conn)
    }
    .await;
    match result {
        Ok(conn) => {
            let reason = conn.closed().await;
            let stats = conn.stats();
            println!(
                "interop: connection from {remote} closed ({reason}); now at {}, path_challenges_sent={}",
                conn.remote_address(),
                stats.frame_tx.path_challenge
            );
        }
        Err(e) => println!("interop: connection from {remote} failed: {e}"),
    }
}

/// hq-interop: every bidirectional stream carries `GET /path\r\n`, answered with the
/// file's bytes and FIN.
async fn serve_hq(conn: quinn::Connection, www: &Arc<PathBuf>) {
    while let Ok((send, recv)) = conn.accept_bi().await {
        let www = www.clone();
        tokio::spawn(async move {
            if let Err(e) = hq_stream(send, recv, &www).await {
                tracing::info!("hq request failed: {e}");
            }
        });
    }
}

async fn hq_stream(
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    www: &Path,
) -> Result<(), Error> {
    let request = recv.read_to_end(MAX_REQUEST).await?;
    let path = parse_hq_request(&request).ok_or("malformed hq-interop request")?;
    let Some(mut file) = open(www, path).await else {
        // HTTP/0.9 has no status codes: a reset stream is the "not found".
        send.reset(1u32.into())?;
        return Err(format!("{path}: not found").into());
    };
    let mut buf = BytesMut::with_capacity(64 * 1024);
    loop {
        buf.reserve(64 * 1024);
        if file.read_buf(&mut buf).await? == 0 {
            break;
        }
        send.write_chunk(buf.split().freeze()).await?;
    }
    // quinn keeps retransmitting a finished stream after its handle is dropped.
    send.finish()?;
    Ok(())
}

/// The path of `GET /path\r\n` (a bare `\n` and trailing whitespace are tolerated).
fn parse_hq_request(request: &[u8]) -> Option<&str> {
    let line = std::str::from_utf8(request).ok()?.trim_end();
    let path = line.strip_prefix("GET ")?.trim();
    (path.starts_with('/') && !path.contains(char::is_whitespace)).then_some(path)
}

async fn open(www: &Path, url_path: &str) -> Option<tokio::fs::File> {
    let path = paths::under(www, url_path)?;
    let file = tokio::fs::File::open(path).await.ok()?;
    file.metadata().await.ok()?.is_file().then_some(file)
}

/// HTTP/3: GET answers with the file (404 if there is none).
async fn serve_h3(conn: quinn::Connection, www: &Arc<PathBuf>) -> Result<(), Error> {
    let config = h3_tokio::Config {
        max_concurrent_streams: quic::SERVER_MAX_BIDI_STREAMS.into(),
        ..h3_tokio::Config::default()
    };
    let mut h3 = h3_tokio::server::Connection::new(conn, config).await?;
    while let Some((req, stream)) = h3.accept().await? {
        let www = www.clone();
        tokio::spawn(async move {
            if let Err(e) = h3_request(&www, req, stream).await {
                tracing::info!("h3 request failed: {e}");
            }
        });
    }
    Ok(())
}

async fn h3_request(www: &Path, req: Request<()>, mut stream: RequestStream) -> Result<(), Error> {
    let file = match *req.method() {
        http::Method::GET | http::Method::HEAD => open(www, req.uri().path()).await,
        _ => None,
    };
    let Some(mut file) = file else {
        stream.send_response(Response::builder().status(StatusCode::NOT_FOUND).body(())?)?;
        return Ok(stream.finish()?);
    };
    let len = file.metadata().await?.len();
    stream.send_response(Response::builder().header("content-length", len).body(())?)?;
    if req.method() == http::Method::GET {
        let mut buf = BytesMut::with_capacity(64 * 1024);
        loop {
            buf.reserve(64 * 1024);
            if file.read_buf(&mut buf).await? == 0 {
                break;
            }
            stream.send_data(buf.split().freeze()).await?;
        }
    }
    Ok(stream.finish()?)
}

#[cfg(test)]
mod tests {
    use super::parse_hq_request;

    #[test]
    fn hq_requests() {
        assert_eq!(parse_hq_request(b"GET /a.txt\r\n"), Some("/a.txt"));
        assert_eq!(parse_hq_request(b"GET /a.txt\n"), Some("/a.txt"));
        assert_eq!(parse_hq_request(b"GET /a.txt"), Some("/a.txt"));
        assert_eq!(parse_hq_request(b"POST /a.txt\r\n"), None);
        assert_eq!(parse_hq_request(b"GET a.txt\r\n"), None);
        assert_eq!(parse_hq_request(b"GET /a b\r\n"), None);
    }
}
