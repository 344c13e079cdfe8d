//! Parsing, checking and building configs: every directive, inheritance, include, and
//! where errors point.

use std::path::Path;
use std::time::Duration;

use super::*;
use crate::listen::Listen;

fn ok(text: &str) -> Config {
    parse(text, Path::new("t.kdl")).unwrap_or_else(|e| panic!("unexpected errors:\n{e}"))
}

/// `LINE:COL: message` of every error in `t.kdl`.
fn errors(text: &str) -> Vec<String> {
    match parse(text, Path::new("t.kdl")) {
        Ok(_) => panic!("no error in:\n{text}"),
        Err(Errors(all)) => all
            .into_iter()
            .map(|d| {
                assert_eq!(d.file, Path::new("t.kdl"));
                format!("{}:{}: {}", d.line, d.column, d.message)
            })
            .collect(),
    }
}

/// Asserts that the errors `e` start with `expect`, one for one.
fn expect_errors(e: &[String], expect: &[&str]) {
    assert_eq!(e.len(), expect.len(), "{e:#?}");
    for (got, want) in e.iter().zip(expect) {
        assert!(
            got.starts_with(want),
            "{got:?} does not start with {want:?}: {e:#?}"
        );
    }
}

/// A server block around `body`, inside http.
fn server(body: &str) -> String {
    format!("http {{\n    server {{\n        listen \"tcp://127.0.0.1:8443\"\n{body}\n    }}\n}}\n")
}

/// Errors of a directive placed on line 4 of [`server`].
fn server_errors(body: &str) -> Vec<String> {
    errors(&server(body))
}

#[path = "../../tests/common/temp_dir.rs"]
mod temp_dir;

use temp_dir::TempDir;

impl TempDir {
    /// A self-signed certificate and key for localhost as `NAME.pem`, `NAME.key`.
    fn cert(&self, name: &str) {
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        self.write(&format!("{name}.pem"), &cert.cert.pem());
        self.write(&format!("{name}.key"), &cert.key_pair.serialize_pem());
    }
}

fn headers(location: &Location) -> Vec<String> {
    location
        .add_headers
        .iter()
        .map(|h| format!("{}: {}", h.name, h.value.source()))
        .collect()
}

fn local(addr: &str) -> std::net::SocketAddr {
    addr.parse().unwrap()
}

fn prefix(p: &str) -> Match {
    Match::Prefix(p.into())
}

#[test]
fn default_config_is_valid_and_builds() {
    let config = parse(DEFAULT, Path::new("<built-in>")).unwrap();
    let s = &config.servers[0];
    assert_eq!(
        s.listens,
        [
            ListenAddr::Tcp {
                addr: "0.0.0.0:443".parse().unwrap(),
                tls: true
            },
            ListenAddr::Udp("0.0.0.0:443".parse().unwrap())
        ]
    );
    assert!(s.certificate.is_none());
    assert!(s.http2 && s.http3);
    assert_eq!(s.locations[0].matcher, prefix("/"));
    let ret = s.locations[0].ret.as_ref().unwrap();
    assert_eq!(ret.status, 200);
    assert!(ret
        .text
        .as_ref()
        .unwrap()
        .source()
        .contains("edge is running"));

    let runtime = config.build().unwrap();
    assert_eq!(runtime.listens.len(), 2);
    assert!(matches!(
        &runtime.listens[0],
        Listen::Tcp {
            tls: Some(_),
            http2: true,
            ..
        }
    ));
    assert!(matches!(&runtime.listens[1], Listen::Udp { .. }));
    let site = &runtime.router.sites[0];
    assert_eq!(site.alt_svc.as_ref().unwrap(), "h3=\":443\"; ma=86400");
    // The only site of its socket answers without the request's host being looked at,
    // whatever address of the machine the wildcard socket was reached on.
    for udp in [false, true] {
        let only = runtime.router.site(local("10.1.2.3:443"), udp, || {
            unreachable!("host asked for")
        });
        assert!(Arc::ptr_eq(only.unwrap(), site));
    }
    assert!(runtime
        .router
        .site(local("10.1.2.3:80"), false, || None)
        .is_none());
    assert!(runtime
        .router
        .site(local("[::1]:443"), false, || None)
        .is_none());
}

