#!/usr/bin/env bash
# edge against nginx on the same work, in one run on the same cores: `return 200` and
# `proxy_pass` to one origin with upstream keep-alive, over HTTP/1.1 (TLS), HTTP/2 and
# HTTP/3; plus hyperium's h3 server for HTTP/3 `return 200`. Writes a markdown table and
# a PNG plot. See "edge vs nginx" in benches/README.md for what is measured and how.
#
# Usage: benches/proxy.sh           (about 5 minutes with defaults; installs what is missing)
# Environment:
#   DURATION=10       seconds of load per case (h2load -D, oha -z)
#   ROUNDS=1          repeat every case this many times (the report takes medians)
#   PROTOS="h1 h2 h3" the client protocols to run (HTTP/1.1 over TLS, HTTP/2, HTTP/3)
#   H1_CONNS=50       HTTP/1.1 connections (one request at a time each)
#   MUX_CONNS=5 MUX_STREAMS=10   HTTP/2 and HTTP/3 connections x concurrent streams
#   SERVER_CPU=0 CLIENT_CPU=1    cores for taskset (the origin shares the client's)
#   PORT=24443 ORIGIN_PORT=24080 H3_PEER_PORT=24444
#   OHA=oha           an oha built with HTTP/3
#   OUT=benches/results/proxy-YYYY-MM-DD.md (and .png next to it)
#   CALLGRIND=N       instead: each server under valgrind --tool=callgrind, N requests
#                     per case, and a table of instructions per request (the HTTP/3
#                     nginx under the chroot's own valgrind, installed there)
#   SIMULTANEOUS=1    edge and nginx at the same time on the server core (nginx on
#                     PAIR_PORT=24445), each under its own client, so that whatever
#                     slows the core slows both: the report adds each round's ratio
#   BASELINE=PATH     with SIMULTANEOUS=1: another edge binary (an older build) instead
#                     of nginx as the peer, for new / old ratios on the same load
set -euo pipefail

DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-1}
PROTOS=${PROTOS:-h1 h2 h3}
H1_CONNS=${H1_CONNS:-50}
MUX_CONNS=${MUX_CONNS:-5}
MUX_STREAMS=${MUX_STREAMS:-10}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
PORT=${PORT:-24443}
ORIGIN_PORT=${ORIGIN_PORT:-24080}
H3_PEER_PORT=${H3_PEER_PORT:-24444}
PAIR_PORT=${PAIR_PORT:-24445}
CALLGRIND=${CALLGRIND:-}
SIMULTANEOUS=${SIMULTANEOUS:-}
[[ -z $SIMULTANEOUS || -z $CALLGRIND ]] || { echo "proxy.sh: SIMULTANEOUS or CALLGRIND, not both" >&2; exit 1; }
BASELINE=${BASELINE:-}
[[ -z $BASELINE || -n $SIMULTANEOUS ]] || { echo "proxy.sh: BASELINE needs SIMULTANEOUS=1" >&2; exit 1; }

ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${OUT:-$ROOT/benches/results/proxy-${CALLGRIND:+callgrind-}$(date +%Y-%m-%d).md}
# The chroot of Debian's next stable release, for its nginx with HTTP/3. Shared by the
# worktrees through .deps, never committed.
CHROOT=$ROOT/.deps/trixie-nginx/root
# shellcheck source=../scripts/setup.sh
source "$ROOT/scripts/setup.sh"

# --- what the run needs -------------------------------------------------------------

apt_install nginx gnuplot-nox debootstrap nghttp2-client openssl python3 iproute2 ${CALLGRIND:+valgrind}

# nginx 1.26 from trixie, built with --with-http_v3_module; the mirror is the machine's.
if ! [[ -x $CHROOT/usr/sbin/nginx ]]; then
    read -r uri key < <(machine_mirror)
    log "debootstrap trixie with nginx into $CHROOT (from $uri)"
    rm -rf "$CHROOT"
    mkdir -p "$(dirname "$CHROOT")"
    debootstrap --variant=minbase --include=nginx --keyring="${key:-/usr/share/keyrings/debian-archive-keyring.gpg}" \
        trixie "$CHROOT" "$uri" >&2
