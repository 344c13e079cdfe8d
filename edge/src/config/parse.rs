//! KDL → [`Config`]: every directive is checked where it appears (context, arguments,
//! values), `include`s are spliced in where they stand, and inherited settings are
//! resolved (http → server → location). Checking goes on after a problem, so one run
//! reports them all.

use std::num::NonZeroUsize;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use http::header::HeaderName;
use kdl::{KdlDocument, KdlEntry, KdlNode, KdlValue};
use rustls::sign::CertifiedKey;

use super::source::{FileId, Pos, Sources};
use super::values;
use super::{
    AddHeader, Config, Errors, ListenAddr, Location, ProxyPass, ProxyRedirect, Return, Server,
    DEFAULT_WORKER_CONNECTIONS,
};
use crate::engine::Match;
use crate::limits::Limits;
use crate::listen::QuicHostKey;
use crate::tls;
use crate::upstream::{Peer, Timeouts, Upstream, DEFAULT_KEEPALIVE, FAIL_TIMEOUT};
use crate::variables::Template;

/// Where a directive stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ctx {
    Top,
    Http,
    Server,
    Location,
}

impl Ctx {
    fn name(self) -> &'static str {
        match self {
            Ctx::Top => "the top level",
            Ctx::Http => "http",
            Ctx::Server => "server",
            Ctx::Location => "location",
        }
    }

    /// "in http", "at the top level".
    fn place(self) -> String {
        match self {
            Ctx::Top => "at the top level".into(),
            other => format!("in {}", other.name()),
        }
    }
}

use Ctx::{Http, Location as Loc, Server as Srv, Top};

/// Every directive and the contexts it may appear in.
const DIRECTIVES: &[(&str, &[Ctx])] = &[
    ("include", &[Top, Http, Srv, Loc]),
    ("worker_threads", &[Top]),
    ("worker_connections", &[Top]),
    ("http", &[Top]),
    ("server", &[Http]),
    ("location", &[Srv]),
    ("listen", &[Srv]),
    ("server_name", &[Srv]),
    ("ssl_certificate", &[Srv]),
    ("ssl_certificate_key", &[Srv]),
    ("http2", &[Http, Srv]),
    ("http3", &[Http, Srv]),
    ("access_log", &[Http, Srv]),
    ("underscores_in_headers", &[Http, Srv]),
    ("client_header_timeout", &[Http, Srv]),
    ("keepalive_timeout", &[Http, Srv]),
    ("client_body_timeout", &[Http, Srv]),
    ("send_timeout", &[Http, Srv]),
    ("keepalive_requests", &[Http, Srv]),
    ("max_header_size", &[Http, Srv]),
    ("max_concurrent_streams", &[Http, Srv]),
    ("client_max_body_size", &[Http, Srv, Loc]),
    ("add_header", &[Http, Srv, Loc]),
    ("proxy_set_header", &[Http, Srv, Loc]),
    ("proxy_redirect", &[Http, Srv, Loc]),
    ("return", &[Srv, Loc]),
    ("upstream", &[Http]),
    ("quic_host_key", &[Http]),
    ("proxy_pass", &[Loc]),
    ("proxy_connect_timeout", &[Http, Srv, Loc]),
    ("proxy_read_timeout", &[Http, Srv, Loc]),
    ("proxy_send_timeout", &[Http, Srv, Loc]),
    ("proxy_total_timeout", &[Http, Srv, Loc]),
];

/// Most idle connections `keepalive` may keep per upstream server.
const MAX_KEEPALIVE: i128 = 100_000;
/// Largest `weight` of an upstream server.
const MAX_WEIGHT: i128 = 1000;
/// Largest `max_fails` of an upstream server.
const MAX_FAILS: i128 = 1000;

/// Bounds of `max_header_size`: below 1k no browser gets through; HTTP/2 carries it in
/// 32 bits.
const HEADER_SIZE: (u64, u64) = (1024, 16 << 20);
const MAX_STREAMS: i128 = 1_000_000;
/// Most `keepalive_requests`: far beyond any real need, low enough to catch a typo.
const MAX_REQUESTS: i128 = 1_000_000_000_000;
/// Most `worker_connections`: far above what one thread serves, low enough to catch a
/// typo.
const MAX_CONNECTIONS: i128 = 10_000_000;
/// Most `worker_threads`: far above any core count, low enough to catch a typo.
const MAX_WORKERS: i128 = 1024;
/// Fewest bytes in a `quic_host_key` file: whoever guesses the secret can end any of
/// edge's QUIC connections with a forged stateless reset.
const MIN_HOST_KEY: usize = 32;

/// What one block (the top level, `http`, a `server` or a `location`) says. The
/// `Option`s are `None` where the block does not set them itself.
#[derive(Default)]
struct Block {
    /// The directive that opened the block.
    pos: Pos,
    // Inherited by inner blocks that do not set them.
    add_headers: Option<Vec<AddHeader>>,
    proxy_set_headers: Option<Vec<(HeaderName, Template)>>,
    /// `proxy_redirect`s; `Some(empty)`: `off` (no other may join it).
    proxy_redirects: Option<Vec<ProxyRedirect>>,
    max_body_size: Option<Option<u64>>,
    header_timeout: Option<Duration>,
    keepalive_timeout: Option<Duration>,
    body_timeout: Option<Duration>,
    send_timeout: Option<Duration>,
    keepalive_requests: Option<u64>,
    max_header_size: Option<usize>,
    max_concurrent_streams: Option<u32>,
    access_log: Option<bool>,
    underscores_in_headers: Option<bool>,
    http2: Option<bool>,
    http3: Option<bool>,
    proxy_connect_timeout: Option<Duration>,
    proxy_read_timeout: Option<Duration>,
    proxy_send_timeout: Option<Duration>,
    proxy_total_timeout: Option<Duration>,
    // Not inherited.
    /// `worker_threads` (top level only); `Some(None)`: "auto".
    workers: Option<Option<NonZeroUsize>>,
    /// `worker_connections` (top level only).
    worker_connections: Option<usize>,
    /// `quic_host_key` (http only).
    quic_host_key: Option<QuicHostKey>,
    /// `proxy_pass`: where it is, and the text after `http://`.
    proxy_pass: Option<(Pos, String)>,
    upstreams: Vec<(Pos, Arc<Upstream>)>,
    ret: Option<(Pos, Return)>,
    listens: Vec<(Pos, ListenAddr)>,
    /// A `listen` was written, valid or not.
    has_listen: bool,
    names: Vec<String>,
    certificate: Option<(Pos, PathBuf)>,
    certificate_key: Option<(Pos, PathBuf)>,
    http: Option<Box<Block>>,
    servers: Vec<Block>,
    locations: Vec<(Pos, Match, Block)>,
    /// Where each single-valued directive was first set, to report duplicates.
    seen: Vec<(&'static str, Pos)>,
}

impl Block {
    fn new(pos: Pos) -> Block {
        Block {
            pos,
            ..Block::default()
        }
    }

