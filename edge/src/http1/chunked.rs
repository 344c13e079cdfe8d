//! Sans-IO decoder for the chunked transfer coding (RFC 9112, 7.1): buffered bytes in,
//! where the data is and how much framing to skip out. Strict where laxness lets two
//! parsers disagree on where a body ends: sizes are 1 to 16 hex digits, every line ends
//! in CRLF, chunk data is followed by exactly CRLF.

use http::header::{HeaderMap, HeaderName, HeaderValue};

use super::head::find_head_end;

/// Longest chunk-size line (with extensions, which are ignored) accepted.
pub const MAX_SIZE_LINE: usize = 4096;

/// Most bytes of chunk extensions (all that follows the chunk sizes on their lines) one
/// body may carry, as hyper (16 KiB a message). They are skipped, and count toward no
/// other limit (`client_max_body_size` counts data): without this, a peer could send
/// megabytes of them for a byte of data.
pub const MAX_EXTENSIONS: usize = 16 * 1024;

/// Most trailer fields accepted.
const MAX_TRAILERS: usize = 64;

/// What the bytes at the start of the buffer hold.
#[derive(Debug, PartialEq, Eq)]
pub enum Chunk {
    /// Skip `skip` bytes of framing; the `len` bytes after them are body data.
    Data { skip: usize, len: usize },
    /// Skip `skip` bytes of framing (possibly 0), then more bytes are needed.
    Incomplete { skip: usize },
    /// The body ends after `consumed` bytes, with these trailers (if any were sent).
    End {
        consumed: usize,
        trailers: Option<HeaderMap>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ChunkedError {
    #[error("invalid chunk size")]
    Size,
    #[error("chunk size has more than 16 hex digits")]
    SizeTooLong,
    #[error("chunk size line too long")]
    LineTooLong,
    #[error("chunk extensions too large")]
    ExtensionsTooLarge,
    #[error("missing CRLF after chunk data")]
    MissingCrlf,
    #[error("invalid trailer section")]
    Trailers,
    #[error("trailer section too large")]
    TrailersTooLarge,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Size(SizeLine),
    Data(u64),
    DataEnd,
    /// In the trailer section; `scanned` bytes of it were searched for its end already.
    Trailers {
        scanned: usize,
    },
    Done,
}

/// How far a chunk-size line that is not all there yet was checked: a line that comes
/// a byte at a time is scanned once, not once a byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct SizeLine {
    scanned: usize,
    /// A `;` was seen: extension bytes may follow.
    in_ext: bool,
}

/// Decodes one chunked body. Feed it the unconsumed bytes each time, after skipping what
/// the previous call said to skip.
#[derive(Debug, Clone)]
pub struct ChunkedDecoder {
    state: State,
    max_trailer_size: usize,
    /// Extension bytes so far (see [`MAX_EXTENSIONS`]).
    extensions: usize,
}

impl ChunkedDecoder {
    /// A decoder that refuses trailer sections larger than `max_trailer_size` bytes.
    pub fn new(max_trailer_size: usize) -> Self {
        ChunkedDecoder {
            state: State::Size(SizeLine::default()),
            max_trailer_size,
            extensions: 0,
        }
    }

