"""MQTT persistent sessions across a server restart (SIGTERM and SIGKILL):
in-flight QoS 1/2 messages resent with DUP and their packet ids, PUBREL
for QoS 2 past PUBREC, inbound QoS 2 packet ids kept, wills kept, retained
messages sent at SUBSCRIBE resent (also after a plain reconnect). A small
raw-socket MQTT 5 / 3.1.1 client sees the exact packets (paho keeps its own
session in memory and hides them)."""
import signal
import socket
import struct
import time
import uuid

import pytest

PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP, SUBACK, CONNACK = 3, 4, 5, 6, 7, 9, 2


def mqtt_str(s):
    b = s.encode() if isinstance(s, str) else s
    return struct.pack(">H", len(b)) + b


def varint(n):
    out = b""
    while True:
        d = n % 128
        n //= 128
        out += bytes([d | (0x80 if n else 0)])
        if not n:
            return out


def packet(first, body):
    return bytes([first]) + varint(len(body)) + body


class Raw:
    """An MQTT 5 (or 3.1.1: version=4, where clean=False is a persistent
    session and |expiry| is not sent) client on a plain socket: packets in,
    packets out."""

    def __init__(self, port, cid, clean, expiry=3600, will=None, version=5):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.buf = b""
        self.v5 = version == 5
        self.retain = False  # RETAIN of the last PUBLISH received
        flags = 0x02 if clean else 0
        props = b"\x11" + struct.pack(">I", expiry)
        payload = mqtt_str(cid)
        if will:
            topic, msg, delay = will
            flags |= 0x04 | (1 << 3)  # will, QoS 1
            wprops = b"\x18" + struct.pack(">I", delay)
            payload += varint(len(wprops)) + wprops + mqtt_str(topic) + mqtt_str(msg)
        props = varint(len(props)) + props if self.v5 else b""
        body = mqtt_str("MQTT") + bytes([version, flags]) + struct.pack(">H", 30) + props + payload
        self.s.sendall(packet(0x10, body))
        t, _, b = self.read()
        assert t == CONNACK and b[1] == 0, b
        self.present = b[0] & 1

    def read(self, timeout=5):
        """(type, flags, body) of the next packet, or None after |timeout|."""
        self.s.settimeout(timeout)
        while True:
            if len(self.buf) >= 2:
                n, mul, i = 0, 1, 1
                while i < len(self.buf):
                    n += (self.buf[i] & 0x7F) * mul
                    mul *= 128
                    i += 1
                    if not self.buf[i - 1] & 0x80:
                        break
                else:
                    i = None
                if i is not None and len(self.buf) >= i + n:
                    first, body = self.buf[0], self.buf[i:i + n]
                    self.buf = self.buf[i + n:]
                    return first >> 4, first & 0x0F, body
            try:
                data = self.s.recv(65536)
            except socket.timeout:
                return None
            if not data:
                return None
            self.buf += data

    def publish_in(self):
        """The next packet, which must be a PUBLISH: (pid, qos, dup, payload)."""
        p = self.read()
        assert p is not None and p[0] == PUBLISH, p
        _, flags, b = p
        qos, dup = (flags >> 1) & 3, bool(flags & 8)
        self.retain = bool(flags & 1)
        tl = struct.unpack(">H", b[:2])[0]
        off = 2 + tl
        pid = struct.unpack(">H", b[off:off + 2])[0] if qos else 0
        off += 2 if qos else 0
        if not self.v5:
            return pid, qos, dup, b[off:]
        n, mul = 0, 1
        while True:
            c = b[off]
            off += 1
            n += (c & 0x7F) * mul
            mul *= 128
            if not c & 0x80:
                break
        return pid, qos, dup, b[off + n:]

    def subscribe(self, filt, qos):
        body = struct.pack(">H", 1) + (b"\x00" if self.v5 else b"") + mqtt_str(filt) + bytes([qos])
        self.s.sendall(packet(0x82, body))
        t, _, b = self.read()
        assert t == SUBACK and b[-1] == qos

    def publish(self, topic, payload, qos, pid, dup=False, retain=False):
        first = 0x30 | (qos << 1) | (0x08 if dup else 0) | (0x01 if retain else 0)
        props = b"\x00" if self.v5 else b""
        self.s.sendall(packet(first, mqtt_str(topic) + struct.pack(">H", pid) + props + payload))

    def ack(self, t, pid):
        self.s.sendall(packet((t << 4) | (0x02 if t == PUBREL else 0), struct.pack(">H", pid)))

    def expect_ack(self, t, pid):
        p = self.read()
        assert p is not None and p[0] == t, p
        assert struct.unpack(">H", p[2][:2])[0] == pid
        return p[2][2] if len(p[2]) > 2 else 0

    def nothing(self, timeout=1.0):
        p = self.read(timeout)
        assert p is None, p

    def close(self):
        self.s.close()


