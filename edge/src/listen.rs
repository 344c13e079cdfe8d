//! Listening sockets and the connection loops: TCP (TLS with ALPN `h2`/`http/1.1`, or
//! plain HTTP/1.1 and h2c prior knowledge) and UDP (QUIC, HTTP/3).

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use socket2::{Domain, Socket, Type};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsAcceptor;
use tracing::{debug, info, warn};

use crate::body::BoxError;
use crate::config::DEFAULT_WORKER_CONNECTIONS;
use crate::limits::Limits;
use crate::session::{ClientInfo, Handler, Protocol, TlsInfo};
use crate::{http1, http2, http3};

/// Socket buffer size for UDP: QUIC bursts many datagrams per connection.
const UDP_BUFFER: usize = 4 << 20;
/// What one client may have in QUIC's buffers on a connection, all streams together,
/// beyond what http3 has read (nginx's order: its 64 KiB per stream times 128 streams).
/// quinn's default is unlimited. http3 itself holds at most its `recv_buffer` (256
/// KiB) of each stream's body on top.
const QUIC_CONNECTION_WINDOW: u32 = 8 << 20;

/// The application close code for a QUIC handshake that did not complete in time:
/// H3_NO_ERROR (RFC 9114 8.1), as for an idle connection.
const HANDSHAKE_TIMED_OUT: quinn::VarInt = quinn::VarInt::from_u32(0x100);

/// The HTTP/2 client connection preface (RFC 9113, 3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// What one listening address serves.
pub enum Listen {
    Tcp {
        addr: SocketAddr,
        /// `None`: plain text.
        tls: Option<Arc<rustls::ServerConfig>>,
        http2: bool,
        limits: Limits,
    },
    Udp {
        addr: SocketAddr,
        tls: Arc<rustls::ServerConfig>,
        limits: Limits,
        /// `None`: keys of its own, random at each start.
        host_key: Option<QuicHostKey>,
    },
}

/// `quic_host_key`: QUIC's keys for stateless resets, address validation tokens and
/// connection IDs, derived from a secret kept across restarts. With keys random at
/// each start, a restarted edge takes the connection IDs of the connections it ended
/// for forged ones and sends no stateless reset (RFC 9000 10.3), or one their clients
/// take for garbage, so that they wait out their idle timeout; and tokens given before
/// the restart no longer spare their clients a Retry.
#[derive(Clone)]
pub struct QuicHostKey {
    reset: Arc<ring::hmac::Key>,
    token: Arc<ring::hkdf::Prk>,
    connection_ids: u64,
}

/// Keys stay out of logs (a [`Config`](crate::config::Config) is `Debug`).
impl std::fmt::Debug for QuicHostKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("QuicHostKey(..)")
    }
}

impl QuicHostKey {
    pub fn new(secret: &[u8]) -> QuicHostKey {
        use ring::{hkdf, hmac};
        /// The length of quinn's connection ID key, a u64.
        struct U64;
        impl hkdf::KeyType for U64 {
            fn len(&self) -> usize {
                8
            }
        }
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, b"edge quic_host_key").extract(secret);
        // A key per use, so that none tells anything about another (quinn's connection
        // ID key is for a hash that does not hide it).
        let short = "HKDF-SHA256 gives outputs this short";
        let reset = prk.expand(&[b"stateless reset"], hmac::HMAC_SHA256);
        let token = prk.expand(&[b"address validation token"], hkdf::HKDF_SHA256);
        let mut connection_ids = [0; 8];
        prk.expand(&[b"connection ids"], U64)
            .and_then(|okm| okm.fill(&mut connection_ids))
            .expect(short);
        QuicHostKey {
            reset: Arc::new(reset.expect(short).into()),
            token: Arc::new(token.expect(short).into()),
            connection_ids: u64::from_le_bytes(connection_ids),
        }
    }
}

