//! A hand-driven HTTP/3 client on raw quinn streams: it writes exactly the bytes a test
//! chooses, to play a hostile or broken peer.

use bytes::Bytes;

/// QUIC variable-length integer.
pub fn varint(v: u64) -> Vec<u8> {
    match v {
        0..=63 => vec![v as u8],
        64..=16383 => (0x4000 | v as u16).to_be_bytes().to_vec(),
        16384..=1_073_741_823 => (0x8000_0000 | v as u32).to_be_bytes().to_vec(),
        _ => (0xc000_0000_0000_0000 | v).to_be_bytes().to_vec(),
    }
}

pub fn frame(ty: u64, payload: &[u8]) -> Vec<u8> {
    [varint(ty), varint(payload.len() as u64), payload.to_vec()].concat()
}

pub const DATA: u64 = 0x00;
pub const HEADERS: u64 = 0x01;
pub const SETTINGS: u64 = 0x04;

/// A reserved ("grease") frame or stream type, which receivers must ignore.
pub fn grease(n: u64) -> u64 {
    0x1f * n + 0x21
}

/// A QPACK field section using only the static table, without a dynamic table:
/// `GET https://localhost{path}`.
pub fn get_headers(path: &str) -> Vec<u8> {
    headers(17, path)
}

/// [`get_headers`] for `POST`.
pub fn post_headers(path: &str) -> Vec<u8> {
    headers(20, path)
}

/// [`post_headers`] with `extra` field lines (e.g. [`filler_fields`]) after the
/// request's own.
pub fn post_headers_with(path: &str, extra: &[u8]) -> Vec<u8> {
    headers_with(20, path, extra)
}

/// A trailer section of `fields` (field lines, e.g. [`filler_fields`]).
pub fn trailers(fields: &[u8]) -> Vec<u8> {
    frame(HEADERS, &[&[0x00, 0x00][..], fields].concat())
}

/// `n` field lines `age: xxx…` (QPACK static name 2, a literal value of `len` bytes):
/// a field section as large as a test needs.
pub fn filler_fields(n: usize, len: usize) -> Vec<u8> {
    let value = vec![b'x'; len];
    (0..n)
        .flat_map(|_| [vec![0x52], varint_prefixed(&value, 7)].concat())
        .collect()
}

/// The request with the method of QPACK static table entry `method`.
fn headers(method: u8, path: &str) -> Vec<u8> {
    headers_with(method, path, &[])
}

fn headers_with(method: u8, path: &str, extra: &[u8]) -> Vec<u8> {
    let mut block = vec![0x00, 0x00]; // Required Insert Count 0, Base 0
    block.push(0xc0 | method); // :method
    block.push(0xc0 | 23); // :scheme https
    block.extend([0x50, 9]); // :authority (static name 0), literal value
    block.extend(b"localhost");
    block.push(0x51); // :path (static name 1), literal value
    block.extend(varint_prefixed(path.as_bytes(), 7));
    block.extend_from_slice(extra);
    frame(HEADERS, &block)
}

/// The types of the frames in `bytes`, a whole stream's (the last one may be cut).
pub fn frame_types(mut bytes: &[u8]) -> Vec<u64> {
    fn take_varint(bytes: &mut &[u8]) -> Option<u64> {
        let first = *bytes.first()?;
        let len = 1usize << (first >> 6);
        let raw = bytes.get(..len)?;
        let v = raw[1..]
            .iter()
            .fold(u64::from(first & 0x3f), |v, &b| (v << 8) | u64::from(b));
        *bytes = &bytes[len..];
        Some(v)
    }
    let mut types = Vec::new();
    while let (Some(ty), Some(len)) = (take_varint(&mut bytes), take_varint(&mut bytes)) {
        types.push(ty);
        bytes = &bytes[(len as usize).min(bytes.len())..];
    }
    types
}

/// A QPACK string literal with a `prefix`-bit length and no Huffman coding.
fn varint_prefixed(s: &[u8], prefix: u32) -> Vec<u8> {
    let max = (1u64 << prefix) - 1;
    let mut out = Vec::new();
    let len = s.len() as u64;
    if len < max {
        out.push(len as u8);
    } else {
        out.push(max as u8);
        let mut rest = len - max;
        while rest >= 128 {
            out.push((rest % 128) as u8 | 0x80);
            rest /= 128;
        }
        out.push(rest as u8);
    }
    out.extend_from_slice(s);
    out
}

/// Opens the client's control stream with an empty SETTINGS frame.
pub async fn open_control(quic: &quinn::Connection) -> quinn::SendStream {
    let mut control = quic.open_uni().await.unwrap();
    control
        .write_all(&[varint(0x00), frame(SETTINGS, &[])].concat())
        .await
        .unwrap();
    control
}

/// Sends `bytes` on a new request stream (finishing it if `fin`).
pub async fn request(
    quic: &quinn::Connection,
    bytes: &[u8],
    fin: bool,
) -> (quinn::SendStream, quinn::RecvStream) {
    let (mut send, recv) = quic.open_bi().await.unwrap();
    send.write_all(bytes).await.unwrap();
    if fin {
        send.finish().unwrap();
    }
    (send, recv)
}

/// The HTTP/3 application error code the connection was closed with.
pub async fn close_code(quic: &quinn::Connection) -> Option<u64> {
    match tokio::time::timeout(std::time::Duration::from_secs(5), quic.closed()).await {
        Ok(quinn::ConnectionError::ApplicationClosed(close)) => Some(close.error_code.into_inner()),
        _ => None,
    }
}

/// Reads a response stream to its end: the raw frames.
pub async fn read_all(recv: &mut quinn::RecvStream) -> Result<Bytes, quinn::ReadToEndError> {
    recv.read_to_end(16 << 20).await.map(Bytes::from)
}