    /// nginx inheritance: a setting the block lacks comes from the outer block. For
    /// `add_header`, `proxy_set_header` and `proxy_redirect` that means all or nothing:
    /// a block with one of its own does not get any of the outer ones.
    fn inherit(&mut self, outer: &Block) {
        fn take<T: Clone>(inner: &mut Option<T>, outer: &Option<T>) {
            if inner.is_none() {
                inner.clone_from(outer);
            }
        }
        take(&mut self.add_headers, &outer.add_headers);
        take(&mut self.proxy_set_headers, &outer.proxy_set_headers);
        take(&mut self.proxy_redirects, &outer.proxy_redirects);
        take(&mut self.max_body_size, &outer.max_body_size);
        take(&mut self.header_timeout, &outer.header_timeout);
        take(&mut self.keepalive_timeout, &outer.keepalive_timeout);
        take(&mut self.body_timeout, &outer.body_timeout);
        take(&mut self.send_timeout, &outer.send_timeout);
        take(&mut self.keepalive_requests, &outer.keepalive_requests);
        take(&mut self.max_header_size, &outer.max_header_size);
        take(
            &mut self.max_concurrent_streams,
            &outer.max_concurrent_streams,
        );
        take(&mut self.access_log, &outer.access_log);
        take(
            &mut self.underscores_in_headers,
            &outer.underscores_in_headers,
        );
        take(&mut self.http2, &outer.http2);
        take(&mut self.http3, &outer.http3);
        take(
            &mut self.proxy_connect_timeout,
            &outer.proxy_connect_timeout,
        );
        take(&mut self.proxy_read_timeout, &outer.proxy_read_timeout);
        take(&mut self.proxy_send_timeout, &outer.proxy_send_timeout);
        take(&mut self.proxy_total_timeout, &outer.proxy_total_timeout);
    }

    fn timeouts(&self) -> Timeouts {
        let d = Timeouts::default();
        Timeouts {
            connect: self.proxy_connect_timeout.unwrap_or(d.connect),
            read: self.proxy_read_timeout.unwrap_or(d.read),
            send: self.proxy_send_timeout.unwrap_or(d.send),
            total: self.proxy_total_timeout.or(d.total),
        }
    }
}

#[derive(Default)]
struct Parser {
    src: Sources,
    /// Files being read, innermost last (canonical paths): an include of one of them
    /// is a cycle.
    including: Vec<PathBuf>,
    /// The `upstream` blocks of `http`, for `proxy_pass` to name.
    upstreams: Vec<Arc<Upstream>>,
}

pub fn parse(text: &str, path: &Path) -> Result<Config, Errors> {
    let mut p = Parser::default();
    let main = p.src.add(path.to_owned(), text.to_owned());
    let mut top = Block::new(Pos {
        file: main,
        offset: 0,
    });
    p.file(Ctx::Top, main, &mut top);
    let config = p.resolve(top);
    if p.src.has_errors() {
        Err(p.src.into_errors())
    } else {
        Ok(config)
    }
}

impl Parser {
    fn error(&mut self, pos: Pos, message: impl Into<String>) {
        self.src.error(pos, message);
    }

    /// The directives of a whole file, as if they stood in `ctx`.
    fn file(&mut self, ctx: Ctx, file: FileId, out: &mut Block) {
        // Syntax errors are already recorded: nothing more to check in that file.
        let Some(doc) = self.src.doc(file) else {
            return;
        };
        self.including.push(self.src.canonical(file).to_owned());
        self.nodes(ctx, file, &doc, out);
        self.including.pop();
    }

    fn nodes(&mut self, ctx: Ctx, file: FileId, doc: &KdlDocument, out: &mut Block) {
        for node in doc.nodes() {
            self.directive(ctx, file, node, out);
        }
    }

