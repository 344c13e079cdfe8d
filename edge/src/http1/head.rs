//! Sans-IO head parsing: the bytes of one request head in, the `http` request parts and
//! the body's framing out, or the status code to refuse it with; and the same for the
//! response heads of upstream servers ([`parse_response_head`]).
//!
//! httparse does the tokenising; everything it tolerates that a proxy must not (bare LF
//! line endings, ambiguous body framing, connection-specific headers) is checked here.

use std::mem::MaybeUninit;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode, Uri, Version};

use super::response::Framing;

/// Most header lines accepted in one request head: beyond, 431.
pub const MAX_HEADERS: usize = 128;

/// How the request body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    /// No body (no Content-Length, no Transfer-Encoding).
    None,
    /// Exactly this many bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// A parsed, validated request head.
#[derive(Debug)]
pub struct RequestHead {
    /// Method, request-target as a URI, version and headers, with the
    /// connection-specific headers removed (Content-Length stays).
    pub parts: http::request::Parts,
    /// The Host header as an authority (it was parsed to validate it), for completing
    /// an origin-form URI without parsing it again.
    pub host: Option<http::uri::Authority>,
    pub body: BodyKind,
    /// The client lets the connection stay open after this request.
    pub keep_alive: bool,
    /// `Expect: 100-continue` on an HTTP/1.1 request (the header is removed).
    pub expect_continue: bool,
    /// The client sent `TE: trailers`: it accepts trailers on a chunked response.
    pub te_trailers: bool,
}

/// Why a request head is refused, and the status to answer with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeadError {
    pub status: StatusCode,
    pub reason: &'static str,
}

impl HeadError {
    fn bad(reason: &'static str) -> HeadError {
        HeadError {
            status: StatusCode::BAD_REQUEST,
            reason,
        }
    }
}

impl std::fmt::Display for HeadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.reason, self.status.as_u16())
    }
}

impl std::error::Error for HeadError {}

/// Where the head that starts at `buf[0]` ends (the index after its empty line), if it
/// is all there. Searching resumes at `from`, so a head arriving in pieces is scanned
/// once overall; pass the previous `buf.len()` minus 2 (or 0).
pub fn find_head_end(buf: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while let Some(p) = memchr::memchr(b'\n', buf.get(i..)?) {
        let nl = i + p;
        match buf.get(nl + 1..nl + 3) {
            Some([b'\n', _]) => return Some(nl + 2),
            Some([b'\r', b'\n']) => return Some(nl + 3),
            None if buf.get(nl + 1) == Some(&b'\n') => return Some(nl + 2),
            _ => {}
        }
        i = nl + 1;
    }
    None
}

/// Whether every line of a head httparse accepted, starting at its first byte, ends in
/// CRLF. httparse also takes bare LF (and empty lines before the first line), but a
/// proxy that reads a different line structure than the next hop is a smuggling
/// vector. httparse allows no LF within a line, so every LF of such a head ends one:
/// the one before each header name, and the last two, are all there are. Looking only
/// there saves a search of the whole head.
fn crlf_lines<'h>(head: &[u8], mut names: impl Iterator<Item = &'h str>) -> bool {
    let base = head.as_ptr() as usize;
    head.ends_with(b"\r\n\r\n")
        && names.all(|name| {
            let at = (name.as_ptr() as usize).wrapping_sub(base);
            at.checked_sub(2).and_then(|i| head.get(i..at)) == Some(&b"\r\n"[..])
        })
}

/// Parses one complete request head (request line, header lines, empty line), as
/// delimited by [`find_head_end`]. `head` is shared by the URI and header values rather
/// than copied.
pub fn parse_head(head: Bytes) -> Result<RequestHead, HeadError> {
    let mut slots = [MaybeUninit::<httparse::Header<'_>>::uninit(); MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    match req.parse_with_uninit_headers(&head, &mut slots) {
        Ok(httparse::Status::Complete(n)) if n == head.len() => {}
        Ok(_) => return Err(HeadError::bad("incomplete request head")),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(HeadError {
                status: StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                reason: "too many header lines",
            })
        }
        Err(httparse::Error::Version) => return parse_other_version(&head, req.path),
        Err(httparse::Error::HeaderName) => return Err(HeadError::bad("invalid header name")),
        Err(httparse::Error::HeaderValue) => return Err(HeadError::bad("invalid header value")),
        Err(_) => return Err(HeadError::bad("malformed request line or header")),
    }
    let (Some(method), Some(target), Some(minor)) = (req.method, req.path, req.version) else {
        return Err(HeadError::bad("incomplete request line"));
    };
    if method.as_ptr() != head.as_ptr() || !crlf_lines(&head, req.headers.iter().map(|h| h.name)) {
        return Err(HeadError::bad("bare LF line ending"));
    }
    let version = if minor == 1 {
        Version::HTTP_11
    } else {
        Version::HTTP_10
    };
    let method =
        Method::from_bytes(method.as_bytes()).map_err(|_| HeadError::bad("invalid method"))?;
    let uri = parse_target(&head, target, &method)?;

    let mut headers = HeaderMap::with_capacity(req.headers.len());
    let mut seen = Seen::default();
    for h in req.headers.iter() {
        let name = HeaderName::from_bytes(h.name.as_bytes())
            .map_err(|_| HeadError::bad("invalid header name"))?;
        let value = HeaderValue::from_maybe_shared(head.slice_ref(h.value))
            .map_err(|_| HeadError::bad("invalid header value"))?;
        seen.note(&name);
        headers.append(name, value);
    }

    let keep_alive = if seen.connection {
        connection_options(&mut headers, version)?
    } else {
        version == Version::HTTP_11
    };
    let body = body_kind(&mut headers, version, &seen)?;
    let host = check_host(&mut headers, &uri, version, &head)?;
    let te_trailers = seen.te
        && headers
            .get_all(header::TE)
            .iter()
            .flat_map(|v| list(v.as_bytes()))
            .any(|t| param_free(t).eq_ignore_ascii_case(b"trailers"));
    let expect_continue =
        seen.expect && version == Version::HTTP_11 && crate::session::asks_continue(&headers);
    if seen.expect {
        // This hop's to answer: it never goes upstream (nginx drops it too).
        headers.remove(header::EXPECT);
    }
    if seen.connection_specific {
        crate::session::remove_connection_specific(&mut headers);
    }

    let (mut parts, ()) = http::Request::new(()).into_parts();
    parts.method = method;
    parts.uri = uri;
    parts.version = version;
    parts.headers = headers;
    Ok(RequestHead {
        parts,
        host,
        body,
        keep_alive,
        expect_continue,
        te_trailers,
    })
}

