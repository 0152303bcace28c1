#!/usr/bin/python3
"""Durable publishing through every door that acknowledges after fsync.

    bench/durable_doors.py [--rounds 3] [--seconds 5] [--cases a,b] [--out docs/benchmarks.md]

64 concurrent publishers, 100-byte records, one stream `bench` with one
partition and fsync always, measured with `junction bench <door> --json`:

    rest-1, rest-pipe4   HTTP POST /v1/publish/bench/x, 64 connections,
                         1 or 4 requests in flight per connection (2xx answers)
    mqtt-1, mqtt-16      MQTT 3.1.1 QoS 1 on bench/x, 1 or 16 unacknowledged
                         PUBLISHes per publisher (PUBACKs)
    kafka-1, kafka-16    Produce with acks=all, one record per batch, 1 or 16
                         Produce requests in flight per producer
    amqp-1, amqp-16      persistent messages to the durable queue
                         jnbench.durable with publisher confirms, 1 or 16
                         unconfirmed per publisher (Basic.Ack), against
                         Junction and against RabbitMQ 3.10.8, interleaved

Every Junction case runs on a fresh server and data directory, deleted and
os.sync()ed afterwards (durable_curve.py does the same), so one case's dirty
pages do not weigh on the next. RabbitMQ is started once (bench/compare's
starter) before the first round and stopped at the end. Rounds alternate
over the cases; the table reports medians. From Junction's /metrics, read
before and after each run: fsyncs, fdatasync time and records of the stream
that holds the records (`bench`, or `__q.jnbench.durable` for the AMQP
queue), hence records per fsync and fsyncs/s.

Acknowledged records/s = acknowledged records / sending time: `delivered`
(2xx answers) for HTTP, `acked` (PUBACKs, Produce answers, Basic.Acks) for
the others. junction bench waits up to 5 s after sending for what is still
in flight; a run that reaches that limit is flagged.

Every process started here (Junction, RabbitMQ, junction bench) is stopped by
PID, also on errors and Ctrl-C. Loopback only. --cases runs a subset and
then does not write --out.
"""
import argparse
import importlib.machinery
import importlib.util
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

from durable_curve import post_json
from rest_bench import BIN, ROOT, stop_process, wait_http, write_section


def _load_compare():
    path = os.path.join(ROOT, "bench", "compare")
    loader = importlib.machinery.SourceFileLoader("jn_bench_compare", path)
    spec = importlib.util.spec_from_loader(loader.name, loader)
    mod = importlib.util.module_from_spec(spec)
    loader.exec_module(mod)
    return mod


compare = _load_compare()

PUBLISHERS = 64
SIZE = 100
DRAIN_S = 5.0  # JN_BENCH_DRAIN_NS: how long junction bench waits for in-flight acks

# name, door, unacknowledged records per publisher, label (door and client)
CASES = [
    ("rest-1", "http", 1, "REST `POST /v1/publish`, 64 keep-alive connections"),
    ("rest-pipe4", "http", 4, "REST, 64 connections, HTTP/1.1 pipelining"),
    ("mqtt-1", "mqtt", 1, "MQTT 3.1.1 QoS 1, 64 publishers"),
    ("mqtt-16", "mqtt", 16, "MQTT 3.1.1 QoS 1, 64 publishers"),
    ("kafka-1", "kafka", 1, "Kafka Produce acks=all, 1 record/batch, 64 producers"),
    ("kafka-16", "kafka", 16, "Kafka Produce acks=all, 1 record/batch, 64 producers"),
    ("amqp-1", "amqp", 1, "AMQP 0-9-1 persistent + confirms, durable queue, 64 publishers"),
    ("amqp-16", "amqp", 16, "AMQP 0-9-1 persistent + confirms, durable queue, 64 publishers"),
]
STREAM = "bench"
AMQP_QUEUE_STREAM = "__q.jnbench.durable"  # docs/queues.md: a queue's messages live in __q.<name>
METRICS = ("junction_stream_fsyncs_total", "junction_stream_fsync_seconds_total",
           "junction_records_published_total")


