//! The only place h3-tokio touches C: one `nghttp3_conn` behind a safe API.
//!
//! nghttp3 is sans-IO. It is fed stream bytes ([`Conn::read`]), asked for bytes to send
//! ([`Conn::writev`]), and reports what it parsed through C callbacks. Here each callback
//! is a trampoline that catches panics and forwards to the [`Events`] the caller passed
//! to the call that can trigger it, so no Rust panic unwinds into C and the driver's
//! state is borrowed only for the duration of that call.
//!
//! Outgoing bodies are owned here, not by the caller: nghttp3 keeps raw pointers into
//! them until their bytes are acknowledged, and only this module can guarantee that the
//! buffers outlive those pointers.

use std::collections::hash_map::Entry;
use std::collections::VecDeque;
use std::ffi::c_void;
use std::marker::PhantomData;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr::{self, NonNull};

use bytes::{Buf, Bytes};
use nghttp3_sys as sys;
use rustc_hash::FxHashMap;

use http::header::{self, HeaderName};

use crate::config::Config;
use crate::error::Code;
use crate::fields::Section;

/// What nghttp3 reports while parsing or sending. All methods default to doing nothing.
pub(crate) trait Events {
    fn begin_headers(&mut self, _sid: i64, _trailers: bool) {}
    /// A received field; `known` is its name when nghttp3 recognised it as one `http`
    /// has a constant for, which spares parsing `name` again.
    fn recv_field(&mut self, _sid: i64, _known: Option<HeaderName>, _name: &[u8], _value: &[u8]) {}
    fn end_headers(&mut self, _sid: i64, _trailers: bool) {}
    fn recv_data(&mut self, _sid: i64, _data: Bytes) {}
    fn end_stream(&mut self, _sid: i64) {}
    /// `n` bytes of body queued with [`Conn::queue_data`] were handed to QUIC and freed.
    fn body_sent(&mut self, _sid: i64, _n: u64) {}
    /// nghttp3 asks for STOP_SENDING (e.g. a malformed request).
    fn stop_sending(&mut self, _sid: i64, _code: u64) {}
    /// nghttp3 asks for RESET_STREAM.
    fn reset_stream(&mut self, _sid: i64, _code: u64) {}
    fn stream_close(&mut self, _sid: i64, _code: u64) {}
    /// The peer sent GOAWAY with this stream (or push) id.
    fn goaway(&mut self, _id: i64) {}
}

/// An nghttp3 library error: a connection error once returned from read or write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LibError(pub i32);

impl LibError {
    /// The connection is going away (a GOAWAY came, or ours went out): no new request.
    pub fn is_conn_closing(self) -> bool {
        self.0 == sys::NGHTTP3_ERR_CONN_CLOSING
    }

    /// The HTTP/3 error code to close the QUIC connection with.
    pub fn code(self) -> Code {
        // SAFETY: accepts any library error code.
        Code(unsafe { sys::nghttp3_err_infer_quic_app_error_code(self.0) })
    }

    pub fn message(self) -> &'static str {
        // SAFETY: nghttp3_strerror returns a static NUL-terminated string for any code.
        let s = unsafe { std::ffi::CStr::from_ptr(sys::nghttp3_strerror(self.0)) };
        s.to_str().unwrap_or("nghttp3 error")
    }
}

fn check(rv: i32) -> Result<(), LibError> {
    if rv == 0 {
        Ok(())
    } else {
        Err(LibError(rv))
    }
}

/// One batch of stream bytes to hand to QUIC.
pub(crate) struct Write {
    pub sid: i64,
    pub fin: bool,
}

/// A request or response body on its way out.
#[derive(Default)]
struct SendBuf {
    /// Not yet handed to nghttp3.
    queued: VecDeque<Bytes>,
    /// Handed to nghttp3 by read_data, not yet written to QUIC.
    inflight: VecDeque<Bytes>,
    /// No more data will be queued.
    eof: bool,
    trailers: Option<Section>,
    /// Our side of the stream was reset: nghttp3 must not be asked to write it again.
    /// `inflight` stays until the stream closes, as nghttp3's queue may still point
    /// into it.
    shut: bool,
}

impl SendBuf {
    /// Emptied for another stream; the buffers keep their capacity.
    fn clear(&mut self) {
        self.queued.clear();
        self.inflight.clear();
        self.eof = false;
        self.trailers = None;
        self.shut = false;
    }

    /// Drops `n` written bytes from the front of `inflight`.
    fn consume(&mut self, mut n: usize) {
        while n > 0 {
            let Some(front) = self.inflight.front_mut() else {
                return;
            };
            let take = n.min(front.len());
            front.advance(take);
            n -= take;
            if front.is_empty() {
                self.inflight.pop_front();
            }
        }
    }
}