/// A request head httparse refused for its version (it knows HTTP/1.0 and HTTP/1.1
/// only), its target ending at the end of `target`. A later 1.x is served as 1.1, the
/// highest minor version here (RFC 9110, 2.5), and another major version is answered
/// 505 (RFC 9110, 15.6.6), as nginx does; what is no `HTTP/DIGIT.DIGIT` (RFC 9112, 2.3)
/// before the line's CRLF is a 400.
fn parse_other_version(head: &Bytes, target: Option<&str>) -> Result<RequestHead, HeadError> {
    let bad = HeadError::bad("invalid HTTP version");
    // httparse parsed the target before the version, and one space between them.
    let Some(at) = target.map(|t| t.as_ptr() as usize - head.as_ptr() as usize + t.len() + 1)
    else {
        return Err(bad);
    };
    let Some([b'H', b'T', b'T', b'P', b'/', major, b'.', b'0'..=b'9', b'\r', b'\n']) =
        head.get(at..at + 10)
    else {
        return Err(bad);
    };
    match major {
        b'1' => {
            // Same length: every offset in the copy stays. Rare enough to copy.
            let mut copy = head.to_vec();
            copy[at + 7] = b'1';
            parse_head(copy.into())
        }
        b'2'..=b'9' => Err(HeadError {
            status: StatusCode::HTTP_VERSION_NOT_SUPPORTED,
            reason: "unsupported HTTP major version",
        }),
        _ => Err(bad),
    }
}

/// A parsed, validated response head from an upstream server.
#[derive(Debug)]
pub struct ResponseHead {
    /// Status, version and headers, with the connection-specific headers (and those
    /// named in Connection) removed. Content-Length stays when it describes the body,
    /// or the body a HEAD or 304 answer stands for.
    pub parts: http::response::Parts,
    /// How the response body is delimited.
    pub framing: Framing,
    /// The server lets the connection carry another request after this response.
    pub keep_alive: bool,
    /// It has a `Location` or `Refresh` field (which `proxy_redirect` rewrites).
    pub redirects: bool,
}

/// Parses one complete response head (status line, header lines, empty line), as
/// delimited by [`find_head_end`], for a request with method `method`. Status codes
/// 100 to 999 are accepted. Refusals carry 502 (Bad Gateway): the upstream is at fault.
pub fn parse_response_head(head: Bytes, method: &Method) -> Result<ResponseHead, HeadError> {
    let bad = |reason| HeadError {
        status: StatusCode::BAD_GATEWAY,
        reason,
    };
    let mut slots = [MaybeUninit::<httparse::Header<'_>>::uninit(); MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut []);
    match httparse::ParserConfig::default()
        .parse_response_with_uninit_headers(&mut resp, &head, &mut slots)
    {
        Ok(httparse::Status::Complete(n)) if n == head.len() => {}
        Ok(_) => return Err(bad("incomplete response head")),
        Err(httparse::Error::TooManyHeaders) => return Err(bad("too many header lines")),
        Err(_) => return Err(bad("malformed status line or header")),
    }
    let (Some(code), Some(minor)) = (resp.code, resp.version) else {
        return Err(bad("incomplete status line"));
    };
    if !head.starts_with(b"HTTP/") || !crlf_lines(&head, resp.headers.iter().map(|h| h.name)) {
        return Err(bad("bare LF line ending"));
    }
    let status = StatusCode::from_u16(code).map_err(|_| bad("invalid status code"))?;
    let version = if minor == 1 {
        Version::HTTP_11
    } else {
        Version::HTTP_10
    };
    // Connection-specific headers are read here and never enter the map (no removal
    // afterwards): Connection's options, Transfer-Encoding's codings.
    let mut options = ConnectionOptions::default();
    let mut transfer_encoding = Vec::new();
    let mut content_lengths = 0;
    let mut redirects = false;
    let mut headers = HeaderMap::with_capacity(resp.headers.len());
    for h in resp.headers.iter() {
        if is_nginx_control(h.name.as_bytes()) {
            continue;
        }
        let name =
            HeaderName::from_bytes(h.name.as_bytes()).map_err(|_| bad("invalid header name"))?;
        if crate::session::is_connection_specific(&name) {
            if name == header::CONNECTION {
                options
                    .read(h.value)
                    .map_err(|_| bad("invalid Connection option"))?;
            } else if name == header::TRANSFER_ENCODING {
                transfer_encoding.push(h.value);
            }
            continue;
        }
        if name == header::CONTENT_LENGTH {
            content_lengths += 1;
        }
        redirects |= name == header::LOCATION || h.name.eq_ignore_ascii_case("refresh");
        let value = HeaderValue::from_maybe_shared(head.slice_ref(h.value))
            .map_err(|_| bad("invalid header value"))?;
        headers.append(name, value);
    }
    // Headers the Connection header names are hop-by-hop too, except those framing
    // relies on: a body read with other framing than the upstream meant would leave
    // its rest to be read as the next response on a pooled connection.
    for name in options.named {
        if name != header::HOST
            && name != header::CONTENT_LENGTH
            && name != header::TRANSFER_ENCODING
        {
            headers.remove(name);
        }
    }
    let mut keep_alive = !options.close && (version == Version::HTTP_11 || options.keep_alive);
    let bodiless = *method == Method::HEAD
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    let framing = if bodiless {
        Framing::None
    } else if !transfer_encoding.is_empty() {
        // Decoding only chunked: other codings cannot be passed on hop by hop.
        let mut codings = transfer_encoding
            .iter()
            .flat_map(|v| v.split(|&b| b == b','))
            .map(trim);
        let only_chunked = version == Version::HTTP_11
            && codings
                .next()
                .is_some_and(|t| t.eq_ignore_ascii_case(b"chunked"))
            && codings.next().is_none();
        if !only_chunked {
            return Err(bad("unsupported transfer coding"));
        }
        if content_lengths > 0 && headers.remove(header::CONTENT_LENGTH).is_some() {
            // RFC 9112, 6.3: Transfer-Encoding wins, and the connection must close.
            keep_alive = false;
        }
        Framing::Chunked
    } else if content_lengths == 0 {
        keep_alive = false;
        Framing::Close
    } else {
        let mut length = None;
        // One value that is one number as this edge would write it stays as it is.
        let mut canonical = content_lengths == 1;
        for value in headers.get_all(header::CONTENT_LENGTH) {
            for token in value.as_bytes().split(|&b| b == b',') {
                let token = trim(token);
                let n = parse_length(token).map_err(|e| bad(e.reason))?;
                if length.is_some_and(|l| l != n) {
                    return Err(bad("conflicting Content-Length values"));
                }
                length = Some(n);
                canonical &= token.len() == value.len() && (token.len() == 1 || token[0] != b'0');
            }
        }
        let n = length.ok_or(bad("invalid Content-Length"))?;
        if !canonical {
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(n));
        }
        Framing::Length(n)
    };
    if *method == Method::HEAD || status == StatusCode::NOT_MODIFIED {
        // A HEAD or 304 answer's Content-Length describes a body not sent: keep it, as
        // long as it is one clean number.
        if content_lengths > 0 {
            let lengths: Vec<_> = headers.get_all(header::CONTENT_LENGTH).iter().collect();
            if lengths.len() > 1 || lengths.iter().any(|v| parse_length(v.as_bytes()).is_err()) {
                headers.remove(header::CONTENT_LENGTH);
            }
        }
    } else if framing == Framing::None && content_lengths > 0 {
        headers.remove(header::CONTENT_LENGTH);
    }

    let (mut parts, ()) = http::Response::new(()).into_parts();
    parts.status = status;
    parts.version = version;
    parts.headers = headers;
    Ok(ResponseHead {
        parts,
        framing,
        keep_alive,
        redirects,
    })
}

