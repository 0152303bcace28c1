#!/usr/bin/python3
"""Issue-2 benchmarks, side by side, in one run (ratios hold on a noisy box).

    bench/rest_bench.py [--runs 3] [--seconds 10] [--out docs/benchmarks.md]

1. In-process append throughput (build/append_bench) for 100 B and 1 KiB
   records, fsync never and interval, one record per call and 100 per call.
2. REST publish requests/s with wrk (keep-alive, 64 connections, 100-byte
   bodies) against Junction and against nginx answering the same POSTs
   with 204 and the body discarded, interleaved, median of --runs.
3. Durable publishing: a stream with fsync always, 64 concurrent
   publishers (wrk -c64): acknowledged records/s, on a fresh server once
   the data of step 2 is deleted and the page cache synced.
4. Peak resident memory with 10,000 idle keep-alive connections, each of
   which has had one request answered: Junction, then nginx (its worker
   process; 1 worker, worker_connections sized for the test).

Every process started here is stopped by PID before exit. Loopback only.
"""
import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "build", "junction")
APPEND = os.path.join(ROOT, "build", "append_bench")
LUA = os.path.join(ROOT, "bench", "post.lua")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except Exception:
            time.sleep(0.1)
    raise RuntimeError("not ready: " + url)


def wrk(url, seconds, conns=64, threads=2, body=100):
    env = dict(os.environ, BODY_SIZE=str(body))
    out = subprocess.run(["wrk", f"-t{threads}", f"-c{conns}", f"-d{seconds}s", "-s", LUA, url],
                         capture_output=True, text=True, env=env, timeout=seconds + 60).stdout
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors:.*", out)
    return float(m.group(1)) if m else 0.0, int(non2xx.group(1)) if non2xx else 0, errors.group(0) if errors else ""


def stop_process(p, timeout=30):
    """SIGTERM to the Popen |p| (by its PID), SIGKILL if it lingers."""
    if p is None or p.poll() is not None:
        return
    p.send_signal(signal.SIGTERM)
    try:
        p.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()


class Proc:
    def __init__(self, args, log):
        self.p = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)

    def stop(self):
        stop_process(self.p)


def start_nginx(tmp, port, connections=4096):
    conf = os.path.join(tmp, "nginx.conf")
    with open(conf, "w") as f:
        f.write(f"""
worker_processes 1;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log;
worker_rlimit_nofile {connections + 100};
events {{ worker_connections {connections}; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body; proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fcgi; uwsgi_temp_path {tmp}/uwsgi; scgi_temp_path {tmp}/scgi;
    keepalive_requests 1000000;
    server {{
        listen 127.0.0.1:{port};
        location / {{ client_body_in_single_buffer on; return 204; }}
    }}
}}
""")
    log = open(os.path.join(tmp, "nginx.out"), "w")
    p = Proc(["/usr/sbin/nginx", "-p", tmp, "-c", conf], log)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return p
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("nginx did not start")


