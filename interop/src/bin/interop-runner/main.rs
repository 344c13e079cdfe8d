//! `interop-runner`: the QUIC Interop Runner's testcases on this machine, without docker.
//!
//! For each (testcase, client, server) it makes two network namespaces (client and
//! server, each with a veth to the root namespace), runs a userspace relay in the root
//! namespace that applies the testcase's network ([`network`]) and captures both sides
//! ([`relay`]), starts the server then the client with the runner's contract, and checks
//! the result like the official runner ([`checks`], with `tshark`). The veths carry
//! IPv4 and IPv6 addresses; ipv6 runs over IPv6, everything else over IPv4. When
//! namespaces are not permitted it falls back to loopback addresses (127.0.0.2 for the
//! relay's client side, 127.0.0.6 for its preferred address, 127.0.0.3 for the server,
//! 127.0.0.4/5 for the relay's server side; no ipv6 there). The matrix is written as
//! markdown.

mod checks;
mod ecn_socket;
mod network;
mod relay;
mod testcases;

use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;

use checks::Trace;
use network::{Network, Rng};
use relay::{Relay, RelayConfig};
use testcases::Testcase;

#[derive(Parser, Debug)]
#[command(
    about = "Runs QUIC Interop Runner testcases locally (network namespaces + a userspace relay)"
)]
struct Args {
    /// Testcases, comma-separated, or `all`, or `fast` (the CI subset).
    #[arg(long, default_value = "fast")]
    testcases: String,
    /// Pairs CLIENT:SERVER, comma-separated (implementations: edge, aioquic, h3: hyperium
    /// h3 + h3-quinn, http3 only).
    #[arg(
        long,
        default_value = "edge:edge,edge:aioquic,aioquic:edge,edge:h3,h3:edge"
    )]
    pairs: String,
    /// Smaller files and fewer connections (CI).
    #[arg(long)]
    quick: bool,
    /// The markdown matrix.
    #[arg(long, default_value = "interop/results/matrix.md")]
    out: PathBuf,
    /// Where each run's files, logs and captures go.
    #[arg(long, default_value = "/tmp/edge-interop-runner")]
    workdir: PathBuf,
    /// Our endpoint (default: `interop` next to this binary).
    #[arg(long)]
    edge_bin: Option<PathBuf>,
    /// Python with aioquic (default: `.deps/venv/bin/python` of the workspace).
    #[arg(long)]
    python: Option<PathBuf>,
    /// Seed of the network's randomness.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Use loopback addresses even where network namespaces are permitted.
    #[arg(long)]
    loopback: bool,
    /// Cells that are known to fail (lines `TESTCASE CLIENT:SERVER reason`, `#` comments):
    /// still shown as failures, but they do not make the exit status 1.
    #[arg(long)]
    known_failures: Option<PathBuf>,
    /// Exit 77 (skip) instead of running when namespaces or tshark are missing.
    #[arg(long)]
    skip_if_unavailable: bool,
}

/// What an interrupted run must clean up: the endpoints it started, its namespaces.
static CLEANUP: Mutex<(Vec<u32>, Option<Topology>)> = Mutex::new((Vec::new(), None));

fn cleanup() -> std::sync::MutexGuard<'static, (Vec<u32>, Option<Topology>)> {
    CLEANUP.lock().unwrap_or_else(|e| e.into_inner())
}

/// Remembers a started endpoint until [`stop`] reaps it.
fn register(child: &Child) {
    cleanup().0.push(child.id());
}

/// On SIGINT or SIGTERM: kill the endpoints, remove the namespaces, exit 130.
fn on_signals() {
    std::thread::spawn(|| {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        rt.block_on(async {
            use tokio::signal::unix::{signal, SignalKind};
            let (Ok(mut term), Ok(mut int)) = (
                signal(SignalKind::terminate()),
                signal(SignalKind::interrupt()),
            ) else {
                return;
            };
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        });
        let mut c = cleanup();
        for pid in c.0.drain(..) {
            let _ = Command::new("kill").arg(pid.to_string()).status();
        }
        if let Some(t) = c.1.take() {
            t.teardown();
        }
        eprintln!("interop-runner: interrupted; endpoints stopped, namespaces removed");
        std::process::exit(130);
    });
}

