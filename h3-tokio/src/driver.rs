//! The connection driver: one task per QUIC connection that owns the nghttp3 state,
//! moves bytes between quinn streams and nghttp3, and executes handles' commands.
//!
//! It is a hand-written future so that reads and writes are polled only for streams
//! whose QUIC side woke up (per-stream wakers feed a ready queue), and so that writes
//! can be offered to quinn without an intermediate task per stream.

use std::future::{poll_fn, Future};
use std::pin::{pin, Pin};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::stream::{FuturesUnordered, StreamExt};
use http::header::HeaderName;
use http::Request;
use rustc_hash::FxHashMap;
use tracing::{debug, trace, warn};

use crate::config::Config;
use crate::error::{Code, Error, Origin};
use crate::ext::Priority;
use crate::ffi::{self, Events, LibError};
use crate::fields::{Head, Section};
use crate::stream::{
    conn_event, lock, peer_error, Command, ConnShared, Queue, ReadyQueue, RequestStream,
    StreamShared,
};

#[cfg(feature = "fuzzing")]
pub mod fuzzing;

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;
type Accepted<T> = BoxFuture<Result<T, quinn::ConnectionError>>;

/// Most stream chunks read, or commands executed, per wake-up before yielding.
const BUDGET: usize = 64;
/// Largest chunk read from a QUIC stream at once.
const READ_CHUNK: usize = 64 * 1024;
/// Finished send streams collected before they are checked for acks.
const FINISHED_BATCH: usize = 64;
/// Most 1xx responses a client stream keeps until the application reads them.
const MAX_INFORMATIONAL: usize = 16;

/// Requests accepted by a server connection, for `server::Connection::accept`. Closed
/// when the driver ends, which is how `server::Connection::serve` learns it.
pub(crate) type AcceptQueue = Arc<Queue<(Request<()>, RequestStream)>>;

/// Called with each request in the driver's own task (see `server::Connection::serve`).
pub(crate) type OnRequest = Box<dyn FnMut(Request<()>, RequestStream) + Send>;

struct Stream {
    send: Option<quinn::SendStream>,
    recv: Option<quinn::RecvStream>,
    /// Request streams only: the handle's side.
    shared: Option<Arc<StreamShared>>,
    head: Head,
    /// Registered with quinn for both directions.
    waker: Waker,
    /// nghttp3 was told QUIC flow control blocks this stream.
    blocked: bool,
    /// Request streams: bytes nghttp3 kept since it last handed something over (a field
    /// section's end, body data). nghttp3 keeps everything that comes after a
    /// QPACK-blocked field section, head or trailers, and quinn grants flow control
    /// credit for what is read, so reading stops at [`Stream::UNHEARD_SLACK`] past the
    /// field section limit until nghttp3 hands something over, and then wakes. Bytes it
    /// consumed do not count: a peer may send unknown frames of any length (RFC 9114
    /// 7.2.8), or empty DATA frames, which nghttp3 skips without a word, and nothing
    /// would resume reading stopped behind them. `None` on unidirectional streams,
    /// whose contents nghttp3 never keeps.
    unheard: Option<u64>,
    /// Unidirectional streams the peer opened: the bytes of their type until it is
    /// whole (`None` from then on). nghttp3 takes a stream with part of its type as a
    /// control stream, whose end is a connection error, while RFC 9114 6.2 has a
    /// stream reset or ended before its type is known ignored.
    type_prefix: Option<Vec<u8>>,
    /// Opened in 0-RTT data (kept here: `recv` is gone once the request is read).
    early: bool,
    send_done: bool,
    recv_done: bool,
}

/// How a QUIC receive stream ended.
enum RecvEnd {
    Fin,
    Reset(u64),
    /// Connection lost, or the stream is gone.
    Lost,
}

/// Work found inside nghttp3 callbacks that needs the nghttp3 conn itself.
// Nearly every action is a Deliver and their Vec is reused: boxing the request would
// cost an allocation per request to save space in a buffer that stays small.
#[allow(clippy::large_enum_variant)]
enum Action {
    Deliver(i64, Request<()>, Arc<StreamShared>),
    /// Server: a request nghttp3 accepted but we refuse (431, malformed), the status
    /// to answer, and the code to stop reading it with.
    Refuse(i64, http::StatusCode, Code),
    /// Server: the client sent GOAWAY, it is leaving: close once its requests are done.
    PeerGoaway,
}

/// Driver state reachable from nghttp3 callbacks (everything but the nghttp3 conn).
struct State {
    server: bool,
    conn: Arc<ConnShared>,
    /// Probed per read, write and nghttp3 callback: FxHash (stream ids are assigned
    /// in sequence by QUIC, not chosen freely by the peer).
    streams: FxHashMap<i64, Stream>,
    accepted: Option<AcceptQueue>,
    /// Set by `server::Connection::serve`: requests go to it instead of `accepted`.
    on_request: Option<OnRequest>,
    actions: Vec<Action>,
    /// Streams whose both directions may now be done.
    maybe_closed: Vec<i64>,
    /// Server: request streams closed so far (`Driver::accepted_bidi` counts those
    /// opened).
    closed_bidi: u64,
}

/// How long requests in flight may take to finish after the client sent GOAWAY.
const PEER_GOAWAY_GRACE: Duration = Duration::from_secs(30);

struct Shutdown {
    deadline: Pin<Box<tokio::time::Sleep>>,
    /// The second GOAWAY (the real limit) is sent one RTT-ish after the notice.
    second: Option<Pin<Box<tokio::time::Sleep>>>,
    /// Streams at or above this id are refused.
    goaway: Option<i64>,
}

