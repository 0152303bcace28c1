"""junction bench against a local Junction: every door runs briefly, and
where the protocol guarantees delivery (MQTT QoS 1, AMQP confirms, Kafka
acks, WebSocket acks, HTTP answers) delivered must equal sent. Bad options
exit 2 with a message. Counts, never timings, are asserted."""
import json
import os
import shutil
import socket
import subprocess

import pytest

from conftest import BIN, ROOT, free_port


def bench(*args, timeout=90):
    p = subprocess.run([BIN, "bench", *args, "--json", "--quiet"], capture_output=True, text=True, timeout=timeout)
    assert p.returncode == 0, f"bench {' '.join(args)} -> {p.returncode}: {p.stderr}"
    return json.loads(p.stdout)


def door_answers(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return True
    except OSError:
        return False


def need_door(port, name):
    if not door_answers(port):
        pytest.skip(f"Junction's {name} door does not answer on {port} (not built in yet)")


@pytest.mark.parametrize("args, words", [
    (["nosuchdoor"], "unknown door"),
    (["mqtt", "--nosuch", "1"], "unknown option"),
    (["mqtt", "--qos", "3"], "--qos"),
    (["mqtt", "--size", "8"], "--size"),
    (["http", "--connections", "-1"], "--connections"),
    (["amqp", "--ack-every", "100", "--prefetch", "10"], "--ack-every"),
    (["amqp", "--routing-key", "a.b"], "--routing-key"),
    (["kafka", "--acks", "7"], "--acks"),
    (["kafka", "--mode", "both"], "--mode"),
    (["kafka", "--topic", "a/b"], "--topic"),
    (["ws", "--subject", "a/#"], "--subject"),
    (["ws", "--url", "mqtt://127.0.0.1:1"], "does not speak"),
    (["amqp", "--duration"], "needs a value"),
])
def test_bad_options_exit_2(args, words):
    p = subprocess.run([BIN, "bench", *args], capture_output=True, text=True, timeout=30)
    assert p.returncode == 2, (p.returncode, p.stderr)
    assert words in p.stderr and p.stdout == ""


def test_help_lists_every_door():
    p = subprocess.run([BIN, "bench", "--help"], capture_output=True, text=True, timeout=30)
    assert p.returncode == 0
    for door in ("http", "mqtt", "amqp", "kafka", "ws"):
        assert f"\n  {door} " in p.stdout


def test_refused_connection_exits_1():
    port = free_port()
    for door in ("amqp", "kafka", "ws"):
        p = subprocess.run([BIN, "bench", door, "--url", f"tcp://127.0.0.1:{port}" if door != "ws"
                            else f"ws://127.0.0.1:{port}/v1/ws", "--duration", "1"],
                           capture_output=True, text=True, timeout=30)
        assert p.returncode == 1, (door, p.stderr)
        assert "connect" in p.stderr


def test_http_every_request_answered(server):
    j = bench("http", "--url", server.url + "/v1/publish/bench/http", "--count", "3000", "--connections", "8",
              "--pipeline", "4", "--size", "256")
    assert j["sent"] == 3000 and j["delivered"] == 3000 and j["errors"] == 0


def test_mqtt_qos1_delivers_everything(server):
    need_door(server.mqtt_port, "MQTT")
    j = bench("mqtt", "--url", f"mqtt://127.0.0.1:{server.mqtt_port}", "--qos", "1", "--count", "3000",
              "--subscribers", "2", "--topic", "bench/itest")
    assert j["sent"] == 3000 and j["acked"] == 3000
    assert j["expected"] == 6000 and j["delivered"] == 6000 and j["lost"] == 0 and j["errors"] == 0
    assert j["latency_us"]["count"] == 6000


def test_amqp_confirms_and_manual_acks(server):
    need_door(server.amqp_port, "AMQP")
    j = bench("amqp", "--url", f"amqp://127.0.0.1:{server.amqp_port}", "--count", "3000", "--persistent",
              "--confirms", "--ack-every", "10", "--prefetch", "100", "--size", "1024", "--consumers", "2")
    assert j["sent"] == 3000 and j["acked"] == 3000
    assert j["delivered"] == 3000 and j["lost"] == 0 and j["errors"] == 0
    # Transient, no-ack consumer, through amq.topic: still everything arrives.
    j = bench("amqp", "--url", f"amqp://127.0.0.1:{server.amqp_port}", "--count", "3000", "--exchange",
              "amq.topic", "--routing-key", "bench.itest", "--queue", "itest.topic", "--confirms")
    assert j["acked"] == 3000 and j["delivered"] == 3000 and j["errors"] == 0


def test_kafka_produce_then_consume(server):
    need_door(server.kafka_port, "Kafka")
    url = f"kafka://127.0.0.1:{server.kafka_port}"
    j = bench("kafka", "--url", url, "--topic", "itest", "--count", "2500", "--batch", "100", "--acks", "all",
              "--size", "512")
    assert j["sent"] == 2500 and j["acked"] == 2500 and j["delivered"] == 2500 and j["errors"] == 0
    j = bench("kafka", "--url", url, "--topic", "itest", "--count", "500", "--acks", "0")
    assert j["sent"] == 500 and j["errors"] == 0
    # Consume from earliest reads what was produced (acks 0 may still be
    # landing: at least the acknowledged 2500), each record's stamp intact.
    j = bench("kafka", "--url", url, "--topic", "itest", "--mode", "consume")
    assert j["delivered"] >= 2500 and j["errors"] == 0
    assert j["delivered_bytes"] >= 2500 * 512


def test_ws_fanout_with_acks(server):
    url = server.url.replace("http://", "ws://") + "/v1/ws"
    j = bench("ws", "--url", url, "--count", "2000", "--ack", "--subscribers", "5", "--subject", "bench/itest")
    assert j["sent"] == 2000 and j["acked"] == 2000
    assert j["expected"] == 10000 and j["delivered"] == 10000 and j["errors"] == 0


@pytest.mark.skipif(not shutil.which("nginx"), reason="nginx not installed (scripts/install-deps.sh bench)")
def test_compare_quick_leaves_nothing_running():
    before = set(os.listdir("/proc"))
    p = subprocess.run([os.path.join(ROOT, "bench", "compare"), "--quick", "--no-write", "--only",
                        "http-publish-1KiB"], capture_output=True, text=True, timeout=180)
    assert p.returncode == 0, p.stderr
    assert "| http-publish-1KiB |" in p.stdout
    leftovers = []
    for pid in set(os.listdir("/proc")) - before:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
            with open(f"/proc/{pid}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z" and "jn-compare-" in cmd:
            leftovers.append(cmd)
    assert leftovers == []
    p = subprocess.run([os.path.join(ROOT, "bench", "compare"), "--only", "nope"], capture_output=True, text=True,
                       timeout=30)
    assert p.returncode == 2 and "unknown scenario" in p.stderr