/// A testcase's result in the matrix.
#[derive(Clone, Debug)]
enum Outcome {
    Pass,
    /// A measurement (goodput, crosstraffic) that passed: its goodput in kbps.
    Goodput(u64),
    Fail(String),
    Unsupported(String),
}

/// The relay's and the server's addresses in one address family.
#[derive(Clone, Debug)]
struct Addrs {
    relay_client_side: SocketAddr,
    /// The relay's second client-side address: the server's preferred address.
    relay_preferred: SocketAddr,
    server: SocketAddr,
    upstream_ips: Vec<IpAddr>,
}

/// The addresses of one run, and the namespaces when there are any.
#[derive(Clone, Debug)]
struct Topology {
    client_ns: Option<String>,
    server_ns: Option<String>,
    v4: Addrs,
    /// None on loopback (it has only ::1).
    v6: Option<Addrs>,
    links: Vec<String>,
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl Topology {
    /// Two namespaces with a veth each to the root namespace, where the relay runs.
    /// Client side 10.B.1.0/24 and fd00:B:1::/64 (the relay .1 and .3, the client .2),
    /// server side 10.B.2.0/24 and fd00:B:2::/64 (the relay .1 and .3, the server .2).
    fn namespaces() -> Result<Topology, String> {
        let id = std::process::id();
        let b = (100 + id % 100) as u8;
        Topology::remove_stale();
        let (cns, sns) = (format!("edge{id}c"), format!("edge{id}s"));
        let v4 = |net: u8, host: u8| IpAddr::V4(Ipv4Addr::new(10, b, net, host));
        let v6 = |net: u16, host: u16| {
            IpAddr::V6(Ipv6Addr::new(0xfd00, b.into(), net, 0, 0, 0, 0, host))
        };
        let addrs = |ip: &dyn Fn(u8, u8) -> IpAddr| Addrs {
            relay_client_side: SocketAddr::new(ip(1, 1), 443),
            relay_preferred: SocketAddr::new(ip(1, 3), 443),
            server: SocketAddr::new(ip(2, 2), 443),
            upstream_ips: vec![ip(2, 1), ip(2, 3)],
        };
        let mut t = Topology {
            client_ns: Some(cns.clone()),
            server_ns: Some(sns.clone()),
            v4: addrs(&v4),
            v6: Some(addrs(&|n, h| v6(n.into(), h.into()))),
            links: vec![],
        };
        for (ns, side, net) in [(&cns, 'c', 1), (&sns, 's', 2)] {
            let (outer, inner) = (format!("e{id}{side}"), format!("e{id}{side}i"));
            ip(&["netns", "add", ns])?;
            ip(&[
                "link", "add", &outer, "type", "veth", "peer", "name", &inner,
            ])?;
            t.links.push(outer.clone());
            ip(&["link", "set", &inner, "netns", ns])?;
            // nodad: the IPv6 addresses are usable at once, not after duplicate detection.
            for host in [1, 3] {
                ip(&[
                    "addr",
                    "add",
                    &format!("{}/24", v4(net, host)),
                    "dev",
                    &outer,
                ])?;
                let a = format!("{}/64", v6(net.into(), host.into()));
                ip(&["addr", "add", &a, "dev", &outer, "nodad"])?;
            }
            ip(&["link", "set", &outer, "up"])?;
            let (own4, own6) = (
                format!("{}/24", v4(net, 2)),
                format!("{}/64", v6(net.into(), 2)),
            );
            ip(&["-n", ns, "addr", "add", &own4, "dev", &inner])?;
            ip(&["-n", ns, "addr", "add", &own6, "dev", &inner, "nodad"])?;
            ip(&["-n", ns, "link", "set", &inner, "up"])?;
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
        }
        Ok(t)
    }

    /// Loopback addresses in the root namespace.
    fn loopback() -> Topology {
        let port = 20_000 + (std::process::id() % 20_000) as u16;
        let lo = |d| IpAddr::V4(Ipv4Addr::new(127, 0, 0, d));
        Topology {
            client_ns: None,
            server_ns: None,
            v4: Addrs {
                relay_client_side: SocketAddr::new(lo(2), port),
                relay_preferred: SocketAddr::new(lo(6), port),
                server: SocketAddr::new(lo(3), port),
                upstream_ips: vec![lo(4), lo(5)],
            },
            v6: None,
            links: vec![],
        }
    }

    /// Removes the namespaces and links of runs whose process is gone (a runner that
    /// was killed cannot clean up after itself).
    fn remove_stale() {
        let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
            return;
        };
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let name = line.split_whitespace().next().unwrap_or("");
            let Some(rest) = name.strip_prefix("edge") else {
                continue;
            };
            let (pid, side) = rest.split_at(rest.len().saturating_sub(1));
            if pid.is_empty()
                || !pid.bytes().all(|b| b.is_ascii_digit())
                || !matches!(side, "c" | "s")
            {
                continue;
            }
            if Path::new("/proc").join(pid).exists() {
                continue;
            }
            eprintln!("interop-runner: removing {name}, left by a run that is gone");
            let _ = ip(&["link", "del", &format!("e{pid}{side}")]);
            let _ = ip(&["netns", "del", name]);
        }
    }

    fn teardown(&self) {
        for l in &self.links {
            let _ = ip(&["link", "del", l]);
        }
        for ns in self.client_ns.iter().chain(&self.server_ns) {
            let _ = ip(&["netns", "del", ns]);
        }
    }
}