    fn directive(&mut self, ctx: Ctx, file: FileId, node: &KdlNode, out: &mut Block) {
        let given = node.name().value();
        let pos = Pos {
            file,
            offset: node.name().span().offset(),
        };
        if let Some(ty) = node.ty() {
            let at = Pos {
                file,
                offset: ty.span().offset(),
            };
            self.error(at, "type annotations are not used in edge configs");
        }
        let Some(&(name, allowed)) = DIRECTIVES.iter().find(|(n, _)| *n == given) else {
            self.error(pos, format!("unknown directive `{given}`"));
            return;
        };
        if !allowed.contains(&ctx) {
            let places: Vec<&str> = allowed.iter().map(|c| c.name()).collect();
            self.error(
                pos,
                format!(
                    "`{name}` is not allowed {} (only in {})",
                    ctx.place(),
                    places.join(", ")
                ),
            );
            return;
        }
        match name {
            "include" => self.include(ctx, file, node, out),
            "http" | "server" => {
                let Some((_, Some(children))) = self.shape(file, node, 0, 0, &[], true) else {
                    return;
                };
                let mut block = Block::new(pos);
                if name == "http" {
                    if self.once(out, name, pos) {
                        self.nodes(Http, file, children, &mut block);
                        out.http = Some(Box::new(block));
                    }
                } else {
                    self.nodes(Srv, file, children, &mut block);
                    out.servers.push(block);
                }
            }
            "location" => self.location(file, node, pos, out),
            "listen" => {
                out.has_listen = true;
                self.listen(file, node, out);
            }
            "server_name" => {
                let Some((args, _)) = self.shape(file, node, 1, usize::MAX, &[], false) else {
                    return;
                };
                for arg in args {
                    if let Some(s) = self.string(file, arg) {
                        if let Some(names) = self.check(file, arg, values::server_names(s)) {
                            out.names.extend(names);
                        }
                    }
                }
            }
            "ssl_certificate" | "ssl_certificate_key" => {
                let Some(arg) = self.single(file, node, out, name, pos) else {
                    return;
                };
                if let Some(s) = self.string(file, arg) {
                    // Relative to the file that names it, as `include`.
                    let path = self.src.dir(file).join(s);
                    let at = entry_pos(file, arg);
                    if name == "ssl_certificate" {
                        out.certificate = Some((at, path));
                    } else {
                        out.certificate_key = Some((at, path));
                    }
                }
            }
            "quic_host_key" => {
                let Some(arg) = self.single(file, node, out, name, pos) else {
                    return;
                };
                if let Some(s) = self.string(file, arg) {
                    // Relative to the file that names it, as `include`.
                    let key = quic_host_key(&self.src.dir(file).join(s));
                    out.quic_host_key = self.check(file, arg, key);
                }
            }
            "http2" | "http3" | "access_log" | "underscores_in_headers" => {
                let Some(arg) = self.single(file, node, out, name, pos) else {
                    return;
                };
                let value = self.boolean(file, arg);
                match name {
                    "http2" => out.http2 = value,
                    "http3" => out.http3 = value,
                    "access_log" => out.access_log = value,
                    _ => out.underscores_in_headers = value,
                }
            }
            "client_header_timeout"
            | "keepalive_timeout"
            | "client_body_timeout"
            | "send_timeout"
            | "proxy_connect_timeout"
            | "proxy_read_timeout"
            | "proxy_send_timeout"
            | "proxy_total_timeout" => {
                let Some(arg) = self.single(file, node, out, name, pos) else {
                    return;
                };
                let value = self.duration(file, arg);
                match name {
                    "client_header_timeout" => out.header_timeout = value,
                    "keepalive_timeout" => out.keepalive_timeout = value,
                    "client_body_timeout" => out.body_timeout = value,
                    "send_timeout" => out.send_timeout = value,
                    "proxy_connect_timeout" => out.proxy_connect_timeout = value,
                    "proxy_read_timeout" => out.proxy_read_timeout = value,
                    "proxy_send_timeout" => out.proxy_send_timeout = value,
                    _ => out.proxy_total_timeout = value,
                }
            }
            "upstream" => self.upstream(file, node, pos, out),
            "worker_threads" => {
                let Some(arg) = self.single(file, node, out, name, pos) else {
                    return;
                };
                let value = match arg.value() {
                    KdlValue::String(s) if s == "auto" => Ok(None),
                    KdlValue::Integer(n) => usize::try_from(*n)
                        .ok()
                        .filter(|_| *n <= MAX_WORKERS)
                        .and_then(NonZeroUsize::new)
                        .map(Some)
                        .ok_or_else(|| {
                            format!(
                                "worker_threads {n} is out of range: between 1 and {MAX_WORKERS}"
                            )
                        }),
                    other => Err(format!(
                        "expected a number of threads or \"auto\", found {}",
                        shown(other)
                    )),
                };
                out.workers = self.check(file, arg, value);
            }
            "proxy_pass" => {
                let Some(arg) = self.single(file, node, out, name, pos) else {
                    return;
                };
                let Some(text) = self.string(file, arg) else {
                    return;
                };
                let target = match text.strip_prefix("http://") {
                    Some("") => Err(format!("proxy_pass {text:?} names no upstream")),
                    Some(t) if t.contains('/') => Err(format!(
                        "proxy_pass {text:?}: a URI part is not supported (the request's own URI is passed)"
                    )),
                    Some(t) => Ok(t.to_owned()),
                    None if text.starts_with("https://") => {
                        Err("proxy_pass to https:// is not supported yet (no upstream TLS)".to_owned())
                    }
                    None => Err(format!(
                        "invalid proxy_pass {text:?}: expected http://NAME or http://host:port"
                    )),
                };
                if let Some(t) = self.check(file, arg, target) {
                    out.proxy_pass = Some((entry_pos(file, arg), t));
                }
            }
            "client_max_body_size" => {
                let Some(arg) = self.single(file, node, out, name, pos) else {
                    return;
                };
                let value = self
                    .scalar(file, arg)
                    .and_then(|s| self.check(file, arg, values::size(&s)));
                // "0" lifts the limit, as in nginx.
                out.max_body_size = value.map(|n| (n > 0).then_some(n));
            }
            "max_header_size" => {
                let Some(arg) = self.single(file, node, out, name, pos) else {
                    return;
                };
                let value = self.scalar(file, arg).and_then(|s| {
                    let n = values::size(&s).and_then(|n| {
                        if (HEADER_SIZE.0..=HEADER_SIZE.1).contains(&n) {
                            usize::try_from(n).map_err(|e| e.to_string())
                        } else {
                            Err(format!(
                                "max_header_size {s:?} is out of range: between 1k and 16m"
                            ))
                        }
                    });
                    self.check(file, arg, n)
                });
                out.max_header_size = value;
            }
            "max_concurrent_streams" | "keepalive_requests" | "worker_connections" => {
                let Some(arg) = self.single(file, node, out, name, pos) else {
                    return;
                };
                // The bounds fit each field's type.
                match name {
                    "max_concurrent_streams" => {
                        out.max_concurrent_streams = self
                            .bounded(file, arg, name, 1..=MAX_STREAMS)
                            .map(|n| n as u32)
                    }
                    "keepalive_requests" => {
                        out.keepalive_requests = self
                            .bounded(file, arg, name, 1..=MAX_REQUESTS)
                            .map(|n| n as u64)
                    }
                    _ => {
                        out.worker_connections = self
                            .bounded(file, arg, name, 1..=MAX_CONNECTIONS)
                            .map(|n| n as usize)
                    }
                }
            }
            "add_header" | "proxy_set_header" => {
                let props: &[&str] = if name == "add_header" {
                    &["always"]
                } else {
                    &[]
                };
                let Some((args, _)) = self.shape(file, node, 2, 2, props, false) else {
                    return;
                };
                let header_name = self
                    .string(file, args[0])
                    .and_then(|s| self.check(file, args[0], values::header_name(s)));
                let value = self.string(file, args[1]).and_then(|s| {
                    let checked = values::header_value(s).and_then(|_| Template::parse(s));
                    self.check(file, args[1], checked)
                });
                // `proxy_set_header "connection" ""` (nginx's way to keep upstream
                // connections alive) asks for what edge does anyway.
                let idle = name == "proxy_set_header"
                    && value.as_ref().is_some_and(|v| v.source().is_empty());
                if let Some(why) = header_name
                    .as_ref()
                    .filter(|_| !idle)
                    .and_then(|n| values::set_by_edge(n, name == "add_header"))
                {
                    return self.error(entry_pos(file, args[0]), why);
                }
                let always = match node.entry("always") {
                    Some(e) => self.boolean(file, e),
                    None => Some(false),
                };
                let (Some(header_name), Some(value), Some(always)) = (header_name, value, always)
                else {
                    return;
                };
                if name == "add_header" {
                    out.add_headers
                        .get_or_insert_with(Vec::new)
                        .push(AddHeader {
                            name: header_name,
                            value,
                            always,
                        });
                } else {
                    out.proxy_set_headers
                        .get_or_insert_with(Vec::new)
                        .push((header_name, value));
                }
            }
            "proxy_redirect" => self.proxy_redirect(file, node, pos, out),
            "return" => self.ret(file, node, pos, out),
            // The table and this match list the same names.
            _ => self.error(pos, format!("`{name}` is not implemented")),
        }
    }

