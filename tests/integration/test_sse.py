"""The SSE door (GET /v1/events, docs/sse.md) with python3-requests and with
a real EventSource client (the npm `eventsource` package, tests/js/)."""
import json
import os
import shutil
import subprocess
import threading
import time

import pytest
import requests

from conftest import ROOT

JS = os.path.join(ROOT, "tests", "js")


class SSE:
    """A minimal text/event-stream reader over a streaming requests response."""

    def __init__(self, url, headers=None, timeout=10):
        self.resp = requests.get(url, headers=headers or {}, stream=True, timeout=timeout)
        self.lines = self.resp.iter_lines(decode_unicode=True) if self.resp.ok else None
        self.comments = []
        self.retry = None

    def next(self):
        """The next dispatched event as a dict(id, event, data), or None at the end."""
        ev = {"data": []}
        for line in self.lines:
            if line == "":
                if ev["data"]:
                    ev["data"] = "\n".join(ev["data"])
                    return ev
                ev = {"data": []}
                continue
            if line.startswith(":"):
                self.comments.append(line[1:].strip())
                continue
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if name == "data":
                ev["data"].append(value)
            elif name == "retry":
                self.retry = int(value)
            else:
                ev[name] = value
        return None

    def take(self, n):
        out = []
        while len(out) < n:
            ev = self.next()
            if ev is None:
                break
            out.append(ev)
        return out

    def close(self):
        self.resp.close()


def publish(server, subject, value, **params):
    r = server.post("/v1/publish/" + subject, data=value, params=params)
    assert r.status_code == 201, r.text
    return r.json()


def test_events_arrive_with_ids_and_record_json(server):
    assert server.post("/v1/streams", json={"name": "sensors", "partitions": 2}).status_code == 201
    s = SSE(server.url + "/v1/events?filter=sensors/%23&from=earliest")
    assert s.resp.status_code == 200
    assert s.resp.headers["Content-Type"].startswith("text/event-stream")
    assert s.resp.headers["Cache-Control"] == "no-cache"
    res = publish(server, "sensors/kitchen/temp", '{"c":21.5}', partition=1)
    publish(server, "other/x", "not matched")
    ev = s.take(1)[0]
    assert s.retry == 2000
    assert ev["event"] == "record"
    rec = json.loads(ev["data"])
    assert rec["subject"] == "sensors/kitchen/temp" and rec["value"] == '{"c":21.5}'
    assert (rec["stream"], rec["partition"], rec["offset"]) == ("sensors", 1, res["offset"])
    # The id names the record, then carries where every partition stands.
    assert ev["id"].startswith(f"sensors/1/{res['offset']};")
    assert "sensors=0,1" in ev["id"]
    # The same renderer as the REST door.
    page = server.get("/v1/streams/sensors/partitions/1/records", params={"offset": res["offset"]}).json()
    assert page["records"][0] == rec
    s.close()


def test_heartbeats_and_bad_requests(server):
    s = SSE(server.url + "/v1/events?filter=hb/%23&heartbeat=1", timeout=5)
    deadline = time.monotonic() + 5
    got = False
    # The stream sends nothing but comments: read raw lines until a heartbeat.
    for line in s.lines:
        if line == ": hb":
            got = True
            break
        assert time.monotonic() < deadline
    assert got
    s.close()
    assert server.get("/v1/events").status_code == 400
    assert server.get("/v1/events?filter=a/%23/b").json()["code"] == "invalid_name"
    r = server.get("/v1/events?filter=a", headers={"Last-Event-ID": "not an id"})
    assert r.status_code == 400 and r.json()["code"] == "bad_request"
    assert server.get("/v1/events?filter=a&from=later").status_code == 400
    assert server.get("/v1/events?filter=a&heartbeat=0").status_code == 400


def read_all(server, params, headers, want, timeout=20):
    """Reads events until |want| arrived or the server ends the stream."""
    q = "&".join(f"{k}={requests.utils.quote(str(v), safe='')}" for k, v in params.items())
    s = SSE(server.url + "/v1/events?" + q, headers=headers, timeout=timeout)
    assert s.resp.status_code == 200, s.resp.text
    evs = s.take(want)
    s.close()
    return evs


def test_resume_exactly_across_reconnects_while_publishing(server):
    """A filter over two streams and five partitions; the client drops its
    connection every few events while a publisher keeps going; each
    reconnect sends the last id it got. Every record arrives exactly once."""
    assert server.post("/v1/streams", json={"name": "orders", "partitions": 3}).status_code == 201
    assert server.post("/v1/streams", json={"name": "returns", "partitions": 2}).status_code == 201
    # Records from before the subscription start: from=live must not see them.
    for i in range(5):
        publish(server, "orders/old", f"old{i}")
    total = 120
    sent = []
    started = threading.Event()

    def publisher():
        started.wait(10)
        for i in range(total):
            subj = ("orders/eu/" if i % 3 else "returns/") + str(i)
            sent.append((subj, str(i)))
            r = requests.post(server.url + "/v1/publish/" + subj, data=str(i), timeout=10)
            assert r.status_code == 201
            if i % 10 == 0:
                time.sleep(0.02)

    t = threading.Thread(target=publisher)
    # The filter matches both streams: "+" at the first level.
    s = SSE(server.url + "/v1/events?filter=%2B/%23&from=live")
    assert s.resp.status_code == 200
    got = []
    started.set()
    t.start()
    last_id = None
    first = s.take(7)
    s.close()
    got += first
    last_id = first[-1]["id"]
    rounds = 0
    while len(got) < total and rounds < 100:
        rounds += 1
        n = 1 + rounds % 9
        s = SSE(server.url + "/v1/events?filter=%2B/%23&from=earliest", headers={"Last-Event-ID": last_id})
        assert s.resp.status_code == 200
        evs = s.take(min(n, total - len(got)))
        s.close()
        if evs:
            last_id = evs[-1]["id"]
        got += evs
    t.join()
    values = [json.loads(e["data"])["value"] for e in got]
    assert sorted(values, key=int) == [str(i) for i in range(total)], "lost or repeated records"
    assert len(values) == len(set(values))
    # Per partition, in order.
    seen = {}
    for e in got:
        r = json.loads(e["data"])
        k = (r["stream"], r["partition"])
        assert r["offset"] > seen.get(k, -1)
        seen[k] = r["offset"]


