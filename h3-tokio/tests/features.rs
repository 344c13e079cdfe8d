//! h3-tokio features beyond plain requests: 1xx responses, RFC 9218 priorities,
//! extended CONNECT, 0-RTT requests marked as early data, GOAWAY seen by a client,
//! whole responses sent in one call, requests served through a callback, and field
//! names as sent.

mod support;

use std::time::Duration;

use h3_tokio::{client, Config, EarlyData, Protocol};
use http::{HeaderMap, Method, Request};
use support::hyper_client::HyperClient;
use support::our_client::OurClient;
use support::{our_server, tls};

fn server(config: Config) -> our_server::OurServer {
    our_server::spawn(tls::server_endpoint(), config)
}

/// `GET path` to the server `s`.
fn get(s: &our_server::OurServer, path: &str) -> Request<()> {
    let uri = format!("https://localhost:{}{path}", s.addr().port());
    Request::get(uri).body(()).unwrap()
}

#[tokio::test]
async fn early_hints_reach_the_client_before_the_response() {
    let s = server(Config::default());
    let c = OurClient::connect(s.addr()).await.unwrap();
    let req = get(&s, "/early-hints");
    let mut stream = c.sender().send_request(req).await.unwrap();
    stream.finish().unwrap();
    let resp = stream.recv_response().await.unwrap();
    assert_eq!(resp.status(), 200);
    let hints = stream.informational();
    assert_eq!(hints.len(), 1);
    assert_eq!(hints[0].status(), 103);
    assert_eq!(hints[0].headers()["link"], "</style.css>; rel=preload");
    assert_eq!(stream.recv_data().await.unwrap().unwrap(), "after hints\n");
}

/// A server that sends 1xx responses without end costs the client bounded memory: the
/// latest 16 are kept for `informational()`, and the final response still arrives.
#[tokio::test]
async fn informational_responses_kept_are_bounded() {
    let s = server(Config::default());
    let c = OurClient::connect(s.addr()).await.unwrap();
    let uri = format!("https://localhost:{}/early-hints?1000", s.addr().port());
    let mut stream = c
        .sender()
        .send_request(Request::get(uri).body(()).unwrap())
        .await
        .unwrap();
    stream.finish().unwrap();
    assert_eq!(stream.recv_response().await.unwrap().status(), 200);
    let hints = stream.informational();
    let seen: Vec<&str> = hints
        .iter()
        .map(|h| h.headers()["x-hint"].to_str().unwrap())
        .collect();
    let latest: Vec<String> = (984..1000).map(|i| i.to_string()).collect();
    assert_eq!(seen, latest);
}

#[tokio::test]
async fn priority_header_is_readable_by_the_server() {
    let s = server(Config::default());
    let c = HyperClient::connect(s.addr()).await.unwrap();
    let mut headers = HeaderMap::new();
    headers.insert("priority", "u=1, i".parse().unwrap());
    let r = c
        .request_with_headers(Method::GET, "/inspect", headers, None, None)
        .await
        .unwrap();
    assert_eq!(r.headers["x-urgency"], "1");
    assert_eq!(r.headers["x-incremental"], "true");
    let r = c.get("/inspect").await.unwrap();
    assert_eq!(r.headers["x-urgency"], "3", "RFC 9218 default urgency");
    assert_eq!(r.headers["x-incremental"], "false");
}

/// Names nghttp3 recognises (from QPACK's static table, or its lookup of a literal)
/// reach the application as sent, beside names it does not know.
#[tokio::test]
async fn known_and_unknown_field_names_arrive_as_sent() {
    let s = server(Config::default());
    let c = HyperClient::connect(s.addr()).await.unwrap();
    let names = [
        "accept",
        "accept-encoding",
        "accept-language",
        "accept-ranges",
        "age",
        "authorization",
        "cache-control",
        "content-disposition",
        "content-encoding",
        "content-type",
        "cookie",
        "date",
        "etag",
        "if-modified-since",
        "if-none-match",
        "if-range",
        "last-modified",
        "link",
        "location",
        "origin",
        "range",
        "referer",
        "server",
        "set-cookie",
        "user-agent",
        "vary",
        "x-forwarded-for",
        "x-unknown",
    ];
    let mut headers = HeaderMap::new();
    for name in names {
        headers.insert(name, format!("v-{name}").parse().unwrap());
    }
    let r = c
        .request_with_headers(Method::GET, "/inspect", headers, None, None)
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    let seen = r.headers["x-fields"].to_str().unwrap();
    let mut seen: Vec<&str> = seen.split(';').collect();
    seen.sort();
    let mut want: Vec<String> = names.iter().map(|n| format!("{n}=v-{n}")).collect();
    want.sort();
    assert_eq!(seen, want);
}

