//! The HTTP/3 edge, on h3-tokio: requests become [`Session`]s, responses go back as
//! HTTP/3 frames with trailers, and GOAWAY-based graceful shutdown.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use h3_tokio::{Code, RecvHalf, SendHalf};
use http_body::Body as _;
use http_body::Frame;
use tracing::debug;

use crate::body::{dated_status_response, next_frame_unless, Body, BoxError};
use crate::limits::{Activity, Limits};
use crate::session::{
    frame_response_head, remove_connection_specific, ClientInfo, Handler, Protocol, Session,
    TlsInfo,
};

/// A request body from h3-tokio as an `http_body::Body`.
struct RecvBody {
    recv: RecvHalf,
    data_done: bool,
}

impl http_body::Body for RecvBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if self.data_done {
            return Poll::Ready(None);
        }
        match std::task::ready!(self.recv.poll_recv_data(cx)) {
            Ok(Some(data)) => Poll::Ready(Some(Ok(Frame::data(data)))),
            Ok(None) => {
                self.data_done = true;
                Poll::Ready(self.recv.take_trailers().map(|t| Ok(Frame::trailers(t))))
            }
            Err(e) => Poll::Ready(Some(Err(e.into()))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.data_done || self.recv.is_end_stream()
    }
}

/// h3-tokio's settings from [`Limits`].
pub fn h3_config(limits: &Limits) -> h3_tokio::Config {
    h3_tokio::Config {
        max_field_section_size: limits.max_header_size as u64,
        max_concurrent_streams: u64::from(limits.quic_streams()),
        // A client that reads nothing holds this much per stream (100 streams: +24
        // MiB of RSS, +47 MiB at h3-tokio's 256 KiB); a 200 MiB download runs as fast
        // (560 MB/s either way), as HTTP/2's 64 KiB send buffer.
        send_buffer: 64 * 1024,
        ..h3_tokio::Config::default()
    }
}

/// The SNI a QUIC client sent.
fn server_name(quic: &quinn::Connection) -> Option<String> {
    let data = quic.handshake_data()?;
    let data = data
        .downcast::<quinn::crypto::rustls::HandshakeData>()
        .ok()?;
    data.server_name
}

/// How long the requests a connection took before its GOAWAY (`keepalive_requests`,
/// or idle) have to finish: each runs under its own timeouts, so this only bounds a
/// stuck connection.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3600);

/// After an idle connection's GOAWAY, how long no request may have run before it is
/// closed: requests the client sent before it saw the GOAWAY are served, while streams
/// whose head never came (kept up with PINGs) do not hold the connection.
const IDLE_GRACE: Duration = Duration::from_secs(1);

/// Serves HTTP/3 on an accepted QUIC connection (that arrived on `local`) until it
/// closes.
pub async fn serve<H: Handler>(
    quic: quinn::Connection,
    local: std::net::SocketAddr,
    limits: Limits,
    handler: Arc<H>,
) {
    let addr = quic.remote_address();
    let sni = server_name(&quic);
    let conn = match h3_tokio::server::Connection::new(quic.clone(), h3_config(&limits)).await {
        Ok(c) => c,
        Err(e) => return debug!(client = %addr, error = %e, "h3 setup failed"),
    };
    let client = ClientInfo {
        addr,
        local,
        protocol: Protocol::Http3,
        tls: Some(TlsInfo {
            sni,
            alpn: Some(h3_tokio::ALPN.to_vec()),
            early_data: false,
        }),
    };
    // Shared by the connection's requests; those that came as 0-RTT data share another.
    let mut early = client.clone();
    if let Some(tls) = early.tls.as_mut() {
        tls.early_data = true;
    }
    let (client, early) = (Arc::new(client), Arc::new(early));
    let (idle_timeout, body_timeout, send_timeout) = (
        limits.idle_timeout,
        limits.body_timeout,
        limits.send_timeout,
    );
    let (max_requests, mut requests) = (limits.max_requests, 0u64);
    let (activity, handle) = (Activity::new(), conn.handle());
    let (tasks, on_request_handle) = (activity.clone(), handle.clone());
    // Requests the client cancelled before their answer: since a cancel frees the
    // stream at once, only this bounds the "rapid reset" shape (see `cancels_most`).
    let (cancels, quic_for_requests) = (Arc::new(AtomicUsize::new(0)), quic.clone());
    // Called in h3-tokio's driver task for each request: no accept loop task between.
    let served = conn.serve(move |req, stream| {
        requests += 1;
        let cancelled = cancels.load(Ordering::Relaxed);
        if crate::limits::cancels_most(cancelled, requests as usize) {
            debug!(client = %addr, cancelled, requests, "h3 client cancels most of its requests: closing");
            quic_for_requests.close(Code::H3_EXCESSIVE_LOAD.into(), b"too many cancelled requests");
            return;
        }
        if requests == max_requests {
            debug!(client = %addr, requests, "h3: keepalive_requests reached");
            on_request_handle.shutdown(SHUTDOWN_GRACE);
        }
        let client = if req.extensions().get::<h3_tokio::EarlyData>().is_some() {
            early.clone()
        } else {
            client.clone()
        };
        let (handler, running, cancels) = (handler.clone(), tasks.enter(), cancels.clone());
        // Boxed for the same reason as HTTP/2's (see `http2::serve`).
        tokio::spawn(Box::pin(async move {
            let _running = running;
            let (send, recv) = stream.split();
            let (mut parts, ()) = req.into_parts();
            let head_request = parts.method == http::Method::HEAD;
            if let Err(reason) = Session::check_request(&mut parts, true) {
                debug!(reason, "h3 request malformed");
                let bad = dated_status_response(http::StatusCode::BAD_REQUEST);
                let _ = respond_with(send, bad, head_request, send_timeout).await;
                return;
            }
            // nghttp3 lets `te: trailers` through; filters never see it.
            remove_connection_specific(&mut parts.headers);
            let body = RecvBody {
                recv,
                data_done: false,
            };
            let body = crate::body::from_stream(body, &parts.headers, body_timeout);
            let (body, continue_asked) = crate::body::expect_continue(&mut parts.headers, body);
            let (mut send, mut asked) = (send, continue_asked);
            // The handler's future in a box of its own, as HTTP/2's (see
            // `http2::serve`), in a block so that it is freed before the answer is sent.
            // A request its client cancels (STOP_SENDING, RESET_STREAM) or whose
            // connection is lost stops its handler; one answered at the first poll never
            // asks.
            let response = {
                let mut handling = Box::pin(handler.handle(Session::new(parts, body, client)));
                std::future::poll_fn(|cx| {
                    crate::body::poll_continue(&mut asked, cx, |continue_| {
                        let _ = send.send_informational(continue_);
                    });
                    match handling.as_mut().poll(cx) {
                        Poll::Ready(response) => Poll::Ready(Ok(response)),
                        Poll::Pending => send.poll_stopped(cx).map(Err),
                    }
                })
                .await
            };
            let response = match response {
                Ok(response) => response,
                Err(e) => {
                    cancels.fetch_add(1, Ordering::Relaxed);
                    return debug!(error = %e, "h3 request abandoned by the client");
                }
            };
            if let Err(e) = respond_with(send, response, head_request, send_timeout).await {
                debug!(error = %e, "h3 response failed");
            }
        }));
    });
    // QUIC's idle timeout is not enough: PINGs, which quinn answers without asking us,
    // keep a connection that has no request alive.
    let mut served = std::pin::pin!(served);
    let ended = tokio::select! {
        ended = &mut served => ended,
        () = activity.until_idle(idle_timeout) => {
            debug!(client = %addr, "h3 connection idle: closing");
            handle.shutdown(SHUTDOWN_GRACE);
            let quiet = async {
                tokio::time::sleep(IDLE_GRACE).await;
                activity.until_idle(IDLE_GRACE).await;
            };
            tokio::select! {
                ended = &mut served => ended,
                () = quiet => {
                    quic.close(Code::H3_NO_ERROR.into(), b"idle");
                    served.await
                }
            }
        }
    };
    if let Err(e) = ended {
        debug!(client = %addr, error = %e, "h3 connection ended");
    }
}

