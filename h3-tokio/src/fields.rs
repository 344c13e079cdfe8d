//! Conversion between `http` types and HTTP/3 field sections, at the protocol edge.

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderMap, Method, Request, Response, StatusCode, Uri};

use crate::ext::{EarlyData, Protocol};

/// Connection-specific headers, forbidden in HTTP/3 (RFC 9114, section 4.2).
fn is_connection_specific(name: &HeaderName, value: &HeaderValue) -> bool {
    use http::header::{CONNECTION, HOST, TE, TRANSFER_ENCODING, UPGRADE};
    name == CONNECTION
        || name == TRANSFER_ENCODING
        || name == UPGRADE
        || name == HOST
        || name == "keep-alive"
        || name == "proxy-connection"
        || (name == TE && value != "trailers")
}

/// An outgoing field section. It keeps the application's `HeaderMap` and status as they
/// are: nghttp3 copies the fields once, when the section is submitted, so they are not
/// copied here.
#[derive(Default)]
pub(crate) struct Section {
    /// `:status`, for responses.
    status: Option<StatusCode>,
    /// Request pseudo-header fields, in the order they are sent.
    pseudo: Vec<(&'static str, Bytes)>,
    headers: HeaderMap,
}

impl Section {
    /// The fields to send, pseudo-header fields first; connection-specific headers are
    /// left out.
    pub fn fields(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        let status = self
            .status
            .iter()
            .map(|s| (&b":status"[..], s.as_str().as_bytes()));
        let pseudo = self.pseudo.iter().map(|(n, v)| (n.as_bytes(), &v[..]));
        let headers = self
            .headers
            .iter()
            .filter(|(n, v)| !is_connection_specific(n, v))
            .map(|(n, v)| (n.as_str().as_bytes(), v.as_bytes()));
        status.chain(pseudo).chain(headers)
    }

    /// A response head with only a status, for requests refused by the stack.
    pub fn status(status: StatusCode) -> Section {
        Section {
            status: Some(status),
            ..Section::default()
        }
    }
}

fn pseudo(name: &'static str, value: &str) -> (&'static str, Bytes) {
    (name, Bytes::copy_from_slice(value.as_bytes()))
}

/// The field section of a request. `:authority` comes from the URI, else from Host.
pub(crate) fn request_head(req: http::request::Parts) -> Result<Section, String> {
    let mut out = Vec::with_capacity(5);
    out.push(pseudo(":method", req.method.as_str()));
    let authority = req.uri.authority().map(|a| a.as_str()).or_else(|| {
        req.headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
    });
    let protocol = req.extensions.get::<Protocol>();
    if req.method == Method::CONNECT && protocol.is_none() {
        // Plain CONNECT: only :method and :authority (RFC 9114, section 4.4).
        out.push(pseudo(
            ":authority",
            authority.ok_or("CONNECT without an authority")?,
        ));
    } else {
        out.push(pseudo(":scheme", req.uri.scheme_str().unwrap_or("https")));
        if let Some(authority) = authority {
            out.push(pseudo(":authority", authority));
        }
        let path = req.uri.path_and_query().map_or("/", |p| p.as_str());
        out.push(pseudo(":path", if path.is_empty() { "/" } else { path }));
        if let Some(protocol) = protocol {
            out.push(pseudo(":protocol", protocol.as_str()));
        }
    }
    Ok(Section {
        status: None,
        pseudo: out,
        headers: req.headers,
    })
}

pub(crate) fn response_head(resp: http::response::Parts) -> Section {
    Section {
        status: Some(resp.status),
        pseudo: Vec::new(),
        headers: resp.headers,
    }
}

pub(crate) fn trailer_fields(trailers: HeaderMap) -> Section {
    Section {
        headers: trailers,
        ..Section::default()
    }
}

/// A field section being received: each field is parsed into its `http` type as it
/// arrives (one copy of the value, out of nghttp3's buffer), with the size counted as
/// RFC 9114 does.
#[derive(Default)]
pub(crate) struct Head {
    method: Option<Method>,
    scheme: Option<Scheme>,
    authority: Option<Authority>,
    path: Option<PathAndQuery>,
    protocol: Option<Protocol>,
    status: Option<StatusCode>,
    headers: HeaderMap,
    size: u64,
    pub too_large: bool,
    malformed: Option<String>,
}

/// Parses a pseudo-header value that may appear once.
fn once<T, E: std::fmt::Display>(
    slot: &mut Option<T>,
    name: &[u8],
    parsed: Result<T, E>,
) -> Result<(), String> {
    if slot.is_some() {
        return Err(format!("repeated {}", String::from_utf8_lossy(name)));
    }
    *slot = Some(parsed.map_err(|e| e.to_string())?);
    Ok(())
}

fn shared(value: &[u8]) -> Bytes {
    Bytes::copy_from_slice(value)
}

impl Head {
    /// Adds a received field; `known` is its name if nghttp3 recognised it.
    pub fn push(&mut self, known: Option<HeaderName>, name: &[u8], value: &[u8], limit: u64) {
        self.size += name.len() as u64 + value.len() as u64 + 32;
        if self.size > limit {
            self.refuse_as_too_large();
            return;
        }
        if self.too_large || self.malformed.is_some() {
            return;
        }
        let parsed = match known {
            Some(known) => self.append(Ok(known), value),
            None => self.parse(name, value),
        };
        if let Err(e) = parsed {
            self.malformed = Some(e);
        }
    }