    /// `include "file.kdl"` or `include "dir/*.kdl"`: the files' directives stand in
    /// place of the include.
    fn include(&mut self, ctx: Ctx, file: FileId, node: &KdlNode, out: &mut Block) {
        let Some((args, _)) = self.shape(file, node, 1, 1, &[], false) else {
            return;
        };
        let Some(pattern) = self.string(file, args[0]) else {
            return;
        };
        let at = entry_pos(file, args[0]);
        let path = self.src.dir(file).join(pattern);
        let paths = if is_glob(pattern) {
            match glob(&path) {
                Ok(paths) => paths,
                Err(e) => return self.error(at, e),
            }
        } else {
            vec![path]
        };
        for path in paths {
            let id = match self.src.find(&path) {
                Some(id) => id,
                None => match super::source::read_file(&path) {
                    Ok(text) => self.src.add(path.clone(), text),
                    Err(e) => {
                        self.error(at, format!("cannot read {}: {e}", path.display()));
                        continue;
                    }
                },
            };
            if self.including.iter().any(|p| p == self.src.canonical(id)) {
                self.error(
                    at,
                    format!("include cycle: {} is already being read", path.display()),
                );
                continue;
            }
            self.file(ctx, id, out);
        }
    }

    /// `location "/prefix" { }`, `location "=" "/exact" { }`, `location "^~" "/prefix" { }`.
    fn location(&mut self, file: FileId, node: &KdlNode, pos: Pos, out: &mut Block) {
        let Some((args, Some(children))) = self.shape(file, node, 1, 2, &[], true) else {
            return;
        };
        let (modifier, path) = match args.as_slice() {
            [modifier, path] => (self.string(file, modifier), *path),
            _ => (Some(""), args[0]),
        };
        let exact = match modifier {
            Some("=") => Some(true),
            // Without regex locations, `^~` (a prefix that stops the regex search) is a
            // plain prefix.
            Some("" | "^~") => Some(false),
            Some("~" | "~*") => {
                self.error(
                    entry_pos(file, args[0]),
                    "regular-expression locations are not supported: use a prefix or \"=\"",
                );
                None
            }
            Some(other) => {
                let msg = format!("unknown location modifier {other:?}: expected \"=\" or \"^~\"");
                self.error(entry_pos(file, args[0]), msg);
                None
            }
            None => None,
        };
        // A bad modifier is enough said about this head.
        let path_text = exact.and(self.string(file, path)).and_then(|p| {
            if p.starts_with('/') {
                Some(p.to_owned())
            } else {
                self.error(
                    entry_pos(file, path),
                    format!("invalid location {p:?}: a location path starts with /"),
                );
                None
            }
        });
        // The block is checked even when its head is wrong.
        let mut block = Block::new(pos);
        self.nodes(Loc, file, children, &mut block);
        if let (Some(exact), Some(p)) = (exact, path_text) {
            let matcher = if exact {
                Match::Exact(p)
            } else {
                Match::Prefix(p)
            };
            out.locations.push((entry_pos(file, path), matcher, block));
        }
    }

