//! The connection's shared state: the socket, its read and write buffers, and the
//! decoding state of the current request body.
//!
//! The connection loop and the request body (which the handler may poll from any task,
//! even after it answered) share it behind a mutex that is never held across an await:
//! every operation here is a short `poll_*` that locks, does what it can, and unlocks.

use std::future::Future;
use std::io;
use std::pin::pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use http::HeaderMap;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::time::{sleep_until, Instant, Sleep};

use super::chunked::{Chunk, ChunkedDecoder, ChunkedError};

/// Bytes reserved in the read buffer before each read.
const READ_SIZE: usize = 16 * 1024;

/// The write buffer's first capacity: a response head and a small body in one write.
pub(super) const WRITE_SIZE: usize = 16 * 1024;

/// Body data frames at least this big are written straight from their `Bytes` rather
/// than copied into the write buffer.
pub(super) const COPY_LIMIT: usize = 16 * 1024;

/// Write-buffer size beyond which it is written out before more is added.
pub(super) const WRITE_HIGH_WATER: usize = 64 * 1024;

pub(super) const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// Where the current request body stands.
#[derive(Debug)]
pub(super) enum BodyState {
    /// All of it was read (or there was none).
    Done,
    /// This many Content-Length bytes remain.
    Length(u64),
    Chunked(ChunkedDecoder),
    /// Broken framing from the client: the connection must close.
    Malformed(ChunkedError),
    /// The client closed or the socket failed mid-body.
    Broken,
}

/// The `Expect: 100-continue` handshake of the current request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Continue {
    /// Not asked for, already sent, or no longer possible.
    None,
    /// Asked for, not sent: sent when the body is first polled.
    Wanted,
    /// The response started before the body was polled: the client was never told to
    /// send the body, so it may never come.
    Refused,
}

/// One step of body decoding on the bytes already buffered.
pub(super) enum Decoded {
    Data(Bytes),
    Trailers(HeaderMap),
    End,
    NeedMore,
    Failed,
}

pub(super) struct Wire<IO> {
    pub io: IO,
    pub rbuf: BytesMut,
    pub wbuf: BytesMut,
    /// Bytes were written since the last `poll_flush` of the socket.
    dirty: bool,
    /// Bytes written to the transport so far (see [`Wire::sent`]).
    written: u64,
    /// Bytes the transport has put on the wire, where that is not `written` (TLS).
    sent_by: Option<fn(&IO) -> u64>,
    /// A write made no progress for the send timeout: the client stopped reading, and
    /// nothing more is worth flushing to it.
    pub stalled: bool,
    /// Incremented when a request ends, so its body, if still held, stops reading.
    pub generation: u64,
    pub body: BodyState,
    pub expect: Continue,
    /// The response head was queued: only the connection loop writes now.
    pub responding: bool,
    /// The connection loop's timeouts (reads, writes); request bodies have their own.
    pub deadline: Deadline,
}

pub(super) type Shared<IO> = Arc<Mutex<Wire<IO>>>;

/// One timer for a loop that waits many times, each time with its own deadline (a
/// connection's reads): a `tokio::time::timeout` per wait registers a timer entry
/// when the wait starts and removes it when it ends, under the timer driver's lock.
/// Here the entry stays registered: a later deadline than the registered one leaves
/// it as it is (when it fires, the real deadline is checked and it is moved), so a
/// connection re-registers about once per timeout period instead of once per read.
/// Polled from one task only (its waker is the one woken).
#[derive(Default)]
pub(crate) struct Deadline {
    sleep: Option<std::pin::Pin<Box<Sleep>>>,
}

impl Deadline {
    /// Ready once `at` has passed; else the task is woken by then (or earlier, to
    /// look again).
    pub(crate) fn poll_expired(&mut self, cx: &mut Context<'_>, at: Instant) -> Poll<()> {
        let sleep = match &mut self.sleep {
            Some(sleep) => {
                if sleep.deadline() > at {
                    sleep.as_mut().reset(at);
                }
                sleep
            }
            None => self.sleep.insert(Box::pin(sleep_until(at))),
        };
        while sleep.as_mut().poll(cx).is_ready() {
            if Instant::now() >= at {
                return Poll::Ready(());
            }
            sleep.as_mut().reset(at);
        }
        Poll::Pending
    }
}

