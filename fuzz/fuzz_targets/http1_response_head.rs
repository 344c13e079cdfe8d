//! An upstream server's response head, for a request method chosen by the first byte:
//! `parse_response_head` parses it or refuses it with 502.
#![no_main]

use bytes::Bytes;
use edge::http1::head::{find_head_end, parse_response_head};
use edge::http1::response::Framing;
use http::{header, Method, StatusCode};
use libfuzzer_sys::fuzz_target;

const METHODS: [Method; 4] = [Method::GET, Method::HEAD, Method::POST, Method::CONNECT];

fuzz_target!(|data: &[u8]| {
    let Some((&pick, head)) = data.split_first() else {
        return;
    };
    let method = &METHODS[usize::from(pick) % METHODS.len()];
    let head = &head[..find_head_end(head, 0).unwrap_or(head.len())];
    let Ok(resp) = parse_response_head(Bytes::copy_from_slice(head), method) else {
        return;
    };
    let status = resp.parts.status;
    let bodiless = *method == Method::HEAD
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    assert_eq!(bodiless, resp.framing == Framing::None);
    let headers = &resp.parts.headers;
    assert!(!headers.contains_key(header::TRANSFER_ENCODING));
    match resp.framing {
        Framing::Chunked => assert!(!headers.contains_key(header::CONTENT_LENGTH)),
        Framing::Length(n) => assert_eq!(headers[header::CONTENT_LENGTH], n.to_string()),
        Framing::Close => assert!(!resp.keep_alive),
        Framing::None => {}
    }
});
