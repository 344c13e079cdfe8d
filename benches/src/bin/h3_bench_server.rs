//! The benchmark server: the same routes over h3-tokio, over hyperium's h3 + h3-quinn,
//! or (for the throughput baseline) as bare quinn streams without HTTP/3.
//!
//! ```sh
//! h3-bench-server --impl h3-tokio --listen 127.0.0.1:0
//! ```
//! Routes: `GET /` answers 13 bytes, `GET /bytes/N` answers N bytes (64 KiB chunks of
//! one shared buffer). The raw baseline has no routes: each bidi stream carries "N\n"
//! and gets N bytes back.
//!
//! Prints the bound address as the first line on stdout. On SIGTERM or SIGINT it prints
//! one JSON line of counters on stderr and exits: connections accepted, requests served
//! and failed, the active window (first request accepted to last request finished, in
//! seconds), why connections or requests failed, and quinn's packet counters summed
//! over all connections (`quic`: datagrams and send calls out, datagrams in, ACK frames
//! out). `benches/h3.sh` compares them with
//! the load generator's counts and takes request rates from them. Nothing is logged per
//! request.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use clap::{Parser, ValueEnum};
use edge_benches::{chunk_buffer, chunks, response_head, route, BoxError, Route, HELLO};
use http::StatusCode;
use tokio::signal::unix::{signal, SignalKind};

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Impl {
    /// h3-tokio (nghttp3 over quinn).
    H3Tokio,
    /// hyperium's h3 over h3-quinn.
    Hyper,
    /// No HTTP/3: each bidi stream carries "N\n" and gets N bytes back.
    Raw,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Runtime {
    /// tokio's current_thread runtime: every task on the thread that runs `main`.
    CurrentThread,
    /// tokio's multi_thread runtime with `--threads` workers.
    MultiThread,
}

#[derive(Parser)]
struct Args {
    /// The implementation to serve with.
    #[arg(long = "impl", value_enum)]
    imp: Impl,
    /// UDP address to listen on (port 0: any free port; the bound one is printed).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// The tokio runtime, the same for every implementation. The server is pinned to
    /// one core, where a current-thread runtime is the natural choice (tokio's
    /// multi-thread scheduler runs a woken task next from its LIFO slot, which turns a
    /// batch of responses into one wake-up, and often one packet, per response).
    #[arg(long, value_enum, default_value = "current-thread")]
    runtime: Runtime,
    /// Tokio worker threads of the multi-thread runtime. The benchmark pins the server
    /// to one core, so one.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// h3-tokio only: answer `GET /` inside the `serve` callback, without a task per
    /// request (hyper's API has no such path: each of its sends is awaited).
    #[arg(long)]
    respond_in_callback: bool,
}

/// Counters reported at exit. Each request costs the same few uncontended atomic
/// operations and one clock read, whatever the implementation; the error map is
/// touched only when a connection or request fails.
struct Stats {
    epoch: Instant,
    connections: AtomicU64,
    served: AtomicU64,
    failed: AtomicU64,
    /// Nanoseconds since `epoch` when the first request was accepted, plus one (zero:
    /// none yet).
    first_start: AtomicU64,
    /// Nanoseconds since `epoch` when the latest request finished.
    last_end: AtomicU64,
    /// Why connections ended, and why requests failed, with counts.
    errors: Mutex<BTreeMap<String, u64>>,
    /// Every connection, for quinn's packet counters at exit (a benchmark run has few).
    quic: Mutex<Vec<quinn::Connection>>,
}

impl Stats {
    fn new() -> Stats {
        Stats {
            epoch: Instant::now(),
            connections: AtomicU64::new(0),
            served: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            first_start: AtomicU64::new(0),
            last_end: AtomicU64::new(0),
            errors: Mutex::new(BTreeMap::new()),
            quic: Mutex::new(Vec::new()),
        }
    }

    fn track(&self, quic: &quinn::Connection) {
        lock(&self.quic).push(quic.clone());
    }

    fn nanos(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    fn error(&self, what: &str, e: impl std::fmt::Display) {
        let key = format!("{what}: {e}");
        *lock(&self.errors).entry(key).or_default() += 1;
    }

    fn request_started(&self) {
        if self.first_start.load(Ordering::Relaxed) == 0 {
            let now = self.nanos() + 1;
            let _ = self
                .first_start
                .compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed);
        }
    }

    fn request_done<E: std::fmt::Display>(&self, result: Result<(), E>) {
        match result {
            Ok(()) => self.served.fetch_add(1, Ordering::Relaxed),
            Err(e) => {
                self.error("request", e);
                self.failed.fetch_add(1, Ordering::Relaxed)
            }
        };
        self.last_end.fetch_max(self.nanos(), Ordering::Relaxed);
    }

    fn json(&self) -> String {
        let first = self.first_start.load(Ordering::Relaxed);
        let window = match first {
            0 => 0,
            first => self
                .last_end
                .load(Ordering::Relaxed)
                .saturating_sub(first - 1),
        };
        let mut quic = [0u64; 4];
        for conn in lock(&self.quic).iter() {
            let s = conn.stats();
            let counts = [
                s.udp_tx.datagrams,
                s.udp_tx.ios,
                s.udp_rx.datagrams,
                s.frame_tx.acks,
            ];
            for (sum, n) in quic.iter_mut().zip(counts) {
                *sum += n;
            }
        }
        let errors = lock(&self.errors);
        let errors: Vec<String> = errors
            .iter()
            .map(|(k, v)| format!("{}:{v}", json_string(k)))
            .collect();
        format!(
            concat!(
                r#"{{"connections":{},"served":{},"failed":{},"active_seconds":{:.6},"errors":{{{}}},"#,
                r#""quic":{{"tx_datagrams":{},"tx_ios":{},"rx_datagrams":{},"tx_acks":{}}}}}"#
            ),
            self.connections.load(Ordering::Relaxed),
            self.served.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
            window as f64 / 1e9,
            errors.join(","),
            quic[0],
            quic[1],
            quic[2],
            quic[3]
        )
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn json_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn main() -> Result<(), BoxError> {
    let args = Args::parse();
    let mut builder = match args.runtime {
        Runtime::CurrentThread => tokio::runtime::Builder::new_current_thread(),
        Runtime::MultiThread => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(args.threads);
            b
        }
    };
    builder.enable_all().build()?.block_on(serve(args))
}

async fn serve(args: Args) -> Result<(), BoxError> {
    let alpn = match args.imp {
        Impl::Raw => edge_benches::ALPN_RAW,
        Impl::H3Tokio | Impl::Hyper => h3_tokio::ALPN,
    };
    let endpoint = quinn::Endpoint::server(edge_benches::server_config(alpn)?, args.listen)?;
    println!("{}", endpoint.local_addr()?);

    let stats = Arc::new(Stats::new());
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let buf = chunk_buffer();
    let accept = async {
        while let Some(incoming) = endpoint.accept().await {
            stats.connections.fetch_add(1, Ordering::Relaxed);
            let (buf, stats) = (buf.clone(), stats.clone());
            tokio::spawn(async move {
                let result = match args.imp {
                    Impl::H3Tokio => {
                        serve_h3_tokio(incoming, buf, stats.clone(), args.respond_in_callback).await
                    }
                    Impl::Hyper => serve_hyper(incoming, buf, stats.clone()).await,
                    Impl::Raw => serve_raw(incoming, buf, stats.clone()).await,
                };
                if let Err(e) = result {
                    stats.error("connection", e);
                }
            });
        }
    };
    tokio::select! {
        _ = accept => {}
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    eprintln!("{}", stats.json());
    Ok(())
}

async fn serve_h3_tokio(
    incoming: quinn::Incoming,
    buf: Bytes,
    stats: Arc<Stats>,
    respond_in_callback: bool,
) -> Result<(), BoxError> {
    let quic = incoming.await?;
    stats.track(&quic);
    let config = h3_tokio::Config {
        // nghttp3 must know the transport's stream limit (see the field's docs).
        max_concurrent_streams: edge_benches::MAX_STREAMS.into(),
        ..Default::default()
    };
    let conn = h3_tokio::server::Connection::new(quic, config).await?;
    // Called in the connection's task: no accept loop task between it and the handler.
    // A task per request all the same, as for hyper, whose sends are async.
    conn.serve(move |req, mut stream| {
        stats.request_started();
        let route = route(req.method(), req.uri().path());
        if respond_in_callback && route == Route::Hello {
            stats.request_done(respond_hello(&mut stream));
            return;
        }
        let (buf, stats) = (buf.clone(), stats.clone());
        tokio::spawn(async move {
            let result = async {
                match route {
                    Route::Hello => return respond_hello(&mut stream),
                    Route::Bytes(n) => {
                        stream.send_response(response_head(StatusCode::OK, n))?;
                        for chunk in chunks(&buf, n) {
                            stream.send_data(chunk).await?;
                        }
                    }
                    Route::NotFound => {
                        stream.send_response(response_head(StatusCode::NOT_FOUND, 0))?
                    }
                }
                stream.finish()
            };
            stats.request_done(result.await);
        });
    })
    .await?;
    Ok(())
}

/// `GET /` over h3-tokio: a body in memory goes with head and end in one call.
fn respond_hello(stream: &mut h3_tokio::RequestStream) -> Result<(), h3_tokio::Error> {
    let head = response_head(StatusCode::OK, HELLO.len() as u64);
    stream.respond(head, Bytes::from_static(HELLO))
}

type HyperStream = h3::server::RequestStream<h3_quinn::BidiStream<Bytes>, Bytes>;

async fn serve_hyper(
    incoming: quinn::Incoming,
    buf: Bytes,
    stats: Arc<Stats>,
) -> Result<(), BoxError> {
    let quic = incoming.await?;
    stats.track(&quic);
    let mut conn: h3::server::Connection<h3_quinn::Connection, Bytes> =
        h3::server::Connection::new(h3_quinn::Connection::new(quic)).await?;
    loop {
        let resolver = match conn.accept().await {
            Ok(Some(resolver)) => resolver,
            // The client closing with H3_NO_ERROR is the normal end, as for h3-tokio.
            Ok(None) => return Ok(()),
            Err(e) if e.is_h3_no_error() => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        stats.request_started();
        let (buf, stats) = (buf.clone(), stats.clone());
        tokio::spawn(async move {
            let result = async {
                let (req, mut stream): (_, HyperStream) = resolver.resolve_request().await?;
                match route(req.method(), req.uri().path()) {
                    Route::Hello => {
                        let head = response_head(StatusCode::OK, HELLO.len() as u64);
                        stream.send_response(head).await?;
                        stream.send_data(Bytes::from_static(HELLO)).await?;
                    }
                    Route::Bytes(n) => {
                        stream
                            .send_response(response_head(StatusCode::OK, n))
                            .await?;
                        for chunk in chunks(&buf, n) {
                            stream.send_data(chunk).await?;
                        }
                    }
                    Route::NotFound => {
                        let head = response_head(StatusCode::NOT_FOUND, 0);
                        stream.send_response(head).await?
                    }
                }
                stream.finish().await
            };
            stats.request_done(result.await);
        });
    }
}

/// The raw baseline: what quinn alone costs to move the same bytes in the same chunks.
async fn serve_raw(
    incoming: quinn::Incoming,
    buf: Bytes,
    stats: Arc<Stats>,
) -> Result<(), BoxError> {
    let quic = incoming.await?;
    stats.track(&quic);
    loop {
        let (mut send, mut recv) = match quic.accept_bi().await {
            Ok(streams) => streams,
            // The client closing the connection is the normal end.
            Err(quinn::ConnectionError::ApplicationClosed(_)) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        stats.request_started();
        let (buf, stats) = (buf.clone(), stats.clone());
        tokio::spawn(async move {
            let result = async {
                let n = read_request_line(&mut recv).await?;
                for chunk in chunks(&buf, n) {
                    send.write_chunk(chunk).await?;
                }
                send.finish()?;
                Ok::<_, BoxError>(())
            };
            stats.request_done(result.await);
        });
    }
}

/// Reads the raw protocol's request, a decimal byte count ended by `\n`.
async fn read_request_line(recv: &mut quinn::RecvStream) -> Result<u64, BoxError> {
    let mut line = [0u8; 24];
    let mut len = 0;
    loop {
        if let Some(end) = line[..len].iter().position(|&b| b == b'\n') {
            return Ok(std::str::from_utf8(&line[..end])?.parse()?);
        }
        if len == line.len() {
            return Err("request line too long".into());
        }
        match recv.read(&mut line[len..]).await? {
            Some(n) => len += n,
            None => return Err("stream ended before the request line".into()),
        }
    }
}
