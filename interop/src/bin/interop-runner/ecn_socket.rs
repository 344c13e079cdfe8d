//! A tokio UDP socket that reads and writes the IP ECN bits of each datagram, through
//! quinn-udp's cmsg handling (no raw cmsg code here), so that the relay can carry the
//! endpoints' ECT marks across the simulated link.

use std::io::{self, IoSliceMut};
use std::net::SocketAddr;

use quinn_udp::{EcnCodepoint, RecvMeta, Transmit, UdpSocketState};
use tokio::io::Interest;
use tokio::net::UdpSocket;

/// A datagram with its ECN codepoint (the two low bits of the TOS/traffic class).
pub struct Datagram {
    pub from: SocketAddr,
    pub payload: Vec<u8>,
    pub ecn: u8,
}

/// See the module documentation.
pub struct EcnSocket {
    socket: UdpSocket,
    state: UdpSocketState,
}

impl EcnSocket {
    /// Binds a socket to `addr`.
    pub async fn bind(addr: SocketAddr) -> io::Result<EcnSocket> {
        let socket = UdpSocket::bind(addr).await?;
        let state = UdpSocketState::new((&socket).into())?;
        let _ = state.set_recv_buffer_size((&socket).into(), 4 << 20);
        let _ = state.set_send_buffer_size((&socket).into(), 4 << 20);
        Ok(EcnSocket { socket, state })
    }

    /// The bound address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// Receives the next datagrams (several when the kernel coalesced them, GRO).
    pub async fn recv(&self, buf: &mut [u8]) -> io::Result<Vec<Datagram>> {
        let mut meta = [RecvMeta::default()];
        loop {
            self.socket.readable().await?;
            let res = self.socket.try_io(Interest::READABLE, || {
                let mut bufs = [IoSliceMut::new(&mut *buf)];
                self.state.recv((&self.socket).into(), &mut bufs, &mut meta)
            });
            match res {
                Ok(_) => break,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        }
        let [m] = &meta;
        let data = buf.get(..m.len).unwrap_or_default();
        let ecn = m.ecn.map_or(0, |e| e as u8);
        Ok(data
            .chunks(m.stride.max(1))
            .map(|c| Datagram {
                from: m.addr,
                payload: c.to_vec(),
                ecn,
            })
            .collect())
    }

    /// Sends one datagram with an ECN codepoint (0: not ECN-capable).
    pub async fn send(&self, to: SocketAddr, payload: &[u8], ecn: u8) -> io::Result<()> {
        let transmit = Transmit {
            destination: to,
            ecn: EcnCodepoint::from_bits(ecn),
            contents: payload,
            segment_size: None,
            src_ip: None,
        };
        loop {
            self.socket.writable().await?;
            match self.socket.try_io(Interest::WRITABLE, || {
                self.state.try_send((&self.socket).into(), &transmit)
            }) {
                Ok(()) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// A receive buffer large enough for what GRO may coalesce.
    pub fn buffer(&self) -> Vec<u8> {
        vec![0u8; 65_536 * self.state.gro_segments().max(1)]
    }
}
