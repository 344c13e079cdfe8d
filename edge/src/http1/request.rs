//! Request serialisation, for the HTTP/1.1 client to upstreams: the request line and
//! header block, appended to a buffer. Chunk framing and trailers are the same as for
//! responses ([`encode_chunk_size`](super::response::encode_chunk_size),
//! [`encode_end`](super::response::encode_end)).

use bytes::{BufMut, BytesMut};
use http::header::{self, HeaderName, HeaderValue};
use http::Method;

use super::response::Framing;

/// Appends the request line and header block (`headers` gives the fields, once to size
/// the buffer and once to write them). Connection-specific headers and
/// Content-Length in them are skipped: `framing` decides the body's delimiting
/// (`Framing::Close` cannot delimit a request body and is sent as `Framing::None`).
pub fn encode_request_head<'a, I>(
    buf: &mut BytesMut,
    method: &Method,
    target: &str,
    headers: impl Fn() -> I,
    framing: Framing,
) where
    I: Iterator<Item = (&'a HeaderName, &'a HeaderValue)>,
{
    // One allocation for the whole head rather than a doubling per few headers.
    let size = method.as_str().len()
        + target.len()
        + headers()
            .map(|(n, v)| n.as_str().len() + v.len() + 4)
            .sum::<usize>()
        + 64;
    buf.reserve(size);
    buf.put_slice(method.as_str().as_bytes());
    buf.put_u8(b' ');
    buf.put_slice(target.as_bytes());
    buf.put_slice(b" HTTP/1.1\r\n");
    for (name, value) in headers() {
        if crate::session::is_connection_specific(name) || name == header::CONTENT_LENGTH {
            continue;
        }
        buf.put_slice(name.as_str().as_bytes());
        buf.put_slice(b": ");
        buf.put_slice(value.as_bytes());
        buf.put_slice(b"\r\n");
    }
    match framing {
        Framing::Length(n) => {
            use std::fmt::Write as _;
            let _ = write!(buf, "content-length: {n}\r\n");
        }
        Framing::Chunked => buf.put_slice(b"transfer-encoding: chunked\r\n"),
        Framing::None | Framing::Close => {}
    }
    buf.put_slice(b"\r\n");
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
        let mut buf = BytesMut::new();
        encode_request_head(
            &mut buf,
            &Method::POST,
            "/p?q",
            || h.iter(),
            Framing::Length(5),
        );
        assert_eq!(
            &buf[..],
            b"POST /p?q HTTP/1.1\r\nhost: up\r\nx-a: b\r\ncontent-length: 5\r\n\r\n"
        );
        buf.clear();
        encode_request_head(
            &mut buf,
            &Method::PUT,
            "/",
            std::iter::empty,
            Framing::Chunked,
        );
        assert_eq!(
            &buf[..],
            b"PUT / HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n"
        );
    }
}
