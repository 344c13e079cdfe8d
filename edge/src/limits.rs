//! Limits and timeouts every protocol edge enforces, with defaults safe on the Internet.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

/// Requests a client may cancel before their answer, per connection, before a
/// connection that cancels most of its requests is closed (HTTP/2 ENHANCE_YOUR_CALM,
/// HTTP/3 H3_EXCESSIVE_LOAD): the "rapid reset" attack (CVE-2023-44487) opens and
/// cancels streams so that the concurrent-stream limit never applies while the server
/// keeps starting work.
const CANCEL_BUDGET: usize = 100;

/// How long a request's unread rest is still read and discarded after an early answer
/// (a 413, an upstream's 502 before it took the body): an HTTP/1 connection closing,
/// so the kernel does not answer the client's bytes with a reset that could destroy
/// that answer; an HTTP/2 stream, so it ends without RST_STREAM, which some clients
/// (curl 7.88) take as the answer failing. At most the idle timeout.
pub const LINGER: Duration = Duration::from_secs(2);

/// Most bytes discarded while lingering. Time is the real bound (as nginx's
/// `lingering_time`, which has no byte cap): a client still sending an upload it began
/// before our early answer must be read to its end, or the reset reaches it mid-send
/// and it never reads the answer.
pub const MAX_LINGER: usize = 64 << 20;

/// Whether a connection whose client cancelled `cancelled` of its `requests` is to be
/// closed (see [`CANCEL_BUDGET`]).
pub fn cancels_most(cancelled: usize, requests: usize) -> bool {
    cancelled > CANCEL_BUDGET && cancelled.saturating_mul(2) > requests
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Time allowed for a whole request head to arrive (slowloris): 408 / close after.
    pub header_read_timeout: Duration,
    /// An idle keep-alive HTTP/1 connection, or an HTTP/2 / HTTP/3 connection without
    /// requests, is closed after this long (nginx's `keepalive_timeout`).
    pub idle_timeout: Duration,
    /// How long a request body may keep its reader waiting for more (nginx's
    /// `client_body_timeout`): 408 if the answer has not started, else the request
    /// ends there.
    pub body_timeout: Duration,
    /// How long a response may wait for the client to take more of it (nginx's
    /// `send_timeout`): an HTTP/1 connection is closed, an HTTP/2 or HTTP/3 stream reset.
    pub send_timeout: Duration,
    /// Largest request head (HTTP/1: request line + headers in bytes; HTTP/2 and HTTP/3:
    /// the header list size): 431 beyond.
    pub max_header_size: usize,
    /// Largest request body: 413 beyond. `None`: unlimited. (Per location.)
    pub max_body_size: Option<u64>,
    /// Concurrent streams per HTTP/2 connection, and per HTTP/3 connection up to
    /// [`MAX_QUIC_STREAMS`].
    pub max_concurrent_streams: u32,
    /// Requests per connection (nginx's `keepalive_requests`): HTTP/1 answers the last
    /// with `Connection: close`; HTTP/2 and HTTP/3 send GOAWAY once it arrives and
    /// close when the streams they took have ended. It bounds what one connection
    /// holds (h2's and nghttp3's per-connection state) and lets load spread anew.
    pub max_requests: u64,
}

/// The most concurrent streams an HTTP/3 connection gets, whatever HTTP/2's limit:
/// quinn sets up the state of every stream a peer may open when the connection starts,
/// before its handshake (about 100 bytes each), so a million, allowed for HTTP/2, would
/// cost some 100 MB per QUIC connection attempt.
pub const MAX_QUIC_STREAMS: u32 = 1000;

impl Limits {
    /// Concurrent streams per HTTP/3 connection: see [`MAX_QUIC_STREAMS`].
    pub fn quic_streams(&self) -> u32 {
        self.max_concurrent_streams.min(MAX_QUIC_STREAMS)
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            body_timeout: Duration::from_secs(60),
            send_timeout: Duration::from_secs(60),
            max_header_size: 64 * 1024,
            max_body_size: Some(16 * 1024 * 1024),
            max_concurrent_streams: 128,
            max_requests: 1000,
        }
    }
}

/// The request tasks running on one HTTP/2 or HTTP/3 connection, and since when it has
/// had none: the connection is idle after `idle_timeout` without any. Counted by the
/// tasks rather than by the protocol's streams, as a client can keep a stream (or, over
/// QUIC, the connection with PINGs) alive without a request being served.
pub struct Activity {
    /// The running tasks (low [`COUNT_BITS`]) and, above them, milliseconds from
    /// `start` to when the last one ended: one word, so that whoever sees no task
    /// running also sees when the last one ended.
    state: AtomicU64,
    start: Instant,
}

/// Room for 16 Mi tasks: concurrent streams are capped far below (1,000,000).
const COUNT_BITS: u32 = 24;
const COUNT: u64 = (1 << COUNT_BITS) - 1;

impl Activity {
    pub fn new() -> Arc<Self> {
        Arc::new(Activity {
            state: AtomicU64::new(0),
            start: Instant::now(),
        })
    }

    /// Counts a request task while the returned guard lives.
    pub fn enter(self: &Arc<Self>) -> Running {
        self.state.fetch_add(1, Ordering::Relaxed);
        Running(self.clone())
    }

    pub fn running(&self) -> usize {
        (self.state.load(Ordering::Relaxed) & COUNT) as usize
    }

    /// Resolves once no request task has run for `idle`.
    pub async fn until_idle(&self, idle: Duration) {
        loop {
            let state = self.state.load(Ordering::Acquire);
            let now = Instant::now();
            let wake = if state & COUNT == 0 {
                let due = self.start + Duration::from_millis(state >> COUNT_BITS) + idle;
                if due <= now {
                    return;
                }
                due
            } else {
                now + idle
            };
            tokio::time::sleep_until(wake).await;
        }
    }
}

/// One running request task (see [`Activity::enter`]).
pub struct Running(Arc<Activity>);

impl Drop for Running {
    fn drop(&mut self) {
        let activity = &self.0;
        let mut state = activity.state.load(Ordering::Relaxed);
        loop {
            // The last task out notes the time (one clock read, only then).
            let next = if state & COUNT == 1 {
                (activity.start.elapsed().as_millis() as u64) << COUNT_BITS
            } else {
                state - 1
            };
            match activity.state.compare_exchange_weak(
                state,
                next,
                Ordering::Release,
                Ordering::Relaxed,
            ) {
                Ok(_) => return,
                Err(now) => state = now,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Idle is counted from the end of the last task, and never while one runs.
    #[tokio::test(start_paused = true)]
    async fn idle_counts_from_the_last_task_end() {
        let activity = Activity::new();
        let start = Instant::now();
        let (first, second) = (activity.enter(), activity.enter());
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(5)).await;
            drop(first);
            tokio::time::sleep(Duration::from_secs(5)).await;
            drop(second);
        });
        assert_eq!(activity.running(), 2);
        activity.until_idle(Duration::from_secs(2)).await;
        assert_eq!(start.elapsed().as_secs(), 12);
        assert_eq!(activity.running(), 0);
        // Still idle: it returns at once.
        activity.until_idle(Duration::from_secs(2)).await;
        assert_eq!(start.elapsed().as_secs(), 12);
    }
}
