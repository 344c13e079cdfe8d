//! Proxying through a running `edge` binary to origins we did not write: Python's
//! `http.server` serving files, and a small `http.server.BaseHTTPRequestHandler` origin
//! (`tests/origins/origin.py`) for uploads, status codes, headers and connection
//! counts; clients are curl (HTTP/1.1, HTTP/2) and hyperium's h3 (HTTP/3).

mod common;
#[path = "../../h3-tokio/tests/support/mod.rs"]
#[allow(unused_imports)]
mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{free_port, Edge, TempDir};
use http::{HeaderMap, Method};
use sha2::{Digest, Sha256};
use support::hyper_client::HyperClient;

/// A Python origin process, killed on drop.
struct Origin {
    child: Child,
    port: u16,
}

impl Origin {
    fn spawn(args: &[&str], port: u16) -> Origin {
        let child = Command::new("python3")
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3");
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "origin did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Origin { child, port }
    }

    /// `tests/origins/origin.py`, closing idle connections after `idle` seconds.
    fn script(idle: &str) -> Origin {
        let port = free_port();
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/origins/origin.py");
        Origin::spawn(&[script, &port.to_string(), idle], port)
    }

    /// `python3 -m http.server` serving `dir`.
    fn files(dir: &std::path::Path) -> Origin {
        let port = free_port();
        let dir = dir.to_str().unwrap();
        let port_s = port.to_string();
        Origin::spawn(
            &[
                "-m",
                "http.server",
                "--bind",
                "127.0.0.1",
                &port_s,
                "--directory",
                dir,
            ],
            port,
        )
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A TCP origin that accepts connections and then does `f` with each (on its thread).
fn raw_origin(f: fn(TcpStream)) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            std::thread::spawn(move || f(conn));
        }
    });
    port
}

const CONFIG: &str = r#"
http {
    upstream "origin" {
        server "127.0.0.1:ORIGIN" weight=2
        keepalive 64
    }
    // One live server and one refusing connections.
    upstream "half-down" {
        server "127.0.0.1:ORIGIN"
        server "127.0.0.1:DOWN"
    }
    server {
        listen "tcp://127.0.0.1:PORT"
        listen "udp://127.0.0.1:PORT"
        server_name "localhost"
        ssl_certificate "cert.pem"
        ssl_certificate_key "key.pem"
        client_max_body_size "200m"
        location "/" {
            proxy_pass "http://origin"
        }
        location "/files/" {
            proxy_pass "http://127.0.0.1:FILES"
        }
        location "/set-headers" {
            proxy_pass "http://origin"
            proxy_set_header "host" "$host"
            proxy_set_header "x-real-ip" "$remote_addr"
            proxy_set_header "x-original" "$scheme://$host$request_uri"
            proxy_set_header "user-agent" ""
            proxy_set_header "x-from-client" "[$http_x_client_thing]"
            proxy_set_header "x-city" "Zürich"
            proxy_set_header "x-http-host" "$http_host"
            proxy_set_header "connection" ""
        }
        location "/redirect-off" {
            proxy_pass "http://origin"
            proxy_redirect "off"
        }
        location "/redirect-public" {
            proxy_pass "http://origin"
            proxy_set_header "host" "$host"
            proxy_redirect "http://localhost/" "https://localhost/"
        }
        location "/moved/" {
            add_header "x-host" "$host"
            add_header "x-none" "$http_x_none"
            return 301 "https://$host$request_uri"
        }
        location "/down/" {
            proxy_pass "http://127.0.0.1:DOWN"
        }
        location "/total/" {
            proxy_pass "http://127.0.0.1:TRICKLE"
            proxy_read_timeout "10s"
            proxy_total_timeout "1s"
        }
        location "/half-down/" {
            proxy_pass "http://half-down"
        }
        location "/files/total/" {
            proxy_pass "http://127.0.0.1:FILES"
            proxy_total_timeout "2s"
        }
        location "/slow-reader/" {
            proxy_pass "http://127.0.0.1:SLOWREADER"
        }
        location "/silent/" {
            proxy_pass "http://127.0.0.1:SILENT"
            // Only here: elsewhere a loaded machine's origins may take a second.
            proxy_read_timeout "1s"
        }
        location "/malformed/" {
            proxy_pass "http://127.0.0.1:MALFORMED"
        }
        location "/poison/" {
            proxy_pass "http://127.0.0.1:POISON"
        }
    }
    server {
        listen "tcp://127.0.0.1:PORT"
        server_name "underscores.localhost"
        underscores_in_headers #true
        location "/" {
            proxy_pass "http://origin"
        }
    }
}
"#;

struct Setup {
    edge: Edge,
    origin: Origin,
    _files: Origin,
    files_dir: TempDir,
}

fn setup(idle: &str) -> Setup {
    let files_dir = TempDir::new("proxy-files");
    std::fs::create_dir_all(files_dir.0.join("files")).unwrap();
    let origin = Origin::script(idle);
    // `/files/x` is passed as is: the file server's root holds `files/`.
    let files = Origin::files(&files_dir.0);
    let down = free_port();
    // Never answers; `.../stall` gets a head and 2 of its 10 bytes, then nothing.
    let silent = raw_origin(|mut conn| {
        let mut buf = [0; 1024];
        let n = conn.read(&mut buf).unwrap_or(0);
        if buf[..n].windows(5).any(|w| w == b"stall") {
            let _ = conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nab");
        }
        std::thread::sleep(Duration::from_secs(30));
    });
    let malformed = raw_origin(|mut conn| {
        let mut buf = [0; 1024];
        let _ = conn.read(&mut buf);
        let _ = conn.write_all(b"HTTP/1.1 2000 Nope\r\nContent-Length: x\r\n\r\n");
    });
    let poison = raw_origin(poisoning);
    let slow_reader = raw_origin(slow_reader);
    let trickle = raw_origin(trickle);
    let config = CONFIG
        .replace("TRICKLE", &trickle.to_string())
        .replace("SLOWREADER", &slow_reader.to_string())
        .replace("ORIGIN", &origin.port.to_string())
        .replace("FILES", &files.port.to_string())
        .replace("DOWN", &down.to_string())
        .replace("SILENT", &silent.to_string())
        .replace("MALFORMED", &malformed.to_string())
        .replace("POISON", &poison.to_string());
    Setup {
        edge: Edge::start("proxy", &config, "warn"),
        origin,
        _files: files,
        files_dir,
    }
}

/// A response that, on a reused connection, would be read as the answer to the next
/// request.
const SMUGGLED: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nsmuggled";

/// An origin whose answers to `/poison/NAME` carry [`SMUGGLED`] past their own framing
/// (a body longer than its Content-Length; a body after 204, 304, a HEAD answer or an
/// unasked-for 101), and
/// which answers `clean` to anything else. Serves requests on a connection until it
/// closes.
fn poisoning(mut conn: TcpStream) {
    let mut buf = Vec::new();
    let mut chunk = [0; 4096];
    loop {
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            match conn.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
            continue;
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        buf.drain(..end + 4);
        let target = head.split(' ').nth(1).unwrap_or("");
        let mut out: Vec<u8> = match target {
            "/poison/long" => b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello".to_vec(),
            "/poison/204" => b"HTTP/1.1 204 No Content\r\n\r\n".to_vec(),
            "/poison/304" => b"HTTP/1.1 304 Not Modified\r\n\r\n".to_vec(),
            "/poison/head" => b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n".to_vec(),
            "/poison/101" => {
                b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: x\r\n\r\n"
                    .to_vec()
            }
            _ => b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nclean".to_vec(),
        };
        if target.starts_with("/poison/") {
            out.extend_from_slice(SMUGGLED);
        }
        if conn.write_all(&out).is_err() {
            return;
        }
    }
}