def bench_argv(door, window, url, seconds):
    if door == "http":
        a = ["--connections", str(PUBLISHERS), "--pipeline", str(window)]
    elif door == "mqtt":
        a = ["--publishers", str(PUBLISHERS), "--subscribers", "0", "--qos", "1", "--inflight", str(window),
             "--topic", f"{STREAM}/x"]
    elif door == "kafka":
        a = ["--topic", STREAM, "--producers", str(PUBLISHERS), "--acks", "all", "--batch", "1",
             "--inflight", str(window)]
    else:
        a = ["--publishers", str(PUBLISHERS), "--consumers", "0", "--persistent", "--confirms",
             "--inflight", str(window)]
    return ["bench", door, "--url", url] + a + ["--size", str(SIZE), "--duration", str(seconds), "--json", "--quiet"]


def run_bench(argv, seconds):
    """Runs junction bench; returns (summary dict or None, error text, wall seconds)."""
    t0 = time.monotonic()
    p = subprocess.Popen([BIN] + argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    try:
        out, err = p.communicate(timeout=seconds + DRAIN_S + 60)
    except subprocess.TimeoutExpired:
        return None, "timed out", time.monotonic() - t0
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    wall = time.monotonic() - t0
    if p.returncode != 0:
        return None, (err.strip().splitlines() or [f"exit {p.returncode}"])[-1], wall
    try:
        j = json.loads(out)
    except ValueError:
        return None, "unreadable output: " + out[:200], wall
    if j.get("interrupted"):
        return None, "interrupted", wall
    return j, None, wall


def summarize(j, wall, seconds):
    """Acknowledged records, their rate and the problems of one run."""
    door = j["door"]
    if door == "http":
        acked = j["delivered"]  # 2xx answers
    else:
        acked = j["acked"]  # PUBACKs, Produce answers, confirms
    unsettled = max(0, j["sent"] - acked - j["errors"])
    # junction bench gives up waiting for in-flight acks after DRAIN_S.
    drain_hit = wall >= seconds + DRAIN_S - 0.1
    rate = acked / j["send_s"] if j["send_s"] > 0 else 0.0
    return {"rate": rate, "acked": acked, "sent": j["sent"], "errors": j["errors"], "unsettled": unsettled,
            "drain_hit": drain_hit, "send_s": j["send_s"], "deliver_s": j["deliver_s"],
            "p50_us": j["latency_us"]["p50"] if j["latency_us"]["count"] else None}


def read_counters(base, stream):
    """The stream's counters from /metrics, None for a stream not listed."""
    text = urllib.request.urlopen(base + "/metrics", timeout=10).read().decode()
    out = {}
    for name in METRICS:
        m = re.search(rf'^{name}{{stream="{re.escape(stream)}"}} ([\d.e+-]+)$', text, re.M)
        if not m:
            return None
        out[name] = float(m.group(1))
    return out


class Junction:
    """One fresh server: its own data directory, HTTP plus one door listener."""

    def __init__(self, tmp, taken, door):
        self.data = tempfile.mkdtemp(dir=tmp, prefix="data-")
        self.http = compare.free_port(taken)
        self.door_port = self.http if door == "http" else compare.free_port(taken)
        listen = {d: (f"127.0.0.1:{self.door_port}" if d == door else "") for d in ("mqtt", "kafka", "amqp")}
        args = [BIN, "serve", "--data_dir", self.data, "--log_level", "warn",
                "--http.listen", f"127.0.0.1:{self.http}"]
        for d, v in listen.items():
            args += [f"--{d}.listen", v]  # empty: no listener on the default ports
        self.log = os.path.join(tmp, f"junction-{self.http}.log")
        with open(self.log, "ab") as f:
            # cwd=tmp: no ./junction.conf is picked up by accident.
            self.p = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT, cwd=tmp)
        self.base = f"http://127.0.0.1:{self.http}"

    def wait(self):
        wait_http(self.base + "/v1/health")
        if not compare.wait_port(self.door_port, self.p):
            raise RuntimeError("junction door listener did not open: " + compare.tail(self.log))

    def stop(self):
        stop_process(self.p)
        shutil.rmtree(self.data, ignore_errors=True)  # its dirty pages go too, unwritten
        os.sync()  # and nothing left in writeback slows the next case's fsyncs


