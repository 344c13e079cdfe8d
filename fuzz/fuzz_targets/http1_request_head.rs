//! A client's request head: `find_head_end` delimits it (in one read, and resumed as
//! the bytes trickle in), `parse_head` parses it or refuses it with a status, and
//! `route_path::normalize` makes the path locations are matched against.
#![no_main]

use bytes::Bytes;
use edge::http1::head::{find_head_end, parse_head, BodyKind};
use edge::route_path;
use http::header;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let end = find_head_end(data, 0);
    assert_eq!(end, trickled(data), "resumed search disagrees");
    let head = &data[..end.unwrap_or(data.len())];
    let Ok(req) = parse_head(Bytes::copy_from_slice(head)) else {
        return;
    };
    let headers = &req.parts.headers;
    for name in [
        header::CONNECTION,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
    ] {
        assert!(!headers.contains_key(name), "hop-by-hop header passed on");
    }
    match req.body {
        BodyKind::Chunked => assert!(!headers.contains_key(header::CONTENT_LENGTH)),
        // One value passes on as sent (leading zeros and all), repeats as one clean value.
        BodyKind::Length(n) => {
            let value = headers[header::CONTENT_LENGTH].to_str().expect("digits");
            assert_eq!(value.trim().parse::<u64>(), Ok(n));
        }
        BodyKind::None => assert!(!headers.contains_key(header::CONTENT_LENGTH)),
    }
    let path = req.parts.uri.path();
    if let (true, Ok(routed)) = (path.starts_with('/'), route_path::normalize(path)) {
        assert_eq!(routed.first(), Some(&b'/'), "{path:?}");
        // No empty, `.` or `..` segment is left, but for a final `/`.
        let inner = routed[1..].strip_suffix(b"/").unwrap_or(&routed[1..]);
        for segment in inner.split(|&b| b == b'/').filter(|_| !inner.is_empty()) {
            assert!(
                !matches!(segment, b"" | b"." | b".."),
                "{path:?} -> {routed:?}"
            );
        }
    }
});

/// `find_head_end` as a connection calls it: after every byte, resuming the search
/// where the previous one stopped.
fn trickled(data: &[u8]) -> Option<usize> {
    (1..=data.len()).find_map(|len| find_head_end(&data[..len], (len - 1).saturating_sub(2)))
}
