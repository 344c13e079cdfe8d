//! Request streams as the application sees them, and the state they share with the
//! connection driver.
//!
//! A [`RequestStream`] queues commands for the driver and waits on per-stream state the
//! driver fills in. One exception: a whole response (`respond`) on a connection with no
//! other request in flight runs the driver's code in the handle's task, under the lock
//! the driver task takes for its rounds. Both directions are bounded: received
//! body beyond `Config::recv_buffer` pauses reading from QUIC (so the peer is
//! flow-controlled), and `send_data` waits while `Config::send_buffer` bytes are queued.

use std::collections::VecDeque;
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Wake, Waker};

use bytes::Bytes;
use futures_util::task::AtomicWaker;
use http::{HeaderMap, Response};

use crate::config::Config;
use crate::driver::Driver;
use crate::error::{Code, Error, Origin};
use crate::fields::{self, Section};

/// What a handle asks the driver to do.
pub(crate) enum Command {
    /// Client: a new request on a stream the handle opened.
    Open {
        send: quinn::SendStream,
        recv: quinn::RecvStream,
        head: Section,
        shared: Arc<StreamShared>,
    },
    Response {
        sid: i64,
        head: Section,
    },
    Informational {
        sid: i64,
        head: Section,
    },
    /// Server: a whole response, head, body and end, in one command.
    Respond {
        sid: i64,
        head: Section,
        body: Bytes,
    },
    Data {
        sid: i64,
        data: Bytes,
    },
    Finish {
        sid: i64,
        trailers: Option<Section>,
    },
    Reset {
        sid: i64,
        code: Code,
    },
    StopSending {
        sid: i64,
        code: Code,
    },
    /// Make the stream's [`Stopped`] future (see [`SendHalf::poll_stopped`]).
    WatchStopped {
        sid: i64,
    },
    /// Server: GOAWAY, finish what was accepted, close; hard close after the deadline.
    Shutdown {
        grace: std::time::Duration,
    },
}

/// Streams whose QUIC side woke up, for the driver to look at (instead of polling all).
/// One waker per stream serves both directions: the driver then tries both, and a
/// direction with nothing to do costs a check, less than a second waker per stream.
#[derive(Default)]
pub(crate) struct ReadyQueue {
    items: Mutex<Vec<i64>>,
    pub driver: AtomicWaker,
    /// Bits set by [`conn_waker`](Self::conn_waker)s: which connection-level future
    /// (the connection closing, accepting a stream) may be ready.
    conn_woken: AtomicU8,
}

/// The connection-level futures, as bits of [`ReadyQueue::take_conn_woken`]: each has
/// its own waker, so that a new request stream does not also poll the others (each
/// poll locks quinn's connection).
pub(crate) mod conn_event {
    pub const CLOSED: u8 = 1;
    pub const ACCEPT_BI: u8 = 2;
    pub const ACCEPT_UNI: u8 = 4;
}

impl ReadyQueue {
    pub fn push(&self, sid: i64) {
        lock(&self.items).push(sid);
        self.driver.wake();
    }

    /// Queues `sid` without waking the driver: for the driver itself, when it will look
    /// at the queue again before it sleeps.
    pub fn push_quiet(&self, sid: i64) {
        lock(&self.items).push(sid);
    }

    pub fn take(&self, into: &mut Vec<i64>) {
        into.append(&mut lock(&self.items));
    }

    /// A waker for the connection-level future `event` (a [`conn_event`] bit): flags
    /// it for the driver, so that rounds started by other events skip polling it. The
    /// flag starts set, for the first poll.
    pub fn conn_waker(self: &Arc<Self>, event: u8) -> Waker {
        self.conn_woken.fetch_or(event, Ordering::Release);
        Waker::from(Arc::new(ConnWaker {
            queue: self.clone(),
            event,
        }))
    }

    /// The [`conn_event`] bits woken since the last call.
    pub fn take_conn_woken(&self) -> u8 {
        self.conn_woken.swap(0, Ordering::AcqRel)
    }

    /// A waker that queues `sid` when QUIC wakes it.
    pub fn waker(self: &Arc<Self>, sid: i64) -> Waker {
        Waker::from(Arc::new(StreamWaker {
            sid,
            queue: self.clone(),
        }))
    }
}

struct StreamWaker {
    sid: i64,
    queue: Arc<ReadyQueue>,
}

impl Wake for StreamWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref()
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.queue.push(self.sid);
    }
}

