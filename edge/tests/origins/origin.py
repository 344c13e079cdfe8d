"""A small HTTP/1.1 origin for edge's proxy tests, on Python's http.server.

    python3 origin.py PORT [IDLE_TIMEOUT_SECONDS]

- POST/PUT /echo: reads the body (Content-Length or chunked) and sends it back, with
  its SHA-256 in `x-body-sha256`, its length in `x-body-length` and the trailer
  fields of a chunked body in `x-request-trailers` (`name: value` lines joined by `;`);
- GET /status/N: answers status N with a short body;
- GET or POST .../headers (any path ending so): the request headers as JSON, the
  values of a repeated name joined by a newline (a POST's body is read first);
- GET /connections: how many TCP connections this origin accepted, and how many
  requests it served;
- GET /race: on the first request of a connection answers 200; on any later request
  of the same connection closes it without answering (what a keep-alive race looks
  like from edge's side);
- GET /chunked: a chunked response with a trailer;
- POST /early: answers 413 at once without reading the body, and closes;
- GET /cut: announces 100 bytes, sends 10, closes (an origin dying mid-response).
- GET /slow?ms=N: answers after N milliseconds (default 3000), unless its connection is
  closed first: then it records after how many milliseconds, and closes too; with
  `&head=1` it sends the head and a first chunk at once, and the rest after N ms;
- GET /slow-report: those records, oldest first, as JSON: `{"dropped": [ms, ...]}`.

Idle keep-alive connections are closed after IDLE_TIMEOUT_SECONDS (default 30).
"""

import hashlib
import json
import select
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

lock = threading.Lock()
accepted = 0
requests = 0
# After how many milliseconds each /slow request's connection was closed by its peer.
dropped = []


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    # socketserver's default listen backlog is 5: 50 connections opened at once then
    # overflow it, and a connection whose handshake the kernel dropped waits a SYN
    # retransmission (1 s, then 2) while edge's 1 s read timeout runs: 504s that an
    # origin with a real backlog (nginx: 511) never causes.
    request_queue_size = 128

    def get_request(self):
        global accepted
        conn = super().get_request()
        with lock:
            accepted += 1
        return conn


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Buffered writes (flushed after each request): a head and a small body go out in
    # one segment, rather than two that meet Nagle and delayed ACKs.
    wbufsize = 64 * 1024
    served_here = 0

    def log_message(self, *args):
        pass

    def count(self):
        global requests
        with lock:
            requests += 1
        self.served_here += 1

    def send(self, status, body, headers=()):
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def send_headers_json(self):
        seen = {}
        for k, v in self.headers.items():
            seen.setdefault(k.lower(), []).append(v)
        body = json.dumps({k: "\n".join(v) for k, v in seen.items()}).encode()
        self.send(200, body, [("content-type", "application/json")])

    def read_body(self):
        """The body, and the trailer lines of a chunked one."""
        if self.headers.get("transfer-encoding", "").lower() == "chunked":
            out = bytearray()
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    trailers = []
                    while (line := self.rfile.readline()) not in (b"\r\n", b"\n", b""):
                        trailers.append(line.strip().decode("latin-1"))
                    return bytes(out), trailers
                out += self.rfile.read(size)
                self.rfile.readline()
        n = int(self.headers.get("content-length", "0"))
        return self.rfile.read(n), []

    def do_POST(self):
        self.count()
        if self.path == "/early":
            self.close_connection = True
            self.send(413, b"too big for me\n", [("connection", "close")])
            return
        body, trailers = self.read_body()
        if self.path.split("?")[0].endswith("headers"):
            self.send_headers_json()
            return
        digest = hashlib.sha256(body).hexdigest()
        self.send(200, body, [
            ("x-body-sha256", digest),
            ("x-body-length", str(len(body))),
            ("x-request-trailers", ";".join(trailers)),
        ])

    do_PUT = do_POST

    def do_GET(self):
        self.count()
        if self.path.startswith("/status/"):
            code = int(self.path.split("/")[2])
            self.send_response_only(code, "Custom")
            self.send_header("content-length", "7")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(b"status\n")
        elif self.path.split("?")[0].endswith("headers"):
            self.send_headers_json()
        elif self.path == "/connections":
            with lock:
                body = json.dumps({"accepted": accepted, "requests": requests}).encode()
            self.send(200, body)
        elif self.path == "/race":
            if self.served_here > 1:
                self.close_connection = True
                return
            self.send(200, b"race ok\n")
        elif self.path == "/chunked":
            self.send_response(200)
            self.send_header("transfer-encoding", "chunked")
            self.send_header("trailer", "x-trailer")
            self.end_headers()
            self.wfile.write(b"5\r\nhello\r\n6\r\n world\r\n0\r\nx-trailer: done\r\n\r\n")
        elif self.path.startswith("/slow?") or self.path == "/slow":
            self.slow()
        elif self.path == "/slow-report":
            with lock:
                body = json.dumps({"dropped": dropped}).encode()
            self.send(200, body)
        elif self.path.startswith("/redirect"):
            # As web frameworks build absolute URLs: from the Host they were sent.
            host = self.headers.get("host", "")
            self.send(302, b"", [("location", f"http://{host}/login?next=/x"),
                                 ("refresh", f"0; url=http://{host}/r"),
                                 ("x-accel-redirect", "/internal/secret"),
                                 ("x-pad", "avoid browser bug")])
        elif self.path == "/cut":
            self.send_response(200)
            self.send_header("content-length", "100")
            self.end_headers()
            self.wfile.write(b"0123456789")
            self.wfile.flush()
            self.close_connection = True
        else:
            self.send(404, b"not found\n", [("x-request-target", self.path)])

    do_HEAD = do_GET

    def slow(self):
        """Waits, watching the connection: a peer that closes it is recorded."""
        query = self.path.partition("?")[2]
        ms = next((int(v) for k, _, v in (p.partition("=") for p in query.split("&"))
                   if k == "ms"), 3000)
        streaming = "head=1" in query.split("&")
        if streaming:
            self.send_response(200)
            self.send_header("transfer-encoding", "chunked")
            self.end_headers()
            self.wfile.write(b"6\r\nstart\n\r\n")
            self.wfile.flush()
        start = time.monotonic()
        deadline = start + ms / 1000
        while (left := deadline - time.monotonic()) > 0:
            if not select.select([self.connection], [], [], left)[0]:
                continue
            try:
                closed = self.connection.recv(1, socket.MSG_PEEK) == b""
            except OSError:
                closed = True
            if closed:
                with lock:
                    dropped.append(round((time.monotonic() - start) * 1000))
                self.close_connection = True
                return
            # Bytes of a next request (none from edge, which waits for the answer).
            time.sleep(max(0, deadline - time.monotonic()))
        if streaming:
            self.wfile.write(b"4\r\nend\n\r\n0\r\n\r\n")
        else:
            self.send(200, b"slow\n")


def main():
    port = int(sys.argv[1])
    Handler.timeout = float(sys.argv[2]) if len(sys.argv) > 2 else 30.0
    Server(("127.0.0.1", port), Handler).serve_forever()


if __name__ == "__main__":
    main()