def run_junction_case(tmp, taken, door, window, seconds):
    """Returns (run dict or None, error text)."""
    srv = Junction(tmp, taken, door)
    try:
        srv.wait()
        post_json(srv.base + "/v1/streams", {"name": STREAM, "partitions": 1, "config": {"fsync": "always"}})
        stream = AMQP_QUEUE_STREAM if door == "amqp" else STREAM
        before = read_counters(srv.base, stream)  # the queue's stream appears when the bench declares it
        url = (f"http://127.0.0.1:{srv.http}/v1/publish/{STREAM}/x" if door == "http"
               else f"{door}://127.0.0.1:{srv.door_port}")
        j, err, wall = run_bench(bench_argv(door, window, url, seconds), seconds)
        if j is None:
            return None, err
        after = read_counters(srv.base, stream)
        run = summarize(j, wall, seconds)
        if after is None:
            run["fsyncs"] = run["records"] = run["fsync_s"] = None
        else:
            before = before or {k: 0.0 for k in METRICS}
            run["fsyncs"] = after[METRICS[0]] - before[METRICS[0]]
            run["fsync_s"] = after[METRICS[1]] - before[METRICS[1]]
            run["records"] = after[METRICS[2]] - before[METRICS[2]]
        return run, None
    finally:
        srv.stop()


def fmt_run(who, name, run, err):
    if run is None:
        return f"{name} {who}: failed ({err})"
    s = (f"{name} {who}: {run['rate']:,.0f} acked/s ({run['acked']:,} acked of {run['sent']:,} sent), "
         f"errors {run['errors']}, unsettled {run['unsettled']}")
    if run["p50_us"] is not None:
        s += f", p50 {run['p50_us'] / 1e3:.2f} ms"
    if run.get("fsyncs") is not None:
        fs = run["fsyncs"]
        s += (f", {run['records']:,.0f} records appended, {fs / run['deliver_s']:,.0f} fsyncs/s, "
              f"{run['records'] / fs if fs else 0:,.1f} records/fsync, "
              f"fdatasync {run['fsync_s'] * 1e3 / fs if fs else 0:.2f} ms")
    elif who == "junction":
        s += ", no fsync counters for the stream"
    if run["drain_hit"]:
        s += ", DRAIN TIMED OUT (some acks may be missing)"
    return s


def med(vals):
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None


def rounds_text(runs):
    return " / ".join(f"{r['rate']:,.0f}" for r in runs)


def problems(runs, errs):
    """Errors, unsettled records and failed runs over the rounds, in words."""
    if not runs and not errs:
        return "-"
    e = sum(r["errors"] for r in runs)
    u = sum(r["unsettled"] for r in runs)
    parts = [str(e)]
    if u:
        parts.append(f"{u} unacked")
    if any(r["drain_hit"] for r in runs):
        parts.append("drain timed out")
    if errs:
        parts.append(f"{len(errs)} run(s) failed: {errs[0]}")
    return ", ".join(parts)


