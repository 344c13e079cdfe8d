//! The filter chain: request-lifecycle phases as one trait with default no-ops, in the
//! manner of Pingora's `ProxyHttp`.
//!
//! Filters run in config order. In each phase a filter can let the request go on
//! ([`Flow::Continue`]), answer it at once ([`Flow::Respond`]), or end the phase for the
//! filters after it ([`Flow::Stop`]) while the request goes on to the next phase.
//!
//! A custom filter is a type implementing the phases it cares about:
//!
//! ```
//! use edge::filter::{Filter, Flow};
//! use edge::session::Session;
//!
//! struct DenyAdmin;
//!
//! #[async_trait::async_trait]
//! impl Filter for DenyAdmin {
//!     fn name(&self) -> &str {
//!         "deny_admin"
//!     }
//!
//!     async fn request(&self, session: &mut Session, _ctx: &mut edge::filter::Ctx) -> Flow {
//!         if session.request.uri.path().starts_with("/admin") {
//!             return Flow::respond(403, "forbidden\n");
//!         }
//!         Flow::Continue
//!     }
//! }
//! ```

use std::any::Any;
use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;

use crate::body::{self, Body};
use crate::session::Session;
use crate::upstream::Peer;

/// What a phase decided.
pub enum Flow {
    /// Go on with the next filter.
    Continue,
    /// Skip the remaining filters of this phase; the request goes on.
    Stop,
    /// Answer the request with this response; later request phases are skipped (the
    /// response phases still run).
    Respond(http::Response<Body>),
}

impl Flow {
    /// An early answer with a status and a body.
    pub fn respond(status: u16, body: impl Into<Bytes>) -> Flow {
        let mut resp = http::Response::new(body::full(body));
        *resp.status_mut() =
            StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        Flow::Respond(resp)
    }
}

/// Per-request state shared by the filters of one chain, keyed by filter name.
#[derive(Default)]
pub struct Ctx {
    values: HashMap<&'static str, Box<dyn Any + Send + Sync>>,
}

impl Ctx {
    pub fn insert<T: Any + Send + Sync>(&mut self, key: &'static str, value: T) {
        self.values.insert(key, Box::new(value));
    }

    pub fn get<T: Any + Send + Sync>(&self, key: &'static str) -> Option<&T> {
        self.values.get(key).and_then(|v| v.downcast_ref())
    }
}

/// What the logging phase gets to know about a finished request.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub status: StatusCode,
    /// Response body bytes sent to the client.
    pub body_bytes: u64,
    pub duration: Duration,
    /// The response was cut short (client gone, body error).
    pub aborted: bool,
}

/// The phases of a request's life. Every method has a default that does nothing.
#[async_trait::async_trait]
pub trait Filter: Send + Sync {
    /// Names the filter in logs and in [`Ctx`].
    fn name(&self) -> &str;

    /// Right after the request head, before location-specific processing (e.g. IP
    /// rules, rate limits).
    async fn early_request(&self, _session: &mut Session, _ctx: &mut Ctx) -> Flow {
        Flow::Continue
    }

    /// The main request phase (rewrites, auth, `return`).
    async fn request(&self, _session: &mut Session, _ctx: &mut Ctx) -> Flow {
        Flow::Continue
    }

    /// A proxied request's upstream peer, as the location's balancer picked it: a
    /// filter may pick another (sticky sessions, canaries) or answer instead.
    async fn upstream_peer(&self, _session: &Session, _peer: &mut Peer, _ctx: &mut Ctx) -> Flow {
        Flow::Continue
    }

    /// A proxied request's head as it will go upstream, after edge's own rewriting
    /// (hop-by-hop headers, Host, X-Forwarded-*, Via, `proxy_set_header`).
    async fn upstream_request(
        &self,
        _session: &Session,
        _request: &mut http::request::Parts,
        _ctx: &mut Ctx,
    ) -> Flow {
        Flow::Continue
    }

    /// The response head, before it is sent (e.g. `add_header`).
    async fn response(
        &self,
        _session: &Session,
        _response: &mut http::response::Parts,
        _ctx: &mut Ctx,
    ) -> Flow {
        Flow::Continue
    }

    /// Each chunk of the response body on its way out (`end` on the last one).
    fn response_body(&self, _session: &Session, _chunk: &mut Bytes, _end: bool, _ctx: &mut Ctx) {}

    /// After the response is done (or failed). Synchronous: it runs as the response
    /// body ends, on the connection's task.
    fn logging(&self, _session: &Session, _outcome: &Outcome, _ctx: &mut Ctx) {}
}
