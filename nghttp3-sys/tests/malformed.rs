//! Malformed peer input: each case makes `read_stream` fail, and the library error maps
//! to the HTTP/3 error code RFC 9114 prescribes.

mod common;

use common::*;
use nghttp3_sys::*;

/// Client-initiated unidirectional stream ids (the server's view of a peer's streams).
const CONTROL: i64 = 2;
const SECOND_UNI: i64 = 6;

/// Encodes a QUIC variable-length integer.
fn varint(v: u64) -> Vec<u8> {
    match v {
        0..=63 => vec![v as u8],
        64..=16383 => (0x4000 | v as u16).to_be_bytes().to_vec(),
        16384..=1_073_741_823 => (0x8000_0000 | v as u32).to_be_bytes().to_vec(),
        _ => (0xc000_0000_0000_0000 | v).to_be_bytes().to_vec(),
    }
}

fn frame(ty: u64, payload: &[u8]) -> Vec<u8> {
    let mut f = varint(ty);
    f.extend(varint(payload.len() as u64));
    f.extend_from_slice(payload);
    f
}

/// A well-formed control stream opening: stream type 0x00, then an empty SETTINGS.
fn control_open() -> Vec<u8> {
    let mut b = varint(0x00);
    b.extend(frame(0x04, &[]));
    b
}

struct Case {
    name: &'static str,
    /// (stream id, bytes, fin) fed in order; the last must fail.
    input: Vec<(i64, Vec<u8>, bool)>,
    h3_code: u32,
}

fn cases() -> Vec<Case> {
    let concat = |parts: &[Vec<u8>]| parts.concat();
    vec![
        Case {
            name: "garbage: DATA as the first control frame",
            input: vec![(
                CONTROL,
                concat(&[varint(0x00), frame(0x00, b"garbage")]),
                false,
            )],
            h3_code: NGHTTP3_H3_MISSING_SETTINGS,
        },
        Case {
            name: "a second SETTINGS frame",
            input: vec![(CONTROL, concat(&[control_open(), frame(0x04, &[])]), false)],
            h3_code: NGHTTP3_H3_FRAME_UNEXPECTED,
        },
        Case {
            name: "HEADERS on the control stream",
            input: vec![(
                CONTROL,
                concat(&[control_open(), frame(0x01, &[0, 0])]),
                false,
            )],
            h3_code: NGHTTP3_H3_FRAME_UNEXPECTED,
        },
        Case {
            name: "HTTP/2 setting identifier 0x02 (ENABLE_PUSH)",
            input: vec![(
                CONTROL,
                concat(&[varint(0x00), frame(0x04, &[0x02, 0x00])]),
                false,
            )],
            h3_code: NGHTTP3_H3_SETTINGS_ERROR,
        },
        Case {
            name: "SETTINGS payload truncated inside a varint",
            input: vec![(
                CONTROL,
                concat(&[varint(0x00), frame(0x04, &[0x06, 0x80])]),
                false,
            )],
            h3_code: NGHTTP3_H3_FRAME_ERROR,
        },
        Case {
            name: "a second control stream",
            input: vec![
                (CONTROL, control_open(), false),
                (SECOND_UNI, control_open(), false),
            ],
            h3_code: NGHTTP3_H3_STREAM_CREATION_ERROR,
        },
        Case {
            name: "the control stream closed",
            input: vec![(CONTROL, control_open(), true)],
            h3_code: NGHTTP3_H3_CLOSED_CRITICAL_STREAM,
        },
        Case {
            name: "DATA before HEADERS on a request stream",
            input: vec![
                (CONTROL, control_open(), false),
                (0, frame(0x00, b"body"), false),
            ],
            h3_code: NGHTTP3_H3_FRAME_UNEXPECTED,
        },
        Case {
            name: "SETTINGS on a request stream",
            input: vec![
                (CONTROL, control_open(), false),
                (0, frame(0x04, &[]), false),
            ],
            h3_code: NGHTTP3_H3_FRAME_UNEXPECTED,
        },
    ]
}

#[test]
fn malformed_input_maps_to_h3_error_codes() {
    for case in cases() {
        let mut server = Endpoint::new(Role::Server, &default_settings());
        let (last, init) = case.input.split_last().unwrap();
        for (sid, bytes, fin) in init {
            let rv = server.read(*sid, bytes, *fin);
            assert!(
                rv >= 0,
                "{}: setup input rejected: {}",
                case.name,
                err(rv as i32)
            );
        }
        let rv = server.read(last.0, &last.1, last.2) as i32;
        assert!(rv < 0, "{}: accepted (returned {rv})", case.name);
        // Any negative result is a connection error: the QUIC connection must be closed
        // with the inferred application error code.
        // SAFETY: accepts any library error code.
        let code = unsafe { nghttp3_err_infer_quic_app_error_code(rv) };
        assert_eq!(
            code,
            case.h3_code as u64,
            "{}: {} mapped to 0x{code:x}, want 0x{:x}",
            case.name,
            err(rv),
            case.h3_code
        );
    }
}

#[test]
fn unknown_frame_and_stream_types_are_ignored() {
    let mut server = Endpoint::new(Role::Server, &default_settings());
    // A reserved (grease) frame type 0x21 + 0x1f*N on the control stream.
    let control = [control_open(), frame(0x21 + 0x1f * 7, b"ignore me")].concat();
    assert!(server.read(CONTROL, &control, false) >= 0);
    // A unidirectional stream of an unknown type: its bytes are discarded.
    let unknown = [varint(0x21 + 0x1f * 3), b"opaque".to_vec()].concat();
    assert!(server.read(SECOND_UNI, &unknown, false) >= 0);
    // The connection still serves a request.
    server.flush();
    // QPACK: no dynamic table; static :method GET, :scheme https, :path /; then
    // :authority "a" as a literal with a static name reference.
    let headers = frame(0x01, &[0x00, 0x00, 0xd1, 0xd7, 0xc1, 0x50, 0x01, b'a']);
    assert!(server.read(0, &headers, true) >= 0);
    let req = server.stream(0);
    assert!(req.ended);
    assert!(req
        .headers
        .iter()
        .any(|(n, v)| n == b":method" && v == b"GET"));
}

#[test]
fn linked_library_is_at_least_the_headers() {
    let (num, version) = nghttp3_sys::linked_version();
    assert!(
        num >= NGHTTP3_VERSION_NUM,
        "linked {version} is older than the headers, {}",
        nghttp3_sys::HEADER_VERSION
    );
}
