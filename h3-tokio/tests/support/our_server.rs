//! The test contract of `app.rs`, served by h3-tokio (the server under test), plus
//! routes for h3-tokio's own features:
//! - `/inspect` (any method, and every CONNECT): 200 with what the server saw, as
//!   headers `x-method`, `x-early-data` (yes/no), `x-urgency`, `x-incremental`,
//!   `x-body-ended` (yes/no: whether the request's body was over when its handler
//!   started), `x-fields` (the request's header fields as `name=value`, joined by
//!   `;`), and `x-protocol` for extended CONNECT.
//! - `GET /early-hints`: a 103 with a `link` header, then 200; `?N`: N 103s, the i-th
//!   with `x-hint: i`.
//! - `GET /reset`: 200, 5 body bytes, then RESET_STREAM with H3_REQUEST_CANCELLED.
//! - `POST /hold`: reads nothing and never answers, so the request body queues up.
//! - `GET /respond`: 200 with `x-test: respond` and `whole\n`, sent with one
//!   `RequestStream::respond` call.
//! - `GET /panic`, on a server from [`spawn_serving`] only: the request callback
//!   panics.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use h3_tokio::{server, Config, RequestStream};
use http::{HeaderMap, Request, Response, StatusCode};
use sha2::{Digest, Sha256};
use tokio::sync::watch;

/// A running h3-tokio server. Dropping it does not stop it (tests end with the runtime).
pub struct OurServer {
    addr: SocketAddr,
    errors: Arc<Mutex<Vec<String>>>,
    shutdown: watch::Sender<Option<Duration>>,
}

impl OurServer {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stream errors handlers saw (cancelled uploads, resets), as text.
    pub fn errors(&self) -> Vec<String> {
        self.errors.lock().unwrap().clone()
    }

    /// Starts a graceful shutdown of every connection.
    pub fn shutdown(&self, grace: Duration) {
        let _ = self.shutdown.send(Some(grace));
    }
}

/// A server whose connections hand requests out through an `accept` loop.
pub fn spawn(endpoint: quinn::Endpoint, config: Config) -> OurServer {
    start(endpoint, config, false)
}

/// A server whose connections call back per request (`Connection::serve`).
pub fn spawn_serving(endpoint: quinn::Endpoint, config: Config) -> OurServer {
    start(endpoint, config, true)
}

fn start(endpoint: quinn::Endpoint, config: Config, serving: bool) -> OurServer {
    let addr = endpoint.local_addr().unwrap();
    let errors = Arc::new(Mutex::new(Vec::new()));
    let (shutdown, shutdown_rx) = watch::channel(None);
    let errs = errors.clone();
    tokio::spawn(async move {
        while let Some(incoming) = endpoint.accept().await {
            let errors = errs.clone();
            let config = config.clone();
            let shutdown = shutdown_rx.clone();
            tokio::spawn(async move {
                let Ok(quic) = incoming.await else { return };
                let conn = server::Connection::new(quic, config).await.unwrap();
                let result = if serving {
                    serve(conn, shutdown, errors.clone()).await
                } else {
                    accept_loop(conn, shutdown, errors.clone()).await
                };
                if let Err(e) = result {
                    errors.lock().unwrap().push(format!("connection: {e}"));
                }
            });
        }
    });
    OurServer {
        addr,
        errors,
        shutdown,
    }
}

type Errors = Arc<Mutex<Vec<String>>>;

fn spawn_handler(req: Request<()>, stream: RequestStream, errors: &Errors) {
    let errors = errors.clone();
    tokio::spawn(async move {
        if let Err(e) = handle(req, stream).await {
            errors.lock().unwrap().push(e.to_string());
        }
    });
}

async fn accept_loop(
    mut conn: server::Connection,
    mut shutdown: watch::Receiver<Option<Duration>>,
    errors: Errors,
) -> Result<(), h3_tokio::Error> {
    loop {
        let next = tokio::select! {
            next = conn.accept() => next,
            Ok(()) = shutdown.changed() => {
                if let Some(grace) = *shutdown.borrow() {
                    conn.shutdown(grace);
                }
                continue;
            }
        };
        match next? {
            Some((req, stream)) => spawn_handler(req, stream, &errors),
            None => return Ok(()),
        }
    }
}

async fn serve(
    conn: server::Connection,
    mut shutdown: watch::Receiver<Option<Duration>>,
    errors: Errors,
) -> Result<(), h3_tokio::Error> {
    let handle = conn.handle();
    tokio::spawn(async move {
        while shutdown.changed().await.is_ok() {
            if let Some(grace) = *shutdown.borrow() {
                handle.shutdown(grace);
            }
        }
    });
    conn.serve(move |req, mut stream| {
        match req.uri().path() {
            "/panic" => panic!("the request callback panics, as asked"),
            // Answered in the callback, in the driver's round: no task.
            "/in-callback" => {
                let head = response(StatusCode::OK, &[("x-test", "in-callback")]);
                if let Err(e) = stream.respond(head, Bytes::from_static(b"at once\n")) {
                    errors.lock().unwrap().push(e.to_string());
                }
            }
            _ => spawn_handler(req, stream, &errors),
        }
    })
    .await
}

fn response(status: StatusCode, headers: &[(&str, &str)]) -> Response<()> {
    let mut resp = Response::builder().status(status);
    for (n, v) in headers {
        resp = resp.header(*n, *v);
    }
    resp.body(()).unwrap()
}

