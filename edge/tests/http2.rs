//! Hostile HTTP/2 clients against edge's HTTP/2 edge: floods of stream resets (the 2023
//! "rapid reset" shape), SETTINGS and PING frames, written as raw frames. Each flood must
//! be bounded (the connection is closed with ENHANCE_YOUR_CALM, or the server's work
//! stays proportional to what it answers), and curl, a client we did not write, is
//! served normally on a new connection afterwards.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use edge::body::{self, Body};
use edge::limits::Limits;
use edge::session::{ClientInfo, Handler, Protocol, Session};

/// Answers after a short pause, like a handler doing real work; counts how many
/// requests it started and finished.
#[derive(Default)]
struct Slow {
    started: AtomicUsize,
    finished: AtomicUsize,
}

impl Handler for Slow {
    async fn handle(&self, _session: Session) -> http::Response<Body> {
        self.started.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(500)).await;
        self.finished.fetch_add(1, Ordering::Relaxed);
        http::Response::new(body::full("ok\n"))
    }
}

/// Reads the whole request body: 200 with its length, or 400 if it failed.
struct Collect;

impl Handler for Collect {
    async fn handle(&self, session: Session) -> http::Response<Body> {
        use http_body_util::BodyExt;
        match session.body.collect().await {
            Ok(body) => http::Response::new(body::full(body.to_bytes().len().to_string())),
            Err(_) => body::status_response(http::StatusCode::BAD_REQUEST),
        }
    }
}

/// A plain-text (h2c prior knowledge) HTTP/2 server on a background runtime.
fn start(handler: Arc<Slow>) -> SocketAddr {
    start_with(handler, Limits::default())
}

fn start_with<H: Handler>(handler: Arc<H>, limits: Limits) -> SocketAddr {
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = std_listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            std_listener.set_nonblocking(true).unwrap();
            let listener = tokio::net::TcpListener::from_std(std_listener).unwrap();
            loop {
                let (stream, peer) = listener.accept().await.unwrap();
                let client = Arc::new(ClientInfo {
                    addr: peer,
                    local: addr,
                    protocol: Protocol::Http2,
                    tls: None,
                });
                tokio::spawn(edge::http2::serve(
                    stream,
                    client,
                    limits.clone(),
                    handler.clone(),
                ));
            }
        });
    });
    addr
}

fn frame(ty: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = len.to_be_bytes()[1..].to_vec();
    f.extend([ty, flags]);
    f.extend(stream.to_be_bytes());
    f.extend(payload);
    f
}

const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const END_STREAM_HEADERS: u8 = END_STREAM | END_HEADERS;
const NO_ERROR: u32 = 0x0;
const CANCEL: u32 = 0x8;
const ENHANCE_YOUR_CALM: u32 = 0xb;

/// `GET http://localhost/` in HPACK: static-table indexes and one literal.
fn get_block() -> Vec<u8> {
    let mut b = vec![0x82, 0x86, 0x84, 0x01, 9];
    b.extend(b"localhost");
    b
}

/// `POST http://localhost/` in HPACK.
fn post_block() -> Vec<u8> {
    let mut b = get_block();
    b[0] = 0x83;
    b
}

fn connect(addr: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").unwrap();
    s.write_all(&frame(SETTINGS, 0, 0, &[])).unwrap();
    s
}

/// Reads frames until the server closes; returns the GOAWAY error code if one came.
fn read_until_close(s: &mut TcpStream) -> Option<u32> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 64 * 1024];
    loop {
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => break,
            Err(e) => panic!("reading from the server: {e}"),
        }
    }
    let mut goaway = None;
    let mut at = 0;
    while at + 9 <= buf.len() {
        let len = u32::from_be_bytes([0, buf[at], buf[at + 1], buf[at + 2]]) as usize;
        if buf[at + 3] == GOAWAY && at + 9 + len <= buf.len() {
            let p = &buf[at + 9..at + 9 + len];
            goaway = Some(u32::from_be_bytes([p[4], p[5], p[6], p[7]]));
        }
        at += 9 + len;
    }
    goaway
}

