//! edge's HTTP/1.1 client against a hostile upstream (`edge::upstream::client`): a
//! request goes out over loopback TCP to an origin that answers with the input's bytes
//! (interim responses, any framing, trailers, garbage, bytes past the response), in one
//! write or two, then closes or leaves the connection open; the response body is read
//! to its end. Every wait has a timeout, so the exchange must end, and a body that
//! comes back whole must be as long as its framing says.
#![no_main]

use std::net::SocketAddr;
use std::sync::LazyLock;
use std::time::Duration;

use edge::http1::response::Framing;
use edge::upstream::client::{self, BodyProgress};
use edge::upstream::{Connection, Timeouts};
use http::Method;
use http_body_util::BodyExt;
use libfuzzer_sys::fuzz_target;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Short enough that an origin that never finishes costs little of the fuzzer's time.
const TIMEOUTS: Timeouts = Timeouts {
    connect: Duration::from_secs(1),
    read: Duration::from_millis(20),
    send: Duration::from_millis(20),
    total: None,
};

static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
});

/// The requests the input picks from: method, encoded head, framing, body.
fn request(pick: u8) -> (Method, &'static [u8], Framing, &'static [u8]) {
    match pick % 4 {
        0 => (
            Method::GET,
            b"GET / HTTP/1.1\r\nHost: o\r\n\r\n",
            Framing::None,
            b"",
        ),
        1 => (
            Method::HEAD,
            b"HEAD / HTTP/1.1\r\nHost: o\r\n\r\n",
            Framing::None,
            b"",
        ),
        2 => (
            Method::POST,
            b"POST / HTTP/1.1\r\nHost: o\r\nContent-Length: 5\r\n\r\n",
            Framing::Length(5),
            b"hello",
        ),
        _ => (
            Method::PUT,
            b"PUT / HTTP/1.1\r\nHost: o\r\nTransfer-Encoding: chunked\r\n\r\n",
            Framing::Chunked,
            b"hello",
        ),
    }
}

fuzz_target!(|data: &[u8]| {
    // [request and origin byte, split, answer...]: bits 0-1 pick the request; bit 2
    // keeps the origin's end open after the answer (the read timeout ends the body);
    // bit 3 has the answer go out in two writes, split at `split`.
    let [pick, split, answer @ ..] = data else {
        return;
    };
    let (method, head, framing, body) = request(*pick);
    let (keep_open, two_writes) = (pick & 4 != 0, pick & 8 != 0);
    RUNTIME.block_on(async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let answer = answer.to_vec();
        let split = usize::from(*split).min(answer.len());
        let origin = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            // Some of the request first, as an origin would (the answer may still come
            // before all of it).
            let mut request = [0u8; 512];
            let _ = tokio::time::timeout(Duration::from_millis(5), socket.read(&mut request)).await;
            let (first, second) = answer.split_at(if two_writes { split } else { answer.len() });
            for piece in [first, second] {
                if socket.write_all(piece).await.is_err() {
                    return;
                }
                tokio::task::yield_now().await;
            }
            if keep_open {
                // Until the client is done with it.
                let _ =
                    tokio::time::timeout(Duration::from_secs(5), socket.read(&mut request)).await;
            }
        });
        let exchanged = tokio::time::timeout(Duration::from_secs(5), async {
            let mut conn = Connection::connect(addr, TIMEOUTS.connect).await.unwrap();
            let mut request_body = edge::body::full(body);
            let mut progress = BodyProgress::Untouched;
            let exchange = client::exchange(
                &mut conn,
                head,
                framing,
                &mut request_body,
                &TIMEOUTS,
                &method,
                &mut progress,
            );
            let Ok(answer) = exchange.await else {
                return;
            };
            let length = match answer.head.framing {
                Framing::Length(n) => Some(n),
                Framing::None => Some(0),
                _ => None,
            };
            let body = client::response_body(conn, addr, answer.head.framing, None, TIMEOUTS.read);
            if let (Ok(body), Some(n)) = (body.collect().await, length) {
                assert_eq!(body.to_bytes().len() as u64, n, "body against its framing");
            }
        });
        assert!(
            exchanged.await.is_ok(),
            "the exchange outlived its timeouts"
        );
        let _ = origin.await;
    });
});
