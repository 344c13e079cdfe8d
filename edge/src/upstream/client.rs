//! One HTTP/1.1 exchange over a [`Connection`]: the request head and body go out (the
//! body streamed frame by frame, with Content-Length or chunked framing), then the
//! response head is read (1xx interim responses skipped) and the response body comes
//! back as a streaming [`Body`] that checks the connection back into the pool once it
//! has read the whole response of a keep-alive exchange.
//!
//! The response head is watched for while the request goes out: an upstream that
//! answers early (a 413 before reading an upload) is answered with, and its connection
//! is not reused.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use std::future::Future;

use http::{HeaderMap, Method};
use http_body::{Frame, SizeHint};
use http_body_util::BodyExt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

use super::conn::Connection;
use super::{Timeouts, POOL};
use crate::body::{Body, BoxError};
use crate::http1::chunked::{Chunk, ChunkedDecoder};
use crate::http1::head::{find_head_end, parse_response_head, ResponseHead};
use crate::http1::response::{encode_chunk_size, encode_end, Framing};
use crate::http1::Deadline;

/// Largest response head accepted (status line and headers).
const MAX_HEAD: usize = 64 * 1024;
/// Largest trailer section accepted on a chunked response.
const MAX_TRAILERS: usize = 16 * 1024;
/// Bytes reserved in the read buffer before each read.
const READ_SIZE: usize = 16 * 1024;
/// Response heads and body pieces smaller than this are copied out of the read buffer
/// rather than shared with it. A shared piece pins the whole buffer until the client
/// has it (a head until its frame is encoded, a body piece over HTTP/3 until the client
/// acknowledges it), so the connection's next read would allocate a fresh `READ_SIZE`
/// buffer: for small pieces, copying is cheaper in both time and memory.
const COPY_BELOW: usize = 4 * 1024;

/// The next `n` bytes of `buf`, as a head or body piece.
fn take_piece(buf: &mut BytesMut, n: usize) -> Bytes {
    if n < COPY_BELOW {
        let piece = Bytes::copy_from_slice(&buf[..n]);
        buf.advance(n);
        piece
    } else {
        buf.split_to(n).freeze()
    }
}

/// Why an exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// Nothing of the request reached the socket: it may be sent again.
    #[error("sending the request head: {0}")]
    HeadNotSent(io::Error),
    #[error("timed out {0}")]
    Timeout(&'static str),
    /// The peer closed the connection (or reset it) before any byte of the response.
    #[error("connection closed before the response")]
    ClosedEarly,
    #[error("malformed response: {0}")]
    Malformed(&'static str),
    /// The response head is over [`MAX_HEAD`] (nginx's words).
    #[error("upstream sent too big header")]
    HeadTooLarge,
    #[error("{0}")]
    Io(io::Error),
    /// The client's request body failed (client gone, over the size limit).
    #[error("request body: {0}")]
    ClientBody(BoxError),
    /// The client's body did not match the length announced upstream (the client's
    /// fault, as [`Failure::ClientBody`]).
    #[error("request body length differs from its declared length")]
    BodyLength,
    /// A server failed so, and every server of its upstream not yet tried is marked
    /// unavailable.
    #[error("{0}: no live upstreams")]
    NoLive(Box<Failure>),
}

async fn timed<T>(
    limit: Duration,
    what: &'static str,
    f: impl std::future::Future<Output = io::Result<T>>,
) -> Result<T, Failure> {
    match tokio::time::timeout(limit, f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) if is_closed(&e) => Err(Failure::ClosedEarly),
        Ok(Err(e)) => Err(Failure::Io(e)),
        Err(_) => Err(Failure::Timeout(what)),
    }
}

fn is_closed(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::UnexpectedEof
    )
}

/// How far an exchange got with the client's request body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BodyProgress {
    /// Never asked for: the request can be sent again.
    #[default]
    Untouched,
    /// Waiting for the client's next piece: a failure of the peer meanwhile may be the
    /// slow client's doing (the peer gave up waiting for the body).
    AwaitingClient,
    /// Asked for, and not waiting for the client.
    Sending,
}