/// Reads up to the end of a request head: what was read (the head and the start of the
/// body), where the body starts, and its Content-Length (0 without one); `None` if the
/// connection ends first.
fn read_request_head(conn: &mut TcpStream) -> Option<(Vec<u8>, usize, usize)> {
    let mut read = Vec::new();
    let mut buf = [0; 16 * 1024];
    let body_start = loop {
        let n = conn.read(&mut buf).unwrap_or(0);
        if n == 0 {
            return None;
        }
        read.extend_from_slice(&buf[..n]);
        if let Some(i) = read.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let text = String::from_utf8_lossy(&read[..body_start]).to_ascii_lowercase();
    let length = text
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    Some((read, body_start, length))
}

/// An origin that reads a request body of Content-Length bytes at about 50 MB/s, then
/// answers 200 with the count it read (0 for a chunked request: edge must pass the
/// client's Content-Length on, whatever the client's protocol).
fn slow_reader(mut conn: TcpStream) {
    let Some((head, body_start, length)) = read_request_head(&mut conn) else {
        return;
    };
    let mut buf = vec![0; 256 * 1024];
    let mut read = head.len() - body_start;
    while read < length {
        std::thread::sleep(Duration::from_millis(5));
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => read += n,
        }
    }
    let body = format!("{read}\n");
    let _ = write!(
        conn,
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
}

/// An origin that is slow without ever being silent for long: `.../slow-head` answers
/// after 5 s; anything else gets a head announcing 50 bytes, then a byte every 100 ms
/// (5 s in all).
fn trickle(mut conn: TcpStream) {
    let mut buf = [0; 4096];
    let n = conn.read(&mut buf).unwrap_or(0);
    if buf[..n].windows(9).any(|w| w == b"slow-head") {
        std::thread::sleep(Duration::from_secs(5));
        let _ = conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n");
        return;
    }
    let _ = conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n");
    for _ in 0..50 {
        std::thread::sleep(Duration::from_millis(100));
        if conn.write_all(b"x").is_err() {
            return;
        }
    }
}

/// A response as curl saw it.
struct Seen {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// curl `proto` (`--http1.1`, `--http2`) to edge; `upload`: a file to POST.
fn curl(edge: &Edge, proto: &str, path: &str, upload: Option<&std::path::Path>) -> Seen {
    curl_with(edge, &[proto], path, upload)
}

/// [`curl`] with more of curl's arguments (the protocol among them).
fn curl_with(edge: &Edge, args: &[&str], path: &str, upload: Option<&std::path::Path>) -> Seen {
    let dir = TempDir::new("proxy-curl");
    let (head, out) = (dir.0.join("head"), dir.0.join("body"));
    let mut cmd = Command::new("curl");
    cmd.arg("-sk")
        .args(args)
        .args(["-H", "x-client-thing: 42", "-D"])
        .arg(&head)
        .arg("-o")
        .arg(&out);
    if let Some(file) = upload {
        cmd.arg("--data-binary").arg(format!("@{}", file.display()));
    }
    cmd.arg(format!("https://localhost:{}{path}", edge.port));
    let status = cmd.status().unwrap();
    assert!(status.success(), "curl {args:?} {path}: {status}");
    let head = std::fs::read_to_string(&head).unwrap();
    let last = head.trim_end().rsplit("\r\n\r\n").next().unwrap();
    let mut lines = last.lines();
    let status = lines.next().unwrap().split_whitespace().nth(1).unwrap();
    Seen {
        status: status.parse().unwrap(),
        headers: lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect(),
        body: std::fs::read(&out).unwrap_or_default(),
    }
}

fn sha256(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Deterministic, incompressible-looking bytes.
fn data(n: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15 ^ n as u64;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn connections(edge: &Edge) -> (u64, u64) {
    let seen = curl(edge, "--http1.1", "/connections", None);
    let v: serde_json::Value = serde_json::from_slice(&seen.body).unwrap();
    (
        v["accepted"].as_u64().unwrap(),
        v["requests"].as_u64().unwrap(),
    )
}

/// A body of `n` bytes downloaded from the file server and uploaded to the echo origin,
/// over curl HTTP/1.1, curl HTTP/2 and hyperium h3, compared by SHA-256.
async fn both_ways(s: &Setup, n: usize) {
    let addr: SocketAddr = ([127, 0, 0, 1], s.edge.port).into();
    let started = Instant::now();
    let bytes = data(n);
    let hash = sha256(&bytes);
    let name = format!("blob-{n}");
    std::fs::write(s.files_dir.0.join("files").join(&name), &bytes).unwrap();
    let upload = s.files_dir.0.join(format!("upload-{n}"));
    std::fs::write(&upload, &bytes).unwrap();
    let path = format!("/files/{name}");
    for proto in ["--http1.1", "--http2"] {
        let down = curl(&s.edge, proto, &path, None);
        assert_eq!(down.status, 200, "{proto} GET {n}");
        assert_eq!(down.body.len(), n, "{proto} GET {n}");
        assert_eq!(sha256(&down.body), hash, "{proto} GET {n}");
        let up = curl(&s.edge, proto, "/echo", Some(&upload));
        assert_eq!(up.status, 200, "{proto} POST {n}");
        assert_eq!(
            up.header("x-body-sha256"),
            Some(hash.as_str()),
            "{proto} POST {n}"
        );
        assert_eq!(sha256(&up.body), hash, "{proto} POST {n} echoed");
    }
    // A new HTTP/3 connection: curl blocked this thread meanwhile.
    let h3 = HyperClient::connect(addr).await.unwrap();
    let down = h3.get(&path).await.unwrap();
    assert_eq!(
        (down.status, sha256(&down.body)),
        (200, hash.clone()),
        "h3 GET {n}"
    );
    let up = h3
        .request(Method::POST, "/echo", Some(bytes), None)
        .await
        .unwrap();
    assert_eq!(up.status, 200, "h3 POST {n}");
    assert_eq!(up.headers["x-body-sha256"], hash.as_str(), "h3 POST {n}");
    assert_eq!(sha256(&up.body), hash, "h3 POST {n} echoed");
    eprintln!(
        "{n} bytes both ways over 3 protocols: {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "about a minute in a debug build: cargo test -p edge --test proxy -- --ignored"]
async fn bodies_of_100_mib_both_ways() {
    let s = setup("30");
    both_ways(&s, 100 << 20).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_by_hash_both_ways_over_http1_http2_http3() {
    let s = setup("30");
    let addr: SocketAddr = ([127, 0, 0, 1], s.edge.port).into();
    both_ways(&s, 1024).await;
    both_ways(&s, 1 << 20).await;
    let h3 = HyperClient::connect(addr).await.unwrap();
    // A body of unknown length with trailers (HTTP/3 request, no Content-Length) goes
    // upstream chunked with them, less those named with `_` (`underscores_in_headers`
    // is off); a chunked response's trailers come back.
    let mut trailers = HeaderMap::new();
    trailers.insert("x-sum", "1".parse().unwrap());
    trailers.insert("x_sneaky", "2".parse().unwrap());
    let up = h3
        .request(Method::PUT, "/echo", Some(data(5000)), Some(trailers))
        .await
        .unwrap();
    assert_eq!(up.headers["x-body-sha256"], sha256(&data(5000)).as_str());
    assert_eq!(up.headers["x-request-trailers"], "x-sum: 1");
    let chunked = h3.get("/chunked").await.unwrap();
    assert_eq!(chunked.body, b"hello world");
    assert_eq!(chunked.trailers.unwrap()["x-trailer"], "done");
}

#[test]
fn statuses_and_headers() {
    let s = setup("30");
    for proto in ["--http1.1", "--http2"] {
        let seen = curl(&s.edge, proto, "/status/599", None);
        assert_eq!((seen.status, seen.body.as_slice()), (599, &b"status\n"[..]));
        assert_eq!(curl(&s.edge, proto, "/status/404", None).status, 404);
        assert_eq!(curl(&s.edge, proto, "/status/204", None).status, 204);

        let seen = curl(&s.edge, proto, "/headers", None);
        let h: serde_json::Value = serde_json::from_slice(&seen.body).unwrap();
        assert_eq!(h["host"], "origin", "the upstream's name by default");
        assert_eq!(h["x-forwarded-for"], "127.0.0.1");
        assert_eq!(h["x-forwarded-proto"], "https");
        let via = if proto == "--http2" {
            "2 edge"
        } else {
            "1.1 edge"
        };
        assert_eq!(h["via"], via);
        assert!(h.get("connection").is_none() && h.get("keep-alive").is_none());
        assert_eq!(
            h["user-agent"].as_str().map(|u| u.starts_with("curl/")),
            Some(true)
        );
        // The origin's hop-by-hop headers do not come back either.
        assert!(seen.header("connection").is_none());
    }
}

/// HEAD answers keep the upstream's Content-Length (of the body they stand for), and
/// carry no body; the upstream connection stays reusable after them.
#[test]
fn head_requests() {
    let s = setup("30");
    std::fs::write(s.files_dir.0.join("files/h.txt"), vec![b'h'; 1234]).unwrap();
    for proto in ["--http1.1", "--http2"] {
        let out = Command::new("curl")
            .args(["-skI", proto])
            .arg(format!("https://localhost:{}/files/h.txt", s.edge.port))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_ascii_lowercase();
        assert!(out.status.success(), "{proto}: {text}");
        assert!(text.contains(" 200"), "{proto}: {text}");
        assert!(text.contains("content-length: 1234"), "{proto}: {text}");
        let out = Command::new("curl")
            .args(["-skI", proto])
            .arg(format!("https://localhost:{}/status/200", s.edge.port))
            .output()
            .unwrap();
        assert!(out.status.success());
    }
    let (before, _) = connections(&s.edge);
    for _ in 0..3 {
        let out = Command::new("curl")
            .args(["-skI", "--http1.1"])
            .arg(format!("https://localhost:{}/status/200", s.edge.port))
            .output()
            .unwrap();
        assert!(out.status.success());
    }
    let (after, _) = connections(&s.edge);
    assert_eq!(
        before, after,
        "HEAD exchanges leave the connection reusable"
    );
}

/// Request headers with `_` in their names are dropped over every protocol (nginx's
/// default), so that `x_forwarded_for` cannot stand in for the `x-forwarded-for` this
/// hop sets at an application that reads both as one; a server with
/// `underscores_in_headers #true` passes them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_names_with_underscores_are_dropped_unless_allowed() {
    let s = setup("30");
    let sent = [
        "-H",
        "x_forwarded_for: 6.6.6.6",
        "-H",
        "x_custom: 1",
        "-H",
        "x-plain: 2",
    ];
    let origin_saw = |seen: Seen| -> serde_json::Value {
        assert_eq!(seen.status, 200);
        serde_json::from_slice(&seen.body).unwrap()
    };
    for proto in ["--http1.1", "--http2"] {
        let args: Vec<&str> = [proto].iter().chain(&sent).copied().collect();
        let h = origin_saw(curl_with(&s.edge, &args, "/headers", None));
        assert_eq!(h["x-forwarded-for"], "127.0.0.1", "{proto}: {h}");
        assert_eq!(h["x-plain"], "2", "{proto}: {h}");
        assert!(h.get("x_forwarded_for").is_none(), "{proto}: {h}");
        assert!(h.get("x_custom").is_none(), "{proto}: {h}");

        let args: Vec<&str> = [proto, "-H", "host: underscores.localhost"]
            .iter()
            .chain(&sent)
            .copied()
            .collect();
        let h = origin_saw(curl_with(&s.edge, &args, "/headers", None));
        assert_eq!(h["x_custom"], "1", "{proto}, allowed: {h}");
        assert_eq!(h["x_forwarded_for"], "6.6.6.6", "{proto}, allowed: {h}");
        assert_eq!(h["x-forwarded-for"], "127.0.0.1", "{proto}, allowed: {h}");
    }
    let mut headers = HeaderMap::new();
    headers.insert("x_custom", "1".parse().unwrap());
    headers.insert("x-plain", "2".parse().unwrap());
    let h = origin_headers_over_h3(&s, headers).await;
    assert_eq!(h["x-plain"], "2", "h3: {h}");
    assert!(h.get("x_custom").is_none(), "h3: {h}");
}

/// The request headers the origin saw for `GET /headers` with `headers` over HTTP/3
/// (hyperium's h3 client).
async fn origin_headers_over_h3(s: &Setup, headers: HeaderMap) -> serde_json::Value {
    let h3 = HyperClient::connect(([127, 0, 0, 1], s.edge.port).into())
        .await
        .unwrap();
    let reply = h3
        .request_with_headers(Method::GET, "/headers", headers, None, None)
        .await
        .unwrap();
    assert_eq!(reply.status, 200);
    serde_json::from_slice(&reply.body).unwrap()
}

/// HTTP/2 and HTTP/3 clients may send each cookie as its own field; the HTTP/1.1
/// origin gets them on one Cookie line, joined by "; " (RFC 9113 8.2.3, RFC 9114
/// 4.2.1), as nginx sends them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_cookies_reach_the_origin_on_one_line() {
    let s = setup("30");
    let args = ["--http2", "-H", "cookie: a=1", "-H", "cookie: b=2"];
    let seen = curl_with(&s.edge, &args, "/headers", None);
    assert_eq!(seen.status, 200);
    let h: serde_json::Value = serde_json::from_slice(&seen.body).unwrap();
    assert_eq!(h["cookie"], "a=1; b=2", "curl --http2: {h}");

    let mut headers = HeaderMap::new();
    for cookie in ["a=1", "b=2", "c=3"] {
        headers.append("cookie", cookie.parse().unwrap());
    }
    let h = origin_headers_over_h3(&s, headers).await;
    assert_eq!(h["cookie"], "a=1; b=2; c=3", "h3: {h}");
}

/// An HTTP/2 GET whose stream ends with an empty DATA frame (END_STREAM), rather than on
/// its HEADERS, goes upstream without a body: not with `transfer-encoding: chunked` and
/// an empty chunked body, which some origins refuse for a GET.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_get_ended_by_an_empty_data_frame_has_no_body_upstream() {
    let s = setup("30");
    let mut send = common::h2_client(s.edge.port).await;
    let request = http::Request::get(format!("https://localhost:{}/headers", s.edge.port))
        .body(())
        .unwrap();
    let (response, mut stream) = send.send_request(request, false).unwrap();
    stream.send_data(bytes::Bytes::new(), true).unwrap();
    let (head, mut body) = response.await.unwrap().into_parts();
    assert_eq!(head.status, 200);
    let mut json = Vec::new();
    while let Some(data) = body.data().await {
        json.extend_from_slice(&data.unwrap());
    }
    let h: serde_json::Value = serde_json::from_slice(&json).unwrap();
    assert!(h.get("transfer-encoding").is_none(), "{h}");
    assert!(h.get("content-length").is_none(), "{h}");
}

/// `Expect: 100-continue` is this hop's to answer: edge sends 100 Continue when the
/// proxy asks for the body, over HTTP/2 as over HTTP/1.1 (curl, told to wait 5 s for it,
/// otherwise sends the body only then), and the upstream never sees `Expect`, over
/// every protocol.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expect_100_continue_is_answered_here_and_not_forwarded() {
    let s = setup("30");
    let upload = s.files_dir.0.join("upload-expect");
    std::fs::write(&upload, data(100_000)).unwrap();
    for (proto, interim) in [("--http1.1", "< HTTP/1.1 100"), ("--http2", "< HTTP/2 100")] {
        let out = Command::new("curl")
            .args(["-skv", proto, "-H", "expect: 100-continue"])
            .args(["--expect100-timeout", "5", "-w", "\n%{time_total}"])
            .arg("--data-binary")
            .arg(format!("@{}", upload.display()))
            .arg(format!("https://localhost:{}/post-headers", s.edge.port))
            .output()
            .unwrap();
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        assert!(out.status.success(), "{proto}: {stderr}");
        assert!(
            stderr.contains(interim),
            "{proto}: no 100 Continue: {stderr}"
        );
        let (json, took) = stdout.rsplit_once('\n').unwrap();
        let took: f64 = took.parse().unwrap();
        assert!(took < 3.0, "{proto}: {took} s: curl waited for the 100");
        let h: serde_json::Value = serde_json::from_str(json).unwrap();
        assert!(h.get("expect").is_none(), "{proto}: {h}");
        assert_eq!(h["content-length"], "100000", "{proto}: {h}");
    }
    let h3 = HyperClient::connect(([127, 0, 0, 1], s.edge.port).into())
        .await
        .unwrap();
    let mut headers = HeaderMap::new();
    headers.insert("expect", "100-continue".parse().unwrap());
    // hyperium's client sends the body without waiting for the 100, and a body that
    // arrived whole with its head needs none (RFC 9110, 10.1.1): this one is larger
    // than the stream's flow control window, so it cannot.
    let reply = h3
        .request_with_headers(
            Method::POST,
            "/post-headers",
            headers,
            Some(data(4 << 20)),
            None,
        )
        .await
        .unwrap();
    assert_eq!((reply.status, reply.informational), (200, vec![100]));
    let h: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
    assert!(h.get("expect").is_none(), "h3: {h}");
}

/// `client_body_timeout` and `send_timeout`, not `keepalive_timeout`, rule a stalled
/// upload and an unread download: the upload is answered 408 (over HTTP/1.1 and
/// HTTP/3) and the download's connection closed, each soon after the client stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_body_and_send_timeouts() {
    let files_dir = TempDir::new("proxy-timeouts");
    std::fs::create_dir_all(files_dir.0.join("files")).unwrap();
    const BIG: usize = 64 << 20;
    std::fs::write(files_dir.0.join("files/big"), vec![b'x'; BIG]).unwrap();
    let (origin, files) = (Origin::script("30"), Origin::files(&files_dir.0));
    let config = format!(
        r#"
http {{
    keepalive_timeout "30s"
    client_body_timeout "2s"
    send_timeout "1s"
    server {{
        listen "tcp://127.0.0.1:PORT" tls=#false
        location "/" {{ proxy_pass "http://127.0.0.1:{}"; }}
        location "/files/" {{ proxy_pass "http://127.0.0.1:{}"; }}
    }}
}}
"#,
        origin.port, files.port
    );
    let edge = Edge::start("proxy-timeouts", &config, "warn");

    // An upload that stops after 3 of its 10 bytes.
    let mut s = TcpStream::connect(("127.0.0.1", edge.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let started = Instant::now();
    s.write_all(b"POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\nabc")
        .unwrap();
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    let took = started.elapsed();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408 "), "{answer}");
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(6),
        "answered after {took:?}"
    );

    // The same over HTTP/3, with a keepalive_timeout shorter than client_body_timeout:
    // QUIC's own idle timeout does not drop the silent client before its answer.
    let quic = Edge::start(
        "proxy-timeouts-h3",
        &format!(
            r#"
http {{
    keepalive_timeout "1s"
    client_body_timeout "2s"
    server {{
        listen "udp://127.0.0.1:PORT"
        listen "tcp://127.0.0.1:PORT"
        ssl_certificate "cert.pem"
        ssl_certificate_key "key.pem"
        location "/" {{ proxy_pass "http://127.0.0.1:{}"; }}
    }}
}}
"#,
            origin.port
        ),
        "warn",
    );
    let h3 = HyperClient::connect(([127, 0, 0, 1], quic.port).into())
        .await
        .unwrap();
    let started = Instant::now();
    assert_eq!(h3.stalled_upload("/echo", 10, 3).await, Ok(408));
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(6),
        "h3: answered after {took:?}"
    );

    // A download the client stops reading at once: once edge's writes have made no
    // progress for a second, it closes; the client then finds the end of what was
    // sent, not the whole file and a connection still open.
    let mut s = TcpStream::connect(("127.0.0.1", edge.port)).unwrap();
    s.write_all(b"GET /files/big HTTP/1.1\r\nHost: h\r\n\r\n")
        .unwrap();
    std::thread::sleep(Duration::from_secs(4));
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let (mut got, mut buf) = (0, vec![0; 1 << 20]);
    let closed = loop {
        match s.read(&mut buf) {
            Ok(0) => break true,
            Ok(n) => got += n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                break false
            }
            Err(_) => break true,
        }
    };
    assert!(closed && got < BIG, "closed: {closed}, {got} bytes read");
    drop((origin, files));
}

#[test]
fn proxy_set_header_variables() {
    let s = setup("30");
    let seen = curl(&s.edge, "--http2", "/set-headers?a=1", None);
    assert_eq!(seen.status, 200);
    let h: serde_json::Value = serde_json::from_slice(&seen.body).unwrap();
    assert_eq!(h["host"], "localhost", "$host");
    assert_eq!(h["x-real-ip"], "127.0.0.1");
    assert_eq!(h["x-original"], "https://localhost/set-headers?a=1");
    assert!(
        h.get("user-agent").is_none(),
        "an empty value removes the header"
    );
    assert_eq!(h["x-from-client"], "[42]", "$http_x_client_thing");
    // HTTP/2: from :authority, there being no Host field.
    assert_eq!(h["x-http-host"], format!("localhost:{}", s.edge.port));
    // Not ASCII: sent as configured (UTF-8 here; Python reads header bytes as Latin-1).
    assert_eq!(h["x-city"], "Z\u{c3}\u{bc}rich");
}

/// An upstream sent `Host: $proxy_host` redirects to that name: by default (nginx's
/// `proxy_redirect default`) the client gets a relative URL, in Location and Refresh.
/// nginx's own controls (`X-Accel-*`, `X-Pad`) are hidden, as nginx hides them.
#[test]
fn upstream_redirects_to_its_own_name_are_made_relative() {
    let s = setup("30");
    for proto in ["--http1.1", "--http2"] {
        let redirect = |path| {
            let seen = curl(&s.edge, proto, path, None);
            assert_eq!(seen.status, 302, "{proto} {path}");
            assert_eq!(seen.header("x-accel-redirect"), None, "{proto} {path}");
            assert_eq!(seen.header("x-pad"), None, "{proto} {path}");
            let field = |name| seen.header(name).unwrap_or_default().to_owned();
            (field("location"), field("refresh"))
        };
        assert_eq!(
            redirect("/redirect"),
            ("/login?next=/x".into(), "0; url=/r".into()),
            "{proto}"
        );
        assert_eq!(
            redirect("/redirect-off"),
            (
                "http://origin/login?next=/x".into(),
                "0; url=http://origin/r".into()
            ),
            "{proto}"
        );
        assert_eq!(
            redirect("/redirect-public"),
            (
                "https://localhost/login?next=/x".into(),
                "0; url=https://localhost/r".into()
            ),
            "{proto}"
        );
    }
}

/// `return` and `add_header` expand variables as `proxy_set_header` does (nginx's
/// usual redirect to HTTPS), and an `add_header` that comes out empty adds nothing.
#[test]
fn return_and_add_header_expand_variables() {
    let s = setup("30");
    for proto in ["--http1.1", "--http2"] {
        let seen = curl(&s.edge, proto, "/moved/a?b=1", None);
        assert_eq!(seen.status, 301, "{proto}");
        assert_eq!(
            seen.header("location"),
            Some("https://localhost/moved/a?b=1"),
            "{proto}"
        );
        assert_eq!(seen.header("x-host"), Some("localhost"), "{proto}");
        assert_eq!(seen.header("x-none"), None, "{proto}");
    }
}

/// The request-target an HTTP/1 upstream gets is always an absolute path: an
/// absolute-form target with an empty path gets "/" (RFC 9112 3.2.1), and an HTTP/2
/// `:path` that is not an absolute path is malformed (RFC 9113 8.3.1): 400, and the
/// origin sees nothing.
#[test]
fn upstream_targets_are_absolute_paths() {
    let s = setup("30");
    let absolute = format!("https://localhost:{}?x=1", s.edge.port);
    let seen = curl_with(
        &s.edge,
        &["--http1.1", "--request-target", &absolute],
        "/",
        None,
    );
    assert_eq!(seen.status, 404, "the origin's answer to an unknown path");
    assert_eq!(seen.header("x-request-target"), Some("/?x=1"));

    let (_, before) = connections(&s.edge);
    // (h2 itself resets a stream whose :path is no URI at all, such as "x".)
    for target in ["?x=1", "*"] {
        let seen = curl_with(&s.edge, &["--http2", "--request-target", target], "/", None);
        assert_eq!(seen.status, 400, ":path {target}");
    }
    let (_, after) = connections(&s.edge);
    assert_eq!(
        after,
        before + 1,
        "only the count itself reached the origin"
    );
}

/// TRACE is answered 405 here and never forwarded, as nginx does (it would echo the
/// client's headers, cookies included, back to a script: cross-site tracing). The
/// origin would answer it 501.
#[test]
fn trace_is_refused_and_not_forwarded() {
    let s = setup("30");
    for proto in ["--http1.1", "--http2"] {
        let seen = curl_with(&s.edge, &[proto, "-X", "TRACE"], "/echo", None);
        assert_eq!(seen.status, 405, "{proto}");
    }
}

/// A request that names no host (HTTP/1.0 without Host) takes the site's name, as
/// nginx's `$host` does, so `proxy_set_header host "$host"` still sends one.
#[test]
fn a_request_without_host_takes_the_site_name() {
    let s = setup("30");
    let seen = curl_with(&s.edge, &["--http1.0", "-H", "Host:"], "/set-headers", None);
    assert_eq!(seen.status, 200);
    let h: serde_json::Value = serde_json::from_slice(&seen.body).unwrap();
    assert_eq!(h["host"], "localhost", "$host");
    assert_eq!(
        h["x-original"], "https://localhost/set-headers",
        "$scheme://$host$request_uri"
    );
}

/// Bytes an origin sends past a response's framing never reach the next request on that
/// connection (response queue poisoning): edge does not pool a connection with bytes
/// left unread, whatever the client's protocol. (Fails when `finish` and
/// `is_reusable` both let such a connection back into the pool.)
#[test]
fn bytes_past_a_response_are_never_read_as_the_next_one() {
    let s = setup("30");
    for proto in ["--http1.1", "--http2"] {
        // (`curl -I` writes the head where the body would go: no body to compare.)
        for (poison, head, status, body) in [
            ("long", false, 200, Some(&b"hello"[..])),
            ("204", false, 204, Some(b"")),
            ("304", false, 304, Some(b"")),
            ("head", true, 200, None),
            // An upgrade nobody asked for: refused.
            ("101", false, 502, Some(b"502 Bad Gateway\n")),
        ] {
            let args: &[&str] = if head { &[proto, "-I"] } else { &[proto] };
            let seen = curl_with(&s.edge, args, &format!("/poison/{poison}"), None);
            assert_eq!(seen.status, status, "{proto} {poison}");
            if let Some(body) = body {
                assert_eq!(seen.body, body, "{proto} {poison}");
            }
            for _ in 0..3 {
                let seen = curl(&s.edge, proto, "/poison/next", None);
                assert_eq!(
                    (seen.status, seen.body.as_slice()),
                    (200, &b"clean"[..]),
                    "{proto}: the request after /poison/{poison}"
                );
            }
        }
    }
}

#[test]
fn upstream_connections_are_reused() {
    let s = setup("30");
    // The origin also counted the probe that saw it was up.
    let (before, _) = connections(&s.edge);
    for i in 0..20 {
        let proto = if i % 2 == 0 { "--http1.1" } else { "--http2" };
        assert_eq!(curl(&s.edge, proto, "/status/200", None).status, 200);
    }
    let (accepted, requests) = connections(&s.edge);
    assert_eq!(requests, 22);
    assert_eq!(
        accepted, before,
        "20 sequential client connections reuse the upstream connection"
    );
}

/// 50 concurrent client connections x 1000 requests each (h2load, over HTTP/1.1 and
/// again over HTTP/2), counted by the origin itself: it accepts at most the 50
/// connections the concurrency needs (the upstream keeps 64 idle), so at least 99.9% of
/// the upstream requests go over a reused connection. The origin keeps idle
/// connections 10 minutes, not 30 s: a slow run may leave some of the 50 idle longer
/// than that (between the two runs, or the least recently used in edge's pool), and a
/// connection the origin closed would be a 51st.
#[test]
fn concurrent_requests_reuse_upstream_connections() {
    let s = setup("600");
    let (before, requests_before) = connections(&s.edge);
    let url = format!("https://localhost:{}/status/200", s.edge.port);
    for proto in ["--h1", "--npn-list=h2"] {
        let out = Command::new("h2load")
            .args(["-n", "50000", "-c", "50", "-t", "1", proto, &url])
            .output()
            .expect("h2load (Debian's nghttp2-client)");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            stdout.contains("50000 succeeded, 0 failed, 0 errored, 0 timeout"),
            "h2load {proto}: {stdout}"
        );
    }
    let (after, requests) = connections(&s.edge);
    let new = after - before;
    let upstream_requests = requests - requests_before;
    assert_eq!(upstream_requests, 100_001);
    assert!(
        new <= 50,
        "at most what the concurrency needs: {new} new connections"
    );
    let reuse = 1.0 - new as f64 / upstream_requests as f64;
    eprintln!("{new} new upstream connections for {upstream_requests} requests: reuse {reuse:.5}");
    assert!(reuse >= 0.999, "reuse ratio {reuse}");
}