fn socket(addr: SocketAddr, ty: Type) -> Result<Socket, BoxError> {
    let socket = Socket::new(Domain::for_address(addr), ty, None)?;
    socket.set_reuse_address(true)?;
    // Lets the kernel spread connections over the workers' listeners.
    #[cfg(unix)]
    socket.set_reuse_port(true)?;
    if addr.is_ipv6() {
        // `[::]` means IPv6 only; IPv4 gets its own `0.0.0.0` listener, as nginx does.
        socket.set_only_v6(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    Ok(socket)
}

/// Fails when another socket holds `addr`. edge's own listeners share their address
/// (SO_REUSEPORT), so without this a second process, a second edge started by mistake,
/// would join them silently: it would take half of the new TCP connections, and its
/// UDP socket some of the running QUIC connections' datagrams (nginx refuses too).
fn check_free(addr: SocketAddr, ty: Type) -> Result<(), BoxError> {
    if addr.port() == 0 {
        return Ok(());
    }
    let probe = Socket::new(Domain::for_address(addr), ty, None)?;
    // TCP: an earlier process's connections in TIME_WAIT do not hold the address.
    probe.set_reuse_address(ty == Type::STREAM)?;
    if addr.is_ipv6() {
        probe.set_only_v6(true)?;
    }
    probe.bind(&addr.into()).map_err(|e| match e.kind() {
        std::io::ErrorKind::AddrInUse => format!("{e} (another process listens there)"),
        _ => e.to_string(),
    })?;
    Ok(())
}

/// A bound TCP listening socket and how its connections are served.
struct TcpBound {
    socket: std::net::TcpListener,
    tls: Option<TlsAcceptor>,
    http2: bool,
    limits: Limits,
}

/// A listener bound before any connection is served, so that a bad address fails the
/// start rather than one worker.
enum Bound {
    Tcp(TcpBound),
    Udp {
        endpoint: quinn::Endpoint,
        limits: Limits,
    },
}

/// What one worker serves: its share of the bound listeners.
enum Share {
    /// A TCP socket of the worker's own.
    Tcp(TcpBound),
    /// The QUIC connection attempts dealt to this worker; it runs their connections.
    Quic {
        local: SocketAddr,
        incoming: mpsc::UnboundedReceiver<Dealt>,
        limits: Limits,
    },
    /// Accepting from an endpoint and dealing round robin (on the first worker), to
    /// each worker's queue, skipping workers without a free slot.
    Deal {
        endpoint: quinn::Endpoint,
        workers: Vec<(mpsc::UnboundedSender<Dealt>, Slots)>,
    },
}

fn tcp_socket(addr: SocketAddr) -> Result<std::net::TcpListener, BoxError> {
    let socket = socket(addr, Type::STREAM).map_err(|e| format!("tcp://{addr}: {e}"))?;
    socket.listen(1024)?;
    Ok(socket.into())
}

/// Binds every listener; QUIC endpoints start their socket's task on the current
/// runtime.
fn bind(listens: Vec<Listen>) -> Result<Vec<Bound>, BoxError> {
    // All probes before any bind: a probe (no SO_REUSEPORT) is refused by any socket
    // on an overlapping address, edge's own too, and one edge may listen on a wildcard
    // and a specific address of one port.
    for listen in &listens {
        let (scheme, addr, ty) = match listen {
            Listen::Tcp { addr, .. } => ("tcp", *addr, Type::STREAM),
            Listen::Udp { addr, .. } => ("udp", *addr, Type::DGRAM),
        };
        check_free(addr, ty).map_err(|e| format!("{scheme}://{addr}: {e}"))?;
    }
    listens
        .into_iter()
        .map(|listen| match listen {
            Listen::Tcp {
                addr,
                tls,
                http2,
                limits,
            } => {
                let socket = tcp_socket(addr)?;
                info!(addr = %socket.local_addr()?, tls = tls.is_some(), http2, "listening (TCP)");
                Ok(Bound::Tcp(TcpBound {
                    socket,
                    tls: tls.map(TlsAcceptor::from),
                    http2,
                    limits,
                }))
            }
            Listen::Udp {
                addr,
                tls,
                limits,
                host_key,
            } => {
                let endpoint = quic_endpoint(addr, tls, &limits, host_key)
                    .map_err(|e| format!("udp://{addr}: {e}"))?;
                info!(addr = %endpoint.local_addr()?, "listening (QUIC, HTTP/3)");
                Ok(Bound::Udp { endpoint, limits })
            }
        })
        .collect()
}

/// Each worker's share of the bound listeners (the first worker's first). TCP: every
/// worker gets a socket of its own on the same address, among which the kernel spreads
/// connections (SO_REUSEPORT), so workers never contend for one accept queue. QUIC: one
/// endpoint, whose one UDP socket keeps every datagram of a connection, whatever its
/// path, reaching that connection; the first worker accepts and deals the connections
/// round robin, and each runs where it was dealt (quinn spawns a connection's task
/// where it is accepted). `slots`: each worker's (see [`Slots`]).
fn share(bound: Vec<Bound>, slots: &[Slots]) -> Result<Vec<Vec<Share>>, BoxError> {
    let workers = slots.len();
    let mut shares: Vec<Vec<Share>> = (0..workers).map(|_| Vec::new()).collect();
    for b in bound {
        match b {
            Bound::Tcp(first) => {
                let addr = first.socket.local_addr()?;
                for share in &mut shares[1..] {
                    share.push(Share::Tcp(TcpBound {
                        socket: tcp_socket(addr)?,
                        tls: first.tls.clone(),
                        http2: first.http2,
                        limits: first.limits.clone(),
                    }));
                }
                shares[0].push(Share::Tcp(first));
            }
            Bound::Udp { endpoint, limits } => {
                let local = endpoint.local_addr()?;
                let mut queues = Vec::with_capacity(workers);
                for (share, slots) in shares.iter_mut().zip(slots) {
                    let (queue, incoming) = mpsc::unbounded_channel();
                    queues.push((queue, slots.clone()));
                    share.push(Share::Quic {
                        local,
                        incoming,
                        limits: limits.clone(),
                    });
                }
                shares[0].push(Share::Deal {
                    endpoint,
                    workers: queues,
                });
            }
        }
    }
    Ok(shares)
}

/// The client connections one worker may serve at once (`worker_connections`), over
/// all its listeners. When none is free, each TCP listener holds the connection it
/// accepted until one is (further ones wait in the kernel's backlog), and the QUIC
/// dealer passes the worker over ([`deal`]).
#[derive(Clone)]
struct Slots(Arc<SlotsInner>);

struct SlotsInner {
    free: Arc<Semaphore>,
    limit: usize,
    /// The "worker_connections reached" warning.
    warned: Mutex<OncePerSecond>,
}

impl Slots {
    fn new(limit: usize) -> Self {
        Slots(Arc::new(SlotsInner {
            free: Arc::new(Semaphore::new(limit)),
            limit,
            warned: Mutex::default(),
        }))
    }

    /// Less than a quarter free.
    fn is_low(&self) -> bool {
        self.0.free.available_permits() * 4 < self.0.limit
    }

    fn try_take(&self) -> Option<OwnedSemaphorePermit> {
        self.0.free.clone().try_acquire_owned().ok()
    }

    /// Waits for a free slot, saying so when there is none.
    async fn take(&self) -> OwnedSemaphorePermit {
        if let Some(slot) = self.try_take() {
            return slot;
        }
        self.warn_full("new TCP connections wait until one ends");
        self.0
            .free
            .clone()
            .acquire_owned()
            .await
            .expect("never closed")
    }

    fn warn_full(&self, what: &str) {
        let mut warned = self.0.warned.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(held_back) = warned.due() {
            warn!(
                limit = self.0.limit,
                held_back, "worker_connections reached: {what}"
            );
        }
    }
}

/// Serves one worker's share on the current runtime until the process ends.
async fn serve<H: Handler>(
    share: Vec<Share>,
    handler: Arc<H>,
    slots: Slots,
) -> Result<(), BoxError> {
    let mut tasks = tokio::task::JoinSet::new();
    for s in share {
        match s {
            Share::Tcp(TcpBound {
                socket,
                tls,
                http2,
                limits,
            }) => {
                let listener = TcpListener::from_std(socket)?;
                let slots = slots.clone();
                tasks.spawn(tcp_loop(
                    listener,
                    tls,
                    http2,
                    limits,
                    handler.clone(),
                    slots,
                ));
            }
            Share::Quic {
                local,
                incoming,
                limits,
            } => {
                tasks.spawn(quic_loop(incoming, local, limits, handler.clone()));
            }
            Share::Deal { endpoint, workers } => {
                tasks.spawn(deal(endpoint, workers));
            }
        }
    }
    while tasks.join_next().await.is_some() {}
    Ok(())
}

/// Binds every listener, then serves them all on the current runtime until the process
/// ends, with the default `worker_connections`. Fails if any address cannot be bound.
pub async fn run<H: Handler>(listens: Vec<Listen>, handler: Arc<H>) -> Result<(), BoxError> {
    let slots = Slots::new(DEFAULT_WORKER_CONNECTIONS);
    let mut shares = share(bind(listens)?, std::slice::from_ref(&slots))?;
    serve(shares.remove(0), handler, slots).await
}

/// Binds every listener, then serves them on `workers` threads, each with its own
/// single-threaded runtime, until the process ends (the calling thread is the first
/// worker), each serving at most `connections` client connections at once. As nginx's
/// worker processes: a connection stays on the thread that accepted it, so its tasks
/// wake each other without cross-thread hand-offs, and work queued in one pass (the
/// responses of several HTTP/3 streams, say) goes out in one write. Upstream
/// connections stay pooled across all workers.
pub fn run_workers<H: Handler>(
    listens: Vec<Listen>,
    handler: Arc<H>,
    workers: NonZeroUsize,
    connections: usize,
) -> Result<(), BoxError> {
    let runtime = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    };
    let first = runtime()?;
    let bound = {
        let _in = first.enter();
        bind(listens)?
    };
    let slots: Vec<Slots> = (0..workers.get())
        .map(|_| Slots::new(connections))
        .collect();
    let mut shares = share(bound, &slots)?.into_iter().zip(slots);
    let (first_share, first_slots) = shares.next().expect("at least one worker");
    for (i, (share, slots)) in shares.enumerate() {
        let (rt, handler, i) = (runtime()?, handler.clone(), i + 1);
        std::thread::Builder::new()
            .name(format!("edge-worker-{i}"))
            .spawn(move || {
                // The calling thread, worker 0, keeps the default id.
                crate::upstream::pool::set_worker(i as u32);
                if let Err(e) = rt.block_on(serve(share, handler, slots)) {
                    warn!(worker = i, error = %e, "worker stopped");
                }
            })?;
    }
    first.spawn(crate::upstream::sweep_idle_forever());
    first.block_on(serve(first_share, handler, first_slots))
}

/// A QUIC connection attempt dealt to a worker, with the worker's slot it takes (taken
/// here, so that a burst of attempts is counted before any worker runs).
type Dealt = (quinn::Incoming, OwnedSemaphorePermit);

/// Accepts QUIC connection attempts and deals them to the workers in turn. A worker
/// without a free slot, or whose runtime stopped, hands its turn on to the next; when
/// every worker is full the attempt is refused here.
async fn deal(endpoint: quinn::Endpoint, workers: Vec<(mpsc::UnboundedSender<Dealt>, Slots)>) {
    let mut next = 0;
    while let Some(incoming) = endpoint.accept().await {
        let mut undealt = Some(incoming);
        for _ in 0..workers.len() {
            let Some(incoming) = undealt.take() else {
                break;
            };
            let (worker, slots) = &workers[next];
            next = (next + 1) % workers.len();
            let low = slots.is_low();
            let Some(slot) = slots.try_take() else {
                undealt = Some(incoming);
                continue;
            };
            if low && !incoming.remote_address_validated() {
                // Short of slots, a client proves its address (a QUIC Retry, one round
                // trip) before it takes one: Initials from spoofed addresses cannot
                // hold them for the handshake's timeout.
                if let Err(e) = incoming.retry() {
                    e.into_incoming().refuse();
                }
                break;
            }
            undealt = worker.send((incoming, slot)).err().map(|back| back.0 .0);
        }
        if let Some(incoming) = undealt {
            workers[0].1.warn_full("new QUIC connections are refused");
            incoming.refuse();
        }
    }
}

fn quic_endpoint(
    addr: SocketAddr,
    tls: Arc<rustls::ServerConfig>,
    limits: &Limits,
    host_key: Option<QuicHostKey>,
) -> Result<quinn::Endpoint, BoxError> {
    let socket = socket(addr, Type::DGRAM)?;
    let _ = socket.set_recv_buffer_size(UDP_BUFFER);
    let _ = socket.set_send_buffer_size(UDP_BUFFER);
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls)?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    let mut transport = quinn::TransportConfig::default();
    // QUIC's idle timeout is for a peer gone silent; a connection without requests is
    // closed after keepalive_timeout by http3 itself. A client that stalls an upload or
    // gives no flow control credit may send nothing meanwhile: QUIC must not drop it
    // before client_body_timeout or send_timeout answers it.
    let silent = limits
        .idle_timeout
        .max(limits.body_timeout)
        .max(limits.send_timeout);
    // A stream's window is what http3 buffers of it before it stops reading (quinn's
    // default, 1.25 MB, would let one connection park 160 MB where nothing reads it:
    // requests whose head never ends, uploads to a stalled upstream).
    let stream_window = u32::try_from(http3::h3_config(limits).recv_buffer)?;
    transport
        .max_concurrent_bidi_streams(limits.quic_streams().into())
        .max_idle_timeout(Some(silent.try_into()?))
        .stream_receive_window(stream_window.into())
        .receive_window(QUIC_CONNECTION_WINDOW.max(stream_window).into());
    config.transport_config(Arc::new(transport));
    let mut endpoint_config = quinn::EndpointConfig::default();
    if let Some(key) = host_key {
        endpoint_config.reset_key(key.reset).cid_generator(move || {
            Box::new(quinn_proto::HashedConnectionIdGenerator::from_key(
                key.connection_ids,
            ))
        });
        config.token_key(key.token);
    }
    // quinn-udp uses GSO/GRO and ECN where the kernel offers them.
    let endpoint = quinn::Endpoint::new(
        endpoint_config,
        Some(config),
        socket.into(),
        Arc::new(quinn::TokioRuntime),
    )?;
    Ok(endpoint)
}