/// Sends the request: `head` (already encoded for `framing`), then `body`, keeping
/// `*progress` up to date (once the body was asked for, the request cannot be sent
/// again).
async fn send<W: AsyncWrite + Unpin>(
    wr: &mut W,
    head: &[u8],
    framing: Framing,
    body: &mut Body,
    timeouts: &Timeouts,
    progress: &mut BodyProgress,
) -> Result<(), Failure> {
    match tokio::time::timeout(timeouts.send, wr.write_all(head)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(Failure::HeadNotSent(e)),
        Err(_) => return Err(Failure::Timeout("sending the request head")),
    }
    if framing == Framing::None || framing == Framing::Close {
        return Ok(());
    }
    let mut left = match framing {
        Framing::Length(n) => Some(n),
        _ => None,
    };
    let mut framing_buf = BytesMut::new();
    let mut trailers: Option<HeaderMap> = None;
    loop {
        if left == Some(0) && http_body::Body::is_end_stream(body) {
            break;
        }
        // With all its Content-Length sent, the peer has the whole request: only the
        // client's end of stream (or an excess byte) is awaited, and a failure of the
        // peer meanwhile is the peer's own.
        if left != Some(0) {
            *progress = BodyProgress::AwaitingClient;
        }
        let frame = body.frame().await;
        *progress = BodyProgress::Sending;
        let Some(frame) = frame else {
            break;
        };
        let frame = frame.map_err(Failure::ClientBody)?;
        let frame = match frame.into_data() {
            Ok(data) => data,
            Err(frame) => {
                if let Ok(t) = frame.into_trailers() {
                    trailers = Some(t);
                }
                continue;
            }
        };
        if frame.is_empty() {
            continue;
        }
        match &mut left {
            Some(n) => {
                *n = n
                    .checked_sub(frame.len() as u64)
                    .ok_or(Failure::BodyLength)?;
                timed(
                    timeouts.send,
                    "sending the request body",
                    wr.write_all(&frame),
                )
                .await?;
            }
            None => {
                framing_buf.clear();
                encode_chunk_size(&mut framing_buf, frame.len());
                let mut out = framing_buf
                    .split()
                    .freeze()
                    .chain(frame)
                    .chain(&b"\r\n"[..]);
                timed(
                    timeouts.send,
                    "sending the request body",
                    wr.write_all_buf(&mut out),
                )
                .await?;
            }
        }
    }
    match left {
        Some(0) => Ok(()),
        Some(_) => Err(Failure::BodyLength),
        None => {
            framing_buf.clear();
            encode_end(&mut framing_buf, trailers.as_ref());
            timed(
                timeouts.send,
                "sending the request body",
                wr.write_all(&framing_buf),
            )
            .await
        }
    }
}

/// Reads the final response head into `buf`, skipping 1xx interim responses (a 101 is
/// refused: no upgrade is ever asked for upstream), each of which sets `interim`. No
/// timeout of its own.
async fn read_head<R: AsyncRead + Unpin>(
    rd: &mut R,
    buf: &mut BytesMut,
    method: &Method,
    interim: &AtomicBool,
) -> Result<ResponseHead, Failure> {
    let mut scanned = 0;
    let mut got_any = false;
    loop {
        if let Some(end) = find_head_end(buf, scanned) {
            // The buffer doubles as it fills: a head up to twice the limit can come
            // whole in one read, before the check below ever sees it.
            if end > MAX_HEAD {
                return Err(Failure::HeadTooLarge);
            }
            let head = take_piece(buf, end);
            scanned = 0;
            let parsed =
                parse_response_head(head, method).map_err(|e| Failure::Malformed(e.reason))?;
            if parsed.parts.status == http::StatusCode::SWITCHING_PROTOCOLS {
                return Err(Failure::Malformed(
                    "101 Switching Protocols was not asked for",
                ));
            }
            if parsed.parts.status.is_informational() {
                interim.store(true, Ordering::Relaxed);
                continue;
            }
            return Ok(parsed);
        }
        if buf.len() > MAX_HEAD {
            return Err(Failure::HeadTooLarge);
        }
        scanned = buf.len().saturating_sub(2);
        buf.reserve(READ_SIZE);
        let n = match rd.read_buf(buf).await {
            Ok(n) => n,
            Err(e) if is_closed(&e) && !got_any => return Err(Failure::ClosedEarly),
            Err(e) if is_closed(&e) => {
                return Err(Failure::Malformed("connection closed in the response head"))
            }
            Err(e) => return Err(Failure::Io(e)),
        };
        if n == 0 {
            return Err(if got_any || !buf.is_empty() {
                Failure::Malformed("connection closed in the response head")
            } else {
                Failure::ClosedEarly
            });
        }
        got_any = true;
    }
}