#[test]
fn origin_faults() {
    let mut s = setup("0.5");
    for proto in ["--http1.1", "--http2"] {
        assert_eq!(
            curl(&s.edge, proto, "/down/x", None).status,
            502,
            "not listening"
        );
        let t = Instant::now();
        assert_eq!(
            curl(&s.edge, proto, "/silent/x", None).status,
            504,
            "never answers"
        );
        let took = t.elapsed();
        assert!(
            took >= Duration::from_millis(900) && took < Duration::from_secs(5),
            "504 after the 1s read timeout: {took:?}"
        );
        assert_eq!(
            curl(&s.edge, proto, "/malformed/x", None).status,
            502,
            "malformed"
        );
        assert_eq!(
            curl(&s.edge, proto, "/status/200", None).status,
            200,
            "still serving"
        );
    }
    // The origin goes silent mid-body: after the read timeout, a truncated response.
    for proto in ["--http1.1", "--http2"] {
        let t = Instant::now();
        let out = Command::new("curl")
            .args(["-sk", proto, "-o", "/dev/null"])
            .arg(format!("https://localhost:{}/silent/stall", s.edge.port))
            .status()
            .unwrap();
        let took = t.elapsed();
        assert!(
            !out.success(),
            "{proto}: a stalled body is not a complete one"
        );
        assert!(
            took >= Duration::from_millis(900) && took < Duration::from_secs(5),
            "{proto}: cut after the 1s read timeout: {took:?}"
        );
    }
    // The origin dies mid-response: the client sees a truncated response.
    for proto in ["--http1.1", "--http2"] {
        let out = Command::new("curl")
            .args(["-sk", proto, "-o", "/dev/null"])
            .arg(format!("https://localhost:{}/cut", s.edge.port))
            .status()
            .unwrap();
        assert!(
            !out.success(),
            "{proto}: a cut response is not a complete one"
        );
        assert_eq!(curl(&s.edge, proto, "/status/200", None).status, 200);
    }
    // The origin answers before reading the upload: its answer is passed on.
    let upload = s.files_dir.0.join("early-upload");
    std::fs::write(&upload, data(4 << 20)).unwrap();
    let seen = curl(&s.edge, "--http1.1", "/early", Some(&upload));
    assert_eq!(seen.status, 413, "the origin's early answer");
    assert_eq!(seen.body, b"too big for me\n");
    assert_eq!(curl(&s.edge, "--http1.1", "/status/200", None).status, 200);
    // Over HTTP/2, curl 7.88 reports the stream's end (the rest of the upload refused)
    // as an error (exit 92) even though the 413 came: only check edge keeps serving.
    let _ = Command::new("curl")
        .args(["-sk", "--http2", "-o", "/dev/null", "--data-binary"])
        .arg(format!("@{}", upload.display()))
        .arg(format!("https://localhost:{}/early", s.edge.port))
        .status()
        .unwrap();
    assert_eq!(curl(&s.edge, "--http2", "/status/200", None).status, 200);
    // The keep-alive race: the origin closes a reused connection on the next request
    // without answering; edge sends it again on a new connection.
    for _ in 0..3 {
        let seen = curl(&s.edge, "--http1.1", "/race", None);
        assert_eq!(
            (seen.status, seen.body.as_slice()),
            (200, &b"race ok\n"[..])
        );
    }
    // The origin closes idle connections after 0.5s: the pool notices before reuse.
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(curl(&s.edge, "--http1.1", "/status/200", None).status, 200);
    assert!(s.edge.alive());
    let _ = &s.origin;
}

