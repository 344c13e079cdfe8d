//! The connection loop: reads each request head under its deadline, hands the request to
//! the handler as a [`Session`], writes the response, then decides whether the
//! connection serves another request.
//!
//! Writes are buffered and only flushed when the connection would otherwise wait (for
//! the client, the handler, or a slow response body), so a response is one write in the
//! common case and pipelined responses share writes.

use std::future::{poll_fn, Future};
use std::io;
use std::pin::{pin, Pin};
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes};
use http::{header, Method, StatusCode, Version};
use http_body::Body as _;
use http_body_util::BodyExt;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::{timeout_at, Instant};
use tracing::debug;

use super::body::RequestBody;
use super::chunked::ChunkedDecoder;
use super::head::{find_head_end, parse_head, BodyKind, HeadError, RequestHead};
use super::response::{self, ConnectionHeader, Framing};
use super::wire::{
    lock, BodyState, Continue, Decoded, Shared, Wire, COPY_LIMIT, WRITE_HIGH_WATER, WRITE_SIZE,
};
use crate::body::{self as edge_body, Body};
use crate::limits::{Limits, LINGER, MAX_LINGER};
use crate::session::{ClientInfo, Handler, Session};

/// Most unread request-body bytes discarded to keep a connection alive: beyond, close.
const MAX_DRAIN: u64 = 256 * 1024;

/// Most bytes buffered while the client is watched during its request (see
/// [`Conn::watch`]): a client that pipelines more is no longer watched.
const WATCH_BUFFER: usize = 64 * 1024;

/// A keep-alive connection that has waited this long for its next request gives its
/// buffers' memory back until the request comes (the first wait; later ones grow, see
/// [`MAX_IDLE_RELEASE`]). nginx frees them at once, for an allocation per request under
/// load; here a busy connection keeps them.
const IDLE_RELEASE: Duration = Duration::from_secs(1);

/// The longest wait before an idle connection's release. Each request that comes while
/// the release's wait runs doubles the next wait, up to this or half the idle timeout
/// (so that a release stays possible); a wait that runs out starts again from
/// [`IDLE_RELEASE`]. Why: the connection's one timer is not moved later per request
/// (that costs a timer-wheel update each time), so it fires at the wait set first and
/// wakes a busy connection for nothing; with the wait doubled, that happens a few times
/// in all rather than every second.
const MAX_IDLE_RELEASE: Duration = Duration::from_secs(16);

/// The wait before the next idle release, after a request came: see
/// [`MAX_IDLE_RELEASE`]. `waited`: the `current` wait ran while the request was awaited;
/// `ran_out`: it ran out.
fn next_release_wait(current: Duration, waited: bool, ran_out: bool, idle: Duration) -> Duration {
    if ran_out {
        IDLE_RELEASE
    } else if waited {
        (current * 2).min(MAX_IDLE_RELEASE.min(idle / 2).max(IDLE_RELEASE))
    } else {
        current
    }
}

/// What the connection does after an exchange.
enum Next {
    KeepAlive,
    /// Flush what is queued, then close.
    Close,
    /// The socket failed or stalled: drop it.
    Abort,
}

/// Why no request head was read.
enum NoHead {
    /// End of stream, idle timeout, or socket error: close without answering.
    Close,
    /// Answer with this error, then close.
    Refuse(HeadError),
}

/// What the loop remembers about the request while it answers.
struct Exchange {
    head_request: bool,
    http11: bool,
    keep_alive: bool,
    te_trailers: bool,
}

pub(super) struct Conn<IO, H> {
    shared: Shared<IO>,
    client: Arc<ClientInfo>,
    limits: Limits,
    handler: Arc<H>,
}

/// Polls a future once: `Pending` if it is not ready yet (its waker stays registered).
async fn poll_once<F: Future + Unpin>(fut: &mut F) -> Poll<F::Output> {
    poll_fn(|cx| Poll::Ready(Pin::new(&mut *fut).poll(cx))).await
}

impl<IO, H> Conn<IO, H>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    H: Handler,
{
    pub fn new(
        io: IO,
        sent: Option<fn(&IO) -> u64>,
        client: Arc<ClientInfo>,
        limits: Limits,
        handler: Arc<H>,
    ) -> Self {
        Conn {
            shared: Arc::new(Mutex::new(Wire::new(io, sent))),
            client,
            limits,
            handler,
        }
    }