/// State the C callbacks reach through `conn_user_data`.
struct Shared {
    /// The handler of the current call into nghttp3 (`None` between calls).
    events: Option<*mut (dyn Events + 'static)>,
    /// The chunk being read, so DATA payload can be handed out without a copy.
    input: Bytes,
    /// DATA payload bytes handed to `recv_data` during the current read: nghttp3's
    /// count of consumed bytes leaves them out.
    delivered: usize,
    /// Keyed by stream id, probed in every read_data and acked_stream_data callback:
    /// FxHash, as a stream id is not attacker-chosen in a way that could collide
    /// (QUIC assigns them in sequence).
    bodies: FxHashMap<i64, SendBuf>,
    /// Bodies of closed streams, for reuse: a body's queues allocate on first use.
    spare: Vec<SendBuf>,
    /// Scratch space for the field arrays handed to nghttp3 (it copies them).
    nva: Vec<sys::nghttp3_nv>,
}

/// Most bodies kept for reuse. Streams close and open in the same driver round, so a
/// few cover even many concurrent streams; few keep idle connections small.
const SPARE_BODIES: usize = 32;

impl Shared {
    /// The (empty) body of a stream being submitted. Refused if the stream has one:
    /// nghttp3 may still point into it, and replacing it would free those bytes.
    fn add_body(&mut self, sid: i64) -> Result<&mut SendBuf, LibError> {
        match self.bodies.entry(sid) {
            Entry::Vacant(e) => Ok(e.insert(self.spare.pop().unwrap_or_default())),
            Entry::Occupied(_) => Err(LibError(sys::NGHTTP3_ERR_INVALID_STATE)),
        }
    }

    /// Marks `sid`'s body (made empty if it had none) as shut: nothing more is queued
    /// or handed out, and what nghttp3 holds stays until the stream closes.
    fn shut_body(&mut self, sid: i64) {
        let spare = &mut self.spare;
        let body = self
            .bodies
            .entry(sid)
            .or_insert_with(|| spare.pop().unwrap_or_default());
        body.queued.clear();
        body.trailers = None;
        body.eof = true;
        body.shut = true;
    }

    fn remove_body(&mut self, sid: i64) {
        if let Some(mut body) = self.bodies.remove(&sid) {
            if self.spare.len() < SPARE_BODIES {
                body.clear();
                self.spare.push(body);
            }
        }
    }
}

/// One HTTP/3 connection's nghttp3 state. Owned by a single driver task.
///
/// `shared` is reached two ways: by `Conn`'s methods, and by callbacks through nghttp3's
/// copy of the pointer. So it is held as a raw pointer, never as a `Box` or a reference
/// that lives across a call into nghttp3: callbacks make their own `&mut Shared`, and
/// no other may be alive while they do.
pub(crate) struct Conn {
    raw: *mut sys::nghttp3_conn,
    shared: NonNull<Shared>,
}

// SAFETY: nghttp3_conn has no thread affinity; Conn is not Sync, every use goes through
// &mut Conn, so it is only ever touched by one thread at a time.
unsafe impl Send for Conn {}

/// Makes `events` reachable from callbacks for the duration of one call into nghttp3,
/// and clears it (and the input chunk) after. It writes through the raw pointer only,
/// so it holds no borrow of `Shared` that a callback's would alias.
struct EventsGuard<'a> {
    shared: NonNull<Shared>,
    _borrows: PhantomData<(&'a mut Conn, &'a mut dyn Events)>,
}

impl<'a> EventsGuard<'a> {
    fn new(conn: &'a mut Conn, events: &'a mut dyn Events) -> Self {
        let events: *mut (dyn Events + '_) = events;
        // SAFETY: only the lifetime is erased; the guard clears the pointer when dropped,
        // before the borrow of `events` ends, and callbacks only run inside the call.
        let events: *mut (dyn Events + 'static) = unsafe { std::mem::transmute(events) };
        // SAFETY: `shared` is live while the Conn is, and no reference to it is alive:
        // the guard borrows the Conn mutably, and Conn::shared's borrows are short.
        unsafe { (*conn.shared.as_ptr()).events = Some(events) };
        EventsGuard {
            shared: conn.shared,
            _borrows: PhantomData,
        }
    }
}

impl Drop for EventsGuard<'_> {
    fn drop(&mut self) {
        // SAFETY: as in new; the call the guard covered has returned.
        unsafe {
            let shared = self.shared.as_ptr();
            (*shared).events = None;
            (*shared).input = Bytes::new();
        }
    }
}

impl Conn {
    pub fn new(server: bool, config: &Config) -> Result<Conn, LibError> {
        // nghttp3 asserts these fit a QUIC varint: an abort, not an error, otherwise.
        const VARINT_MAX: u64 = (1 << 62) - 1;
        let settings_fit = [
            config.max_field_section_size,
            config.qpack_max_table_capacity as u64,
            config.qpack_blocked_streams as u64,
            config.max_concurrent_streams,
        ]
        .iter()
        .all(|&v| v <= VARINT_MAX);
        if !settings_fit {
            return Err(LibError(sys::NGHTTP3_ERR_INVALID_ARGUMENT));
        }
        let mut settings = sys::nghttp3_settings::default();
        // SAFETY: settings is a valid nghttp3_settings of the header's struct version.
        unsafe { sys::nghttp3_settings_default(&mut settings) };
        settings.max_field_section_size = config.max_field_section_size;
        settings.qpack_max_dtable_capacity = config.qpack_max_table_capacity;
        settings.qpack_encoder_max_dtable_capacity = config.qpack_max_table_capacity;
        settings.qpack_blocked_streams = config.qpack_blocked_streams;
        settings.enable_connect_protocol = config.enable_connect_protocol as u8;
        #[cfg(nghttp3_read_stream2)]
        {
            settings.glitch_ratelim_burst = config.glitch_burst;
            settings.glitch_ratelim_rate = config.glitch_rate;
        }

        let shared = NonNull::from(Box::leak(Box::new(Shared {
            events: None,
            input: Bytes::new(),
            delivered: 0,
            bodies: FxHashMap::default(),
            spare: Vec::new(),
            nva: Vec::new(),
        })));
        let callbacks = callbacks();
        let user_data = shared.as_ptr() as *mut c_void;
        let mut raw = ptr::null_mut();
        // SAFETY: all pointers are valid for the call; nghttp3 copies callbacks and
        // settings; user_data is `shared`, freed only after the conn (Conn::drop).
        let rv = unsafe {
            if server {
                sys::nghttp3_conn_server_new(
                    &mut raw,
                    &callbacks,
                    &settings,
                    ptr::null(),
                    user_data,
                )
            } else {
                sys::nghttp3_conn_client_new(
                    &mut raw,
                    &callbacks,
                    &settings,
                    ptr::null(),
                    user_data,
                )
            }
        };
        // From here Conn::drop frees both (nghttp3_conn_del accepts null).
        let conn = Conn { raw, shared };
        check(rv)?;
        Ok(conn)
    }

