//! The server side: accept requests on a QUIC connection and answer them.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};

use crate::config::Config;
use crate::driver::{AcceptQueue, Driver};
use crate::error::Error;
use crate::fields::{self, Section};
use crate::stream::{lock, Command, ConnShared, RequestStream, SendHalf};

/// An HTTP/3 server connection over an accepted `quinn::Connection`.
///
/// A background task drives the connection; this handle accepts its requests. Dropping
/// the handle does not close the connection: requests already accepted go on, and new
/// ones are cancelled.
pub struct Connection {
    shared: Arc<ConnShared>,
    accepted: AcceptQueue,
}

impl Connection {
    /// Starts HTTP/3 on `quic` (opens the control and QPACK streams).
    pub async fn new(quic: quinn::Connection, config: Config) -> Result<Connection, Error> {
        let (shared, accepted) = Driver::spawn(quic, config, true).await?;
        Ok(Connection {
            shared,
            accepted: accepted.expect("server drivers have an accept queue"),
        })
    }

    /// The next request, or `None` once the connection has ended gracefully (after a
    /// shutdown, or the peer closing with H3_NO_ERROR).
    pub async fn accept(&mut self) -> Result<Option<(Request<()>, RequestStream)>, Error> {
        match self.accepted.recv().await {
            Some(req) => Ok(Some(req)),
            None => match lock(&self.shared.state).error.clone() {
                Some(Error::Connection { code, .. }) if code == crate::Code::H3_NO_ERROR => {
                    Ok(None)
                }
                Some(e @ Error::Connection { .. }) | Some(e @ Error::Transport(_)) => match &e {
                    Error::Transport(quinn::ConnectionError::LocallyClosed) => Ok(None),
                    _ => Err(e),
                },
                _ => Ok(None),
            },
        }
    }

    /// Graceful shutdown; see [`Handle::shutdown`].
    pub fn shutdown(&self, grace: Duration) {
        self.handle().shutdown(grace)
    }

    /// A handle to shut the connection down from another task than the accept loop.
    pub fn handle(&self) -> Handle {
        Handle {
            shared: self.shared.clone(),
        }
    }
}

/// Controls a server connection from outside its accept loop. Cheap to clone.
#[derive(Clone)]
pub struct Handle {
    shared: Arc<ConnShared>,
}

impl Handle {
    /// Graceful shutdown: sends GOAWAY, lets requests already accepted finish, refuses
    /// newer streams with H3_REQUEST_REJECTED, then closes the connection with
    /// H3_NO_ERROR, at the latest after `grace`.
    pub fn shutdown(&self, grace: Duration) {
        let _ = self.shared.send(Command::Shutdown { grace });
    }
}

impl RequestStream {
    /// See [`SendHalf::send_response`].
    pub fn send_response(&mut self, response: Response<()>) -> Result<(), Error> {
        self.send.send_response(response)
    }

    /// See [`SendHalf::respond`].
    pub fn respond(&mut self, response: Response<()>, body: Bytes) -> Result<(), Error> {
        self.send.respond(response, body)
    }

    /// See [`SendHalf::send_informational`].
    pub fn send_informational(&mut self, response: Response<()>) -> Result<(), Error> {
        self.send.send_informational(response)
    }
}

impl SendHalf {
    /// Server: sends the response head. Follow with [`send_data`](Self::send_data) and
    /// [`finish`](Self::finish).
    pub fn send_response(&mut self, response: Response<()>) -> Result<(), Error> {
        let head = self.final_head(response, "send_response")?;
        self.shared.conn.send(Command::Response {
            sid: self.shared.sid,
            head,
        })
    }

    /// Server: sends a whole response, its head, `body` (may be empty) and the end of
    /// the stream, in one step: the same as [`send_response`](Self::send_response),
    /// [`send_data`](Self::send_data) and [`finish`](Self::finish), but cheaper for a
    /// body already in memory. It does not wait for send buffer space: the body is
    /// queued whole.
    pub fn respond(&mut self, response: Response<()>, body: Bytes) -> Result<(), Error> {
        if !self.server || self.done {
            return Err(Error::Message(
                "respond needs a server stream not yet finished".into(),
            ));
        }
        let head = self.final_head(response, "respond")?;
        self.done = true;
        lock(&self.shared.state).send_queued += body.len();
        self.shared.conn.send(Command::Respond {
            sid: self.shared.sid,
            head,
            body,
        })
    }

    /// The head of the final response, checked (once, not 1xx) and marked as sent.
    fn final_head(&mut self, response: Response<()>, what: &str) -> Result<Section, Error> {
        if self.response_sent {
            return Err(Error::Message("response already sent".into()));
        }
        let (parts, ()) = response.into_parts();
        if parts.status.is_informational() {
            return Err(Error::Message(format!(
                "{what} with a 1xx status; use send_informational"
            )));
        }
        self.response_sent = true;
        Ok(fields::response_head(parts))
    }

    /// Server: sends a 1xx response, e.g. 103 Early Hints, before the final one.
    pub fn send_informational(&mut self, response: Response<()>) -> Result<(), Error> {
        let (parts, ()) = response.into_parts();
        if !parts.status.is_informational() || self.response_sent {
            return Err(Error::Message(
                "send_informational needs a 1xx status before the response".into(),
            ));
        }
        self.shared.conn.send(Command::Informational {
            sid: self.shared.sid,
            head: fields::response_head(parts),
        })
    }
}
