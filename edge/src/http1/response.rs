//! Response serialisation: how a response body is delimited on the wire, and the bytes
//! of status lines, header blocks, chunk framing and trailers, appended to a buffer.

use std::fmt::Write as _;

use bytes::{BufMut, BytesMut};
use http::header::{self, HeaderMap};
use http::StatusCode;
use http_body::SizeHint;

use super::chunked::forbidden_trailer;

/// How the response body goes on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body bytes at all (HEAD, 1xx, 204, 304).
    None,
    /// `Content-Length`: the body's size is known exactly.
    Length(u64),
    /// `Transfer-Encoding: chunked` (HTTP/1.1 clients).
    Chunked,
    /// The body ends when the connection closes (HTTP/1.0 clients).
    Close,
}

impl Framing {
    /// The framing for a response with this status and body size, to a request with
    /// this method, from an HTTP/1.1 (or 1.0) client.
    pub fn choose(head_request: bool, status: StatusCode, size: &SizeHint, http11: bool) -> Self {
        if head_request
            || status.is_informational()
            || status == StatusCode::NO_CONTENT
            || status == StatusCode::NOT_MODIFIED
        {
            Framing::None
        } else if let Some(n) = size.exact() {
            Framing::Length(n)
        } else if http11 {
            Framing::Chunked
        } else {
            Framing::Close
        }
    }
}

/// What the Connection header says, if anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionHeader {
    /// Nothing: HTTP/1.1 keeps alive by default.
    Omit,
    Close,
    /// HTTP/1.0 clients need to be told.
    KeepAlive,
}

/// Appends the status line and header block. `content_length` is the value to send (the
/// handler's own Content-Length headers are always replaced, except when
/// `keep_content_length` says to pass them through: HEAD and 304 answers describe a body
/// that is not sent).
pub fn encode_head(
    buf: &mut BytesMut,
    status: StatusCode,
    headers: &HeaderMap,
    framing: Framing,
    content_length: Option<u64>,
    keep_content_length: bool,
    connection: ConnectionHeader,
) {
    buf.put_slice(b"HTTP/1.1 ");
    buf.put_slice(status.as_str().as_bytes());
    buf.put_u8(b' ');
    buf.put_slice(status.canonical_reason().unwrap_or("").as_bytes());
    buf.put_slice(b"\r\n");
    for (name, value) in headers {
        if crate::session::is_connection_specific(name)
            || (name == header::CONTENT_LENGTH && !keep_content_length)
        {
            continue;
        }
        buf.put_slice(name.as_str().as_bytes());
        buf.put_slice(b": ");
        buf.put_slice(value.as_bytes());
        buf.put_slice(b"\r\n");
    }
    if let Some(n) = content_length {
        put_content_length(buf, n);
    }
    if framing == Framing::Chunked {
        buf.put_slice(b"transfer-encoding: chunked\r\n");
    }
    match connection {
        ConnectionHeader::Omit => {}
        ConnectionHeader::Close => buf.put_slice(b"connection: close\r\n"),
        ConnectionHeader::KeepAlive => buf.put_slice(b"connection: keep-alive\r\n"),
    }
    buf.put_slice(b"\r\n");
}

/// Appends a `content-length` line. Without `fmt`: its machinery was a third of the
/// cost of encoding a proxied response's head (350 instructions of 1,000).
pub(super) fn put_content_length(buf: &mut impl BufMut, n: u64) {
    buf.put_slice(b"content-length: ");
    buf.put_slice(itoa::Buffer::new().format(n).as_bytes());
    buf.put_slice(b"\r\n");
}

/// Appends a chunk's size line; the data and a CRLF follow.
pub fn encode_chunk_size(buf: &mut BytesMut, len: usize) {
    let _ = write!(buf, "{len:x}\r\n");
}

/// Appends the last chunk and the trailer section (`None`: no trailers).
pub fn encode_end(buf: &mut BytesMut, trailers: Option<&HeaderMap>) {
    buf.put_slice(b"0\r\n");
    for (name, value) in trailers.into_iter().flatten() {
        if forbidden_trailer(name) {
            continue;
        }
        buf.put_slice(name.as_str().as_bytes());
        buf.put_slice(b": ");
        buf.put_slice(value.as_bytes());
        buf.put_slice(b"\r\n");
    }
    buf.put_slice(b"\r\n");
}

