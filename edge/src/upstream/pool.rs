//! The upstream connection pool: one per process, shared by every worker thread, so a
//! connection opened for a request on one thread is reused by the next request to the
//! same peer whatever thread it runs on (Pingora's lesson: per-thread pools waste most
//! of their connections).
//!
//! Connections are keyed by peer; the newest idle connection is reused first (it is the
//! least likely to have been closed by the peer's idle timeout), liveness is checked
//! before reuse, and idle connections past the idle timeout or beyond the per-peer
//! maximum are closed.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rustc_hash::FxBuildHasher;

/// A pooled connection: the pool asks it whether it is still usable.
pub trait Reusable: Send {
    /// False when the peer has closed the connection or sent bytes nobody asked for
    /// (either way it cannot carry another request). Must not block.
    fn is_reusable(&mut self) -> bool;
}

/// Pool bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolConfig {
    /// Idle connections kept per peer (nginx's `keepalive N`).
    pub max_idle_per_peer: usize,
    /// An idle connection older than this is closed rather than reused.
    pub idle_timeout: Duration,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            max_idle_per_peer: 32,
            idle_timeout: Duration::from_secs(60),
        }
    }
}

/// Reuse counters, for tests and metrics.
#[derive(Debug, Default)]
pub struct PoolStats {
    /// Checkouts that got an idle connection.
    pub reused: AtomicU64,
    /// New connections: checkouts that found none (the caller connects), and
    /// connections opened without a checkout (a retry on a new connection,
    /// [`Pool::count_connect`]).
    pub missed: AtomicU64,
    /// Idle connections dropped because the peer closed them or they were too old.
    pub discarded: AtomicU64,
}

struct Idle<C> {
    conn: C,
    since: Instant,
}

/// What a checkout took from a peer's list under the lock, to look at outside it.
enum Taken<C> {
    /// The newest connection, young enough: to check for liveness.
    One(C),
    /// Connections past the idle timeout: to close.
    Expired(VecDeque<Idle<C>>),
}

/// Idle connections by peer.
pub struct Pool<K, C> {
    config: PoolConfig,
    /// FxHash: the keys are peer addresses from the configuration, not chosen by
    /// clients, and SipHash cost two hundred instructions per checkout and checkin.
    idle: Mutex<HashMap<K, VecDeque<Idle<C>>, FxBuildHasher>>,
    pub stats: PoolStats,
}

impl<K: Hash + Eq + Clone, C: Reusable> Pool<K, C> {
    pub fn new(config: PoolConfig) -> Self {
        Pool {
            config,
            idle: Mutex::new(HashMap::default()),
            stats: PoolStats::default(),
        }
    }