/// What nginx hides from clients by default and edge has no use for either: `X-Accel-*`,
/// nginx's controls for itself (`X-Accel-Redirect` names an internal path), and
/// `X-Pad`. Checked on the raw name: most names fail at their first byte.
fn is_nginx_control(name: &[u8]) -> bool {
    matches!(name.first(), Some(b'x' | b'X'))
        && (name.len() > 8 && name[..8].eq_ignore_ascii_case(b"x-accel-")
            || name.eq_ignore_ascii_case(b"x-pad"))
}

/// The request-target in one of its four forms (RFC 9112, 3.2), each only where it
/// belongs.
fn parse_target(head: &Bytes, target: &str, method: &Method) -> Result<Uri, HeadError> {
    let uri = Uri::from_maybe_shared(head.slice_ref(target.as_bytes())).map_err(|_| {
        if target.len() > usize::from(u16::MAX) - 1 {
            HeadError {
                status: StatusCode::URI_TOO_LONG,
                reason: "request-target too long",
            }
        } else {
            HeadError::bad("invalid request-target")
        }
    })?;
    let ok = if target.starts_with('/') {
        true
    } else if target == "*" {
        method == Method::OPTIONS
    } else if let Some(scheme) = uri.scheme_str() {
        (scheme == "http" || scheme == "https") && uri.host().is_some_and(|h| !h.is_empty())
    } else {
        method == Method::CONNECT && uri.authority().is_some()
    };
    if !ok {
        return Err(HeadError::bad("invalid request-target form"));
    }
    // Credentials in the target (`http://user@host/`, refused by nginx too) would become
    // the request's Host, `@` and all; a port past 65535 would pass for the default.
    if let Some(authority) = uri.authority() {
        crate::session::check_authority(authority).map_err(HeadError::bad)?;
    }
    // Absolute form with an empty path (`http://h`, `http://h?q`): the path is "/"
    // (RFC 9112 3.2.1); an upstream must not get `?q` as its request-target.
    let empty_path = uri.scheme().is_some()
        && !uri
            .path_and_query()
            .is_some_and(|pq| pq.as_str().starts_with('/'));
    if !empty_path {
        return Ok(uri);
    }
    let mut parts = uri.into_parts();
    let query = parts.path_and_query.as_ref().map_or("", |pq| pq.as_str());
    parts.path_and_query = Some(
        format!("/{query}")
            .parse()
            .map_err(|_| HeadError::bad("invalid request-target"))?,
    );
    Uri::from_parts(parts).map_err(|_| HeadError::bad("invalid request-target"))
}

/// Which headers that need a look after parsing a request has, noted as its map is
/// built: a comparison of each name costs less than a hashed lookup of each of these,
/// and most requests have none of them. A flag means "may still be in the map": the
/// map only loses headers after parsing.
#[derive(Default)]
struct Seen {
    connection: bool,
    content_length: bool,
    transfer_encoding: bool,
    te: bool,
    expect: bool,
    connection_specific: bool,
}

impl Seen {
    fn note(&mut self, name: &HeaderName) {
        if *name == header::CONTENT_LENGTH {
            self.content_length = true;
        } else if *name == header::EXPECT {
            self.expect = true;
        } else if crate::session::is_connection_specific(name) {
            self.connection_specific = true;
            self.connection |= *name == header::CONNECTION;
            self.transfer_encoding |= *name == header::TRANSFER_ENCODING;
            self.te |= *name == header::TE;
        }
    }
}

