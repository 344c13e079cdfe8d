//! Downloads N bytes on one connection and prints the rate as one JSON line:
//! `{"impl":"h3-tokio","bytes":N,"seconds":S,"mb_per_s":R}` (MB = 10^6 bytes).
//!
//! ```sh
//! h3-bench-download --impl h3-tokio --addr 127.0.0.1:4433 --bytes 1073741824
//! ```
//! `h3-tokio` sends `GET /bytes/N` with h3-tokio's client to an `h3-bench-server`
//! running `--impl h3-tokio` (or `--impl hyper`); `raw` sends the raw protocol's "N\n"
//! on a bare quinn bidi stream to one running `--impl raw`. The clock runs from sending
//! the request to the last byte: the QUIC handshake (and HTTP/3 control stream setup)
//! is not timed. The body is counted and dropped. One thread (a current-thread
//! runtime): the benchmark pins the client to one core.

use std::net::SocketAddr;
use std::time::Instant;

use clap::{Parser, ValueEnum};
use edge_benches::BoxError;

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Impl {
    /// h3-tokio's client, `GET /bytes/N`.
    H3Tokio,
    /// A bare quinn stream (the server must run `--impl raw`).
    Raw,
}

#[derive(Parser)]
struct Args {
    /// The client implementation (and so the protocol) to use.
    #[arg(long = "impl", value_enum)]
    imp: Impl,
    /// The server's UDP address.
    #[arg(long)]
    addr: SocketAddr,
    /// How many bytes to download.
    #[arg(long)]
    bytes: u64,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), BoxError> {
    let args = Args::parse();
    let (alpn, name) = match args.imp {
        Impl::H3Tokio => (h3_tokio::ALPN, "h3-tokio"),
        Impl::Raw => (edge_benches::ALPN_RAW, "raw"),
    };
    let bind: SocketAddr = if args.addr.is_ipv6() {
        "[::1]:0".parse()?
    } else {
        "127.0.0.1:0".parse()?
    };
    let mut endpoint = quinn::Endpoint::client(bind)?;
    endpoint.set_default_client_config(edge_benches::client_config(alpn)?);
    let quic = endpoint.connect(args.addr, "localhost")?.await?;

    let (received, seconds) = match args.imp {
        Impl::H3Tokio => h3_tokio_download(quic, args.bytes).await?,
        Impl::Raw => raw_download(quic, args.bytes).await?,
    };
    endpoint.wait_idle().await;
    if received != args.bytes {
        return Err(format!("received {received} bytes, expected {}", args.bytes).into());
    }
    println!(
        r#"{{"impl":"{name}","bytes":{received},"seconds":{seconds:.6},"mb_per_s":{:.1}}}"#,
        received as f64 / 1e6 / seconds
    );
    Ok(())
}

/// Returns the bytes received and the seconds from request to last byte, and closes the
/// connection.
async fn h3_tokio_download(quic: quinn::Connection, n: u64) -> Result<(u64, f64), BoxError> {
    let h3 = h3_tokio::client::new(quic, h3_tokio::Config::default()).await?;
    let request = http::Request::get(format!("https://localhost/bytes/{n}")).body(())?;
    let start = Instant::now();
    let mut stream = h3.send_request(request).await?;
    stream.finish()?;
    let response = stream.recv_response().await?;
    if response.status() != http::StatusCode::OK {
        return Err(format!("server answered {}", response.status()).into());
    }
    let mut received = 0u64;
    while let Some(chunk) = stream.recv_data().await? {
        received += chunk.len() as u64;
    }
    let seconds = start.elapsed().as_secs_f64();
    h3.close();
    Ok((received, seconds))
}

/// Like [`h3_tokio_download`], on a bare quinn stream.
async fn raw_download(quic: quinn::Connection, n: u64) -> Result<(u64, f64), BoxError> {
    let start = Instant::now();
    let (mut send, mut recv) = quic.open_bi().await?;
    send.write_all(format!("{n}\n").as_bytes()).await?;
    send.finish()?;
    let mut received = 0u64;
    // Ordered chunks straight from quinn's buffers: no copy into a buffer of ours.
    while let Some(chunk) = recv.read_chunk(usize::MAX, true).await? {
        received += chunk.bytes.len() as u64;
    }
    let seconds = start.elapsed().as_secs_f64();
    quic.close(0u32.into(), b"done");
    Ok((received, seconds))
}
