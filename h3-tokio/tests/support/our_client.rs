//! h3-tokio's client (the client under test), with the same surface as
//! [`super::hyper_client::HyperClient`] so scenarios run against either.

use std::net::SocketAddr;

use bytes::Bytes;
use h3_tokio::{client, Code, Config};
use http::{HeaderMap, Method, Request};

use super::app::{self, CHUNK};
use super::hyper_client::Reply;
use super::tls;

#[derive(Clone)]
pub struct OurClient {
    send: client::SendRequest,
    authority: String,
    _endpoint: quinn::Endpoint,
}

impl OurClient {
    pub async fn connect(addr: SocketAddr) -> Result<OurClient, String> {
        let endpoint = tls::client_endpoint();
        let quic = tls::connect(&endpoint, addr).await;
        let send = client::new(quic, Config::default())
            .await
            .map_err(|e| e.to_string())?;
        Ok(OurClient {
            send,
            authority: format!("localhost:{}", addr.port()),
            _endpoint: endpoint,
        })
    }

    pub fn sender(&self) -> &client::SendRequest {
        &self.send
    }

    fn build(&self, method: Method, path: &str) -> Request<()> {
        Request::builder()
            .method(method)
            .uri(format!("https://{}{path}", self.authority))
            .body(())
            .unwrap()
    }

    pub async fn get(&self, path: &str) -> Result<Reply, String> {
        self.request(Method::GET, path, None, None).await
    }

    /// Sends a request (body streamed in chunks while the response is read) and reads
    /// the whole response.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        trailers: Option<HeaderMap>,
    ) -> Result<Reply, String> {
        let err = |e: h3_tokio::Error| e.to_string();
        let stream = self
            .send
            .send_request(self.build(method, path))
            .await
            .map_err(err)?;
        let (mut tx, mut rx) = stream.split();
        let body = Bytes::from(body.unwrap_or_default());
        // Send and receive at once, so /echo cannot deadlock on flow control.
        let upload = async move {
            for chunk in body.chunks(CHUNK) {
                tx.send_data(body.slice_ref(chunk)).await?;
            }
            match trailers {
                Some(t) => tx.send_trailers(t),
                None => tx.finish(),
            }
        };
        let download = async move {
            let resp = rx.recv_response().await?;
            let informational = rx
                .informational()
                .iter()
                .map(|r| r.status().as_u16())
                .collect();
            let mut received = Vec::new();
            while let Some(chunk) = rx.recv_data().await? {
                received.extend_from_slice(&chunk);
            }
            let trailers = rx.recv_trailers().await?;
            Ok::<_, h3_tokio::Error>((resp, received, trailers, informational))
        };
        let (sent, got) = tokio::join!(upload, download);
        sent.map_err(err)?;
        let (resp, received, trailers, informational) = got.map_err(err)?;
        Ok(Reply {
            status: resp.status().as_u16(),
            headers: resp.headers().clone(),
            body: received,
            trailers,
            informational,
        })
    }

    /// POST `path`, send `after` of `total` bytes, then cancel: STOP_SENDING and
    /// RESET_STREAM with H3_REQUEST_CANCELLED.
    pub async fn cancel_upload(
        &self,
        path: &str,
        total: u64,
        after: u64,
    ) -> Result<String, String> {
        let req = Request::builder()
            .method(Method::POST)
            .uri(format!("https://{}{path}", self.authority))
            .header("content-length", total)
            .body(())
            .unwrap();
        let mut stream = self
            .send
            .send_request(req)
            .await
            .map_err(|e| e.to_string())?;
        let mut sent = 0u64;
        while sent < after {
            let len = (after - sent).min(CHUNK as u64) as usize;
            stream
                .send_data(app::pattern_chunk(sent, len))
                .await
                .map_err(|e| e.to_string())?;
            sent += len as u64;
        }
        stream.stop_sending(Code::H3_REQUEST_CANCELLED);
        stream.reset(Code::H3_REQUEST_CANCELLED);
        Ok(format!("sent {sent} of {total} bytes, then cancelled"))
    }

    /// GET `path`, read at least `after` body bytes, then cancel the stream.
    pub async fn cancel_download(&self, path: &str, after: u64) -> Result<String, String> {
        let mut stream = self
            .send
            .send_request(self.build(Method::GET, path))
            .await
            .map_err(|e| e.to_string())?;
        stream.finish().map_err(|e| e.to_string())?;
        stream.recv_response().await.map_err(|e| e.to_string())?;
        let mut received = 0u64;
        while received < after {
            match stream.recv_data().await.map_err(|e| e.to_string())? {
                Some(chunk) => received += chunk.len() as u64,
                None => return Err(format!("response ended after {received} bytes")),
            }
        }
        stream.stop_sending(Code::H3_REQUEST_CANCELLED);
        stream.reset(Code::H3_REQUEST_CANCELLED);
        Ok(format!("read {received} bytes, then cancelled"))
    }
}
