//! The HTTP/1.1 (and 1.0) edge, on `httparse`: requests become [`Session`]s, responses
//! go back with Content-Length, chunked or close-delimited framing, keep-alive and
//! pipelining, `Expect: 100-continue`, and trailers.
//!
//! Hostile input is refused with a status code and a close, never a panic: ambiguous
//! body framing (the request-smuggling shapes), bare LF line endings, obs-fold, control
//! bytes, oversized heads (431/414) and slow heads (408). Unsupported transfer codings
//! (anything but `chunked`, with `chunked` last) are answered 501; every other refusal
//! is 400.
//!
//! The parsing pieces are sans-IO and public, for fuzzing and for the upstream client:
//! [`head`] (request heads, and upstream response heads) and [`chunked`] (chunked
//! bodies); [`response`] serialises responses, [`request`] requests to upstreams.
//!
//! [`Session`]: crate::session::Session

pub mod chunked;
pub mod head;
pub mod request;
pub mod response;

mod body;
mod conn;
mod wire;

pub(crate) use wire::Deadline;

/// One step of xorshift64: the parsers' tests damage inputs reproducibly with it.
#[cfg(test)]
fn xorshift(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite};

use crate::limits::Limits;
use crate::session::{ClientInfo, Handler};

/// Serves HTTP/1.x requests on one connection until it closes. `client.tls` decides the
/// scheme of request URIs.
pub async fn serve<IO, H>(io: IO, client: Arc<ClientInfo>, limits: Limits, handler: Arc<H>)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    H: Handler,
{
    conn::Conn::new(io, None, client, limits, handler)
        .run()
        .await;
}

/// [`serve`] over a transport that takes bytes in before they go out: TLS holds up to
/// 64 KiB of records, which a flush then waits out. `sent` reads how many bytes have
/// reached the wire; the send timeout measures a slow client's progress by it (and
/// [`serve`]'s by the bytes written in).
pub async fn serve_with_sent<IO, H>(
    io: IO,
    sent: fn(&IO) -> u64,
    client: Arc<ClientInfo>,
    limits: Limits,
    handler: Arc<H>,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    H: Handler,
{
    conn::Conn::new(io, Some(sent), client, limits, handler)
        .run()
        .await;
}
