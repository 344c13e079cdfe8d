//! The request engine: picks the site and location of a request, runs its filter
//! chain, and wraps the response body so the body and logging phases run as it goes
//! out. Every protocol edge hands its requests here (it is their [`Handler`]).

use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::FutureExt;
use http::header::{HeaderValue, CONTENT_LENGTH};
use http::StatusCode;
use http_body::{Frame, SizeHint};
use http_body_util::BodyExt;

use crate::body::{self, status_response, Body, BoxError};
use crate::filter::{Ctx, Filter, Flow, Outcome};
use crate::server_names::ServerNames;
use crate::session::{remove_underscored, AwaitsContinue, Handler, Protocol, Session};
use crate::upstream::proxy::Proxy;

/// Where a location applies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Match {
    /// `location "=" "/path"`: this path only.
    Exact(String),
    /// `location "/prefix"`: the longest matching prefix wins.
    Prefix(String),
}

/// A location: its filters, in config order, and its limits.
pub struct Route {
    pub matcher: Match,
    pub filters: Vec<Arc<dyn Filter>>,
    /// 413 beyond this many request body bytes; `None` is unlimited.
    pub max_body_size: Option<u64>,
    /// `proxy_pass`: where requests no filter answered go.
    pub proxy: Option<Arc<Proxy>>,
}

/// A virtual server: names it answers to and its locations.
pub struct Site {
    /// Exact names, or `*.suffix` wildcards, lower case.
    pub names: Vec<String>,
    pub routes: Vec<Route>,
    /// `Alt-Svc` for responses over TCP, when the site also serves HTTP/3.
    pub alt_svc: Option<HeaderValue>,
    pub access_log: bool,
    /// Keep request headers whose names have `_` (else they are dropped).
    pub underscores_in_headers: bool,
}

impl Site {
    /// The host of a request that named none: the first exact name, else `local`'s
    /// address.
    fn default_authority(&self, local: std::net::SocketAddr) -> http::uri::Authority {
        self.names
            .iter()
            .filter(|n| !n.starts_with("*."))
            .find_map(|n| n.parse().ok())
            .unwrap_or_else(|| {
                let ip = match local.ip() {
                    std::net::IpAddr::V6(ip) => format!("[{ip}]"),
                    v4 => v4.to_string(),
                };
                ip.parse()
                    .unwrap_or_else(|_| http::uri::Authority::from_static("localhost"))
            })
    }

    /// nginx's order: an exact location, else the longest prefix. `path` is the
    /// normalized one ([`crate::route_path`]).
    pub fn route(&self, path: &[u8]) -> Option<&Route> {
        self.routes
            .iter()
            .find(|r| matches!(&r.matcher, Match::Exact(p) if p.as_bytes() == path))
            .or_else(|| {
                self.routes
                    .iter()
                    .filter_map(|r| match &r.matcher {
                        Match::Prefix(p) if path.starts_with(p.as_bytes()) => Some((p.len(), r)),
                        _ => None,
                    })
                    .max_by_key(|(len, _)| *len)
                    .map(|(_, r)| r)
            })
    }
}

/// All sites, as configured, and the sites on each listening socket.
pub struct Router {
    pub sites: Vec<Arc<Site>>,
    listeners: Vec<Listener>,
}

/// A listening socket's sites, by name; the first configured is its default.
pub struct Listener {
    addr: SocketAddr,
    udp: bool,
    names: ServerNames<Arc<Site>>,
}

impl Listener {
    /// The socket at `addr` (QUIC when `udp`) and its sites in config order; with the
    /// names more than one of them give (the first keeps each). `None` without sites.
    pub fn new(
        addr: SocketAddr,
        udp: bool,
        sites: Vec<Arc<Site>>,
    ) -> Option<(Listener, Vec<String>)> {
        let entries = sites.into_iter().map(|s| (s.clone(), s.names.clone()));
        let (names, repeated) = ServerNames::new(entries.collect())?;
        Some((Listener { addr, udp, names }, repeated))
    }
}

impl Router {
    pub fn new(sites: Vec<Arc<Site>>, listeners: Vec<Listener>) -> Router {
        Router { sites, listeners }
    }

