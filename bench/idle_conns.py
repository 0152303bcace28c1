#!/usr/bin/python3
"""Opens N keep-alive HTTP connections to a server, sends one request on each,
leaves them idle, and prints the server's peak resident memory (VmHWM).

    idle_conns.py PID HOST PORT [N]
"""
import json
import resource
import socket
import sys


def rss_kib(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def main():
    pid, host, port = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    n = int(sys.argv[4]) if len(sys.argv) > 4 else 10000
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, n + 1000), hard))
    before = rss_kib(pid, "VmRSS")
    socks = []
    req = f"GET /v1/health HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
    for _ in range(n):
        s = socket.create_connection((host, port), timeout=10)
        s.sendall(req)
        socks.append(s)
    answered = 0
    for s in socks:
        if s.recv(4096).startswith(b"HTTP/1.1 2"):
            answered += 1
    hwm = rss_kib(pid, "VmHWM")
    now = rss_kib(pid, "VmRSS")
    for s in socks:
        s.close()
    print(json.dumps({"connections": n, "answered": answered, "rss_before_kib": before,
                      "rss_with_conns_kib": now, "peak_rss_kib": hwm,
                      "per_conn_bytes": round((now - before) * 1024 / n)}))


if __name__ == "__main__":
    main()