def render(cases, res, args, rabbit_err):
    load = os.getloadavg()[0]
    cmd = "bench/durable_doors.py" + "".join(f" {x}" for x in sys.argv[1:])
    lines = ["## Durable publishing by door, 64 publishers (issue 2)", "",
             f"Run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} by `{cmd}`: {args.rounds} alternating "
             f"round(s) of {args.seconds} s per case, medians; load average {load:.2f} at the end; "
             f"{os.cpu_count()} vCPUs shared by the servers and `junction bench`.", "",
             f"Every case: {PUBLISHERS} concurrent publishers, {SIZE}-byte records, `junction bench <door> --json` "
             "on loopback; Junction on a fresh server and data directory with the stream `bench` (1 partition, "
             "`fsync: always`); RabbitMQ 3.10.8 (Debian package, started once, classic durable queue, persistent "
             "messages, publisher confirms) in the same rounds. Acknowledged records/s = acknowledged records "
             "(HTTP 2xx answers, MQTT PUBACKs, Kafka acks=all responses, AMQP Basic.Acks) / sending time. "
             "fsyncs/s and records per fsync come from Junction's `/metrics` (stream `bench`; for AMQP the "
             f"queue's internal stream `{AMQP_QUEUE_STREAM}`).", "",
             "| door and client | unacknowledged records per publisher | Junction acked records/s "
             "(median, then each round) | RabbitMQ 3.10.8 acked msg/s | ratio | fsyncs/s | records per fsync "
             "| errors (Junction / RabbitMQ) |",
             "|---|---|---|---|---|---|---|---|"]
    notes = []
    for name, door, window, label in cases:
        jr, jerr = res[name]["junction"]
        cell = "-"
        jm = med([r["rate"] for r in jr])
        if jm is not None:
            cell = f"{jm:,.0f} ({rounds_text(jr)})"
        rcell, ratio, err_cell = "-", "-", problems(jr, jerr)
        if door == "amqp":
            rr, rerr = res[name]["rabbitmq"]
            rm = med([r["rate"] for r in rr])
            if rm is not None:
                rcell = f"{rm:,.0f} ({rounds_text(rr)})"
                if jm is not None and rm:
                    ratio = f"{jm / rm:.2f}"
            err_cell += " / " + (problems(rr, rerr) if not rabbit_err else "-")
        fs = med([r["fsyncs"] / r["deliver_s"] if r.get("fsyncs") is not None and r["deliver_s"] else None
                  for r in jr])
        rpf = med([r["records"] / r["fsyncs"] if r.get("fsyncs") else None for r in jr])
        client = {"http": f"`--connections 64 --pipeline {window}`",
                  "mqtt": f"`--qos 1 --inflight {window}`",
                  "kafka": f"`--acks all --batch 1 --inflight {window}`",
                  "amqp": f"`--persistent --confirms --inflight {window}`"}[door]
        lines.append(f"| {label} ({client}) | {window} | {cell} | {rcell} | {ratio} | "
                     f"{f'{fs:,.0f}' if fs is not None else '-'} | {f'{rpf:,.1f}' if rpf is not None else '-'} "
                     f"| {err_cell} |")
        if door == "amqp" and jr and all(r.get("fsyncs") is None for r in jr):
            notes.append(f"- {name}: `{AMQP_QUEUE_STREAM}` is not in `/metrics`: no fsync figures.")
    lines += ["", "Errors: non-2xx answers, Kafka error codes, Basic.Nacks, broken connections (the bench's "
              "`errors`); \"unacked\" = sent but neither acknowledged nor refused when the bench's 5 s drain "
              "ended (a run that hit that limit is marked)."]
    if rabbit_err:
        notes.append(f"- RabbitMQ did not run: {rabbit_err}")
    if notes:
        lines += [""] + notes
    lines.append("")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description="Durable publishing by door, Junction beside RabbitMQ")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--out", default=os.path.join(ROOT, "docs", "benchmarks.md"))
    ap.add_argument("--cases", help="comma-separated case names (default: all); a subset is not written to --out")
    args = ap.parse_args()
    names = [c[0] for c in CASES]
    wanted = args.cases.split(",") if args.cases else names
    unknown = [w for w in wanted if w not in names]
    if unknown:
        ap.error(f"unknown case(s) {', '.join(unknown)} (one of: {', '.join(names)})")
    if args.rounds < 1 or args.seconds < 1:
        ap.error("--rounds and --seconds must be positive")
    cases = [c for c in CASES if c[0] in wanted]

    def on_term(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, on_term)

    tmp = tempfile.mkdtemp(prefix="junction-doors-")
    taken = set()
    procs = compare.Procs()  # RabbitMQ (and its epmd), stopped by PID at the end
    res = {c[0]: {"junction": ([], []), "rabbitmq": ([], [])} for c in cases}
    rabbit_url, rabbit_err = None, None
    try:
        if any(c[1] == "amqp" for c in cases):
            servers = compare.Servers(tmp, procs, taken)
            servers.start("rabbitmq")
            rabbit_url = servers.urls.get(("rabbitmq", "amqp"))
            if not rabbit_url:
                rabbit_err = servers.failed.get("rabbitmq", "did not start")
                print(f"RabbitMQ did not start: {rabbit_err}; its column will read -", flush=True)
        for r in range(args.rounds):
            for name, door, window, _ in cases:
                order = ["junction"]
                if door == "amqp" and rabbit_url:
                    order = ["junction", "rabbitmq"] if r % 2 == 0 else ["rabbitmq", "junction"]
                for who in order:
                    if who == "junction":
                        try:
                            run, err = run_junction_case(tmp, taken, door, window, args.seconds)
                        except Exception as e:  # the other cases still run
                            run, err = None, f"{type(e).__name__}: {e}"
                    else:
                        j, err, wall = run_bench(bench_argv(door, window, rabbit_url, args.seconds), args.seconds)
                        run = summarize(j, wall, args.seconds) if j else None
                        os.sync()  # RabbitMQ's writeback does not spill into the next case
                    if run:
                        res[name][who][0].append(run)
                    else:
                        res[name][who][1].append(err)
                    print(f"round {r + 1} " + fmt_run(who, name, run, err), flush=True)
        text = render(cases, res, args, rabbit_err)
        if len(cases) == len(CASES):
            write_section(args.out, "durable-doors", text)
            print(f"wrote {args.out}", flush=True)
        print(text)
        return 0
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        procs.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
