#!/usr/bin/env bash
# The README's run command: installs what the build needs, builds, runs the main program.
# Until the edge binary exists (issue 4) the main program reports the linked nghttp3.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
setup_base
exec cargo run --release -p nghttp3-sys --example version -- "$@"
