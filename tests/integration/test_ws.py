"""The WebSocket door (/v1/ws, docs/ws.md) with a real client
(python3-websockets) and, for what a well-behaved client cannot send
(unmasked frames, broken UTF-8), raw frames over a socket."""
import asyncio
import base64
import json
import os
import socket
import struct

import pytest
import requests

websockets = pytest.importorskip("websockets")


def ws_url(server, query=""):
    return server.url.replace("http://", "ws://") + "/v1/ws" + query


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 30))


async def recv_json(ws, want=None, timeout=10):
    """Next JSON event (of type |want| when given, skipping others)."""
    while True:
        m = json.loads(await asyncio.wait_for(ws.recv(), timeout))
        if want is None or m.get("type") == want:
            return m


async def subscribe(ws, sid, filt, **kw):
    await ws.send(json.dumps({"op": "subscribe", "id": sid, "filter": filt, **kw}))
    ev = await recv_json(ws)
    assert ev == {"type": "subscribed", "id": sid}, ev


# ---- raw frames ----

def raw_connect(server, extra=""):
    port = int(server.url.rsplit(":", 1)[1])
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall((f"GET /v1/ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(4096)
        assert chunk, head
        head += chunk
    status = head.split(b"\r\n", 1)[0]
    assert b" 101 " in status, head
    return s, head.split(b"\r\n\r\n", 1)[1]


def frame(opcode, payload, fin=True, mask=True):
    b0 = (0x80 if fin else 0) | opcode
    n = len(payload)
    mbit = 0x80 if mask else 0
    if n < 126:
        h = bytes([b0, mbit | n])
    elif n < 65536:
        h = bytes([b0, mbit | 126]) + struct.pack(">H", n)
    else:
        h = bytes([b0, mbit | 127]) + struct.pack(">Q", n)
    if not mask:
        return h + payload
    key = os.urandom(4)
    return h + key + bytes(c ^ key[i % 4] for i, c in enumerate(payload))


def read_close_code(s, buf=b""):
    """Reads frames until a close frame; returns its code."""
    while True:
        while len(buf) < 2:
            chunk = s.recv(65536)
            if not chunk:
                raise AssertionError("connection closed without a close frame")
            buf += chunk
        n = buf[1] & 0x7F
        hl = 2
        if n == 126:
            hl = 4
        elif n == 127:
            hl = 10
        while len(buf) < hl:
            buf += s.recv(65536)
        if n == 126:
            n = struct.unpack(">H", buf[2:4])[0]
        elif n == 127:
            n = struct.unpack(">Q", buf[2:10])[0]
        while len(buf) < hl + n:
            chunk = s.recv(65536)
            assert chunk
            buf += chunk
        op = buf[0] & 0x0F
        payload = buf[hl:hl + n]
        buf = buf[hl + n:]
        if op == 0x8:
            return struct.unpack(">H", payload[:2])[0] if len(payload) >= 2 else 1005


# ---- tests ----

def test_subscribe_publish_ack(server):
    async def go():
        async with websockets.connect(ws_url(server), subprotocols=["junction.v1"]) as ws:
            assert ws.subprotocol == "junction.v1"
            await subscribe(ws, "s1", "sensors/#")
            await ws.send(json.dumps({"op": "publish", "subject": "sensors/kitchen/temp", "value": {"c": 21.5},
                                      "key": "k1", "headers": {"unit": "C"}, "ack": True, "ref": "r1"}))
            got = {}
            while len(got) < 2:
                ev = await recv_json(ws)
                got[ev["type"]] = ev
            ack, rec = got["ack"], got["record"]
            assert ack["ref"] == "r1" and ack["stream"] == "sensors" and ack["partition"] == 0
            assert rec["sub"] == "s1" and rec["offset"] == ack["offset"]
            assert rec["subject"] == "sensors/kitchen/temp" and rec["key"] == "k1"
            assert json.loads(rec["value"]) == {"c": 21.5} and rec["headers"] == {"unit": "C"}
            # Unsubscribe: no more records for s1.
            await ws.send(json.dumps({"op": "unsubscribe", "id": "s1"}))
            assert await recv_json(ws) == {"type": "unsubscribed", "id": "s1"}
            await ws.send(json.dumps({"op": "publish", "subject": "sensors/x", "value": "v", "ack": True,
                                      "ref": "r2"}))
            ev = await recv_json(ws)
            assert ev["type"] == "ack" and ev["ref"] == "r2"
    run(go())


def test_earliest_offset_group_replay(server):
    for i in range(5):
        assert server.post(f"/v1/publish/replay/{i}", data=str(i).encode()).status_code == 201

    async def go():
        async with websockets.connect(ws_url(server)) as ws:
            await subscribe(ws, "all", "replay/#", **{"from": "earliest"})
            vals = [(await recv_json(ws, "record"))["value"] for _ in range(5)]
            assert vals == ["0", "1", "2", "3", "4"]
            await subscribe(ws, "tail", "replay/#", **{"from": "3"})
            recs = [await recv_json(ws, "record") for _ in range(2)]
            assert [r["offset"] for r in recs if r["sub"] == "tail"] == [3, 4]
            # Consumer group: commit offset 2, a group subscription starts there.
            await ws.send(json.dumps({"op": "commit", "group": "g1", "stream": "replay", "partition": 0,
                                      "offset": 2, "ref": "c"}))
            ev = await recv_json(ws, "committed")
            assert ev["offset"] == 2
            await subscribe(ws, "grp", "replay/#", group="g1", **{"from": "earliest"})
            rec = await recv_json(ws, "record")
            assert rec["sub"] == "grp" and rec["offset"] == 2
    run(go())
    assert server.get("/v1/groups/g1").json()["offsets"][0]["offset"] == 2


def test_fragmented_message_and_ping(server):
    async def go():
        async with websockets.connect(ws_url(server)) as ws:
            cmd = json.dumps({"op": "ping", "ref": "frag"})
            await ws.send([cmd[:5], cmd[5:12], cmd[12:]])  # three frames
            ev = await recv_json(ws)
            assert ev == {"type": "pong", "ref": "frag"}
            pong = await ws.ping(b"hello")
            await asyncio.wait_for(pong, 5)
    run(go())


def test_errors_are_events(server):
    async def go():
        async with websockets.connect(ws_url(server)) as ws:
            for msg, code in [("{nope", "invalid_json"),
                              (json.dumps({"op": "fly", "ref": "x"}), "unknown_op"),
                              (json.dumps({"op": "subscribe", "id": "a", "filter": "a/#/b"}), "invalid_name"),
                              (json.dumps({"op": "unsubscribe", "id": "zz"}), "not_found"),
                              (json.dumps({"op": "publish", "subject": "a/#", "value": "x"}), "invalid_name")]:
                await ws.send(msg)
                ev = await recv_json(ws)
                assert ev["type"] == "error" and ev["code"] == code, (msg, ev)
            await subscribe(ws, "dup", "a/#")
            await ws.send(json.dumps({"op": "subscribe", "id": "dup", "filter": "b/#", "ref": "q"}))
            ev = await recv_json(ws)
            assert ev["code"] == "already_exists" and ev["ref"] == "q"
            # The connection is still fine.
            await ws.send(json.dumps({"op": "ping"}))
            assert (await recv_json(ws))["type"] == "pong"
    run(go())


def test_close_codes_raw(server):
    # Unmasked client frame: 1002.
    s, rest = raw_connect(server)
    s.sendall(frame(0x1, b'{"op":"ping"}', mask=False))
    assert read_close_code(s, rest) == 1002
    s.close()
    # Invalid UTF-8 in a text frame: 1007.
    s, rest = raw_connect(server)
    s.sendall(frame(0x1, b'{"op":"\xff\xfe"}'))
    assert read_close_code(s, rest) == 1007
    s.close()
    # Larger than the maximum message (1 MiB by default): 1009.
    s, rest = raw_connect(server)
    try:
        s.sendall(frame(0x2, b"x" * ((1 << 20) + 10)))
    except OSError:
        pass  # the server may close before reading it all
    assert read_close_code(s, rest) == 1009
    s.close()
    # A reserved opcode: 1002.
    s, rest = raw_connect(server)
    s.sendall(frame(0x3, b"x"))
    assert read_close_code(s, rest) == 1002
    s.close()
    # A normal close is echoed with its code.
    s, rest = raw_connect(server)
    s.sendall(frame(0x8, struct.pack(">H", 1000) + b"bye"))
    assert read_close_code(s, rest) == 1000
    s.close()


def test_close_codes_client(server):
    async def go():
        async with websockets.connect(ws_url(server), max_size=None) as ws:
            await ws.send(b"y" * ((1 << 20) + 1))
            with pytest.raises(websockets.ConnectionClosed) as e:
                await asyncio.wait_for(ws.recv(), 10)
            assert e.value.code == 1009
    run(go())


def test_handshake_refusals(server):
    base = {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}
    r = requests.get(server.url + "/v1/ws", headers={**base, "Sec-WebSocket-Version": "8"}, timeout=10)
    assert r.status_code == 426 and r.headers["Sec-WebSocket-Version"] == "13"
    r = requests.get(server.url + "/v1/ws", headers={**base, "Sec-WebSocket-Version": "13",
                                                     "Sec-WebSocket-Key": "short"}, timeout=10)
    assert r.status_code == 400
    r = requests.get(server.url + "/v1/ws", timeout=10)
    assert r.status_code == 400
    r = requests.get(server.url + "/v1/ws", headers={**base, "Sec-WebSocket-Version": "13",
                                                     "Sec-WebSocket-Protocol": "mqtt"}, timeout=10)
    assert r.status_code == 400
    # RFC 6455's own example key.
    s, _ = raw_connect(server)
    s.close()


def test_permessage_deflate(server):
    big = "compress me please " * 2000

    async def go():
        async with websockets.connect(ws_url(server)) as ws:  # offers permessage-deflate
            ext = [e.name for e in ws.extensions]
            assert "permessage-deflate" in ext
            await subscribe(ws, "z", "zip/#")
            await ws.send(json.dumps({"op": "publish", "subject": "zip/a", "value": big, "ack": True}))
            rec = await recv_json(ws, "record")
            assert rec["value"] == big
        # The same without compression.
        async with websockets.connect(ws_url(server), compression=None) as ws:
            assert ws.extensions == []
            await subscribe(ws, "z", "zip/#", **{"from": "earliest"})
            assert (await recv_json(ws, "record"))["value"] == big
    run(go())


def test_binary_envelope(server):
    def env_publish(subject, value, key=None, ref=b"", ack=True):
        flags = (1 if ack else 0) | (2 if key is not None else 0)
        k = key or b""
        return (bytes([1, flags, len(ref), 0]) + struct.pack(">HH", len(subject), len(k)) + ref +
                subject + k + value)

    async def go():
        async with websockets.connect(ws_url(server)) as ws:
            await subscribe(ws, "b", "raw/#", format="binary")
            payload = bytes(range(256))
            await ws.send(env_publish(b"raw/x", payload, key=b"K", ref=b"r7"))
            got_ack = got_rec = False
            while not (got_ack and got_rec):
                m = await asyncio.wait_for(ws.recv(), 10)
                if isinstance(m, str):
                    ev = json.loads(m)
                    assert ev["type"] == "ack" and ev["ref"] == "r7", ev
                    got_ack = True
                    continue
                assert m[0] == 2 and m[1] & 2
                s, t = m[2], m[3]
                j, k = struct.unpack(">HH", m[4:8])
                part, off, ts = struct.unpack(">IQQ", m[8:28])
                p = 28
                assert m[p:p + s] == b"b"
                p += s
                assert m[p:p + t] == b"raw"
                p += t
                assert m[p:p + j] == b"raw/x"
                p += j
                assert m[p:p + k] == b"K"
                p += k
                assert m[p:] == payload and part == 0 and ts > 0
                got_rec = True
            await ws.send(b"\x09garbage")
            ev = await recv_json(ws)
            assert ev["type"] == "error" and ev["code"] == "bad_request"
    run(go())
    # The same record over REST, as base64 (not UTF-8).
    recs = server.get("/v1/streams/raw/partitions/0/records").json()["records"]
    assert base64.b64decode(recs[0]["value"]) == bytes(range(256))


def test_cross_door(server):
    async def go():
        async with websockets.connect(ws_url(server)) as ws:
            await subscribe(ws, "x", "orders/#")
            r = await asyncio.get_running_loop().run_in_executor(
                None, lambda: server.post("/v1/publish/orders/1", data=b'{"n":1}',
                                          headers={"Content-Type": "application/json"}))
            assert r.status_code == 201
            rec = await recv_json(ws, "record")
            assert rec["subject"] == "orders/1" and rec["value"] == '{"n":1}'
            assert rec["headers"]["content-type"] == "application/json"
            await ws.send(json.dumps({"op": "publish", "subject": "orders/2", "value": "from-ws", "ack": True}))
            ack = await recv_json(ws, "ack")
            return ack
    ack = run(go())
    recs = server.get(f"/v1/streams/orders/partitions/0/records?offset={ack['offset']}").json()["records"]
    assert recs[0]["value"] == "from-ws" and recs[0]["subject"] == "orders/2"


def test_auth(make_server):
    s = make_server(["--allow_anonymous", "false", "--admin.user", "root", "--admin.password", "pw"])
    adm = ("root", "pw")
    assert s.put("/v1/users/alice", json={"password": "x"}, auth=adm).status_code == 200
    tok = s.post("/v1/tokens", json={"user": "alice"}, auth=adm).json()["token"]
    assert s.post("/v1/acls", json={"user": "alice", "perms": ["subscribe", "publish"], "filter": "a/#"},
                  auth=adm).status_code == 201

    async def go():
        # A wrong token: 401 before the upgrade.
        with pytest.raises(websockets.InvalidStatusCode) as e:
            async with websockets.connect(ws_url(s, "?token=jnt_wrong")):
                pass
        assert e.value.status_code == 401
        # No token: upgraded, but nothing but auth is accepted.
        async with websockets.connect(ws_url(s)) as ws:
            await ws.send(json.dumps({"op": "subscribe", "id": "s", "filter": "a/#"}))
            ev = await recv_json(ws)
            assert ev["type"] == "error" and ev["code"] == "unauthorized"
            await ws.send(json.dumps({"op": "auth", "token": tok}))
            ev = await recv_json(ws)
            assert ev == {"type": "authenticated", "user": "alice"}
            await subscribe(ws, "s", "a/#")
            # ACLs per subscription and per publish.
            await ws.send(json.dumps({"op": "subscribe", "id": "t", "filter": "b/#"}))
            assert (await recv_json(ws))["code"] == "forbidden"
            await ws.send(json.dumps({"op": "publish", "subject": "b/1", "value": "x", "ref": "p"}))
            ev = await recv_json(ws)
            assert ev["code"] == "forbidden" and ev["ref"] == "p"
        # A bad token in auth: error, then close 1008.
        async with websockets.connect(ws_url(s)) as ws:
            await ws.send(json.dumps({"op": "auth", "token": "jnt_bad"}))
            assert (await recv_json(ws))["code"] == "unauthorized"
            with pytest.raises(websockets.ConnectionClosed) as e:
                await asyncio.wait_for(ws.recv(), 10)
            assert e.value.code == 1008
        # Token in the query, and as a bearer.<token> subprotocol.
        async with websockets.connect(ws_url(s, "?token=" + tok)) as ws:
            await subscribe(ws, "q", "a/#")
        async with websockets.connect(ws_url(s), subprotocols=["junction.v1", "bearer." + tok]) as ws:
            assert ws.subprotocol == "junction.v1"
            await subscribe(ws, "p", "a/#")
    run(go())


def test_slow_lossy_subscriber_bounded(server):
    """A client that does not read: a lossy live subscription skips and
    reports it; the server stays responsive."""
    s, rest = raw_connect(server)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.sendall(frame(0x1, json.dumps({"op": "subscribe", "id": "l", "filter": "flood/#", "lossy": True}).encode()))
    blob = "z" * 60000
    recs = [{"subject": "flood/a", "value": blob} for _ in range(20)]
    for _ in range(5):
        assert server.post("/v1/publish", json={"records": recs}).status_code == 201
    # The server still answers others at once.
    assert server.get("/v1/health").status_code == 200
    # Now read everything: a lag event reports the skips.
    s.settimeout(5)
    data = rest
    try:
        while b'"type":"lag"' not in data:
            chunk = s.recv(1 << 20)
            if not chunk:
                break
            data += chunk
            if len(data) > 64 << 20:
                break
    except socket.timeout:
        pass
    assert b'"type":"lag"' in data
    s.close()


# ---- the `ws` npm client ----

def test_node_ws_client(server):
    import shutil
    import subprocess
    js = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "js")
    if not shutil.which("node") or not shutil.which("npm"):
        pytest.skip("node and npm are not installed (scripts/install-deps.sh test)")
    if not os.path.isdir(os.path.join(js, "node_modules", "ws")):
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=js, check=True, capture_output=True,
                       timeout=300)
    p = subprocess.run(["node", os.path.join(js, "ws_client.mjs"), server.url], capture_output=True, timeout=60,
                       text=True)
    assert p.returncode == 0, p.stdout + p.stderr
    out = json.loads(p.stdout.strip().splitlines()[-1])
    assert out["protocol"] == "junction.v1"
    assert "permessage-deflate" in out["extensions"]
    assert out["acks"] == ["r1", "r2"] and out["value_len"] == 1000
    assert out["binary"] == {"sub": "b", "value": [0, 1, 2, 255]}
    assert out["pong"] == "hi"
