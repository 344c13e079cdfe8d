//! Errors, carrying the HTTP/3 error codes of RFC 9114 and RFC 9204.

use std::fmt;

/// An HTTP/3 application error code, as carried by CONNECTION_CLOSE, RESET_STREAM and
/// STOP_SENDING.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Code(pub u64);

macro_rules! codes {
    ($($name:ident = $value:literal,)*) => {
        impl Code {
            $(#[doc = concat!("`", stringify!($name), "` (", stringify!($value), ")")]
            pub const $name: Code = Code($value);)*

            /// The code's name in the RFCs, if it has one.
            pub fn name(self) -> Option<&'static str> {
                match self.0 {
                    $($value => Some(stringify!($name)),)*
                    _ => None,
                }
            }
        }
    };
}

codes! {
    H3_NO_ERROR = 0x100,
    H3_GENERAL_PROTOCOL_ERROR = 0x101,
    H3_INTERNAL_ERROR = 0x102,
    H3_STREAM_CREATION_ERROR = 0x103,
    H3_CLOSED_CRITICAL_STREAM = 0x104,
    H3_FRAME_UNEXPECTED = 0x105,
    H3_FRAME_ERROR = 0x106,
    H3_EXCESSIVE_LOAD = 0x107,
    H3_ID_ERROR = 0x108,
    H3_SETTINGS_ERROR = 0x109,
    H3_MISSING_SETTINGS = 0x10a,
    H3_REQUEST_REJECTED = 0x10b,
    H3_REQUEST_CANCELLED = 0x10c,
    H3_REQUEST_INCOMPLETE = 0x10d,
    H3_MESSAGE_ERROR = 0x10e,
    H3_CONNECT_ERROR = 0x10f,
    H3_VERSION_FALLBACK = 0x110,
    QPACK_DECOMPRESSION_FAILED = 0x200,
    QPACK_ENCODER_STREAM_ERROR = 0x201,
    QPACK_DECODER_STREAM_ERROR = 0x202,
}

impl fmt::Debug for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => write!(f, "{name}"),
            None => write!(f, "0x{:x}", self.0),
        }
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

impl From<Code> for quinn::VarInt {
    fn from(code: Code) -> Self {
        quinn::VarInt::from_u64(code.0).unwrap_or(quinn::VarInt::from_u32(0x102))
    }
}

/// Who ended a stream or connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// This endpoint (the application, or h3-tokio on its behalf).
    Local,
    /// The peer.
    Remote,
}

/// An HTTP/3 error.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// The whole connection is closed with an HTTP/3 code.
    #[error("connection closed ({origin:?}) with {code}: {reason}")]
    Connection {
        code: Code,
        origin: Origin,
        reason: String,
    },
    /// This request stream was reset or stopped.
    #[error("stream {} ({origin:?}) with {code}", if *.reset { "reset" } else { "stopped" })]
    Stream {
        code: Code,
        origin: Origin,
        /// `true` for RESET_STREAM (the sender abandoned it), `false` for STOP_SENDING
        /// (the receiver no longer wants it).
        reset: bool,
    },
    /// The QUIC connection failed below HTTP/3 (timeout, transport error, ...).
    #[error("QUIC: {0}")]
    Transport(#[from] quinn::ConnectionError),
    /// The peer sent GOAWAY: this request was not, and will not be, processed.
    #[error("the connection is going away; request not processed")]
    GoingAway,
    /// The peer's header section exceeded our max_field_section_size.
    #[error("header section exceeds the {limit}-byte limit")]
    HeaderTooLarge { limit: u64 },
    /// A malformed message or a misuse of the API (e.g. data after finish).
    #[error("{0}")]
    Message(String),
}

impl Error {
    /// The HTTP/3 code this error carries, if any.
    pub fn code(&self) -> Option<Code> {
        match self {
            Error::Connection { code, .. } | Error::Stream { code, .. } => Some(*code),
            Error::Transport(quinn::ConnectionError::ApplicationClosed(close)) => {
                Some(Code(close.error_code.into_inner()))
            }
            Error::GoingAway => Some(Code::H3_REQUEST_REJECTED),
            _ => None,
        }
    }

    /// Whether the peer gave up on the request, or the connection is gone (rather than
    /// a local or message error, to which the application still answers).
    pub(crate) fn abandons_request(&self) -> bool {
        match self {
            Error::Stream { origin, .. } => *origin == Origin::Remote,
            Error::Connection { .. } | Error::Transport(_) => true,
            Error::GoingAway | Error::HeaderTooLarge { .. } | Error::Message(_) => false,
        }
    }

    pub(crate) fn from_quinn(e: quinn::ConnectionError) -> Error {
        match e {
            quinn::ConnectionError::ApplicationClosed(close) => Error::Connection {
                code: Code(close.error_code.into_inner()),
                origin: Origin::Remote,
                reason: String::from_utf8_lossy(&close.reason).into_owned(),
            },
            other => Error::Transport(other),
        }
    }
}