/// Reads frames until the HEADERS frame of `stream`; returns its field block.
fn response_block(s: &mut TcpStream, stream: u32) -> Vec<u8> {
    wait_for_frame(s, HEADERS, stream)
}

/// Reads frames until one of type `ty` on `stream`; returns its payload.
fn wait_for_frame(s: &mut TcpStream, ty: u8, stream: u32) -> Vec<u8> {
    frames_until(s, ty, stream).pop().unwrap().2
}

/// Reads frames until one of type `ty` on `stream`; returns all of them (type, stream,
/// payload), that one last.
fn frames_until(s: &mut TcpStream, ty: u8, stream: u32) -> Vec<(u8, u32, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let mut frames = Vec::new();
    loop {
        let mut at = 0;
        while at + 9 <= buf.len() {
            let len = u32::from_be_bytes([0, buf[at], buf[at + 1], buf[at + 2]]) as usize;
            let id = u32::from_be_bytes([buf[at + 5], buf[at + 6], buf[at + 7], buf[at + 8]]);
            if at + 9 + len > buf.len() {
                break;
            }
            frames.push((buf[at + 3], id, buf[at + 9..at + 9 + len].to_vec()));
            if buf[at + 3] == ty && id == stream {
                return frames;
            }
            at += 9 + len;
        }
        buf.drain(..at);
        let n = s.read(&mut chunk).expect("reading from the server");
        assert!(n > 0, "closed before frame type {ty} on stream {stream}");
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// A request without `:authority` names its host in Host; one whose Host is no valid
/// authority is answered 400 (as nginx does) and never reaches the handler, rather
/// than being handled with a URI that lost its path.
#[test]
fn a_request_without_a_valid_host_is_refused() {
    let handler = Arc::new(Slow::default());
    let addr = start(handler.clone());
    let mut s = connect(addr);
    // GET, http, literal :path "/admin", then a literal "host" with `host`.
    let block = |host: &[u8]| {
        let mut b = vec![0x82, 0x86, 0x04, 6];
        b.extend(b"/admin");
        b.extend([0x00, 4]);
        b.extend(b"host");
        b.push(host.len() as u8);
        b.extend(host);
        b
    };
    const STATUS_400: u8 = 0x80 | 12;
    const STATUS_200: u8 = 0x80 | 8;
    s.write_all(&frame(HEADERS, END_STREAM_HEADERS, 1, &block(b"a b")))
        .unwrap();
    assert_eq!(response_block(&mut s, 1)[0], STATUS_400);
    assert_eq!(handler.started.load(Ordering::Relaxed), 0);
    s.write_all(&frame(HEADERS, END_STREAM_HEADERS, 3, &block(b"localhost")))
        .unwrap();
    assert_eq!(response_block(&mut s, 3)[0], STATUS_200);
    assert_eq!(handler.started.load(Ordering::Relaxed), 1);
}

/// A stream the client stalls cannot hold its connection: a request body that stops
/// coming fails after client_body_timeout (400 from this handler), and a connection
/// whose client gives no window for its responses has the stream reset after
/// send_timeout, then is closed once idle. Each timeout has its own value: the stalls
/// are answered well before the idle timeout (4 s) could.
#[test]
fn stalled_streams_do_not_hold_the_connection() {
    let limits = Limits {
        idle_timeout: Duration::from_secs(4),
        body_timeout: Duration::from_millis(300),
        send_timeout: Duration::from_millis(400),
        header_read_timeout: Duration::from_millis(500),
        ..Limits::default()
    };
    let addr = start_with(Arc::new(Collect), limits);

    // POST /, no END_STREAM, then nothing.
    let mut s = connect(addr);
    let post = post_block();
    let started = std::time::Instant::now();
    s.write_all(&frame(HEADERS, 0x4, 1, &post)).unwrap();
    assert_eq!(response_block(&mut s, 1)[0], 0x80 | 12, "400");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(3),
        "stalled body: answered after {took:?}, client_body_timeout is 300 ms"
    );
    read_until_close(&mut s);

    // A window of 0 for every stream, a GET, and never a WINDOW_UPDATE.
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").unwrap();
    s.write_all(&frame(SETTINGS, 0, 0, &[0, 4, 0, 0, 0, 0]))
        .unwrap();
    let started = std::time::Instant::now();
    s.write_all(&frame(HEADERS, END_STREAM_HEADERS, 1, &get_block()))
        .unwrap();
    // The whole body is one piece, the last: it too waits for window under
    // send_timeout, rather than sitting in h2's queue until keepalive_timeout.
    let reset = wait_for_frame(&mut s, RST_STREAM, 1);
    assert_eq!(reset, CANCEL.to_be_bytes());
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(3),
        "unread response: reset after {took:?}, send_timeout is 400 ms"
    );
    read_until_close(&mut s);
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(10),
        "unread response: closed after {took:?}"
    );
}

