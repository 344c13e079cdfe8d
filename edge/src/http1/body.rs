//! The request body handed to handlers: an `http_body::Body` that reads the connection
//! only when polled, so an upload moves at the pace its consumer reads it (TCP
//! back-pressure reaches the client) and is never held whole in memory.

use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;

use super::wire::{lock, BodyState, Continue, Deadline, Decoded, Shared, CONTINUE};
use crate::body::BoxError;

pub(super) struct RequestBody<IO> {
    shared: Shared<IO>,
    /// The request this body belongs to: once the connection moved on, it reads nothing.
    generation: u64,
    /// A client that stops sending mid-body for this long fails the body.
    idle: Duration,
    /// The idle timeout, from the start of the read that waits (`wait_until`).
    deadline: Deadline,
    wait_until: Option<Instant>,
}

impl<IO> RequestBody<IO> {
    pub fn new(shared: Shared<IO>, generation: u64, idle: Duration) -> Self {
        RequestBody {
            shared,
            generation,
            idle,
            deadline: Deadline::default(),
            wait_until: None,
        }
    }
}

fn failure(state: &BodyState) -> BoxError {
    match state {
        BodyState::Malformed(e) => Box::new(*e),
        _ => "the client connection failed before the end of the request body".into(),
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> http_body::Body for RequestBody<IO> {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let mut wire = lock(&this.shared);
        if wire.generation != this.generation {
            return Poll::Ready(Some(Err(
                "request body read after its exchange ended".into()
            )));
        }
        // The client waits for this before sending the body: asking for the body is the
        // moment to send it (RFC 9110, 10.1.1).
        if wire.expect == Continue::Wanted {
            wire.wbuf.extend_from_slice(CONTINUE);
            wire.expect = Continue::None;
        }
        // Reaching the end of this block: waiting for the client, which fails the body
        // once the wait has lasted `idle` (the read that waits and those after it, until
        // bytes come).
        'wait: {
            // Before the response starts, the write buffer can only hold that 100
            // Continue. A client that takes nothing (its earlier answers fill the
            // socket) waits here: it cannot send the body it waits to be asked for.
            if !wire.responding && !wire.wbuf.is_empty() {
                match wire.poll_flush(cx) {
                    Poll::Ready(Ok(())) => this.wait_until = None,
                    Poll::Ready(Err(e)) => {
                        wire.body = BodyState::Broken;
                        return Poll::Ready(Some(Err(e.into())));
                    }
                    Poll::Pending => break 'wait,
                }
            }
            loop {
                match wire.decode_body() {
                    Decoded::Data(data) => return Poll::Ready(Some(Ok(Frame::data(data)))),
                    Decoded::Trailers(t) => return Poll::Ready(Some(Ok(Frame::trailers(t)))),
                    Decoded::End => return Poll::Ready(None),
                    Decoded::Failed => return Poll::Ready(Some(Err(failure(&wire.body)))),
                    Decoded::NeedMore => match wire.poll_read_more(cx) {
                        Poll::Pending => break 'wait,
                        Poll::Ready(Ok(0)) => {
                            wire.body = BodyState::Broken;
                            return Poll::Ready(Some(Err(failure(&wire.body))));
                        }
                        Poll::Ready(Ok(_)) => this.wait_until = None,
                        Poll::Ready(Err(e)) => {
                            wire.body = BodyState::Broken;
                            return Poll::Ready(Some(Err(e.into())));
                        }
                    },
                }
            }
        }
        let at = *this
            .wait_until
            .get_or_insert_with(|| Instant::now() + this.idle);
        ready!(this.deadline.poll_expired(cx, at));
        wire.body = BodyState::Broken;
        Poll::Ready(Some(Err(Box::new(crate::body::BodyTimedOut))))
    }

    fn is_end_stream(&self) -> bool {
        let wire = lock(&self.shared);
        wire.generation == self.generation && matches!(wire.body, BodyState::Done)
    }

    fn size_hint(&self) -> SizeHint {
        let wire = lock(&self.shared);
        match wire.remaining() {
            Some(n) if wire.generation == self.generation => SizeHint::with_exact(n),
            _ => SizeHint::default(),
        }
    }
}
