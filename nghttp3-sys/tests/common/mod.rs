//! Test support for driving two `nghttp3_conn`s against each other in memory, with a
//! counting allocator so a test can prove that nothing nghttp3 allocated is leaked.
//!
//! The "transport" is a map of stream id -> bytes per direction: whatever one side's
//! `nghttp3_conn_writev_stream` yields is reported written and acknowledged at once (as a
//! lossless QUIC stack would), and is fed to the other side's `read_stream`.

#![allow(dead_code)] // each test binary uses its own part of this module

use std::cell::Cell;
use std::collections::{BTreeMap, HashMap};
use std::ffi::c_void;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;

use nghttp3_sys::*;

pub type Fields = Vec<(Vec<u8>, Vec<u8>)>;

pub fn fields(list: &[(&str, &str)]) -> Fields {
    list.iter()
        .map(|(n, v)| (n.as_bytes().to_vec(), v.as_bytes().to_vec()))
        .collect()
}

/// `nghttp3_nv`s borrowing `fields`; valid while `fields` is.
pub fn nvs(fields: &Fields) -> Vec<nghttp3_nv> {
    fields
        .iter()
        .map(|(n, v)| nghttp3_nv {
            name: n.as_ptr(),
            value: v.as_ptr(),
            namelen: n.len(),
            valuelen: v.len(),
            flags: NGHTTP3_NV_FLAG_NONE as u8,
        })
        .collect()
}

/// An `nghttp3_mem` that counts live allocations and bytes. Each block carries its size
/// in a 16-byte header so `free` and `realloc` can account for it.
pub struct CountingMem {
    pub live_blocks: Cell<isize>,
    pub live_bytes: Cell<isize>,
    pub peak_bytes: Cell<isize>,
    mem: nghttp3_mem,
}

const HEADER: usize = 16;

impl CountingMem {
    pub fn new() -> Box<Self> {
        let mut me = Box::new(CountingMem {
            live_blocks: Cell::new(0),
            live_bytes: Cell::new(0),
            peak_bytes: Cell::new(0),
            mem: nghttp3_mem {
                user_data: ptr::null_mut(),
                malloc: Some(mem_malloc),
                free: Some(mem_free),
                calloc: Some(mem_calloc),
                realloc: Some(mem_realloc),
            },
        });
        me.mem.user_data = &*me as *const CountingMem as *mut c_void;
        me
    }

    pub fn as_ptr(&self) -> *const nghttp3_mem {
        &self.mem
    }

    fn account(&self, blocks: isize, bytes: isize) {
        self.live_blocks.set(self.live_blocks.get() + blocks);
        self.live_bytes.set(self.live_bytes.get() + bytes);
        self.peak_bytes
            .set(self.peak_bytes.get().max(self.live_bytes.get()));
    }
}

fn layout(size: usize) -> std::alloc::Layout {
    std::alloc::Layout::from_size_align(size + HEADER, HEADER).unwrap()
}

unsafe fn counting(ud: *mut c_void) -> &'static CountingMem {
    &*(ud as *const CountingMem)
}

unsafe fn alloc_block(size: usize, ud: *mut c_void, zeroed: bool) -> *mut c_void {
    let base = if zeroed {
        std::alloc::alloc_zeroed(layout(size))
    } else {
        std::alloc::alloc(layout(size))
    };
    if base.is_null() {
        return ptr::null_mut();
    }
    (base as *mut usize).write(size);
    counting(ud).account(1, size as isize);
    base.add(HEADER) as *mut c_void
}

unsafe extern "C" fn mem_malloc(size: usize, ud: *mut c_void) -> *mut c_void {
    alloc_block(size, ud, false)
}

unsafe extern "C" fn mem_calloc(n: usize, size: usize, ud: *mut c_void) -> *mut c_void {
    match n.checked_mul(size) {
        Some(total) => alloc_block(total, ud, true),
        None => ptr::null_mut(),
    }
}