/// Bodies stream through edge with back-pressure, over HTTP/1.1 and HTTP/2: a 64 MiB
/// download to a client reading at 20 MB/s from a fast origin, and a 64 MiB upload from
/// a fast client to an origin reading at about 50 MB/s, each raise edge's peak memory by
/// far less than the body.
#[test]
fn streaming_through_a_slow_side_keeps_memory_bounded() {
    const N: usize = 64 << 20;
    const BOUND: u64 = 24 << 20;
    let s = setup("30");
    let bytes = data(N);
    std::fs::write(s.files_dir.0.join("files/big"), &bytes).unwrap();
    let upload = s.files_dir.0.join("big-upload");
    std::fs::write(&upload, &bytes).unwrap();
    assert_eq!(curl(&s.edge, "--http1.1", "/status/200", None).status, 200);
    let before = s.edge.peak_rss();
    for proto in ["--http1.1", "--http2"] {
        let out = Command::new("curl")
            .args(["-sk", proto, "--limit-rate", "20M", "-o", "/dev/null"])
            .args(["-w", "%{http_code} %{size_download}"])
            .arg(format!("https://localhost:{}/files/big", s.edge.port))
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), format!("200 {N}"));
        let seen = curl(&s.edge, proto, "/slow-reader/up", Some(&upload));
        assert_eq!(
            (seen.status, seen.body),
            (200, format!("{N}\n").into_bytes())
        );
        let after = s.edge.peak_rss();
        eprintln!(
            "{proto}: edge peak RSS {} MiB -> {} MiB",
            before >> 20,
            after >> 20
        );
        assert!(after - before < BOUND, "{proto}: {before} -> {after}");
    }
}

