//! Upstreams: where proxied requests go, and the connections that carry them.
//!
//! - [`Upstream`]: a named group of [`Peer`]s (an `upstream NAME { }` block, or the one
//!   address of a direct `proxy_pass`), and how a peer is picked for each request
//!   ([`Balancer`]: weighted round robin for now; health checks and other policies
//!   come in as more variants and peer state), skipping the peers that `max_fails`
//!   failures marked unavailable (nginx's passive health: see
//!   [`Upstream::count_failure`]; the counts are shared by every thread, as nginx's
//!   with a `zone`);
//! - [`pool`]: the process-wide pool of idle connections, shared by every thread;
//! - `conn`: one HTTP/1.1 connection to a peer, and its liveness check;
//! - [`client`]: one request/response exchange over such a connection, bodies streamed
//!   both ways;
//! - `headers`: what the request looks like upstream (hop-by-hop headers, Host,
//!   X-Forwarded-*, Via, `proxy_set_header` templates);
//! - [`proxy`]: the proxy phase the engine runs: peer, connection, retry, 502/504;
//! - [`redirect`]: `proxy_redirect`, the upstream's own URLs in its redirects.

mod balance;
pub mod client;
mod conn;
pub mod headers;
pub mod pool;
pub mod proxy;
pub mod redirect;

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
    /// How many failures within `fail_timeout` mark it unavailable (`max_fails=N`,
    /// default 1); 0: never.
    pub max_fails: u32,
    /// The time in which `max_fails` failures mark it unavailable, and how long it then
    /// stays so (`fail_timeout=DURATION`, default 10 s); 0: never marked.
    pub fail_timeout: Duration,
}

impl Peer {
    /// A server at `addr` with nginx's defaults.
    pub fn new(addr: SocketAddr) -> Peer {
        Peer {
            addr,
            weight: 1,
            max_fails: 1,
            fail_timeout: FAIL_TIMEOUT,
        }
    }
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
    /// Per peer, its recent failures.
    health: Box<[Health]>,
    epoch: Instant,
}

/// A peer's recent failures (times in milliseconds since its upstream's `epoch`).
/// Atomics, so that picking a peer and recording a success read them without a lock.
#[derive(Debug, Default)]
struct Health {
    /// Until when the peer is skipped; 0 when it is not.
    down_until: AtomicU64,
    /// The failures counted, in the low [`COUNT_BITS`] (saturating, far above any
    /// `max_fails` the config takes), and above them when the window started (the
    /// first failure, or the last marking): one word, so that concurrent failures all
    /// count. At `max_fails` or more the peer was marked, and stays so counted until a
    /// success.
    fails: AtomicU64,
}

const COUNT_BITS: u32 = 16;
const COUNT_MASK: u64 = (1 << COUNT_BITS) - 1;

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

    /// How many peers were tried.
    pub fn count(&self) -> usize {
        self.0.iter().map(|w| w.count_ones() as usize).sum()
    }
}

/// `keepalive` when an upstream does not say (and for direct `proxy_pass` addresses).
pub const DEFAULT_KEEPALIVE: usize = 32;

/// nginx's default `fail_timeout`.
pub const FAIL_TIMEOUT: Duration = Duration::from_secs(10);

impl Upstream {
    pub fn new(name: String, peers: Vec<Peer>, keepalive: usize) -> Upstream {
        let balancer = Balancer::round_robin(&peers);
        let health = peers.iter().map(|_| Health::default()).collect();
        Upstream {
            name,
            peers,
            balancer,
            keepalive,
            health,
            epoch: Instant::now(),
        }
    }

    /// The peer for the next request, and its index in `peers`; `None` when every peer
    /// is marked unavailable (nginx's "no live upstreams"), which unmarks them all.
    pub fn pick(&self) -> Option<(usize, &Peer)> {
        self.choose(None)
    }

    /// The next peer for a request whose `tried` peers failed: in the
    /// balancer's order, never one already tried nor one marked unavailable; `None`
    /// when there is none left, which unmarks every peer when those not tried were all
    /// marked.
    pub fn pick_next(&self, tried: &Tried) -> Option<(usize, &Peer)> {
        self.choose(Some(tried))
    }

    /// The balancer's pick among the peers neither tried nor marked unavailable. When
    /// there is none because those not tried are all marked, every peer's failures are
    /// forgotten (nginx's "all peers failed, mark them as live for quick recovery"):
    /// this request is answered 502, the next ones try the peers again rather than get
    /// 502 for the rest of `fail_timeout`.
    fn choose(&self, tried: Option<&Tried>) -> Option<(usize, &Peer)> {
        let mut now = None;
        let Some(i) = self.balancer.pick_index(&self.peers, |i| {
            tried.is_none_or(|t| !t.contains(i)) && !self.is_down(i, &mut now)
        }) else {
            // The clock was read: some peer not tried was marked, so all were.
            if now.is_some() {
                self.unmark_all();
            }
            return None;
        };
        Some((i, &self.peers[i]))
    }