pub(crate) struct Driver {
    quic: quinn::Connection,
    h3: ffi::Conn,
    st: State,
    ready: Arc<ReadyQueue>,
    accept_bi: Option<Accepted<(quinn::SendStream, quinn::RecvStream)>>,
    accept_uni: Accepted<quinn::RecvStream>,
    closed: BoxFuture<quinn::ConnectionError>,
    /// During a graceful shutdown, `stopped()` of finished send streams: resolved once
    /// the peer acked all their data.
    unacked: FuturesUnordered<BoxFuture<()>>,
    /// Before a shutdown, finished send streams whose data may not be acked yet. Only a
    /// shutdown needs to wait for acks; until one begins they are checked in batches
    /// (see `prune_finished`), which costs far less than a future and a wake-up each.
    finished: Vec<quinn::SendStream>,
    /// `finished` is pruned when it reaches this length.
    finished_limit: usize,
    shutdown: Option<Shutdown>,
    accepted_bidi: u64,
    start: Instant,
    ready_buf: Vec<i64>,
    /// Registered with the connection-level futures `closed`, `accept_bi` and
    /// `accept_uni` (in that order), each polled only in rounds after its waker fired.
    conn_wakers: [Waker; 3],
    /// `State::actions` is swapped with this while its actions run, so neither
    /// allocates per round.
    actions_buf: Vec<Action>,
    out: Vec<Bytes>,
    /// A connection error met while running a handle's command (`inline`), for the
    /// driver task to end the connection with.
    failed: Option<Error>,
    span: tracing::Span,
}

fn stream_id(id: quinn::StreamId) -> i64 {
    u64::from(id) as i64
}

/// Resolves once the peer acked all of `send`'s data, or stopped it.
fn acked(send: quinn::SendStream) -> BoxFuture<()> {
    let stopped = send.stopped();
    Box::pin(async move {
        let _ = stopped.await;
    })
}

fn accept_bi(quic: &quinn::Connection) -> Accepted<(quinn::SendStream, quinn::RecvStream)> {
    let quic = quic.clone();
    Box::pin(async move { quic.accept_bi().await })
}

fn accept_uni(quic: &quinn::Connection) -> Accepted<quinn::RecvStream> {
    let quic = quic.clone();
    Box::pin(async move { quic.accept_uni().await })
}

impl Driver {
    /// Opens our control and QPACK streams and starts the driver task.
    pub(crate) async fn spawn(
        quic: quinn::Connection,
        config: Config,
        server: bool,
    ) -> Result<(Arc<ConnShared>, Option<AcceptQueue>), Error> {
        let mut h3 =
            ffi::Conn::new(server, &config).map_err(|e| Error::Message(e.message().into()))?;
        if server {
            // nghttp3 starts at 0, and refuses a PRIORITY_UPDATE for a stream above the
            // limit: one sent before the first request (RFC 9218 7.1 allows it) would
            // close the connection.
            h3.set_max_client_streams_bidi(config.max_concurrent_streams);
        }
        let conn = ConnShared::new(config);
        let ready = conn.ready.clone();
        let conn_wakers = [
            ready.conn_waker(conn_event::CLOSED),
            ready.conn_waker(conn_event::ACCEPT_BI),
            ready.conn_waker(conn_event::ACCEPT_UNI),
        ];
        let mut streams = FxHashMap::default();
        let mut ids = [0i64; 3];
        for id in &mut ids {
            let send = quic.open_uni().await.map_err(Error::from_quinn)?;
            *id = stream_id(send.id());
            streams.insert(*id, Stream::new(&ready, *id, Some(send), None, None));
        }
        h3.bind_streams(ids[0], ids[1], ids[2])
            .map_err(|e| Error::Message(e.message().into()))?;
        let accepted = server.then(|| Arc::new(Queue::new()));
        let queue = accepted.clone();
        let closed = {
            let quic = quic.clone();
            Box::pin(async move { quic.closed().await })
        };
        let span = tracing::debug_span!("h3", peer = %quic.remote_address(), server);
        let driver = Driver {
            // A client accepts too, to refuse: quinn would otherwise buffer what the
            // server sends on streams nothing reads.
            accept_bi: Some(accept_bi(&quic)),
            accept_uni: accept_uni(&quic),
            closed,
            h3,
            st: State {
                server,
                conn: conn.clone(),
                streams,
                accepted,
                on_request: None,
                actions: Vec::new(),
                maybe_closed: Vec::new(),
                closed_bidi: 0,
            },
            ready,
            unacked: FuturesUnordered::new(),
            finished: Vec::new(),
            finished_limit: FINISHED_BATCH,
            shutdown: None,
            accepted_bidi: 0,
            start: Instant::now(),
            ready_buf: Vec::new(),
            conn_wakers,
            actions_buf: Vec::new(),
            out: Vec::new(),
            failed: None,
            span: span.clone(),
            quic,
        };
        *lock(&conn.core) = Some(driver);
        let task = DriverTask(conn.clone());
        tokio::spawn(tracing::Instrument::instrument(task.run(), span));
        Ok((conn, queue))
    }

    /// Server: requests go to `on_request` from now on, or back to the accept queue.
    pub(crate) fn set_on_request(&mut self, on_request: Option<OnRequest>) {
        self.st.on_request = on_request;
    }

    /// Whether a handle's command may run in the handle's task, the driver being idle
    /// (else it goes through the driver task). Only a whole response
    /// ([`Command::Respond`]) on a connection with no other request in flight runs
    /// here: it then reaches quinn without a round of the driver task in between. With
    /// several requests in flight the driver's round flushes their responses together,
    /// which costs less than a flush each. Commands queued earlier run first, so a
    /// stream's commands keep their order.
    pub(crate) fn can_inline(&self, cmd: &Command) -> bool {
        let alone = self.accepted_bidi.saturating_sub(self.st.closed_bidi) <= 1;
        matches!(cmd, Command::Respond { .. }) && alone && self.failed.is_none()
    }

