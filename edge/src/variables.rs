//! nginx's variables in config values (`proxy_set_header`, `add_header`, `return`):
//! [`Template`] parses a value once, when the config is read, and expands it for each
//! request.

use std::cell::RefCell;
use std::net::IpAddr;

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};

use crate::session::{Protocol, Session};

/// A variable a config value may use.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Var {
    /// `$remote_addr`: the client's IP address.
    RemoteAddr,
    /// `$host`: the request's host, lower case, without port or trailing dot.
    Host,
    /// `$request_uri`: the original path and query.
    RequestUri,
    /// `$scheme`: `http` or `https`.
    Scheme,
    /// `$ssl_server_name`: the SNI the client sent over TLS or QUIC (empty without).
    SslServerName,
    /// `$proxy_host`: the upstream's name (or `host:port`), the default `Host`; empty
    /// outside `proxy_set_header`.
    ProxyHost,
    /// `$proxy_add_x_forwarded_for`: the client's X-Forwarded-For, with `$remote_addr`
    /// appended.
    ProxyAddXForwardedFor,
    /// `$http_NAME`: the request header NAME (`_` for `-`), values joined by `, `;
    /// `$http_host` is `:authority` where there is no Host field.
    Http(HeaderName),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(Bytes),
    Var(Var),
}

/// A value with `$name` or `${name}` variables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    source: Box<str>,
    parts: Vec<Part>,
}

impl Template {
    /// The value as configured.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Parses a value; unknown variables are errors.
    pub fn parse(text: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut literal = Vec::new();
        let mut rest = text;
        while let Some(at) = rest.find('$') {
            literal.extend_from_slice(&rest.as_bytes()[..at]);
            rest = &rest[at + 1..];
            let (name, after) = if let Some(braced) = rest.strip_prefix('{') {
                let end = braced
                    .find('}')
                    .ok_or_else(|| format!("unclosed ${{ in {text:?}"))?;
                (&braced[..end], &braced[end + 1..])
            } else {
                let end = rest
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(rest.len());
                (&rest[..end], &rest[end..])
            };
            let var = match name {
                "remote_addr" => Var::RemoteAddr,
                "host" => Var::Host,
                "request_uri" => Var::RequestUri,
                "scheme" => Var::Scheme,
                "ssl_server_name" => Var::SslServerName,
                "proxy_host" => Var::ProxyHost,
                "proxy_add_x_forwarded_for" => Var::ProxyAddXForwardedFor,
                "" => return Err(format!("a lone $ in {text:?}")),
                other => match other.strip_prefix("http_") {
                    Some(h) if !h.is_empty() => {
                        let h = h.replace('_', "-").to_ascii_lowercase();
                        Var::Http(
                            HeaderName::from_bytes(h.as_bytes())
                                .map_err(|_| format!("invalid header in ${other}"))?,
                        )
                    }
                    _ => {
                        return Err(format!(
                            "unknown variable ${other}: known are $remote_addr, $host, \
                             $request_uri, $scheme, $ssl_server_name, $proxy_host, \
                             $proxy_add_x_forwarded_for, $http_NAME"
                        ))
                    }
                },
            };
            if !literal.is_empty() {
                parts.push(Part::Literal(std::mem::take(&mut literal).into()));
            }
            parts.push(Part::Var(var));
            rest = after;
        }
        literal.extend_from_slice(rest.as_bytes());
        if !literal.is_empty() {
            parts.push(Part::Literal(literal.into()));
        }
        Ok(Template {
            source: text.into(),
            parts,
        })
    }

