#!/usr/bin/python3
"""Webhooks door benchmark (issue 8), everything in one run on loopback.

    bench/webhook_bench.py [--records 200000] [--concurrency 128] [--seconds 5]

1. Deliveries/s: --records 100-byte records are appended first, then an
   endpoint starting at "earliest" delivers them to nginx (1 worker,
   `return 204`, keep-alive), timed from the endpoint's creation until its
   status says every record was delivered (each delivery is signed and
   logged in the attempts table, as in production).
2. wrk against the same nginx in the same run (-t2 -c64, 100-byte POSTs):
   the ceiling for one HTTP client; the ratio deliveries/wrk is reported.
3. Latency from append to delivery: a live endpoint posts to a small
   asyncio receiver while records carrying their publish time are published
   at a steady rate; p50/p99 of (received - published).

Every process started here is stopped by PID before exit.
"""
import argparse
import asyncio
import json
import os
import shutil
import socket
import statistics
import sys
import tempfile
import threading
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
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
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()
        self.ready.wait(10)

    async def handle(self, r, w):
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
        except (asyncio.IncompleteReadError, ConnectionError):
            w.close()

    def run(self):
        asyncio.set_event_loop(self.loop)
        srv = self.loop.run_until_complete(asyncio.start_server(self.handle, "127.0.0.1", self.port))
        self.ready.set()
        self.loop.run_forever()
        srv.close()

    def stop(self):
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.t.join(5)


def latency_phase(base, seconds, rate):
    rx = LatencyReceiver()
    try:
        call(base, "POST", "/v1/webhooks", {"url": f"http://127.0.0.1:{rx.port}/", "filter": "lat/#",
                                            "max_concurrency": 64})
        interval = 1.0 / rate
        end = time.monotonic() + seconds
        next_t = time.monotonic()
        sent = 0
        while time.monotonic() < end:
            body = f"{time.time_ns()}|{'x' * 80}".encode()
            req = urllib.request.Request(base + "/v1/publish/lat/x", data=body, method="POST")
            urllib.request.urlopen(req, timeout=10).read()
            sent += 1
            next_t += interval
            d = next_t - time.monotonic()
            if d > 0:
                time.sleep(d)
        deadline = time.monotonic() + 30
        while len(rx.lat) < sent and time.monotonic() < deadline:
            time.sleep(0.05)
        lat = sorted(rx.lat)
        return sent, len(lat), lat[len(lat) // 2], lat[min(len(lat) - 1, int(len(lat) * 0.99))]
    finally:
        rx.stop()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=200000)
    ap.add_argument("--concurrency", type=int, default=128)
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--rate", type=int, default=1000, help="records/s in the latency phase")
    args = ap.parse_args()
    if not os.path.exists(BIN):
        sys.exit("build/junction is missing: run make")
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
        t0 = time.monotonic()
        ep = call(base, "POST", "/v1/webhooks", {"url": f"http://127.0.0.1:{nport}/hook", "filter": "wb/#",
                                                 "start": "earliest", "max_concurrency": args.concurrency})["id"]
        t1 = wait_delivered(base, ep, n)
        rate = n / (t1 - t0)
        st = call(base, "GET", f"/v1/webhooks/{ep}")["status"]
        print(f"deliveries: {n} in {t1 - t0:.2f} s = {rate:,.0f}/s (failed attempts {st['failed_attempts']})",
              flush=True)
        call(base, "PATCH", f"/v1/webhooks/{ep}", {"disabled": True})
        w, non2xx, errs = wrk(f"http://127.0.0.1:{nport}/hook", args.seconds)
        print(f"wrk against the same nginx: {w:,.0f} req/s ({errs or 'no socket errors'})", flush=True)
        print(f"ratio deliveries/wrk: {rate / w:.2f}", flush=True)
        sent, got, p50, p99 = latency_phase(base, args.seconds, args.rate)
        print(f"append -> delivery at {args.rate}/s: {got}/{sent} received, p50 {p50:.2f} ms, p99 {p99:.2f} ms",
              flush=True)
    finally:
        for p in reversed(procs):
            p.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
