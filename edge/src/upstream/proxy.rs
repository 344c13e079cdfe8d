//! The proxy phase: a location's `proxy_pass`. Picks a peer (the filters' upstream-peer
//! phase may change it), builds the upstream request (the upstream-request phase may
//! change it), takes an idle pooled connection or opens one, and runs the exchange.
//!
//! Failures answer 502 (connection refused, malformed response, connection closed
//! before the response head) or 504 (a timeout), with a warning on the `upstream` log
//! target; the client's request body failing or not matching its length, 400 (408 and
//! 413 for its timeout and size limit), logged at debug level only. A request is sent
//! again, once, on a new connection when a reused connection turns out closed before
//! the request could go out, or before any byte of the response came back for an
//! idempotent request without a body (the keep-alive race: the peer closed an idle
//! connection as the request was being sent).
//!
//! Otherwise, a failure of the peer before its response head (an error or a timeout
//! connecting, sending the request or reading the head, a malformed head) counts
//! toward its `max_fails` (see [`Upstream::count_failure`]); a response head counts as
//! a success. Not counted: the client's body failing, a failure while the client's
//! body is awaited (the peer may have given up on a slow client), the keep-alive
//! race, anything after the head, a filter's peer that is not the upstream's. Then, as
//! nginx's default `proxy_next_upstream error timeout` (plus `invalid_header`), the
//! next peer of the upstream neither tried nor marked unavailable gets the request,
//! each peer at most once, unless the request cannot be sent again: a non-idempotent
//! one once it was sent (as nginx), or one whose body edge began to stream. When every
//! peer was tried, the last failure answers (502 or 504); when those left are all
//! marked, 502 ("no live upstreams", as nginx). When every peer is marked, the request
//! is answered 502 without trying any. Either 502 unmarks every peer, so the next
//! request tries them again (as nginx). `proxy_total_timeout` bounds all the tries.

use std::net::SocketAddr;
use std::sync::Arc;

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http::{Method, StatusCode};
use http_body::Frame;
use http_body_util::BodyExt;

use super::client::{self, BodyProgress, Failure};
use super::conn::Connection;
use super::headers::{upstream_request, Changes};
use super::pool::Pool;
use super::redirect::Redirects;
use super::{Peer, Timeouts, Tried, Upstream, POOL};
use crate::body::{self, status_response, Body, BodyTimedOut, BoxError};
use crate::engine::BodyTooLarge;
use crate::filter::{Ctx, Filter, Flow};
use crate::http1::request::encode_request_head;
use crate::http1::response::Framing;
use crate::session::Session;
use crate::variables::Template;

/// A location's `proxy_pass` and its settings.
#[derive(Debug)]
pub struct Proxy {
    pub upstream: Arc<Upstream>,
    /// The default `Host` upstream (`$proxy_host`): the upstream's name.
    pub host: HeaderValue,
    pub timeouts: Timeouts,
    /// `proxy_set_header`s, applied in order after the defaults.
    pub set_headers: Vec<(HeaderName, Template)>,
    /// `proxy_redirect`s, applied to the response head.
    pub redirects: Redirects,
}

/// A connection to `addr` for an exchange, and whether it was reused: an idle pooled
/// one unless `fresh_only`, else a new one. Every connection opened is counted in the
/// pool's `missed`, a retry's too; a failed connect is not.
async fn connection(
    pool: &Pool<SocketAddr, Connection>,
    addr: SocketAddr,
    fresh_only: bool,
    t: &Timeouts,
) -> std::io::Result<(Connection, bool)> {
    if !fresh_only {
        if let Some(c) = pool.checkout(&addr) {
            return Ok((c, true));
        }
    }
    let c = Connection::connect(addr, t.connect).await?;
    pool.count_connect();
    Ok((c, false))
}

/// How the request body goes upstream.
fn request_framing(method: &Method, body: &Body) -> Framing {
    if http_body::Body::is_end_stream(body) {
        // A method that expects a body gets an explicit empty one.
        if matches!(*method, Method::POST | Method::PUT | Method::PATCH) {
            Framing::Length(0)
        } else {
            Framing::None
        }
    } else if let Some(n) = http_body::Body::size_hint(body).exact() {
        Framing::Length(n)
    } else {
        Framing::Chunked
    }
}

/// The first frame of `body` that is not empty data.
async fn first_frame(body: &mut Body) -> Option<Result<Frame<Bytes>, BoxError>> {
    loop {
        match body.frame().await {
            Some(Ok(f)) if f.data_ref().is_some_and(Bytes::is_empty) => {}
            frame => return frame,
        }
    }
}

