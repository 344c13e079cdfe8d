//! The upstream connection pool: one per process, shared by every worker thread, so a
//! connection opened for a request on one thread is reused by the next request to the
//! same peer whatever thread it runs on (Pingora's lesson: per-thread pools waste most
//! of their connections).
//!
//! Connections are keyed by peer; the newest idle connection is reused first (it is the
//! least likely to have been closed by the peer's idle timeout), liveness is checked
//! before reuse, and idle connections past the idle timeout or beyond the per-peer
//! maximum are closed.
//!
//! A socket's readiness events come from the event loop of the worker that registered
//! it: reused by another worker as it is, each event would go through the first
//! worker's thread (waiting on it when it is busy, failing once its runtime is gone).
//! So each idle connection carries the worker it was checked in from ([`set_worker`]),
//! a checkout takes its own worker's newest among the few newest ones when there is
//! one, and else moves the connection it takes to its own event loop
//! ([`Reusable::move_here`]: two `epoll_ctl`s).

use std::cell::Cell;
use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rustc_hash::FxBuildHasher;

/// A pooled connection: the pool asks it whether it is still usable, and moves it to
/// the worker that takes it.
pub trait Reusable: Send + Sized {
    /// False when the peer has closed the connection or sent bytes nobody asked for
    /// (either way it cannot carry another request). Must not block.
    fn is_reusable(&mut self) -> bool;

    /// The connection with its events now coming from the current worker's event
    /// loop, when another worker's delivered them.
    fn move_here(self) -> io::Result<Self>;
}

thread_local! {
    /// The worker running on this thread: 0 outside edge's workers (one event loop).
    static WORKER: Cell<u32> = const { Cell::new(0) };
}

/// Marks this thread as worker `id`, whose event loop its connections are registered
/// with. Each worker thread calls it when it starts; ids are distinct per worker.
pub fn set_worker(id: u32) {
    WORKER.set(id);
}

/// How many of a peer's newest idle connections a checkout looks through for one of
/// its own worker's: a bounded scan under the lock.
const OWN_WORKER_SCAN: usize = 8;

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
    /// New connections, counted by the caller once connected
    /// ([`Pool::count_connect`]): a connect that fails opened none.
    pub missed: AtomicU64,
    /// Idle connections dropped because the peer closed them or they were too old.
    pub discarded: AtomicU64,
    /// Reused connections moved from another worker's event loop.
    pub moved: AtomicU64,
}

struct Idle<C> {
    conn: C,
    since: Instant,
    /// The worker that checked it in, whose event loop it is registered with.
    worker: u32,
}

/// What a checkout took from a peer's list under the lock, to look at outside it.
enum Taken<C> {
    /// A connection young enough, and its worker: to check for liveness.
    One(C, u32),
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