fi
chroot "$CHROOT" /usr/sbin/nginx -V 2>&1 | grep -q -- --with-http_v3_module ||
    { log "the chroot's nginx has no HTTP/3"; exit 1; }
# The host's valgrind cannot run the chroot's nginx (its loader and libraries are the
# chroot's), so the chroot gets its own, with /proc, which valgrind reads.
if [[ -n $CALLGRIND && $PROTOS == *h3* ]]; then
    chroot "$CHROOT" sh -c 'command -v valgrind >/dev/null' ||
        chroot "$CHROOT" apt-get install -y -q --no-install-recommends valgrind >&2
    mountpoint -q "$CHROOT/proc" || mount -t proc proc "$CHROOT/proc"
fi

# oha with HTTP/3 comes from `cargo install oha --locked --features http3` (slow to
# build): when such an install is running, wait for it rather than start a second one.
OHA=${OHA:-$(command -v oha || echo "$HOME/.cargo/bin/oha")}
while [[ $PROTOS == *h3* ]] && { pgrep -f 'cargo install oha' >/dev/null || ! [[ -x $OHA ]]; }; do
    pgrep -f 'cargo install oha' >/dev/null ||
        { log "no $OHA; run: cargo install oha --locked --features http3"; exit 1; }
    log "waiting for cargo install oha to finish"
    sleep 30
done
[[ $PROTOS != *h3* ]] || "$OHA" --help | grep -q 'Available values.* 3' ||
    { log "$OHA has no HTTP/3"; exit 1; }

# Anything still listening on these ports would share the load with the server under
# test (edge listens with SO_REUSEPORT) and skew every figure.
for p in "$PORT" "$ORIGIN_PORT" "$H3_PEER_PORT" "$PAIR_PORT"; do
    if [[ -n $(ss -Hltnu "sport = :$p") ]]; then
        log "port $p is in use; stop what listens there first:"
        ss -ltnup "sport = :$p" >&2
        exit 1
    fi
done

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
log "load average: $LOAD_BEFORE (figures are only meaningful on a quiet machine)"
log "building edge and the h3 bench server (release)"
(cd "$ROOT" && cargo build --release --quiet -p edge -p edge-benches)
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release

# --- configs ------------------------------------------------------------------------

WORK=$(mktemp -d -t proxy-bench.XXXXXX)
# The HTTP/3 nginx runs in the chroot and reads its files from there.
CHROOT_WORK=$CHROOT/tmp/$(basename "$WORK")
mkdir -p "$CHROOT_WORK"
RECORDS=$WORK/records.jsonl
BODY="hello, bench"

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
    -keyout "$WORK/key.pem" -out "$WORK/cert.pem" 2>/dev/null