/// curl, on a fresh connection, still gets its answer.
fn assert_curl_served(addr: SocketAddr) {
    let out = Command::new("curl")
        .args(["-sS", "--http2-prior-knowledge", "--max-time", "10"])
        .arg(format!("http://{addr}/"))
        .output()
        .expect("curl");
    assert!(
        out.status.success(),
        "curl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, b"ok\n");
}

/// Opens `batch` streams, lets the server start them, then resets them all, again and
/// again; returns the streams sent before the server closed and its GOAWAY code.
fn reset_flood(addr: SocketAddr, batch: u32, pause: Duration) -> (u32, Option<u32>) {
    let mut s = connect(addr);
    let block = get_block();
    let mut sent = 0;
    'flood: for round in 0..10_000 / batch {
        let ids: Vec<u32> = (0..batch).map(|i| 1 + 2 * (round * batch + i)).collect();
        let mut frames = Vec::new();
        for &id in &ids {
            frames.extend(frame(HEADERS, END_STREAM_HEADERS, id, &block));
        }
        if s.write_all(&frames).is_err() {
            break;
        }
        std::thread::sleep(pause);
        let resets: Vec<u8> = ids
            .iter()
            .flat_map(|&id| frame(RST_STREAM, 0, id, &CANCEL.to_be_bytes()))
            .collect();
        if s.write_all(&resets).is_err() {
            break 'flood; // the server closed the connection
        }
        sent += batch;
    }
    (sent, read_until_close(&mut s))
}

/// Streams reset right after their HEADERS: closed by h2's pending-accept bound when
/// the resets arrive before edge accepts the streams, else by edge's own (h2 hands edge
/// reset streams too). How many the client wrote before it noticed says nothing: a
/// loaded server reads the flood from the socket buffers long after it was written; the
/// handlers started are the work it did.
#[test]
fn rapid_reset_before_accept_is_closed() {
    let handler = Arc::new(Slow::default());
    let addr = start(handler.clone());
    let (sent, code) = reset_flood(addr, 1, Duration::ZERO);
    let started = handler.started.load(Ordering::Relaxed);
    eprintln!(
        "reset before accept: {sent} streams sent before the close, {started} handlers started"
    );
    assert_eq!(
        code,
        Some(ENHANCE_YOUR_CALM),
        "GOAWAY code after {sent} streams"
    );
    assert!(started <= 300, "{started} handlers started");
    assert_curl_served(addr);
}

/// Streams reset after their handlers started: edge's own bound. Every reset stream
/// stops its handler, and the connection is closed after about the cancel budget (100,
/// `limits::cancels_most`).
#[test]
fn rapid_reset_after_accept_is_closed() {
    let handler = Arc::new(Slow::default());
    let addr = start(handler.clone());
    let (sent, code) = reset_flood(addr, 50, Duration::from_millis(30));
    std::thread::sleep(Duration::from_millis(100));
    let started = handler.started.load(Ordering::Relaxed);
    let finished = handler.finished.load(Ordering::Relaxed);
    eprintln!(
        "reset after accept: {sent} streams sent, {started} handlers started, {finished} finished"
    );
    assert_eq!(
        code,
        Some(ENHANCE_YOUR_CALM),
        "GOAWAY code after {sent} streams"
    );
    assert!(started > 0 && started <= 300, "{started} handlers started");
    assert_eq!(finished, 0, "reset streams must stop their handlers");
    assert_curl_served(addr);
}

