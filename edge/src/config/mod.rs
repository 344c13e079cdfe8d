//! The config file: KDL with nginx-like directives (see `edge/CONFIG.md`).
//!
//! [`parse`] turns the text (and the files it includes) into a checked [`Config`], or
//! every problem found, each with file, line and column ([`Errors`]). Checking reads the
//! certificate files too, so a config that passes `edge -t` only fails to start for
//! reasons of the moment (an address in use). [`Config::build`] then makes the
//! listeners and the router edge runs.
//!
//! - `source`: the files and the positions of problems in them;
//! - `parse`: KDL → [`Config`], every directive checked, inheritance resolved;
//! - `values`: sizes, durations, addresses, status codes, header names;
//! - `runtime`: [`Config`] → [`Runtime`] (certificates, listeners, sites).

mod parse;
mod runtime;
mod source;
#[cfg(test)]
mod tests;
mod values;

pub use values::unlistenable;

use std::fmt;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use http::header::HeaderName;
use http::StatusCode;
use rustls::sign::CertifiedKey;

use crate::body::BoxError;
use crate::engine::{Match, Router};
use crate::limits::Limits;
use crate::listen::{Listen, QuicHostKey};
use crate::upstream::{Timeouts, Upstream};
use crate::variables::Template;

/// The config edge runs without `--config`: HTTPS and HTTP/3 on port 443 with a
/// self-signed certificate for localhost, answering with a built-in page.
pub const DEFAULT: &str = include_str!("default.kdl");

/// One problem in a config file, located like a compiler error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Line 0: about the whole file (it cannot be read).
        if self.line == 0 {
            return write!(f, "{}: {}", self.file.display(), self.message);
        }
        write!(
            f,
            "{}:{}:{}: {}",
            self.file.display(),
            self.line,
            self.column,
            self.message
        )
    }
}

/// Every problem found in a config, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Errors(pub Vec<Diagnostic>);

impl fmt::Display for Errors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for d in &self.0 {
            writeln!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Errors {}

/// A parsed and checked config: its servers, in config order, with every inherited
/// setting already resolved.
#[derive(Debug, Clone)]
pub struct Config {
    pub servers: Vec<Server>,
    /// `worker_threads`; `None`: one per core (`auto`).
    pub workers: Option<NonZeroUsize>,
    /// `worker_connections`: most client connections each worker serves at once.
    pub worker_connections: usize,
    /// `quic_host_key`; `None`: QUIC's keys are random at each start.
    pub quic_host_key: Option<QuicHostKey>,
}

/// `worker_connections` unless set: nginx's default (512) is below what one core
/// serves today; each idle connection costs tens of KiB at most.
pub const DEFAULT_WORKER_CONNECTIONS: usize = 4096;

/// A `server` block.
#[derive(Debug, Clone)]
pub struct Server {
    /// `file:line:column` of the block, to name the server in logs.
    pub source: String,
    /// `server_name`s, lower case; exact names or `*.suffix`.
    pub names: Vec<String>,
    pub listens: Vec<ListenAddr>,
    /// From `ssl_certificate` and `ssl_certificate_key`; `None`: a self-signed one is
    /// made at start if the server has TLS listens.
    pub certificate: Option<Arc<CertifiedKey>>,
    pub http2: bool,
    pub http3: bool,
    pub access_log: bool,
    /// `underscores_in_headers`: request headers whose names have `_` are kept, not
    /// dropped (nginx's default drops them).
    pub underscores_in_headers: bool,
    /// The connection limits of its listeners (when the server is the first on an
    /// address), and its server-level `client_max_body_size`.
    pub limits: Limits,
    /// Its locations, or one implicit `location "/"` when it has none.
    pub locations: Vec<Location>,
}

/// A `listen` address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ListenAddr {
    /// `tcp://…`: TLS (HTTP/1.1 and HTTP/2 by ALPN) unless `tls=#false` (HTTP/1.1 and
    /// HTTP/2 with prior knowledge).
    Tcp { addr: SocketAddr, tls: bool },
    /// `udp://…`: QUIC and HTTP/3.
    Udp(SocketAddr),
}

/// A `location` block (or a server's implicit one), settings inherited.
#[derive(Debug, Clone)]
pub struct Location {
    pub matcher: Match,
    pub add_headers: Vec<AddHeader>,
    /// `proxy_set_header NAME VALUE`.
    pub proxy_set_headers: Vec<(HeaderName, Template)>,
    /// `proxy_redirect`s; `[Default]` unless set, none for `off`.
    pub proxy_redirects: Vec<ProxyRedirect>,
    /// `proxy_pass`, with the location's proxy timeouts.
    pub proxy_pass: Option<ProxyPass>,
    /// `None`: unlimited.
    pub max_body_size: Option<u64>,
    pub ret: Option<Return>,
}

/// `proxy_pass "http://NAME"` (an `upstream` block) or `"http://host:port"`.
#[derive(Debug, Clone)]
pub struct ProxyPass {
    pub upstream: Arc<Upstream>,
    pub timeouts: Timeouts,
}

/// One `proxy_redirect`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProxyRedirect {
    /// `default`: `http://PROXY_HOST/` becomes `/`.
    Default,
    /// `FROM TO`: a `Location` or `Refresh` URL that starts with FROM starts with TO.
    Replace(String, String),
}

/// `add_header NAME VALUE [always=#true]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddHeader {
    pub name: HeaderName,
    pub value: Template,
    pub always: bool,
}

/// `return CODE [TEXT_OR_URL]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Return {
    pub status: StatusCode,
    pub text: Option<Template>,
}

/// What a config becomes when edge runs it.
pub struct Runtime {
    pub listens: Vec<Listen>,
    pub router: Router,
}

/// Reads and checks a config file (and the files it includes).
pub fn load(path: &Path) -> Result<Config, Errors> {
    let source = source::read_file(path).map_err(|e| {
        Errors(vec![Diagnostic {
            file: path.to_owned(),
            line: 0,
            column: 0,
            message: e.to_string(),
        }])
    })?;
    parse(&source, path)
}

/// Checks config text; `path` names it in errors and anchors relative `include`s and
/// certificate paths.
pub fn parse(source: &str, path: &Path) -> Result<Config, Errors> {
    parse::parse(source, path)
}

impl Config {
    /// `--listen ADDR`: every server listens on TCP (TLS) and, when it has HTTP/3 on,
    /// UDP at `addr` instead of its own `listen`s.
    pub fn override_listen(&mut self, addr: SocketAddr) {
        for server in &mut self.servers {
            server.listens = vec![ListenAddr::Tcp { addr, tls: true }];
            if server.http3 {
                server.listens.push(ListenAddr::Udp(addr));
            }
        }
    }

    /// Makes a self-signed certificate for servers with TLS listens and none of their
    /// own (certificate files were read by [`parse`]), and builds the listeners and the
    /// router.
    pub fn build(&self) -> Result<Runtime, BoxError> {
        runtime::build(self)
    }
}