unsafe extern "C" fn mem_free(p: *mut c_void, ud: *mut c_void) {
    if p.is_null() {
        return;
    }
    let base = (p as *mut u8).sub(HEADER);
    let size = (base as *const usize).read();
    counting(ud).account(-1, -(size as isize));
    std::alloc::dealloc(base, layout(size));
}

unsafe extern "C" fn mem_realloc(p: *mut c_void, size: usize, ud: *mut c_void) -> *mut c_void {
    if p.is_null() {
        return alloc_block(size, ud, false);
    }
    let base = (p as *mut u8).sub(HEADER);
    let old = (base as *const usize).read();
    let new = std::alloc::realloc(base, layout(old), size + HEADER);
    if new.is_null() {
        return ptr::null_mut();
    }
    (new as *mut usize).write(size);
    counting(ud).account(0, size as isize - old as isize);
    new.add(HEADER) as *mut c_void
}

/// A body this side sends, with the trailers that follow it.
#[derive(Default)]
pub struct Outgoing {
    pub body: Vec<u8>,
    pub offset: usize,
    pub trailers: Option<Fields>,
    pub acked: u64,
}

/// What one side has seen on one stream.
#[derive(Default, Debug)]
pub struct Incoming {
    pub headers: Fields,
    pub trailers: Fields,
    pub body: Vec<u8>,
    pub ended: bool,
    pub reset: Option<u64>,
    pub stop_sending: Option<u64>,
    pub closed: Option<u64>,
}

#[derive(Default)]
pub struct State {
    pub streams: BTreeMap<i64, Incoming>,
    pub outgoing: HashMap<i64, Outgoing>,
    pub peer_max_field_section_size: Option<u64>,
    pub goaway: Option<i64>,
    /// Read-side chunk size for DATA handed out by `read_data` (exercises many vecs).
    pub chunk: usize,
}

/// One side: an `nghttp3_conn`, its callback state, and its allocator.
pub struct Endpoint {
    pub conn: *mut nghttp3_conn,
    pub state: Box<State>,
    pub mem: Box<CountingMem>,
    /// Bytes written per stream id and not yet delivered to the peer, with fin.
    wire: BTreeMap<i64, (Vec<u8>, bool)>,
    /// Stream ids whose fin has been delivered to the peer (nothing more to deliver).
    finished: Vec<i64>,
    clock: u64,
}

pub enum Role {
    Client,
    Server,
}

impl Endpoint {
    pub fn new(role: Role, settings: &nghttp3_settings) -> Endpoint {
        let mem = CountingMem::new();
        let mut state = Box::new(State {
            chunk: 16 * 1024,
            ..Default::default()
        });
        let callbacks = callbacks();
        let mut conn = ptr::null_mut();
        let ud = &mut *state as *mut State as *mut c_void;
        // SAFETY: all pointers are valid for the call; state and mem are boxed and
        // outlive the conn (Endpoint drops the conn first).
        let rv = unsafe {
            match role {
                Role::Client => {
                    nghttp3_conn_client_new(&mut conn, &callbacks, settings, mem.as_ptr(), ud)
                }
                Role::Server => {
                    nghttp3_conn_server_new(&mut conn, &callbacks, settings, mem.as_ptr(), ud)
                }
            }
        };
        assert_eq!(rv, 0, "conn_new");
        let (control, qenc, qdec) = match role {
            Role::Client => (2, 6, 10),
            Role::Server => (3, 7, 11),
        };
        // SAFETY: conn is a live connection.
        unsafe {
            assert_eq!(nghttp3_conn_bind_control_stream(conn, control), 0);
            assert_eq!(nghttp3_conn_bind_qpack_streams(conn, qenc, qdec), 0);
            if let Role::Server = role {
                nghttp3_conn_set_max_client_streams_bidi(conn, 100);
            }
        }
        Endpoint {
            conn,
            state,
            mem,
            wire: BTreeMap::new(),
            finished: Vec::new(),
            clock: 1,
        }
    }

