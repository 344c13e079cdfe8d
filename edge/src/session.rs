//! One request, whatever protocol carried it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use crate::body::Body;

/// The protocol a client spoke.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    Http1,
    Http2,
    Http3,
}

impl Protocol {
    /// As in access logs and `$server_protocol`: `HTTP/1.1`, `HTTP/2.0`, `HTTP/3.0`.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Http1 => "HTTP/1.1",
            Protocol::Http2 => "HTTP/2.0",
            Protocol::Http3 => "HTTP/3.0",
        }
    }
}

/// TLS details of the client connection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsInfo {
    /// The server name the client asked for (SNI).
    pub sni: Option<String>,
    /// The negotiated ALPN protocol.
    pub alpn: Option<Vec<u8>>,
    /// The request arrived as 0-RTT early data (HTTP/3): it may be a replay.
    pub early_data: bool,
}

/// Who sent a request and over what.
#[derive(Debug, Clone)]
pub struct ClientInfo {
    pub addr: SocketAddr,
    /// The local address the connection arrived on.
    pub local: SocketAddr,
    pub protocol: Protocol,
    /// `None` on plain-text TCP.
    pub tls: Option<TlsInfo>,
}

/// A request as filters see it.
///
/// The head is in `http` types with protocol details already converted at the edge:
/// the URI always carries the authority (from `:authority` or `Host`), and
/// connection-specific headers (Connection, Keep-Alive, Transfer-Encoding, TE, Upgrade)
/// and pseudo-headers never appear.
pub struct Session {
    pub request: http::request::Parts,
    pub body: Body,
    pub client: Arc<ClientInfo>,
    /// When the request head was complete.
    pub started: Instant,
}

impl Session {
    pub fn new(request: http::request::Parts, body: Body, client: Arc<ClientInfo>) -> Self {
        Session {
            request,
            body,
            client,
            started: Instant::now(),
        }
    }

    /// Makes an HTTP/2 or HTTP/3 request fit for a handler, or says why it is malformed
    /// (answer 400, as nginx does): its `:path` must be an absolute path, or `*` for
    /// OPTIONS (RFC 9113 8.3.1, RFC 9114 4.3.1; an HTTP/1 upstream would otherwise get
    /// it as its request line), and it must name a valid host, in `:authority` or
    /// else in one Host, which then completes the URI; with both, they must agree, or
    /// a filter or upstream reading Host would see another site than the one routed to.
    /// Neither may be one `check_authority` refuses. Split Cookie fields are joined.
    pub fn check_request(
        request: &mut http::request::Parts,
        tls: bool,
    ) -> Result<(), &'static str> {
        let target_ok = match request.uri.path_and_query() {
            // Plain CONNECT carries no path.
            None => request.method == http::Method::CONNECT,
            // h2 leaves the path empty when `:path` is missing (`as_str` shows it as
            // "/", `Uri::path` as it is).
            Some(_) if request.uri.path().is_empty() => false,
            Some(p) => {
                let p = p.as_str();
                p.starts_with('/') || (p == "*" && request.method == http::Method::OPTIONS)
            }
        };
        if !target_ok {
            return Err("request target is not an absolute path");
        }
        if let Some(authority) = request.uri.authority() {
            check_authority(authority)?;
        }
        // One pass over the few names beats a hashed lookup for each (most requests
        // have neither: callgrind, 110 instructions a lookup).
        let (mut host, mut cookie) = (false, false);
        for name in request.headers.keys() {
            host |= name == http::header::HOST;
            cookie |= name == http::header::COOKIE;
        }
        let mut host_authority = None;
        if host {
            let mut hosts = request.headers.get_all(http::header::HOST).iter();
            let first = hosts.next();
            if hosts.next().is_some() {
                return Err("more than one Host");
            }
            let parsed: http::uri::Authority = first
                .and_then(|h| h.to_str().ok())
                .and_then(|h| h.parse().ok())
                .ok_or("invalid Host")?;
            check_authority(&parsed)?;
            if let Some(authority) = request.uri.authority() {
                if !same_authority(authority, &parsed, tls) {
                    return Err(":authority and Host differ");
                }
            }
            host_authority = Some(parsed);
        }
        if cookie {
            join_cookies(&mut request.headers);
        }
        if Self::complete_uri_with(request, tls, host_authority) {
            Ok(())
        } else {
            Err("no valid :authority or Host")
        }
    }

    /// Completes a request URI that lacks scheme or authority (an HTTP/1 request in
    /// origin form; HTTP/2 without `:authority`) from `host` (the checked Host, or the
    /// site's name) and the connection's scheme. False, with the URI left as it was,
    /// when there is no host to complete it with.
    pub fn complete_uri_with(
        request: &mut http::request::Parts,
        tls: bool,
        host: Option<http::uri::Authority>,
    ) -> bool {
        if request.uri.authority().is_some() {
            return true;
        }
        let Some(authority) = host else {
            return false;
        };
        let mut parts = std::mem::take(&mut request.uri).into_parts();
        parts.scheme = Some(if tls {
            http::uri::Scheme::HTTPS
        } else {
            http::uri::Scheme::HTTP
        });
        parts.authority = Some(authority);
        if parts.path_and_query.is_none() {
            parts.path_and_query = Some(http::uri::PathAndQuery::from_static("/"));
        }
        request.uri = http::Uri::from_parts(parts).unwrap_or_default();
        true
    }

    /// The request's host, without port: from the URI authority.
    pub fn host(&self) -> Option<&str> {
        self.request.uri.host()
    }

    /// The request arrived as 0-RTT early data, so it may be a replay (RFC 8470).
    pub fn is_early_data(&self) -> bool {
        self.client.tls.as_ref().is_some_and(|t| t.early_data)
    }
}

