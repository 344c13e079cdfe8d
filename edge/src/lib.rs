//! edge: an edge proxy that terminates HTTP/1.1, HTTP/2 and HTTP/3 into one
//! [`Session`](session::Session) type and runs every request through one filter chain,
//! whatever protocol the client spoke.
//!
//! Protocol details are converted once, at each protocol's edge ([`http1`]), so filters
//! only see `http` types and a streaming [`Body`](body::Body).

pub mod body;
pub mod config;
pub mod engine;
pub mod filter;
pub mod filters;
pub mod http1;
pub mod http2;
pub mod http3;
pub mod limits;
pub mod listen;
pub mod session;
pub mod tls;
pub mod upstream;
