"""The Kafka door with real clients: librdkafka (python3-confluent-kafka),
kafka-python (python3-kafka) and kcat, against the junction binary."""
import os
import shutil
import subprocess
import time
import uuid

import pytest

ck = pytest.importorskip("confluent_kafka")
from confluent_kafka import Consumer, Producer, TopicPartition  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402


def bootstrap(server):
    return f"127.0.0.1:{server.kafka_port}"


def produce(server, topic, values, **conf):
    p = Producer({"bootstrap.servers": bootstrap(server), **conf})
    errors = []
    for i, v in enumerate(values):
        p.produce(topic, value=v, key=f"k{i}".encode(), headers=[("h", b"v")],
                  on_delivery=lambda err, msg: errors.append(err) if err else None)
    assert p.flush(20) == 0
    assert not errors, errors
    return p


def consume(server, topic, n, group=None, timeout=20, **conf):
    c = Consumer({"bootstrap.servers": bootstrap(server), "group.id": group or f"g-{uuid.uuid4()}",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False, **conf})
    c.subscribe([topic])
    out = []
    deadline = time.monotonic() + timeout
    while len(out) < n and time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is None or m.error():
            continue
        out.append(m)
    return c, out


def test_round_trip_and_metadata(server):
    produce(server, "orders", [f"v{i}".encode() for i in range(100)])
    c, msgs = consume(server, "orders", 100)
    c.close()
    assert [m.value() for m in msgs] == [f"v{i}".encode() for i in range(100)]
    assert msgs[0].key() == b"k0" and msgs[0].headers() == [("h", b"v")]
    assert msgs[0].timestamp()[1] > 0
    md = AdminClient({"bootstrap.servers": bootstrap(server)}).list_topics(timeout=10)
    assert "orders" in md.topics and md.brokers[0].port == server.kafka_port


def test_compression_codecs_stored_and_fetched(server):
    for codec in ("gzip", "snappy", "lz4", "zstd"):
        produce(server, f"c-{codec}", [b"x" * 200] * 50, **{"compression.type": codec, "linger.ms": 50})
        c, msgs = consume(server, f"c-{codec}", 50)
        c.close()
        assert len(msgs) == 50 and msgs[-1].value() == b"x" * 200


def test_idempotent_producer(server):
    produce(server, "idem", [str(i).encode() for i in range(200)], **{"enable.idempotence": True})
    c, msgs = consume(server, "idem", 200, timeout=15)
    c.close()
    assert [m.value() for m in msgs] == [str(i).encode() for i in range(200)]
    assert [m.offset() for m in msgs] == list(range(200))


def test_acks_all_and_offsets(server):
    produce(server, "acks", [b"a", b"b", b"c"], **{"acks": "all"})
    c = Consumer({"bootstrap.servers": bootstrap(server), "group.id": "x"})
    lo, hi = c.get_watermark_offsets(TopicPartition("acks", 0), timeout=10)
    assert (lo, hi) == (0, 3)
    tp = c.offsets_for_times([TopicPartition("acks", 0, 0)], timeout=10)[0]
    assert tp.offset == 0
    c.close()


def test_out_of_range_reset(server):
    produce(server, "oor", [b"a", b"b"])
    c = Consumer({"bootstrap.servers": bootstrap(server), "group.id": "oor",
                  "auto.offset.reset": "earliest"})
    c.assign([TopicPartition("oor", 0, 50)])
    got = []
    deadline = time.monotonic() + 15
    while len(got) < 2 and time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is not None and not m.error():
            got.append(m.value())
    c.close()
    assert got == [b"a", b"b"]


def test_group_rebalance_two_members_and_commits_survive_restart(make_server):
    server = make_server()
    admin = AdminClient({"bootstrap.servers": bootstrap(server)})
    fs = admin.create_topics([NewTopic("grp", num_partitions=4, replication_factor=1)])
    fs["grp"].result(10)
    produce(server, "grp", [str(i).encode() for i in range(40)])
    conf = {"bootstrap.servers": bootstrap(server), "group.id": "workers", "auto.offset.reset": "earliest",
            "enable.auto.commit": False, "session.timeout.ms": 6000, "heartbeat.interval.ms": 500}
    a = Consumer(conf)
    a.subscribe(["grp"])
    got = []
    deadline = time.monotonic() + 20
    while len(got) < 40 and time.monotonic() < deadline:
        m = a.poll(0.5)
        if m is not None and not m.error():
            got.append(m)
    assert len(got) == 40
    a.commit(asynchronous=False)
    b = Consumer(conf)
    b.subscribe(["grp"])
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        a.poll(0.2)
        b.poll(0.2)
        if a.assignment() and b.assignment() and len(a.assignment()) + len(b.assignment()) == 4:
            break
    assert len(a.assignment()) == 2 and len(b.assignment()) == 2
    b.close()
    a.close()
    server.stop()
    server.start()
    c = Consumer(conf)
    committed = c.committed([TopicPartition("grp", p) for p in range(4)], timeout=10)
    assert sum(tp.offset for tp in committed) == 40
    c.close()