def nginx_worker(master_pid):
    """The PID of the one worker of the nginx master |master_pid|."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with open(f"/proc/{master_pid}/task/{master_pid}/children") as f:
            kids = f.read().split()
        if kids:
            return int(kids[0])
        time.sleep(0.1)
    raise RuntimeError("nginx started no worker")


def idle_conns(pid, port, n):
    out = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "idle_conns.py"), str(pid), "127.0.0.1",
                          str(port), str(n)], capture_output=True, text=True, timeout=600, check=True).stdout
    return json.loads(out)


def start_junction(tmp, port, extra=()):
    data = tempfile.mkdtemp(dir=tmp, prefix="data-")
    log = open(os.path.join(tmp, f"junction-{port}.log"), "w")
    p = Proc([BIN, "serve", "--data_dir", data, "--http.listen", f"127.0.0.1:{port}", "--log_level", "warn",
              *extra], log)
    wait_http(f"http://127.0.0.1:{port}/v1/health")
    return p


def write_section(path, name, text):
    """Replaces the text between <!-- NAME:begin --> and <!-- NAME:end --> in
    |path| (appending the section when absent); other sections stay."""
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    try:
        with open(path) as f:
            doc = f.read()
    except FileNotFoundError:
        doc = "# Benchmarks\n"
    block = f"{begin}\n{text}\n{end}"
    if begin in doc and end in doc:
        doc = doc[:doc.index(begin)] + block + doc[doc.index(end) + len(end):]
    else:
        doc = doc.rstrip("\n") + "\n\n" + block + "\n"
    with open(path, "w") as f:
        f.write(doc)


def append_benches(runs):
    rows = []
    for size in (100, 1024):
        for fsync in ("never", "interval"):
            for per_call in (1, 100):
                n = 2000000 if size == 100 else 500000
                vals = []
                for _ in range(runs):
                    out = subprocess.run([APPEND, str(n), str(size), fsync, str(per_call)], capture_output=True,
                                         text=True, timeout=600, check=True).stdout
                    vals.append(json.loads(out)["records_per_s"])
                rows.append((size, fsync, per_call, statistics.median(vals)))
                print(f"append {size} B fsync={fsync} per_call={per_call}: {statistics.median(vals):,.0f} rec/s",
                      flush=True)
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--out", default=os.path.join(ROOT, "docs", "benchmarks.md"))
    ap.add_argument("--conns", type=int, default=10000)
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="junction-bench-")
    procs = []
    try:
        appends = append_benches(args.runs)

        jport, nport = free_port(), free_port()
        j = start_junction(tmp, jport)
        procs.append(j)
        n = start_nginx(tmp, nport)
        procs.append(n)
        jr, nr, jerr = [], [], []
        for _ in range(args.runs):
            r, non2xx, e = wrk(f"http://127.0.0.1:{jport}/v1/publish/bench/x", args.seconds)
            jr.append(r)
            jerr.append(non2xx)
            r2, _, _ = wrk(f"http://127.0.0.1:{nport}/publish", args.seconds)
            nr.append(r2)
            print(f"REST publish: junction {r:,.0f} req/s, nginx {r2:,.0f} req/s", flush=True)
        jm, nm = statistics.median(jr), statistics.median(nr)

        # Durable: a stream with fsync always, on a fresh server once the
        # runs above are written back (their hundreds of MB of page cache
        # would otherwise be flushed during these runs, competing with the
        # fsyncs measured).
        j.stop()
        procs.remove(j)
        shutil.rmtree(j.p.args[j.p.args.index("--data_dir") + 1], ignore_errors=True)
        os.sync()
        jport = free_port()
        j = start_junction(tmp, jport)
        procs.append(j)
        req = urllib.request.Request(f"http://127.0.0.1:{jport}/v1/streams", method="POST",
                                     data=json.dumps({"name": "durable", "config": {"fsync": "always"}}).encode(),
                                     headers={"Content-Type": "application/json"})
        urllib.request.urlopen(req, timeout=10)
        dr = []
        for _ in range(args.runs):
            r, non2xx, _ = wrk(f"http://127.0.0.1:{jport}/v1/publish/durable/x", args.seconds)
            dr.append(r)
            print(f"durable publish (fsync always, 64 publishers): {r:,.0f} acked/s, non-2xx {non2xx}", flush=True)
        dm = statistics.median(dr)
        j.stop()
        procs.remove(j)

        # Idle connections, on a fresh server, then on a fresh nginx (the
        # one above stops first: its worker_connections are too few).
        n.stop()
        procs.remove(n)
        j2 = start_junction(tmp, free_port())
        procs.append(j2)
        port2 = int(j2.p.args[j2.p.args.index("--http.listen") + 1].rsplit(":", 1)[1])
        idle = idle_conns(j2.p.pid, port2, args.conns)
        print("idle connections, junction:", idle, flush=True)
        j2.stop()
        procs.remove(j2)
        nport = free_port()
        n = start_nginx(tmp, nport, args.conns + 64)
        procs.append(n)
        idle_n = idle_conns(nginx_worker(n.p.pid), nport, args.conns)
        print("idle connections, nginx:", idle_n, flush=True)

        lines = ["## Foundation (issue 2): log, REST door", "",
                 f"Run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, medians of {args.runs} runs, "
                 f"{os.cpu_count()} cores shared by server and load generator. "
                 "Reproduce: `make bench` (runs `bench/rest_bench.py`).", "",
                 "### In-process append (`build/append_bench N SIZE FSYNC PER_CALL`)", "",
                 "| record | fsync | records per publish call | records/s |", "|---|---|---|---|"]
        for size, fsync, per_call, v in appends:
            lines.append(f"| {size} B | {fsync} | {per_call} | {v:,.0f} |")
        lines += ["", "### REST publish vs nginx (wrk -t2 -c64, 100-byte POST bodies, keep-alive)", "",
                  "| server | requests/s | ratio Junction/nginx |", "|---|---|---|",
                  f"| Junction `POST /v1/publish/bench/x` (fsync interval) | {jm:,.0f} | {jm / nm:.2f} |",
                  f"| nginx 1 worker, `return 204` (body read and discarded) | {nm:,.0f} | 1.00 |",
                  "", f"Non-2xx answers from Junction: {sum(jerr)}.", "",
                  "### Durable publishing (fsync always, 64 concurrent publishers, wrk -c64)", "",
                  f"Acknowledged durable records/s: **{dm:,.0f}** (median; runs "
                  f"{' / '.join(f'{r:,.0f}' for r in dr)}; a fresh server). Each 201 is sent after the fsync that covers "
                  "the record; group commit shares one fsync among all waiting publishers "
                  "(docs/benchmarks.md, \"Durable publishing: where the time goes\").", "",
                  f"### Memory with {idle['connections']:,} idle keep-alive connections", "",
                  "Each connection has had one request answered (`bench/idle_conns.py`); resident memory of the "
                  "process holding the connections (nginx: its one worker).", "",
                  "| server | peak RSS | RSS before | bytes per idle connection | answered |", "|---|---|---|---|---|"]
        for name, r in (("Junction", idle), ("nginx", idle_n)):
            lines.append(f"| {name} | {r['peak_rss_kib'] / 1024:.1f} MiB | {r['rss_before_kib'] / 1024:.1f} MiB | "
                         f"{r['per_conn_bytes']:,} | {r['answered']:,} of {r['connections']:,} |")
        lines += ["", f"Ratio of peak RSS, Junction / nginx: {idle['peak_rss_kib'] / idle_n['peak_rss_kib']:.2f}. "
                  "A quiet Junction connection is its 352-byte conn struct and the HTTP door's state; buffers and "
                  "the request struct go back to spares as soon as the answer is written (docs/net.md).", ""]
        write_section(args.out, "rest", "\n".join(lines))
        print("\n".join(lines))
    finally:
        for p in procs:
            p.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