    /// The site for a request that arrived at `local` (over QUIC when `udp`) for
    /// `host`: among the sites of the socket it arrived on, as nginx picks (that
    /// socket's own address, else the wildcard one on its port). The host is only
    /// asked for when that socket has more than one site (parsing it out of the URI is
    /// about 400 instructions, 1% of a proxied HTTP/2 request).
    pub fn site<'h>(
        &self,
        local: SocketAddr,
        udp: bool,
        host: impl FnOnce() -> Option<&'h str>,
    ) -> Option<&Arc<Site>> {
        let on = |l: &&Listener| l.udp == udp && l.addr.port() == local.port();
        let listener =
            self.listeners
                .iter()
                .filter(on)
                .find(|l| l.addr.ip() == local.ip())
                .or_else(|| {
                    self.listeners.iter().filter(on).find(|l| {
                        l.addr.ip().is_unspecified() && l.addr.is_ipv4() == local.is_ipv4()
                    })
                })?;
        Some(listener.names.pick(host))
    }
}

/// Answers requests with the filter chains of a [`Router`].
pub struct Engine {
    pub router: Router,
}

/// RFC 8470, 5.2; `http` has no constant for it.
const TOO_EARLY: StatusCode = match StatusCode::from_u16(425) {
    Ok(s) => s,
    Err(_) => unreachable!(),
};

/// What the request phases decided: the site and filters that apply (if any), the
/// filters' context, and the response before the response phase.
struct Answer {
    site: Option<Arc<Site>>,
    filters: Vec<Arc<dyn Filter>>,
    ctx: Ctx,
    response: http::Response<Body>,
}

impl Answer {
    /// A status page decided before any filter ran.
    fn status(
        site: Option<Arc<Site>>,
        filters: Vec<Arc<dyn Filter>>,
        ctx: Ctx,
        status: StatusCode,
    ) -> Answer {
        Answer {
            site,
            filters,
            ctx,
            response: status_response(status),
        }
    }
}

impl Handler for Engine {
    /// The request phases (`answer`), then the response phase, then the response goes
    /// out with a body that runs the body and logging phases. A filter answering in the
    /// response phase replaces the response (e.g. an error page); the filters after it
    /// do not see the replacement. A filter that panics fails its request with 500, not
    /// the connection or the worker.
    //
    // Not an `async fn`: one would keep a second copy of `session` (the argument, and
    // the local it is moved into), and every request's task carries this future.
    #[allow(clippy::manual_async_fn)]
    fn handle(
        &self,
        session: Session,
    ) -> impl std::future::Future<Output = http::Response<Body>> + Send {
        // Out of the block, for the reason above: moved in there, the session would
        // have two copies in the future.
        let mut pending = Unanswered {
            session: Some(session),
            access_log: true,
        };
        async move {
            let Unanswered {
                session: Some(session),
                access_log,
            } = &mut pending
            else {
                unreachable!("the session is taken once answered")
            };
            let phases = AssertUnwindSafe(async {
                let Answer {
                    site,
                    filters,
                    mut ctx,
                    response,
                } = self.answer(session, access_log).await;
                let (mut parts, mut body) = response.into_parts();
                for f in &filters {
                    match f.response(session, &mut parts, &mut ctx).await {
                        Flow::Continue => {}
                        Flow::Stop => break,
                        Flow::Respond(replacement) => {
                            (parts, body) = replacement.into_parts();
                            break;
                        }
                    }
                }
                (site, filters, ctx, parts, body)
            })
            .catch_unwind()
            .await;
            let session = pending.session.take().expect("the session is taken once");
            match phases {
                Ok((site, filters, ctx, parts, body)) => {
                    finish_body(session, site, filters, ctx, parts, body)
                }
                Err(_) => {
                    tracing::error!("a filter panicked: the request is answered 500");
                    let (parts, body) =
                        status_response(StatusCode::INTERNAL_SERVER_ERROR).into_parts();
                    // No filter runs again: their state is in doubt.
                    finish_body(session, None, Vec::new(), Ctx::default(), parts, body)
                }
            }
        }
    }
}

