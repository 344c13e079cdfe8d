//! QUIC transport settings and UDP sockets shared by both roles.
//!
//! The runner's networks are slow and lossy on purpose (750 ms one-way delay, 30 % loss
//! bursts, blackholes of seconds), and its tests run for up to minutes, so timeouts are
//! generous; windows are sized for its 10 Mbps links.

use std::io::{self, IoSliceMut};
use std::net::{SocketAddr, UdpSocket};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

use crate::testcase::Testcase;

/// No packet for this long closes a connection (also bounds a handshake that never
/// completes).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// The idle timeout of multiconnect (the runner's handshakeloss and
/// handshakecorruption, which allow 300 s). After a lossy handshake a quinn-proto
/// 0.11.19 client can arm the PTO that re-sends its lost Finished beyond 30 s, while the
/// server, waiting for that Finished, sends nothing: the PTO backoff is not reset before
/// the server acknowledges a Handshake packet, and an ACK repeated in a retransmitted
/// Initial yields an RTT sample that includes its whole ACK delay (ignored outside 1-RTT).
/// Measured: 1.617 s x 2^5 = 51.7 s (interop/README.md, "quinn-proto issues").
pub const MULTICONNECT_IDLE_TIMEOUT: Duration = Duration::from_secs(120);

/// The server's limit on concurrent bidirectional streams: the multiplexing testcase
/// requires initial_max_streams_bidi <= 1000.
pub const SERVER_MAX_BIDI_STREAMS: u32 = 1000;

/// The idle timeout of both roles in a testcase.
fn idle_timeout(testcase: Testcase) -> Duration {
    match testcase {
        Testcase::Multiconnect => MULTICONNECT_IDLE_TIMEOUT,
        _ => IDLE_TIMEOUT,
    }
}

/// The transport settings of a role in a testcase.
pub fn transport(server: bool, testcase: Testcase) -> Arc<quinn::TransportConfig> {
    let mut config = quinn::TransportConfig::default();
    if testcase == Testcase::ZeroRtt {
        // zerortt counts every 1-RTT byte the client sends (at most half the size of
        // the requests): path-MTU probes (~1.4 kB each, padding) would exceed it alone.
        config.mtu_discovery_config(None);
    }
    config.max_idle_timeout(Some(
        idle_timeout(testcase)
            .try_into()
            .expect("30 s and 120 s are valid idle timeouts"),
    ));
    if server {
        config.max_concurrent_bidi_streams(SERVER_MAX_BIDI_STREAMS.into());
    } else {
        // The transfer testcase asks for small initial flow-control windows that must
        // be raised during a transfer of megabytes; these are still well above the
        // bandwidth-delay product of the runner's 10 Mbps, 30 ms RTT links.
        config.stream_receive_window((256u32 * 1024).into());
        config.receive_window((1024u32 * 1024).into());
        // Servers do not open bidirectional streams in either protocol.
        config.max_concurrent_bidi_streams(0u32.into());
    }
    Arc::new(config)
}

/// The server's QUIC configuration for a testcase.
pub fn server_config(
    crypto: quinn::crypto::rustls::QuicServerConfig,
    testcase: Testcase,
) -> quinn::ServerConfig {
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    config.transport_config(transport(true, testcase));
    // Clients may move (rebind-port, rebind-addr, connectionmigration); quinn then
    // validates the new path with PATH_CHALLENGE.
    config.migration(true);
    if testcase == Testcase::Retry {
        // Long enough for a Retry token to survive the runner's 1.5 s RTT.
        config.retry_token_lifetime(Duration::from_secs(30));
    }
    config
}

