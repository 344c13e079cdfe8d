//! hyperium's `h3` client over `h3-quinn`.
//!
//! A [`HyperClient`] wraps one QUIC connection; it is `Clone` (h3's `SendRequest` is), so
//! many tasks can run requests concurrently on the same connection. Request bodies are
//! sent in [`CHUNK`]-sized pieces while the response is read, so `/echo` never deadlocks
//! on flow control.

use std::cell::Cell;
use std::net::SocketAddr;
use std::panic::{self, AssertUnwindSafe};
use std::sync::{Arc, Mutex, Once};
use std::time::Duration;

use bytes::{Buf, Bytes};
use h3::error::Code;
use http::{HeaderMap, HeaderValue, Method, Request};

use super::app::{self, CHUNK};
use super::tls;

type Sender = h3::client::SendRequest<h3_quinn::OpenStreams, Bytes>;

/// A complete response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    /// The trailer section, if the response had one.
    pub trailers: Option<HeaderMap>,
    /// The statuses of the interim (1xx) responses before it, in order.
    pub informational: Vec<u16>,
}

/// An h3 client on one QUIC connection. Cheap to clone; all clones share the connection,
/// which is closed with H3_NO_ERROR when the last clone is dropped.
#[derive(Clone)]
pub struct HyperClient {
    send: Sender,
    conn: quinn::Connection,
    authority: String,
    driver_error: Arc<Mutex<Option<String>>>,
    /// Kept alive when the client made its own endpoint ([`HyperClient::connect`]).
    endpoint: Option<quinn::Endpoint>,
}

impl HyperClient {
    /// Starts an h3 client on an established QUIC connection; the h3 connection driver
    /// runs in its own tokio task.
    pub async fn new(conn: quinn::Connection) -> Result<HyperClient, String> {
        let authority = format!("localhost:{}", conn.remote_address().port());
        let (mut driver, send) = h3::client::new(h3_quinn::Connection::new(conn.clone()))
            .await
            .map_err(|e| format!("h3 client setup: {e}"))?;
        let driver_error = Arc::new(Mutex::new(None));
        let slot = driver_error.clone();
        tokio::spawn(async move {
            let e = driver.wait_idle().await;
            *slot.lock().unwrap() = Some(e.to_string());
        });
        Ok(HyperClient {
            send,
            conn,
            authority,
            driver_error,
            endpoint: None,
        })
    }

    /// Connects to `addr` from a new [`tls::client_endpoint`] (owned by the client) and
    /// starts an h3 client on the connection.
    pub async fn connect(addr: SocketAddr) -> Result<HyperClient, String> {
        let endpoint = tls::client_endpoint();
        let conn = endpoint
            .connect(addr, "localhost")
            .map_err(|e| format!("connect: {e}"))?
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        let mut client = HyperClient::new(conn).await?;
        client.endpoint = Some(endpoint);
        Ok(client)
    }

    /// The underlying QUIC connection.
    pub fn connection(&self) -> &quinn::Connection {
        &self.conn
    }

    /// Why the h3 connection driver stopped, if it has.
    pub fn driver_error(&self) -> Option<String> {
        self.driver_error.lock().unwrap().clone()
    }

    /// Closes the QUIC connection now with H3_NO_ERROR (for every clone).
    pub fn close(&self) {
        let code = quinn::VarInt::from_u64(Code::H3_NO_ERROR.value()).unwrap();
        self.conn.close(code, b"client done");
    }

    fn uri(&self, path: &str) -> String {
        format!("https://{}{}", self.authority, path)
    }

    fn build(&self, method: Method, path: &str, headers: HeaderMap) -> Result<Request<()>, String> {
        let mut req = Request::builder()
            .method(method)
            .uri(self.uri(path))
            .body(())
            .map_err(|e| format!("build request: {e}"))?;
        *req.headers_mut() = headers;
        Ok(req)
    }

    /// `GET path` without a body.
    pub async fn get(&self, path: &str) -> Result<Reply, String> {
        self.request(Method::GET, path, None, None).await
    }