/// A request whose handler runs: dropped before its answer (the handler cancelled,
/// because the client went away: an HTTP/1 connection closed, an HTTP/2 stream reset),
/// it is logged with nginx's 499, as aborted. The filters' logging phase does not run
/// for it: their context is the unfinished request phases'.
struct Unanswered {
    session: Option<Session>,
    /// The site's `access_log`, once known (none: logged, as a request with no site).
    access_log: bool,
}

/// nginx's "client closed request"; not a status any response carries.
const CLIENT_CLOSED: StatusCode = match StatusCode::from_u16(499) {
    Ok(s) => s,
    Err(_) => unreachable!(),
};

impl Drop for Unanswered {
    fn drop(&mut self) {
        if let Some(session) = self.session.take().filter(|_| self.access_log) {
            let outcome = Outcome {
                status: CLIENT_CLOSED,
                body_bytes: 0,
                duration: session.started.elapsed(),
                aborted: true,
            };
            access_log(&session, &outcome);
        }
    }
}

impl Engine {
    /// The request phases: site, location, limits, the filters' early-request and
    /// request phases, then the proxy. `access_log`: set to the site's.
    async fn answer(&self, session: &mut Session, access_log: &mut bool) -> Answer {
        let client = &session.client;
        let udp = client.protocol == Protocol::Http3;
        let Some(site) = self
            .router
            .site(client.local, udp, || session.host())
            .cloned()
        else {
            return Answer::status(
                None,
                Vec::new(),
                Ctx::default(),
                StatusCode::MISDIRECTED_REQUEST,
            );
        };
        *access_log = site.access_log;
        if !site.underscores_in_headers {
            let removed = remove_underscored(&mut session.request.headers);
            if removed > 0 {
                tracing::debug!(client = %session.client.addr, removed, "dropped request headers with `_` in their names");
            }
            let body = std::mem::replace(&mut session.body, crate::body::empty());
            session.body = crate::body::without_underscored_trailers(body);
        }
        if session.request.uri.authority().is_none() {
            // HTTP/1.0 without Host: the site's name is its host, as in nginx's `$host`
            // (else the address it came to), so `$host` and the URI are never empty.
            let authority = site.default_authority(session.client.local);
            let tls = session.client.tls.is_some();
            Session::complete_uri_with(&mut session.request, tls, Some(authority));
        }
        // A target that is no path (a CONNECT's authority, the `*` of OPTIONS) is in no
        // location: 400, as nginx answers them, not 404. edge does not tunnel, so a
        // CONNECT with a path gets 400 too, before a location's `return` could answer it.
        let request = &session.request;
        if request.method == http::Method::CONNECT || !request.uri.path().starts_with('/') {
            return Answer::status(
                Some(site),
                Vec::new(),
                Ctx::default(),
                StatusCode::BAD_REQUEST,
            );
        }
        let route = match crate::route_path::normalize(session.request.uri.path()) {
            Ok(path) => site.route(&path),
            Err(e) => {
                tracing::debug!(client = %session.client.addr, reason = e.reason(), "bad request path");
                return Answer::status(
                    Some(site),
                    Vec::new(),
                    Ctx::default(),
                    StatusCode::BAD_REQUEST,
                );
            }
        };
        let Some(route) = route else {
            return Answer::status(
                Some(site),
                Vec::new(),
                Ctx::default(),
                StatusCode::NOT_FOUND,
            );
        };
        let filters = route.filters.clone();
        let mut ctx = Ctx::default();

        // TRACE echoes the request, cookies and credentials included, to whoever makes
        // a browser send one (cross-site tracing): refused in every location, as nginx.
        if session.request.method == http::Method::TRACE {
            return Answer::status(Some(site), filters, ctx, StatusCode::METHOD_NOT_ALLOWED);
        }

        // 0-RTT data can be replayed by an attacker (RFC 8470): only safe methods may
        // act on it; the client retries anything else once the handshake is done.
        if session.is_early_data() && !session.request.method.is_safe() {
            return Answer::status(Some(site), filters, ctx, TOO_EARLY);
        }

        // An HTTP/1 client awaiting 100 Continue sends its body only once it is asked
        // for (polled). An answer given without asking must not ask afterwards, to
        // drain the body or to measure it against the limit: the client would upload
        // it, up to the whole limit, before getting an answer it could have had at
        // once (RFC 9110, 10.1.1). Never asked, the connection closes after the answer.
        let mut asked = None;
        if session.request.extensions.get::<AwaitsContinue>().is_some()
            && !http_body::Body::is_end_stream(&session.body)
        {
            let unread = std::mem::replace(&mut session.body, body::empty());
            let (watched, receiver) = body::on_first_poll(unread);
            session.body = watched;
            asked = Some(receiver);
        }

        // A request whose body has already ended (a GET over HTTP/2) needs no limit.
        let limit = route
            .max_body_size
            .filter(|_| !http_body::Body::is_end_stream(&session.body));
        if let Some(limit) = limit {
            let declared = session
                .request
                .headers
                .get(CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
            if declared.is_some_and(|n| n > limit) {
                if body_asked_for(&mut asked) {
                    drain_small(&mut session.body).await;
                }
                return Answer::status(Some(site), filters, ctx, StatusCode::PAYLOAD_TOO_LARGE);
            }
            let inner = std::mem::replace(&mut session.body, body::empty());
            session.body = Limited { inner, left: limit }.boxed();
        }

        let mut response = None;
        'phases: for phase in [Phase::Early, Phase::Request] {
            for f in &filters {
                let flow = match phase {
                    Phase::Early => f.early_request(session, &mut ctx).await,
                    Phase::Request => f.request(session, &mut ctx).await,
                };
                match flow {
                    Flow::Continue => {}
                    Flow::Stop => break,
                    Flow::Respond(resp) => {
                        response = Some(resp);
                        break 'phases;
                    }
                }
            }
        }
        let mut response = match (response, &route.proxy) {
            (Some(resp), _) => resp,
            (None, Some(proxy)) => proxy.forward(session, &filters, &mut ctx).await,
            // A location with neither an answer nor a `proxy_pass`.
            (None, None) => status_response(StatusCode::NOT_FOUND),
        };
        if body_asked_for(&mut asked) {
            if limit.is_some() && over_limit_unread(&mut session.body).await {
                response = status_response(StatusCode::PAYLOAD_TOO_LARGE);
            }
            drain_small(&mut session.body).await;
        }
        Answer {
            site: Some(site),
            filters,
            ctx,
            response,
        }
    }
}

