//! hyperium's `h3` server over `h3-quinn`, serving the [`super::app`] contract.
//!
//! Every connection and every request runs in its own tokio task; bodies are streamed
//! (nothing is buffered beyond one chunk), so `/bytes/1073741824` runs in bounded memory.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Buf, Bytes};
use h3::error::StreamError;
use http::{HeaderValue, Response, StatusCode};
use sha2::{Digest, Sha256};
use tokio::task::JoinHandle;

use super::app::{self, Route, CHUNK};

type Stream = h3::server::RequestStream<h3_quinn::BidiStream<Bytes>, Bytes>;

#[derive(Default)]
struct Shared {
    /// Stream errors seen by request handlers (e.g. a cancelled upload).
    errors: Mutex<Vec<String>>,
    /// Connection-level errors other than a graceful (H3_NO_ERROR) close.
    conn_errors: Mutex<Vec<String>>,
    /// Requests whose headers were received.
    requests: AtomicU64,
    /// Requests whose handler completed without error.
    completed: AtomicU64,
}

/// A running hyperium h3 server. Dropping it stops accepting and closes the endpoint.
pub struct HyperServer {
    addr: SocketAddr,
    endpoint: quinn::Endpoint,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

/// Serves the [`super::app`] contract on `endpoint` (which must have a server config, e.g.
/// [`super::tls::server_endpoint`]). Must be called inside a tokio runtime.
pub fn spawn(endpoint: quinn::Endpoint) -> HyperServer {
    let addr = endpoint.local_addr().expect("server endpoint address");
    let shared = Arc::new(Shared::default());
    let task = tokio::spawn(accept_loop(endpoint.clone(), shared.clone()));
    HyperServer {
        addr,
        endpoint,
        shared,
        task,
    }
}

impl HyperServer {
    /// The UDP address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The quinn endpoint the server runs on.
    pub fn endpoint(&self) -> &quinn::Endpoint {
        &self.endpoint
    }

    /// Stream errors seen by request handlers so far, as `"METHOD /path: what: error"`.
    pub fn errors(&self) -> Vec<String> {
        self.shared.errors.lock().unwrap().clone()
    }

    /// Connection errors seen so far, excluding graceful H3_NO_ERROR closes.
    pub fn conn_errors(&self) -> Vec<String> {
        self.shared.conn_errors.lock().unwrap().clone()
    }

    /// Number of requests whose headers were received.
    pub fn requests(&self) -> u64 {
        self.shared.requests.load(Ordering::SeqCst)
    }

    /// Number of requests whose handler completed without error.
    pub fn completed(&self) -> u64 {
        self.shared.completed.load(Ordering::SeqCst)
    }

