#!/usr/bin/python3
"""Durable publishing under load: how group commit behaves as publishers grow.

    bench/durable_curve.py [--rounds 3] [--seconds 5] [--out docs/benchmarks.md]

A fresh server (and data directory) for every measurement, so that one
case's dirty pages and background writeback do not weigh on the next; wrk
(keep-alive, 100-byte POST bodies) as the publishers. Cases: fsync always with 64, 128 and 256 publishers on one
partition, 64 publishers on four partitions, and fsync never with 64
publishers as the reference for what the HTTP path alone does on this
machine. Rounds alternate between the cases (the machine is shared); the
table reports medians of acknowledged records/s and wrk's mean latency, and,
from the server's own counters (junction_stream_fsyncs_total and
junction_stream_fsync_seconds_total), records per fsync and the mean fdatasync
time. Every process started here is stopped by PID before exit. Loopback only.
"""
import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import tempfile
import time
import urllib.request

from rest_bench import LUA, ROOT, free_port, start_junction, write_section

CASES = [  # name, fsync, partitions, publishers
    ("always-64", "always", 1, 64),
    ("always-128", "always", 1, 128),
    ("always-256", "always", 1, 256),
    ("always-64-p4", "always", 4, 64),
    ("never-64", "never", 1, 64),
]


def post_json(url, body):
    req = urllib.request.Request(url, method="POST", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    urllib.request.urlopen(req, timeout=10).read()


def sync_counters(base, stream):
    text = urllib.request.urlopen(base + "/metrics", timeout=10).read().decode()
    out = {}
    for name in ("junction_stream_fsyncs_total", "junction_stream_fsync_seconds_total",
                 "junction_records_published_total"):
        m = re.search(rf'^{name}{{stream="{re.escape(stream)}"}} ([\d.e+]+)$', text, re.M)
        out[name] = float(m.group(1)) if m else 0.0
    return out


def wrk(url, seconds, conns):
    env = dict(os.environ, BODY_SIZE="100")
    out = subprocess.run(["wrk", "-t2", f"-c{conns}", f"-d{seconds}s", "--latency", "-s", LUA, url],
                         capture_output=True, text=True, env=env, timeout=seconds + 60).stdout
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    lat = re.search(r"Latency\s+([\d.]+)(us|ms|s)", out)
    ms = float(lat.group(1)) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[lat.group(2)] if lat else 0.0
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    return float(rate.group(1)) if rate else 0.0, ms, int(non2xx.group(1)) if non2xx else 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--out", default=os.path.join(ROOT, "docs", "benchmarks.md"))
    ap.add_argument("--cases", help="comma-separated case names (default: all); a subset is not written to --out")
    args = ap.parse_args()
    cases = [c for c in CASES if not args.cases or c[0] in args.cases.split(",")]
    tmp = tempfile.mkdtemp(prefix="junction-durable-")
    server = None
    try:
        results = {c[0]: [] for c in cases}
        for r in range(args.rounds):
            for name, fsync, parts, conns in cases:
                port = free_port()
                server = start_junction(tmp, port)
                base = f"http://127.0.0.1:{port}"
                post_json(base + "/v1/streams", {"name": name, "partitions": parts, "config": {"fsync": fsync}})
                before = sync_counters(base, name)
                rate, ms, non2xx = wrk(f"{base}/v1/publish/{name}/x", args.seconds, conns)
                after = sync_counters(base, name)
                server.stop()
                data = server.p.args[server.p.args.index("--data_dir") + 1]
                shutil.rmtree(data, ignore_errors=True)  # its dirty pages go too, unwritten
                os.sync()  # and nothing left in writeback slows the next case's fsyncs
                server = None
                d = {k: after[k] - before[k] for k in after}
                fs = d["junction_stream_fsyncs_total"]
                per_fsync = d["junction_records_published_total"] / fs if fs else 0.0
                fsync_ms = d["junction_stream_fsync_seconds_total"] * 1e3 / fs if fs else 0.0
                results[name].append((rate, ms, per_fsync, fsync_ms, fs / args.seconds, non2xx))
                print(f"round {r + 1} {name}: {rate:,.0f}/s, mean latency {ms:.2f} ms, "
                      f"{fs / args.seconds:,.0f} fsyncs/s, {per_fsync:.1f} records/fsync, "
                      f"fdatasync {fsync_ms:.2f} ms, non-2xx {non2xx}", flush=True)
        load = os.getloadavg()[0]
        lines = ["## Durable publishing as publishers grow (issue 2)", "",
                 f"Run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} by `bench/durable_curve.py` "
                 f"({args.rounds} alternating rounds of {args.seconds} s, medians; load average {load:.2f} at the "
                 f"end; {os.cpu_count()} vCPUs shared by the server and wrk). Records per fsync and fdatasync time "
                 "come from the server's `/metrics`.", "",
                 "| stream fsync | partitions | publishers (wrk -c) | acked records/s | mean latency | fsyncs/s "
                 "| records per fsync | mean fdatasync | non-2xx |",
                 "|---|---|---|---|---|---|---|---|---|"]
        for name, fsync, parts, conns in cases:
            rows = results[name]
            med = [statistics.median(x[i] for x in rows) for i in range(5)]
            lines.append(f"| {fsync} | {parts} | {conns} | {med[0]:,.0f} ({' / '.join(f'{x[0]:,.0f}' for x in rows)}) "
                         f"| {med[1]:.2f} ms | {med[4]:,.0f} | "
                         + (f"{med[2]:.1f} | {med[3]:.2f} ms" if fsync == "always" else "- | -")
                         + f" | {sum(x[5] for x in rows)} |")
        lines.append("")
        if len(cases) == len(CASES):
            write_section(args.out, "durable-curve", "\n".join(lines))
        print("\n".join(lines))
    finally:
        if server:
            server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