/// Whether the client was asked for its body, or never had to be (no `asked`: it did
/// not await 100 Continue).
fn body_asked_for(asked: &mut Option<tokio::sync::oneshot::Receiver<()>>) -> bool {
    asked.as_mut().is_none_or(|a| a.try_recv().is_ok())
}

/// Request bodies up to this size are read and dropped before an early answer (413,
/// `return`): HTTP/2 clients such as curl 7.88 report an error (exit 92) when the server
/// ends a stream they are still uploading on, though the answer came through.
const DRAIN_BEFORE_ANSWER: u64 = 64 * 1024;

async fn drain_small(body: &mut Body) {
    let hint = http_body::Body::size_hint(body);
    if http_body::Body::is_end_stream(body) || hint.upper().is_none_or(|n| n > DRAIN_BEFORE_ANSWER)
    {
        return;
    }
    let drain = async { while let Some(Ok(_)) = body.frame().await {} };
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), drain).await;
}

/// An answer given without reading the request body (`return`) must still refuse a body
/// over the location's limit, whatever the protocol: a body of undeclared length (HTTP/1
/// chunked, HTTP/2 and HTTP/3 without Content-Length) is read and dropped here up to the
/// limit, as nginx does, and reports whether it went over.
async fn over_limit_unread(body: &mut Body) -> bool {
    if http_body::Body::is_end_stream(body) || http_body::Body::size_hint(body).exact().is_some() {
        return false;
    }
    while let Some(frame) = body.frame().await {
        if let Err(e) = frame {
            return e.is::<BodyTooLarge>();
        }
    }
    false
}

#[derive(Clone, Copy)]
enum Phase {
    Early,
    Request,
}

