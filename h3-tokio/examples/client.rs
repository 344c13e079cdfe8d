//! Fetches URLs over HTTP/3, printing bodies or saving them to a directory.
//!
//! ```sh
//! cargo run --release -p h3-tokio --example client -- --insecure https://localhost:4433/Cargo.toml
//! ```
//! All URLs must share one host and port: they are fetched concurrently on one connection.

mod common;

use std::net::ToSocketAddrs;
use std::path::PathBuf;

use clap::Parser;
use h3_tokio::{client, Config};
use http::{Request, Uri};
use tokio::io::AsyncWriteExt;

#[derive(Parser)]
struct Args {
    /// URLs to GET (https://host:port/path).
    #[arg(required = true)]
    urls: Vec<Uri>,
    /// Accept any server certificate.
    #[arg(long)]
    insecure: bool,
    /// PEM file of CA certificates to trust.
    #[arg(long)]
    ca: Option<PathBuf>,
    /// Save each body under this directory (by URL path) instead of printing it.
    #[arg(long)]
    output: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> Result<(), common::BoxError> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let args = Args::parse();
    let first = &args.urls[0];
    let host = first.host().ok_or("URL without a host")?.to_owned();
    let port = first.port_u16().unwrap_or(443);
    let addr = (host.as_str(), port)
        .to_socket_addrs()?
        .next()
        .ok_or("host did not resolve")?;

    let bind = if addr.is_ipv6() {
        "[::]:0"
    } else {
        "0.0.0.0:0"
    };
    let mut endpoint = quinn::Endpoint::client(bind.parse()?)?;
    endpoint.set_default_client_config(common::client_config(args.insecure, args.ca.as_deref())?);
    let quic = endpoint.connect(addr, &host)?.await?;
    let h3 = client::new(quic, Config::default()).await?;

    let mut tasks = Vec::new();
    for url in args.urls.clone() {
        let h3 = h3.clone();
        let output = args.output.clone();
        tasks.push(tokio::spawn(async move {
            let mut stream = h3.send_request(Request::get(url.clone()).body(())?).await?;
            stream.finish()?;
            let resp = stream.recv_response().await?;
            eprintln!("{url}: {}", resp.status());
            let mut sink: Box<dyn tokio::io::AsyncWrite + Unpin + Send> = match &output {
                Some(dir) => {
                    let path = dir.join(url.path().trim_start_matches('/'));
                    if let Some(parent) = path.parent() {
                        tokio::fs::create_dir_all(parent).await?;
                    }
                    Box::new(tokio::fs::File::create(path).await?)
                }
                None => Box::new(tokio::io::stdout()),
            };
            while let Some(chunk) = stream.recv_data().await? {
                sink.write_all(&chunk).await?;
            }
            sink.flush().await?;
            Ok::<_, common::BoxError>(())
        }));
    }
    let mut failed = false;
    for task in tasks {
        if let Err(e) = task.await? {
            eprintln!("error: {e}");
            failed = true;
        }
    }
    h3.close();
    endpoint.wait_idle().await;
    if failed {
        std::process::exit(1);
    }
    Ok(())
}
