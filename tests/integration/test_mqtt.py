"""The MQTT door with real clients: paho-mqtt (3.1.1 and 5.0) and Debian's
mosquitto_pub / mosquitto_sub, against the junction binary."""
import base64
import queue
import socket
import subprocess
import time
import uuid

import pytest

mqtt = pytest.importorskip("paho.mqtt.client")
from paho.mqtt.packettypes import PacketTypes  # noqa: E402
from paho.mqtt.properties import Properties  # noqa: E402

V311 = mqtt.MQTTv311
V5 = mqtt.MQTTv5


def client(server, cid=None, version=V311, clean=True, expiry=None, will=None):
    """A connected paho client whose messages land in c.q."""
    cid = cid or "t-" + uuid.uuid4().hex[:8]
    if version == V5:
        c = mqtt.Client(client_id=cid, protocol=V5)
    else:
        c = mqtt.Client(client_id=cid, protocol=V311, clean_session=clean)
    c.q = queue.Queue()
    c.on_message = lambda cl, ud, msg: c.q.put(msg)
    if will:
        c.will_set(*will)
    props = None
    if version == V5 and expiry is not None:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = expiry
    connected = queue.Queue()
    if version == V5:
        c.on_connect = lambda cl, ud, flags, rc, p=None: connected.put((flags, rc))
        c.connect("127.0.0.1", server.mqtt_port, keepalive=30, clean_start=clean, properties=props)
    else:
        c.on_connect = lambda cl, ud, flags, rc: connected.put((flags, rc))
        c.connect("127.0.0.1", server.mqtt_port, keepalive=30)
    c.loop_start()
    c.connack = connected.get(timeout=10)
    return c


def subscribe(c, topic, qos=0, **kw):
    done = queue.Queue()
    c.on_subscribe = lambda *a: done.put(a)
    if kw:
        c.subscribe(topic, options=mqtt.SubscribeOptions(qos=qos, **kw))
    else:
        c.subscribe(topic, qos)
    done.get(timeout=10)


def get(c, timeout=10):
    return c.q.get(timeout=timeout)


def stop(c):
    c.disconnect()
    c.loop_stop()


@pytest.mark.parametrize("version", [V311, V5])
@pytest.mark.parametrize("qos", [0, 1, 2])
def test_round_trip(server, version, qos):
    sub = client(server, version=version)
    subscribe(sub, "rt/+/x", qos)
    pub = client(server, version=version)
    for i in range(5):
        pub.publish("rt/a/x", f"m{i}", qos=qos).wait_for_publish(10)
    got = [get(sub) for _ in range(5)]
    assert [m.payload.decode() for m in got] == [f"m{i}" for i in range(5)]
    assert all(m.qos == qos and m.topic == "rt/a/x" for m in got)
    stop(sub)
    stop(pub)


@pytest.mark.parametrize("version", [V311, V5])
def test_retained(server, version):
    pub = client(server, version=version)
    pub.publish("ret/a", "one", qos=1, retain=True).wait_for_publish(10)
    pub.publish("ret/a", "two", qos=1, retain=True).wait_for_publish(10)
    pub.publish("ret/b", "bee", qos=1, retain=True).wait_for_publish(10)
    pub.publish("ret/b", "", qos=1, retain=True).wait_for_publish(10)  # clears
    sub = client(server, version=version)
    subscribe(sub, "ret/#", 1)
    m = get(sub)
    assert (m.topic, m.payload, m.retain) == ("ret/a", b"two", True)
    with pytest.raises(queue.Empty):
        get(sub, timeout=0.5)
    stop(sub)
    stop(pub)


def test_retain_handling_and_rap(server):
    pub = client(server, version=V5)
    pub.publish("rh/a", "kept", qos=1, retain=True).wait_for_publish(10)
    sub = client(server, version=V5)
    subscribe(sub, "rh/#", 1, retainHandling=2)
    with pytest.raises(queue.Empty):
        get(sub, timeout=0.5)
    sub2 = client(server, version=V5)
    subscribe(sub2, "rh/#", 1, retainAsPublished=True)
    assert get(sub2).retain
    pub.publish("rh/a", "live", qos=1, retain=True).wait_for_publish(10)
    m = get(sub2)
    assert m.payload == b"live" and m.retain
    m = get(sub)
    assert m.payload == b"live" and not m.retain
    for c in (pub, sub, sub2):
        stop(c)


@pytest.mark.parametrize("version", [V311, V5])
def test_will_on_abrupt_close(server, version):
    watcher = client(server, version=version)
    subscribe(watcher, "wills/#", 1)
    dying = client(server, version=version, will=("wills/dying", "gone", 1, False))
    dying.loop_stop()
    dying.socket().close()  # no DISCONNECT
    m = get(watcher)
    assert (m.topic, m.payload) == ("wills/dying", b"gone")
    polite = client(server, version=version, will=("wills/polite", "gone", 1, False))
    stop(polite)
    with pytest.raises(queue.Empty):
        get(watcher, timeout=0.7)
    stop(watcher)


