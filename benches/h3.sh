#!/usr/bin/env bash
# h3-tokio against hyperium's h3 + h3-quinn (small responses, driven by oha over HTTP/3)
# and against a bare quinn stream (one 1 GiB download), in one run on the same cores.
# See benches/README.md for what is measured and how the figures are computed.
#
# Usage: benches/h3.sh            (from anywhere; takes about 3 minutes with defaults)
# Environment:
#   DURATION=20s        oha -z per load case and implementation
#   DOWNLOAD_BYTES=1073741824   body size of the download case
#   DOWNLOAD_RUNS=3     downloads per implementation (the median is reported)
#   SERVER_CPU=0 CLIENT_CPU=1   cores for taskset
#   OHA=oha             the oha binary (needs HTTP/3 support)
#   SERVER_ARGS=        more h3-bench-server options, e.g. "--runtime current-thread"
#   BIN=target/release  where the binaries are (built unless BIN is given)
#   OUT=benches/results/h3-YYYY-MM-DD.md   where the table is written
set -euo pipefail

DURATION=${DURATION:-20s}
DOWNLOAD_BYTES=${DOWNLOAD_BYTES:-1073741824}
DOWNLOAD_RUNS=${DOWNLOAD_RUNS:-3}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}

source "$(dirname "$0")/common.sh"
OUT=${OUT:-$ROOT/benches/results/h3-$(date +%Y-%m-%d).md}
require_oha_h3 h3.sh
for tool in taskset python3; do
    command -v "$tool" >/dev/null || { echo "h3.sh: $tool is missing" >&2; exit 1; }
done

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
echo "== load average: $LOAD_BEFORE (figures are only meaningful on a quiet machine)" >&2
[[ -n ${BIN:-} ]] || echo "== building (release)" >&2
release_bin

# What `time` prints: the user and system CPU seconds of the timed command.
TIMEFORMAT='%U %S'
WORK=$(mktemp -d -t h3-bench.XXXXXX)
RECORDS=$WORK/records.jsonl
SERVER_PID=
cleanup() {
    if [[ -n $SERVER_PID ]]; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
}
trap cleanup EXIT

# Starts a server pinned to SERVER_CPU; sets SERVER_PID and PORT.
start_server() {
    local impl=$1 log=$2
    # shellcheck disable=SC2086 # SERVER_ARGS is a list of options
    taskset -c "$SERVER_CPU" "$BIN/h3-bench-server" --impl "$impl" ${SERVER_ARGS:-} \
        >"$log.addr" 2>"$log.err" &
    SERVER_PID=$!
    for _ in $(seq 100); do
        [[ -s $log.addr ]] && break
        sleep 0.1
    done
    local addr
    addr=$(head -n1 "$log.addr")
    [[ -n $addr ]] || { echo "h3.sh: server did not start: $(cat "$log.err")" >&2; exit 1; }
    PORT=${addr##*:}
}

# utime + stime of a process, all its threads (live or exited), in clock ticks.
cpu_ticks() {
    sed 's/.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'
}

# Peak RSS (VmHWM) in KiB.
peak_rss() {
    awk '/^VmHWM:/ {print $2}' "/proc/$1/status"
}

# Stops the server (not in a subshell: only this shell can wait for it); sets
# SERVER_STATS to its exit counters (one JSON line).
stop_server() {
    local log=$1
    kill -TERM "$SERVER_PID"
    wait "$SERVER_PID" || true
    SERVER_PID=
    SERVER_STATS=$(tail -n1 "$log.err")
}

# One record per measurement, for the report below.
record() {
    python3 -c 'import json, sys; print(json.dumps(dict(zip(sys.argv[1::2], sys.argv[2::2]))))' \
        "$@" >>"$RECORDS"
}

load_case() {
    local impl=$1 case=$2 conns=$3 streams=$4
    local log=$WORK/$impl-$case
    echo "== $impl, $case: oha -c $conns -p $streams -z $DURATION" >&2
    start_server "$impl" "$log"
    local cpu0 cpu1 rss
    cpu0=$(cpu_ticks "$SERVER_PID")
    # oha's exit status is not its verdict: the counts in its JSON are. `time` gives
    # the client's CPU seconds (user, system), to tell whether the client was the
    # bottleneck.
    { time taskset -c "$CLIENT_CPU" "$OHA" --http-version 3 --insecure --no-tui \
        --output-format json --worker-threads 1 \
        -z "$DURATION" -c "$conns" -p "$streams" \
        "https://127.0.0.1:$PORT/" >"$log.oha.json" 2>"$log.oha.err" || true; } 2>"$log.client"
    cpu1=$(cpu_ticks "$SERVER_PID")
    rss=$(peak_rss "$SERVER_PID")
    stop_server "$log"
    record kind load impl "$impl" case "$case" conns "$conns" streams "$streams" \
        cpu_ticks $((cpu1 - cpu0)) rss_kib "$rss" oha "$log.oha.json" server "$SERVER_STATS" \
        client_cpu "$(cat "$log.client")"
}

download_case() {
    local server_impl=$1 client_impl=$2 label=$3
    local log=$WORK/download-$label
    echo "== download, $label: $DOWNLOAD_BYTES bytes x $DOWNLOAD_RUNS" >&2
    start_server "$server_impl" "$log"
    local cpu0 cpu1 rss
    cpu0=$(cpu_ticks "$SERVER_PID")
    { time for _ in $(seq "$DOWNLOAD_RUNS"); do
        taskset -c "$CLIENT_CPU" "$BIN/h3-bench-download" --impl "$client_impl" \
            --addr "127.0.0.1:$PORT" --bytes "$DOWNLOAD_BYTES" >>"$log.runs"
    done; } 2>"$log.client"
    cpu1=$(cpu_ticks "$SERVER_PID")
    rss=$(peak_rss "$SERVER_PID")
    stop_server "$log"
    record kind download impl "$label" runs "$log.runs" \
        cpu_ticks $((cpu1 - cpu0)) rss_kib "$rss" server "$SERVER_STATS" \
        client_cpu "$(cat "$log.client")"
}

for impl in h3-tokio hyper; do
    load_case "$impl" 1x100 1 100
done
for impl in h3-tokio hyper; do
    load_case "$impl" 100x1 100 1
done
download_case h3-tokio h3-tokio h3-tokio
download_case raw raw raw
download_case hyper h3-tokio hyper

mkdir -p "$(dirname "$OUT")"
python3 "$ROOT/benches/h3_report.py" "$RECORDS" "$(getconf CLK_TCK)" >"$OUT"

{
    echo
    echo "## Run"
    echo
    echo "- $(date -u +%Y-%m-%dT%H:%MZ), commit $(git -C "$ROOT" rev-parse --short HEAD)$(git -C "$ROOT" diff --quiet HEAD -- benches h3-tokio || echo ' (with local changes)')"
    echo "- server options: ${SERVER_ARGS:-(defaults)}"
    echo "- DURATION=$DURATION DOWNLOAD_BYTES=$DOWNLOAD_BYTES DOWNLOAD_RUNS=$DOWNLOAD_RUNS; server on core $SERVER_CPU, client on core $CLIENT_CPU"
    echo "- $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'); $(uname -sr); $("$OHA" --version); load average before the run: $LOAD_BEFORE"
} >>"$OUT"
cat "$OUT"
echo "h3.sh: wrote $OUT (raw data in $WORK)" >&2
