//! Upstreams: where proxied requests go, and the connections that carry them.
//!
//! - [`Upstream`]: a named group of [`Peer`]s (an `upstream NAME { }` block, or the one
//!   address of a direct `proxy_pass`), and how a peer is picked for each request
//!   ([`Balancer`]: weighted round robin for now; health checks and other policies
//!   come in as more variants and peer state);
//! - [`pool`]: the process-wide pool of idle connections, shared by every thread;
//! - `conn`: one HTTP/1.1 connection to a peer, and its liveness check;
//! - `client`: one request/response exchange over such a connection, bodies streamed
//!   both ways;
//! - `headers`: what the request looks like upstream (hop-by-hop headers, Host,
//!   X-Forwarded-*, Via, `proxy_set_header` templates);
//! - [`proxy`]: the proxy phase the engine runs: peer, connection, retry, 502/504.

mod balance;
mod client;
mod conn;
pub mod headers;
pub mod pool;
pub mod proxy;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::LazyLock;
use std::time::{Duration, Instant};

pub use balance::Balancer;
pub use conn::Connection;

/// One server of an upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub addr: SocketAddr,
    /// Its share of requests relative to the other peers (`weight=N`, default 1).
    pub weight: u32,
}

/// An upstream group: its peers and how to pick one.
#[derive(Debug)]
pub struct Upstream {
    /// The upstream's name (`upstream NAME`), or `host:port` of a direct `proxy_pass`:
    /// the default `Host` of proxied requests, as nginx's `$proxy_host`.
    pub name: String,
    pub peers: Vec<Peer>,
    pub balancer: Balancer,
    /// Idle connections kept per peer (`keepalive N`).
    pub keepalive: usize,
    /// How long a peer that failed to connect is skipped (nginx's `fail_timeout`, with
    /// its default `max_fails=1`).
    pub fail_timeout: Duration,
    /// Per peer, until when it is skipped: milliseconds since `epoch`; 0 when it is
    /// not. Atomics, so that picking a peer reads them without another lock.
    down_until: Box<[AtomicU64]>,
    epoch: Instant,
}

/// The peers of an upstream already tried for one request (made on the first failure
/// only).
#[derive(Debug)]
pub struct Tried(Vec<u64>);

impl Tried {
    pub fn new(peers: usize) -> Tried {
        Tried(vec![0; peers.div_ceil(64)])
    }

    pub fn insert(&mut self, i: usize) {
        self.0[i / 64] |= 1 << (i % 64);
    }

    pub fn contains(&self, i: usize) -> bool {
        self.0.get(i / 64).is_some_and(|w| w & (1 << (i % 64)) != 0)
    }
}

/// `keepalive` when an upstream does not say (and for direct `proxy_pass` addresses).
pub const DEFAULT_KEEPALIVE: usize = 32;

/// How long a peer that failed to connect is skipped: nginx's default `fail_timeout`.
pub const FAIL_TIMEOUT: Duration = Duration::from_secs(10);

impl Upstream {
    pub fn new(name: String, peers: Vec<Peer>, keepalive: usize) -> Upstream {
        let balancer = Balancer::round_robin(&peers);
        let down_until = peers.iter().map(|_| AtomicU64::new(0)).collect();
        Upstream {
            name,
            peers,
            balancer,
            keepalive,
            fail_timeout: FAIL_TIMEOUT,
            down_until,
            epoch: Instant::now(),
        }
    }

    /// The peer for the next request, and its index in `peers`.
    pub fn pick(&self) -> Option<(usize, &Peer)> {
        self.choose(None)
    }

    /// The next peer for a request whose `tried` peers failed to connect: in the
    /// balancer's order, never one already tried; `None` when all were.
    pub fn pick_next(&self, tried: &Tried) -> Option<(usize, &Peer)> {
        self.choose(Some(tried))
    }

    /// The balancer's pick among the peers not tried and not marked unavailable, else
    /// (all of those marked) among the peers not tried.
    fn choose(&self, tried: Option<&Tried>) -> Option<(usize, &Peer)> {
        let untried = |i: usize| tried.is_none_or(|t| !t.contains(i));
        let mut now = None;
        let i = match self
            .balancer
            .pick_index(&self.peers, |i| untried(i) && !self.is_down(i, &mut now))
        {
            Some(i) => i,
            None => self.balancer.pick_index(&self.peers, untried)?,
        };
        Some((i, &self.peers[i]))
    }

