"""Turns the records `benches/proxy.sh` collected into its markdown report and PNG plot.

Usage: proxy_report.py RECORDS.jsonl CLK_TCK DURATION_S PLOT.png > report.md

With records from a CALLGRIND run (each with the server's instruction count), it prints
instructions per request instead, and no plot.

Each record is one server process under one load: its CPU ticks (all its processes)
while the client ran, the origin's, its peak RSS, and where the client's own output is
(h2load's text and per-request log, or oha's JSON). With several rounds, every figure is
the median over the rounds. Records of a SIMULTANEOUS run come in pairs (edge and nginx
under load at the same time, `pair` set): their ratio is taken per round, then the
median, and the origin's ticks, shared by the pair, are divided by both servers'
requests. With a BASELINE run the pair is edge and another edge build ("baseline"),
and the ratios are edge / baseline. See "edge vs nginx" in benches/README.md for the
formulas.
"""

import json
import os
import statistics
import subprocess
import sys
import tempfile
from collections import defaultdict

records = [json.loads(line) for line in open(sys.argv[1])]
ticks_per_s = int(sys.argv[2])
duration = float(sys.argv[3])
plot_path = sys.argv[4]

PROTOS = {"h1": "HTTP/1.1", "h2": "HTTP/2", "h3": "HTTP/3"}
MODES = {"return": "return 200", "proxy": "proxy_pass"}
SERVERS = ["edge", "baseline", "nginx", "hyper"]
# What edge's ratios are taken against: nginx, or another edge build.
REF = "baseline" if any(r["server"] == "baseline" for r in records) else "nginx"
notes = []


def percentile(sorted_values, q):
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def client_figures(r):
    """(completed 2xx responses, p50 s, p99 s, problems) from the client's own output."""
    if r["proto"] == "h3":
        oha = json.load(open(r["out"]))
        ok = oha["statusCodeDistribution"].get("200", 0)
        lat = oha["latencyPercentiles"]
        # oha counts the requests still in flight at its deadline as errors: not a failure.
        errors = {
            k: v for k, v in oha["errorDistribution"].items() if k != "aborted due to deadline"
        }
        return ok, lat["p50"], lat["p99"], errors or None
    text = open(r["out"]).read()
    codes = next(line for line in text.splitlines() if line.startswith("status codes:"))
    ok = int(codes.split()[2])
    requests = next(line for line in text.splitlines() if line.startswith("requests:"))
    # h2load's log: start time (µs since epoch), status, µs to the end of the response.
    lat = sorted(
        int(fields[2]) / 1e6
        for fields in (line.split("\t") for line in open(r["latencies"]))
        if fields[1].startswith("2")
    )
    bad = {
        word: int(n)
        for n, word in zip(requests.split()[1::2], requests.split()[2::2])
        if word.rstrip(",") in ("failed", "errored", "timeout") and int(n)
    }
    return ok, percentile(lat, 0.5), percentile(lat, 0.99), bad or None


def case_key(r):
    return (r["round"], r["mode"], r["proto"])


# Requests of both servers of each simultaneous pair: the origin served them all.
pair_requests = defaultdict(int)
for r in records:
    if r.get("pair"):
        pair_requests[case_key(r)] += client_figures(r)[0]


def figures(r):
    ok, p50, p99, problems = client_figures(r)
    if problems:
        notes.append(f'- round {r["round"]} {r["server"]} {r["mode"]} {r["proto"]}: {problems}')
    cpu = int(r["cpu_ticks"]) / ticks_per_s
    # Records written before the split have no sys_ticks.
    sys_cpu = int(r.get("sys_ticks", 0)) / ticks_per_s
    origin = int(r["origin_ticks"]) / ticks_per_s
    origin_served = pair_requests[case_key(r)] if r.get("pair") else ok
    return {
        "requests": ok,
        "rps": ok / duration,
        "cpu_share": cpu / duration,
        "cpu_us": 1e6 * cpu / ok,
        "user_us": 1e6 * (cpu - sys_cpu) / ok,
        "sys_us": 1e6 * sys_cpu / ok,
        "origin_us": 1e6 * origin / origin_served,
        "p50_ms": 1e3 * p50,
        "p99_ms": 1e3 * p99,
        "rss_mib": int(r["rss_kib"]) / 1024,
        "procs": int(r["procs"]),
        "threads": int(r["threads"]),
    }


def callgrind_report():
    print("## edge vs nginx under callgrind: server instructions per request\n")
    print("| mode | protocol | server | requests | instructions/req | vs nginx |")
    print("|---|---|---|---:|---:|---:|")
    per_req = {}
    for r in records:
        ok = client_figures(r)[0]
        per_req[(r["mode"], r["proto"], r["server"])] = (ok, int(r["instructions"]) / ok)
    for (mode, proto, server), (ok, instr) in per_req.items():
        nginx = per_req.get((mode, proto, "nginx")) or per_req.get((mode, proto, "nginx-quic"))
        ratio = f"{instr / nginx[1]:.2f}x" if nginx else "-"
        print(f"| {MODES[mode]} | {PROTOS[proto]} | {server} | {ok} | {instr / 1e3:.1f}k | {ratio} |")


if records[0].get("instructions"):
    callgrind_report()
    sys.exit()