/// The response head of an exchange, and whether the whole request went out.
pub struct Answer {
    pub head: ResponseHead,
    /// False when the upstream answered before the request body was all sent (an
    /// early 413, say): the connection cannot be reused.
    pub request_complete: bool,
}

/// Sends the request (`head`, already encoded for `framing`, then `body`) while
/// watching for the response head, which may come before the body is all sent. The
/// read timeout applies from the end of the request to the response head, restarting
/// at each interim response; a send timeout ends the exchange at once. `*progress` says
/// how far the request body got.
pub async fn exchange(
    conn: &mut Connection,
    head: &[u8],
    framing: Framing,
    body: &mut Body,
    timeouts: &Timeouts,
    method: &Method,
    progress: &mut BodyProgress,
) -> Result<Answer, Failure> {
    let (mut rd, mut wr) = conn.tcp.split();
    let interim = AtomicBool::new(false);
    let reading = read_head(&mut rd, &mut conn.buf, method, &interim);
    tokio::pin!(reading);
    let sent = {
        let sending = send(&mut wr, head, framing, body, timeouts, progress);
        tokio::pin!(sending);
        tokio::select! {
            biased;
            sent = &mut sending => sent,
            answer = &mut reading => {
                return answer.map(|head| Answer { head, request_complete: false });
            }
        }
    };
    match sent {
        // The client's body failed, stalled or broke its length: waiting for an answer
        // the upstream cannot give before the body's end would hold the request for the
        // read timeout.
        Err(e @ (Failure::ClientBody(_) | Failure::BodyLength)) => return Err(e),
        // The upstream stopped taking the request: 504 now, as nginx, not a read
        // timeout later. (A failed connection is still read: an early answer may be in
        // its buffer, and reading a dead connection ends at once.)
        Err(e @ Failure::Timeout(_)) => return Err(e),
        _ => {}
    }
    let answer = read_timed(reading, timeouts.read, &interim).await;
    match (sent, answer) {
        (Ok(()), Some(answer)) => answer.map(|head| Answer {
            head,
            request_complete: true,
        }),
        (Ok(()), None) => Err(Failure::Timeout("reading the response head")),
        // Sending failed, but the upstream may have answered before it closed.
        (Err(_), Some(Ok(head))) => Ok(Answer {
            head,
            request_complete: false,
        }),
        (Err(e), _) => Err(e),
    }
}

/// `reading`'s output, or `None` once it made no progress for `limit`: as nginx's read
/// timeout, which runs between reads, an interim response (`interim` set) restarts it,
/// so that an upstream sending `102 Processing` now and then is waited for.
async fn read_timed<F: Future>(
    mut reading: Pin<&mut F>,
    limit: Duration,
    interim: &AtomicBool,
) -> Option<F::Output> {
    let mut timer = std::pin::pin!(tokio::time::sleep(limit));
    std::future::poll_fn(|cx| {
        if let Poll::Ready(out) = reading.as_mut().poll(cx) {
            return Poll::Ready(Some(out));
        }
        // A load first: a swap is a locked instruction on every poll of every request.
        if interim.load(Ordering::Relaxed) {
            interim.store(false, Ordering::Relaxed);
            timer.as_mut().reset(Instant::now() + limit);
        }
        timer.as_mut().poll(cx).map(|()| None)
    })
    .await
}

/// Where the response body stands.
enum Framed {
    Length(u64),
    Chunked(ChunkedDecoder),
    Close,
}

/// The response body being read from its connection.
struct Reader {
    conn: Connection,
    peer: SocketAddr,
    framed: Framed,
    /// The connection goes back to the pool once the body is complete.
    reuse: Option<(SocketAddr, usize)>,
    read_timeout: Duration,
    /// The read timeout, from the start of the read that waits (`wait_until`).
    deadline: Deadline,
    wait_until: Option<Instant>,
}

enum Step {
    Data(Bytes),
    End(Option<HeaderMap>),
}

#[derive(Debug, thiserror::Error)]
#[error("upstream response body: {0}")]
struct BodyError(String);

