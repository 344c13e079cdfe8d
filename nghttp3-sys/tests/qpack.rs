//! QPACK encoder/decoder round trip with a dynamic table, through the raw API.

mod common;

use std::ptr;

use common::*;
use nghttp3_sys::*;

const CAPACITY: usize = 4096;

struct Encoder {
    enc: *mut nghttp3_qpack_encoder,
    mem: Box<CountingMem>,
}

struct Decoder {
    dec: *mut nghttp3_qpack_decoder,
    mem: Box<CountingMem>,
}

/// One encoded field section: prefix + field lines (request stream) and the encoder
/// stream instructions it produced.
struct Encoded {
    request: Vec<u8>,
    encoder_stream: Vec<u8>,
}

impl Encoder {
    fn new() -> Self {
        let mem = CountingMem::new();
        let mut enc = ptr::null_mut();
        // SAFETY: out-pointer and allocator are valid; mem outlives the encoder.
        unsafe {
            assert_eq!(
                nghttp3_qpack_encoder_new(&mut enc, CAPACITY, mem.as_ptr()),
                0
            );
            nghttp3_qpack_encoder_set_max_dtable_capacity(enc, CAPACITY);
            nghttp3_qpack_encoder_set_max_blocked_streams(enc, 16);
        }
        Encoder { enc, mem }
    }

    fn encode(&mut self, sid: i64, list: &Fields) -> Encoded {
        let nva = nvs(list);
        let mut bufs = [nghttp3_buf::default(); 3];
        for b in &mut bufs {
            // SAFETY: b is a valid nghttp3_buf.
            unsafe { nghttp3_buf_init(b) };
        }
        let [pbuf, rbuf, ebuf] = &mut bufs;
        // SAFETY: encoder is live; bufs were initialised; nva borrows list.
        let rv = unsafe {
            nghttp3_qpack_encoder_encode(self.enc, pbuf, rbuf, ebuf, sid, nva.as_ptr(), nva.len())
        };
        assert_eq!(rv, 0, "encode: {}", err(rv));
        let bytes = |b: &nghttp3_buf| -> Vec<u8> {
            if b.pos.is_null() {
                return Vec::new();
            }
            // SAFETY: pos..last is the written region of a buffer nghttp3 allocated.
            unsafe { std::slice::from_raw_parts(b.pos, b.last.offset_from(b.pos) as usize) }
                .to_vec()
        };
        let mut request = bytes(pbuf);
        request.extend(bytes(rbuf));
        let encoder_stream = bytes(ebuf);
        for b in &mut bufs {
            // SAFETY: the buffers were allocated by the encoder's allocator.
            unsafe { nghttp3_buf_free(b, self.mem.as_ptr()) };
        }
        Encoded {
            request,
            encoder_stream,
        }
    }

    fn read_decoder_stream(&mut self, bytes: &[u8]) {
        // SAFETY: encoder is live; bytes valid for len.
        let n =
            unsafe { nghttp3_qpack_encoder_read_decoder(self.enc, bytes.as_ptr(), bytes.len()) };
        assert_eq!(n, bytes.len() as isize, "read_decoder: {}", err(n as i32));
    }
}

impl Drop for Encoder {
    fn drop(&mut self) {
        // SAFETY: created by encoder_new, deleted once.
        unsafe { nghttp3_qpack_encoder_del(self.enc) };
        assert_eq!(self.mem.live_bytes.get(), 0, "encoder leaked");
    }
}

enum Decoded {
    Done(Fields),
    /// Blocked on the encoder stream after consuming this many bytes.
    Blocked(usize),
}

impl Decoder {
    fn new() -> Self {
        let mem = CountingMem::new();
        let mut dec = ptr::null_mut();
        // SAFETY: out-pointer and allocator are valid; mem outlives the decoder.
        unsafe {
            assert_eq!(
                nghttp3_qpack_decoder_new(&mut dec, CAPACITY, 16, mem.as_ptr()),
                0
            )
        };
        Decoder { dec, mem }
    }

    fn read_encoder_stream(&mut self, bytes: &[u8]) {
        // SAFETY: decoder is live; bytes valid for len.
        let n =
            unsafe { nghttp3_qpack_decoder_read_encoder(self.dec, bytes.as_ptr(), bytes.len()) };
        assert_eq!(n, bytes.len() as isize, "read_encoder: {}", err(n as i32));
    }

