//! Request streams as the application sees them, and the state they share with the
//! connection driver.
//!
//! A [`RequestStream`] never touches nghttp3: it queues commands for the driver and
//! waits on per-stream state the driver fills in. Both directions are bounded: received
//! body beyond `Config::recv_buffer` pauses reading from QUIC (so the peer is
//! flow-controlled), and `send_data` waits while `Config::send_buffer` bytes are queued.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Poll, Wake, Waker};

use bytes::Bytes;
use futures_util::task::AtomicWaker;
use http::{HeaderMap, Response};
use tokio::sync::mpsc;

use crate::config::Config;
use crate::error::{Code, Error, Origin};
use crate::ffi::Field;
use crate::fields;

/// What a handle asks the driver to do.
pub(crate) enum Command {
    /// Client: a new request on a stream the handle opened.
    Open {
        send: quinn::SendStream,
        recv: quinn::RecvStream,
        head: Vec<Field>,
        shared: Arc<StreamShared>,
    },
    Response {
        sid: i64,
        head: Vec<Field>,
    },
    Informational {
        sid: i64,
        head: Vec<Field>,
    },
    Data {
        sid: i64,
        data: Bytes,
    },
    Finish {
        sid: i64,
        trailers: Option<Vec<Field>>,
    },
    Reset {
        sid: i64,
        code: Code,
    },
    StopSending {
        sid: i64,
        code: Code,
    },
    /// Server: GOAWAY, finish what was accepted, close; hard close after the deadline.
    Shutdown {
        grace: std::time::Duration,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Interest {
    Read,
    Write,
}

/// Streams whose QUIC side woke up, for the driver to look at (instead of polling all).
#[derive(Default)]
pub(crate) struct ReadyQueue {
    items: Mutex<Vec<(i64, Interest)>>,
    pub driver: AtomicWaker,
}

impl ReadyQueue {
    pub fn push(&self, sid: i64, interest: Interest) {
        lock(&self.items).push((sid, interest));
        self.driver.wake();
    }

    pub fn take(&self, into: &mut Vec<(i64, Interest)>) {
        into.append(&mut lock(&self.items));
    }

    /// A waker that queues `(sid, interest)` when QUIC wakes it.
    pub fn waker(self: &Arc<Self>, sid: i64, interest: Interest) -> Waker {
        Waker::from(Arc::new(StreamWaker {
            sid,
            interest,
            queue: self.clone(),
        }))
    }
}

struct StreamWaker {
    sid: i64,
    interest: Interest,
    queue: Arc<ReadyQueue>,
}

impl Wake for StreamWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref()
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.queue.push(self.sid, self.interest);
    }
}

/// A poisoned lock means a panic elsewhere already failed the operation; the state
/// itself is plain data and stays usable.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Connection-wide state shared by the driver and every handle.
pub(crate) struct ConnShared {
    pub commands: mpsc::UnboundedSender<Command>,
    pub ready: Arc<ReadyQueue>,
    pub config: Config,
    pub state: Mutex<ConnState>,
}

#[derive(Default)]
pub(crate) struct ConnState {
    /// Why the connection ended, once it has.
    pub error: Option<Error>,
    /// The id in the peer's GOAWAY: streams at or above it will not be processed.
    pub goaway: Option<i64>,
}

impl ConnShared {
    pub fn send(&self, cmd: Command) -> Result<(), Error> {
        self.commands.send(cmd).map_err(|_| self.closed_error())
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
    /// Client: 1xx responses received so far.
    pub informational: VecDeque<Response<()>>,
    /// Client: the final response head.
    pub response: Option<Response<()>>,
    /// Body bytes queued for sending and not yet handed to QUIC.
    pub send_queued: usize,
    pub error: Option<Error>,
    /// The handle's task, waiting for any of the above.
    pub waker: Option<Waker>,
}

impl StreamState {
    pub fn wake(&mut self) {
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }

    pub fn fail(&mut self, error: Error) {
        if self.error.is_none() {
            self.error = Some(error);
        }
        self.wake();
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
///
/// Dropping a stream before finishing it resets it with `H3_REQUEST_CANCELLED`; dropping
/// it before its peer's body is fully read sends STOP_SENDING.
pub struct RequestStream {
    pub(crate) shared: Arc<StreamShared>,
    pub(crate) server: bool,
    /// Our direction is finished (finish, trailers or reset).
    pub(crate) send_done: bool,
    /// The peer's direction is fully read, or stopped.
    pub(crate) recv_done: bool,
    pub(crate) response_sent: bool,
}

impl RequestStream {
    pub(crate) fn new(shared: Arc<StreamShared>, server: bool) -> Self {
        RequestStream {
            shared,
            server,
            send_done: false,
            recv_done: false,
            response_sent: false,
        }
    }

    /// The QUIC stream id.
    pub fn id(&self) -> u64 {
        self.shared.sid as u64
    }

    fn cmd(&self, cmd: Command) -> Result<(), Error> {
        self.shared.conn.send(cmd)
    }

    /// The next chunk of the peer's body; `None` once it is complete (then trailers, if
    /// any, are available from [`recv_trailers`](Self::recv_trailers)).
    pub async fn recv_data(&mut self) -> Result<Option<Bytes>, Error> {
        let shared = self.shared.clone();
        let limit = shared.conn.config.recv_buffer;
        let result = poll_fn(|cx| {
            let mut st = lock(&shared.state);
            if let Some(chunk) = st.recv.pop_front() {
                st.recv_buffered -= chunk.len();
                if st.recv_paused && st.recv_buffered <= limit / 2 {
                    st.recv_paused = false;
                    shared.conn.ready.push(shared.sid, Interest::Read);
                }
                return Poll::Ready(Ok(Some(chunk)));
            }
            if st.recv_fin {
                return Poll::Ready(Ok(None));
            }
            if let Some(e) = &st.error {
                return Poll::Ready(Err(e.clone()));
            }
            st.waker = Some(cx.waker().clone());
            Poll::Pending
        })
        .await;
        if !matches!(result, Ok(Some(_))) {
            self.recv_done = true;
        }
        result
    }

    /// The peer's trailers, once its body has been read to the end.
    pub async fn recv_trailers(&mut self) -> Result<Option<HeaderMap>, Error> {
        while self.recv_data().await?.is_some() {}
        Ok(lock(&self.shared.state).trailers.take())
    }

    /// Sends a chunk of body, waiting while the stream's send buffer is full.
    pub async fn send_data(&mut self, data: Bytes) -> Result<(), Error> {
        if self.send_done {
            return Err(Error::Message(
                "send_data after the stream was finished".into(),
            ));
        }
        if self.server && !self.response_sent {
            return Err(Error::Message("send_data before send_response".into()));
        }
        let shared = self.shared.clone();
        let limit = shared.conn.config.send_buffer;
        let len = data.len();
        poll_fn(|cx| {
            let mut st = lock(&shared.state);
            if let Some(e) = &st.error {
                return Poll::Ready(Err(e.clone()));
            }
            if st.send_queued > 0 && st.send_queued + len > limit {
                st.waker = Some(cx.waker().clone());
                return Poll::Pending;
            }
            st.send_queued += len;
            Poll::Ready(Ok(()))
        })
        .await?;
        self.cmd(Command::Data {
            sid: self.shared.sid,
            data,
        })
    }

    /// Ends the body with trailers.
    pub fn send_trailers(&mut self, trailers: HeaderMap) -> Result<(), Error> {
        self.end(Some(fields::trailer_fields(&trailers)))
    }

    /// Ends the body.
    pub fn finish(&mut self) -> Result<(), Error> {
        self.end(None)
    }

    fn end(&mut self, trailers: Option<Vec<Field>>) -> Result<(), Error> {
        if self.send_done {
            return Err(Error::Message("stream already finished".into()));
        }
        if self.server && !self.response_sent {
            return Err(Error::Message("finish before send_response".into()));
        }
        self.send_done = true;
        self.cmd(Command::Finish {
            sid: self.shared.sid,
            trailers,
        })
    }

    /// Abandons our direction of the stream (RESET_STREAM with `code`).
    pub fn reset(&mut self, code: Code) {
        if !std::mem::replace(&mut self.send_done, true) {
            let _ = self.cmd(Command::Reset {
                sid: self.shared.sid,
                code,
            });
        }
    }

    /// Asks the peer to stop sending its body (STOP_SENDING with `code`).
    pub fn stop_sending(&mut self, code: Code) {
        if !std::mem::replace(&mut self.recv_done, true) {
            let _ = self.cmd(Command::StopSending {
                sid: self.shared.sid,
                code,
            });
        }
    }

    /// Waits until the stream's state changes in a way `check` accepts.
    pub(crate) async fn wait<T>(
        &self,
        mut check: impl FnMut(&mut StreamState) -> Option<Result<T, Error>>,
    ) -> Result<T, Error> {
        poll_fn(|cx| {
            let mut st = lock(&self.shared.state);
            if let Some(r) = check(&mut st) {
                return Poll::Ready(r);
            }
            if let Some(e) = &st.error {
                return Poll::Ready(Err(e.clone()));
            }
            st.waker = Some(cx.waker().clone());
            Poll::Pending
        })
        .await
    }
}

impl Drop for RequestStream {
    fn drop(&mut self) {
        if !self.recv_done {
            // A server that answered without reading the whole request says so with
            // H3_NO_ERROR (RFC 9114, section 4.1); a client abandons the response.
            let code = if self.server && self.response_sent {
                Code::H3_NO_ERROR
            } else {
                Code::H3_REQUEST_CANCELLED
            };
            self.stop_sending(code);
        }
        self.reset(Code::H3_REQUEST_CANCELLED);
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