    /// The value for this request; `proxy_host` when proxying. A value without
    /// variables is shared, not copied.
    pub fn expand(&self, session: &Session, proxy_host: Option<&HeaderValue>) -> Bytes {
        match &self.parts[..] {
            [] => return Bytes::new(),
            [Part::Literal(l)] => return l.clone(),
            _ => {}
        }
        let mut out = BytesMut::new();
        for part in &self.parts {
            match part {
                Part::Literal(l) => out.extend_from_slice(l),
                Part::Var(v) => match v {
                    Var::RemoteAddr => out
                        .extend_from_slice(remote_addr_value(session.client.addr.ip()).as_bytes()),
                    Var::Host => {
                        // A fully qualified name's dot goes, as nginx's $host drops it.
                        let host = session.host().unwrap_or("");
                        let host = host.strip_suffix('.').unwrap_or(host);
                        out.extend_from_slice(host.to_ascii_lowercase().as_bytes())
                    }
                    Var::RequestUri => out.extend_from_slice(request_uri(session).as_bytes()),
                    Var::Scheme => out.extend_from_slice(scheme(session).as_bytes()),
                    Var::SslServerName => {
                        let sni = session.client.tls.as_ref().and_then(|t| t.sni.as_deref());
                        out.extend_from_slice(sni.unwrap_or("").as_bytes())
                    }
                    Var::ProxyHost => {
                        out.extend_from_slice(proxy_host.map_or(&b""[..], |h| h.as_bytes()))
                    }
                    Var::ProxyAddXForwardedFor => out.extend_from_slice(&forwarded_for(session)),
                    Var::Http(name) => {
                        let value = joined(&session.request.headers, name);
                        match session.request.uri.authority() {
                            // HTTP/2 and HTTP/3 name the host in :authority, which
                            // nginx's $http_host reads too. An HTTP/1 request's URI has
                            // one the engine gave it (the site's name, for HTTP/1.0
                            // without Host): not the client's.
                            Some(a)
                                if value.is_empty()
                                    && name == header::HOST
                                    && session.client.protocol != Protocol::Http1 =>
                            {
                                out.extend_from_slice(a.as_str().as_bytes())
                            }
                            _ => out.extend_from_slice(&value),
                        }
                    }
                },
            }
        }
        out.freeze()
    }
}

fn request_uri(session: &Session) -> &str {
    session
        .request
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
}

pub(crate) fn scheme(session: &Session) -> &'static str {
    if session.client.tls.is_some() {
        "https"
    } else {
        "http"
    }
}

/// All values of a header, joined by `, `; Cookie's by `; `, its own separator (as
/// nginx's `$http_cookie`).
pub(crate) fn joined(headers: &HeaderMap, name: &HeaderName) -> Vec<u8> {
    let separator: &[u8] = if name == header::COOKIE { b"; " } else { b", " };
    let mut out = Vec::new();
    for v in headers.get_all(name) {
        if !out.is_empty() {
            out.extend_from_slice(separator);
        }
        out.extend_from_slice(v.as_bytes());
    }
    out
}

pub(crate) const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// The client's IP address as a header value. A client connection sends many requests
/// from one address: the value of the last address seen on this thread is kept, so a
/// request from the same client clones it (a reference count) instead of formatting
/// and allocating it again.
pub(crate) fn remote_addr_value(ip: IpAddr) -> HeaderValue {
    thread_local! {
        static LAST: RefCell<Option<(IpAddr, HeaderValue)>> = const { RefCell::new(None) };
    }
    LAST.with(|last| {
        let mut last = last.borrow_mut();
        if let Some((addr, value)) = last.as_ref() {
            if *addr == ip {
                return value.clone();
            }
        }
        let value =
            HeaderValue::try_from(ip.to_string()).expect("an IP address is a valid header value");
        *last = Some((ip, value.clone()));
        value
    })
}

/// `$proxy_add_x_forwarded_for`.
pub(crate) fn forwarded_for(session: &Session) -> Vec<u8> {
    let mut out = joined(&session.request.headers, &X_FORWARDED_FOR);
    if !out.is_empty() {
        out.extend_from_slice(b", ");
    }
    out.extend_from_slice(remote_addr_value(session.client.addr.ip()).as_bytes());
    out
}

impl std::str::FromStr for Template {
    type Err = String;

    fn from_str(text: &str) -> Result<Template, String> {
        Template::parse(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_errors() {
        assert!(Template::parse("$nope").is_err());
        assert!(Template::parse("a $ b").is_err());
        assert!(Template::parse("${host").is_err());
        assert!(Template::parse("$http_").is_err());
        assert_eq!(Template::parse("plain").unwrap().parts.len(), 1);
    }
}