/// A body with one frame already read from it put back in front.
struct Prepend {
    first: Option<Frame<Bytes>>,
    rest: Body,
}

impl http_body::Body for Prepend {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.first.take() {
            Some(frame) => Poll::Ready(Some(Ok(frame))),
            None => Pin::new(&mut self.rest).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.first.is_none() && self.rest.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        let rest = self.rest.size_hint();
        let first = self
            .first
            .as_ref()
            .and_then(Frame::data_ref)
            .map_or(0, |d| d.len() as u64);
        let mut hint = http_body::SizeHint::new();
        hint.set_lower(rest.lower().saturating_add(first));
        if let Some(upper) = rest.upper() {
            hint.set_upper(upper.saturating_add(first));
        }
        hint
    }
}

/// A response body cut short (an error, so the client sees a truncated response and
/// the upstream connection is not reused) when `proxy_total_timeout` runs out.
struct Deadline {
    inner: Body,
    at: Pin<Box<tokio::time::Sleep>>,
}

impl http_body::Body for Deadline {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        // The timer first: an upstream ahead of the client always has a frame ready.
        if std::future::Future::poll(self.at.as_mut(), cx).is_pending() {
            return Pin::new(&mut self.inner).poll_frame(cx);
        }
        tracing::warn!(target: "upstream", "proxy_total_timeout ran out during the response body");
        Poll::Ready(Some(Err("proxy_total_timeout ran out".into())))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl Proxy {
    /// Proxies the session's request and gives the response to send back (the
    /// upstream's, or an error status).
    pub async fn forward(
        &self,
        session: &mut Session,
        filters: &[Arc<dyn Filter>],
        ctx: &mut Ctx,
    ) -> http::Response<Body> {
        let Some((mut index, peer)) = self.upstream.pick() else {
            tracing::warn!(
                target: "upstream",
                upstream = %self.upstream.name,
                "{} {}: no live upstreams: answering 502",
                session.request.method,
                session.request.uri.path()
            );
            return status_response(StatusCode::BAD_GATEWAY);
        };
        let mut peer = peer.clone();
        if !filters.is_empty() {
            for f in filters {
                match f.upstream_peer(session, &mut peer, ctx).await {
                    Flow::Continue => {}
                    Flow::Stop => break,
                    Flow::Respond(resp) => return resp,
                }
            }
            // A filter's own pick is one of the upstream's servers, or else tried alone.
            let peers = &self.upstream.peers;
            if peers[index].addr != peer.addr {
                index = peers
                    .iter()
                    .position(|p| p.addr == peer.addr)
                    .unwrap_or(usize::MAX);
            }
        }
        let changes = Changes::new(session, &self.host, &self.set_headers);
        // The request as an `http` request only for filters to edit; without filters
        // the head is encoded from the client's fields and the changes directly.
        let mut edited = None;
        if !filters.is_empty() {
            let Ok(mut request) = upstream_request(session, &changes) else {
                tracing::debug!(
                    target: "upstream",
                    "{} header names do not fit the upstream request: answering 431",
                    session.request.headers.keys_len()
                );
                return status_response(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
            };
            for f in filters {
                match f.upstream_request(session, &mut request, ctx).await {
                    Flow::Continue => {}
                    Flow::Stop => break,
                    Flow::Respond(resp) => return resp,
                }
            }
            edited = Some(request);
        }
        let (method, target) = match &edited {
            Some(r) => (r.method.clone(), r.uri.path_and_query().cloned()),
            None => (
                session.request.method.clone(),
                session.request.uri.path_and_query().cloned(),
            ),
        };
        let mut body = std::mem::replace(&mut session.body, body::empty());
        if !http_body::Body::is_end_stream(&body)
            && http_body::Body::size_hint(&body).exact().is_none()
        {
            // A body of unknown length (HTTP/2 and HTTP/3 without Content-Length) may
            // be no body at all: wait for its first frame with something in it before
            // deciding, so a GET is not sent with a chunked empty body (an HTTP/2
            // client may end the stream with an empty DATA frame).
            body = match first_frame(&mut body).await {
                None => body::empty(),
                Some(Ok(first)) => Prepend {
                    first: Some(first),
                    rest: body,
                }
                .boxed(),
                Some(Err(e)) if e.is::<BodyTooLarge>() => {
                    return status_response(StatusCode::PAYLOAD_TOO_LARGE)
                }
                Some(Err(e)) if e.is::<BodyTimedOut>() => {
                    return status_response(StatusCode::REQUEST_TIMEOUT)
                }
                Some(Err(e)) => {
                    tracing::debug!(target: "upstream", "client request body failed: {e}");
                    return status_response(StatusCode::BAD_REQUEST);
                }
            };
        }
        let framing = request_framing(&method, &body);
        let mut head = Vec::new();
        let target = target.as_ref().map_or("/", |p| p.as_str());
        match &edited {
            Some(r) => encode_request_head(&mut head, &method, target, &r.headers, framing),
            None => {
                encode_request_head(&mut head, &method, target, changes.fields(session), framing)
            }
        }

        let deadline = self.timeouts.total.map(|t| tokio::time::Instant::now() + t);
        let exchange = self.exchange(&mut peer, index, &method, &head, framing, &mut body);
        let result = match deadline {
            Some(at) => tokio::time::timeout_at(at, exchange)
                .await
                .unwrap_or(Err(Failure::Timeout("the total timeout"))),
            None => exchange.await,
        };
        match result {
            Ok(resp) => match deadline {
                Some(at) => resp.map(|body| {
                    Deadline {
                        inner: body,
                        at: Box::pin(tokio::time::sleep_until(at)),
                    }
                    .boxed()
                }),
                None => resp,
            },
            Err(Failure::ClientBody(e)) if e.is::<BodyTooLarge>() => {
                status_response(StatusCode::PAYLOAD_TOO_LARGE)
            }
            Err(Failure::ClientBody(e)) if e.is::<BodyTimedOut>() => {
                tracing::debug!(target: "upstream", "{e}");
                status_response(StatusCode::REQUEST_TIMEOUT)
            }
            Err(Failure::ClientBody(e)) => {
                tracing::debug!(target: "upstream", "client request body failed: {e}");
                status_response(StatusCode::BAD_REQUEST)
            }
            // The client's doing too, not the upstream's.
            Err(e @ Failure::BodyLength) => {
                tracing::debug!(target: "upstream", "{e}");
                status_response(StatusCode::BAD_REQUEST)
            }
            Err(e) => {
                let status = match e {
                    Failure::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
                    _ => StatusCode::BAD_GATEWAY,
                };
                tracing::warn!(
                    target: "upstream",
                    upstream = %self.upstream.name,
                    peer = %peer.addr,
                    "{} {}: {e}: answering {}",
                    session.request.method,
                    session.request.uri.path(),
                    status.as_u16()
                );
                status_response(status)
            }
        }
    }

    /// Sends the request over a pooled or new connection, retrying once on a new one
    /// as described in the module docs. When `peer` (`index` in the upstream's peers,
    /// `usize::MAX` for a filter's peer of its own) fails before its response head, the
    /// failure is counted and, if the request can be sent again, the next peer of the
    /// upstream is tried, each at most once; `peer` ends as the one tried last.
    async fn exchange(
        &self,
        peer: &mut Peer,
        mut index: usize,
        method: &Method,
        head: &[u8],
        framing: Framing,
        body: &mut Body,
    ) -> Result<http::Response<Body>, Failure> {
        let t = &self.timeouts;
        let idempotent = matches!(
            *method,
            Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE
        );
        let mut fresh_only = false;
        let mut tried: Option<Tried> = None;
        'attempts: loop {
            // The failure of `peer`, when the next one may be tried.
            let (stage, e) = 'failed: {
                let (mut conn, reused) = match connection(&POOL, peer.addr, fresh_only, t).await {
                    Ok(c) => c,
                    Err(e) => {
                        let e = match e.kind() {
                            std::io::ErrorKind::TimedOut => Failure::Timeout("connecting"),
                            _ => Failure::Io(e),
                        };
                        break 'failed ("connecting: ", e);
                    }
                };
                let mut progress = BodyProgress::Untouched;
                let result =
                    client::exchange(&mut conn, head, framing, body, t, method, &mut progress)
                        .await;
                let body_polled = progress != BodyProgress::Untouched;
                let e = match result {
                    Ok(answer) => {
                        self.upstream.count_success(index);
                        return Ok(self.response(answer, conn, peer.addr));
                    }
                    Err(e) => e,
                };
                let e = match e {
                    // The keep-alive race: not the peer's fault, not counted.
                    Failure::HeadNotSent(_) | Failure::ClosedEarly if reused => {
                        let retry =
                            !body_polled && (idempotent || matches!(e, Failure::HeadNotSent(_)));
                        if retry {
                            tracing::debug!(target: "upstream", peer = %peer.addr, "reused connection was closed ({e}): retrying on a new one");
                            fresh_only = true;
                            continue 'attempts;
                        }
                        return Err(e);
                    }
                    // The client's fault.
                    Failure::ClientBody(_) | Failure::BodyLength => return Err(e),
                    e => e,
                };
                // nginx never sends a non-idempotent request twice, and a body begun
                // is gone.
                if !idempotent || body_polled {
                    // A peer that gives up on a slow client's body is not at fault: else
                    // slow uploads could have every peer marked.
                    if progress != BodyProgress::AwaitingClient && index < self.upstream.peers.len()
                    {
                        self.upstream.count_failure(index);
                    }
                    return Err(e);
                }
                ("", e)
            };
            // nginx's `proxy_next_upstream error timeout invalid_header`.
            match self.next_peer(index, &mut tried) {
                Next::Peer(i, next) => {
                    tracing::warn!(
                        target: "upstream",
                        upstream = %self.upstream.name,
                        peer = %peer.addr,
                        "{stage}{e}: trying {}",
                        next.addr
                    );
                    index = i;
                    // `fresh_only` stays: one keep-alive retry per request.
                    *peer = next.clone();
                }
                Next::None => return Err(e),
                Next::NoLive => return Err(Failure::NoLive(Box::new(e))),
            }
        }
    }