/// The options of Connection headers.
#[derive(Default)]
struct ConnectionOptions {
    close: bool,
    keep_alive: bool,
    /// Header names: hop-by-hop headers of this message.
    named: Vec<HeaderName>,
}

impl ConnectionOptions {
    /// Reads one Connection value; `Err` on an option that is not a header name.
    fn read(&mut self, value: &[u8]) -> Result<(), ()> {
        for token in list(value) {
            if token.eq_ignore_ascii_case(b"close") {
                self.close = true;
            } else if token.eq_ignore_ascii_case(b"keep-alive") {
                self.keep_alive = true;
            } else {
                self.named
                    .push(HeaderName::from_bytes(token).map_err(|_| ())?);
            }
        }
        Ok(())
    }
}

/// Reads Connection: whether the connection may be kept alive, and drops the headers
/// it names as hop-by-hop (never the ones this edge relies on for framing or routing).
fn connection_options(headers: &mut HeaderMap, version: Version) -> Result<bool, HeadError> {
    let mut options = ConnectionOptions::default();
    for value in headers.get_all(header::CONNECTION) {
        options
            .read(value.as_bytes())
            .map_err(|()| HeadError::bad("invalid Connection option"))?;
    }
    for name in options.named {
        // Framing stays whatever Connection says: a body read with other framing than
        // the sender meant is request smuggling. TE is read after this (RFC 9110,
        // 10.1.4: a client that sends it must name it here) and dropped as
        // connection-specific anyway.
        if name != header::HOST
            && name != header::CONTENT_LENGTH
            && name != header::TRANSFER_ENCODING
            && name != header::TE
        {
            headers.remove(name);
        }
    }
    Ok(!options.close && (version == Version::HTTP_11 || options.keep_alive))
}

/// The body's framing, refusing every ambiguous shape (RFC 9112, 6.3): both
/// Content-Length and Transfer-Encoding, differing lengths, a final coding other than
/// chunked. Codings other than chunked are answered 501 (this edge decodes none).
fn body_kind(
    headers: &mut HeaderMap,
    version: Version,
    seen: &Seen,
) -> Result<BodyKind, HeadError> {
    let mut length = None;
    let mut values = 0;
    let lengths = seen
        .content_length
        .then(|| headers.get_all(header::CONTENT_LENGTH));
    for value in lengths.into_iter().flatten() {
        for token in value.as_bytes().split(|&b| b == b',') {
            let n = parse_length(trim(token))?;
            if length.is_some_and(|l| l != n) {
                return Err(HeadError::bad("conflicting Content-Length values"));
            }
            length = Some(n);
            values += 1;
        }
    }
    if values > 1 {
        // Identical repeats are allowed (RFC 9112, 6.3): pass one clean value on.
        if let Some(n) = length {
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(n));
        }
    }

    if !(seen.transfer_encoding && headers.contains_key(header::TRANSFER_ENCODING)) {
        return Ok(length.map_or(BodyKind::None, BodyKind::Length));
    }
    if version == Version::HTTP_10 {
        return Err(HeadError::bad("Transfer-Encoding in an HTTP/1.0 request"));
    }
    if length.is_some() {
        return Err(HeadError::bad("both Content-Length and Transfer-Encoding"));
    }
    let mut codings = 0;
    let mut chunked_at = None;
    let mut other = false;
    for value in headers.get_all(header::TRANSFER_ENCODING) {
        for token in value.as_bytes().split(|&b| b == b',') {
            let token = trim(token);
            if token.is_empty() {
                return Err(HeadError::bad("empty transfer coding"));
            }
            if token.eq_ignore_ascii_case(b"chunked") {
                if chunked_at.is_some() {
                    return Err(HeadError::bad("chunked applied more than once"));
                }
                chunked_at = Some(codings);
            } else {
                other = true;
            }
            codings += 1;
        }
    }
    if chunked_at != Some(codings - 1) {
        return Err(HeadError::bad("final transfer coding is not chunked"));
    }
    if other {
        return Err(HeadError {
            status: StatusCode::NOT_IMPLEMENTED,
            reason: "unsupported transfer coding",
        });
    }
    Ok(BodyKind::Chunked)
}

/// `1*DIGIT` into a u64: no sign, no hex, no overflow.
fn parse_length(s: &[u8]) -> Result<u64, HeadError> {
    if s.is_empty() {
        return Err(HeadError::bad("invalid Content-Length"));
    }
    s.iter().try_fold(0u64, |n, &b| {
        if !b.is_ascii_digit() {
            return Err(HeadError::bad("invalid Content-Length"));
        }
        n.checked_mul(10)
            .and_then(|n| n.checked_add(u64::from(b - b'0')))
            .ok_or(HeadError::bad("Content-Length overflows"))
    })
}

/// Exactly one valid Host on HTTP/1.1 (RFC 9112, 3.2); with an absolute-form target the
/// target's authority wins and Host is rewritten to match, so nothing downstream can
/// see two different hosts. Gives the Host as an authority, sharing `head`'s bytes.
fn check_host(
    headers: &mut HeaderMap,
    uri: &Uri,
    version: Version,
    head: &Bytes,
) -> Result<Option<http::uri::Authority>, HeadError> {
    let mut hosts = headers.get_all(header::HOST).iter();
    let host = hosts.next();
    if hosts.next().is_some() {
        return Err(HeadError::bad("more than one Host"));
    }
    let authority = match host {
        None if version == Version::HTTP_11 => return Err(HeadError::bad("missing Host")),
        None => None,
        Some(h) => {
            let h = h.as_bytes();
            let authority = if h.is_empty() {
                None
            } else if within(head, h) {
                http::uri::Authority::from_maybe_shared(head.slice_ref(h)).ok()
            } else {
                http::uri::Authority::try_from(h).ok()
            };
            let authority = authority.ok_or(HeadError::bad("invalid Host"))?;
            crate::session::check_authority(&authority).map_err(HeadError::bad)?;
            Some(authority)
        }
    };
    if uri.scheme().is_some() {
        if let Some(authority) = uri.authority() {
            let value = HeaderValue::from_str(authority.as_str())
                .map_err(|_| HeadError::bad("invalid request-target authority"))?;
            headers.insert(header::HOST, value);
        }
    }
    Ok(authority)
}

