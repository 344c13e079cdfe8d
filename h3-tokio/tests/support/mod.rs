//! Test support shared by the integration tests.
//!
//! hyperium's `h3` + `h3-quinn` are used as the peer we did not write, both as a
//! server ([`hyper_server`]) and as a client ([`hyper_client`]). [`app`] holds the
//! route contract every test server implements, and [`tls`] the self-signed
//! certificate and QUIC/TLS configurations.
//!
//! Each test binary uses only a part of this module, hence `dead_code` is allowed.
#![allow(dead_code)]

pub mod app;
pub mod hyper_client;
pub mod hyper_server;
pub mod our_client;
pub mod our_server;
pub mod raw;
pub mod tls;

/// Resident set size of this process, from /proc/self/statm. Tests that read it run in
/// a test binary of their own: tests beside them in one process would add to it.
pub fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}
