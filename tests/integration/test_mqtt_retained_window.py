"""Retained messages sent at SUBSCRIBE when they outnumber the client's
window (Receive Maximum, or mqtt.max_inflight): they wait for PUBACKs and
all arrive at the subscription's QoS with RETAIN set, none downgraded to
QoS 0 (docs/mqtt.md)."""
import queue
import uuid

import pytest

mqtt = pytest.importorskip("paho.mqtt.client")
from paho.mqtt.packettypes import PacketTypes  # noqa: E402
from paho.mqtt.properties import Properties  # noqa: E402


def connect(server, version, receive_maximum=None):
    """A connected paho client whose messages land in c.q."""
    cid = "rw-" + uuid.uuid4().hex[:8]
    if version == mqtt.MQTTv5:
        c = mqtt.Client(client_id=cid, protocol=mqtt.MQTTv5)
    else:
        c = mqtt.Client(client_id=cid, protocol=mqtt.MQTTv311, clean_session=True)
    c.q = queue.Queue()
    c.on_message = lambda cl, ud, msg: c.q.put(msg)
    connected = queue.Queue()
    if version == mqtt.MQTTv5:
        props = None
        if receive_maximum:
            props = Properties(PacketTypes.CONNECT)
            props.ReceiveMaximum = receive_maximum
        c.on_connect = lambda cl, ud, flags, rc, p=None: connected.put(rc)
        c.connect("127.0.0.1", server.mqtt_port, keepalive=30, clean_start=True, properties=props)
    else:
        c.on_connect = lambda cl, ud, flags, rc: connected.put(rc)
        c.connect("127.0.0.1", server.mqtt_port, keepalive=30)
    c.loop_start()
    assert connected.get(timeout=10) == 0
    return c


def stop(c):
    c.disconnect()
    c.loop_stop()


def publish_retained(server, prefix, n):
    pub = connect(server, mqtt.MQTTv311)
    for i in range(n):
        pub.publish(f"{prefix}/{i}", f"state-{i}", qos=1, retain=True).wait_for_publish(10)
    stop(pub)


def subscribe_and_collect(c, filt, n):
    done = queue.Queue()
    c.on_subscribe = lambda *a: done.put(a)
    c.subscribe(filt, 1)
    done.get(timeout=10)
    got = {}
    for _ in range(n):
        m = c.q.get(timeout=10)
        assert m.topic not in got, f"{m.topic} received twice"
        got[m.topic] = m
    with pytest.raises(queue.Empty):
        c.q.get(timeout=0.3)
    return got


def test_retained_beyond_receive_maximum_v5(server):
    """MQTT 5, Receive Maximum 10, 50 retained topics: all 50 at QoS 1."""
    publish_retained(server, "dev5", 50)
    c = connect(server, mqtt.MQTTv5, receive_maximum=10)
    got = subscribe_and_collect(c, "dev5/#", 50)
    assert sorted(got) == sorted(f"dev5/{i}" for i in range(50))
    for i in range(50):
        m = got[f"dev5/{i}"]
        assert (m.qos, m.retain, m.payload) == (1, True, f"state-{i}".encode())
    stop(c)


def test_retained_beyond_max_inflight_v311(make_server):
    """MQTT 3.1.1 (no Receive Maximum): the server's window of 4 holds back
    the rest of 30 retained messages until PUBACKs come; all at QoS 1."""
    server = make_server(["--mqtt.max_inflight", "4"])
    publish_retained(server, "dev3", 30)
    c = connect(server, mqtt.MQTTv311)
    got = subscribe_and_collect(c, "dev3/+", 30)
    assert all(m.qos == 1 and m.retain for m in got.values())
    assert sorted(got) == sorted(f"dev3/{i}" for i in range(30))
    stop(c)