    pub async fn run(self) {
        let mut first = true;
        let mut requests = 0u64;
        let mut release_after = IDLE_RELEASE;
        loop {
            let head = match self.read_head(first, &mut release_after).await {
                Ok(head) => head,
                Err(NoHead::Close) => return self.close().await,
                Err(NoHead::Refuse(e)) => return self.refuse(e).await,
            };
            first = false;
            let RequestHead {
                mut parts,
                host,
                body,
                keep_alive,
                expect_continue,
                te_trailers,
            } = match parse_head(head) {
                Ok(head) => head,
                Err(e) => return self.refuse(e).await,
            };
            requests += 1;
            // False only for HTTP/1.0 without Host: the engine names its host then.
            Session::complete_uri_with(&mut parts, self.client.tls.is_some(), host);
            let exchange = Exchange {
                head_request: parts.method == Method::HEAD,
                http11: parts.version == Version::HTTP_11,
                keep_alive: keep_alive && requests < self.limits.max_requests,
                te_trailers,
            };
            let body = self.start_body(body, expect_continue);
            if expect_continue {
                parts.extensions.insert(crate::session::AwaitsContinue);
            }
            let session = Session::new(parts, body, self.client.clone());
            let Some(response) = self.call(session).await else {
                return;
            };
            match self.respond(response, &exchange).await {
                Next::KeepAlive => {}
                Next::Close => return self.close().await,
                Next::Abort => return,
            }
            if !self.end_exchange().await {
                return self.close().await;
            }
        }
    }

    /// Reads until a whole head is buffered and splits it off. The first request of a
    /// connection gets `header_read_timeout` from the start; later ones may idle for
    /// `idle_timeout` before their first byte, then get `header_read_timeout`. Waiting
    /// `release_after` for a later one frees the buffers (see [`MAX_IDLE_RELEASE`] for
    /// how the wait grows).
    async fn read_head(&self, first: bool, release_after: &mut Duration) -> Result<Bytes, NoHead> {
        let max = self.limits.max_header_size;
        let wait = if first {
            self.limits.header_read_timeout
        } else {
            self.limits.idle_timeout
        };
        let now = Instant::now();
        let idle_deadline = now + wait;
        let mut release_at = Some(now + *release_after).filter(|&at| !first && at < idle_deadline);
        let mut released = false;
        // Whether the release's wait ran while reading, and whether it ran out (with or
        // without memory to give back).
        let (mut waited, mut waited_out) = (false, false);
        let mut head_deadline = None;
        let mut scanned = 0;
        loop {
            {
                let mut wire = lock(&self.shared);
                // Empty lines before a request line are ignored (RFC 9112, 2.2): some
                // clients send a CRLF after a body.
                while wire.rbuf.starts_with(b"\r\n") {
                    wire.rbuf.advance(2);
                    scanned = 0;
                }
                if !wire.rbuf.is_empty() && head_deadline.is_none() {
                    head_deadline = Some(if first {
                        idle_deadline
                    } else {
                        Instant::now() + self.limits.header_read_timeout
                    });
                }
                match find_head_end(&wire.rbuf, scanned) {
                    Some(end) if end <= max => {
                        *release_after = next_release_wait(
                            *release_after,
                            waited,
                            waited_out,
                            self.limits.idle_timeout,
                        );
                        return Ok(wire.rbuf.split_to(end).freeze());
                    }
                    Some(_) => return Err(NoHead::Refuse(too_large(&wire.rbuf, max))),
                    None if wire.rbuf.len() > max => {
                        return Err(NoHead::Refuse(too_large(&wire.rbuf, max)))
                    }
                    None => {}
                }
                scanned = wire.rbuf.len().saturating_sub(2);
            }
            waited |= head_deadline.is_none() && release_at.is_some();
            let deadline = head_deadline.or(release_at).unwrap_or(idle_deadline);
            match self.read_more(deadline).await {
                Ok(0) => return Err(NoHead::Close),
                Ok(_) if released => {
                    released = false;
                    lock(&self.shared).wbuf.reserve(WRITE_SIZE);
                }
                Ok(_) => {}
                // The release timer, not a flush of earlier answers that stalled (that
                // one closes the connection, below).
                Err(e)
                    if e.kind() == io::ErrorKind::TimedOut
                        && head_deadline.is_none()
                        && release_at.is_some()
                        && !lock(&self.shared).stalled =>
                {
                    release_at = None;
                    waited_out = true;
                    released = lock(&self.shared).release_buffers();
                }
                Err(e) if e.kind() == io::ErrorKind::TimedOut && head_deadline.is_some() => {
                    return Err(NoHead::Refuse(HeadError {
                        status: StatusCode::REQUEST_TIMEOUT,
                        reason: "request head not received in time",
                    }))
                }
                Err(_) => return Err(NoHead::Close),
            }
        }
    }

