#!/usr/bin/env bash
# Instructions per request of h3-tokio's and hyperium's h3 + h3-quinn servers, counted by
# callgrind: deterministic enough to compare on a busy machine, where wall-clock figures
# (benches/h3.sh) swing by 2x. See benches/README.md, "Deterministic cross-check".
#
# Usage: benches/h3_callgrind.sh          (about 10 minutes; prints a markdown table)
# Environment:
#   IMPLS="h3-tokio hyper"    servers to measure
#   MANY=20000                requests of the 1 conn x 100 streams case
#   CONNS=20 FEW=4000 MORE=12000   the CONNS conn x 1 stream case is the marginal cost
#                             of MORE over FEW requests, so the CONNS handshakes cancel
#   RATE=200                  oha -q: requests per second in total, so that the server
#                             (about 50x slower under callgrind) is never saturated and
#                             answers each request on its own wake-ups, as it does
#                             natively; unset, requests batch far more than natively
#   SERVER_CPU=0 CLIENT_CPU=1 OHA=oha  as in benches/h3.sh
#   BIN=target/release        where h3-bench-server is (built unless BIN is given)
#   SERVER_ARGS=              more h3-bench-server options, e.g. "--runtime current-thread"
#   KEEP=1                    keep the callgrind files (for callgrind_annotate)
set -euo pipefail

IMPLS=${IMPLS:-h3-tokio hyper}
MANY=${MANY:-20000}
CONNS=${CONNS:-20}
FEW=${FEW:-4000}
MORE=${MORE:-12000}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}

source "$(dirname "$0")/common.sh"
require_oha_h3 h3_callgrind.sh
for tool in valgrind callgrind_control taskset python3; do
    command -v "$tool" >/dev/null || { echo "h3_callgrind.sh: $tool is missing" >&2; exit 1; }
done
release_bin

WORK=$(mktemp -d -t h3-callgrind.XXXXXX)
PID=
cleanup() {
    if [[ -n $PID ]]; then
        kill -TERM "$PID" 2>/dev/null || true
        wait "$PID" 2>/dev/null || true
    fi
    [[ -n ${KEEP:-} ]] || rm -f "$WORK"/*.cg*
}
trap cleanup EXIT

# One server under callgrind, counters zeroed once it listens and dumped once oha has
# exited. Sets RESULT to "instructions served tx_datagrams".
measure() {
    local impl=$1 conns=$2 streams=$3 n=$4
    local log=$WORK/$impl-$conns-$streams-$n
    taskset -c "$SERVER_CPU" valgrind --tool=callgrind --callgrind-out-file="$log.cg" --log-file="$log.vg" \
        "$BIN/h3-bench-server" --impl "$impl" ${SERVER_ARGS:-} >"$log.addr" 2>"$log.err" &
    PID=$!
    for _ in $(seq 600); do
        [[ -s $log.addr ]] && break
        sleep 0.1
    done
    local addr
    addr=$(head -n1 "$log.addr")
    [[ -n $addr ]] || { echo "h3_callgrind.sh: server did not start: $(cat "$log.err")" >&2; exit 1; }
    callgrind_control -z "$PID" >/dev/null 2>&1
    taskset -c "$CLIENT_CPU" "$OHA" --http-version 3 --insecure --no-tui --output-format json \
        --worker-threads 1 ${RATE:+-q "$RATE"} -n "$n" -c "$conns" -p "$streams" \
        "https://$addr/" >"$log.oha.json" \
        2>"$log.oha.err" || true
    callgrind_control -d "$PID" >/dev/null 2>&1
    kill -TERM "$PID"
    wait "$PID" || true
    PID=
    # The dump after zeroing is the only one with a part number (.cg.1, or .cg.1 per
    # thread with --separate-threads); sum every "summary:" of those.
    local ir
    ir=$(cat "$log".cg.* | awk '/^summary:/ {s += $2} END {print s}')
    RESULT=$(python3 - "$log.err" "$log.oha.json" "$ir" "$n" <<'EOF'
import json, sys
server = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
oha = json.load(open(sys.argv[2]))
ok = oha["statusCodeDistribution"].get("200", 0)
if ok != int(sys.argv[4]) or server["failed"]:
    print(f"h3_callgrind.sh: {ok} of {sys.argv[4]} requests answered 200, "
          f"server {server}", file=sys.stderr)
print(sys.argv[3], server["served"], server["quic"]["tx_datagrams"])
EOF
)
}

declare -A IR SERVED DGRAMS
for impl in $IMPLS; do
    for spec in "1 100 $MANY" "$CONNS 1 $FEW" "$CONNS 1 $MORE"; do
        read -r conns streams n <<<"$spec"
        echo "== $impl: $conns conn x $streams streams, $n requests" >&2
        measure "$impl" "$conns" "$streams" "$n"
        read -r ir served dgrams <<<"$RESULT"
        IR[$impl/$n]=$ir SERVED[$impl/$n]=$served DGRAMS[$impl/$n]=$dgrams
    done
done

python3 - "$MANY" "$CONNS" "$FEW" "$MORE" "$IMPLS" \
    "$(for k in "${!IR[@]}"; do echo "$k ${IR[$k]} ${SERVED[$k]} ${DGRAMS[$k]}"; done)" <<'EOF'
import sys
many, conns, few, more = (int(a) for a in sys.argv[1:5])
impls = sys.argv[5].split()
runs = {}
for line in sys.argv[6].splitlines():
    key, ir, served, dgrams = line.split()
    runs[key] = (int(ir), int(served), int(dgrams))
def case(impl, label):
    if label == "many":
        ir, served, dgrams = runs[f"{impl}/{many}"]
        return ir / many, dgrams / many
    (ir1, _, d1), (ir2, _, d2) = runs[f"{impl}/{few}"], runs[f"{impl}/{more}"]
    return (ir2 - ir1) / (more - few), (d2 - d1) / (more - few)
print("| case | " + " | ".join(f"{i} instr/req" for i in impls)
      + " | hyper / h3-tokio | server datagrams/req (" + ", ".join(impls) + ") |")
print("|---|" + "---:|" * len(impls) + "---:|---|")
for label, title in [("many", f"1 conn x 100 streams, {many} req (one handshake included)"),
                     ("few", f"{conns} conn x 1 stream, marginal of {more} vs {few} req")]:
    cells = {i: case(i, label) for i in impls}
    ratio = (f'{cells["hyper"][0] / cells["h3-tokio"][0]:.2f}x'
             if "hyper" in cells and "h3-tokio" in cells else "-")
    print(f"| {title} | " + " | ".join(f"{cells[i][0] / 1000:.1f}k" for i in impls)
          + f" | {ratio} | " + ", ".join(f"{cells[i][1]:.2f}" for i in impls) + " |")
EOF
echo "h3_callgrind.sh: raw data in $WORK" >&2
