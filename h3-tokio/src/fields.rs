//! Conversion between `http` types and HTTP/3 field sections, at the protocol edge.

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, Method, Request, Response, StatusCode, Uri};

use crate::ext::{EarlyData, Protocol};
use crate::ffi::Field;

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

fn push_headers(out: &mut Vec<Field>, headers: &HeaderMap) {
    for (name, value) in headers {
        if !is_connection_specific(name, value) {
            out.push((
                Bytes::copy_from_slice(name.as_str().as_bytes()),
                Bytes::copy_from_slice(value.as_bytes()),
            ));
        }
    }
}

fn pseudo(name: &'static str, value: &str) -> Field {
    (
        Bytes::from_static(name.as_bytes()),
        Bytes::copy_from_slice(value.as_bytes()),
    )
}

/// The field section of a request. `:authority` comes from the URI, else from Host.
pub(crate) fn request_head(req: &http::request::Parts) -> Result<Vec<Field>, String> {
    let mut out = Vec::with_capacity(req.headers.len() + 5);
    out.push(pseudo(":method", req.method.as_str()));
    let authority = req
        .uri
        .authority()
        .map(|a| a.as_str().to_owned())
        .or_else(|| {
            req.headers
                .get(http::header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(str::to_owned)
        });
    let protocol = req.extensions.get::<Protocol>();
    if req.method == Method::CONNECT && protocol.is_none() {
        // Plain CONNECT: only :method and :authority (RFC 9114, section 4.4).
        out.push(pseudo(
            ":authority",
            &authority.ok_or("CONNECT without an authority")?,
        ));
    } else {
        out.push(pseudo(":scheme", req.uri.scheme_str().unwrap_or("https")));
        if let Some(authority) = authority {
            out.push(pseudo(":authority", &authority));
        }
        let path = req.uri.path_and_query().map_or("/", |p| p.as_str());
        out.push(pseudo(":path", if path.is_empty() { "/" } else { path }));
        if let Some(protocol) = protocol {
            out.push(pseudo(":protocol", protocol.as_str()));
        }
    }
    push_headers(&mut out, &req.headers);
    Ok(out)
}

pub(crate) fn response_head(resp: &http::response::Parts) -> Vec<Field> {
    let mut out = Vec::with_capacity(resp.headers.len() + 1);
    out.push(pseudo(":status", resp.status.as_str()));
    push_headers(&mut out, &resp.headers);
    out
}

pub(crate) fn trailer_fields(trailers: &HeaderMap) -> Vec<Field> {
    let mut out = Vec::with_capacity(trailers.len());
    push_headers(&mut out, trailers);
    out
}

/// A field section being received: pseudo-headers apart, size counted as RFC 9114 does.
#[derive(Default)]
pub(crate) struct Head {
    pseudo: Vec<(Bytes, Bytes)>,
    headers: HeaderMap,
    size: u64,
    pub too_large: bool,
    malformed: Option<String>,
}

impl Head {
    pub fn push(&mut self, name: &[u8], value: &[u8], limit: u64) {
        self.size += name.len() as u64 + value.len() as u64 + 32;
        if self.size > limit {
            // Keep counting, stop storing: the section will be refused as a whole.
            self.too_large = true;
            self.headers.clear();
            self.pseudo.clear();
            return;
        }
        if self.too_large || self.malformed.is_some() {
            return;
        }
        if name.first() == Some(&b':') {
            self.pseudo
                .push((Bytes::copy_from_slice(name), Bytes::copy_from_slice(value)));
            return;
        }
        match (HeaderName::from_bytes(name), HeaderValue::from_bytes(value)) {
            (Ok(n), Ok(v)) => {
                self.headers.append(n, v);
            }
            _ => {
                self.malformed = Some(format!("invalid field {:?}", String::from_utf8_lossy(name)))
            }
        }
    }

    fn pseudo(&self, name: &str) -> Option<&str> {
        self.pseudo
            .iter()
            .find(|(n, _)| n.as_ref() == name.as_bytes())
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
    }

    pub fn into_request(self, early_data: bool) -> Result<Request<()>, String> {
        if let Some(e) = self.malformed {
            return Err(e);
        }
        let method = self.pseudo(":method").ok_or("missing :method")?;
        let method = Method::from_bytes(method.as_bytes()).map_err(|e| e.to_string())?;
        let mut uri = Uri::builder();
        if let Some(scheme) = self.pseudo(":scheme") {
            uri = uri.scheme(scheme);
        }
        if let Some(authority) = self.pseudo(":authority") {
            uri = uri.authority(authority);
        }
        if let Some(path) = self.pseudo(":path") {
            uri = uri.path_and_query(path);
        }
        let uri = uri.build().map_err(|e| e.to_string())?;
        let mut req = Request::builder()
            .method(method)
            .uri(uri)
            .body(())
            .map_err(|e| e.to_string())?;
        if let Some(protocol) = self.pseudo(":protocol") {
            req.extensions_mut().insert(Protocol::from(protocol));
        }
        *req.headers_mut() = self.headers;
        if early_data {
            req.extensions_mut().insert(EarlyData);
        }
        Ok(req)
    }

    pub fn into_response(self) -> Result<Response<()>, String> {
        if let Some(e) = self.malformed {
            return Err(e);
        }
        let status = self.pseudo(":status").ok_or("missing :status")?;
        let status = StatusCode::from_bytes(status.as_bytes()).map_err(|e| e.to_string())?;
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

    fn names(fields: &[Field]) -> Vec<String> {
        fields
            .iter()
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
            names(&request_head(&parts).unwrap()),
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
            names(&request_head(&parts).unwrap()),
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
        head.push(b":method", b"GET", 100);
        head.push(b"x-big", &[b'a'; 80], 100);
        head.push(b"x-small", b"1", 100);
        assert!(head.too_large);
        assert!(head.headers.is_empty() && head.pseudo.is_empty());
    }

    #[test]
    fn received_request_round_trips() {
        let mut head = Head::default();
        for (n, v) in [
            (":method", "GET"),
            (":scheme", "https"),
            (":authority", "a.example"),
            (":path", "/p?q"),
            ("accept", "*/*"),
        ] {
            head.push(n.as_bytes(), v.as_bytes(), 1 << 16);
        }
        let req = head.into_request(true).unwrap();
        assert_eq!(req.uri(), "https://a.example/p?q");
        assert_eq!(req.headers()["accept"], "*/*");
        assert!(req.extensions().get::<EarlyData>().is_some());
    }
}