cp "$WORK"/*.pem "$CHROOT_WORK/"

# edge_config MODE PROTO: edge's KDL (UDP only for HTTP/3, so that HTTP/1.1 and HTTP/2
# responses carry no Alt-Svc, as nginx's do not).
edge_config() {
    local mode=$1 proto=$2 udp="" action
    [[ $proto == h3 ]] && udp="listen \"udp://127.0.0.1:$PORT\""
    if [[ $mode == return ]]; then
        action="return 200 \"$BODY\""
    else
        action='proxy_pass "http://origin"'
    fi
    cat <<EOF
http {
    access_log #false
    keepalive_requests 100000000
    upstream "origin" {
        server "127.0.0.1:$ORIGIN_PORT"
        keepalive 100
    }
    server {
        listen "tcp://127.0.0.1:$PORT"
        $udp
        ssl_certificate "$WORK/cert.pem"
        ssl_certificate_key "$WORK/key.pem"
        location "/" { $action; }
    }
}
EOF
}

# nginx_config DIR MODE PROTO: the same for nginx (DIR: where it finds its files).
nginx_config() {
    local dir=$1 mode=$2 proto=$3 quic="" action
    [[ $proto == h3 ]] && quic="listen 127.0.0.1:$PORT quic reuseport; http3 on; quic_gso on;"
    if [[ $mode == return ]]; then
        action="return 200 \"$BODY\";"
    else
        action='proxy_pass http://origin; proxy_http_version 1.1; proxy_set_header Connection "";'
    fi
    cat <<EOF
worker_processes 1;
daemon off;
master_process $([[ -n $CALLGRIND ]] && echo off || echo on);
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $dir/tmp;
    proxy_temp_path $dir/tmp;
    keepalive_requests 100000000;
    ssl_protocols TLSv1.3;
    upstream origin {
        server 127.0.0.1:$ORIGIN_PORT;
        keepalive 100;
        keepalive_requests 100000000;
    }
    server {
        listen 127.0.0.1:$PORT ssl http2;
        $quic
        ssl_certificate $dir/cert.pem;
        ssl_certificate_key $dir/key.pem;
        location / { $action }
    }
}
EOF
}

# The origin: Debian's nginx answering every request with a small body.
cat >"$WORK/origin.conf" <<EOF
worker_processes 1;
daemon off;
pid $WORK/origin.pid;
error_log $WORK/origin-error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 100000000;
    server {
        listen 127.0.0.1:$ORIGIN_PORT;
        location / { return 200 "$BODY"; }
    }
}
EOF

# --- processes ----------------------------------------------------------------------

ORIGIN_PID=
SERVER_PID=
SERVER_PIDS=()
stop() {
    [[ -n $1 ]] || return 0
    kill -TERM "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}
cleanup() {
    for pid in "${SERVER_PIDS[@]}"; do stop "$pid"; done
    stop "$ORIGIN_PID"
    rm -rf "$CHROOT_WORK"
    ! mountpoint -q "$CHROOT/proc" || umount "$CHROOT/proc"
}
trap cleanup EXIT

# callgrind_control OPTION SERVER PID: the chroot's for the chroot's nginx (its vgdb
# pipes are in the chroot's /tmp).
callgrind_ctl() {
    if [[ $2 == nginx-quic ]]; then
        chroot "$CHROOT" callgrind_control "$1" "$3"
    else
        callgrind_control "$1" "$3"
    fi >/dev/null 2>&1
}

# The process and its children (nginx's workers).
pids() { echo "$1" $(pgrep -P "$1" || true); }

# utime + stime in clock ticks, summed over pids; with a second argument `sys`, stime
# only (the kernel's share: system calls and, on loopback, the peer's TCP receive path).
cpu_ticks() {
    local sum=0 p fields='$12 + $13'
    [[ ${2:-} != sys ]] || fields='$13'
    for p in $(pids "$1"); do
        sum=$((sum + $(sed 's/.*) //' "/proc/$p/stat" | awk "{print $fields}")))
    done
    echo "$sum"
}

# Peak RSS (VmHWM) in KiB, summed over pids.
peak_rss() {
    local sum=0 p
    for p in $(pids "$1"); do
        sum=$((sum + $(awk '/^VmHWM:/ {print $2}' "/proc/$p/status")))
    done
    echo "$sum"
}

# wait_http URL: until it answers over TCP (at most 10 s).
wait_http() {
    for _ in $(seq 100); do
        curl -skf -o /dev/null "$1" && return 0
        sleep 0.1
    done
    log "no answer from $1"
    exit 1
}

# start_server SERVER MODE PROTO: pinned to SERVER_CPU; sets SERVER_PID.
start_server() {
    local server=$1 mode=$2 proto=$3 log=$WORK/$1-$2-$3 pin=(taskset -c "$SERVER_CPU")
    [[ -z $CALLGRIND ]] || pin+=(valgrind --tool=callgrind --callgrind-out-file="$log.cg")
    case $server in
    edge | baseline)
        local bin=$BIN/edge
        [[ $server == edge ]] || bin=$BASELINE
        edge_config "$mode" "$proto" >"$log.kdl"
        EDGE_LOG=warn "${pin[@]}" "$bin" --config "$log.kdl" 2>"$log.err" &
        ;;
    nginx)
        mkdir -p "$WORK/tmp"
        nginx_config "$WORK" "$mode" "$proto" >"$log.conf"
        "${pin[@]}" nginx -e "$WORK/error.log" -c "$log.conf" 2>"$log.err" &
        ;;
    nginx-quic)
        local dir=/tmp/$(basename "$WORK")
        mkdir -p "$CHROOT_WORK/tmp"
        nginx_config "$dir" "$mode" "$proto" >"$CHROOT_WORK/$server-$mode.conf"
        local valgrind=()
        [[ -z $CALLGRIND ]] || valgrind=(valgrind --tool=callgrind --callgrind-out-file="$dir/$server-$mode-$proto.cg")
        taskset -c "$SERVER_CPU" chroot "$CHROOT" "${valgrind[@]}" /usr/sbin/nginx -e "$dir/error.log" \
            -c "$dir/$server-$mode.conf" 2>"$log.err" &
        ;;
    hyper)
        "${pin[@]}" "$BIN/h3-bench-server" --impl hyper --threads 1 \
            --listen "127.0.0.1:$H3_PEER_PORT" >"$log.addr" 2>"$log.err" &
        ;;
    esac
    SERVER_PID=$!
    if [[ $server == hyper ]]; then
        for _ in $(seq 100); do [[ -s $log.addr ]] && break; sleep 0.1; done
    else
        wait_http "https://127.0.0.1:$PORT/"
    fi
}

# One record per measurement, for proxy_report.py.
record() {
    python3 -c 'import json, sys; print(json.dumps(dict(zip(sys.argv[1::2], sys.argv[2::2]))))' \
        "$@" >>"$RECORDS"
}

# measure ROUND MODE PROTO SERVER...: the servers under load at the same time, each
# with its own client (the first on PORT, a second on PAIR_PORT, hyper on H3_PEER_PORT);
# usually one server alone.
measure() {
    local round=$1 mode=$2 proto=$3 i
    shift 3
    local servers=("$@") pair=
    (($# == 1)) || pair=$round
    local -a port log clients procs threads cpu0 sys0 cpu1 sys1 rss
    local h2load_for=(-D "$DURATION") oha_for=(-z "${DURATION}s")
    [[ -z $CALLGRIND ]] || h2load_for=(-n "$CALLGRIND") oha_for=(-n "$CALLGRIND")
    # One bench at a time on this machine (other scripts take the same lock).
    exec {lock}>/tmp/bench.lock
    flock "$lock"
    for i in "${!servers[@]}"; do
        log "round $round: ${servers[i]}, $mode, $proto${pair:+ (simultaneous)}"
        port[i]=$PORT
        ((i == 0)) || port[i]=$PAIR_PORT
        [[ ${servers[i]} != hyper ]] || port[i]=$H3_PEER_PORT
        log[i]=$WORK/$round-${servers[i]}-$mode-$proto
        PORT=${port[i]} start_server "${servers[i]}" "$mode" "$proto"
        SERVER_PIDS[i]=$SERVER_PID
        procs[i]=$(pids "$SERVER_PID" | wc -w)
        threads[i]=$(for p in $(pids "$SERVER_PID"); do ls "/proc/$p/task"; done | wc -l)
    done
    local origin0 origin1
    origin0=$(cpu_ticks "$ORIGIN_PID")
    for i in "${!servers[@]}"; do
        cpu0[i]=$(cpu_ticks "${SERVER_PIDS[i]}")
        sys0[i]=$(cpu_ticks "${SERVER_PIDS[i]}" sys)
        # Count only the load: not the start, nor (below) the exit.
        [[ -z $CALLGRIND ]] || callgrind_ctl -z "${servers[i]}" "${SERVER_PIDS[i]}"
    done
    for i in "${!servers[@]}"; do
        local client
        case $proto in
        h1) client=(h2load --h1 -c "$H1_CONNS" "${h2load_for[@]}" --log-file "${log[i]}.lat") ;;
        h2) client=(h2load -c "$MUX_CONNS" -m "$MUX_STREAMS" "${h2load_for[@]}" --log-file "${log[i]}.lat") ;;
        h3) client=("$OHA" --http-version 3 --insecure --no-tui --output-format json
            --worker-threads 1 -c "$MUX_CONNS" -p "$MUX_STREAMS" "${oha_for[@]}") ;;
        esac
        # The client's exit status is not its verdict: the counts in its output are.
        taskset -c "$CLIENT_CPU" "${client[@]}" "https://127.0.0.1:${port[i]}/" \
            >"${log[i]}.out" 2>"${log[i]}.client-err" &
        clients[i]=$!
    done
    wait "${clients[@]}" || true
    origin1=$(cpu_ticks "$ORIGIN_PID")
    for i in "${!servers[@]}"; do
        cpu1[i]=$(cpu_ticks "${SERVER_PIDS[i]}")
        sys1[i]=$(cpu_ticks "${SERVER_PIDS[i]}" sys)
        rss[i]=$(peak_rss "${SERVER_PIDS[i]}")
        [[ -z $CALLGRIND ]] || callgrind_ctl -d "${servers[i]}" "${SERVER_PIDS[i]}"
    done
    for i in "${!servers[@]}"; do stop "${SERVER_PIDS[i]}"; done
    SERVER_PIDS=()
    flock -u "$lock"
    exec {lock}>&-
    for i in "${!servers[@]}"; do
        local instructions= cg_dir=$WORK
        [[ ${servers[i]} != nginx-quic ]] || cg_dir=$CHROOT_WORK
        # The dump callgrind_control asked for: the second file (start_server's name, .1).
        [[ -z $CALLGRIND ]] || instructions=$(awk '/^summary:/ {print $2}' "$cg_dir/${servers[i]}-$mode-$proto.cg.1")
        # A pair shares the origin: its ticks are the pair's (the report splits them).
        record round "$round" server "${servers[i]}" mode "$mode" proto "$proto" out "${log[i]}.out" \
            instructions "$instructions" pair "$pair" \
            latencies "${log[i]}.lat" cpu_ticks $((cpu1[i] - cpu0[i])) sys_ticks $((sys1[i] - sys0[i])) \
            origin_ticks $((origin1 - origin0)) rss_kib "${rss[i]}" procs "${procs[i]}" threads "${threads[i]}"
    done
}

# --- the run ------------------------------------------------------------------------

taskset -c "$CLIENT_CPU" nginx -e "$WORK/origin-error.log" -c "$WORK/origin.conf" &
ORIGIN_PID=$!
wait_http "http://127.0.0.1:$ORIGIN_PORT/"

for round in $(seq "$ROUNDS"); do
    for mode in return proxy; do
        for proto in $PROTOS; do
            peer=nginx
            [[ $proto != h3 ]] || peer=nginx-quic
            [[ -z $BASELINE ]] || peer=baseline
            if [[ -n $SIMULTANEOUS ]]; then
                measure "$round" "$mode" "$proto" edge "$peer"
                continue
            fi
            measure "$round" "$mode" "$proto" edge
            measure "$round" "$mode" "$proto" "$peer"
        done
    done
    [[ $PROTOS != *h3* || -n $SIMULTANEOUS ]] || measure "$round" return h3 hyper
done

mkdir -p "$(dirname "$OUT")"
{
    python3 "$ROOT/benches/proxy_report.py" "$RECORDS" "$(getconf CLK_TCK)" "$DURATION" \
        "${OUT%.md}.png"
    echo
    echo "## Run"
    echo
    echo "- $(date -u +%Y-%m-%dT%H:%MZ), commit $(git -C "$ROOT" rev-parse --short HEAD)$(git -C "$ROOT" diff --quiet HEAD -- benches edge h3-tokio || echo ' (with local changes)')"
    echo "- ${CALLGRIND:+CALLGRIND=$CALLGRIND (requests per case) }${SIMULTANEOUS:+SIMULTANEOUS=1 (edge and its peer at the same time, each with its own client) }${BASELINE:+BASELINE=$BASELINE }DURATION=${DURATION}s ROUNDS=$ROUNDS; HTTP/1.1: $H1_CONNS connections; HTTP/2 and HTTP/3: $MUX_CONNS connections x $MUX_STREAMS streams; server on core $SERVER_CPU, client and origin on core $CLIENT_CPU"
    echo "- $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'); $(uname -sr)"
    echo "- $(nginx -v 2>&1 | sed 's/.*: //') (HTTP/1.1, HTTP/2, origin), $(chroot "$CHROOT" /usr/sbin/nginx -v 2>&1 | sed 's/.*: //') from trixie (HTTP/3); $(h2load --version | head -1); $("$OHA" --version 2>/dev/null || echo 'no oha')"
    echo "- load average before the run: $LOAD_BEFORE; after: $(cut -d' ' -f1-3 /proc/loadavg)"
} >"$OUT"
cat "$OUT"
plot=" and ${OUT%.md}.png"
[[ -z $CALLGRIND ]] || plot=
log "wrote $OUT$plot (raw data in $WORK)"
