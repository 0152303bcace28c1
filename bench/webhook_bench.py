#!/usr/bin/python3
"""Webhooks door benchmark (issue 8), everything in one run on loopback.

    bench/webhook_bench.py [--records 200000] [--concurrency 128] [--seconds 5]

1. Deliveries/s: --records 100-byte records are appended first, then an
   endpoint starting at "earliest" delivers them to nginx (1 worker,
   `return 204`, keep-alive), timed from the endpoint's creation until its
   status says every record was delivered (each delivery is signed and
   logged in the attempts table, as in production). Junction's and
   nginx's CPU time per delivery are printed too: on a shared machine
   they move less than the rate does.
2. wrk against the same nginx in the same run (-t2 -c64, 100-byte POSTs):
   the ceiling for one HTTP client; the ratio deliveries/wrk is reported.
3. Latency from append to delivery: a live endpoint posts to a small
   asyncio receiver while records carrying their publish time are published
   at a steady rate over one keep-alive connection; p50/p99/max of
   (received - published).

--bin runs another build (e.g. a copy of the binary before a change).

Every process started here is stopped by PID before exit.
"""
import argparse
import asyncio
import http.client
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rest_bench  # noqa: E402
from rest_bench import BIN, free_port, start_nginx, start_junction, wrk  # noqa: E402


