//! `interop`: this project's endpoint for the QUIC Interop Runner.
//!
//! One binary, two roles (`ROLE=client|server`), driven the way the runner drives every
//! implementation: by environment (`TESTCASE`, `REQUESTS`, `SSLKEYLOGFILE`, `QLOGDIR`)
//! and fixed paths (`/www`, `/downloads`, `/certs`, port 443). Every path and address
//! also has a flag, so a local runner can start it without containers. It exits 0 when
//! the testcase succeeded, 1 when it failed, and 127 for a testcase it does not support.
//!
//! The transfer protocol is hq-interop (HTTP/0.9 over QUIC) for every testcase but
//! `http3`, which uses h3-tokio. The README lists the testcases and how each is done.

mod client;
mod paths;
mod quic;
mod server;
mod testcase;
mod tls;

use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, ValueEnum};

use testcase::Testcase;

/// Any error that fails a testcase (exit status 1).
pub type Error = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Role {
    Client,
    Server,
}

/// QUIC Interop Runner endpoint (hq-interop and HTTP/3 over quinn).
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Which side to play.
    #[arg(long, env = "ROLE", value_enum)]
    role: Role,
    /// The runner's testcase name; unsupported ones exit with status 127.
    #[arg(long, env = "TESTCASE")]
    testcase: String,
    /// Client: space-separated URLs to download.
    #[arg(long, env = "REQUESTS", default_value = "")]
    requests: String,
    /// Append TLS secrets to this file (NSS key log format).
    #[arg(long, env = "SSLKEYLOGFILE")]
    keylog: Option<PathBuf>,
    /// Directory for qlog files: accepted and ignored (see the README).
    #[arg(long, env = "QLOGDIR")]
    qlogdir: Option<PathBuf>,
    /// Server: the directory of files to serve.
    #[arg(long, env = "INTEROP_WWW", default_value = "/www")]
    www: PathBuf,
    /// Client: where downloads are saved, by URL path.
    #[arg(long, env = "INTEROP_DOWNLOADS", default_value = "/downloads")]
    downloads: PathBuf,
    /// Server: the directory holding `cert.pem` and `priv.key`.
    #[arg(long, env = "INTEROP_CERTS", default_value = "/certs")]
    certs: PathBuf,
    /// Server: UDP address to listen on (`[::]` is dual-stack).
    #[arg(long, env = "INTEROP_LISTEN", default_value = "[::]:443")]
    listen: SocketAddr,
    /// Client: send to this address instead of what the URLs' host resolves to (the
    /// URLs' host is still the TLS server name).
    #[arg(long, env = "INTEROP_CONNECT")]
    connect: Option<SocketAddr>,
    /// Server, connectionmigration: the IPv4 preferred address to offer.
    #[arg(long, env = "INTEROP_PREFERRED_V4")]
    preferred_v4: Option<SocketAddrV4>,
    /// Server, connectionmigration: the IPv6 preferred address to offer.
    #[arg(long, env = "INTEROP_PREFERRED_V6")]
    preferred_v6: Option<SocketAddrV6>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();

    let testcase = Testcase::parse(&args.testcase)
        .filter(|testcase| args.role == Role::Server || testcase.client_supported());
    let Some(testcase) = testcase else {
        eprintln!("interop: unsupported testcase {:?}", args.testcase);
        return ExitCode::from(127);
    };
    if let Some(dir) = &args.qlogdir {
        tracing::info!(
            "QLOGDIR={} ignored: this build writes no qlog",
            dir.display()
        );
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("interop: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(run(args, testcase));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("interop: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args, testcase: Testcase) -> Result<(), Error> {
    match args.role {
        Role::Server => {
            server::run(server::Options {
                testcase,
                listen: args.listen,
                www: args.www,
                certs: args.certs,
                keylog: args.keylog,
                preferred_v4: args.preferred_v4,
                preferred_v6: args.preferred_v6,
            })
            .await
        }
        Role::Client => {
            let requests = args
                .requests
                .split_whitespace()
                .map(|url| url.parse().map_err(|e| format!("{url}: {e}")))
                .collect::<Result<Vec<_>, _>>()?;
            client::run(client::Options {
                testcase,
                requests,
                downloads: args.downloads,
                keylog: args.keylog,
                connect: args.connect,
            })
            .await
        }
    }
}