/// Hands the response out with a body that runs the body and logging phases.
fn finish_body(
    session: Session,
    site: Option<Arc<Site>>,
    filters: Vec<Arc<dyn Filter>>,
    ctx: Ctx,
    mut parts: http::response::Parts,
    body: Body,
) -> http::Response<Body> {
    if session.client.protocol != Protocol::Http3 {
        if let Some(alt_svc) = site.as_ref().and_then(|s| s.alt_svc.clone()) {
            parts.headers.insert(http::header::ALT_SVC, alt_svc);
        }
    }
    // An upstream's own, or a filter's, stands.
    if let http::header::Entry::Vacant(date) = parts.headers.entry(http::header::DATE) {
        if let Some(now) = crate::http_date::now() {
            date.insert(now);
        }
    }
    let log = site.as_ref().is_none_or(|s| s.access_log);
    if !log && filters.is_empty() {
        // No logging phase to run: the body goes out as it is, one box and one layer
        // of polling fewer.
        return http::Response::from_parts(parts, body);
    }
    let status = parts.status;
    let body = Logged {
        inner: body,
        state: Some(LogState {
            session,
            filters,
            ctx,
            status,
            bytes: 0,
            log,
        }),
    };
    http::Response::from_parts(parts, body.boxed())
}

/// A request body that fails once it exceeds the location's limit.
struct Limited {
    inner: Body,
    left: u64,
}

#[derive(Debug, thiserror::Error)]
#[error("request body exceeds the location's client_max_body_size")]
pub struct BodyTooLarge;