/// Whether an authority (a request target's, `:authority`, Host) is one HTTP lets a
/// request name: a host, then a port of digits that fits 16 bits, or an empty one,
/// which means the scheme's (RFC 3986 3.2.3). `http`'s parser takes more: userinfo,
/// which RFC 9110 4.2.4 and RFC 9113 8.3.1 make an error (the request would be routed
/// by the host after it, and the userinfo reach an upstream in Host or `$http_host`),
/// and any port, which it reads only when asked, and then as none: `a.example:99999`
/// would be taken for the default port, and pass for an `:authority` it differs from.
pub(crate) fn check_authority(authority: &http::uri::Authority) -> Result<(), &'static str> {
    // One pass over the bytes: this runs for every request, and `Authority::host` with
    // a `u16` parse cost 675 instructions a request (callgrind); so short a text is not
    // worth memchr's set-up either. The host ends at the `]` of an IPv6 literal, or
    // else at the first `:` (`http` admits only one outside brackets).
    let text = authority.as_str().as_bytes();
    let ipv6 = text.first() == Some(&b'[');
    let mut host_end = text.len();
    for (i, &b) in text.iter().enumerate() {
        match b {
            b'@' => return Err("userinfo in the authority"),
            b']' if ipv6 && host_end == text.len() => host_end = i + 1,
            b':' if !ipv6 && host_end == text.len() => host_end = i,
            _ => {}
        }
    }
    let valid = match &text[host_end..] {
        [] => true,
        // Digits only (`u16`'s parser takes a `+` too), at most 65535 once leading
        // zeros are gone; none at all is the scheme's port.
        [b':', port @ ..] => {
            let first = port.iter().position(|&b| b != b'0').unwrap_or(port.len());
            let value = &port[first..];
            port.iter().all(u8::is_ascii_digit)
                && (value.len() < 5 || (value.len() == 5 && value <= &b"65535"[..]))
        }
        _ => false,
    };
    if valid {
        Ok(())
    } else {
        Err("invalid port in the authority")
    }
}

/// Whether a Host names what `authority` does: the same host in any case, and the same
/// port, the scheme's when absent. Both passed [`check_authority`].
fn same_authority(
    authority: &http::uri::Authority,
    host: &http::uri::Authority,
    tls: bool,
) -> bool {
    let default = if tls { 443 } else { 80 };
    host.host().eq_ignore_ascii_case(authority.host())
        && host.port_u16().unwrap_or(default) == authority.port_u16().unwrap_or(default)
}

/// HTTP/2 and HTTP/3 clients may send each cookie as its own field (RFC 9113 8.2.3,
/// RFC 9114 4.2.1); before an HTTP/1.1 hop, which allows one Cookie line, they are
/// joined with "; ".
fn join_cookies(headers: &mut http::HeaderMap) {
    use http::header::COOKIE;
    if headers.get_all(COOKIE).iter().nth(1).is_none() {
        return;
    }
    let mut joined = Vec::new();
    for value in headers.get_all(COOKIE) {
        if !joined.is_empty() {
            joined.extend_from_slice(b"; ");
        }
        joined.extend_from_slice(value.as_bytes());
    }
    // Joined valid values are a valid value.
    if let Ok(value) = http::HeaderValue::from_bytes(&joined) {
        headers.insert(COOKIE, value);
    }
}