    /// Drains everything nghttp3 wants to send into `wire`, acknowledging it at once.
    /// Returns the number of bytes produced.
    pub fn flush(&mut self) -> usize {
        let mut total = 0;
        loop {
            let mut sid: i64 = -1;
            let mut fin = 0;
            let mut vecs = [nghttp3_vec {
                base: ptr::null_mut(),
                len: 0,
            }; 16];
            // SAFETY: vecs has room for 16 entries; conn is live.
            let n = unsafe {
                nghttp3_conn_writev_stream(self.conn, &mut sid, &mut fin, vecs.as_mut_ptr(), 16)
            };
            assert!(n >= 0, "writev_stream: {}", err(n as i32));
            if sid == -1 {
                return total;
            }
            let entry = self.wire.entry(sid).or_default();
            let mut len = 0;
            for v in &vecs[..n as usize] {
                // SAFETY: nghttp3 hands out vecs valid until add_write_offset.
                entry
                    .0
                    .extend_from_slice(unsafe { std::slice::from_raw_parts(v.base, v.len) });
                len += v.len;
            }
            entry.1 |= fin != 0;
            total += len;
            // SAFETY: conn is live; len bytes of sid were taken (0 for a fin-only write).
            unsafe {
                assert_eq!(nghttp3_conn_add_write_offset(self.conn, sid, len), 0);
                assert_eq!(nghttp3_conn_add_ack_offset(self.conn, sid, len as u64), 0);
            }
            if n == 0 && fin == 0 {
                return total;
            }
        }
    }

    /// Feeds one stream's bytes to this side. Returns nghttp3's result.
    pub fn read(&mut self, sid: i64, data: &[u8], fin: bool) -> isize {
        self.clock += 1_000_000;
        // SAFETY: data is valid for data.len() bytes; conn is live.
        unsafe {
            #[cfg(nghttp3_read_stream2)]
            {
                nghttp3_conn_read_stream2(
                    self.conn,
                    sid,
                    data.as_ptr(),
                    data.len(),
                    fin as i32,
                    self.clock,
                )
            }
            #[cfg(not(nghttp3_read_stream2))]
            {
                nghttp3_conn_read_stream(self.conn, sid, data.as_ptr(), data.len(), fin as i32)
            }
        }
    }

    pub fn stream(&self, sid: i64) -> &Incoming {
        self.state
            .streams
            .get(&sid)
            .unwrap_or_else(|| panic!("no stream {sid}"))
    }

    /// Submits a body (and optional trailers) to be pulled by `read_data`.
    pub fn set_outgoing(&mut self, sid: i64, body: Vec<u8>, trailers: Option<Fields>) {
        self.state.outgoing.insert(
            sid,
            Outgoing {
                body,
                trailers,
                ..Default::default()
            },
        );
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        // SAFETY: conn was created by conn_*_new and is deleted once.
        unsafe { nghttp3_conn_del(self.conn) };
    }
}

/// Moves bytes both ways until neither side has anything more to say.
pub fn exchange(a: &mut Endpoint, b: &mut Endpoint) {
    loop {
        let produced = a.flush() + b.flush();
        let delivered = deliver(a, b) + deliver(b, a);
        if produced == 0 && delivered == 0 {
            return;
        }
    }
}

/// Delivers `from`'s pending stream bytes to `to`. Returns how many streams moved.
fn deliver(from: &mut Endpoint, to: &mut Endpoint) -> usize {
    let pending = std::mem::take(&mut from.wire);
    let mut moved = 0;
    for (sid, (data, fin)) in pending {
        if data.is_empty() && !fin {
            continue;
        }
        if from.finished.contains(&sid) {
            panic!("stream {sid} written after its fin");
        }
        let rv = to.read(sid, &data, fin);
        assert!(rv >= 0, "read_stream({sid}): {}", err(rv as i32));
        if fin {
            from.finished.push(sid);
        }
        moved += 1;
    }
    moved
}

pub fn err(code: i32) -> String {
    // SAFETY: nghttp3_strerror returns a static NUL-terminated string for any code.
    let s = unsafe { std::ffi::CStr::from_ptr(nghttp3_strerror(code)) };
    format!("{code} ({})", s.to_string_lossy())
}

