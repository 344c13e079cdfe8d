//! Hostile and broken peers: a raw quinn client writes exactly the bytes each case
//! needs. Each case gets the RFC 9114 / RFC 9204 answer, and afterwards the server still
//! serves a well-behaved connection from hyperium's h3 client.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use support::hyper_client::HyperClient;
use support::raw::{self, frame, grease, varint, DATA, HEADERS};
use support::{our_client::OurClient, our_server, tls};

const H3_STREAM_CREATION_ERROR: u64 = 0x103;
const H3_FRAME_UNEXPECTED: u64 = 0x105;
const H3_NO_ERROR: u64 = 0x100;
const H3_MESSAGE_ERROR: u64 = 0x10e;
const QPACK_DECOMPRESSION_FAILED: u64 = 0x200;

async fn raw_connection(addr: SocketAddr) -> (quinn::Endpoint, quinn::Connection) {
    let endpoint = tls::client_endpoint();
    let quic = tls::connect(&endpoint, addr).await;
    (endpoint, quic)
}

/// A second, well-behaved connection still gets served.
async fn still_serving(addr: SocketAddr) {
    let client = HyperClient::connect(addr).await.unwrap();
    let reply = client.get("/hello").await.unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body, b"hello world\n");
}

/// Writing `bytes` (64 MiB) behind `what` stalls: the server stopped reading and QUIC
/// flow control holds the peer, with the connection still open and others served.
async fn stalls(
    send: &mut quinn::SendStream,
    bytes: &[u8],
    what: &str,
    quic: &quinn::Connection,
    addr: SocketAddr,
) {
    let wrote = tokio::time::timeout(Duration::from_secs(3), send.write_all(bytes)).await;
    assert!(wrote.is_err(), "64 MiB behind {what} were all taken");
    assert!(quic.close_reason().is_none(), "{:?}", quic.close_reason());
    still_serving(addr).await;
}

/// Runs one connection-error case: `act` misbehaves, the server must close the
/// connection with `code`.
async fn connection_error_case(name: &str, code: u64, act: impl AsyncFnOnce(&quinn::Connection)) {
    let server = our_server::spawn(tls::server_endpoint(), h3_tokio::Config::default());
    let (_endpoint, quic) = raw_connection(server.addr()).await;
    let _control = raw::open_control(&quic).await;
    act(&quic).await;
    assert_eq!(raw::close_code(&quic).await, Some(code), "{name}");
    still_serving(server.addr()).await;
}

#[tokio::test]
async fn second_control_stream_is_a_stream_creation_error() {
    connection_error_case(
        "second control stream",
        H3_STREAM_CREATION_ERROR,
        async |quic| {
            let mut second = quic.open_uni().await.unwrap();
            second
                .write_all(&[varint(0x00), frame(raw::SETTINGS, &[])].concat())
                .await
                .unwrap();
            std::mem::forget(second); // keep it open: closing a critical stream is another error
        },
    )
    .await;
}

#[tokio::test]
async fn data_before_headers_is_frame_unexpected() {
    connection_error_case("DATA before HEADERS", H3_FRAME_UNEXPECTED, async |quic| {
        raw::request(quic, &frame(DATA, b"too early"), true).await;
    })
    .await;
}

#[tokio::test]
async fn malformed_qpack_is_a_decompression_failure() {
    connection_error_case(
        "malformed QPACK",
        QPACK_DECOMPRESSION_FAILED,
        async |quic| {
            // Indexed field line, static table index 143 (the table has 99 entries).
            raw::request(quic, &frame(HEADERS, &[0x00, 0x00, 0xff, 0x50]), true).await;
        },
    )
    .await;
}

