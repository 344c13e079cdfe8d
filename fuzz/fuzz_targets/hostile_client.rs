//! What the whole-connection targets share: a hostile client that drives one of edge's
//! connection servers over an in-memory pipe as the fuzz input says, on a runtime whose
//! time is paused (every timeout fires as soon as nothing else can run), and a handler
//! that gives the client's bytes the request shapes worth reaching.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use edge::body::Body;
use edge::limits::Limits;
use edge::session::{ClientInfo, Handler, Protocol, Session};
use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

/// Answers `/early...` without reading the body; anything else with the body it read,
/// or 500 if the body failed; `/wait...` only after a pause, so the connection is
/// watched for the client going away meanwhile (a reset, a half-close).
pub struct Echo;

impl Handler for Echo {
    async fn handle(&self, session: Session) -> http::Response<Body> {
        let path = session.request.uri.path();
        if path.starts_with("/early") {
            return http::Response::new(edge::body::full("early"));
        }
        let wait = path.starts_with("/wait");
        match session.body.collect().await {
            Ok(body) => {
                if wait {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                http::Response::new(edge::body::full(body.to_bytes()))
            }
            Err(_) => {
                let mut response = http::Response::new(edge::body::empty());
                *response.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
                response
            }
        }
    }
}

/// How the client speaks besides raw bytes.
pub struct Dialect {
    pub protocol: Protocol,
    /// Written before the input's records (HTTP/2's connection preface).
    pub preface: &'static [u8],
    /// Whether record op 4, one HTTP/2 frame, is in the input's vocabulary.
    pub frames: bool,
}

/// Runs `serve` on the server end of a pipe with the client the input describes:
/// `[limits byte, records...]`. The limits byte picks the header size limit (bits 0-1),
/// keepalive requests (bit 2), a 64-byte pipe that fills with answers the client does
/// not read, for the send timeout (bit 3), and 2 concurrent streams (bit 4). A record
/// is `[op, n, ...]`: op 0 writes the next n bytes, 1 reads up to 16n bytes of answers,
/// 2 pauses 10n ms, 3 shuts the client's writing down, and with `frames` 4 writes a
/// frame `[type, flags, stream id]` with the next n bytes as payload. Once the records
/// are done the client goes away: the connection must then end by itself (every wait
/// of the server has a timeout), and never panic.
pub fn run<S, F>(data: &[u8], dialect: Dialect, serve: S)
where
    S: FnOnce(DuplexStream, Arc<ClientInfo>, Limits, Arc<Echo>) -> F,
    F: Future<Output = ()> + Send + 'static,
{
    let Some((&pick, mut data)) = data.split_first() else {
        return;
    };
    let limits = Limits {
        header_read_timeout: Duration::from_secs(1),
        idle_timeout: Duration::from_secs(2),
        body_timeout: Duration::from_millis(1500),
        send_timeout: Duration::from_millis(700),
        max_header_size: [256, 1024, 8192, 65536][usize::from(pick & 3)],
        max_requests: if pick & 4 != 0 { 2 } else { 1000 },
        max_concurrent_streams: if pick & 16 != 0 { 2 } else { 100 },
        ..Limits::default()
    };
    let pipe = if pick & 8 != 0 { 64 } else { 1 << 16 };
    let ops = if dialect.frames { 5 } else { 4 };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let (mut client, server) = tokio::io::duplex(pipe);
        let addr: SocketAddr = ([127, 0, 0, 1], 1).into();
        let info = Arc::new(ClientInfo {
            addr,
            local: addr,
            protocol: dialect.protocol,
            tls: None,
        });
        let served = tokio::spawn(serve(server, info, limits, Arc::new(Echo)));
        // A server that stopped reading has closed by its timeouts (or waits for the
        // client to read: then the write times out here).
        let written = |w: Result<std::io::Result<()>, _>| matches!(w, Ok(Ok(())));
        let mut answers = vec![0u8; 16 * 255];
        let mut gone = false;
        if !dialect.preface.is_empty() {
            let write = client.write_all(dialect.preface);
            gone = !written(tokio::time::timeout(Duration::from_secs(5), write).await);
        }
        while let (false, [op, n, rest @ ..]) = (gone, data) {
            let n = usize::from(*n);
            data = rest;
            match op % ops {
                0 => {
                    let (bytes, rest) = data.split_at(n.min(data.len()));
                    data = rest;
                    let write = client.write_all(bytes);
                    gone = !written(tokio::time::timeout(Duration::from_secs(5), write).await);
                }
                1 => {
                    let read = client.read(&mut answers[..16 * n.max(1)]);
                    let _ = tokio::time::timeout(Duration::from_millis(50), read).await;
                }
                2 => tokio::time::sleep(Duration::from_millis(10 * n as u64)).await,
                3 => {
                    let _ = client.shutdown().await;
                }
                _ => {
                    let [kind, flags, stream, rest @ ..] = data else {
                        break;
                    };
                    let (payload, rest) = rest.split_at(n.min(rest.len()));
                    let mut frame = vec![0, 0, payload.len() as u8, *kind, *flags];
                    frame.extend_from_slice(&u32::from(*stream).to_be_bytes());
                    frame.extend_from_slice(payload);
                    data = rest;
                    let write = client.write_all(&frame);
                    gone = !written(tokio::time::timeout(Duration::from_secs(5), write).await);
                }
            }
        }
        drop(client);
        let ended = tokio::time::timeout(Duration::from_secs(600), served).await;
        assert!(ended.expect("the connection outlived its client").is_ok());
    });
}
