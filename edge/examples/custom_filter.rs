//! A custom filter in Rust: adds a request id header to every response and refuses
//! `/admin` with 403, in front of a built-in `return`.
//!
//! ```sh
//! cargo run -p edge --example custom_filter   # then: curl -i http://127.0.0.1:8080/
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use edge::engine::{Engine, Listener, Match, Route, Router, Site};
use edge::filter::{Ctx, Filter, Flow};
use edge::filters::Return;
use edge::session::Session;

/// Numbers requests, refuses /admin, and tags responses with the number.
#[derive(Default)]
struct RequestId(AtomicU64);

#[async_trait::async_trait]
impl Filter for RequestId {
    fn name(&self) -> &str {
        "request_id"
    }

    async fn request(&self, session: &mut Session, ctx: &mut Ctx) -> Flow {
        ctx.insert("request_id", self.0.fetch_add(1, Ordering::Relaxed));
        if session.request.uri.path().starts_with("/admin") {
            return Flow::respond(403, "forbidden\n");
        }
        Flow::Continue
    }

    async fn response(&self, _: &Session, resp: &mut http::response::Parts, ctx: &mut Ctx) -> Flow {
        let id = ctx.get::<u64>("request_id").copied().unwrap_or_default();
        resp.headers.insert("x-request-id", id.into());
        Flow::Continue
    }
}

#[tokio::main]
async fn main() -> Result<(), edge::body::BoxError> {
    tracing_subscriber::fmt().init();
    let hello = Return {
        status: http::StatusCode::OK,
        text: Some("hello from a custom chain\n".parse()?),
    };
    let site = Site {
        names: vec!["localhost".into()],
        routes: vec![Route {
            matcher: Match::Prefix("/".into()),
            filters: vec![Arc::new(RequestId::default()), Arc::new(hello)],
            max_body_size: None,
            proxy: None,
        }],
        alt_svc: None,
        access_log: true,
        underscores_in_headers: false,
    };
    let site = Arc::new(site);
    let addr = "127.0.0.1:8080".parse()?;
    let (listener, _) = Listener::new(addr, false, vec![site.clone()]).ok_or("no site")?;
    let engine = Engine {
        router: Router::new(vec![site], vec![listener]),
    };
    let listen = edge::listen::Listen::Tcp {
        addr,
        tls: None,
        http2: true,
        limits: Default::default(),
    };
    edge::listen::run(vec![listen], Arc::new(engine)).await
}
