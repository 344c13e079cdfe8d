//! The userspace UDP relay: the simulated link between the client's and the server's
//! network, with packet captures of both sides.
//!
//! The client sends to the relay's client-side address as if it were the server. The
//! relay keeps a NAT table: each client address gets its own upstream socket on the
//! server side, from which it sends to the server; what the server answers on that
//! socket goes back to that client. Every datagram goes through the [`Network`], then
//! waits in a per-direction FIFO until its arrival time (arrival times are monotone in
//! each direction, so FIFO order is the link's order). A NAT rebinding replaces every
//! upstream socket by a new one (a new port, and with `addr` the next address of the
//! server-side pool); the old binding's answers are then lost, as with a real NAT.
//!
//! Captures: the client side (what the client sent, what reached it) and the server
//! side (what reached the server, what it sent), as pcap files with raw IP frames, the
//! form `tshark` reads; UDP checksums are left at 0 in them. The ECN bits of each
//! datagram are carried across (read and written with quinn-udp) and recorded.
//!
//! With a `preferred` address (connectionmigration) the relay has a second client-side
//! socket, the address the server offers as its preferred address: what a client sends
//! there reaches the server from an upstream socket of its own (a new path for the
//! server), and the answers go back from that second socket. With cross traffic, a
//! [`CrossTraffic`] flow competes for the bottleneck towards the client.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::mpsc;

use crate::ecn_socket::EcnSocket as UdpSocket;
use crate::network::{CrossTraffic, Dir, Network, Stats, Verdict};

/// A pcap file of raw IP frames (LINKTYPE_RAW).
pub struct Pcap {
    out: BufWriter<File>,
}

impl Pcap {
    /// Creates the file and writes the global header.
    pub fn create(path: &Path) -> std::io::Result<Self> {
        let mut out = BufWriter::new(File::create(path)?);
        out.write_all(&0xa1b2_c3d4u32.to_le_bytes())?;
        out.write_all(&2u16.to_le_bytes())?;
        out.write_all(&4u16.to_le_bytes())?;
        out.write_all(&[0; 8])?; // thiszone, sigfigs
        out.write_all(&65_535u32.to_le_bytes())?;
        out.write_all(&101u32.to_le_bytes())?; // LINKTYPE_RAW
        Ok(Pcap { out })
    }

    /// Appends one UDP datagram from `src` to `dst` with its ECN bits, at the current
    /// wall-clock time.
    pub fn udp(
        &mut self,
        src: SocketAddr,
        dst: SocketAddr,
        payload: &[u8],
        ecn: u8,
    ) -> std::io::Result<()> {
        let frame = ip_udp_frame(src, dst, payload, ecn);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let len = u32::try_from(frame.len()).unwrap_or(u32::MAX);
        let secs = u32::try_from(now.as_secs()).unwrap_or(u32::MAX);
        self.out.write_all(&secs.to_le_bytes())?;
        self.out.write_all(&now.subsec_micros().to_le_bytes())?;
        self.out.write_all(&len.to_le_bytes())?;
        self.out.write_all(&len.to_le_bytes())?;
        self.out.write_all(&frame)
    }