#[tokio::test]
async fn unknown_frame_and_stream_types_are_ignored() {
    let server = our_server::spawn(tls::server_endpoint(), h3_tokio::Config::default());
    let (_endpoint, quic) = raw_connection(server.addr()).await;
    let mut control = raw::open_control(&quic).await;
    control
        .write_all(&frame(grease(3), b"ignore this frame"))
        .await
        .unwrap();
    let mut unknown = quic.open_uni().await.unwrap();
    unknown
        .write_all(&[varint(grease(5)), b"opaque bytes".to_vec()].concat())
        .await
        .unwrap();
    unknown.finish().unwrap();
    // A reserved frame on the request stream too, before HEADERS (RFC 9114, 9).
    let request = [frame(grease(7), b"x"), raw::get_headers("/hello")].concat();
    let (_send, mut recv) = raw::request(&quic, &request, true).await;
    let response = tokio::time::timeout(Duration::from_secs(5), raw::read_all(&mut recv))
        .await
        .unwrap()
        .unwrap();
    assert!(
        response.windows(12).any(|w| w == b"hello world\n"),
        "no body in {} response bytes",
        response.len()
    );
    assert!(
        quic.close_reason().is_none(),
        "connection closed: {:?}",
        quic.close_reason()
    );
}

#[tokio::test]
async fn a_request_that_never_finishes_is_answered_then_stopped() {
    let server = our_server::spawn(tls::server_endpoint(), h3_tokio::Config::default());
    let (_endpoint, quic) = raw_connection(server.addr()).await;
    let _control = raw::open_control(&quic).await;
    // Headers, then silence: no fin, no body.
    let (send, mut recv) = raw::request(&quic, &raw::get_headers("/hello"), false).await;
    let response = tokio::time::timeout(Duration::from_secs(5), raw::read_all(&mut recv))
        .await
        .unwrap()
        .unwrap();
    assert!(response.windows(12).any(|w| w == b"hello world\n"));
    // The server no longer wants the rest of the request: STOP_SENDING(H3_NO_ERROR).
    let stopped = tokio::time::timeout(Duration::from_secs(5), send.stopped())
        .await
        .unwrap();
    assert_eq!(stopped.unwrap().map(|c| c.into_inner()), Some(H3_NO_ERROR));
    still_serving(server.addr()).await;
}

/// The peer stops reading a response while it keeps uploading the request the response
/// echoes: the server's further writes to that stream must go nowhere, and the
/// connection keep serving. (Before, the write side's buffers were freed while nghttp3
/// still pointed into them, and the next write on the stream failed the connection.)
#[tokio::test]
async fn a_response_stopped_mid_echo_leaves_the_connection_serving() {
    let server = our_server::spawn(tls::server_endpoint(), h3_tokio::Config::default());
    let (_endpoint, quic) = raw_connection(server.addr()).await;
    let _control = raw::open_control(&quic).await;
    let (mut send, mut recv) = raw::request(&quic, &raw::post_headers("/echo"), false).await;
    let chunk = frame(DATA, &vec![7u8; 16 * 1024]);
    send.write_all(&chunk).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let read = tokio::time::timeout(Duration::from_secs(5), recv.read(&mut buf)).await;
    assert!(
        matches!(read, Ok(Ok(Some(n))) if n > 0),
        "echo began: {read:?}"
    );
    recv.stop(0x10c_u32.into()).unwrap();
    let until = tokio::time::Instant::now() + Duration::from_secs(1);
    while tokio::time::Instant::now() < until {
        match tokio::time::timeout(Duration::from_millis(200), send.write_all(&chunk)).await {
            Ok(Ok(())) => tokio::time::sleep(Duration::from_millis(5)).await,
            _ => break, // stopped or flow-controlled: either way the server is done with it
        }
    }
    let (_get, mut response) = raw::request(&quic, &raw::get_headers("/hello"), true).await;
    let response = tokio::time::timeout(Duration::from_secs(5), raw::read_all(&mut response))
        .await
        .unwrap();
    assert!(
        quic.close_reason().is_none(),
        "connection closed: {:?}",
        quic.close_reason()
    );
    let response = response.unwrap();
    assert!(response.windows(12).any(|w| w == b"hello world\n"));
}

