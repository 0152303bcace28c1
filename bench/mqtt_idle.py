#!/usr/bin/python3
"""Memory per idle MQTT connection: opens N TCP connections to an MQTT
broker, sends an MQTT 3.1.1 CONNECT on each (clean session, keep alive 0 =
no deadline), reads every CONNACK, waits a moment with all of them idle,
and prints the broker's resident memory before and with the connections
(VmRSS) and its peak (VmHWM) from /proc/PID/status, as one JSON line.

    mqtt_idle.py PID HOST PORT [N] [--settle S] [--subscribe] [--stream-exists]

--subscribe: each client also subscribes to its own topic (idle/<i>),
which is what an idle device usually does; SUBACKs are read too.
--stream-exists: before the baseline is read, one message is published to
idle/x (QoS 0) and that client disconnects, so that on a broker that
keeps topics in streams (Junction) the stream "idle" exists and every
subscription gets a cursor in it, as on a broker already in use.
The broker needs a file limit above N (ulimit -n), as does this script
(it raises its own soft limit up to the hard one).
"""
import argparse
import json
import resource
import socket
import time


def status_kib(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def connect_packet(cid):
    c = cid.encode()
    var = b"\x00\x04MQTT\x04\x02\x00\x00"  # level 4, clean session, keep alive 0
    body = var + len(c).to_bytes(2, "big") + c
    return bytes([0x10, len(body)]) + body


def subscribe_packet(topic):
    t = topic.encode()
    body = b"\x00\x01" + len(t).to_bytes(2, "big") + t + b"\x00"
    return bytes([0x82, len(body)]) + body


def publish_once(host, port, topic):
    s = socket.create_connection((host, port), timeout=30)
    s.sendall(connect_packet("idle-pub"))
    assert read_exact(s, 4)[3] == 0, "CONNACK refused"
    t = topic.encode()
    body = len(t).to_bytes(2, "big") + t + b"hello"
    s.sendall(bytes([0x30, len(body)]) + body + b"\xe0\x00")  # PUBLISH QoS 0, DISCONNECT
    s.close()


def read_exact(s, n):
    data = b""
    while len(data) < n:
        chunk = s.recv(n - len(data))
        if not chunk:
            raise ConnectionError("closed by the broker")
        data += chunk
    return data


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("pid", type=int)
    ap.add_argument("host")
    ap.add_argument("port", type=int)
    ap.add_argument("n", type=int, nargs="?", default=10000)
    ap.add_argument("--settle", type=float, default=3.0, help="seconds idle before reading memory")
    ap.add_argument("--subscribe", action="store_true")
    ap.add_argument("--stream-exists", action="store_true")
    a = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, a.n + 1000), hard))
    if a.stream_exists:
        publish_once(a.host, a.port, "idle/x")
        time.sleep(1.0)
    before = status_kib(a.pid, "VmRSS")
    socks = []
    for i in range(a.n):
        s = socket.create_connection((a.host, a.port), timeout=30)
        s.sendall(connect_packet(f"idle-{i}"))
        socks.append(s)
        if len(socks) % 500 == 0:  # do not let the backlog overflow
            for t in socks[-500:]:
                assert read_exact(t, 4)[3] == 0, "CONNACK refused"
    for t in socks[len(socks) - len(socks) % 500:]:
        assert read_exact(t, 4)[3] == 0, "CONNACK refused"
    if a.subscribe:
        for i, s in enumerate(socks):
            s.sendall(subscribe_packet(f"idle/{i}"))
        for s in socks:
            assert read_exact(s, 5)[0] == 0x90
    time.sleep(a.settle)
    now = status_kib(a.pid, "VmRSS")
    hwm = status_kib(a.pid, "VmHWM")
    for s in socks:
        s.close()
    print(json.dumps({"connections": a.n, "subscribed": a.subscribe, "stream_exists": a.stream_exists,
                      "rss_before_kib": before,
                      "rss_with_conns_kib": now, "peak_rss_kib": hwm,
                      "per_conn_bytes": round((now - before) * 1024 / a.n)}))


if __name__ == "__main__":
    main()
