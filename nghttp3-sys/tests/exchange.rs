//! A full HTTP/3 request/response between a client and a server `nghttp3_conn`, in
//! memory, through the raw API only.

mod common;

use common::*;
use nghttp3_sys::*;

/// Deterministic, non-repeating-looking body bytes.
fn pattern(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

#[test]
fn post_1mib_with_trailers_and_response() {
    let mut client_settings = default_settings();
    client_settings.qpack_max_dtable_capacity = 4096;
    client_settings.qpack_blocked_streams = 16;
    let mut server_settings = client_settings;
    server_settings.max_field_section_size = 16 * 1024;

    let mut client = Endpoint::new(Role::Client, &client_settings);
    let mut server = Endpoint::new(Role::Server, &server_settings);

    let request_headers = fields(&[
        (":method", "POST"),
        (":scheme", "https"),
        (":authority", "example.com"),
        (":path", "/upload?id=42"),
        ("content-type", "application/octet-stream"),
        ("content-length", "1048576"),
        ("user-agent", "nghttp3-sys-test/1"),
        ("x-request-id", "6f1c9a2e-4b1d-4f0a-9b5e-0c6a1d2e3f40"),
    ]);
    let request_trailers = fields(&[("x-checksum", "fnv1a:abc123"), ("x-upload-done", "1")]);
    let request_body = pattern(1 << 20, 1);

    const SID: i64 = 0;
    client.set_outgoing(SID, request_body.clone(), Some(request_trailers.clone()));
    let nva = nvs(&request_headers);
    // SAFETY: client.conn is live; nva borrows request_headers for the call (copied);
    // the data reader pulls from client's State, which outlives the conn.
    let rv = unsafe {
        nghttp3_conn_submit_request(
            client.conn,
            SID,
            nva.as_ptr(),
            nva.len(),
            &DATA_READER,
            std::ptr::null_mut(),
        )
    };
    assert_eq!(rv, 0, "submit_request: {}", err(rv));

    exchange(&mut client, &mut server);

    // The server saw exactly what was sent.
    let req = server.stream(SID);
    assert_eq!(req.headers, request_headers);
    assert_eq!(req.body.len(), request_body.len());
    assert!(req.body == request_body, "request body differs");
    assert_eq!(req.trailers, request_trailers);
    assert!(req.ended, "request stream not ended");
    // SETTINGS crossed both ways.
    assert_eq!(client.state.peer_max_field_section_size, Some(16 * 1024));
    assert_eq!(
        server.state.peer_max_field_section_size,
        Some(client_settings.max_field_section_size)
    );

    let response_headers = fields(&[
        (":status", "200"),
        ("content-type", "text/plain"),
        ("server", "nghttp3-sys-test"),
    ]);
    let response_body = pattern(300_000, 2);
    server.set_outgoing(SID, response_body.clone(), None);
    let nva = nvs(&response_headers);
    // SAFETY: as for submit_request, on the server side.
    let rv = unsafe {
        nghttp3_conn_submit_response(server.conn, SID, nva.as_ptr(), nva.len(), &DATA_READER)
    };
    assert_eq!(rv, 0, "submit_response: {}", err(rv));

    exchange(&mut client, &mut server);

    let resp = client.stream(SID);
    assert_eq!(resp.headers, response_headers);
    assert!(resp.body == response_body, "response body differs");
    assert!(resp.trailers.is_empty());
    assert!(resp.ended, "response stream not ended");
    assert_eq!(resp.reset, None);

    // Every body byte was reported acked back to its sender, so nghttp3 released it.
    assert_eq!(client.state.outgoing[&SID].acked, request_body.len() as u64);
    assert_eq!(
        server.state.outgoing[&SID].acked,
        response_body.len() as u64
    );

    // Both sides close the request stream, as a QUIC stack does once both directions
    // are done; nghttp3 then frees the stream.
    for side in [&mut client, &mut server] {
        // SAFETY: conn is live; the stream exists.
        let rv = unsafe { nghttp3_conn_close_stream(side.conn, SID, NGHTTP3_H3_NO_ERROR as u64) };
        assert_eq!(rv, 0, "close_stream: {}", err(rv));
        assert_eq!(side.stream(SID).closed, Some(NGHTTP3_H3_NO_ERROR as u64));
    }

    // Nothing nghttp3 allocated outlives its connection.
    for side in [client, server] {
        let mem = into_mem(side);
        assert_eq!(mem.live_blocks.get(), 0, "leaked blocks");
        assert_eq!(mem.live_bytes.get(), 0, "leaked bytes");
        assert!(mem.peak_bytes.get() > 0);
    }
}

/// Drops the endpoint (deleting its conn) and returns its allocator for inspection.
fn into_mem(mut side: Endpoint) -> Box<CountingMem> {
    let mem = std::mem::replace(&mut side.mem, CountingMem::new());
    drop(side);
    mem
}

#[test]
fn many_sequential_requests_keep_memory_flat() {
    // A dynamic table and a new header value per request put QPACK insertions on the
    // encoder stream all along: unacked, those would pile up in nghttp3.
    let mut settings = default_settings();
    settings.qpack_max_dtable_capacity = 4096;
    settings.qpack_blocked_streams = 16;
    let mut client = Endpoint::new(Role::Client, &settings);
    let mut server = Endpoint::new(Role::Server, &settings);
    let status = fields(&[(":status", "204")]);
    let mut after_warmup = 0;
    for i in 0..2000i64 {
        let sid = i * 4;
        let headers = fields(&[
            (":method", "GET"),
            (":scheme", "https"),
            (":authority", "example.com"),
            (":path", "/"),
            ("x-request-id", &format!("request-{i:08}")),
        ]);
        let nva = nvs(&headers);
        // SAFETY: conns are live; nva is copied during the calls.
        unsafe {
            let rv = nghttp3_conn_submit_request(
                client.conn,
                sid,
                nva.as_ptr(),
                nva.len(),
                std::ptr::null(),
                std::ptr::null_mut(),
            );
            assert_eq!(rv, 0, "submit_request {sid}: {}", err(rv));
        }
        exchange(&mut client, &mut server);
        let nva = nvs(&status);
        // SAFETY: as above.
        unsafe {
            let rv = nghttp3_conn_submit_response(
                server.conn,
                sid,
                nva.as_ptr(),
                nva.len(),
                std::ptr::null(),
            );
            assert_eq!(rv, 0, "submit_response {sid}: {}", err(rv));
        }
        exchange(&mut client, &mut server);
        assert_eq!(client.stream(sid).headers, status);
        // SAFETY: conns are live; both directions of sid are finished.
        unsafe {
            assert_eq!(nghttp3_conn_close_stream(client.conn, sid, 0x100), 0);
            assert_eq!(nghttp3_conn_close_stream(server.conn, sid, 0x100), 0);
        }
        client.state.streams.remove(&sid);
        server.state.streams.remove(&sid);
        if i == 100 {
            after_warmup = client.mem.live_bytes.get() + server.mem.live_bytes.get();
        }
    }
    let end = client.mem.live_bytes.get() + server.mem.live_bytes.get();
    // Closed streams are freed and acked frames released: no growth with request count.
    assert!(
        end <= after_warmup + 256,
        "nghttp3 memory grew from {after_warmup} to {end} bytes over 1900 requests"
    );
}