/// Connection-specific headers (RFC 9110, 7.6.1): each protocol edge decides them for its
/// own connection, so they never reach filters from a client, and a handler's copies
/// (from an HTTP/1 upstream, say) never leave.
pub fn is_connection_specific(name: &http::HeaderName) -> bool {
    // Names are lower case: one match on the text is cheaper than comparing with a
    // `&str`, which ignores case.
    matches!(
        name.as_str(),
        "connection" | "transfer-encoding" | "upgrade" | "te" | "keep-alive" | "proxy-connection"
    )
}

/// Removes every [connection-specific](is_connection_specific) header.
pub fn remove_connection_specific(headers: &mut http::HeaderMap) {
    use http::header::{CONNECTION, TE, TRANSFER_ENCODING, UPGRADE};
    // Most messages have none: a pass over their few names costs less than six hashed
    // lookups (callgrind: 1.5k instructions per HTTP/2 request, see benches/README.md).
    if !headers.keys().any(is_connection_specific) {
        return;
    }
    for name in [CONNECTION, TRANSFER_ENCODING, UPGRADE, TE] {
        headers.remove(name);
    }
    headers.remove("keep-alive");
    headers.remove("proxy-connection");
}

/// Readies a response head for HTTP/2 or HTTP/3, whose frames delimit the body: what
/// HTTP/1's encoder does with `Content-Length`, and whether a body is sent at all.
/// Answers to HEAD, 1xx, 204 and 304 carry none (RFC 9110, 6.4.1), and clients reset a
/// stream whose DATA says otherwise. A body of known size is announced, as nginx does,
/// so that a client can show progress and tell a truncated body.
pub fn frame_response_head(
    head: &mut http::response::Parts,
    size: &http_body::SizeHint,
    head_request: bool,
) -> bool {
    use http::{header::CONTENT_LENGTH, StatusCode};
    remove_connection_specific(&mut head.headers);
    let status = head.status;
    if status.is_informational() || status == StatusCode::NO_CONTENT {
        // RFC 9110, 8.6: never in these.
        head.headers.remove(CONTENT_LENGTH);
        return false;
    }
    if head_request || status == StatusCode::NOT_MODIFIED {
        // The handler's own, describing the body a GET would have had, stands.
        if head_request && !head.headers.contains_key(CONTENT_LENGTH) {
            if let Some(n) = size.exact().filter(|&n| n > 0) {
                head.headers.insert(CONTENT_LENGTH, n.into());
            }
        }
        return false;
    }
    match size.exact() {
        // An upstream's, which the size came from, stands: a new value is an allocation
        // per response (jemalloc's refills showed it, about 1,000 instructions a
        // proxied HTTP/2 request).
        Some(n) => {
            let mut digits = itoa::Buffer::new();
            let text = digits.format(n).as_bytes();
            if head.headers.get(CONTENT_LENGTH).map(|v| v.as_bytes()) != Some(text) {
                head.headers.insert(CONTENT_LENGTH, n.into());
            }
        }
        None => {
            head.headers.remove(CONTENT_LENGTH);
        }
    }
    true
}

/// A request extension, set by the HTTP/1 edge: the client waits for 100 Continue
/// before it sends the body, and polling the body sends it. An answer that refuses the
/// body (413) leaves the body unpolled, so the client is not invited to send what is
/// refused (nginx's `expect_tested`). HTTP/2 and HTTP/3 do not set it: a stream
/// carries no more than its flow-control window, and curl 7.88 reports an empty
/// reply when an HTTP/2 stream waiting for 100 Continue gets its answer first.
#[derive(Debug, Clone, Copy)]
pub struct AwaitsContinue;

/// Whether the request asks for 100 Continue: `100-continue` is a member of its
/// `Expect` list, on any of its lines, in any case (RFC 9110, 10.1.1). Other
/// expectations are ignored, as nginx does, rather than answered 417.
pub fn asks_continue(headers: &http::HeaderMap) -> bool {
    headers
        .get_all(http::header::EXPECT)
        .iter()
        .flat_map(|v| list_members(v.as_bytes()))
        .any(|member| member.trim_ascii().eq_ignore_ascii_case(b"100-continue"))
}

