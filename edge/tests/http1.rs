//! The HTTP/1.1 edge (`edge::http1::serve`) on a real socket, against curl (a client we
//! did not write) and against raw bytes for what curl never sends: pipelining, hostile
//! framing, slow and oversized heads, and exact wire formats.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::pin::Pin;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use edge::body::{Body, BoxError};
use edge::limits::Limits;
use edge::session::{ClientInfo, Handler, Protocol, Session};
use http::{HeaderMap, Response, StatusCode};
use http_body::{Frame, SizeHint};
use http_body_util::BodyExt;
use sha2::{Digest, Sha256};

/// A body of prepared frames, with an exact size or none.
struct Frames {
    frames: VecDeque<Result<Frame<Bytes>, BoxError>>,
    exact: Option<u64>,
}

impl http_body::Body for Frames {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Poll::Ready(self.frames.pop_front())
    }

    fn size_hint(&self) -> SizeHint {
        self.exact.map(SizeHint::with_exact).unwrap_or_default()
    }
}

fn frames(frames: Vec<Result<Frame<Bytes>, BoxError>>) -> Body {
    Frames {
        frames: frames.into(),
        exact: None,
    }
    .boxed()
}

/// `/slow` requests dropped before their answer.
static SLOW_CANCELLED: AtomicUsize = AtomicUsize::new(0);
/// `/slow` requests whose handler read the body and began to wait.
static SLOW_STARTED: AtomicUsize = AtomicUsize::new(0);
/// `/empty` requests answered.
static EMPTY_SERVED: AtomicUsize = AtomicUsize::new(0);

/// The bytes `/big` serves: position-dependent, so a misplaced chunk shows.
fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

struct TestHandler;

impl Handler for TestHandler {
    async fn handle(&self, session: Session) -> Response<Body> {
        route(session).await
    }
}

async fn route(session: Session) -> Response<Body> {
    let req = &session.request;
    let path = req.uri.path().to_owned();
    let mut names: Vec<&str> = req.headers.keys().map(|k| k.as_str()).collect();
    names.sort_unstable();
    let names = names.join(",");
    let host = req
        .headers
        .get("host")
        .map(|h| h.to_str().unwrap_or("?").to_owned())
        .unwrap_or_default();
    let hint = http_body::Body::size_hint(&session.body)
        .exact()
        .map_or("none".to_owned(), |n| n.to_string());
    let base = || {
        Response::builder()
            .header("x-headers", names.as_str())
            .header("x-host", host.as_str())
    };
    if let Some(code) = path.strip_prefix("/status/") {
        let status = StatusCode::from_bytes(code.as_bytes()).unwrap();
        return Response::builder()
            .status(status)
            .body(edge::body::full("x"))
            .unwrap();
    }
    match path.as_str() {
        "/echo" => match session.body.collect().await {
            Ok(collected) => {
                let trailers = collected.trailers().map(format_fields).unwrap_or_default();
                base()
                    .header("x-trailers", trailers)
                    .header("x-size-hint", hint)
                    .body(edge::body::full(collected.to_bytes()))
                    .unwrap()
            }
            Err(e) => Response::builder()
                .status(500)
                .body(edge::body::full(format!("body error: {e}\n")))
                .unwrap(),
        },
        "/sha256" => {
            let mut body = session.body;
            let (mut hasher, mut len) = (Sha256::new(), 0usize);
            while let Some(frame) = body.frame().await {
                let frame = match frame {
                    Ok(frame) => frame,
                    Err(e) => {
                        return Response::builder()
                            .status(500)
                            .body(edge::body::full(format!("body error: {e}\n")))
                            .unwrap()
                    }
                };
                let Ok(data) = frame.into_data() else {
                    continue;
                };
                len += data.len();
                hasher.update(&data);
            }
            let out = format!("{len} {:x}", hasher.finalize());
            base()
                .header("x-size-hint", hint)
                .body(edge::body::full(out))
                .unwrap()
        }
        "/big" => {
            let n: usize = req.uri.query().and_then(|q| q.parse().ok()).unwrap_or(0);
            let all = Bytes::from(pattern(n));
            // Frames alternate small (copied) and large (written directly).
            let mut out = Vec::new();
            let mut at = 0;
            for size in [1000, 40_000].iter().cycle() {
                if at == n {
                    break;
                }
                let end = (at + size).min(n);
                out.push(Ok(Frame::data(all.slice(at..end))));
                at = end;
            }
            Response::new(frames(out))
        }
        "/slow" => {
            // Reads the body, then answers after `?MS` milliseconds; dropped before,
            // it counts in `SLOW_CANCELLED`.
            struct Cancelled(bool);
            impl Drop for Cancelled {
                fn drop(&mut self) {
                    if !self.0 {
                        SLOW_CANCELLED.fetch_add(1, Ordering::SeqCst);
                    }
                }
            }
            let ms: u64 = req.uri.query().and_then(|q| q.parse().ok()).unwrap_or(0);
            let mut guard = Cancelled(false);
            let _ = session.body.collect().await;
            SLOW_STARTED.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            guard.0 = true;
            Response::new(edge::body::full("slow\n"))
        }
        "/head-len" => Response::new(edge::body::full(vec![b'a'; 1234])),
        "/trailers" => {
            let mut t = HeaderMap::new();
            t.insert("x-checksum", "abc".parse().unwrap());
            Response::new(frames(vec![
                Ok(Frame::data(Bytes::from_static(b"hello"))),
                Ok(Frame::trailers(t)),
            ]))
        }
        "/fail" => Response::new(frames(vec![
            Ok(Frame::data(Bytes::from_static(b"partial"))),
            Err("upstream went away".into()),
        ])),
        "/noread" => Response::new(edge::body::full("ok")),
        "/empty" => {
            EMPTY_SERVED.fetch_add(1, Ordering::Relaxed);
            Response::new(edge::body::empty())
        }
        _ => {
            let line = format!("{} {}\n", req.method, req.uri);
            base().body(edge::body::full(line)).unwrap()
        }
    }
}

fn format_fields(map: &HeaderMap) -> String {
    map.iter()
        .map(|(k, v)| format!("{k}={}", v.to_str().unwrap()))
        .collect::<Vec<_>>()
        .join(";")
}

/// An HTTP/1 server on 127.0.0.1 in its own runtime thread, for the test's lifetime.
struct Server {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
}

impl Server {
    fn start(limits: Limits) -> Server {
        Server::start_with(limits, None)
    }

    /// Over TLS, as `edge` serves it: see [`serve_tls`].
    fn start_tls(limits: Limits, tls: rustls::ServerConfig) -> Server {
        Server::start_with(limits, Some(Arc::new(tls)))
    }