    /// Writes what is buffered.
    pub fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

/// An IPv4 or IPv6 header (with the ECN bits), a UDP header (checksum 0), the payload.
fn ip_udp_frame(src: SocketAddr, dst: SocketAddr, payload: &[u8], ecn: u8) -> Vec<u8> {
    let udp_len = (payload.len() + 8) as u16;
    let mut f = Vec::with_capacity(payload.len() + 48);
    match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let total = udp_len.saturating_add(20);
            let mut h = [0u8; 20];
            h[0] = 0x45;
            h[1] = ecn & 3;
            h[2..4].copy_from_slice(&total.to_be_bytes());
            h[8] = 64;
            h[9] = 17;
            h[12..16].copy_from_slice(&s.octets());
            h[16..20].copy_from_slice(&d.octets());
            let mut sum: u32 = h
                .chunks(2)
                .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
                .sum();
            while sum > 0xffff {
                sum = (sum & 0xffff) + (sum >> 16);
            }
            h[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
            f.extend_from_slice(&h);
        }
        (s, d) => {
            let to6 = |a: IpAddr| match a {
                IpAddr::V4(v4) => v4.to_ipv6_mapped(),
                IpAddr::V6(v6) => v6,
            };
            f.extend_from_slice(&[0x60, (ecn & 3) << 4, 0, 0]);
            f.extend_from_slice(&udp_len.to_be_bytes());
            f.extend_from_slice(&[17, 64]);
            f.extend_from_slice(&to6(s).octets());
            f.extend_from_slice(&to6(d).octets());
        }
    }
    f.extend_from_slice(&src.port().to_be_bytes());
    f.extend_from_slice(&dst.port().to_be_bytes());
    f.extend_from_slice(&udp_len.to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(payload);
    f
}

/// Where the relay listens and forwards.
#[derive(Clone, Debug)]
pub struct RelayConfig {
    /// Where the client sends (the relay's client-side socket).
    pub client_side: SocketAddr,
    /// A second client-side socket: the server's preferred address (connectionmigration).
    pub preferred: Option<SocketAddr>,
    /// The server's address.
    pub server: SocketAddr,
    /// Addresses the upstream sockets bind to, in turn at each address rebinding.
    pub upstream_ips: Vec<IpAddr>,
}

/// A datagram waiting for its arrival time.
struct Pending {
    at: Instant,
    ecn: u8,
    socket: Arc<UdpSocket>,
    dst: SocketAddr,
    payload: Vec<u8>,
}

/// A NAT table key: which client-side socket (0, or 1 for the preferred address) a
/// client sent to, and the client's address.
type NatKey = (usize, SocketAddr);

/// One NAT binding: the socket facing the server for a [`NatKey`].
struct Binding {
    socket: Arc<UdpSocket>,
    generation: u64,
}

struct Shared {
    start: Instant,
    network: Mutex<Network>,
    stats: Mutex<Stats>,
    client_pcap: Mutex<Pcap>,
    server_pcap: Mutex<Pcap>,
    nat: Mutex<HashMap<NatKey, Binding>>,
    generation: Mutex<u64>,
    ip_index: Mutex<usize>,
    to_client: mpsc::UnboundedSender<Pending>,
    to_server: mpsc::UnboundedSender<Pending>,
    cfg: RelayConfig,
    /// The client-side sockets: `client_side`, then `preferred`.
    down: Vec<Arc<UdpSocket>>,
}

/// Locks a mutex, recovering from poisoning (no task panics, but do not depend on it).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    /// Runs a datagram through the network; queues it if it survives.
    fn submit(
        &self,
        dir: Dir,
        socket: Arc<UdpSocket>,
        dst: SocketAddr,
        mut payload: Vec<u8>,
        ecn: u8,
    ) {
        let now = self.start.elapsed();
        let verdict = lock(&self.network).packet(dir, now, &mut payload);
        let mut stats = lock(&self.stats);
        match verdict {
            Verdict::Drop(_) => stats.dropped += 1,
            Verdict::Forward { at, corrupted } => {
                stats.forwarded += 1;
                stats.corrupted += u64::from(corrupted);
                let p = Pending {
                    at: self.start + at,
                    ecn,
                    socket,
                    dst,
                    payload,
                };
                let tx = match dir {
                    Dir::ToServer => &self.to_server,
                    Dir::ToClient => &self.to_client,
                };
                let _ = tx.send(p);
            }
        }
    }

    /// A new upstream socket on the current server-side address.
    async fn upstream_socket(&self) -> std::io::Result<Arc<UdpSocket>> {
        let ips = &self.cfg.upstream_ips;
        let ip = ips.get(*lock(&self.ip_index) % ips.len().max(1)).copied();
        let ip = ip.unwrap_or(match self.cfg.server.ip() {
            IpAddr::V4(_) => IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
            IpAddr::V6(_) => IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
        });
        Ok(Arc::new(UdpSocket::bind(SocketAddr::new(ip, 0)).await?))
    }

    /// Replaces every NAT binding (a rebinding of the client's port, or address too).
    async fn rebind(self: &Arc<Self>, addr: bool) -> std::io::Result<()> {
        if addr {
            *lock(&self.ip_index) += 1;
        }
        let keys: Vec<NatKey> = lock(&self.nat).keys().copied().collect();
        for key in keys {
            self.bind_client(key).await?;
        }
        Ok(())
    }

    /// Creates (or replaces) the binding of `key` and starts reading its socket.
    async fn bind_client(self: &Arc<Self>, key: NatKey) -> std::io::Result<Arc<UdpSocket>> {
        let (side, client) = key;
        let socket = self.upstream_socket().await?;
        let generation = {
            let mut g = lock(&self.generation);
            *g += 1;
            *g
        };
        lock(&self.nat).insert(
            key,
            Binding {
                socket: socket.clone(),
                generation,
            },
        );
        tracing::info!("relay: {key:?} bound to {:?}", socket.local_addr().ok());
        let shared = self.clone();
        let up = socket.clone();
        let Some(down) = self.down.get(side).cloned() else {
            return Err(std::io::Error::other("no such client-side socket"));
        };
        tokio::spawn(async move {
            let mut buf = up.buffer();
            while let Ok(datagrams) = up.recv(&mut buf).await {
                let current = lock(&shared.nat).get(&key).map(|b| b.generation);
                if current != Some(generation) {
                    break; // the NAT forgot this binding
                }
                for d in datagrams {
                    if let Ok(local) = up.local_addr() {
                        let _ = lock(&shared.server_pcap).udp(d.from, local, &d.payload, d.ecn);
                    }
                    shared.submit(Dir::ToClient, down.clone(), client, d.payload, d.ecn);
                }
            }
        });
        Ok(socket)
    }
}