    /// Waits until at least `n` handler errors were recorded, or `timeout` elapses;
    /// returns the errors recorded by then.
    pub async fn wait_for_errors(&self, n: usize, timeout: Duration) -> Vec<String> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let errors = self.errors();
            if errors.len() >= n || tokio::time::Instant::now() >= deadline {
                return errors;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

impl Drop for HyperServer {
    fn drop(&mut self) {
        self.task.abort();
        self.endpoint.close(0u32.into(), b"test server dropped");
    }
}

async fn accept_loop(endpoint: quinn::Endpoint, shared: Arc<Shared>) {
    while let Some(incoming) = endpoint.accept().await {
        tokio::spawn(serve_connection(incoming, shared.clone()));
    }
}

async fn serve_connection(incoming: quinn::Incoming, shared: Arc<Shared>) {
    let conn = match incoming.await {
        Ok(conn) => conn,
        Err(e) => {
            push(&shared.conn_errors, format!("handshake: {e}"));
            return;
        }
    };
    let mut h3_conn: h3::server::Connection<h3_quinn::Connection, Bytes> =
        match h3::server::builder()
            .build(h3_quinn::Connection::new(conn))
            .await
        {
            Ok(c) => c,
            Err(e) => {
                push(&shared.conn_errors, format!("h3 setup: {e}"));
                return;
            }
        };
    loop {
        match h3_conn.accept().await {
            Ok(Some(resolver)) => {
                let shared = shared.clone();
                tokio::spawn(async move {
                    let (req, stream) = match resolver.resolve_request().await {
                        Ok(r) => r,
                        Err(e) => {
                            push(&shared.errors, format!("resolve request: {e}"));
                            return;
                        }
                    };
                    shared.requests.fetch_add(1, Ordering::SeqCst);
                    let label = format!("{} {}", req.method(), req.uri().path());
                    match handle(app::route(req.method(), req.uri().path()), stream).await {
                        Ok(()) => {
                            shared.completed.fetch_add(1, Ordering::SeqCst);
                        }
                        Err(e) => push(&shared.errors, format!("{label}: {e}")),
                    }
                });
            }
            Ok(None) => break,
            Err(e) => {
                if !e.is_h3_no_error() && !is_peer_closed(&e) {
                    push(&shared.conn_errors, format!("accept: {e}"));
                }
                break;
            }
        }
    }
}

/// A client dropping its quinn connection closes it with application code 0, which
/// is not an HTTP/3 error; count it as graceful.
fn is_peer_closed(e: &h3::error::ConnectionError) -> bool {
    matches!(
        e,
        h3::error::ConnectionError::Remote {
            0: h3::quic::ConnectionErrorIncoming::ApplicationClose { error_code: 0 },
            ..
        }
    )
}

fn push(list: &Mutex<Vec<String>>, msg: String) {
    list.lock().unwrap().push(msg);
}

fn ctx(what: &'static str) -> impl FnOnce(StreamError) -> String {
    move |e| format!("{what}: {e}")
}

fn response(status: StatusCode) -> http::response::Builder {
    Response::builder().status(status)
}

async fn handle(route: Route, mut stream: Stream) -> Result<(), String> {
    match route {
        Route::Hello => {
            let mut resp = Response::new(());
            *resp.headers_mut() = app::hello_headers();
            stream
                .send_response(resp)
                .await
                .map_err(ctx("send_response"))?;
            send_all(&mut stream, Bytes::from_static(app::HELLO_BODY)).await?;
        }
        Route::Bytes(n) => {
            let resp = response(StatusCode::OK)
                .header(http::header::CONTENT_LENGTH, HeaderValue::from(n))
                .body(())
                .unwrap();
            stream
                .send_response(resp)
                .await
                .map_err(ctx("send_response"))?;
            let mut offset = 0u64;
            while offset < n {
                let len = (n - offset).min(CHUNK as u64) as usize;
                stream
                    .send_data(app::pattern_chunk(offset, len))
                    .await
                    .map_err(|e| format!("send_data at {offset}: {e}"))?;
                offset += len as u64;
            }
        }
        Route::Sha256 => {
            let mut hasher = Sha256::new();
            let mut received = 0u64;
            while let Some(mut buf) = stream
                .recv_data()
                .await
                .map_err(|e| format!("recv_data after {received} bytes: {e}"))?
            {
                while buf.has_remaining() {
                    let len = buf.chunk().len();
                    hasher.update(buf.chunk());
                    received += len as u64;
                    buf.advance(len);
                }
            }
            let trailers = stream.recv_trailers().await.map_err(ctx("recv_trailers"))?;
            let body = format!("{}\n", app::hex(&hasher.finalize()));
            stream
                .send_response(response(StatusCode::OK).body(()).unwrap())
                .await
                .map_err(ctx("send_response"))?;
            stream
                .send_data(Bytes::from(body))
                .await
                .map_err(ctx("send_data"))?;
            if let Some(trailers) = trailers {
                stream
                    .send_trailers(trailers)
                    .await
                    .map_err(ctx("send_trailers"))?;
            }
        }
        Route::Echo => {
            stream
                .send_response(response(StatusCode::OK).body(()).unwrap())
                .await
                .map_err(ctx("send_response"))?;
            let mut echoed = 0u64;
            while let Some(mut buf) = stream
                .recv_data()
                .await
                .map_err(|e| format!("recv_data after {echoed} bytes: {e}"))?
            {
                let data = buf.copy_to_bytes(buf.remaining());
                let len = data.len() as u64;
                stream
                    .send_data(data)
                    .await
                    .map_err(|e| format!("send_data after {echoed} bytes: {e}"))?;
                echoed += len;
            }
        }
        Route::Trailers => {
            stream
                .send_response(response(StatusCode::OK).body(()).unwrap())
                .await
                .map_err(ctx("send_response"))?;
            stream
                .send_data(Bytes::from_static(app::TRAILERS_BODY))
                .await
                .map_err(ctx("send_data"))?;
            stream
                .send_trailers(app::trailers_response())
                .await
                .map_err(ctx("send_trailers"))?;
        }
        Route::NotFound => {
            stream
                .send_response(response(StatusCode::NOT_FOUND).body(()).unwrap())
                .await
                .map_err(ctx("send_response"))?;
            send_all(&mut stream, Bytes::from_static(app::NOT_FOUND_BODY)).await?;
        }
    }
    stream.finish().await.map_err(ctx("finish"))
}

async fn send_all(stream: &mut Stream, body: Bytes) -> Result<(), String> {
    stream.send_data(body).await.map_err(ctx("send_data"))
}