    /// Runs `cmd`, which [`can_inline`](Self::can_inline) accepted, in the caller's task.
    pub(crate) fn inline(&mut self, cmd: Command) {
        let span = self.span.clone();
        let _entered = span.enter();
        let result = (|| {
            while let Some(queued) = self.st.conn.commands.pop() {
                self.command(queued)?;
            }
            self.command(cmd)?;
            self.flush()?;
            self.st.close_finished(&mut self.h3)
        })();
        self.prune_finished();
        if let Err(e) = result {
            self.failed = Some(self.fatal(e));
        }
        // What only the driver task does: end the connection, watch acks and streams
        // during a shutdown, deliver what a command made nghttp3 report.
        if self.failed.is_some() || self.shutdown.is_some() || !self.st.actions.is_empty() {
            self.ready.driver.wake();
        }
    }

    /// A handle's [`SendHalf::poll_stopped`](crate::SendHalf::poll_stopped): gives it
    /// quinn's future for the stream's send side. Nothing if that side is already over
    /// (the handle then learns why from the stream's error).
    pub(crate) fn watch_stopped(&mut self, sid: i64) {
        let Some(stream) = self.st.streams.get(&sid) else {
            return;
        };
        if let (Some(send), Some(shared)) = (&stream.send, &stream.shared) {
            let mut st = lock(&shared.state);
            st.stopped = Some(Box::pin(send.stopped()));
            if let Some(w) = st.stop_waker.take() {
                w.wake();
            }
        }
    }

    fn now(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }

    /// One round of work. Ready(error) when the connection is over.
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Error> {
        self.ready.driver.register(cx.waker());
        match self.step(cx) {
            Ok(true) => {
                // Budget spent with work left: yield to other tasks, then continue.
                cx.waker().wake_by_ref();
                Poll::Pending
            }
            Ok(false) => Poll::Pending,
            Err(e) => Poll::Ready(e),
        }
    }

    /// Returns whether work is left over.
    fn step(&mut self, cx: &mut Context<'_>) -> Result<bool, Error> {
        if let Some(e) = self.failed.take() {
            return Err(e);
        }
        // Each of these polls locks quinn's connection: most rounds are for a stream or
        // a handle's command, and skip them.
        let conn_woken = self.ready.take_conn_woken();
        if conn_woken & conn_event::CLOSED != 0 {
            let mut conn_cx = Context::from_waker(&self.conn_wakers[0]);
            if let Poll::Ready(e) = self.closed.as_mut().poll(&mut conn_cx) {
                return Err(Error::from_quinn(e));
            }
        }
        let mut more = self.run_commands(cx).map_err(|e| self.fatal(e))?;
        if conn_woken & (conn_event::ACCEPT_BI | conn_event::ACCEPT_UNI) != 0 {
            self.accept(conn_woken).map_err(|e| self.fatal(e))?;
        }
        self.ready.take(&mut self.ready_buf);
        let mut ready = std::mem::take(&mut self.ready_buf);
        for sid in ready.drain(..) {
            self.writable(sid).map_err(|e| self.fatal(e))?;
            more |= self.read(sid).map_err(|e| self.fatal(e))?;
        }
        self.ready_buf = ready;
        if self.run_actions().map_err(|e| self.fatal(e))? {
            // What the callback asked for (a response it had at hand) goes out in this
            // round's flush, not in a round of its own.
            more |= self.run_commands(cx).map_err(|e| self.fatal(e))?;
            // A stream opened just now is read (its waker registered) next round.
            more |= !self.ready_buf.is_empty();
        }
        self.flush().map_err(|e| self.fatal(e))?;
        self.st
            .close_finished(&mut self.h3)
            .map_err(|e| self.fatal(e))?;
        self.prune_finished();
        self.poll_unacked(cx);
        self.poll_shutdown(cx).map_err(|e| self.fatal(e))?;
        Ok(more || !self.st.actions.is_empty())
    }

    /// Runs the handles' queued commands. Returns whether some are left over: those do
    /// not wake us again.
    fn run_commands(&mut self, cx: &mut Context<'_>) -> Result<bool, LibError> {
        for _ in 0..BUDGET {
            match self.st.conn.commands.poll_pop(cx) {
                Poll::Ready(Some(cmd)) => self.command(cmd)?,
                _ => return Ok(false),
            }
        }
        Ok(true)
    }

    /// Closes the QUIC connection for an nghttp3 connection error.
    fn fatal(&mut self, e: LibError) -> Error {
        // A close that arrived on quinn's thread mid-round ends the streams it ended
        // (a critical one: nghttp3's error) and is the reason. Closing now would also
        // make quinn tell every waiting stream `LocallyClosed` instead of the peer's.
        if let Some(lost) = self.quic.close_reason() {
            return Error::from_quinn(lost);
        }
        let code = e.code();
        warn!(%code, error = e.message(), "HTTP/3 connection error");
        self.quic.close(code.into(), e.message().as_bytes());
        Error::Connection {
            code,
            origin: Origin::Local,
            reason: e.message().into(),
        }
    }

