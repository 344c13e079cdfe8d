//! h3-tokio against hyperium's h3 + h3-quinn, both ways, over real UDP on loopback:
//! their client against our server, and our client against their server.

mod support;

use std::time::Duration;

use http::{HeaderMap, Method};
use support::app::{pattern, sha256_response_body};
use support::hyper_client::{HyperClient, Reply};
use support::hyper_server::{self, HyperServer};
use support::our_client::OurClient;
use support::our_server::{self, OurServer};
use support::tls;

enum Client {
    Hyper(HyperClient),
    Ours(OurClient),
}

impl Client {
    async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        trailers: Option<HeaderMap>,
    ) -> Result<Reply, String> {
        match self {
            Client::Hyper(c) => c.request(method, path, body, trailers).await,
            Client::Ours(c) => c.request(method, path, body, trailers).await,
        }
    }

    async fn get(&self, path: &str) -> Reply {
        self.request(Method::GET, path, None, None)
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"))
    }

    async fn cancel_upload(&self, path: &str, total: u64, after: u64) -> Result<String, String> {
        match self {
            Client::Hyper(c) => c.cancel_upload(path, total, after).await,
            Client::Ours(c) => c.cancel_upload(path, total, after).await,
        }
    }

    async fn cancel_download(&self, path: &str, after: u64) -> Result<String, String> {
        match self {
            Client::Hyper(c) => c.cancel_download(path, after).await,
            Client::Ours(c) => c.cancel_download(path, after).await,
        }
    }
}

enum Server {
    Hyper(HyperServer),
    Ours(OurServer),
}

impl Server {
    fn errors(&self) -> Vec<String> {
        match self {
            Server::Hyper(s) => s.errors(),
            Server::Ours(s) => s.errors(),
        }
    }

    async fn wait_for_errors(&self, n: usize) -> Vec<String> {
        for _ in 0..200 {
            if self.errors().len() >= n {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        self.errors()
    }
}

fn trailers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
    pairs
        .iter()
        .map(|(n, v)| {
            (
                http::HeaderName::from_static(n),
                http::HeaderValue::from_static(v),
            )
        })
        .collect()
}

/// The scenarios every client/server pair must pass.
async fn scenarios(client: Client, server: &Server) {
    // GET.
    let hello = client.get("/hello").await;
    assert_eq!(hello.status, 200);
    assert_eq!(hello.headers["x-test"], "yes");
    assert_eq!(hello.body, b"hello world\n");
    assert_eq!(hello.trailers, None);

    // POST 10 MiB, checked by hash, with trailers echoed back.
    let body = pattern(10 << 20);
    let sent = trailers(&[("x-checksum", "sha256"), ("x-upload", "done")]);
    let reply = client
        .request(
            Method::POST,
            "/sha256",
            Some(body.clone()),
            Some(sent.clone()),
        )
        .await
        .unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body, sha256_response_body(&body));
    assert_eq!(reply.trailers.as_ref(), Some(&sent));

    // Streaming both ways at once.
    let echo = client
        .request(Method::POST, "/echo", Some(pattern(3 << 20)), None)
        .await
        .unwrap();
    assert_eq!(echo.status, 200);
    assert!(
        echo.body == pattern(3 << 20),
        "echo body differs ({} bytes)",
        echo.body.len()
    );

    // Trailers from the server.
    let t = client.get("/trailers").await;
    assert_eq!(t.body, b"body\n");
    assert_eq!(
        t.trailers,
        Some(trailers(&[("x-trailer-one", "1"), ("x-trailer-two", "2")]))
    );

    // 100 concurrent requests on one connection.
    let client = std::sync::Arc::new(client);
    let tasks: Vec<_> = (0..100)
        .map(|i| {
            let client = client.clone();
            tokio::spawn(async move {
                let n = 1000 + i * 37;
                let r = client.get(&format!("/bytes/{n}")).await;
                (n, r)
            })
        })
        .collect();
    for task in tasks {
        let (n, r) = task.await.unwrap();
        assert_eq!(r.status, 200);
        assert!(r.body == pattern(n), "/bytes/{n} differs");
    }

    // A request cancelled mid-upload: the server sees an error, not a hang, and the
    // connection keeps working.
    let before = server.errors().len();
    client
        .cancel_upload("/sha256", 8 << 20, 2 << 20)
        .await
        .unwrap();
    let errors = server.wait_for_errors(before + 1).await;
    assert!(
        errors.len() > before,
        "server saw no error for the cancelled upload"
    );
    assert_eq!(client.get("/hello").await.status, 200);

    // A download cancelled mid-body (1 GiB response, cancelled after 1 MiB).
    client
        .cancel_download("/bytes/1073741824", 1 << 20)
        .await
        .unwrap();
    assert_eq!(client.get("/hello").await.body, b"hello world\n");
}

/// [`scenarios`], bounded in time.
async fn run(client: Client, server: &Server) {
    tokio::time::timeout(Duration::from_secs(60), scenarios(client, server))
        .await
        .expect("scenarios timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hyper_client_against_our_server() {
    let server = our_server::spawn(tls::server_endpoint(), h3_tokio::Config::default());
    let client = HyperClient::connect(server.addr()).await.unwrap();
    run(Client::Hyper(client), &Server::Ours(server)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_client_against_hyper_server() {
    let server = hyper_server::spawn(tls::server_endpoint());
    let client = OurClient::connect(server.addr()).await.unwrap();
    run(Client::Ours(client), &Server::Hyper(server)).await;
}