    /// The state callbacks share, between calls into nghttp3.
    fn shared(&mut self) -> &mut Shared {
        // SAFETY: `shared` is live while the Conn is. Callbacks, its only other users,
        // run inside calls into nghttp3, and no caller holds this borrow across one.
        unsafe { self.shared.as_mut() }
    }

    pub fn bind_streams(&mut self, control: i64, qenc: i64, qdec: i64) -> Result<(), LibError> {
        // SAFETY: raw is a live conn; binding takes no pointers.
        unsafe {
            check(sys::nghttp3_conn_bind_control_stream(self.raw, control))?;
            check(sys::nghttp3_conn_bind_qpack_streams(self.raw, qenc, qdec))
        }
    }

    /// Feeds bytes received on a stream. `now` is a monotonic timestamp in nanoseconds
    /// (for the glitch rate limiter where the linked nghttp3 has one).
    ///
    /// Returns, for a request stream, how many of the bytes nghttp3 kept to process
    /// later: what follows a QPACK-blocked field section. The rest it consumed (frame
    /// headers, fields, frames it skips) or handed to `recv_data`.
    pub fn read(
        &mut self,
        events: &mut dyn Events,
        sid: i64,
        data: Bytes,
        fin: bool,
        now: u64,
    ) -> Result<u64, LibError> {
        let (ptr, len) = (data.as_ptr(), data.len());
        let shared = self.shared();
        shared.input = data;
        shared.delivered = 0;
        let raw = self.raw;
        let guard = EventsGuard::new(self, events);
        // SAFETY: raw is live; ptr/len describe `input`, which stays alive (in Shared)
        // until the guard drops, after the call; callbacks reach `events` through it.
        let rv = unsafe {
            #[cfg(nghttp3_read_stream2)]
            {
                sys::nghttp3_conn_read_stream2(raw, sid, ptr, len, fin as i32, now)
            }
            #[cfg(not(nghttp3_read_stream2))]
            {
                let _ = now;
                sys::nghttp3_conn_read_stream(raw, sid, ptr, len, fin as i32)
            }
        };
        drop(guard);
        if rv < 0 {
            return Err(LibError(rv as i32));
        }
        // A request stream's read delivers its own DATA only. (Reading the QPACK
        // encoder stream delivers other streams' buffered DATA: no count for it.)
        let consumed = rv as usize + self.shared().delivered;
        Ok(len.saturating_sub(consumed) as u64)
    }

    /// Asks nghttp3 for the next bytes to send. Fills `out` with them (body bytes are
    /// shared, not copied) and returns the stream they belong to, or `None` when nothing
    /// is ready. Each call must be followed by [`Conn::wrote`] for that stream.
    pub fn writev(
        &mut self,
        events: &mut dyn Events,
        out: &mut Vec<Bytes>,
    ) -> Result<Option<Write>, LibError> {
        const MAX_VECS: usize = 16;
        let mut vecs = [sys::nghttp3_vec {
            base: ptr::null_mut(),
            len: 0,
        }; MAX_VECS];
        let mut sid = -1;
        let mut fin = 0;
        let raw = self.raw;
        let guard = EventsGuard::new(self, events);
        // SAFETY: raw is live; vecs has MAX_VECS writable entries.
        let n = unsafe {
            sys::nghttp3_conn_writev_stream(raw, &mut sid, &mut fin, vecs.as_mut_ptr(), MAX_VECS)
        };
        drop(guard);
        if n < 0 {
            return Err(LibError(n as i32));
        }
        if sid == -1 {
            return Ok(None);
        }
        let body = self.shared().bodies.get(&sid);
        out.clear();
        for v in &vecs[..n as usize] {
            if v.len == 0 {
                continue;
            }
            // Each vec points into nghttp3's frame buffers, freed no sooner than
            // add_ack_offset (in `wrote`), or into a chunk of `inflight` (put there by
            // read_data), kept until the acked_stream_data callback consumes it.
            // SAFETY: neither of those runs before this loop ends, and the slice does
            // not outlive it: it is shared from `inflight` or copied right here.
            let bytes = unsafe { std::slice::from_raw_parts(v.base, v.len) };
            out.push(
                body.and_then(|b| share(&b.inflight, bytes))
                    .unwrap_or_else(|| Bytes::copy_from_slice(bytes)),
            );
        }
        Ok(Some(Write { sid, fin: fin != 0 }))
    }