    /// The response of an exchange whose head came.
    fn response(
        &self,
        answer: client::Answer,
        conn: Connection,
        addr: SocketAddr,
    ) -> http::Response<Body> {
        let head = answer.head;
        let reuse =
            (head.keep_alive && answer.request_complete).then_some((addr, self.upstream.keepalive));
        let mut parts = head.parts;
        // Each protocol edge answers in its own version.
        parts.version = http::Version::default();
        if head.redirects {
            self.redirects.rewrite(&mut parts.headers);
        }
        let body = client::response_body(conn, addr, head.framing, reuse, self.timeouts.read);
        http::Response::from_parts(parts, body)
    }

    /// After peer `index` failed: counts its failure and says where the request goes
    /// next. As nginx: once every peer was tried, nowhere (the failure's own status);
    /// when those left are all marked unavailable, nowhere either ("no live upstreams").
    fn next_peer(&self, index: usize, tried: &mut Option<Tried>) -> Next<'_> {
        let upstream = &*self.upstream;
        if index >= upstream.peers.len() {
            return Next::None;
        }
        upstream.count_failure(index);
        let tried = tried.get_or_insert_with(|| Tried::new(upstream.peers.len()));
        tried.insert(index);
        if tried.count() == upstream.peers.len() {
            return Next::None;
        }
        match upstream.pick_next(tried) {
            Some((i, peer)) => Next::Peer(i, peer),
            None => Next::NoLive,
        }
    }
}

