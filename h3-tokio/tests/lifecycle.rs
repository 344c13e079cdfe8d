//! Connection lifecycle: graceful shutdown with requests in flight, against hyperium's
//! h3 client. (Resident memory over many requests is `memory_flat.rs`.)

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use h3_tokio::{server, Config};
use http::Response;
use support::hyper_client::HyperClient;
use support::{raw, tls};
use tokio::sync::{mpsc, Notify};

const H3_NO_ERROR: u64 = 0x100;
const H3_REQUEST_REJECTED: u64 = 0x10b;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_finishes_in_flight_requests() {
    let endpoint = tls::server_endpoint();
    let addr = endpoint.local_addr().unwrap();
    let in_flight = Arc::new(AtomicUsize::new(0));
    let release = Arc::new(Notify::new());
    let (handle_tx, mut handle_rx) = mpsc::unbounded_channel();

    // A server whose handlers hold their response until released.
    let (count, gate) = (in_flight.clone(), release.clone());
    tokio::spawn(async move {
        let quic = endpoint.accept().await.unwrap().await.unwrap();
        let mut conn = server::Connection::new(quic, Config::default())
            .await
            .unwrap();
        handle_tx.send(conn.handle()).unwrap();
        while let Ok(Some((_req, mut stream))) = conn.accept().await {
            let (count, gate) = (count.clone(), gate.clone());
            tokio::spawn(async move {
                count.fetch_add(1, Ordering::SeqCst);
                gate.notified().await;
                stream.send_response(Response::new(())).unwrap();
                stream
                    .send_data(Bytes::from_static(b"done\n"))
                    .await
                    .unwrap();
                stream.finish().unwrap();
            });
        }
    });

    let client = HyperClient::connect(addr).await.unwrap();
    let quic = client.connection().clone();
    let requests: Vec<_> = (0..20)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { client.get("/held").await })
        })
        .collect();
    let handle = handle_rx.recv().await.unwrap();
    while in_flight.load(Ordering::SeqCst) < 20 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    handle.shutdown(Duration::from_secs(10));
    // Let both GOAWAY frames (the notice, then the real limit, 10 ms later) arrive, with
    // room for a loaded machine.
    tokio::time::sleep(Duration::from_secs(1)).await;
    // hyperium's client has seen GOAWAY and refuses new requests itself. (Sent before
    // the notice reached it, the request could reach the server before the real limit
    // and be held like the others until released below: the timeout makes that a
    // failure, not a hang.)
    let late = tokio::time::timeout(Duration::from_secs(5), client.get("/late"))
        .await
        .expect("GET /late neither refused nor answered: sent before GOAWAY arrived, and held");
    assert!(late.is_err(), "request accepted after GOAWAY");
    // A stream opened anyway is refused by the server, unprocessed.
    let (_send, mut recv) = raw::request(&quic, &raw::get_headers("/late"), true).await;
    match tokio::time::timeout(Duration::from_secs(5), raw::read_all(&mut recv))
        .await
        .unwrap()
    {
        Err(quinn::ReadToEndError::Read(quinn::ReadError::Reset(code))) => {
            assert_eq!(code.into_inner(), H3_REQUEST_REJECTED)
        }
        other => panic!("late stream not rejected: {other:?}"),
    }

    // The 20 accepted requests all complete.
    release.notify_waiters();
    for r in requests {
        let reply = r.await.unwrap().expect("in-flight request failed");
        assert_eq!(reply.status, 200);
        assert_eq!(reply.body, b"done\n");
    }
    // Then the server closes the connection with H3_NO_ERROR.
    assert_eq!(raw::close_code(&quic).await, Some(H3_NO_ERROR));
}

/// hyperium's h3 client (like oha) sends GOAWAY when it is done and waits for the server
/// to close: the server closes with H3_NO_ERROR at once, not at the idle timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_closes_when_the_client_sends_goaway() {
    let endpoint = tls::server_endpoint();
    let addr = endpoint.local_addr().unwrap();
    tokio::spawn(async move {
        let quic = endpoint.accept().await.unwrap().await.unwrap();
        let mut conn = server::Connection::new(quic, Config::default())
            .await
            .unwrap();
        while let Ok(Some((_req, mut stream))) = conn.accept().await {
            stream.send_response(Response::new(())).unwrap();
            stream.finish().unwrap();
        }
    });

    let client_endpoint = tls::client_endpoint();
    let quic = client_endpoint
        .connect(addr, "localhost")
        .unwrap()
        .await
        .unwrap();
    let (mut driver, mut send) = h3::client::new(h3_quinn::Connection::new(quic.clone()))
        .await
        .unwrap();
    let req = http::Request::get(format!("https://localhost:{}/", addr.port()))
        .body(())
        .unwrap();
    let mut stream = send.send_request(req).await.unwrap();
    // The server answers on the head alone and may then stop the request's sending side
    // with H3_NO_ERROR (RFC 9114, 4.1) before this end is sent: on a loaded machine the
    // finish can come too late, and is refused so.
    if let Err(e) = stream.finish().await {
        assert!(
            matches!(e, h3::error::StreamError::RemoteTerminate { code, .. } if code == h3::error::Code::H3_NO_ERROR),
            "{e:?}"
        );
    }
    assert_eq!(stream.recv_response().await.unwrap().status(), 200);
    while stream.recv_data().await.unwrap().is_some() {}
    drop((stream, send));

    driver.shutdown(0).await.unwrap();
    let started = std::time::Instant::now();
    // The driver is not polled further: hyperium's would close the connection itself.
    let closed = tokio::time::timeout(Duration::from_secs(5), quic.closed())
        .await
        .expect("the server did not close after the client's GOAWAY");
    match closed {
        quinn::ConnectionError::ApplicationClosed(close) => {
            assert_eq!(close.error_code.into_inner(), H3_NO_ERROR)
        }
        other => panic!("closed with {other}"),
    }
    assert!(started.elapsed() < Duration::from_secs(2));
    drop(driver);
}