    /// Tells nghttp3 that QUIC accepted `n` bytes of `sid` (0 for a fin-only write).
    /// QUIC now owns their retransmission, so they count as acknowledged too.
    pub fn wrote(&mut self, events: &mut dyn Events, sid: i64, n: usize) -> Result<(), LibError> {
        let raw = self.raw;
        let _guard = EventsGuard::new(self, events);
        // SAFETY: raw is live; the bytes came from the preceding writev for sid.
        unsafe {
            check(sys::nghttp3_conn_add_write_offset(raw, sid, n))?;
            check(sys::nghttp3_conn_add_ack_offset(raw, sid, n as u64))
        }
    }

    /// A request head; its body follows with [`queue_data`](Self::queue_data) and
    /// [`queue_eof`](Self::queue_eof).
    pub fn submit_request(&mut self, sid: i64, head: &Section) -> Result<(), LibError> {
        self.shared().add_body(sid)?;
        self.submit(sid, head, true, true)
    }

    pub fn submit_info(&mut self, sid: i64, head: &Section) -> Result<(), LibError> {
        let raw = self.raw;
        let nva = nvs(&mut self.shared().nva, head);
        // SAFETY: raw is live; nva is copied during the call, which runs no callback.
        check(unsafe { sys::nghttp3_conn_submit_info(raw, sid, nva.as_ptr(), nva.len()) })
    }

    /// A response head; its body follows as for [`submit_request`](Self::submit_request).
    pub fn submit_response(&mut self, sid: i64, head: &Section) -> Result<(), LibError> {
        self.shared().add_body(sid)?;
        self.submit(sid, head, true, false)
    }

    /// Submits a request or response head; with `body`, nghttp3 asks `read_data` for it.
    fn submit(
        &mut self,
        sid: i64,
        head: &Section,
        body: bool,
        request: bool,
    ) -> Result<(), LibError> {
        let raw = self.raw;
        let nva = nvs(&mut self.shared().nva, head);
        let reader = body
            .then_some(&DATA_READER)
            .map_or(ptr::null(), |r| r as *const _);
        // SAFETY: raw is live; nva borrows `head` and is copied during the call, which
        // runs no callback; the data reader is a static table.
        let submitted = check(unsafe {
            if request {
                sys::nghttp3_conn_submit_request(
                    raw,
                    sid,
                    nva.as_ptr(),
                    nva.len(),
                    reader,
                    ptr::null_mut(),
                )
            } else {
                sys::nghttp3_conn_submit_response(raw, sid, nva.as_ptr(), nva.len(), reader)
            }
        });
        if submitted.is_err() && body {
            // Refused (a request after the server's GOAWAY: the connection goes on),
            // nothing points into the body, and no stream close would free it.
            self.shared().remove_body(sid);
        }
        submitted
    }

    /// A whole response: head, `body` (may be empty) and the end, in one call into
    /// nghttp3. The body is in place before the submit, so nghttp3 takes it (and the
    /// end) at its first write without being resumed; without a body the HEADERS frame
    /// itself ends the stream.
    pub fn respond(&mut self, sid: i64, head: &Section, body: Bytes) -> Result<(), LibError> {
        let has_body = !body.is_empty();
        if has_body {
            let buf = self.shared().add_body(sid)?;
            buf.queued.push_back(body);
            buf.eof = true;
        }
        self.submit(sid, head, has_body, false)
    }

    /// Queues body bytes for a stream submitted with a body.
    pub fn queue_data(&mut self, sid: i64, data: Bytes) -> Result<(), LibError> {
        if let Some(body) = self.shared().bodies.get_mut(&sid) {
            if !body.eof && !data.is_empty() {
                body.queued.push_back(data);
            }
        }
        self.resume(sid)
    }

    /// Ends a body, with trailers if any.
    pub fn queue_eof(&mut self, sid: i64, trailers: Option<Section>) -> Result<(), LibError> {
        if let Some(body) = self.shared().bodies.get_mut(&sid) {
            body.eof = true;
            body.trailers = trailers;
        }
        self.resume(sid)
    }

    fn resume(&mut self, sid: i64) -> Result<(), LibError> {
        if self.is_shut(sid) {
            return Ok(());
        }
        // SAFETY: raw is live.
        check(unsafe { sys::nghttp3_conn_resume_stream(self.raw, sid) })
    }

