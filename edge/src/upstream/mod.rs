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
use std::sync::LazyLock;
use std::time::Duration;

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
}

/// `keepalive` when an upstream does not say (and for direct `proxy_pass` addresses).
pub const DEFAULT_KEEPALIVE: usize = 32;

impl Upstream {
    pub fn new(name: String, peers: Vec<Peer>, keepalive: usize) -> Upstream {
        let balancer = Balancer::round_robin(&peers);
        Upstream {
            name,
            peers,
            balancer,
            keepalive,
        }
    }

    /// The peer for the next request.
    pub fn pick(&self) -> Option<&Peer> {
        self.balancer.pick(&self.peers)
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