    /// Forgets every peer's mark and failures. Plain stores: a failure counted
    /// meanwhile may be lost, as nginx loses it.
    fn unmark_all(&self) {
        for health in &*self.health {
            health.down_until.store(0, Ordering::Relaxed);
            health.fails.store(0, Ordering::Relaxed);
        }
    }

    /// Whether peer `i` is marked unavailable; `now` (milliseconds since `epoch`) is
    /// read from the clock only when some peer is marked.
    fn is_down(&self, i: usize, now: &mut Option<u64>) -> bool {
        let down_until = &self.health[i].down_until;
        let until = down_until.load(Ordering::Relaxed);
        if until == 0 {
            return false;
        }
        let now = *now.get_or_insert_with(|| self.millis());
        if now < until {
            return true;
        }
        // Past its fail_timeout: unmarked, so the next picks need not read the clock.
        let _ = down_until.compare_exchange(until, 0, Ordering::Relaxed, Ordering::Relaxed);
        false
    }

    fn millis(&self) -> u64 {
        millis(self.epoch.elapsed())
    }

    /// Counts a failure of peer `i` (see `proxy` for which): its `max_fails`-th within
    /// its `fail_timeout` (counted from the first) marks it unavailable for
    /// `fail_timeout`; a failure past the window starts a new one. Once marked, a peer
    /// keeps its count until [`Upstream::count_success`] forgets it, so a failure after
    /// the mark expired marks it again at once (as nginx). A lone peer is never marked
    /// (as nginx): it would be used anyway; nor is any with `fail_timeout=0`.
    pub fn count_failure(&self, i: usize) {
        let peer = &self.peers[i];
        if self.peers.len() < 2 || peer.max_fails == 0 || peer.fail_timeout.is_zero() {
            return;
        }
        let window = millis(peer.fail_timeout);
        let max = u64::from(peer.max_fails);
        let now = self.millis();
        let health = &self.health[i];
        let counted = |fails: u64| {
            let (start, n) = (fails >> COUNT_BITS, fails & COUNT_MASK);
            let n = if n == 0 || (n < max && now.saturating_sub(start) >= window) {
                1
            } else {
                (n + 1).min(COUNT_MASK)
            };
            // A marking restarts the window: a success within it does not unmark.
            let start = if n == 1 || n >= max { now } else { start };
            start << COUNT_BITS | n
        };
        // The closure never gives up: `Err` cannot happen.
        let before = health
            .fails
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |f| Some(counted(f)))
            .unwrap_or_else(|f| f);
        let fails = counted(before) & COUNT_MASK;
        if fails >= max {
            let until = now.saturating_add(window).max(1);
            health.down_until.store(until, Ordering::Relaxed);
            tracing::warn!(
                target: "upstream",
                upstream = %self.name,
                peer = %peer.addr,
                "upstream server temporarily disabled for {:?} (max_fails={})",
                peer.fail_timeout,
                peer.max_fails
            );
        }
    }

    /// Peer `i` answered (a response head came): its failures are forgotten once its
    /// window (or mark) is over, as nginx forgets them on a success after a peer was
    /// tried again; a success within it does not stop failures from adding up. One
    /// relaxed load when the peer has no failure counted, the common case.
    pub fn count_success(&self, i: usize) {
        let Some(health) = self.health.get(i) else {
            // A filter's own peer, not one of the upstream's.
            return;
        };
        let fails = health.fails.load(Ordering::Relaxed);
        if fails == 0 {
            return;
        }
        let window = millis(self.peers[i].fail_timeout);
        if self.millis().saturating_sub(fails >> COUNT_BITS) >= window {
            // A failure counted meanwhile wins: it is newer.
            let _ = health
                .fails
                .compare_exchange(fails, 0, Ordering::Relaxed, Ordering::Relaxed);
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` peers, each with `max_fails` and a 10 s `fail_timeout`.
    fn upstream(n: u16, max_fails: u32) -> Upstream {
        let peers = (1..=n)
            .map(|p| Peer {
                max_fails,
                fail_timeout: Duration::from_secs(10),
                ..Peer::new(([127, 0, 0, 1], p).into())
            })
            .collect();
        Upstream::new("u".into(), peers, 0)
    }

    /// Moves the upstream's clock forward by `ms`, without waiting.
    fn advance(u: &mut Upstream, ms: u64) {
        u.epoch = u.epoch.checked_sub(Duration::from_millis(ms)).unwrap();
    }

    fn picks(u: &Upstream, n: usize) -> Vec<usize> {
        (0..n).map(|_| u.pick().unwrap().0).collect()
    }

    #[test]
    fn a_failed_peer_is_skipped_for_fail_timeout() {
        let mut u = upstream(3, 1);
        u.count_failure(1);
        assert_eq!(picks(&u, 4), [0, 2, 0, 2]);
        advance(&mut u, 9_000);
        assert_eq!(picks(&u, 2), [0, 2], "still within fail_timeout");
        advance(&mut u, 1_000);
        let after: Vec<usize> = picks(&u, 3);
        assert!(after.contains(&1), "back after fail_timeout: {after:?}");
    }

    #[test]
    fn max_fails_within_fail_timeout_mark_a_peer() {
        let mut u = upstream(2, 3);
        let down = |u: &Upstream| !picks(u, 4).contains(&1);
        u.count_failure(1);
        advance(&mut u, 5_000);
        u.count_failure(1);
        assert!(!down(&u), "2 failures of 3");
        advance(&mut u, 4_000);
        u.count_failure(1);
        assert!(down(&u), "the third within 10 s of the first");
        // Unavailable for fail_timeout from the third failure.
        advance(&mut u, 9_000);
        assert!(down(&u));
        advance(&mut u, 1_000);
        assert!(!down(&u), "back");

        // Failures further apart than fail_timeout never add up.
        let mut u = upstream(2, 2);
        for _ in 0..5 {
            u.count_failure(1);
            advance(&mut u, 10_000);
            assert!(!down(&u));
        }
    }

    /// As nginx: a peer whose mark expired is marked again at its first failure, until
    /// a success after the mark forgets its failures.
    #[test]
    fn a_peer_is_marked_again_at_its_first_failure_until_a_success() {
        let mut u = upstream(2, 3);
        let down = |u: &Upstream| !picks(u, 4).contains(&1);
        for _ in 0..3 {
            u.count_failure(1);
        }
        advance(&mut u, 10_000);
        assert!(!down(&u), "back after fail_timeout");
        u.count_failure(1);
        assert!(down(&u), "marked again at once");
        // A success while marked (a request begun before) forgets nothing.
        advance(&mut u, 5_000);
        u.count_success(1);
        advance(&mut u, 5_000);
        u.count_failure(1);
        assert!(down(&u), "marked again at once");
        advance(&mut u, 10_000);
        u.count_success(1);
        assert_eq!(u.health[1].fails.load(Ordering::Relaxed), 0, "forgotten");
        u.count_failure(1);
        u.count_failure(1);
        assert!(!down(&u), "2 failures of 3 after the success");
        // Nor does a success within the window: failures within it add up.
        u.count_success(1);
        u.count_failure(1);
        assert!(down(&u), "the third within 10 s of the first");
    }

    #[test]
    fn max_fails_0_or_fail_timeout_0_never_marks_and_a_lone_peer_is_never_marked() {
        let u = upstream(2, 0);
        for _ in 0..10 {
            u.count_failure(0);
        }
        assert_eq!(picks(&u, 4), [0, 1, 0, 1]);
        let mut u = upstream(2, 1);
        u.peers[0].fail_timeout = Duration::ZERO;
        for _ in 0..10 {
            u.count_failure(0);
            assert_eq!(picks(&u, 2), [0, 1]);
        }
        assert_eq!(u.health[0].down_until.load(Ordering::Relaxed), 0);
        let one = upstream(1, 1);
        one.count_failure(0);
        assert_eq!(picks(&one, 2), [0, 0]);
        assert_eq!(one.health[0].fails.load(Ordering::Relaxed), 0);
    }

    /// As nginx: the pick that finds every peer marked gives none, and unmarks them all
    /// so that the next picks try them again at once, not after `fail_timeout`.
    #[test]
    fn all_peers_marked_none_is_picked_then_all_are_back() {
        let both = |u: &Upstream| {
            let mut p = picks(u, 4);
            p.sort();
            p == [0, 0, 1, 1]
        };
        let u = upstream(2, 1);
        u.count_failure(0);
        u.count_failure(1);
        assert!(u.pick().is_none(), "no live upstreams");
        assert!(both(&u), "both back at once");
        assert!(u
            .health
            .iter()
            .all(|h| h.fails.load(Ordering::Relaxed) == 0));
        u.count_failure(0);
        assert!(!picks(&u, 2).contains(&0), "a failure marks it again");

        // Likewise when the peers not tried yet are all marked.
        let u = upstream(3, 1);
        u.count_failure(1);
        u.count_failure(2);
        let mut tried = Tried::new(3);
        tried.insert(0);
        assert!(u.pick_next(&tried).is_none(), "no live upstreams");
        let mut p = picks(&u, 3);
        p.sort();
        assert_eq!(p, [0, 1, 2], "all back at once");

        // A pick that found none only because every peer was tried unmarks nothing.
        let u = upstream(3, 1);
        u.count_failure(2);
        let mut tried = Tried::new(3);
        (0..3).for_each(|i| tried.insert(i));
        assert!(u.pick_next(&tried).is_none());
        assert!(!picks(&u, 2).contains(&2), "still marked");
    }

    #[test]
    fn next_peers_in_order_each_once() {
        let u = upstream(3, 1);
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
        // Marked peers are not tried either.
        let u = upstream(3, 1);
        u.count_failure(2);
        let mut tried = Tried::new(3);
        tried.insert(0);
        assert_eq!(u.pick_next(&tried).unwrap().0, 1);
        tried.insert(1);
        assert!(u.pick_next(&tried).is_none());
    }
}

/// Proxy timeouts (nginx's `proxy_*_timeout`, same defaults).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// To establish the TCP connection.
    pub connect: Duration,
    /// From the end of the request (and from each interim response) to the response
    /// head, then between two reads of the response body.
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