    /// Sends a request and reads the whole response. `body` is streamed in 64 KiB chunks
    /// (concurrently with reading the response), followed by `trailers` if given.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        trailers: Option<HeaderMap>,
    ) -> Result<Reply, String> {
        self.request_with_headers(method, path, HeaderMap::new(), body, trailers)
            .await
    }

    /// [`HyperClient::request`] with extra request header fields.
    pub async fn request_with_headers(
        &self,
        method: Method,
        path: &str,
        headers: HeaderMap,
        body: Option<Vec<u8>>,
        trailers: Option<HeaderMap>,
    ) -> Result<Reply, String> {
        let req = self.build(method, path, headers)?;
        let mut send = self.send.clone();
        let stream = send
            .send_request(req)
            .await
            .map_err(|e| format!("send_request: {e}"))?;
        let (mut tx, mut rx) = stream.split();

        let sending = async move {
            if let Some(body) = body {
                let body = Bytes::from(body);
                let mut off = 0;
                while off < body.len() {
                    let end = (off + CHUNK).min(body.len());
                    tx.send_data(body.slice(off..end))
                        .await
                        .map_err(|e| format!("send_data at {off}: {e}"))?;
                    off = end;
                }
            }
            if let Some(trailers) = trailers {
                tx.send_trailers(trailers)
                    .await
                    .map_err(|e| format!("send_trailers: {e}"))?;
            }
            tx.finish().await.map_err(|e| format!("finish: {e}"))
        };

        let receiving = async move {
            // hyperium's h3 hands each 1xx out as a response: the final one follows.
            let mut informational = Vec::new();
            let resp = loop {
                let resp = rx
                    .recv_response()
                    .await
                    .map_err(|e| format!("recv_response: {e}"))?;
                if !resp.status().is_informational() {
                    break resp;
                }
                informational.push(resp.status().as_u16());
            };
            let mut body = Vec::new();
            while let Some(mut buf) = rx
                .recv_data()
                .await
                .map_err(|e| format!("recv_data after {} bytes: {e}", body.len()))?
            {
                while buf.has_remaining() {
                    let chunk = buf.chunk();
                    let len = chunk.len();
                    body.extend_from_slice(chunk);
                    buf.advance(len);
                }
            }
            let trailers = rx
                .recv_trailers()
                .await
                .map_err(|e| format!("recv_trailers: {e}"))?;
            Ok::<_, String>(Reply {
                status: resp.status().as_u16(),
                headers: resp.headers().clone(),
                body,
                trailers,
                informational,
            })
        };

        match tokio::join!(sending, receiving) {
            // A complete response wins: the server may answer without reading the body.
            (_, Ok(reply)) => Ok(reply),
            (Ok(()), Err(e)) => Err(e),
            (Err(s), Err(e)) => Err(format!("{e} (while sending: {s})")),
        }
    }

    /// Starts `POST path` declaring `content-length: total`, sends the first `after` bytes
    /// of `pattern(total)`, then cancels the request stream: STOP_SENDING and
    /// RESET_STREAM with H3_REQUEST_CANCELLED.
    ///
    /// Ok describes what was observed; Err if sending failed before `after` bytes (the
    /// stream is cancelled in both cases).
    ///
    /// The response is not read: h3-quinn panics on STOP_SENDING while a read is pending,
    /// so the receive side is left untouched until it is stopped. With `/echo`, keep
    /// `after` below the two stream windows (about 2.5 MB with quinn's defaults) or the
    /// upload stalls on flow control.
    ///
    /// A reset lets the receiver discard unread data, so with a small `after` the server
    /// may see the cancel before the request headers. To be sure the server handler is
    /// reading the body when the cancel lands, make `after` larger than the server's
    /// stream receive window (quinn's default is 1.25 MB): the client can only get past
    /// it once the server has read.
    pub async fn cancel_upload(
        &self,
        path: &str,
        total: u64,
        after: u64,
    ) -> Result<String, String> {
        let mut stream = self.start_post(path, total).await?;
        let to_send = after.min(total);
        let mut sent = 0u64;
        let mut outcome = Ok(());
        while sent < to_send {
            let len = (to_send - sent).min(CHUNK as u64) as usize;
            if let Err(e) = stream.send_data(app::pattern_chunk(sent, len)).await {
                outcome = Err(format!(
                    "send_data failed after {sent} of {to_send} bytes: {e}"
                ));
                break;
            }
            sent += len as u64;
        }
        stream.stop_sending(Code::H3_REQUEST_CANCELLED);
        stream.stop_stream(Code::H3_REQUEST_CANCELLED);
        outcome?;
        Ok(format!(
            "sent {sent} of {total} bytes, then cancelled (STOP_SENDING + RESET_STREAM \
             H3_REQUEST_CANCELLED)"
        ))
    }

    /// Opens a `POST path` request declaring `content-length: total`.
    async fn start_post(
        &self,
        path: &str,
        total: u64,
    ) -> Result<h3::client::RequestStream<h3_quinn::BidiStream<Bytes>, Bytes>, String> {
        let mut headers = HeaderMap::new();
        headers.insert(http::header::CONTENT_LENGTH, HeaderValue::from(total));
        let req = self.build(Method::POST, path, headers)?;
        self.send
            .clone()
            .send_request(req)
            .await
            .map_err(|e| format!("send_request: {e}"))
    }

    /// `POST path` declaring `content-length: total`, sends `sent` of it, then stalls
    /// (neither more data nor the end): the status of the response the server gives
    /// meanwhile.
    pub async fn stalled_upload(&self, path: &str, total: u64, sent: u64) -> Result<u16, String> {
        let mut stream = self.start_post(path, total).await?;
        stream
            .send_data(app::pattern_chunk(0, sent as usize))
            .await
            .map_err(|e| format!("send_data: {e}"))?;
        let resp = stream
            .recv_response()
            .await
            .map_err(|e| format!("recv_response: {e}"))?;
        Ok(resp.status().as_u16())
    }

    /// `GET path` up to its response head: the status, and the stream with the body
    /// unread (held, it keeps the request open; its flow-control window is not
    /// extended).
    pub async fn get_unread(
        &self,
        path: &str,
    ) -> Result<
        (
            u16,
            h3::client::RequestStream<h3_quinn::BidiStream<Bytes>, Bytes>,
        ),
        String,
    > {
        let req = self.build(Method::GET, path, HeaderMap::new())?;
        let mut stream = self
            .send
            .clone()
            .send_request(req)
            .await
            .map_err(|e| format!("send_request: {e}"))?;
        stream.finish().await.map_err(|e| format!("finish: {e}"))?;
        let resp = stream
            .recv_response()
            .await
            .map_err(|e| format!("recv_response: {e}"))?;
        Ok((resp.status().as_u16(), stream))
    }

    /// `GET path`, reads the response until at least `after` body bytes arrived, then
    /// cancels the request stream: STOP_SENDING and RESET_STREAM with H3_REQUEST_CANCELLED.
    ///
    /// Ok describes what was observed; Err if the response failed or ended before
    /// `after` bytes.
    pub async fn cancel_download(&self, path: &str, after: u64) -> Result<String, String> {
        let (status, mut stream) = self.get_unread(path).await?;
        let mut received = 0u64;
        let mut outcome = Ok(());
        while received < after {
            match stream.recv_data().await {
                Ok(Some(buf)) => received += buf.remaining() as u64,
                Ok(None) => {
                    outcome = Err(format!("response ended after {received} of {after} bytes"));
                    break;
                }
                Err(e) => {
                    outcome = Err(format!("recv_data after {received} bytes: {e}"));
                    break;
                }
            }
        }
        // h3 may leave a read pending inside h3-quinn, whose stop_sending then panics
        // (it unwraps the stream the pending read owns). Retry after letting the read
        // complete; the panic happens before any state changes.
        let mut retries = 0u32;
        let mut stop = "STOP_SENDING H3_REQUEST_CANCELLED";
        while quietly(|| stream.stop_sending(Code::H3_REQUEST_CANCELLED)).is_none() {
            retries += 1;
            let next = tokio::time::timeout(Duration::from_secs(2), stream.recv_data()).await;
            match next {
                Ok(Ok(Some(buf))) if retries < 10_000 => received += buf.remaining() as u64,
                _ => {
                    // Ended, failed or stalled: dropping the stream sends STOP_SENDING(0).
                    stop = "STOP_SENDING 0 (on drop)";
                    break;
                }
            }
        }
        stream.stop_stream(Code::H3_REQUEST_CANCELLED);
        outcome?;
        Ok(format!(
            "status {status}, received {received} body bytes (wanted {after}), then cancelled \
             ({stop} after {retries} retries + RESET_STREAM H3_REQUEST_CANCELLED)"
        ))
    }
}

thread_local! {
    /// Set while [`quietly`] runs on this thread: its panics are expected and not printed.
    static QUIET: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f`, turning a panic into `None` without printing it (other panics, on any
/// thread, still go to the previous hook).
fn quietly<R>(f: impl FnOnce() -> R) -> Option<R> {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if !QUIET.with(Cell::get) {
                previous(info);
            }
        }));
    });
    QUIET.with(|q| q.set(true));
    let result = panic::catch_unwind(AssertUnwindSafe(f)).ok();
    QUIET.with(|q| q.set(false));
    result
}