    /// Reads more bytes, by `deadline`. What is queued for the client goes out first if
    /// nothing can be read right away: the client may be waiting for it.
    async fn read_more(&self, deadline: Instant) -> io::Result<usize> {
        let mut read = poll_fn(|cx| {
            let mut wire = lock(&self.shared);
            if let Poll::Ready(r) = wire.poll_read_more(cx) {
                return Poll::Ready(r);
            }
            ready!(wire.deadline.poll_expired(cx, deadline));
            Poll::Ready(Err(io::ErrorKind::TimedOut.into()))
        });
        self.flush_while_pending(&mut read).await?
    }

    /// Polls `fut`; if it must wait, flushes what is queued for the client first, then
    /// waits for it. A flush that did not wait leaves `fut`'s wake-ups as they were, so
    /// `fut` is next polled when one fires: polled again at once it would find nothing
    /// new, at the cost of a read attempt (about 500 instructions over TLS).
    async fn flush_while_pending<F: Future + Unpin>(&self, fut: &mut F) -> io::Result<F::Output> {
        if let Poll::Ready(out) = poll_once(fut).await {
            return Ok(out);
        }
        let mut flush = pin!(self.flush());
        let mut poll_now = match poll_once(&mut flush).await {
            Poll::Ready(r) => r.map(|()| false)?,
            Poll::Pending => flush.await.map(|()| true)?,
        };
        Ok(poll_fn(|cx| {
            if std::mem::replace(&mut poll_now, true) {
                Pin::new(&mut *fut).poll(cx)
            } else {
                Poll::Pending
            }
        })
        .await)
    }

