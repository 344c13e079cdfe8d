//! `edge -t`: the binary checks a config and reports every problem as
//! `FILE:LINE:COLUMN: message`, exiting non-zero, or says it is valid.

use std::path::Path;
use std::process::Command;

#[path = "common/temp_dir.rs"]
mod temp_dir;

use temp_dir::TempDir;

/// `edge -t [--config FILE]`: success, and stderr lines.
fn check(config: Option<&Path>) -> (bool, Vec<String>) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_edge"));
    cmd.arg("-t").env("EDGE_LOG", "warn");
    if let Some(path) = config {
        cmd.arg("--config").arg(path);
    }
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    (
        out.status.success(),
        stderr.lines().map(str::to_owned).collect(),
    )
}

/// Checks a broken config and compares the lines about it, `FILE` standing for its path.
fn fails_with(dir: &TempDir, text: &str, expected: &[&str]) {
    let path = dir.write("edge.kdl", text);
    let (ok, lines) = check(Some(&path));
    assert!(!ok, "accepted:\n{text}");
    let file = path.display().to_string();
    let expected: Vec<String> = expected
        .iter()
        .map(|l| l.replace("FILE", &file))
        .chain(["edge: configuration test failed".to_owned()])
        .collect();
    assert_eq!(lines, expected);
}

const VALID: &str = r#"
http {
    client_max_body_size "1m"
    server {
        listen "tcp://127.0.0.1:8443"
        listen "udp://127.0.0.1:8443"
        server_name "localhost"
        add_header "x-server" "edge"
        location "/" {
            return 200 "root\n"
        }
    }
}
"#;

#[test]
fn valid_config() {
    let dir = TempDir::new("valid");
    let (ok, lines) = check(Some(&dir.write("edge.kdl", VALID)));
    assert!(ok, "{lines:?}");
    assert_eq!(lines, ["edge: configuration is valid"]);
}

#[test]
fn built_in_default_is_valid() {
    let (ok, lines) = check(None);
    assert!(ok, "{lines:?}");
    assert_eq!(lines, ["edge: configuration is valid"]);
}

#[test]
fn example_config_is_valid() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/edge.kdl");
    let (ok, lines) = check(Some(&example));
    assert!(ok, "{lines:?}");
}

#[test]
fn missing_file() {
    let dir = TempDir::new("missing");
    let path = dir.0.join("nope.kdl");
    let (ok, lines) = check(Some(&path));
    assert!(!ok);
    // About the whole file: no line or column.
    assert!(
        lines[0].starts_with(&format!("{}: No such file", path.display())),
        "{lines:?}"
    );
    std::fs::write(&path, b"http {\n\xff}").unwrap();
    let (ok, lines) = check(Some(&path));
    assert!(!ok);
    let want = format!(
        "{}: not UTF-8 text: an invalid byte at offset 7",
        path.display()
    );
    assert_eq!(lines[0], want);
}

/// `--listen` with port 0 (TCP and UDP would get different ports, neither the one the
/// sites answer on) or an IPv4-mapped IPv6 address (which edge's IPv6-only sockets
/// cannot bind) is refused, with clap's exit code for a bad argument.
#[test]
fn unlistenable_listen_arguments_are_refused() {
    for (addr, why) in [
        ("127.0.0.1:0", "port 0 is not a port to listen on"),
        (
            "[::ffff:127.0.0.1]:8443",
            "::ffff:127.0.0.1 is an IPv4-mapped IPv6 address, on which IPv6 sockets do not listen: write the IPv4 address, 127.0.0.1",
        ),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_edge"))
            .args(["-t", "--listen", addr])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{addr}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(why), "{stderr}");
    }
}

#[test]
fn unknown_directive() {
    let dir = TempDir::new("unknown");
    fails_with(
        &dir,
        &VALID.replace(
            "add_header \"x-server\" \"edge\"",
            "add_headr \"x-server\" \"edge\"",
        ),
        &["FILE:8:9: unknown directive `add_headr`"],
    );
}

