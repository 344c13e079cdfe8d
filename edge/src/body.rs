//! The body type every protocol edge produces and consumes.
//!
//! Bodies are `http_body::Body` trait objects: HTTP/1, HTTP/2 and HTTP/3 request bodies
//! are adapted to it once, at their protocol edge, and responses flow back the same way,
//! so a filter sees one type whatever the client spoke. Trailers are the body's last
//! frame.

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};

/// Errors carried by bodies and protocol edges.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A request or response body: data frames, then optionally a trailers frame.
pub type Body = http_body_util::combinators::BoxBody<Bytes, BoxError>;

/// A body with no bytes.
pub fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed()
}

/// A body of exactly these bytes.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}
