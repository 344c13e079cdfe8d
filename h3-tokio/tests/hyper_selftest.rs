//! Self-test of the test support: hyperium's h3 client against hyperium's h3 server,
//! over real UDP on loopback, through `tests/support`.

mod support;

use std::future::Future;
use std::time::Duration;

use http::{HeaderMap, HeaderValue, Method};
use support::app;
use support::hyper_client::HyperClient;
use support::hyper_server::{self, HyperServer};
use support::tls;

/// Upper bound for any single test: nothing may hang.
const LIMIT: Duration = Duration::from_secs(30);
/// How long a handler may take to report a cancelled stream.
const ERROR_WAIT: Duration = Duration::from_secs(5);

async fn within<F: Future>(fut: F) -> F::Output {
    tokio::time::timeout(LIMIT, fut)
        .await
        .expect("test did not complete in time")
}

async fn setup() -> (HyperServer, HyperClient) {
    let server = hyper_server::spawn(tls::server_endpoint());
    let client = HyperClient::connect(server.addr())
        .await
        .expect("connect client");
    (server, client)
}

/// The server saw one error, for the cancelled stream: `prefix`, then the code.
async fn one_cancel_error(server: &HyperServer, prefix: &str) {
    let errors = server.wait_for_errors(1, ERROR_WAIT).await;
    assert_eq!(
        errors.len(),
        1,
        "server saw no error for the cancel: {errors:?}"
    );
    assert!(
        errors[0].starts_with(prefix) && errors[0].contains("H3_REQUEST_CANCELLED"),
        "{errors:?}"
    );
}

