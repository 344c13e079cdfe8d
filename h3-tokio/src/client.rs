//! The client side: send requests on a QUIC connection and read their responses.

use std::sync::Arc;

use http::{Request, Response};

use crate::config::Config;
use crate::driver::Driver;
use crate::error::Error;
use crate::fields;
use crate::stream::{lock, wait, Command, ConnShared, RecvHalf, RequestStream, StreamShared};

/// Sends requests on an HTTP/3 connection. Cheap to clone; clones share the connection
/// and may be used from many tasks at once.
#[derive(Clone)]
pub struct SendRequest {
    quic: quinn::Connection,
    shared: Arc<ConnShared>,
}

/// Starts HTTP/3 on an established client `quinn::Connection`.
pub async fn new(quic: quinn::Connection, config: Config) -> Result<SendRequest, Error> {
    let (shared, _) = Driver::spawn(quic.clone(), config, false).await?;
    Ok(SendRequest { quic, shared })
}

impl SendRequest {
    /// Sends a request head on a new stream. Stream the body with
    /// [`RequestStream::send_data`] and end it with [`RequestStream::finish`] (also for
    /// a request without a body), then read the response.
    pub async fn send_request(&self, request: Request<()>) -> Result<RequestStream, Error> {
        if self.is_going_away() {
            return Err(Error::GoingAway);
        }
        let (parts, ()) = request.into_parts();
        let head = fields::request_head(parts).map_err(Error::Message)?;
        let (send, recv) = self.quic.open_bi().await.map_err(Error::from_quinn)?;
        let sid = u64::from(send.id()) as i64;
        let shared = StreamShared::new(sid, self.shared.clone());
        self.shared.send(Command::Open {
            send,
            recv,
            head,
            shared: shared.clone(),
        })?;
        Ok(RequestStream::new(shared, false))
    }

    /// Whether the server sent GOAWAY: new requests would not be processed.
    pub fn is_going_away(&self) -> bool {
        lock(&self.shared.state).goaway.is_some()
    }

    /// Closes the connection with H3_NO_ERROR (in-flight requests fail).
    pub fn close(&self) {
        self.quic.close(crate::Code::H3_NO_ERROR.into(), b"");
    }
}

impl RequestStream {
    /// See [`RecvHalf::recv_response`].
    pub async fn recv_response(&mut self) -> Result<Response<()>, Error> {
        self.recv.recv_response().await
    }

    /// See [`RecvHalf::informational`].
    pub fn informational(&mut self) -> Vec<Response<()>> {
        self.recv.informational()
    }
}

impl RecvHalf {
    /// Client: the final response head. 1xx responses received before it are available
    /// from [`informational`](Self::informational).
    pub async fn recv_response(&mut self) -> Result<Response<()>, Error> {
        wait(
            &self.shared,
            |st| &mut st.waker,
            |st| st.response.take().map(Ok),
        )
        .await
    }

    /// Client: 1xx responses (e.g. 103 Early Hints) received so far, the latest 16 if
    /// more came unread.
    pub fn informational(&mut self) -> Vec<Response<()>> {
        lock(&self.shared.state).informational.drain(..).collect()
    }
}
