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
