#!/usr/bin/env python3
"""Memory per idle HTTP/1.1 connection of a running server (benches/README.md, stop 20).

    python3 benches/idle_memory.py PORT N PID plain|tls

Opens N connections to 127.0.0.1:PORT, one request each, and leaves them open; waits
3 s; opens N more; then prints the growth of PID's resident memory (VmRSS) per
connection, over the first N and over all 2N. The second batch shows memory that idle
connections gave back and new ones took (an allocator keeps freed pages for reuse
rather than returning them to the kernel at once). Run it pinned to another core than
the server, with `ulimit -n` above 2N.
"""

import socket
import ssl
import sys
import time


def rss(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) * 1024
    raise SystemExit(f"no process {pid}")


def main():
    port, n, pid, mode = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["http/1.1"])
    conns = []

    def batch():
        for _ in range(n):
            s = socket.create_connection(("127.0.0.1", port))
            if mode == "tls":
                s = ctx.wrap_socket(s, server_hostname="localhost")
            s.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = s.recv(65536)
                if not chunk:
                    raise SystemExit("connection closed before the response head")
                data += chunk
            conns.append(s)

    r0 = rss(pid)
    batch()
    time.sleep(3)
    r1 = rss(pid)
    batch()
    time.sleep(1)
    r2 = rss(pid)
    print(f"{mode}: first {n}: {(r1 - r0) / n:.0f} bytes/connection; "
          f"all {2 * n}: {(r2 - r0) / (2 * n):.0f} bytes/connection")


if __name__ == "__main__":
    main()