/// The members of a comma-separated field value (RFC 9110, 5.6.1), untrimmed: a comma
/// inside a quoted string (an expectation's or a parameter's value) does not split.
pub(crate) fn list_members(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    let (mut quoted, mut escaped) = (false, false);
    value.split(move |&b| {
        match b {
            _ if escaped => escaped = false,
            b'\\' if quoted => escaped = true,
            b'"' => quoted = !quoted,
            b',' if !quoted => return true,
            _ => {}
        }
        false
    })
}

/// Removes the header fields whose names have a `_`, and says how many went: nginx's
/// default (`underscores_in_headers off`). Many applications read `X_Real_IP` and
/// `X-Real-IP` as one name (CGI's `HTTP_X_REAL_IP`), so a client could otherwise pass,
/// under the `_` spelling, a header this hop sets or strips under the `-` one.
pub fn remove_underscored(headers: &mut http::HeaderMap) -> usize {
    // A byte loop: names are short, and `str::contains` sets up a search per name.
    let underscored = |name: &http::HeaderName| name.as_str().as_bytes().contains(&b'_');
    if !headers.keys().any(underscored) {
        return 0;
    }
    let mut removed = 0;
    let mut name = None;
    for (next, value) in std::mem::take(headers) {
        // `None`: another value of the name before.
        if next.is_some() {
            name = next;
        }
        match &name {
            Some(n) if !underscored(n) => {
                headers.append(n.clone(), value);
            }
            _ => removed += 1,
        }
    }
    removed
}

/// What answers a request: the filter engine (`crate::server`), or a test.
///
/// Protocol servers call it once per request and write back the response in the
/// client's protocol.
pub trait Handler: Send + Sync + 'static {
    fn handle(
        &self,
        session: Session,
    ) -> impl std::future::Future<Output = http::Response<Body>> + Send;
}

#[cfg(test)]
mod tests {
    use http::HeaderName;

    use super::Session;

    /// An HTTP/2 or HTTP/3 request as its protocol edge hands it over.
    fn request(uri: http::Uri, headers: &[(&str, &str)]) -> http::request::Parts {
        let mut request = http::Request::builder().uri(uri);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.body(()).unwrap().into_parts().0
    }

    #[test]
    fn a_request_without_a_path_is_malformed() {
        // What h2 builds when `:path` is missing and `:authority` too.
        let uri = http::Uri::from_parts(http::uri::Parts::default()).unwrap();
        let mut parts = request(uri, &[("host", "a.example")]);
        assert!(Session::check_request(&mut parts, true).is_err());
        let mut parts = request("/x".parse().unwrap(), &[("host", "a.example")]);
        assert_eq!(Session::check_request(&mut parts, true), Ok(()));
        assert_eq!(parts.uri, "https://a.example/x");
    }

    #[test]
    fn authority_and_host_must_agree_and_host_come_once() {
        let uri = || "https://a.example/".parse::<http::Uri>().unwrap();
        for host in ["a.example", "A.Example", "a.example:443"] {
            let mut parts = request(uri(), &[("host", host)]);
            assert_eq!(Session::check_request(&mut parts, true), Ok(()), "{host}");
        }
        for host in ["b.example", "a.example:8443", "a.example.evil", "a b"] {
            let mut parts = request(uri(), &[("host", host)]);
            assert!(Session::check_request(&mut parts, true).is_err(), "{host}");
        }
        let twice = [("host", "a.example"), ("host", "a.example")];
        let mut parts = request("/".parse().unwrap(), &twice);
        assert!(Session::check_request(&mut parts, true).is_err());
    }

    #[test]
    fn userinfo_is_refused_in_authority_and_host() {
        // `http` parses both, and the request would go to the host after the `@`.
        let mut parts = request("https://x@a.example/".parse().unwrap(), &[]);
        let refused = Err("userinfo in the authority");
        assert_eq!(Session::check_request(&mut parts, true), refused);
        for uri in ["https://a.example/", "/"] {
            let mut parts = request(uri.parse().unwrap(), &[("host", "x:y@a.example")]);
            assert_eq!(Session::check_request(&mut parts, true), refused, "{uri}");
        }
    }