    /// An idle, live connection to `peer`, if there is one. The newest is taken under
    /// the lock, and its liveness checked (a system call, at times) and the dead ones
    /// closed outside it: the lock is shared by every worker.
    pub fn checkout(&self, peer: &K) -> Option<C> {
        let now = Instant::now();
        let mut found = None;
        let mut discarded = 0;
        loop {
            let taken = {
                let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
                let Some(list) = idle.get_mut(peer) else {
                    break;
                };
                let taken = match list.pop_back() {
                    // The newest is too old: all are.
                    Some(entry) if now.duration_since(entry.since) >= self.config.idle_timeout => {
                        list.push_back(entry);
                        Taken::Expired(std::mem::take(list))
                    }
                    Some(entry) => Taken::One(entry.conn),
                    None => Taken::Expired(VecDeque::new()),
                };
                if list.is_empty() {
                    idle.remove(peer);
                }
                taken
            };
            match taken {
                Taken::One(mut conn) => {
                    if conn.is_reusable() {
                        found = Some(conn);
                        break;
                    }
                    discarded += 1;
                }
                Taken::Expired(list) => {
                    discarded += list.len() as u64;
                    break;
                }
            }
        }
        self.stats.discarded.fetch_add(discarded, Ordering::Relaxed);
        let counter = if found.is_some() {
            &self.stats.reused
        } else {
            &self.stats.missed
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    /// Counts a connection opened without asking the pool first (a retry that must not
    /// reuse one).
    pub fn count_connect(&self) {
        self.stats.missed.fetch_add(1, Ordering::Relaxed);
    }

    /// Gives back a connection that finished its exchange cleanly. Beyond the per-peer
    /// maximum the oldest idle connection is closed.
    pub fn checkin(&self, peer: K, conn: C) {
        self.checkin_capped(peer, conn, self.config.max_idle_per_peer);
    }

    /// [`checkin`](Self::checkin) with the peer's own maximum of idle connections (an
    /// upstream's `keepalive N`) instead of the pool's.
    pub fn checkin_capped(&self, peer: K, conn: C, max_idle: usize) {
        if max_idle == 0 {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let list = idle.entry(peer).or_default();
        list.push_back(Idle {
            conn,
            since: Instant::now(),
        });
        // Down to the cap, whatever the cap of the last checkin was (two upstreams with
        // different `keepalive` may share a peer); the evicted closed outside the lock.
        match list.len().saturating_sub(max_idle) {
            0 => {}
            // A full list, the usual case: without allocating.
            1 => {
                let evicted = list.pop_front();
                drop(idle);
                drop(evicted);
            }
            excess => {
                let kept = list.split_off(excess);
                let evicted = std::mem::replace(list, kept);
                drop(idle);
                drop(evicted);
            }
        }
    }

    /// Idle connections to `peer` right now.
    pub fn idle_count(&self, peer: &K) -> usize {
        let idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        idle.get(peer).map_or(0, VecDeque::len)
    }

    /// Closes idle connections past the idle timeout (run now and then, so a quiet peer's
    /// connections do not stay open until the next request).
    pub fn sweep(&self) {
        let now = Instant::now();
        let expired: Vec<Idle<C>> = {
            let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
            let mut expired = Vec::new();
            idle.retain(|_, list| {
                while list
                    .front()
                    .is_some_and(|e| now.duration_since(e.since) >= self.config.idle_timeout)
                {
                    expired.extend(list.pop_front());
                }
                !list.is_empty()
            });
            expired
        };
        self.stats
            .discarded
            .fetch_add(expired.len() as u64, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;

    struct Fake {
        id: u32,
        alive: Arc<AtomicBool>,
    }

    impl Reusable for Fake {
        fn is_reusable(&mut self) -> bool {
            self.alive.load(Ordering::Relaxed)
        }
    }

    fn fake(id: u32) -> (Fake, Arc<AtomicBool>) {
        let alive = Arc::new(AtomicBool::new(true));
        (
            Fake {
                id,
                alive: alive.clone(),
            },
            alive,
        )
    }

    fn pool(max: usize, idle: Duration) -> Pool<&'static str, Fake> {
        Pool::new(PoolConfig {
            max_idle_per_peer: max,
            idle_timeout: idle,
        })
    }

    #[test]
    fn reuses_the_newest_live_connection_of_the_same_peer() {
        let p = pool(4, Duration::from_secs(60));
        assert!(p.checkout(&"a").is_none());
        let (c1, _) = fake(1);
        let (c2, alive2) = fake(2);
        p.checkin("a", c1);
        p.checkin("a", c2);
        assert!(
            p.checkout(&"b").is_none(),
            "another peer's connections are not shared"
        );
        alive2.store(false, Ordering::Relaxed);
        assert_eq!(p.checkout(&"a").map(|c| c.id), Some(1), "closed #2 skipped");
        assert!(p.checkout(&"a").is_none());
        assert_eq!(p.stats.reused.load(Ordering::Relaxed), 1);
        assert_eq!(p.stats.missed.load(Ordering::Relaxed), 3);
        assert_eq!(p.stats.discarded.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn keeps_at_most_max_idle_and_expires_old_ones() {
        let p = pool(2, Duration::from_millis(50));
        for id in 0..5 {
            p.checkin("a", fake(id).0);
        }
        assert_eq!(p.idle_count(&"a"), 2);
        assert_eq!(p.checkout(&"a").map(|c| c.id), Some(4));
        std::thread::sleep(Duration::from_millis(60));
        p.sweep();
        assert_eq!(p.idle_count(&"a"), 0);
        assert!(p.checkout(&"a").is_none());
    }

    #[test]
    fn the_cap_holds_whichever_upstream_checks_in() {
        let p = pool(64, Duration::from_secs(60));
        for id in 0..4 {
            p.checkin_capped("a", fake(id).0, 4);
        }
        // Another upstream with `keepalive 2` on the same address.
        p.checkin_capped("a", fake(4).0, 2);
        assert_eq!(p.idle_count(&"a"), 2);
        assert_eq!(p.checkout(&"a").map(|c| c.id), Some(4), "the newest kept");
        assert_eq!(p.checkout(&"a").map(|c| c.id), Some(3));
    }

    /// A connection that notes whether the pool's lock was held when it was checked
    /// for liveness or closed.
    struct Probe {
        pool: Arc<Pool<&'static str, Probe>>,
        alive: bool,
        under_lock: Arc<AtomicBool>,
    }

    impl Probe {
        fn note(&self) {
            if self.pool.idle.try_lock().is_err() {
                self.under_lock.store(true, Ordering::Relaxed);
            }
        }
    }

    impl Reusable for Probe {
        fn is_reusable(&mut self) -> bool {
            self.note();
            self.alive
        }
    }

    impl Drop for Probe {
        fn drop(&mut self) {
            self.note();
        }
    }

    #[test]
    fn liveness_checks_and_closes_happen_outside_the_lock() {
        let under_lock = Arc::new(AtomicBool::new(false));
        let p = Arc::new(Pool::new(PoolConfig {
            max_idle_per_peer: 2,
            idle_timeout: Duration::from_millis(100),
        }));
        let probe = |alive| Probe {
            pool: p.clone(),
            alive,
            under_lock: under_lock.clone(),
        };
        // Checked and found dead, then closed; then one found alive.
        p.checkin("a", probe(true));
        p.checkin("a", probe(false));
        assert!(p.checkout(&"a").is_some_and(|c| c.alive));
        assert_eq!(p.stats.discarded.load(Ordering::Relaxed), 1);
        // Evicted over the cap.
        for _ in 0..3 {
            p.checkin("a", probe(true));
        }
        assert_eq!(p.idle_count(&"a"), 2);
        // Expired.
        std::thread::sleep(Duration::from_millis(120));
        assert!(p.checkout(&"a").is_none());
        assert_eq!(p.stats.discarded.load(Ordering::Relaxed), 3);
        assert_eq!(p.idle_count(&"a"), 0);
        assert!(
            !under_lock.load(Ordering::Relaxed),
            "done under the pool lock"
        );
    }

    #[test]
    fn shared_across_threads() {
        let p = Arc::new(pool(64, Duration::from_secs(60)));
        p.checkin("a", fake(0).0);
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let p = p.clone();
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        let c = p.checkout(&"a").unwrap_or_else(|| fake(1).0);
                        p.checkin("a", c);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let reused = p.stats.reused.load(Ordering::Relaxed);
        let missed = p.stats.missed.load(Ordering::Relaxed);
        assert_eq!(reused + missed, 4000);
        assert!(
            missed <= 4,
            "at most one new connection per thread: {missed}"
        );
    }
}
