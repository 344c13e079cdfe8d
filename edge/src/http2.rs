//! The HTTP/2 edge, on the `h2` crate: requests become [`Session`]s, responses go back
//! with HTTP/2 flow control, trailers, and RST_STREAM both ways.

use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::Body as _;
use http_body::Frame;
use tokio::io::{AsyncRead, AsyncWrite};
use tracing::debug;

use crate::body::{dated_status_response, next_frame_unless, Body, BoxError};
use crate::limits::{Activity, Limits, LINGER, MAX_LINGER};
use crate::session::{
    frame_response_head, remove_connection_specific, ClientInfo, Handler, Session,
};

/// A client's request body as an `http_body::Body`. Received bytes are released to h2's
/// flow control as the handler consumes them, so a slow handler slows its stream.
struct RecvBody {
    /// `None` once handed to [`linger`].
    recv: Option<h2::RecvStream>,
    data_done: bool,
    /// How long the unread rest is discarded for once the body is dropped.
    linger: Duration,
}

impl Drop for RecvBody {
    /// A body dropped before its end (the answer came early): the stream would end in
    /// RST_STREAM as soon as the answer is out, often with the rest of a small body
    /// already on its way, and curl 7.88 then drops the complete answer it has.
    fn drop(&mut self) {
        let Some(recv) = self
            .recv
            .take()
            .filter(|r| !self.data_done && !r.is_end_stream())
        else {
            return;
        };
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(linger(recv, self.linger));
        }
    }
}

/// Reads and discards what is left of a request body, for `time` and
/// [`MAX_LINGER`] bytes at most; then the stream may be reset.
async fn linger(mut recv: h2::RecvStream, time: Duration) {
    let discard = async {
        let mut discarded = 0;
        while discarded < MAX_LINGER {
            let Some(Ok(data)) = recv.data().await else {
                return;
            };
            discarded += data.len();
            let _ = recv.flow_control().release_capacity(data.len());
        }
    };
    let _ = tokio::time::timeout(time, discard).await;
}