/// Every response carries a `Date` (RFC 9110 6.6.1): an upstream's own is passed on,
/// one without gets edge's, over HTTP/1.1 and HTTP/2 (curl).
#[test]
fn responses_carry_the_upstreams_date_or_edges() {
    const DATE: &str = "Sun, 06 Nov 1994 08:49:37 GMT";
    let origin = raw_origin(|mut conn| {
        while let Some((head, _, _)) = read_request_head(&mut conn) {
            let date = if head.windows(10).any(|w| w == b"/with-date") {
                format!("Date: {DATE}\r\n")
            } else {
                String::new()
            };
            let answer = format!("HTTP/1.1 200 OK\r\n{date}Content-Length: 3\r\n\r\nok\n");
            if conn.write_all(answer.as_bytes()).is_err() {
                return;
            }
        }
    });
    let edge = plain_edge("proxy-date", origin);
    for proto in ["--http1.1", "--http2-prior-knowledge"] {
        for (path, from_origin) in [("/with-date", true), ("/without", false)] {
            let out = Command::new("curl")
                .args(["-s", proto, "-D", "-", "-o", "/dev/null"])
                .arg(format!("http://127.0.0.1:{}{path}", edge.port))
                .output()
                .unwrap();
            let head = String::from_utf8_lossy(&out.stdout).to_ascii_lowercase();
            let dates: Vec<&str> = head
                .lines()
                .filter_map(|l| l.strip_prefix("date: "))
                .map(str::trim)
                .collect();
            assert_eq!(dates.len(), 1, "{proto} {path}: {head}");
            if from_origin {
                assert_eq!(dates[0], DATE.to_ascii_lowercase(), "{proto} {path}");
            } else {
                // IMF-fixdate, of today.
                assert!(dates[0].len() == 29 && dates[0].ends_with(" gmt"), "{head}");
                assert_ne!(dates[0], DATE.to_ascii_lowercase());
            }
        }
    }
}

/// [`Edge::plain`] proxying every request to the origin on `port`.
fn plain_edge(name: &str, port: u16) -> Edge {
    Edge::plain(
        name,
        "",
        &format!(r#"proxy_pass "http://127.0.0.1:{port}";"#),
    )
}

/// An origin's answer to one request: 8 MiB, as fast as its client takes them.
fn eight_mib_answer(mut conn: TcpStream) {
    const SIZE: usize = 8 << 20;
    if read_request_head(&mut conn).is_none() {
        return;
    }
    let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {SIZE}\r\n\r\n");
    let _ = conn.write_all(head.as_bytes());
    let piece = vec![b'x'; 64 << 10];
    for _ in 0..SIZE / piece.len() {
        if conn.write_all(&piece).is_err() {
            return;
        }
    }
}

/// An HTTP/2 client that grants every window and then reads nothing holds little of
/// edge's memory: what edge queues for the socket is bounded per stream, and the
/// streams by `max_concurrent_streams`, so 100 streams of an 8 MiB download leave at
/// most a few MiB each side of the socket (nginx's bound is its `proxy_buffers`, 64 KiB
/// a request by default). The client is hyperium's h2 (prior knowledge, plain TCP), its
/// connection left unpolled once the heads are in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_client_that_reads_nothing_holds_little_memory() {
    const STREAMS: usize = 100;
    // Measured +12 to +14 MiB (+35 MiB with h2's default send buffer): room for a
    // dependency's growth, none for the old buffer.
    const BOUND: u64 = 24 << 20;
    let origin = raw_origin(eight_mib_answer);
    let edge = plain_edge("proxy-unread", origin);
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", edge.port))
        .await
        .unwrap();
    let (mut client, mut conn) = h2::client::Builder::new()
        .initial_window_size(i32::MAX as u32)
        .initial_connection_window_size(i32::MAX as u32)
        .handshake::<_, bytes::Bytes>(tcp)
        .await
        .unwrap();
    let before = edge.peak_rss();
    let (pause, paused) = tokio::sync::oneshot::channel::<()>();
    let held = tokio::spawn(async move {
        tokio::select! {
            _ = &mut conn => panic!("the connection ended"),
            _ = paused => {}
        }
        // Held, not polled: its socket is read no more.
        tokio::time::sleep(Duration::from_secs(30)).await;
        drop(conn);
    });
    let mut responses = Vec::new();
    for _ in 0..STREAMS {
        let request = http::Request::get(format!("http://localhost:{}/big", edge.port))
            .body(())
            .unwrap();
        client = client.ready().await.unwrap();
        responses.push(client.send_request(request, true).unwrap().0);
    }
    for response in &mut responses {
        assert_eq!(response.await.unwrap().status(), 200);
    }
    let _ = pause.send(());
    // Let edge fill what it will.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = edge.peak_rss();
    eprintln!("edge peak RSS {} MiB -> {} MiB", before >> 20, after >> 20);
    assert!(after - before < BOUND, "{before} -> {after}");
    held.abort();
}

/// An HTTP/3 client that reads nothing holds little of edge's memory: as over HTTP/2
/// (above), what edge queues for a stream is bounded (h3-tokio's send buffer, 64 KiB
/// in edge), and what QUIC holds unacknowledged by quinn's send window (10 MB a
/// connection). The client is hyperium's h3; its QUIC connection keeps acknowledging,
/// but no body is read, so its per-stream window (quinn's 1.25 MB) stops each stream.
/// Measured: +23 to +24 MiB for 100 streams (+47 MiB with h3-tokio's default 256 KiB).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http3_client_that_reads_nothing_holds_little_memory() {
    const STREAMS: usize = 100;
    const BOUND: u64 = 36 << 20;
    let origin = raw_origin(eight_mib_answer);
    let config = format!(
        r#"http {{
    server {{
        listen "tcp://127.0.0.1:PORT"
        listen "udp://127.0.0.1:PORT"
        ssl_certificate "cert.pem"
        ssl_certificate_key "key.pem"
        location "/" {{ proxy_pass "http://127.0.0.1:{origin}"; }}
    }}
}}
"#
    );
    let edge = Edge::start("proxy-unread-h3", &config, "warn");
    let client = HyperClient::connect(([127, 0, 0, 1], edge.port).into())
        .await
        .unwrap();
    let before = edge.peak_rss();
    let mut held = Vec::new();
    for _ in 0..STREAMS {
        let (status, stream) = client.get_unread("/big").await.unwrap();
        assert_eq!(status, 200);
        held.push(stream);
    }
    // Let edge fill what it will.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = edge.peak_rss();
    eprintln!("edge peak RSS {} MiB -> {} MiB", before >> 20, after >> 20);
    assert!(after - before < BOUND, "{before} -> {after}");
    drop(held);
}

