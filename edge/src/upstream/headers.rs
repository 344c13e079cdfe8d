//! The request as it goes upstream: hop-by-hop headers stripped (the protocol edges
//! already dropped the connection-specific ones, and the client's Connection options),
//! `Host` set to the upstream's name (nginx's `$proxy_host`), `X-Forwarded-For`
//! appended with the client address, `X-Forwarded-Proto` set to the client's scheme,
//! `Via` appended with this hop, then each `proxy_set_header` applied: its value is a
//! [`Template`] with nginx variables, and an empty result removes the header.

use http::header::{self, HeaderMap, HeaderName, HeaderValue, MaxSizeReached};

use crate::session::Session;
use crate::variables::{
    forwarded_for, joined, remote_addr_value, scheme, Template, X_FORWARDED_FOR,
};

/// Headers this hop sets (with Host, Via and `X-Forwarded-For`).
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const EARLY_DATA: HeaderName = HeaderName::from_static("early-data");

/// The `X-Forwarded-For` value upstream: the client's address, appended to the
/// client's own `X-Forwarded-For` values if any.
fn forwarded_for_value(session: &Session) -> Option<HeaderValue> {
    if !session.request.headers.contains_key(&X_FORWARDED_FOR) {
        return Some(remote_addr_value(session.client.addr.ip()));
    }
    HeaderValue::from_bytes(&forwarded_for(session)).ok()
}

/// The `Via` value upstream: this hop, appended to the client's own `Via` values if any.
fn via_value(session: &Session) -> Option<HeaderValue> {
    let hop = match session.client.protocol {
        crate::session::Protocol::Http1 if session.request.version == http::Version::HTTP_10 => {
            "1.0 edge"
        }
        crate::session::Protocol::Http1 => "1.1 edge",
        crate::session::Protocol::Http2 => "2 edge",
        crate::session::Protocol::Http3 => "3 edge",
    };
    if !session.request.headers.contains_key(header::VIA) {
        return Some(HeaderValue::from_static(hop));
    }
    let mut via = joined(&session.request.headers, &header::VIA);
    if !via.is_empty() {
        via.extend_from_slice(b", ");
    }
    via.extend_from_slice(hop.as_bytes());
    HeaderValue::from_bytes(&via).ok()
}

/// The request's target in origin form, sharing the client's bytes.
fn origin_form(uri: &http::Uri) -> http::Uri {
    let mut parts = http::uri::Parts::default();
    parts.path_and_query = Some(
        uri.path_and_query()
            .cloned()
            .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/")),
    );
    http::Uri::from_parts(parts).unwrap_or_else(|_| http::Uri::from_static("/"))
}

/// What this hop does to a header name: sets it (in place of the client's first value
/// of that name, the client's others dropped) or removes it.
#[derive(Debug)]
enum Change {
    Set(HeaderValue),
    Remove,
}

/// This hop's header changes, in the order their names come after the client's headers
/// when the client sent none: Host, X-Forwarded-For, X-Forwarded-Proto, Via,
/// Early-Data, then each `proxy_set_header` (one that names an earlier change takes its
/// place). Each knows whether the client sent its name.
#[derive(Debug)]
pub struct Changes(Vec<(HeaderName, Change, bool)>);

impl Changes {
    pub fn new(
        session: &Session,
        proxy_host: &HeaderValue,
        set: &[(HeaderName, Template)],
    ) -> Self {
        let mut changes = Vec::with_capacity(5 + set.len());
        // `None`: not set by this hop, the client's values pass (Early-Data outside
        // 0-RTT, or a joined value that would not be a valid header value).
        let own = [
            (header::HOST, Some(proxy_host.clone())),
            (X_FORWARDED_FOR, forwarded_for_value(session)),
            (
                X_FORWARDED_PROTO,
                Some(HeaderValue::from_static(scheme(session))),
            ),
            (header::VIA, via_value(session)),
            (
                EARLY_DATA,
                session
                    .is_early_data()
                    .then(|| HeaderValue::from_static("1")),
            ),
        ];
        for (name, value) in own {
            if let Some(v) = value {
                changes.push((name, Change::Set(v), false));
            }
        }
        for (name, template) in set {
            let value = template.expand(session, Some(proxy_host));
            let change = match HeaderValue::from_maybe_shared(value) {
                Ok(v) if !v.is_empty() => Change::Set(v),
                // HTTP/1.1 requires a Host (RFC 9112 3.2): the upstream's name stays.
                _ if name == header::HOST => Change::Set(proxy_host.clone()),
                _ => Change::Remove,
            };
            match changes.iter_mut().find(|(n, _, _)| n == name) {
                Some(earlier) => earlier.1 = change,
                None => changes.push((name.clone(), change, false)),
            }
        }
        let mut changes = Changes(changes);
        for name in session.request.headers.keys() {
            if let Some(i) = changes.position(name) {
                changes.0[i].2 = true;
            }
        }
        changes
    }

    fn position(&self, name: &HeaderName) -> Option<usize> {
        self.0.iter().position(|(n, _, _)| n == name)
    }