struct ConnWaker {
    queue: Arc<ReadyQueue>,
    event: u8,
}

impl Wake for ConnWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref()
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.queue
            .conn_woken
            .fetch_or(self.event, Ordering::Release);
        self.queue.driver.wake();
    }
}

/// A poisoned lock means a panic elsewhere already failed the operation; the state
/// itself is plain data and stays usable.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// An unbounded queue from one task to another: the driver's commands, a server's
/// accepted requests. A tokio channel would do, but allocates a block of 32 slots up
/// front, 6 to 8 KiB per queue here, on every connection.
pub(crate) struct Queue<T> {
    inner: Mutex<QueueInner<T>>,
}

struct QueueInner<T> {
    items: VecDeque<T>,
    /// No more pushes.
    closed: bool,
    /// The popping task, waiting.
    waker: Option<Waker>,
}

impl<T> Queue<T> {
    pub fn new() -> Queue<T> {
        Queue {
            inner: Mutex::new(QueueInner {
                items: VecDeque::new(),
                closed: false,
                waker: None,
            }),
        }
    }

    /// Gives the item back once the queue is closed.
    pub fn push(&self, item: T) -> Result<(), T> {
        let mut q = lock(&self.inner);
        if q.closed {
            return Err(item);
        }
        q.items.push_back(item);
        let waker = q.waker.take();
        drop(q);
        if let Some(waker) = waker {
            waker.wake();
        }
        Ok(())
    }

    pub fn pop(&self) -> Option<T> {
        lock(&self.inner).items.pop_front()
    }