#[test]
fn bad_status() {
    let dir = TempDir::new("status");
    fails_with(
        &dir,
        &VALID.replace("return 200", "return 1200"),
        &["FILE:10:20: invalid status code 1200: expected 200 to 999"],
    );
}

#[test]
fn bad_size() {
    let dir = TempDir::new("size");
    fails_with(
        &dir,
        &VALID.replace("\"1m\"", "\"1mb\""),
        &["FILE:3:26: invalid size \"1mb\": expected a number with an optional k, m or g suffix, e.g. \"1m\""],
    );
}

#[test]
fn kdl_syntax_error() {
    let dir = TempDir::new("syntax");
    let path = dir.write("edge.kdl", &VALID.replace("\"localhost\"", "\"localhost"));
    let (ok, lines) = check(Some(&path));
    assert!(!ok);
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(
        lines[0].starts_with(&format!("{}:7:21: KDL syntax: ", path.display())),
        "{lines:?}"
    );
}

#[test]
fn error_in_included_file() {
    let dir = TempDir::new("include");
    let included = dir.write(
        "site.kdl",
        "server {\n    listen \"tcp://127.0.0.1:8443\"\n    return 200 \"ok\" always=#true\n}\n",
    );
    let path = dir.write("edge.kdl", "http {\n    include \"site.kdl\"\n}\n");
    let (ok, lines) = check(Some(&path));
    assert!(!ok);
    assert_eq!(
        lines,
        [
            format!(
                "{}:3:21: `return` has no property `always`",
                included.display()
            ),
            "edge: configuration test failed".into(),
        ]
    );
}

#[test]
fn every_error_of_a_file() {
    let dir = TempDir::new("several");
    fails_with(
        &dir,
        r#"http {
    keepalive_timeout "soon"
    server {
        listen "udp://127.0.0.1:8443"
        listen "tcp://127.0.0.1"
        http3 #false
        location "/" {
            return 301
            client_max_body_size "-1"
        }
        location "/" { }
    }
    location "/x" { }
}
"#,
        &[
            "FILE:2:23: invalid duration \"soon\": expected a number with a unit (ms, s, m, h, d), e.g. \"10s\"",
            "FILE:4:16: udp listen in a server with `http3 #false`",
            "FILE:5:16: invalid listen address \"tcp://127.0.0.1\": expected an IP address and a port, e.g. tcp://0.0.0.0:443 or udp://[::]:443",
            "FILE:8:20: return 301 is a redirect: it needs a URL, e.g. return 301 \"https://example.com/\"",
            "FILE:9:34: invalid size \"-1\": expected a number with an optional k, m or g suffix, e.g. \"1m\"",
            "FILE:11:18: duplicate location (first at FILE:7:18)",
            "FILE:13:5: `location` is not allowed in http (only in server)",
        ],
    );
}

/// A path to something endless is an error, not a hang or a memory blow-up: the config
/// itself, an include, a certificate.
#[test]
fn endless_files_are_errors() {
    let dir = TempDir::new("endless");
    let (ok, lines) = check(Some(Path::new("/dev/zero")));
    assert!(!ok);
    assert!(lines[0].contains("larger than"), "{lines:?}");

    let path = dir.write("edge.kdl", "http {\n    include \"/dev/zero\"\n}\n");
    let (ok, lines) = check(Some(&path));
    assert!(!ok);
    assert!(
        lines[0].starts_with(&format!(
            "{}:2:13: cannot read /dev/zero: larger than",
            path.display()
        )),
        "{lines:?}"
    );

    let path = dir.write(
        "tls.kdl",
        "http {\n    server {\n        listen \"tcp://127.0.0.1:8443\"\n        \
         ssl_certificate \"/dev/zero\"\n        ssl_certificate_key \"/dev/zero\"\n    }\n}\n",
    );
    let (ok, lines) = check(Some(&path));
    assert!(!ok);
    assert!(lines[0].contains("larger than"), "{lines:?}");
}
