//! [`Config`] → [`Runtime`]: one listener per distinct address and protocol (servers
//! sharing it share its certificates, picked by SNI, and the first of them sets its
//! connection limits), and one [`Site`] per server.

use std::sync::Arc;

use http::header::HeaderValue;
use rustls::sign::CertifiedKey;
use tracing::warn;

use super::{Config, ListenAddr, Location, ProxyRedirect, Runtime, Server};
use crate::body::BoxError;
use crate::engine::{Listener, Route, Router, Site};
use crate::filter::Filter;
use crate::filters::{AddHeader, Return};
use crate::listen::Listen;
use crate::tls::{self, CertResolver};
use crate::upstream::proxy::Proxy;
use crate::upstream::redirect::Redirects;

/// How long browsers may remember the `Alt-Svc` advertisement, in seconds.
const ALT_SVC_MAX_AGE: u32 = 86400;

/// One listening socket and the servers (indexes into `Config::servers`) on it.
struct Group {
    listen: ListenAddr,
    servers: Vec<usize>,
}

pub fn build(config: &Config) -> Result<Runtime, BoxError> {
    let certificates = certificates(config)?;
    let mut groups: Vec<Group> = Vec::new();
    for (i, server) in config.servers.iter().enumerate() {
        for &listen in &server.listens {
            match groups.iter_mut().find(|g| g.listen == listen) {
                Some(g) => {
                    if !g.servers.contains(&i) {
                        g.servers.push(i);
                    }
                }
                None => groups.push(Group {
                    listen,
                    servers: vec![i],
                }),
            }
        }
    }
    let listens = groups
        .iter()
        .map(|g| listener(config, &certificates, g))
        .collect::<Result<_, _>>()?;
    let sites: Vec<Arc<Site>> = config.servers.iter().map(|s| Arc::new(site(s))).collect();
    let routed = groups.iter().map(|g| routed(&sites, g)).collect();
    Ok(Runtime {
        listens,
        router: Router::new(sites, routed),
    })
}

/// A listening socket's sites by name. A name two of them give keeps the first, as
/// nginx does (with a warning, as nginx's).
fn routed(sites: &[Arc<Site>], group: &Group) -> Listener {
    let (addr, udp, scheme) = match group.listen {
        ListenAddr::Tcp { addr, .. } => (addr, false, "tcp"),
        ListenAddr::Udp(addr) => (addr, true, "udp"),
    };
    let on = group.servers.iter().map(|&i| sites[i].clone()).collect();
    let (listener, repeated) = Listener::new(addr, udp, on).expect("a group has a server");
    for name in repeated {
        warn!(
            name,
            listen = %format!("{scheme}://{addr}"),
            "conflicting server name: the first server with it answers"
        );
    }
    listener
}

/// Each server's certificate; servers with TLS listens and none configured share one
/// self-signed certificate for localhost, made now.
fn certificates(config: &Config) -> Result<Vec<Option<Arc<CertifiedKey>>>, BoxError> {
    let mut generated: Option<Arc<CertifiedKey>> = None;
    let mut out = Vec::with_capacity(config.servers.len());
    for server in &config.servers {
        let needs_tls = server.listens.iter().any(|l| match l {
            ListenAddr::Tcp { tls, .. } => *tls,
            ListenAddr::Udp(_) => true,
        });
        let cert = match (&server.certificate, needs_tls) {
            (Some(cert), _) => Some(cert.clone()),
            (None, false) => None,
            (None, true) => {
                warn!(
                    server = %server.source,
                    "no ssl_certificate: serving a self-signed certificate for localhost"
                );
                match &generated {
                    Some(cert) => Some(cert.clone()),
                    None => {
                        let cert = tls::self_signed()?;
                        generated = Some(cert.clone());
                        Some(cert)
                    }
                }
            }
        };
        out.push(cert);
    }
    Ok(out)
}