/// Whether `part` lies inside `whole` (so `whole.slice_ref(part)` shares it).
fn within(whole: &[u8], part: &[u8]) -> bool {
    let (start, end) = (
        whole.as_ptr() as usize,
        whole.as_ptr() as usize + whole.len(),
    );
    let p = part.as_ptr() as usize;
    p >= start && p + part.len() <= end
}

/// The elements of a comma-separated header list, trimmed, empty ones skipped.
fn list(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    crate::session::list_members(value)
        .map(trim)
        .filter(|t| !t.is_empty())
}

/// A list element without its `;` parameters.
fn param_free(token: &[u8]) -> &[u8] {
    trim(token.split(|&b| b == b';').next().unwrap_or(token))
}

fn trim(s: &[u8]) -> &[u8] {
    let start = s.iter().position(|&b| b != b' ' && b != b'\t');
    let end = s.iter().rposition(|&b| b != b' ' && b != b'\t');
    match (start, end) {
        (Some(a), Some(b)) => &s[a..=b],
        _ => &[],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http1::xorshift;

    fn parse(s: &str) -> Result<RequestHead, HeadError> {
        parse_head(Bytes::copy_from_slice(s.as_bytes()))
    }

    fn status(s: &str) -> u16 {
        match parse(s) {
            Ok(_) => 200,
            Err(e) => e.status.as_u16(),
        }
    }

    #[test]
    fn head_end_found_across_pieces() {
        let full = b"GET / HTTP/1.1\r\nHost: a\r\n\r\nrest";
        assert_eq!(find_head_end(full, 0), Some(27));
        for cut in 0..full.len() {
            let found = find_head_end(&full[..cut], 0);
            assert_eq!(found, if cut >= 27 { Some(27) } else { None }, "cut {cut}");
            if found.is_none() {
                // Resuming where the caller left off still finds it.
                assert_eq!(find_head_end(full, cut.saturating_sub(2)), Some(27));
            }
        }
        assert_eq!(find_head_end(b"GET / HTTP/1.1\nHost: a\n\n", 0), Some(24));
        assert_eq!(find_head_end(b"GET / HTTP/1.1\r\n", 0), None);
        assert_eq!(find_head_end(b"ab", 10), None);
    }

    #[test]
    fn origin_form_get() {
        let h = parse("GET /a?b=c HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n\r\n").unwrap();
        assert_eq!(h.parts.method, Method::GET);
        assert_eq!(h.parts.uri, "/a?b=c");
        assert_eq!(h.parts.version, Version::HTTP_11);
        assert_eq!(h.parts.headers["host"], "example.com");
        assert_eq!(h.parts.headers["accept"], "*/*");
        assert_eq!(h.host.as_ref().map(|a| a.as_str()), Some("example.com"));
        assert_eq!(h.body, BodyKind::None);
        assert!(h.keep_alive && !h.expect_continue && !h.te_trailers);
    }

    #[test]
    fn absolute_form_overrides_host() {
        let h = parse("GET http://a.example:8080/p HTTP/1.1\r\nHost: b.example\r\n\r\n").unwrap();
        assert_eq!(h.parts.uri, "http://a.example:8080/p");
        assert_eq!(h.parts.headers["host"], "a.example:8080");
    }

    /// An absolute-form target with an empty path gets "/" as its path, so the path
    /// routed on and the target sent upstream are one and the same.
    #[test]
    fn absolute_form_with_empty_path_gets_slash() {
        for (target, path_and_query) in [
            ("http://a.example?x=1", "/?x=1"),
            ("http://a.example", "/"),
            ("https://a.example:8443?", "/?"),
            ("http://a.example/p?x", "/p?x"),
        ] {
            let h = parse(&format!("GET {target} HTTP/1.1\r\nHost: a.example\r\n\r\n")).unwrap();
            let pq = h.parts.uri.path_and_query().map(|p| p.as_str());
            assert_eq!(pq, Some(path_and_query), "{target}");
            assert_eq!(h.parts.uri.host(), Some("a.example"), "{target}");
        }
    }

    #[test]
    fn target_forms() {
        for (req, want) in [
            ("OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", 200),
            ("GET * HTTP/1.1\r\nHost: a\r\n\r\n", 400),
            ("CONNECT a.example:443 HTTP/1.1\r\nHost: a\r\n\r\n", 200),
            ("GET a.example:443 HTTP/1.1\r\nHost: a\r\n\r\n", 400),
            ("GET ftp://a/b HTTP/1.1\r\nHost: a\r\n\r\n", 400),
            ("GET http://b/x HTTP/1.1\r\nHost: a\r\n\r\n", 200),
            ("GET http://u@b/x HTTP/1.1\r\nHost: a\r\n\r\n", 400),
            ("GET https://u:p@b/ HTTP/1.1\r\nHost: a\r\n\r\n", 400),
            ("CONNECT u@b:443 HTTP/1.1\r\nHost: a\r\n\r\n", 400),
            ("GET http://b:99999/ HTTP/1.1\r\nHost: b\r\n\r\n", 400),
            ("GET http://b:x/ HTTP/1.1\r\nHost: b\r\n\r\n", 400),
            ("GET http://b:/ HTTP/1.1\r\nHost: b\r\n\r\n", 200),
        ] {
            assert_eq!(status(req), want, "{req:?}");
        }
    }

    #[test]
    fn keep_alive_rules() {
        let ka = |s: &str| parse(s).unwrap().keep_alive;
        assert!(ka("GET / HTTP/1.1\r\nHost: a\r\n\r\n"));
        assert!(!ka(
            "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
        ));
        assert!(!ka("GET / HTTP/1.0\r\n\r\n"));
        assert!(ka("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"));
        assert!(!ka(
            "GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n"
        ));
    }

    #[test]
    fn connection_headers_removed() {
        let h = parse(
            "POST / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, x-hop, content-length\r\n\
             X-Hop: 1\r\nKeep-Alive: 5\r\nProxy-Connection: x\r\nTE: trailers;q=1\r\n\
             Upgrade: h2c\r\nContent-Length: 3\r\nX-Keep: 2\r\n\r\n",
        )
        .unwrap();
        let names: Vec<_> = h.parts.headers.keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["host", "content-length", "x-keep"]);
        assert!(h.te_trailers);
        assert_eq!(h.body, BodyKind::Length(3));
    }

    #[test]
    fn te_named_by_connection_still_asks_for_trailers() {
        let h = parse("GET / HTTP/1.1\r\nHost: a\r\nTE: trailers\r\nConnection: TE, close\r\n\r\n")
            .unwrap();
        assert!(h.te_trailers);
        assert!(!h.keep_alive);
        assert!(!h.parts.headers.contains_key("te"));
    }

    #[test]
    fn te_trailers_is_a_list_member_not_a_quoted_word() {
        let te = |value: &str| {
            parse(&format!("GET / HTTP/1.1\r\nHost: a\r\nTE: {value}\r\n\r\n"))
                .unwrap()
                .te_trailers
        };
        assert!(te("gzip, trailers"));
        assert!(te("x;p=\"a, b\", trailers"));
        assert!(!te("x;p=\"a, trailers, b\""));
    }

    #[test]
    fn expect_continue_only_on_11() {
        let h = parse("PUT / HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\n\r\n").unwrap();
        assert!(h.expect_continue);
        assert!(!h.parts.headers.contains_key("expect"));
        let h = parse("PUT / HTTP/1.0\r\nExpect: 100-continue\r\n\r\n").unwrap();
        assert!(!h.expect_continue);
        // A list, over any number of lines; other members do not hide it.
        for expect in [
            "foo, 100-continue",
            "foo\r\nExpect: 100-CONTINUE ",
            "a=b,100-continue,c",
        ] {
            let h = parse(&format!(
                "PUT / HTTP/1.1\r\nHost: a\r\nExpect: {expect}\r\n\r\n"
            ))
            .unwrap();
            assert!(h.expect_continue, "{expect:?}");
            assert!(!h.parts.headers.contains_key("expect"));
        }
        for expect in ["foo", "100-continued", "100-continue;x=1"] {
            let h = parse(&format!(
                "PUT / HTTP/1.1\r\nHost: a\r\nExpect: {expect}\r\n\r\n"
            ))
            .unwrap();
            assert!(!h.expect_continue, "{expect:?}");
            assert!(!h.parts.headers.contains_key("expect"));
        }
    }

    #[test]
    fn content_length_rules() {
        let body = |s: &str| parse(s).map(|h| h.body);
        let req = |cl: &str| format!("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: {cl}\r\n\r\n");
        assert_eq!(body(&req("5")), Ok(BodyKind::Length(5)));
        assert_eq!(body(&req("5, 5")), Ok(BodyKind::Length(5)));
        assert_eq!(
            body(&req("18446744073709551615")),
            Ok(BodyKind::Length(u64::MAX))
        );
        for bad in [
            "+5",
            "-1",
            "0x10",
            "5, 6",
            "",
            "5,",
            "1 0",
            "18446744073709551616",
        ] {
            assert_eq!(status(&req(bad)), 400, "{bad:?}");
        }
        let two = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n";
        let h = parse(two).unwrap();
        assert_eq!(h.body, BodyKind::Length(5));
        assert_eq!(h.parts.headers.get_all("content-length").iter().count(), 1);
        let differ = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n";
        assert_eq!(status(differ), 400);
    }

    #[test]
    fn transfer_encoding_rules() {
        let req =
            |te: &str| format!("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: {te}\r\n\r\n");
        assert_eq!(parse(&req("chunked")).unwrap().body, BodyKind::Chunked);
        assert_eq!(parse(&req("Chunked")).unwrap().body, BodyKind::Chunked);
        assert_eq!(status(&req("chunked, identity")), 400);
        assert_eq!(status(&req("identity")), 400);
        assert_eq!(status(&req("chunked, chunked")), 400);
        assert_eq!(status(&req(", chunked")), 400);
        assert_eq!(status(&req("gzip, chunked")), 501);
        let both =
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(status(both), 400);
        let split = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: x\r\n\r\n";
        assert_eq!(status(split), 400);
        assert_eq!(
            status("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"),
            400
        );
        // Naming it in Connection does not make the body unframed.
        let named = "POST / HTTP/1.1\r\nHost: a\r\nConnection: transfer-encoding\r\n\
                     Transfer-Encoding: chunked\r\n\r\n";
        assert_eq!(parse(named).unwrap().body, BodyKind::Chunked);
    }

    #[test]
    fn host_rules() {
        assert_eq!(status("GET / HTTP/1.1\r\n\r\n"), 400);
        assert_eq!(status("GET / HTTP/1.0\r\n\r\n"), 200);
        assert_eq!(status("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"), 400);
        assert_eq!(status("GET / HTTP/1.1\r\nHost:\r\n\r\n"), 400);
        assert_eq!(status("GET / HTTP/1.1\r\nHost: u@a\r\n\r\n"), 400);
        assert_eq!(status("GET / HTTP/1.1\r\nHost: a b\r\n\r\n"), 400);
        assert_eq!(status("GET / HTTP/1.1\r\nHost: a:99999\r\n\r\n"), 400);
        assert_eq!(status("GET / HTTP/1.1\r\nHost: a:+80\r\n\r\n"), 400);
        assert_eq!(status("GET / HTTP/1.1\r\nHost: a:\r\n\r\n"), 200);
    }

    #[test]
    fn malformed_lines() {
        for bad in [
            "GET / HTTP/1.1\nHost: a\n\n",
            "GET / HTTP/1.1\r\nHost: a\nX: y\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nX: y\r\n \tfolded\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nX : y\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nX\0: y\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nX: a\0b\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nX: a\x01b\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n",
            "GET  / HTTP/1.1\r\nHost: a\r\n\r\n",
            "GET /\r\n\r\n",
            "G\x01T / HTTP/1.1\r\nHost: a\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\n",
        ] {
            assert_eq!(status(bad), 400, "{bad:?}");
        }
    }

    #[test]
    fn later_minor_versions_are_11_and_other_majors_505() {
        let h = parse("PUT /x HTTP/1.2\r\nHost: a\r\nExpect: 100-continue\r\n\r\n").unwrap();
        assert_eq!(
            (h.parts.version, h.parts.uri.path()),
            (Version::HTTP_11, "/x")
        );
        assert!(h.keep_alive && h.expect_continue);
        assert_eq!(h.host.unwrap(), "a");
        for major in ["2.0", "3.0", "9.9"] {
            let head = format!("GET / HTTP/{major}\r\nHost: a\r\n\r\n");
            assert_eq!(status(&head), 505, "{major}");
        }
        // No version, and what a later one does not excuse.
        for head in [
            "GET / HTTP/1.x\r\nHost: a\r\n\r\n",
            "GET / HTTP/0.9\r\nHost: a\r\n\r\n",
            "GET / HTTP/1.10\r\nHost: a\r\n\r\n",
            "GET / HTTP/12.0\r\nHost: a\r\n\r\n",
            "GET / http/1.2\r\nHost: a\r\n\r\n",
            "GET / HTTP/1.2 \r\nHost: a\r\n\r\n",
            "GET / HTTP/2\r\nHost: a\r\n\r\n",
            "GET / HTTP/1.2\nHost: a\r\n\r\n",
            "GET / HTTP/1.2\r\nHost: a\nX: y\r\n\r\n",
            "GET / HTTP/1.2\r\n\r\n",
            "GET  / HTTP/1.2\r\nHost: a\r\n\r\n",
        ] {
            assert_eq!(status(head), 400, "{head:?}");
        }
    }

    #[test]
    fn too_many_headers() {
        let mut s = String::from("GET / HTTP/1.1\r\nHost: a\r\n");
        for i in 0..MAX_HEADERS {
            s.push_str(&format!("X-{i}: v\r\n"));
        }
        s.push_str("\r\n");
        assert_eq!(status(&s), 431);
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..2000 {
            let mut buf =
                b"POST http://a/ HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n\r\n".to_vec();
            for _ in 0..4 {
                let r = xorshift(&mut seed);
                let i = (r as usize) % buf.len();
                buf[i] = (r >> 32) as u8;
            }
            let _ = parse_head(Bytes::from(buf));
        }
    }

    /// The plain definition `crlf_lines` stands for.
    fn has_bare_lf(buf: &[u8]) -> bool {
        buf.iter()
            .enumerate()
            .any(|(i, &b)| b == b'\n' && (i == 0 || buf[i - 1] != b'\r'))
    }

    const REQUEST: &str = "POST http://a/ HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n\
                           X-A:  spaced  \r\nX-B:\r\n\r\n";
    const RESPONSE: &str = "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nX-A:  spaced  \r\n\
                            X-B:\r\n\r\n";

    /// `bytes` parsed as the kind of head `sample` is.
    fn parse_like(sample: &str, bytes: &[u8]) -> Result<(), HeadError> {
        let bytes = Bytes::copy_from_slice(bytes);
        if sample == REQUEST {
            parse_head(bytes).map(drop)
        } else {
            parse_response_head(bytes, &Method::GET).map(drop)
        }
    }

    /// Every CR taken out, every LF doubled, an empty line put first: each is refused.
    #[test]
    fn every_bare_lf_is_refused() {
        for (sample, refusal) in [(REQUEST, 400), (RESPONSE, 502)] {
            let parse = |b: &[u8]| parse_like(sample, b);
            assert!(parse(sample.as_bytes()).is_ok());
            let bytes = sample.as_bytes();
            let mut variants = vec![[b"\n", bytes].concat(), [b"\r\n", bytes].concat()];
            for (i, &b) in bytes.iter().enumerate() {
                if b == b'\r' {
                    variants.push([&bytes[..i], &bytes[i + 1..]].concat());
                }
                if b == b'\n' {
                    variants.push([&bytes[..=i], b"\n", &bytes[i + 1..]].concat());
                }
            }
            for v in variants {
                let e = parse(&v).expect_err(&String::from_utf8_lossy(&v));
                assert_eq!(e.status, refusal, "{:?}", String::from_utf8_lossy(&v));
            }
        }
    }

    /// Whatever httparse accepts after random damage has no bare LF.
    #[test]
    fn accepted_heads_have_crlf_lines_only() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for sample in [REQUEST, RESPONSE] {
            for _ in 0..20_000 {
                let mut buf = sample.as_bytes().to_vec();
                for _ in 0..3 {
                    let r = xorshift(&mut seed);
                    let i = (r as usize) % buf.len();
                    let b = [b'\r', b'\n', b' ', b':'][(r >> 40) as usize % 4];
                    match (r >> 50) % 3 {
                        0 => buf[i] = b,
                        1 => buf.insert(i, b),
                        _ => drop(buf.remove(i)),
                    }
                }
                assert!(
                    !(parse_like(sample, &buf).is_ok() && has_bare_lf(&buf)),
                    "{:?}",
                    String::from_utf8_lossy(&buf)
                );
            }
        }
    }

    fn response(s: &str, method: Method) -> Result<ResponseHead, HeadError> {
        parse_response_head(Bytes::copy_from_slice(s.as_bytes()), &method)
    }

    fn framing(s: &str) -> Result<(Framing, bool), &'static str> {
        response(s, Method::GET)
            .map(|h| (h.framing, h.keep_alive))
            .map_err(|e| e.reason)
    }

    /// nginx's controls for itself never reach the map; a Location or Refresh is noted
    /// for `proxy_redirect`.
    #[test]
    fn nginx_controls_hidden_and_redirect_fields_noted() {
        let h = response(
            "HTTP/1.1 200 OK\r\nX-Accel-Redirect: /internal\r\nx-accel-buffering: no\r\n\
             X-Pad: avoid browser bug\r\nX-Accel: kept\r\nX-Padding: kept\r\n\
             Content-Length: 0\r\n\r\n",
            Method::GET,
        )
        .unwrap();
        let names: Vec<_> = h.parts.headers.keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["x-accel", "x-padding", "content-length"]);
        assert!(!h.redirects);
        for field in ["Location: /a", "refresh: 1; url=/b", "LOCATION: http://a/"] {
            let head = format!("HTTP/1.1 302 Found\r\n{field}\r\nContent-Length: 0\r\n\r\n");
            assert!(response(&head, Method::GET).unwrap().redirects, "{field}");
        }
    }

    #[test]
    fn response_heads() {
        let h = response(
            "HTTP/1.1 599 Whatever\r\nContent-Length: 5\r\nConnection: x-hop\r\nX-Hop: 1\r\n\
             Keep-Alive: timeout=5\r\nX-Keep: 2\r\n\r\n",
            Method::GET,
        )
        .unwrap();
        assert_eq!(h.parts.status.as_u16(), 599);
        assert_eq!((h.framing, h.keep_alive), (Framing::Length(5), true));
        assert_eq!(h.parts.headers["content-length"], "5");
        assert_eq!(h.parts.headers["x-keep"], "2");
        for gone in ["connection", "x-hop", "keep-alive"] {
            assert!(!h.parts.headers.contains_key(gone), "{gone} is hop-by-hop");
        }
        assert_eq!(
            response("HTTP/1.1 999 \r\n\r\n", Method::GET)
                .unwrap()
                .parts
                .status,
            999
        );
        assert_eq!(
            response("HTTP/1.1 100 Continue\r\n\r\n", Method::GET)
                .unwrap()
                .framing,
            Framing::None
        );
        for bad in [
            "HTTP/1.1 2000 OK\r\n\r\n",
            "HTTP/1.1 099 OK\r\n\r\n",
            "HTTP/2 200 OK\r\n\r\n",
            "garbage\r\n\r\n",
            "HTTP/1.1 200 OK\nContent-Length: 1\n\n",
            "HTTP/1.1 200 OK\r\nBad Name: 1\r\n\r\n",
        ] {
            let e = response(bad, Method::GET).unwrap_err();
            assert_eq!(e.status, StatusCode::BAD_GATEWAY, "{bad:?}");
        }
    }

    #[test]
    fn response_framing() {
        use Framing::*;
        assert_eq!(
            framing("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
            Ok((Length(0), true))
        );
        assert_eq!(
            framing("HTTP/1.1 200 OK\r\nContent-Length: 7, 7\r\n\r\n"),
            Ok((Length(7), true)),
            "identical repeats"
        );
        assert_eq!(
            framing("HTTP/1.1 200 OK\r\nContent-Length: 7\r\nContent-Length: 8\r\n\r\n"),
            Err("conflicting Content-Length values")
        );
        assert_eq!(
            framing("HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n"),
            Err("invalid Content-Length")
        );
        assert_eq!(
            framing("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Ok((Chunked, true))
        );
        assert_eq!(
            framing("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n"),
            Ok((Chunked, false)),
            "Transfer-Encoding wins, and the connection closes after"
        );
        assert_eq!(
            framing("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"),
            Err("unsupported transfer coding")
        );
        assert_eq!(
            framing("HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Err("unsupported transfer coding")
        );
        assert_eq!(
            framing("HTTP/1.1 200 OK\r\n\r\n"),
            Ok((Close, false)),
            "close-delimited"
        );
        assert_eq!(
            framing("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\n"),
            Ok((Length(1), false))
        );
        assert_eq!(
            framing("HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n"),
            Ok((Length(1), false))
        );
        assert_eq!(
            framing("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\n"),
            Ok((Length(1), true))
        );
        for status in [204, 304] {
            let h = response(
                &format!("HTTP/1.1 {status} X\r\nContent-Length: 9\r\n\r\n"),
                Method::GET,
            )
            .unwrap();
            assert_eq!((h.framing, h.keep_alive), (None, true), "{status}");
            let kept = h.parts.headers.contains_key("content-length");
            assert_eq!(
                kept,
                status == 304,
                "a 304 describes the body it stands for"
            );
        }
        for (sent, passed) in [("12", "12"), ("0", "0"), ("007", "7"), ("7, 7", "7")] {
            let h = response(
                &format!("HTTP/1.1 200 OK\r\nContent-Length: {sent}\r\n\r\n"),
                Method::GET,
            )
            .unwrap();
            assert_eq!(h.parts.headers["content-length"], passed, "{sent:?}");
        }
        let h = response(
            "HTTP/1.1 200 OK\r\nConnection: keep-alive, transfer-encoding\r\n\
             Transfer-Encoding: chunked\r\nContent-Length: 3\r\nKeep-Alive: 5\r\n\r\n",
            Method::GET,
        )
        .unwrap();
        assert_eq!(
            (h.framing, h.keep_alive),
            (Chunked, false),
            "a Transfer-Encoding named by Connection still frames the body, and wins \
             over Content-Length (RFC 9112, 6.3)"
        );
        assert_eq!(h.parts.headers.len(), 0);
        let h = response("HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n", Method::HEAD).unwrap();
        assert_eq!((h.framing, h.keep_alive), (None, true));
        assert_eq!(h.parts.headers["content-length"], "9");
    }
}