/// A head that waits for QPACK dynamic table inserts that never come, followed by a
/// large body: nghttp3 would keep all of it, so the server stops reading the stream
/// and QUIC flow control stops the peer.
#[tokio::test]
async fn a_blocked_head_cannot_buffer_without_bound() {
    let server = our_server::spawn(tls::server_endpoint(), h3_tokio::Config::default());
    let (_endpoint, quic) = raw_connection(server.addr()).await;
    let _control = raw::open_control(&quic).await;
    // Required Insert Count 1 (encoded 2), Base 0, one field from the dynamic table.
    let blocked = frame(HEADERS, &[0x02, 0x00, 0x80]);
    let (mut send, _recv) = raw::request(&quic, &blocked, false).await;
    let body = frame(DATA, &vec![0u8; 64 << 20]);
    stalls(&mut send, &body, "a blocked head", &quic, server.addr()).await;
}

/// The same for trailers: a request whose body is being read, then a trailer section
/// that needs a dynamic table entry never inserted, then frames nghttp3 keeps behind
/// it. Reading stops as for a blocked head (it went on without bound before).
#[tokio::test]
async fn blocked_trailers_cannot_buffer_without_bound() {
    let server = our_server::spawn(tls::server_endpoint(), h3_tokio::Config::default());
    let (_endpoint, quic) = raw_connection(server.addr()).await;
    let _control = raw::open_control(&quic).await;
    let (mut send, _recv) = raw::request(&quic, &raw::post_headers("/sha256"), false).await;
    send.write_all(&frame(DATA, b"body")).await.unwrap();
    send.write_all(&frame(HEADERS, &[0x02, 0x00, 0x80]))
        .await
        .unwrap();
    let kept = frame(grease(1), &vec![0u8; 64 << 20]);
    stalls(&mut send, &kept, "blocked trailers", &quic, server.addr()).await;
}

/// The same shape from an honest peer whose encoder stream comes late: once the insert
/// arrives, the stream is read on to its end (1 MiB, past where reading stopped).
#[tokio::test]
async fn a_blocked_head_is_read_on_once_unblocked() {
    let server = our_server::spawn(tls::server_endpoint(), h3_tokio::Config::default());
    let (_endpoint, quic) = raw_connection(server.addr()).await;
    let _control = raw::open_control(&quic).await;
    // POST https://localhost, and :path from dynamic table entry 0, not yet inserted.
    let mut block = vec![0x02, 0x00, 0xc0 | 20, 0xc0 | 23, 0x50, 9];
    block.extend(b"localhost");
    block.push(0x80);
    let (mut send, mut recv) = raw::request(&quic, &frame(HEADERS, &block), false).await;
    let body = vec![5u8; 1 << 20];
    let upload = tokio::spawn(async move {
        for piece in body.chunks(16 * 1024) {
            send.write_all(&frame(DATA, piece)).await.unwrap();
        }
        send.finish().unwrap();
        send
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The encoder stream: capacity 100, then insert `:path: /sha256` (static name 1).
    let mut encoder = quic.open_uni().await.unwrap();
    let mut insert = vec![0x02, 0x3f, 100 - 31, 0xc0 | 1, 7];
    insert.extend(b"/sha256");
    encoder.write_all(&insert).await.unwrap();
    let response = tokio::time::timeout(Duration::from_secs(10), raw::read_all(&mut recv))
        .await
        .expect("the response came")
        .unwrap();
    let _send = upload.await.unwrap();
    let digest = support::app::sha256_hex(&vec![5u8; 1 << 20]);
    assert!(
        response.windows(64).any(|w| w == digest.as_bytes()),
        "the whole body was read: {:?}",
        String::from_utf8_lossy(&response)
    );
}

/// A body of 1-byte DATA frames that the application does not read: each frame's
/// queue entry counts against the receive buffer along with its byte, so the server
/// stops reading after a few thousand frames (12 KB) instead of 256 Ki of them
/// (768 KB, each queued as a slice pinning its datagram).
#[tokio::test]
async fn tiny_data_frames_cannot_buffer_more_than_their_bytes_say() {
    let mut config = tls::quinn_server_config();
    let mut transport = quinn::TransportConfig::default();
    transport.stream_receive_window(quinn::VarInt::from_u32(64 * 1024));
    config.transport_config(std::sync::Arc::new(transport));
    let endpoint = quinn::Endpoint::server(config, ([127, 0, 0, 1], 0).into()).unwrap();
    let server = our_server::spawn(endpoint, h3_tokio::Config::default());
    let (_endpoint, quic) = raw_connection(server.addr()).await;
    let _control = raw::open_control(&quic).await;
    let head = raw::post_headers("/hold");
    let (mut send, _recv) = raw::request(&quic, &head, false).await;
    let batch: Vec<u8> = (0..1024).flat_map(|_| frame(DATA, b"x")).collect();
    let mut taken = 0;
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        loop {
            send.write_all(&batch).await.unwrap();
            taken += batch.len();
        }
    })
    .await;
    eprintln!("{taken} bytes of 1-byte DATA frames taken");
    assert!(
        (64 * 1024..256 * 1024).contains(&taken),
        "{taken} bytes of 1-byte DATA frames taken"
    );
    assert!(quic.close_reason().is_none(), "{:?}", quic.close_reason());
    still_serving(server.addr()).await;
}

