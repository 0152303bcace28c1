"""The MQTT door with real clients: paho-mqtt (3.1.1 and 5.0), Debian's
mosquitto_pub / mosquitto_sub and mqtt.js (npm), over TCP and over
WebSocket (GET /mqtt), against the junction binary."""
import base64
import json
import os
import queue
import select
import shutil
import socket
import struct
import subprocess
import time
import uuid

import pytest

from conftest import ROOT, eventually

mqtt = pytest.importorskip("paho.mqtt.client")
from paho.mqtt.packettypes import PacketTypes  # noqa: E402
from paho.mqtt.properties import Properties  # noqa: E402

V311 = mqtt.MQTTv311
V5 = mqtt.MQTTv5


def client(server, cid=None, version=V311, clean=True, expiry=None, will=None, ws=False):
    """A connected paho client whose messages land in c.q (over WebSocket
    at /mqtt on the HTTP port when |ws|)."""
    cid = cid or "t-" + uuid.uuid4().hex[:8]
    transport = "websockets" if ws else "tcp"
    if version == V5:
        c = mqtt.Client(client_id=cid, protocol=V5, transport=transport)
    else:
        c = mqtt.Client(client_id=cid, protocol=V311, clean_session=clean, transport=transport)
    if ws:
        c.ws_set_options(path="/mqtt")
    port = int(server.url.rsplit(":", 1)[1]) if ws else server.mqtt_port
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
        c.connect("127.0.0.1", port, keepalive=30, clean_start=clean, properties=props)
    else:
        c.on_connect = lambda cl, ud, flags, rc: connected.put((flags, rc))
        c.connect("127.0.0.1", port, keepalive=30)
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
    ga, gb = [], []

    def drained():
        while not a.q.empty():
            ga.append(int(a.q.get().payload))
        while not b.q.empty():
            gb.append(int(b.q.get().payload))
        return len(ga) + len(gb) >= 20
    eventually(drained)
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
    assert not any(k.startswith(":") for k in rec["headers"])  # ":mqtt-qos" is internal
    assert not any(k.startswith(":") for k, _ in m.properties.UserProperty)
    stop(sub)
    stop(pub)


@pytest.mark.parametrize("version", [V311, V5])
def test_delivery_qos_is_min_of_published_and_granted(server, version):
    """MQTT 3.8.4: a message goes out at min(published QoS, granted QoS);
    records from other doors at the granted QoS."""
    sub2 = client(server, version=version)
    subscribe(sub2, "dq/two/#", 2)
    sub1 = client(server, version=version)
    subscribe(sub1, "dq/one/#", 1)
    pub = client(server, version=version)
    pub.publish("dq/two/a", "q0", qos=0).wait_for_publish(10)
    m = get(sub2)
    assert (m.payload, m.qos) == (b"q0", 0)
    pub.publish("dq/two/a", "q1", qos=1).wait_for_publish(10)
    m = get(sub2)
    assert (m.payload, m.qos) == (b"q1", 1)
    pub.publish("dq/one/a", "q2", qos=2).wait_for_publish(10)
    m = get(sub1)
    assert (m.payload, m.qos) == (b"q2", 1)
    r = server.post("/v1/publish/dq/two/rest", data=b"from-rest")
    assert r.status_code in (200, 201), r.text
    m = get(sub2)
    assert (m.payload, m.qos) == (b"from-rest", 2)
    r = server.get("/v1/streams/dq/partitions/0/records", params={"offset": 0})
    assert r.status_code == 200
    assert all(not k.startswith(":") for rec in r.json()["records"] for k in rec["headers"])
    for c in (sub1, sub2, pub):
        stop(c)


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
    # -d prints the client's packets (line-buffered by stdbuf), so the
    # publishes can wait for its SUBACK.
    sub = subprocess.Popen(["stdbuf", "-oL", "mosquitto_sub", "-d", "-p", port, "-C", "3", "-v", "-t", "mc/#"],
                           stdout=subprocess.PIPE)
    out, deadline = b"", time.monotonic() + 10
    while b"received SUBACK" not in out:
        assert time.monotonic() < deadline, f"no SUBACK from mosquitto_sub: {out!r}"
        if select.select([sub.stdout], [], [], 0.5)[0]:
            chunk = os.read(sub.stdout.fileno(), 4096)
            assert chunk, f"mosquitto_sub ended before its SUBACK: {out!r}"
            out += chunk
    for i in range(3):
        subprocess.run(["mosquitto_pub", "-p", port, "-q", "1", "-t", "mc/t", "-m", f"m{i}"], check=True, timeout=10)
    rest, _ = sub.communicate(timeout=10)
    lines = (out + rest).decode().splitlines()
    assert [ln for ln in lines if ln.startswith("mc/")] == ["mc/t m0", "mc/t m1", "mc/t m2"]


def test_sys_topics(server):
    c = client(server)
    subscribe(c, "$SYS/broker/version", 0)
    assert get(c).payload.startswith(b"junction")
    stop(c)


# ---- MQTT over WebSocket (GET /mqtt, subprotocol "mqtt") ----

@pytest.mark.parametrize("version", [V311, V5])
def test_websocket_paho_round_trip_and_cross_transport(server, version):
    """paho over WebSocket talks to paho over TCP, QoS 2 both ways."""
    wsc = client(server, version=version, ws=True)
    tcp = client(server, version=version)
    subscribe(wsc, "wsx/in", 2)
    subscribe(tcp, "wsx/out", 2)
    for i in range(3):
        tcp.publish("wsx/in", f"t{i}", qos=2).wait_for_publish(10)
        wsc.publish("wsx/out", f"w{i}", qos=2).wait_for_publish(10)
    assert [get(wsc).payload for _ in range(3)] == [b"t0", b"t1", b"t2"]
    assert [get(tcp).payload for _ in range(3)] == [b"w0", b"w1", b"w2"]
    big = os.urandom(200000)  # many WebSocket frames' worth in one packet
    tcp.publish("wsx/in", big, qos=1).wait_for_publish(10)
    assert get(wsc).payload == big
    stop(wsc)
    stop(tcp)


