//! A handler that reads slowly bounds what a fast uploader can make the server hold.
//!
//! In a test binary of its own: it measures the process's resident memory, which tests
//! running beside it in one process would add to.

mod support;

use std::sync::Arc;
use std::time::Duration;

use h3_tokio::Config;
use http::Request;
use support::our_client::OurClient;
use support::tls;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_reader_bounds_an_upload() {
    use std::sync::atomic::{AtomicU64, Ordering};
    // A handler that reads one chunk every 10 ms.
    let endpoint = tls::server_endpoint();
    let addr = endpoint.local_addr().unwrap();
    let read = Arc::new(AtomicU64::new(0));
    let counter = read.clone();
    tokio::spawn(async move {
        let quic = endpoint.accept().await.unwrap().await.unwrap();
        let mut conn = h3_tokio::server::Connection::new(quic, Config::default())
            .await
            .unwrap();
        let (_req, mut stream) = conn.accept().await.unwrap().unwrap();
        while let Ok(Some(chunk)) = stream.recv_data().await {
            counter.fetch_add(chunk.len() as u64, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
    let c = OurClient::connect(addr).await.unwrap();
    let req = Request::post(format!("https://localhost:{}/upload", addr.port()))
        .body(())
        .unwrap();
    let mut stream = c.sender().send_request(req).await.unwrap();
    let sent = Arc::new(AtomicU64::new(0));
    let progress = sent.clone();
    // Try to upload 1 GiB as fast as possible.
    let upload = tokio::spawn(async move {
        let chunk = bytes::Bytes::from(vec![7u8; 64 * 1024]);
        for _ in 0..(1 << 30) / chunk.len() {
            if stream.send_data(chunk.clone()).await.is_err() {
                return;
            }
            progress.fetch_add(chunk.len() as u64, Ordering::SeqCst);
        }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_start = support::rss_bytes();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (sent, read) = (sent.load(Ordering::SeqCst), read.load(Ordering::SeqCst));
    let growth = support::rss_bytes().saturating_sub(rss_start);
    upload.abort();
    eprintln!("sent {sent} bytes, handler read {read}, RSS growth {growth} bytes");
    // What is in flight is bounded by the windows and buffers (QUIC stream and
    // connection windows, h3-tokio's recv_buffer and send_buffer), not by the upload.
    assert!(sent - read < 16 << 20, "{} bytes in flight", sent - read);
    assert!(
        sent < 64 << 20,
        "the upload was not slowed down: {sent} bytes sent"
    );
    assert!(growth < 16 << 20, "RSS grew by {growth} bytes");
}