/// A PRIORITY_UPDATE for a request stream not yet opened (RFC 9218 7.1) before the
/// first request: the request is served, the connection stays up.
#[tokio::test]
async fn a_priority_update_before_any_request_is_accepted() {
    const PRIORITY_UPDATE_REQUEST: u64 = 0xF0700;
    let server = our_server::spawn(tls::server_endpoint(), h3_tokio::Config::default());
    let (_endpoint, quic) = raw_connection(server.addr()).await;
    let mut control = raw::open_control(&quic).await;
    let update = [varint(0), b"u=1".to_vec()].concat();
    control
        .write_all(&frame(PRIORITY_UPDATE_REQUEST, &update))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (_send, mut recv) = raw::request(&quic, &raw::get_headers("/hello"), true).await;
    let response = tokio::time::timeout(Duration::from_secs(5), raw::read_all(&mut recv))
        .await
        .unwrap();
    assert!(quic.close_reason().is_none(), "{:?}", quic.close_reason());
    assert!(response.unwrap().windows(12).any(|w| w == b"hello world\n"));
}

/// Request streams the peer resets before their heads are complete are freed: the
/// peer gets its stream credit back, far beyond the 100 streams quinn allows at once.
#[tokio::test]
async fn streams_reset_before_their_head_are_freed() {
    let server = our_server::spawn(tls::server_endpoint(), h3_tokio::Config::default());
    let (_endpoint, quic) = raw_connection(server.addr()).await;
    let _control = raw::open_control(&quic).await;
    let partial = &raw::get_headers("/hello")[..3];
    // Kept: a receive half dropped would send STOP_SENDING, which frees the stream too.
    let mut kept = Vec::new();
    for i in 0..300 {
        let (mut send, recv) = tokio::time::timeout(Duration::from_secs(5), quic.open_bi())
            .await
            .unwrap_or_else(|_| panic!("no stream credit for stream {i}"))
            .unwrap();
        send.write_all(partial).await.unwrap();
        send.reset(0x10c_u32.into()).unwrap();
        kept.push(recv);
    }
    let (_send, mut recv) = raw::request(&quic, &raw::get_headers("/hello"), true).await;
    let response = tokio::time::timeout(Duration::from_secs(5), raw::read_all(&mut recv))
        .await
        .unwrap();
    assert!(response.unwrap().windows(12).any(|w| w == b"hello world\n"));
}

/// Settings nghttp3 cannot send (above QUIC's 2^62 - 1) are an error from
/// `Connection::new`, not an assertion that aborts the process.
#[tokio::test]
async fn settings_out_of_range_are_an_error() {
    let endpoint = tls::server_endpoint();
    let addr = endpoint.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let quic = endpoint.accept().await.unwrap().await.unwrap();
        let config = h3_tokio::Config {
            max_field_section_size: u64::MAX,
            ..h3_tokio::Config::default()
        };
        h3_tokio::server::Connection::new(quic, config).await.err()
    });
    let (_endpoint, _quic) = raw_connection(addr).await;
    let error = server.await.unwrap();
    assert!(error.is_some(), "a connection with an unsendable setting");
}

