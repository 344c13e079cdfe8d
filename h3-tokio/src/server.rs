//! The server side: accept requests on a QUIC connection and answer them.

use std::future::poll_fn;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};

use crate::config::Config;
use crate::driver::{AcceptQueue, Driver, OnRequest};
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
        match poll_fn(|cx| self.accepted.poll_pop(cx)).await {
            Some(req) => Ok(Some(req)),
            None => self.ended().map(|()| None),
        }
    }

    /// Serves the connection: calls `on_request` with each request as it arrives, in
    /// the connection's own task, until the connection ends; then returns as
    /// [`accept`](Self::accept) would (`Ok` for a graceful end).
    ///
    /// The alternative to an `accept` loop for a handler that spawns a task per request:
    /// a request reaches the handler's task without a wake-up of the accept loop's task
    /// in between, which saves a task switch per request. A response already at hand
    /// can be sent from the callback itself with [`RequestStream::respond`]: it then
    /// leaves with the same flush as the other work of the round that read the request,
    /// with no task at all. `on_request` must not block; a panic in it
    /// cancels that request only. Dropping the returned future before the connection
    /// ends has the effect of dropping the `Connection`: requests already handed out go
    /// on, newer ones are cancelled.
    pub async fn serve<F>(self, on_request: F) -> Result<(), Error>
    where
        F: FnMut(Request<()>, RequestStream) + Send + 'static,
    {
        let mut on_request: OnRequest = Box::new(on_request);
        {
            let mut core = lock(&self.shared.core);
            // Requests that arrived before the call, then the callback for the rest.
            while let Some((req, stream)) = self.accepted.pop() {
                on_request(req, stream);
            }
            if let Some(driver) = core.as_mut() {
                driver.set_on_request(Some(on_request));
            }
        }
        // Uninstalls the callback if this future is dropped early.
        struct Installed<'a>(&'a ConnShared);
        impl Drop for Installed<'_> {
            fn drop(&mut self) {
                if let Some(driver) = lock(&self.0.core).as_mut() {
                    driver.set_on_request(None);
                }
            }
        }
        let _installed = Installed(&self.shared);
        // Nothing is queued any more: the queue closes when the driver ends.
        while poll_fn(|cx| self.accepted.poll_pop(cx)).await.is_some() {}
        self.ended()
    }

    /// Why the connection ended: `Ok` for a graceful end.
    fn ended(&self) -> Result<(), Error> {
        match lock(&self.shared.state).error.clone() {
            Some(Error::Connection { code, .. }) if code == crate::Code::H3_NO_ERROR => Ok(()),
            Some(e @ Error::Connection { .. }) | Some(e @ Error::Transport(_)) => match &e {
                Error::Transport(quinn::ConnectionError::LocallyClosed) => Ok(()),
                _ => Err(e),
            },
            _ => Ok(()),
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

impl Drop for Connection {
    /// Requests that arrive from now on are cancelled (their streams dropped).
    fn drop(&mut self) {
        self.accepted.close_and_clear();
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
        let head = self.final_head(response, "respond")?;
        self.done = true;
        lock(&self.shared.state).send_queued += body.len();
        self.shared.conn.send(Command::Respond {
            sid: self.shared.sid,
            head,
            body,
        })
    }

    /// The head of the final response, checked (a server's, once, not 1xx, not after a
    /// reset) and marked as sent.
    fn final_head(&mut self, response: Response<()>, what: &str) -> Result<Section, Error> {
        // nghttp3 asserts it is a server's, aborting the process.
        if !self.server {
            return Err(Error::Message(format!("{what} needs a server stream")));
        }
        if self.done {
            return Err(Error::Message(format!(
                "{what} after the stream was finished or reset"
            )));
        }
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
        if !self.server || !parts.status.is_informational() || self.response_sent {
            return Err(Error::Message(
                "send_informational needs a server stream, and a 1xx status before the response"
                    .into(),
            ));
        }
        self.shared.conn.send(Command::Informational {
            sid: self.shared.sid,
            head: fields::response_head(parts),
        })
    }
}