impl http_body::Body for Limited {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let frame = std::task::ready!(Pin::new(&mut self.inner).poll_frame(cx));
        if let Some(Ok(f)) = &frame {
            if let Some(data) = f.data_ref() {
                match self.left.checked_sub(data.len() as u64) {
                    Some(left) => self.left = left,
                    None => return Poll::Ready(Some(Err(Box::new(BodyTooLarge)))),
                }
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

struct LogState {
    session: Session,
    filters: Vec<Arc<dyn Filter>>,
    ctx: Ctx,
    status: StatusCode,
    bytes: u64,
    log: bool,
}

impl LogState {
    fn done(mut self, aborted: bool) {
        let outcome = Outcome {
            status: self.status,
            body_bytes: self.bytes,
            duration: self.session.started.elapsed(),
            aborted,
        };
        let logged = std::panic::catch_unwind(AssertUnwindSafe(|| {
            for f in &self.filters {
                f.logging(&self.session, &outcome, &mut self.ctx);
            }
        }));
        if logged.is_err() {
            tracing::error!("a filter panicked in its logging phase");
        }
        if self.log {
            access_log(&self.session, &outcome);
        }
    }
}

/// One line per request on the `access` target:
/// `client protocol method authority path status bytes duration_ms [aborted]`.
fn access_log(session: &Session, outcome: &Outcome) {
    let req = &session.request;
    tracing::info!(
        target: "access",
        "{} {} {} {} {} {} {} {:.3}ms{}",
        session.client.addr,
        session.client.protocol.as_str(),
        req.method,
        req.uri.authority().map_or("-", |a| a.as_str()),
        req.uri.path_and_query().map_or("/", |p| p.as_str()),
        outcome.status.as_u16(),
        outcome.body_bytes,
        outcome.duration.as_secs_f64() * 1000.0,
        if outcome.aborted { " aborted" } else { "" },
    );
}

/// The response body on its way out: runs the response body phase on each chunk and
/// the logging phase at the end (or when the client goes away).
struct Logged {
    inner: Body,
    state: Option<LogState>,
}

impl http_body::Body for Logged {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let frame = std::task::ready!(Pin::new(&mut self.inner).poll_frame(cx));
        let end = self.inner.is_end_stream();
        let this = &mut *self;
        match frame {
            Some(Ok(frame)) => {
                let frame = match frame.into_data() {
                    Ok(mut data) => {
                        if let Some(st) = this.state.as_mut() {
                            let ran = std::panic::catch_unwind(AssertUnwindSafe(|| {
                                for f in &st.filters {
                                    f.response_body(&st.session, &mut data, end, &mut st.ctx);
                                }
                            }));
                            if ran.is_err() {
                                // Its state is in doubt: no logging phase after it.
                                this.state = None;
                                tracing::error!("a filter panicked: the response is cut short");
                                return Poll::Ready(Some(Err("a filter panicked".into())));
                            }
                            st.bytes += data.len() as u64;
                        }
                        Frame::data(data)
                    }
                    Err(other) => other,
                };
                if end {
                    if let Some(st) = this.state.take() {
                        st.done(false);
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Some(Err(e)) => {
                if let Some(st) = this.state.take() {
                    st.done(true);
                }
                Poll::Ready(Some(Err(e)))
            }
            None => {
                if let Some(st) = this.state.take() {
                    st.done(false);
                }
                Poll::Ready(None)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Logged {
    fn drop(&mut self) {
        // Dropped while unwinding: a second panic from a filter would abort the process.
        if std::thread::panicking() {
            return;
        }
        if let Some(st) = self.state.take() {
            // Never polled to the end: an empty body written without polling, a HEAD
            // answer (no body goes out), or the client went away mid-body.
            let aborted = !http_body::Body::is_end_stream(&self.inner)
                && st.session.request.method != http::Method::HEAD;
            st.done(aborted);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filters::Return;
    use crate::session::ClientInfo;

    /// Panics in one phase.
    struct Panics(&'static str);

    #[async_trait::async_trait]
    impl Filter for Panics {
        fn name(&self) -> &str {
            "panics"
        }

        async fn request(&self, _: &mut Session, _: &mut Ctx) -> Flow {
            assert_ne!(self.0, "request", "a filter bug");
            Flow::Continue
        }

        fn response_body(&self, _: &Session, _: &mut Bytes, _: bool, _: &mut Ctx) {
            assert_ne!(self.0, "response_body", "a filter bug");
        }

        fn logging(&self, _: &Session, _: &Outcome, _: &mut Ctx) {
            assert_ne!(self.0, "logging", "a filter bug");
        }
    }

    fn engine() -> Engine {
        let route = |path: &str, phase: &'static str| Route {
            matcher: Match::Prefix(path.into()),
            filters: vec![
                Arc::new(Panics(phase)),
                Arc::new(Return {
                    status: StatusCode::OK,
                    text: Some("ok".parse().unwrap()),
                }),
            ],
            max_body_size: None,
            proxy: None,
        };
        let site = Arc::new(Site {
            names: vec!["localhost".into()],
            routes: ["request", "response_body", "logging"]
                .map(|phase| route(&format!("/{phase}"), phase))
                .into(),
            alt_svc: None,
            access_log: true,
            underscores_in_headers: false,
        });
        let addr = "127.0.0.1:443".parse().unwrap();
        let (listener, _) = Listener::new(addr, false, vec![site.clone()]).unwrap();
        Engine {
            router: Router::new(vec![site], vec![listener]),
        }
    }

    async fn get(engine: &Engine, path: &str) -> (StatusCode, Result<Bytes, BoxError>) {
        let (parts, ()) = http::Request::get(format!("http://localhost{path}"))
            .body(())
            .unwrap()
            .into_parts();
        let client = Arc::new(ClientInfo {
            addr: "10.0.0.1:5555".parse().unwrap(),
            local: "127.0.0.1:443".parse().unwrap(),
            protocol: Protocol::Http2,
            tls: None,
        });
        let response = engine
            .handle(Session::new(parts, body::empty(), client))
            .await;
        let status = response.status();
        let body = response.into_body().collect().await.map(|b| b.to_bytes());
        (status, body)
    }

    /// A filter's panic fails its request, not the task serving the connection (nor,
    /// from the logging phase while unwinding, the process).
    #[tokio::test]
    async fn a_panicking_filter_fails_only_its_request() {
        let engine = engine();
        let (status, _) = get(&engine, "/request").await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        let (status, body) = get(&engine, "/response_body").await;
        assert_eq!(status, StatusCode::OK);
        assert!(body.is_err(), "the body is cut short");
        let (status, body) = get(&engine, "/logging").await;
        assert_eq!((status, body.unwrap()), (StatusCode::OK, Bytes::from("ok")));
    }
}
