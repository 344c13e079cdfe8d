import json, statistics, sys

records = [json.loads(line) for line in open(sys.argv[1])]
tck = int(sys.argv[2])

def cpu_s(r):
    return int(r["cpu_ticks"]) / tck

def mib(r):
    return int(r["rss_kib"]) / 1024

print("## Requests: `GET /` (13-byte body), oha --http-version 3\n")
print("| impl | case | conns | requests | req/s | server CPU | CPU µs/req | req per CPU-s | vs hyper | peak RSS |")
print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
notes = []
per_cpu = {}
rows = []
for r in records:
    if r["kind"] != "load":
        continue
    server = json.loads(r["server"])
    oha = json.load(open(r["oha"]))
    served = server["served"]
    ok = oha["statusCodeDistribution"].get("200", 0)
    window = server["active_seconds"]
    cpu = cpu_s(r)
    per_cpu[(r["impl"], r["case"])] = served / cpu if cpu else 0
    rows.append((r, server, served, window, cpu))
    if server["failed"] or server["errors"] or oha["errorDistribution"] or ok != served:
        notes.append(f'- {r["impl"]} {r["case"]}: server served {served}, failed '
                     f'{server["failed"]}, errors {server["errors"]}; oha 200s {ok}, '
                     f'errors {oha["errorDistribution"]}')
    if server["connections"] != int(r["conns"]):
        notes.append(f'- {r["impl"]} {r["case"]}: {server["connections"]} connections '
                     f'accepted, {r["conns"]} expected')
for r, server, served, window, cpu in rows:
    base = per_cpu.get(("hyper", r["case"]))
    ratio = f'{per_cpu[(r["impl"], r["case"])] / base:.2f}x' if base else "-"
    print(f'| {r["impl"]} | {r["conns"]} conn x {r["streams"]} streams '
          f'| {server["connections"]} | {served} | {served / window:,.0f} '
          f'| {100 * cpu / window:.0f}% | {1e6 * cpu / served:.1f} '
          f'| {served / cpu:,.0f} | {ratio} | {mib(r):.1f} MiB |')

print("\n## Download: one connection, one response body\n")
print("| server impl | client | bytes | runs | MB/s (median) | MB/s (min-max) | vs raw | server CPU s/GiB | peak RSS |")
print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
dl = {}
for r in records:
    if r["kind"] != "download":
        continue
    runs = [json.loads(line) for line in open(r["runs"])]
    rates = [x["mb_per_s"] for x in runs]
    total = sum(x["bytes"] for x in runs)
    dl[r["impl"]] = (r, runs, rates, total)
    server = json.loads(r["server"])
    if server["failed"] or server["errors"]:
        notes.append(f'- download {r["impl"]}: server failed {server["failed"]}, '
                     f'errors {server["errors"]}')
raw = statistics.median(dl["raw"][2]) if "raw" in dl else None
for name, (r, runs, rates, total) in dl.items():
    med = statistics.median(rates)
    ratio = f"{med / raw:.2f}x" if raw else "-"
    client = "quinn" if name == "raw" else "h3-tokio"
    print(f'| {name} | {client} | {runs[0]["bytes"]} | {len(runs)} | {med:,.0f} '
          f'| {min(rates):,.0f}-{max(rates):,.0f} | {ratio} '
          f'| {cpu_s(r) / (total / 2**30):.2f} | {mib(r):.1f} MiB |')

if notes:
    print("\n## Anomalies\n")
    print("\n".join(notes))