/// A short response this edge writes itself when it refuses a request, then closes.
/// It has a `Date`, as the engine's answers (RFC 9110 6.6.1).
pub fn encode_error(buf: &mut BytesMut, status: StatusCode) {
    let reason = status.canonical_reason().unwrap_or("Error");
    let _ = write!(buf, "HTTP/1.1 {} {reason}\r\n", status.as_str());
    if let Some(now) = crate::http_date::now() {
        buf.put_slice(b"date: ");
        buf.put_slice(now.as_bytes());
        buf.put_slice(b"\r\n");
    }
    let _ = write!(
        buf,
        "content-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{reason}\n",
        reason.len() + 1
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(status: u16, headers: &[(&str, &str)], framing: Framing, cl: Option<u64>) -> String {
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            map.append(
                header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        let mut buf = BytesMut::new();
        let status = StatusCode::from_u16(status).unwrap();
        encode_head(
            &mut buf,
            status,
            &map,
            framing,
            cl,
            false,
            ConnectionHeader::Omit,
        );
        String::from_utf8(buf.to_vec()).unwrap()
    }

    #[test]
    fn status_lines() {
        assert_eq!(
            head(200, &[], Framing::None, None),
            "HTTP/1.1 200 OK\r\n\r\n"
        );
        assert_eq!(head(599, &[], Framing::None, None), "HTTP/1.1 599 \r\n\r\n");
        assert_eq!(head(999, &[], Framing::None, None), "HTTP/1.1 999 \r\n\r\n");
        assert_eq!(
            head(100, &[], Framing::None, None),
            "HTTP/1.1 100 Continue\r\n\r\n"
        );
    }

    #[test]
    fn handler_framing_headers_replaced() {
        let h = head(
            200,
            &[
                ("content-length", "99"),
                ("transfer-encoding", "gzip"),
                ("connection", "upgrade"),
                ("x-a", "b"),
            ],
            Framing::Chunked,
            None,
        );
        assert_eq!(
            h,
            "HTTP/1.1 200 OK\r\nx-a: b\r\ntransfer-encoding: chunked\r\n\r\n"
        );
        let h = head(
            200,
            &[("content-length", "99")],
            Framing::Length(5),
            Some(5),
        );
        assert_eq!(h, "HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n");
    }

    #[test]
    fn framing_choice() {
        let exact = SizeHint::with_exact(7);
        let unknown = SizeHint::new();
        let ok = StatusCode::OK;
        assert_eq!(Framing::choose(false, ok, &exact, true), Framing::Length(7));
        assert_eq!(Framing::choose(false, ok, &unknown, true), Framing::Chunked);
        assert_eq!(Framing::choose(false, ok, &unknown, false), Framing::Close);
        assert_eq!(Framing::choose(true, ok, &exact, true), Framing::None);
        for s in [101, 103, 204, 304] {
            let s = StatusCode::from_u16(s).unwrap();
            assert_eq!(Framing::choose(false, s, &exact, true), Framing::None);
        }
    }

    #[test]
    fn chunk_framing() {
        let mut buf = BytesMut::new();
        encode_chunk_size(&mut buf, 0x1a2b);
        let mut t = HeaderMap::new();
        t.insert("x-sum", "1".parse().unwrap());
        t.insert("content-length", "1".parse().unwrap());
        encode_end(&mut buf, Some(&t));
        assert_eq!(&buf[..], b"1a2b\r\n0\r\nx-sum: 1\r\n\r\n");
    }

    #[test]
    fn error_response() {
        let mut buf = BytesMut::new();
        encode_error(&mut buf, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
        let text = String::from_utf8(buf.to_vec()).unwrap();
        let (status_line, rest) = text.split_once("\r\n").unwrap();
        assert_eq!(status_line, "HTTP/1.1 431 Request Header Fields Too Large");
        let (date, rest) = rest.split_once("\r\n").unwrap();
        let date = date.strip_prefix("date: ").unwrap();
        assert!(httpdate::parse_http_date(date).is_ok(), "{date}");
        assert_eq!(
            rest,
            "content-type: text/plain\r\ncontent-length: 32\r\nconnection: close\r\n\r\n\
             Request Header Fields Too Large\n"
        );
    }
}
