//! Endpoints against each other on loopback, one testcase at a time: exit codes, the
//! downloaded bytes, and the `interop:` lines that show a testcase's defining property
//! (a Retry, a resumed session, 0-RTT, a key update, a migration). Mostly our client
//! against our server; at the end, each of ours against aioquic
//! (`peers/aioquic_endpoint.py`, which takes the same flags) in both directions: transfer,
//! retry, multiconnect, chacha20, http3, keyupdate, resumption, zerortt.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_interop");

/// Which implementation plays a role.
#[derive(Clone, Copy)]
enum Peer {
    Ours,
    Aioquic,
}

impl Peer {
    /// The endpoint's command, before the flags both implementations share.
    fn command(self) -> Command {
        match self {
            Peer::Ours => Command::new(BIN),
            Peer::Aioquic => {
                let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
                let python = dir.join("../.deps/venv/bin/python");
                assert!(
                    python.exists(),
                    "{} missing: run scripts/test.sh (it installs aioquic)",
                    python.display()
                );
                let mut cmd = Command::new(python);
                cmd.arg(dir.join("peers/aioquic_endpoint.py"));
                cmd
            }
        }
    }
}
/// Longest any one client run may take.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(60);

/// A fresh directory under the system's temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "interop-{name}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// www, downloads and certs directories for one testcase.
struct Setup {
    root: TempDir,
    files: Vec<(String, Vec<u8>)>,
}

impl Setup {
    fn new(name: &str) -> Setup {
        let root = TempDir::new(name);
        for dir in ["www", "downloads", "certs"] {
            std::fs::create_dir(root.0.join(dir)).unwrap();
        }
        let cert =
            rcgen::generate_simple_self_signed(vec!["server4".into(), "localhost".into()]).unwrap();
        std::fs::write(root.0.join("certs/cert.pem"), cert.cert.pem()).unwrap();
        std::fs::write(root.0.join("certs/priv.key"), cert.key_pair.serialize_pem()).unwrap();
        Setup {
            root,
            files: Vec::new(),
        }
    }

    fn dir(&self, name: &str) -> PathBuf {
        self.root.0.join(name)
    }

    /// Adds a file of `len` pseudo-random bytes to www.
    fn file(&mut self, name: &str, len: usize) -> &mut Setup {
        let mut state = 0x9e37_79b9_7f4a_7c15u64 ^ (len as u64) ^ (self.files.len() as u64) << 32;
        let data: Vec<u8> = (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        std::fs::write(self.dir("www").join(name), &data).unwrap();
        self.files.push((name.to_owned(), data));
        self
    }

    fn server(&self, testcase: &str, listen: &str) -> Server {
        self.server_on(Peer::Ours, testcase, listen)
    }

    fn server_on(&self, peer: Peer, testcase: &str, listen: &str) -> Server {
        let mut child = peer
            .command()
            .args([
                "--role",
                "server",
                "--testcase",
                testcase,
                "--listen",
                listen,
            ])
            .arg("--www")
            .arg(self.dir("www"))
            .arg("--certs")
            .arg(self.dir("certs"))
            .env_remove("SSLKEYLOGFILE")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut first = String::new();
        stdout.read_line(&mut first).unwrap();
        let addr = first
            .trim()
            .strip_prefix("interop: listening on ")
            .unwrap_or_else(|| panic!("unexpected first server line {first:?}"))
            .parse()
            .unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in stdout.lines() {
                let Ok(line) = line else { break };
                sink.lock().unwrap().push(line);
            }
        });
        Server { child, addr, lines }
    }

    /// Runs the client for `testcase` on every file of www, against `server`.
    fn client(&self, testcase: &str, host: &str, server: &Server) -> Run {
        let urls: Vec<String> = self
            .files
            .iter()
            .map(|(name, _)| format!("https://{host}:{}/{name}", server.addr.port()))
            .collect();
        self.client_with(testcase, &urls, Some(server.addr))
    }

    fn client_with(&self, testcase: &str, urls: &[String], connect: Option<SocketAddr>) -> Run {
        self.client_on(Peer::Ours, testcase, urls, connect)
    }

    fn client_on(
        &self,
        peer: Peer,
        testcase: &str,
        urls: &[String],
        connect: Option<SocketAddr>,
    ) -> Run {
        let keylog = self.dir("keys.log");
        let mut cmd = peer.command();
        cmd.args(["--role", "client", "--testcase", testcase])
            .arg("--downloads")
            .arg(self.dir("downloads"))
            .env("REQUESTS", urls.join(" "))
            .env("SSLKEYLOGFILE", &keylog)
            .stdout(Stdio::piped());
        if let Some(addr) = connect {
            cmd.arg("--connect").arg(addr.to_string());
        }
        let mut child = cmd.spawn().unwrap();
        let deadline = Instant::now() + CLIENT_TIMEOUT;
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                child.kill().unwrap();
                panic!("client ({testcase}) did not finish within {CLIENT_TIMEOUT:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut stdout = String::new();
        std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut stdout).unwrap();
        Run { status, stdout }
    }

    /// Every www file was downloaded, byte for byte.
    fn assert_downloaded(&self) {
        for (name, data) in &self.files {
            let got = std::fs::read(self.dir("downloads").join(name))
                .unwrap_or_else(|e| panic!("download {name}: {e}"));
            assert!(
                got == *data,
                "{name}: downloaded {} bytes that differ from the {} served",
                got.len(),
                data.len()
            );
        }
    }

    /// The key log has the secrets of a TLS 1.3 connection.
    fn assert_keylog(&self) {
        let log = std::fs::read_to_string(self.dir("keys.log")).unwrap();
        assert!(log.contains("CLIENT_TRAFFIC_SECRET_0 "), "key log: {log}");
    }
}

