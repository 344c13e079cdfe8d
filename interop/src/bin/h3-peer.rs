//! `h3-peer`: hyperium's `h3` + `h3-quinn` as an interop endpoint, for the `http3`
//! testcase of the local runner (a peer we did not write, on the HTTP/3 layer).
//!
//! Same contract and flags as `interop` (`--role`, `--testcase`, `--requests`,
//! `--www`, `--downloads`, `--certs`, `--listen`, `--connect`, `--keylog`, with the
//! runner's environment variables as fallbacks). Every testcase but `http3` exits 127.
//! The server prints `interop: listening on ADDR` first and serves files from `--www`
//! (404 otherwise); the client fetches every URL concurrently on one connection and saves
//! each body under `--downloads` by URL path. Exit status 0 on success, 1 on failure.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use bytes::{Buf, Bytes};
use clap::Parser;
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{ring, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

#[derive(Parser, Debug)]
struct Args {
    #[arg(long, env = "ROLE")]
    role: String,
    #[arg(long, env = "TESTCASE")]
    testcase: String,
    #[arg(long, env = "REQUESTS", default_value = "")]
    requests: String,
    #[arg(long, env = "SSLKEYLOGFILE")]
    keylog: Option<PathBuf>,
    #[arg(long, default_value = "/www")]
    www: PathBuf,
    #[arg(long, default_value = "/downloads")]
    downloads: PathBuf,
    #[arg(long, default_value = "/certs")]
    certs: PathBuf,
    #[arg(long, default_value = "[::]:443")]
    listen: SocketAddr,
    #[arg(long)]
    connect: Option<SocketAddr>,
}

type Error = Box<dyn std::error::Error + Send + Sync>;

fn main() -> ExitCode {
    let args = Args::parse();
    if args.testcase != "http3" {
        return ExitCode::from(127);
    }
    if let Some(k) = &args.keylog {
        // rustls' KeyLogFile writes where SSLKEYLOGFILE says.
        std::env::set_var("SSLKEYLOGFILE", k);
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("h3-peer: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async {
        match args.role.as_str() {
            "server" => server(&args).await,
            "client" => client(&args).await,
            r => Err(format!("unknown role {r}").into()),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("h3-peer: {e}");
            ExitCode::FAILURE
        }
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(ring::default_provider())
}

async fn server(args: &Args) -> Result<(), Error> {
    let chain = CertificateDer::pem_file_iter(args.certs.join("cert.pem"))?
        .collect::<Result<Vec<_>, _>>()?;
    let key = PrivateKeyDer::from_pem_file(args.certs.join("priv.key"))?;
    let mut tls = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    tls.alpn_protocols = vec![b"h3".to_vec()];
    tls.key_log = Arc::new(rustls::KeyLogFile::new());
    let config = quinn::ServerConfig::with_crypto(Arc::new(QuicServerConfig::try_from(tls)?));
    let endpoint = quinn::Endpoint::server(config, args.listen)?;
    println!("interop: listening on {}", endpoint.local_addr()?);
    while let Some(incoming) = endpoint.accept().await {
        let www = args.www.clone();
        tokio::spawn(async move {
            if let Err(e) = serve(incoming, www).await {
                eprintln!("h3-peer: connection: {e}");
            }
        });
    }
    Ok(())
}

async fn serve(incoming: quinn::Incoming, www: PathBuf) -> Result<(), Error> {
    let conn = incoming.await?;
    println!("interop: connection from {}", conn.remote_address());
    let mut h3: h3::server::Connection<h3_quinn::Connection, Bytes> = h3::server::builder()
        .build(h3_quinn::Connection::new(conn))
        .await?;
    while let Ok(Some(resolver)) = h3.accept().await {
        let www = www.clone();
        tokio::spawn(async move {
            let result: Result<(), Error> = async {
                let (req, mut stream) = resolver.resolve_request().await?;
                let body = file_under(&www, req.uri().path()).and_then(|p| std::fs::read(p).ok());
                let status = if body.is_some() { 200 } else { 404 };
                stream
                    .send_response(http::Response::builder().status(status).body(())?)
                    .await?;
                if let Some(body) = body {
                    stream.send_data(Bytes::from(body)).await?;
                }
                stream.finish().await?;
                Ok(())
            }
            .await;
            if let Err(e) = result {
                eprintln!("h3-peer: request: {e}");
            }
        });
    }
    Ok(())
}

/// The file under `root` that a URL path names, refusing escapes.
fn file_under(root: &Path, path: &str) -> Option<PathBuf> {
    let parts: Vec<&str> = path
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    if parts.is_empty() || parts.contains(&"..") {
        return None;
    }
    Some(
        parts
            .iter()
            .fold(root.to_path_buf(), |p, part| p.join(part)),
    )
}

async fn client(args: &Args) -> Result<(), Error> {
    let urls: Vec<http::Uri> = args
        .requests
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    let first = urls.first().ok_or("no REQUESTS")?;
    let host = first.host().ok_or("URL without host")?.to_owned();
    let port = first.port_u16().unwrap_or(443);
    let addr = match args.connect {
        Some(a) => a,
        None => tokio::net::lookup_host((host.as_str(), port))
            .await?
            .next()
            .ok_or("no address")?,
    };
    let mut tls = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(NoVerify(provider())))
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"h3".to_vec()];
    tls.key_log = Arc::new(rustls::KeyLogFile::new());
    let config = quinn::ClientConfig::new(Arc::new(QuicClientConfig::try_from(tls)?));
    let bind: SocketAddr = if addr.is_ipv6() {
        "[::]:0"
    } else {
        "0.0.0.0:0"
    }
    .parse()?;
    let mut endpoint = quinn::Endpoint::client(bind)?;
    endpoint.set_default_client_config(config);
    let conn = endpoint.connect(addr, &host)?.await?;
    let (mut driver, send) = h3::client::new(h3_quinn::Connection::new(conn.clone())).await?;
    let drive = tokio::spawn(async move { driver.wait_idle().await });
    let mut tasks = vec![];
    for url in urls {
        let mut send = send.clone();
        let downloads = args.downloads.clone();
        tasks.push(tokio::spawn(async move {
            let path = url.path().to_owned();
            let mut stream = send.send_request(http::Request::get(url).body(())?).await?;
            stream.finish().await?;
            let resp = stream.recv_response().await?;
            if resp.status() != http::StatusCode::OK {
                return Err(format!("{path}: status {}", resp.status()).into());
            }
            let mut body = Vec::new();
            while let Some(mut chunk) = stream.recv_data().await? {
                while chunk.has_remaining() {
                    let c = chunk.chunk();
                    body.extend_from_slice(c);
                    let n = c.len();
                    chunk.advance(n);
                }
            }
            let dest = file_under(&downloads, &path).ok_or(format!("bad path {path}"))?;
            if let Some(parent) = dest.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(dest, body)?;
            Ok::<(), Error>(())
        }));
    }
    let mut result = Ok(());
    for t in tasks {
        match t.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => result = Err(e),
            Err(e) => result = Err(e.into()),
        }
    }
    drop(send);
    conn.close(0u32.into(), b"done");
    drive.abort();
    endpoint.wait_idle().await;
    result
}

/// Accepts any server certificate (the runner gives the client no CA) but still checks
/// the handshake signature.
#[derive(Debug)]
struct NoVerify(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
