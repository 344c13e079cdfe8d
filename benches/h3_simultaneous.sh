#!/usr/bin/env bash
# h3-tokio and hyperium's h3 + h3-quinn measured at the same time: both servers share the
# server core, each driven by its own oha on the client core. On a shared host, whatever
# slows the core down (another tenant, frequency, cache pressure) then slows both alike,
# so the ratio of CPU per request holds still where back-to-back runs (benches/h3.sh,
# benches/h3_alternate.sh) swing by 20% or more. The absolute figures are not those of a
# server alone on its core: the two share its caches. See benches/README.md.
#
# Usage: benches/h3_simultaneous.sh    (about 1 minute with defaults)
# Environment:
#   ROUNDS=3 DURATION=8s
#   CASES="100x1 20x1 1x100"     connections x streams per connection (oha -c x -p)
#   RUNTIME=current-thread        h3-bench-server --runtime, the same for both
#   TOKIO_ARGS=                   more options for the h3-tokio server only, e.g.
#                                 --respond-in-callback (see benches/README.md)
#   BIN=target/release            where h3-bench-server is (built unless BIN is given)
#   SERVER_CPU=0 CLIENT_CPU=1 OHA=oha  as in benches/h3.sh
set -euo pipefail

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-8s}
CASES=${CASES:-100x1 20x1 1x100}
RUNTIME=${RUNTIME:-current-thread}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
source "$(dirname "$0")/common.sh"
require_oha_h3 h3_simultaneous.sh
release_bin
IMPLS=(h3-tokio hyper)
WORK=$(mktemp -d -t h3-simultaneous.XXXXXX)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT

# utime + stime of a process, in clock ticks.
ticks() {
    sed 's/.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'
}

echo "| case | round | h3-tokio CPU µs/req | hyper CPU µs/req | hyper / h3-tokio |"
echo "|---|---:|---:|---:|---:|"
for case in $CASES; do
    conns=${case%x*} streams=${case#*x}
    ratios=()
    for round in $(seq "$ROUNDS"); do
        PIDS=()
        declare -A addr=() t0=() t1=() served=()
        for impl in "${IMPLS[@]}"; do
            extra=()
            [[ $impl == h3-tokio ]] && read -ra extra <<<"${TOKIO_ARGS:-}"
            taskset -c "$SERVER_CPU" "$BIN/h3-bench-server" --impl "$impl" --runtime "$RUNTIME" \
                "${extra[@]}" >"$WORK/$impl.addr" 2>"$WORK/$impl.err" &
            PIDS+=($!)
        done
        for i in 0 1; do
            impl=${IMPLS[$i]}
            for _ in $(seq 100); do
                [[ -s $WORK/$impl.addr ]] && break
                sleep 0.1
            done
            addr[$impl]=$(head -n1 "$WORK/$impl.addr")
            t0[$impl]=$(ticks "${PIDS[$i]}")
        done
        clients=()
        for impl in "${IMPLS[@]}"; do
            taskset -c "$CLIENT_CPU" "$OHA" --http-version 3 --insecure --no-tui \
                --output-format json --worker-threads 1 -z "$DURATION" -c "$conns" \
                -p "$streams" "https://${addr[$impl]}/" >"$WORK/$impl.json" 2>/dev/null &
            clients+=($!)
        done
        wait "${clients[@]}" || true
        for i in 0 1; do
            impl=${IMPLS[$i]}
            t1[$impl]=$(ticks "${PIDS[$i]}")
            served[$impl]=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['statusCodeDistribution'].get('200', 0))" "$WORK/$impl.json")
        done
        cleanup
        PIDS=()
        read -r a b ratio < <(python3 - "$(getconf CLK_TCK)" \
            "${t0[h3-tokio]}" "${t1[h3-tokio]}" "${served[h3-tokio]}" \
            "${t0[hyper]}" "${t1[hyper]}" "${served[hyper]}" <<'EOF'
import sys
tick = 1e6 / int(sys.argv[1])
a0, a1, na, b0, b1, nb = (int(x) for x in sys.argv[2:])
if na == 0 or nb == 0:
    sys.exit(f"h3_simultaneous.sh: no 200 responses ({na}, {nb})")
a, b = (a1 - a0) * tick / na, (b1 - b0) * tick / nb
print(f"{a:.1f} {b:.1f} {b / a:.2f}")
EOF
        )
        ratios+=("$ratio")
        echo "| $case | $round | $a | $b | ${ratio}x |"
    done
    median=$(printf '%s\n' "${ratios[@]}" | sort -n | awk '{v[NR]=$1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}')
    echo "| $case | median | | | **${median}x** |"
done