pub fn default_settings() -> nghttp3_settings {
    let mut settings = nghttp3_settings::default();
    // SAFETY: settings is a valid, writable nghttp3_settings of the header's version.
    unsafe { nghttp3_settings_default(&mut settings) };
    settings
}

fn rcbuf(buf: *mut nghttp3_rcbuf) -> Vec<u8> {
    // SAFETY: nghttp3 passes a live rcbuf for the duration of the callback.
    let v = unsafe { nghttp3_rcbuf_get_buf(buf) };
    // SAFETY: the vec describes the rcbuf's bytes.
    unsafe { std::slice::from_raw_parts(v.base, v.len) }.to_vec()
}

/// Runs a callback body on the connection's State, turning a panic into
/// NGHTTP3_ERR_CALLBACK_FAILURE so it never unwinds into C.
fn with_state(ud: *mut c_void, f: impl FnOnce(&mut State) -> i32) -> i32 {
    // SAFETY: conn_user_data is the Endpoint's boxed State, alive while the conn is.
    let state = unsafe { &mut *(ud as *mut State) };
    catch_unwind(AssertUnwindSafe(|| f(state))).unwrap_or(NGHTTP3_ERR_CALLBACK_FAILURE)
}

fn callbacks() -> nghttp3_callbacks {
    nghttp3_callbacks {
        acked_stream_data: Some(acked_stream_data),
        stream_close: Some(stream_code::<CLOSED>),
        recv_data: Some(recv_data),
        begin_headers: Some(begin_headers),
        recv_header: Some(recv_field::<false>),
        begin_trailers: Some(begin_headers),
        recv_trailer: Some(recv_field::<true>),
        end_stream: Some(end_stream),
        stop_sending: Some(stream_code::<STOP_SENDING>),
        reset_stream: Some(stream_code::<RESET>),
        shutdown: Some(shutdown),
        #[cfg(not(nghttp3_recv_settings2))]
        recv_settings: Some(recv_settings),
        #[cfg(nghttp3_recv_settings2)]
        recv_settings2: Some(recv_settings2),
        ..Default::default()
    }
}

unsafe extern "C" fn acked_stream_data(
    _: *mut nghttp3_conn,
    sid: i64,
    n: u64,
    ud: *mut c_void,
    _: *mut c_void,
) -> i32 {
    with_state(ud, |s| {
        s.outgoing.entry(sid).or_default().acked += n;
        0
    })
}

const CLOSED: u8 = 0;
const STOP_SENDING: u8 = 1;
const RESET: u8 = 2;

/// stream_close, stop_sending and reset_stream: a stream event with an error code.
unsafe extern "C" fn stream_code<const EVENT: u8>(
    _: *mut nghttp3_conn,
    sid: i64,
    code: u64,
    ud: *mut c_void,
    _: *mut c_void,
) -> i32 {
    with_state(ud, |s| {
        let stream = s.streams.entry(sid).or_default();
        match EVENT {
            CLOSED => stream.closed = Some(code),
            STOP_SENDING => stream.stop_sending = Some(code),
            _ => stream.reset = Some(code),
        }
        0
    })
}

unsafe extern "C" fn recv_data(
    _: *mut nghttp3_conn,
    sid: i64,
    data: *const u8,
    len: usize,
    ud: *mut c_void,
    _: *mut c_void,
) -> i32 {
    with_state(ud, |s| {
        // SAFETY: nghttp3 passes len readable bytes at data.
        let bytes = unsafe { std::slice::from_raw_parts(data, len) };
        s.streams
            .entry(sid)
            .or_default()
            .body
            .extend_from_slice(bytes);
        0
    })
}

unsafe extern "C" fn begin_headers(
    _: *mut nghttp3_conn,
    sid: i64,
    ud: *mut c_void,
    _: *mut c_void,
) -> i32 {
    with_state(ud, |s| {
        s.streams.entry(sid).or_default();
        0
    })
}