    /// Keeps counting, stops storing: the section will be refused as a whole.
    fn refuse_as_too_large(&mut self) {
        if !self.too_large {
            *self = Head {
                size: self.size,
                too_large: true,
                ..Head::default()
            };
        }
    }

    fn parse(&mut self, name: &[u8], value: &[u8]) -> Result<(), String> {
        match name {
            b":method" => once(&mut self.method, name, Method::from_bytes(value)),
            b":scheme" => once(&mut self.scheme, name, Scheme::try_from(value)),
            b":authority" => once(
                &mut self.authority,
                name,
                Authority::from_maybe_shared(shared(value)),
            ),
            b":path" => once(
                &mut self.path,
                name,
                PathAndQuery::from_maybe_shared(shared(value)),
            ),
            b":protocol" => once(
                &mut self.protocol,
                name,
                std::str::from_utf8(value).map(Protocol::from),
            ),
            b":status" => once(&mut self.status, name, StatusCode::from_bytes(value)),
            [b':', ..] => Err(format!(
                "unknown pseudo-header {}",
                String::from_utf8_lossy(name)
            )),
            _ => self.append(HeaderName::from_bytes(name).map_err(|_| name), value),
        }
    }

    /// Appends a regular field, unless its name (`Err` with the bytes) or value is
    /// invalid.
    fn append(&mut self, name: Result<HeaderName, &[u8]>, value: &[u8]) -> Result<(), String> {
        match (name, HeaderValue::from_maybe_shared(shared(value))) {
            (Ok(n), Ok(v)) => {
                // A `HeaderMap` holds some 24,000 names, which a large enough
                // max_field_section_size lets a peer exceed: too large, as by size.
                if self.headers.try_append(n, v).is_err() {
                    self.refuse_as_too_large();
                }
                Ok(())
            }
            (Ok(n), Err(_)) => Err(format!("invalid value of {n}")),
            (Err(n), _) => Err(format!("invalid field {:?}", String::from_utf8_lossy(n))),
        }
    }

    pub fn into_request(self, early_data: bool) -> Result<Request<()>, String> {
        if let Some(e) = self.malformed {
            return Err(e);
        }
        let method = self.method.ok_or("missing :method")?;
        let mut uri = http::uri::Parts::default();
        uri.scheme = self.scheme;
        uri.authority = self.authority;
        uri.path_and_query = self.path;
        let uri = Uri::from_parts(uri).map_err(|e| e.to_string())?;
        let mut req = Request::new(());
        *req.method_mut() = method;
        *req.uri_mut() = uri;
        *req.headers_mut() = self.headers;
        if let Some(protocol) = self.protocol {
            req.extensions_mut().insert(protocol);
        }
        if early_data {
            req.extensions_mut().insert(EarlyData);
        }
        Ok(req)
    }

