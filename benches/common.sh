# Sourced by the h3 bench scripts: the repository root, the oha binary, and the release
# build of h3-bench-server.

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OHA=${OHA:-$(command -v oha || echo "$HOME/.cargo/bin/oha")}

# require_oha_h3 SCRIPT: exits unless $OHA speaks HTTP/3.
require_oha_h3() {
    "$OHA" --help 2>/dev/null | grep -q 'Available values.* 3' || {
        echo "$1: $OHA has no HTTP/3; run: cargo install oha --locked --features http3" >&2
        exit 1
    }
}

# release_bin: sets BIN, the directory holding h3-bench-server, building it (release)
# unless BIN is already given.
release_bin() {
    if [[ -z ${BIN:-} ]]; then
        (cd "$ROOT" && cargo build --release --quiet -p edge-benches)
        BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release
    fi
}