#[tokio::test]
async fn oversized_header_section_gets_431() {
    let server = our_server::spawn(tls::server_endpoint(), h3_tokio::Config::default());
    // h3-tokio's client does not enforce the peer's SETTINGS_MAX_FIELD_SECTION_SIZE on
    // send, so it can play the offender here.
    let client = OurClient::connect(server.addr()).await.unwrap();
    // Three 30 KiB fields: 90 KiB against the 64 KiB default. (A single value over 64
    // KiB is refused by nghttp3's QPACK decoder itself, as a connection error.)
    let big = "x".repeat(30 * 1024);
    let req = http::Request::get(format!("https://localhost:{}/hello", server.addr().port()))
        .header("x-big-1", &big)
        .header("x-big-2", &big)
        .header("x-big-3", &big)
        .body(())
        .unwrap();
    let mut stream = client.sender().send_request(req).await.unwrap();
    stream.finish().unwrap();
    let resp = stream.recv_response().await.unwrap();
    assert_eq!(resp.status(), 431);
    // The same connection goes on.
    assert_eq!(client.get("/hello").await.unwrap().status, 200);
    still_serving(server.addr()).await;
}

/// A request refused for its oversized head, whose trailers are oversized too, gets
/// one answer: the 431, not a second HEADERS frame after it (which a client reads as
/// trailers carrying `:status`, a malformed message). Head and trailers come in one
/// write, so the server reads both before it answers.
#[tokio::test]
async fn oversized_head_and_trailers_get_one_answer() {
    let config = h3_tokio::Config {
        max_field_section_size: 1024,
        ..h3_tokio::Config::default()
    };
    let server = our_server::spawn(tls::server_endpoint(), config);
    let (_endpoint, quic) = raw_connection(server.addr()).await;
    let _control = raw::open_control(&quic).await;
    let filler = raw::filler_fields(3, 600);
    let head = raw::post_headers_with("/sha256", &filler);
    let sent = [head, raw::trailers(&filler)].concat();
    let (_send, mut recv) = raw::request(&quic, &sent, true).await;
    let response = tokio::time::timeout(Duration::from_secs(5), raw::read_all(&mut recv))
        .await
        .unwrap()
        .unwrap();
    let headers = raw::frame_types(&response)
        .into_iter()
        .filter(|&t| t == HEADERS)
        .count();
    assert_eq!(headers, 1, "{:?}", String::from_utf8_lossy(&response));
    assert!(quic.close_reason().is_none(), "{:?}", quic.close_reason());
    still_serving(server.addr()).await;
}

/// A server that opens a bidirectional stream commits a connection error (RFC 9114
/// 6.1): the client closes with H3_STREAM_CREATION_ERROR instead of letting quinn
/// buffer what comes on a stream nothing reads.
#[tokio::test]
async fn a_client_refuses_streams_the_server_opens() {
    let endpoint = tls::server_endpoint();
    let addr = endpoint.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let quic = endpoint.accept().await.unwrap().await.unwrap();
        let _control = raw::open_control(&quic).await;
        let (mut send, _recv) = quic.open_bi().await.unwrap();
        let _ = send.write_all(&vec![0u8; 1 << 20]).await;
        let closed = tokio::time::timeout(Duration::from_secs(5), quic.closed()).await;
        (closed, endpoint)
    });
    let client_endpoint = tls::client_endpoint();
    let quic = tls::connect(&client_endpoint, addr).await;
    let _send = h3_tokio::client::new(quic, h3_tokio::Config::default()).await;
    let (closed, _endpoint) = server.await.unwrap();
    match closed.expect("the client closed the connection") {
        quinn::ConnectionError::ApplicationClosed(close) => {
            assert_eq!(close.error_code.into_inner(), H3_STREAM_CREATION_ERROR)
        }
        other => panic!("{other:?}"),
    }
}

