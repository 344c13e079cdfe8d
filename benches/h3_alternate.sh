#!/usr/bin/env bash
# Alternating native runs of h3-bench-server variants, for CPU per request with user and
# system time apart: on a shared machine one run of each (benches/h3.sh) swings by 20%
# or more, so each round runs every variant once, back to back, and the report gives
# medians and each round's hyper / h3-tokio ratio. See benches/README.md.
#
# Usage: benches/h3_alternate.sh     (5 variants x 2 cases x ROUNDS x DURATION)
# Environment:
#   ROUNDS=4 DURATION=8s
#   CASES="100x1 1x100"          connections x streams per connection (oha -c x -p)
#   VARIANTS="DIR:IMPL:RUNTIME ..."  h3-bench-server binaries to alternate; DIR holds
#       h3-bench-server (default: target/release, built, with h3-tokio and hyper on both
#       runtimes). A second build (e.g. of the commit before a change) compares itself.
#   SERVER_CPU=0 CLIENT_CPU=1 OHA=oha  as in benches/h3.sh
#   OUT=/dev/stdout               where the markdown tables go
set -euo pipefail

ROUNDS=${ROUNDS:-4}
DURATION=${DURATION:-8s}
CASES=${CASES:-100x1 1x100}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
OUT=${OUT:-/dev/stdout}
source "$(dirname "$0")/common.sh"
require_oha_h3 h3_alternate.sh
if [[ -z ${VARIANTS:-} ]]; then
    release_bin
    VARIANTS="$BIN:h3-tokio:multi-thread $BIN:hyper:multi-thread $BIN:h3-tokio:current-thread $BIN:hyper:current-thread"
fi

WORK=$(mktemp -d -t h3-alternate.XXXXXX)
ROWS=$WORK/rows.tsv
PID=
cleanup() {
    if [[ -n $PID ]]; then
        kill -TERM "$PID" 2>/dev/null || true
        wait "$PID" 2>/dev/null || true
    fi
}
trap cleanup EXIT

# utime and stime of a process (all threads), in clock ticks.
ticks() {
    sed 's/.*) //' "/proc/$1/stat" | awk '{print $12, $13}'
}

# One run; appends "round case dir impl runtime requests utime stime rss_kib tx_datagrams load".
run() {
    local round=$1 case=$2 dir=$3 impl=$4 runtime=$5
    local conns=${case%x*} streams=${case#*x} log=$WORK/$round-$case-$impl-$runtime-$RANDOM
    local load
    load=$(cut -d' ' -f1 /proc/loadavg)
    taskset -c "$SERVER_CPU" "$dir/h3-bench-server" --impl "$impl" --runtime "$runtime" \
        >"$log.addr" 2>"$log.err" &
    PID=$!
    for _ in $(seq 100); do
        [[ -s $log.addr ]] && break
        sleep 0.1
    done
    local addr u0 s0 u1 s1 rss
    addr=$(head -n1 "$log.addr")
    read -r u0 s0 < <(ticks "$PID")
    taskset -c "$CLIENT_CPU" "$OHA" --http-version 3 --insecure --no-tui --output-format json \
        --worker-threads 1 -z "$DURATION" -c "$conns" -p "$streams" "https://$addr/" \
        >"$log.oha.json" 2>/dev/null || true
    read -r u1 s1 < <(ticks "$PID")
    rss=$(awk '/^VmHWM:/ {print $2}' "/proc/$PID/status")
    kill -TERM "$PID"
    wait "$PID" || true
    PID=
    python3 - "$log.oha.json" "$log.err" <<EOF >>"$ROWS"
import json, sys
try:
    ok = json.load(open(sys.argv[1]))["statusCodeDistribution"].get("200", 0)
    dgrams = json.loads(open(sys.argv[2]).read().strip().splitlines()[-1])["quic"]["tx_datagrams"]
except (ValueError, KeyError, IndexError):
    ok, dgrams = 0, 0
print("$round $case $dir $impl $runtime", ok, $((u1 - u0)), $((s1 - s0)), $rss, dgrams, $load)
EOF
}

for round in $(seq "$ROUNDS"); do
    for case in $CASES; do
        for variant in $VARIANTS; do
            IFS=: read -r dir impl runtime <<<"$variant"
            echo "== round $round, $case, $impl ($runtime, $dir)" >&2
            run "$round" "$case" "$dir" "$impl" "$runtime"
        done
    done
done

python3 - "$ROWS" "$(getconf CLK_TCK)" <<'EOF' >"$OUT"
import collections, statistics as st, sys
tick = 1e6 / int(sys.argv[2])
rows = []
for line in open(sys.argv[1]):
    r, case, d, impl, rt, n, u, s, rss, dg, load = line.split()
    n = int(n)
    if n == 0:
        print(f"h3_alternate.sh: no 200 responses in round {r}, {case}, {impl} ({rt})", file=sys.stderr)
        continue
    rows.append(dict(round=r, case=case, dir=d, impl=impl, rt=rt, n=n,
                     user=int(u) * tick / n, sys=int(s) * tick / n,
                     rss=int(rss) / 1024, dg=int(dg) / n))
groups = collections.defaultdict(list)
for x in rows:
    groups[(x["case"], x["rt"], x["impl"], x["dir"])].append(x)
print("| case | runtime | server | binary | runs | CPU µs/req, median (min-max) | user | sys | req per CPU-s | datagrams/req | peak RSS MiB |")
print("|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|")
for (case, rt, impl, d), xs in sorted(groups.items()):
    tot = [x["user"] + x["sys"] for x in xs]
    med = st.median(tot)
    print(f"| {case} | {rt} | {impl} | {d} | {len(xs)} | {med:.1f} ({min(tot):.1f}-{max(tot):.1f}) "
          f"| {st.median(x['user'] for x in xs):.1f} | {st.median(x['sys'] for x in xs):.1f} "
          f"| {1e6 / med:,.0f} | {st.median(x['dg'] for x in xs):.2f} | {st.median(x['rss'] for x in xs):.1f} |")
print()
print("| case | runtime | h3-tokio binary | hyper / h3-tokio CPU per request, per round | median |")
print("|---|---|---|---|---:|")
for (case, rt, impl, d), xs in sorted(groups.items()):
    if impl != "h3-tokio":
        continue
    ratios = []
    for x in xs:
        h = [y for y in rows if y["round"] == x["round"] and y["case"] == case
             and y["rt"] == rt and y["impl"] == "hyper"]
        if h:
            ratios.append((h[0]["user"] + h[0]["sys"]) / (x["user"] + x["sys"]))
    if ratios:
        print(f"| {case} | {rt} | {d} | {', '.join(f'{r:.2f}' for r in ratios)} | {st.median(ratios):.2f}x |")
EOF
echo "h3_alternate.sh: raw rows in $ROWS" >&2