    /// The upstream request's header fields in order: the client's (those of the session
    /// the changes were made for), connection-specific ones left out, with the changes
    /// in place; then the changes the client sent no value of.
    pub fn fields<'a>(
        &'a self,
        session: &'a Session,
    ) -> impl Iterator<Item = (&'a HeaderName, &'a HeaderValue)> + 'a {
        let client = &session.request.headers;
        // The values of one name come one after the other, under the same key.
        let firsts = client
            .iter()
            .scan(None, |prev: &mut Option<&HeaderName>, (n, v)| {
                let first = !prev.is_some_and(|p| std::ptr::eq(p, n));
                *prev = Some(n);
                Some((n, v, first))
            });
        let client_fields = firsts.filter_map(move |(n, v, first)| {
            if crate::session::is_connection_specific(n) {
                return None;
            }
            match self.position(n).map(|i| &self.0[i].1) {
                None => Some((n, v)),
                Some(Change::Set(v)) if first => Some((n, v)),
                Some(_) => None,
            }
        });
        let added = self.0.iter().filter_map(|(n, change, sent)| match change {
            Change::Set(v) if !sent => Some((n, v)),
            _ => None,
        });
        client_fields.chain(added)
    }
}

/// The request head for the upstream, for filters to edit: method, origin-form target,
/// and the header fields of [`Changes::fields`]. The caller decides the body's framing.
/// Fails when the fields' names do not fit in a `HeaderMap` (some 24,000: a client's
/// request can come close with a large `max_header_size`).
pub fn upstream_request(
    session: &Session,
    changes: &Changes,
) -> Result<http::request::Parts, MaxSizeReached> {
    let (mut parts, ()) = http::Request::new(()).into_parts();
    parts.method = session.request.method.clone();
    parts.uri = origin_form(&session.request.uri);
    // Sized once for the names (more values of a name take no slot of their own): no
    // rehashing as it fills.
    let mut headers =
        HeaderMap::try_with_capacity(session.request.headers.keys_len() + changes.0.len())?;
    for (name, value) in changes.fields(session) {
        headers.try_append(name.clone(), value.clone())?;
    }
    parts.headers = headers;
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http1::request::encode_request_head;
    use crate::session::{ClientInfo, Protocol};
    use std::sync::Arc;

    fn session(headers: &[(&str, &str)]) -> Session {
        let mut req = http::Request::builder()
            .method("POST")
            .uri("http://Example.COM:8443/a/b?c=d")
            .version(http::Version::HTTP_11);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let (parts, ()) = req.body(()).unwrap().into_parts();
        let client = Arc::new(ClientInfo {
            addr: "10.0.0.7:5555".parse().unwrap(),
            local: "127.0.0.1:443".parse().unwrap(),
            protocol: Protocol::Http1,
            tls: Some(Default::default()),
        });
        Session::new(parts, crate::body::empty(), client)
    }

    fn upstream(s: &Session, set: &[(HeaderName, Template)]) -> http::request::Parts {
        let changes = Changes::new(s, &HeaderValue::from_static("backend"), set);
        let parts = upstream_request(s, &changes).unwrap();
        // The head encoded from the fields directly (no filters) is the one encoded
        // from the request filters would see.
        let (mut direct, mut via_map) = (Vec::new(), Vec::new());
        let framing = crate::http1::response::Framing::None;
        encode_request_head(&mut direct, &parts.method, "/", changes.fields(s), framing);
        encode_request_head(&mut via_map, &parts.method, "/", &parts.headers, framing);
        assert_eq!(direct, via_map);
        parts
    }

    #[test]
    fn early_data_is_flagged_upstream() {
        let mut s = session(&[("host", "example.com")]);
        let p = upstream(&s, &[]);
        assert!(!p.headers.contains_key("early-data"));
        let mut client = (*s.client).clone();
        client.tls = Some(crate::session::TlsInfo {
            early_data: true,
            ..Default::default()
        });
        s.client = Arc::new(client);
        let p = upstream(&s, &[]);
        assert_eq!(p.headers["early-data"], "1");
    }

    #[test]
    fn default_rewriting() {
        let s = session(&[
            ("host", "example.com:8443"),
            ("x-forwarded-for", "1.2.3.4"),
            ("via", "1.1 cdn"),
            ("content-length", "3"),
            ("x-keep", "yes"),
        ]);
        let p = upstream(&s, &[]);
        assert_eq!(p.method, http::Method::POST);
        assert_eq!(p.uri, "/a/b?c=d");
        let h = &p.headers;
        assert_eq!(h["host"], "backend");
        assert_eq!(h["x-forwarded-for"], "1.2.3.4, 10.0.0.7");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["via"], "1.1 cdn, 1.1 edge");
        assert_eq!(h["x-keep"], "yes");
    }

    #[test]
    fn header_order_and_hop_by_hop() {
        let s = session(&[
            ("x-first", "1"),
            ("host", "example.com"),
            ("te", "trailers"),
            ("x-forwarded-for", "1.2.3.4"),
            ("x-forwarded-for", "5.6.7.8"),
            ("early-data", "1"),
            ("x-last", "2"),
        ]);
        let p = upstream(&s, &[]);
        let got: Vec<_> = p
            .headers
            .iter()
            .map(|(n, v)| format!("{n}: {}", v.to_str().unwrap()))
            .collect();
        assert_eq!(
            got,
            [
                "x-first: 1",
                "host: backend",
                "x-forwarded-for: 1.2.3.4, 5.6.7.8, 10.0.0.7",
                "early-data: 1",
                "x-last: 2",
                "x-forwarded-proto: https",
                "via: 1.1 edge",
            ],
            "set headers take the place of the client's, the others come last"
        );
    }

    /// `$http_host` reads `:authority` when the request (HTTP/2, HTTP/3) has no Host
    /// field, as nginx's does, and is empty for an HTTP/1 request without one; a Host that comes out empty leaves the upstream's name
    /// (an HTTP/1.1 request without Host is invalid); `$host` drops a trailing dot.
    #[test]
    fn host_variables_and_an_empty_host() {
        let set = |pairs: &[(&'static str, &str)]| -> Vec<(HeaderName, Template)> {
            pairs
                .iter()
                .map(|(n, v)| (HeaderName::from_static(n), Template::parse(v).unwrap()))
                .collect()
        };
        let mut s = session(&[]);
        Arc::make_mut(&mut s.client).protocol = Protocol::Http2;
        let p = upstream(&s, &set(&[("host", "$http_host"), ("x-h", "$host")]));
        assert_eq!(p.headers["host"], "Example.COM:8443");
        assert_eq!(p.headers["x-h"], "example.com");
        // An HTTP/1.0 request without Host: its URI's authority is the engine's.
        let s = session(&[]);
        let p = upstream(&s, &set(&[("x-hh", "$http_host")]));
        assert!(!p.headers.contains_key("x-hh"));
        let p = upstream(&s, &set(&[("host", "$http_x_none")]));
        assert_eq!(p.headers["host"], "backend");
        let mut s = session(&[("host", "Example.ORG.:80")]);
        s.request.uri = http::Uri::from_static("http://Example.ORG.:80/a");
        let p = upstream(&s, &set(&[("host", "$http_host"), ("x-h", "$host")]));
        assert_eq!(p.headers["host"], "Example.ORG.:80");
        assert_eq!(p.headers["x-h"], "example.org");
    }

    #[test]
    fn set_headers_with_variables() {
        let s = session(&[
            ("user-agent", "curl/8"),
            ("x-drop", "1"),
            ("cookie", "a=1"),
            ("cookie", "b=2"),
            ("accept", "a/b"),
            ("accept", "c/d"),
        ]);
        let set = [
            ("x-cookie", "$http_cookie"),
            ("x-accept", "$http_accept"),
            ("host", "$host"),
            ("x-real-ip", "$remote_addr"),
            ("x-uri", "${scheme}://$host$request_uri"),
            ("x-ua", "ua=$http_user_agent;"),
            ("x-drop", ""),
            ("x-missing", "$http_x_nothing"),
            ("x-ph", "$proxy_host"),
        ];
        let set: Vec<_> = set
            .iter()
            .map(|(n, v)| (HeaderName::from_static(n), Template::parse(v).unwrap()))
            .collect();
        let p = upstream(&s, &set);
        let h = &p.headers;
        assert_eq!(h["host"], "example.com");
        assert_eq!(h["x-real-ip"], "10.0.0.7");
        assert_eq!(h["x-uri"], "https://example.com/a/b?c=d");
        assert_eq!(h["x-ua"], "ua=curl/8;");
        assert_eq!(h["x-ph"], "backend");
        assert_eq!(h["x-cookie"], "a=1; b=2");
        assert_eq!(h["x-accept"], "a/b, c/d");
        assert!(
            !h.contains_key("x-drop"),
            "an empty value removes the header"
        );
        assert!(!h.contains_key("x-missing"));
    }

    /// A request with more header values than a `HeaderMap` can be sized for (with
    /// `max_header_size "1m"`) goes upstream without a panic; one with more names than
    /// the upstream request's map can hold is refused, without a panic either.
    #[test]
    fn thirty_thousand_header_values() {
        let mut s = session(&[("host", "example.com")]);
        for i in 0..30_000 {
            s.request.headers.append("x-v", HeaderValue::from(i));
        }
        let p = upstream(&s, &[]);
        assert_eq!(p.headers.get_all("x-v").iter().count(), 30_000);

        let mut s = session(&[("host", "example.com")]);
        for i in 0.. {
            let name = HeaderName::try_from(format!("x-{i}")).unwrap();
            if s.request
                .headers
                .try_append(name, HeaderValue::from(i))
                .is_err()
            {
                break;
            }
        }
        assert!(s.request.headers.keys_len() > 24_000);
        let changes = Changes::new(&s, &HeaderValue::from_static("backend"), &[]);
        assert!(upstream_request(&s, &changes).is_err());
    }
}
