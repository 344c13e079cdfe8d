#!/usr/bin/env python3
"""An HTTP/3 client test peer on aioquic, for h3-tokio's integration tests.

Run it with the venv that scripts/setup.sh makes (setup_python_peers):

    .deps/venv/bin/python h3-tokio/tests/peers/aioquic_client.py \\
        [--host 127.0.0.1] --port PORT (--insecure | --ca FILE) [--server-name localhost] \\
        [--timeout 30] [--secrets-log FILE] [--verbose] [--zero-rtt] COMMAND ...

    get PATH [--header NAME=VALUE ...]
    post PATH --size N [--trailer NAME=VALUE ...] [--content-length]
    concurrent PATH --count N
    cancel-upload PATH --size N --after M
    cancel-download PATH --after M
    cancel-waiting PATH --ms N

Each command runs on one QUIC connection and prints, when it is over, one JSON object
per request on stdout (one line each, in the order the requests were made):

    path         the request's path
    status       the final response status (int), or null if no response headers came
    headers      [[name, value], ...] of the response, pseudo-headers left out
    body_len     response body bytes received
    body_sha256  hex SHA-256 of those bytes
    trailers     [[name, value], ...] of the response's trailing HEADERS frame
    error        null, or
                   "reset:0x10c"        the server reset the response stream (its code)
                   "stop_sending:0x10c" the server stopped the upload early, with a code
                                        other than H3_NO_ERROR
                   "cancelled"          this client cancelled the request (cancel-*)
                   "timeout"            --timeout ran out before the response ended
                   "closed:0x100"       the connection closed before the response ended
                                        (its error code), or "closed:<why>" without one
    sent_len, sent_sha256    (post, cancel-upload) the request body bytes written
    peer_reset   (the cancelled request of cancel-*) the code the server reset its side
                 of the stream with after the cancel, or null if none was seen by the end
    zero_rtt_accepted   (with --zero-rtt) whether the server accepted the early data

Request bodies and the test server's generated bodies use the same pattern: byte i of a
body is i % 251, so a test can compute any expected digest itself.

Exit code: 0 when the connection was made and stayed up until the command was done (a
request that got a reset or timed out still exits 0: its line says so), 1 when the
connection could not be made or was lost while the command ran.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import logging
import socket
import ssl
import sys
from collections.abc import Callable

from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.h3.connection import H3_ALPN, ErrorCode, H3Connection
from aioquic.h3.events import DataReceived, H3Event, HeadersReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.tls import SessionTicket
from aioquic.quic.events import (
    ConnectionTerminated,
    QuicEvent,
    StopSendingReceived,
    StreamReset,
)

H3_REQUEST_CANCELLED = ErrorCode.H3_REQUEST_CANCELLED  # 0x10c
H3_NO_ERROR = ErrorCode.H3_NO_ERROR  # 0x100

CHUNK = 64 * 1024
PERIOD = bytes(range(251))


def pattern(offset: int, size: int) -> bytes:
    """Bytes [offset, offset + size) of the test body pattern: byte i is i % 251."""
    start = offset % len(PERIOD)
    reps = (start + size) // len(PERIOD) + 1
    return (PERIOD * reps)[start : start + size]


def header_pairs(headers: list[tuple[bytes, bytes]]) -> list[list[str]]:
    # latin-1 maps each byte to one code point, so no header byte is lost or replaced.
    return [[n.decode("latin-1"), v.decode("latin-1")] for n, v in headers if not n.startswith(b":")]


class Request:
    """One request/response exchange and what the client saw of it."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.stream_id: int | None = None
        self.status: int | None = None
        self.headers: list[list[str]] = []
        self.trailers: list[list[str]] = []
        self.body_len = 0
        self.body_hash = hashlib.sha256()
        self.error: str | None = None
        self.done = asyncio.Event()
        # Set by every new piece of the response, for waiters on body progress.
        self.progress = asyncio.Event()
        # Request body, for the commands that upload one.
        self.upload = False
        self.sent_len = 0
        self.sent_hash = hashlib.sha256()
        self.sent_all = False
        self.stop_sending: int | None = None
        # After this client cancels: the code of the server's RESET_STREAM, if any.
        self.cancelled = False
        self.peer_reset: int | None = None

    def finish(self, error: str | None = None) -> None:
        if self.done.is_set():
            return
        self.error = error
        self.done.set()
        self.progress.set()

    def to_json(self) -> dict:
        error = self.error
        if (
            error is None
            and self.stop_sending is not None
            and self.stop_sending != H3_NO_ERROR
            and not self.sent_all
        ):
            error = f"stop_sending:0x{self.stop_sending:x}"
        out = {
            "path": self.path,
            "status": self.status,
            "headers": self.headers,
            "body_len": self.body_len,
            "body_sha256": self.body_hash.hexdigest(),
            "trailers": self.trailers,
            "error": error,
        }
        if self.upload:
            out["sent_len"] = self.sent_len
            out["sent_sha256"] = self.sent_hash.hexdigest()
        if self.cancelled:
            out["peer_reset"] = None if self.peer_reset is None else f"0x{self.peer_reset:x}"
        return out


