#!/bin/bash
# kafka_bench.sh [junction-binary] - the Kafka door's figures of issue 6,
# with this machine's limits measured in the same run:
#   1. loopback TCP bandwidth (iperf3, one stream) and the sequential write
#      bandwidth of the data directory's filesystem (fio, 1 MiB writes with
#      fdatasync; dd conv=fdatasync without fio);
#   2. produce, 1 KiB records in batches of 100, acks=1 (junction bench kafka);
#   3. consume from earliest (Fetch, records sent with sendfile);
#   4. produce p99 latency with acks=all on a server with fsync always;
#   5. kcat producing a 1 GB file of lines (-l), time and MB/s.
# Prints a markdown table (the "## Kafka (issue 6)" section of
# docs/benchmarks.md). Environment: SECS (default 10) per phase, BIG_MB
# (default 1024) for the kcat file, DATA (default a mktemp -d under /tmp)
# for the data directory whose filesystem is measured.
set -euo pipefail
BIN=${1:-build/junction}
SECS=${SECS:-10}
BIG_MB=${BIG_MB:-1024}
TMP=$(mktemp -d "${DATA:-/tmp}/kafka_bench.XXXXXX")
SRV=""
IPERF=""
cleanup() {
    [ -n "$SRV" ] && kill "$SRV" 2>/dev/null && wait "$SRV" 2>/dev/null || true
    [ -n "$IPERF" ] && kill "$IPERF" 2>/dev/null && wait "$IPERF" 2>/dev/null || true
    rm -rf "$TMP"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
json() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
log() { echo "kafka_bench: $*" >&2; }

# Starts a server on fresh ports with a fresh data dir; extra flags in "$@".
start_server() {
    KPORT=$(free_port)
    local hp; hp=$(free_port)
    rm -rf "$TMP/data"
    "$BIN" serve --data_dir "$TMP/data" --http.listen "127.0.0.1:$hp" --kafka.listen "127.0.0.1:$KPORT" \
        --mqtt.listen "" --amqp.listen "" --log_level warn "$@" >"$TMP/server.log" 2>&1 &
    SRV=$!
    for _ in $(seq 50); do
        (exec 3<>"/dev/tcp/127.0.0.1/$KPORT") 2>/dev/null && return 0
        sleep 0.1
    done
    cat "$TMP/server.log" >&2
    exit 1
}
stop_server() { kill "$SRV"; wait "$SRV" 2>/dev/null || true; SRV=""; }

# 1. limits
log "loopback bandwidth (iperf3 -c 127.0.0.1, one stream, ${SECS}s)"
IP=$(free_port)
iperf3 -s -B 127.0.0.1 -p "$IP" >/dev/null 2>&1 &
IPERF=$!
LOOP=""
for _ in $(seq 20); do
    sleep 0.25
    if out=$(iperf3 -c 127.0.0.1 -p "$IP" -t "$SECS" -J 2>/dev/null); then
        LOOP=$(echo "$out" | json 'round(d["end"]["sum_received"]["bits_per_second"]/8e6)') && break
    fi
done
kill "$IPERF"; wait "$IPERF" 2>/dev/null || true; IPERF=""
mkdir -p "$TMP/disk"
log "disk sequential write on $(df --output=target "$TMP" | tail -1) (1 MiB writes, fdatasync)"
if command -v fio >/dev/null; then
    DISK=$(fio --name=seqwrite --directory="$TMP/disk" --rw=write --bs=1M --size=1024M --fdatasync=1 \
        --end_fsync=1 --output-format=json | json 'round(d["jobs"][0]["write"]["bw_bytes"]/1e6)')
    DISK_HOW="fio --rw=write --bs=1M --size=1024M --fdatasync=1"
else
    t0=$(date +%s.%N)
    dd if=/dev/zero of="$TMP/disk/dd" bs=1M count=1024 conv=fdatasync status=none
    DISK=$(python3 -c "import time; print(round(1024*1048576/(time.time()-$t0)/1e6))")
    DISK_HOW="dd bs=1M count=1024 conv=fdatasync"
fi
rm -rf "$TMP/disk"
LIMIT=$(( LOOP < DISK ? LOOP : DISK ))

# 2-3. produce acks=1, then consume what was produced
start_server
PROD_CMD="junction bench kafka --size 1024 --batch 100 --acks 1 --producers 2 --inflight 5 --duration $SECS"
log "produce: $PROD_CMD"
P=$("$BIN" bench kafka --port "$KPORT" --size 1024 --batch 100 --acks 1 --producers 2 --inflight 5 \
    --duration "$SECS" --json --quiet)
P_MB=$(echo "$P" | json 'round(d["delivered_mb_per_s"])')
P_MSG=$(echo "$P" | json 'round(d["delivered_msgs_per_s"])')
CONS_CMD="junction bench kafka --mode consume"
log "consume: $CONS_CMD"
C=$("$BIN" bench kafka --port "$KPORT" --mode consume --json --quiet)
C_MB=$(echo "$C" | json 'round(d["delivered_mb_per_s"])')
C_MSG=$(echo "$C" | json 'round(d["delivered_msgs_per_s"])')
stop_server

# 4. latency with acks=all and fsync always
start_server --streams.fsync always
LAT_CMD="junction bench kafka --size 1024 --batch 100 --acks all --producers 1 --inflight 1 --duration $SECS (serve --streams.fsync always)"
log "latency: $LAT_CMD"
L=$("$BIN" bench kafka --port "$KPORT" --size 1024 --batch 100 --acks all --producers 1 --inflight 1 \
    --duration "$SECS" --json --quiet)
L_P50=$(echo "$L" | json 'd["latency_us"]["p50"]/1000')
L_P99=$(echo "$L" | json 'd["latency_us"]["p99"]/1000')
L_MB=$(echo "$L" | json 'round(d["delivered_mb_per_s"])')
stop_server

# 5. kcat, a 1 GB file of lines (1 KiB each)
start_server
log "kcat: writing a ${BIG_MB} MB file of lines"
python3 - "$TMP/big.txt" "$BIG_MB" <<'EOF'
import sys
line = (b"x" * 1023) + b"\n"
chunk = line * 1024
with open(sys.argv[1], "wb") as f:
    for _ in range(int(sys.argv[2])):
        f.write(chunk)
EOF
KCAT_CMD="kcat -P -b 127.0.0.1:PORT -t big -l big.txt (${BIG_MB} MiB, 1 KiB lines)"
log "kcat: $KCAT_CMD"
t0=$(date +%s.%N)
kcat -P -b "127.0.0.1:$KPORT" -t big -l "$TMP/big.txt"
t1=$(date +%s.%N)
K_S=$(python3 -c "print(round($t1-$t0, 1))")
K_MB=$(python3 -c "print(round($BIG_MB*1048576/($t1-$t0)/1e6))")
K_N=$(kcat -Q -b "127.0.0.1:$KPORT" -t big:0:-1 2>/dev/null | awk '{print $NF}' || echo "?")
stop_server
rm -f "$TMP/big.txt"

pct() { python3 -c "print(round(100*$1/$2))"; }
cat <<EOF
| measurement | result | reference | command |
|---|---|---|---|
| loopback TCP, one stream | $LOOP MB/s | | \`iperf3 -c 127.0.0.1 -t $SECS\` |
| disk sequential write (data dir) | $DISK MB/s | | \`$DISK_HOW\` |
| produce 1 KiB, batches of 100, acks=1 | $P_MB MB/s ($P_MSG msg/s) | $(pct "$P_MB" "$LIMIT")% of the lower limit (target 70%) | \`$PROD_CMD\` |
| consume from earliest | $C_MB MB/s ($C_MSG msg/s) | $(pct "$C_MB" "$LOOP")% of loopback (target 80%) | \`$CONS_CMD\` |
| produce acks=all, fsync always | p50 $L_P50 ms, p99 $L_P99 ms ($L_MB MB/s) | | \`$LAT_CMD\` |
| kcat -P, ${BIG_MB} MiB of lines | $K_S s, $K_MB MB/s (end offset $K_N) | | \`$KCAT_CMD\` |
EOF