def test_kafka_python_client(server):
    kafka = pytest.importorskip("kafka")
    p = kafka.KafkaProducer(bootstrap_servers=bootstrap(server))
    for i in range(10):
        p.send("kp", key=b"k", value=f"m{i}".encode())
    p.flush(10)
    p.close()
    c = kafka.KafkaConsumer("kp", bootstrap_servers=bootstrap(server), group_id="kpg",
                            auto_offset_reset="earliest", consumer_timeout_ms=5000)
    vals = [m.value for m in c]
    c.commit()
    c.close()
    assert vals == [f"m{i}".encode() for i in range(10)]


def sasl_conf(server, mech, user, pw):
    return {"bootstrap.servers": bootstrap(server), "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanism": mech, "sasl.username": user, "sasl.password": pw}


@pytest.mark.parametrize("mech", ["PLAIN", "SCRAM-SHA-256"])
def test_sasl(server, mech):
    r = server.put("/v1/users/alice", json={"password": "s3cret", "admin": False})
    assert r.status_code in (200, 201), r.text
    produce(server, "secure", [b"one"], **sasl_conf(server, mech, "alice", "s3cret"))
    c, msgs = consume(server, "secure", 1, **sasl_conf(server, mech, "alice", "s3cret"))
    c.close()
    assert [m.value() for m in msgs] == [b"one"]
    # kafka-python authenticates its own way (SaslHandshake, then its tokens).
    kafka = pytest.importorskip("kafka")
    kp = kafka.KafkaProducer(bootstrap_servers=bootstrap(server), security_protocol="SASL_PLAINTEXT",
                             sasl_mechanism=mech, sasl_plain_username="alice", sasl_plain_password="s3cret")
    kp.send("secure", b"two").get(timeout=10)
    kp.close()
    # Wrong password: the produce never succeeds.
    p = Producer({**sasl_conf(server, mech, "alice", "wrong"), "message.timeout.ms": 3000})
    errs = []
    p.produce("secure", b"x", on_delivery=lambda e, m: errs.append(e))
    p.flush(10)
    assert errs and errs[0] is not None


def test_sasl_required_beyond_loopback(make_server):
    """With anonymous access off, requests before authentication close the connection."""
    server = make_server(extra=["--allow_anonymous", "false", "--admin.user", "root",
                                "--admin.password", "pw"])
    p = Producer({"bootstrap.servers": bootstrap(server), "message.timeout.ms": 3000})
    errs = []
    p.produce("t", b"x", on_delivery=lambda e, m: errs.append(e))
    p.flush(10)
    assert errs and errs[0] is not None
    produce(server, "t", [b"ok"], **sasl_conf(server, "SCRAM-SHA-256", "root", "pw"))


def test_cross_door_with_rest(server):
    produce(server, "orders", [b"from-kafka"])
    recs = server.get("/v1/streams/orders/partitions/0/records", params={"offset": 0}).json()["records"]
    assert recs[0]["subject"] == "orders" and recs[0]["value"] == "from-kafka"
    assert recs[0]["key"] == "k0"
    r = server.post("/v1/publish/orders/eu", data=b"from-rest", params={"key": "kr"})
    assert r.status_code == 201, r.text
    c, msgs = consume(server, "orders", 2)
    c.close()
    m = msgs[1]
    assert m.value() == b"from-rest" and m.key() == b"kr"
    assert (":subject", b"orders/eu") in (m.headers() or [])