    /// Whether peer `i` is marked unavailable; `now` (milliseconds since `epoch`) is
    /// read from the clock only when some peer is marked.
    fn is_down(&self, i: usize, now: &mut Option<u64>) -> bool {
        let until = self.down_until[i].load(Ordering::Relaxed);
        if until == 0 {
            return false;
        }
        let now = *now.get_or_insert_with(|| self.millis());
        if now < until {
            return true;
        }
        // Past its fail_timeout: unmarked, so the next picks need not read the clock.
        let _ = self.down_until[i].compare_exchange(until, 0, Ordering::Relaxed, Ordering::Relaxed);
        false
    }

    fn millis(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Marks peer `i` unavailable for `fail_timeout` (it failed to connect). A lone
    /// peer is never marked: it would be used anyway.
    pub fn mark_failed(&self, i: usize) {
        if self.peers.len() < 2 {
            return;
        }
        let fail_timeout = u64::try_from(self.fail_timeout.as_millis()).unwrap_or(u64::MAX);
        let until = self.millis().saturating_add(fail_timeout).max(1);
        self.down_until[i].store(until, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upstream(n: u16) -> Upstream {
        let peers = (1..=n)
            .map(|p| Peer {
                addr: ([127, 0, 0, 1], p).into(),
                weight: 1,
            })
            .collect();
        Upstream::new("u".into(), peers, 0)
    }

    fn picks(u: &Upstream, n: usize) -> Vec<usize> {
        (0..n).map(|_| u.pick().unwrap().0).collect()
    }

    #[test]
    fn a_failed_peer_is_skipped_for_fail_timeout() {
        let mut u = upstream(3);
        u.fail_timeout = Duration::from_millis(100);
        u.mark_failed(1);
        assert_eq!(picks(&u, 4), [0, 2, 0, 2]);
        std::thread::sleep(Duration::from_millis(120));
        let after: Vec<usize> = picks(&u, 3);
        assert!(after.contains(&1), "back after fail_timeout: {after:?}");
    }

    #[test]
    fn all_peers_marked_are_used_anyway() {
        let u = upstream(2);
        u.mark_failed(0);
        u.mark_failed(1);
        let mut p = picks(&u, 4);
        p.sort();
        assert_eq!(p, [0, 0, 1, 1]);
        // A lone peer is never marked.
        let one = upstream(1);
        one.mark_failed(0);
        assert_eq!(one.down_until[0].load(Ordering::Relaxed), 0);
    }

    #[test]
    fn next_peers_in_order_each_once() {
        let u = upstream(3);
        let (first, _) = u.pick().unwrap();
        let mut tried = Tried::new(3);
        let mut order = vec![first];
        tried.insert(first);
        while let Some((i, _)) = u.pick_next(&tried) {
            assert!(!tried.contains(i));
            tried.insert(i);
            order.push(i);
        }
        order.sort();
        assert_eq!(order, [0, 1, 2]);
        // Marked peers come after the others, but still come.
        let u = upstream(3);
        u.mark_failed(2);
        let mut tried = Tried::new(3);
        tried.insert(0);
        assert_eq!(u.pick_next(&tried).unwrap().0, 1);
        tried.insert(1);
        assert_eq!(u.pick_next(&tried).unwrap().0, 2);
        tried.insert(2);
        assert!(u.pick_next(&tried).is_none());
    }
}

/// Proxy timeouts (nginx's `proxy_*_timeout`, same defaults).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// To establish the TCP connection.
    pub connect: Duration,
    /// From the end of the request to the response head, then between two reads of
    /// the response body.
    pub read: Duration,
    /// Between two writes of the request (head or body).
    pub send: Duration,
    /// The whole exchange, from connecting to the last byte of the response body
    /// (`proxy_total_timeout`); `None`: no limit, as nginx.
    pub total: Option<Duration>,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(60),
            read: Duration::from_secs(60),
            send: Duration::from_secs(60),
            total: None,
        }
    }
}

/// The process-wide pool of idle upstream connections, keyed by peer address.
pub static POOL: LazyLock<pool::Pool<SocketAddr, Connection>> =
    LazyLock::new(|| pool::Pool::new(pool::PoolConfig::default()));

/// Closes idle pooled connections past the pool's idle timeout, every few seconds, so
/// a quiet peer's connections do not stay open until its next request. Runs until the
/// runtime stops.
pub async fn sweep_idle_forever() {
    let mut every = tokio::time::interval(Duration::from_secs(5));
    loop {
        every.tick().await;
        POOL.sweep();
    }
}