/// `SendHalf::poll_stopped` resolves when the client gives up on a request (STOP_SENDING
/// on the response, RESET_STREAM on the request, or the connection's close), with what
/// the client said, and stays pending for a request the client still waits for, which
/// is then answered as usual.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poll_stopped_tells_a_server_its_client_gave_up() {
    let endpoint = tls::server_endpoint();
    let addr = endpoint.local_addr().unwrap();
    let (seen_tx, mut seen_rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(incoming) = endpoint.accept().await {
            let quic = incoming.await.unwrap();
            let mut conn = server::Connection::new(quic, Config::default())
                .await
                .unwrap();
            let seen_tx = seen_tx.clone();
            tokio::spawn(async move {
                while let Ok(Some((_req, stream))) = conn.accept().await {
                    let seen_tx = seen_tx.clone();
                    tokio::spawn(async move {
                        let (mut send, _recv) = stream.split();
                        seen_tx.send("accepted".to_owned()).unwrap();
                        let stopped = std::future::poll_fn(|cx| send.poll_stopped(cx));
                        match tokio::time::timeout(Duration::from_millis(500), stopped).await {
                            Ok(e) => seen_tx.send(format!("{:?}", e)).unwrap(),
                            Err(_) => {
                                send.send_response(Response::new(())).unwrap();
                                send.finish().unwrap();
                                // Once the client has it all, still pending, as often
                                // as asked.
                                tokio::time::sleep(Duration::from_millis(300)).await;
                                for _ in 0..2 {
                                    let stopped = std::future::poll_fn(|cx| send.poll_stopped(cx));
                                    let late =
                                        tokio::time::timeout(Duration::from_millis(50), stopped);
                                    assert!(late.await.is_err(), "stopped after the answer");
                                }
                                seen_tx.send("answered".into()).unwrap();
                            }
                        }
                    });
                }
            });
        }
    });
    let client = tls::client_endpoint();
    let quic = client.connect(addr, "localhost").unwrap().await.unwrap();
    let _control = raw::open_control(&quic).await;
    let cancelled = quinn::VarInt::from_u32(0x10c);
    // The server's next word; "accepted" first for each request (a stream reset before
    // its head was read never reaches the application).
    async fn next(seen: &mut mpsc::UnboundedReceiver<String>) -> String {
        let word = tokio::time::timeout(Duration::from_secs(5), seen.recv());
        word.await.expect("no word from the server").unwrap()
    }

    let (_send, mut recv) = raw::request(&quic, &raw::get_headers("/"), true).await;
    assert_eq!(next(&mut seen_rx).await, "accepted");
    recv.stop(cancelled).unwrap();
    let seen = next(&mut seen_rx).await;
    assert_eq!(
        seen,
        "Stream { code: H3_REQUEST_CANCELLED, origin: Remote, reset: false }"
    );

    let (mut send, _recv) = raw::request(&quic, &raw::post_headers("/"), false).await;
    assert_eq!(next(&mut seen_rx).await, "accepted");
    send.reset(cancelled).unwrap();
    let seen = next(&mut seen_rx).await;
    assert_eq!(
        seen,
        "Stream { code: H3_REQUEST_CANCELLED, origin: Remote, reset: true }"
    );

    let (_send, mut recv) = raw::request(&quic, &raw::get_headers("/"), true).await;
    assert_eq!(next(&mut seen_rx).await, "accepted");
    assert_eq!(next(&mut seen_rx).await, "answered");
    let frames = raw::read_all(&mut recv).await.unwrap();
    assert_eq!(raw::frame_types(&frames), [0x01], "one HEADERS frame");

    let (_send, _recv) = raw::request(&quic, &raw::get_headers("/"), true).await;
    assert_eq!(next(&mut seen_rx).await, "accepted");
    quic.close(quinn::VarInt::from_u32(0x100), b"bye");
    let seen = next(&mut seen_rx).await;
    assert!(seen.starts_with("Connection {"), "{seen}");
}