/// Sends queued datagrams at their arrival time, writing them to a capture first.
async fn deliver(mut rx: mpsc::UnboundedReceiver<Pending>, shared: Arc<Shared>, dir: Dir) {
    while let Some(p) = rx.recv().await {
        tokio::time::sleep_until(p.at.into()).await;
        if let Ok(local) = p.socket.local_addr() {
            let pcap = match dir {
                Dir::ToServer => &shared.server_pcap,
                Dir::ToClient => &shared.client_pcap,
            };
            let _ = lock(pcap).udp(local, p.dst, &p.payload, p.ecn);
        }
        let _ = p.socket.send(p.dst, &p.payload, p.ecn).await;
    }
}

/// Reads what clients send to one client-side socket and passes it towards the server.
async fn from_client(s: Arc<Shared>, side: usize) {
    let Some(down) = s.down.get(side).cloned() else {
        return;
    };
    let Ok(local) = down.local_addr() else {
        return;
    };
    let mut buf = down.buffer();
    while let Ok(datagrams) = down.recv(&mut buf).await {
        for d in datagrams {
            let key = (side, d.from);
            let _ = lock(&s.client_pcap).udp(d.from, local, &d.payload, d.ecn);
            let existing = lock(&s.nat).get(&key).map(|b| b.socket.clone());
            let socket = match existing {
                Some(sock) => sock,
                None => match s.bind_client(key).await {
                    Ok(sock) => sock,
                    Err(e) => {
                        tracing::warn!("relay: cannot bind for {key:?}: {e}");
                        continue;
                    }
                },
            };
            s.submit(Dir::ToServer, socket, s.cfg.server, d.payload, d.ecn);
        }
    }
}

/// The competing flow: each round trip (the path's delay both ways plus the queue),
/// its window of packets, paced over the round, into the bottleneck towards the client.
async fn cross_traffic(s: Arc<Shared>) {
    let mut flow = CrossTraffic::default();
    let delay = lock(&s.network).scenario().delay;
    loop {
        let queued = lock(&s.network).queue_delay(Dir::ToClient, s.start.elapsed());
        let gap = (2 * delay + queued) / flow.cwnd.max(1);
        for _ in 0..flow.cwnd {
            let now = s.start.elapsed();
            let delivered = lock(&s.network).cross_packet(Dir::ToClient, now, CrossTraffic::PACKET);
            flow.sent(delivered);
            tokio::time::sleep(gap).await;
        }
        flow.end_round();
    }
}

/// A running relay; [`Relay::stop`] ends it and flushes the captures.
pub struct Relay {
    shared: Arc<Shared>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Relay {
    /// Binds the client-side socket and starts relaying.
    pub async fn start(
        cfg: RelayConfig,
        network: Network,
        client_pcap: &Path,
        server_pcap: &Path,
    ) -> std::io::Result<Relay> {
        let mut down = vec![Arc::new(UdpSocket::bind(cfg.client_side).await?)];
        if let Some(p) = cfg.preferred {
            down.push(Arc::new(UdpSocket::bind(p).await?));
        }
        let (to_client, rx_client) = mpsc::unbounded_channel();
        let (to_server, rx_server) = mpsc::unbounded_channel();
        let cross = network.scenario().cross_traffic;
        let shared = Arc::new(Shared {
            start: Instant::now(),
            network: Mutex::new(network),
            stats: Mutex::new(Stats::default()),
            client_pcap: Mutex::new(Pcap::create(client_pcap)?),
            server_pcap: Mutex::new(Pcap::create(server_pcap)?),
            nat: Mutex::new(HashMap::new()),
            generation: Mutex::new(0),
            ip_index: Mutex::new(0),
            to_client,
            to_server,
            cfg,
            down,
        });
        let mut tasks = vec![
            tokio::spawn(deliver(rx_client, shared.clone(), Dir::ToClient)),
            tokio::spawn(deliver(rx_server, shared.clone(), Dir::ToServer)),
        ];
        for side in 0..shared.down.len() {
            tasks.push(tokio::spawn(from_client(shared.clone(), side)));
        }
        if cross {
            tasks.push(tokio::spawn(cross_traffic(shared.clone())));
        }
        let s = shared.clone();
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(50));
            loop {
                tick.tick().await;
                let (due, addr) = {
                    let mut n = lock(&s.network);
                    let addr = n.scenario().rebind.is_some_and(|r| r.addr);
                    (n.rebind_due(s.start.elapsed()), addr)
                };
                if due {
                    if let Err(e) = s.rebind(addr).await {
                        tracing::warn!("relay: rebinding failed: {e}");
                    }
                }
            }
        }));
        Ok(Relay { shared, tasks })
    }

    /// Stops relaying, flushes the captures and returns the counters.
    pub fn stop(self) -> Stats {
        for t in &self.tasks {
            t.abort();
        }
        let _ = lock(&self.shared.client_pcap).flush();
        let _ = lock(&self.shared.server_pcap).flush();
        *lock(&self.shared.stats)
    }
}