/// SETTINGS and PING each need an answer; h2 keeps one pending at a time and stops
/// reading until it is written, so a client that never reads stalls its own flood.
#[test]
fn settings_and_ping_floods_are_bounded_by_back_pressure() {
    let handler = Arc::new(Slow::default());
    let addr = start(handler.clone());
    for (ty, payload) in [(SETTINGS, vec![]), (PING, vec![0u8; 8])] {
        let mut s = connect(addr);
        s.set_write_timeout(Some(Duration::from_secs(1))).unwrap();
        let flood: Vec<u8> = (0..1000).flat_map(|_| frame(ty, 0, 0, &payload)).collect();
        let mut written = 0usize;
        // Never read: the server's answers fill the socket buffers, then it must stop
        // reading, and our writes block.
        while written < 1 << 30 {
            match s.write(&flood) {
                Ok(n) => written += n,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => break,
                Err(_) => break, // closed by the server: also bounded
            }
        }
        eprintln!("frame type {ty}: {written} bytes written before back-pressure");
        assert!(
            written < 64 << 20,
            "frame type {ty}: server accepted {written} bytes of flood without back-pressure"
        );
    }
    assert_curl_served(addr);
}

/// A request body of 1-byte DATA frames, which the handler does not read: h2's DATA
/// frame budget charges each queued frame for its memory, not only its byte, and closes
/// the connection with ENHANCE_YOUR_CALM long before the 1 MiB connection window of
/// such frames (about 100 MB of queue) is taken. curl is still served. (A guard on the
/// h2 the lockfile pins: edge has no code of its own for this.)
#[test]
fn tiny_data_frames_are_refused_before_they_cost_much() {
    let addr = start(Arc::new(Slow::default()));
    let mut s = connect(addr);
    let post = post_block();
    s.write_all(&frame(HEADERS, 0x4, 1, &post)).unwrap();
    let mut writer = s.try_clone().unwrap();
    let flood = std::thread::spawn(move || {
        let batch: Vec<u8> = (0..1024).flat_map(|_| frame(0x0, 0, 1, b"x")).collect();
        let mut frames = 0;
        while frames < 1 << 20 && writer.write_all(&batch).is_ok() {
            frames += 1024;
        }
        frames
    });
    assert_eq!(read_until_close(&mut s), Some(ENHANCE_YOUR_CALM));
    let frames = flood.join().unwrap();
    assert!(frames < 1 << 20, "all {frames} frames were taken");
    assert_curl_served(addr);
}

/// Answers at once, without reading the request body.
struct Early;

impl Handler for Early {
    async fn handle(&self, _session: Session) -> http::Response<Body> {
        http::Response::new(body::full("early\n"))
    }
}

/// An answer that comes before the request body is all in (an upstream's 502, a 413)
/// reaches the client whole: the rest of the body is read and discarded, so the stream
/// ends as both sides finish, not with RST_STREAM right after the answer, which curl
/// 7.88 (Debian 12's) takes as the request failing when its body was on its way. A
/// body that never ends is reset (NO_ERROR) once the linger time is up.
#[test]
fn an_early_answer_lets_the_request_body_finish() {
    let addr = start_with(Arc::new(Early), Limits::default());
    let mut s = connect(addr);
    let post = post_block();
    s.write_all(&frame(HEADERS, END_HEADERS, 1, &post)).unwrap();
    // The answer goes out meanwhile; then the body ends.
    std::thread::sleep(Duration::from_millis(200));
    s.write_all(&frame(DATA, END_STREAM, 1, b"late body"))
        .unwrap();
    s.write_all(&frame(PING, 0, 0, b"12345678")).unwrap();
    let seen = frames_until(&mut s, PING, 0);
    let on_1: Vec<u8> = seen.iter().filter(|f| f.1 == 1).map(|f| f.0).collect();
    assert_eq!(on_1, [HEADERS, DATA], "stream 1's frames");

    s.write_all(&frame(HEADERS, END_HEADERS, 3, &post)).unwrap();
    let started = std::time::Instant::now();
    let reset = wait_for_frame(&mut s, RST_STREAM, 3);
    assert_eq!(reset, NO_ERROR.to_be_bytes());
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "reset at once"
    );
}