    pub fn into_response(self) -> Result<Response<()>, String> {
        if let Some(e) = self.malformed {
            return Err(e);
        }
        let status = self.status.ok_or("missing :status")?;
        let mut resp = Response::new(());
        *resp.status_mut() = status;
        *resp.headers_mut() = self.headers;
        Ok(resp)
    }

    pub fn into_trailers(self) -> Result<HeaderMap, String> {
        match self.malformed {
            Some(e) => Err(e),
            None => Ok(self.headers),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(section: &Section) -> Vec<String> {
        section
            .fields()
            .map(|(n, v)| {
                format!(
                    "{}={}",
                    String::from_utf8_lossy(n),
                    String::from_utf8_lossy(v)
                )
            })
            .collect()
    }

    #[test]
    fn request_head_moves_host_and_drops_connection_headers() {
        let req = Request::builder()
            .method("POST")
            .uri("/upload?x=1")
            .header("host", "example.com")
            .header("connection", "keep-alive")
            .header("te", "trailers")
            .header("transfer-encoding", "chunked")
            .header("x-a", "1")
            .body(())
            .unwrap();
        let (parts, ()) = req.into_parts();
        assert_eq!(
            names(&request_head(parts).unwrap()),
            [
                ":method=POST",
                ":scheme=https",
                ":authority=example.com",
                ":path=/upload?x=1",
                "te=trailers",
                "x-a=1"
            ]
        );
    }

    #[test]
    fn extended_connect_carries_protocol() {
        let mut req = Request::builder()
            .method("CONNECT")
            .uri("https://example.com/chat")
            .body(())
            .unwrap();
        req.extensions_mut().insert(Protocol::from("websocket"));
        let (parts, ()) = req.into_parts();
        assert_eq!(
            names(&request_head(parts).unwrap()),
            [
                ":method=CONNECT",
                ":scheme=https",
                ":authority=example.com",
                ":path=/chat",
                ":protocol=websocket"
            ]
        );
    }

    #[test]
    fn oversized_section_is_flagged_not_stored() {
        let mut head = Head::default();
        head.push(None, b":method", b"GET", 100);
        head.push(None, b"x-big", &[b'a'; 80], 100);
        head.push(None, b"x-small", b"1", 100);
        assert!(head.too_large);
        assert!(head.headers.is_empty() && head.method.is_none());
    }

    #[test]
    fn more_names_than_a_header_map_holds_is_too_large_not_a_panic() {
        let mut head = Head::default();
        head.push(None, b":method", b"GET", u64::MAX);
        for i in 0..40_000 {
            head.push(None, format!("x-{i}").as_bytes(), b"", u64::MAX);
        }
        assert!(head.too_large);
        assert!(head.headers.is_empty());
    }

    #[test]
    fn received_request_round_trips() {
        // A name nghttp3 recognised comes as the constant; its value is checked alike.
        let request = |user_agent: &[u8]| {
            let mut head = Head::default();
            for (n, v) in [
                (":method", "GET"),
                (":scheme", "https"),
                (":authority", "a.example"),
                (":path", "/p?q"),
                ("accept", "*/*"),
            ] {
                head.push(None, n.as_bytes(), v.as_bytes(), 1 << 16);
            }
            let ua = Some(http::header::USER_AGENT);
            head.push(ua, b"user-agent", user_agent, 1 << 16);
            head.into_request(true)
        };
        let req = request(b"t/1").unwrap();
        assert_eq!(req.uri(), "https://a.example/p?q");
        assert_eq!(req.headers()["accept"], "*/*");
        assert_eq!(req.headers()["user-agent"], "t/1");
        assert!(req.extensions().get::<EarlyData>().is_some());
        assert_eq!(
            request(b"a\x7fb").unwrap_err(),
            "invalid value of user-agent"
        );
    }
}
