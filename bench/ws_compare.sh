#!/usr/bin/env bash
# bench/ws_compare.sh - Junction's WebSocket fan-out beside a reference
# broadcast server on the npm `ws` package (bench/ws_ref_server.js), driven
# by the same load generator (`junction bench ws`), in one run (issue 4).
#
# Starts both on free loopback ports, then, interleaved, RUNS times each:
#   - throughput: 1 publisher -> SUBS subscribers, 64-byte payloads, flat
#     out within a closed-loop window (--window: at most WINDOW messages per
#     subscriber published and not yet delivered), DURATION seconds;
#   - latency: the same at a fixed RATE messages/s (RATE x SUBS deliveries/s,
#     below both servers' throughput), for the p99.
# Medians of delivered messages/s, p99 and server CPU seconds, the ratio
# Junction / ws; then peak memory (VmHWM) of a fresh process of each with
# IDLE idle WebSocket connections (upgraded, one live subscription each).
# Writes a "## WebSocket (issue 4)" section into docs/benchmarks.md between
# <!-- ws-issue4:begin --> and <!-- ws-issue4:end --> (outside the
# bench/compare markers). Every process it starts is stopped by PID.
#
# usage: bench/ws_compare.sh [--quick] [--no-write] [--runs N] [--duration S]
# env:   JUNCTION_BIN (build/junction), SUBS (1000), WINDOW (200), RATE (20),
#        IDLE (10000)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=$(realpath "${JUNCTION_BIN:-$ROOT/build/junction}")
DOC="$ROOT/docs/benchmarks.md"
RUNS=3
DURATION=5
SUBS=${SUBS:-1000}
WINDOW=${WINDOW:-200}
RATE=${RATE:-20}
IDLE=${IDLE:-10000}
WRITE=1
while [ $# -gt 0 ]; do
    case "$1" in
    --quick) RUNS=1; DURATION=2; IDLE=${IDLE_QUICK:-2000} ;;
    --no-write) WRITE=0 ;;
    --runs) RUNS=$2; shift ;;
    --duration) DURATION=$2; shift ;;
    -h|--help) sed -n '2,23p' "$0"; exit 0 ;;
    *) echo "ws_compare: unknown option $1" >&2; exit 2 ;;
    esac
    shift
done

[ -x "$BIN" ] || { echo "ws_compare: $BIN not built (make)" >&2; exit 1; }
export NODE_PATH="$ROOT/tests/js/node_modules"
if ! node -e "require('ws')" 2>/dev/null; then
    echo "ws_compare: installing the npm ws package (tests/js, npm ci)" >&2
    (cd "$ROOT/tests/js" && npm ci --no-audit --no-fund >&2) || { echo "ws_compare: npm ci failed" >&2; exit 1; }
fi

TMP=$(mktemp -d /tmp/jn-ws-compare.XXXXXX)
PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]}"; do
        kill "$p" 2>/dev/null || true
    done
    for p in "${PIDS[@]}"; do
        wait "$p" 2>/dev/null || true
    done
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_port() { # PORT PID
    local i
    for i in $(seq 1 100); do
        kill -0 "$2" 2>/dev/null || return 1
        python3 -c "import socket,sys; socket.create_connection(('127.0.0.1',$1),timeout=1)" 2>/dev/null && return 0
        sleep 0.1
    done
    return 1
}

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# Waits (at most 30 s) until the servers stop using CPU: a server still
# working off the previous run's backlog must not share the next run.
wait_idle() { # PID...
    local i p t0 t1 busy
    for i in $(seq 1 60); do
        t0=0 t1=0
        for p in "$@"; do t0=$((t0 + $(cpu_ticks "$p"))); done
        sleep 0.5
        for p in "$@"; do t1=$((t1 + $(cpu_ticks "$p"))); done
        busy=$((t1 - t0))
        [ "$busy" -le 2 ] && return 0
    done
    echo "ws_compare: a server stayed busy for 30 s" >&2
}