/// How to start one implementation.
#[derive(Clone, Debug)]
struct Implementation {
    name: String,
    argv: Vec<PathBuf>,
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

fn implementation(name: &str, args: &Args) -> Result<Implementation, String> {
    let argv = match name {
        "edge" => {
            let bin = match &args.edge_bin {
                Some(b) => b.clone(),
                None => std::env::current_exe()
                    .map_err(|e| e.to_string())?
                    .with_file_name("interop"),
            };
            vec![bin]
        }
        "h3" => vec![std::env::current_exe()
            .map_err(|e| e.to_string())?
            .with_file_name("h3-peer")],
        "aioquic" => {
            let root = workspace_root();
            let py = args
                .python
                .clone()
                .unwrap_or_else(|| root.join(".deps/venv/bin/python"));
            vec![py, root.join("interop/peers/aioquic_endpoint.py")]
        }
        _ => return Err(format!("unknown implementation {name} (edge, aioquic, h3)")),
    };
    if let Some(first) = argv.first() {
        if !first.exists() {
            return Err(format!("{name}: {} not found", first.display()));
        }
    }
    Ok(Implementation {
        name: name.to_owned(),
        argv,
    })
}

fn command(ns: &Option<String>, imp: &Implementation) -> Command {
    let mut c = match ns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns]);
            c.args(&imp.argv);
            c
        }
        None => {
            let mut c = Command::new(imp.argv.first().cloned().unwrap_or_default());
            c.args(imp.argv.iter().skip(1));
            c
        }
    };
    // The endpoints' log level: the runner's own RUST_LOG (e.g. quinn_proto=trace to
    // follow a stalled connection), info otherwise.
    c.env(
        "RUST_LOG",
        std::env::var("RUST_LOG").unwrap_or_else(|_| "info".to_owned()),
    );
    c
}

fn random_name(rng: &mut Rng, len: usize) -> String {
    const LETTERS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    (0..len)
        .map(|_| LETTERS[rng.below(LETTERS.len() as u64) as usize] as char)
        .collect()
}