def test_admin_topics_and_configs(server):
    admin = AdminClient({"bootstrap.servers": bootstrap(server)})
    fs = admin.create_topics([NewTopic("compacted", num_partitions=2, replication_factor=1,
                                       config={"cleanup.policy": "compact", "retention.ms": "3600000"})])
    fs["compacted"].result(10)
    s = server.get("/v1/streams/compacted").json()
    assert s["partitions"] == 2 and s["config"]["compact"] is True
    from confluent_kafka.admin import ConfigResource, NewPartitions
    res = admin.describe_configs([ConfigResource("topic", "compacted")])
    cfg = list(res.values())[0].result(10)
    assert cfg["cleanup.policy"].value == "compact" and cfg["retention.ms"].value == "3600000"
    admin.create_partitions([NewPartitions("compacted", 3)])["compacted"].result(10)
    assert server.get("/v1/streams/compacted").json()["partitions"] == 3
    with pytest.raises(Exception):
        admin.create_topics([NewTopic("compacted", num_partitions=1, replication_factor=1)])["compacted"].result(10)
    admin.delete_topics(["compacted"])["compacted"].result(10)
    assert server.get("/v1/streams/compacted").status_code == 404
    groups = admin.list_groups(timeout=10)
    assert isinstance(groups, list)


@pytest.mark.skipif(not (shutil.which("kcat") or shutil.which("kafkacat")), reason="kcat not installed")
def test_kcat(server):
    kcat = shutil.which("kcat") or shutil.which("kafkacat")
    b = bootstrap(server)
    subprocess.run([kcat, "-P", "-b", b, "-t", "lines", "-K:"], input=b"a:1\nb:2\nc:3\n", check=True,
                   timeout=20)
    out = subprocess.run([kcat, "-C", "-b", b, "-t", "lines", "-e", "-f", "%k=%s@%o\n"],
                         capture_output=True, check=True, timeout=20).stdout.decode()
    assert out.split() == ["a=1@0", "b=2@1", "c=3@2"]
    md = subprocess.run([kcat, "-L", "-b", b, "-t", "lines"], capture_output=True, check=True,
                        timeout=20).stdout.decode()
    assert 'topic "lines" with 1 partitions' in md
    out = subprocess.run([kcat, "-Q", "-b", b, "-t", "lines:0:-1"], capture_output=True, check=True,
                         timeout=20).stdout.decode()
    assert "offset 3" in out


@pytest.mark.skipif(shutil.which("node") is None, reason="node not installed")
def test_kafkajs(server):
    js = os.path.join(os.path.dirname(__file__), "..", "js")
    if not os.path.isdir(os.path.join(js, "node_modules", "kafkajs")):
        pytest.skip("kafkajs not installed (npm install in tests/js)")
    p = subprocess.run(["node", os.path.join(js, "kafka_roundtrip.js"), bootstrap(server)],
                       capture_output=True, timeout=90)
    assert p.returncode == 0, p.stdout.decode() + p.stderr.decode()


# ---- bad input over a raw socket ----

import socket  # noqa: E402
import struct  # noqa: E402


def kreq(sock, key, ver, body, corr=1):
    hdr = struct.pack(">hhih", key, ver, corr, 4) + b"test"
    msg = hdr + body
    sock.sendall(struct.pack(">i", len(msg)) + msg)


def kresp(sock):
    def recvn(n):
        b = b""
        while len(b) < n:
            d = sock.recv(n - len(b))
            if not d:
                raise ConnectionError("closed")
            b += d
        return b
    (n,) = struct.unpack(">i", recvn(4))
    return recvn(n)


def kstr(s):
    return struct.pack(">h", len(s)) + s