    /// `upstream NAME { server "ADDR" [weight=N] [max_fails=N] [fail_timeout=DURATION];
    /// keepalive N }`.
    fn upstream(&mut self, file: FileId, node: &KdlNode, pos: Pos, out: &mut Block) {
        let Some((args, Some(children))) = self.shape(file, node, 1, 1, &[], true) else {
            return;
        };
        let Some(name) = self.string(file, args[0]) else {
            return;
        };
        let name_ok = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
        if !name_ok {
            let msg = format!("invalid upstream name {name:?}: letters, digits, -, _ and . only");
            self.error(entry_pos(file, args[0]), msg);
            return;
        }
        if let Some((first, _)) = out.upstreams.iter().find(|(_, u)| u.name == name) {
            let msg = format!(
                "duplicate upstream {name:?} (first at {})",
                self.src.describe(*first)
            );
            self.error(pos, msg);
            return;
        }
        let mut peers = Vec::new();
        let mut keepalive: Option<usize> = None;
        for child in children.nodes() {
            let at = Pos {
                file,
                offset: child.name().span().offset(),
            };
            match child.name().value() {
                "server" => {
                    const PROPS: &[&str] = &["weight", "max_fails", "fail_timeout"];
                    let Some((args, _)) = self.shape(file, child, 1, 1, PROPS, false) else {
                        continue;
                    };
                    let addrs = self
                        .string(file, args[0])
                        .and_then(|s| self.check(file, args[0], values::upstream_addrs(s, None)));
                    // The bounds fit u32.
                    let weight = match child.entry("weight") {
                        Some(e) => self
                            .bounded(file, e, "weight", 1..=MAX_WEIGHT)
                            .map(|n| n as u32),
                        None => Some(1),
                    };
                    let max_fails = match child.entry("max_fails") {
                        Some(e) => self
                            .bounded(file, e, "max_fails", 0..=MAX_FAILS)
                            .map(|n| n as u32),
                        None => Some(1),
                    };
                    let fail_timeout = match child.entry("fail_timeout") {
                        Some(e) => self
                            .scalar(file, e)
                            .and_then(|s| self.check(file, e, values::duration_or_zero(&s))),
                        None => Some(FAIL_TIMEOUT),
                    };
                    if let (Some(addrs), Some(weight), Some(max_fails), Some(fail_timeout)) =
                        (addrs, weight, max_fails, fail_timeout)
                    {
                        peers.extend(addrs.into_iter().map(|addr| Peer {
                            addr,
                            weight,
                            max_fails,
                            fail_timeout,
                        }));
                    }
                }
                "keepalive" => {
                    let Some((args, _)) = self.shape(file, child, 1, 1, &[], false) else {
                        continue;
                    };
                    if keepalive.is_some() {
                        self.error(at, "duplicate `keepalive`");
                        continue;
                    }
                    keepalive = self
                        .bounded(file, args[0], "keepalive", 0..=MAX_KEEPALIVE)
                        .map(|n| n as usize);
                }
                other => {
                    let msg = format!(
                        "unknown directive `{other}` in upstream (only server and keepalive)"
                    );
                    self.error(at, msg);
                }
            }
        }
        if peers.is_empty() {
            self.error(pos, format!("upstream {name:?} has no `server`"));
            return;
        }
        let upstream = Upstream::new(
            name.to_owned(),
            peers,
            keepalive.unwrap_or(DEFAULT_KEEPALIVE),
        );
        out.upstreams.push((pos, Arc::new(upstream)));
    }

    /// What a location's `proxy_pass` names: an `upstream`, else an address.
    fn proxy_pass(&mut self, block: &Block) -> Option<ProxyPass> {
        let (at, target) = block.proxy_pass.as_ref()?;
        let upstream = match self.upstreams.iter().find(|u| u.name == *target) {
            Some(u) => u.clone(),
            None => match values::upstream_addrs(target, Some(80)) {
                Ok(addrs) => Arc::new(Upstream::new(
                    target.clone(),
                    addrs.into_iter().map(Peer::new).collect(),
                    DEFAULT_KEEPALIVE,
                )),
                Err(e) => {
                    let msg = format!("proxy_pass: no upstream named {target:?}, and {e}");
                    self.error(*at, msg);
                    return None;
                }
            },
        };
        Some(ProxyPass {
            upstream,
            timeouts: block.timeouts(),
        })
    }

    /// `proxy_redirect "default"`, `proxy_redirect "off"` (alone in its block) or
    /// `proxy_redirect FROM TO`.
    fn proxy_redirect(&mut self, file: FileId, node: &KdlNode, pos: Pos, out: &mut Block) {
        let Some((args, _)) = self.shape(file, node, 1, 2, &[], false) else {
            return;
        };
        let Some(first) = self.string(file, args[0]) else {
            return;
        };
        let rule = match (first, args.get(1)) {
            ("off", None) => None,
            ("default", None) => Some(ProxyRedirect::Default),
            (_, None) => {
                let msg = format!(
                    "proxy_redirect {first:?}: expected \"default\", \"off\", or FROM and TO"
                );
                return self.error(entry_pos(file, args[0]), msg);
            }
            ("", Some(_)) => {
                return self.error(entry_pos(file, args[0]), "proxy_redirect: FROM is empty")
            }
            (from, Some(to)) => {
                let Some(to) = self
                    .string(file, to)
                    .and_then(|s| self.check(file, to, values::header_value(s).map(|_| s)))
                else {
                    return;
                };
                Some(ProxyRedirect::Replace(from.to_owned(), to.to_owned()))
            }
        };
        match (rule, &mut out.proxy_redirects) {
            (None, slot @ None) => *slot = Some(Vec::new()),
            (Some(rule), slot @ None) => *slot = Some(vec![rule]),
            (Some(rule), Some(rules)) if !rules.is_empty() => rules.push(rule),
            _ => self.error(
                pos,
                "`proxy_redirect \"off\"` cannot be combined with other `proxy_redirect`s in one block",
            ),
        }
    }