fn wait_timeout(child: &mut Child, timeout: Duration) -> Option<i32> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        match child.try_wait() {
            Ok(Some(st)) => return Some(st.code().unwrap_or(1)),
            Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            Err(_) => return None,
        }
    }
    None
}

fn stop(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
    let id = child.id();
    cleanup().0.retain(|&p| p != id);
}

fn io<E: std::fmt::Display>(what: &str) -> impl Fn(E) -> String + '_ {
    move |e| format!("{what}: {e}")
}

/// Writes `cert.pem` and `priv.key` for the names server4, server6 and server46: one
/// self-signed P-256 certificate, or with `chain` > 1 a chain of that many RSA-2048
/// certificates (a root, intermediates, the leaf; cert.pem holds the leaf first, then
/// the rest), as the official runner makes for amplificationlimit so that the server's
/// handshake (over 7500 bytes) is far larger than 3x the client's Initial.
fn certificates(certs: &Path, chain: usize) -> Result<(), String> {
    let openssl = |args: &[&str]| -> Result<(), String> {
        let st = Command::new("openssl")
            .args(args)
            .current_dir(certs)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map_err(io("openssl"))?;
        if st.success() {
            Ok(())
        } else {
            Err(format!("openssl {} failed", args.join(" ")))
        }
    };
    let key_args: &[&str] = if chain > 1 {
        &["-newkey", "rsa:2048", "-nodes"]
    } else {
        &[
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ]
    };
    let san = "subjectAltName=DNS:server4,DNS:server6,DNS:server46";
    let n = chain.max(1);
    // Certificate i is signed by i - 1; the last is the leaf.
    let mut pem = vec![];
    for i in 0..n {
        let (key, crt) = (format!("{i}.key"), format!("{i}.pem"));
        let leaf = i + 1 == n;
        let subj = if leaf {
            "/CN=server4".to_owned()
        } else {
            format!("/CN=interop CA {i}")
        };
        let ext = if leaf {
            san.to_owned()
        } else {
            "basicConstraints=critical,CA:TRUE".to_owned()
        };
        if i == 0 {
            let mut a = vec![
                "req", "-x509", "-days", "7", "-subj", &subj, "-addext", &ext,
            ];
            a.extend(key_args);
            a.extend(["-keyout", &key, "-out", &crt]);
            openssl(&a)?;
        } else {
            let csr = format!("{i}.csr");
            let mut a = vec!["req", "-new", "-subj", &subj];
            a.extend(key_args);
            a.extend(["-keyout", &key, "-out", &csr]);
            openssl(&a)?;
            let (ca, ca_key) = (format!("{}.pem", i - 1), format!("{}.key", i - 1));
            let ext_file = format!("{i}.ext");
            std::fs::write(certs.join(&ext_file), &ext).map_err(io("ext file"))?;
            openssl(&[
                "x509",
                "-req",
                "-days",
                "7",
                "-in",
                &csr,
                "-CA",
                &ca,
                "-CAkey",
                &ca_key,
                "-CAcreateserial",
                "-extfile",
                &ext_file,
                "-out",
                &crt,
            ])?;
        }
        pem.push(std::fs::read(certs.join(&crt)).map_err(io("certificate"))?);
    }
    let last = n - 1;
    std::fs::rename(certs.join(format!("{last}.key")), certs.join("priv.key"))
        .map_err(io("priv.key"))?;
    pem.reverse();
    std::fs::write(certs.join("cert.pem"), pem.concat()).map_err(io("cert.pem"))
}

