"""Turns the records `benches/h3.sh` collected into the markdown tables of its report.

Usage: h3_report.py RECORDS.jsonl CLK_TCK > report.md

Each record is one server process: its CPU ticks over the measured load, its peak RSS,
its exit counters, the client's CPU seconds, and the client's own output (oha's JSON
summary, or the download client's JSON lines). See benches/README.md for the formulas.
"""

import json
import statistics
import sys

records = [json.loads(line) for line in open(sys.argv[1])]
ticks_per_s = int(sys.argv[2])
notes = []


def server_cpu(r):
    return int(r["cpu_ticks"]) / ticks_per_s


def client_cpu(r):
    user, system = r["client_cpu"].split()[-2:]
    return float(user) + float(system)


def rss(r):
    return f'{int(r["rss_kib"]) / 1024:.1f} MiB'


def load_table():
    rows = []
    for r in records:
        if r["kind"] != "load":
            continue
        server = json.loads(r["server"])
        oha = json.load(open(r["oha"]))
        rows.append((r, server, oha))
        served, ok = server["served"], oha["statusCodeDistribution"].get("200", 0)
        if server["failed"] or server["errors"] or oha["errorDistribution"] or ok != served:
            notes.append(
                f'- {r["impl"]} {r["case"]}: server served {served}, failed '
                f'{server["failed"]}, errors {server["errors"]}; oha: {ok} responses '
                f'with 200, errors {oha["errorDistribution"]}'
            )
        if server["connections"] != int(r["conns"]):
            notes.append(
                f'- {r["impl"]} {r["case"]}: {server["connections"]} connections '
                f'accepted, {r["conns"]} expected'
            )
    def completed(oha):
        return oha["statusCodeDistribution"].get("200", 0)

    per_cpu_s = {(r["impl"], r["case"]): completed(o) / server_cpu(r) for r, _, o in rows}

    print("## Requests: `GET /` (13-byte body), oha --http-version 3\n")
    print(
        "| impl | case | conns | requests | req/s | server CPU | CPU µs/req "
        "| req per CPU-s | vs hyper | client CPU | peak RSS |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r, server, oha in rows:
        done, window, cpu = completed(oha), server["active_seconds"], server_cpu(r)
        hyper = per_cpu_s.get(("hyper", r["case"]))
        ratio = f'{per_cpu_s[(r["impl"], r["case"])] / hyper:.2f}x' if hyper else "-"
        print(
            f'| {r["impl"]} | {r["conns"]} conn x {r["streams"]} streams '
            f'| {server["connections"]} | {done} | {done / window:,.0f} '
            f"| {100 * cpu / window:.0f}% | {1e6 * cpu / done:.1f} "
            f"| {done / cpu:,.0f} | {ratio} | {100 * client_cpu(r) / window:.0f}% "
            f"| {rss(r)} |"
        )


def download_table():
    rows = {}
    for r in records:
        if r["kind"] != "download":
            continue
        runs = [json.loads(line) for line in open(r["runs"])]
        rows[r["impl"]] = (r, runs)
        server = json.loads(r["server"])
        if server["failed"] or server["errors"]:
            notes.append(
                f'- download {r["impl"]}: server failed {server["failed"]}, '
                f'errors {server["errors"]}'
            )
    median = {k: statistics.median(x["mb_per_s"] for x in runs) for k, (_, runs) in rows.items()}

    print("\n## Download: one connection, one response body\n")
    print(
        "| server | client | bytes | runs | MB/s (median) | MB/s (min-max) | vs raw "
        "| server CPU s/GiB | client CPU s/GiB | peak RSS |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, (r, runs) in rows.items():
        rates = [x["mb_per_s"] for x in runs]
        gib = sum(x["bytes"] for x in runs) / 2**30
        ratio = f'{median[name] / median["raw"]:.2f}x' if "raw" in median else "-"
        client = "quinn" if name == "raw" else "h3-tokio"
        print(
            f'| {name} | {client} | {runs[0]["bytes"]} | {len(runs)} | {median[name]:,.0f} '
            f"| {min(rates):,.0f}-{max(rates):,.0f} | {ratio} "
            f"| {server_cpu(r) / gib:.2f} | {client_cpu(r) / gib:.2f} | {rss(r)} |"
        )


load_table()
download_table()
if notes:
    print("\n## Failed requests and connection errors\n")
    print("\n".join(notes))