def call(base, method, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(base + path, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        raw = r.read()
        return json.loads(raw) if raw else None


def preload(base, n, subject="wb/x"):
    value = "x" * 100
    batch = [{"subject": subject, "value": value} for _ in range(1000)]
    for _ in range(n // 1000):
        call(base, "POST", "/v1/publish", {"records": batch})


def wait_delivered(base, ep, n, timeout=600):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st = call(base, "GET", f"/v1/webhooks/{ep}")["status"]
        if st["delivered"] >= n:
            return time.monotonic()
        time.sleep(0.02)
    raise RuntimeError(f"only {st['delivered']} of {n} delivered")


class LatencyReceiver:
    """A keep-alive HTTP/1.1 receiver on asyncio in its own thread; bodies
    are "<publish time ns>|..."."""

    def __init__(self):
        self.lat = []
        self.port = free_port()
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.tasks = set()
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()
        self.ready.wait(10)

    async def handle(self, r, w):
        self.tasks.add(asyncio.current_task())
        try:
            while True:
                head = await r.readuntil(b"\r\n\r\n")
                n = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        n = int(line.split(b":")[1])
                body = await r.readexactly(n)
                now = time.time_ns()
                try:
                    self.lat.append((now - int(body.split(b"|")[0])) / 1e6)
                except ValueError:
                    pass
                w.write(b"HTTP/1.1 204 No Content\r\n\r\n")
        except (asyncio.IncompleteReadError, asyncio.CancelledError, ConnectionError):
            pass
        finally:
            w.close()
            self.tasks.discard(asyncio.current_task())

    async def serve(self):
        self.stopping = asyncio.Event()
        srv = await asyncio.start_server(self.handle, "127.0.0.1", self.port)
        self.ready.set()
        await self.stopping.wait()
        srv.close()
        for t in list(self.tasks):
            t.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    def run(self):
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self.serve())
        self.loop.close()

    def stop(self):
        self.loop.call_soon_threadsafe(self.stopping.set)
        self.t.join(5)


def latency_phase(base, seconds, rate):
    """Publishes |rate| records/s for |seconds| over one keep-alive
    connection (each request is answered before the next is sent, so the
    rate holds as long as a publish takes under 1/rate s) and returns
    (sent, received, p50, p99, max) of append -> delivery in ms."""
    rx = LatencyReceiver()
    port = int(base.rsplit(":", 1)[1])
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        call(base, "POST", "/v1/webhooks", {"url": f"http://127.0.0.1:{rx.port}/", "filter": "lat/#",
                                            "max_concurrency": 64})
        interval = 1.0 / rate
        end = time.monotonic() + seconds
        next_t = time.monotonic()
        sent = 0
        while time.monotonic() < end:
            body = f"{time.time_ns()}|{'x' * 80}".encode()
            conn.request("POST", "/v1/publish/lat/x", body=body)
            conn.getresponse().read()
            sent += 1
            next_t += interval
            d = next_t - time.monotonic()
            if d > 0:
                time.sleep(d)
        deadline = time.monotonic() + 30
        while len(rx.lat) < sent and time.monotonic() < deadline:
            time.sleep(0.05)
        lat = sorted(rx.lat)
        pct = lambda q: lat[min(len(lat) - 1, int(len(lat) * q))]  # noqa: E731
        return sent, len(lat), pct(0.5), pct(0.99), lat[-1]
    finally:
        conn.close()
        rx.stop()


def cpu_seconds(pid):
    """User + system CPU time of |pid| so far (threads included)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def nginx_worker(master_pid):
    out = subprocess.run(["pgrep", "-P", str(master_pid)], capture_output=True, text=True).stdout.split()
    return int(out[0]) if out else master_pid


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=200000)
    ap.add_argument("--concurrency", type=int, default=128)
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--rate", type=int, default=1000, help="records/s in the latency phase")
    ap.add_argument("--bin", default=BIN, help="the junction binary (default build/junction)")
    args = ap.parse_args()
    if not os.path.exists(args.bin):
        sys.exit(f"{args.bin} is missing: run make")
    rest_bench.BIN = args.bin
    tmp = tempfile.mkdtemp(prefix="junction-whbench-")
    procs = []
    try:
        nport, jport = free_port(), free_port()
        procs.append(start_nginx(tmp, nport))
        procs.append(start_junction(tmp, jport, ["--webhooks.allow_hosts", "127.0.0.1/32",
                                                 "--mqtt.listen", "", "--amqp.listen", "", "--kafka.listen", "",
                                                 "--webhooks.max_concurrency_total", "4096"]))
        base = f"http://127.0.0.1:{jport}"
        n = args.records // 1000 * 1000
        preload(base, n)
        jpid, npid = procs[1].p.pid, nginx_worker(procs[0].p.pid)
        load = os.getloadavg()[0]
        c0 = (cpu_seconds(jpid), cpu_seconds(npid))
        t0 = time.monotonic()
        ep = call(base, "POST", "/v1/webhooks", {"url": f"http://127.0.0.1:{nport}/hook", "filter": "wb/#",
                                                 "start": "earliest", "max_concurrency": args.concurrency})["id"]
        t1 = wait_delivered(base, ep, n)
        c1 = (cpu_seconds(jpid), cpu_seconds(npid))
        rate = n / (t1 - t0)
        st = call(base, "GET", f"/v1/webhooks/{ep}")["status"]
        print(f"deliveries: {n} in {t1 - t0:.2f} s = {rate:,.0f}/s (failed attempts {st['failed_attempts']}; "
              f"load average before {load:.1f})", flush=True)
        print(f"CPU per delivery: junction {(c1[0] - c0[0]) / n * 1e6:.1f} us, nginx {(c1[1] - c0[1]) / n * 1e6:.1f} us",
              flush=True)
        call(base, "PATCH", f"/v1/webhooks/{ep}", {"disabled": True})
        w, non2xx, errs = wrk(f"http://127.0.0.1:{nport}/hook", args.seconds)
        print(f"wrk against the same nginx: {w:,.0f} req/s ({errs or 'no socket errors'})", flush=True)
        print(f"ratio deliveries/wrk: {rate / w:.2f}", flush=True)
        sent, got, p50, p99, mx = latency_phase(base, args.seconds, args.rate)
        print(f"append -> delivery at {args.rate}/s: {got}/{sent} received, p50 {p50:.2f} ms, p99 {p99:.2f} ms, "
              f"max {mx:.2f} ms", flush=True)
    finally:
        for p in reversed(procs):
            p.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
