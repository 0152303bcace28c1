#!/usr/bin/env bash
# bench/amqp_backlog.sh - issue 7's AMQP figures that `bench/compare` does
# not produce:
#   1. p99 latency at a fixed moderate rate (default 5,000 msg/s of 1 KiB,
#      one publisher, one no-ack consumer, one queue) for Junction and
#      RabbitMQ side by side, measured by one small client of our own (the
#      same code and pacing against both; `junction bench amqp` has no
#      fixed-rate mode);
#   2. a backlog of 10 million transient 100-byte messages in one queue with
#      no consumer (`junction bench amqp --consumers 0 --count N`), Junction's
#      RSS before and after, then one no-ack consumer draining it at full
#      speed, and the drain rate.
# Servers are started with bench/compare's own code (imported as a module:
# same flags, ports, temporary directories) and every process is stopped by
# PID at the end, on errors and on Ctrl-C too. Every phase is bounded in
# count and time.
#
# usage: bench/amqp_backlog.sh [--count N] [--rate R] [--seconds S]
#                              [--no-rabbitmq] [--write]
#   --count N      backlog messages (default 10000000)
#   --rate R       latency run: messages/s (default 5000)
#   --seconds S    latency run: seconds per run (default 10)
#   --rounds N     latency runs per server, interleaved; median p99 (default 3)
#   --no-rabbitmq  Junction only
#   --write        put the results in docs/benchmarks.md between
#                  <!-- amqp:begin --> and <!-- amqp:end -->
set -euo pipefail
cd "$(dirname "$0")/.."
exec /usr/bin/python3 - "$@" <<'PY'
import argparse
import datetime
import importlib.machinery
import os
import shutil
import socket
import struct
import sys
import tempfile
import threading
import time
import types

ROOT = os.getcwd()
DOC = os.path.join(ROOT, "docs", "benchmarks.md")
BEGIN, END = "<!-- amqp:begin -->", "<!-- amqp:end -->"

loader = importlib.machinery.SourceFileLoader("compare", os.path.join(ROOT, "bench", "compare"))
compare = types.ModuleType(loader.name)
compare.__file__ = loader.path
loader.exec_module(compare)
log = compare.log


# ---- a minimal AMQP 0-9-1 client: just what the two measurements need ----

def shortstr(b):
    return bytes([len(b)]) + b


def longstr(b):
    return struct.pack(">I", len(b)) + b


class Amqp:
    def __init__(self, port, timeout=30):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        self.s.sendall(b"AMQP\x00\x00\x09\x01")
        self.expect(10, 10)
        self.method(0, 10, 11, struct.pack(">I", 0) + shortstr(b"PLAIN") + longstr(b"\0guest\0guest") +
                    shortstr(b"en_US"))
        args = self.expect(10, 30)
        channel_max, frame_max, _ = struct.unpack(">HIH", args[:8])
        self.method(0, 10, 31, struct.pack(">HIH", channel_max, min(frame_max or 131072, 131072), 0))
        self.method(0, 10, 40, shortstr(b"/") + shortstr(b"") + b"\0")
        self.expect(10, 41)
        self.method(1, 20, 10, shortstr(b""))
        self.expect(20, 11)

    def frame(self, ftype, ch, payload):
        return struct.pack(">BHI", ftype, ch, len(payload)) + payload + b"\xce"

    def method(self, ch, cls, mth, args):
        self.s.sendall(self.frame(1, ch, struct.pack(">HH", cls, mth) + args))

    def read_frame(self):
        while True:
            if len(self.buf) >= 7:
                n = struct.unpack_from(">I", self.buf, 3)[0]
                if len(self.buf) >= n + 8:
                    t = self.buf[0]
                    p = bytes(self.buf[7:7 + n])
                    del self.buf[:n + 8]
                    return t, p
            d = self.s.recv(1 << 20)
            if not d:
                raise ConnectionError("closed by the server")
            self.buf += d

    def expect(self, cls, mth):
        while True:
            t, p = self.read_frame()
            if t != 1:
                continue
            c, m = struct.unpack(">HH", p[:4])
            if (c, m) == (cls, mth):
                return p[4:]
            if (c, m) in ((10, 50), (20, 40)):
                raise RuntimeError("server closed: %r" % p[6:6 + p[6] + 1])

    def declare(self, queue, passive=False):
        self.method(1, 50, 10, b"\0\0" + shortstr(queue) + bytes([1 if passive else 0]) + struct.pack(">I", 0))
        a = self.expect(50, 11)
        return struct.unpack_from(">I", a, 1 + a[0])[0]  # message count

    def purge(self, queue):
        self.method(1, 50, 30, b"\0\0" + shortstr(queue) + b"\0")
        self.expect(50, 31)

    def consume(self, queue):
        self.method(1, 60, 20, b"\0\0" + shortstr(queue) + shortstr(b"") + b"\x02" + struct.pack(">I", 0))
        self.expect(60, 21)

    def publish_bytes(self, queue, body):
        m = self.frame(1, 1, struct.pack(">HH", 60, 40) + b"\0\0" + shortstr(b"") + shortstr(queue) + b"\0")
        h = self.frame(2, 1, struct.pack(">HHQH", 60, 0, len(body), 0))
        return m + h + self.frame(3, 1, body)

    def close(self):
        try:
            self.s.close()
        except OSError:
            pass


