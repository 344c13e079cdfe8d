//! What the end-to-end tests share: a running edge binary with a temporary config, and
//! temporary directories. Each test crate that uses it also includes h3-tokio's test
//! `support` module (for the test certificate).

#![allow(dead_code)]

mod temp_dir;

pub use temp_dir::TempDir;

use std::net::UdpSocket;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// A running edge process, killed on drop.
pub struct Edge {
    child: Child,
    pub port: u16,
    pub dir: TempDir,
    /// The `EDGE_LOG` filter.
    log: String,
    /// Whether stderr goes to `edge.log`.
    logged: bool,
}

impl Drop for Edge {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port free for both TCP and UDP on 127.0.0.1 (bound, then released). It lies below
/// the kernel's ephemeral range, so that no `bind(0)` of a concurrent test (an origin,
/// a client) takes it before its user binds it, and it is handed out once per process:
/// an edge that lost its port to another socket would otherwise fail to start while
/// the other socket answered for it.
pub fn free_port() -> u16 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let ephemeral = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or(32768);
    let (low, span) = (10_000, ephemeral.saturating_sub(10_000));
    if span < 1_000 {
        return ephemeral_port();
    }
    // Each process starts at its own place in the range.
    let start = std::process::id().wrapping_mul(7919) % span;
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        if n >= span {
            return ephemeral_port();
        }
        let port = (low + (start + n) % span) as u16;
        let free = UdpSocket::bind(("127.0.0.1", port)).is_ok()
            && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok();
        if free {
            return port;
        }
    }
}

/// Whether a UDP socket is bound to `port` on this host (`/proc/net/udp` lists local
/// addresses as `0100007F:1F90`). Binding it to find out could take it from edge.
fn udp_bound(port: u16) -> bool {
    let table = std::fs::read_to_string("/proc/net/udp").unwrap_or_default();
    let local = format!(":{port:04X} ");
    table.lines().skip(1).any(|l| {
        l.split_whitespace()
            .nth(1)
            .is_some_and(|a| format!("{a} ").ends_with(&local))
    })
}

/// hyperium's h2 client over TLS to edge on `port` (its connection driven by a task of
/// its own), ready for a request: for what curl cannot send.
pub async fn h2_client(port: u16) -> h2::client::SendRequest<bytes::Bytes> {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let crypto = crate::support::tls::client_crypto(&[b"h2"]);
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(crypto))
        .connect(name, tcp)
        .await
        .unwrap();
    let (send, conn) = h2::client::handshake(tls).await.unwrap();
    tokio::spawn(conn);
    send.ready().await.unwrap()
}

/// A port free for both TCP and UDP, as the kernel picks it.
fn ephemeral_port() -> u16 {
    loop {
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = udp.local_addr().unwrap().port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

impl Edge {
    /// Starts edge with `config`, where `PORT` stands for a free port (TCP and UDP) and
    /// `cert.pem`/`key.pem` (next to the config) hold the test certificate. `log`: the
    /// `EDGE_LOG` filter.
    pub fn start(name: &str, config: &str, log: &str) -> Edge {
        Edge::spawn(name, config, log, false)
    }

    /// Edge on one plain TCP listener (HTTP/1.1, and HTTP/2 by prior knowledge), with
    /// `http` in its http block and `location` the directives of its `location "/"`.
    pub fn plain(name: &str, http: &str, location: &str) -> Edge {
        let config = format!(
            r#"
http {{
    {http}
    server {{
        listen "tcp://127.0.0.1:PORT" tls=#false
        location "/" {{ {location} }}
    }}
}}
"#
        );
        Edge::start(name, &config, "warn")
    }

    /// [`Edge::start`], with edge's log kept for [`Edge::log`].
    pub fn start_logged(name: &str, config: &str, log: &str) -> Edge {
        Edge::spawn(name, config, log, true)
    }

    /// What edge logged so far (started by [`Edge::start_logged`]).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.0.join("edge.log")).unwrap()
    }

    fn spawn(name: &str, config: &str, log: &str, logged: bool) -> Edge {
        let dir = TempDir::new(name);
        let (cert, key) = crate::support::tls::pem();
        std::fs::write(dir.0.join("cert.pem"), cert).unwrap();
        std::fs::write(dir.0.join("key.pem"), key).unwrap();
        let port = free_port();
        let path = dir.0.join("edge.kdl");
        std::fs::write(&path, config.replace("PORT", &port.to_string())).unwrap();
        let child = Edge::launch(&dir, log, logged);
        let edge = Edge {
            child,
            port,
            dir,
            log: log.to_owned(),
            logged,
        };
        edge.wait_listening();
        edge
    }

    /// Stops edge (SIGKILL, so that no connection is closed on the way) and starts it
    /// again with the same config, on the same port.
    pub fn restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.child = Edge::launch(&self.dir, &self.log, self.logged);
        self.wait_listening();
    }

    fn launch(dir: &TempDir, log: &str, logged: bool) -> Child {
        let stderr = if logged {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(dir.0.join("edge.log"))
                .unwrap();
            Stdio::from(file)
        } else {
            Stdio::inherit()
        };
        Command::new(env!("CARGO_BIN_EXE_edge"))
            .arg("--config")
            .arg(dir.0.join("edge.kdl"))
            .env("EDGE_LOG", log)
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap()
    }

    /// Until edge accepts on TCP and, if it listens there, has the UDP port bound: edge
    /// binds in config order, and a QUIC client's first packet to an unbound port is
    /// lost (a second's retransmission) or refused (aioquic fails at once).
    fn wait_listening(&self) {
        let config = std::fs::read_to_string(self.dir.0.join("edge.kdl")).unwrap();
        let udp = config.contains(&format!("udp://127.0.0.1:{}", self.port));
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err()
            || udp && !udp_bound(self.port)
        {
            assert!(Instant::now() < deadline, "edge did not start listening");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The process's peak resident memory so far (`VmHWM`), in bytes.
    pub fn peak_rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
        let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
        kib * 1024
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Runs `h3-tokio/tests/peers/aioquic_client.py` against edge's UDP `port` (`args`:
/// what follows `--port`): its JSON lines, one per request.
pub fn aioquic(port: u16, args: &[&str]) -> Vec<serde_json::Value> {
    let out = Command::new(root().join(".deps/venv/bin/python"))
        .arg(root().join("h3-tokio/tests/peers/aioquic_client.py"))
        .args(["--port", &port.to_string()])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "aioquic: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
        .split(|b| *b == b'\n')
        .filter(|line| !line.is_empty())
        .map(|line| serde_json::from_slice(line).unwrap())
        .collect()
}