    fn start_with(limits: Limits, tls: Option<Arc<rustls::ServerConfig>>) -> Server {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        std_listener.set_nonblocking(true).unwrap();
        let addr = std_listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let count = connections.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(std_listener).unwrap();
                let handler = Arc::new(TestHandler);
                loop {
                    let Ok((stream, peer)) = listener.accept().await else {
                        continue;
                    };
                    count.fetch_add(1, Ordering::SeqCst);
                    let client = Arc::new(ClientInfo {
                        addr: peer,
                        local: addr,
                        protocol: Protocol::Http1,
                        tls: None,
                    });
                    let (limits, handler) = (limits.clone(), handler.clone());
                    match tls.clone() {
                        Some(tls) => tokio::spawn(serve_tls(tls, stream, client, limits)),
                        None => tokio::spawn(edge::http1::serve(stream, client, limits, handler)),
                    };
                }
            });
        });
        Server { addr, connections }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn connect(&self) -> TcpStream {
        let s = TcpStream::connect(self.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s
    }

    /// Sends `request` on a fresh connection and reads until the server closes it.
    fn exchange(&self, request: &[u8]) -> Vec<u8> {
        let mut s = self.connect();
        s.write_all(request).unwrap();
        read_to_close(&mut s)
    }
}

/// A TLS client on a blocking socket to `server`, its handshake done.
fn tls_connect(
    server: &Server,
    config: &Arc<rustls::ClientConfig>,
) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut conn = rustls::ClientConnection::new(config.clone(), name).unwrap();
    let mut sock = server.connect();
    while conn.is_handshaking() {
        conn.complete_io(&mut sock).unwrap();
    }
    rustls::StreamOwned::new(conn, sock)
}

/// [`read_to_close`] over TLS: the server may close without close_notify.
fn read_tls_to_close(s: &mut rustls::StreamOwned<rustls::ClientConnection, TcpStream>) -> Vec<u8> {
    let mut out = Vec::new();
    match s.read_to_end(&mut out) {
        Ok(_) => out,
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => out,
        Err(e) => panic!(
            "connection not closed ({e}); got {:?}",
            String::from_utf8_lossy(&out)
        ),
    }
}

/// Reads until end of stream; a read timeout fails the test (the server did not close).
fn read_to_close(s: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return out,
            Err(e) => panic!(
                "connection not closed ({e}); got {:?}",
                String::from_utf8_lossy(&out)
            ),
        }
    }
}

/// One parsed response off a byte stream.
#[derive(Debug)]
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Parses one response (Content-Length or chunked framing) from the front of `buf`.
fn parse_response(buf: &mut Vec<u8>) -> Resp {
    let end = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete head")
        + 4;
    let head = String::from_utf8(buf[..end].to_vec()).unwrap();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    let status = status_line[9..12].parse().unwrap();
    let headers: Vec<(String, String)> = lines
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (k, v) = l.split_once(": ").unwrap();
            (k.to_owned(), v.to_owned())
        })
        .collect();
    buf.drain(..end);
    let mut resp = Resp {
        status,
        headers,
        body: Vec::new(),
    };
    if let Some(len) = resp.header("content-length") {
        let len: usize = len.parse().unwrap();
        resp.body = buf.drain(..len).collect();
    } else if resp.header("transfer-encoding") == Some("chunked") {
        loop {
            let nl = buf.windows(2).position(|w| w == b"\r\n").unwrap();
            let size = usize::from_str_radix(std::str::from_utf8(&buf[..nl]).unwrap(), 16).unwrap();
            buf.drain(..nl + 2);
            if size == 0 {
                let t = buf.windows(2).position(|w| w == b"\r\n").unwrap();
                assert_eq!(t, 0, "no trailers expected here");
                buf.drain(..2);
                break;
            }
            resp.body.extend(buf.drain(..size));
            assert_eq!(buf.drain(..2).collect::<Vec<_>>(), b"\r\n");
        }
    }
    resp
}

/// `out` without its `date` line, which it must have, an HTTP date: edge's own refusals
/// carry one, as its other answers do (RFC 9110 6.6.1).
fn without_date(out: &[u8]) -> String {
    let text = String::from_utf8_lossy(out);
    let date = text
        .split("\r\n")
        .find_map(|line| line.strip_prefix("date: "))
        .unwrap_or_else(|| panic!("no date in {text:?}"));
    assert!(httpdate::parse_http_date(date).is_ok(), "{text:?}");
    text.replacen(&format!("date: {date}\r\n"), "", 1)
}