    /// `listen "tcp://IP:PORT" [tls=#false]` or `listen "udp://IP:PORT"`.
    fn listen(&mut self, file: FileId, node: &KdlNode, out: &mut Block) {
        let Some((args, _)) = self.shape(file, node, 1, 1, &["tls"], false) else {
            return;
        };
        let tls_entry = node.entry("tls");
        let tls = match tls_entry {
            Some(e) => self.boolean(file, e),
            None => Some(true),
        };
        let (Some(text), Some(tls)) = (self.string(file, args[0]), tls) else {
            return;
        };
        let Some(addr) = self.check(file, args[0], values::listen(text, tls)) else {
            return;
        };
        let at = entry_pos(file, args[0]);
        if let (ListenAddr::Udp(_), false, Some(e)) = (addr, tls, tls_entry) {
            self.error(
                entry_pos(file, e),
                "QUIC always uses TLS: tls=#false is only for tcp listens",
            );
            return;
        }
        if let Some((first, _)) = out.listens.iter().find(|(_, a)| same_socket(*a, addr)) {
            let msg = format!(
                "duplicate listen {text:?} (first at {})",
                self.src.describe(*first)
            );
            self.error(at, msg);
            return;
        }
        out.listens.push((at, addr));
    }

    /// `return CODE [TEXT]`: a redirect's text is its URL.
    fn ret(&mut self, file: FileId, node: &KdlNode, pos: Pos, out: &mut Block) {
        let Some((args, _)) = self.shape(file, node, 1, 2, &[], false) else {
            return;
        };
        if !self.once(out, "return", pos) {
            return;
        }
        let Some(status) = self
            .integer(file, args[0])
            .and_then(|n| self.check(file, args[0], values::status(n)))
        else {
            return;
        };
        let text = match args.get(1) {
            Some(e) => match self.string(file, e) {
                Some(t) => Some((t, e)),
                None => return,
            },
            None => None,
        };
        if values::is_redirect(status) {
            match text {
                Some((url, e)) => {
                    if url.is_empty() {
                        return self.error(entry_pos(file, e), "a redirect URL cannot be empty");
                    }
                    if self.check(file, e, values::header_value(url)).is_none() {
                        return;
                    }
                }
                _ => {
                    let msg = format!(
                        "return {} is a redirect: it needs a URL, e.g. return {} \"https://example.com/\"",
                        status.as_u16(),
                        status.as_u16()
                    );
                    return self.error(entry_pos(file, args[0]), msg);
                }
            }
        }
        let text = match text {
            Some((t, e)) => match self.check(file, e, Template::parse(t)) {
                Some(t) => Some(t),
                None => return,
            },
            None => None,
        };
        out.ret = Some((pos, Return { status, text }));
    }

    /// Checks a directive's shape: `min..=max` arguments, no properties but `props`,
    /// and a `{ }` block exactly when `block`. Gives the arguments and the block.
    fn shape<'n>(
        &mut self,
        file: FileId,
        node: &'n KdlNode,
        min: usize,
        max: usize,
        props: &[&str],
        block: bool,
    ) -> Option<(Vec<&'n KdlEntry>, Option<&'n KdlDocument>)> {
        let name = node.name().value();
        let pos = Pos {
            file,
            offset: node.name().span().offset(),
        };
        let mut ok = true;
        let mut args = Vec::new();
        for entry in node.entries() {
            match entry.name() {
                Some(key) if props.contains(&key.value()) => {}
                Some(key) => {
                    let msg = format!("`{name}` has no property `{}`", key.value());
                    self.error(entry_pos(file, entry), msg);
                    ok = false;
                }
                None => args.push(entry),
            }
        }
        let expected = match (min, max) {
            (0, 0) => "no arguments".to_owned(),
            (1, 1) => "1 argument".to_owned(),
            (a, b) if a == b => format!("{a} arguments"),
            (a, usize::MAX) => format!("at least {a} argument{}", if a == 1 { "" } else { "s" }),
            (a, b) => format!("{a} to {b} arguments"),
        };
        if args.len() < min {
            let msg = format!("`{name}` takes {expected}, found {}", args.len());
            self.error(pos, msg);
            ok = false;
        } else if args.len() > max {
            let msg = format!("`{name}` takes {expected}, found {}", args.len());
            self.error(entry_pos(file, args[max]), msg);
            ok = false;
        }
        match (node.children(), block) {
            (None, true) => {
                self.error(pos, format!("`{name}` needs a block: {name} {{ ... }}"));
                ok = false;
            }
            (Some(children), false) => {
                // The block's span starts after its `{`.
                let inside = Pos {
                    file,
                    offset: children.span().offset(),
                };
                let at = self.src.back_to(inside, b'{');
                self.error(at, format!("`{name}` takes no block"));
                ok = false;
            }
            _ => {}
        }
        ok.then(|| (args, node.children()))
    }