# ---- 1. latency at a fixed rate ----

def latency(port, rate, seconds, size, warmup=1.0):
    """One publisher paced at |rate| (sends what is due every millisecond),
    one no-ack consumer; latency = receive time - send time stamped in the
    body. Returns (p50, p99, p99.9, max) in µs and the counts."""
    q = b"jnlat"
    pub, sub = Amqp(port), Amqp(port)
    pub.declare(q)
    pub.purge(q)
    sub.consume(q)
    lat, stop = [], threading.Event()
    got = [0]

    def consumer():
        want_body = False
        sub.s.settimeout(2)
        while not stop.is_set():
            try:
                t, p = sub.read_frame()
            except (socket.timeout, OSError, ConnectionError):
                continue
            if t == 1 and p[:4] == b"\x00\x3c\x00\x3c":
                want_body = True
            elif t == 3 and want_body:
                want_body = False
                now = time.perf_counter()
                sent = struct.unpack_from(">d", p)[0]
                got[0] += 1
                if sent >= t0 + warmup:
                    lat.append(now - sent)
    pad = b"x" * (size - 8)
    t0 = time.perf_counter()
    th = threading.Thread(target=consumer, daemon=True)
    th.start()
    sent = 0
    end = t0 + seconds
    while True:
        now = time.perf_counter()
        if now >= end:
            break
        due = int((now - t0) * rate)
        out = bytearray()
        while sent < due:
            out += pub.publish_bytes(q, struct.pack(">d", time.perf_counter()) + pad)
            sent += 1
        if out:
            pub.s.sendall(out)
        time.sleep(0.001)
    deadline = time.monotonic() + 10
    while got[0] < sent and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    th.join(5)
    pub.close()
    sub.close()
    lat.sort()

    def pct(p):
        return lat[min(len(lat) - 1, int(p * len(lat)))] * 1e6 if lat else float("nan")
    return {"p50": pct(0.5), "p99": pct(0.99), "p999": pct(0.999), "max": lat[-1] * 1e6 if lat else float("nan"),
            "sent": sent, "received": got[0]}


# ---- 2. the backlog ----

def rss_kib(pid):
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                out[line.split(":")[0]] = int(line.split()[1])
    return out


def du_mib(path):
    total = 0
    for d, _, files in os.walk(path):
        for n in files:
            try:
                total += os.lstat(os.path.join(d, n)).st_blocks * 512
            except OSError:
                pass
    return total / 1048576


def drain(port, queue, n, timeout):
    """A no-ack consumer counts |n| deliveries; returns seconds taken."""
    c = Amqp(port)
    c.consume(queue)
    count, t0 = 0, time.perf_counter()
    deadline = time.monotonic() + timeout
    buf, s = c.buf, c.s  # deliveries may have come with Consume-Ok
    s.settimeout(5)
    idle = 0
    mv_deliver = b"\x01\x00\x01"  # a method frame on channel 1...
    first = True
    while count < n:
        if time.monotonic() > deadline:
            break
        if first:
            first = False  # parse what Consume-Ok's read brought first
        else:
            try:
                d = s.recv(4 << 20)
            except socket.timeout:
                idle += 1
                if idle >= 6:  # 30 s without a delivery: the queue is empty
                    break
                continue
            if not d:
                break
            idle = 0
            buf += d
        pos, blen = 0, len(buf)
        while blen - pos >= 7:
            size = int.from_bytes(buf[pos + 3:pos + 7], "big")
            if blen - pos < size + 8:
                break
            # ...whose class and method are 60, 60: Basic.Deliver
            if buf[pos:pos + 3] == mv_deliver and buf[pos + 7:pos + 11] == b"\x00\x3c\x00\x3c":
                count += 1
            pos += size + 8
        del buf[:pos]
    el = time.perf_counter() - t0
    c.close()
    return count, el


