//! A whole HTTP/2 connection (`edge::http2::serve`: the h2 crate and edge's handling of
//! its requests) with a hostile client over an in-memory pipe: after the connection
//! preface and an empty SETTINGS, whatever frames and bytes it sends (HEADERS and
//! CONTINUATION with any HPACK, DATA, trailers, resets, SETTINGS, PING, GOAWAY, window
//! updates), with reads, pauses and a half-close between them as the input chooses
//! (the input's layout: `hostile_client::run`, with op 4 for a framed record). Time is
//! paused, so every timeout fires as soon as nothing else can run. The connection must
//! end by itself once the client is gone, and never panic.
#![no_main]

#[path = "hostile_client.rs"]
mod hostile_client;

use edge::session::Protocol;
use hostile_client::Dialect;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dialect = Dialect {
        protocol: Protocol::Http2,
        preface: b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0",
        frames: true,
    };
    hostile_client::run(data, dialect, edge::http2::serve);
});
