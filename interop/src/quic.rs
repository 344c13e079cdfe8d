//! QUIC transport settings and UDP sockets shared by both roles.
//!
//! The runner's networks are slow and lossy on purpose (750 ms one-way delay, 30 % loss
//! bursts, blackholes of seconds), and its tests run for up to minutes, so timeouts are
//! generous; windows are sized for its 10 Mbps links.

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

use crate::testcase::Testcase;

/// No packet for this long closes a connection (also bounds a handshake that never
/// completes).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// The server's limit on concurrent bidirectional streams: the multiplexing testcase
/// requires initial_max_streams_bidi <= 1000.
pub const SERVER_MAX_BIDI_STREAMS: u32 = 1000;

/// The transport settings of a role in a testcase.
pub fn transport(server: bool, testcase: Testcase) -> Arc<quinn::TransportConfig> {
    let mut config = quinn::TransportConfig::default();
    if testcase == Testcase::ZeroRtt {
        // zerortt counts every 1-RTT byte the client sends (at most half the size of
        // the requests): path-MTU probes (~1.4 kB each, padding) would exceed it alone.
        config.mtu_discovery_config(None);
    }
    config.max_idle_timeout(Some(
        IDLE_TIMEOUT
            .try_into()
            .expect("30 s is a valid idle timeout"),
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

/// A quinn endpoint on `socket`, a server if `server` is given.
pub fn endpoint(
    socket: UdpSocket,
    server: Option<quinn::ServerConfig>,
) -> std::io::Result<quinn::Endpoint> {
    quinn::Endpoint::new(
        quinn::EndpointConfig::default(),
        server,
        socket,
        Arc::new(quinn::TokioRuntime),
    )
}