def mqtt_pub(server, topic, payload, qos, retain=False):
    c = Raw(server.mqtt_port, "p-" + uuid.uuid4().hex[:6], True, 0)
    c.publish(topic, payload, qos, 1, retain=retain)
    c.expect_ack(PUBACK if qos == 1 else PUBREC, 1)
    if qos == 2:
        c.ack(PUBREL, 1)
        c.expect_ack(PUBCOMP, 1)
    c.close()


def stop(server, sig):
    if sig == signal.SIGKILL:
        time.sleep(1.5)  # the session is saved once a second
    rc = server.stop(sig)
    # A graceful stop exits 0: under ASan a leak report would not.
    assert sig != signal.SIGTERM or rc == 0, f"junction exited with {rc}: {server.read_log()}"


def records(server, stream):
    r = server.get(f"/v1/streams/{stream}/partitions/0/records", params={"offset": 0})
    if r.status_code == 404:
        return []  # nothing published there yet
    assert r.status_code == 200, r.text
    return r.json()["records"]


SIGNALS = [pytest.param(signal.SIGTERM, id="sigterm"), pytest.param(signal.SIGKILL, id="sigkill")]
FSYNC = ["--streams.fsync", "always"]


@pytest.mark.parametrize("sig", SIGNALS)
def test_qos1_inflight_resent_with_same_id(make_server, sig):
    server = make_server(FSYNC)
    cid = "q1-" + uuid.uuid4().hex[:6]
    c = Raw(server.mqtt_port, cid, True)
    c.subscribe("rq1/#", 1)
    mqtt_pub(server, "rq1/a", b"m1", 1)
    pid, qos, dup, payload = c.publish_in()
    assert (qos, dup, payload) == (1, False, b"m1")
    stop(server, sig)  # not acknowledged
    c.close()
    server.start()
    c = Raw(server.mqtt_port, cid, False)
    assert c.present == 1
    assert c.publish_in() == (pid, 1, True, b"m1")
    c.ack(PUBACK, pid)
    c.nothing()
    # New messages are new packets.
    mqtt_pub(server, "rq1/a", b"m2", 1)
    pid2, qos, dup, payload = c.publish_in()
    assert (qos, dup, payload) == (1, False, b"m2")
    c.ack(PUBACK, pid2)
    c.close()


@pytest.mark.parametrize("sig", SIGNALS)
def test_qos2_outbound_pubrel_after_restart(make_server, sig):
    server = make_server(FSYNC)
    cid = "q2o-" + uuid.uuid4().hex[:6]
    c = Raw(server.mqtt_port, cid, True)
    c.subscribe("rq2/#", 2)
    mqtt_pub(server, "rq2/a", b"x", 2)
    pid, qos, dup, payload = c.publish_in()
    assert (qos, dup, payload) == (2, False, b"x")
    c.ack(PUBREC, pid)
    c.expect_ack(PUBREL, pid)
    stop(server, sig)  # PUBCOMP never sent
    c.close()
    server.start()
    c = Raw(server.mqtt_port, cid, False)
    assert c.present == 1
    c.expect_ack(PUBREL, pid)  # not the PUBLISH again, nor a new packet id
    c.nothing()
    c.ack(PUBCOMP, pid)
    c.nothing()
    c.close()


@pytest.mark.parametrize("sig", SIGNALS)
def test_qos2_inbound_resend_stored_once(make_server, sig):
    server = make_server(FSYNC)
    cid = "q2i-" + uuid.uuid4().hex[:6]
    c = Raw(server.mqtt_port, cid, True)
    c.publish("rin/a", b"once", 2, 7)
    c.expect_ack(PUBREC, 7)
    stop(server, sig)
    c.close()
    server.start()
    c = Raw(server.mqtt_port, cid, False)
    assert c.present == 1
    c.publish("rin/a", b"once", 2, 7, dup=True)
    c.expect_ack(PUBREC, 7)
    c.ack(PUBREL, 7)
    assert c.expect_ack(PUBCOMP, 7) == 0x00
    c.close()
    assert len(records(server, "rin")) == 1