#[tokio::test]
async fn extended_connect_carries_protocol() {
    let s = server(Config {
        enable_connect_protocol: true,
        ..Config::default()
    });
    let c = OurClient::connect(s.addr()).await.unwrap();
    let mut req = Request::builder()
        .method(Method::CONNECT)
        .uri(format!("https://localhost:{}/chat", s.addr().port()))
        .body(())
        .unwrap();
    req.extensions_mut().insert(Protocol::from("websocket"));
    let mut stream = c.sender().send_request(req).await.unwrap();
    let resp = stream.recv_response().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-protocol"], "websocket");
    assert_eq!(resp.headers()["x-method"], "CONNECT");
}

#[tokio::test]
async fn zero_rtt_requests_are_marked_as_early_data() {
    // The server starts HTTP/3 on 0.5-RTT connections so it can read 0-RTT streams.
    let endpoint = tls::server_endpoint();
    let addr = endpoint.local_addr().unwrap();
    tokio::spawn(async move {
        while let Some(incoming) = endpoint.accept().await {
            let connecting = incoming.accept().unwrap();
            let quic = match connecting.into_0rtt() {
                Ok((quic, _accepted)) => quic,
                Err(connecting) => connecting.await.unwrap(),
            };
            tokio::spawn(async move {
                let mut conn = h3_tokio::server::Connection::new(quic, Config::default())
                    .await
                    .unwrap();
                while let Ok(Some((req, mut stream))) = conn.accept().await {
                    let early = req.extensions().get::<EarlyData>().is_some();
                    let status = if early && req.method() != Method::GET {
                        425
                    } else {
                        200
                    };
                    let resp = http::Response::builder()
                        .status(status)
                        .header("x-early-data", if early { "yes" } else { "no" })
                        .body(())
                        .unwrap();
                    stream.send_response(resp).unwrap();
                    stream.finish().unwrap();
                }
            });
        }
    });

    let endpoint = tls::client_endpoint();
    let mut seen = Vec::new();
    for round in 0..2 {
        let connecting = endpoint.connect(addr, "localhost").unwrap();
        // The first connection earns a session ticket; the second uses it for 0-RTT.
        let quic = match connecting.into_0rtt() {
            Ok((quic, _)) => quic,
            Err(connecting) => {
                assert_eq!(round, 0, "no 0-RTT on the resumed connection");
                connecting.await.unwrap()
            }
        };
        let h3 = client::new(quic.clone(), Config::default()).await.unwrap();
        // Both requests go out before any response, so on the resumed connection both
        // travel in 0-RTT.
        let mut streams = Vec::new();
        for method in [Method::GET, Method::POST] {
            let req = Request::builder()
                .method(method)
                .uri(format!("https://localhost:{}/x", addr.port()))
                .body(())
                .unwrap();
            let mut stream = h3.send_request(req).await.unwrap();
            stream.finish().unwrap();
            streams.push(stream);
        }
        for mut stream in streams {
            let resp = stream.recv_response().await.unwrap();
            seen.push((
                round,
                resp.status().as_u16(),
                resp.headers()["x-early-data"].to_str().unwrap().to_owned(),
            ));
        }
        // Give the server time to send its session ticket before closing.
        tokio::time::sleep(Duration::from_millis(100)).await;
        h3.close();
    }
    assert_eq!(seen[0], (0, 200, "no".into()));
    assert_eq!(seen[1], (0, 200, "no".into()));
    assert_eq!(seen[2], (1, 200, "yes".into()), "GET in 0-RTT");
    assert_eq!(
        seen[3],
        (1, 425, "yes".into()),
        "POST in 0-RTT refused with 425 Too Early"
    );
}

