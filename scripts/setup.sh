#!/usr/bin/env bash
# Installs what the project needs on a Debian machine, idempotently and quickly when
# everything is already there. Sourced by scripts/run.sh and scripts/test.sh.
#
#   setup_base   libclang (bindgen), pkg-config, and nghttp3's source in .deps/nghttp3-src
#                (nghttp3-sys compiles it)
#   setup_test   setup_base + the peers and tools the tests need (nghttp3 1.8 for the
#                pkg-config path, valgrind, tshark for the interop runner, aioquic)
#                and setup_fuzz
#   setup_fuzz   cargo-fuzz and clang, for the fuzz targets in fuzz/
#
# Debian packages that are not in the machine's own suites (nghttp3 from backports) go
# through a private apt state under .deps/apt, so the machine's apt
# sources and package lists are left alone. Its mirror is the one the machine already
# uses: read from its apt configuration, never written here.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEPS="$ROOT/.deps"

log() { printf '[setup] %s\n' "$*" >&2; }

# apt_install PKG...: install the Debian packages that are missing (one apt run).
apt_install() {
    local missing=()
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
            missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    log "apt-get install ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null; then
        apt-get update -q >/dev/null
        apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
    fi
}

# The first deb822 or one-line source of the machine's own release: "URI KEYRING".
machine_mirror() {
    local codename
    codename="$(. /etc/os-release && echo "$VERSION_CODENAME")"
    local f
    # A blank line after each file ends its last deb822 stanza.
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] && { cat "$f"; echo; }
    done | awk -v want="$codename" '
        function stanza() { if (uris != "" && index(suites, " " want " ")) emit(uris, key); uris = suites = key = "" }
        function emit(uri, k) { if (!found) { found = 1; print uri, k } }
        /^deb[ \t]/ {                                   # one-line format
            k = ""; i = 2
            if ($2 ~ /^\[/) {
                for (; i <= NF; i++) {
                    if ($i ~ /signed-by=/) { k = $i; sub(/.*signed-by=/, "", k); sub(/\]$/, "", k) }
                    if ($i ~ /\]$/) { i++; break }
                }
            }
            if ($(i + 1) == want) emit($i, k)
            next
        }
        /^URIs:/      { uris = $2 }                     # deb822 format
        /^Suites:/    { suites = " " substr($0, 8) " " }
        /^Signed-By:/ { key = $2 }
        /^[ \t]*$/    { stanza() }
        END           { stanza() }
    '
}

# private_apt TOOL ARGS...: apt-get or apt-cache with a private sources list, lists and cache.
private_apt() {
    local dir="$DEPS/apt" tool="$1"
    shift
    "$tool" -q \
        -o Dir::Etc::SourceList="$dir/sources.list" -o Dir::Etc::SourceParts=/dev/null \
        -o Dir::State::Lists="$dir/lists" -o Dir::Cache="$dir/cache" \
        -o Acquire::Languages=none -o Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false \
        -o Acquire::IndexTargets::deb::DEP-11-icons::DefaultEnabled=false \
        -o Acquire::IndexTargets::deb::DEP-11-icons-small::DefaultEnabled=false \
        -o APT::Sandbox::User=root "$@"
}

private_apt_update() {
    local dir="$DEPS/apt" mirror uri key codename
    [ -f "$dir/updated" ] && [ -n "$(find "$dir/updated" -mmin -720)" ] && return 0
    read -r uri key < <(machine_mirror) || true
    [ -n "${uri:-}" ] || { log "no Debian mirror found in /etc/apt"; return 1; }
    key="${key:-/usr/share/keyrings/debian-archive-keyring.gpg}"
    codename="$(. /etc/os-release && echo "$VERSION_CODENAME")"
    mkdir -p "$dir/lists/partial" "$dir/cache/archives/partial"
    echo "deb [signed-by=$key] $uri $codename-backports main" >"$dir/sources.list"
    log "private apt update ($codename-backports) from $uri"
    private_apt apt-get update >/dev/null
    touch "$dir/updated"
}

