#!/usr/bin/env python3
"""aioquic as an interop endpoint: the same contract and flags as the `interop` binary.

Run it with the venv that scripts/setup.sh makes (aioquic from PyPI):

    .deps/venv/bin/python interop/peers/aioquic_endpoint.py --role server \\
        --testcase transfer --www DIR --certs DIR --listen 127.0.0.1:4433
    REQUESTS="https://server4:4433/f" .deps/venv/bin/python interop/peers/aioquic_endpoint.py \\
        --role client --testcase transfer --downloads DIR --connect 127.0.0.1:4433

ROLE, TESTCASE, REQUESTS and SSLKEYLOGFILE come from the environment when not given as
flags. hq-interop only (HTTP/0.9: `GET /path\\r\\n`, FIN; the answer is the file and FIN).
Supported testcases: handshake, transfer and its network-only aliases, retry (server:
Retry for every connection), multiconnect (client: one connection per URL); others exit
127 (ecn too: aioquic neither marks ECT nor sends ACK-ECN counts). The server prints
`interop: listening on HOST:PORT` first, like ours. Exit status:
0 success, 1 failure, 127 unsupported.
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
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import ConnectionTerminated, QuicEvent, StreamDataReceived

ALPN = ["hq-interop"]
TRANSFER = {
    "handshake", "transfer", "longrtt", "multiplexing", "blackhole", "amplificationlimit",
    "transferloss", "transfercorruption", "ipv6", "rebind-port", "rebind-addr",
    "goodput", "crosstraffic",
}
MULTICONNECT = {"multiconnect", "handshakeloss", "handshakecorruption"}
SUPPORTED = TRANSFER | MULTICONNECT | {"retry"}


def under(root: Path, url_path: str) -> Path | None:
    """The file under root that a URL path names, refusing escapes."""
    parts = [p for p in url_path.split("/") if p not in ("", ".")]
    if not parts or ".." in parts:
        return None
    return root.joinpath(*parts)


def split_addr(addr: str) -> tuple[str, int]:
    host, _, port = addr.rpartition(":")
    return host.strip("[]"), int(port)


class HqServer(QuicConnectionProtocol):
    www: Path

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._requests: dict[int, bytes] = {}

    def quic_event_received(self, event: QuicEvent) -> None:
        if not isinstance(event, StreamDataReceived):
            return
        data = self._requests.get(event.stream_id, b"") + event.data
        self._requests[event.stream_id] = data
        if not event.end_stream:
            return
        del self._requests[event.stream_id]
        line = data.decode(errors="replace").strip()
        path = under(self.www, line[4:]) if line.startswith("GET /") else None
        if path is None or not path.is_file():
            self._quic.reset_stream(event.stream_id, 1)
        else:
            self._quic.send_stream_data(event.stream_id, path.read_bytes(), end_stream=True)
        self.transmit()


class HqClient(QuicConnectionProtocol):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._bodies: dict[int, bytearray] = {}
        self._done: dict[int, asyncio.Future] = {}

    async def get(self, path: str) -> bytes:
        stream_id = self._quic.get_next_available_stream_id()
        self._bodies[stream_id] = bytearray()
        self._done[stream_id] = asyncio.get_running_loop().create_future()
        self._quic.send_stream_data(stream_id, f"GET {path}\r\n".encode(), end_stream=True)
        self.transmit()
        await self._done[stream_id]
        return bytes(self._bodies.pop(stream_id))

    def quic_event_received(self, event: QuicEvent) -> None:
        if isinstance(event, StreamDataReceived) and event.stream_id in self._bodies:
            self._bodies[event.stream_id] += event.data
            if event.end_stream:
                self._done[event.stream_id].set_result(None)
        elif isinstance(event, ConnectionTerminated):
            for done in self._done.values():
                if not done.done():
                    done.set_exception(ConnectionError(event.reason_phrase or "closed"))


def configuration(args, is_client: bool) -> QuicConfiguration:
    config = QuicConfiguration(is_client=is_client, alpn_protocols=ALPN, idle_timeout=30.0)
    if args.keylog:
        config.secrets_log_file = open(args.keylog, "a")
    return config


async def run_server(args) -> int:
    config = configuration(args, is_client=False)
    config.load_cert_chain(Path(args.certs) / "cert.pem", Path(args.certs) / "priv.key")
    HqServer.www = Path(args.www)
    host, port = split_addr(args.listen)
    server = await serve(host, port, configuration=config, create_protocol=HqServer,
                         retry=args.testcase == "retry")
    sockname = server._transport.get_extra_info("sockname")
    shown = f"[{sockname[0]}]" if ":" in sockname[0] else sockname[0]
    print(f"interop: listening on {shown}:{sockname[1]}", flush=True)
    await asyncio.Future()
    return 0


async def fetch(args, urls: list[str]) -> None:
    first = urlsplit(urls[0])
    config = configuration(args, is_client=True)
    config.verify_mode = ssl.CERT_NONE
    config.server_name = first.hostname
    host, port = split_addr(args.connect) if args.connect else (first.hostname, first.port or 443)
    async with connect(host, port, configuration=config, create_protocol=HqClient) as client:
        bodies = await asyncio.gather(*(client.get(urlsplit(u).path) for u in urls))
        for url, body in zip(urls, bodies):
            path = under(Path(args.downloads), urlsplit(url).path)
            if path is None:
                raise ValueError(f"{url}: no file name")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(body)
        client.close()
        await client.wait_closed()


async def run_client(args) -> int:
    urls = args.requests.split()
    if not urls:
        raise ValueError("REQUESTS is empty")
    if args.testcase in MULTICONNECT:
        for url in urls:
            await fetch(args, [url])
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
    if args.testcase not in SUPPORTED:
        print(f"interop: unsupported testcase {args.testcase!r}", file=sys.stderr)
        return 127
    try:
        return asyncio.run(run_server(args) if args.role == "server" else run_client(args))
    except Exception as e:  # any failure fails the testcase
        print(f"interop: {e!r}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