/// A server of an upstream that refuses connections: each request goes on to the next
/// server (nginx's `proxy_next_upstream error timeout`), and the refusing server is
/// then skipped for a while.
#[test]
fn a_refused_connection_tries_the_next_server() {
    let s = setup("30");
    let (before, requests_before) = connections(&s.edge);
    for i in 0..10 {
        let proto = if i % 2 == 0 { "--http1.1" } else { "--http2" };
        let seen = curl(&s.edge, proto, "/half-down/headers", None);
        assert_eq!(seen.status, 200, "request {i} ({proto})");
    }
    let (after, requests) = connections(&s.edge);
    assert_eq!(
        requests - requests_before,
        11,
        "each request reached the origin once"
    );
    assert_eq!(after, before, "over the one pooled connection");
}

/// Edge with its log kept, proxying `/` to an upstream "backends" of `servers` (its
/// `server` lines), with a 1 s `proxy_connect_timeout`.
fn upstream_edge(name: &str, servers: &str) -> Edge {
    upstream_edge_with(name, servers, "")
}

/// [`upstream_edge`] with more `settings` in its server block.
fn upstream_edge_with(name: &str, servers: &str, settings: &str) -> Edge {
    let config = format!(
        r#"
http {{
    upstream "backends" {{
        {servers}
    }}
    server {{
        listen "tcp://127.0.0.1:PORT"
        server_name "localhost"
        ssl_certificate "cert.pem"
        ssl_certificate_key "key.pem"
        proxy_connect_timeout "1s"
        {settings}
        location "/" {{ proxy_pass "http://backends"; }}
    }}
}}
"#
    );
    Edge::start_logged(name, &config, "warn")
}

/// The statuses of `n` requests for `path` made by one curl, one after the other over
/// one connection (milliseconds apart).
fn curl_batch(edge: &Edge, path: &str, n: usize) -> Vec<u16> {
    curl_batch_with(edge, &[], path, n)
}

/// [`curl_batch`] with more curl `args` (a method, a body).
fn curl_batch_with(edge: &Edge, args: &[&str], path: &str, n: usize) -> Vec<u16> {
    let out = Command::new("curl")
        .args(["-sk", "-o", "/dev/null", "-w", "%{http_code}\n"])
        .args(args)
        .arg(format!("https://localhost:{}{path}?[1-{n}]", edge.port))
        .output()
        .unwrap();
    assert!(out.status.success(), "curl: {}", out.status);
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect()
}

/// A server that refuses connections, `max_fails=2 fail_timeout=1s`, beside a live one:
/// the round robin tries it every other request until its second failure within 1 s,
/// then skips it for 1 s, then tries it again: its first failure then marks it again
/// (as nginx: no success came in between). Each try is one warning in edge's log
/// ("connecting: ...: trying" the live server); every request gets the live server's
/// 200 all along.
#[test]
fn max_fails_within_fail_timeout_mark_a_server_for_fail_timeout() {
    let origin = Origin::script("30");
    let dead = free_port();
    let edge = upstream_edge(
        "max-fails",
        &format!(
            r#"server "127.0.0.1:{}"
        server "127.0.0.1:{dead}" max_fails=2 fail_timeout="1s""#,
            origin.port
        ),
    );
    let tries = || edge.log().matches(": trying ").count();
    assert_eq!(curl_batch(&edge, "/headers", 10), [200; 10]);
    assert_eq!(tries(), 2, "tried twice, then skipped:\n{}", edge.log());
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(curl_batch(&edge, "/headers", 10), [200; 10]);
    assert_eq!(
        tries(),
        3,
        "tried again after fail_timeout, once, then skipped:\n{}",
        edge.log()
    );
}

/// Whether [`flaky`] fails.
static FLAKY_FAILS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

/// An origin that closes each connection without answering while [`FLAKY_FAILS`], and
/// else answers 200.
fn flaky(mut conn: TcpStream) {
    let _ = conn.read(&mut [0; 1024]);
    if !FLAKY_FAILS.load(std::sync::atomic::Ordering::Relaxed) {
        let _ =
            conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    }
}

/// A server marked by `max_fails=2` and tried again after `fail_timeout` is marked again
/// at its first failure; once one of its requests succeeds, its failures are forgotten
/// and it takes `max_fails` failures again (as nginx).
#[test]
fn a_success_after_the_mark_forgets_the_failures() {
    use std::sync::atomic::Ordering;
    let origin = Origin::script("30");
    let port = raw_origin(flaky);
    let edge = upstream_edge(
        "success-forgets",
        &format!(
            r#"server "127.0.0.1:{port}" max_fails=2 fail_timeout="1s"
        server "127.0.0.1:{}""#,
            origin.port
        ),
    );
    let tries = || edge.log().matches(": trying ").count();
    assert_eq!(curl_batch(&edge, "/headers", 4), [200; 4]);
    assert_eq!(tries(), 2, "{}", edge.log());
    std::thread::sleep(Duration::from_millis(1200));
    FLAKY_FAILS.store(false, Ordering::Relaxed);
    assert_eq!(curl_batch(&edge, "/headers", 2), [200; 2]);
    FLAKY_FAILS.store(true, Ordering::Relaxed);
    assert_eq!(curl_batch(&edge, "/headers", 4), [200; 4]);
    assert_eq!(tries(), 4, "two failures again:\n{}", edge.log());
}

/// A server that never answers (past `proxy_read_timeout`), one that closes each
/// connection without answering and one that answers a malformed head, each
/// `max_fails=2`, before a live one: a GET goes on from each to the next (nginx's
/// `proxy_next_upstream error timeout`) and gets the live server's 200; each failure
/// counts, so each is tried twice, then skipped.
#[test]
fn a_failure_after_connecting_tries_the_next_server_and_counts_as_a_failure() {
    let origin = Origin::script("30");
    let (silent, closing, malformed) = failing_origins();
    let edge = upstream_edge_with(
        "after-connecting",
        &format!(
            r#"server "127.0.0.1:{silent}" max_fails=2 fail_timeout="30s"
        server "127.0.0.1:{closing}" max_fails=2 fail_timeout="30s"
        server "127.0.0.1:{malformed}" max_fails=2 fail_timeout="30s"
        server "127.0.0.1:{}""#,
            origin.port
        ),
        r#"proxy_read_timeout "1s""#,
    );
    let disabled = || edge.log().matches("temporarily disabled").count();
    for i in 0.. {
        assert!(i < 20, "not all marked:\n{}", edge.log());
        assert_eq!(curl(&edge, "--http1.1", "/status/200", None).status, 200);
        if disabled() == 3 {
            break;
        }
    }
    let log = edge.log();
    for what in [
        "timed out reading the response head: trying",
        "connection closed before the response: trying",
        "malformed response: malformed status line or header: trying",
    ] {
        assert_eq!(log.matches(what).count(), 2, "{what}:\n{log}");
    }
    // All three skipped: no new try.
    assert_eq!(curl_batch(&edge, "/headers", 6), [200; 6]);
    assert_eq!(edge.log().matches(": trying").count(), 6, "{}", edge.log());
}

/// Local origins that fail once connected: one that never answers, one that closes each
/// connection without answering, one that answers a malformed head.
fn failing_origins() -> (u16, u16, u16) {
    let silent = raw_origin(|_conn| std::thread::sleep(Duration::from_secs(30)));
    let closing = raw_origin(|mut conn| {
        // The whole request first: a close while edge still waits for its client's
        // body is not the server's failure.
        if let Some((read, body_start, length)) = read_request_head(&mut conn) {
            let mut left = (body_start + length).saturating_sub(read.len());
            let mut buf = [0; 1024];
            while left > 0 {
                match conn.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => left = left.saturating_sub(n),
                }
            }
        }
    });
    let malformed = raw_origin(|mut conn| {
        let _ = conn.read(&mut [0; 1024]);
        let _ = conn.write_all(b"HTTP/1.1 2000 Nope\r\nContent-Length: 0\r\n\r\n");
    });
    (silent, closing, malformed)
}

/// A request that cannot be sent again is answered with its server's failure, not
/// passed on (as nginx): a POST once sent, and a PUT whose body edge began to send. The
/// failure still counts: with `max_fails=2`, the closing server is tried twice, then
/// skipped.
#[test]
fn a_request_that_cannot_be_sent_again_is_not_passed_on_and_counts() {
    let origin = Origin::script("30");
    let (_, closing, _) = failing_origins();
    let servers = format!(
        r#"server "127.0.0.1:{closing}" max_fails=2 fail_timeout="30s"
        server "127.0.0.1:{}""#,
        origin.port
    );
    for (name, args) in [
        ("post", &["-X", "POST"][..]),
        ("put", &["-X", "PUT", "--data-binary", "x"][..]),
    ] {
        let edge = upstream_edge("not-passed", &servers);
        assert_eq!(
            curl_batch_with(&edge, args, "/headers", 6),
            [502, 200, 502, 200, 200, 200],
            "{name}:\n{}",
            edge.log()
        );
        assert_eq!(edge.log().matches(": trying").count(), 0, "{name}");
        assert_eq!(edge.log().matches("temporarily disabled").count(), 1);
    }
}