    /// nghttp3 schedules a stream it still has frames for even after
    /// `shutdown_stream_write`, when it is resumed or unblocked: it would then write
    /// from (or ask read_data for) a body that is gone.
    fn is_shut(&mut self, sid: i64) -> bool {
        self.shared().bodies.get(&sid).is_some_and(|b| b.shut)
    }

    /// QUIC flow control blocks `sid`: nghttp3 stops offering its bytes until unblocked.
    pub fn block(&mut self, sid: i64) {
        // SAFETY: raw is live.
        unsafe { sys::nghttp3_conn_block_stream(self.raw, sid) }
    }

    pub fn unblock(&mut self, sid: i64) -> Result<(), LibError> {
        if self.is_shut(sid) {
            return Ok(());
        }
        // SAFETY: raw is live.
        check(unsafe { sys::nghttp3_conn_unblock_stream(self.raw, sid) })
    }

    /// Our side of `sid` was reset: nghttp3 must not write to it again. What it was
    /// given to write stays alive until the stream closes.
    pub fn shutdown_write(&mut self, sid: i64) {
        self.shared().shut_body(sid);
        // SAFETY: raw is live.
        unsafe { sys::nghttp3_conn_shutdown_stream_write(self.raw, sid) }
    }

    /// The read side of `sid` ended abruptly (peer reset, or we sent STOP_SENDING).
    pub fn shutdown_read(&mut self, events: &mut dyn Events, sid: i64) -> Result<(), LibError> {
        let raw = self.raw;
        let _guard = EventsGuard::new(self, events);
        // SAFETY: raw is live.
        check(unsafe { sys::nghttp3_conn_shutdown_stream_read(raw, sid) })
    }

    /// Both directions of `sid` are done at the QUIC level: nghttp3 frees the stream.
    pub fn close_stream(
        &mut self,
        events: &mut dyn Events,
        sid: i64,
        code: Code,
    ) -> Result<(), LibError> {
        self.shared().remove_body(sid);
        let raw = self.raw;
        let guard = EventsGuard::new(self, events);
        // SAFETY: raw is live.
        let rv = unsafe { sys::nghttp3_conn_close_stream(raw, sid, code.0) };
        drop(guard);
        match rv {
            0 | sys::NGHTTP3_ERR_STREAM_NOT_FOUND => Ok(()),
            rv => Err(LibError(rv)),
        }
    }

    /// The cumulative number of bidirectional streams the client may open. Must follow
    /// QUIC's limit, or nghttp3 rejects PRIORITY_UPDATE frames for valid streams.
    pub fn set_max_client_streams_bidi(&mut self, n: u64) {
        // SAFETY: raw is live.
        unsafe { sys::nghttp3_conn_set_max_client_streams_bidi(self.raw, n) }
    }

    /// First step of graceful shutdown: GOAWAY with the largest possible id.
    pub fn shutdown_notice(&mut self) -> Result<(), LibError> {
        // SAFETY: raw is live.
        check(unsafe { sys::nghttp3_conn_submit_shutdown_notice(self.raw) })
    }

    /// Second step: GOAWAY with the id of the first stream that will not be processed.
    pub fn shutdown(&mut self) -> Result<(), LibError> {
        // SAFETY: raw is live.
        check(unsafe { sys::nghttp3_conn_shutdown(self.raw) })
    }

    /// RFC 9218 priority of a request stream: (urgency 0..=7, incremental).
    pub fn priority(&mut self, sid: i64) -> Option<(u8, bool)> {
        let mut pri = sys::nghttp3_pri::default();
        // SAFETY: raw is live; pri is a valid out-pointer of the header's struct version.
        let rv = unsafe { sys::nghttp3_conn_get_stream_priority(self.raw, &mut pri, sid) };
        (rv == 0).then_some((pri.urgency as u8, pri.inc != 0))
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        // SAFETY: raw came from conn_*_new (or is null) and is deleted exactly once,
        // before the state its callbacks use; `shared` came from Box::leak in Conn::new.
        unsafe {
            sys::nghttp3_conn_del(self.raw);
            drop(Box::from_raw(self.shared.as_ptr()));
        }
    }
}

/// Received DATA payloads this large are handed on as slices of the chunk QUIC gave;
/// smaller ones are copied.
const SHARE_FROM: usize = 512;

/// A `Bytes` sharing `bytes` if they lie inside one of `chunks` (a DATA payload that
/// nghttp3 got from read_data), so bodies go to QUIC without a copy.
fn share(chunks: &VecDeque<Bytes>, bytes: &[u8]) -> Option<Bytes> {
    chunks.iter().find_map(|c| slice_of(c, bytes))
}

/// `bytes` as a slice of `chunk`, if they lie inside it.
fn slice_of(chunk: &Bytes, bytes: &[u8]) -> Option<Bytes> {
    let (start, base) = (bytes.as_ptr() as usize, chunk.as_ptr() as usize);
    (start >= base && start + bytes.len() <= base + chunk.len())
        .then(|| chunk.slice(start - base..start - base + bytes.len()))
}

/// Fills `nva` (emptied first) with `head`'s fields. The entries point into `head`.
fn nvs<'a>(nva: &'a mut Vec<sys::nghttp3_nv>, head: &Section) -> &'a [sys::nghttp3_nv] {
    nva.clear();
    nva.extend(head.fields().map(|(n, v)| sys::nghttp3_nv {
        name: n.as_ptr(),
        value: v.as_ptr(),
        namelen: n.len(),
        valuelen: v.len(),
        flags: sys::NGHTTP3_NV_FLAG_NONE as u8,
    }));
    nva
}