    /// A directive with one argument that may appear once per block.
    fn single<'n>(
        &mut self,
        file: FileId,
        node: &'n KdlNode,
        out: &mut Block,
        name: &'static str,
        pos: Pos,
    ) -> Option<&'n KdlEntry> {
        let (args, _) = self.shape(file, node, 1, 1, &[], false)?;
        self.once(out, name, pos).then_some(args[0])
    }

    /// Records that `name` is set in this block; false (and an error) if it already is.
    fn once(&mut self, out: &mut Block, name: &'static str, pos: Pos) -> bool {
        if let Some((_, first)) = out.seen.iter().find(|(n, _)| *n == name) {
            let msg = format!(
                "duplicate `{name}` (first at {})",
                self.src.describe(*first)
            );
            self.error(pos, msg);
            return false;
        }
        out.seen.push((name, pos));
        true
    }

    fn check<T>(&mut self, file: FileId, entry: &KdlEntry, r: Result<T, String>) -> Option<T> {
        r.map_err(|e| self.error(entry_pos(file, entry), e)).ok()
    }

    /// The entry's value if `get` takes it, else an error saying what was `expected`.
    fn typed<'n, T>(
        &mut self,
        file: FileId,
        entry: &'n KdlEntry,
        expected: &str,
        get: impl FnOnce(&'n KdlValue) -> Option<T>,
    ) -> Option<T> {
        let value = entry.value();
        let r = get(value).ok_or_else(|| format!("expected {expected}, found {}", shown(value)));
        self.check(file, entry, r)
    }

    fn string<'n>(&mut self, file: FileId, entry: &'n KdlEntry) -> Option<&'n str> {
        self.typed(file, entry, "a string", KdlValue::as_string)
    }

    fn boolean(&mut self, file: FileId, entry: &KdlEntry) -> Option<bool> {
        self.typed(file, entry, "#true or #false", KdlValue::as_bool)
    }

    fn integer(&mut self, file: FileId, entry: &KdlEntry) -> Option<i128> {
        self.typed(file, entry, "an integer", KdlValue::as_integer)
    }

    /// An integer in `range`, the value of `name`.
    fn bounded(
        &mut self,
        file: FileId,
        entry: &KdlEntry,
        name: &str,
        range: RangeInclusive<i128>,
    ) -> Option<i128> {
        let n = self.integer(file, entry)?;
        let r = if range.contains(&n) {
            Ok(n)
        } else {
            let (min, max) = range.into_inner();
            Err(format!(
                "{name} {n} is out of range: between {min} and {max}"
            ))
        };
        self.check(file, entry, r)
    }

    /// A duration, as [`values::duration`] reads it.
    fn duration(&mut self, file: FileId, entry: &KdlEntry) -> Option<Duration> {
        let s = self.scalar(file, entry)?;
        self.check(file, entry, values::duration(&s))
    }

    /// A size or a duration: a string such as "1m", or a bare integer (bytes, seconds).
    fn scalar(&mut self, file: FileId, entry: &KdlEntry) -> Option<String> {
        match entry.value() {
            KdlValue::String(s) => Some(s.clone()),
            KdlValue::Integer(n) => Some(n.to_string()),
            other => {
                let msg = format!(
                    "expected a string such as \"10s\" or \"1m\", found {}",
                    shown(other)
                );
                self.error(entry_pos(file, entry), msg);
                None
            }
        }
    }

    /// The checked blocks → the servers, with what only shows across blocks.
    fn resolve(&mut self, top: Block) -> Config {
        // A missing block is often the consequence of an error already reported (a
        // syntax error, an unreadable include): then it is not worth a line.
        let quiet = self.src.has_errors();
        let Some(mut http) = top.http else {
            if !quiet {
                self.error(top.pos, "no `http` block: edge would serve nothing");
            }
            return Config {
                servers: Vec::new(),
                workers: None,
                worker_connections: DEFAULT_WORKER_CONNECTIONS,
                quic_host_key: None,
            };
        };
        if http.servers.is_empty() && !quiet {
            self.error(http.pos, "`http` has no `server`: edge would serve nothing");
        }
        let blocks = std::mem::take(&mut http.servers);
        self.upstreams = http.upstreams.iter().map(|(_, u)| u.clone()).collect();
        self.shared_addresses(&blocks);
        let servers = blocks
            .into_iter()
            .map(|mut block| {
                block.inherit(&http);
                self.server(block)
            })
            .collect();
        Config {
            servers,
            workers: top.workers.flatten(),
            worker_connections: top.worker_connections.unwrap_or(DEFAULT_WORKER_CONNECTIONS),
            quic_host_key: http.quic_host_key.take(),
        }
    }

    /// Servers sharing a TCP address share one listener: it is TLS or plain for all.
    fn shared_addresses(&mut self, servers: &[Block]) {
        let mut tcp: Vec<(std::net::SocketAddr, bool, Pos)> = Vec::new();
        for (at, listen) in servers.iter().flat_map(|s| &s.listens) {
            let ListenAddr::Tcp { addr, tls } = *listen else {
                continue;
            };
            match tcp.iter().find(|(a, _, _)| *a == addr) {
                Some(&(_, first_tls, first)) if first_tls != tls => {
                    let kind = |tls| if tls { "TLS" } else { "plain (tls=#false)" };
                    let msg = format!(
                        "tcp://{addr} is {} here but {} at {}: servers sharing an address share its listener",
                        kind(tls),
                        kind(first_tls),
                        self.src.describe(first)
                    );
                    self.error(*at, msg);
                }
                Some(_) => {}
                None => tcp.push((addr, tls, *at)),
            }
        }
    }

    fn server(&mut self, mut block: Block) -> Server {
        let defaults = Limits::default();
        if !block.has_listen {
            self.error(block.pos, "`server` has no `listen`");
        }
        let http3 = block.http3.unwrap_or(true);
        if !http3 {
            for (at, listen) in &block.listens {
                if let ListenAddr::Udp(_) = listen {
                    self.src
                        .error(*at, "udp listen in a server with `http3 #false`");
                }
            }
        }
        let certificate = self.certificate(&block);
        let locations = self.locations(&mut block);
        Server {
            source: self.src.describe(block.pos),
            names: block.names,
            listens: block.listens.iter().map(|(_, a)| *a).collect(),
            certificate,
            http2: block.http2.unwrap_or(true),
            http3,
            access_log: block.access_log.unwrap_or(true),
            underscores_in_headers: block.underscores_in_headers.unwrap_or(false),
            limits: Limits {
                header_read_timeout: block.header_timeout.unwrap_or(defaults.header_read_timeout),
                idle_timeout: block.keepalive_timeout.unwrap_or(defaults.idle_timeout),
                body_timeout: block.body_timeout.unwrap_or(defaults.body_timeout),
                send_timeout: block.send_timeout.unwrap_or(defaults.send_timeout),
                max_requests: block.keepalive_requests.unwrap_or(defaults.max_requests),
                max_header_size: block.max_header_size.unwrap_or(defaults.max_header_size),
                max_body_size: block.max_body_size.unwrap_or(defaults.max_body_size),
                max_concurrent_streams: block
                    .max_concurrent_streams
                    .unwrap_or(defaults.max_concurrent_streams),
            },
            locations,
        }
    }

    /// Reads the certificate now, so `edge -t` finds a missing or mismatched file.
    fn certificate(&mut self, block: &Block) -> Option<Arc<CertifiedKey>> {
        match (&block.certificate, &block.certificate_key) {
            (Some((at, cert)), Some((_, key))) => match tls::load_pem(cert, key) {
                Ok(k) => Some(k),
                Err(e) => {
                    self.error(*at, format!("cannot load the certificate: {e}"));
                    None
                }
            },
            (Some((at, _)), None) => {
                self.error(*at, "`ssl_certificate` without `ssl_certificate_key`");
                None
            }
            (None, Some((at, _))) => {
                self.error(*at, "`ssl_certificate_key` without `ssl_certificate`");
                None
            }
            (None, None) => None,
        }
    }

    /// The server's locations with inherited settings, or its implicit `location "/"`.
    fn locations(&mut self, server: &mut Block) -> Vec<Location> {
        let blocks = std::mem::take(&mut server.locations);
        if blocks.is_empty() {
            let implicit = Block {
                add_headers: server.add_headers.take(),
                proxy_set_headers: server.proxy_set_headers.take(),
                max_body_size: server.max_body_size,
                ret: server.ret.take(),
                ..Block::default()
            };
            return vec![location(Match::Prefix("/".into()), implicit, None)];
        }
        if let (Some((ret, _)), Some((first, _, _))) = (&server.ret, blocks.first()) {
            // nginx runs a server-level return before it looks for a location.
            let msg = format!(
                "this location is never used: the server answers every request with the `return` at {}",
                self.src.describe(*ret)
            );
            self.error(*first, msg);
        }
        let mut seen: Vec<(Pos, Match)> = Vec::new();
        let mut out = Vec::new();
        for (at, matcher, mut block) in blocks {
            if let Some((first, _)) = seen.iter().find(|(_, m)| *m == matcher) {
                let msg = format!(
                    "duplicate location (first at {})",
                    self.src.describe(*first)
                );
                self.error(at, msg);
                continue;
            }
            seen.push((at, matcher.clone()));
            block.inherit(server);
            let proxy_pass = self.proxy_pass(&block);
            out.push(location(matcher, block, proxy_pass));
        }
        out
    }
}

