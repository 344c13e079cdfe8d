//! The runner's testcases, as the `TESTCASE` variable names them, and what each one asks
//! of our client and of our server.
//!
//! The runner does not always hand an endpoint the testcase's own name: for most
//! network scenarios (`longrtt`, `multiplexing`, `blackhole`, `goodput`, ...) both sides
//! are told `transfer` or `handshake`, `handshakeloss`/`handshakecorruption` become
//! `multiconnect`, and `keyupdate` is `transfer` for the server. Both spellings are
//! accepted here so that a local runner may pass either.

/// What an endpoint is asked to do, after aliases are resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Testcase {
    /// One connection, all requests concurrently (handshake, transfer and every
    /// testcase that only changes the network).
    Transfer,
    /// Client and server offer only TLS_CHACHA20_POLY1305_SHA256.
    ChaCha20,
    /// The client forces a key update early in the transfer.
    KeyUpdate,
    /// The server sends a Retry for every new connection.
    Retry,
    /// Connection 1 fetches the first URL, connection 2 resumes the TLS session.
    Resumption,
    /// As resumption, but connection 2 sends its requests as 0-RTT.
    ZeroRtt,
    /// HTTP/3 instead of hq-interop.
    Http3,
    /// One connection per URL, one after the other.
    Multiconnect,
    /// Server: advertise a preferred address. Client: migrate its own address.
    ConnectionMigration,
    /// Server: nothing special (quinn answers unknown versions with Version
    /// Negotiation). Client: unsupported.
    VersionNegotiation,
}

impl Testcase {
    /// Parses a `TESTCASE` value; `None` means unsupported (exit 127).
    pub fn parse(name: &str) -> Option<Testcase> {
        Some(match name {
            "handshake" | "transfer" | "longrtt" | "multiplexing" | "blackhole"
            | "amplificationlimit" | "transferloss" | "transfercorruption" | "ipv6" | "ecn"
            | "rebind-port" | "rebind-addr" | "goodput" | "crosstraffic" => Testcase::Transfer,
            "chacha20" => Testcase::ChaCha20,
            "keyupdate" => Testcase::KeyUpdate,
            "retry" => Testcase::Retry,
            "resumption" => Testcase::Resumption,
            "zerortt" => Testcase::ZeroRtt,
            "http3" => Testcase::Http3,
            "multiconnect" | "handshakeloss" | "handshakecorruption" => Testcase::Multiconnect,
            "connectionmigration" => Testcase::ConnectionMigration,
            "versionnegotiation" => Testcase::VersionNegotiation,
            // v2 needs QUIC version 2 and compatible version negotiation, which quinn
            // 0.11 does not implement. See the README.
            _ => return None,
        })
    }

    /// Whether our client can play this testcase: versionnegotiation would need it to
    /// start with a version quinn cannot derive Initial keys for.
    pub fn client_supported(self) -> bool {
        self != Testcase::VersionNegotiation
    }

    /// The ALPN protocol both sides use.
    pub fn alpn(self) -> &'static [u8] {
        match self {
            Testcase::Http3 => h3_tokio::ALPN,
            _ => HQ_ALPN,
        }
    }
}

/// ALPN of HTTP/0.9 over QUIC, as the interop runner defines it.
pub const HQ_ALPN: &[u8] = b"hq-interop";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases_and_unsupported() {
        assert_eq!(Testcase::parse("goodput"), Some(Testcase::Transfer));
        assert_eq!(
            Testcase::parse("handshakeloss"),
            Some(Testcase::Multiconnect)
        );
        assert_eq!(Testcase::parse("v2"), None);
        assert!(!Testcase::parse("versionnegotiation")
            .unwrap()
            .client_supported());
        assert_eq!(Testcase::Http3.alpn(), b"h3");
        assert_eq!(Testcase::Retry.alpn(), b"hq-interop");
    }
}
