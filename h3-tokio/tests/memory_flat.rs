//! Resident memory stays flat over many requests on one connection.
//!
//! In a test binary of its own: it measures the process's resident memory, which tests
//! running beside it in one process would add to.

mod support;

use h3_tokio::Config;
use support::hyper_client::HyperClient;
use support::tls;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_sequential_requests_keep_memory_flat() {
    let server = support::our_server::spawn(tls::server_endpoint(), Config::default());
    let client = HyperClient::connect(server.addr()).await.unwrap();
    let mut warm = 0;
    for i in 0..10_000 {
        let reply = client.get("/hello").await.unwrap();
        assert_eq!(reply.status, 200, "request {i}");
        if i == 1_000 {
            warm = support::rss_bytes();
        }
    }
    let end = support::rss_bytes();
    // Both ends live in this process; a leak of even 200 bytes per request would show
    // as 1.8 MB here.
    eprintln!("RSS after 1000 requests: {warm} bytes; after 10000: {end} bytes");
    let growth = end.saturating_sub(warm);
    assert!(
        growth < 1 << 20,
        "RSS grew by {growth} bytes over 9000 requests ({warm} -> {end})"
    );
    assert!(server.errors().is_empty(), "{:?}", server.errors());
}