    /// The next item; `None` once the queue is closed and empty.
    pub fn poll_pop(&self, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let mut q = lock(&self.inner);
        if let Some(item) = q.items.pop_front() {
            return Poll::Ready(Some(item));
        }
        if q.closed {
            return Poll::Ready(None);
        }
        if !q.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            q.waker = Some(cx.waker().clone());
        }
        Poll::Pending
    }

    /// Pushes stop waking the popping task until its next `poll_pop`: for a popper that
    /// pops again before it sleeps, which a wake-up would only poll once more.
    pub fn unregister(&self) {
        lock(&self.inner).waker = None;
    }

    /// The pushing side is gone: what is queued can still be popped.
    pub fn close(&self) {
        let waker = {
            let mut q = lock(&self.inner);
            q.closed = true;
            q.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// The popping side is gone: closes, and drops what is queued (outside the lock:
    /// dropping a request stream queues a command).
    pub fn close_and_clear(&self) {
        let items = {
            let mut q = lock(&self.inner);
            q.closed = true;
            std::mem::take(&mut q.items)
        };
        drop(items);
    }
}

/// Connection-wide state shared by the driver and every handle.
pub(crate) struct ConnShared {
    /// Handles' commands for the driver; cleared when the driver ends (a queued
    /// command may hold a stream's state, which holds this).
    pub commands: Queue<Command>,
    pub ready: Arc<ReadyQueue>,
    pub config: Config,
    pub state: Mutex<ConnState>,
    /// The driver itself, while the connection lives. Its task locks it for each round;
    /// a handle whose command finds it free runs the command itself (see
    /// [`send`](Self::send)), which saves the driver task a wake-up per response.
    pub core: Mutex<Option<Driver>>,
}

#[derive(Default)]
pub(crate) struct ConnState {
    /// Why the connection ended, once it has.
    pub error: Option<Error>,
    /// The id in the peer's GOAWAY: streams at or above it will not be processed.
    pub goaway: Option<i64>,
}

impl ConnShared {
    /// The shared state of a new connection.
    pub fn new(config: Config) -> Arc<ConnShared> {
        Arc::new(ConnShared {
            commands: Queue::new(),
            ready: Arc::default(),
            config,
            state: Mutex::default(),
            core: Mutex::new(None),
        })
    }

    /// Runs `cmd` at once if the driver is idle and the command is one it can run from
    /// a handle's task (see `Driver::inline`); otherwise queues it for the driver task.
    pub fn send(&self, cmd: Command) -> Result<(), Error> {
        // Busy (the driver task's round, or this very thread inside it), or poisoned by
        // a panic in the driver: the queue is always correct.
        if let Ok(mut core) = self.core.try_lock() {
            if let (Some(driver), Command::WatchStopped { sid }) = (core.as_mut(), &cmd) {
                // Order-free, and touches neither nghttp3 nor quinn's sending.
                driver.watch_stopped(*sid);
                return Ok(());
            }
            if let Some(driver) = core.as_mut().filter(|d| d.can_inline(&cmd)) {
                driver.inline(cmd);
                return Ok(());
            }
        }
        self.commands.push(cmd).map_err(|_| self.closed_error())
    }

    pub fn closed_error(&self) -> Error {
        lock(&self.state)
            .error
            .clone()
            .unwrap_or(Error::Message("connection closed".into()))
    }
}

/// One request stream's state, shared by its handle and the driver.
pub(crate) struct StreamShared {
    pub sid: i64,
    pub conn: Arc<ConnShared>,
    pub state: Mutex<StreamState>,
}

#[derive(Default)]
pub(crate) struct StreamState {
    pub recv: VecDeque<Bytes>,
    pub recv_buffered: usize,
    /// The driver stopped reading this stream from QUIC until the handle catches up.
    pub recv_paused: bool,
    pub recv_fin: bool,
    pub trailers: Option<HeaderMap>,
    /// Client: 1xx responses received and not yet taken, the latest 16 at most.
    pub informational: VecDeque<Response<()>>,
    /// Client: the final response head.
    pub response: Option<Response<()>>,
    /// Body bytes queued for sending and not yet handed to QUIC.
    pub send_queued: usize,
    pub error: Option<Error>,
    /// The peer stopped our direction (STOP_SENDING): sending fails with this, while
    /// the peer's direction goes on (RFC 9114 4.1: a server may stop a request it needs
    /// no more of, and its complete response must not be discarded).
    pub send_error: Option<Error>,
    /// The task reading the peer's side (head, body), waiting for any of the above.
    pub waker: Option<Waker>,
    /// The task in [`SendHalf::send_data`], waiting for room: apart from `waker`, as the
    /// halves of a split stream may be in two tasks, and each would take the other's
    /// place.
    pub send_waker: Option<Waker>,
    /// The driver's answer to `Command::WatchStopped`, for the handle to take.
    pub stopped: Option<Stopped>,
    /// The task in [`SendHalf::poll_stopped`]: apart from `waker`, which a task reading
    /// the body may hold at the same time.
    pub stop_waker: Option<Waker>,
}

/// quinn's `SendStream::stopped()` for a request's send stream: resolves when the peer
/// sends STOP_SENDING, or the connection is lost. The future is `'static` (it holds the
/// connection, not the stream), so the handle polls it without the driver.
pub(crate) type Stopped =
    Pin<Box<dyn Future<Output = Result<Option<quinn::VarInt>, quinn::StoppedError>> + Send + Sync>>;

impl StreamState {
    pub fn wake(&mut self) {
        if let Some(w) = self.waker.take() {
            w.wake();
        }
        if let Some(w) = self.send_waker.take() {
            w.wake();
        }
    }

    pub fn fail(&mut self, error: Error) {
        if self.error.is_none() {
            self.error = Some(error);
        }
        self.wake_all();
    }

    /// The peer stopped our direction: see [`send_error`](Self::send_error).
    pub fn fail_send(&mut self, error: Error) {
        if self.send_error.is_none() {
            self.send_error = Some(error);
        }
        self.wake_all();
    }

    fn wake_all(&mut self) {
        self.wake();
        if let Some(w) = self.stop_waker.take() {
            w.wake();
        }
    }
}

impl StreamShared {
    pub fn new(sid: i64, conn: Arc<ConnShared>) -> Arc<Self> {
        Arc::new(StreamShared {
            sid,
            conn,
            state: Mutex::new(StreamState::default()),
        })
    }
}

/// One HTTP/3 request and its response, from either side.
///
/// Server side: receive the request body with [`recv_data`](Self::recv_data) and
/// [`recv_trailers`](Self::recv_trailers), answer with
/// [`send_response`](Self::send_response), [`send_data`](Self::send_data) and
/// [`finish`](Self::finish) (or [`send_trailers`](Self::send_trailers)).
/// Client side: stream the request body the same way, then
/// [`recv_response`](Self::recv_response) and read the response body.
/// [`split`](Self::split) gives two halves that can be driven from separate tasks, to
/// stream both directions at once (e.g. a proxy).
///
/// Dropping a stream (or its send half) before finishing it resets it with
/// `H3_REQUEST_CANCELLED`; dropping it (or its receive half) before the peer's body is
/// fully read sends STOP_SENDING (`H3_NO_ERROR` from a server, as RFC 9114 section 4.1
/// recommends, `H3_REQUEST_CANCELLED` from a client).
pub struct RequestStream {
    pub(crate) send: SendHalf,
    pub(crate) recv: RecvHalf,
}

/// The sending direction of a [`RequestStream`].
pub struct SendHalf {
    pub(crate) shared: Arc<StreamShared>,
    pub(crate) server: bool,
    /// Finished, trailers sent, or reset.
    pub(crate) done: bool,
    pub(crate) response_sent: bool,
    /// For [`poll_stopped`](Self::poll_stopped): the driver was asked for the future,
    /// and the future once taken.
    watch_asked: bool,
    stopped: Option<Stopped>,
}

/// The receiving direction of a [`RequestStream`].
pub struct RecvHalf {
    pub(crate) shared: Arc<StreamShared>,
    server: bool,
    /// Fully read, or stopped.
    done: bool,
}

impl RequestStream {
    pub(crate) fn new(shared: Arc<StreamShared>, server: bool) -> Self {
        RequestStream {
            send: SendHalf {
                shared: shared.clone(),
                server,
                done: false,
                response_sent: false,
                watch_asked: false,
                stopped: None,
            },
            recv: RecvHalf {
                shared,
                server,
                done: false,
            },
        }
    }

    /// The QUIC stream id.
    pub fn id(&self) -> u64 {
        self.send.shared.sid as u64
    }

    /// Splits the stream into halves that can be used from different tasks.
    pub fn split(self) -> (SendHalf, RecvHalf) {
        (self.send, self.recv)
    }

    /// See [`RecvHalf::recv_data`].
    pub async fn recv_data(&mut self) -> Result<Option<Bytes>, Error> {
        self.recv.recv_data().await
    }

    /// See [`RecvHalf::recv_trailers`].
    pub async fn recv_trailers(&mut self) -> Result<Option<HeaderMap>, Error> {
        self.recv.recv_trailers().await
    }

    /// See [`RecvHalf::is_end_stream`].
    pub fn is_end_stream(&self) -> bool {
        self.recv.is_end_stream()
    }

    /// See [`RecvHalf::stop_sending`].
    pub fn stop_sending(&mut self, code: Code) {
        self.recv.stop_sending(code)
    }

    /// See [`SendHalf::send_data`].
    pub async fn send_data(&mut self, data: Bytes) -> Result<(), Error> {
        self.send.send_data(data).await
    }

    /// See [`SendHalf::send_trailers`].
    pub fn send_trailers(&mut self, trailers: HeaderMap) -> Result<(), Error> {
        self.send.send_trailers(trailers)
    }

    /// See [`SendHalf::finish`].
    pub fn finish(&mut self) -> Result<(), Error> {
        self.send.finish()
    }

    /// See [`SendHalf::reset`].
    pub fn reset(&mut self, code: Code) {
        self.send.reset(code)
    }
}

fn cmd(shared: &StreamShared, cmd: Command) -> Result<(), Error> {
    shared.conn.send(cmd)
}

/// Waits until the stream's state changes in a way `check` accepts; `slot` is the
/// waker's place, the reading or the sending side's.
pub(crate) async fn wait<T>(
    shared: &StreamShared,
    slot: fn(&mut StreamState) -> &mut Option<Waker>,
    mut check: impl FnMut(&mut StreamState) -> Option<Result<T, Error>>,
) -> Result<T, Error> {
    poll_fn(|cx| {
        let mut st = lock(&shared.state);
        if let Some(r) = check(&mut st) {
            return Poll::Ready(r);
        }
        if let Some(e) = &st.error {
            return Poll::Ready(Err(e.clone()));
        }
        *slot(&mut st) = Some(cx.waker().clone());
        Poll::Pending
    })
    .await
}

/// What a received chunk costs against `Config::recv_buffer`: its bytes, and its queue
/// entry, so that a peer sending many tiny DATA frames is flow-controlled as soon as
/// one sending a few large ones would be, for the memory they take.
pub(crate) fn queued_cost(chunk: &Bytes) -> usize {
    const ENTRY: usize = 64;
    chunk.len() + ENTRY
}

impl RecvHalf {
    /// The next chunk of the peer's body; `None` once it is complete (then trailers, if
    /// any, are available from [`recv_trailers`](Self::recv_trailers)).
    pub async fn recv_data(&mut self) -> Result<Option<Bytes>, Error> {
        poll_fn(|cx| self.poll_recv_data(cx)).await
    }

    /// Poll form of [`recv_data`](Self::recv_data), for adapters such as
    /// `http_body::Body` implementations.
    pub fn poll_recv_data(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<Bytes>, Error>> {
        let shared = &self.shared;
        let limit = shared.conn.config.recv_buffer;
        let mut st = lock(&shared.state);
        let result = if let Some(chunk) = st.recv.pop_front() {
            st.recv_buffered -= queued_cost(&chunk);
            if st.recv_paused && st.recv_buffered <= limit / 2 {
                st.recv_paused = false;
                shared.conn.ready.push(shared.sid);
            }
            Ok(Some(chunk))
        } else if st.recv_fin {
            Ok(None)
        } else if let Some(e) = &st.error {
            Err(e.clone())
        } else {
            st.waker = Some(cx.waker().clone());
            return Poll::Pending;
        };
        drop(st);
        if !matches!(result, Ok(Some(_))) {
            self.done = true;
        }
        Poll::Ready(result)
    }

    /// Whether the peer's body is over with nothing left to read: no data or trailers
    /// waiting, and its end seen. True at once for a request whose stream ended with its
    /// head (a GET), so a proxy need not wait for a body that will never come.
    pub fn is_end_stream(&self) -> bool {
        let st = lock(&self.shared.state);
        st.trailers.is_none() && (self.done || st.recv_fin && st.recv.is_empty())
    }

    /// After [`recv_data`](Self::recv_data) returned `None`: the peer's trailers, if it
    /// sent any.
    pub fn take_trailers(&mut self) -> Option<HeaderMap> {
        lock(&self.shared.state).trailers.take()
    }

    /// The peer's trailers, once its body has been read to the end.
    pub async fn recv_trailers(&mut self) -> Result<Option<HeaderMap>, Error> {
        while self.recv_data().await?.is_some() {}
        Ok(self.take_trailers())
    }

    /// Asks the peer to stop sending its body (STOP_SENDING with `code`).
    pub fn stop_sending(&mut self, code: Code) {
        if !std::mem::replace(&mut self.done, true) {
            // The peer's body is complete (as for most requests, dropped unread): the
            // driver already stopped reading, so the command would do nothing but cost
            // the driver a wake-up.
            if lock(&self.shared.state).recv_fin {
                return;
            }
            let _ = cmd(
                &self.shared,
                Command::StopSending {
                    sid: self.shared.sid,
                    code,
                },
            );
        }
    }
}

impl SendHalf {
    /// Sends a chunk of body, waiting while the stream's send buffer is full.
    pub async fn send_data(&mut self, data: Bytes) -> Result<(), Error> {
        self.check_open("send_data")?;
        let limit = self.shared.conn.config.send_buffer;
        let len = data.len();
        wait(
            &self.shared,
            |st| &mut st.send_waker,
            |st| {
                if let Some(e) = &st.send_error {
                    return Some(Err(e.clone()));
                }
                if st.send_queued > 0 && st.send_queued + len > limit {
                    return None;
                }
                st.send_queued += len;
                Some(Ok(()))
            },
        )
        .await?;
        cmd(
            &self.shared,
            Command::Data {
                sid: self.shared.sid,
                data,
            },
        )
    }

    /// Ends the body with trailers.
    pub fn send_trailers(&mut self, trailers: HeaderMap) -> Result<(), Error> {
        self.end(Some(fields::trailer_fields(trailers)))
    }

    /// Ends the body.
    pub fn finish(&mut self) -> Result<(), Error> {
        self.end(None)
    }

    fn check_open(&self, what: &str) -> Result<(), Error> {
        if self.done {
            return Err(Error::Message(format!(
                "{what} after the stream was finished"
            )));
        }
        if self.server && !self.response_sent {
            return Err(Error::Message(format!("{what} before send_response")));
        }
        Ok(())
    }

    fn end(&mut self, trailers: Option<Section>) -> Result<(), Error> {
        self.check_open("finish")?;
        self.done = true;
        cmd(
            &self.shared,
            Command::Finish {
                sid: self.shared.sid,
                trailers,
            },
        )
    }

    /// Resolves when the peer has given up on the stream: it stopped our direction
    /// (STOP_SENDING) or reset its own (RESET_STREAM), or the connection is gone. A
    /// server polls it while it prepares the response, to stop the work of a request its
    /// client cancelled (as h2's `SendResponse::poll_reset`).
    ///
    /// The first call asks the driver to watch the stream (usually run at once in this
    /// task, else in the driver's next round); a request answered without waiting never
    /// needs it. quinn keeps a small entry (about 75 bytes) per watched stream until the
    /// peer stops it or acknowledges our finished end; one that ends by our own reset
    /// keeps it until the connection closes.
    pub fn poll_stopped(&mut self, cx: &mut Context<'_>) -> Poll<Error> {
        loop {
            if let Some(stopped) = self.stopped.as_mut() {
                match stopped.as_mut().poll(cx) {
                    Poll::Pending => {}
                    Poll::Ready(Ok(Some(code))) => {
                        return Poll::Ready(peer_error(code.into_inner(), false))
                    }
                    // Our end was acknowledged (or reset and that acknowledged): quinn has
                    // nothing more to tell, the stream's state may still.
                    Poll::Ready(Ok(None)) => self.stopped = None,
                    Poll::Ready(Err(quinn::StoppedError::ConnectionLost(e))) => {
                        return Poll::Ready(Error::from_quinn(e))
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Error::Message(e.to_string())),
                }
            }
            let mut st = lock(&self.shared.state);
            let error = st.send_error.as_ref().or(st.error.as_ref());
            if let Some(e) = error.filter(|e| e.abandons_request()) {
                return Poll::Ready(e.clone());
            }
            if self.stopped.is_none() {
                if let Some(stopped) = st.stopped.take() {
                    self.stopped = Some(stopped);
                    continue;
                }
                if !std::mem::replace(&mut self.watch_asked, true) {
                    drop(st);
                    let watch = Command::WatchStopped {
                        sid: self.shared.sid,
                    };
                    if let Err(e) = cmd(&self.shared, watch) {
                        return Poll::Ready(e);
                    }
                    continue;
                }
            }
            if !st
                .stop_waker
                .as_ref()
                .is_some_and(|w| w.will_wake(cx.waker()))
            {
                st.stop_waker = Some(cx.waker().clone());
            }
            return Poll::Pending;
        }
    }

    /// Abandons our direction of the stream (RESET_STREAM with `code`).
    pub fn reset(&mut self, code: Code) {
        if !std::mem::replace(&mut self.done, true) {
            let _ = cmd(
                &self.shared,
                Command::Reset {
                    sid: self.shared.sid,
                    code,
                },
            );
        }
    }
}

impl Drop for SendHalf {
    fn drop(&mut self) {
        self.reset(Code::H3_REQUEST_CANCELLED);
    }
}

impl Drop for RecvHalf {
    fn drop(&mut self) {
        self.stop_sending(if self.server {
            Code::H3_NO_ERROR
        } else {
            Code::H3_REQUEST_CANCELLED
        });
    }
}

/// The error a stream sees when the peer resets or stops it.
pub(crate) fn peer_error(code: u64, reset: bool) -> Error {
    Error::Stream {
        code: Code(code),
        origin: Origin::Remote,
        reset,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;

    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn queue_order_wake_up_and_both_ways_of_closing() {
        let woken = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(woken.clone());
        let mut cx = Context::from_waker(&waker);
        let q = Queue::new();
        assert!(q.poll_pop(&mut cx).is_pending());
        q.push(1).unwrap();
        q.push(2).unwrap();
        assert_eq!(woken.0.load(Ordering::SeqCst), 1, "one wake-up per wait");
        assert_eq!(q.poll_pop(&mut cx), Poll::Ready(Some(1)));
        // Unregistered, the popper is not woken until it polls again.
        assert_eq!(q.poll_pop(&mut cx), Poll::Ready(Some(2)));
        assert!(q.poll_pop(&mut cx).is_pending());
        q.unregister();
        q.push(2).unwrap();
        assert_eq!(
            woken.0.load(Ordering::SeqCst),
            1,
            "no wake-up once unregistered"
        );
        // The sender leaves: what is queued still comes out, then the end.
        q.close();
        assert_eq!(q.push(3), Err(3));
        assert_eq!(q.poll_pop(&mut cx), Poll::Ready(Some(2)));
        assert_eq!(q.poll_pop(&mut cx), Poll::Ready(None));

        // The receiver leaves: what is queued is dropped at once.
        let item = Arc::new(());
        let q = Queue::new();
        q.push(item.clone()).unwrap();
        q.close_and_clear();
        assert_eq!(Arc::strong_count(&item), 1);
        assert!(q.push(item.clone()).is_err());
    }
}