impl http_body::Body for RecvBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let Some(recv) = this.recv.as_mut() else {
            return Poll::Ready(None);
        };
        if !this.data_done {
            match std::task::ready!(recv.poll_data(cx)) {
                Some(Ok(data)) => {
                    let _ = recv.flow_control().release_capacity(data.len());
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Some(Err(e)) => return Poll::Ready(Some(Err(e.into()))),
                None => this.data_done = true,
            }
        }
        match std::task::ready!(recv.poll_trailers(cx)) {
            Ok(Some(trailers)) => Poll::Ready(Some(Ok(Frame::trailers(trailers)))),
            Ok(None) => Poll::Ready(None),
            Err(e) => Poll::Ready(Some(Err(e.into()))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.recv.as_ref().is_none_or(h2::RecvStream::is_end_stream)
    }
}

/// The h2 server settings derived from [`Limits`]: stream and header limits, and the
/// bounds that keep a flood of resets or SETTINGS (the 2023 "rapid reset" shape) cheap.
fn builder(limits: &Limits) -> h2::server::Builder {
    let mut b = h2::server::Builder::new();
    b.max_concurrent_streams(limits.max_concurrent_streams)
        .max_header_list_size(limits.max_header_size as u32)
        .initial_window_size(256 * 1024)
        .initial_connection_window_size(1024 * 1024)
        // What a stream queues for the socket: a client that grants windows and reads
        // nothing holds this much per stream (256 KiB: 35 MiB for 100 streams, 64 KiB:
        // 13 MiB with the upstream pieces waiting; nginx's `proxy_buffers` are 64 KiB).
        // The kernel's socket buffer, not this, covers a path's bandwidth-delay product:
        // a 200 MiB download ran at the same speed with either.
        .max_send_buffer_size(64 * 1024)
        // Streams the client resets before we accept them, and streams we reset for
        // protocol errors: beyond these the connection is closed (GOAWAY ENHANCE_YOUR_CALM).
        .max_pending_accept_reset_streams(50)
        .max_local_error_reset_streams(Some(128));
    b
}

/// Serves HTTP/2 on an established connection (after TLS with ALPN `h2`, or prior
/// knowledge on plain TCP) until it closes.
pub async fn serve<IO, H>(io: IO, client: Arc<ClientInfo>, limits: Limits, handler: Arc<H>)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    H: Handler,
{
    let handshake = builder(&limits).handshake::<_, Bytes>(io);
    let mut conn = match tokio::time::timeout(limits.header_read_timeout, handshake).await {
        Ok(Ok(conn)) => conn,
        Ok(Err(e)) => return debug!(client = %client.addr, error = %e, "h2 handshake failed"),
        Err(_) => return debug!(client = %client.addr, "h2 handshake timed out"),
    };
    let peer_resets = Arc::new(AtomicUsize::new(0));
    // Stream tasks still running. h2 keeps a stream while its last data waits for the
    // client's window, so its own count would let a client that never reads keep the
    // connection for ever.
    let activity = Activity::new();
    let (body_timeout, send_timeout) = (limits.body_timeout, limits.send_timeout);
    let linger = LINGER.min(limits.idle_timeout);
    let mut accepted = 0usize;
    let mut idle = std::pin::pin!(activity.until_idle(limits.idle_timeout));
    loop {
        let resets = peer_resets.load(Ordering::Relaxed);
        if crate::limits::cancels_most(resets, accepted) {
            debug!(client = %client.addr, resets, accepted, "h2 client resets most of its streams: closing");
            conn.abrupt_shutdown(h2::Reason::ENHANCE_YOUR_CALM);
            // Drive the connection so the GOAWAY goes out, then drop it.
            let _ = tokio::time::timeout(
                Duration::from_secs(1),
                std::future::poll_fn(|cx| conn.poll_closed(cx)),
            )
            .await;
            break;
        }
        // Idle: no stream task has run for idle_timeout. One timer for the
        // connection rather than one per accepted stream.
        let next = std::future::poll_fn(|cx| {
            if let Poll::Ready(next) = conn.poll_accept(cx) {
                return Poll::Ready(Ok(next));
            }
            std::task::ready!(std::future::Future::poll(idle.as_mut(), cx));
            Poll::Ready(Err(()))
        });
        let (req, respond) = match next.await {
            Ok(Some(Ok(pair))) => pair,
            Ok(Some(Err(e))) => {
                debug!(client = %client.addr, error = %e, "h2 connection error");
                break;
            }
            Ok(None) => break,
            Err(_) => {
                conn.graceful_shutdown();
                let _ = tokio::time::timeout(
                    Duration::from_secs(5),
                    std::future::poll_fn(|cx| conn.poll_closed(cx)),
                )
                .await;
                break;
            }
        };
        accepted += 1;
        if accepted as u64 == limits.max_requests {
            // keepalive_requests: GOAWAY now; the loop runs on until the streams end.
            debug!(client = %client.addr, accepted, "h2: keepalive_requests reached");
            conn.graceful_shutdown();
        }
        let (client, handler, peer_resets) = (client.clone(), handler.clone(), peer_resets.clone());
        let running = activity.enter();
        // Boxed: the task then holds a pointer, not the request's state, which tokio would
        // otherwise copy on each change of task stage (unboxed, 1,000 to 2,000 more
        // instructions a request by callgrind, even with the handler boxed below).
        tokio::spawn(Box::pin(async move {
            let _running = running;
            let (mut parts, recv) = req.into_parts();
            let head_request = parts.method == http::Method::HEAD;
            if let Err(reason) = Session::check_request(&mut parts, client.tls.is_some()) {
                debug!(reason, "h2 request malformed");
                let bad = dated_status_response(http::StatusCode::BAD_REQUEST);
                let _ = respond_with(respond, bad, head_request, send_timeout).await;
                return;
            }
            // h2 lets `te: trailers` through; filters never see it.
            remove_connection_specific(&mut parts.headers);
            let body = RecvBody {
                recv: Some(recv),
                data_done: false,
                linger,
            };
            let body = crate::body::from_stream(body, &parts.headers, body_timeout);
            let (body, continue_asked) = crate::body::expect_continue(&mut parts.headers, body);
            let (mut respond, mut asked) = (respond, continue_asked);
            // A stream the client resets stops its handler at once. The handler's
            // future in a box of its own: in the task it made the task 3,600 bytes,
            // jemalloc's 4 KiB class, one object per slab, whose refills cost about
            // 1,000 instructions a request (callgrind; the task was 3,584 bytes, the
            // class below, before 16 more bytes of state). In a block, as in
            // `http3::serve`, so that the box is freed before the answer is sent.
            let response = {
                let mut handling = Box::pin(handler.handle(Session::new(parts, body, client)));
                std::future::poll_fn(|cx| {
                    if let Poll::Ready(reason) = respond.poll_reset(cx) {
                        return Poll::Ready(Err(reason));
                    }
                    crate::body::poll_continue(&mut asked, cx, |continue_| {
                        let _ = respond.send_informational(continue_);
                    });
                    std::future::Future::poll(handling.as_mut(), cx).map(Ok)
                })
                .await
            };
            let response = match response {
                Ok(response) => response,
                Err(reason) => {
                    peer_resets.fetch_add(1, Ordering::Relaxed);
                    return debug!(reason = ?reason.ok(), "h2 stream reset by the client");
                }
            };
            if let Err(e) = respond_with(respond, response, head_request, send_timeout).await {
                debug!(error = %e, "h2 response failed");
            }
        }));
    }
}

/// Sends a response: head, then body frames as the peer's flow control allows. A
/// client that gives no window for `send_timeout` gets the stream reset.
async fn respond_with(
    mut respond: h2::server::SendResponse<Bytes>,
    response: http::Response<Body>,
    head_request: bool,
    send_timeout: Duration,
) -> Result<(), BoxError> {
    let (mut parts, mut body) = response.into_parts();
    let has_body =
        frame_response_head(&mut parts, &body.size_hint(), head_request) && !body.is_end_stream();
    let mut send = respond.send_response(http::Response::from_parts(parts, ()), !has_body)?;
    if !has_body {
        return Ok(());
    }
    loop {
        let frame = match next_frame_unless(&mut body, |cx| send.poll_reset(cx)).await {
            Ok(Some(frame)) => frame,
            Ok(None) => break,
            Err(reason) => return Err(format!("stream reset by the client: {reason:?}").into()),
        };
        let frame = match frame {
            Ok(f) => f,
            Err(e) => {
                send.send_reset(h2::Reason::INTERNAL_ERROR);
                return Err(e);
            }
        };
        match frame.into_data() {
            Ok(mut data) => {
                // The last data ends the stream itself: no empty DATA frame after it.
                let last = body.is_end_stream();
                if data.is_empty() {
                    if last {
                        break;
                    }
                    continue;
                }
                while !data.is_empty() {
                    send.reserve_capacity(data.len());
                    // Granted at once when the windows allow, the usual case.
                    let granted = match send.capacity() {
                        0 => {
                            let capacity = std::future::poll_fn(|cx| send.poll_capacity(cx));
                            match tokio::time::timeout(send_timeout, capacity).await {
                                Ok(Some(Ok(n))) => n,
                                Ok(Some(Err(e))) => return Err(e.into()),
                                Ok(None) => return Err("stream closed by the peer".into()),
                                Err(_) => {
                                    send.send_reset(h2::Reason::CANCEL);
                                    return Err("no window from the client: send timed out".into());
                                }
                            }
                        }
                        n => n,
                    };
                    let chunk = data.split_to(granted.min(data.len()));
                    send.send_data(chunk, last && data.is_empty())?;
                }
                if last {
                    return Ok(());
                }
            }
            Err(frame) => {
                if let Ok(trailers) = frame.into_trailers() {
                    send.send_trailers(trailers)?;
                    return Ok(());
                }
            }
        }
    }
    send.send_data(Bytes::new(), true)?;
    Ok(())
}
