//! The edge binary: `edge [--config FILE] [-t] [--listen ADDR]`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use edge::config;
use edge::engine::Engine;

#[derive(Parser)]
#[command(version, about = "HTTP/1.1, HTTP/2 and HTTP/3 edge proxy")]
struct Args {
    /// The config file (KDL). Without it, edge serves a built-in page on port 443.
    #[arg(short, long)]
    config: Option<PathBuf>,
    /// Check the config and exit: 0 when valid, else every error with file:line:column.
    #[arg(short = 't', long = "test")]
    test: bool,
    /// Listen on this address (TCP and UDP) instead of the config's `listen`s.
    #[arg(short, long, value_parser = listen_addr)]
    listen: Option<SocketAddr>,
}

/// An IP address and a port that edge can listen on, as a config's `listen`.
fn listen_addr(text: &str) -> Result<SocketAddr, String> {
    match text.parse::<SocketAddr>() {
        Ok(a) => config::unlistenable(a).map_or(Ok(a), Err),
        Err(e) => Err(format!(
            "{e}: expected IP:PORT, e.g. 127.0.0.1:8443 or [::1]:8443"
        )),
    }
}

#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("EDGE_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();

    let loaded = match &args.config {
        Some(path) => config::load(path),
        None => config::parse(config::DEFAULT, Path::new("<built-in>")),
    };
    let mut config = match loaded {
        Ok(c) => c,
        Err(errors) => {
            eprint!("{errors}");
            if args.test {
                eprintln!("edge: configuration test failed");
            }
            return ExitCode::FAILURE;
        }
    };
    if let Some(addr) = args.listen {
        config.override_listen(addr);
    }
    if args.test {
        eprintln!("edge: configuration is valid");
        return ExitCode::SUCCESS;
    }

    let runtime = match config.build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("edge: {e}");
            return ExitCode::FAILURE;
        }
    };
    let engine = Arc::new(Engine {
        router: runtime.router,
    });
    let workers = config.workers.unwrap_or_else(|| {
        std::thread::available_parallelism().unwrap_or(std::num::NonZeroUsize::MIN)
    });
    match edge::listen::run_workers(runtime.listens, engine, workers, config.worker_connections) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("edge: {e}");
            ExitCode::FAILURE
        }
    }
}
