#!/bin/bash
# Entry point of the interop image: the network simulator's routing, then the endpoint.
# The runner passes ROLE, TESTCASE, REQUESTS, SSLKEYLOGFILE and QLOGDIR in the
# environment and mounts /www, /downloads and /certs; the binary reads them itself.

/setup.sh

if [ "$ROLE" = "client" ]; then
    # Wait for the simulator to start up.
    /wait-for-it.sh sim:57832 -s -t 30
fi

args=()
if [ "$ROLE" = "server" ] && [ "$TESTCASE" = "connectionmigration" ]; then
    # The server's own addresses in the runner's network (server46): quinn serves one
    # dual-stack socket, so a preferred address can only be another of its addresses.
    args+=(--preferred-v4 193.167.100.100:443 --preferred-v6 "[fd00:cafe:cafe:100::100]:443")
fi

export RUST_LOG="${RUST_LOG:-info}"
exec /usr/local/bin/interop "${args[@]}"