class H3Client(QuicConnectionProtocol):
    def __init__(self, *args, authority: str, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._http = H3Connection(self._quic)
        self._authority = authority.encode()
        self._requests: dict[int, Request] = {}
        # Every request made, in order: the output lines.
        self.issued: list[Request] = []
        # Why the connection became unusable, once it did.
        self.lost: str | None = None
        self.lost_future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        # Replaced and set after every transmit(): that is, after each datagram received
        # and each timer, which is when ACKs and flow control credit can have moved the
        # send buffers on. See wait_tick().
        self._tick = asyncio.Event()

    # --- connection-level plumbing ---

    def transmit(self) -> None:
        super().transmit()
        tick, self._tick = self._tick, asyncio.Event()
        tick.set()

    async def wait_tick(self) -> None:
        await self._tick.wait()

    def error_received(self, exc: Exception) -> None:
        # The socket is connected, so the kernel reports ICMP errors (nobody listening on
        # the port): fail at once instead of retrying the handshake until --timeout.
        self._lose(f"closed:{exc.__class__.__name__}")
        # Stop aioquic from retransmitting to a peer that is gone.
        self._quic.close(error_code=H3_NO_ERROR)

    def _lose(self, why: str) -> None:
        if self.lost is not None:
            return
        self.lost = why
        for req in self._requests.values():
            req.finish(why)
        if not self.lost_future.done():
            self.lost_future.set_result(None)
        self._tick.set()

    def quic_event_received(self, event: QuicEvent) -> None:
        # H3Connection needs every QUIC event, resets and STOP_SENDING included, to keep
        # its stream and QPACK state right.
        for h3_event in self._http.handle_event(event):
            self._h3_event_received(h3_event)

        if isinstance(event, ConnectionTerminated):
            self._lose(f"closed:0x{event.error_code:x}")
            if event.reason_phrase:
                log(f"connection closed: 0x{event.error_code:x} {event.reason_phrase}")
        elif isinstance(event, StreamReset):
            req = self._requests.get(event.stream_id)
            if req is not None:
                if req.cancelled:
                    req.peer_reset = event.error_code
                req.finish(f"reset:0x{event.error_code:x}")
        elif isinstance(event, StopSendingReceived):
            # aioquic has already reset our sending side with the same code.
            req = self._requests.get(event.stream_id)
            if req is not None:
                req.stop_sending = event.error_code
                req.progress.set()

    def _h3_event_received(self, event: H3Event) -> None:
        if getattr(event, "push_id", None) is not None:
            return  # server push: not part of any request of ours
        req = self._requests.get(getattr(event, "stream_id", -1))
        if req is None or req.done.is_set():
            return  # e.g. data still in flight after a cancel
        if isinstance(event, HeadersReceived):
            if req.status is None:
                status = int(dict(event.headers).get(b":status", b"0"))
                if 100 <= status < 200:
                    return  # interim response: the final one follows
                req.status = status
                req.headers = header_pairs(event.headers)
            else:
                req.trailers = header_pairs(event.headers)
            req.progress.set()
            if event.stream_ended:
                req.finish()
        elif isinstance(event, DataReceived):
            req.body_len += len(event.data)
            req.body_hash.update(event.data)
            req.progress.set()
            if event.stream_ended:
                req.finish()

    # --- requests ---

    def start_request(
        self,
        method: str,
        path: str,
        extra_headers: list[tuple[bytes, bytes]] = (),
        end_stream: bool = True,
    ) -> Request:
        """Send a request's HEADERS frame (ending the stream if end_stream)."""
        req = Request(path)
        self.issued.append(req)
        if self.lost is not None:
            req.finish(self.lost)
            return req
        req.stream_id = self._quic.get_next_available_stream_id()
        self._requests[req.stream_id] = req
        headers = [
            (b":method", method.encode()),
            (b":scheme", b"https"),
            (b":authority", self._authority),
            (b":path", path.encode()),
            (b"user-agent", b"h3-tokio-tests aioquic"),
            *extra_headers,
        ]
        self._http.send_headers(req.stream_id, headers, end_stream=end_stream)
        self.transmit()
        return req

    async def wait_progress(self, req: Request, until: Callable[[], bool]) -> None:
        """Wait until `until()` holds or the response is over."""
        while not until() and not req.done.is_set():
            req.progress.clear()
            await req.progress.wait()

    def _unsent(self, stream_id: int) -> int:
        """How many bytes written on the stream were never put in a packet yet."""
        # aioquic has no public view of a stream's send buffer, so this reads its
        # internals (pinned version: a rename fails loudly here). The public
        # `buffer_is_empty` flag is no substitute: it only turns true on the next
        # attempt to send after the buffer drained, which stalls an upload that waits
        # for it by about one ACK round each chunk.
        stream = self._quic._streams.get(stream_id)
        if stream is None:
            return 0
        return stream.sender._buffer_stop - stream.sender.highest_offset

    def _sending_stopped(self, req: Request) -> bool:
        # A finished response (reset or complete) ends the upload as well: a server
        # that answered early may never grant the credit the rest would need.
        return self.lost is not None or req.stop_sending is not None or req.done.is_set()

    async def send_body(self, req: Request, size: int) -> bool:
        """Send `size` pattern bytes as DATA frames; return whether all were written.

        Each 64 KiB chunk is handed to aioquic, which holds it until flow control and
        congestion control let it out; the next chunk is written only when at most one
        chunk's worth is still unsent, so the upload goes at the pace the server grants
        credit and never buffers the whole body (aioquic's send buffer also gets slow
        when large: it drops acknowledged bytes from its front).
        """
        req.upload = True
        while req.sent_len < size:
            if self._sending_stopped(req):
                return False
            data = pattern(req.sent_len, min(CHUNK, size - req.sent_len))
            self._http.send_data(req.stream_id, data, end_stream=False)
            req.sent_len += len(data)
            req.sent_hash.update(data)
            self.transmit()
            while self._unsent(req.stream_id) > CHUNK and not self._sending_stopped(req):
                await self.wait_tick()
        return not self._sending_stopped(req)

    def end_body(self, req: Request, trailers: list[tuple[bytes, bytes]]) -> None:
        """End the request: a trailing HEADERS frame ending the stream, or a bare FIN."""
        req.sent_all = True
        if trailers:
            self._http.send_headers(req.stream_id, trailers, end_stream=True)
        else:
            self._http.send_data(req.stream_id, b"", end_stream=True)
        self.transmit()

    def abandon_body(self, req: Request) -> None:
        """Reset the request side of a stream whose upload send_body() gave up on."""
        # After STOP_SENDING aioquic has reset it already; after a lost connection
        # there is nothing to tell. Otherwise the response ended first, without the
        # server asking us to stop: rather than leave the stream half-open, abort it.
        if req.stop_sending is None and self.lost is None:
            self._quic.reset_stream(req.stream_id, H3_REQUEST_CANCELLED)
            self.transmit()

    async def flush(self, req: Request) -> None:
        """Wait until the request bytes written so far reached the server."""
        # Every byte in a packet first, then a PING answered after that (loopback
        # does not lose packets, so they arrived).
        while self._unsent(req.stream_id) and not self._sending_stopped(req):
            await self.wait_tick()
        try:
            await self.ping()
        except ConnectionError:
            pass  # the connection is gone: the lines will say so

    def cancel(self, req: Request) -> None:
        """Abort both directions of the request's stream with H3_REQUEST_CANCELLED."""
        req.cancelled = True
        if self.lost is None:
            # RESET_STREAM: a no-op in aioquic once everything we sent on the stream,
            # FIN included, has been acknowledged (nothing left to abort).
            self._quic.reset_stream(req.stream_id, H3_REQUEST_CANCELLED)
            # STOP_SENDING, asking the server to reset its side. aioquic refuses it
            # (ValueError) once the stream's state is gone, i.e. both sides ended.
            try:
                self._quic.stop_stream(req.stream_id, H3_REQUEST_CANCELLED)
            except ValueError:
                pass
            self.transmit()
        req.finish("cancelled")


# --- commands ---


async def cmd_get(client: H3Client, args: argparse.Namespace) -> None:
    headers = [(n.encode(), v.encode()) for n, v in args.header]
    req = client.start_request("GET", args.path, headers)
    await req.done.wait()


async def cmd_post(client: H3Client, args: argparse.Namespace) -> None:
    headers = [(b"content-type", b"application/octet-stream")]
    if args.content_length:
        headers.append((b"content-length", str(args.size).encode()))
    req = client.start_request("POST", args.path, headers, end_stream=False)
    if req.done.is_set():
        return
    if await client.send_body(req, args.size):
        client.end_body(req, [(n.encode(), v.encode()) for n, v in args.trailer])
    else:
        client.abandon_body(req)
    await req.done.wait()


async def cmd_concurrent(client: H3Client, args: argparse.Namespace) -> None:
    # All HEADERS frames are written before the first transmit() returns to the loop,
    # so the requests leave together; beyond the server's MAX_STREAMS aioquic holds
    # them until it raises the limit.
    reqs = [client.start_request("GET", args.path) for _ in range(args.count)]
    await asyncio.gather(*(r.done.wait() for r in reqs))


async def cmd_cancel_upload(client: H3Client, args: argparse.Namespace) -> None:
    headers = [
        (b"content-type", b"application/octet-stream"),
        (b"content-length", str(args.size).encode()),
    ]
    req = client.start_request("POST", args.path, headers, end_stream=False)
    if not req.done.is_set():
        if await client.send_body(req, min(args.after, args.size)):
            # The reset drops whatever aioquic still holds: let the bytes arrive first.
            await client.flush(req)
        client.cancel(req)
    await get_hello(client)


async def cmd_cancel_download(client: H3Client, args: argparse.Namespace) -> None:
    req = client.start_request("GET", args.path)
    await client.wait_progress(req, lambda: req.body_len >= args.after)
    if not req.done.is_set():
        client.cancel(req)
    # else the response ended before `after` bytes: its line shows how it ended.
    await get_hello(client)


async def cmd_cancel_waiting(client: H3Client, args: argparse.Namespace) -> None:
    """Cancel a request whose response has not ended after `ms` milliseconds."""
    req = client.start_request("GET", args.path)
    try:
        await asyncio.wait_for(req.done.wait(), args.ms / 1000)
    except asyncio.TimeoutError:
        client.cancel(req)
    await get_hello(client)


async def get_hello(client: H3Client) -> None:
    """GET /hello on the same connection, to show it survived a cancel."""
    req = client.start_request("GET", "/hello")
    await req.done.wait()


COMMANDS = {
    "get": cmd_get,
    "post": cmd_post,
    "concurrent": cmd_concurrent,
    "cancel-upload": cmd_cancel_upload,
    "cancel-download": cmd_cancel_download,
    "cancel-waiting": cmd_cancel_waiting,
}


# --- main ---


def log(msg: str) -> None:
    print(f"aioquic_client: {msg}", file=sys.stderr, flush=True)


async def connect(
    args: argparse.Namespace,
    ticket: SessionTicket | None = None,
    on_ticket: Callable[[SessionTicket], None] | None = None,
) -> tuple[asyncio.DatagramTransport, H3Client]:
    """A connection to the server. With a session ticket that allows early data, it
    returns before the handshake completes, so the first requests go out as 0-RTT."""
    # Padding protocols after h3 (which the server picks) make the ClientHello longer.
    padding = [f"pad-{i:03d}-".ljust(200, "x") for i in range(args.hello_padding // 200)]
    config = QuicConfiguration(
        is_client=True,
        alpn_protocols=H3_ALPN + padding,
        server_name=args.server_name,
        # Handshake retries and an unresponsive peer end with --timeout, not later.
        idle_timeout=args.timeout,
        session_ticket=ticket,
    )
    if args.insecure:
        config.verify_mode = ssl.CERT_NONE
    else:
        config.load_verify_locations(cafile=args.ca)
    if args.secrets_log:
        config.secrets_log_file = open(args.secrets_log, "a")

    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(args.host, args.port, type=socket.SOCK_DGRAM)
    addr = infos[0][4]
    authority = f"{args.server_name}:{args.port}"
    # A connected socket, so that ICMP port-unreachable is reported (error_received).
    transport, client = await loop.create_datagram_endpoint(
        lambda: H3Client(
            QuicConnection(configuration=config, session_ticket_handler=on_ticket),
            authority=authority,
        ),
        remote_addr=addr,
    )
    client.connect(addr)
    if ticket is not None:
        return transport, client
    handshake = asyncio.ensure_future(client.wait_connected())
    await asyncio.wait([handshake, client.lost_future], return_when=asyncio.FIRST_COMPLETED)
    if not handshake.done():
        handshake.cancel()
        transport.close()
        raise ConnectionError(client.lost)
    try:
        handshake.result()
    except BaseException:
        transport.close()
        raise
    return transport, client


async def session_ticket(args: argparse.Namespace) -> SessionTicket:
    """A ticket from a first connection (one GET /) that lets the next one send 0-RTT."""
    tickets: list[SessionTicket] = []
    transport, client = await connect(args, on_ticket=tickets.append)
    await client.start_request("GET", "/").done.wait()
    while not tickets and client.lost is None:
        await client.wait_tick()
    client.close(error_code=H3_NO_ERROR)
    transport.close()
    if not tickets:
        raise ConnectionError(f"no session ticket ({client.lost})")
    return tickets[0]


async def run(args: argparse.Namespace) -> int:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + args.timeout
    try:
        ticket = await asyncio.wait_for(session_ticket(args), args.timeout) if args.zero_rtt else None
        transport, client = await asyncio.wait_for(connect(args, ticket), deadline - loop.time())
    except (asyncio.TimeoutError, ConnectionError, OSError) as exc:
        log(f"connection to {args.host}:{args.port} failed: {exc!r}")
        return 1

    try:
        await asyncio.wait_for(COMMANDS[args.command](client, args), deadline - loop.time())
    except asyncio.TimeoutError:
        log(f"timed out after {args.timeout}s")
    lost = client.lost
    if lost is None:
        client.close(error_code=H3_NO_ERROR)  # sends CONNECTION_CLOSE right away
    transport.close()

    for req in client.issued:
        req.finish("timeout")  # no-op for the requests that ended
        line = req.to_json()
        if args.zero_rtt:
            line["zero_rtt_accepted"] = client._quic.tls.early_data_accepted
        print(json.dumps(line), flush=True)
    if lost is not None:
        log(f"connection lost: {lost}")
        return 1
    return 0


def field_arg(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name, value


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="HTTP/3 client test peer (aioquic).")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    trust = p.add_mutually_exclusive_group(required=True)
    trust.add_argument("--insecure", action="store_true", help="do not verify the server certificate")
    trust.add_argument("--ca", metavar="FILE", help="PEM file of CA certificates to verify the server with")
    p.add_argument("--server-name", default="localhost", help="TLS SNI and :authority host (default localhost)")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds for the whole run (default 30)")
    p.add_argument("--secrets-log", metavar="FILE", help="append TLS secrets (SSLKEYLOGFILE format) to FILE")
    p.add_argument("--verbose", "-v", action="store_true", help="aioquic debug logging on stderr")
    p.add_argument(
        "--hello-padding",
        type=int,
        default=0,
        metavar="BYTES",
        help="about BYTES more in the ClientHello (ALPN protocols after h3): over 1,100 it spans two Initial packets",
    )
    p.add_argument(
        "--zero-rtt",
        action="store_true",
        help="get a session ticket on a first connection, then send the command's requests as 0-RTT",
    )
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("get", help="GET PATH")
    s.add_argument("path")
    s.add_argument("--header", type=field_arg, action="append", default=[], metavar="NAME=VALUE")

    s = sub.add_parser("post", help="POST a body of --size pattern bytes to PATH")
    s.add_argument("path")
    s.add_argument("--size", type=int, required=True)
    s.add_argument("--trailer", type=field_arg, action="append", default=[], metavar="NAME=VALUE")
    s.add_argument("--content-length", action="store_true", help="declare the size in content-length")

    s = sub.add_parser("concurrent", help="--count GETs of PATH at once")
    s.add_argument("path")
    s.add_argument("--count", type=int, required=True)

    s = sub.add_parser("cancel-upload", help="POST to PATH, cancel after --after of --size bytes, then GET /hello")
    s.add_argument("path")
    s.add_argument("--size", type=int, required=True)
    s.add_argument("--after", type=int, required=True)

    s = sub.add_parser("cancel-download", help="GET PATH, cancel after --after body bytes, then GET /hello")
    s.add_argument("path")
    s.add_argument("--after", type=int, required=True)

    s = sub.add_parser("cancel-waiting", help="GET PATH, cancel if not answered after --ms, then GET /hello")
    s.add_argument("path")
    s.add_argument("--ms", type=int, required=True)
    return p.parse_args(argv)


def main() -> int:
    args = parse_args()
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