fn location(matcher: Match, block: Block, proxy_pass: Option<ProxyPass>) -> Location {
    Location {
        matcher,
        proxy_pass,
        add_headers: block.add_headers.unwrap_or_default(),
        proxy_set_headers: block.proxy_set_headers.unwrap_or_default(),
        proxy_redirects: block
            .proxy_redirects
            .unwrap_or_else(|| vec![ProxyRedirect::Default]),
        max_body_size: block
            .max_body_size
            .unwrap_or(Limits::default().max_body_size),
        ret: block.ret.map(|(_, r)| r),
    }
}

/// A value as it is written in KDL, for messages.
fn shown(value: &KdlValue) -> String {
    match value {
        KdlValue::String(s) => format!("{s:?}"),
        other => other.to_string(),
    }
}

/// The keys of a `quic_host_key` file's secret, read now so that `edge -t` finds a
/// missing or short file.
fn quic_host_key(path: &Path) -> Result<QuicHostKey, String> {
    let secret = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if secret.len() < MIN_HOST_KEY {
        return Err(format!(
            "{} holds {} bytes: a quic_host_key needs at least {MIN_HOST_KEY} random ones, e.g. from `openssl rand 80`",
            path.display(),
            secret.len()
        ));
    }
    Ok(QuicHostKey::new(&secret))
}

fn entry_pos(file: FileId, entry: &KdlEntry) -> Pos {
    Pos {
        file,
        offset: entry.span().offset(),
    }
}

/// Two listens on the same socket (TLS or not).
fn same_socket(a: ListenAddr, b: ListenAddr) -> bool {
    match (a, b) {
        (ListenAddr::Tcp { addr: x, .. }, ListenAddr::Tcp { addr: y, .. }) => x == y,
        (ListenAddr::Udp(x), ListenAddr::Udp(y)) => x == y,
        _ => false,
    }
}

fn is_glob(pattern: &str) -> bool {
    pattern.contains(['*', '?'])
}

/// The files matching `path`, whose file name may hold `*` and `?`, in name order (as
/// nginx includes them). No match is no file, not an error.
fn glob(path: &Path) -> Result<Vec<PathBuf>, String> {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name().and_then(|n| n.to_str())) else {
        return Err(format!("invalid include pattern {}", path.display()));
    };
    if is_glob(&dir.to_string_lossy()) {
        return Err(format!(
            "invalid include pattern {}: wildcards are only allowed in the file name",
            path.display()
        ));
    }
    let listed = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let entries = std::fs::read_dir(listed)
        .map_err(|e| format!("cannot read directory {}: {e}", listed.display()))?;
    let mut paths: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| wildcard(name.as_bytes(), n.as_bytes()))
        })
        .map(|e| dir.join(e.file_name()))
        .collect();
    paths.sort();
    Ok(paths)
}

/// `*` (any run of bytes) and `?` (one byte) matching, backtracking only to the last
/// star: linear in practice.
pub(super) fn wildcard(pattern: &[u8], name: &[u8]) -> bool {
    let (mut p, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, n));
                p += 1;
            }
            Some(&c) if c == b'?' || c == name[n] => {
                p += 1;
                n += 1;
            }
            _ => match star {
                Some((sp, sn)) => {
                    p = sp + 1;
                    n = sn + 1;
                    star = Some((sp, sn + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}