def test_bare_record_id_and_query_parameter(server):
    for i in range(6):
        publish(server, "logs/app", f"l{i}")
    # A hand-made id: that partition after offset 2.
    evs = read_all(server, {"filter": "logs/#", "last_event_id": "logs/0/2", "limit": 3}, {}, 3)
    assert [json.loads(e["data"])["value"] for e in evs] == ["l3", "l4", "l5"]
    # limit ends the stream after n events.
    evs = read_all(server, {"filter": "logs/#", "from": "earliest", "limit": 2}, {}, 10)
    assert len(evs) == 2


def test_auth_token_header_and_query(make_server):
    s = make_server(["--allow_anonymous", "false", "--admin.user", "root", "--admin.password", "pw"])
    r = requests.get(s.url + "/v1/events?filter=a/%23", timeout=5)
    assert r.status_code == 401 and r.headers.get("WWW-Authenticate") == "Bearer"
    admin = ("root", "pw")
    assert requests.put(s.url + "/v1/users/eve", json={"password": "pw2"}, auth=admin, timeout=5).status_code == 200
    tok = requests.post(s.url + "/v1/tokens", json={"user": "eve"}, auth=admin, timeout=5).json()["token"]
    assert requests.post(s.url + "/v1/acls", json={"user": "eve", "perms": ["subscribe"], "filter": "a/#"},
                         auth=admin, timeout=5).status_code == 201
    # Not allowed outside the ACL.
    r = requests.get(s.url + "/v1/events?filter=b/%23", headers={"Authorization": "Bearer " + tok}, timeout=5)
    assert r.status_code == 403 and r.json()["code"] == "forbidden"
    # Wrong token in the query.
    assert requests.get(s.url + "/v1/events?filter=a/%23&token=jnt_nope", timeout=5).status_code == 401
    # Right token in the query (EventSource cannot set headers) and in the header.
    for url, hdr in ((f"{s.url}/v1/events?filter=a/%23&from=earliest&token={tok}", {}),
                     (f"{s.url}/v1/events?filter=a/%23&from=earliest", {"Authorization": "Bearer " + tok})):
        assert requests.post(s.url + "/v1/publish/a/x", data=b"v", auth=admin, timeout=5).status_code == 201
        ev = SSE(url, headers=hdr)
        assert ev.resp.status_code == 200
        assert json.loads(ev.take(1)[0]["data"])["subject"] == "a/x"
        ev.close()
    # Basic auth works as at the REST door.
    ev = SSE(s.url + "/v1/events?filter=a/%23", headers={"Authorization": requests.auth._basic_auth_str("root", "pw")})
    assert ev.resp.status_code == 200
    ev.close()


def test_stats_counts_sse_streams(server):
    s = SSE(server.url + "/v1/events?filter=st/%23")
    publish(server, "st/a", "1")
    s.take(1)
    st = server.get("/v1/stats").json()
    sse = next(d for d in st["doors"] if d["door"] == "sse")
    assert sse["connections"] == 1 and sse["messages_out"] >= 1
    assert st["published"]["records"] >= 1
    s.close()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        sse = next(d for d in server.get("/v1/stats").json()["doors"] if d["door"] == "sse")
        if sse["connections"] == 0:
            break
        time.sleep(0.05)
    assert sse["connections"] == 0


# ---- a real EventSource client (npm `eventsource`) ----

def npm_ready():
    if not shutil.which("node") or not shutil.which("npm"):
        pytest.skip("node and npm are not installed (scripts/install-deps.sh test)")
    if not os.path.isdir(os.path.join(JS, "node_modules", "eventsource")):
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=JS, check=True, capture_output=True, timeout=300)


def test_eventsource_client_resumes_with_last_event_id(server):
    """The EventSource reconnects by itself each time the server ends the
    stream (limit=) and sends Last-Event-ID; publishing goes on meanwhile."""
    npm_ready()
    p = subprocess.run(["node", os.path.join(JS, "sse_client.mjs"), server.url, "60"], capture_output=True,
                       timeout=120, text=True)
    assert p.returncode == 0, p.stdout + p.stderr
    out = json.loads(p.stdout.strip().splitlines()[-1])
    assert out["values"] == [str(i) for i in range(60)] or sorted(out["values"], key=int) == [str(i) for i in range(60)]
    assert len(out["values"]) == 60 and len(set(out["values"])) == 60
    assert out["reconnects"] >= 3
    assert all(";" in i for i in out["ids"])