    /// An idle, live connection to `peer`, if there is one, registered with the current
    /// worker's event loop. One is taken under the lock (see `take_idle`); its liveness
    /// is checked (a system call, at times), it is moved to this worker if need be, and
    /// the dead ones are closed outside the lock: the lock is shared by every worker.
    pub fn checkout(&self, peer: &K) -> Option<C> {
        let now = Instant::now();
        let here = WORKER.get();
        let mut found = None;
        let mut discarded = 0;
        loop {
            let taken = {
                let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
                let Some(list) = idle.get_mut(peer) else {
                    break;
                };
                let taken = match take_idle(list, here, now, self.config.idle_timeout) {
                    Some(Idle { conn, worker, .. }) => Taken::One(conn, worker),
                    // The newest is too old: all are.
                    None => Taken::Expired(std::mem::take(list)),
                };
                if list.is_empty() {
                    idle.remove(peer);
                }
                taken
            };
            match taken {
                Taken::One(mut conn, worker) => {
                    if !conn.is_reusable() {
                        discarded += 1;
                        continue;
                    }
                    if worker == here {
                        found = Some(conn);
                        break;
                    }
                    if let Ok(conn) = conn.move_here() {
                        self.stats.moved.fetch_add(1, Ordering::Relaxed);
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
        if found.is_some() {
            self.stats.reused.fetch_add(1, Ordering::Relaxed);
        }
        found
    }

    /// Counts a new connection to a peer, once it is established.
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
            worker: WORKER.get(),
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

/// Takes from `list` (oldest first) what a checkout on worker `here` reuses: the newest
/// connection unless it is another worker's and one of `here`'s is among the
/// [`OWN_WORKER_SCAN`] newest (young enough); none when even the newest is past
/// `timeout`.
fn take_idle<C>(
    list: &mut VecDeque<Idle<C>>,
    here: u32,
    now: Instant,
    timeout: Duration,
) -> Option<Idle<C>> {
    let newest = list.back()?;
    if now.duration_since(newest.since) >= timeout {
        return None;
    }
    if newest.worker != here {
        let from = list.len().saturating_sub(OWN_WORKER_SCAN);
        let own = list
            .range(from..list.len() - 1)
            .rposition(|e| e.worker == here && now.duration_since(e.since) < timeout);
        if let Some(at) = own {
            return list.remove(from + at);
        }
    }
    list.pop_back()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;

    struct Fake {
        id: u32,
        alive: Arc<AtomicBool>,
        moved: bool,
    }

    impl Reusable for Fake {
        fn is_reusable(&mut self) -> bool {
            self.alive.load(Ordering::Relaxed)
        }

        fn move_here(self) -> io::Result<Self> {
            Ok(Fake {
                moved: true,
                ..self
            })
        }
    }

    fn fake(id: u32) -> (Fake, Arc<AtomicBool>) {
        let alive = Arc::new(AtomicBool::new(true));
        (
            Fake {
                id,
                alive: alive.clone(),
                moved: false,
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
        // A checkout that finds none opens nothing: the caller counts what it opens.
        assert_eq!(p.stats.missed.load(Ordering::Relaxed), 0);
        assert_eq!(p.stats.discarded.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn a_checkout_prefers_its_own_workers_connection_and_moves_another_workers() {
        let p = pool(64, Duration::from_secs(60));
        let checkin_on = |worker, id| {
            set_worker(worker);
            p.checkin("a", fake(id).0);
        };
        checkin_on(1, 10);
        checkin_on(2, 20);
        checkin_on(2, 21);
        set_worker(1);
        let own = p.checkout(&"a").unwrap();
        assert_eq!(own.id, 10, "its own worker's, before two newer ones");
        assert!(!own.moved);
        let other = p.checkout(&"a").unwrap();
        assert_eq!(other.id, 21, "else the newest, moved here");
        assert!(other.moved);
        assert_eq!(p.stats.moved.load(Ordering::Relaxed), 1);

        // Its own worker's past the scan's few newest: the newest is taken.
        checkin_on(1, 11);
        for id in 0..OWN_WORKER_SCAN as u32 {
            checkin_on(2, 30 + id);
        }
        set_worker(1);
        assert_eq!(
            p.checkout(&"a").map(|c| c.id),
            Some(29 + OWN_WORKER_SCAN as u32)
        );
    }

    // The idle timeouts below are a second: what runs before the sleep must take less,
    // even on a loaded machine.
    #[test]
    fn keeps_at_most_max_idle_and_expires_old_ones() {
        let p = pool(2, Duration::from_secs(1));
        for id in 0..5 {
            p.checkin("a", fake(id).0);
        }
        assert_eq!(p.idle_count(&"a"), 2);
        assert_eq!(p.checkout(&"a").map(|c| c.id), Some(4));
        std::thread::sleep(Duration::from_millis(1100));
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

        fn move_here(self) -> io::Result<Self> {
            self.note();
            Ok(self)
        }
    }

    impl Drop for Probe {
        fn drop(&mut self) {
            self.note();
        }
    }

    #[test]
    fn liveness_checks_moves_and_closes_happen_outside_the_lock() {
        let under_lock = Arc::new(AtomicBool::new(false));
        let p = Arc::new(Pool::new(PoolConfig {
            max_idle_per_peer: 2,
            idle_timeout: Duration::from_secs(1),
        }));
        let probe = |alive| Probe {
            pool: p.clone(),
            alive,
            under_lock: under_lock.clone(),
        };
        // Checked and found dead, then closed; then one found alive, moved from another
        // worker.
        set_worker(1);
        p.checkin("a", probe(true));
        p.checkin("a", probe(false));
        set_worker(2);
        assert!(p.checkout(&"a").is_some_and(|c| c.alive));
        assert_eq!(p.stats.discarded.load(Ordering::Relaxed), 1);
        assert_eq!(p.stats.moved.load(Ordering::Relaxed), 1);
        // Evicted over the cap.
        for _ in 0..3 {
            p.checkin("a", probe(true));
        }
        assert_eq!(p.idle_count(&"a"), 2);
        // Expired.
        std::thread::sleep(Duration::from_millis(1100));
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
                        let c = p.checkout(&"a").unwrap_or_else(|| {
                            p.count_connect();
                            fake(1).0
                        });
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
