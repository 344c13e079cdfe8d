//! Limits and timeouts every protocol edge enforces, with defaults safe on the Internet.

use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Time allowed for a whole request head to arrive (slowloris): 408 / close after.
    pub header_read_timeout: Duration,
    /// An idle keep-alive HTTP/1 connection, or an HTTP/2 / HTTP/3 connection without
    /// streams, is closed after this long. Also how long a request body may keep its
    /// reader waiting, and a response wait for the client to take more of it.
    pub idle_timeout: Duration,
    /// Largest request head (HTTP/1: request line + headers in bytes; HTTP/2 and HTTP/3:
    /// the header list size): 431 beyond.
    pub max_header_size: usize,
    /// Largest request body: 413 beyond. `None`: unlimited. (Per location.)
    pub max_body_size: Option<u64>,
    /// Concurrent streams per HTTP/2 or HTTP/3 connection.
    pub max_concurrent_streams: u32,
    /// Requests per connection (nginx's `keepalive_requests`): HTTP/1 answers the last
    /// with `Connection: close`; HTTP/2 and HTTP/3 send GOAWAY once it arrives and
    /// close when the streams they took have ended. It bounds what one connection
    /// holds (h2's and nghttp3's per-connection state) and lets load spread anew.
    pub max_requests: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_header_size: 64 * 1024,
            max_body_size: Some(16 * 1024 * 1024),
            max_concurrent_streams: 128,
            max_requests: 1000,
        }
    }
}
