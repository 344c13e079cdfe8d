//! One HTTP/1.1 connection to a peer: the socket and the bytes read from it but not yet
//! used, the liveness check the pool runs before reusing it, and its move to the event
//! loop of the worker reusing it.

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
    /// buffer exactly) a non-blocking peek decides ([`quiet`]).
    fn is_reusable(&mut self) -> bool {
        if !self.buf.is_empty() {
            return false;
        }
        let mut cx = Context::from_waker(Waker::noop());
        self.tcp.poll_read_ready(&mut cx).is_pending() || quiet(socket2::SockRef::from(&self.tcp))
    }

    /// Deregistered from the other worker's event loop, registered with this one's
    /// (`into_std` leaves the socket non-blocking, as `from_std` needs it). Runs on a
    /// worker, inside its runtime. The other loop's readiness may be stale (it runs only
    /// when that worker is not busy), so the socket itself is asked once more.
    fn move_here(self) -> io::Result<Connection> {
        let Connection { tcp, buf } = self;
        let tcp = tcp.into_std()?;
        if !quiet(socket2::SockRef::from(&tcp)) {
            return Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "closed or spoke while idle",
            ));
        }
        Ok(Connection {
            tcp: TcpStream::from_std(tcp)?,
            buf,
        })
    }
}

/// A non-blocking peek: nothing to read (`WouldBlock`) means the peer is still there
/// and quiet; end of stream means it closed; bytes mean it sent something nobody asked
/// for (or an error): either way the connection is done.
fn quiet(socket: socket2::SockRef<'_>) -> bool {
    let mut byte = [MaybeUninit::<u8>::uninit(); 1];
    match socket.peek(&mut byte) {
        Err(e) => e.kind() == io::ErrorKind::WouldBlock,
        Ok(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::super::pool::{set_worker, Pool, PoolConfig};
    use super::*;
    use std::sync::atomic::Ordering;
    use std::sync::{mpsc, Arc};
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

        // Until the bytes and the FIN are in (and the event loop has seen them).
        let deadline = std::time::Instant::now() + t;
        while chatty.is_reusable() || closed.is_reusable() {
            assert!(
                std::time::Instant::now() < deadline,
                "unsolicited bytes: {}, closed by the peer: {}",
                !chatty.is_reusable(),
                !closed.is_reusable()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(!chatty.is_reusable(), "unsolicited bytes");
        assert!(!closed.is_reusable(), "closed by the peer");
        assert!(quiet.is_reusable());
        assert!(drained.is_reusable(), "readable, yet nothing to read");
    }

    fn current_thread() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    /// Worker 1 as edge runs it (a current-thread runtime on its own thread): connects
    /// to `addr`, sends `hello` and reads its echo if given, checks the connection in
    /// and returns; then it is busy elsewhere (its event loop not running) until the
    /// sender returned gives word or is dropped, and stops its runtime.
    fn checked_in_by_worker1(
        pool: &Arc<Pool<SocketAddr, Connection>>,
        addr: SocketAddr,
        hello: Option<&'static [u8]>,
    ) -> (mpsc::Sender<()>, std::thread::JoinHandle<()>) {
        let (opened_tx, opened) = mpsc::channel();
        let (release, released) = mpsc::channel();
        let pool = pool.clone();
        let worker1 = std::thread::spawn(move || {
            set_worker(1);
            let rt = current_thread();
            rt.block_on(async {
                let mut c = Connection::connect(addr, Duration::from_secs(5))
                    .await
                    .unwrap();
                if let Some(hello) = hello {
                    c.tcp.write_all(hello).await.unwrap();
                    let mut echoed = vec![0; hello.len()];
                    c.tcp.read_exact(&mut echoed).await.unwrap();
                }
                pool.checkin(addr, c);
            });
            opened_tx.send(()).unwrap();
            let _ = released.recv();
            drop(rt);
        });
        opened.recv().unwrap();
        (release, worker1)
    }

    /// Waits (5 s at most) until the kernel has the FIN of the peer of the TCP socket
    /// bound to `local`: that socket is in CLOSE_WAIT (`08`) in `/proc/net/tcp`.
    fn fin_arrived(local: SocketAddr) {
        let SocketAddr::V4(v4) = local else {
            panic!("not IPv4: {local}");
        };
        // The address as the kernel prints it: its four bytes as a native-endian number.
        let local = format!(
            "{:08X}:{:04X}",
            u32::from_ne_bytes(v4.ip().octets()),
            v4.port()
        );
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
            let close_wait = table.lines().skip(1).any(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                fields.get(1) == Some(&local.as_str()) && fields.get(3) == Some(&"08")
            });
            if close_wait {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{local} never in CLOSE_WAIT:\n{table}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Two workers as edge runs them (a current-thread runtime each, on its own thread)
    /// share a pool: a connection opened and checked in by worker 1, checked out by
    /// worker 2, keeps working on worker 2 after worker 1's runtime is gone (its event
    /// loop no longer delivers anything: without the move, worker 2's read fails with
    /// "A Tokio 1.x context was found, but it is being shutdown").
    #[test]
    fn a_connection_taken_by_another_worker_outlives_the_worker_that_opened_it() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let echo = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut b = [0u8; 64];
            loop {
                match std::io::Read::read(&mut s, &mut b) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => std::io::Write::write_all(&mut s, &b[..n]).unwrap(),
                }
            }
        });
        let pool = Arc::new(Pool::new(PoolConfig::default()));
        let t = Duration::from_secs(5);

        let (taken_tx, worker1) = checked_in_by_worker1(&pool, addr, Some(b"one"));
        set_worker(2);
        let rt = current_thread();
        rt.block_on(async {
            let mut c = pool.checkout(&addr).expect("the idle connection");
            taken_tx.send(()).unwrap();
            worker1.join().unwrap();
            let exchange = async {
                c.tcp.write_all(b"two").await?;
                let mut b = [0u8; 3];
                c.tcp.read_exact(&mut b).await?;
                io::Result::Ok(b)
            };
            let echoed = tokio::time::timeout(t, exchange).await;
            assert_eq!(echoed.expect("in time").unwrap(), *b"two");
        });
        assert_eq!(pool.stats.moved.load(Ordering::Relaxed), 1);
        echo.join().unwrap();
    }

    /// A connection its peer closed while the worker that registered it was busy (its
    /// event loop not running, so its readiness stale) is not handed to another worker.
    #[test]
    fn a_connection_closed_while_its_worker_is_busy_is_not_handed_out() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let pool = Arc::new(Pool::new(PoolConfig::default()));
        let accepted = std::thread::spawn(move || listener.accept().unwrap().0);
        let (done_tx, worker1) = checked_in_by_worker1(&pool, addr, None);
        let server_side = accepted.join().unwrap();
        let pooled = server_side.peer_addr().unwrap();
        drop(server_side);
        fin_arrived(pooled);
        set_worker(2);
        current_thread().block_on(async {
            assert!(
                pool.checkout(&addr).is_none(),
                "a closed connection handed out"
            );
        });
        assert_eq!(pool.stats.discarded.load(Ordering::Relaxed), 1);
        drop(done_tx);
        worker1.join().unwrap();
    }
}