fn listener(
    config: &Config,
    certificates: &[Option<Arc<CertifiedKey>>],
    group: &Group,
) -> Result<Listen, BoxError> {
    // The first server on an address is its default: its settings apply before the
    // request says which server it is for (as in nginx).
    let first = &config.servers[group.servers[0]];
    let limits = first.limits.clone();
    let resolver = || -> Result<Arc<CertResolver>, BoxError> {
        let certs = group
            .servers
            .iter()
            .filter_map(|&i| {
                let cert = certificates[i].clone()?;
                Some((cert, config.servers[i].names.clone()))
            })
            .collect();
        Ok(Arc::new(CertResolver::new(certs)?))
    };
    Ok(match group.listen {
        ListenAddr::Tcp { addr, tls: false } => Listen::Tcp {
            addr,
            tls: None,
            http2: first.http2,
            limits,
        },
        ListenAddr::Tcp { addr, tls: true } => {
            // In our order of preference; "http/1.0" for clients that offer only it
            // (curl --http1.0), as nginx does.
            let alpn: &[&[u8]] = if first.http2 {
                &[b"h2", b"http/1.1", b"http/1.0"]
            } else {
                &[b"http/1.1", b"http/1.0"]
            };
            let tls = tls::server_config(resolver()?, alpn, false)
                .map_err(|e| format!("tcp://{addr}: {e}"))?;
            Listen::Tcp {
                addr,
                tls: Some(Arc::new(tls)),
                http2: first.http2,
                limits,
            }
        }
        ListenAddr::Udp(addr) => {
            let tls = tls::server_config(resolver()?, &[b"h3"], true)
                .map_err(|e| format!("udp://{addr}: {e}"))?;
            Listen::Udp {
                addr,
                tls: Arc::new(tls),
                limits,
                host_key: config.quic_host_key.clone(),
            }
        }
    })
}

fn site(server: &Server) -> Site {
    let mut h3_ports: Vec<u16> = Vec::new();
    for listen in &server.listens {
        if let ListenAddr::Udp(addr) = *listen {
            if server.http3 && !h3_ports.contains(&addr.port()) {
                h3_ports.push(addr.port());
            }
        }
    }
    let alt_svc = (!h3_ports.is_empty())
        .then(|| {
            let offers: Vec<String> = h3_ports
                .iter()
                .map(|p| format!("h3=\":{p}\"; ma={ALT_SVC_MAX_AGE}"))
                .collect();
            HeaderValue::from_str(&offers.join(", ")).ok()
        })
        .flatten();
    Site {
        names: server.names.clone(),
        routes: server.locations.iter().map(route).collect(),
        alt_svc,
        access_log: server.access_log,
        underscores_in_headers: server.underscores_in_headers,
    }
}

/// A location's filters in config order (its `add_header`s, then its `return`), and
/// its `proxy_pass`.
fn route(location: &Location) -> Route {
    let mut filters: Vec<Arc<dyn Filter>> = location
        .add_headers
        .iter()
        .map(|h| {
            Arc::new(AddHeader {
                name: h.name.clone(),
                value: h.value.clone(),
                always: h.always,
            }) as Arc<dyn Filter>
        })
        .collect();
    if let Some(ret) = &location.ret {
        filters.push(Arc::new(Return {
            status: ret.status,
            text: ret.text.clone(),
        }));
    }
    let proxy = location.proxy_pass.as_ref().map(|pass| {
        Arc::new(Proxy {
            upstream: pass.upstream.clone(),
            host: HeaderValue::from_str(&pass.upstream.name)
                .unwrap_or_else(|_| HeaderValue::from_static("localhost")),
            timeouts: pass.timeouts,
            set_headers: location.proxy_set_headers.clone(),
            redirects: Redirects::new(
                location
                    .proxy_redirects
                    .iter()
                    .map(|r| match r {
                        ProxyRedirect::Default => Redirects::default_for(&pass.upstream.name),
                        ProxyRedirect::Replace(from, to) => (from.clone(), to.clone()),
                    })
                    .collect(),
            ),
        })
    });
    Route {
        matcher: location.matcher.clone(),
        filters,
        max_body_size: location.max_body_size,
        proxy,
    }
}
