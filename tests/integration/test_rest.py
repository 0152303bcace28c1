"""REST door end to end, against the real binary (docs/rest.md)."""
import base64
import json
import socket

import requests

from conftest import cli  # noqa: F401  (shared helpers)


def err(r, status, code):
    assert r.status_code == status, (r.status_code, r.text)
    body = r.json()
    assert body["code"] == code, body
    assert isinstance(body["message"], str) and body["message"]


def test_health_and_metrics(server):
    r = server.get("/v1/health")
    assert r.status_code == 200
    assert r.json()["status"] == "ok"
    server.post("/v1/publish/sensors/a", data=b"x")
    m = server.get("/metrics")
    assert m.status_code == 200
    assert "text/plain" in m.headers["Content-Type"]
    assert "# TYPE" in m.text
    assert "junction_" in m.text


def test_fsync_metrics(server):
    """A stream with fsync always counts its sync jobs: group commit is visible."""
    assert server.post("/v1/streams", json={"name": "ledger", "config": {"fsync": "always"}}).status_code == 201
    for i in range(3):
        assert server.post("/v1/publish/ledger/x", data=b"entry").status_code == 201
    text = server.get("/metrics").text
    vals = {}
    for line in text.splitlines():
        if line.startswith("junction_stream_fsync") and 'stream="ledger"' in line:
            name, value = line.rsplit(" ", 1)
            vals[name.split("{")[0]] = float(value)
    assert vals["junction_stream_fsyncs_total"] >= 1
    assert vals["junction_stream_fsync_seconds_total"] > 0
    assert vals["junction_stream_fsync_failures_total"] == 0


def test_stream_lifecycle(server):
    r = server.post("/v1/streams", json={"name": "orders", "partitions": 3,
                                         "config": {"retention_ms": 3600000, "fsync": "always"}})
    assert r.status_code == 201, r.text
    s = r.json()
    assert s["name"] == "orders" and s["partitions"] == 3
    assert s["config"]["fsync"] == "always"
    err(server.post("/v1/streams", json={"name": "orders"}), 409, "already_exists")
    names = [x["name"] for x in server.get("/v1/streams").json()["streams"]]
    assert "orders" in names
    d = server.get("/v1/streams/orders").json()
    assert len(d["partition_info"]) == 3
    r = server.patch("/v1/streams/orders", json={"config": {"retention_bytes": 1048576}})
    assert r.status_code == 200, r.text
    assert server.get("/v1/streams/orders").json()["config"]["retention_bytes"] == 1048576
    assert server.delete("/v1/streams/orders").status_code == 204
    err(server.get("/v1/streams/orders"), 404, "not_found")
    err(server.delete("/v1/streams/orders"), 404, "not_found")


def test_invalid_stream_names(server):
    for bad in ["", "a/b", "__internal", "x" * 250, "sp ace"]:
        r = server.post("/v1/streams", json={"name": bad})
        err(r, 400, "invalid_name")
    err(server.post("/v1/streams", data=b"{not json", headers={"Content-Type": "application/json"}),
        400, "invalid_json")
    err(server.post("/v1/streams", json={"name": "ok", "partitions": 0}), 400, "bad_request")


def test_publish_and_read(server):
    r = server.post("/v1/publish/sensors/kitchen/temp", data=b'{"c":21.5}',
                    headers={"Content-Type": "application/json", "X-Header-Trace": "abc"},
                    params={"key": "k1"})
    assert r.status_code == 201, r.text
    res = r.json()
    assert res["stream"] == "sensors" and res["offset"] == 0
    server.post("/v1/publish/sensors/hall/temp", data=b"\xff\x00binary")
    r = server.get(f"/v1/streams/sensors/partitions/{res['partition']}/records", params={"offset": 0})
    assert r.status_code == 200, r.text
    body = r.json()
    recs = body["records"]
    assert len(recs) == 2
    first = recs[0]
    assert first["subject"] == "sensors/kitchen/temp"
    assert first["value"] == '{"c":21.5}'
    assert first["key"] == "k1"
    assert first["headers"]["content-type"] == "application/json"
    assert first["headers"]["trace"] == "abc"
    assert recs[1]["encoding"] == "base64"
    assert base64.b64decode(recs[1]["value"]) == b"\xff\x00binary"
    assert body["next_offset"] == 2 and body["end_offset"] == 2
    # limit and offset
    r = server.get("/v1/streams/sensors/partitions/0/records", params={"offset": 1, "limit": 1}).json()
    assert [x["offset"] for x in r["records"]] == [1]
    err(server.get("/v1/streams/sensors/partitions/0/records", params={"offset": 99}), 416,
        "offset_out_of_range")
    err(server.get("/v1/streams/sensors/partitions/7/records"), 404, "not_found")
    err(server.get("/v1/streams/nope/partitions/0/records"), 404, "not_found")
    err(server.get("/v1/streams/sensors/partitions/0/records", params={"offset": "x"}), 400, "bad_request")