/// A server that gives up on a request body while its client is slow to send it (here
/// it closes 300 ms after the first piece, the client sends the rest after 1 s) fails
/// that request (502: the body cannot be sent again) but is not counted toward
/// `max_fails`: else slow uploads could have every server marked.
#[test]
fn a_server_giving_up_on_a_slow_clients_body_is_not_counted() {
    let origin = Origin::script("30");
    let impatient = raw_origin(|mut conn| {
        let _ = conn.read(&mut [0; 1024]);
        std::thread::sleep(Duration::from_millis(300));
    });
    let edge = upstream_edge(
        "slow-client",
        &format!(
            r#"server "127.0.0.1:{impatient}"
        server "127.0.0.1:{}""#,
            origin.port
        ),
    );
    let mut curl = Command::new("curl")
        .args([
            "-sk",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-X",
            "PUT",
            "-T",
            "-",
        ])
        .args(["-H", "Expect:"])
        .arg(format!("https://localhost:{}/upload", edge.port))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = curl.stdin.take().unwrap();
    stdin.write_all(b"hello").unwrap();
    std::thread::sleep(Duration::from_secs(1));
    let _ = stdin.write_all(b"world");
    drop(stdin);
    // curl, still uploading when the 502 comes, may see the connection close first.
    let _ = curl.wait();
    let log = edge.log();
    assert!(
        log.contains("PUT /upload: connection closed before the response: answering 502"),
        "{log}"
    );
    assert_eq!(log.matches("temporarily disabled").count(), 0, "{log}");
}

/// When the server tried fails and the only other one is marked unavailable, the
/// answer is 502 "no live upstreams", as nginx, not the failure's own 504; when every
/// server was tried, the last failure's own status.
#[test]
fn a_failure_with_the_other_servers_marked_is_no_live_upstreams() {
    let (silent, _, _) = failing_origins();
    let refused = free_port();
    let edge = upstream_edge_with(
        "next-no-live",
        &format!(
            r#"server "127.0.0.1:{refused}" fail_timeout="30s"
        server "127.0.0.1:{silent}" max_fails=0"#
        ),
        r#"proxy_read_timeout "1s""#,
    );
    assert_eq!(
        curl(&edge, "--http1.1", "/x", None).status,
        504,
        "both tried: the silent server's timeout"
    );
    assert_eq!(
        curl(&edge, "--http1.1", "/x", None).status,
        502,
        "the refusing server marked"
    );
    let log = edge.log();
    let no_live: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("no live upstreams"))
        .collect();
    assert_eq!(no_live.len(), 1, "{log}");
    assert!(
        no_live[0].contains("timed out reading the response head: no live upstreams"),
        "{log}"
    );
}

/// A server that never completes the TCP handshake (its listen queue is full, so the
/// kernel drops the SYNs) times out after `proxy_connect_timeout`, and the request goes
/// on to the next server; the timeout counts toward `max_fails=2` as a refusal does.
#[test]
fn a_connect_timeout_tries_the_next_server_and_counts_as_a_failure() {
    use socket2::{Domain, Socket, Type};
    let origin = Origin::script("30");
    let hole = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    hole.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .unwrap();
    hole.listen(0).unwrap();
    let hole_addr = hole.local_addr().unwrap().as_socket().unwrap();
    // Never accepted: one connection fills the queue of a listen(0) socket.
    let _queued = TcpStream::connect(hole_addr).unwrap();
    assert!(
        TcpStream::connect_timeout(&hole_addr, Duration::from_millis(300)).is_err(),
        "the full queue drops SYNs"
    );
    let edge = upstream_edge(
        "connect-timeout",
        &format!(
            r#"server "{hole_addr}" max_fails=2
        server "127.0.0.1:{}""#,
            origin.port
        ),
    );
    // The round robin's order: hole, live, hole (its second failure), then live only.
    // Times are curl's, from its TLS handshake's end to the response's first byte:
    // edge's part, without curl's start and handshake.
    let slow = [true, false, true, false, false];
    for (i, slow) in slow.into_iter().enumerate() {
        let out = Command::new("curl")
            .args(["-sk", "--http1.1", "-o", "/dev/null"])
            .args([
                "-w",
                "%{http_code} %{time_appconnect} %{time_starttransfer}",
            ])
            .arg(format!("https://localhost:{}/status/200", edge.port))
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let fields: Vec<&str> = stdout.split_whitespace().collect();
        assert_eq!(fields.first(), Some(&"200"), "request {i}: {stdout}");
        let secs = |field: &str| Duration::from_secs_f64(field.parse().unwrap());
        let took = secs(fields[2]).saturating_sub(secs(fields[1]));
        if slow {
            // One connect timeout, not two: the log's count below tells too.
            assert!(
                took >= Duration::from_millis(900) && took < Duration::from_millis(2500),
                "request {i}: the 1 s connect timeout, then the live server: {took:?}"
            );
        } else {
            assert!(
                took < Duration::from_millis(900),
                "request {i}: the live server at once: {took:?}"
            );
        }
    }
    assert_eq!(edge.log().matches("timed out connecting").count(), 2);
}

/// When every server of an upstream is marked unavailable, a request is answered 502
/// without trying any, and edge logs "no live upstreams" with the upstream's name, as
/// nginx; as nginx too, that unmarks them all: the next request tries them again, and
/// gets an answer from a server back up, within `fail_timeout` of the marks.
#[test]
fn all_servers_marked_unavailable_is_no_live_upstreams() {
    let (a, b) = (free_port(), free_port());
    let edge = upstream_edge(
        "no-live",
        &format!(
            r#"server "127.0.0.1:{a}"
        server "127.0.0.1:{b}""#
        ),
    );
    let seen = curl(&edge, "--http1.1", "/x", None);
    assert_eq!(seen.status, 502, "both refused");
    let refused = edge.log().matches("refused").count();
    assert_eq!(refused, 2, "one warning per server:\n{}", edge.log());
    assert_eq!(curl(&edge, "--http2", "/x", None).status, 502);
    let log = edge.log();
    assert_eq!(log.matches("refused").count(), 2, "no new try:\n{log}");
    let no_live: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("no live upstreams"))
        .collect();
    assert_eq!(no_live.len(), 1, "{log}");
    assert!(no_live[0].contains("backends"), "{log}");
    // Server `a` comes back well within the 10 s fail_timeout.
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/origins/origin.py");
    let _origin = Origin::spawn(&[script, &a.to_string()], a);
    assert_eq!(curl(&edge, "--http1.1", "/status/200", None).status, 200);
    assert_eq!(edge.log().matches("no live upstreams").count(), 1);
}

/// `proxy_total_timeout` bounds the whole exchange even when no single read is slow
/// enough for `proxy_read_timeout`: 504 before the response head, a truncated response
/// after it. The limit is 1 s and the origin takes 5 s; the times, curl's start and
/// TLS handshake included, are bounded at 3 s.
#[test]
fn total_timeout() {
    let s = setup("30");
    for proto in ["--http1.1", "--http2"] {
        let t = Instant::now();
        assert_eq!(curl(&s.edge, proto, "/total/slow-head", None).status, 504);
        let took = t.elapsed();
        assert!(took < Duration::from_secs(3), "{proto}: 504 after {took:?}");

        let t = Instant::now();
        let out = Command::new("curl")
            .args(["-sk", proto, "-o", "/dev/null", "-w", "%{http_code}"])
            .arg(format!("https://localhost:{}/total/trickle", s.edge.port))
            .output()
            .unwrap();
        let took = t.elapsed();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "200");
        assert!(!out.status.success(), "{proto}: the body is cut short");
        assert!(took < Duration::from_secs(3), "{proto}: cut after {took:?}");
        assert_eq!(curl(&s.edge, proto, "/status/200", None).status, 200);
    }
}

/// `proxy_total_timeout` also cuts a response body that a fast upstream has ready
/// sooner than a slow client takes it (20 MiB at 2 MB/s: 10 s without the limit).
#[test]
fn total_timeout_with_a_slow_client() {
    const N: usize = 20 << 20;
    let s = setup("30");
    std::fs::create_dir_all(s.files_dir.0.join("files/total")).unwrap();
    std::fs::write(s.files_dir.0.join("files/total/big"), data(N)).unwrap();
    for proto in ["--http1.1", "--http2"] {
        let t = Instant::now();
        let out = Command::new("curl")
            .args(["-sk", proto, "--limit-rate", "2M", "-o", "/dev/null"])
            .args(["-w", "%{http_code} %{size_download}"])
            .arg(format!("https://localhost:{}/files/total/big", s.edge.port))
            .output()
            .unwrap();
        let took = t.elapsed();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(!out.status.success(), "{proto}: cut short: {stdout}");
        assert!(stdout.starts_with("200 "), "{proto}: {stdout}");
        // What the socket buffers already held still reaches the client after the cut
        // (megabytes, seconds at this rate on a loaded machine): the bytes tell, not
        // the time.
        let got: usize = stdout[4..].parse().unwrap();
        assert!(got < N, "{proto}: {got} bytes after {took:?}");
        assert_eq!(curl(&s.edge, proto, "/status/200", None).status, 200);
    }
}

