//! A chunked body (a client's request body, or an upstream's response body): the
//! `ChunkedDecoder` fed the input in pieces whose sizes the first bytes choose, as reads
//! from a socket would cut it. Whatever the cuts, the outcome is the one of decoding the
//! input in one piece; decoded bytes never exceed the input; once done it stays done.
#![no_main]

use edge::http1::chunked::{Chunk, ChunkedDecoder, ChunkedError};
use http::HeaderMap;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // [n, n piece sizes (none: byte by byte), max trailer size / 16 - 1, body...]; the
    // bits of n above the piece count, times 128 bytes of `x`, go after the body's
    // first semicolons: chunk extensions long enough to reach their limits.
    let Some((&n, rest)) = data.split_first() else {
        return;
    };
    let pad = usize::from(n >> 3) * 128;
    let n = usize::from(n % 8);
    if rest.len() <= n {
        return;
    }
    let (sizes, rest) = rest.split_at(n);
    let (&max_trailers, body) = rest.split_first().expect("checked above");
    // 16 to 4096 bytes (edge's own limits are 1 KiB and more).
    let max_trailers = (usize::from(max_trailers) + 1) * 16;
    let mut pieces: Vec<usize> = sizes.iter().map(|&s| usize::from(s).max(1)).collect();
    if pieces.is_empty() {
        pieces.push(1);
    }
    let body = &pad_extensions(body, pad);
    let cut = decode(body, pieces, max_trailers);
    let whole = decode(body, [body.len().max(1)], max_trailers);
    assert_eq!(cut, whole, "outcome depends on where reads cut the body");
});

/// `body` with `pad` bytes of `x` after each of its first 8 semicolons: up to 31 KiB of
/// extensions in lines within `MAX_SIZE_LINE`, past `MAX_EXTENSIONS`.
fn pad_extensions(body: &[u8], pad: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len());
    let mut padded = 0;
    for &b in body {
        out.push(b);
        if b == b';' && padded < 8 {
            out.resize(out.len() + pad, b'x');
            padded += 1;
        }
    }
    out
}

#[derive(Debug, PartialEq)]
enum End {
    /// The body ended `consumed` bytes into the input.
    Done {
        consumed: usize,
        trailers: Option<HeaderMap>,
    },
    Error(ChunkedError),
    /// The input ran out first.
    Truncated,
}

/// Decodes `input` delivered in pieces of the given sizes (cycled), as a connection
/// does: the unconsumed bytes stay buffered and the next read is appended.
fn decode(
    input: &[u8],
    pieces: impl IntoIterator<Item = usize, IntoIter: Clone>,
    max_trailers: usize,
) -> (Vec<u8>, End) {
    let mut pieces = pieces.into_iter().cycle();
    let mut dec = ChunkedDecoder::new(max_trailers);
    let mut buf = Vec::new();
    let (mut fed, mut consumed) = (0, 0);
    let mut out = Vec::new();
    loop {
        assert!(out.len() <= consumed, "more data decoded than consumed");
        let chunk = match dec.decode(&buf) {
            Ok(chunk) => chunk,
            Err(e) => return (out, End::Error(e)),
        };
        match chunk {
            Chunk::Data { skip, len } => {
                assert!(len > 0, "empty Data");
                out.extend_from_slice(&buf[skip..skip + len]);
                buf.drain(..skip + len);
                consumed += skip + len;
            }
            Chunk::Incomplete { skip } => {
                buf.drain(..skip);
                consumed += skip;
                if fed == input.len() {
                    return (out, End::Truncated);
                }
                let n = pieces.next().expect("cycled").min(input.len() - fed);
                buf.extend_from_slice(&input[fed..fed + n]);
                fed += n;
            }
            Chunk::End {
                consumed: n,
                trailers,
            } => {
                assert!(dec.is_done());
                buf.drain(..n);
                let again = dec.decode(&buf);
                let stays = Ok(Chunk::End {
                    consumed: 0,
                    trailers: None,
                });
                assert_eq!(again, stays, "decoder did not stay done");
                return (
                    out,
                    End::Done {
                        consumed: consumed + n,
                        trailers,
                    },
                );
            }
        }
    }
}