    /// Decodes a field section on `sctx`, stopping when it completes or blocks.
    fn decode(&mut self, sctx: *mut nghttp3_qpack_stream_context, mut src: &[u8]) -> Decoded {
        let mut out = Vec::new();
        let mut consumed = 0;
        loop {
            let mut nv = nghttp3_qpack_nv {
                token: 0,
                name: ptr::null_mut(),
                value: ptr::null_mut(),
                flags: 0,
            };
            let mut flags = 0u8;
            // SAFETY: decoder and sctx are live; src valid for len; nv/flags out-pointers.
            let n = unsafe {
                nghttp3_qpack_decoder_read_request(
                    self.dec,
                    sctx,
                    &mut nv,
                    &mut flags,
                    src.as_ptr(),
                    src.len(),
                    1,
                )
            };
            assert!(n >= 0, "read_request: {}", err(n as i32));
            src = &src[n as usize..];
            consumed += n as usize;
            if flags as u32 & NGHTTP3_QPACK_DECODE_FLAG_EMIT != 0 {
                // SAFETY: on EMIT, name and value are rcbufs we own one reference to.
                unsafe {
                    let (n, v) = (
                        nghttp3_rcbuf_get_buf(nv.name),
                        nghttp3_rcbuf_get_buf(nv.value),
                    );
                    out.push((
                        std::slice::from_raw_parts(n.base, n.len).to_vec(),
                        std::slice::from_raw_parts(v.base, v.len).to_vec(),
                    ));
                    nghttp3_rcbuf_decref(nv.name);
                    nghttp3_rcbuf_decref(nv.value);
                }
            }
            if flags as u32 & NGHTTP3_QPACK_DECODE_FLAG_FINAL != 0 {
                return Decoded::Done(out);
            }
            if flags as u32 & NGHTTP3_QPACK_DECODE_FLAG_BLOCKED != 0 {
                return Decoded::Blocked(consumed);
            }
            assert!(n > 0 || !src.is_empty(), "decoder made no progress");
        }
    }

    /// The decoder stream bytes (section acks, insert count increments) to send back.
    fn decoder_stream(&mut self) -> Vec<u8> {
        // SAFETY: decoder is live.
        let len = unsafe { nghttp3_qpack_decoder_get_decoder_streamlen(self.dec) };
        let mut storage = vec![0u8; len];
        let base = storage.as_mut_ptr();
        let mut buf = nghttp3_buf {
            begin: base,
            end: base.wrapping_add(len),
            pos: base,
            last: base,
        };
        // SAFETY: buf has exactly the capacity the decoder asked for.
        let written = unsafe {
            nghttp3_qpack_decoder_write_decoder(self.dec, &mut buf);
            buf.last.offset_from(buf.pos) as usize
        };
        storage.truncate(written);
        storage
    }

    fn stream_context(&self, sid: i64) -> StreamContext {
        let mut sctx = ptr::null_mut();
        // SAFETY: out-pointer and allocator are valid.
        unsafe {
            assert_eq!(
                nghttp3_qpack_stream_context_new(&mut sctx, sid, self.mem.as_ptr()),
                0
            )
        };
        StreamContext(sctx)
    }
}

impl Drop for Decoder {
    fn drop(&mut self) {
        // SAFETY: created by decoder_new, deleted once.
        unsafe { nghttp3_qpack_decoder_del(self.dec) };
        assert_eq!(self.mem.live_bytes.get(), 0, "decoder leaked");
    }
}

struct StreamContext(*mut nghttp3_qpack_stream_context);

impl Drop for StreamContext {
    fn drop(&mut self) {
        // SAFETY: created by stream_context_new, deleted once.
        unsafe { nghttp3_qpack_stream_context_del(self.0) };
    }
}

/// What a browser sends for a page load, plus application headers that only a dynamic
/// table can compress (they are not in the static table).
fn browser_request(path: &str) -> Fields {
    fields(&[
        (":method", "GET"),
        (":scheme", "https"),
        (":authority", "www.example.com"),
        (":path", path),
        (
            "user-agent",
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) \
             Chrome/131.0.0.0 Safari/537.36",
        ),
        (
            "accept",
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
        ),
        ("accept-language", "en-GB,en;q=0.9,fr;q=0.8"),
        ("accept-encoding", "gzip, deflate, br, zstd"),
        (
            "cookie",
            "session=0f9d6c1b2a7e4c3d8b5a6f7e8d9c0b1a; theme=dark; consent=yes",
        ),
        ("sec-ch-ua-platform", "\"Linux\""),
        ("x-tenant", "acme-production-eu-west"),
        ("priority", "u=0, i"),
    ])
}

