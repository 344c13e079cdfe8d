//! The body type every protocol edge produces and consumes.
//!
//! Bodies are `http_body::Body` trait objects: HTTP/1, HTTP/2 and HTTP/3 request bodies
//! are adapted to it once, at their protocol edge, and responses flow back the same way,
//! so a filter sees one type whatever the client spoke. Trailers are the body's last
//! frame.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use tokio::time::Instant;

use crate::http1::Deadline;

/// Errors carried by bodies and protocol edges.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A request or response body: data frames, then optionally a trailers frame.
pub type Body = http_body_util::combinators::BoxBody<Bytes, BoxError>;

/// A body with no bytes.
pub fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed()
}

/// A body of exactly these bytes.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

/// A response of `status` alone, its reason phrase as the body. The engine dates it
/// once the filters have run (an `add_header "date"` then stays the only one).
pub fn status_response(status: http::StatusCode) -> http::Response<Body> {
    let mut resp = http::Response::new(full(format!("{status}\n")));
    *resp.status_mut() = status;
    resp
}

/// [`status_response`] with a `Date`, for the protocol layers' own answers, which
/// never pass through the engine.
pub fn dated_status_response(status: http::StatusCode) -> http::Response<Body> {
    let mut resp = status_response(status);
    if let Some(now) = crate::http_date::now() {
        resp.headers_mut().insert(http::header::DATE, now);
    }
    resp
}

/// The body of an HTTP/2 or HTTP/3 request, from its stream.
///
/// A stream that ended with the head (END_STREAM on HEADERS, or the FIN with them: most
/// GETs) gives the empty body, with no wrappers, which a proxy sends upstream at once.
/// Otherwise the length its Content-Length declared is the exact size hint, so that it
/// goes upstream with Content-Length rather than chunked. h2 and nghttp3 already reset a
/// stream whose DATA does not add up to the declared length, so the hint is only ever
/// wrong for a request that fails anyway.
///
/// A client that keeps the body waiting for `idle` (`client_body_timeout`) fails it
/// with [`BodyTimedOut`]: over HTTP/2 and HTTP/3 a stalled stream would otherwise hold
/// its handler, and with it the connection, for ever.
pub fn from_stream<B>(body: B, headers: &http::HeaderMap, idle: Duration) -> Body
where
    B: http_body::Body<Data = Bytes, Error = BoxError> + Send + Sync + 'static,
{
    if body.is_end_stream() {
        return empty();
    }
    let body = Idle {
        inner: body.boxed(),
        idle,
        waiting_since: None,
        deadline: Deadline::default(),
    }
    .boxed();
    let mut values = headers.get_all(http::header::CONTENT_LENGTH).iter();
    let declared = match (values.next(), values.next()) {
        (Some(v), None) => v.to_str().ok().and_then(|v| v.parse::<u64>().ok()),
        _ => None,
    };
    match declared {
        Some(remaining) => DeclaredLength {
            inner: body,
            remaining,
        }
        .boxed(),
        None => body,
    }
}

/// Takes an HTTP/2 or HTTP/3 request's `Expect`, which is this hop's to answer and
/// never goes upstream (nginx drops it too). For `100-continue` with a body to come,
/// the body is wrapped to tell the receiver returned when it is first polled: asking
/// for the body is the moment to send 100 Continue (RFC 9110, 10.1.1), as HTTP/1's
/// body does itself. Without it, clients wait before sending the body (curl: 1 s).
pub fn expect_continue(
    headers: &mut http::HeaderMap,
    body: Body,
) -> (Body, Option<tokio::sync::oneshot::Receiver<()>>) {
    if !headers.contains_key(http::header::EXPECT) {
        return (body, None);
    }
    let asked = crate::session::asks_continue(headers);
    headers.remove(http::header::EXPECT);
    if !asked || http_body::Body::is_end_stream(&body) {
        return (body, None);
    }
    let (body, asking) = on_first_poll(body);
    (body, Some(asking))
}

/// `body`, and a receiver told when it is first polled (closed if it is dropped first).
pub fn on_first_poll(body: Body) -> (Body, tokio::sync::oneshot::Receiver<()>) {
    let (asked, asking) = tokio::sync::oneshot::channel();
    let body = FirstPoll {
        inner: body,
        asked: Some(asked),
    };
    (body.boxed(), asking)
}