@pytest.mark.parametrize("sig", SIGNALS)
def test_will_delay_survives_restart(make_server, sig):
    server = make_server(FSYNC)
    watcher_id = "ww-" + uuid.uuid4().hex[:6]
    w = Raw(server.mqtt_port, watcher_id, True)
    w.subscribe("rwill/#", 1)
    # Published after its 2 s delay, counted from the stop.
    c = Raw(server.mqtt_port, "wd-" + uuid.uuid4().hex[:6], True, 3600, ("rwill/a", b"gone", 2))
    # Cancelled by a reconnect within its delay.
    cid_b = "wb-" + uuid.uuid4().hex[:6]
    d = Raw(server.mqtt_port, cid_b, True, 3600, ("rwill/b", b"back", 30))
    stop(server, sig)
    c.close()
    d.close()
    w.close()
    server.start()
    d = Raw(server.mqtt_port, cid_b, False)
    assert d.present == 1
    w = Raw(server.mqtt_port, watcher_id, False)
    deadline = time.monotonic() + 10
    got = []
    while time.monotonic() < deadline and not got:
        got = records(server, "rwill")
        time.sleep(0.2)
    assert [r["value"] for r in got] == ["gone"]
    time.sleep(1.5)
    assert len(records(server, "rwill")) == 1
    pid, qos, dup, payload = w.publish_in()
    assert payload == b"gone"
    w.ack(PUBACK, pid)
    d.close()
    w.close()


VERSIONS = [pytest.param(4, id="v311"), pytest.param(5, id="v5")]


def retained_inflight(server, version):
    """A persistent session (3.1.1 clean session 0, or 5.0 with a session
    expiry) that got a QoS 1 retained message at SUBSCRIBE and did not
    acknowledge it: (client id, packet id), the socket closed."""
    topic = "rret/" + uuid.uuid4().hex[:6]
    mqtt_pub(server, topic, b"kept", 1, retain=True)
    cid = "rr-" + uuid.uuid4().hex[:6]
    c = Raw(server.mqtt_port, cid, version == 5, version=version)
    c.subscribe("rret/#", 1)
    pid, qos, dup, payload = c.publish_in()
    assert (qos, dup, payload, c.retain) == (1, False, b"kept", True)
    c.nothing(0.3)
    c.close()  # no PUBACK
    return cid, pid


def expect_retained_again(server, cid, pid, version):
    """4.4: the same PUBLISH again, DUP=1, same packet id, RETAIN=1."""
    c = Raw(server.mqtt_port, cid, False, version=version)
    assert c.present == 1
    assert c.publish_in() == (pid, 1, True, b"kept")
    assert c.retain
    c.ack(PUBACK, pid)
    c.nothing()
    c.close()
    # Acknowledged: not sent again.
    c = Raw(server.mqtt_port, cid, False, version=version)
    c.nothing()
    c.close()


@pytest.mark.parametrize("version", VERSIONS)
def test_retained_inflight_resent_on_reconnect(make_server, version):
    server = make_server(FSYNC)
    cid, pid = retained_inflight(server, version)
    expect_retained_again(server, cid, pid, version)


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("sig", SIGNALS)
def test_retained_inflight_resent_after_restart(make_server, sig, version):
    server = make_server(FSYNC)
    cid, pid = retained_inflight(server, version)
    stop(server, sig)
    server.start()
    expect_retained_again(server, cid, pid, version)


def test_retained_inflight_resent_to_paho(make_server):
    """paho-mqtt 3.1.1 takes over the session and sees DUP, RETAIN and the
    packet id of the first delivery."""
    mqtt = pytest.importorskip("paho.mqtt.client")
    server = make_server(FSYNC)
    cid, pid = retained_inflight(server, 4)
    got = []
    c = mqtt.Client(client_id=cid, clean_session=False, protocol=mqtt.MQTTv311)
    c.on_message = lambda _c, _u, m: got.append((m.mid, m.qos, m.dup, m.retain, m.payload))
    c.connect("127.0.0.1", server.mqtt_port)
    c.loop_start()
    try:
        deadline = time.monotonic() + 5
        while not got and time.monotonic() < deadline:
            time.sleep(0.05)
        assert got == [(pid, 1, 1, 1, b"kept")]
    finally:
        c.disconnect()
        c.loop_stop()
