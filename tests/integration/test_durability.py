"""Crash and recovery: acknowledged records survive SIGKILL; torn tails are
cut; acknowledgements that promise the disk come after an fsync."""
import glob
import os
import re
import threading
import time

import pytest
import requests


def test_sigkill_loses_no_acknowledged_record(make_server):
    s = make_server(["--streams.fsync", "always"])
    acked = {}
    lock = threading.Lock()
    stop = threading.Event()

    def publisher(n):
        sess = requests.Session()
        i = 0
        while not stop.is_set() and i < 2000:
            body = f"p{n}-{i}".encode()
            try:
                r = sess.post(s.url + f"/v1/publish/crash/p{n}", data=body, timeout=5)
            except requests.RequestException:
                return
            if r.status_code == 201:
                with lock:
                    acked[body] = r.json()["offset"]
            i += 1

    threads = [threading.Thread(target=publisher, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    # Kill once a good number of records are acknowledged (a count, not a time).
    while True:
        with lock:
            if len(acked) >= 300 or not any(t.is_alive() for t in threads):
                break
        threading.Event().wait(0.01)
    s.kill()
    stop.set()
    for t in threads:
        t.join()
    assert len(acked) >= 300
    s.start()
    stored = {}
    offset = 0
    while True:
        r = s.get("/v1/streams/crash/partitions/0/records", params={"offset": offset, "limit": 10000}).json()
        for rec in r["records"]:
            stored[rec["value"].encode()] = rec["offset"]
        if r["next_offset"] >= r["end_offset"]:
            break
        offset = r["next_offset"]
    missing = [k for k in acked if k not in stored]
    assert not missing, f"{len(missing)} acknowledged records lost, e.g. {missing[:5]}"
    for k, off in acked.items():
        assert stored[k] == off


def segment_files(data_dir, stream, partition=0):
    return sorted(glob.glob(os.path.join(data_dir, "streams", stream, str(partition), "*.log")))


def test_torn_tail_is_truncated(make_server):
    s = make_server()
    for i in range(50):
        assert s.post(f"/v1/publish/torn/x", data=f"rec{i}".encode()).status_code == 201
    s.stop()
    seg = segment_files(s.data_dir, "torn")[-1]
    size = os.path.getsize(seg)
    # Tear the last batch in half and add garbage after it.
    with open(seg, "r+b") as f:
        f.truncate(size - 7)
    with open(seg, "ab") as f:
        f.write(b"\x00\x01garbage" * 10)
    s.start()
    d = s.get("/v1/streams/torn").json()["partition_info"][0]
    assert d["end_offset"] == 49
    recs = s.get("/v1/streams/torn/partitions/0/records", params={"limit": 100}).json()["records"]
    assert [r["value"] for r in recs] == [f"rec{i}" for i in range(49)]
    # appending continues at the right offset
    r = s.post("/v1/publish/torn/x", data=b"after").json()
    assert r["offset"] == 49


def test_corrupted_crc_in_tail(make_server):
    s = make_server()
    for i in range(10):
        s.post("/v1/publish/crc/x", data=f"rec{i}".encode())
    s.stop()
    seg = segment_files(s.data_dir, "crc")[-1]
    with open(seg, "r+b") as f:
        f.seek(-3, os.SEEK_END)
        b = f.read(1)
        f.seek(-3, os.SEEK_END)
        f.write(bytes([b[0] ^ 0xFF]))
    s.start()
    assert s.get("/v1/streams/crc").json()["partition_info"][0]["end_offset"] == 9


def test_graceful_restart_keeps_everything(make_server):
    s = make_server()
    s.post("/v1/streams", json={"name": "keep", "partitions": 2, "config": {"fsync": "never"}})
    for i in range(100):
        s.post("/v1/publish/keep/x", data=b"v", params={"key": str(i)})
    before = s.get("/v1/streams/keep").json()
    assert s.stop() == 0
    s.start()
    after = s.get("/v1/streams/keep").json()
    assert after["partitions"] == 2
    assert after["config"]["fsync"] == "never"
    assert [p["end_offset"] for p in after["partition_info"]] == [p["end_offset"] for p in before["partition_info"]]


def fsyncs(server, stream):
    """The server's count of finished fsyncs of |stream| (/metrics)."""
    pat = re.compile(r'^junction_stream_fsyncs_total\{stream="%s"\} (\d+)$' % re.escape(stream), re.M)
    m = pat.search(server.get("/metrics").text)
    return int(m.group(1)) if m else 0


def test_always_stream_syncs_what_no_one_waits_for(server):
    """fsync `always` covers publishes that are not answered after the fsync
    (MQTT QoS 0 here): they are synced by group commit all the same."""
    mqtt = pytest.importorskip("paho.mqtt.client")
    r = server.post("/v1/streams", json={"name": "alw", "config": {"fsync": "always"}})
    assert r.status_code == 201, r.text
    c = mqtt.Client(client_id="qos0-pub", protocol=mqtt.MQTTv311)
    c.connect("127.0.0.1", server.mqtt_port)
    c.loop_start()
    for i in range(20):
        c.publish("alw/x", f"m{i}", qos=0)
    c.disconnect()
    c.loop_stop()
    deadline = time.time() + 10
    while fsyncs(server, "alw") == 0 and time.time() < deadline:
        time.sleep(0.05)
    assert fsyncs(server, "alw") >= 1
    assert server.get("/v1/streams/alw").json()["records"] == 20


def test_amqp_confirm_of_persistent_message_waits_for_fsync(server):
    """As RabbitMQ does, a publisher confirm of a persistent message routed
    to a durable queue comes once the message is fsynced, whatever the
    queue's fsync policy (interval by default): each confirmed publish here
    is covered by an fsync finished before its confirm."""
    pika = pytest.importorskip("pika")
    conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", server.amqp_port))
    ch = conn.channel()
    ch.confirm_delivery()
    ch.queue_declare("durconf", durable=True)
    for i in range(5):
        before = fsyncs(server, "__q.durconf")
        ch.basic_publish("", "durconf", b"m%d" % i, pika.BasicProperties(delivery_mode=2))
        assert fsyncs(server, "__q.durconf") > before
    assert ch.queue_declare("durconf", passive=True).method.message_count == 5
    conn.close()


def test_amqp_confirm_waits_for_every_durable_queue(server):
    """A persistent message fanned out to many durable queues is confirmed
    once every one of their streams is fsynced, not only the first few."""
    pika = pytest.importorskip("pika")
    conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", server.amqp_port))
    ch = conn.channel()
    ch.confirm_delivery()
    ch.exchange_declare("fan12", "fanout", durable=True)
    names = [f"fan12.q{i}" for i in range(12)]
    for q in names:
        ch.queue_declare(q, durable=True)
        ch.queue_bind(q, "fan12")
    before = {q: fsyncs(server, "__q." + q) for q in names}
    ch.basic_publish("fan12", "", b"to all", pika.BasicProperties(delivery_mode=2))
    assert [q for q in names if fsyncs(server, "__q." + q) <= before[q]] == []
    conn.close()
