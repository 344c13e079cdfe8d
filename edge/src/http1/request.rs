//! Request serialisation, for the HTTP/1.1 client to upstreams: the request line and
//! header block, appended to a buffer. Chunk framing and trailers are the same as for
//! responses ([`encode_chunk_size`](super::response::encode_chunk_size),
//! [`encode_end`](super::response::encode_end)).

use http::header::{self, HeaderName, HeaderValue};
use http::Method;

use super::response::Framing;

/// Room for a typical head at the start: a larger one grows the buffer once or twice.
const HEAD_CAPACITY: usize = 512;

/// Appends the request line and header block. Connection-specific headers and
/// Content-Length in `headers` are skipped: `framing` decides the body's delimiting
/// (`Framing::Close` cannot delimit a request body and is sent as `Framing::None`).
///
/// A `Vec` rather than a `BytesMut`: its appends are inlined (a head is some 25 of them;
/// `BytesMut`'s are calls).
pub fn encode_request_head<'a>(
    buf: &mut Vec<u8>,
    method: &Method,
    target: &str,
    headers: impl IntoIterator<Item = (&'a HeaderName, &'a HeaderValue)>,
    framing: Framing,
) {
    buf.reserve(HEAD_CAPACITY + target.len());
    buf.extend_from_slice(method.as_str().as_bytes());
    buf.push(b' ');
    buf.extend_from_slice(target.as_bytes());
    buf.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in headers {
        if crate::session::is_connection_specific(name) || name == header::CONTENT_LENGTH {
            continue;
        }
        buf.extend_from_slice(name.as_str().as_bytes());
        buf.extend_from_slice(b": ");
        buf.extend_from_slice(value.as_bytes());
        buf.extend_from_slice(b"\r\n");
    }
    match framing {
        Framing::Length(n) => super::response::put_content_length(buf, n),
        Framing::Chunked => buf.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        Framing::None | Framing::Close => {}
    }
    buf.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderMap;

    #[test]
    fn request_heads() {
        let mut h = HeaderMap::new();
        h.insert("host", "up".parse().unwrap());
        h.insert("content-length", "3".parse().unwrap());
        h.insert("connection", "close".parse().unwrap());
        h.insert("x-a", "b".parse().unwrap());
        let mut buf = Vec::new();
        encode_request_head(&mut buf, &Method::POST, "/p?q", &h, Framing::Length(5));
        assert_eq!(
            &buf[..],
            b"POST /p?q HTTP/1.1\r\nhost: up\r\nx-a: b\r\ncontent-length: 5\r\n\r\n"
        );
        buf.clear();
        encode_request_head(
            &mut buf,
            &Method::PUT,
            "/",
            &HeaderMap::new(),
            Framing::Chunked,
        );
        assert_eq!(
            &buf[..],
            b"PUT / HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n"
        );
    }
}
