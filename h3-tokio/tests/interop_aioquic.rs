//! aioquic (Python, from PyPI) as the client against h3-tokio's server, through
//! `tests/peers/aioquic_client.py` and the venv `scripts/setup.sh` makes.

mod support;

use std::path::PathBuf;

use serde_json::Value;
use support::app::{pattern, sha256_hex, sha256_response_body};
use support::our_server::{self, OurServer};
use support::tls;

fn python() -> PathBuf {
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.deps/venv/bin/python");
    assert!(
        venv.exists(),
        "{} missing: run scripts/test.sh (it installs aioquic)",
        venv.display()
    );
    venv
}

/// Runs the aioquic client against `server` and returns its JSON lines.
async fn aioquic(server: &OurServer, args: &[&str]) -> Vec<Value> {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/peers/aioquic_client.py");
    let port = server.addr().port().to_string();
    let out = tokio::process::Command::new(python())
        .arg(script)
        .args(["--port", &port, "--insecure", "--timeout", "60"])
        .args(args)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "aioquic {args:?} failed ({}): {stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn pairs(v: &Value) -> Vec<(String, String)> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p[0].as_str().unwrap().to_owned(),
                p[1].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn server() -> OurServer {
    our_server::spawn(tls::server_endpoint(), h3_tokio::Config::default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get() {
    let s = server();
    let r = &aioquic(&s, &["get", "/hello"]).await[0];
    assert_eq!(r["status"], 200);
    assert!(pairs(&r["headers"]).contains(&("x-test".into(), "yes".into())));
    assert_eq!(r["body_sha256"], sha256_hex(b"hello world\n"));
    assert_eq!(r["error"], Value::Null);
}

/// aioquic ends a GET's stream with its HEADERS frame: the handler knows at once that
/// no body follows. A POST's body is not over before it is read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_ended_with_its_head_has_no_body_to_wait_for() {
    let s = server();
    let ended = |r: &Value| {
        let headers = pairs(&r["headers"]);
        let found = headers.iter().find(|(n, _)| n == "x-body-ended");
        found.map(|(_, v)| v.clone())
    };
    let r = &aioquic(&s, &["get", "/inspect"]).await[0];
    assert_eq!(r["status"], 200);
    assert_eq!(ended(r).as_deref(), Some("yes"));
    let r = &aioquic(&s, &["post", "/inspect", "--size", "1000"]).await[0];
    assert_eq!(r["status"], 200);
    assert_eq!(ended(r).as_deref(), Some("no"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_10mib_checked_by_hash_with_trailers_both_ways() {
    let s = server();
    let size = 10 << 20;
    let r = &aioquic(
        &s,
        &[
            "post",
            "/sha256",
            "--size",
            &size.to_string(),
            "--trailer",
            "x-checksum=sha256",
        ],
    )
    .await[0];
    assert_eq!(r["status"], 200);
    assert_eq!(r["sent_sha256"], sha256_hex(&pattern(size)));
    assert_eq!(
        r["body_sha256"],
        sha256_hex(&sha256_response_body(&pattern(size)))
    );
    assert_eq!(
        pairs(&r["trailers"]),
        [("x-checksum".to_owned(), "sha256".to_owned())]
    );

    let t = &aioquic(&s, &["get", "/trailers"]).await[0];
    assert_eq!(
        pairs(&t["trailers"]),
        [
            ("x-trailer-one".to_owned(), "1".to_owned()),
            ("x-trailer-two".to_owned(), "2".to_owned())
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_concurrent_requests_on_one_connection() {
    let s = server();
    let lines = aioquic(&s, &["concurrent", "/bytes/1000", "--count", "100"]).await;
    assert_eq!(lines.len(), 100);
    let want = sha256_hex(&pattern(1000));
    for r in &lines {
        assert_eq!(r["status"], 200);
        assert_eq!(r["body_sha256"], want);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_upload_and_download() {
    let s = server();
    let up = aioquic(
        &s,
        &[
            "cancel-upload",
            "/sha256",
            "--size",
            "8388608",
            "--after",
            "2097152",
        ],
    )
    .await;
    assert_eq!(up[0]["error"], "cancelled");
    assert_eq!(
        up[1]["status"], 200,
        "connection unusable after the cancel: {up:?}"
    );
    for _ in 0..200 {
        if !s.errors().is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert!(
        !s.errors().is_empty(),
        "the handler did not see the cancelled upload as an error"
    );

    let down = aioquic(
        &s,
        &["cancel-download", "/bytes/1073741824", "--after", "1048576"],
    )
    .await;
    assert_eq!(down[0]["error"], "cancelled");
    assert_eq!(down[1]["status"], 200);
    assert_eq!(down[1]["body_sha256"], sha256_hex(b"hello world\n"));
}
