//! HTTP/1.1 downstream server (being written).

use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite};

use crate::limits::Limits;
use crate::session::{ClientInfo, Handler};

/// Serves HTTP/1.1 requests on one connection until it closes.
pub async fn serve<IO, H>(io: IO, client: Arc<ClientInfo>, limits: Limits, handler: Arc<H>)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    H: Handler,
{
    let _ = (io, client, limits, handler);
}