def test_read_by_timestamp(server):
    for i in range(5):
        server.post("/v1/publish", json={"records": [{"subject": "ts", "value": str(i),
                                                       "timestamp": 1000 + i}]})
    r = server.get("/v1/streams/ts/partitions/0/records", params={"timestamp": 1003}).json()
    assert [x["value"] for x in r["records"]] == ["3", "4"]


def test_batch_publish_and_keys(server):
    server.post("/v1/streams", json={"name": "kp", "partitions": 4})
    recs = [{"subject": "kp", "key": f"user-{i}", "value": f"v{i}", "headers": {"h": "1"}} for i in range(20)]
    r = server.post("/v1/publish", json={"records": recs})
    assert r.status_code == 201, r.text
    results = r.json()["results"]
    assert len(results) == 20
    # Same key always lands on the same partition.
    r2 = server.post("/v1/publish", json=[{"subject": "kp", "key": "user-3", "value": "again"}]).json()
    assert r2["results"][0]["partition"] == results[3]["partition"]
    # Base64 values round-trip.
    raw = bytes(range(256))
    r = server.post("/v1/publish", json={"records": [{"subject": "bin", "value": base64.b64encode(raw).decode(),
                                                      "encoding": "base64"}]}).json()
    got = server.get("/v1/streams/bin/partitions/0/records").json()["records"][0]
    assert base64.b64decode(got["value"]) == raw
    err(server.post("/v1/publish", json={"records": [{"value": "no subject"}]}), 400, "invalid_name")
    err(server.post("/v1/publish", json={"records": [{"subject": "a/+/b", "value": "x"}]}), 400, "invalid_name")


def test_invalid_subjects(server):
    err(server.post("/v1/publish/a/%23", data=b"x"), 400, "invalid_name")
    err(server.post("/v1/publish/a/+/b", data=b"x"), 400, "invalid_name")


def test_groups(server):
    server.post("/v1/publish/g1s/x", data=b"1")
    r = server.post("/v1/groups/workers/offsets", json={"offsets": [{"stream": "g1s", "partition": 0, "offset": 1,
                                                                     "metadata": "m"}]})
    assert r.status_code == 200, r.text
    g = server.get("/v1/groups/workers").json()
    assert g["group"] == "workers"
    assert g["offsets"][0]["offset"] == 1 and g["offsets"][0]["lag"] == 0
    assert "workers" in server.get("/v1/groups").json()["groups"]
    assert server.delete("/v1/groups/workers").status_code == 204
    err(server.get("/v1/groups/workers"), 404, "not_found")
    err(server.post("/v1/groups/w/offsets", json={"offsets": [{"stream": "nope", "partition": 0, "offset": 1}]}),
        404, "not_found")