#[test]
fn app_helpers() {
    let p = app::pattern(600);
    assert_eq!(p.len(), 600);
    assert_eq!(
        (p[0], p[250], p[251], p[599]),
        (0, 250, 0, (599 % 251) as u8)
    );
    for (offset, len) in [(0u64, 10usize), (250, 3), (1_000_003, 65536), (7, 70_000)] {
        let expected: Vec<u8> = (0..len)
            .map(|i| ((offset + i as u64) % 251) as u8)
            .collect();
        assert_eq!(app::pattern_chunk(offset, len), expected);
    }
    assert_eq!(
        app::sha256_hex(b""),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    use app::Route;
    assert_eq!(app::route(&Method::GET, "/hello"), Route::Hello);
    assert_eq!(app::route(&Method::GET, "/bytes/1000"), Route::Bytes(1000));
    assert_eq!(app::route(&Method::GET, "/bytes/"), Route::NotFound);
    assert_eq!(app::route(&Method::GET, "/bytes/-1"), Route::NotFound);
    assert_eq!(app::route(&Method::POST, "/sha256"), Route::Sha256);
    assert_eq!(app::route(&Method::POST, "/echo"), Route::Echo);
    assert_eq!(app::route(&Method::GET, "/trailers"), Route::Trailers);
    assert_eq!(app::route(&Method::POST, "/hello"), Route::NotFound);
    assert_eq!(app::route(&Method::GET, "/nope"), Route::NotFound);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_hello() {
    within(async {
        let server = hyper_server::spawn(tls::server_endpoint());
        // The explicit path: our own endpoint, tls::connect, HyperClient::new.
        let endpoint = tls::client_endpoint();
        let conn = tls::connect(&endpoint, server.addr()).await;
        let client = HyperClient::new(conn).await.unwrap();

        let reply = client.get("/hello").await.unwrap();
        assert_eq!(reply.status, 200);
        assert_eq!(reply.headers["x-test"], "yes");
        assert_eq!(reply.headers["content-type"], "text/plain");
        assert_eq!(reply.body, app::HELLO_BODY);
        assert_eq!(reply.trailers, None);

        let reply = client.get("/missing").await.unwrap();
        assert_eq!(reply.status, 404);
        assert_eq!(reply.body, app::NOT_FOUND_BODY);

        assert_eq!(server.errors(), Vec::<String>::new());
        assert_eq!(server.requests(), 2);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_sha256_10mib_with_trailers() {
    within(async {
        let (server, client) = setup().await;
        let body = app::pattern(10 * 1024 * 1024);
        let mut trailers = HeaderMap::new();
        trailers.insert("x-checksum-kind", HeaderValue::from_static("sha256"));
        trailers.insert(
            "x-request-trailer",
            HeaderValue::from_static("hello trailer"),
        );

        let reply = client
            .request(
                Method::POST,
                "/sha256",
                Some(body.clone()),
                Some(trailers.clone()),
            )
            .await
            .unwrap();
        assert_eq!(reply.status, 200);
        assert_eq!(reply.body, app::sha256_response_body(&body));
        assert_eq!(reply.trailers, Some(trailers));

        // No request trailers: no response trailers.
        let reply = client
            .request(Method::POST, "/sha256", Some(b"abc".to_vec()), None)
            .await
            .unwrap();
        assert_eq!(
            String::from_utf8(reply.body).unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\n"
        );
        assert_eq!(reply.trailers, None);

        assert_eq!(server.errors(), Vec::<String>::new());
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_echo_streams_back() {
    within(async {
        let (server, client) = setup().await;
        // Larger than the QUIC flow-control windows: only works if both sides stream.
        let body = app::pattern(3 * 1024 * 1024 + 17);
        let reply = client
            .request(Method::POST, "/echo", Some(body.clone()), None)
            .await
            .unwrap();
        assert_eq!(reply.status, 200);
        assert!(reply.body == body, "echoed body differs");
        assert_eq!(server.errors(), Vec::<String>::new());
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_concurrent_gets_on_one_connection() {
    within(async {
        let (server, client) = setup().await;
        let expected = app::pattern(1000);
        let tasks: Vec<_> = (0..100)
            .map(|_| {
                let client = client.clone();
                tokio::spawn(async move { client.get("/bytes/1000").await })
            })
            .collect();
        for task in tasks {
            let reply = task.await.unwrap().unwrap();
            assert_eq!(reply.status, 200);
            assert_eq!(reply.headers["content-length"], "1000");
            assert!(reply.body == expected, "wrong /bytes/1000 body");
        }
        assert_eq!(server.requests(), 100);
        assert_eq!(server.errors(), Vec::<String>::new());
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_trailers() {
    within(async {
        let (server, client) = setup().await;
        let reply = client.get("/trailers").await.unwrap();
        assert_eq!(reply.status, 200);
        assert_eq!(reply.body, app::TRAILERS_BODY);
        assert_eq!(reply.trailers, Some(app::trailers_response()));
        assert_eq!(server.errors(), Vec::<String>::new());
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_upload_then_get() {
    within(async {
        let (server, client) = setup().await;
        // 4 MiB is past quinn's 1.25 MB stream window: the handler is reading the body.
        let seen = client
            .cancel_upload("/sha256", 10 * 1024 * 1024, 4 * 1024 * 1024)
            .await
            .unwrap();
        println!("cancel_upload observed: {seen}");
        assert!(seen.starts_with("sent 4194304 of 10485760 bytes"), "{seen}");

        one_cancel_error(&server, "POST /sha256: recv_data").await;

        let reply = client.get("/hello").await.unwrap();
        assert_eq!(
            (reply.status, reply.body.as_slice()),
            (200, app::HELLO_BODY)
        );
        assert_eq!(server.errors().len(), 1);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_download_then_get() {
    within(async {
        let (server, client) = setup().await;
        let seen = client
            .cancel_download("/bytes/1073741824", 1024 * 1024)
            .await
            .unwrap();
        println!("cancel_download observed: {seen}");
        assert!(seen.starts_with("status 200, received "), "{seen}");
        assert!(seen.contains("STOP_SENDING H3_REQUEST_CANCELLED"), "{seen}");

        one_cancel_error(&server, "GET /bytes/1073741824: send_data").await;

        let reply = client.get("/bytes/1000").await.unwrap();
        assert_eq!(reply.status, 200);
        assert!(reply.body == app::pattern(1000));
        assert_eq!(server.errors().len(), 1);
    })
    .await
}