struct Run {
    status: ExitStatus,
    stdout: String,
}

impl Run {
    fn assert_ok(&self) -> &Run {
        assert!(
            self.status.success(),
            "client: {} {}",
            self.status,
            self.stdout
        );
        self
    }

    fn assert_line(&self, line: &str) -> &Run {
        assert!(
            self.stdout.lines().any(|l| l.starts_with(line)),
            "client printed no line starting {line:?}: {}",
            self.stdout
        );
        self
    }
}

/// A server process, killed on drop.
struct Server {
    child: Child,
    addr: SocketAddr,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Server {
    /// Waits (up to 5 s) for a stdout line matching `pred`, and returns it.
    fn wait_line(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(line) = self.lines.lock().unwrap().iter().find(|l| pred(l)) {
                return line.clone();
            }
            assert!(
                Instant::now() < deadline,
                "server printed no {what}: {:?}",
                self.lines.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Client and server both run `testcase` on the files of `setup`, over IPv4.
fn pass(setup: &Setup, testcase: &str) -> (Server, Run) {
    let server = setup.server(testcase, "127.0.0.1:0");
    let run = setup.client(testcase, "server4", &server);
    run.assert_ok();
    setup.assert_downloaded();
    (server, run)
}

#[test]
fn handshake() {
    let mut setup = Setup::new("handshake");
    setup.file("index.html", 1024);
    let (server, _) = pass(&setup, "handshake");
    setup.assert_keylog();
    server.wait_line("hq-interop connection", |l| l.contains("alpn=hq-interop"));
}

#[test]
fn transfer() {
    let mut setup = Setup::new("transfer");
    setup
        .file("a", 1)
        .file("b", 2 << 20)
        .file("c", 3 << 20)
        .file("d", 100_000);
    let (server, _) = pass(&setup, "transfer");
    server.wait_line("a clean close", |l| {
        l.contains("closed (closed by peer: 0)")
    });
}

#[test]
fn multiplexing() {
    let mut setup = Setup::new("multiplexing");
    for i in 0..200 {
        setup.file(&format!("f{i}"), 32);
    }
    pass(&setup, "multiplexing");
}

#[test]
fn retry() {
    let mut setup = Setup::new("retry");
    setup.file("r", 10 * 1024);
    let (server, _) = pass(&setup, "retry");
    server.wait_line("Retry", |l| l.starts_with("interop: sent Retry"));
    server.wait_line("a validated connection", |l| {
        l.contains("address_validated=true")
    });
}

#[test]
fn chacha20() {
    let mut setup = Setup::new("chacha20");
    setup.file("c", 300_000);
    pass(&setup, "chacha20");
}

#[test]
fn resumption() {
    let mut setup = Setup::new("resumption");
    setup.file("one", 5 * 1024).file("two", 10 * 1024);
    let (server, run) = pass(&setup, "resumption");
    run.assert_line("interop: connection 2 resumed=true");
    server.wait_line("two connections", |l| {
        l.contains("alpn=hq-interop address_validated=true")
    });
}

#[test]
fn zerortt() {
    let mut setup = Setup::new("zerortt");
    // The runner's zerortt files: 40 of 32 bytes, with 250-character names.
    for i in 0..40 {
        setup.file(&format!("{i:0>250}"), 32);
    }
    let (_, run) = pass(&setup, "zerortt");
    run.assert_line("interop: 0-RTT accepted=true")
        .assert_line("interop: connection 2 resumed=true");
}

#[test]
fn keyupdate() {
    let mut setup = Setup::new("keyupdate");
    setup.file("k", 3 << 20);
    // The runner tells the server "transfer" and only the client "keyupdate".
    let server = setup.server("transfer", "127.0.0.1:0");
    setup
        .client("keyupdate", "server4", &server)
        .assert_ok()
        .assert_line("interop: key update initiated after");
    setup.assert_downloaded();
}

#[test]
fn http3() {
    let mut setup = Setup::new("http3");
    setup.file("x", 1000).file("y", 1 << 20).file("z", 5000);
    let (server, _) = pass(&setup, "http3");
    server.wait_line("an h3 connection", |l| l.contains("alpn=h3"));
}

#[test]
fn multiconnect() {
    let mut setup = Setup::new("multiconnect");
    setup.file("m1", 1000).file("m2", 1000).file("m3", 1000);
    let (_, run) = pass(&setup, "handshakeloss");
    run.assert_line("interop: connection 3 established");
}

#[test]
fn ipv6() {
    let mut setup = Setup::new("ipv6");
    setup.file("six", 200_000);
    let server = setup.server("transfer", "[::1]:0");
    // An IPv6 literal in the URL, resolved without --connect.
    let url = format!("https://[::1]:{}/six", server.addr.port());
    setup.client_with("ipv6", &[url], None).assert_ok();
    setup.assert_downloaded();
    server.wait_line("an IPv6 peer", |l| l.contains("connection from [::1]:"));
}

#[test]
fn connectionmigration() {
    let mut setup = Setup::new("migration");
    setup.file("mig", 2 << 20);
    let (server, run) = pass(&setup, "connectionmigration");
    run.assert_line("interop: migrated from");
    let closed = server.wait_line("the close", |l| l.contains(" closed ("));
    assert!(
        !closed.ends_with("path_challenges_sent=0"),
        "server did not validate the new path: {closed}"
    );
}

#[test]
fn unsupported_testcases_exit_127() {
    let setup = Setup::new("unsupported");
    let cases = [
        ("client", "v2"),
        ("server", "v2"),
        ("client", "versionnegotiation"),
        ("client", "no-such-test"),
        ("server", "no-such-test"),
    ];
    for (role, testcase) in cases {
        let status = Command::new(BIN)
            .args(["--role", role, "--testcase", testcase])
            .arg("--www")
            .arg(setup.dir("www"))
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert_eq!(status.code(), Some(127), "{role} {testcase}");
    }
}

#[test]
fn server_sends_version_negotiation() {
    let setup = Setup::new("vn");
    let server = setup.server("versionnegotiation", "127.0.0.1:0");
    // A long-header packet of a reserved version (0x?a?a?a?a), padded like an Initial.
    let mut packet = vec![0xc0, 0x1a, 0x2a, 0x3a, 0x4a, 8];
    packet.extend_from_slice(b"dcid-123");
    packet.push(8);
    packet.extend_from_slice(b"scid-456");
    packet.resize(1200, 0);
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    socket.send_to(&packet, server.addr).unwrap();
    let mut buf = [0u8; 1500];
    let (len, _) = socket.recv_from(&mut buf).unwrap();
    let reply = &buf[..len];
    assert!(reply[0] & 0x80 != 0, "not a long header: {reply:?}");
    assert_eq!(&reply[1..5], &[0, 0, 0, 0], "not Version Negotiation");
    // Its DCID is our SCID, its SCID our DCID (RFC 9000 §17.2.1).
    assert_eq!(&reply[5..23], b"\x08scid-456\x08dcid-123");
    let versions: Vec<u32> = reply[23..]
        .chunks(4)
        .map(|v| u32::from_be_bytes(v.try_into().unwrap()))
        .collect();
    assert!(versions.contains(&1), "QUIC v1 not offered: {versions:x?}");
}

#[test]
fn missing_file_fails_the_client() {
    let mut setup = Setup::new("missing");
    setup.file("here", 10);
    let server = setup.server("transfer", "127.0.0.1:0");
    let port = server.addr.port();
    let urls = [
        format!("https://server4:{port}/here"),
        format!("https://server4:{port}/not-here"),
    ];
    let run = setup.client_with("transfer", &urls, Some(server.addr));
    assert_eq!(run.status.code(), Some(1), "{}", run.stdout);
}

/// The URLs of every www file on `server`, with host `server4`.
fn urls(setup: &Setup, server: &Server) -> Vec<String> {
    let port = server.addr.port();
    (setup.files.iter())
        .map(|(name, _)| format!("https://server4:{port}/{name}"))
        .collect()
}

/// One testcase between two implementations, over IPv4.
fn pair(setup: &Setup, client: Peer, server: Peer, testcase: &str) -> (Server, Run) {
    let srv = setup.server_on(server, testcase, "127.0.0.1:0");
    let run = setup.client_on(client, testcase, &urls(setup, &srv), Some(srv.addr));
    run.assert_ok();
    setup.assert_downloaded();
    setup.assert_keylog();
    (srv, run)
}

#[test]
fn ours_to_aioquic_transfer() {
    let mut setup = Setup::new("to-aioquic");
    setup.file("small", 1024).file("large", 3 << 20);
    pair(&setup, Peer::Ours, Peer::Aioquic, "transfer");
}

#[test]
fn ours_to_aioquic_retry_and_multiconnect() {
    let mut setup = Setup::new("to-aioquic-retry");
    setup.file("r", 10 * 1024);
    pair(&setup, Peer::Ours, Peer::Aioquic, "retry");
    let mut setup = Setup::new("to-aioquic-multi");
    setup.file("m1", 1000).file("m2", 2000);
    let (_, run) = pair(&setup, Peer::Ours, Peer::Aioquic, "multiconnect");
    run.assert_line("interop: connection 2 established");
}

#[test]
fn aioquic_to_ours_transfer() {
    let mut setup = Setup::new("from-aioquic");
    setup.file("small", 1024).file("large", 3 << 20);
    let (server, _) = pair(&setup, Peer::Aioquic, Peer::Ours, "transfer");
    server.wait_line("a clean close", |l| {
        l.contains("closed (closed by peer: 0)")
    });
}

#[test]
fn aioquic_to_ours_retry() {
    let mut setup = Setup::new("from-aioquic-retry");
    setup.file("r", 10 * 1024);
    let (server, _) = pair(&setup, Peer::Aioquic, Peer::Ours, "retry");
    server.wait_line("Retry", |l| l.starts_with("interop: sent Retry"));
    server.wait_line("a validated connection", |l| {
        l.contains("address_validated=true")
    });
}

/// The files of the fast subset's runs: small, so that the tests below stay quick.
fn small_files(name: &str) -> Setup {
    let mut setup = Setup::new(name);
    setup.file("one", 5 * 1024).file("two", 200_000);
    setup
}

/// chacha20, http3 and keyupdate with `client` against `server`: the files arrive (and
/// the key log is written); for keyupdate the client says it updated its keys.
fn chacha20_http3_keyupdate(client: Peer, server: Peer) {
    pair(&small_files("pair-chacha20"), client, server, "chacha20");
    pair(&small_files("pair-http3"), client, server, "http3");
    // The runner tells the server "transfer" and only the client "keyupdate".
    let setup = small_files("pair-keyupdate");
    let srv = setup.server_on(server, "transfer", "127.0.0.1:0");
    setup
        .client_on(client, "keyupdate", &urls(&setup, &srv), Some(srv.addr))
        .assert_ok()
        .assert_line("interop: key update initiated after");
    setup.assert_downloaded();
}

/// resumption and zerortt with `client` against `server`: the second connection is
/// resumed, and for zerortt its 0-RTT data accepted.
fn resumption_zerortt(client: Peer, server: Peer) {
    let (_, run) = pair(
        &small_files("pair-resumption"),
        client,
        server,
        "resumption",
    );
    run.assert_line("interop: connection 2 resumed=true");
    let mut setup = Setup::new("pair-zerortt");
    for i in 0..10 {
        setup.file(&format!("{i:0>250}"), 32);
    }
    let (_, run) = pair(&setup, client, server, "zerortt");
    run.assert_line("interop: connection 2 resumed=true")
        .assert_line("interop: 0-RTT accepted=true");
}

#[test]
fn ours_to_aioquic_chacha20_http3_keyupdate() {
    chacha20_http3_keyupdate(Peer::Ours, Peer::Aioquic);
}

#[test]
fn aioquic_to_ours_chacha20_http3_keyupdate() {
    chacha20_http3_keyupdate(Peer::Aioquic, Peer::Ours);
}

#[test]
fn ours_to_aioquic_resumption_zerortt() {
    resumption_zerortt(Peer::Ours, Peer::Aioquic);
}

#[test]
fn aioquic_to_ours_resumption_zerortt() {
    resumption_zerortt(Peer::Aioquic, Peer::Ours);
}
