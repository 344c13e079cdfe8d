//! Settings of an HTTP/3 connection, for both sides.

/// HTTP/3 settings and the per-stream buffering limits of a connection.
///
/// The defaults suit a server facing the Internet: a 64 KiB field section limit, a 4 KiB
/// QPACK dynamic table, and 256 KiB of buffered body per stream in each direction.
#[derive(Debug, Clone)]
pub struct Config {
    /// SETTINGS_MAX_FIELD_SECTION_SIZE: the largest header (or trailer) section accepted,
    /// counted as RFC 9114 does (name + value + 32 per field). Enforced on receive: a
    /// server answers 431, a client fails the request.
    pub max_field_section_size: u64,
    /// SETTINGS_QPACK_MAX_TABLE_CAPACITY, and the most our encoder will use.
    pub qpack_max_table_capacity: usize,
    /// SETTINGS_QPACK_BLOCKED_STREAMS.
    pub qpack_blocked_streams: usize,
    /// SETTINGS_ENABLE_CONNECT_PROTOCOL (extended CONNECT, RFC 9220; server only).
    pub enable_connect_protocol: bool,
    /// Request or response body bytes buffered for the application before the stream
    /// stops reading from QUIC (and the peer is flow-controlled). Each queued chunk
    /// (a DATA frame's payload, or part of one) counts 64 bytes more than its length.
    pub recv_buffer: usize,
    /// Body bytes an application may queue on a stream before `send_data` waits.
    pub send_buffer: usize,
    /// Server: the QUIC transport's `max_concurrent_bidi_streams`. nghttp3 must know the
    /// cumulative number of streams the client may open, or it treats a PRIORITY_UPDATE
    /// for a valid but not yet opened stream as a connection error.
    pub max_concurrent_streams: u64,
    /// nghttp3's "glitch" rate limiter (nghttp3 >= 1.12): suspicious frames (unknown
    /// frame types, PRIORITY_UPDATE, ...) a peer may send in a burst, and per second
    /// after it, before the connection is closed with H3_EXCESSIVE_LOAD. nghttp3's own
    /// default rate (33/s) is far below what real clients send: a hyperium h3 client
    /// whose `SendRequest` is cloned per request (the usual way to share it) puts a
    /// reserved frame on every request stream, and browsers reprioritize freely. So
    /// the rate must exceed any legitimate request rate on one connection (tens of
    /// thousands per second); skipping an unknown frame costs far less than the
    /// packet that carried it, so a flood at this rate stays cheap.
    pub glitch_burst: u64,
    /// See [`glitch_burst`](Self::glitch_burst).
    pub glitch_rate: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_field_section_size: 64 * 1024,
            qpack_max_table_capacity: 4096,
            qpack_blocked_streams: 100,
            enable_connect_protocol: false,
            recv_buffer: 256 * 1024,
            send_buffer: 256 * 1024,
            max_concurrent_streams: 100,
            glitch_burst: 20_000,
            glitch_rate: 100_000,
        }
    }
}