def test_bad_input(server):
    produce(server, "raw", [b"x"])
    s = socket.create_connection(("127.0.0.1", server.kafka_port), timeout=10)
    # ApiVersions of an unknown version: a v0 answer with UNSUPPORTED_VERSION.
    kreq(s, 18, 99, b"", corr=7)
    r = kresp(s)
    corr, err = struct.unpack(">ih", r[:6])
    assert (corr, err) == (7, 35)
    # Produce v3 with a batch whose CRC is wrong: CORRUPT_MESSAGE.
    batch = bytearray(61 + 8)
    struct.pack_into(">qiibI", batch, 0, 0, len(batch) - 12, 0, 2, 0xDEADBEEF)
    struct.pack_into(">hiqqqhii", batch, 21, 0, 0, 0, 0, -1, -1, -1, 1)
    body = struct.pack(">hhi", -1, 1, 1000) + struct.pack(">i", 1) + kstr(b"raw") + struct.pack(">i", 1) + \
        struct.pack(">i", 0) + struct.pack(">i", len(batch)) + bytes(batch)
    kreq(s, 0, 3, body, corr=8)
    r = kresp(s)
    # correlation, topics[1], name, partitions[1], index, error
    off = 4 + 4 + 2 + 3 + 4 + 4
    assert struct.unpack(">h", r[off:off + 2])[0] == 2
    # Fetch v4 past the end: OFFSET_OUT_OF_RANGE.
    body = struct.pack(">iiiib", -1, 100, 1, 1 << 20, 0) + struct.pack(">i", 1) + kstr(b"raw") + \
        struct.pack(">i", 1) + struct.pack(">iqi", 0, 99, 1 << 20)
    kreq(s, 1, 4, body, corr=9)
    r = kresp(s)
    off = 4 + 4 + 4 + 2 + 3 + 4 + 4
    assert struct.unpack(">h", r[off:off + 2])[0] == 1
    # Unknown topic in Metadata v1.
    kreq(s, 3, 1, struct.pack(">i", 1) + kstr(b"no.such"), corr=10)
    assert b"no.such" in kresp(s)
    # A truncated request body (a Metadata claiming 5 topics) closes the connection.
    kreq(s, 3, 1, struct.pack(">i", 5), corr=11)
    with pytest.raises((ConnectionError, OSError)):
        kresp(s)
    s.close()
    # An oversized frame closes the connection.
    s = socket.create_connection(("127.0.0.1", server.kafka_port), timeout=10)
    s.sendall(struct.pack(">i", 0x7fffffff) + b"\0" * 16)
    with pytest.raises((ConnectionError, OSError)):
        kresp(s)
    s.close()
    # The server is still fine.
    c, msgs = consume(server, "raw", 1)
    c.close()
    assert msgs[0].value() == b"x"



def parked_fetch(server, topic, offset, max_wait_ms):
    """Sends a Fetch v4 of |topic|/0 from |offset| (min_bytes 1) on a new
    connection; returns (socket, thread) - the thread fills .result with
    (seconds until the answer, response bytes)."""
    import threading
    s = socket.create_connection(("127.0.0.1", server.kafka_port), timeout=30)
    body = struct.pack(">iiiib", -1, max_wait_ms, 1, 1 << 20, 0) + struct.pack(">i", 1) + kstr(topic) + \
        struct.pack(">i", 1) + struct.pack(">iqi", 0, offset, 1 << 20)
    t = threading.Thread(target=lambda: None)

    def run():
        t0 = time.monotonic()
        kreq(s, 1, 4, body, corr=5)
        r = kresp(s)
        t.result = (time.monotonic() - t0, r)

    t = threading.Thread(target=run)
    t.result = None
    t.start()
    return s, t


def test_long_poll_fetch_woken_by_any_door(server):
    """A parked Fetch (max_wait 20 s) answers as soon as a record lands in
    its partition, whichever door appended it: REST, MQTT, a compressed
    Kafka produce. Appends elsewhere (another topic, an internal table)
    leave it parked; the deadline still answers an empty fetch."""
    produce(server, "lp", [b"first"])
    produce(server, "lp-other", [b"x"])
    mqtt = None
    try:
        import paho.mqtt.publish as mqtt
    except ImportError:
        pass
    offset = 1
    doors = ["rest", "kafka-lz4"] + (["mqtt"] if mqtt else [])
    for door in doors:
        s, t = parked_fetch(server, b"lp", offset, 20000)
        time.sleep(0.5)  # parked by now (it would only answer later anyway)
        produce(server, "lp-other", [b"elsewhere"])
        time.sleep(0.3)
        assert t.result is None, "woken by an append to another topic"
        value = f"via-{door}".encode()
        if door == "rest":
            r = server.post("/v1/publish/lp", data=value)
            assert r.status_code == 201, r.text
        elif door == "mqtt":
            mqtt.single("lp", value, qos=1, hostname="127.0.0.1", port=server.mqtt_port)
        else:
            produce(server, "lp", [value], **{"compression.type": "lz4"})
        t.join(15)
        s.close()
        assert t.result is not None, f"{door}: the parked fetch was not woken"
        elapsed, r = t.result
        assert elapsed < 15, f"{door}: answered at the deadline, not by the append"
        # topics[1], name, partitions[1], partition, error
        off = 4 + 4 + 4 + 2 + 2 + 4 + 4
        assert struct.unpack(">h", r[off:off + 2])[0] == 0
        if door != "kafka-lz4":  # lz4: the batch is stored (and fetched) compressed
            assert value in r
        offset += 1
    # Nothing arrives: the deadline answers, with no records.
    s, t = parked_fetch(server, b"lp", offset, 300)
    t.join(15)
    s.close()
    assert t.result is not None
    assert struct.unpack(">i", t.result[1][-4:])[0] == 0  # records: empty