static DATA_READER: sys::nghttp3_data_reader = sys::nghttp3_data_reader {
    read_data: Some(read_data),
};

fn callbacks() -> sys::nghttp3_callbacks {
    sys::nghttp3_callbacks {
        acked_stream_data: Some(acked_stream_data),
        stream_close: Some(stream_close),
        recv_data: Some(recv_data),
        begin_headers: Some(begin_headers::<false>),
        recv_header: Some(recv_field),
        end_headers: Some(end_headers::<false>),
        begin_trailers: Some(begin_headers::<true>),
        recv_trailer: Some(recv_field),
        end_trailers: Some(end_headers::<true>),
        stop_sending: Some(stop_sending),
        end_stream: Some(end_stream),
        reset_stream: Some(reset_stream),
        shutdown: Some(shutdown),
        ..Default::default()
    }
}

/// Runs a callback body with the connection's shared state, turning a panic (or a
/// callback outside any call, which would be a bug) into NGHTTP3_ERR_CALLBACK_FAILURE.
fn trampoline(user_data: *mut c_void, f: impl FnOnce(&mut Shared) -> i32) -> i32 {
    // SAFETY: conn_user_data is the Conn's `shared`, freed only after the conn, and no
    // Rust reference to it is alive while nghttp3 runs a callback (see `Conn`).
    let shared = unsafe { &mut *(user_data as *mut Shared) };
    match catch_unwind(AssertUnwindSafe(|| f(shared))) {
        Ok(rv) => rv,
        Err(payload) => {
            // The payload's Drop and the tracing subscriber are code of others that may
            // panic in turn, and nothing here may unwind into C: the payload is leaked
            // (once per connection failed this way), the log line guarded the same way.
            std::mem::forget(payload);
            let logged = catch_unwind(|| {
                tracing::error!("panic in an nghttp3 callback; failing the connection")
            });
            if let Err(payload) = logged {
                std::mem::forget(payload);
            }
            sys::NGHTTP3_ERR_CALLBACK_FAILURE
        }
    }
}

/// Like [`trampoline`], for callbacks that report to the current call's [`Events`].
fn with_events(user_data: *mut c_void, f: impl FnOnce(&mut dyn Events, &mut Shared)) -> i32 {
    trampoline(user_data, |shared| match shared.events {
        Some(events) => {
            // SAFETY: set by EventsGuard for the duration of the call that runs us; the
            // handler is a different object than Shared, so the borrows do not alias.
            f(unsafe { &mut *events }, shared);
            0
        }
        None => sys::NGHTTP3_ERR_CALLBACK_FAILURE,
    })
}

/// The bytes of an rcbuf.
///
/// # Safety
/// `buf` must be live for `'a`: callers pass the slice on within the callback only.
unsafe fn rcbuf<'a>(buf: *mut sys::nghttp3_rcbuf) -> &'a [u8] {
    // SAFETY: per the contract above; an empty vec may have a null base.
    unsafe {
        let v = sys::nghttp3_rcbuf_get_buf(buf);
        if v.len == 0 {
            &[]
        } else {
            std::slice::from_raw_parts(v.base, v.len)
        }
    }
}

unsafe extern "C" fn acked_stream_data(
    _: *mut sys::nghttp3_conn,
    sid: i64,
    n: u64,
    ud: *mut c_void,
    _: *mut c_void,
) -> i32 {
    trampoline(ud, |shared| {
        if let Some(body) = shared.bodies.get_mut(&sid) {
            body.consume(n as usize);
        }
        if let Some(events) = shared.events {
            // SAFETY: as in with_events.
            unsafe { (*events).body_sent(sid, n) };
        }
        0
    })
}

unsafe extern "C" fn stream_close(
    _: *mut sys::nghttp3_conn,
    sid: i64,
    code: u64,
    ud: *mut c_void,
    _: *mut c_void,
) -> i32 {
    with_events(ud, |e, _| e.stream_close(sid, code))
}

unsafe extern "C" fn recv_data(
    _: *mut sys::nghttp3_conn,
    sid: i64,
    data: *const u8,
    len: usize,
    ud: *mut c_void,
    _: *mut c_void,
) -> i32 {
    with_events(ud, |e, shared| {
        // SAFETY: nghttp3 passes len readable bytes at data for the callback's duration.
        let bytes = unsafe { std::slice::from_raw_parts(data, len) };
        // Usually a slice of the chunk being read; a copy if nghttp3 had to buffer it,
        // or if it is small: a slice keeps the whole chunk (a datagram or more) alive.
        let chunk = (len >= SHARE_FROM)
            .then(|| slice_of(&shared.input, bytes))
            .flatten()
            .unwrap_or_else(|| Bytes::copy_from_slice(bytes));
        shared.delivered += len;
        e.recv_data(sid, chunk);
    })
}