/// Runs the QUIC connections dealt to this worker.
async fn quic_loop<H: Handler>(
    mut dealt: mpsc::UnboundedReceiver<Dealt>,
    local: SocketAddr,
    limits: Limits,
    handler: Arc<H>,
) {
    while let Some((incoming, slot)) = dealt.recv().await {
        let (limits, handler) = (limits.clone(), handler.clone());
        tokio::spawn(async move {
            let _slot = slot;
            let mut connecting = match incoming.accept() {
                Ok(c) => c,
                Err(e) => return debug!(error = %e, "QUIC accept failed"),
            };
            // The handshake has client_header_timeout, as over TCP: an Initial costs a
            // client one datagram (from any address), and the slot it takes would
            // otherwise stay taken until the connection idles out.
            let deadline = tokio::time::Instant::now() + limits.header_read_timeout;
            // The whole ClientHello first: a connection exists from its first Initial,
            // but a ClientHello may take several (post-quantum key shares take two),
            // and until it is read the SNI is unknown. Nothing is lost by waiting:
            // neither 0-RTT nor 0.5-RTT data can flow before it.
            match tokio::time::timeout_at(deadline, connecting.handshake_data()).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return debug!(error = %e, "QUIC handshake failed"),
                Err(_) => return debug!("QUIC handshake timed out"),
            }
            // Serve 0-RTT requests at once; h3-tokio marks them as early data.
            let (quic, handshake) = match connecting.into_0rtt() {
                Ok((quic, handshake)) => (quic, Some(handshake)),
                Err(connecting) => match tokio::time::timeout_at(deadline, connecting).await {
                    Ok(Ok(quic)) => (quic, None),
                    Ok(Err(e)) => return debug!(error = %e, "QUIC handshake failed"),
                    Err(_) => return debug!("QUIC handshake timed out"),
                },
            };
            let local = arrived_on(local, || quic.local_ip());
            let serving = http3::serve(quic.clone(), local, limits, handler);
            let mut serving = std::pin::pin!(serving);
            if let Some(handshake) = handshake {
                tokio::select! {
                    () = &mut serving => return,
                    done = tokio::time::timeout_at(deadline, handshake) => {
                        if done.is_err() {
                            debug!(client = %quic.remote_address(), "QUIC handshake timed out");
                            quic.close(HANDSHAKE_TIMED_OUT, b"handshake timed out");
                        }
                    }
                }
            }
            serving.await;
        });
    }
}