def stored_codecs(server, topic):
    """The compression codecs of the batches stored for |topic| (read from
    its segment files: attributes bits 0-2 of each batch header)."""
    import glob
    import struct
    codecs = set()
    for path in glob.glob(os.path.join(server.data_dir, "**", "*.log"), recursive=True):
        if f"/{topic}/" not in path and f"/{topic}-" not in path and f"{topic}" not in os.path.dirname(path):
            continue
        data = open(path, "rb").read()
        pos = 0
        while pos + 61 <= len(data):
            blen = struct.unpack(">i", data[pos + 8:pos + 12])[0]
            codecs.add(struct.unpack(">h", data[pos + 21:pos + 23])[0] & 7)
            pos += 12 + blen
    return codecs


@pytest.mark.parametrize("codec,num", [("gzip", 1), ("snappy", 2), ("lz4", 3), ("zstd", 4)])
def test_compressed_batches_across_doors(server, codec, num):
    """Compressed Kafka batches are stored as produced and decoded by the
    core for the other doors: REST reads and a live MQTT subscriber see the
    records with their keys, headers and values."""
    mqtt = pytest.importorskip("paho.mqtt.client")
    import queue
    topic = f"z-{codec}"
    q = queue.Queue()
    m = mqtt.Client(client_id=f"z-{codec}", protocol=mqtt.MQTTv311)
    m.on_message = lambda cl, ud, msg: q.put(msg)
    subscribed = queue.Queue()
    m.on_subscribe = lambda *a: subscribed.put(1)
    m.connect("127.0.0.1", server.mqtt_port)
    m.loop_start()
    try:
        m.subscribe(f"{topic}/#", qos=1)
        subscribed.get(timeout=10)
        values = [(f"{codec}-{i}-" + "payload " * 20).encode() for i in range(40)]
        produce(server, topic, values, **{"compression.type": codec, "linger.ms": 100})
        assert stored_codecs(server, topic) == {num}
        recs = server.get(f"/v1/streams/{topic}/partitions/0/records",
                          params={"offset": 0, "limit": 100}).json()["records"]
        assert [r["value"] for r in recs] == [v.decode() for v in values]
        assert [r["key"] for r in recs] == [f"k{i}" for i in range(40)]
        assert [r["offset"] for r in recs] == list(range(40))
        got = [q.get(timeout=10).payload for _ in values]
        assert got == values
    finally:
        m.loop_stop()
        m.disconnect()
    # A later subscriber catches up from the log (the catch-up path).
    c = server.get(f"/v1/streams/{topic}/partitions/0/records", params={"offset": 39}).json()["records"]
    assert c[0]["value"] == values[39].decode()


def test_zero_copy_fetch_large(server):
    """Several MiB fetched from segment files (sendfile), in classic and
    flexible Fetch versions (kafka-python uses classic ones)."""
    value = b"z" * 1024
    p = Producer({"bootstrap.servers": bootstrap(server), "linger.ms": 20})
    for i in range(6000):
        p.produce("bigfetch", value=value + str(i).encode())
    assert p.flush(30) == 0
    c, msgs = consume(server, "bigfetch", 6000, timeout=60)
    c.close()
    assert len(msgs) == 6000
    assert [m.offset() for m in msgs] == list(range(6000))
    assert msgs[-1].value() == value + b"5999"
    kafka = pytest.importorskip("kafka")
    kc = kafka.KafkaConsumer("bigfetch", bootstrap_servers=bootstrap(server), auto_offset_reset="earliest",
                             consumer_timeout_ms=10000, api_version=(2, 0))
    n = 0
    last = None
    for m in kc:
        n += 1
        last = m.value
        if n == 6000:
            break
    kc.close()
    assert n == 6000 and last == value + b"5999"
