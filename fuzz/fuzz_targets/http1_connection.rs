//! A whole HTTP/1 connection (`edge::http1::serve`) with a hostile client over an
//! in-memory pipe: whatever bytes it sends (heads, bodies of any framing, pipelined
//! requests, `Expect`), with reads, pauses and a half-close between them as the input
//! chooses. Time is paused, so every timeout fires as soon as nothing else can run.
//! The connection must end by itself once the client is gone (every wait of the server
//! has a timeout), and never panic.
#![no_main]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use edge::body::Body;
use edge::limits::Limits;
use edge::session::{ClientInfo, Handler, Protocol, Session};
use http_body_util::BodyExt;
use libfuzzer_sys::fuzz_target;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Answers `/early...` without reading the body; anything else with the body it read,
/// or 500 if the body failed; `/wait...` only after a pause, so the connection is
/// watched for the client going away meanwhile (with pipelined bytes, a half-close).
struct Echo;

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

fuzz_target!(|data: &[u8]| {
    // [limits byte, records...]; a record is [op, n, ...]: op 0 writes the next n bytes,
    // 1 reads up to 16n bytes of answers, 2 pauses 10n ms, 3 shuts the client's
    // writing down.
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
        ..Limits::default()
    };
    // A small pipe fills with answers the client does not read: the send timeout path.
    let pipe = if pick & 8 != 0 { 64 } else { 1 << 16 };
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
            protocol: Protocol::Http1,
            tls: None,
        });
        let served = tokio::spawn(edge::http1::serve(server, info, limits, Arc::new(Echo)));
        let mut answers = vec![0u8; 16 * 255];
        while let [op, n, rest @ ..] = data {
            let n = usize::from(*n);
            data = rest;
            match op % 4 {
                0 => {
                    let (bytes, rest) = data.split_at(n.min(data.len()));
                    data = rest;
                    // A server that stopped reading has closed by its timeouts (or
                    // waits for the client to read: then the write times out here).
                    let write = client.write_all(bytes);
                    if !matches!(
                        tokio::time::timeout(Duration::from_secs(5), write).await,
                        Ok(Ok(()))
                    ) {
                        break;
                    }
                }
                1 => {
                    let read = client.read(&mut answers[..16 * n.max(1)]);
                    let _ = tokio::time::timeout(Duration::from_millis(50), read).await;
                }
                2 => tokio::time::sleep(Duration::from_millis(10 * n as u64)).await,
                _ => {
                    let _ = client.shutdown().await;
                }
            }
        }
        drop(client);
        let ended = tokio::time::timeout(Duration::from_secs(600), served).await;
        assert!(ended.expect("the connection outlived its client").is_ok());
    });
});