#[tokio::test]
async fn client_sees_goaway() {
    let s = server(Config::default());
    let c = OurClient::connect(s.addr()).await.unwrap();
    assert_eq!(c.get("/hello").await.unwrap().status, 200);
    assert!(!c.sender().is_going_away());
    s.shutdown(Duration::from_secs(5));
    // GOAWAY goes at once; a loaded machine may take a while to deliver it.
    for _ in 0..500 {
        if c.sender().is_going_away() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(c.sender().is_going_away(), "no GOAWAY within 5 s");
    let req = get(&s, "/hello");
    assert!(matches!(
        c.sender().send_request(req).await,
        Err(h3_tokio::Error::GoingAway)
    ));
}

#[tokio::test]
async fn a_handler_reset_is_an_error_on_the_client() {
    let s = server(Config::default());
    let c = OurClient::connect(s.addr()).await.unwrap();
    let req = get(&s, "/reset");
    let mut stream = c.sender().send_request(req).await.unwrap();
    stream.finish().unwrap();
    // RESET_STREAM lets QUIC discard what was not yet read, so the error may come as
    // soon as the response head.
    let result = match stream.recv_response().await {
        Ok(resp) => {
            assert_eq!(resp.status(), 200);
            let mut result = stream.recv_data().await;
            while let Ok(Some(_)) = result {
                result = stream.recv_data().await;
            }
            result
        }
        Err(e) => Err(e),
    };
    match result {
        Err(h3_tokio::Error::Stream {
            code,
            origin,
            reset,
        }) => {
            assert_eq!(code, h3_tokio::Code::H3_REQUEST_CANCELLED);
            assert_eq!(origin, h3_tokio::Origin::Remote);
            assert!(reset);
        }
        other => panic!("expected a stream reset, got {other:?}"),
    }
    // hyperium's client sees it as an error too, not a clean end.
    let hyper = HyperClient::connect(s.addr()).await.unwrap();
    assert!(hyper.get("/reset").await.is_err());
    assert_eq!(hyper.get("/hello").await.unwrap().status, 200);
}

/// `respond` runs in the handler's task when its request is the connection's only one,
/// and goes through the driver when others are in flight: both must answer alike.
#[tokio::test]
async fn a_whole_response_in_one_call() {
    let s = server(Config::default());
    let c = HyperClient::connect(s.addr()).await.unwrap();
    for _ in 0..20 {
        let r = c.get("/respond").await.unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.headers["x-test"], "respond");
        assert_eq!(r.body, b"whole\n");
    }
    let replies = futures_util::future::join_all((0..50).map(|_| c.get("/respond"))).await;
    for r in replies {
        let r = r.unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.body, b"whole\n");
    }
    for _ in 0..3 {
        let r = c.get("/respond-empty").await.unwrap();
        assert_eq!(r.status, 204);
        assert_eq!(r.headers["x-test"], "empty");
        assert!(r.body.is_empty());
        assert!(r.trailers.is_none());
    }
}

/// `Connection::serve` hands requests to a callback in the connection's task: the same
/// answers as an accept loop, a panicking callback costs its request only, and the
/// future ends with the connection, `Ok` after a graceful shutdown. On two worker
/// threads, so that handlers' commands meet the driver's rounds from another thread.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_calls_back_per_request() {
    let s = our_server::spawn_serving(tls::server_endpoint(), Config::default());
    let c = HyperClient::connect(s.addr()).await.unwrap();
    for path in ["/hello", "/respond"] {
        let r = c.get(path).await.unwrap();
        assert_eq!(r.status, 200, "{path}");
    }
    let body = support::app::pattern(1 << 20);
    let r = c
        .request(Method::POST, "/sha256", Some(body.clone()), None)
        .await
        .unwrap();
    assert_eq!(r.body, support::app::sha256_response_body(&body));
    let replies = futures_util::future::join_all((0..100).map(|_| c.get("/respond"))).await;
    assert!(replies
        .iter()
        .all(|r| r.as_ref().unwrap().body == b"whole\n"));
    // Answered from inside the callback, alone and with 50 at once.
    let r = c.get("/in-callback").await.unwrap();
    assert_eq!((r.status, &r.body[..]), (200, &b"at once\n"[..]));
    assert_eq!(r.headers["x-test"], "in-callback");
    let replies = futures_util::future::join_all((0..50).map(|_| c.get("/in-callback"))).await;
    assert!(replies
        .iter()
        .all(|r| r.as_ref().unwrap().body == b"at once\n"));

    // The stream is cancelled, the connection goes on.
    assert!(c.get("/panic").await.is_err());
    assert_eq!(c.get("/hello").await.unwrap().body, b"hello world\n");

    s.shutdown(Duration::from_millis(200));
    tokio::time::sleep(Duration::from_millis(600)).await;
    let closed = tokio::time::timeout(Duration::from_secs(5), c.connection().closed())
        .await
        .expect("the connection closes after the shutdown");
    assert!(
        matches!(&closed, quinn::ConnectionError::ApplicationClosed(c) if c.error_code.into_inner() == 0x100),
        "closed with {closed:?}"
    );
    // `serve` returned Ok: no connection error was recorded.
    assert!(
        s.errors().iter().all(|e| !e.starts_with("connection")),
        "{:?}",
        s.errors()
    );
}