/// The address a connection arrived on: a wildcard listener's connections each have
/// their own (`ip`, which costs a system call over TCP and is only asked for then).
fn arrived_on(listener: SocketAddr, ip: impl FnOnce() -> Option<IpAddr>) -> SocketAddr {
    match listener.ip().is_unspecified().then(ip).flatten() {
        Some(ip) => SocketAddr::new(ip, listener.port()),
        None => listener,
    }
}

/// Lets a repeated warning through at most once a second, counting those held back: a
/// flood of connection attempts, or a listener out of descriptors (failing each
/// back-off, 20 times a second), would otherwise flood the log.
#[derive(Default)]
struct OncePerSecond {
    last: Option<Instant>,
    held_back: u64,
}

impl OncePerSecond {
    /// `Some(number held back since the last one)` when this one is to be logged.
    fn due(&mut self) -> Option<u64> {
        let now = Instant::now();
        if self
            .last
            .is_some_and(|at| now.duration_since(at) < Duration::from_secs(1))
        {
            self.held_back += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.held_back))
    }
}

async fn tcp_loop<H: Handler>(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    http2: bool,
    limits: Limits,
    handler: Arc<H>,
    slots: Slots,
) {
    let local = listener.local_addr().expect("bound");
    let mut failures = OncePerSecond::default();
    loop {
        let (stream, addr) = match listener.accept().await {
            Ok(pair) => pair,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                if let Some(held_back) = failures.due() {
                    warn!(error = %e, held_back, "accept failed");
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // Taken after the accept: a listener waiting for connections holds no slot.
        let slot = slots.take().await;
        let _ = stream.set_nodelay(true);
        let local = arrived_on(local, || stream.local_addr().ok().map(|a| a.ip()));
        let (tls, limits, handler) = (tls.clone(), limits.clone(), handler.clone());
        tokio::spawn(async move {
            let _slot = slot;
            let client = ClientInfo {
                addr,
                local,
                protocol: Protocol::Http1,
                tls: None,
            };
            match tls {
                Some(acceptor) => serve_tls(stream, acceptor, client, http2, limits, handler).await,
                None => serve_plain(stream, client, http2, limits, handler).await,
            }
        });
    }
}

async fn serve_tls<H: Handler>(
    stream: TcpStream,
    acceptor: TlsAcceptor,
    mut client: ClientInfo,
    http2: bool,
    limits: Limits,
    handler: Arc<H>,
) {
    let stream = crate::tls::Counted::new(stream);
    let stream =
        match tokio::time::timeout(limits.header_read_timeout, acceptor.accept(stream)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return debug!(client = %client.addr, error = %e, "TLS handshake failed"),
            Err(_) => return debug!(client = %client.addr, "TLS handshake timed out"),
        };
    let (_, conn) = stream.get_ref();
    let alpn = conn.alpn_protocol().map(<[u8]>::to_vec);
    client.tls = Some(TlsInfo {
        sni: conn.server_name().map(str::to_owned),
        alpn: alpn.clone(),
        early_data: false,
    });
    if http2 && alpn.as_deref() == Some(b"h2") {
        client.protocol = Protocol::Http2;
        http2::serve(stream, Arc::new(client), limits, handler).await;
    } else {
        let stream = crate::tls::ReadOnce(stream);
        let sent = crate::tls::ReadOnce::sent;
        http1::serve_with_sent(stream, sent, Arc::new(client), limits, handler).await;
    }
}

/// Plain TCP: HTTP/2 with prior knowledge if the client opens with the preface, else
/// HTTP/1.1.
async fn serve_plain<H: Handler>(
    stream: TcpStream,
    mut client: ClientInfo,
    http2: bool,
    limits: Limits,
    handler: Arc<H>,
) {
    let prior_knowledge = if http2 {
        match starts_with_preface(&stream, limits.header_read_timeout).await {
            Some(preface) => preface,
            // The head's time is spent: HTTP/1 must not start it again.
            None => {
                debug!(client = %client.addr, "no request within client_header_timeout");
                return;
            }
        }
    } else {
        false
    };
    if prior_knowledge {
        client.protocol = Protocol::Http2;
        http2::serve(stream, Arc::new(client), limits, handler).await;
    } else {
        http1::serve(stream, Arc::new(client), limits, handler).await;
    }
}

/// Peeks (without consuming) until the bytes rule the HTTP/2 preface in or out: `None`
/// when they did not within `timeout` (nothing came, or the start of the preface and
/// then nothing).
async fn starts_with_preface(stream: &TcpStream, timeout: Duration) -> Option<bool> {
    let mut buf = [0u8; H2_PREFACE.len()];
    let peek = async {
        let mut pause = Duration::from_millis(1);
        loop {
            let n = stream.peek(&mut buf).await.unwrap_or(0);
            if n == 0 || buf[..n] != H2_PREFACE[..n] {
                return false;
            }
            if n == H2_PREFACE.len() {
                return true;
            }
            // A partial match: wait for more bytes. A peek leaves the socket readable,
            // so this polls: less and less often, as a client that stalls here (a
            // few of the preface's bytes, then nothing) would otherwise cost a wake-up
            // a millisecond until the timeout.
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(100));
        }
    };
    tokio::time::timeout(timeout, peek).await.ok()
}