@pytest.mark.parametrize("version", [V311, V5])
def test_persistent_session_reconnect_and_restart(make_server, version):
    server = make_server()
    cid = "persist-" + uuid.uuid4().hex[:6]
    c = client(server, cid=cid, version=version, clean=False, expiry=3600)
    subscribe(c, "ps/#", 1)
    stop(c)
    pub = client(server, version=version)
    pub.publish("ps/a", "while-away", qos=1).wait_for_publish(10)
    stop(pub)
    c = client(server, cid=cid, version=version, clean=False, expiry=3600)
    flags = c.connack[0]
    assert flags.get("session present") == 1
    assert get(c).payload == b"while-away"
    time.sleep(1.5)  # positions saved periodically and at disconnect
    stop(c)
    time.sleep(0.3)
    # Across a restart.
    pub = client(server, version=version)
    pub.publish("ps/a", "before-restart", qos=1).wait_for_publish(10)
    stop(pub)
    server.stop()
    server.start()
    pub = client(server, version=version)
    pub.publish("ps/b", "after-restart", qos=1).wait_for_publish(10)
    stop(pub)
    c = client(server, cid=cid, version=version, clean=False, expiry=3600)
    assert c.connack[0].get("session present") == 1
    got = [get(c).payload for _ in range(2)]
    assert got == [b"before-restart", b"after-restart"]
    with pytest.raises(queue.Empty):
        get(c, timeout=0.5)
    stop(c)


def test_shared_subscription(server):
    a = client(server, version=V5)
    b = client(server, version=V5)
    subscribe(a, "$share/g1/jobs/#", 1)
    subscribe(b, "$share/g1/jobs/#", 1)
    pub = client(server, version=V5)
    for i in range(20):
        pub.publish("jobs/x", str(i), qos=1).wait_for_publish(10)
    time.sleep(0.5)
    ga, gb = [], []
    while not a.q.empty():
        ga.append(int(a.q.get().payload))
    while not b.q.empty():
        gb.append(int(b.q.get().payload))
    assert sorted(ga + gb) == list(range(20))
    assert ga and gb
    for c in (a, b, pub):
        stop(c)


def test_user_properties_and_request_response(server):
    sub = client(server, version=V5)
    subscribe(sub, "props/#", 1)
    pub = client(server, version=V5)
    p = Properties(PacketTypes.PUBLISH)
    p.UserProperty = [("k1", "v1"), ("k2", "v2")]
    p.ContentType = "text/plain"
    p.ResponseTopic = "props/reply"
    p.CorrelationData = b"\x01\x02"
    p.PayloadFormatIndicator = 1
    pub.publish("props/a", "hi", qos=1, properties=p).wait_for_publish(10)
    m = get(sub)
    assert ("k1", "v1") in m.properties.UserProperty
    assert ("k2", "v2") in m.properties.UserProperty
    assert m.properties.ContentType == "text/plain"
    assert m.properties.ResponseTopic == "props/reply"
    assert m.properties.CorrelationData == b"\x01\x02"
    r = server.get("/v1/streams/props/partitions/0/records", params={"offset": 0})
    assert r.status_code == 200
    rec = r.json()["records"][0]
    assert rec["headers"]["k1"] == "v1"
    assert rec["headers"]["mqtt-response-topic"] == "props/reply"
    stop(sub)
    stop(pub)


def test_cross_door(server):
    sub = client(server, version=V5)
    subscribe(sub, "sensors/+/temp", 1)
    r = server.post("/v1/publish/sensors/kitchen/temp", data=b"21.5", headers={"X-Header-unit": "C"})
    assert r.status_code in (200, 201), r.text
    m = get(sub)
    assert (m.topic, m.payload) == ("sensors/kitchen/temp", b"21.5")
    pub = client(server, version=V311)
    pub.publish("xdoor/a/b", "from-mqtt", qos=1).wait_for_publish(10)
    stop(pub)
    r = server.get("/v1/streams/xdoor/partitions/0/records", params={"offset": 0})
    body = r.json()
    rec = body["records"][0]
    value = rec.get("value")
    if rec.get("encoding") == "base64" or "value_base64" in rec:
        value = base64.b64decode(rec.get("value_base64", value)).decode()
    assert value == "from-mqtt"
    stop(sub)


def test_bad_input_closes_connection(server):
    # A PUBLISH before CONNECT, and a CONNECT with a broken remaining length.
    for raw in (b"\x30\x05\x00\x01a\x00\x00", b"\x10\xff\xff\xff\xff\x7f", b"\x10\x03\x00\x01A"):
        s = socket.create_connection(("127.0.0.1", server.mqtt_port), timeout=5)
        s.sendall(raw)
        data = b""
        try:
            while True:
                chunk = s.recv(100)
                if not chunk:
                    break
                data += chunk
        except socket.timeout:
            pytest.fail("connection not closed")
        s.close()
    # v5: a second CONNECT is a protocol error -> DISCONNECT 0x82.
    connect = bytes([0x10, 13, 0, 4]) + b"MQTT" + bytes([5, 2, 0, 30, 0, 0, 0])
    s = socket.create_connection(("127.0.0.1", server.mqtt_port), timeout=5)
    s.sendall(connect)
    head = s.recv(2)
    assert head[0] == 0x20
    s.recv(head[1])
    s.sendall(connect)
    data = b""
    while True:
        chunk = s.recv(100)
        if not chunk:
            break
        data += chunk
    s.close()
    assert data[0] == 0xE0 and data[2] == 0x82, data
    assert server.get("/v1/health").status_code == 200
    ok = client(server)
    stop(ok)


def test_mosquitto_clients(server):
    port = str(server.mqtt_port)
    sub = subprocess.Popen(["mosquitto_sub", "-p", port, "-C", "3", "-v", "-t", "mc/#"], stdout=subprocess.PIPE)
    time.sleep(0.5)
    for i in range(3):
        subprocess.run(["mosquitto_pub", "-p", port, "-q", "1", "-t", "mc/t", "-m", f"m{i}"], check=True, timeout=10)
    out, _ = sub.communicate(timeout=10)
    assert out.decode().splitlines() == ["mc/t m0", "mc/t m1", "mc/t m2"]


def test_sys_topics(server):
    c = client(server)
    subscribe(c, "$SYS/broker/version", 0)
    assert get(c).payload.startswith(b"junction")
    stop(c)