#[test]
fn override_listen_replaces_every_listen() {
    let mut config = ok(r#"
http {
    server {
        listen "tcp://127.0.0.1:80" tls=#false
        listen "udp://127.0.0.1:443"
    }
    server {
        listen "tcp://127.0.0.1:81" tls=#false
        http3 #false
    }
}
"#);
    let addr = "127.0.0.1:9443".parse().unwrap();
    config.override_listen(addr);
    let tcp = ListenAddr::Tcp { addr, tls: true };
    assert_eq!(config.servers[0].listens, [tcp, ListenAddr::Udp(addr)]);
    assert_eq!(config.servers[1].listens, [tcp]);
    let runtime = config.build().unwrap();
    assert_eq!(
        runtime.listens.len(),
        2,
        "one TCP and one UDP listener, shared"
    );
    let on_9443 = runtime.router.site(addr, false, || Some("other"));
    assert!(Arc::ptr_eq(on_9443.unwrap(), &runtime.router.sites[0]));
    assert!(runtime.router.sites[1].alt_svc.is_none());
}

/// The config of `tests/e2e.rs`, read from its file.
#[test]
fn e2e_config() {
    let dir = TempDir::new("e2e");
    dir.cert("cert");
    std::fs::rename(dir.0.join("cert.key"), dir.0.join("key.pem")).unwrap();
    let e2e = include_str!("../../tests/e2e.kdl").replace("PORT", "8443");
    let config = dir.write("edge.kdl", &e2e);
    let config = load(&config).unwrap_or_else(|e| panic!("{e}"));
    let s = &config.servers[0];
    assert!(s.certificate.is_some());
    assert_eq!(s.names, ["localhost"]);
    let l = &s.locations;
    assert_eq!(l.len(), 7);
    assert_eq!(l[0].matcher, prefix("/"));
    assert_eq!(headers(&l[0]), ["x-location: root"]);
    assert_eq!(l[1].matcher, Match::Exact("/exact".into()));
    assert_eq!(headers(&l[1]), ["x-server: edge-test"]);
    assert_eq!(l[0].max_body_size, Some(1 << 20));
    assert_eq!(l[3].max_body_size, Some(1024));
    assert_eq!(
        l[2].ret,
        Some(Return {
            status: http::StatusCode::MOVED_PERMANENTLY,
            text: Some("https://example.com/elsewhere".parse().unwrap())
        })
    );
    assert!(l[4].add_headers[0].always && !l[4].add_headers[1].always);

    let runtime = config.build().unwrap();
    let site = &runtime.router.sites[0];
    assert_eq!(site.alt_svc.as_ref().unwrap(), "h3=\":8443\"; ma=86400");
    // add_header filters, then return.
    let names: Vec<&str> = site.routes[4].filters.iter().map(|f| f.name()).collect();
    assert_eq!(names, ["add_header", "add_header", "return"]);
    assert_eq!(site.route(b"/exactly").unwrap().matcher, prefix("/"));
    assert_eq!(site.routes[3].max_body_size, Some(1024));
}

#[test]
fn every_directive() {
    let config = ok(r#"
http {
    client_max_body_size "2m"
    client_header_timeout "5s"
    keepalive_timeout "2m"
    client_body_timeout "20s"
    send_timeout "30s"
    keepalive_requests 500
    max_header_size "32k"
    max_concurrent_streams 64
    access_log #false
    http2 #false
    proxy_set_header "x-forwarded-proto" "https"
    server {
        listen "tcp://[::1]:8443"
        listen "tcp://127.0.0.1:8080" tls=#false
        listen "udp://[::1]:8443"
        server_name "Example.com" "*.example.com"
        server_name ".example.org"
        http3 #true
        location "^~" "/static" { }
    }
    server {
        listen "tcp://127.0.0.1:8081" tls=#false
        client_header_timeout 3
        keepalive_timeout "90"
        send_timeout 5
        underscores_in_headers #true
        max_header_size 2048
        access_log #true
        http2 #true
        http3 #false
        return 302 "https://example.com/"
    }
}
"#);
    let [a, b] = &config.servers[..] else {
        panic!("two servers")
    };
    assert_eq!(a.limits.header_read_timeout, Duration::from_secs(5));
    assert_eq!(a.limits.idle_timeout, Duration::from_secs(120));
    assert_eq!(a.limits.body_timeout, Duration::from_secs(20));
    assert_eq!(a.limits.send_timeout, Duration::from_secs(30));
    assert!(!a.underscores_in_headers);
    assert_eq!(a.limits.max_header_size, 32 * 1024);
    assert_eq!(a.limits.max_concurrent_streams, 64);
    assert_eq!(a.limits.max_requests, 500);
    assert_eq!(a.limits.max_body_size, Some(2 << 20));
    assert!(!a.access_log && !a.http2 && a.http3);
    assert_eq!(
        a.names,
        [
            "example.com",
            "*.example.com",
            "example.org",
            "*.example.org"
        ]
    );
    assert_eq!(
        a.listens,
        [
            ListenAddr::Tcp {
                addr: "[::1]:8443".parse().unwrap(),
                tls: true
            },
            ListenAddr::Tcp {
                addr: "127.0.0.1:8080".parse().unwrap(),
                tls: false
            },
            ListenAddr::Udp("[::1]:8443".parse().unwrap()),
        ]
    );
    assert_eq!(a.locations[0].matcher, prefix("/static"));
    assert_eq!(
        a.locations[0].proxy_set_headers,
        [(
            "x-forwarded-proto".parse().unwrap(),
            "https".parse().unwrap()
        )]
    );

    assert_eq!(b.limits.header_read_timeout, Duration::from_secs(3));
    assert_eq!(b.limits.idle_timeout, Duration::from_secs(90));
    assert_eq!(b.limits.body_timeout, Duration::from_secs(20));
    assert_eq!(b.limits.send_timeout, Duration::from_secs(5));
    assert!(b.underscores_in_headers);
    assert_eq!(b.limits.max_header_size, 2048);
    assert_eq!(b.limits.max_concurrent_streams, 64);
    assert!(b.access_log && b.http2 && !b.http3);
    let ret = b.locations[0].ret.as_ref().unwrap();
    assert_eq!(ret.status, 302);

    let runtime = config.build().unwrap();
    assert_eq!(runtime.listens.len(), 4);
    match &runtime.listens[1] {
        Listen::Tcp {
            tls: None,
            http2,
            limits,
            ..
        } => {
            assert!(!http2);
            assert_eq!(limits.max_concurrent_streams, 64);
        }
        _ => panic!("plain TCP first"),
    }
    assert_eq!(
        runtime.router.sites[0].alt_svc.as_ref().unwrap(),
        "h3=\":8443\"; ma=86400"
    );
    assert!(!runtime.router.sites[0].access_log);
    assert!(!runtime.router.sites[0].underscores_in_headers);
    assert!(runtime.router.sites[1].underscores_in_headers);
}

#[test]
fn defaults() {
    let config = ok(&server(""));
    let s = &config.servers[0];
    assert_eq!(s.limits, crate::limits::Limits::default());
    assert!(s.http2 && s.http3 && s.access_log && !s.underscores_in_headers);
    assert!(s.names.is_empty());
    let l = &s.locations[..];
    assert_eq!(l.len(), 1);
    assert_eq!(l[0].matcher, prefix("/"));
    assert!(l[0].add_headers.is_empty() && l[0].ret.is_none());
    assert_eq!(l[0].max_body_size, Some(16 << 20));
}

#[test]
fn worker_threads() {
    assert_eq!(ok(&server("")).workers, None);
    let four = format!("worker_threads 4\n{}", server(""));
    assert_eq!(ok(&four).workers, NonZeroUsize::new(4));
    let auto = format!("worker_threads \"auto\"\n{}", server(""));
    assert_eq!(ok(&auto).workers, None);
    assert_eq!(
        errors(concat!(
            "worker_threads 0\n",
            "worker_threads 2000\n",
            "worker_threads \"many\"\n",
            "http { worker_threads 2; server { listen \"tcp://127.0.0.1:1\"; }; }\n",
        )),
        [
            "1:16: worker_threads 0 is out of range: between 1 and 1024",
            "2:1: duplicate `worker_threads` (first at t.kdl:1:1)",
            "3:1: duplicate `worker_threads` (first at t.kdl:1:1)",
            "4:8: `worker_threads` is not allowed in http (only in the top level)",
        ]
    );
    assert_eq!(
        errors(&format!("worker_threads \"many\"\n{}", server(""))),
        ["1:16: expected a number of threads or \"auto\", found \"many\""]
    );
}

#[test]
fn worker_connections() {
    assert_eq!(
        ok(&server("")).worker_connections,
        super::DEFAULT_WORKER_CONNECTIONS
    );
    let few = format!("worker_connections 16\n{}", server(""));
    assert_eq!(ok(&few).worker_connections, 16);
    assert_eq!(
        errors(concat!(
            "worker_connections 0\n",
            "worker_connections \"many\"\n",
            "http { worker_connections 2; server { listen \"tcp://127.0.0.1:1\"; }; }\n",
        )),
        [
            "1:20: worker_connections 0 is out of range: between 1 and 10000000",
            "2:1: duplicate `worker_connections` (first at t.kdl:1:1)",
            "3:8: `worker_connections` is not allowed in http (only in the top level)",
        ]
    );
}

#[test]
fn add_header_inheritance() {
    let config = ok(r#"
http {
    add_header "x-http" "1"
    add_header "x-http-2" "2"
    server {
        listen "tcp://127.0.0.1:1"
        location "/inherits" { }
        location "/own" { add_header "x-own" "1"; }
    }
    server {
        listen "tcp://127.0.0.1:2"
        add_header "x-server" "1"
        location "/inherits" { return 200; }
        location "/own" { add_header "x-own" "1" always=#true; }
    }
    server {
        listen "tcp://127.0.0.1:3"
        add_header "x-implicit" "1"
        return 204
    }
}
"#);
    let s = &config.servers;
    assert_eq!(headers(&s[0].locations[0]), ["x-http: 1", "x-http-2: 2"]);
    assert_eq!(headers(&s[0].locations[1]), ["x-own: 1"]);
    assert_eq!(headers(&s[1].locations[0]), ["x-server: 1"]);
    assert_eq!(headers(&s[1].locations[1]), ["x-own: 1"]);
    assert!(s[1].locations[1].add_headers[0].always);
    assert_eq!(headers(&s[2].locations[0]), ["x-implicit: 1"]);
    assert_eq!(s[2].locations[0].ret.as_ref().unwrap().status, 204);
}

#[test]
fn proxy_set_header_inheritance() {
    let config = ok(r#"
http {
    proxy_set_header "x-a" "1"
    server {
        listen "tcp://127.0.0.1:1"
        location "/a" { }
        location "/b" { proxy_set_header "x-b" "$host"; }
    }
}
"#);
    let l = &config.servers[0].locations;
    assert_eq!(l[0].proxy_set_headers[0].0, "x-a");
    assert_eq!(l[1].proxy_set_headers.len(), 1);
    assert_eq!(l[1].proxy_set_headers[0].1.source(), "$host");
}

/// nginx's `proxy_redirect`: `default` unless set, all or nothing from the outer
/// block, `off` alone.
#[test]
fn proxy_redirect_inheritance_and_errors() {
    let config = ok(r#"
http {
    proxy_redirect "http://a/" "/"
    server {
        listen "tcp://127.0.0.1:1"
        location "/a" { }
        location "/b" { proxy_redirect "default"; proxy_redirect "http://x/" "https://y/"; }
        location "/c" { proxy_redirect "off"; }
    }
    server {
        listen "tcp://127.0.0.1:2"
        proxy_redirect "off"
        location "/d" { }
    }
}
"#);
    let replace = |f: &str, t: &str| ProxyRedirect::Replace(f.into(), t.into());
    let l = &config.servers[0].locations;
    assert_eq!(l[0].proxy_redirects, [replace("http://a/", "/")]);
    assert_eq!(
        l[1].proxy_redirects,
        [ProxyRedirect::Default, replace("http://x/", "https://y/")]
    );
    assert_eq!(l[2].proxy_redirects, []);
    assert_eq!(config.servers[1].locations[0].proxy_redirects, []);
    let plain = ok(&server("        location \"/\" { }"));
    assert_eq!(
        plain.servers[0].locations[0].proxy_redirects,
        [ProxyRedirect::Default]
    );

    let e = server_errors(concat!(
        "        proxy_redirect \"sometimes\"\n",
        "        location \"/1\" { proxy_redirect \"\" \"/\"; }\n",
        "        location \"/2\" { proxy_redirect \"http://a/\" \"/\\n\"; }\n",
        "        location \"/3\" { proxy_redirect \"off\"; proxy_redirect \"default\"; }\n",
        "        location \"/4\" { proxy_redirect \"default\"; proxy_redirect \"off\"; }\n",
        "        location \"/5\" { proxy_redirect \"a\" \"b\" \"c\"; }\n",
    ));
    let expect = [
        "4:24: proxy_redirect \"sometimes\": expected \"default\", \"off\", or FROM and TO",
        "5:40: proxy_redirect: FROM is empty",
        "6:52: invalid header value",
        "7:47: `proxy_redirect \"off\"` cannot be combined",
        "8:51: `proxy_redirect \"off\"` cannot be combined",
        "9:48: `proxy_redirect` takes 1 to 2 arguments",
    ];
    expect_errors(&e, &expect);
}

#[test]
fn client_max_body_size_inheritance() {
    let config = ok(r#"
http {
    client_max_body_size "4k"
    server {
        listen "tcp://127.0.0.1:1"
        location "/" { }
        location "/unlimited" { client_max_body_size "0"; }
        location "/bytes" { client_max_body_size 100; }
    }
    server {
        listen "tcp://127.0.0.1:2"
        client_max_body_size "1g"
        location "/" { }
    }
}
"#);
    let s = &config.servers;
    assert_eq!(s[0].locations[0].max_body_size, Some(4096));
    assert_eq!(s[0].locations[1].max_body_size, None);
    assert_eq!(s[0].locations[2].max_body_size, Some(100));
    assert_eq!(s[0].limits.max_body_size, Some(4096));
    assert_eq!(s[1].locations[0].max_body_size, Some(1 << 30));
}

#[test]
fn include_splices_files_in_place() {
    let dir = TempDir::new("include");
    dir.write(
        "edge.kdl",
        "include \"common.kdl\"\nhttp {\n    include \"servers/*.kdl\"\n}\n",
    );
    // An include at the top level may hold what stands at the top level.
    dir.write("common.kdl", "// nothing yet\n");
    dir.write(
        "servers/b.kdl",
        "server {\n    listen \"tcp://127.0.0.1:2\"\n    location \"/\" {\n        include \"../headers.kdl\"\n    }\n}\n",
    );
    dir.write(
        "servers/a.kdl",
        "server {\n    listen \"tcp://127.0.0.1:1\"\n    include \"../headers.kdl\"\n}\n",
    );
    dir.write("servers/skipped.txt", "not kdl {");
    dir.write("headers.kdl", "add_header \"x-included\" \"yes\"\n");
    let config = load(&dir.0.join("edge.kdl")).unwrap_or_else(|e| panic!("{e}"));
    let s = &config.servers;
    assert_eq!(s.len(), 2);
    // Files of a glob in name order.
    assert_eq!(
        s[0].listens[0],
        ListenAddr::Tcp {
            addr: "127.0.0.1:1".parse().unwrap(),
            tls: true
        }
    );
    assert!(s[0].source.ends_with("a.kdl:1:1"), "{}", s[0].source);
    assert_eq!(headers(&s[0].locations[0]), ["x-included: yes"]);
    assert_eq!(headers(&s[1].locations[0]), ["x-included: yes"]);
}

#[test]
fn include_errors_point_into_the_included_file() {
    let dir = TempDir::new("include-errors");
    let main = dir.write(
        "edge.kdl",
        "http {\n    include \"bad.kdl\"\n    include \"missing.kdl\"\n    include \"none-*.kdl\"\n}\n",
    );
    dir.write(
        "bad.kdl",
        "server {\n    listen \"tcp://127.0.0.1:1\"\n    return 42\n}\n",
    );
    let Err(Errors(e)) = load(&main) else {
        panic!("errors expected")
    };
    let e: Vec<String> = e.iter().map(|d| d.to_string()).collect();
    let d = dir.0.display();
    assert_eq!(
        e,
        [
            format!("{d}/edge.kdl:3:13: cannot read {d}/missing.kdl: No such file or directory (os error 2)"),
            format!("{d}/bad.kdl:3:12: invalid status code 42: expected 200 to 999"),
        ]
    );
}

/// `quic_host_key` (http only) names a file relative to the config, read with it: a
/// missing file, or one too short to be a secret, is an error where it is named; a
/// good one keys every QUIC listener.
#[test]
fn quic_host_key_is_read_with_the_config() {
    let dir = TempDir::new("quic-host-key");
    dir.write("keys/host.key", &"k".repeat(32));
    dir.write("keys/short.key", &"k".repeat(31));
    let config = |http_key: &str, server_key: &str| {
        format!("http {{\n    {http_key}\n    server {{\n        listen \"udp://127.0.0.1:8443\"\n        {server_key}\n    }}\n}}\n")
    };
    let main = dir.write("edge.kdl", &config("quic_host_key \"keys/host.key\"", ""));
    let runtime = load(&main).unwrap().build().unwrap();
    assert!(matches!(
        &runtime.listens[..],
        [Listen::Udp {
            host_key: Some(_),
            ..
        }]
    ));

    let main = dir.write(
        "edge.kdl",
        &config(
            "quic_host_key \"keys/short.key\"",
            "quic_host_key \"keys/host.key\"",
        ),
    );
    let d = dir.0.display();
    let Err(Errors(e)) = load(&main) else {
        panic!("errors expected")
    };
    let e: Vec<String> = e.iter().map(|d| d.to_string()).collect();
    assert_eq!(
        e,
        [
            format!("{d}/edge.kdl:2:19: {d}/keys/short.key holds 31 bytes: a quic_host_key needs at least 32 random ones, e.g. from `openssl rand 80`"),
            format!("{d}/edge.kdl:5:9: `quic_host_key` is not allowed in server (only in http)"),
        ]
    );
    let main = dir.write("edge.kdl", &config("quic_host_key \"keys/none.key\"", ""));
    let Err(Errors(e)) = load(&main) else {
        panic!("errors expected")
    };
    assert_eq!(
        e[0].to_string(),
        format!("{d}/edge.kdl:2:19: cannot read {d}/keys/none.key: No such file or directory (os error 2)")
    );
    assert_eq!(e.len(), 1);
}

#[test]
fn include_cycles_are_errors() {
    let dir = TempDir::new("cycle");
    let main = dir.write("a.kdl", "http {\n    include \"b.kdl\"\n}\n");
    dir.write(
        "b.kdl",
        "server {\n    listen \"tcp://127.0.0.1:1\"\n}\ninclude \"a.kdl\"\n",
    );
    let Err(Errors(e)) = load(&main) else {
        panic!("errors expected")
    };
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(e[0].file, dir.0.join("b.kdl"));
    assert_eq!((e[0].line, e[0].column), (4, 9));
    assert!(
        e[0].message.starts_with("include cycle: "),
        "{}",
        e[0].message
    );

    // Including itself.
    let main = dir.write("self.kdl", "include \"self.kdl\"\n");
    let Err(Errors(e)) = load(&main) else {
        panic!("errors expected")
    };
    assert!(e[0].message.starts_with("include cycle: "), "{e:?}");
}

#[test]
fn certificates_load_relative_to_the_config() {
    let dir = TempDir::new("certs");
    dir.cert("tls/a");
    dir.cert("tls/b");
    let main = dir.write(
        "edge.kdl",
        r#"http {
    server {
        listen "tcp://127.0.0.1:8443"
        listen "udp://127.0.0.1:8443"
        server_name "a.example"
        ssl_certificate "tls/a.pem"
        ssl_certificate_key "tls/a.key"
    }
    server {
        listen "tcp://127.0.0.1:8443"
        server_name "b.example"
        ssl_certificate "tls/b.pem"
        ssl_certificate_key "tls/a.key"
    }
    server {
        listen "tcp://127.0.0.1:8443"
        server_name "c.example"
        ssl_certificate "tls/missing.pem"
        ssl_certificate_key "tls/a.key"
    }
}
"#,
    );
    let Err(Errors(e)) = load(&main) else {
        panic!("errors expected")
    };
    let at: Vec<(usize, usize)> = e.iter().map(|d| (d.line, d.column)).collect();
    assert_eq!(at, [(12, 25), (18, 25)], "{e:?}");
    assert!(e[0].message.starts_with("cannot load the certificate"));
    assert!(e[1].message.contains("missing.pem"), "{}", e[1].message);

    // Fixed: two servers on one address share a listener and pick certificates by SNI.
    let fixed = std::fs::read_to_string(&main)
        .unwrap()
        .replace(
            "tls/b.pem\"\n        ssl_certificate_key \"tls/a.key",
            "tls/b.pem\"\n        ssl_certificate_key \"tls/b.key",
        )
        .replace("tls/missing.pem", "tls/a.pem");
    std::fs::write(&main, fixed).unwrap();
    let config = load(&main).unwrap_or_else(|e| panic!("{e}"));
    assert!(config.servers.iter().all(|s| s.certificate.is_some()));
    let runtime = config.build().unwrap();
    assert_eq!(runtime.listens.len(), 2);
    assert_eq!(runtime.router.sites.len(), 3);
    assert_eq!(
        runtime
            .router
            .site(local("127.0.0.1:8443"), false, || Some("b.example"))
            .unwrap()
            .names,
        ["b.example"]
    );
    // The first server of a port is its default.
    assert_eq!(
        runtime
            .router
            .site(local("127.0.0.1:8443"), false, || Some("other"))
            .unwrap()
            .names,
        ["a.example"]
    );
}

#[test]
fn unknown_directives_and_contexts() {
    assert_eq!(
        errors("http {\n    bogus 1\n}\nserver {\n}\n"),
        [
            "2:5: unknown directive `bogus`",
            "4:1: `server` is not allowed at the top level (only in http)",
        ]
    );
    assert_eq!(
        errors("http {\n    location \"/\" { }\n    listen \"tcp://127.0.0.1:1\"\n    server { listen \"tcp://127.0.0.1:1\"; location \"/\" { location \"/a\" { } } }\n}\n"),
        [
            "2:5: `location` is not allowed in http (only in server)",
            "3:5: `listen` is not allowed in http (only in server)",
            "4:57: `location` is not allowed in location (only in server)",
        ]
    );
    assert_eq!(
        errors("http {\n}\n"),
        ["1:1: `http` has no `server`: edge would serve nothing"]
    );
    assert_eq!(
        errors("// nothing\n"),
        ["1:1: no `http` block: edge would serve nothing"]
    );
    assert_eq!(
        errors("http {\n    server { listen \"tcp://127.0.0.1:1\"; }\n}\nhttp {\n}\n"),
        ["4:1: duplicate `http` (first at t.kdl:1:1)"]
    );
    assert_eq!(
        errors("(t)http {\n    server { listen \"tcp://127.0.0.1:1\"; }\n}\n"),
        ["1:2: type annotations are not used in edge configs"]
    );
}

#[test]
fn argument_shapes() {
    assert_eq!(
        server_errors(
            "        return\n        http2 #true #false\n        server_name\n        add_header \"a\" \"b\" sometimes=#true\n        http3 { }\n        location \"/\"\n        return 200 \"x\" \"y\""
        ),
        [
            "4:9: `return` takes 1 to 2 arguments, found 0",
            "5:21: `http2` takes 1 argument, found 2",
            "6:9: `server_name` takes at least 1 argument, found 0",
            "7:28: `add_header` has no property `sometimes`",
            "8:9: `http3` takes 1 argument, found 0",
            "8:15: `http3` takes no block",
            "9:9: `location` needs a block: location { ... }",
            "10:24: `return` takes 1 to 2 arguments, found 3",
        ]
    );
    assert_eq!(
        server_errors(
            "        http2 \"yes\"\n        return \"200\"\n        client_max_body_size #true\n        add_header 1 \"v\""
        ),
        [
            "4:15: expected #true or #false, found \"yes\"",
            "5:16: expected an integer, found \"200\"",
            "6:30: expected a string such as \"10s\" or \"1m\", found #true",
            "7:20: expected a string, found 1",
        ]
    );
}

/// An IPv4-mapped IPv6 address cannot be listened on (edge's IPv6 sockets are
/// IPv6-only): refused with where it is and the IPv4 address to write, over TCP and
/// UDP; so is port 0.
#[test]
fn ipv4_mapped_and_port_0_listens_are_refused() {
    let mapped = "::ffff:127.0.0.1 is an IPv4-mapped IPv6 address, on which IPv6 sockets do not listen: write the IPv4 address, 127.0.0.1";
    assert_eq!(
        server_errors(concat!(
            "        listen \"udp://[::ffff:127.0.0.1]:443\"\n",
            "        listen \"tcp://[::ffff:127.0.0.1]:80\" tls=#false\n",
            "        listen \"tcp://127.0.0.1:0\"",
        )),
        [
            format!("4:16: invalid listen address \"udp://[::ffff:127.0.0.1]:443\": {mapped}"),
            format!("5:16: invalid listen address \"tcp://[::ffff:127.0.0.1]:80\": {mapped}"),
            "6:16: invalid listen address \"tcp://127.0.0.1:0\": port 0 is not a port to listen on"
                .into(),
        ]
    );
}

#[test]
fn bad_values() {
    assert_eq!(
        server_errors(concat!(
            "        client_max_body_size \"1x\"\n",
            "        keepalive_timeout \"10y\"\n",
            "        client_header_timeout \"0s\"\n",
            "        max_header_size \"100\"\n",
            "        max_concurrent_streams 0\n",
            "        keepalive_requests -1\n",
            "        server_name \"bad name\"\n",
            "        add_header \"x-a\" \"line\\nbreak\"\n",
            "        proxy_set_header \"bad:name\" \"v\"\n",
            "        listen \"tcp://localhost:443\"\n",
            "        listen \"0.0.0.0:443\"\n",
            "        location \"=\" \"/a\" { return 99; }\n",
            "        location \"=\" \"/b\" { return 301; }\n",
            "        location \"=\" \"/c\" { return 302 \"\"; }\n",
            "        location \"~\" \"\\\\.php$\" { }\n",
            "        location \"!\" \"/d\" { }\n",
            "        location \"e\" { }",
        )),
        [
            "4:30: invalid size \"1x\": expected a number with an optional k, m or g suffix, e.g. \"1m\"",
            "5:27: invalid duration \"10y\": expected a number with a unit (ms, s, m, h, d), e.g. \"10s\"",
            "6:31: duration \"0s\" is out of range: between 1ms and 24h",
            "7:25: max_header_size \"100\" is out of range: between 1k and 16m",
            "8:32: max_concurrent_streams 0 is out of range: between 1 and 1000000",
            "9:28: keepalive_requests -1 is out of range: between 1 and 1000000000000",
            "10:21: invalid server name \"bad name\": expected a host name, *.suffix, .suffix or _",
            "11:26: invalid header value \"line\\nbreak\": control characters are not allowed",
            "12:26: invalid header name \"bad:name\"",
            "13:16: invalid listen address \"tcp://localhost:443\": expected an IP address and a port, e.g. tcp://0.0.0.0:443 or udp://[::]:443",
            "14:16: invalid listen address \"0.0.0.0:443\": expected tcp://IP:PORT or udp://IP:PORT",
            "15:36: invalid status code 99: expected 200 to 999",
            "16:36: return 301 is a redirect: it needs a URL, e.g. return 301 \"https://example.com/\"",
            "17:40: a redirect URL cannot be empty",
            "18:18: regular-expression locations are not supported: use a prefix or \"=\"",
            "19:18: unknown location modifier \"!\": expected \"=\" or \"^~\"",
            "20:18: invalid location \"e\": a location path starts with /",
        ]
    );
}

#[test]
fn conflicts() {
    assert_eq!(
        server_errors(concat!(
            "        listen \"tcp://127.0.0.1:8443\"\n",
            "        keepalive_timeout \"1s\"\n",
            "        keepalive_timeout \"2s\"\n",
            "        listen \"udp://127.0.0.1:8443\" tls=#false\n",
            "        ssl_certificate \"a.pem\"\n",
            "        location \"=\" \"/a\" { }\n",
            "        location \"=\" \"/a\" { }\n",
            "        location \"/a\" { }",
        )),
        [
            "4:16: duplicate listen \"tcp://127.0.0.1:8443\" (first at t.kdl:3:16)",
            "6:9: duplicate `keepalive_timeout` (first at t.kdl:5:9)",
            "7:39: QUIC always uses TLS: tls=#false is only for tcp listens",
            "8:25: `ssl_certificate` without `ssl_certificate_key`",
            "10:22: duplicate location (first at t.kdl:9:22)",
        ]
    );
    assert_eq!(
        server_errors("        return 404\n        location \"/\" { }"),
        ["5:18: this location is never used: the server answers every request with the `return` at t.kdl:4:9"]
    );
    assert_eq!(
        server_errors("        listen \"udp://127.0.0.1:8443\"\n        http3 #false"),
        ["4:16: udp listen in a server with `http3 #false`"]
    );
    assert_eq!(
        errors("http {\n    server { }\n    server { listen \"tcp://1.2.3.4:80\" tls=#false; }\n    server { listen \"tcp://1.2.3.4:80\"; }\n}\n"),
        [
            "2:5: `server` has no `listen`",
            "4:21: tcp://1.2.3.4:80 is TLS here but plain (tls=#false) at t.kdl:3:21: servers sharing an address share its listener",
        ]
    );
}

#[test]
fn kdl_syntax_errors_have_positions() {
    let e = errors("http {\n    server {\n        listen \"tcp://127.0.0.1:1\n    }\n}\n");
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(e[0].starts_with("3:16: KDL syntax: "), "{e:?}");
    let e = errors("http {\n    add_header \"a\" 1.\n}\n");
    assert!(e[0].starts_with("2:20: KDL syntax: "), "{e:?}");
}

#[test]
fn every_error_in_file_order() {
    let e = errors(concat!(
        "http {\n",
        "    nope\n",
        "    server {\n",
        "        listen \"tcp://127.0.0.1:1\"\n",
        "        return 1\n",
        "        location \"/\" { add_header \"x\"; }\n",
        "    }\n",
        "    keepalive_timeout \"forever\"\n",
        "}\n",
    ));
    assert_eq!(
        e,
        [
            "2:5: unknown directive `nope`",
            "5:16: invalid status code 1: expected 200 to 999",
            "6:24: `add_header` takes 2 arguments, found 1",
            "8:23: invalid duration \"forever\": expected a number with a unit (ms, s, m, h, d), e.g. \"10s\"",
        ]
    );
}

#[test]
fn wildcards() {
    use super::parse::wildcard;
    assert!(wildcard(b"*.kdl", b"a.kdl"));
    assert!(wildcard(b"*.kdl", b".kdl"));
    assert!(!wildcard(b"*.kdl", b"a.kdl.bak"));
    assert!(wildcard(b"a?c*", b"abcdef"));
    assert!(wildcard(b"*a*b*", b"xxaxxbxx"));
    assert!(!wildcard(b"*a*b", b"xxaxxbxxc"));
    assert!(wildcard(b"**", b""));
    assert!(!wildcard(b"?", b""));
}

/// Garbage never panics: every prefix of a valid config is checked.
#[test]
fn truncated_configs_do_not_panic() {
    let text = server("        location \"/é\" { add_header \"x\" \"é\"; return 200 \"é\"; }");
    for (i, _) in text.char_indices() {
        let _ = parse(&text[..i], Path::new("t.kdl"));
    }
}

#[test]
fn upstreams_and_proxy_pass() {
    let config = ok(r#"
http {
    proxy_read_timeout "5s"
    upstream "app" {
        server "127.0.0.1:8080" weight=3 max_fails=3 fail_timeout="30s"
        server "localhost:8081" max_fails=0 fail_timeout=5
        server "127.0.0.1:8082"
        server "127.0.0.1:8083" fail_timeout=0
        server "127.0.0.1:8084" fail_timeout="0s"
        keepalive 4
    }
    server {
        listen "tcp://127.0.0.1:1"
        proxy_connect_timeout "2s"
        location "/app" { proxy_pass "http://app"; }
        location "/direct" {
            proxy_pass "http://127.0.0.1:9000"
            proxy_send_timeout "7s"
            proxy_total_timeout "1m"
        }
        location "/port80" { proxy_pass "http://127.0.0.1"; }
        location "/none" { }
    }
}
"#);
    let l = &config.servers[0].locations;
    let app = l[0].proxy_pass.as_ref().unwrap();
    assert_eq!(app.upstream.name, "app");
    assert_eq!(app.upstream.keepalive, 4);
    let s = std::time::Duration::from_secs;
    let peers: Vec<_> = app
        .upstream
        .peers
        .iter()
        .map(|p| (p.addr.port(), p.weight, p.max_fails, p.fail_timeout))
        .collect();
    assert_eq!(
        peers,
        [
            (8080, 3, 3, s(30)),
            (8081, 1, 0, s(5)),
            (8082, 1, 1, s(10)),
            (8083, 1, 1, s(0)),
            (8084, 1, 1, s(0))
        ]
    );
    let t = app.timeouts;
    assert_eq!(
        (t.connect, t.read, t.send, t.total),
        (s(2), s(5), s(60), None)
    );
    let direct = l[1].proxy_pass.as_ref().unwrap();
    assert_eq!(direct.upstream.name, "127.0.0.1:9000", "the default Host");
    assert_eq!(
        direct.upstream.peers[0].addr,
        "127.0.0.1:9000".parse().unwrap()
    );
    assert_eq!(direct.timeouts.send, s(7));
    assert_eq!(direct.timeouts.total, Some(s(60)));
    let port80 = l[2].proxy_pass.as_ref().unwrap();
    assert_eq!(port80.upstream.peers[0].addr.port(), 80);
    assert!(l[3].proxy_pass.is_none());
    // Locations naming the same upstream share it (and its round robin).
    assert!(config.build().is_ok());
}

#[test]
fn proxy_errors() {
    let e = errors(
        r#"http {
    upstream "a" { }
    upstream "b" { server "127.0.0.1:1" weight=0; keepalive -1; retries 3; }
    upstream "c d" { server "127.0.0.1:1"; }
    server {
        listen "tcp://127.0.0.1:1"
        location "/1" { proxy_pass "http://nowhere.invalid"; }
        location "/2" { proxy_pass "https://x"; }
        location "/3" { proxy_pass "http://a/path"; }
        location "/4" { proxy_set_header "x" "$nope"; }
        location "/5" { proxy_read_timeout "0s"; }
    }
    proxy_pass "http://a"
}"#,
    );
    let expect = [
        "2:5: upstream \"a\" has no `server`",
        "3:5: upstream \"b\" has no `server`",
        "3:41: weight 0 is out of range",
        "3:61: keepalive -1 is out of range",
        "3:65: unknown directive `retries` in upstream",
        "4:14: invalid upstream name \"c d\"",
        "7:36: proxy_pass: no upstream named \"nowhere.invalid\"",
        "8:36: proxy_pass to https:// is not supported yet",
        "9:36: proxy_pass \"http://a/path\": a URI part is not supported",
        "10:46: unknown variable $nope",
        "11:44: duration \"0s\" is out of range",
        "13:5: `proxy_pass` is not allowed in http",
    ];
    expect_errors(&e, &expect);
}

#[test]
fn upstream_server_errors() {
    let e = errors(
        r#"http {
    upstream "a" {
        server "127.0.0.1:1" max_fails=-1 fail_timeout="25h"
        server "127.0.0.1:2" max_fails=1001 fail_timeout="10x"
        server "127.0.0.1:3" max_fails="2" fail_timeout=#true
        server "127.0.0.1:4" max_conns=1
    }
}"#,
    );
    let expect = [
        "2:5: upstream \"a\" has no `server`",
        "3:30: max_fails -1 is out of range: between 0 and 1000",
        "3:43: duration \"25h\" is out of range: between 0 and 24h",
        "4:30: max_fails 1001 is out of range: between 0 and 1000",
        "4:45: invalid duration \"10x\"",
        "5:30: expected an integer, found \"2\"",
        "5:44: expected a string such as \"10s\"",
        "6:30: `server` has no property `max_conns`",
    ];
    expect_errors(&e, &expect);
}

#[test]
fn server_names_match_in_any_case_and_with_a_trailing_dot() {
    let runtime = ok(r#"
http {
    server {
        listen "tcp://127.0.0.1:8080" tls=#false
        server_name "default.test"
    }
    server {
        listen "tcp://127.0.0.1:8080" tls=#false
        server_name "exact.test" "*.example.org"
    }
}
"#)
    .build()
    .unwrap();
    let local = local("127.0.0.1:8080");
    for host in [
        "exact.test",
        "EXACT.test",
        "exact.test.",
        "a.example.org",
        "A.EXAMPLE.ORG",
        "a.Example.org.",
    ] {
        let site = runtime.router.site(local, false, || Some(host)).unwrap();
        assert_eq!(site.names, ["exact.test", "*.example.org"], "{host}");
    }
    for host in [
        "example.org",
        "exact.test..",
        "xexact.test",
        "a.example.org.x",
        "é.example.or",
    ] {
        let site = runtime.router.site(local, false, || Some(host)).unwrap();
        assert_eq!(site.names, ["default.test"], "{host}");
    }
}

/// A server answers only on the sockets it listens on: a name-based server on one
/// address is not reachable through another address of the same port (nginx picks
/// among the servers of the socket reached), nor over QUIC when it listens on TCP
/// only. Among them, an exact name wins over a wildcard whatever their order.
#[test]
fn servers_are_picked_among_those_on_the_socket_reached() {
    let runtime = ok(r#"
http {
    server {
        listen "tcp://127.0.0.1:8080" tls=#false
        server_name "admin.internal"
    }
    server {
        listen "tcp://127.0.0.2:8080" tls=#false
        listen "udp://127.0.0.1:8080"
        server_name "*.example.com"
    }
    server {
        listen "tcp://127.0.0.2:8080" tls=#false
        server_name "www.example.com" "*.example.com"
    }
    server {
        listen "tcp://0.0.0.0:8080" tls=#false
        server_name "any.test"
    }
}
"#)
    .build()
    .unwrap();
    // Port 8080 on each address; "": no server.
    for (ip, udp, host, want) in [
        ("127.0.0.2", false, "admin.internal", "*.example.com"),
        ("127.0.0.2", false, "www.example.com", "www.example.com"),
        ("127.0.0.2", false, "a.example.com", "*.example.com"),
        ("127.0.0.1", false, "www.example.com", "admin.internal"),
        ("127.0.0.1", true, "admin.internal", "*.example.com"),
        ("10.0.0.1", false, "admin.internal", "any.test"),
        ("10.0.0.1", true, "any.test", ""),
        ("[::1]", false, "any.test", ""),
    ] {
        let site = runtime
            .router
            .site(local(&format!("{ip}:8080")), udp, || Some(host));
        let name = site.map_or("", |s| s.names[0].as_str());
        assert_eq!(name, want, "{ip} udp={udp} {host}");
    }
}

/// What edge frames or keeps per connection cannot be set by `add_header` or
/// `proxy_set_header` (it would be dropped without a word), but nginx's
/// `proxy_set_header "connection" ""` is what edge does anyway. Values may use
/// variables in `return` too, and an unknown one is an error there as well.
#[test]
fn headers_edge_sets_itself_and_variables_everywhere() {
    let errs = server_errors(concat!(
        "        add_header \"Content-Length\" \"3\"\n",
        "        add_header \"connection\" \"close\"\n",
        "        proxy_set_header \"upgrade\" \"$http_upgrade\"\n",
        "        proxy_set_header \"te\" \"trailers\"\n",
        "        location \"/a\" { return 200 \"costs $5\"; }\n",
        "        location \"/b\" { return 101; }\n",
    ));
    assert_eq!(errs.len(), 6, "{errs:#?}");
    assert!(errs[0].starts_with("4:20: edge sets content-length of a response itself"));
    assert!(errs[1].starts_with("5:20: edge sets connection of a response itself"));
    assert!(errs[2].starts_with("6:26: edge sets upgrade of the upstream request itself"));
    assert!(errs[3].starts_with("7:26: edge sets te "));
    assert!(
        errs[4].starts_with("8:36: unknown variable $5"),
        "{}",
        errs[4]
    );
    assert!(
        errs[5].starts_with("9:32: invalid status code 101"),
        "{}",
        errs[5]
    );

    let config = ok(&server(concat!(
        "        proxy_set_header \"connection\" \"\"\n",
        "        add_header \"x-host\" \"$host\"\n",
        "        return 301 \"https://$host$request_uri\"\n",
    )));
    let location = &config.servers[0].locations[0];
    assert_eq!(location.proxy_set_headers[0].1.source(), "");
    assert_eq!(headers(location), ["x-host: $host"]);
    let ret = location.ret.as_ref().unwrap();
    assert_eq!(
        ret.text.as_ref().unwrap().source(),
        "https://$host$request_uri"
    );
}