/// A server that needs no more of the request stops it (STOP_SENDING with H3_NO_ERROR)
/// and answers at once (RFC 9114 4.1): the client's upload fails, its response does
/// not ("Clients MUST NOT discard complete responses as a result of having their
/// request terminated abruptly"). A raw server stops first and answers after the
/// client saw the stop, so the response cannot win the race.
#[tokio::test]
async fn a_request_stopped_early_still_gets_its_response() {
    use support::raw::{self, frame, DATA, HEADERS};
    let endpoint = tls::server_endpoint();
    let addr = endpoint.local_addr().unwrap();
    let (seen_tx, seen_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        let quic = endpoint.accept().await.unwrap().await.unwrap();
        let _control = raw::open_control(&quic).await;
        let (mut send, mut recv) = quic.accept_bi().await.unwrap();
        recv.read_chunk(1024, true).await.unwrap();
        recv.stop(0x100u32.into()).unwrap();
        let _ = seen_rx.await;
        // :status from QPACK's static table (entry 24) with the literal value 413.
        let head = frame(HEADERS, &[0x00, 0x00, 0x5f, 24 - 15, 3, b'4', b'1', b'3']);
        let response = [head, frame(DATA, b"too large\n")].concat();
        send.write_all(&response).await.unwrap();
        send.finish().unwrap();
        let _ = tokio::time::timeout(Duration::from_secs(10), quic.closed()).await;
        endpoint
    });
    let client_endpoint = tls::client_endpoint();
    let quic = tls::connect(&client_endpoint, addr).await;
    let send = client::new(quic, Config::default()).await.unwrap();
    let uri = format!("https://localhost:{}/upload", addr.port());
    let req = Request::post(uri).body(()).unwrap();
    let mut stream = send.send_request(req).await.unwrap();
    let chunk = bytes::Bytes::from(vec![0u8; 16 * 1024]);
    let upload = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if let Err(e) = stream.send_data(chunk.clone()).await {
                return e;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    match upload.await.expect("the upload was stopped") {
        h3_tokio::Error::Stream {
            code,
            origin,
            reset,
        } => {
            assert_eq!(code, h3_tokio::Code::H3_NO_ERROR);
            assert_eq!(origin, h3_tokio::Origin::Remote);
            assert!(!reset);
        }
        other => panic!("expected the upload stopped, got {other:?}"),
    }
    seen_tx.send(()).unwrap();
    let exchange = async {
        let resp = stream.recv_response().await?;
        let mut body = Vec::new();
        while let Some(chunk) = stream.recv_data().await? {
            body.extend_from_slice(&chunk);
        }
        Ok::<_, h3_tokio::Error>((resp.status(), body))
    };
    let (status, body) = tokio::time::timeout(Duration::from_secs(5), exchange)
        .await
        .expect("the response came")
        .unwrap();
    assert_eq!(status, 413);
    assert_eq!(body, b"too large\n");
    send.close();
    let _endpoint = server.await.unwrap();
}

