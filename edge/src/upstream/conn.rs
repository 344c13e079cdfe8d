//! One HTTP/1.1 connection to a peer: the socket and the bytes read from it but not yet
//! used, and the liveness check the pool runs before reusing it.

use std::io;
use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::task::{Context, Waker};
use std::time::Duration;

use bytes::BytesMut;
use tokio::net::TcpStream;

use super::pool::Reusable;

/// A connection to an upstream peer.
#[derive(Debug)]
pub struct Connection {
    pub(super) tcp: TcpStream,
    /// Read from the socket, not yet consumed.
    pub(super) buf: BytesMut,
}

impl Connection {
    /// Connects to `addr` within `timeout` (`TimedOut` past it).
    pub async fn connect(addr: SocketAddr, timeout: Duration) -> io::Result<Connection> {
        let tcp = tokio::time::timeout(timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))??;
        tcp.set_nodelay(true)?;
        Ok(Connection {
            tcp,
            buf: BytesMut::new(),
        })
    }
}

impl Reusable for Connection {
    /// The runtime's readiness first: when its event loop has seen nothing on the
    /// socket since the last read drained it, the peer neither closed nor sent anything
    /// (nginx keeps idle upstream connections by the same events), and no system call
    /// is made. Otherwise (the readiness may be left over from a read that filled its
    /// buffer exactly) a non-blocking peek decides: nothing to read (`WouldBlock`) means
    /// the peer is still there and quiet; end of stream means it closed; bytes mean it
    /// sent something nobody asked for (or an error): either way the connection is done.
    fn is_reusable(&mut self) -> bool {
        if !self.buf.is_empty() {
            return false;
        }
        let mut cx = Context::from_waker(Waker::noop());
        if self.tcp.poll_read_ready(&mut cx).is_pending() {
            return true;
        }
        let mut byte = [MaybeUninit::<u8>::uninit(); 1];
        match socket2::SockRef::from(&self.tcp).peek(&mut byte) {
            Err(e) => e.kind() == io::ErrorKind::WouldBlock,
            Ok(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn liveness() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let t = Duration::from_secs(5);

        let mut quiet = Connection::connect(addr, t).await.unwrap();
        let (_server_quiet, _) = listener.accept().await.unwrap();
        assert!(quiet.is_reusable(), "an idle, open connection is alive");

        let mut chatty = Connection::connect(addr, t).await.unwrap();
        let (mut server_chatty, _) = listener.accept().await.unwrap();
        server_chatty
            .write_all(b"HTTP/1.1 408 x\r\n\r\n")
            .await
            .unwrap();

        let mut closed = Connection::connect(addr, t).await.unwrap();
        let (server_closed, _) = listener.accept().await.unwrap();
        drop(server_closed);

        // A read that fills its buffer exactly leaves the socket marked readable
        // although nothing is left: the peek must still find it reusable.
        let mut drained = Connection::connect(addr, t).await.unwrap();
        let (mut server_drained, _) = listener.accept().await.unwrap();
        server_drained.write_all(b"0123456789").await.unwrap();
        let mut exact = [0u8; 10];
        drained.tcp.read_exact(&mut exact).await.unwrap();
        let mut cx = Context::from_waker(Waker::noop());
        assert!(drained.tcp.poll_read_ready(&mut cx).is_ready());

        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!chatty.is_reusable(), "unsolicited bytes");
        assert!(!closed.is_reusable(), "closed by the peer");
        assert!(quiet.is_reusable());
        assert!(drained.is_reusable(), "readable, yet nothing to read");
    }
}