    /// Takes the streams the peer opened, for the [`conn_event`] bits in `woken`.
    fn accept(&mut self, woken: u8) -> Result<(), LibError> {
        let mut cx = Context::from_waker(&self.conn_wakers[1]);
        while let Some(fut) = self
            .accept_bi
            .as_mut()
            .filter(|_| woken & conn_event::ACCEPT_BI != 0)
        {
            let Poll::Ready(result) = fut.as_mut().poll(&mut cx) else {
                break;
            };
            *fut = accept_bi(&self.quic);
            let Ok((send, mut recv)) = result else { break };
            if !self.st.server {
                // RFC 9114 6.1: a server opening a bidirectional stream is a connection
                // error.
                debug!("server opened a bidirectional stream");
                let reason = b"server-initiated bidirectional stream";
                self.quic
                    .close(Code::H3_STREAM_CREATION_ERROR.into(), reason);
                self.accept_bi = None;
                break;
            }
            let sid = stream_id(send.id());
            if self
                .shutdown
                .as_ref()
                .and_then(|s| s.goaway)
                .is_some_and(|g| sid >= g)
            {
                // After GOAWAY: not processed, so the client may retry it elsewhere.
                let mut send = send;
                let _ = send.reset(Code::H3_REQUEST_REJECTED.into());
                let _ = recv.stop(Code::H3_REQUEST_REJECTED.into());
                continue;
            }
            self.accepted_bidi += 1;
            self.h3.set_max_client_streams_bidi(
                self.accepted_bidi
                    .saturating_add(self.st.conn.config.max_concurrent_streams),
            );
            self.st.streams.insert(
                sid,
                Stream::new(&self.ready, sid, Some(send), Some(recv), None),
            );
            // Read in this round (the queue is taken after `accept`): waking the
            // driver from inside its own poll would only poll it once more for nothing.
            self.ready_buf.push(sid);
        }
        if woken & conn_event::ACCEPT_UNI == 0 {
            return Ok(());
        }
        let mut cx = Context::from_waker(&self.conn_wakers[2]);
        while let Poll::Ready(result) = self.accept_uni.as_mut().poll(&mut cx) {
            self.accept_uni = accept_uni(&self.quic);
            let Ok(recv) = result else { break };
            let sid = stream_id(recv.id());
            let mut stream = Stream::new(&self.ready, sid, None, Some(recv), None);
            stream.type_prefix = Some(Vec::new());
            self.st.streams.insert(sid, stream);
            self.ready_buf.push(sid);
        }
        Ok(())
    }

    /// Reads what QUIC has for `sid` into nghttp3. Returns whether data is left over.
    ///
    /// Each chunk is held back until the next poll tells whether the stream ended with
    /// it: a request is usually one chunk then the end, and nghttp3 then takes both in
    /// one call instead of two (each call looks the stream up again).
    fn read(&mut self, sid: i64) -> Result<bool, LibError> {
        let mut held: Option<Bytes> = None;
        // For nghttp3's glitch rate limiter, which counts per second: one clock read
        // per call is precise enough.
        let now = self.now();
        for _ in 0..BUDGET {
            let Some(stream) = self.st.streams.get_mut(&sid) else {
                return Ok(false);
            };
            let paused = stream
                .shared
                .as_ref()
                .is_some_and(|s| lock(&s.state).recv_paused);
            if paused {
                if let Some(data) = held {
                    self.feed(sid, data, false, now)?;
                }
                return Ok(false);
            }
            let unheard_limit = self.st.conn.config.max_field_section_size + Stream::UNHEARD_SLACK;
            if stream.unheard.is_some_and(|n| n > unheard_limit) {
                if let Some(data) = held {
                    self.feed(sid, data, false, now)?;
                }
                return Ok(false);
            }
            // Gone when nghttp3 asked to stop reading: what is held is not wanted.
            let Some(recv) = stream.recv.as_mut() else {
                return Ok(false);
            };
            let mut cx = Context::from_waker(&stream.waker);
            let (next, end) = match pin!(recv.read_chunk(READ_CHUNK, true)).poll(&mut cx) {
                Poll::Ready(Ok(Some(chunk))) => (Some(chunk.bytes), None),
                Poll::Pending => (None, None),
                Poll::Ready(Ok(None)) => (None, Some(RecvEnd::Fin)),
                Poll::Ready(Err(quinn::ReadError::Reset(code))) => {
                    (None, Some(RecvEnd::Reset(code.into_inner())))
                }
                // Connection lost or stream gone: `closed` reports the former.
                Poll::Ready(Err(_)) => (None, Some(RecvEnd::Lost)),
            };
            let pending = next.is_none() && end.is_none();
            if end.is_some() {
                stream.recv = None;
            }
            let (next, end) = match stream.type_prefix.as_mut() {
                None => (next, end),
                Some(prefix) => {
                    if let Some(data) = &next {
                        prefix.extend_from_slice(data);
                    }
                    let whole = prefix
                        .first()
                        .is_some_and(|&b| prefix.len() >= 1 << (b >> 6));
                    if whole {
                        let typed = Bytes::from(std::mem::take(prefix));
                        stream.type_prefix = None;
                        (Some(typed), end)
                    } else if end.is_some() {
                        // Ended before its type: nghttp3 never saw it.
                        debug!(sid, "unidirectional stream ended before its type");
                        self.st.streams.remove(&sid);
                        return Ok(false);
                    } else {
                        (None, end)
                    }
                }
            };
            // What came before this poll's news goes in first, with the fin if that is
            // the news.
            let fin = matches!(end, Some(RecvEnd::Fin));
            if let Some(data) = std::mem::replace(&mut held, next) {
                trace!(sid, len = data.len(), fin, "read");
                self.feed(sid, data, fin, now)?;
            } else if fin {
                self.feed(sid, Bytes::new(), true, now)?;
            }
            match end {
                None if pending => return Ok(false),
                None => {}
                Some(RecvEnd::Fin | RecvEnd::Lost) => {
                    self.st.recv_ended(sid);
                    return Ok(false);
                }
                Some(RecvEnd::Reset(code)) => {
                    debug!(sid, code, "peer reset stream");
                    self.st.peer_reset(&mut self.h3, sid, code)?;
                    return Ok(false);
                }
            }
        }
        if let Some(data) = held {
            self.feed(sid, data, false, now)?;
        }
        // The caller wakes the driver for work left over.
        self.ready.push_quiet(sid);
        Ok(true)
    }

