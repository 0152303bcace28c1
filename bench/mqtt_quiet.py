#!/usr/bin/python3
"""The two MQTT figures of issue 5 that are not throughput, Junction beside
Mosquitto in one run: latency at a fixed 10,000 msg/s (QoS 0, 64 B, one
publisher, one subscriber, `junction bench mqtt --rate 10000`) and resident
memory per idle client with 10,000 clients, bare and each subscribed to
its own topic (bench/mqtt_idle.py).

Every server is started fresh on free loopback ports for each measurement
and stopped by PID; latency rounds alternate between the servers. Prints a
markdown section; with --write, puts it into docs/benchmarks.md between
<!-- mqtt-quiet:begin --> and <!-- mqtt-quiet:end -->.

    bench/mqtt_quiet.py [--rounds 3] [--duration 8] [--clients 10000] [--write]
"""
import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from rest_bench import free_port  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.environ.get("JUNCTION_BIN", os.path.join(ROOT, "build", "junction"))
MOSQUITTO = "/usr/sbin/mosquitto"
MARK = "mqtt-quiet"


def wait_port(port, timeout=20):
    end = time.time() + timeout
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


class Server:
    """One broker process on a fresh port, stopped by PID."""

    def __init__(self, kind, tmp):
        self.port = free_port()
        self.dir = tempfile.mkdtemp(dir=tmp)
        if kind == "junction":
            args = [BIN, "serve", "--data_dir", os.path.join(self.dir, "data"), "--log_level", "warn",
                    "--http.listen", f"127.0.0.1:{free_port()}", "--mqtt.listen", f"127.0.0.1:{self.port}",
                    "--amqp.listen", "", "--kafka.listen", ""]
        else:
            conf = os.path.join(self.dir, "mosquitto.conf")
            with open(conf, "w") as f:
                f.write(f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
                        "set_tcp_nodelay true\nmax_queued_messages 0\n")
            args = [MOSQUITTO, "-c", conf]
        self.log = open(os.path.join(self.dir, "log"), "w")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT)
        wait_port(self.port)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def latency(port, duration):
    out = subprocess.run([BIN, "bench", "mqtt", "--port", str(port), "--rate", "10000", "--duration",
                          str(duration), "--qos", "0", "--size", "64", "--json", "--quiet"],
                         capture_output=True, text=True, timeout=duration + 60)
    return json.loads(out.stdout)


def idle(pid, port, clients, subscribe):
    args = [sys.executable, os.path.join(ROOT, "bench", "mqtt_idle.py"), str(pid), "127.0.0.1", str(port),
            str(clients)]
    if subscribe:
        args.append("--subscribe")
    out = subprocess.run(args, capture_output=True, text=True, timeout=300)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=8)
    ap.add_argument("--clients", type=int, default=10000)
    ap.add_argument("--write", action="store_true")
    a = ap.parse_args()
    kinds = ["junction", "mosquitto"]
    tmp = tempfile.mkdtemp(prefix="junction-mqtt-quiet-")
    lat = {k: [] for k in kinds}
    mem = {(k, s): [] for k in kinds for s in (False, True)}
    try:
        for _ in range(a.rounds):
            for k in kinds:
                srv = Server(k, tmp)
                try:
                    lat[k].append(latency(srv.port, a.duration))
                finally:
                    srv.stop()
        for subscribe in (False, True):
            for _ in range(2):
                for k in kinds:
                    srv = Server(k, tmp)
                    try:
                        mem[(k, subscribe)].append(idle(srv.proc.pid, srv.port, a.clients, subscribe))
                    finally:
                        srv.stop()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    load = os.getloadavg()[0]
    names = {"junction": "Junction", "mosquitto": "Mosquitto 2.0.11"}
    lines = [f"## MQTT latency and idle memory beside Mosquitto (issue 5), {when}", "",
             f"Produced by `bench/mqtt_quiet.py` (load average {load:.2f} at the end); fresh servers for every "
             "measurement, rounds alternate between them.", "",
             f"### Latency at 10,000 msg/s, QoS 0, 64 B, 1 publisher → 1 subscriber, {a.duration} s per round "
             "(µs, rounds side by side)", "",
             "| server | p50 | p99 | p99.9 | delivered / lost | median p50 / p99 |", "|---|---|---|---|---|---|"]
    for k in kinds:
        rs = lat[k]
        p50 = [r["latency_us"]["p50"] for r in rs]
        p99 = [r["latency_us"]["p99"] for r in rs]
        p999 = [r["latency_us"]["p99_9"] for r in rs]
        dl = " ; ".join(f"{r['delivered']:,} / {r['lost']:,}" for r in rs)
        lines.append(f"| {names[k]} | {' / '.join(f'{v:,.1f}' for v in p50)} | {' / '.join(f'{v:,.0f}' for v in p99)}"
                     f" | {' / '.join(f'{v:,.0f}' for v in p999)} | {dl} | **{statistics.median(p50):,.1f} / "
                     f"{statistics.median(p99):,.0f}** |")
    lines += ["", f"### Resident memory per idle client, {a.clients:,} clients (bench/mqtt_idle.py, MQTT 3.1.1, "
              "keep alive 0; runs side by side)", "",
              "| server | bare connection (B) | subscribed to its own topic (B) |", "|---|---|---|"]
    for k in kinds:
        bare = " / ".join(f"{r['per_conn_bytes']:,}" for r in mem[(k, False)])
        sub = " / ".join(f"{r['per_conn_bytes']:,}" for r in mem[(k, True)])
        lines.append(f"| {names[k]} | {bare} | {sub} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if a.write:
        path = os.path.join(ROOT, "docs", "benchmarks.md")
        with open(path) as f:
            doc = f.read()
        begin, end = f"<!-- {MARK}:begin -->", f"<!-- {MARK}:end -->"
        block = f"{begin}\n{text}{end}"
        if begin in doc:
            doc = doc[:doc.index(begin)] + block + doc[doc.index(end) + len(end):]
        else:
            anchor = "## MQTT (issue 5)"
            doc = doc.replace(anchor, block + "\n\n" + anchor, 1) if anchor in doc else doc + "\n" + block + "\n"
        with open(path, "w") as f:
            f.write(doc)


if __name__ == "__main__":
    main()