# Starts a server; sets SRV_PID and SRV_PORT. $1: junction|ws, $2: tag.
start_server() {
    SRV_PORT=$(free_port)
    if [ "$1" = junction ]; then
        local args=(serve --data_dir "$TMP/data-$2" --log_level warn --http.listen "127.0.0.1:$SRV_PORT")
        local help door
        help=$("$BIN" serve --help 2>&1 || true)
        for door in mqtt amqp kafka; do
            if grep -q -- "--$door.listen" <<<"$help"; then args+=("--$door.listen" ""); fi
        done
        "$BIN" "${args[@]}" >"$TMP/junction-$2.log" 2>&1 &
    else
        node "$ROOT/bench/ws_ref_server.js" "$SRV_PORT" >"$TMP/ws-$2.log" 2>&1 &
    fi
    SRV_PID=$!
    PIDS+=("$SRV_PID")
    wait_port "$SRV_PORT" "$SRV_PID" || { echo "ws_compare: $1 did not start" >&2; cat "$TMP"/*-"$2".log >&2; exit 1; }
}

stop_server() { # PID
    kill "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}

# One bench run: $1 server, $2 port, $3 pid, $4 kind, then bench options.
# Appends "server kind msgs/s p99 lost cpu_s" to $TMP/results.
bench_run() {
    local server=$1 port=$2 pid=$3 kind=$4
    shift 4
    local c0 c1 out
    c0=$(cpu_ticks "$pid")
    out=$("$BIN" bench ws --url "ws://127.0.0.1:$port/v1/ws" --json --quiet --size 64 \
          --subscribers "$SUBS" --duration "$DURATION" "$@" 2>"$TMP/bench.err") || {
        echo "ws_compare: bench against $server failed: $(tail -1 "$TMP/bench.err")" >&2
        return 0
    }
    c1=$(cpu_ticks "$pid")
    python3 - "$server" "$kind" "$c0" "$c1" "$(getconf CLK_TCK)" >>"$TMP/results" <<EOF
import json, sys
r = json.loads('''$out''')
server, kind, c0, c1, hz = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
print(server, kind, round(r["delivered_msgs_per_s"]), r["latency_us"]["p99"], r.get("lost", 0), (c1 - c0) / hz,
      r["delivered"])
EOF
    wait_idle "$J_PID" "$W_PID"
    tail -1 "$TMP/results" | awk '{printf "  %-8s %-10s %12s msg/s  p99 %10.0f us  lost %s  server cpu %.2f s\n", $1, $2, $3, $4, $5, $6}' >&2
}

echo "ws_compare: $RUNS run(s) of ${DURATION}s, 1 -> $SUBS subscribers, 64 B, window $WINDOW, latency at $RATE msg/s" >&2
: >"$TMP/results"
start_server junction main
J_PID=$SRV_PID J_PORT=$SRV_PORT
start_server ws main
W_PID=$SRV_PID W_PORT=$SRV_PORT
wait_idle "$J_PID" "$W_PID"
for run in $(seq 1 "$RUNS"); do
    echo "run $run" >&2
    bench_run junction "$J_PORT" "$J_PID" throughput --window "$WINDOW"
    bench_run ws "$W_PORT" "$W_PID" throughput --window "$WINDOW"
    bench_run junction "$J_PORT" "$J_PID" latency --rate "$RATE"
    bench_run ws "$W_PORT" "$W_PID" latency --rate "$RATE"
done
stop_server "$J_PID"
stop_server "$W_PID"

# Idle connections, each against a fresh server so that VmHWM is theirs.
idle_run() { # server
    start_server "$1" "idle"
    python3 - "$SRV_PID" "$SRV_PORT" "$IDLE" "$1" >>"$TMP/idle" <<'EOF'
import base64, os, resource, socket, sys, time
pid, port, n, server = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
def kib(field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, n + 1000), hard))
before = kib("VmRSS")
socks = []
for i in range(n):
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall((f"GET /v1/ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: junction.v1\r\n\r\n").encode())
    socks.append(s)
ok = 0
for i, s in enumerate(socks):
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(4096)
        if not chunk:
            break
        head += chunk
    if head.startswith(b"HTTP/1.1 101"):
        ok += 1
        # One live subscription each (a masked text frame; mask 0 keeps it readable).
        cmd = ('{"op":"subscribe","id":"s","filter":"idle/%d","format":"binary"}' % i).encode()
        s.sendall(bytes([0x81, 0x80 | len(cmd)]) + b"\0\0\0\0" + cmd)
time.sleep(1.0)
print(server, n, ok, before, kib("VmHWM"), kib("VmRSS"))
for s in socks:
    s.close()
EOF
    tail -1 "$TMP/idle" | awk '{printf "  %-8s idle %s connections (%s upgraded): peak RSS %.1f MiB (before %.1f MiB)\n", $1, $2, $3, $5/1024, $4/1024}' >&2
    stop_server "$SRV_PID"
}
: >"$TMP/idle"
idle_run junction
idle_run ws

python3 - "$TMP/results" "$TMP/idle" "$DOC" "$WRITE" "$RUNS" "$DURATION" "$SUBS" "$WINDOW" "$RATE" <<'EOF'
import datetime, os, platform, statistics, sys
res_file, idle_file, doc, write = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "1"
runs, duration, subs, window, rate = sys.argv[5:10]
rows = {}
for line in open(res_file):
    server, kind, msgs, p99, lost, cpu, n = line.split()
    rows.setdefault((server, kind), []).append((float(msgs), float(p99), int(float(lost)), float(cpu), int(n)))
def med(server, kind, i):
    v = [r[i] for r in rows.get((server, kind), [])]
    return statistics.median(v) if v else None
def fmt(v, unit=""):
    return "n/a" if v is None else f"{v:,.0f}{unit}"
def ratio(a, b, inverse=False):
    if a is None or b is None or (b == 0 if not inverse else a == 0):
        return "n/a"
    return f"{(b / a if inverse else a / b):.2f}"
jt, wt = med("junction", "throughput", 0), med("ws", "throughput", 0)
jcpu, wcpu = med("junction", "throughput", 3), med("ws", "throughput", 3)
def per_cpu(s, cpu):
    # Deliveries of the throughput runs over the server CPU they took
    # (connection setup included), summed over the runs.
    v = rows.get((s, "throughput"), [])
    cpu_sum = sum(r[3] for r in v)
    return None if not cpu_sum else sum(r[4] for r in v) / cpu_sum
lost = {s: sum(r[2] for k, v in rows.items() if k[0] == s for r in v) for s in ("junction", "ws")}
idle = {}
for line in open(idle_file):
    server, n, ok, before, hwm, now = line.split()
    idle[server] = (int(n), int(ok), int(before), int(hwm))
now = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
out = []
out.append("## WebSocket (issue 4)")
out.append("")
out.append(f"{now}, {os.cpu_count()} CPUs, Linux {platform.release()}; medians of {runs} interleaved run(s) of "
           f"{duration} s per server; load generator and servers share the machine (and, when this ran, other work). "
           "Produced by `bench/ws_compare.sh`.")
out.append("")
out.append(f"Fan-out of 1 publisher to {subs} WebSocket subscribers, 64-byte payloads, binary envelopes "
           "(docs/ws.md), the same load generator against both: `junction bench ws --subscribers "
           f"{subs} --size 64` with `--window {window}` (flat out, at most {window} messages per subscriber "
           f"in flight) for throughput and `--rate {rate}` ({int(rate) * int(subs):,} deliveries/s) for latency. "
           "The reference is bench/ws_ref_server.js: the npm `ws` package (8.x) on Node "
           f"{os.popen('node --version').read().strip()}, broadcasting each message with `ws.send` per client.")
out.append("")
out.append("| measurement | Junction | ws (npm) | Junction / ws |")
out.append("|---|---|---|---|")
out.append(f"| delivered msg/s, 1→{subs} flat out (window {window}) | {fmt(jt)} | {fmt(wt)} | **{ratio(jt, wt)}** |")
out.append(f"| p99 latency at that load, µs | {fmt(med('junction', 'throughput', 1))} | {fmt(med('ws', 'throughput', 1))} | |")
out.append(f"| p99 latency at {rate} msg/s ({int(rate) * int(subs):,} deliveries/s), µs | "
           f"{fmt(med('junction', 'latency', 1))} | {fmt(med('ws', 'latency', 1))} | "
           f"{ratio(med('junction', 'latency', 1), med('ws', 'latency', 1), inverse=True)} (ws / Junction) |")
out.append(f"| server CPU seconds per throughput run (with 1,000 connection setups) | "
           f"{jcpu if jcpu is not None else 'n/a'} | {wcpu if wcpu is not None else 'n/a'} | |")
out.append(f"| deliveries per server CPU second | {fmt(per_cpu('junction', jcpu))} | {fmt(per_cpu('ws', wcpu))} | "
           f"{ratio(per_cpu('junction', jcpu), per_cpu('ws', wcpu))} |")
out.append(f"| messages lost, all runs | {lost['junction']:,} | {lost['ws']:,} | |")
if idle:
    j, w = idle.get("junction"), idle.get("ws")
    def mib(x):
        return "n/a" if not x else f"{x[3] / 1024:.1f} MiB ({x[1]:,} of {x[0]:,} upgraded)"
    out.append(f"| peak RSS with {j[0] if j else w[0]:,} idle connections, one subscription each | {mib(j)} | {mib(w)} | |")
out.append("")
out.append("Targets (issue 4): at least 1,000,000 delivered msg/s and 3× the `ws` server in this scenario; "
           "under 200 MiB with 10,000 idle connections. The throughput row depends on how much CPU the machine "
           "leaves to the run; the CPU row (deliveries per second of server CPU) is the steadier comparison.")
out.append("")
out.append("Reproduce: `make && bench/ws_compare.sh` (`--quick` for 1 short run; `NODE_PATH=tests/js/node_modules "
           "node bench/ws_ref_server.js PORT` runs the reference alone).")
text = "\n".join(out) + "\n"
print(text)
if write:
    begin, end = "<!-- ws-issue4:begin -->", "<!-- ws-issue4:end -->"
    block = begin + "\n" + text + end + "\n"
    cur = open(doc).read() if os.path.exists(doc) else "# Benchmarks\n"
    if begin in cur and end in cur:
        a = cur.index(begin)
        b = cur.index(end) + len(end)
        if cur[b:b + 1] == "\n":
            b += 1
        cur = cur[:a] + block + cur[b:]
    else:
        cur = cur.rstrip("\n") + "\n\n" + block
    with open(doc, "w") as f:
        f.write(cur)
    print(f"ws_compare: wrote the WebSocket section of {doc}", file=sys.stderr)
EOF