    /// Whether the whole body, trailers included, was decoded.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Decodes from the start of `buf`. Never returns `Data` with `len == 0`.
    pub fn decode(&mut self, buf: &[u8]) -> Result<Chunk, ChunkedError> {
        let mut pos = 0;
        loop {
            let rest = &buf[pos..];
            match self.state {
                State::Size(mut line) => match parse_size_line(rest, &mut line)? {
                    None => {
                        self.state = State::Size(line);
                        return Ok(Chunk::Incomplete { skip: pos });
                    }
                    Some((n, size, extensions)) => {
                        self.extensions += extensions;
                        if self.extensions > MAX_EXTENSIONS {
                            return Err(ChunkedError::ExtensionsTooLarge);
                        }
                        pos += n;
                        self.state = if size == 0 {
                            State::Trailers { scanned: 0 }
                        } else {
                            State::Data(size)
                        };
                    }
                },
                State::Data(remaining) => {
                    if rest.is_empty() {
                        return Ok(Chunk::Incomplete { skip: pos });
                    }
                    let len = remaining.min(rest.len() as u64);
                    self.state = if len == remaining {
                        State::DataEnd
                    } else {
                        State::Data(remaining - len)
                    };
                    return Ok(Chunk::Data {
                        skip: pos,
                        len: len as usize,
                    });
                }
                State::DataEnd => match rest {
                    [b'\r', b'\n', ..] => {
                        pos += 2;
                        self.state = State::Size(SizeLine::default());
                    }
                    [] | [b'\r'] => return Ok(Chunk::Incomplete { skip: pos }),
                    _ => return Err(ChunkedError::MissingCrlf),
                },
                State::Trailers { scanned } => return self.trailers(rest, pos, scanned),
                State::Done => {
                    return Ok(Chunk::End {
                        consumed: pos,
                        trailers: None,
                    })
                }
            }
        }
    }