/// recv_header and recv_trailer: one function, told apart at compile time.
unsafe extern "C" fn recv_field<const TRAILER: bool>(
    _: *mut nghttp3_conn,
    sid: i64,
    _token: i32,
    name: *mut nghttp3_rcbuf,
    value: *mut nghttp3_rcbuf,
    _flags: u8,
    ud: *mut c_void,
    _: *mut c_void,
) -> i32 {
    with_state(ud, |s| {
        let field = (rcbuf(name), rcbuf(value));
        let stream = s.streams.entry(sid).or_default();
        if TRAILER {
            stream.trailers.push(field);
        } else {
            stream.headers.push(field);
        }
        0
    })
}

unsafe extern "C" fn end_stream(
    _: *mut nghttp3_conn,
    sid: i64,
    ud: *mut c_void,
    _: *mut c_void,
) -> i32 {
    with_state(ud, |s| {
        s.streams.entry(sid).or_default().ended = true;
        0
    })
}

unsafe extern "C" fn shutdown(_: *mut nghttp3_conn, id: i64, ud: *mut c_void) -> i32 {
    with_state(ud, |s| {
        s.goaway = Some(id);
        0
    })
}

#[cfg(not(nghttp3_recv_settings2))]
unsafe extern "C" fn recv_settings(
    _: *mut nghttp3_conn,
    settings: *const nghttp3_settings,
    ud: *mut c_void,
) -> i32 {
    with_state(ud, |s| {
        // SAFETY: nghttp3 passes a valid settings struct for the callback's duration.
        s.peer_max_field_section_size = Some(unsafe { (*settings).max_field_section_size });
        0
    })
}

#[cfg(nghttp3_recv_settings2)]
unsafe extern "C" fn recv_settings2(
    _: *mut nghttp3_conn,
    settings: *const nghttp3_proto_settings,
    ud: *mut c_void,
) -> i32 {
    with_state(ud, |s| {
        // SAFETY: nghttp3 passes a valid settings struct for the callback's duration.
        s.peer_max_field_section_size = Some(unsafe { (*settings).max_field_section_size });
        0
    })
}

/// The body source for `submit_request` / `submit_response`: hands out `chunk`-sized
/// slices of `Outgoing::body` (kept alive in State until the conn is gone), then EOF,
/// submitting trailers from inside the callback as nghttp3 expects.
pub unsafe extern "C" fn read_data(
    conn: *mut nghttp3_conn,
    sid: i64,
    vec: *mut nghttp3_vec,
    veccnt: usize,
    pflags: *mut u32,
    ud: *mut c_void,
    _: *mut c_void,
) -> nghttp3_ssize {
    with_state(ud, |s| {
        let chunk = s.chunk;
        let Some(out) = s.outgoing.get_mut(&sid) else {
            return NGHTTP3_ERR_CALLBACK_FAILURE;
        };
        let mut filled = 0;
        while filled < veccnt && out.offset < out.body.len() {
            let len = chunk.min(out.body.len() - out.offset);
            // SAFETY: vec has veccnt writable entries; the body outlives the conn.
            unsafe {
                *vec.add(filled) = nghttp3_vec {
                    base: out.body.as_mut_ptr().add(out.offset),
                    len,
                };
            }
            out.offset += len;
            filled += 1;
        }
        if out.offset == out.body.len() {
            // SAFETY: pflags is a valid out-pointer for this callback.
            unsafe { *pflags |= NGHTTP3_DATA_FLAG_EOF };
            if let Some(trailers) = out.trailers.take() {
                // SAFETY: as above; trailer nvs are copied by nghttp3 during the call.
                unsafe {
                    *pflags |= NGHTTP3_DATA_FLAG_NO_END_STREAM;
                    let nva = nvs(&trailers);
                    let rv = nghttp3_conn_submit_trailers(conn, sid, nva.as_ptr(), nva.len());
                    if rv != 0 {
                        return rv;
                    }
                }
            }
        }
        filled as i32
    }) as nghttp3_ssize
}

pub const DATA_READER: nghttp3_data_reader = nghttp3_data_reader {
    read_data: Some(read_data),
};