/// Where a request goes after its peer failed.
enum Next<'a> {
    /// To this peer of the upstream.
    Peer(usize, &'a Peer),
    /// Nowhere: answered with the failure's status.
    None,
    /// Nowhere: answered 502, "no live upstreams".
    NoLive,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::sync::atomic::Ordering;
    use std::time::Duration;

    /// An origin that takes one request (its body by Content-Length or chunked, up to
    /// the last chunk), answers 204, and gives the request's bytes (those it got when
    /// the connection closed first, without answering).
    fn one_request_origin() -> (SocketAddr, std::thread::JoinHandle<String>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let origin = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let mut got = String::new();
            let mut buf = [0; 4096];
            let complete = |got: &str| {
                let Some((head, body)) = got.split_once("\r\n\r\n") else {
                    return false;
                };
                let head = head.to_ascii_lowercase();
                if head.contains("transfer-encoding: chunked") {
                    body.ends_with("0\r\n\r\n")
                } else {
                    let length = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length: "))
                        .map_or(0, |n| n.parse().unwrap());
                    body.len() >= length
                }
            };
            while !complete(&got) {
                match conn.read(&mut buf) {
                    Ok(0) | Err(_) => return got,
                    Ok(n) => got.push_str(std::str::from_utf8(&buf[..n]).unwrap()),
                }
            }
            conn.write_all(b"HTTP/1.1 204 No Content\r\n\r\n").unwrap();
            got
        });
        (addr, origin)
    }

    /// An HTTP/2 request with these `headers` whose body comes as these frames.
    fn h2_session(method: Method, headers: &[(&str, &str)], frames: Vec<Frame<Bytes>>) -> Session {
        let frames = futures_util::stream::iter(frames.into_iter().map(Ok::<_, BoxError>));
        let headers = headers
            .iter()
            .map(|(n, v)| (n.parse().unwrap(), v.parse().unwrap()))
            .collect();
        let body = crate::body::from_stream(
            http_body_util::StreamBody::new(frames),
            &headers,
            Duration::from_secs(5),
        );
        let (parts, ()) = http::Request::builder()
            .method(method)
            .uri("https://o/x")
            .version(http::Version::HTTP_2)
            .body(())
            .unwrap()
            .into_parts();
        let client = Arc::new(crate::session::ClientInfo {
            addr: "10.0.0.7:5555".parse().unwrap(),
            local: "127.0.0.1:443".parse().unwrap(),
            protocol: crate::session::Protocol::Http2,
            tls: Some(Default::default()),
        });
        Session::new(parts, body, client)
    }

    /// The status of the session's request through the proxy, and what the origin got.
    async fn forwarded(mut session: Session) -> (StatusCode, String) {
        let (addr, origin) = one_request_origin();
        let proxy = Proxy {
            upstream: Arc::new(Upstream::new("o".into(), vec![Peer::new(addr)], 0)),
            host: HeaderValue::from_static("o"),
            timeouts: Timeouts::default(),
            set_headers: vec![],
            redirects: Redirects::default(),
        };
        let status = proxy
            .forward(&mut session, &[], &mut Ctx::default())
            .await
            .status();
        (status, origin.join().unwrap())
    }

    /// A request body shorter or longer than its Content-Length is the client's fault:
    /// 400, not the 502 of an upstream failure.
    #[tokio::test]
    async fn a_body_that_breaks_its_length_is_400() {
        for body in ["abc", "abcdefg"] {
            let frames = vec![Frame::data(Bytes::from_static(body.as_bytes()))];
            let session = h2_session(Method::POST, &[("content-length", "5")], frames);
            let (status, got) = forwarded(session).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
            assert!(got.contains("\r\ncontent-length: 5\r\n"), "{got:?}");
        }
    }

    /// An HTTP/2 client may end a request's stream with an empty DATA frame: a GET so
    /// ended has no body upstream, not a chunked empty one; empty frames before data
    /// change nothing either.
    #[tokio::test]
    async fn empty_data_frames_are_no_body() {
        let empty = || Frame::data(Bytes::new());
        let (status, got) = forwarded(h2_session(Method::GET, &[], vec![empty()])).await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        assert!(got.starts_with("GET /x HTTP/1.1\r\n"), "{got:?}");
        assert!(got.ends_with("\r\n\r\n"), "{got:?}");
        assert!(!got.contains("transfer-encoding"), "{got:?}");
        assert!(!got.contains("content-length"), "{got:?}");

        let (status, got) = forwarded(h2_session(Method::POST, &[], vec![empty(), empty()])).await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        assert!(got.contains("\r\ncontent-length: 0\r\n"), "{got:?}");
        assert!(!got.contains("transfer-encoding"), "{got:?}");

        let frames = vec![empty(), Frame::data(Bytes::from_static(b"abc")), empty()];
        let (status, got) = forwarded(h2_session(Method::POST, &[], frames)).await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        assert!(
            got.contains("\r\ntransfer-encoding: chunked\r\n"),
            "{got:?}"
        );
        assert!(got.ends_with("\r\n\r\n3\r\nabc\r\n0\r\n\r\n"), "{got:?}");
    }

    /// The frame put back in front counts in the size hint.
    #[test]
    fn a_prepended_frame_counts_in_the_size_hint() {
        let body = Prepend {
            first: Some(Frame::data(Bytes::from_static(b"abc"))),
            rest: crate::body::full("de"),
        };
        assert_eq!(http_body::Body::size_hint(&body).exact(), Some(5));
        let body = Prepend {
            first: Some(Frame::trailers(http::HeaderMap::new())),
            rest: crate::body::empty(),
        };
        assert_eq!(http_body::Body::size_hint(&body).exact(), Some(0));
        assert!(!http_body::Body::is_end_stream(&body));
    }

    #[tokio::test]
    async fn every_connection_opened_is_counted() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let _accept = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = listener.accept().await {
                held.push(s);
            }
        });
        let pool = Pool::new(super::super::pool::PoolConfig::default());
        let t = Timeouts::default();
        let (c, reused) = connection(&pool, addr, false, &t).await.unwrap();
        assert!(!reused);
        pool.checkin(addr, c);
        let (c, reused) = connection(&pool, addr, false, &t).await.unwrap();
        assert!(reused);
        pool.checkin(addr, c);
        // A retry on a new connection, although an idle one is there.
        let (_c, reused) = connection(&pool, addr, true, &t).await.unwrap();
        assert!(!reused);
        // Refused connects open nothing.
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        for fresh_only in [false, true] {
            assert!(connection(&pool, closed, fresh_only, &t).await.is_err());
        }
        assert_eq!(pool.stats.reused.load(Ordering::Relaxed), 1);
        assert_eq!(
            pool.stats.missed.load(Ordering::Relaxed),
            2,
            "two connections opened"
        );
    }
}
