#!/usr/bin/env python3
"""aioquic as an interop endpoint: the same contract and flags as the `interop` binary.

Run it with the venv that scripts/setup.sh makes (aioquic from PyPI):

    .deps/venv/bin/python interop/peers/aioquic_endpoint.py --role server \\
        --testcase transfer --www DIR --certs DIR --listen 127.0.0.1:4433
    REQUESTS="https://server4:4433/f" .deps/venv/bin/python interop/peers/aioquic_endpoint.py \\
        --role client --testcase transfer --downloads DIR --connect 127.0.0.1:4433

ROLE, TESTCASE, REQUESTS and SSLKEYLOGFILE come from the environment when not given as
flags. ALPN hq-interop (HTTP/0.9: `GET /path\\r\\n`, FIN; the answer is the file and
FIN), h3 for http3 (aioquic.h3). Testcases, as aioquic does them:

- handshake, transfer and its network-only aliases (ipv6 included): one connection,
  every request at once;
- retry (server: Retry for every connection); multiconnect (client: one connection per
  URL);
- chacha20: only TLS_CHACHA20_POLY1305_SHA256 offered (both roles);
- resumption, zerortt (client: connection 1 fetches the first URL and keeps the
  session ticket; connection 2 resumes with it and, for zerortt, sends its requests
  before the handshake completes, in 0-RTT; server: an in-memory ticket store, which
  also makes aioquic accept 0-RTT);
- keyupdate (client: `request_key_update()` once 64 KiB have arrived);
- connectionmigration (client: aioquic itself probes and moves to the server's
  preferred address of the same family once the handshake is confirmed);
- http3.

127 for everything else: ecn (aioquic neither marks ECT nor sends ACK-ECN counts); v2
(aioquic has QUIC v2, our endpoint has not, so no cell could use it); connectionmigration
as a server (QuicConfiguration cannot offer a preferred address). The server prints
`interop: listening on HOST:PORT` first, like ours. Exit status: 0 success, 1 failure,
127 unsupported.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import ssl
import sys
from pathlib import Path
from urllib.parse import urlsplit

from aioquic.asyncio import QuicConnectionProtocol, connect, serve
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import DataReceived, H3Event, HeadersReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import ConnectionTerminated, QuicEvent, StreamDataReceived
from aioquic.tls import CipherSuite, SessionTicket

TRANSFER = {
    "handshake", "transfer", "longrtt", "multiplexing", "blackhole", "amplificationlimit",
    "transferloss", "transfercorruption", "ipv6", "rebind-port", "rebind-addr",
    "goodput", "crosstraffic", "chacha20", "keyupdate", "http3",
}
MULTICONNECT = {"multiconnect", "handshakeloss", "handshakecorruption"}
RESUME = {"resumption", "zerortt"}
SERVER = TRANSFER | MULTICONNECT | RESUME | {"retry"}
CLIENT = SERVER | {"connectionmigration"}
KEY_UPDATE_AFTER = 64 * 1024


def under(root: Path, url_path: str) -> Path | None:
    """The file under root that a URL path names, refusing escapes."""
    parts = [p for p in url_path.split("/") if p not in ("", ".")]
    if not parts or ".." in parts:
        return None
    return root.joinpath(*parts)


def split_addr(addr: str) -> tuple[str, int]:
    host, _, port = addr.rpartition(":")
    return host.strip("[]"), int(port)


class Server(QuicConnectionProtocol):
    """Serves files from `www` over hq-interop, or over HTTP/3 when ALPN says h3."""

    www: Path

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._requests: dict[int, bytes] = {}
        self._h3: H3Connection | None = None

    def quic_event_received(self, event: QuicEvent) -> None:
        if self._h3 is None and self._quic.tls.alpn_negotiated in H3_ALPN:
            self._h3 = H3Connection(self._quic)
        if self._h3 is not None:
            for e in self._h3.handle_event(event):
                self._h3_event(e)
        elif isinstance(event, StreamDataReceived):
            self._hq_data(event)
        self.transmit()

    def _file(self, url_path: str) -> bytes | None:
        path = under(self.www, url_path)
        return path.read_bytes() if path is not None and path.is_file() else None

    def _hq_data(self, event: StreamDataReceived) -> None:
        data = self._requests.get(event.stream_id, b"") + event.data
        self._requests[event.stream_id] = data
        if not event.end_stream:
            return
        del self._requests[event.stream_id]
        line = data.decode(errors="replace").strip()
        body = self._file(line[4:]) if line.startswith("GET /") else None
        if body is None:
            self._quic.reset_stream(event.stream_id, 1)
        else:
            self._quic.send_stream_data(event.stream_id, body, end_stream=True)

    def _h3_event(self, event: H3Event) -> None:
        if not isinstance(event, HeadersReceived):
            return
        head = dict(event.headers)
        body = self._file(head.get(b":path", b"").decode(errors="replace"))
        status = b"404" if body is None else b"200"
        self._h3.send_headers(event.stream_id, [(b":status", status)])
        self._h3.send_data(event.stream_id, body or b"", end_stream=True)


class Client(QuicConnectionProtocol):
    """GETs paths over hq-interop or HTTP/3; `key_update` asks for one key update."""

    key_update = False

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._bodies: dict[int, bytearray] = {}
        self._done: dict[int, asyncio.Future] = {}
        self._h3: H3Connection | None = None
        self._received = 0

    def get(self, authority: str, path: str) -> asyncio.Future:
        """Queues a request; its body once complete. The caller transmits: one transmit
        for all the requests packs them into few datagrams (one each would overflow the
        bottleneck's queue, and lost 0-RTT requests are sent again in 1-RTT)."""
        stream_id = self._quic.get_next_available_stream_id()
        self._bodies[stream_id] = bytearray()
        self._done[stream_id] = asyncio.get_running_loop().create_future()
        if self._quic.configuration.alpn_protocols == H3_ALPN:
            if self._h3 is None:
                self._h3 = H3Connection(self._quic)
            self._h3.send_headers(stream_id, [
                (b":method", b"GET"), (b":scheme", b"https"),
                (b":authority", authority.encode()), (b":path", path.encode()),
            ], end_stream=True)
        else:
            self._quic.send_stream_data(stream_id, f"GET {path}\r\n".encode(), end_stream=True)
        return self._done[stream_id]

    def quic_event_received(self, event: QuicEvent) -> None:
        if isinstance(event, ConnectionTerminated):
            for done in self._done.values():
                if not done.done():
                    done.set_exception(ConnectionError(event.reason_phrase or "closed"))
            return
        if self._h3 is not None:
            for e in self._h3.handle_event(event):
                if isinstance(e, DataReceived):
                    self._data(e.stream_id, e.data, e.stream_ended)
                elif isinstance(e, HeadersReceived):
                    self._data(e.stream_id, b"", e.stream_ended)
        elif isinstance(event, StreamDataReceived):
            self._data(event.stream_id, event.data, event.end_stream)

    def _data(self, stream_id: int, data: bytes, end: bool) -> None:
        if stream_id not in self._bodies:
            return
        self._bodies[stream_id] += data
        self._received += len(data)
        if self.key_update and self._received >= KEY_UPDATE_AFTER:
            self.key_update = False
            self._quic.request_key_update()
            print(f"interop: key update initiated after {self._received} bytes", flush=True)
            self.transmit()
        if end:
            self._done[stream_id].set_result(bytes(self._bodies.pop(stream_id)))


def configuration(args, is_client: bool) -> QuicConfiguration:
    alpn = H3_ALPN if args.testcase == "http3" else ["hq-interop"]
    config = QuicConfiguration(is_client=is_client, alpn_protocols=alpn, idle_timeout=30.0)
    if args.testcase == "chacha20":
        config.cipher_suites = [CipherSuite.CHACHA20_POLY1305_SHA256]
    if args.keylog:
        config.secrets_log_file = open(args.keylog, "a")
    return config


async def run_server(args) -> int:
    config = configuration(args, is_client=False)
    config.load_cert_chain(Path(args.certs) / "cert.pem", Path(args.certs) / "priv.key")
    Server.www = Path(args.www)
    tickets: dict[bytes, SessionTicket] = {}
    host, port = split_addr(args.listen)
    server = await serve(host, port, configuration=config, create_protocol=Server,
                         session_ticket_fetcher=tickets.pop,
                         session_ticket_handler=lambda t: tickets.__setitem__(t.ticket, t),
                         retry=args.testcase == "retry")
    sockname = server._transport.get_extra_info("sockname")
    shown = f"[{sockname[0]}]" if ":" in sockname[0] else sockname[0]
    print(f"interop: listening on {shown}:{sockname[1]}", flush=True)
    await asyncio.Future()
    return 0


async def fetch(args, urls: list[str], ticket: SessionTicket | None = None,
                keep_ticket=None) -> None:
    """Fetches urls on one connection; with a ticket, resumes (zerortt: in 0-RTT)."""
    first = urlsplit(urls[0])
    config = configuration(args, is_client=True)
    config.verify_mode = ssl.CERT_NONE
    config.server_name = first.hostname
    config.session_ticket = ticket
    host, port = split_addr(args.connect) if args.connect else (first.hostname, first.port or 443)
    early = ticket is not None and args.testcase == "zerortt"
    async with connect(host, port, configuration=config, create_protocol=Client,
                       session_ticket_handler=keep_ticket,
                       wait_connected=not early) as client:
        client.key_update = args.testcase == "keyupdate"
        pending = [client.get(first.netloc, urlsplit(u).path) for u in urls]
        client.transmit()
        bodies = await asyncio.gather(*pending)
        if ticket is not None:
            resumed = client._quic.tls.session_resumed
            print(f"interop: connection 2 resumed={str(resumed).lower()}", flush=True)
            if not resumed:
                raise ConnectionError("the server did not resume the session")
            if early:
                accepted = client._quic.tls.early_data_accepted
                print(f"interop: 0-RTT accepted={str(accepted).lower()}", flush=True)
        for url, body in zip(urls, bodies):
            path = under(Path(args.downloads), urlsplit(url).path)
            if path is None:
                raise ValueError(f"{url}: no file name")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(body)
        client.close()
        await client.wait_closed()


async def resume(args, urls: list[str]) -> None:
    """Connection 1 fetches the first URL and keeps a ticket; connection 2 the rest."""
    tickets: list[SessionTicket] = []
    await fetch(args, urls[:1], keep_ticket=tickets.append)
    if not tickets:
        raise ConnectionError("no session ticket from the server")
    await fetch(args, urls[1:] or urls[:1], ticket=tickets[-1])


async def run_client(args) -> int:
    urls = args.requests.split()
    if not urls:
        raise ValueError("REQUESTS is empty")
    if args.testcase in MULTICONNECT:
        for url in urls:
            await fetch(args, [url])
    elif args.testcase in RESUME:
        await resume(args, urls)
    else:
        await fetch(args, urls)
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--role", default=os.environ.get("ROLE"), choices=["client", "server"])
    p.add_argument("--testcase", default=os.environ.get("TESTCASE"))
    p.add_argument("--requests", default=os.environ.get("REQUESTS", ""))
    p.add_argument("--keylog", default=os.environ.get("SSLKEYLOGFILE"))
    p.add_argument("--www", default="/www")
    p.add_argument("--downloads", default="/downloads")
    p.add_argument("--certs", default="/certs")
    p.add_argument("--listen", default="[::]:443")
    p.add_argument("--connect")
    args = p.parse_args()
    if args.testcase not in (CLIENT if args.role == "client" else SERVER):
        print(f"interop: unsupported testcase {args.testcase!r}", file=sys.stderr)
        return 127
    try:
        return asyncio.run(run_server(args) if args.role == "server" else run_client(args))
    except Exception as e:  # any failure fails the testcase
        print(f"interop: {e!r}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
