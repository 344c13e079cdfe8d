#!/usr/bin/env bash
# The README's run command: installs what the build needs, builds, runs the main program.
# Arguments go to edge: with none it serves a built-in page over HTTP/1.1, HTTP/2 and
# HTTP/3 on port 443 with a self-signed certificate for localhost.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
setup_base
exec cargo run --release -q -p edge -- "$@"