fn curl(args: &[&str]) -> (String, String) {
    let out = Command::new("/usr/bin/curl")
        .args(["--silent", "--show-error", "--max-time", "30"])
        .args(args)
        .output()
        .expect("curl runs");
    assert!(out.status.success(), "curl {args:?}: {:?}", out);
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn temp_file(name: &str, bytes: &[u8]) -> PathBuf {
    let path = std::env::temp_dir().join(format!("edge-http1-{name}-{}", std::process::id()));
    std::fs::write(&path, bytes).unwrap();
    path
}

fn short_limits() -> Limits {
    Limits {
        header_read_timeout: Duration::from_millis(300),
        idle_timeout: Duration::from_millis(300),
        // Each timeout its own value: a test that waits for one fails if another rules.
        body_timeout: Duration::from_millis(400),
        send_timeout: Duration::from_millis(500),
        max_header_size: 8 * 1024,
        ..Limits::default()
    }
}

// ---- curl ----

#[test]
fn curl_get_and_large_chunked_response() {
    let server = Server::start(Limits::default());
    let (out, _) = curl(&["-i", &server.url("/hello?x=1")]);
    let expected_body = format!("GET http://{}/hello?x=1\n", server.addr);
    assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
    assert!(out.contains(&format!("\r\ncontent-length: {}\r\n", expected_body.len())));
    assert!(out.ends_with(&format!("\r\n\r\n{expected_body}")), "{out}");

    let path = std::env::temp_dir().join(format!("edge-http1-big-{}", std::process::id()));
    let (_, err) = curl(&[
        "-v",
        "-o",
        path.to_str().unwrap(),
        &server.url("/big?3000000"),
    ]);
    assert!(err.contains("< transfer-encoding: chunked"), "{err}");
    let got = std::fs::read(&path).unwrap();
    let _ = std::fs::remove_file(&path);
    assert!(got == pattern(3_000_000), "body differs");
}

#[test]
fn curl_reuses_one_connection() {
    let server = Server::start(Limits::default());
    let (out, _) = curl(&[
        "-o",
        "/dev/null",
        "-o",
        "/dev/null",
        "-o",
        "/dev/null",
        "--write-out",
        "%{http_code}:%{num_connects} ",
        &server.url("/a"),
        &server.url("/b"),
        &server.url("/head-len"),
    ]);
    assert_eq!(out, "200:1 200:0 200:0 ");
    assert_eq!(server.connections.load(Ordering::SeqCst), 1);
}

fn upload(chunked: bool) {
    let server = Server::start(Limits::default());
    let data: Vec<u8> = (0..10 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let digest = format!("{:x}", Sha256::digest(&data));
    let file = temp_file(if chunked { "chunked" } else { "length" }, &data);
    let data_arg = format!("@{}", file.display());
    let mut args = vec![
        "-v",
        "--expect100-timeout",
        "20",
        "-H",
        "Expect: 100-continue",
        "--data-binary",
        &data_arg,
    ];
    if chunked {
        args.extend(["-H", "Transfer-Encoding: chunked"]);
    }
    let url = server.url("/sha256");
    args.push(&url);
    let started = Instant::now();
    let (out, err) = curl(&args);
    let _ = std::fs::remove_file(&file);
    assert_eq!(out, format!("{} {digest}", data.len()));
    // curl waited for our 100 Continue, not for its 20 s timeout.
    assert!(err.contains("< HTTP/1.1 100 Continue"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(15));
    let hint = if chunked {
        "none".to_owned()
    } else {
        data.len().to_string()
    };
    assert!(err.contains(&format!("< x-size-hint: {hint}")), "{err}");
}

#[test]
fn curl_uploads_10mib_with_content_length() {
    upload(false);
}

#[test]
fn curl_uploads_10mib_chunked() {
    upload(true);
}

#[test]
fn curl_head() {
    let server = Server::start(Limits::default());
    let (out, _) = curl(&["-I", &server.url("/head-len")]);
    assert_eq!(out, "HTTP/1.1 200 OK\r\ncontent-length: 1234\r\n\r\n");
}

#[test]
fn curl_http10() {
    let server = Server::start(Limits::default());
    let (out, _) = curl(&["--http1.0", "-i", &server.url("/head-len")]);
    assert!(
        out.starts_with("HTTP/1.1 200 OK\r\ncontent-length: 1234\r\nconnection: close\r\n\r\n"),
        "{out}"
    );
    // Unknown length to an HTTP/1.0 client: delimited by closing the connection.
    let path = std::env::temp_dir().join(format!("edge-http1-10-{}", std::process::id()));
    let (_, err) = curl(&[
        "--http1.0",
        "-v",
        "-o",
        path.to_str().unwrap(),
        &server.url("/big?100000"),
    ]);
    let got = std::fs::read(&path).unwrap();
    let _ = std::fs::remove_file(&path);
    assert!(err.contains("< connection: close"), "{err}");
    assert!(!err.contains("transfer-encoding"), "{err}");
    assert!(got == pattern(100_000));
}

// ---- raw bytes ----

#[test]
fn pipelined_requests_answered_in_order() {
    let server = Server::start(Limits::default());
    let mut s = server.connect();
    s.write_all(
        b"GET /a HTTP/1.1\r\nHost: h\r\n\r\n\
          POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello\
          POST /echo HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n\
          3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nx-t: 1\r\n\r\n\
          GET /status/204 HTTP/1.1\r\nHost: h\r\n\r\n\
          GET /d HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    let mut all = read_to_close(&mut s);
    let a = parse_response(&mut all);
    assert_eq!(
        (a.status, a.body.as_slice()),
        (200, &b"GET http://h/a\n"[..])
    );
    let b = parse_response(&mut all);
    assert_eq!((b.status, b.body.as_slice()), (200, &b"hello"[..]));
    assert_eq!(b.header("x-size-hint"), Some("5"));
    let c = parse_response(&mut all);
    assert_eq!((c.status, c.body.as_slice()), (200, &b"abcde"[..]));
    assert_eq!(c.header("x-trailers"), Some("x-t=1"));
    assert_eq!(c.header("x-size-hint"), Some("none"));
    let d = parse_response(&mut all);
    assert_eq!(d.status, 204);
    let e = parse_response(&mut all);
    assert_eq!(
        (e.status, e.body.as_slice()),
        (200, &b"GET http://h/d\n"[..])
    );
    assert_eq!(e.header("connection"), Some("close"));
    assert!(all.is_empty(), "{:?}", String::from_utf8_lossy(&all));
    assert_eq!(server.connections.load(Ordering::SeqCst), 1);
}

/// A client that goes away while its request is handled (its body read) cancels it:
/// the handler is dropped at once, whether the client closes the connection or only its
/// sending side (as nginx), over TLS too. A request that arrives meanwhile is served
/// after, over TLS also one that rustls decrypted with the first (`tls::ReadOnce` reads
/// it although the socket has nothing more). A handler not cancelled before its answer
/// (after 3 s) is never counted: the count may be waited for long on a loaded machine.
#[test]
fn a_client_gone_before_the_answer_cancels_its_request() {
    let server = Server::start(Limits::default());
    // Until `count` reaches `n` (10 s at most): the handlers run on the server's threads.
    let reaches = |count: &AtomicUsize, n: usize, case: &str| {
        let deadline = Instant::now() + Duration::from_secs(10);
        while count.load(Ordering::SeqCst) < n && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(count.load(Ordering::SeqCst), n, "{case}");
    };
    let cancelled = |n: usize, case: &str| reaches(&SLOW_CANCELLED, n, case);
    // The n-th `/slow` request is being handled: the client may go.
    let started = |n: usize| reaches(&SLOW_STARTED, n, "handler started");
    let get = &b"GET /slow?3000 HTTP/1.1\r\nHost: h\r\n\r\n"[..];
    let post = &b"POST /slow?3000 HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello"[..];
    // After half-closing at `t`: closed at once (before the answer, due 2.8 s after
    // `t`), unanswered.
    let unanswered = |answer: Vec<u8>, t: Instant, case: &str| {
        assert!(
            answer.is_empty() && t.elapsed() < Duration::from_millis(2500),
            "{case}: {:?}",
            String::from_utf8_lossy(&answer)
        );
    };
    // A request that waits, then one that arrives meanwhile: both answered.
    let slow = &b"GET /slow?300 HTTP/1.1\r\nHost: h\r\n\r\n"[..];
    let then = &b"GET /d HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"[..];
    let both_answered = |mut all: Vec<u8>| {
        let a = parse_response(&mut all);
        assert_eq!((a.status, a.body.as_slice()), (200, &b"slow\n"[..]));
        let b = parse_response(&mut all);
        assert_eq!(
            (b.status, b.body.as_slice()),
            (200, &b"GET http://h/d\n"[..])
        );
        assert!(all.is_empty(), "{:?}", String::from_utf8_lossy(&all));
    };

    for (n, request) in [(1, get), (2, post)] {
        let mut s = server.connect();
        s.write_all(request).unwrap();
        started(n);
        drop(s);
        cancelled(n, &String::from_utf8_lossy(request));
    }

    let mut s = server.connect();
    s.write_all(get).unwrap();
    started(3);
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let t = Instant::now();
    unanswered(read_to_close(&mut s), t, "half-closed");
    cancelled(3, "half-closed");

    let mut s = server.connect();
    s.write_all(slow).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    s.write_all(then).unwrap();
    both_answered(read_to_close(&mut s));

    let (tls, client) = tls_configs();
    let server = Server::start_tls(Limits::default(), tls);
    let client = Arc::new(client);
    let mut s = tls_connect(&server, &client);
    s.write_all(get).unwrap();
    started(5);
    drop(s);
    cancelled(4, "TLS, closed");

    let mut s = tls_connect(&server, &client);
    s.write_all(get).unwrap();
    started(6);
    s.conn.send_close_notify();
    s.conn.write_tls(&mut s.sock).unwrap();
    let t = Instant::now();
    unanswered(read_tls_to_close(&mut s), t, "close_notify");
    cancelled(5, "TLS, close_notify");

    // Both in one write (two records): the server reads and decrypts them at once.
    let mut s = tls_connect(&server, &client);
    s.conn.writer().write_all(slow).unwrap();
    s.conn.writer().write_all(then).unwrap();
    s.conn.write_tls(&mut s.sock).unwrap();
    both_answered(read_tls_to_close(&mut s));
    assert_eq!(SLOW_CANCELLED.load(Ordering::SeqCst), 5);
}

#[test]
fn hostile_requests_refused_and_closed() {
    let server = Server::start(Limits::default());
    let post = |headers: &str, body: &str| {
        format!("POST /echo HTTP/1.1\r\nHost: h\r\n{headers}\r\n{body}")
    };
    let cases: Vec<(&str, String, u16)> = vec![
        (
            "CL and TE",
            post(
                "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
                "0\r\n\r\n",
            ),
            400,
        ),
        (
            "TE and CL",
            post(
                "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n",
                "0\r\n\r\n",
            ),
            400,
        ),
        (
            "two CLs",
            post("Content-Length: 5\r\nContent-Length: 6\r\n", "hello!"),
            400,
        ),
        ("CL list", post("Content-Length: 5, 6\r\n", "hello!"), 400),
        ("CL +5", post("Content-Length: +5\r\n", "hello"), 400),
        ("CL -1", post("Content-Length: -1\r\n", ""), 400),
        ("CL hex", post("Content-Length: 0x10\r\n", ""), 400),
        (
            "CL overflow",
            post("Content-Length: 18446744073709551616\r\n", ""),
            400,
        ),
        (
            "TE chunked, identity",
            post("Transfer-Encoding: chunked, identity\r\n", "0\r\n\r\n"),
            400,
        ),
        (
            "TE identity",
            post("Transfer-Encoding: identity\r\n", ""),
            400,
        ),
        (
            "TE gzip, chunked",
            post("Transfer-Encoding: gzip, chunked\r\n", "0\r\n\r\n"),
            501,
        ),
        (
            "chunk size not hex",
            post("Transfer-Encoding: chunked\r\n", "zz\r\nhello\r\n0\r\n\r\n"),
            400,
        ),
        (
            "chunk size empty",
            post("Transfer-Encoding: chunked\r\n", "\r\nhello\r\n0\r\n\r\n"),
            400,
        ),
        (
            "chunk size overflow",
            post(
                "Transfer-Encoding: chunked\r\n",
                "10000000000000000\r\nhello\r\n0\r\n\r\n",
            ),
            400,
        ),
        (
            "chunk size over-long",
            post(
                "Transfer-Encoding: chunked\r\n",
                "000000000000000005\r\nhello\r\n0\r\n\r\n",
            ),
            400,
        ),
        (
            "no CRLF after chunk data",
            post("Transfer-Encoding: chunked\r\n", "5\r\nhelloXX0\r\n\r\n"),
            400,
        ),
        (
            // Each line within the size line's limit, more than 16 KiB in all.
            "chunk extensions over 16 KiB",
            post(
                "Transfer-Encoding: chunked\r\n",
                &(format!("1;{}\r\na\r\n", "x".repeat(4000)).repeat(5) + "0\r\n\r\n"),
            ),
            400,
        ),
        (
            "obs-fold",
            "GET / HTTP/1.1\r\nHost: h\r\nX-A: b\r\n  folded\r\n\r\n".into(),
            400,
        ),
        ("bare LF", "GET / HTTP/1.1\nHost: h\n\n".into(), 400),
        (
            "bare LF in one line",
            "GET / HTTP/1.1\r\nHost: h\nX-A: b\r\n\r\n".into(),
            400,
        ),
        (
            "NUL in name",
            "GET / HTTP/1.1\r\nHost: h\r\nX-\0A: b\r\n\r\n".into(),
            400,
        ),
        (
            "NUL in value",
            "GET / HTTP/1.1\r\nHost: h\r\nX-A: b\0c\r\n\r\n".into(),
            400,
        ),
        (
            "control byte in value",
            "GET / HTTP/1.1\r\nHost: h\r\nX-A: b\x07c\r\n\r\n".into(),
            400,
        ),
        (
            "space before colon",
            "GET / HTTP/1.1\r\nHost: h\r\nX-A : b\r\n\r\n".into(),
            400,
        ),
        ("HTTP/1.x", "GET / HTTP/1.x\r\nHost: h\r\n\r\n".into(), 400),
        ("HTTP/0.9", "GET /\r\n\r\n".into(), 400),
        ("no Host", "GET / HTTP/1.1\r\n\r\n".into(), 400),
        (
            "two Hosts",
            "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n".into(),
            400,
        ),
    ];
    for (name, request, status) in &cases {
        let out = server.exchange(request.as_bytes());
        let text = without_date(&out);
        let expected = format!("HTTP/1.1 {status} ");
        assert!(text.starts_with(&expected), "{name}: {text:?}");
        assert!(
            text.contains("\r\nconnection: close\r\n"),
            "{name}: {text:?}"
        );
        // Nothing after the error body: the request was not also served.
        let mut rest = out.clone();
        let resp = parse_response(&mut rest);
        assert_eq!(resp.status, *status, "{name}");
        assert!(
            rest.is_empty(),
            "{name}: trailing {:?}",
            String::from_utf8_lossy(&rest)
        );
    }
    // The server still serves, and identical duplicate lengths are accepted.
    let ok = server.exchange(
        post(
            "Content-Length: 5\r\nContent-Length: 5\r\nConnection: close\r\n",
            "hello",
        )
        .as_bytes(),
    );
    let resp = parse_response(&mut ok.clone());
    assert_eq!((resp.status, resp.body.as_slice()), (200, &b"hello"[..]));
}

/// A later HTTP/1 minor version is served as HTTP/1.1 (RFC 9110, 2.5), the connection
/// kept; another major version in an HTTP/1 request line gets 505, and the close.
#[test]
fn later_minor_versions_served_as_11_other_majors_505() {
    let server = Server::start(Limits::default());
    let out = server.exchange(
        b"GET /a HTTP/1.2\r\nHost: h\r\n\r\n\
          GET /b HTTP/1.9\r\nHost: h\r\nConnection: close\r\n\r\n",
    );
    let served = |path: &str, last: &str| {
        format!(
            "HTTP/1.1 200 OK\r\nx-headers: host\r\nx-host: h\r\ncontent-length: 15\r\n\
             {last}\r\nGET http://h/{path}\n"
        )
    };
    let expected = served("a", "") + &served("b", "connection: close\r\n");
    assert_eq!(String::from_utf8_lossy(&out), expected);
    for major in ["2.0", "3.0"] {
        let out = server.exchange(format!("GET / HTTP/{major}\r\nHost: h\r\n\r\n").as_bytes());
        assert_eq!(
            without_date(&out),
            "HTTP/1.1 505 HTTP Version Not Supported\r\ncontent-type: text/plain\r\n\
             content-length: 27\r\nconnection: close\r\n\r\nHTTP Version Not Supported\n",
            "HTTP/{major}"
        );
    }
    assert_eq!(server.connections.load(Ordering::SeqCst), 3);
}

#[test]
fn oversized_heads_refused() {
    let server = Server::start(short_limits());
    let big = "a".repeat(10_000);
    let out =
        server.exchange(format!("GET / HTTP/1.1\r\nHost: h\r\nX-Big: {big}\r\n\r\n").as_bytes());
    let text = without_date(&out);
    assert!(
        text.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"),
        "{text:?}"
    );
    let out = server.exchange(format!("GET /{big} HTTP/1.1\r\nHost: h\r\n\r\n").as_bytes());
    let text = without_date(&out);
    assert!(
        text.starts_with("HTTP/1.1 414 URI Too Long\r\n"),
        "{text:?}"
    );
    let many: String = (0..200).map(|i| format!("X-{i}: v\r\n")).collect();
    let out = server.exchange(format!("GET / HTTP/1.1\r\nHost: h\r\n{many}\r\n").as_bytes());
    assert!(without_date(&out).starts_with("HTTP/1.1 431 "));
}

#[test]
fn slow_head_gets_408() {
    let server = Server::start(short_limits());
    let mut s = server.connect();
    let mut writer = s.try_clone().unwrap();
    let started = Instant::now();
    std::thread::spawn(move || {
        for piece in [
            "GET / HTTP/1.1\r\n",
            "Host: h\r\n",
            "X-A: 1\r\n",
            "X-B: 2\r\n",
        ]
        .iter()
        .cycle()
        .take(20)
        {
            if writer.write_all(piece.as_bytes()).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    let out = read_to_close(&mut s);
    let elapsed = started.elapsed();
    let text = without_date(&out);
    assert!(
        text.starts_with("HTTP/1.1 408 Request Timeout\r\n"),
        "{text:?}"
    );
    assert!(text.contains("\r\nconnection: close\r\n"));
    assert!(
        elapsed >= Duration::from_millis(250) && elapsed < Duration::from_secs(5),
        "{elapsed:?}"
    );
}

#[test]
fn idle_connections_closed_silently() {
    let server = Server::start(short_limits());
    // Keep-alive connection after one exchange.
    let mut s = server.connect();
    s.write_all(b"GET /x HTTP/1.1\r\nHost: h\r\n\r\n").unwrap();
    let started = Instant::now();
    let mut all = read_to_close(&mut s);
    assert!(started.elapsed() >= Duration::from_millis(250));
    let resp = parse_response(&mut all);
    assert_eq!(
        (resp.status, resp.body.as_slice()),
        (200, &b"GET http://h/x\n"[..])
    );
    assert!(all.is_empty());
    // A connection that never sends anything.
    let mut s = server.connect();
    assert_eq!(read_to_close(&mut s), b"");
}

#[test]
fn any_status_code_written() {
    let server = Server::start(Limits::default());
    for (code, line) in [
        (200, "200 OK"),
        (418, "418 I'm a teapot"),
        (599, "599 "),
        (999, "999 "),
    ] {
        let out = server.exchange(
            format!("GET /status/{code} HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        );
        assert_eq!(
            String::from_utf8_lossy(&out),
            format!("HTTP/1.1 {line}\r\ncontent-length: 1\r\nconnection: close\r\n\r\nx")
        );
    }
}

#[test]
fn bodiless_responses_have_no_body_bytes() {
    let server = Server::start(Limits::default());
    let out = server.exchange(
        b"GET /status/204 HTTP/1.1\r\nHost: h\r\n\r\n\
          GET /status/304 HTTP/1.1\r\nHost: h\r\n\r\n\
          HEAD /head-len HTTP/1.1\r\nHost: h\r\n\r\n\
          HEAD /big?100 HTTP/1.1\r\nHost: h\r\n\r\n\
          HEAD /status/204 HTTP/1.1\r\nHost: h\r\n\r\n\
          GET /status/200 HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
    );
    // No content-length for a 204, even to a HEAD (RFC 9110 8.6).
    assert_eq!(
        String::from_utf8_lossy(&out),
        "HTTP/1.1 204 No Content\r\n\r\n\
         HTTP/1.1 304 Not Modified\r\n\r\n\
         HTTP/1.1 200 OK\r\ncontent-length: 1234\r\n\r\n\
         HTTP/1.1 200 OK\r\n\r\n\
         HTTP/1.1 204 No Content\r\n\r\n\
         HTTP/1.1 200 OK\r\ncontent-length: 1\r\nconnection: close\r\n\r\nx"
    );
    // A 1xx as the handler's final answer: the head alone, then close.
    for method in ["GET", "HEAD"] {
        let request = format!("{method} /status/103 HTTP/1.1\r\nHost: h\r\n\r\n");
        let out = server.exchange(request.as_bytes());
        assert_eq!(
            String::from_utf8_lossy(&out),
            "HTTP/1.1 103 Early Hints\r\nconnection: close\r\n\r\n"
        );
    }
}

#[test]
fn chunked_response_trailers_only_when_accepted() {
    let server = Server::start(Limits::default());
    let head = "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n";
    // The second as RFC 9110 (10.1.4) wants it sent: TE named by Connection.
    for connection in ["close", "TE, close"] {
        let request = format!(
            "GET /trailers HTTP/1.1\r\nHost: h\r\nTE: trailers\r\nConnection: {connection}\r\n\r\n"
        );
        let out = server.exchange(request.as_bytes());
        assert_eq!(
            String::from_utf8_lossy(&out),
            format!("{head}5\r\nhello\r\n0\r\nx-checksum: abc\r\n\r\n"),
            "{connection}"
        );
    }
    let out = server.exchange(b"GET /trailers HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n");
    assert_eq!(
        String::from_utf8_lossy(&out),
        format!("{head}5\r\nhello\r\n0\r\n\r\n")
    );
}

#[test]
fn failing_response_body_truncates_and_closes() {
    let server = Server::start(Limits::default());
    let out =
        server.exchange(b"GET /fail HTTP/1.1\r\nHost: h\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(
        String::from_utf8_lossy(&out),
        "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n7\r\npartial\r\n"
    );
}

#[test]
fn expect_continue_sent_when_body_is_read() {
    let server = Server::start(Limits::default());
    let mut s = server.connect();
    s.write_all(
        b"POST /echo HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n",
    )
    .unwrap();
    let mut first = [0u8; 25];
    s.read_exact(&mut first).unwrap();
    assert_eq!(&first, b"HTTP/1.1 100 Continue\r\n\r\n");
    s.write_all(b"hello").unwrap();
    s.write_all(b"GET /after HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut all = read_to_close(&mut s);
    let resp = parse_response(&mut all);
    assert_eq!((resp.status, resp.body.as_slice()), (200, &b"hello"[..]));
    let resp = parse_response(&mut all);
    assert_eq!(resp.body, b"GET http://h/after\n");

    // Answered without reading: no 100 Continue, and the client is told the
    // connection ends (it may never send the body).
    let out = server.exchange(
        b"POST /noread HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n",
    );
    assert_eq!(
        String::from_utf8_lossy(&out),
        "HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok"
    );
}

#[test]
fn unread_bodies_drained_or_connection_closed() {
    let server = Server::start(Limits::default());
    let out = server.exchange(
        b"POST /noread HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\n0123456789\
          POST /noread HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n\
          GET /after HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
    );
    let mut all = out;
    assert_eq!(parse_response(&mut all).body, b"ok");
    assert_eq!(parse_response(&mut all).body, b"ok");
    assert_eq!(parse_response(&mut all).body, b"GET http://h/after\n");
    assert!(all.is_empty());

    // Too much left unread: answered, saying the connection closes, then closed (the
    // next request is not served).
    let mut s = server.connect();
    s.write_all(b"POST /noread HTTP/1.1\r\nHost: h\r\nContent-Length: 1048576\r\n\r\nabc")
        .unwrap();
    s.write_all(b"GET /after HTTP/1.1\r\nHost: h\r\n\r\n")
        .unwrap();
    let out = read_to_close(&mut s);
    assert_eq!(
        String::from_utf8_lossy(&out),
        "HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok"
    );
}

/// An answer given before the end of a chunked body it did not read says that the
/// connection closes, then closes it: how much of the body is still to come, edge
/// cannot tell, so it cannot promise to read past it (RFC 9112 9.6). A chunked body
/// whose end came with it is read past, the connection kept (above).
#[test]
fn an_answer_before_a_chunked_body_ends_says_close() {
    let server = Server::start(short_limits());
    let mut s = server.connect();
    s.write_all(
        b"POST /noread HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
    )
    .unwrap();
    let out = read_to_close(&mut s);
    assert_eq!(
        String::from_utf8_lossy(&out),
        "HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok"
    );
}

#[test]
fn connection_headers_removed_and_absolute_form() {
    let server = Server::start(Limits::default());
    let out = server.exchange(
        b"POST http://example.com/echo?q HTTP/1.1\r\nHost: other\r\n\
          Connection: keep-alive, x-hop\r\nX-Hop: 1\r\nKeep-Alive: 5\r\nTE: trailers\r\n\
          Upgrade: h2c\r\nProxy-Connection: x\r\nContent-Length: 2\r\nX-Keep: 1\r\n\r\nhi\
          GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
    );
    let mut all = out;
    let resp = parse_response(&mut all);
    assert_eq!(resp.body, b"hi");
    assert_eq!(resp.header("x-headers"), Some("content-length,host,x-keep"));
    assert_eq!(resp.header("x-host"), Some("example.com"));
    assert_eq!(resp.header("x-size-hint"), Some("2"));
    assert_eq!(parse_response(&mut all).body, b"GET http://h/\n");
}

#[test]
fn http10_keep_alive_only_when_asked() {
    let server = Server::start(Limits::default());
    let out = server.exchange(b"GET /x HTTP/1.0\r\n\r\n");
    let resp = parse_response(&mut out.clone());
    assert_eq!(resp.header("connection"), Some("close"));
    assert_eq!(resp.body, b"GET /x\n");

    let mut s = server.connect();
    s.write_all(b"GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /b HTTP/1.0\r\n\r\n")
        .unwrap();
    let mut all = read_to_close(&mut s);
    let a = parse_response(&mut all);
    assert_eq!(a.header("connection"), Some("keep-alive"));
    assert_eq!(a.body, b"GET /a\n");
    let b = parse_response(&mut all);
    assert_eq!(b.header("connection"), Some("close"));
    assert_eq!(b.body, b"GET /b\n");
    assert!(all.is_empty());
}

#[test]
fn stalled_request_body_times_out() {
    let server = Server::start(short_limits());
    let mut s = server.connect();
    s.write_all(b"POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\nabc")
        .unwrap();
    let started = Instant::now();
    let out = read_to_close(&mut s);
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(400) && took < Duration::from_secs(3),
        "client_body_timeout is 400 ms: {took:?}"
    );
    assert_eq!(
        String::from_utf8_lossy(&out),
        "HTTP/1.1 500 Internal Server Error\r\ncontent-length: 57\r\nconnection: close\r\n\r\n\
         body error: request body timed out (client_body_timeout)\n"
    );
}

// ---- clients that read slowly or not at all (in memory, paused time) ----

/// Serves one connection over an in-memory pipe of `pipe` bytes each way, with
/// [`short_limits`]: the client's end, and the server's task.
fn serve_in_memory(pipe: usize) -> (tokio::io::DuplexStream, tokio::task::JoinHandle<()>) {
    serve_in_memory_with(pipe, short_limits())
}

/// The `ClientInfo` of an in-memory connection.
fn in_memory_client() -> Arc<ClientInfo> {
    let addr: SocketAddr = ([127, 0, 0, 1], 1).into();
    Arc::new(ClientInfo {
        addr,
        local: addr,
        protocol: Protocol::Http1,
        tls: None,
    })
}

fn serve_in_memory_with(
    pipe: usize,
    limits: Limits,
) -> (tokio::io::DuplexStream, tokio::task::JoinHandle<()>) {
    let (client, server) = tokio::io::duplex(pipe);
    let info = in_memory_client();
    let served = tokio::spawn(edge::http1::serve(
        server,
        info,
        limits,
        Arc::new(TestHandler),
    ));
    (client, served)
}

/// A server config as `edge` sets it up, and a client config that trusts it (for
/// "localhost").
fn tls_configs() -> (rustls::ServerConfig, rustls::ClientConfig) {
    let key = edge::tls::self_signed().unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(key.cert[0].clone()).unwrap();
    let resolver = edge::tls::CertResolver::new(vec![(key, vec!["localhost".into()])]).unwrap();
    let server = edge::tls::server_config(Arc::new(resolver), &[b"http/1.1"], false).unwrap();
    let client = rustls::ClientConfig::builder_with_provider(edge::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    (server, client)
}

/// Serves one connection over TLS, layered as `edge` does.
async fn serve_tls<IO>(
    tls: Arc<rustls::ServerConfig>,
    io: IO,
    client: Arc<ClientInfo>,
    limits: Limits,
) where
    IO: edge::tls::ReadReady + tokio::io::AsyncRead + tokio::io::AsyncWrite,
    IO: Unpin + Send + 'static,
{
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let tls = acceptor.accept(edge::tls::Counted::new(io)).await.unwrap();
    let (tls, sent) = (edge::tls::ReadOnce(tls), edge::tls::ReadOnce::sent);
    edge::http1::serve_with_sent(tls, sent, client, limits, Arc::new(TestHandler)).await;
}

/// Serves one connection over TLS (rustls both ends, the server as `edge` sets it up)
/// over an in-memory pipe of `pipe` bytes each way: the client's end, and the server's
/// task.
async fn serve_tls_in_memory(
    pipe: usize,
    limits: Limits,
) -> (
    tokio_rustls::client::TlsStream<tokio::io::DuplexStream>,
    tokio::task::JoinHandle<()>,
) {
    let (server, client) = tls_configs();
    let (client_io, server_io) = tokio::io::duplex(pipe);
    let served = tokio::spawn(serve_tls(
        Arc::new(server),
        server_io,
        in_memory_client(),
        limits,
    ));
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    (connector.connect(name, client_io).await.unwrap(), served)
}

/// Over TLS too, a client that stops reading is dropped one send timeout after the
/// last record went out.
#[tokio::test(start_paused = true)]
async fn a_client_that_stops_reading_over_tls_is_dropped() {
    use tokio::io::AsyncWriteExt;
    let (mut client, served) = serve_tls_in_memory(1024, short_limits()).await;
    client
        .write_all(b"GET /big?300000 HTTP/1.1\r\nHost: h\r\n\r\n")
        .await
        .unwrap();
    ends_after_one_send_timeout(served).await;
    drop(client);
}

/// A connection (10 s idle timeout) that answered `GET /a` and then idled 3 s, long
/// enough to have released its buffers.
async fn idled() -> (tokio::io::DuplexStream, tokio::task::JoinHandle<()>) {
    use tokio::io::AsyncWriteExt;
    let limits = Limits {
        idle_timeout: Duration::from_secs(10),
        ..short_limits()
    };
    let (mut client, served) = serve_in_memory_with(1 << 20, limits);
    client
        .write_all(b"GET /a HTTP/1.1\r\nHost: h\r\n\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    (client, served)
}

/// A keep-alive connection that idles past a second gives its buffers' memory back
/// until its next request; that request, and a large answer pipelined with another,
/// are served as on a busy connection.
#[tokio::test(start_paused = true)]
async fn a_connection_that_idled_serves_as_before() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (mut client, served) = idled().await;
    client
        .write_all(
            b"GET /big?100000 HTTP/1.1\r\nHost: h\r\n\r\n\
              GET /b HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
        )
        .await
        .unwrap();
    let mut all = Vec::new();
    client.read_to_end(&mut all).await.unwrap();
    served.await.unwrap();
    assert_eq!(parse_response(&mut all).body, b"GET http://h/a\n");
    assert_eq!(parse_response(&mut all).body, pattern(100_000));
    assert_eq!(parse_response(&mut all).body, b"GET http://h/b\n");
    assert!(all.is_empty());
}

/// The server's end of an in-memory connection, counting the reads the server tries:
/// each time its connection task wakes to look for a request is one.
struct CountingReads {
    io: tokio::io::DuplexStream,
    reads: Arc<AtomicUsize>,
}

impl tokio::io::AsyncRead for CountingReads {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        self.reads.fetch_add(1, Ordering::Relaxed);
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for CountingReads {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// The reads the server tries while a client sends 60 requests, one every `gap`, each
/// read in full before the next.
async fn reads_for_requests_every(gap: Duration) -> usize {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (mut client, server) = tokio::io::duplex(1 << 16);
    let reads = Arc::new(AtomicUsize::new(0));
    let server = CountingReads {
        io: server,
        reads: reads.clone(),
    };
    let limits = Limits {
        idle_timeout: Duration::from_secs(60),
        ..short_limits()
    };
    let served = tokio::spawn(edge::http1::serve(
        server,
        in_memory_client(),
        limits,
        Arc::new(TestHandler),
    ));
    let answer = b"GET http://h/a\n";
    for _ in 0..60 {
        client
            .write_all(b"GET /a HTTP/1.1\r\nHost: h\r\n\r\n")
            .await
            .unwrap();
        let mut got = Vec::new();
        while !got.ends_with(answer) {
            let mut piece = [0; 256];
            let n = client.read(&mut piece).await.unwrap();
            assert!(n > 0, "the connection closed");
            got.extend_from_slice(&piece[..n]);
        }
        tokio::time::sleep(gap).await;
    }
    drop(client);
    served.await.unwrap();
    reads.load(Ordering::Relaxed)
}

/// A connection whose requests come less than a second apart never waits out the idle
/// release, and is not woken every second to find that out: its one timer, set for the
/// release when a request was awaited, is not moved per request, so the wait before
/// the release grows instead. 60 requests 300 ms apart (18 s) take nearly the same
/// reads as 60 requests 10 ms apart (no release due); a second's wait throughout took
/// one more read per second.
#[tokio::test(start_paused = true)]
async fn a_busy_connection_is_not_woken_by_its_idle_release() {
    let quick = reads_for_requests_every(Duration::from_millis(10)).await;
    let spaced = reads_for_requests_every(Duration::from_millis(300)).await;
    assert!(
        spaced <= quick + 5,
        "{spaced} reads with requests 300 ms apart, {quick} with 10 ms"
    );
}

/// A head begun after an idle connection released its buffers gets
/// `header_read_timeout`, as on a busy one: 408.
#[tokio::test(start_paused = true)]
async fn a_head_begun_after_idling_still_times_out() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (mut client, served) = idled().await;
    client.write_all(b"GET /b HT").await.unwrap();
    let start = tokio::time::Instant::now();
    served.await.unwrap();
    let took = start.elapsed();
    // 300 ms for the head, then up to 2 s of lingering close.
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(3),
        "{took:?}"
    );
    let mut all = Vec::new();
    client.read_to_end(&mut all).await.unwrap();
    assert_eq!(parse_response(&mut all).body, b"GET http://h/a\n");
    assert_eq!(parse_response(&mut all).status, 408);
}

/// A client whose earlier answers fill its connection, and that then asks for 100
/// Continue, cannot take the 100: the body's timeout ends the wait for it (before, the
/// request waited for ever, and held its connection).
#[tokio::test(start_paused = true)]
async fn a_100_continue_the_client_cannot_take_times_out() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const GET: &[u8] = b"GET /big?4000 HTTP/1.1\r\nHost: h\r\n\r\n";
    // The exact size of GET's answer, from a client that reads it.
    let (mut client, served) = serve_in_memory(1 << 20);
    client.write_all(GET).await.unwrap();
    client
        .write_all(b"GET /a HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut all = Vec::new();
    client.read_to_end(&mut all).await.unwrap();
    served.await.unwrap();
    let total = all.len();
    assert_eq!(parse_response(&mut all).body, pattern(4000));
    let answer = total - all.len();

    // A pipe that GET's answer fills exactly.
    let (mut client, served) = serve_in_memory(answer);
    client.write_all(GET).await.unwrap();
    client
        .write_all(
            b"POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\
              Expect: 100-continue\r\n\r\n",
        )
        .await
        .unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(30), served).await;
    assert!(
        ended.is_ok(),
        "the connection still waits to send 100 Continue"
    );
    // The pipe held GET's answer and nothing more: the 100 was never written, so the
    // wait above was the one for it.
    let mut got = Vec::new();
    client.read_to_end(&mut got).await.unwrap();
    assert_eq!(got.len(), answer);
    assert_eq!(parse_response(&mut got).body, pattern(4000));
}

/// A client that pipelines requests and never reads its answers is dropped one
/// `send_timeout` after its last answer stopped going out: the close that follows does
/// not flush for another one (it took 600 ms with a 300 ms timeout). The same with an
/// idle timeout long enough for idle buffers to be released: the stalled flush is not
/// taken for the release's timer (it was, and the client held on for two timeouts).
#[tokio::test(start_paused = true)]
async fn a_client_that_stops_reading_is_dropped_after_one_send_timeout() {
    for idle_timeout in [Duration::from_millis(300), Duration::from_secs(10)] {
        let limits = Limits {
            idle_timeout,
            ..short_limits()
        };
        stops_reading(limits).await;
    }
}

/// A client whose pipelined requests are all in (a socket's receive buffer holds
/// thousands) and which reads no answer: answers of an empty body (`content-length: 0`,
/// as a redirect's), which never reach the write buffer's high-water mark one by one,
/// stop edge reading requests once they fill it together. They were all answered and
/// queued, one per request up to `keepalive_requests` (5,000 here: 190 KB).
#[tokio::test(start_paused = true)]
async fn empty_answers_to_a_client_that_stops_reading_pile_up_no_further() {
    use tokio::io::AsyncWriteExt;
    let (requests, mut client_writes) = tokio::io::simplex(1 << 20);
    let (_client_reads, answers) = tokio::io::simplex(4096);
    let pipelined = b"GET /empty HTTP/1.1\r\nHost: h\r\n\r\n".repeat(5000);
    client_writes.write_all(&pipelined).await.unwrap();
    let limits = Limits {
        max_requests: 100_000,
        ..short_limits()
    };
    let served = tokio::spawn(edge::http1::serve(
        tokio::io::join(requests, answers),
        in_memory_client(),
        limits,
        Arc::new(TestHandler),
    ));
    ends_after_one_send_timeout(served).await;
    let answered = EMPTY_SERVED.load(Ordering::Relaxed);
    // 64 KiB of 38-byte answers, and the pipe's 4 KiB.
    assert!(answered < 2000, "{answered} answers queued");
}

/// Waits for the server's task, which must end one [`short_limits`] send timeout from now.
async fn ends_after_one_send_timeout(served: tokio::task::JoinHandle<()>) {
    let start = tokio::time::Instant::now();
    served.await.unwrap();
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(500) && took < Duration::from_millis(600),
        "{took:?}"
    );
}

async fn stops_reading(limits: Limits) {
    use tokio::io::AsyncWriteExt;
    let (mut client, served) = serve_in_memory_with(4096, limits);
    // 3 KiB of requests fit the pipe; their 12 KiB of answers do not, and stay below
    // the write buffer's high-water mark.
    let requests = b"GET /a HTTP/1.1\r\nHost: h\r\n\r\n".repeat(100);
    client.write_all(&requests).await.unwrap();
    ends_after_one_send_timeout(served).await;
    drop(client);
}

/// A client that reads a large response slowly, but never pauses as long as the send
/// timeout, gets all of it: the send timeout counts from the last progress, not from
/// the start of a write (40 KB chunks at 512 bytes per 200 ms each take 16 s).
#[tokio::test(start_paused = true)]
async fn a_slow_reader_gets_the_whole_response() {
    let (client, served) = serve_in_memory(1024);
    download_slowly(client, served, 100_000, 512).await;
}

/// The same over TLS, where the last flush of a response waits for up to 64 KiB of
/// records rustls took in: 4 KiB read each 200 ms drains a record each 800 ms, within
/// the 2 s send timeout, but those 64 KiB take 3.2 s. The timeout watches the records
/// going out, not the plaintext going in (it did, and the client lost the end).
#[tokio::test(start_paused = true)]
async fn a_slow_reader_gets_the_whole_response_over_tls() {
    let limits = Limits {
        send_timeout: Duration::from_secs(2),
        ..short_limits()
    };
    let (client, served) = serve_tls_in_memory(1024, limits).await;
    download_slowly(client, served, 300_000, 4096).await;
}

/// Asks for `size` bytes and reads up to `chunk` bytes each 200 ms until the end of the
/// stream (or an error): all of them must come.
async fn download_slowly<C: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    mut client: C,
    served: tokio::task::JoinHandle<()>,
    size: usize,
    chunk: usize,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let request = format!("GET /big?{size} HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n");
    client.write_all(request.as_bytes()).await.unwrap();
    let (mut got, mut buf) = (Vec::new(), vec![0u8; chunk]);
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        match client.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    served.await.unwrap();
    assert!(got.len() > size, "cut off after {} bytes", got.len());
    let resp = parse_response(&mut got);
    assert_eq!(resp.body, pattern(size));
}