# unpack_nghttp3 SUITE DEST: download libnghttp3-dev (and its runtime library) from SUITE
# and unpack it into the prefix DEST (DEST/include, DEST/lib, DEST/lib/pkgconfig).
unpack_nghttp3() {
    local suite="$1" dest="$2" tmp debs
    private_apt_update
    tmp="$(mktemp -d)"
    local dev_ver
    dev_ver="$(private_apt apt-cache policy libnghttp3-dev 2>/dev/null |
        awk -v s="$suite" 'NF <= 3 && /^ +(\*\*\* )?[0-9]/ { v = $1 == "***" ? $2 : $1 } index($0, " " s "/") { print v; exit }')"
    [ -n "$dev_ver" ] || { log "libnghttp3-dev not found in $suite"; return 1; }
    # The runtime package name carries the soname (libnghttp3-9); take it from Depends.
    local rt
    rt="$(private_apt apt-cache show "libnghttp3-dev=$dev_ver" 2>/dev/null | awk -F'[ ,(]+' '/^Depends:/ { print $2; exit }')"
    log "fetch libnghttp3-dev $dev_ver ($suite)"
    (cd "$tmp" && private_apt apt-get download "libnghttp3-dev=$dev_ver" "$rt=$dev_ver" >/dev/null)
    mkdir -p "$tmp/root"
    for debs in "$tmp"/*.deb; do dpkg -x "$debs" "$tmp/root"; done
    rm -rf "$dest" && mkdir -p "$dest/lib/pkgconfig"
    cp -a "$tmp/root/usr/include" "$dest/include"
    cp -a "$tmp/root"/usr/lib/*/libnghttp3.* "$dest/lib/"
    # Make the .pc file relocatable to where it now lives.
    sed "s|^prefix=.*|prefix=$dest|; s|^libdir=.*|libdir=\${prefix}/lib|" \
        "$tmp"/root/usr/lib/*/pkgconfig/libnghttp3.pc >"$dest/lib/pkgconfig/libnghttp3.pc"
    rm -rf "$tmp"
}

header_version() { sed -n 's/^#define NGHTTP3_VERSION "\(.*\)"/\1/p' "$1/include/nghttp3/version.h" 2>/dev/null || true; }

setup_base() {
    apt_install libclang-dev pkg-config ca-certificates
    setup_nghttp3_src
}

# setup_python_peers: a virtualenv in .deps/venv with the Python HTTP/3 test peers
# (aioquic, driven by h3-tokio/tests/peers/*.py). The stamp file holds the pinned
# requirement, so a run with it already installed costs one file read.
AIOQUIC_REQ="aioquic==1.7.2"

setup_python_peers() {
    local venv="$DEPS/venv"
    [ -x "$venv/bin/python" ] && [ "$(cat "$venv/.requirement" 2>/dev/null)" = "$AIOQUIC_REQ" ] &&
        return 0
    log "python venv .deps/venv with $AIOQUIC_REQ"
    # Start over rather than upgrade in place: a half-made or older venv is not trusted.
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install -q --disable-pip-version-check "$AIOQUIC_REQ" >&2
    echo "$AIOQUIC_REQ" >"$venv/.requirement"
}

# setup_nghttp3_src: nghttp3's source tree in .deps/nghttp3-src, which nghttp3-sys
# compiles (see nghttp3-sys/build.rs). Debian's source archives are not reachable from every machine
# (only its binary packages), so the tree comes from the crates.io package
# `nghttp3-sys` (not ours: another binding), which ships nghttp3's sources under
# deps/nghttp3; cargo fetches it through the machine's own registry configuration.
NGHTTP3_SRC_CRATE="nghttp3-sys"
NGHTTP3_SRC_CRATE_VERSION="0.2.0" # nghttp3 1.18.0

setup_nghttp3_src() {
    local dest="$DEPS/nghttp3-src" fetch="$DEPS/nghttp3-src-fetch" crate
    [ -f "$dest/.crate" ] && [ "$(cat "$dest/.crate")" = "$NGHTTP3_SRC_CRATE_VERSION" ] && return 0
    log "nghttp3 source from the $NGHTTP3_SRC_CRATE $NGHTTP3_SRC_CRATE_VERSION package into .deps/nghttp3-src"
    rm -rf "$dest" "$fetch"
    mkdir -p "$fetch/src"
    : >"$fetch/src/lib.rs"
    printf '%s\n' '[package]' 'name = "nghttp3-source-fetch"' 'version = "0.0.0"' \
        'edition = "2021"' 'publish = false' '[dependencies]' \
        "$NGHTTP3_SRC_CRATE = \"=$NGHTTP3_SRC_CRATE_VERSION\"" '[workspace]' >"$fetch/Cargo.toml"
    (cd "$fetch" && cargo fetch -q)
    crate="$(ls "${CARGO_HOME:-$HOME/.cargo}"/registry/cache/*/"$NGHTTP3_SRC_CRATE-$NGHTTP3_SRC_CRATE_VERSION.crate" | head -n 1)"
    mkdir -p "$dest"
    tar -xzf "$crate" -C "$dest" --strip-components=3 \
        "$NGHTTP3_SRC_CRATE-$NGHTTP3_SRC_CRATE_VERSION/deps/nghttp3"
    [ -f "$dest/lib/includes/nghttp3/nghttp3.h" ] || { log "no nghttp3 sources in $crate"; return 1; }
    echo "$NGHTTP3_SRC_CRATE_VERSION" >"$dest/.crate"
    rm -rf "$fetch"
}

# setup_fuzz: cargo-fuzz (pinned, built from source by cargo), the C++ compiler
# libfuzzer-sys builds libFuzzer with, and clang with nghttp3's source: the fuzz build
# compiles nghttp3 with clang's libFuzzer and AddressSanitizer instrumentation.
# cargo-fuzz passes nightly-only flags: callers run it with RUSTC_BOOTSTRAP=1 on the
# stable toolchain (scripts/fuzz.sh).
CARGO_FUZZ_VERSION="0.13.2"

setup_fuzz() {
    apt_install g++ clang
    [ "$(cargo fuzz --version 2>/dev/null)" = "cargo-fuzz $CARGO_FUZZ_VERSION" ] && return 0
    log "cargo install cargo-fuzz $CARGO_FUZZ_VERSION"
    cargo install -q --locked cargo-fuzz --version "$CARGO_FUZZ_VERSION"
}

setup_test() {
    setup_base
    # valgrind: the leak check; curl and h2load (nghttp2-client): HTTP/1.1 and HTTP/2
    # peers for edge's tests; openssl: s_client and s_time for TLS resumption.
    apt_install valgrind curl nghttp2-client openssl
    # tshark: the interop runner's checks decrypt its captures with it. Preseeded so
    # that dumpcap is not made setuid (and no question is asked).
    dpkg-query -W -f='${Status}' tshark 2>/dev/null | grep -q "install ok installed" ||
        echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
    apt_install tshark
    local codename
    codename="$(. /etc/os-release && echo "$VERSION_CODENAME")"
    [ -n "$(header_version "$DEPS/nghttp3-backports")" ] ||
        unpack_nghttp3 "$codename-backports" "$DEPS/nghttp3-backports"
    setup_python_peers
    setup_fuzz
}