/// Sends a response. A client that gives no flow control credit for `send_timeout`
/// gets the stream reset.
async fn respond_with(
    mut send: SendHalf,
    response: http::Response<Body>,
    head_request: bool,
    send_timeout: Duration,
) -> Result<(), BoxError> {
    let (mut parts, mut body) = response.into_parts();
    let has_body = frame_response_head(&mut parts, &body.size_hint(), head_request);
    let head = http::Response::from_parts(parts, ());
    if !has_body {
        return Ok(send.respond(head, Bytes::new())?);
    }
    // A body already whole in memory (a `return`, an error page, an upstream response
    // whose end has arrived) goes out with head and end in one step: `respond` then
    // needs no round of the connection's driver task.
    let mut first = match first_frame_now(&mut body) {
        Ok(whole) => return Ok(send.respond(head, whole)?),
        Err(first) => first,
    };
    send.send_response(head)?;
    loop {
        let frame = match first.take() {
            Some(frame) => frame,
            None => match next_frame_unless(&mut body, |cx| send.poll_stopped(cx)).await {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(e) => return Err(e.into()),
            },
        };
        let frame = match frame {
            Ok(f) => f,
            Err(e) => {
                send.reset(Code::H3_INTERNAL_ERROR);
                return Err(e);
            }
        };
        match frame.into_data() {
            Ok(data) => match tokio::time::timeout(send_timeout, send.send_data(data)).await {
                Ok(sent) => sent?,
                Err(_) => {
                    send.reset(Code::H3_REQUEST_CANCELLED);
                    return Err("no credit from the client: send timed out".into());
                }
            },
            Err(frame) => {
                if let Ok(trailers) = frame.into_trailers() {
                    return Ok(send.send_trailers(trailers)?);
                }
            }
        }
    }
    Ok(send.finish()?)
}

type FrameResult = Result<Frame<Bytes>, BoxError>;

/// One look at `body` without waiting: `Ok` with all of it if it is whole in memory,
/// else `Err` with the frame taken from it, if any.
fn first_frame_now(body: &mut Body) -> Result<Bytes, Option<FrameResult>> {
    if body.is_end_stream() {
        return Ok(Bytes::new());
    }
    let mut cx = Context::from_waker(Waker::noop());
    match Pin::new(&mut *body).poll_frame(&mut cx) {
        Poll::Ready(None) => Ok(Bytes::new()),
        Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
            Ok(data) if body.is_end_stream() => Ok(data),
            Ok(data) => Err(Some(Ok(Frame::data(data)))),
            Err(frame) => Err(Some(Ok(frame))),
        },
        Poll::Ready(Some(Err(e))) => Err(Some(Err(e))),
        Poll::Pending => Err(None),
    }
}