impl Reader {
    /// The next piece of the body from the bytes already read, if there is one.
    fn decode(&mut self) -> Option<Result<Step, BoxError>> {
        let buf = &mut self.conn.buf;
        match &mut self.framed {
            Framed::Length(0) => Some(Ok(Step::End(None))),
            Framed::Length(left) => {
                if buf.is_empty() {
                    return None;
                }
                let n = (*left).min(buf.len() as u64);
                *left -= n;
                Some(Ok(Step::Data(take_piece(buf, n as usize))))
            }
            Framed::Close => (!buf.is_empty()).then(|| Ok(Step::Data(take_piece(buf, buf.len())))),
            Framed::Chunked(decoder) => match decoder.decode(buf) {
                Ok(Chunk::Data { skip, len }) => {
                    buf.advance(skip);
                    Some(Ok(Step::Data(take_piece(buf, len))))
                }
                Ok(Chunk::Incomplete { skip }) => {
                    buf.advance(skip);
                    None
                }
                Ok(Chunk::End { consumed, trailers }) => {
                    buf.advance(consumed);
                    Some(Ok(Step::End(trailers)))
                }
                Err(e) => Some(Err(Box::new(BodyError(e.to_string())))),
            },
        }
    }

    /// Reads more bytes; a read that waits longer than the read timeout fails.
    fn poll_read_more(&mut self, cx: &mut Context<'_>) -> Poll<Result<usize, BoxError>> {
        self.conn.buf.reserve(READ_SIZE);
        // `read_buf`'s future holds no state between polls: one is made per poll.
        match std::pin::pin!(self.conn.tcp.read_buf(&mut self.conn.buf)).poll(cx) {
            Poll::Ready(Ok(n)) => {
                self.wait_until = None;
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(Box::new(BodyError(e.to_string())))),
            Poll::Pending => {
                let at = *self
                    .wait_until
                    .get_or_insert_with(|| Instant::now() + self.read_timeout);
                std::task::ready!(self.deadline.poll_expired(cx, at));
                tracing::warn!(target: "upstream", peer = %self.peer, "timed out reading the response body");
                Poll::Ready(Err(Box::new(BodyError("read timeout".into()))))
            }
        }
    }

    fn poll_step(&mut self, cx: &mut Context<'_>) -> Poll<Result<Step, BoxError>> {
        loop {
            if let Some(step) = self.decode() {
                return Poll::Ready(step);
            }
            if std::task::ready!(self.poll_read_more(cx))? == 0 {
                return Poll::Ready(match self.framed {
                    Framed::Close => Ok(Step::End(None)),
                    _ => Err(Box::new(BodyError("connection closed mid-body".into()))),
                });
            }
        }
    }

    /// The body is complete: a keep-alive connection with nothing left over goes back.
    fn finish(self) {
        if let Some((peer, keepalive)) = self.reuse {
            if self.conn.buf.is_empty() {
                POOL.checkin_capped(peer, self.conn, keepalive);
            }
        }
    }
}

/// The response body of an exchange with `peer`; `reuse` says where to check the
/// connection in when it is complete (`None`: it closes).
pub fn response_body(
    conn: Connection,
    peer: SocketAddr,
    framing: Framing,
    reuse: Option<(SocketAddr, usize)>,
    read_timeout: Duration,
) -> Body {
    let framed = match framing {
        Framing::None | Framing::Length(0) => {
            let reader = Reader {
                conn,
                peer,
                framed: Framed::Length(0),
                reuse,
                read_timeout,
                deadline: Deadline::default(),
                wait_until: None,
            };
            reader.finish();
            return crate::body::empty();
        }
        Framing::Length(n) => Framed::Length(n),
        Framing::Chunked => Framed::Chunked(ChunkedDecoder::new(MAX_TRAILERS)),
        Framing::Close => Framed::Close,
    };
    let hint = match framing {
        Framing::Length(n) => SizeHint::with_exact(n),
        _ => SizeHint::new(),
    };
    let reader = Reader {
        conn,
        peer,
        framed,
        reuse,
        read_timeout,
        deadline: Deadline::default(),
        wait_until: None,
    };
    UpstreamBody {
        reader: Some(reader),
        hint,
        ended: false,
    }
    .boxed()
}

/// The response body, with the size hint of the response's Content-Length (so every
/// protocol edge can announce the length).
struct UpstreamBody {
    /// `None` once the body is complete (its connection went back or closed).
    reader: Option<Reader>,
    hint: SizeHint,
    ended: bool,
}