/// A panic elsewhere while holding the lock cannot leave the buffers half-updated in a
/// way that matters more than the connection it belongs to, which is then dropped.
pub(super) fn lock<IO>(shared: &Shared<IO>) -> MutexGuard<'_, Wire<IO>> {
    shared.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<IO: AsyncRead + AsyncWrite + Unpin> Wire<IO> {
    pub fn new(io: IO, sent_by: Option<fn(&IO) -> u64>) -> Self {
        Wire {
            io,
            rbuf: BytesMut::with_capacity(READ_SIZE),
            wbuf: BytesMut::with_capacity(WRITE_SIZE),
            dirty: false,
            written: 0,
            sent_by,
            stalled: false,
            generation: 0,
            body: BodyState::Done,
            expect: Continue::None,
            responding: false,
            deadline: Deadline::default(),
        }
    }

    /// Bytes sent to the client so far: a write that waits is progressing while this
    /// grows.
    pub fn sent(&self) -> u64 {
        match self.sent_by {
            Some(sent) => sent(&self.io),
            None => self.written,
        }
    }

    /// Frees both buffers if they hold nothing (between requests), for a connection
    /// that idles; the next read and [`WRITE_SIZE`] reserve them again. Whether it did.
    pub fn release_buffers(&mut self) -> bool {
        if !self.rbuf.is_empty() || !self.wbuf.is_empty() {
            return false;
        }
        self.rbuf = BytesMut::new();
        self.wbuf = BytesMut::new();
        true
    }

    /// Reads more bytes into the read buffer: `Ok(0)` at end of stream.
    pub fn poll_read_more(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        self.rbuf.reserve(READ_SIZE);
        // `read_buf` fills the buffer's spare capacity with no raw-pointer code of ours;
        // its future holds no state between polls, so one is made per poll.
        pin!(self.io.read_buf(&mut self.rbuf)).poll(cx)
    }

    /// [`Wire::poll_read_more`] for a read that most likely finds nothing (the client
    /// watched while its request is handled): it reads into the buffer's spare room,
    /// reserving only when there is none. A reserve of [`READ_SIZE`] would allocate a new
    /// buffer, the request head's bytes still holding the one it was read into.
    pub fn poll_read_spare(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.rbuf.len() == self.rbuf.capacity() {
            self.rbuf.reserve(READ_SIZE);
        }
        pin!(self.io.read_buf(&mut self.rbuf)).poll(cx)
    }

    /// Writes out the write buffer (without flushing the socket).
    pub fn poll_write_buffered(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.wbuf.is_empty() {
            let n = ready!(std::pin::Pin::new(&mut self.io).poll_write(cx, &self.wbuf))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.wbuf.advance(n);
            self.written += n as u64;
            self.dirty = true;
        }
        self.wbuf.clear();
        Poll::Ready(Ok(()))
    }

    /// Writes `data` straight to the socket, consuming it as it goes.
    pub fn poll_write_bytes(
        &mut self,
        cx: &mut Context<'_>,
        data: &mut Bytes,
    ) -> Poll<io::Result<()>> {
        ready!(self.poll_write_buffered(cx))?;
        while !data.is_empty() {
            let n = ready!(std::pin::Pin::new(&mut self.io).poll_write(cx, data))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            data.advance(n);
            self.written += n as u64;
            self.dirty = true;
        }
        Poll::Ready(Ok(()))
    }

    /// Writes out the write buffer and flushes the socket (TLS records go out).
    pub fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_write_buffered(cx))?;
        if self.dirty {
            ready!(std::pin::Pin::new(&mut self.io).poll_flush(cx))?;
            self.dirty = false;
        }
        Poll::Ready(Ok(()))
    }

    pub fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_flush(cx))?;
        std::pin::Pin::new(&mut self.io).poll_shutdown(cx)
    }

    /// Decodes the next piece of the current request body from buffered bytes.
    pub fn decode_body(&mut self) -> Decoded {
        match &mut self.body {
            BodyState::Done => Decoded::End,
            BodyState::Malformed(_) | BodyState::Broken => Decoded::Failed,
            BodyState::Length(remaining) => {
                if self.rbuf.is_empty() {
                    return Decoded::NeedMore;
                }
                let n = (*remaining).min(self.rbuf.len() as u64);
                *remaining -= n;
                if *remaining == 0 {
                    self.body = BodyState::Done;
                }
                Decoded::Data(self.rbuf.split_to(n as usize).freeze())
            }
            BodyState::Chunked(decoder) => match decoder.decode(&self.rbuf) {
                Ok(Chunk::Data { skip, len }) => {
                    self.rbuf.advance(skip);
                    Decoded::Data(self.rbuf.split_to(len).freeze())
                }
                Ok(Chunk::Incomplete { skip }) => {
                    self.rbuf.advance(skip);
                    Decoded::NeedMore
                }
                Ok(Chunk::End { consumed, trailers }) => {
                    self.rbuf.advance(consumed);
                    self.body = BodyState::Done;
                    trailers.map_or(Decoded::End, Decoded::Trailers)
                }
                Err(e) => {
                    self.body = BodyState::Malformed(e);
                    Decoded::Failed
                }
            },
        }
    }

    /// Whether the connection can read past what is left of the current body after an
    /// answer: at most `max` bytes are left, which for a chunked body is known only
    /// once its end is buffered (a copy of its decoder looks, consuming nothing).
    pub fn drainable(&self, max: u64) -> bool {
        match &self.body {
            BodyState::Done => true,
            BodyState::Length(n) => *n <= max,
            BodyState::Chunked(decoder) => {
                let (mut decoder, mut at, mut data) = (decoder.clone(), 0, 0u64);
                loop {
                    match decoder.decode(&self.rbuf[at..]) {
                        Ok(Chunk::Data { skip, len }) => {
                            at += skip + len;
                            data += len as u64;
                        }
                        Ok(Chunk::End { .. }) => return data <= max,
                        Ok(Chunk::Incomplete { .. }) | Err(_) => return false,
                    }
                }
            }
            BodyState::Malformed(_) | BodyState::Broken => false,
        }
    }

    /// Bytes of the current body still expected, if known.
    pub fn remaining(&self) -> Option<u64> {
        match self.body {
            BodyState::Done => Some(0),
            BodyState::Length(n) => Some(n),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::poll_fn;
    use std::time::Duration;

    /// Registers `d` at `first` from now, then waits for `then` from now: how long it took.
    async fn wait(d: &mut Deadline, first: Duration, then: Duration) -> Duration {
        let start = Instant::now();
        let registered = poll_fn(|cx| Poll::Ready(d.poll_expired(cx, start + first))).await;
        assert!(registered.is_pending());
        poll_fn(|cx| d.poll_expired(cx, start + then)).await;
        start.elapsed()
    }

    #[tokio::test]
    async fn deadline_follows_later_and_earlier_deadlines() {
        let mut d = Deadline::default();
        // A later deadline than the registered one: fires at the later one.
        let took = wait(
            &mut d,
            Duration::from_millis(50),
            Duration::from_millis(150),
        )
        .await;
        assert!(took >= Duration::from_millis(150), "{took:?}");
        // An earlier one moves the registered one.
        let took = wait(&mut d, Duration::from_secs(60), Duration::from_millis(30)).await;
        assert!(took >= Duration::from_millis(30) && took < Duration::from_secs(5));
    }

    /// A chunked body can be read past once its end is buffered and its data within the
    /// bound; looking consumes nothing.
    #[test]
    fn a_chunked_body_is_drainable_once_its_end_is_buffered() {
        let mut wire = Wire::new(tokio::io::empty(), None);
        let drainable = |wire: &mut Wire<_>, buffered: &[u8], max| {
            wire.body = BodyState::Chunked(ChunkedDecoder::new(1024));
            wire.rbuf.clear();
            wire.rbuf.extend_from_slice(buffered);
            let answer = wire.drainable(max);
            assert_eq!(&wire.rbuf[..], buffered);
            answer
        };
        assert!(drainable(&mut wire, b"3\r\nabc\r\n0\r\n\r\nGET", 3));
        assert!(!drainable(&mut wire, b"3\r\nabc\r\n0\r\n\r\n", 2));
        assert!(!drainable(&mut wire, b"3\r\nabc\r\n", 3));
        assert!(!drainable(&mut wire, b"3\r\nabcXX", 3));
    }

    #[test]
    fn buffers_are_released_only_when_empty() {
        let mut wire = Wire::new(tokio::io::empty(), None);
        wire.wbuf.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
        assert!(!wire.release_buffers(), "an answer not yet written");
        assert!(wire.wbuf.capacity() >= WRITE_SIZE);
        wire.wbuf.clear();
        wire.rbuf.extend_from_slice(b"GET");
        assert!(!wire.release_buffers(), "a head begun");
        wire.rbuf.clear();
        assert!(wire.release_buffers());
        assert_eq!((wire.rbuf.capacity(), wire.wbuf.capacity()), (0, 0));
    }
}
