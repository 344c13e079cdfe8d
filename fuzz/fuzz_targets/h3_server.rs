//! HTTP/3 from a hostile client, through nghttp3 and h3-tokio's callbacks as a server
//! connection drives them (`h3_tokio::fuzzing::Server`, no QUIC): bytes on the client's
//! control, QPACK and request streams, stream ends and resets, in any order.
#![no_main]

use h3_tokio::fuzzing::Server;
use h3_tokio::Config;
use libfuzzer_sys::fuzz_target;

/// The client streams a record can name: four requests, then the unidirectional ones
/// (the first three are, by convention only, control, QPACK encoder, QPACK decoder).
const STREAMS: [u64; 8] = [0, 4, 8, 12, 2, 6, 10, 14];

fuzz_target!(|data: &[u8]| {
    // [config byte, records...]; a record is [head, length, bytes]: head bits 0-2 pick
    // the stream, bit 3 is fin, bit 4 a reset instead (length is then its code), bits
    // 5-7 the length's high bits.
    let Some((&pick, mut data)) = data.split_first() else {
        return;
    };
    let mut config = Config::default();
    if pick & 1 != 0 {
        // Small enough for fuzzed headers to cross it: the 431 path.
        config.max_field_section_size = 256;
    }
    config.qpack_max_table_capacity = [0, 256, 4096][usize::from(pick >> 1) % 3];
    config.qpack_blocked_streams = usize::from(pick >> 3);
    let mut conn = Server::new(config);
    while let [head, low, rest @ ..] = data {
        let sid = STREAMS[usize::from(head & 7)];
        let len = usize::from(head >> 5) << 8 | usize::from(*low);
        let result = if head & 0x10 != 0 {
            data = rest;
            conn.reset(sid, 0x100 + len as u64)
        } else {
            let (bytes, rest) = rest.split_at(len.min(rest.len()));
            data = rest;
            conn.read(sid, bytes, head & 8 != 0)
        };
        if result.is_err() {
            // A connection error: a real connection would be closed now.
            return;
        }
    }
});
