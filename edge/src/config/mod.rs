//! The config file (KDL, nginx-like directives): parsing, checking, and building the
//! running listeners and router from it. (Being written: this is the interface.)

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use crate::body::BoxError;
use crate::engine::Router;
use crate::listen::Listen;

/// The config edge runs without `--config`.
pub const DEFAULT: &str = "";

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

/// A parsed and checked config.
#[derive(Debug, Clone)]
pub struct Config {}

/// What a config becomes when edge runs it.
pub struct Runtime {
    pub listens: Vec<Listen>,
    pub router: Router,
}

/// Reads and checks a config file (and the files it includes).
pub fn load(path: &Path) -> Result<Config, Errors> {
    let source = std::fs::read_to_string(path).map_err(|e| {
        Errors(vec![Diagnostic {
            file: path.to_owned(),
            line: 0,
            column: 0,
            message: e.to_string(),
        }])
    })?;
    parse(&source, path)
}

/// Checks config text; `path` names it in errors and anchors relative `include`s.
pub fn parse(_source: &str, _path: &Path) -> Result<Config, Errors> {
    Ok(Config {})
}

impl Config {
    /// `--listen ADDR`: every server listens on TCP and UDP at `addr` instead.
    pub fn override_listen(&mut self, _addr: SocketAddr) {}

    /// Loads certificates (a self-signed one for servers without) and builds the
    /// listeners and the router.
    pub fn build(&self) -> Result<Runtime, BoxError> {
        Err("config: not written yet".into())
    }
}