/// A request whose stream opens after the server's GOAWAY arrived (it waited for
/// stream credit) fails with `GoingAway`; the client does not close the connection
/// with a protocol error (RFC 9114 5.2). The server grants no stream at first, sends
/// GOAWAY, then grants one.
#[tokio::test]
async fn a_request_opened_after_goaway_fails_alone() {
    const GOAWAY: u64 = 0x07;
    let mut config = tls::quinn_server_config();
    let mut transport = quinn::TransportConfig::default();
    transport.max_concurrent_bidi_streams(0u32.into());
    config.transport_config(std::sync::Arc::new(transport));
    let endpoint = quinn::Endpoint::server(config, ([127, 0, 0, 1], 0).into()).unwrap();
    let addr = endpoint.local_addr().unwrap();
    let (goaway_sent, goaway_seen) = tokio::sync::oneshot::channel();
    let server = tokio::spawn(async move {
        let quic = endpoint.accept().await.unwrap().await.unwrap();
        let mut control = raw::open_control(&quic).await;
        goaway_seen.await.unwrap();
        control.write_all(&frame(GOAWAY, &varint(0))).await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        quic.set_max_concurrent_bi_streams(1u32.into());
        let closed = tokio::time::timeout(Duration::from_secs(2), quic.closed()).await;
        (closed, endpoint)
    });
    let client_endpoint = tls::client_endpoint();
    let quic = tls::connect(&client_endpoint, addr).await;
    let send = h3_tokio::client::new(quic.clone(), h3_tokio::Config::default())
        .await
        .unwrap();
    let request = http::Request::get(format!("https://localhost:{}/", addr.port()))
        .body(())
        .unwrap();
    let sending = tokio::spawn(async move {
        let mut stream = send.send_request(request).await?;
        stream.finish()?;
        stream.recv_response().await.map(|_| send)
    });
    // The request now waits for stream credit; the GOAWAY comes first.
    tokio::time::sleep(Duration::from_millis(100)).await;
    goaway_sent.send(()).unwrap();
    let result = tokio::time::timeout(Duration::from_secs(5), sending).await;
    let result = result.expect("the request ended").unwrap();
    assert!(
        matches!(result, Err(h3_tokio::Error::GoingAway)),
        "{:?}",
        result.err()
    );
    let (closed, _endpoint) = server.await.unwrap();
    if let Ok(quinn::ConnectionError::ApplicationClosed(close)) = closed {
        assert_eq!(close.error_code.into_inner(), H3_NO_ERROR, "{close:?}");
    }
}