async fn handle(req: Request<()>, mut stream: RequestStream) -> Result<(), h3_tokio::Error> {
    let path = req.uri().path().to_owned();
    if path == "/inspect" || req.method() == http::Method::CONNECT {
        return inspect(req, stream);
    }
    match (req.method().as_str(), path.as_str()) {
        ("GET", "/reset") => {
            stream.send_response(response(StatusCode::OK, &[]))?;
            stream.send_data(Bytes::from_static(b"part\n")).await?;
            stream.reset(h3_tokio::Code::H3_REQUEST_CANCELLED);
            Ok(())
        }
        ("GET", "/early-hints") => {
            match req.uri().query().and_then(|q| q.parse::<usize>().ok()) {
                Some(n) => {
                    for i in 0..n {
                        let i = i.to_string();
                        stream.send_informational(response(
                            StatusCode::EARLY_HINTS,
                            &[("x-hint", &i)],
                        ))?;
                    }
                }
                None => stream.send_informational(response(
                    StatusCode::EARLY_HINTS,
                    &[("link", "</style.css>; rel=preload")],
                ))?,
            }
            stream.send_response(response(StatusCode::OK, &[]))?;
            stream
                .send_data(Bytes::from_static(b"after hints\n"))
                .await?;
            stream.finish()
        }
        ("POST", "/hold") => std::future::pending().await,
        ("GET", "/respond") => stream.respond(
            response(StatusCode::OK, &[("x-test", "respond")]),
            Bytes::from_static(b"whole\n"),
        ),
        // No body: the HEADERS frame ends the stream.
        ("GET", "/respond-empty") => stream.respond(
            response(StatusCode::NO_CONTENT, &[("x-test", "empty")]),
            Bytes::new(),
        ),
        ("GET", "/hello") => {
            stream.send_response(response(
                StatusCode::OK,
                &[("content-type", "text/plain"), ("x-test", "yes")],
            ))?;
            stream
                .send_data(Bytes::from_static(b"hello world\n"))
                .await?;
            stream.finish()
        }
        ("GET", "/trailers") => {
            stream.send_response(response(StatusCode::OK, &[]))?;
            stream.send_data(Bytes::from_static(b"body\n")).await?;
            let mut trailers = HeaderMap::new();
            trailers.insert("x-trailer-one", "1".parse().unwrap());
            trailers.insert("x-trailer-two", "2".parse().unwrap());
            stream.send_trailers(trailers)
        }
        ("POST", "/sha256") => {
            let mut hash = Sha256::new();
            while let Some(chunk) = stream.recv_data().await? {
                hash.update(&chunk);
            }
            let trailers = stream.recv_trailers().await?;
            stream.send_response(response(StatusCode::OK, &[]))?;
            let hex: String = hash.finalize().iter().map(|b| format!("{b:02x}")).collect();
            stream.send_data(format!("{hex}\n").into()).await?;
            match trailers {
                Some(t) => stream.send_trailers(t),
                None => stream.finish(),
            }
        }
        ("POST", "/echo") => {
            stream.send_response(response(StatusCode::OK, &[]))?;
            while let Some(chunk) = stream.recv_data().await? {
                stream.send_data(chunk).await?;
            }
            stream.finish()
        }
        ("GET", p) if p.starts_with("/bytes/") => {
            let Ok(n) = p["/bytes/".len()..].parse::<u64>() else {
                stream.send_response(response(StatusCode::BAD_REQUEST, &[]))?;
                return stream.finish();
            };
            stream.send_response(response(
                StatusCode::OK,
                &[("content-length", &n.to_string())],
            ))?;
            // 251 * 256 bytes: a whole number of pattern periods, so every chunk is the
            // same buffer and a 1 GiB body costs no allocation per chunk.
            let chunk = Bytes::from(super::app::pattern(251 * 256));
            let mut left = n;
            while left > 0 {
                let len = left.min(chunk.len() as u64) as usize;
                stream.send_data(chunk.slice(..len)).await?;
                left -= len as u64;
            }
            stream.finish()
        }
        _ => {
            stream.send_response(response(StatusCode::NOT_FOUND, &[]))?;
            stream.send_data(Bytes::from_static(b"not found\n")).await?;
            stream.finish()
        }
    }
}

fn inspect(req: Request<()>, mut stream: RequestStream) -> Result<(), h3_tokio::Error> {
    let ext = req.extensions();
    let priority = ext.get::<h3_tokio::Priority>().copied().unwrap_or_default();
    let early = if ext.get::<h3_tokio::EarlyData>().is_some() {
        "yes"
    } else {
        "no"
    };
    let urgency = priority.urgency.to_string();
    let incremental = priority.incremental.to_string();
    let ended = if stream.is_end_stream() { "yes" } else { "no" };
    let fields: Vec<String> = req
        .headers()
        .iter()
        .map(|(n, v)| format!("{n}={}", String::from_utf8_lossy(v.as_bytes())))
        .collect();
    let fields = fields.join(";");
    let mut headers = vec![
        ("x-method", req.method().as_str()),
        ("x-body-ended", ended),
        ("x-fields", &fields),
        ("x-early-data", early),
        ("x-urgency", &urgency),
        ("x-incremental", &incremental),
    ];
    let protocol = ext
        .get::<h3_tokio::Protocol>()
        .map(|p| p.as_str().to_owned());
    if let Some(p) = &protocol {
        headers.push(("x-protocol", p));
    }
    stream.send_response(response(StatusCode::OK, &headers))?;
    stream.finish()
}