def pub_sent(out):
    import json
    return json.loads(out)["sent"]


def main():
    ap = argparse.ArgumentParser(description="AMQP latency at a fixed rate and the 10M backlog (issue 7)")
    ap.add_argument("--count", type=int, default=10_000_000)
    ap.add_argument("--rate", type=int, default=5000)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--size", type=int, default=1024, help="latency run payload bytes (>= 16)")
    ap.add_argument("--rounds", type=int, default=3, help="latency runs per server, interleaved (median p99)")
    ap.add_argument("--no-rabbitmq", action="store_true")
    ap.add_argument("--write", action="store_true")
    a = ap.parse_args()
    if not 1 <= a.rounds <= 9 or not 1 <= a.count <= 50_000_000 or not 1 <= a.rate <= 100_000 or not 0 < a.seconds <= 300 or a.size < 16:
        print("amqp_backlog: --count 1..5e7, --rate 1..1e5, --seconds 0..300, --size >= 16", file=sys.stderr)
        return 2
    if not os.access(compare.BIN, os.X_OK):
        print(f"amqp_backlog: {compare.BIN} missing: run make first", file=sys.stderr)
        return 1
    procs, taken = compare.Procs(), set()
    tmp = tempfile.mkdtemp(prefix="jn-amqp-backlog-")
    res = {"lat": {}}
    try:
        servers = compare.Servers(tmp, procs, taken)
        servers.start("junction")
        if not a.no_rabbitmq:
            servers.start("rabbitmq")
        jpid = next(p.pid for name, p, _ in procs.items if name == "junction")
        jport = int(servers.urls[("junction", "amqp")].rsplit(":", 1)[1])
        # Interleaved rounds; the round with the median p99 is reported.
        runs = {}
        for rnd in range(a.rounds):
            order = ("junction", "rabbitmq") if rnd % 2 == 0 else ("rabbitmq", "junction")
            for name in order:
                url = servers.urls.get((name, "amqp"))
                if not url:
                    continue
                if not compare.wait_port(int(url.rsplit(":", 1)[1]), None, 30):
                    raise RuntimeError(f"{name}: no AMQP listener at {url}")
                log(f"amqp_backlog: latency {name} round {rnd + 1}: {a.rate} msg/s of {a.size} B for {a.seconds} s")
                x = latency(int(url.rsplit(":", 1)[1]), a.rate, a.seconds, a.size)
                runs.setdefault(name, []).append(x)
                log(f"amqp_backlog: {name}: {x}")
        for name, xs in runs.items():
            res["lat"][name] = sorted(xs, key=lambda x: x["p99"])[len(xs) // 2]
        res["rabbitmq_err"] = servers.failed.get("rabbitmq")

        res["rss_before"] = rss_kib(jpid)
        log(f"amqp_backlog: publishing {a.count:,} messages of 100 B, no consumer")
        cmd = [compare.BIN, "bench", "amqp", "--url", f"amqp://127.0.0.1:{jport}", "--consumers", "0",
               "--count", str(a.count), "--size", "100", "--queue", "backlog", "--json", "--quiet",
               "--duration", "3600"]
        import json
        import subprocess
        t = time.perf_counter()
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=a.count / 1000 + 600)
        res["publish_s"] = time.perf_counter() - t
        if p.returncode != 0:
            raise RuntimeError("junction bench: " + p.stderr[-500:])
        res["publish"] = json.loads(p.stdout)
        # The bench is done when its bytes are written: wait (bounded) until
        # the server has queued them all.
        c = Amqp(jport)
        deadline = time.monotonic() + 120
        while True:
            res["queued"] = c.declare(b"backlog", passive=True)
            if res["queued"] >= pub_sent(p.stdout) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        c.close()
        time.sleep(2)  # the maintenance pass and the page cache settle
        res["rss_after"] = rss_kib(jpid)
        res["disk_mib"] = du_mib(os.path.join(tmp, "junction", "data"))
        log(f"amqp_backlog: queued {res['queued']:,}, RSS {res['rss_after']}, disk {res['disk_mib']:.0f} MiB")
        n, el = drain(jport, b"backlog", res["queued"], timeout=a.count / 2000 + 600)
        res["drained"], res["drain_s"] = n, el
        c = Amqp(jport)
        res["left"] = c.declare(b"backlog", passive=True)
        c.close()
        res["rss_end"] = rss_kib(jpid)
        log(f"amqp_backlog: drained {n:,} in {el:.1f} s ({n / el:,.0f} msg/s), left {res['left']}")
    except KeyboardInterrupt:
        log("amqp_backlog: interrupted")
        return 130
    finally:
        procs.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)
    section = render(res, a)
    print(section)
    if a.write:
        write_doc(section)
        log(f"amqp_backlog: wrote {DOC}")
    return 0