/// The milliseconds after which the origin saw each `/slow` request's connection closed,
/// once it has seen `n` of them or `within` has passed.
fn slow_drops(origin: &Origin, n: usize, within: Duration) -> Vec<u64> {
    let deadline = Instant::now() + within;
    loop {
        let mut s = TcpStream::connect(("127.0.0.1", origin.port)).unwrap();
        s.write_all(b"GET /slow-report HTTP/1.1\r\nHost: o\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut answer = Vec::new();
        s.read_to_end(&mut answer).unwrap();
        let body = answer.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        let v: serde_json::Value = serde_json::from_slice(&answer[body..]).unwrap();
        let dropped: Vec<u64> = v["dropped"]
            .as_array()
            .unwrap()
            .iter()
            .map(|ms| ms.as_u64().unwrap())
            .collect();
        if dropped.len() >= n || Instant::now() >= deadline {
            return dropped;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Asserts that the origin has seen the `n`th `/slow` connection closed (waiting up to
/// 5 s for it), after a number of milliseconds in `ms`.
fn nth_slow_drop_within(origin: &Origin, n: usize, case: &str, ms: std::ops::Range<u64>) {
    let dropped = slow_drops(origin, n, Duration::from_secs(5));
    assert_eq!(
        dropped.len(),
        n,
        "{case}: the upstream connection was not closed: {dropped:?}"
    );
    let took = dropped[n - 1];
    assert!(
        ms.contains(&took),
        "{case}: the upstream connection closed after {took} ms"
    );
}

/// A client that goes away while its proxied request waits for the upstream cancels it,
/// as nginx with `proxy_ignore_client_abort off`: the upstream connection is closed at
/// once (counted from the origin's side), not kept until the answer or
/// `proxy_read_timeout`. Over TLS and plain HTTP/1.1, closing or only shutting down the
/// sending side; over HTTP/2 by the stream's reset; over HTTP/3 by the stream's cancel
/// (aioquic) or the connection's close. Pipelined requests, whether in one
/// write or arriving while the first waits, are all answered.
///
/// Each client gives up after 1 s, counted from before its handshake and the proxy hop
/// (which a loaded machine may stretch to hundreds of ms): the origin, counting from
/// the request's arrival, sees the close after 0.5 to 2.5 s, its answer being due at
/// 5 s.
#[test]
fn a_client_gone_before_the_answer_cancels_the_upstream_request() {
    let s = setup("30");
    let plain = plain_edge("proxy-client-gone", s.origin.port);
    let mut expected = 0;
    let mut check = |case: &str| {
        expected += 1;
        nth_slow_drop_within(&s.origin, expected, case, 500..2500);
    };

    // curl gives up after 1 s: over TLS (HTTP/1.1), and over HTTP/2.
    for proto in ["--http1.1", "--http2"] {
        let status = Command::new("curl")
            .args(["-sk", proto, "-m", "1", "-o", "/dev/null"])
            .arg(format!("https://localhost:{}/slow?ms=5000", s.edge.port))
            .status()
            .unwrap();
        assert!(!status.success(), "{proto}: curl timed out");
        check(proto);
    }

    // HTTP/3 (aioquic): the client cancels the request after 1 s (STOP_SENDING and
    // RESET_STREAM) and its connection serves the next request; then a client that
    // closes its whole connection after 1 s.
    let lines = common::aioquic(
        s.edge.port,
        &[
            "--insecure",
            "cancel-waiting",
            "/slow?ms=5000",
            "--ms",
            "1000",
        ],
    );
    assert_eq!(lines[0]["error"], "cancelled", "h3 cancel: {lines:?}");
    assert_eq!(lines[1]["status"], 404, "h3 after the cancel: {lines:?}");
    check("h3 cancel");
    let lines = common::aioquic(
        s.edge.port,
        &["--insecure", "--timeout", "1", "get", "/slow?ms=5000"],
    );
    assert_eq!(lines[0]["error"], "timeout", "h3 close: {lines:?}");
    check("h3 connection closed");

    // Plain HTTP/1.1: the client closes after 1 s.
    let mut c = TcpStream::connect(("127.0.0.1", plain.port)).unwrap();
    c.write_all(b"GET /slow?ms=5000 HTTP/1.1\r\nHost: h\r\n\r\n")
        .unwrap();
    std::thread::sleep(Duration::from_secs(1));
    drop(c);
    check("plain close");

    // A client that shuts down its sending side after 1 s but still reads: cancelled
    // too (as nginx), and its connection closed without an answer (which would come
    // 4 s after the shutdown).
    let mut c = TcpStream::connect(("127.0.0.1", plain.port)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    c.write_all(b"GET /slow?ms=5000 HTTP/1.1\r\nHost: h\r\n\r\n")
        .unwrap();
    std::thread::sleep(Duration::from_secs(1));
    let t = Instant::now();
    c.shutdown(std::net::Shutdown::Write).unwrap();
    let mut answer = Vec::new();
    let _ = c.read_to_end(&mut answer);
    let took = t.elapsed();
    assert!(
        answer.is_empty() && took < Duration::from_millis(2500),
        "half-closed: {:?} after {took:?}",
        String::from_utf8_lossy(&answer)
    );
    check("half-closed");

    // Pipelined: the second request in the same write, then arriving while the first
    // waits for its answer. Both are answered, in order.
    let first = &b"GET /slow?ms=300 HTTP/1.1\r\nHost: h\r\n\r\n"[..];
    let second = &b"GET /status/200 HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"[..];
    for apart in [None, Some(Duration::from_millis(100))] {
        let mut c = TcpStream::connect(("127.0.0.1", plain.port)).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        match apart {
            None => c.write_all(&[first, second].concat()).unwrap(),
            Some(pause) => {
                c.write_all(first).unwrap();
                std::thread::sleep(pause);
                c.write_all(second).unwrap();
            }
        }
        let mut answer = Vec::new();
        c.read_to_end(&mut answer).unwrap();
        let answer = String::from_utf8_lossy(&answer);
        let slow = answer.find("slow\n");
        let status = answer.find("status\n");
        assert!(
            answer.starts_with("HTTP/1.1 200 ")
                && answer.matches("HTTP/1.1 200 ").count() == 2
                && slow.is_some()
                && slow < status,
            "pipelined ({apart:?} apart): {answer}"
        );
    }
    assert_eq!(slow_drops(&s.origin, 0, Duration::ZERO).len(), expected);
}

/// A client that goes away after the head of its answer, while the body waits for the
/// upstream, cancels the upstream response too: the upstream connection is closed at
/// once, not kept until the next piece comes or `proxy_read_timeout`. Otherwise each
/// reset stream would leave an upstream connection behind, past the stream limit that
/// the reset freed. curl over HTTP/1.1 and HTTP/2 gives up after 1 s (closing its
/// connection); over HTTP/3, aioquic cancels the stream after the first piece, or closes
/// its connection after 1 s. The origin sends the head and a first piece, then the
/// rest after 5 s.
#[test]
fn a_client_gone_during_the_answer_cancels_the_upstream_response() {
    let s = setup("30");
    let url = format!("https://localhost:{}/slow?ms=5000&head=1", s.edge.port);
    let mut expected = 0;
    let mut check = |case: &str, ms: std::ops::Range<u64>| {
        expected += 1;
        nth_slow_drop_within(&s.origin, expected, case, ms);
    };
    for proto in ["--http1.1", "--http2"] {
        let out = Command::new("curl")
            .args(["-sk", proto, "-m", "1", "-w", "%{http_code}"])
            .arg(&url)
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "start\n200",
            "{proto}: the head and first piece"
        );
        assert_eq!(out.status.code(), Some(28), "{proto}: curl timed out");
        check(proto, 500..2500);
    }
    let path = "/slow?ms=5000&head=1";
    let lines = common::aioquic(
        s.edge.port,
        &["--insecure", "cancel-download", path, "--after", "1"],
    );
    assert_eq!(lines[0]["error"], "cancelled", "h3 cancel: {lines:?}");
    assert_eq!(lines[1]["status"], 404, "h3 after the cancel: {lines:?}");
    check("h3 cancel", 0..2000);
    let lines = common::aioquic(s.edge.port, &["--insecure", "--timeout", "1", "get", path]);
    assert_eq!(lines[0]["status"], 200, "h3 close: {lines:?}");
    assert_eq!(lines[0]["error"], "timeout", "h3 close: {lines:?}");
    check("h3 connection closed", 500..2500);
}

/// HTTP/3's "rapid reset" shape: a client that opens requests and cancels each once its
/// handler has started (STOP_SENDING, as aioquic and curl do) frees the stream at once,
/// so the concurrent-stream limit never applies; edge closes such a connection with
/// H3_EXCESSIVE_LOAD after about 100 cancels rather than start upstream exchanges
/// without end, and a fresh connection is served. Raw frames, as HTTP/2's flood tests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rapid_cancels_over_http3_close_the_connection() {
    use support::{raw, tls};
    let s = setup("30");
    let addr: SocketAddr = ([127, 0, 0, 1], s.edge.port).into();
    let quic = tls::connect(&tls::client_endpoint(), addr).await;
    let _control = raw::open_control(&quic).await;
    let cancelled = quinn::VarInt::from_u32(0x10c);
    let mut sent = 0;
    'flood: while sent < 2000 {
        let mut batch = Vec::new();
        for _ in 0..10 {
            let Ok((mut send, recv)) = quic.open_bi().await else {
                break 'flood;
            };
            let head = raw::get_headers("/silent/flood");
            if send.write_all(&head).await.is_err() || send.finish().is_err() {
                break 'flood;
            }
            batch.push((send, recv));
        }
        // Long enough for the handlers to start their upstream exchanges.
        tokio::time::sleep(Duration::from_millis(30)).await;
        for (_send, mut recv) in batch {
            let _ = recv.stop(cancelled);
        }
        sent += 10;
    }
    assert_eq!(
        raw::close_code(&quic).await,
        Some(0x107),
        "H3_EXCESSIVE_LOAD after {sent} requests"
    );
    assert!((100..=400).contains(&sent), "closed after {sent} requests");
    let h3 = HyperClient::connect(addr).await.unwrap();
    assert_eq!(h3.get("/status/200").await.unwrap().status, 200);
}