    /// Hands `data` read on `sid` to nghttp3, counting what it keeps.
    fn feed(&mut self, sid: i64, data: Bytes, fin: bool, now: u64) -> Result<(), LibError> {
        let kept = self.h3.read(&mut self.st, sid, data, fin, now)?;
        if let Some(n) = self
            .st
            .streams
            .get_mut(&sid)
            .and_then(|s| s.unheard.as_mut())
        {
            *n += kept;
        }
        Ok(())
    }

    fn writable(&mut self, sid: i64) -> Result<(), LibError> {
        if let Some(stream) = self.st.streams.get_mut(&sid) {
            if std::mem::take(&mut stream.blocked) {
                self.h3.unblock(sid)?;
            }
        }
        Ok(())
    }

    /// Hands everything nghttp3 has ready to quinn.
    fn flush(&mut self) -> Result<(), LibError> {
        let mut out = std::mem::take(&mut self.out);
        while let Some(w) = self.h3.writev(&mut self.st, &mut out)? {
            let total: usize = out.iter().map(Bytes::len).sum();
            trace!(sid = w.sid, total, fin = w.fin, "writev");
            let Some(stream) = self.st.streams.get_mut(&w.sid) else {
                // Gone (reset, closed): nothing will take these bytes.
                self.h3.wrote(&mut self.st, w.sid, total)?;
                continue;
            };
            let Some(send) = stream.send.as_mut() else {
                self.h3.wrote(&mut self.st, w.sid, total)?;
                continue;
            };
            let mut written = 0;
            let mut stopped = None;
            // Until everything is taken or quinn says Pending: only Pending registers the
            // waker that tells us when the stream can take more.
            let mut cx = Context::from_waker(&stream.waker);
            let mut first = 0;
            while written < total {
                while out[first].is_empty() {
                    first += 1;
                }
                match pin!(send.write_chunks(&mut out[first..])).poll(&mut cx) {
                    Poll::Ready(Ok(w)) => written += w.bytes,
                    Poll::Pending => break,
                    Poll::Ready(Err(quinn::WriteError::Stopped(code))) => {
                        stopped = Some(code.into_inner());
                        break;
                    }
                    Poll::Ready(Err(_)) => written = total,
                }
            }
            if let Some(code) = stopped {
                debug!(sid = w.sid, code, "peer stopped stream");
                stream.send = None;
                stream.send_done = true;
                if let Some(shared) = &stream.shared {
                    lock(&shared.state).fail_send(peer_error(code, false));
                }
                self.h3.wrote(&mut self.st, w.sid, total)?;
                self.h3.shutdown_write(w.sid);
                self.st.maybe_closed.push(w.sid);
                continue;
            }
            self.h3.wrote(&mut self.st, w.sid, written)?;
            let stream = self.st.streams.get_mut(&w.sid).expect("present above");
            if written < total {
                stream.blocked = true;
                self.h3.block(w.sid);
            } else if w.fin {
                if let Some(mut send) = stream.send.take() {
                    let _ = send.finish();
                    if self.shutdown.is_some() {
                        self.unacked.push(acked(send));
                    } else {
                        self.finished.push(send);
                    }
                }
                stream.send_done = true;
                self.st.maybe_closed.push(w.sid);
            }
        }
        self.out = out;
        Ok(())
    }

    /// Drops the finished send streams whose data the peer acked (or that it stopped).
    fn prune_finished(&mut self) {
        if self.finished.len() < self.finished_limit {
            return;
        }
        let mut cx = Context::from_waker(Waker::noop());
        self.finished
            .retain(|send| pin!(send.stopped()).poll(&mut cx).is_pending());
        // Doubling keeps the checks at a constant cost per stream when acks lag.
        self.finished_limit = (2 * self.finished.len()).max(FINISHED_BATCH);
    }

    /// Returns whether a request went to the `serve` callback.
    fn run_actions(&mut self) -> Result<bool, LibError> {
        let mut called_back = false;
        let mut actions =
            std::mem::replace(&mut self.st.actions, std::mem::take(&mut self.actions_buf));
        for action in actions.drain(..) {
            match action {
                Action::Deliver(sid, mut req, shared) => {
                    // Only a non-default priority is inserted: the first extension costs
                    // the request two allocations, and most requests have the default.
                    if let Some((urgency, incremental)) = self.h3.priority(sid) {
                        let priority = Priority {
                            urgency,
                            incremental,
                        };
                        if priority != Priority::default() {
                            req.extensions_mut().insert(priority);
                        }
                    }
                    let stream = RequestStream::new(shared, true);
                    if let Some(on_request) = self.st.on_request.as_mut() {
                        if !called_back {
                            // The step pops commands again after the callbacks.
                            self.st.conn.commands.unregister();
                            called_back = true;
                        }
                        // The application's code, in the middle of our round: its panic
                        // costs the request (the stream's drop cancels it), not the
                        // connection.
                        let call = std::panic::AssertUnwindSafe(|| on_request(req, stream));
                        if std::panic::catch_unwind(call).is_err() {
                            warn!(sid, "HTTP/3 request callback panicked");
                        }
                    } else if let Some(queue) = &self.st.accepted {
                        // If the application stopped accepting, the handle's drop
                        // cancels the stream.
                        let _ = queue.push((req, stream));
                    }
                }
                Action::Refuse(sid, status, code) => {
                    // Not if the request was reset since (we reset our side too).
                    if self.st.sending(sid) {
                        self.h3
                            .respond(sid, &Section::status(status), Bytes::new())?;
                    }
                    self.stop_reading(sid, code)?;
                }
                // Clients (oha, hyperium's h3) send GOAWAY when done and wait for the
                // server to close; without this they wait for the idle timeout.
                Action::PeerGoaway => self.begin_shutdown(PEER_GOAWAY_GRACE)?,
            }
        }
        self.actions_buf = actions;
        Ok(called_back)
    }