/// A unidirectional stream reset or ended before its type is whole is ignored (RFC
/// 9114 6.2); nghttp3 would take it for a control stream and fail the connection with
/// H3_CLOSED_CRITICAL_STREAM (reset) or H3_GENERAL_PROTOCOL_ERROR (end).
#[tokio::test]
async fn a_stream_ended_before_its_type_is_ignored() {
    let server = our_server::spawn(tls::server_endpoint(), h3_tokio::Config::default());
    let (_endpoint, quic) = raw_connection(server.addr()).await;
    let _control = raw::open_control(&quic).await;
    for reset in [true, false] {
        let mut uni = quic.open_uni().await.unwrap();
        // The first byte of a two-byte varint.
        uni.write_all(&[0x40]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        if reset {
            uni.reset(0u32.into()).unwrap();
        } else {
            uni.finish().unwrap();
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(quic.close_reason().is_none(), "{:?}", quic.close_reason());
    let (_send, mut recv) = raw::request(&quic, &raw::get_headers("/hello"), true).await;
    let response = tokio::time::timeout(Duration::from_secs(5), raw::read_all(&mut recv))
        .await
        .unwrap()
        .unwrap();
    assert!(response.windows(12).any(|w| w == b"hello world\n"));
}

/// A reserved frame far larger than the field section limit on a request stream (RFC
/// 9114 7.2.8: ignored whatever its length), then the body: nghttp3 skips it without a
/// callback, and reading must go on through it to the body and the end.
#[tokio::test]
async fn a_huge_unknown_frame_on_a_request_is_skipped() {
    let server = our_server::spawn(tls::server_endpoint(), h3_tokio::Config::default());
    let (_endpoint, quic) = raw_connection(server.addr()).await;
    let _control = raw::open_control(&quic).await;
    let request = [
        raw::post_headers("/sha256"),
        frame(grease(2), &vec![0u8; 200 * 1024]),
        frame(DATA, b"body"),
    ]
    .concat();
    let (_send, mut recv) = raw::request(&quic, &request, true).await;
    let response = tokio::time::timeout(Duration::from_secs(5), raw::read_all(&mut recv))
        .await
        .expect("the response came")
        .unwrap();
    let digest = support::app::sha256_hex(b"body");
    assert!(
        response.windows(64).any(|w| w == digest.as_bytes()),
        "the body was read: {:?}",
        String::from_utf8_lossy(&response)
    );
}

/// The same in a response, from a raw server to our client: the body after the
/// reserved frame arrives.
#[tokio::test]
async fn a_huge_unknown_frame_in_a_response_is_skipped() {
    let endpoint = tls::server_endpoint();
    let addr = endpoint.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let quic = endpoint.accept().await.unwrap().await.unwrap();
        let _control = raw::open_control(&quic).await;
        let (mut send, mut recv) = quic.accept_bi().await.unwrap();
        raw::read_all(&mut recv).await.unwrap();
        // :status 200 is QPACK static table entry 25.
        let response = [
            frame(HEADERS, &[0x00, 0x00, 0xc0 | 25]),
            frame(grease(4), &vec![0u8; 200 * 1024]),
            frame(DATA, b"body"),
        ]
        .concat();
        send.write_all(&response).await.unwrap();
        send.finish().unwrap();
        let _ = tokio::time::timeout(Duration::from_secs(10), quic.closed()).await;
        endpoint
    });
    let client_endpoint = tls::client_endpoint();
    let quic = tls::connect(&client_endpoint, addr).await;
    let send = h3_tokio::client::new(quic, h3_tokio::Config::default())
        .await
        .unwrap();
    let request = http::Request::get(format!("https://localhost:{}/", addr.port()))
        .body(())
        .unwrap();
    let exchange = async {
        let mut stream = send.send_request(request).await?;
        stream.finish()?;
        let response = stream.recv_response().await?;
        let mut body = Vec::new();
        while let Some(chunk) = stream.recv_data().await? {
            body.extend_from_slice(&chunk);
        }
        Ok::<_, h3_tokio::Error>((response.status(), body))
    };
    let (status, body) = tokio::time::timeout(Duration::from_secs(5), exchange)
        .await
        .expect("the response came")
        .unwrap();
    assert_eq!(status, 200);
    assert_eq!(body, b"body");
    send.close();
    let _endpoint = server.await.unwrap();
}

/// A request nghttp3 lets through but the server cannot make a request of (an
/// :authority with an unclosed bracket) is malformed (RFC 9114 4.1.2): a 400, and
/// STOP_SENDING with H3_MESSAGE_ERROR, not the H3_NO_ERROR of a request merely not
/// read to its end.
#[tokio::test]
async fn a_malformed_request_is_stopped_with_message_error() {
    let server = our_server::spawn(tls::server_endpoint(), h3_tokio::Config::default());
    let (_endpoint, quic) = raw_connection(server.addr()).await;
    let _control = raw::open_control(&quic).await;
    // GET, https, :authority "[::1" (static name 0, literal value), :path "/".
    let mut block = vec![0x00, 0x00, 0xc0 | 17, 0xc0 | 23, 0x50, 4];
    block.extend(b"[::1");
    block.push(0xc0 | 1);
    let (send, mut recv) = raw::request(&quic, &frame(HEADERS, &block), false).await;
    let response = tokio::time::timeout(Duration::from_secs(5), raw::read_all(&mut recv))
        .await
        .unwrap()
        .unwrap();
    // :status 400 is QPACK static table entry 67 (6-bit index 63 + 4).
    assert_eq!(
        &response[..],
        &frame(HEADERS, &[0x00, 0x00, 0xff, 0x04])[..]
    );
    let stopped = tokio::time::timeout(Duration::from_secs(5), send.stopped())
        .await
        .unwrap();
    assert_eq!(
        stopped.unwrap().map(|c| c.into_inner()),
        Some(H3_MESSAGE_ERROR)
    );
    assert!(quic.close_reason().is_none(), "{:?}", quic.close_reason());
}