unsafe extern "C" fn begin_headers<const TRAILERS: bool>(
    _: *mut sys::nghttp3_conn,
    sid: i64,
    ud: *mut c_void,
    _: *mut c_void,
) -> i32 {
    with_events(ud, |e, _| e.begin_headers(sid, TRAILERS))
}

/// The `http` constant for a field name nghttp3 identified by its QPACK token (from the
/// static table or its own lookup of a literal name): no second parse of the name.
/// Request and response names with a constant in `http`; others parse as usual.
fn known_name(token: i32) -> Option<HeaderName> {
    // -1 for a name nghttp3 does not know.
    Some(match sys::nghttp3_qpack_token::try_from(token).ok()? {
        sys::nghttp3_qpack_token_NGHTTP3_QPACK_TOKEN_ACCEPT => header::ACCEPT,
        sys::nghttp3_qpack_token_NGHTTP3_QPACK_TOKEN_ACCEPT_ENCODING => header::ACCEPT_ENCODING,
        sys::nghttp3_qpack_token_NGHTTP3_QPACK_TOKEN_ACCEPT_LANGUAGE => header::ACCEPT_LANGUAGE,
        sys::nghttp3_qpack_token_NGHTTP3_QPACK_TOKEN_ACCEPT_RANGES => header::ACCEPT_RANGES,
        sys::nghttp3_qpack_token_NGHTTP3_QPACK_TOKEN_AGE => header::AGE,
        sys::nghttp3_qpack_token_NGHTTP3_QPACK_TOKEN_AUTHORIZATION => header::AUTHORIZATION,
        sys::nghttp3_qpack_token_NGHTTP3_QPACK_TOKEN_CACHE_CONTROL => header::CACHE_CONTROL,
        sys::nghttp3_qpack_token_NGHTTP3_QPACK_TOKEN_CONTENT_DISPOSITION => {
            header::CONTENT_DISPOSITION
        }
        sys::nghttp3_qpack_token_NGHTTP3_QPACK_TOKEN_CONTENT_ENCODING => header::CONTENT_ENCODING,
        sys::nghttp3_qpack_token_NGHTTP3_QPACK_TOKEN_CONTENT_LENGTH => header::CONTENT_LENGTH,
        sys::nghttp3_qpack_token_NGHTTP3_QPACK_TOKEN_CONTENT_TYPE => header::CONTENT_TYPE,
        sys::nghttp3_qpack_token_NGHTTP3_QPACK_TOKEN_COOKIE => header::COOKIE,
        sys::nghttp3_qpack_token_NGHTTP3_QPACK_TOKEN_DATE => header::DATE,
        sys::nghttp3_qpack_token_NGHTTP3_QPACK_TOKEN_ETAG => header::ETAG,
        sys::nghttp3_qpack_token_NGHTTP3_QPACK_TOKEN_IF_MODIFIED_SINCE => header::IF_MODIFIED_SINCE,
        sys::nghttp3_qpack_token_NGHTTP3_QPACK_TOKEN_IF_NONE_MATCH => header::IF_NONE_MATCH,
        sys::nghttp3_qpack_token_NGHTTP3_QPACK_TOKEN_IF_RANGE => header::IF_RANGE,
        sys::nghttp3_qpack_token_NGHTTP3_QPACK_TOKEN_LAST_MODIFIED => header::LAST_MODIFIED,
        sys::nghttp3_qpack_token_NGHTTP3_QPACK_TOKEN_LINK => header::LINK,
        sys::nghttp3_qpack_token_NGHTTP3_QPACK_TOKEN_LOCATION => header::LOCATION,
        sys::nghttp3_qpack_token_NGHTTP3_QPACK_TOKEN_ORIGIN => header::ORIGIN,
        sys::nghttp3_qpack_token_NGHTTP3_QPACK_TOKEN_RANGE => header::RANGE,
        sys::nghttp3_qpack_token_NGHTTP3_QPACK_TOKEN_REFERER => header::REFERER,
        sys::nghttp3_qpack_token_NGHTTP3_QPACK_TOKEN_SERVER => header::SERVER,
        sys::nghttp3_qpack_token_NGHTTP3_QPACK_TOKEN_SET_COOKIE => header::SET_COOKIE,
        sys::nghttp3_qpack_token_NGHTTP3_QPACK_TOKEN_USER_AGENT => header::USER_AGENT,
        sys::nghttp3_qpack_token_NGHTTP3_QPACK_TOKEN_VARY => header::VARY,
        _ => return None,
    })
}

#[allow(clippy::too_many_arguments)] // the C signature
unsafe extern "C" fn recv_field(
    _: *mut sys::nghttp3_conn,
    sid: i64,
    token: i32,
    name: *mut sys::nghttp3_rcbuf,
    value: *mut sys::nghttp3_rcbuf,
    _flags: u8,
    ud: *mut c_void,
    _: *mut c_void,
) -> i32 {
    // SAFETY: name and value are live for this callback, and Events::recv_field cannot
    // keep the slices beyond it.
    with_events(ud, |e, _| unsafe {
        e.recv_field(sid, known_name(token), rcbuf(name), rcbuf(value))
    })
}