def test_tables(server):
    r = server.put("/v1/tables/users/alice", data=b'{"age":30}', headers={"Content-Type": "application/json"})
    assert r.status_code == 200, r.text
    server.put("/v1/tables/users/bob", data=b"B")
    server.put("/v1/tables/users/alice", data=b'{"age":31}', headers={"Content-Type": "application/json"})
    g = server.get("/v1/tables/users/alice")
    assert g.status_code == 200 and g.content == b'{"age":31}'
    assert g.headers["Content-Type"] == "application/json"
    keys = server.get("/v1/tables/users").json()
    assert keys["keys"] == ["alice", "bob"]
    page = server.get("/v1/tables/users", params={"limit": 1}).json()
    assert page["keys"] == ["alice"] and page["next"] == "alice"
    page2 = server.get("/v1/tables/users", params={"limit": 1, "after": "alice"}).json()
    assert page2["keys"] == ["bob"]
    assert server.get("/v1/tables/users", params={"prefix": "b"}).json()["keys"] == ["bob"]
    assert server.delete("/v1/tables/users/bob").status_code == 204
    err(server.get("/v1/tables/users/bob"), 404, "not_found")
    err(server.delete("/v1/tables/users/bob"), 404, "not_found")
    tables = server.get("/v1/tables").json()["tables"]
    assert {"name": "users", "keys": 1} in tables
    # every write is a record of the table's stream
    recs = server.get("/v1/streams/users/partitions/0/records").json()["records"]
    assert [x["key"] for x in recs] == ["alice", "bob", "alice", "bob"]
    assert recs[-1]["value"] is None


def test_tables_survive_restart(make_server):
    s = make_server()
    s.put("/v1/tables/cfg/a/b", data=b"1")
    s.put("/v1/tables/cfg/c", data=b"2")
    s.stop()
    s.start()
    assert s.get("/v1/tables/cfg/a/b").content == b"1"
    assert s.get("/v1/tables/cfg").json()["keys"] == ["a/b", "c"]


def test_unknown_route_and_method(server):
    err(server.get("/v1/nothing"), 404, "not_found")
    r = server.delete("/v1/health")
    err(r, 405, "method_not_allowed")
    assert "GET" in r.headers["Allow"]


def test_openapi_matches_routes(server):
    doc = server.get("/v1/openapi.json").json()
    assert doc["openapi"].startswith("3.")
    for path, methods in doc["paths"].items():
        for m in methods:
            if m not in ("get", "post", "put", "patch", "delete"):
                continue
            url = path.replace("{stream}", "zz").replace("{subject}", "zz/a").replace("{p}", "0") \
                .replace("{partition}", "0").replace("{group}", "g").replace("{table}", "t") \
                .replace("{key}", "k").replace("{name}", "u1").replace("{id}", "i")
            r = requests.request(m.upper(), server.url + url, timeout=10, data=b"{}")
            assert r.status_code not in (405,), (m, path, r.status_code)
            assert not (r.status_code == 404 and r.json().get("message", "").startswith("no route")), (m, path)


def raw(server, data, read_all=True):
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(data)
        chunks = []
        while True:
            try:
                c = s.recv(65536)
            except socket.timeout:
                break
            if not c:
                break
            chunks.append(c)
            if not read_all:
                break
        return b"".join(chunks)


def test_malformed_http(server):
    out = raw(server, b"GARBAGE\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 400")
    out = raw(server, b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 414")
    out = raw(server, b"GET / HTTP/1.1\r\n" + b"".join(b"X-H%d: v\r\n" % i for i in range(200)) + b"\r\n")
    assert out.startswith(b"HTTP/1.1 431")
    out = raw(server, b"POST /v1/publish/x HTTP/1.1\r\nContent-Length: 999999999999\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 413")
    # still healthy
    assert server.get("/v1/health").status_code == 200


def test_pipelining_and_chunked(server):
    req = (b"POST /v1/publish/pipe HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\na"
           b"POST /v1/publish/pipe HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nb\r\n0\r\n\r\n"
           b"GET /v1/streams/pipe/partitions/0/records HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    out = raw(server, req)
    assert out.count(b"HTTP/1.1 201") == 2
    body = out.rsplit(b"\r\n\r\n", 1)[1]
    assert [r["value"] for r in json.loads(body)["records"]] == ["a", "b"]


def test_large_body_rejected(make_server):
    s = make_server(["--http.max_body", "1024"])
    r = s.post("/v1/publish/big", data=b"x" * 5000)
    err(r, 413, "payload_too_large")
    assert s.post("/v1/publish/big", data=b"x" * 100).status_code == 201
    assert s.get("/v1/streams/big").json()["partition_info"][0]["end_offset"] == 1


def test_reserved_header_names_refused(server):
    for name in (":subject", ":mqtt-qos", ":x"):
        r = server.post("/v1/publish", json={"records": [{"subject": "hdr", "value": "v", "headers": {name: "0"}}]})
        err(r, 400, "bad_request")