def render(r, a):
    when = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    load = os.getloadavg()[0]
    lines = ["## AMQP (issue 7)", "",
             f"{when}, {os.cpu_count()} CPUs, load average {load:.1f} at the end; produced by "
             f"`bench/amqp_backlog.sh{''.join(' ' + x for x in sys.argv[1:])}` (servers started as "
             "bench/compare starts them, client on the same machine).", "",
             f"### Latency at a fixed rate ({a.rate:,} msg/s, {a.size} B, 1 publisher, 1 no-ack consumer, "
             f"{a.seconds:g} s, first second discarded; the median-p99 run of {a.rounds}, servers interleaved)", "",
             "| server | p50 µs | p99 µs | p99.9 µs | max µs | received / sent |", "|---|---|---|---|---|---|"]
    for name in ("junction", "rabbitmq"):
        x = r["lat"].get(name)
        if x:
            lines.append(f"| {compare.LABEL[name]} | {x['p50']:,.0f} | {x['p99']:,.0f} | {x['p999']:,.0f} | "
                         f"{x['max']:,.0f} | {x['received']:,} / {x['sent']:,} |")
        elif name == "rabbitmq":
            lines.append(f"| RabbitMQ | n/a: {r.get('rabbitmq_err') or 'not run'} | | | | |")
    j, rb = r["lat"].get("junction"), r["lat"].get("rabbitmq")
    if j and rb:
        lines += ["", f"p99 Junction / RabbitMQ: {j['p99'] / rb['p99']:.2f} (below 1: Junction's tail is lower)."]
    pub = r["publish"]
    kib = lambda k: f"{k / 1024:,.1f} MiB"
    lines += ["", f"### Backlog of {a.count:,} transient 100-byte messages (Junction)", "",
              "| step | figure |", "|---|---|",
              f"| publish, no consumer (`junction bench amqp --consumers 0 --count {a.count}`) | "
              f"{pub['sent']:,} sent at {pub['sent_msgs_per_s']:,.0f} msg/s |",
              f"| queued (Queue.Declare passive) | {r['queued']:,} |",
              f"| Junction RSS before / after the backlog | {kib(r['rss_before']['VmRSS'])} / "
              f"{kib(r['rss_after']['VmRSS'])} (peak {kib(r['rss_after']['VmHWM'])}) |",
              f"| data directory on disk with the backlog | {r['disk_mib']:,.0f} MiB |",
              f"| drain, one no-ack consumer at full speed | {r['drained']:,} in {r['drain_s']:.1f} s = "
              f"**{r['drained'] / r['drain_s']:,.0f} msg/s** |",
              f"| left in the queue / RSS after the drain | {r['left']:,} / {kib(r['rss_end']['VmRSS'])} |",
              "", "Messages live in the queue's stream on disk; the server keeps per queue only the head, "
              "read position, unacked set and one read cache (docs/queues.md), so RSS does not grow "
              "with the backlog. The drain client is the script's own (Python, counting Basic.Deliver "
              "frames), so the drain rate is a lower bound for the server."]
    return "\n".join(lines) + "\n"


def write_doc(section):
    with open(DOC) as f:
        doc = f.read()
    block = f"{BEGIN}\n{section}{END}"
    if BEGIN in doc and END in doc and doc.index(BEGIN) < doc.index(END):
        i, k = doc.index(BEGIN), doc.index(END) + len(END)
        doc = doc[:i] + block + doc[k:]
    else:
        doc = doc.rstrip("\n") + "\n\n" + block + "\n"
    tmpf = DOC + ".amqp.tmp"
    with open(tmpf, "w") as f:
        f.write(doc)
    os.replace(tmpf, DOC)


sys.exit(main())
PY