unsafe extern "C" fn end_headers<const TRAILERS: bool>(
    _: *mut sys::nghttp3_conn,
    sid: i64,
    _fin: i32,
    ud: *mut c_void,
    _: *mut c_void,
) -> i32 {
    with_events(ud, |e, _| e.end_headers(sid, TRAILERS))
}

unsafe extern "C" fn end_stream(
    _: *mut sys::nghttp3_conn,
    sid: i64,
    ud: *mut c_void,
    _: *mut c_void,
) -> i32 {
    with_events(ud, |e, _| e.end_stream(sid))
}

unsafe extern "C" fn stop_sending(
    _: *mut sys::nghttp3_conn,
    sid: i64,
    code: u64,
    ud: *mut c_void,
    _: *mut c_void,
) -> i32 {
    with_events(ud, |e, _| e.stop_sending(sid, code))
}

unsafe extern "C" fn reset_stream(
    _: *mut sys::nghttp3_conn,
    sid: i64,
    code: u64,
    ud: *mut c_void,
    _: *mut c_void,
) -> i32 {
    with_events(ud, |e, _| e.reset_stream(sid, code))
}

unsafe extern "C" fn shutdown(_: *mut sys::nghttp3_conn, id: i64, ud: *mut c_void) -> i32 {
    with_events(ud, |e, _| e.goaway(id))
}

/// Hands nghttp3 the next queued body chunks; WOULDBLOCK (never 0 bytes without EOF)
/// when the application has not produced more yet. At the end, submits the trailers
/// from inside the callback, as nghttp3 requires.
unsafe extern "C" fn read_data(
    conn: *mut sys::nghttp3_conn,
    sid: i64,
    vec: *mut sys::nghttp3_vec,
    veccnt: usize,
    pflags: *mut u32,
    ud: *mut c_void,
    _: *mut c_void,
) -> sys::nghttp3_ssize {
    trampoline(ud, |shared| {
        let Some(body) = shared.bodies.get_mut(&sid) else {
            return sys::NGHTTP3_ERR_CALLBACK_FAILURE;
        };
        if body.shut {
            // Never resumed: the stream is not asked for again.
            return sys::NGHTTP3_ERR_WOULDBLOCK;
        }
        let mut filled = 0;
        while filled < veccnt {
            let Some(chunk) = body.queued.pop_front() else {
                break;
            };
            // SAFETY: vec has veccnt writable entries. The chunk moves to `inflight`,
            // which keeps its heap bytes alive (and unmoved) until they are written.
            unsafe {
                *vec.add(filled) = sys::nghttp3_vec {
                    base: chunk.as_ptr() as *mut u8,
                    len: chunk.len(),
                };
            }
            body.inflight.push_back(chunk);
            filled += 1;
        }
        if body.queued.is_empty() && body.eof {
            // SAFETY: pflags is a valid out-pointer for this callback.
            unsafe { *pflags |= sys::NGHTTP3_DATA_FLAG_EOF };
            if let Some(trailers) = body.trailers.take() {
                let nva = nvs(&mut shared.nva, &trailers);
                // SAFETY: conn is the live conn calling us; nva is copied by the call.
                let rv = unsafe {
                    *pflags |= sys::NGHTTP3_DATA_FLAG_NO_END_STREAM;
                    sys::nghttp3_conn_submit_trailers(conn, sid, nva.as_ptr(), nva.len())
                };
                if rv != 0 {
                    return rv;
                }
            }
        } else if filled == 0 {
            return sys::NGHTTP3_ERR_WOULDBLOCK;
        }
        filled as i32
    }) as sys::nghttp3_ssize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_is_never_replaced() {
        let mut conn = Conn::new(true, &Config::default()).unwrap();
        let shared = conn.shared();
        let body = shared.add_body(0).unwrap();
        body.inflight
            .push_back(Bytes::from_static(b"nghttp3 points here"));
        assert_eq!(
            shared.add_body(0).err(),
            Some(LibError(sys::NGHTTP3_ERR_INVALID_STATE))
        );
        assert_eq!(shared.bodies[&0].inflight.len(), 1);
        // Shutting it keeps what nghttp3 holds.
        shared.shut_body(0);
        assert_eq!(shared.bodies[&0].inflight.len(), 1);
        assert!(shared.bodies[&0].shut);
    }

    struct Quiet;
    impl Events for Quiet {}

    /// A request refused because the server's GOAWAY came first leaves no body behind.
    #[test]
    fn a_request_refused_after_goaway_frees_its_body() {
        let mut conn = Conn::new(false, &Config::default()).unwrap();
        conn.bind_streams(2, 6, 10).unwrap();
        // The server's control stream (3): its type, an empty SETTINGS, GOAWAY(0).
        let control = Bytes::from_static(&[0x00, 0x04, 0x00, 0x07, 0x01, 0x00]);
        conn.read(&mut Quiet, 3, control, false, 0).unwrap();
        let req = http::Request::get("https://localhost/").body(()).unwrap();
        let head = crate::fields::request_head(req.into_parts().0).unwrap();
        let refused = conn.submit_request(0, &head).unwrap_err();
        assert!(refused.is_conn_closing(), "{}", refused.message());
        assert!(conn.shared().bodies.is_empty());
    }
}