/// Runs one testcase for one pair and checks it.
fn run_one(
    t: &Testcase,
    client: &Implementation,
    server: &Implementation,
    topo: &Topology,
    dir: &Path,
    seed: u64,
) -> Result<Outcome, String> {
    if t.name == "connectionmigration" && client.name == "edge" {
        // The runner tells the client `transfer`: the migration must come from following
        // the server's preferred address, which a quinn 0.11 client cannot do.
        return Ok(Outcome::Unsupported(
            "edge client: quinn 0.11 cannot move a connection to the server's preferred address"
                .into(),
        ));
    }
    let addrs = if t.name == "ipv6" {
        match &topo.v6 {
            Some(a) => a,
            None => {
                return Ok(Outcome::Unsupported(
                    "runner: the loopback topology has no second IPv6 address".into(),
                ))
            }
        }
    } else {
        &topo.v4
    };
    let _ = std::fs::remove_dir_all(dir);
    let (www, downloads, certs) = (dir.join("www"), dir.join("downloads"), dir.join("certs"));
    for d in [&www, &downloads, &certs] {
        std::fs::create_dir_all(d).map_err(io("mkdir"))?;
    }
    certificates(&certs, t.cert_chain)?;
    let mut rng = Rng::new(seed);
    let mut names = vec![];
    for &size in &t.files {
        let name = random_name(&mut rng, t.name_len);
        let mut data = vec![0u8; size];
        rng.fill(&mut data);
        std::fs::write(www.join(&name), data).map_err(io("write file"))?;
        names.push(name);
    }
    let (ckeys, skeys) = (dir.join("client.keys"), dir.join("server.keys"));

    // The relay, on a runtime of its own that is dropped with everything it spawned.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(io("tokio"))?;
    let cfg = RelayConfig {
        client_side: addrs.relay_client_side,
        preferred: (t.name == "connectionmigration").then_some(addrs.relay_preferred),
        server: addrs.server,
        upstream_ips: addrs.upstream_ips.clone(),
    };
    let (cpcap, spcap) = (dir.join("client.pcap"), dir.join("server.pcap"));
    let relay = rt
        .block_on(Relay::start(
            cfg,
            Network::new(t.scenario.clone(), seed),
            &cpcap,
            &spcap,
        ))
        .map_err(io("relay"))?;

    let result = run_endpoints(t, client, server, topo, addrs, dir, &names, &ckeys, &skeys);
    let stats = relay.stop();
    rt.shutdown_background();
    std::fs::write(dir.join("relay.txt"), format!("{stats:?}\n")).map_err(io("relay.txt"))?;
    // Both key logs in one file, for the checks and, when a run failed, for a look at
    // its captures.
    let mut keys = std::fs::read(&ckeys).unwrap_or_default();
    keys.extend(std::fs::read(&skeys).unwrap_or_default());
    let keylog = dir.join("keys.log");
    std::fs::write(&keylog, keys).map_err(io("keys.log"))?;
    if let Some(o) = result? {
        return Ok(o);
    }

    let port = addrs.server.port();
    let ct = Trace {
        pcap: cpcap,
        keylog: keylog.clone(),
        port,
    };
    let strace = Trace {
        pcap: spcap,
        keylog,
        port,
    };
    let check = || -> Result<Outcome, String> {
        checks::files(&www, &downloads, &names)?;
        let want = match t.name {
            "resumption" | "zerortt" => 2,
            "handshakeloss" | "handshakecorruption" => t.files.len(),
            _ => 1,
        };
        let got = checks::handshakes_v1(&strace)?;
        if got != want {
            return Err(format!("{got} handshakes, expected {want}"));
        }
        match t.name {
            "retry" => checks::retry_token_used(&ct)?,
            "handshake" | "ecn" if checks::retries(&ct)? > 0 => {
                return Err("unexpected Retry".into())
            }
            "chacha20" => checks::cipher_suite(&ct, "0x1303")?,
            "resumption" => checks::resumed_without_certificate(&ct)?,
            "zerortt" => {
                checks::zero_rtt(&ct)?;
                // The official limit: half the size of the 40 requests' 250-byte names.
                let limit = t.name_len * t.files.len() / 2;
                let n = checks::client_1rtt_bytes(&ct)?;
                if n > limit {
                    return Err(format!("{n} bytes of 1-RTT from the client > {limit}"));
                }
            }
            "multiplexing" => checks::server_stream_limit(&ct, 1000)?,
            "ecn" => checks::ecn(&ct, &strace)?,
            "keyupdate" => checks::key_phase_flipped(&ct, &strace)?,
            "rebind-port" | "rebind-addr" => checks::path_validated(&strace)?,
            "amplificationlimit" => checks::amplification_limit(&strace)?,
            "ipv6" => checks::ipv6_only(&strace)?,
            "connectionmigration" => {
                checks::path_validated(&strace)?;
                checks::migrated_to(&ct, addrs.relay_preferred.ip())?;
            }
            "goodput" | "crosstraffic" => {
                let size = t.files.iter().sum::<usize>();
                return Ok(Outcome::Goodput(checks::goodput_kbps(&ct, size)?));
            }
            "longrtt" => {
                let n = checks::client_hellos(&ct)?;
                if n < 2 {
                    return Err(format!("{n} ClientHello(s), expected a retransmission"));
                }
            }
            _ => {}
        }
        Ok(Outcome::Pass)
    };
    Ok(check().unwrap_or_else(Outcome::Fail))
}