/// A response after the handler reset its stream is refused: nothing more is sent on
/// that stream, the client sees the reset, and the connection goes on.
#[tokio::test]
async fn no_response_after_a_reset() {
    let endpoint = tls::server_endpoint();
    let addr = endpoint.local_addr().unwrap();
    let (result_tx, mut result_rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let quic = endpoint.accept().await.unwrap().await.unwrap();
        let mut conn = h3_tokio::server::Connection::new(quic, Config::default())
            .await
            .unwrap();
        while let Ok(Some((req, mut stream))) = conn.accept().await {
            if req.uri().path() == "/reset-first" {
                stream.reset(h3_tokio::Code::H3_REQUEST_CANCELLED);
                let late = stream.send_response(http::Response::new(()));
                result_tx.send(late.map_err(|e| e.to_string())).unwrap();
            } else {
                stream
                    .respond(http::Response::new(()), "ok\n".into())
                    .unwrap();
            }
        }
    });
    let c = OurClient::connect(addr).await.unwrap();
    let uri = |path: &str| format!("https://localhost:{}{path}", addr.port());
    let req = Request::get(uri("/reset-first")).body(()).unwrap();
    let mut stream = c.sender().send_request(req).await.unwrap();
    stream.finish().unwrap();
    let result = tokio::time::timeout(Duration::from_secs(5), stream.recv_response()).await;
    match result.expect("the stream ended") {
        Err(h3_tokio::Error::Stream { code, reset, .. }) => {
            assert_eq!(code, h3_tokio::Code::H3_REQUEST_CANCELLED);
            assert!(reset);
        }
        other => panic!("expected the reset, got {other:?}"),
    }
    let late = result_rx.recv().await.unwrap();
    assert!(late.is_err(), "send_response after reset: {late:?}");
    let reply = c.get("/other").await.unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body, b"ok\n");
    // A client's stream refuses the server's calls (nghttp3 would abort the process).
    let req = Request::get(uri("/other")).body(()).unwrap();
    let mut stream = c.sender().send_request(req).await.unwrap();
    assert!(stream.send_response(http::Response::new(())).is_err());
    let mut early = http::Response::new(());
    *early.status_mut() = http::StatusCode::EARLY_HINTS;
    assert!(stream.send_informational(early).is_err());
    assert!(stream
        .respond(http::Response::new(()), bytes::Bytes::new())
        .is_err());
    stream.finish().unwrap();
    assert_eq!(stream.recv_response().await.unwrap().status(), 200);
}

/// The halves of a split stream in two tasks: a sender waiting for room in its send
/// buffer is woken when there is room, however often the reader meanwhile waits for
/// body bytes that do not come (each wait registers the reader's task).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_halves_in_two_tasks_each_get_their_wake_ups() {
    const PIECE: usize = 64 * 1024;
    const PIECES: usize = 64;
    let endpoint = tls::server_endpoint();
    let addr = endpoint.local_addr().unwrap();
    tokio::spawn(async move {
        let quic = endpoint.accept().await.unwrap().await.unwrap();
        let mut conn = h3_tokio::server::Connection::new(quic, Config::default())
            .await
            .unwrap();
        let (_req, stream) = conn.accept().await.unwrap().unwrap();
        let (mut send, mut recv) = stream.split();
        tokio::spawn(async move {
            // Until the stream ends: once the connection is gone recv_data fails at
            // once, and a loop that went on would never yield (the runtime's drop
            // then waits for it forever).
            while let Ok(Ok(Some(_))) | Err(_) =
                tokio::time::timeout(Duration::from_millis(5), recv.recv_data()).await
            {}
        });
        tokio::spawn(async move {
            send.send_response(http::Response::new(())).unwrap();
            for _ in 0..PIECES {
                send.send_data(vec![b'x'; PIECE].into()).await.unwrap();
            }
            send.finish().unwrap();
        });
        // Serves until the client goes.
        while let Ok(Some(_)) = conn.accept().await {}
    });
    let c = OurClient::connect(addr).await.unwrap();
    let req = Request::post(format!("https://localhost:{}/", addr.port()))
        .body(())
        .unwrap();
    let mut stream = c.sender().send_request(req).await.unwrap();
    // A body begun and never ended.
    stream.send_data("x".into()).await.unwrap();
    let read = async {
        assert_eq!(stream.recv_response().await.unwrap().status(), 200);
        let mut n = 0;
        while let Some(chunk) = stream.recv_data().await.unwrap() {
            n += chunk.len();
        }
        n
    };
    let n = tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .expect("the whole response within 10 s");
    assert_eq!(n, PIECE * PIECES);
}