impl http_body::Body for UpstreamBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let Some(reader) = this.reader.as_mut() else {
            this.ended = true;
            return Poll::Ready(None);
        };
        let frame = match std::task::ready!(reader.poll_step(cx)) {
            Ok(Step::Data(data)) => {
                if matches!(reader.framed, Framed::Length(0)) {
                    // The last bytes: the connection goes back now, not when (or if)
                    // the body is polled once more.
                    if let Some(reader) = this.reader.take() {
                        reader.finish();
                    }
                }
                if let Some(exact) = this.hint.exact() {
                    this.hint = SizeHint::with_exact(exact.saturating_sub(data.len() as u64));
                }
                Some(Ok(Frame::data(data)))
            }
            Ok(Step::End(trailers)) => {
                if let Some(reader) = this.reader.take() {
                    reader.finish();
                }
                trailers.map(|t| Ok(Frame::trailers(t)))
            }
            Err(e) => {
                this.reader = None;
                Some(Err(e))
            }
        };
        if !matches!(frame, Some(Ok(_))) {
            this.ended = true;
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.ended || self.hint.exact() == Some(0)
    }

    fn size_hint(&self) -> SizeHint {
        self.hint
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_pieces_leave_the_read_buffer_reusable() {
        let mut buf = BytesMut::with_capacity(READ_SIZE);
        let start = buf.as_ptr();
        buf.extend_from_slice(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello");
        let head = take_piece(&mut buf, 38);
        let body = take_piece(&mut buf, 5);
        assert_eq!(&head[..], b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n");
        assert_eq!(&body[..], b"hello");
        // With head and body still held (as a client that has not acknowledged them
        // would), the next read reuses the same memory.
        buf.reserve(READ_SIZE);
        assert_eq!(buf.as_ptr(), start);
    }

    /// A head over the limit is refused even when it arrives whole in one read, which
    /// the doubling read buffer allows up to twice the limit.
    #[tokio::test]
    async fn a_head_over_the_limit_is_refused_even_in_one_read() {
        let mut head = b"HTTP/1.1 200 OK\r\n".to_vec();
        for i in 0..10 {
            head.extend_from_slice(format!("x-h{i}: {}\r\n", "a".repeat(10_000)).as_bytes());
        }
        head.extend_from_slice(b"content-length: 0\r\n\r\n");
        assert!(head.len() > MAX_HEAD && head.len() < 2 * MAX_HEAD);
        let mut buf = BytesMut::new();
        let interim = AtomicBool::new(false);
        let got = read_head(&mut &head[..], &mut buf, &Method::GET, &interim).await;
        assert!(matches!(got, Err(Failure::HeadTooLarge)), "{:?}", got.err());
        // Just under the limit, the same shape passes.
        let mut small = head[..17].to_vec();
        small.extend_from_slice(format!("x-h: {}\r\n\r\n", "a".repeat(MAX_HEAD - 26)).as_bytes());
        assert_eq!(small.len(), MAX_HEAD);
        let got = read_head(
            &mut &small[..],
            &mut BytesMut::new(),
            &Method::GET,
            &interim,
        )
        .await;
        assert!(got.is_ok(), "{:?}", got.err());
    }

    /// A client whose whole Content-Length is in but whose end of stream is still to
    /// come (an HTTP/2 client's empty DATA frame with END_STREAM, later) is not what the
    /// exchange waits for: a peer that then closes without answering fails on its own
    /// account (counted toward `max_fails`), not while awaiting the client.
    #[tokio::test]
    async fn a_failure_after_the_whole_length_is_sent_is_the_peers() {
        /// "x", then nothing more, ever.
        struct LengthThenPending(bool);
        impl http_body::Body for LengthThenPending {
            type Data = Bytes;
            type Error = BoxError;
            fn poll_frame(
                mut self: Pin<&mut Self>,
                _cx: &mut Context<'_>,
            ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
                if std::mem::replace(&mut self.0, true) {
                    return Poll::Pending;
                }
                Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b"x")))))
            }
        }
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let head = b"PUT / HTTP/1.1\r\nhost: o\r\ncontent-length: 1\r\n\r\n";
        // Reads the whole request, then closes without answering.
        let origin = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let mut got = Vec::new();
            let mut buf = [0; 256];
            while got.len() < head.len() + 1 {
                match std::io::Read::read(&mut conn, &mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                }
            }
        });
        let mut conn = Connection::connect(addr, Duration::from_secs(5))
            .await
            .unwrap();
        let mut body = Body::new(LengthThenPending(false));
        let mut progress = BodyProgress::Untouched;
        let got = exchange(
            &mut conn,
            head,
            Framing::Length(1),
            &mut body,
            &Timeouts::default(),
            &Method::PUT,
            &mut progress,
        )
        .await;
        origin.join().unwrap();
        assert!(got.is_err(), "answered");
        assert_eq!(progress, BodyProgress::Sending);
    }

    /// An upstream that stops reading the request body is answered 504 when
    /// `proxy_send_timeout` runs out, not a `proxy_read_timeout` later.
    #[tokio::test(start_paused = true)]
    async fn a_send_timeout_ends_the_exchange_at_once() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        // Connected outside the runtime: with paused time, a connect that is not
        // ready at once could see its timeout jump ahead.
        let tcp = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        tcp.set_nonblocking(true).unwrap();
        // Accepted and never read: the socket buffers fill, then the writes stall.
        let _origin = listener.accept().unwrap();
        let mut conn = Connection {
            tcp: tokio::net::TcpStream::from_std(tcp).unwrap(),
            buf: BytesMut::new(),
        };
        let size = 64 << 20;
        let mut body = crate::body::full(vec![b'x'; size]);
        let timeouts = Timeouts {
            send: Duration::from_secs(2),
            read: Duration::from_secs(60),
            ..Timeouts::default()
        };
        let head = format!("POST / HTTP/1.1\r\nhost: o\r\ncontent-length: {size}\r\n\r\n");
        let started = Instant::now();
        let got = exchange(
            &mut conn,
            head.as_bytes(),
            Framing::Length(size as u64),
            &mut body,
            &timeouts,
            &Method::POST,
            &mut BodyProgress::Untouched,
        )
        .await;
        let took = started.elapsed();
        assert!(
            matches!(got, Err(Failure::Timeout("sending the request body"))),
            "{:?}",
            got.err()
        );
        assert!(took < Duration::from_secs(3), "answered after {took:?}");
    }

    /// The read timeout runs between reads of the response head, as nginx's: an
    /// upstream that sends `102 Processing` more often than the timeout (every 200 ms,
    /// the timeout 600 ms) is waited for until its answer (after 1.2 s), not given up.
    #[tokio::test]
    async fn interim_responses_restart_the_read_timeout() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let origin = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let _ = std::io::Read::read(&mut conn, &mut [0; 256]).unwrap();
            for _ in 0..6 {
                std::io::Write::write_all(&mut conn, b"HTTP/1.1 102 Processing\r\n\r\n").unwrap();
                std::thread::sleep(Duration::from_millis(200));
            }
            std::io::Write::write_all(&mut conn, b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                .unwrap();
        });
        let mut conn = Connection::connect(addr, Duration::from_secs(5))
            .await
            .unwrap();
        let timeouts = Timeouts {
            read: Duration::from_millis(600),
            ..Timeouts::default()
        };
        let started = Instant::now();
        let got = exchange(
            &mut conn,
            b"GET / HTTP/1.1\r\nhost: o\r\n\r\n",
            Framing::None,
            &mut crate::body::empty(),
            &timeouts,
            &Method::GET,
            &mut BodyProgress::Untouched,
        )
        .await;
        let took = started.elapsed();
        origin.join().unwrap();
        let answer = got.unwrap_or_else(|e| panic!("after {took:?}: {e}"));
        assert_eq!(answer.head.parts.status, http::StatusCode::OK);
        assert!(took >= Duration::from_millis(1200), "{took:?}");
    }

    #[test]
    fn large_pieces_are_shared_not_copied() {
        let mut buf = BytesMut::with_capacity(2 * COPY_BELOW);
        buf.extend_from_slice(&[7; 2 * COPY_BELOW]);
        let start = buf.as_ptr();
        let piece = take_piece(&mut buf, COPY_BELOW);
        assert_eq!(piece.as_ptr(), start);
        assert_eq!(piece.len(), COPY_BELOW);
        assert_eq!(buf.len(), COPY_BELOW);
    }
}