def test_websocket_will_on_abrupt_close(server):
    watcher = client(server)
    subscribe(watcher, "wsw/will", 1)
    c = client(server, ws=True, will=("wsw/will", b"gone", 1))
    c.loop_stop()
    c.socket().close()  # no DISCONNECT, no close frame
    assert get(watcher).payload == b"gone"
    stop(watcher)


def ws_open(server, protocol="mqtt"):
    """A raw WebSocket to /mqtt; returns (socket, response head)."""
    port = int(server.url.rsplit(":", 1)[1])
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    key = base64.b64encode(os.urandom(16)).decode()
    proto = f"Sec-WebSocket-Protocol: {protocol}\r\n" if protocol else ""
    s.sendall((f"GET /mqtt HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{proto}\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(4096)
        assert chunk, head
        head += chunk
    return s, head


def ws_frame(opcode, payload):
    key = os.urandom(4)
    n = len(payload)
    h = bytes([0x80 | opcode]) + (bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + struct.pack(">H", n))
    return h + key + bytes(c ^ key[i % 4] for i, c in enumerate(payload))


def ws_read(s, want):
    """Reads server frames until |want| payload bytes of binary data (or a
    close frame) arrived; returns (data, close code or None)."""
    buf, data = b"", b""
    while len(data) < want:
        while len(buf) < 2 or len(buf) < 2 + (buf[1] & 0x7F):
            chunk = s.recv(65536)
            if not chunk:
                return data, None
            buf += chunk
        op, n = buf[0] & 0x0F, buf[1] & 0x7F
        assert n < 126 and not buf[1] & 0x80
        payload, buf = buf[2:2 + n], buf[2 + n:]
        if op == 8:
            return data, struct.unpack(">H", payload[:2])[0]
        assert op == 2, op
        data += payload
    return data, None


def test_websocket_handshake_and_stream_framing(server):
    s, head = ws_open(server)
    assert b" 101 " in head.split(b"\r\n", 1)[0]
    assert b"Sec-WebSocket-Protocol: mqtt\r\n" in head
    # CONNECT (5.0) split over two messages, then SUBSCRIBE + PINGREQ in one.
    connect = bytes([0x10, 13, 0, 4]) + b"MQTT" + bytes([5, 2, 0, 30, 0, 0, 0])
    s.sendall(ws_frame(2, connect[:5]) + ws_frame(2, connect[5:]))
    connack, _ = ws_read(s, 5)
    assert connack[0] == 0x20 and connack[3] == 0, connack
    sub = bytes([0x82, 9, 0, 1, 0, 0, 3]) + b"a/b" + bytes([0])
    s.sendall(ws_frame(2, sub + bytes([0xC0, 0])))
    data, _ = ws_read(s, 6 + 2)
    assert data[0] == 0x90 and data[-2:] == bytes([0xD0, 0]), data
    # A text message is not MQTT: close 1003 (MQTT 6.0.0-1).
    s.sendall(ws_frame(1, b"hello"))
    _, code = ws_read(s, 1 << 20)
    assert code == 1003
    s.close()
    # The older clients' subprotocol is accepted too.
    s, head = ws_open(server, "mqttv3.1")
    assert b"Sec-WebSocket-Protocol: mqttv3.1\r\n" in head
    s.close()
    # A list without mqtt is refused before the upgrade.
    s, head = ws_open(server, "junction.v1")
    assert b" 400 " in head.split(b"\r\n", 1)[0]
    s.close()
    assert server.get("/v1/health").status_code == 200


# ---- mqtt.js (npm `mqtt`), over TCP and WebSocket ----

JS = os.path.join(ROOT, "tests", "js")


def npm_ready():
    if not shutil.which("node") or not shutil.which("npm"):
        pytest.skip("node and npm are not installed (scripts/install-deps.sh test)")
    if not os.path.isdir(os.path.join(JS, "node_modules", "mqtt")):
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=JS, check=True, capture_output=True, timeout=300)


@pytest.mark.parametrize("transport", ["tcp", "ws"])
@pytest.mark.parametrize("version", [4, 5])
def test_mqtt_js(server, transport, version):
    npm_ready()
    if transport == "tcp":
        url = f"mqtt://127.0.0.1:{server.mqtt_port}"
    else:
        url = server.url.replace("http://", "ws://") + "/mqtt"
    p = subprocess.run(["node", os.path.join(JS, "mqtt_client.mjs"), url, str(version)], capture_output=True,
                       timeout=60, text=True)
    assert p.returncode == 0, p.stdout + p.stderr
    out = json.loads(p.stdout.strip().splitlines()[-1])
    assert out["granted"] == [2, 1]
    assert out["retained"]["payload"] == "kept" and out["retained"]["retain"] is True
    got = {m["topic"].rsplit("/", 1)[1]: m for m in out["messages"]}
    for q in (0, 1, 2):
        assert got[str(q)]["payload"] == f"m{q}"
        assert got[str(q)]["qos"] >= q  # docs/mqtt.md: delivered at the subscription's QoS
    if version == 5:
        assert got["props"]["userProperties"] == {"a": "1", "b": ["x", "y"]}
        assert got["props"]["contentType"] == "text/plain"
    else:
        assert "props" not in got