runs = defaultdict(list)
# Simultaneous runs: edge's CPU µs/req over the reference's, per round.
per_round = defaultdict(dict)
for r in records:
    server = "nginx" if r["server"] == "nginx-quic" else r["server"]
    f = figures(r)
    runs[(r["mode"], r["proto"], server)].append(f)
    if r.get("pair"):
        per_round[(r["mode"], r["proto"])].setdefault(r["round"], {})[server] = f["cpu_us"]
round_ratios = {
    case: [v["edge"] / v[REF] for _, v in sorted(rounds.items()) if len(v) == 2]
    for case, rounds in per_round.items()
}
rows = {
    key: {k: statistics.median(f[k] for f in fs) for k in fs[0]} for key, fs in runs.items()
}
cases = [(m, p) for m in MODES for p in PROTOS if any((m, p, s) in rows for s in SERVERS)]

print(f"## edge vs {REF}: server CPU per request, latency, memory\n")
print(
    "| mode | protocol | server | requests | req/s | server CPU | CPU µs/req "
    "| user | sys | p50 ms | p99 ms | peak RSS | origin CPU µs/req |"
)
print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for mode, proto in cases:
    for server in SERVERS:
        f = rows.get((mode, proto, server))
        if not f:
            continue
        origin = f'{f["origin_us"]:.1f}' if mode == "proxy" else "-"
        print(
            f"| {MODES[mode]} | {PROTOS[proto]} | {server} | {f['requests']:.0f} "
            f"| {f['rps']:,.0f} | {100 * f['cpu_share']:.0f}% | {f['cpu_us']:.1f} "
            f"| {f['user_us']:.1f} | {f['sys_us']:.1f} | {f['p50_ms']:.2f} | {f['p99_ms']:.2f} | {f['rss_mib']:.1f} MiB | {origin} |"
        )

target = " (target: CPU µs/req at most 0.70x, p99 at most 1.00x)" if REF == "nginx" else ""
print(f"\n## Ratios edge / {REF}{target}\n")
# The last column is edge's system time alone over the peer's whole CPU: the ratio edge
# would reach if its user-space work cost nothing. The kernel's part (system calls, and
# on loopback the receiving side's TCP work, charged to the sender) is a floor that
# user-space work cannot lower.
print(
    "| mode | protocol | CPU µs/req | CPU, per simultaneous round | user µs/req | p99 | target "
    f"| edge sys / {REF} CPU |"
)
print("|---|---|---:|---|---:|---:|---|---:|")
for mode, proto in cases:
    edge, ref = rows.get((mode, proto, "edge")), rows.get((mode, proto, REF))
    if not (edge and ref):
        continue
    cpu, p99 = edge["cpu_us"] / ref["cpu_us"], edge["p99_ms"] / ref["p99_ms"]
    ratios = round_ratios.get((mode, proto))
    if ratios:
        cpu = statistics.median(ratios)
    each = ", ".join(f"{x:.2f}" for x in ratios) if ratios else "-"
    user = edge["user_us"] / ref["user_us"] if ref["user_us"] else float("nan")
    verdict = ("met" if cpu <= 0.7 and p99 <= 1.0 else "not met") if REF == "nginx" else "-"
    print(
        f"| {MODES[mode]} | {PROTOS[proto]} | {cpu:.2f}x | {each} | {user:.2f}x | {p99:.2f}x "
        f"| {verdict} | {edge['sys_us'] / ref['cpu_us']:.2f}x |"
    )
if ("return", "h3", "hyper") in rows and ("return", "h3", "edge") in rows:
    edge, hyper = rows[("return", "h3", "edge")], rows[("return", "h3", "hyper")]
    print(
        f"\nHTTP/3 `return 200`, edge / hyperium h3: CPU µs/req "
        f"{edge['cpu_us'] / hyper['cpu_us']:.2f}x, p99 {edge['p99_ms'] / hyper['p99_ms']:.2f}x."
    )

shape = {k[2]: f'{v["procs"]:.0f} process(es), {v["threads"]:.0f} thread(s)' for k, v in rows.items()}
print("\nServer processes and threads: " + "; ".join(f"{s}: {v}" for s, v in shape.items()) + ".")
if notes:
    print("\n## Failed requests\n")
    print("\n".join(notes))

# The plot: CPU µs/req and p99 per case, one bar per server that ran.
servers = [s for s in SERVERS if any(k[2] == s for k in rows)]
with tempfile.TemporaryDirectory() as tmp:
    data = os.path.join(tmp, "data")
    with open(data, "w") as out:
        for mode, proto in cases:
            cells = [
                f"{rows[(mode, proto, s)][metric]:.3f}" if (mode, proto, s) in rows else "-"
                for metric in ("cpu_us", "p99_ms")
                for s in servers
            ]
            out.write(f'"{PROTOS[proto]}\\n{MODES[mode]}" {" ".join(cells)}\n')

    def bars(first_column):
        return ", ".join(
            f'"{data}" using {first_column + i}{":xtic(1)" if i == 0 else ""} title "{s}"'
            for i, s in enumerate(servers)
        )

    script = f"""
set terminal pngcairo noenhanced size 1200,520 font ",10"
set output "{plot_path}"
set datafile missing "-"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set key top left
set grid ytics
set yrange [0:*]
set bmargin 4
set multiplot layout 1,2
set title "server CPU per request (µs, lower is better)"
plot {bars(2)}
set title "p99 latency (ms, lower is better)"
plot {bars(2 + len(servers))}
unset multiplot
"""
    subprocess.run(["gnuplot"], input=script, text=True, check=True)