#[test]
fn round_trip_with_dynamic_table() {
    let mut enc = Encoder::new();
    let mut dec = Decoder::new();

    // First section: the encoder inserts into the dynamic table as it goes.
    let first = browser_request("/index.html");
    let e1 = enc.encode(0, &first);
    assert!(!e1.encoder_stream.is_empty(), "no dynamic table insertions");
    dec.read_encoder_stream(&e1.encoder_stream);
    let sctx = dec.stream_context(0);
    match dec.decode(sctx.0, &e1.request) {
        Decoded::Done(got) => assert_eq!(got, first),
        Decoded::Blocked(_) => panic!("blocked with the encoder stream already read"),
    }
    // SAFETY: decoder is live.
    let icnt = unsafe { nghttp3_qpack_decoder_get_icnt(dec.dec) };
    assert!(icnt >= 5, "only {icnt} dynamic table insertions");
    // The decoder acknowledges the section; the encoder may now reference those entries
    // without risking a blocked stream.
    let acks = dec.decoder_stream();
    assert!(!acks.is_empty(), "no section acknowledgement");
    enc.read_decoder_stream(&acks);

    // Second section on another stream: mostly references to the table.
    let second = browser_request("/style.css");
    let e2 = enc.encode(4, &second);
    assert!(
        e2.request.len() * 3 < e1.request.len() + e1.encoder_stream.len(),
        "second section {} bytes vs first {} + {} bytes: dynamic table unused",
        e2.request.len(),
        e1.request.len(),
        e1.encoder_stream.len()
    );
    dec.read_encoder_stream(&e2.encoder_stream);
    let sctx = dec.stream_context(4);
    match dec.decode(sctx.0, &e2.request) {
        Decoded::Done(got) => assert_eq!(got, second),
        Decoded::Blocked(_) => panic!("blocked with the encoder stream already read"),
    }
    enc.read_decoder_stream(&dec.decoder_stream());
}

#[test]
fn blocked_section_resumes_when_encoder_stream_arrives() {
    let mut enc = Encoder::new();
    let mut dec = Decoder::new();
    let list = fields(&[
        (":method", "GET"),
        (":authority", "api.example.com"),
        (":path", "/api/v1/items"),
        ("user-agent", "curl/8.11.0"),
        ("cookie", "session=4bf92f3577b34da6a3ce929d0e0e4736"),
    ]);
    let e = enc.encode(0, &list);
    assert!(!e.encoder_stream.is_empty());
    let sctx = dec.stream_context(0);
    // The request stream overtakes the encoder stream (QUIC does not order streams).
    let Decoded::Blocked(consumed) = dec.decode(sctx.0, &e.request) else {
        panic!("decoded a section that references entries not yet inserted");
    };
    dec.read_encoder_stream(&e.encoder_stream);
    match dec.decode(sctx.0, &e.request[consumed..]) {
        Decoded::Done(got) => assert_eq!(got, list),
        Decoded::Blocked(_) => panic!("still blocked after the encoder stream"),
    }
}

#[test]
fn malformed_field_section_is_a_decompression_failure() {
    let cases: [&[u8]; 3] = [
        // An indexed field line for static index 143 (the static table has 99).
        &[0x00, 0x00, 0xff, 0x50],
        // Encoded Required Insert Count 300 > 2 * MaxEntries (2 * 4096 / 32 = 256).
        &[0xff, 0x2d, 0x00],
        // A literal whose Huffman-coded value is padded with a zero bit (EOS misuse).
        &[0x00, 0x00, 0x51, 0x81, 0x00],
    ];
    for bad in cases {
        // A failed decoder stays failed (QPACK_FATAL): one per case.
        let dec = Decoder::new();
        let sctx = dec.stream_context(0);
        let mut nv = nghttp3_qpack_nv {
            token: 0,
            name: ptr::null_mut(),
            value: ptr::null_mut(),
            flags: 0,
        };
        let mut flags = 0;
        // SAFETY: decoder and sctx live; bad is valid for its length.
        let n = unsafe {
            nghttp3_qpack_decoder_read_request(
                dec.dec,
                sctx.0,
                &mut nv,
                &mut flags,
                bad.as_ptr(),
                bad.len(),
                1,
            )
        };
        assert_eq!(
            n as i32,
            NGHTTP3_ERR_QPACK_DECOMPRESSION_FAILED,
            "{bad:02x?}: {}",
            err(n as i32)
        );
        // SAFETY: maps a library error code to an HTTP/3 application error code.
        let code = unsafe { nghttp3_err_infer_quic_app_error_code(n as i32) };
        assert_eq!(code, NGHTTP3_QPACK_DECOMPRESSION_FAILED as u64);
    }
}