/// A UDP socket bound to `addr`. An unspecified IPv6 address is dual-stack, so a server
/// on `[::]:443` answers over IPv4 and IPv6 alike (the runner's `server46`).
pub fn bind(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() && addr.ip().is_unspecified() {
        socket.set_only_v6(false)?;
    }
    // Best effort: bursts at 10 Mbps and above overrun the default buffers.
    let _ = socket.set_recv_buffer_size(4 << 20);
    let _ = socket.set_send_buffer_size(4 << 20);
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

/// A quinn endpoint on `socket`, a server if `server` is given (its socket then
/// discards what parses as a Retry packet, see [`DropRetries`]).
pub fn endpoint(
    socket: UdpSocket,
    server: Option<quinn::ServerConfig>,
) -> std::io::Result<quinn::Endpoint> {
    use quinn::Runtime;
    let runtime = Arc::new(quinn::TokioRuntime);
    let mut socket = runtime.wrap_udp_socket(socket)?;
    if server.is_some() {
        socket = Arc::new(DropRetries(socket));
    }
    quinn::Endpoint::new_with_abstract_socket(
        quinn::EndpointConfig::default(),
        server,
        socket,
        runtime,
    )
}

/// A server's socket that discards every datagram holding a long-header packet of the
/// Retry type, before quinn sees it.
///
/// Only servers send Retry, and the type bits are not covered by header protection, so
/// such a packet at a server is a corrupted Initial or Handshake packet. quinn-proto
/// 0.11.19 closes a connection that is still handshaking with PROTOCOL_VIOLATION
/// ("client sent Retry") on such a packet, before any authentication
/// (`Connection::handle_packet`); RFC 9000 (section 5.2) lets a server discard it, and
/// the handshakecorruption testcase (one byte of the first 50 corrupted) produces it.
#[derive(Debug)]
struct DropRetries(Arc<dyn quinn::AsyncUdpSocket>);

impl quinn::AsyncUdpSocket for DropRetries {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn quinn::UdpPoller>> {
        self.0.clone().create_io_poller()
    }

    fn try_send(&self, transmit: &quinn::udp::Transmit) -> io::Result<()> {
        self.0.try_send(transmit)
    }

    fn poll_recv(
        &self,
        cx: &mut Context,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [quinn::udp::RecvMeta],
    ) -> Poll<io::Result<usize>> {
        let n = ready!(self.0.poll_recv(cx, bufs, meta))?;
        for (buf, meta) in bufs.iter_mut().zip(meta.iter_mut()).take(n) {
            let len = drop_retries(buf, meta.len, meta.stride);
            if len != meta.len {
                tracing::info!(
                    "dropped a datagram holding a Retry packet from {}",
                    meta.addr
                );
            }
            meta.len = len;
        }
        Poll::Ready(Ok(n))
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.local_addr()
    }

    fn max_transmit_segments(&self) -> usize {
        self.0.max_transmit_segments()
    }

    fn max_receive_segments(&self) -> usize {
        self.0.max_receive_segments()
    }

    fn may_fragment(&self) -> bool {
        self.0.may_fragment()
    }
}

/// Removes the datagrams (`stride`-sized segments of the first `len` bytes, as GRO
/// delivers them) that hold a Retry packet; the remaining length (0 when none is left,
/// which quinn reads as no datagram).
fn drop_retries(buf: &mut [u8], len: usize, stride: usize) -> usize {
    let len = len.min(buf.len());
    let stride = if stride == 0 { len } else { stride };
    let (mut kept, mut at) = (0, 0);
    while at < len {
        let end = (at + stride).min(len);
        if !holds_retry(&buf[at..end]) {
            buf.copy_within(at..end, kept);
            kept += end - at;
        }
        at = end;
    }
    kept
}

/// Whether a datagram holds a long-header packet of the Retry type in a version quinn
/// speaks (QUIC v1 and drafts 29 to 34: type bits 0b11), walking coalesced packets by
/// their Length fields as quinn does. Other versions have no known types (quinn answers
/// them with Version Negotiation); a short header ends the walk.
fn holds_retry(datagram: &[u8]) -> bool {
    let mut rest = datagram;
    while let Some(&first) = rest.first() {
        if first & 0x80 == 0 {
            return false;
        }
        let version = rest
            .get(1..5)
            .map(|v| u32::from_be_bytes([v[0], v[1], v[2], v[3]]));
        match version {
            Some(1 | 0xff00_001d..=0xff00_0022) if first & 0x30 == 0x30 => return true,
            Some(1 | 0xff00_001d..=0xff00_0022) => {}
            _ => return false,
        }
        let Some(next) = after_long_packet(rest) else {
            return false;
        };
        rest = next;
    }
    false
}

/// What follows the Initial, 0-RTT or Handshake packet at the start of `p`, if its header
/// parses.
fn after_long_packet(p: &[u8]) -> Option<&[u8]> {
    let mut at = 5;
    for _ in 0..2 {
        let cid_len = usize::from(*p.get(at)?);
        at += 1 + cid_len;
    }
    if p[0] & 0x30 == 0 {
        let (token_len, n) = varint(p.get(at..)?)?;
        at += n + usize::try_from(token_len).ok()?;
    }
    let (length, n) = varint(p.get(at..)?)?;
    at += n;
    p.get(at + usize::try_from(length).ok()?..)
}

/// A QUIC variable-length integer and its size in bytes.
fn varint(b: &[u8]) -> Option<(u64, usize)> {
    let first = *b.first()?;
    let n = 1usize << (first >> 6);
    let bytes = b.get(..n)?;
    let value = bytes[1..]
        .iter()
        .fold(u64::from(first & 0x3f), |v, &x| (v << 8) | u64::from(x));
    Some((value, n))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A long-header packet: `first` byte, QUIC v1, 8-byte connection IDs, a token
    /// length for Initial, and a Length field covering `payload` bytes.
    fn long_packet(first: u8, payload: usize) -> Vec<u8> {
        let mut p = vec![first, 0, 0, 0, 1, 8];
        p.extend_from_slice(&[0xaa; 8]);
        p.push(8);
        p.extend_from_slice(&[0xbb; 8]);
        if first & 0x30 == 0 {
            p.push(0);
        }
        let length = u16::try_from(payload).unwrap() | 0x4000;
        p.extend_from_slice(&length.to_be_bytes());
        p.extend(std::iter::repeat_n(0x55, payload));
        p
    }

    #[test]
    fn multiconnect_outwaits_the_measured_pto() {
        // The measured probe of a lost Finished came 51.7 s after it (backoff 2^5): that,
        // and one more doubling, must still find the server.
        assert!(idle_timeout(Testcase::Multiconnect) > Duration::from_millis(51_700) * 2);
        assert_eq!(idle_timeout(Testcase::Transfer), IDLE_TIMEOUT);
    }

    #[test]
    fn retry_types_only() {
        assert!(!holds_retry(&long_packet(0xc0, 40))); // Initial
        assert!(!holds_retry(&long_packet(0xd0, 40))); // 0-RTT
        assert!(!holds_retry(&long_packet(0xe0, 40))); // Handshake
        assert!(holds_retry(&long_packet(0xf0, 40)));
        // Header protection covers the low four bits, not the type.
        assert!(holds_retry(&long_packet(0xff, 40)));
        let mut vn = long_packet(0xf0, 40);
        vn[1..5].fill(0);
        assert!(!holds_retry(&vn), "Version Negotiation");
        let mut draft = long_packet(0xf0, 40);
        draft[1..5].copy_from_slice(&0xff00_001du32.to_be_bytes());
        assert!(holds_retry(&draft));
        // An unknown version still gets Version Negotiation from quinn.
        let mut unknown = long_packet(0xf0, 40);
        unknown[1..5].copy_from_slice(&0x1a2a_3a4au32.to_be_bytes());
        assert!(!holds_retry(&unknown));
        assert!(!holds_retry(&[0x70, 1, 2, 3]), "short header");
        assert!(!holds_retry(&[]));
        assert!(!holds_retry(&[0xf0, 0, 0]), "truncated");
    }

    #[test]
    fn coalesced_retry_is_found() {
        let mut d = long_packet(0xe0, 20);
        d.extend(long_packet(0xf3, 30));
        assert!(holds_retry(&d));
        let mut d = long_packet(0xc1, 20);
        d.extend(long_packet(0xe1, 30));
        d.extend([0x41, 9, 9, 9]); // then a short header
        assert!(!holds_retry(&d));
    }

    #[test]
    fn retry_segments_are_removed() {
        let good = long_packet(0xe0, 40);
        let retry = long_packet(0xf0, 40);
        let short = long_packet(0xe0, 10);
        let stride = good.len();
        let mut buf = [good.clone(), retry.clone(), good.clone(), short.clone()].concat();
        let len = buf.len();
        let kept = drop_retries(&mut buf, len, stride);
        assert_eq!(&buf[..kept], [good.clone(), good.clone(), short].concat());

        let mut one = retry.clone();
        assert_eq!(drop_retries(&mut one, retry.len(), 0), 0);
        let mut one = good.clone();
        assert_eq!(drop_retries(&mut one, good.len(), 0), good.len());
        assert_eq!(one, good);
    }
}