    fn trailers(&mut self, rest: &[u8], pos: usize, scanned: usize) -> Result<Chunk, ChunkedError> {
        let end = match rest {
            [b'\r', b'\n', ..] => Some(2),
            [] | [b'\r'] => None,
            [b'\r', ..] | [b'\n', ..] => return Err(ChunkedError::Trailers),
            _ => find_head_end(rest, scanned),
        };
        let Some(end) = end else {
            if rest.len() > self.max_trailer_size {
                return Err(ChunkedError::TrailersTooLarge);
            }
            self.state = State::Trailers {
                scanned: rest.len().saturating_sub(2),
            };
            return Ok(Chunk::Incomplete { skip: pos });
        };
        if end > self.max_trailer_size {
            return Err(ChunkedError::TrailersTooLarge);
        }
        let trailers = if end == 2 {
            None
        } else {
            Some(parse_trailers(&rest[..end])?)
        };
        self.state = State::Done;
        Ok(Chunk::End {
            consumed: pos + end,
            trailers,
        })
    }
}

/// `chunk-size [ chunk-ext ] CRLF`: the line's length, the size, and the bytes between
/// them and the CRLF; `None` if the line is not all there yet (`line` then says how far
/// it was checked, for the next call on the same line).
fn parse_size_line(
    buf: &[u8],
    line: &mut SizeLine,
) -> Result<Option<(usize, u64, usize)>, ChunkedError> {
    // One digit past the most accepted is enough to refuse: a long run is not counted.
    let digits = buf
        .iter()
        .take(17)
        .take_while(|b| b.is_ascii_hexdigit())
        .count();
    if digits > 16 {
        return Err(ChunkedError::SizeTooLong);
    }
    if digits == buf.len() {
        return Ok(None);
    }
    if digits == 0 {
        return Err(ChunkedError::Size);
    }
    let size = buf[..digits].iter().fold(0u64, |n, &b| {
        let d = (b as char).to_digit(16).unwrap_or(0);
        n << 4 | u64::from(d)
    });
    for (i, &b) in buf.iter().enumerate().skip(line.scanned.max(digits)) {
        if i > MAX_SIZE_LINE {
            return Err(ChunkedError::LineTooLong);
        }
        match b {
            b'\r' => {
                return match buf.get(i + 1) {
                    None => {
                        line.scanned = i;
                        Ok(None)
                    }
                    Some(b'\n') => Ok(Some((i + 2, size, i - digits))),
                    Some(_) => Err(ChunkedError::Size),
                }
            }
            b' ' | b'\t' => {}
            b';' => line.in_ext = true,
            b'\x21'..=b'\x7e' | 0x80..=0xff if line.in_ext => {}
            _ => return Err(ChunkedError::Size),
        }
    }
    line.scanned = buf.len();
    Ok(None)
}

/// The trailer section (header lines and the final empty line). Fields that only make
/// sense in a head are dropped ([`forbidden_trailer`]).
fn parse_trailers(section: &[u8]) -> Result<HeaderMap, ChunkedError> {
    if section
        .iter()
        .enumerate()
        .any(|(i, &b)| b == b'\n' && (i == 0 || section[i - 1] != b'\r'))
    {
        return Err(ChunkedError::Trailers);
    }
    let mut slots = [httparse::EMPTY_HEADER; MAX_TRAILERS];
    let fields = match httparse::parse_headers(section, &mut slots) {
        Ok(httparse::Status::Complete((n, fields))) if n == section.len() => fields,
        Err(httparse::Error::TooManyHeaders) => return Err(ChunkedError::TrailersTooLarge),
        _ => return Err(ChunkedError::Trailers),
    };
    let mut map = HeaderMap::with_capacity(fields.len());
    for f in fields.iter() {
        let name = HeaderName::from_bytes(f.name.as_bytes()).map_err(|_| ChunkedError::Trailers)?;
        let value = HeaderValue::from_bytes(f.value).map_err(|_| ChunkedError::Trailers)?;
        if !forbidden_trailer(&name) {
            map.append(name, value);
        }
    }
    Ok(map)
}

/// Fields never accepted or sent as trailers: those a recipient needs before the
/// content (RFC 9110 6.5.1), which a trailer could otherwise smuggle past checks made
/// on the head. Used both ways (request and response trailers), so the list holds
/// each direction's fields; the other direction's are meaningless there anyway.
pub(crate) fn forbidden_trailer(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        // Framing and connection control.
        "content-length"
            | "transfer-encoding"
            | "connection"
            | "keep-alive"
            | "proxy-connection"
            | "te"
            | "trailer"
            | "upgrade"
            // Routing.
            | "host"
            // Authentication (Authentication-Info may be a trailer: it passes).
            | "authorization"
            | "proxy-authorization"
            | "www-authenticate"
            | "proxy-authenticate"
            | "cookie"
            | "set-cookie"
            // Request modifiers.
            | "expect"
            | "max-forwards"
            | "range"
            | "if-match"
            | "if-none-match"
            | "if-modified-since"
            | "if-unmodified-since"
            | "if-range"
            // Response controls.
            | "cache-control"
            | "expires"
            | "date"
            | "location"
            | "retry-after"
            | "vary"
            | "age"
            | "warning"
            // Content format.
            | "content-type"
            | "content-encoding"
            | "content-range"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http1::xorshift;

    /// Decodes `input` fed in pieces of `step` bytes, as a connection would.
    fn decode_all(input: &[u8], step: usize) -> Result<(Vec<u8>, Option<HeaderMap>), ChunkedError> {
        let mut dec = ChunkedDecoder::new(1024);
        let mut buf = Vec::new();
        let mut fed = 0;
        let mut out = Vec::new();
        loop {
            match dec.decode(&buf)? {
                Chunk::Data { skip, len } => {
                    out.extend_from_slice(&buf[skip..skip + len]);
                    buf.drain(..skip + len);
                }
                Chunk::Incomplete { skip } => {
                    buf.drain(..skip);
                    if fed == input.len() {
                        return Err(ChunkedError::Size);
                    }
                    let n = step.min(input.len() - fed);
                    buf.extend_from_slice(&input[fed..fed + n]);
                    fed += n;
                }
                Chunk::End { consumed, trailers } => {
                    assert!(dec.is_done());
                    buf.drain(..consumed);
                    assert_eq!(buf, b"NEXT"[..buf.len()].to_vec());
                    return Ok((out, trailers));
                }
            }
        }
    }

    #[test]
    fn decodes_in_every_piece_size() {
        let input = b"5\r\nhello\r\nA;name=value; x\r\n0123456789\r\n0\r\n\r\nNEXT";
        for step in 1..input.len() {
            let (data, trailers) = decode_all(input, step).unwrap();
            assert_eq!(data, b"hello0123456789");
            assert!(trailers.is_none());
        }
    }

    #[test]
    fn trailers_delivered() {
        let input = b"3\r\nabc\r\n0\r\nX-Sum: 42\r\nContent-Length: 9\r\nX-B: c d\r\n\r\nNEXT";
        for step in 1..input.len() {
            let (data, trailers) = decode_all(input, step).unwrap();
            assert_eq!(data, b"abc");
            let t = trailers.unwrap();
            assert_eq!(t["x-sum"], "42");
            assert_eq!(t["x-b"], "c d");
            assert!(!t.contains_key("content-length"));
        }
    }

    /// Fields RFC 9110 6.5.1 keeps out of trailers are dropped both from trailers read
    /// (an upstream's, a client's) and from trailers written; others pass.
    #[test]
    fn head_only_fields_are_dropped_from_trailers() {
        let dropped = [
            "authorization",
            "proxy-authorization",
            "www-authenticate",
            "proxy-authenticate",
            "set-cookie",
            "cookie",
            "cache-control",
            "expires",
            "date",
            "location",
            "retry-after",
            "vary",
            "age",
            "warning",
            "content-range",
            "content-length",
            "transfer-encoding",
            "host",
            "connection",
            "keep-alive",
            "trailer",
            "content-type",
            "expect",
            "range",
            "if-none-match",
            "max-forwards",
        ];
        let mut section = b"0\r\n".to_vec();
        for name in dropped.iter().chain(&["x-checksum", "authentication-info"]) {
            section.extend_from_slice(format!("{name}: v\r\n").as_bytes());
        }
        section.extend_from_slice(b"\r\nNEXT");
        let (_, trailers) = decode_all(&section, section.len()).unwrap();
        let kept: Vec<_> = trailers.unwrap().keys().map(|n| n.to_string()).collect();
        assert_eq!(kept, ["x-checksum", "authentication-info"]);
        for name in dropped {
            assert!(forbidden_trailer(&HeaderName::from_static(name)), "{name}");
        }
    }

    #[test]
    fn biggest_size_accepted() {
        let mut dec = ChunkedDecoder::new(1024);
        assert_eq!(
            dec.decode(b"ffffffffffffffff\r\nab").unwrap(),
            Chunk::Data { skip: 18, len: 2 }
        );
    }

    #[test]
    fn hostile_shapes_refused() {
        let cases: &[(&[u8], ChunkedError)] = &[
            (b"zz\r\n", ChunkedError::Size),
            (b"\r\n\r\n", ChunkedError::Size),
            (b";ext\r\n", ChunkedError::Size),
            (b"-5\r\nhello\r\n", ChunkedError::Size),
            (b"0x5\r\nhello\r\n", ChunkedError::Size),
            (b"5 5\r\nhello\r\n", ChunkedError::Size),
            (b"5\nhello\r\n", ChunkedError::Size),
            (b"5\rhello\r\n", ChunkedError::Size),
            (b"5;a\0\r\nhello\r\n", ChunkedError::Size),
            (b"10000000000000000\r\n", ChunkedError::SizeTooLong),
            (b"00000000000000005\r\nhello\r\n", ChunkedError::SizeTooLong),
            (b"5\r\nhelloXX0\r\n\r\n", ChunkedError::MissingCrlf),
            (b"5\r\nhello\n0\r\n\r\n", ChunkedError::MissingCrlf),
            (b"0\r\nX: y\n\r\n", ChunkedError::Trailers),
            (b"0\r\n X: y\r\n\r\n", ChunkedError::Trailers),
            (b"0\r\n\n", ChunkedError::Trailers),
        ];
        for (input, want) in cases {
            for step in 1..=input.len() {
                assert_eq!(
                    decode_all(input, step).err(),
                    Some(*want),
                    "{:?} step {step}",
                    String::from_utf8_lossy(input)
                );
            }
        }
    }

    #[test]
    fn long_lines_refused() {
        let mut line = b"5;".to_vec();
        line.resize(MAX_SIZE_LINE + 10, b'x');
        assert_eq!(
            ChunkedDecoder::new(1024).decode(&line),
            Err(ChunkedError::LineTooLong)
        );
        let mut trailers = b"0\r\n".to_vec();
        trailers.resize(2000, b'x');
        assert_eq!(
            ChunkedDecoder::new(1024).decode(&trailers),
            Err(ChunkedError::TrailersTooLarge)
        );
    }

    /// Chunks of one byte, each with `ext` bytes of extension (`;` included), then the
    /// last chunk.
    fn with_extensions(chunks: usize, ext: usize) -> Vec<u8> {
        let mut body = Vec::new();
        for _ in 0..chunks {
            body.extend_from_slice(b"1;");
            body.resize(body.len() + ext - 1, b'x');
            body.extend_from_slice(b"\r\na\r\n");
        }
        body.extend_from_slice(b"0\r\n\r\nNEXT");
        body
    }

    /// Extensions count per body, not per line: lines each within MAX_SIZE_LINE are
    /// refused once they add up to more than MAX_EXTENSIONS, whatever the reads.
    #[test]
    fn extensions_bounded_per_body() {
        let at_limit = with_extensions(16, MAX_EXTENSIONS / 16);
        let mut over = at_limit.clone();
        over.splice(0..0, b"1; \r\na\r\n".iter().copied());
        for step in [1, 2, 7, 1000, 5000, over.len()] {
            let (data, _) = decode_all(&at_limit, step).unwrap();
            assert_eq!(data, [b'a'; 16]);
            assert_eq!(
                decode_all(&over, step).err(),
                Some(ChunkedError::ExtensionsTooLarge),
                "step {step}"
            );
        }
        // Whitespace before a `;` counts as well: it is as much framing for no data.
        let spaces = format!("1{}\r\na\r\n", " ".repeat(4000)).repeat(5);
        assert_eq!(
            decode_all(spaces.as_bytes(), 4096).err(),
            Some(ChunkedError::ExtensionsTooLarge)
        );
    }

    /// A size line that comes in pieces is checked from where the last piece ended, not
    /// from its start again: linear in its length.
    #[test]
    fn size_lines_scanned_once() {
        let mut dec = ChunkedDecoder::new(1024);
        let mut line = b"a;".to_vec();
        for n in 0..100 {
            line.push(b'x');
            assert_eq!(dec.decode(&line), Ok(Chunk::Incomplete { skip: 0 }));
            let expected = SizeLine {
                scanned: line.len(),
                in_ext: true,
            };
            assert_eq!(dec.state, State::Size(expected), "{n}");
        }
        line.extend_from_slice(b"\r");
        assert_eq!(dec.decode(&line), Ok(Chunk::Incomplete { skip: 0 }));
        line.extend_from_slice(b"\n0123456789");
        assert_eq!(
            dec.decode(&line),
            Ok(Chunk::Data {
                skip: line.len() - 10,
                len: 10
            })
        );
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..5000 {
            let mut buf = b"4\r\nabcd\r\n3;x=y\r\nefg\r\n0\r\nA: b\r\n\r\n".to_vec();
            for _ in 0..3 {
                let r = xorshift(&mut seed);
                let i = (r as usize) % buf.len();
                buf[i] = (r >> 40) as u8;
            }
            let mut dec = ChunkedDecoder::new(64);
            let mut at = 0;
            while let Ok(chunk) = dec.decode(&buf[at..]) {
                match chunk {
                    Chunk::Data { skip, len } => at += skip + len,
                    Chunk::Incomplete { .. } | Chunk::End { .. } => break,
                }
            }
        }
    }
}
