//! A whole HTTP/1 connection (`edge::http1::serve`) with a hostile client over an
//! in-memory pipe: whatever bytes it sends (heads, bodies of any framing, pipelined
//! requests, `Expect`), with reads, pauses and a half-close between them as the input
//! chooses (the input's layout: `hostile_client::run`). Time is paused, so every
//! timeout fires as soon as nothing else can run. The connection must end by itself
//! once the client is gone, and never panic.
#![no_main]

#[path = "hostile_client.rs"]
mod hostile_client;

use edge::session::Protocol;
use hostile_client::Dialect;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dialect = Dialect {
        protocol: Protocol::Http1,
        preface: b"",
        frames: false,
    };
    hostile_client::run(data, dialect, edge::http1::serve);
});
