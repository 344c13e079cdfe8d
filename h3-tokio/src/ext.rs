//! Request extensions h3-tokio sets or reads.

use std::fmt;

/// Marks a request that arrived in 0-RTT data, before the handshake completed. Such a
/// request may be a replay: answer methods that are not safe with 425 Too Early
/// (RFC 8470) unless the application knows they are idempotent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EarlyData;

/// The `:protocol` pseudo-header of an extended CONNECT request (RFC 9220), e.g.
/// `websocket`. Set it on a client request to send one; servers receive it as an
/// extension when `Config::enable_connect_protocol` is on.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Protocol(String);

impl Protocol {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<&str> for Protocol {
    fn from(s: &str) -> Self {
        Protocol(s.to_owned())
    }
}

impl fmt::Debug for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Protocol({})", self.0)
    }
}

/// The RFC 9218 priority of a request, from its `priority` header and any
/// PRIORITY_UPDATE frame received before its headers, as nghttp3 resolved them.
/// Servers find it on requests whose priority is not the default; a request without it
/// has `Priority::default()`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Priority {
    /// 0 (most urgent) to 7; 3 by default.
    pub urgency: u8,
    /// Whether the response can be delivered incrementally, interleaved with others.
    pub incremental: bool,
}

impl Default for Priority {
    fn default() -> Self {
        Priority {
            urgency: 3,
            incremental: false,
        }
    }
}
