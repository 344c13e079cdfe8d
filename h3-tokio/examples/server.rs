//! Serves the files of a directory over HTTP/3.
//!
//! ```sh
//! cargo run --release -p h3-tokio --example server -- --listen 127.0.0.1:4433 --root .
//! ```
//! Without `--cert`/`--key` it uses a fresh self-signed certificate for localhost.

mod common;

use std::net::SocketAddr;
use std::path::{Component, Path, PathBuf};

use bytes::BytesMut;
use clap::Parser;
use h3_tokio::{server, Config, RequestStream};
use http::{Request, Response, StatusCode};
use tokio::io::AsyncReadExt;

#[derive(Parser)]
struct Args {
    /// UDP address to listen on.
    #[arg(long, default_value = "127.0.0.1:4433")]
    listen: SocketAddr,
    /// Directory to serve.
    #[arg(long, default_value = ".")]
    root: PathBuf,
    /// PEM certificate chain (with --key); default: self-signed for localhost.
    #[arg(long)]
    cert: Option<PathBuf>,
    /// PEM private key.
    #[arg(long)]
    key: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> Result<(), common::BoxError> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let args = Args::parse();
    let (chain, key) = common::identity(args.cert.as_deref(), args.key.as_deref())?;
    let endpoint = quinn::Endpoint::server(common::server_config(chain, key)?, args.listen)?;
    eprintln!(
        "serving {} on https://{} (HTTP/3)",
        args.root.display(),
        endpoint.local_addr()?
    );
    let root = args.root.canonicalize()?;
    while let Some(incoming) = endpoint.accept().await {
        let root = root.clone();
        tokio::spawn(async move {
            let quic = incoming.await?;
            let conn = server::Connection::new(quic, Config::default()).await?;
            // Each request is handed over as it arrives (`accept()` in a loop works too).
            conn.serve(move |req, stream| {
                let root = root.clone();
                tokio::spawn(async move {
                    if let Err(e) = serve(&root, req, stream).await {
                        eprintln!("request failed: {e}");
                    }
                });
            })
            .await?;
            Ok::<_, common::BoxError>(())
        });
    }
    Ok(())
}

async fn serve(
    root: &Path,
    req: Request<()>,
    mut stream: RequestStream,
) -> Result<(), common::BoxError> {
    let file = match resolve(root, req.uri().path()) {
        Some(path) => tokio::fs::File::open(path).await.ok(),
        None => None,
    };
    let Some(mut file) = file else {
        let head = Response::builder().status(StatusCode::NOT_FOUND).body(())?;
        return Ok(stream.respond(head, "not found\n".into())?);
    };
    let len = file.metadata().await?.len();
    stream.send_response(Response::builder().header("content-length", len).body(())?)?;
    if req.method() != http::Method::HEAD {
        loop {
            let mut buf = BytesMut::with_capacity(64 * 1024);
            if file.read_buf(&mut buf).await? == 0 {
                break;
            }
            stream.send_data(buf.freeze()).await?;
        }
    }
    Ok(stream.finish()?)
}

/// The file under `root` for a URL path, refusing anything that would escape it.
fn resolve(root: &Path, path: &str) -> Option<PathBuf> {
    let mut out = root.to_path_buf();
    for part in Path::new(path.trim_start_matches('/')).components() {
        match part {
            Component::Normal(p) => out.push(p),
            Component::CurDir => {}
            _ => return None,
        }
    }
    if out.is_dir() {
        out.push("index.html");
    }
    out.is_file().then_some(out)
}