    /// Runs a socket operation, failing it if it makes no progress for `send_timeout`
    /// (a client that stops reading its responses). A client
    /// that reads slowly but keeps reading is not cut off, however long the write.
    async fn io<T>(
        &self,
        mut op: impl FnMut(&mut Wire<IO>, &mut Context<'_>) -> Poll<io::Result<T>>,
    ) -> io::Result<T> {
        // The deadline starts with the first wait (most operations never wait), and
        // again with each wait after bytes went out: (deadline, bytes sent then).
        let mut deadline: Option<(Instant, u64)> = None;
        poll_fn(|cx| {
            let mut wire = lock(&self.shared);
            if let Poll::Ready(r) = op(&mut wire, cx) {
                return Poll::Ready(r);
            }
            let sent = wire.sent();
            let at = match deadline {
                Some((at, then)) if then == sent => at,
                _ => {
                    let at = Instant::now() + self.limits.send_timeout;
                    deadline = Some((at, sent));
                    at
                }
            };
            ready!(wire.deadline.poll_expired(cx, at));
            wire.stalled = true;
            Poll::Ready(Err(io::ErrorKind::TimedOut.into()))
        })
        .await
    }

    async fn flush(&self) -> io::Result<()> {
        self.io(Wire::poll_flush).await
    }

    /// Sets up the decoding state of the request's body and the body handed to filters.
    fn start_body(&self, kind: BodyKind, expect_continue: bool) -> Body {
        let mut wire = lock(&self.shared);
        wire.responding = false;
        wire.body = match kind {
            BodyKind::None | BodyKind::Length(0) => BodyState::Done,
            BodyKind::Length(n) => BodyState::Length(n),
            BodyKind::Chunked => {
                BodyState::Chunked(ChunkedDecoder::new(self.limits.max_header_size))
            }
        };
        if matches!(wire.body, BodyState::Done) {
            wire.expect = Continue::None;
            return edge_body::empty();
        }
        wire.expect = if expect_continue {
            Continue::Wanted
        } else {
            Continue::None
        };
        RequestBody::new(
            self.shared.clone(),
            wire.generation,
            self.limits.body_timeout,
        )
        .boxed()
    }

    /// Runs the handler. `None`: the connection failed meanwhile, or the client went
    /// away before the answer (the handler is dropped then: see [`Conn::watch`]).
    async fn call(&self, session: Session) -> Option<http::Response<Body>> {
        let body_unread = !session.body.is_end_stream();
        let mut fut = pin!(self.handler.handle(session));
        let poll_now = if body_unread {
            // The body may write a 100 Continue from whatever task polls it: nothing
            // else may be in the write buffer then.
            self.flush().await.ok()?;
            true
        } else {
            if let Poll::Ready(response) = poll_once(&mut fut).await {
                return Some(response);
            }
            // Answers queued for earlier pipelined requests must not wait for this one.
            // A flush that did not wait leaves the handler's wake-ups as they were (see
            // `flush_while_pending`).
            let mut flush = pin!(self.flush());
            match poll_once(&mut flush).await {
                Poll::Ready(r) => r.map(|()| false).ok()?,
                Poll::Pending => flush.await.map(|()| true).ok()?,
            }
        };
        self.watch(&mut fut, poll_now).await
    }

    /// Awaits the handler (or a slow response body), watching the client meanwhile once
    /// the request body is read (nginx's `proxy_ignore_client_abort off`): a client that
    /// closes its connection, or only its sending side, or whose connection fails,
    /// cancels the request. The handler is dropped (a proxied request's upstream
    /// exchange with it, its connection not reused) and `None` ends the connection. What
    /// the client sends meanwhile (a pipelined request) is kept in the read buffer for
    /// the next exchange, up to [`WATCH_BUFFER`]; beyond, the client is no longer
    /// watched.
    ///
    /// Watching starts only once the handler has to wait (a `return` answered at once
    /// costs nothing), and adds no system call: the head's read came up short, which
    /// cleared the socket's readiness in the runtime, so the watch only registers for
    /// the next readiness event (over TLS, [`ReadOnce`](crate::tls::ReadOnce) asks the
    /// socket before taking the TLS layer's read path). `poll_now`: poll the handler
    /// before waiting for a wake-up.
    async fn watch<F: Future + Unpin>(&self, fut: &mut F, mut poll_now: bool) -> Option<F::Output> {
        let mut watching = true;
        let gone = poll_fn(|cx| {
            if std::mem::replace(&mut poll_now, true) {
                if let Poll::Ready(out) = Pin::new(&mut *fut).poll(cx) {
                    return Poll::Ready(Ok(out));
                }
            }
            if !watching {
                return Poll::Pending;
            }
            let mut wire = lock(&self.shared);
            // The body is the handler's to read until it is all read (possibly from
            // another task, which a read here would take the socket's wake-up from).
            if !matches!(wire.body, BodyState::Done) {
                return Poll::Pending;
            }
            while wire.rbuf.len() < WATCH_BUFFER {
                match wire.poll_read_spare(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Ok(0)) => return Poll::Ready(Err(None)),
                    Poll::Ready(Ok(_)) => {}
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(Some(e))),
                }
            }
            watching = false;
            Poll::Pending
        })
        .await;
        match gone {
            Ok(out) => Some(out),
            Err(error) => {
                debug!(
                    client = %self.client.addr,
                    error = error.as_ref().map(tracing::field::display),
                    "http1: the client went away before the answer ended: request cancelled"
                );
                None
            }
        }
    }

    /// Writes the response head and body.
    async fn respond(&self, response: http::Response<Body>, ex: &Exchange) -> Next {
        let (parts, mut body) = response.into_parts();
        let status = parts.status;
        // Before locking: the response body may be the request body, which locks too.
        let size = body.size_hint();
        let framing = Framing::choose(ex.head_request, status, &size, ex.http11);
        // A 1xx as the final answer leaves nothing to frame a next response after.
        let mut keep_alive =
            ex.keep_alive && !status.is_informational() && framing != Framing::Close;
        {
            let mut wire = lock(&self.shared);
            wire.responding = true;
            if let BodyState::Malformed(e) = wire.body {
                // The handler answered a request whose body framing was broken.
                drop(wire);
                debug!(client = %self.client.addr, reason = %e, "http1: malformed request body");
                self.queue_error(StatusCode::BAD_REQUEST);
                return Next::Close;
            }
            if wire.expect == Continue::Wanted {
                wire.expect = Continue::Refused;
            }
            // The connection closes after this answer if the rest of the body may not
            // follow (a refused Expect), or is more than it reads past, or not known to
            // be less (a chunked body whose end has not come): this answer must say so
            // (RFC 9112 9.6), not a close after it.
            if wire.expect == Continue::Refused || !wire.drainable(MAX_DRAIN) {
                keep_alive = false;
            }
            // RFC 9110 8.6: never in these, not even for a HEAD.
            let length_allowed = !status.is_informational() && status != StatusCode::NO_CONTENT;
            let content_length = match framing {
                Framing::Length(n) => Some(n),
                Framing::None
                    if ex.head_request
                        && length_allowed
                        && !parts.headers.contains_key(header::CONTENT_LENGTH) =>
                {
                    size.exact().filter(|&n| n > 0)
                }
                _ => None,
            };
            let connection = if !keep_alive {
                ConnectionHeader::Close
            } else if !ex.http11 {
                ConnectionHeader::KeepAlive
            } else {
                ConnectionHeader::Omit
            };
            response::encode_head(
                &mut wire.wbuf,
                status,
                &parts.headers,
                framing,
                content_length,
                length_allowed && (ex.head_request || status == StatusCode::NOT_MODIFIED),
                connection,
            );
        }
        let next = if keep_alive {
            Next::KeepAlive
        } else {
            Next::Close
        };
        if framing == Framing::None {
            return self.queued(next).await;
        }

        let mut written = 0u64;
        let mut trailers = None;
        loop {
            let frame = match poll_once(&mut body.frame()).await {
                Poll::Ready(frame) => frame,
                Poll::Pending => {
                    // The body is slow: what is written so far goes out meanwhile, and a
                    // client that goes away cancels the rest (an upstream's with it).
                    if self.flush().await.is_err() {
                        return Next::Abort;
                    }
                    match self.watch(&mut body.frame(), true).await {
                        Some(frame) => frame,
                        None => return Next::Abort,
                    }
                }
            };
            let frame = match frame {
                None => break,
                Some(Ok(frame)) => frame,
                Some(Err(e)) => {
                    debug!(client = %self.client.addr, error = %e, "http1: response body failed");
                    return Next::Close;
                }
            };
            match frame.into_data() {
                Ok(data) => {
                    written += data.len() as u64;
                    if matches!(framing, Framing::Length(n) if written > n) {
                        debug!(client = %self.client.addr, "http1: response body longer than its size");
                        return Next::Close;
                    }
                    if self
                        .write_data(data, framing == Framing::Chunked)
                        .await
                        .is_err()
                    {
                        return Next::Abort;
                    }
                }
                Err(frame) => {
                    trailers = frame.into_trailers().ok();
                    break;
                }
            }
        }
        match framing {
            Framing::Length(n) if written != n => {
                debug!(client = %self.client.addr, "http1: response body shorter than its size");
                Next::Close
            }
            Framing::Chunked => {
                let trailers = trailers.as_ref().filter(|_| ex.te_trailers);
                response::encode_end(&mut lock(&self.shared).wbuf, trailers);
                self.queued(next).await
            }
            _ => self.queued(next).await,
        }
    }

    /// Ends an exchange whose answer is queued. Answers too small to reach the
    /// high-water mark on their own (bodiless, empty, short) would otherwise pile up
    /// unwritten, one per pipelined request, while a client that never reads keeps
    /// sending: past the mark they are written first.
    async fn queued(&self, next: Next) -> Next {
        let full = lock(&self.shared).wbuf.len() >= WRITE_HIGH_WATER;
        if full && self.io(Wire::poll_write_buffered).await.is_err() {
            return Next::Abort;
        }
        next
    }

    /// Queues one data frame; big frames are written from their own buffer.
    async fn write_data(&self, mut data: Bytes, chunked: bool) -> io::Result<()> {
        if data.is_empty() {
            // An empty chunk would end a chunked body.
            return Ok(());
        }
        let copied_buffer_full = {
            let mut wire = lock(&self.shared);
            if chunked {
                response::encode_chunk_size(&mut wire.wbuf, data.len());
            }
            if data.len() < COPY_LIMIT {
                wire.wbuf.extend_from_slice(&data);
                if chunked {
                    wire.wbuf.put_slice(b"\r\n");
                }
                Some(wire.wbuf.len() >= WRITE_HIGH_WATER)
            } else {
                None
            }
        };
        match copied_buffer_full {
            Some(false) => return Ok(()),
            Some(true) => return self.io(Wire::poll_write_buffered).await,
            None => {}
        }
        self.io(|wire, cx| wire.poll_write_bytes(cx, &mut data))
            .await?;
        if chunked {
            lock(&self.shared).wbuf.put_slice(b"\r\n");
        }
        Ok(())
    }

    /// Ends the exchange: the request body handle stops working, and what the handler
    /// left unread is discarded, within bounds. `false`: close instead.
    async fn end_exchange(&self) -> bool {
        {
            let mut wire = lock(&self.shared);
            wire.generation += 1;
            wire.responding = false;
            let expect = std::mem::replace(&mut wire.expect, Continue::None);
            match wire.body {
                BodyState::Done => return true,
                BodyState::Malformed(_) | BodyState::Broken => return false,
                _ if expect == Continue::Refused => return false,
                _ => {}
            }
        }
        let deadline = Instant::now() + self.limits.header_read_timeout;
        let mut drained = 0u64;
        loop {
            {
                let mut wire = lock(&self.shared);
                loop {
                    match wire.decode_body() {
                        Decoded::Data(data) => drained += data.len() as u64,
                        Decoded::Trailers(_) | Decoded::End => return true,
                        Decoded::Failed => {
                            if let BodyState::Malformed(e) = wire.body {
                                debug!(client = %self.client.addr, reason = %e, "http1: malformed request body");
                            }
                            return false;
                        }
                        Decoded::NeedMore => break,
                    }
                }
                if drained.saturating_add(wire.remaining().unwrap_or(0)) > MAX_DRAIN {
                    return false;
                }
            }
            match self.read_more(deadline).await {
                Ok(n) if n > 0 => {}
                _ => return false,
            }
        }
    }

    /// Answers a request this edge refuses, and closes.
    async fn refuse(&self, e: HeadError) {
        debug!(
            client = %self.client.addr,
            status = e.status.as_u16(),
            reason = e.reason,
            "http1: request refused"
        );
        self.queue_error(e.status);
        self.close().await;
    }

    fn queue_error(&self, status: StatusCode) {
        response::encode_error(&mut lock(&self.shared).wbuf, status);
    }

    /// Flushes, shuts the write side down, then lingers: see [`LINGER`]. A client that
    /// stopped reading has had its `send_timeout` already: it is dropped at once.
    async fn close(&self) {
        if lock(&self.shared).stalled || self.io(Wire::poll_shutdown).await.is_err() {
            return;
        }
        let deadline = Instant::now() + LINGER.min(self.limits.idle_timeout);
        let mut discarded = 0;
        while discarded < MAX_LINGER {
            let read = poll_fn(|cx| {
                let mut wire = lock(&self.shared);
                wire.rbuf.clear();
                wire.poll_read_more(cx)
            });
            match timeout_at(deadline, read).await {
                Ok(Ok(n)) if n > 0 => discarded += n,
                _ => return,
            }
        }
    }
}