    fn stop_reading(&mut self, sid: i64, code: Code) -> Result<(), LibError> {
        if let Some(stream) = self.st.streams.get_mut(&sid) {
            if let Some(mut recv) = stream.recv.take() {
                let _ = recv.stop(code.into());
                self.h3.shutdown_read(&mut self.st, sid)?;
            }
            self.st.recv_ended(sid);
        }
        Ok(())
    }

    fn command(&mut self, cmd: Command) -> Result<(), LibError> {
        match cmd {
            Command::Open {
                send,
                recv,
                head,
                shared,
            } => {
                let sid = stream_id(send.id());
                self.st.streams.insert(
                    sid,
                    Stream::new(&self.ready, sid, Some(send), Some(recv), Some(shared)),
                );
                match self.h3.submit_request(sid, &head) {
                    // Commands run before the ready queue is taken: read in this round.
                    Ok(()) => self.ready_buf.push(sid),
                    // A GOAWAY came between the request's check and its stream: the
                    // request fails, not the connection (RFC 9114 5.2).
                    Err(e) if e.is_conn_closing() => {
                        if let Some(mut stream) = self.st.streams.remove(&sid) {
                            if let Some(send) = stream.send.as_mut() {
                                let _ = send.reset(Code::H3_REQUEST_CANCELLED.into());
                            }
                            if let Some(recv) = stream.recv.as_mut() {
                                let _ = recv.stop(Code::H3_REQUEST_CANCELLED.into());
                            }
                            if let Some(shared) = &stream.shared {
                                lock(&shared.state).fail(Error::GoingAway);
                            }
                        }
                    }
                    Err(e) => return Err(e),
                }
            }
            // Not on a stream whose sending side is over (the peer stopped it after a
            // 1xx): its body is shut, and nghttp3 must not write it.
            Command::Response { sid, head } => {
                if self.st.sending(sid) {
                    self.h3.submit_response(sid, &head)?;
                }
            }
            Command::Respond { sid, head, body } => {
                if self.st.sending(sid) {
                    self.h3.respond(sid, &head, body)?;
                } else {
                    // Give the credit back, as for Data on a stream gone.
                    self.st.body_sent(sid, body.len() as u64);
                }
            }
            Command::Informational { sid, head } => {
                if self.st.streams.contains_key(&sid) {
                    self.h3.submit_info(sid, &head)?;
                }
            }
            Command::Data { sid, data } => {
                trace!(sid, len = data.len(), "queue data");
                if self.st.streams.contains_key(&sid) {
                    self.h3.queue_data(sid, data)?;
                } else {
                    // Stream gone: give the credit back so a sender is not stuck.
                    self.st.body_sent(sid, data.len() as u64);
                }
            }
            Command::Finish { sid, trailers } => {
                if self.st.streams.contains_key(&sid) {
                    self.h3.queue_eof(sid, trailers)?;
                }
            }
            Command::Reset { sid, code } => {
                if let Some(stream) = self.st.streams.get_mut(&sid) {
                    if let Some(mut send) = stream.send.take() {
                        let _ = send.reset(code.into());
                        self.h3.shutdown_write(sid);
                    }
                    stream.blocked = false;
                    stream.send_done = true;
                    self.st.maybe_closed.push(sid);
                }
            }
            Command::StopSending { sid, code } => self.stop_reading(sid, code)?,
            Command::WatchStopped { sid } => self.watch_stopped(sid),
            Command::Shutdown { grace } => self.begin_shutdown(grace)?,
        }
        Ok(())
    }

    fn begin_shutdown(&mut self, grace: Duration) -> Result<(), LibError> {
        if self.shutdown.is_none() {
            // From now on the connection closes once these are acked: watch them.
            for send in self.finished.drain(..) {
                self.unacked.push(acked(send));
            }
            self.h3.shutdown_notice()?;
            self.shutdown = Some(Shutdown {
                deadline: Box::pin(tokio::time::sleep(grace)),
                second: Some(Box::pin(tokio::time::sleep(
                    self.quic.rtt().max(Duration::from_millis(10)),
                ))),
                goaway: None,
            });
        }
        Ok(())
    }

    /// Drops the unacked streams now acked; registers `cx` for the others.
    fn poll_unacked(&mut self, cx: &mut Context<'_>) {
        // Only during a shutdown: polling even an empty set registers the waker in its
        // shared state, a cache miss per round on a connection gone cold.
        while !self.unacked.is_empty() {
            if let Poll::Ready(None) | Poll::Pending = self.unacked.poll_next_unpin(cx) {
                break;
            }
        }
    }

    /// Graceful shutdown: notice, then GOAWAY with the real limit, then close once every
    /// accepted request is done and acknowledged (or the deadline passes).
    fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Result<(), LibError> {
        let Some(shutdown) = self.shutdown.as_mut() else {
            return Ok(());
        };
        if let Some(second) = shutdown.second.as_mut() {
            if second.as_mut().poll(cx).is_pending() {
                return Ok(());
            }
            shutdown.second = None;
            // nghttp3 computes the id from the streams it has seen; we refuse the same.
            shutdown.goaway = Some(self.st.next_client_bidi());
            self.h3.shutdown()?;
            self.flush()?;
            // Streams that flush finished: their acks must wake us too.
            self.poll_unacked(cx);
        }
        let Some(shutdown) = self.shutdown.as_mut() else {
            return Ok(());
        };
        let deadline = shutdown.deadline.as_mut().poll(cx).is_ready();
        let busy = self
            .st
            .streams
            .values()
            .any(|s| s.shared.is_some() || (s.recv.is_some() && s.send.is_some()));
        if deadline || (!busy && self.unacked.is_empty()) {
            debug!(deadline, "graceful shutdown complete");
            self.quic.close(Code::H3_NO_ERROR.into(), b"");
        }
        Ok(())
    }
}

