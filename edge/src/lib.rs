//! edge: an edge proxy that terminates HTTP/1.1, HTTP/2 and HTTP/3 into one
//! [`Session`](session::Session) type and runs every request through one filter chain,
//! whatever protocol the client spoke.
//!
//! Protocol details are converted once, at each protocol's edge ([`http1`], [`http2`],
//! [`http3`]), so filters only see `http` types and a streaming [`Body`](body::Body).
//!
//! The request path: [`listen`] accepts TCP (TLS via [`tls`], or plain) and QUIC
//! connections and hands each to its protocol edge; the edge builds a
//! [`Session`](session::Session) per request and calls the [`engine`], which picks the
//! site and location ([`config`] built them; [`route_path`] is the path it matches), runs the location's [`filter`] chain
//! (built-in directives live in [`filters`]), forwards to an [`upstream`] when the
//! location proxies, and wraps the response body for the body and logging phases.
//! [`limits`] holds what every edge enforces.

pub mod body;
pub mod config;
pub mod engine;
pub mod filter;
pub mod filters;
pub mod http1;
pub mod http2;
pub mod http3;
pub mod http_date;
pub mod limits;
pub mod listen;
pub mod route_path;
pub mod server_names;
pub mod session;
pub mod tls;
pub mod upstream;
pub mod variables;