/// Starts the server, then the client; `Some(outcome)` when it is decided already.
#[allow(clippy::too_many_arguments)]
fn run_endpoints(
    t: &Testcase,
    client: &Implementation,
    server: &Implementation,
    topo: &Topology,
    addrs: &Addrs,
    dir: &Path,
    names: &[String],
    ckeys: &Path,
    skeys: &Path,
) -> Result<Option<Outcome>, String> {
    let listen = match (&topo.server_ns, addrs.server.ip()) {
        (Some(_), IpAddr::V4(_)) => SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 443),
        (Some(_), IpAddr::V6(_)) => SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 443),
        (None, _) => addrs.server,
    };
    let mut sc = command(&topo.server_ns, server);
    sc.env("ROLE", "server")
        .env("TESTCASE", t.server_name)
        .env("SSLKEYLOGFILE", skeys)
        .args(["--role", "server", "--testcase", t.server_name])
        .arg("--www")
        .arg(dir.join("www"))
        .arg("--certs")
        .arg(dir.join("certs"))
        .arg("--listen")
        .arg(listen.to_string())
        .arg("--keylog")
        .arg(skeys)
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(dir.join("server.log")).map_err(io("server.log"))?);
    if t.name == "connectionmigration" && server.name == "edge" {
        // As run_endpoint.sh does in the official runner: our server is told its
        // preferred address (here the relay's second client-side address).
        sc.arg("--preferred-v4")
            .arg(addrs.relay_preferred.to_string());
    }
    let mut srv = sc.spawn().map_err(io("start server"))?;
    register(&srv);
    let lines = Arc::new(Mutex::new(Vec::<String>::new()));
    if let Some(out) = srv.stdout.take() {
        let lines = lines.clone();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                lines.lock().unwrap_or_else(|e| e.into_inner()).push(l);
            }
        });
    }
    let listening = || {
        lines
            .lock()
            .map(|l| l.iter().any(|l| l.starts_with("interop: listening on")))
            .unwrap_or(false)
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    while !listening() {
        if let Ok(Some(st)) = srv.try_wait() {
            let id = srv.id();
            cleanup().0.retain(|&p| p != id);
            return Ok(Some(match st.code() {
                Some(127) => Outcome::Unsupported(format!("{} server: exit 127", server.name)),
                c => Outcome::Fail(format!("server exited early ({c:?})")),
            }));
        }
        if Instant::now() > deadline {
            stop(&mut srv);
            return Ok(Some(Outcome::Fail("server did not start listening".into())));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let name = match t.name {
        "ipv6" => "server6",
        "connectionmigration" => "server46",
        _ => "server4",
    };
    let host = format!("{name}:{}", addrs.relay_client_side.port());
    let requests: Vec<String> = names
        .iter()
        .map(|n| format!("https://{host}/{n}"))
        .collect();
    let mut cc = command(&topo.client_ns, client);
    cc.env("ROLE", "client")
        .env("TESTCASE", t.client_name)
        .env("REQUESTS", requests.join(" "))
        .env("SSLKEYLOGFILE", ckeys)
        .args(["--role", "client", "--testcase", t.client_name])
        .arg("--downloads")
        .arg(dir.join("downloads"))
        .arg("--connect")
        .arg(addrs.relay_client_side.to_string())
        .arg("--keylog")
        .arg(ckeys)
        .stdout(std::fs::File::create(dir.join("client.out")).map_err(io("client.out"))?)
        .stderr(std::fs::File::create(dir.join("client.log")).map_err(io("client.log"))?);
    let started = Instant::now();
    let mut cli = cc.spawn().map_err(io("start client"))?;
    register(&cli);
    let code = wait_timeout(&mut cli, t.timeout);
    if code.is_none() {
        stop(&mut cli);
    } else {
        let id = cli.id();
        cleanup().0.retain(|&p| p != id);
    }
    stop(&mut srv);
    let server_out = lines.lock().map(|l| l.join("\n")).unwrap_or_default();
    std::fs::write(dir.join("server.out"), server_out + "\n").map_err(io("server.out"))?;
    let secs = started.elapsed().as_secs_f32();
    Ok(match code {
        None => Some(Outcome::Fail(format!("client timed out after {secs:.0} s"))),
        Some(127) => Some(Outcome::Unsupported(format!(
            "{} client: exit 127",
            client.name
        ))),
        Some(0) => None,
        Some(c) => Some(Outcome::Fail(format!("client exit {c} after {secs:.1} s"))),
    })
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let names: Vec<&str> = match args.testcases.as_str() {
        "all" => testcases::ALL.to_vec(),
        "fast" => testcases::FAST.to_vec(),
        list => list.split(',').map(str::trim).collect(),
    };
    let mut cases = vec![];
    for n in &names {
        match testcases::get(n, args.quick) {
            Some(t) => cases.push(t),
            None => {
                eprintln!("interop-runner: unknown testcase {n}");
                return ExitCode::from(2);
            }
        }
    }
    let mut pairs = vec![];
    for p in args.pairs.split(',') {
        let Some((c, s)) = p.split_once(':') else {
            eprintln!("interop-runner: a pair is CLIENT:SERVER, not {p}");
            return ExitCode::from(2);
        };
        match (implementation(c, &args), implementation(s, &args)) {
            (Ok(c), Ok(s)) => pairs.push((c, s)),
            (Err(e), _) | (_, Err(e)) => {
                eprintln!("interop-runner: {e}");
                return ExitCode::from(2);
            }
        }
    }
    let tshark = Command::new("tshark")
        .arg("-v")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if !tshark.is_ok_and(|s| s.success()) {
        eprintln!("interop-runner: tshark not found (scripts/setup.sh setup_test installs it)");
        return ExitCode::from(if args.skip_if_unavailable { 77 } else { 1 });
    }
    let topo = match if args.loopback {
        Err("--loopback".into())
    } else {
        Topology::namespaces()
    } {
        Ok(t) => t,
        Err(e) => {
            eprintln!("interop-runner: no network namespaces ({e}); using loopback addresses");
            Topology::loopback_after_cleanup()
        }
    };
    let known: Vec<(String, String)> = match &args.known_failures {
        None => vec![],
        Some(p) => match std::fs::read_to_string(p) {
            Ok(text) => text
                .lines()
                .map(|l| l.split('#').next().unwrap_or("").split_whitespace())
                .filter_map(|mut w| Some((w.next()?.to_owned(), w.next()?.to_owned())))
                .collect(),
            Err(e) => {
                eprintln!("interop-runner: {}: {e}", p.display());
                return ExitCode::from(2);
            }
        },
    };
    cleanup().1 = Some(topo.clone());
    on_signals();
    let mut results: Vec<Vec<Outcome>> = vec![];
    let mut failed = false;
    for t in &cases {
        let mut row = vec![];
        for (c, s) in &pairs {
            let dir = args
                .workdir
                .join(format!("{}-{}", c.name, s.name))
                .join(t.name);
            let o = run_one(t, c, s, &topo, &dir, args.seed)
                .unwrap_or_else(|e| Outcome::Fail(format!("runner: {e}")));
            eprintln!(
                "interop-runner: {:<20} {:>8} x {:<8} {:?}",
                t.name, c.name, s.name, o
            );
            let pair = format!("{}:{}", c.name, s.name);
            let is_known = known.iter().any(|(k, p)| k == t.name && *p == pair);
            if is_known && matches!(o, Outcome::Fail(_)) {
                eprintln!("interop-runner: (a known failure, listed in the known-failures file)");
            }
            failed |= matches!(o, Outcome::Fail(_)) && !is_known;
            row.push(o);
        }
        results.push(row);
    }
    cleanup().1 = None;
    topo.teardown();
    let md = matrix(&cases, &pairs, &results, &args, topo.client_ns.is_some());
    if let Some(parent) = args.out.parent() {
        let _ = std::fs::create_dir_all(parent);
    }
    if let Err(e) = std::fs::write(&args.out, &md) {
        eprintln!("interop-runner: {}: {e}", args.out.display());
    }
    print!("{md}");
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

impl Topology {
    /// Loopback, after removing whatever a failed namespace setup left behind.
    fn loopback_after_cleanup() -> Topology {
        let id = std::process::id();
        Topology {
            links: vec![format!("e{id}c"), format!("e{id}s")],
            client_ns: Some(format!("edge{id}c")),
            server_ns: Some(format!("edge{id}s")),
            ..Topology::loopback()
        }
        .teardown();
        Topology::loopback()
    }
}

fn matrix(
    cases: &[Testcase],
    pairs: &[(Implementation, Implementation)],
    results: &[Vec<Outcome>],
    args: &Args,
    netns: bool,
) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# Interop matrix (local runner)\n");
    let _ = writeln!(
        md,
        "Command: `interop-runner --testcases {} --pairs {}{}`; topology: {}; seed {}.\n",
        args.testcases,
        args.pairs,
        if args.quick { " --quick" } else { "" },
        if netns {
            "network namespaces + userspace relay"
        } else {
            "loopback + userspace relay"
        },
        args.seed
    );
    let _ = write!(md, "| testcase |");
    for (c, s) in pairs {
        let _ = write!(md, " {} (client) × {} (server) |", c.name, s.name);
    }
    let _ = write!(md, "\n|---|");
    for _ in pairs {
        let _ = write!(md, "---|");
    }
    md.push('\n');
    let mut notes = vec![];
    for (t, row) in cases.iter().zip(results) {
        let _ = write!(md, "| {} |", t.name);
        for (o, (c, s)) in row.iter().zip(pairs) {
            let cell = match o {
                Outcome::Pass => "pass".to_owned(),
                Outcome::Goodput(kbps) => format!("pass: {kbps} kbps"),
                Outcome::Fail(why) => {
                    notes.push(format!("- {} {}×{}: fail: {why}", t.name, c.name, s.name));
                    "**fail**".to_owned()
                }
                Outcome::Unsupported(why) => {
                    notes.push(format!(
                        "- {} {}×{}: unsupported: {why}",
                        t.name, c.name, s.name
                    ));
                    "unsupported".to_owned()
                }
            };
            let _ = write!(md, " {cell} |");
        }
        md.push('\n');
    }
    if !notes.is_empty() {
        let _ = writeln!(md, "\n{}", notes.join("\n"));
    }
    md
}