    #[test]
    fn a_port_must_be_digits_that_fit_16_bits() {
        let bad = [
            "a.example:99999",
            "a.example:65536",
            "a.example:x",
            "a.example:+443",
            "a.example:4x3",
            "[::1]x",
            "[::1]:70000",
        ];
        for authority in bad {
            let uri = format!("https://{authority}/").parse().unwrap();
            let mut parts = request(uri, &[]);
            let checked = Session::check_request(&mut parts, true);
            assert_eq!(checked, Err("invalid port in the authority"), "{authority}");
            // Beside an `:authority` on the default port, as that port, it agreed.
            let mut parts = request(
                "https://a.example/".parse().unwrap(),
                &[("host", authority)],
            );
            let checked = Session::check_request(&mut parts, true);
            assert_eq!(
                checked,
                Err("invalid port in the authority"),
                "Host {authority}"
            );
        }
        // An empty port is the scheme's.
        let good = [
            "a.example:",
            "a.example:443",
            "a.example:0443",
            "a.example:65535",
            "a.example:0000065535",
            "a.example:0",
            "[::1]:443",
            "[::1]",
            "[::1]:",
        ];
        for authority in good {
            let uri = format!("https://{authority}/").parse().unwrap();
            let mut parts = request(uri, &[("host", authority)]);
            assert_eq!(
                Session::check_request(&mut parts, true),
                Ok(()),
                "{authority}"
            );
        }
        let mut parts = request(
            "https://a.example/".parse().unwrap(),
            &[("host", "a.example:")],
        );
        assert_eq!(Session::check_request(&mut parts, true), Ok(()));
    }

    #[test]
    fn split_cookies_are_joined() {
        let cookies = [("cookie", "a=1"), ("cookie", "b=2"), ("cookie", "c=3")];
        let mut parts = request("https://a.example/".parse().unwrap(), &cookies);
        assert_eq!(Session::check_request(&mut parts, true), Ok(()));
        let all: Vec<_> = parts.headers.get_all("cookie").iter().collect();
        assert_eq!(all, ["a=1; b=2; c=3"]);
    }

    #[test]
    fn connection_specific_names() {
        for name in [
            "Connection",
            "transfer-encoding",
            "UPGRADE",
            "te",
            "Keep-Alive",
            "proxy-connection",
        ] {
            let name = HeaderName::from_bytes(name.as_bytes()).unwrap();
            assert!(super::is_connection_specific(&name), "{name}");
        }
        for name in [
            "content-length",
            "tea",
            "connections",
            "x-keep-alive",
            "host",
        ] {
            let name = HeaderName::from_bytes(name.as_bytes()).unwrap();
            assert!(!super::is_connection_specific(&name), "{name}");
        }
    }

    #[test]
    fn underscored_names_are_removed_with_all_their_values() {
        let mut headers = http::HeaderMap::new();
        for (name, value) in [
            ("x-a", "1"),
            ("x_b", "2"),
            ("x-a", "3"),
            ("x_b", "4"),
            ("_", "5"),
            ("host", "h"),
        ] {
            headers.append(HeaderName::from_static(name), value.parse().unwrap());
        }
        assert_eq!(super::remove_underscored(&mut headers), 3);
        let left: Vec<_> = headers
            .iter()
            .map(|(n, v)| format!("{n}={}", v.to_str().unwrap()))
            .collect();
        assert_eq!(left, ["x-a=1", "x-a=3", "host=h"]);
        assert_eq!(super::remove_underscored(&mut headers), 0);
    }

    #[test]
    fn continue_is_asked_by_a_list_member_only() {
        let asks = |lines: &[&str]| {
            let mut headers = http::HeaderMap::new();
            for line in lines {
                headers.append(http::header::EXPECT, line.parse().unwrap());
            }
            super::asks_continue(&headers)
        };
        assert!(asks(&["100-Continue"]));
        assert!(asks(&["foo", " 100-continue "]));
        assert!(asks(&["foo=\"a,b\", 100-continue"]));
        assert!(asks(&["foo=\"a\\\",\", 100-continue"]));
        // Inside a quoted string, with or without an escaped quote before the comma.
        assert!(!asks(&["foo=\"a, 100-continue, b\""]));
        assert!(!asks(&["foo=\"a\\\", 100-continue, b\""]));
        assert!(!asks(&["100-continued", "x100-continue"]));
        // An escaped backslash just before the closing quote; outside quotes a
        // backslash is an ordinary byte.
        assert!(asks(&["foo=\"a\\\\\", 100-continue"]));
        assert!(asks(&["a\\, 100-continue"]));
        // An unterminated quote runs to the end of its line only.
        assert!(!asks(&["foo=\"a, 100-continue"]));
        assert!(asks(&["foo=\"a", "100-continue"]));
    }
}