/// The driver's task: runs rounds of the driver it shares with the handles, and ends
/// the connection for them.
struct DriverTask(Arc<ConnShared>);

impl DriverTask {
    async fn run(self) {
        let error = poll_fn(|cx| match lock(&self.0.core).as_mut() {
            Some(driver) => driver.poll(cx),
            None => Poll::Ready(self.0.closed_error()),
        })
        .await;
        debug!(%error, "connection ended");
        // Out of the lock: failing streams wakes handles, which may try to use it.
        let driver = lock(&self.0.core).take();
        if let Some(mut driver) = driver {
            // Before `accept` can see the end (when the driver drops).
            lock(&self.0.state).error = Some(error.clone());
            driver.st.fail_all(&error);
        }
    }
}

impl Drop for DriverTask {
    /// The driver holds handles' state that holds the connection's: the runtime
    /// dropping this task must not leave that cycle behind.
    fn drop(&mut self) {
        let driver = lock(&self.0.core).take();
        drop(driver);
    }
}

impl Stream {
    fn new(
        ready: &Arc<ReadyQueue>,
        sid: i64,
        send: Option<quinn::SendStream>,
        recv: Option<quinn::RecvStream>,
        shared: Option<Arc<StreamShared>>,
    ) -> Stream {
        Stream {
            send_done: send.is_none(),
            recv_done: recv.is_none(),
            early: recv.as_ref().is_some_and(|r| r.is_0rtt()),
            send,
            recv,
            shared,
            head: Head::default(),
            waker: ready.waker(sid),
            blocked: false,
            // Bidirectional streams (bit 0x2 clear) carry requests and responses.
            unheard: (sid & 0x2 == 0).then_some(0),
            type_prefix: None,
        }
    }

    /// Bytes nghttp3 may keep beyond the field section limit before it hands something
    /// over: the body that follows a blocked head in the same packets.
    const UNHEARD_SLACK: u64 = 64 * 1024;

    /// nghttp3 handed something over: reading goes on, and resumes if it had stopped.
    fn heard(&mut self, limit: u64) {
        if let Some(n) = self.unheard.as_mut() {
            if std::mem::take(n) > limit + Stream::UNHEARD_SLACK {
                // What reading left in QUIC's buffers is read now.
                self.waker.wake_by_ref();
            }
        }
    }
}

impl State {
    /// Frees streams whose both directions are over, in nghttp3 and here.
    fn close_finished(&mut self, h3: &mut ffi::Conn) -> Result<(), LibError> {
        while let Some(sid) = self.maybe_closed.pop() {
            let done = self
                .streams
                .get(&sid)
                .is_some_and(|s| s.send_done && s.recv_done);
            if done {
                h3.close_stream(self, sid, Code::H3_NO_ERROR)?;
                if let Some(stream) = self.streams.remove(&sid) {
                    if sid & 0x2 == 0 {
                        self.closed_bidi += 1;
                    }
                    if let Some(shared) = stream.shared {
                        // Wake a handle waiting for credit or data that will not come.
                        lock(&shared.state).wake();
                    }
                }
            }
        }
        Ok(())
    }

    /// The peer reset its sending side of `sid`.
    fn peer_reset(&mut self, h3: &mut ffi::Conn, sid: i64, code: u64) -> Result<(), LibError> {
        let shared = self.shared(sid).cloned();
        if let Some(shared) = &shared {
            lock(&shared.state).fail(peer_error(code, true));
        }
        if shared.is_none() && sid & 0x2 != 0 {
            // A unidirectional stream: closing a critical one is fatal.
            h3.close_stream(self, sid, Code(code))?;
        } else {
            h3.shutdown_read(self, sid)?;
        }
        if shared.is_none() && sid & 0x2 == 0 && self.server {
            // Reset before its head was complete, the request never reached the
            // application: nothing would ever end our side, and the stream (with the
            // peer's stream credit) would stay until the connection ends.
            if let Some(stream) = self.streams.get_mut(&sid) {
                if let Some(mut send) = stream.send.take() {
                    let _ = send.reset(Code::H3_REQUEST_CANCELLED.into());
                    h3.shutdown_write(sid);
                }
                stream.blocked = false;
                stream.send_done = true;
            }
        }
        self.recv_ended(sid);
        Ok(())
    }

    fn next_client_bidi(&self) -> i64 {
        self.streams
            .keys()
            .filter(|id| *id & 0x3 == 0)
            .max()
            .map_or(0, |m| m + 4)
    }

    fn recv_ended(&mut self, sid: i64) {
        if let Some(stream) = self.streams.get_mut(&sid) {
            stream.recv_done = true;
            self.maybe_closed.push(sid);
        }
    }

    /// Whether `sid`'s sending side is still open at the QUIC level.
    fn sending(&self, sid: i64) -> bool {
        self.streams.get(&sid).is_some_and(|s| s.send.is_some())
    }

    fn shared(&self, sid: i64) -> Option<&Arc<StreamShared>> {
        self.streams.get(&sid).and_then(|s| s.shared.as_ref())
    }

    fn fail_all(&mut self, error: &Error) {
        for stream in self.streams.values() {
            if let Some(shared) = &stream.shared {
                lock(&shared.state).fail(error.clone());
            }
        }
        self.on_request = None;
    }
}

