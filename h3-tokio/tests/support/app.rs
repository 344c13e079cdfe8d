//! The application contract every test server implements (hyperium's server in
//! [`super::hyper_server`], and ours), as pure helpers.
//!
//! # Routes
//!
//! | Request           | Response |
//! |-------------------|----------|
//! | `GET /hello`      | 200, headers `content-type: text/plain` and `x-test: yes`, body `"hello world\n"` ([`HELLO_BODY`]). |
//! | `GET /bytes/N`    | 200, header `content-length: N`, body = `pattern(N)` (N bytes), streamed in [`CHUNK`]-sized pieces (never buffered: `/bytes/1073741824` runs in bounded memory). |
//! | `POST /sha256`    | Reads the whole request body; 200 with body = lowercase hex SHA-256 of the body + `"\n"`. The response trailers are the request's trailers, same names and values; no trailers if the request had none. |
//! | `POST /echo`      | 200, streams the request body back as the response body as it arrives. |
//! | `GET /trailers`   | 200, body `"body\n"` ([`TRAILERS_BODY`]), trailers `x-trailer-one: 1` and `x-trailer-two: 2` ([`trailers_response`]). |
//! | anything else     | 404, body `"not found\n"` ([`NOT_FOUND_BODY`]). |
//!
//! Routing matches the method and the URI path exactly (the query is ignored); `N` is a
//! decimal `u64`. [`route`] implements this table.

use std::sync::OnceLock;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method};
use sha2::{Digest, Sha256};

/// Body of `GET /hello`.
pub const HELLO_BODY: &[u8] = b"hello world\n";
/// Body of `GET /trailers`.
pub const TRAILERS_BODY: &[u8] = b"body\n";
/// Body of every 404.
pub const NOT_FOUND_BODY: &[u8] = b"not found\n";
/// Chunk size for streamed bodies (64 KiB).
pub const CHUNK: usize = 64 * 1024;
/// The pattern's period: byte `i` of every pattern is `(i % PERIOD) as u8`.
pub const PERIOD: usize = 251;

/// A route of the contract, as selected by [`route`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `GET /hello`
    Hello,
    /// `GET /bytes/N`
    Bytes(u64),
    /// `POST /sha256`
    Sha256,
    /// `POST /echo`
    Echo,
    /// `GET /trailers`
    Trailers,
    /// Anything else: 404.
    NotFound,
}

/// Selects the route for `method` and `path` (the URI path, without the query).
pub fn route(method: &Method, path: &str) -> Route {
    let path = path.split('?').next().unwrap_or(path);
    match (method, path) {
        (&Method::GET, "/hello") => Route::Hello,
        (&Method::POST, "/sha256") => Route::Sha256,
        (&Method::POST, "/echo") => Route::Echo,
        (&Method::GET, "/trailers") => Route::Trailers,
        (&Method::GET, p) => match p.strip_prefix("/bytes/") {
            Some(n) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => {
                n.parse().map_or(Route::NotFound, Route::Bytes)
            }
            _ => Route::NotFound,
        },
        _ => Route::NotFound,
    }
}

/// `n` bytes of the test pattern: byte `i` is `(i % 251) as u8`.
pub fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % PERIOD) as u8).collect()
}

/// Bytes `offset..offset + len` of the infinite test pattern, without copying when
/// `len <= CHUNK` (a slice of one shared buffer).
pub fn pattern_chunk(offset: u64, len: usize) -> Bytes {
    static BUF: OnceLock<Bytes> = OnceLock::new();
    let start = (offset % PERIOD as u64) as usize;
    if len > CHUNK {
        return (0..len).map(|i| ((start + i) % PERIOD) as u8).collect();
    }
    let buf = BUF.get_or_init(|| Bytes::from(pattern(CHUNK + PERIOD)));
    buf.slice(start..start + len)
}

/// Lowercase hex SHA-256 of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// The exact body `POST /sha256` answers for a request body `data`.
pub fn sha256_response_body(data: &[u8]) -> Vec<u8> {
    format!("{}\n", sha256_hex(data)).into_bytes()
}

/// Response headers of `GET /hello` (besides the status).
pub fn hello_headers() -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain"),
    );
    h.insert("x-test", HeaderValue::from_static("yes"));
    h
}

/// Response trailers of `GET /trailers`.
pub fn trailers_response() -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert("x-trailer-one", HeaderValue::from_static("1"));
    h.insert("x-trailer-two", HeaderValue::from_static("2"));
    h
}
