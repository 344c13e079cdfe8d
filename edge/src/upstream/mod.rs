//! Upstreams: where proxied requests go, and the connections that carry them.

pub mod pool;