/// For a handler's poll: once [`expect_continue`]'s receiver says the body was asked
/// for, calls `send` with the 100 Continue to send, and forgets the receiver. A body
/// dropped unread (the handler answered without it) closes the receiver: no 100 then.
pub fn poll_continue(
    asked: &mut Option<tokio::sync::oneshot::Receiver<()>>,
    cx: &mut Context<'_>,
    send: impl FnOnce(http::Response<()>),
) {
    let Some(receiver) = asked.as_mut() else {
        return;
    };
    if let Poll::Ready(now) = std::future::Future::poll(Pin::new(receiver), cx) {
        *asked = None;
        if now.is_ok() {
            let mut resp = http::Response::new(());
            *resp.status_mut() = http::StatusCode::CONTINUE;
            send(resp);
        }
    }
}

/// The next frame of a response body, unless the client gives up on its stream first
/// (`gone` ready: a reset, STOP_SENDING, the connection's end). Without this a body
/// that waits on a slow upstream holds its task, and the upstream connection, until
/// the next piece or a timeout, however many streams the client has cancelled.
pub async fn next_frame_unless<E>(
    body: &mut Body,
    mut gone: impl FnMut(&mut Context<'_>) -> Poll<E>,
) -> Result<Option<Result<http_body::Frame<Bytes>, BoxError>>, E> {
    std::future::poll_fn(
        |cx| match http_body::Body::poll_frame(Pin::new(&mut *body), cx) {
            Poll::Ready(frame) => Poll::Ready(Ok(frame)),
            Poll::Pending => gone(cx).map(Err),
        },
    )
    .await
}

/// A body that tells when it is first polled.
struct FirstPoll {
    inner: Body,
    asked: Option<tokio::sync::oneshot::Sender<()>>,
}

impl http_body::Body for FirstPoll {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, BoxError>>> {
        if let Some(asked) = self.asked.take() {
            let _ = asked.send(());
        }
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// `body` without the trailer fields whose names have a `_`, as
/// [`remove_underscored`](crate::session::remove_underscored) does for the head.
pub fn without_underscored_trailers(body: Body) -> Body {
    if http_body::Body::is_end_stream(&body) {
        return body;
    }
    NoUnderscoredTrailers { inner: body }.boxed()
}

struct NoUnderscoredTrailers {
    inner: Body,
}

impl http_body::Body for NoUnderscoredTrailers {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, BoxError>>> {
        let frame = std::task::ready!(Pin::new(&mut self.inner).poll_frame(cx));
        Poll::Ready(frame.map(|frame| {
            frame.map(|frame| match frame.into_trailers() {
                Ok(mut trailers) => {
                    crate::session::remove_underscored(&mut trailers);
                    http_body::Frame::trailers(trailers)
                }
                Err(frame) => frame,
            })
        }))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// A request body's error when the client sent nothing more for `client_body_timeout`:
/// a proxy answers it with 408.
#[derive(Debug, thiserror::Error)]
#[error("request body timed out (client_body_timeout)")]
pub struct BodyTimedOut;

/// A body that fails once it has kept its reader waiting for `idle`.
struct Idle {
    inner: Body,
    idle: Duration,
    /// When the reader started waiting (the last poll that found nothing, after the
    /// last frame): time the reader spends elsewhere does not count.
    waiting_since: Option<Instant>,
    deadline: Deadline,
}

impl http_body::Body for Idle {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, BoxError>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            self.waiting_since = None;
            return Poll::Ready(frame);
        }
        let since = *self.waiting_since.get_or_insert_with(Instant::now);
        let at = since + self.idle;
        std::task::ready!(self.deadline.poll_expired(cx, at));
        tracing::debug!("request body: nothing from the client for {:?}", self.idle);
        Poll::Ready(Some(Err(Box::new(BodyTimedOut))))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

struct DeclaredLength {
    inner: Body,
    remaining: u64,
}

impl http_body::Body for DeclaredLength {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, BoxError>>> {
        let frame = std::task::ready!(Pin::new(&mut self.inner).poll_frame(cx));
        if let Some(data) = frame.as_ref().and_then(|f| f.as_ref().ok()?.data_ref()) {
            self.remaining = self.remaining.saturating_sub(data.len() as u64);
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.remaining)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use futures_util::StreamExt;

    const IDLE: Duration = Duration::from_secs(60);

    /// A body that never comes fails after `idle`; one that comes in time does not,
    /// however long its reader took between frames. No I/O: on tokio's paused clock,
    /// which a loaded machine cannot stretch.
    #[tokio::test(start_paused = true)]
    async fn a_stalled_body_fails_after_idle() {
        let idle = Duration::from_millis(200);
        let headers = http::HeaderMap::new();
        let never = http_body_util::StreamBody::new(futures_util::stream::pending::<
            Result<http_body::Frame<Bytes>, BoxError>,
        >());
        let mut body = from_stream(never, &headers, idle);
        let started = Instant::now();
        let err = body.frame().await.unwrap().unwrap_err();
        assert!(err.is::<BodyTimedOut>(), "{err}");
        let took = started.elapsed();
        assert!(took >= idle && took < idle * 3, "{took:?}");

        // "a" after 150 ms, then "b" as soon as it is asked for.
        let late = futures_util::stream::iter(["a", "b"]).then(|s| async move {
            if s == "a" {
                tokio::time::sleep(Duration::from_millis(150)).await;
            }
            Ok::<_, BoxError>(http_body::Frame::data(Bytes::from(s)))
        });
        let late = http_body_util::StreamBody::new(Box::pin(late));
        let mut body = from_stream(late, &headers, idle);
        assert!(body.frame().await.unwrap().is_ok());
        // The reader is away longer than `idle`: that is not the client's waiting.
        tokio::time::sleep(idle * 2).await;
        assert!(body.frame().await.unwrap().is_ok());
        assert!(body.frame().await.is_none());
    }

    #[tokio::test]
    async fn declared_length_is_the_size_hint_of_a_stream_not_ended() {
        let mut headers = http::HeaderMap::new();
        headers.insert(http::header::CONTENT_LENGTH, "5".parse().unwrap());
        let mut body = from_stream(full("hello"), &headers, IDLE);
        assert_eq!(http_body::Body::size_hint(&body).exact(), Some(5));
        assert_eq!(
            body.frame().await.unwrap().unwrap().into_data().unwrap(),
            "hello"
        );
        assert_eq!(http_body::Body::size_hint(&body).exact(), Some(0));
        // Two values, or one that is not a number: the body's own hint.
        headers.append(http::header::CONTENT_LENGTH, "5".parse().unwrap());
        let body = from_stream(full("hello!"), &headers, IDLE);
        assert_eq!(http_body::Body::size_hint(&body).exact(), Some(6));
        headers.insert(http::header::CONTENT_LENGTH, "x".parse().unwrap());
        let body = from_stream(full("hello!"), &headers, IDLE);
        assert_eq!(http_body::Body::size_hint(&body).exact(), Some(6));
        // A stream that ended with its head: the empty body, whatever was declared.
        let body = from_stream(empty(), &headers, IDLE);
        assert!(http_body::Body::is_end_stream(&body));
    }

    #[tokio::test]
    async fn underscored_trailers_are_dropped() {
        let mut trailers = http::HeaderMap::new();
        trailers.insert("x_sneaky", "1".parse().unwrap());
        trailers.insert("x-sum", "2".parse().unwrap());
        let frames = futures_util::stream::iter([
            Ok::<_, BoxError>(http_body::Frame::data(Bytes::from("abc"))),
            Ok(http_body::Frame::trailers(trailers)),
        ]);
        let headers = [(http::header::CONTENT_LENGTH, "3".parse().unwrap())];
        let inner = from_stream(
            http_body_util::StreamBody::new(frames),
            &headers.into_iter().collect(),
            IDLE,
        );
        let body = without_underscored_trailers(inner);
        assert_eq!(http_body::Body::size_hint(&body).exact(), Some(3));
        let got = body.collect().await.unwrap();
        let trailers = got.trailers().unwrap().clone();
        assert_eq!(got.to_bytes(), "abc");
        assert_eq!(trailers.len(), 1);
        assert_eq!(trailers["x-sum"], "2");
    }

    /// `Expect` always goes; a 100 is due when `100-continue` is among its members, on
    /// any line, and only once the body is asked for.
    #[tokio::test]
    async fn expect_continue_reads_the_whole_list() {
        for lines in [
            &["foo", "100-Continue"][..],
            &["bar , 100-continue"],
            &["foo"],
        ] {
            let mut headers = http::HeaderMap::new();
            for line in lines {
                headers.append(http::header::EXPECT, line.parse().unwrap());
            }
            let (mut body, asking) = expect_continue(&mut headers, full("x"));
            assert!(headers.is_empty(), "{lines:?}");
            let Some(mut asking) = asking else {
                assert_eq!(lines, &["foo"]);
                continue;
            };
            assert!(asking.try_recv().is_err(), "{lines:?}: not asked yet");
            assert!(body.frame().await.unwrap().is_ok());
            assert!(asking.try_recv().is_ok(), "{lines:?}");
        }
    }
}