impl Drop for State {
    /// However the driver ends: `accept` sees the end, and queued commands (which may
    /// hold stream state that holds the queue) are dropped.
    fn drop(&mut self) {
        if let Some(queue) = self.accepted.take() {
            queue.close();
        }
        self.conn.commands.close_and_clear();
    }
}

impl Events for State {
    fn begin_headers(&mut self, sid: i64, _trailers: bool) {
        if let Some(stream) = self.streams.get_mut(&sid) {
            stream.head = Head::default();
        }
    }

    fn recv_field(&mut self, sid: i64, known: Option<HeaderName>, name: &[u8], value: &[u8]) {
        let limit = self.conn.config.max_field_section_size;
        if let Some(stream) = self.streams.get_mut(&sid) {
            stream.head.push(known, name, value, limit);
        }
    }

    fn end_headers(&mut self, sid: i64, trailers: bool) {
        let limit = self.conn.config.max_field_section_size;
        let server = self.server;
        let Some(stream) = self.streams.get_mut(&sid) else {
            return;
        };
        stream.heard(limit);
        let head = std::mem::take(&mut stream.head);
        if trailers && stream.shared.is_none() {
            // Trailers of a request refused for its head: it has its one answer.
            return;
        }
        if head.too_large {
            debug!(sid, limit, "field section too large");
            match &stream.shared {
                Some(shared) => lock(&shared.state).fail(Error::HeaderTooLarge { limit }),
                // A well-formed request, only too large: the rest of it is unwanted,
                // not in error.
                None if server => self.actions.push(Action::Refuse(
                    sid,
                    http::StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                    Code::H3_NO_ERROR,
                )),
                None => {}
            }
            return;
        }
        if trailers {
            if let Some(shared) = &stream.shared {
                let mut st = lock(&shared.state);
                match head.into_trailers() {
                    Ok(t) => st.trailers = Some(t),
                    Err(e) => st.fail(Error::Message(e)),
                }
            }
            return;
        }
        if server {
            match head.into_request(stream.early) {
                Ok(req) => {
                    // The handle's state exists from now on: body data may follow in
                    // the same read, before the request reaches the application.
                    let shared = StreamShared::new(sid, self.conn.clone());
                    stream.shared = Some(shared.clone());
                    self.actions.push(Action::Deliver(sid, req, shared));
                }
                Err(e) => {
                    debug!(sid, error = %e, "malformed request");
                    // RFC 9114 4.1.2: a stream error of type H3_MESSAGE_ERROR, which
                    // may follow a response saying why.
                    self.actions.push(Action::Refuse(
                        sid,
                        http::StatusCode::BAD_REQUEST,
                        Code::H3_MESSAGE_ERROR,
                    ));
                }
            }
        } else if let Some(shared) = &stream.shared {
            let mut st = lock(&shared.state);
            match head.into_response() {
                Ok(resp) if resp.status().is_informational() => {
                    // Unread ones give way to newer ones: a server may send any number.
                    if st.informational.len() == MAX_INFORMATIONAL {
                        st.informational.pop_front();
                    }
                    st.informational.push_back(resp)
                }
                Ok(resp) => st.response = Some(resp),
                Err(e) => st.fail(Error::Message(e)),
            }
            st.wake();
        }
    }

    fn recv_data(&mut self, sid: i64, data: Bytes) {
        let (limit, section_limit) = (
            self.conn.config.recv_buffer,
            self.conn.config.max_field_section_size,
        );
        let Some(stream) = self.streams.get_mut(&sid) else {
            return;
        };
        stream.heard(section_limit);
        if let Some(shared) = &stream.shared {
            let mut st = lock(&shared.state);
            st.recv_buffered += crate::stream::queued_cost(&data);
            st.recv.push_back(data);
            if st.recv_buffered >= limit {
                st.recv_paused = true;
            }
            st.wake();
        }
    }

    fn end_stream(&mut self, sid: i64) {
        if let Some(shared) = self.shared(sid) {
            let mut st = lock(&shared.state);
            st.recv_fin = true;
            st.wake();
        }
    }

    fn body_sent(&mut self, sid: i64, n: u64) {
        if let Some(shared) = self.shared(sid) {
            let mut st = lock(&shared.state);
            st.send_queued = st.send_queued.saturating_sub(n as usize);
            st.wake();
        }
    }

    fn stop_sending(&mut self, sid: i64, code: u64) {
        if let Some(stream) = self.streams.get_mut(&sid) {
            if let Some(mut recv) = stream.recv.take() {
                let _ = recv.stop(quinn::VarInt::from_u64(code).unwrap_or_default());
            }
            self.recv_ended(sid);
        }
    }

    fn reset_stream(&mut self, sid: i64, code: u64) {
        if let Some(stream) = self.streams.get_mut(&sid) {
            if let Some(mut send) = stream.send.take() {
                let _ = send.reset(quinn::VarInt::from_u64(code).unwrap_or_default());
            }
            stream.send_done = true;
            if let Some(shared) = &stream.shared {
                lock(&shared.state).fail(Error::Stream {
                    code: Code(code),
                    origin: Origin::Local,
                    reset: true,
                });
            }
            self.maybe_closed.push(sid);
        }
    }

    fn stream_close(&mut self, sid: i64, code: u64) {
        trace!(sid, code, "stream closed");
    }

    fn goaway(&mut self, id: i64) {
        debug!(id, "peer sent GOAWAY");
        lock(&self.conn.state).goaway = Some(id);
        if self.server {
            self.actions.push(Action::PeerGoaway);
        } else {
            for (sid, stream) in &self.streams {
                if *sid >= id {
                    if let Some(shared) = &stream.shared {
                        lock(&shared.state).fail(Error::GoingAway);
                    }
                }
            }
        }
    }
}
