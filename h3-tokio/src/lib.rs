//! Safe, async HTTP/3 for tokio: [nghttp3]'s framing and QPACK, driven over [quinn].
//!
//! h3-tokio turns a `quinn::Connection` into an HTTP/3 server or client connection with
//! `http` types for heads and `bytes::Bytes` for bodies. One background task per
//! connection owns the nghttp3 state; handles talk to it through bounded buffers, so a
//! slow reader slows its own stream, never the connection, and memory stays bounded.
//!
//! - Server: [`server::Connection::new`], then [`accept`](server::Connection::accept)
//!   requests and answer on their [`RequestStream`], or have them handed to a callback
//!   with [`serve`](server::Connection::serve), which saves a task wake-up per request;
//!   a response already at hand can even be sent from the callback, with no task.
//! - Client: [`client::new`] gives a cloneable [`client::SendRequest`].
//! - Errors carry the RFC 9114 / RFC 9204 codes ([`Code`]); 0-RTT requests carry
//!   [`EarlyData`]; extended CONNECT carries [`Protocol`]; RFC 9218 priorities
//!   other than the default arrive as [`Priority`].
//!
//! ```no_run
//! # async fn serve(endpoint: quinn::Endpoint) -> Result<(), Box<dyn std::error::Error>> {
//! use h3_tokio::{server, Config};
//! use http::Response;
//!
//! while let Some(incoming) = endpoint.accept().await {
//!     let quic = incoming.await?;
//!     tokio::spawn(async move {
//!         let mut conn = server::Connection::new(quic, Config::default()).await?;
//!         while let Some((req, mut stream)) = conn.accept().await? {
//!             tokio::spawn(async move {
//!                 // A body in memory: head, body and end in one call. A streamed body
//!                 // goes with send_response, send_data and finish instead.
//!                 let body = format!("you asked for {}\n", req.uri());
//!                 stream.respond(Response::new(()), body.into())
//!             });
//!         }
//!         Ok::<_, h3_tokio::Error>(())
//!     });
//! }
//! # Ok(())
//! # }
//! ```
//!
//! [nghttp3]: https://github.com/ngtcp2/nghttp3
//! [quinn]: https://docs.rs/quinn

mod config;
mod driver;
mod error;
mod ext;
mod ffi;
mod fields;
mod stream;

pub mod client;
pub mod server;

#[cfg(feature = "fuzzing")]
pub use driver::fuzzing;

pub use config::Config;
pub use error::{Code, Error, Origin};
pub use ext::{EarlyData, Priority, Protocol};
pub use stream::{RecvHalf, RequestStream, SendHalf};

/// The ALPN protocol identifier of HTTP/3.
pub const ALPN: &[u8] = b"h3";