/// 414 when the request line alone is too long, else 431.
fn too_large(buf: &[u8], max: usize) -> HeadError {
    let request_line = buf.iter().position(|&b| b == b'\n').unwrap_or(buf.len());
    if request_line > max {
        HeadError {
            status: StatusCode::URI_TOO_LONG,
            reason: "request line too long",
        }
    } else {
        HeadError {
            status: StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            reason: "request head too large",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_release_wait_grows_while_requests_come_and_stays_below_the_idle_timeout() {
        let minute = Duration::from_secs(60);
        let s = Duration::from_secs;
        // Requests that came while the wait ran double it, up to 16 s.
        let mut wait = IDLE_RELEASE;
        for expected in [2, 4, 8, 16, 16] {
            wait = next_release_wait(wait, true, false, minute);
            assert_eq!(wait, s(expected));
        }
        // A request found without waiting (pipelined) changes nothing; a wait that ran
        // out starts again from a second.
        assert_eq!(next_release_wait(wait, false, false, minute), s(16));
        assert_eq!(next_release_wait(wait, true, true, minute), IDLE_RELEASE);
        // At most half the idle timeout, so that a release still happens before it...
        assert_eq!(next_release_wait(s(4), true, false, s(10)), s(5));
        assert_eq!(next_release_wait(s(5), true, false, s(10)), s(5));
        // ...but never below the first wait (with a short idle timeout there is none).
        assert_eq!(
            next_release_wait(IDLE_RELEASE, true, false, s(1)),
            IDLE_RELEASE
        );
    }
}
