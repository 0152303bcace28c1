"""The junction command: pub, sub, streams."""
import json
import os
import subprocess
import time

from conftest import BIN, cli


def test_pub_prints_offset(server):
    p = cli(server, "pub", "sensors/kitchen/temp", '{"c":21.5}')
    out = p.stdout.decode()
    assert "stream=sensors" in out and "partition=0" in out and "offset=0" in out
    p = cli(server, "pub", "sensors/kitchen/temp", "-", input=b"from stdin")
    assert "offset=1" in p.stdout.decode()


def test_sub_from_earliest_replays(server):
    for i in range(5):
        cli(server, "pub", f"sensors/room{i}/temp", f"v{i}")
    cli(server, "pub", "other/x", "no")
    p = cli(server, "sub", "sensors/#", "--from", "earliest", "--count", "5", "--json")
    lines = [json.loads(l) for l in p.stdout.decode().splitlines() if l.strip()]
    assert [l["value"] for l in lines] == [f"v{i}" for i in range(5)]


def test_sub_live(server):
    env = dict(os.environ, JUNCTION_URL=server.url)
    sub = subprocess.Popen([BIN, "sub", "live/+", "--count", "3", "--json"], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, env=env)
    try:
        # Publish until the subscriber has seen three records: it may connect
        # after the first publishes, which are then not live for it.
        deadline = time.monotonic() + 30
        i = 0
        while sub.poll() is None and time.monotonic() < deadline:
            cli(server, "pub", f"live/{i}", f"m{i}")
            i += 1
            time.sleep(0.05)
        out, errout = sub.communicate(timeout=30)
    finally:
        if sub.poll() is None:
            sub.kill()
    assert sub.returncode == 0, errout
    vals = [json.loads(l)["value"] for l in out.decode().splitlines() if l.strip()]
    assert len(vals) == 3
    nums = [int(v[1:]) for v in vals]
    assert nums == sorted(nums) and nums == list(range(nums[0], nums[0] + 3))


def test_streams_listing(server):
    cli(server, "streams", "create", "events", "--partitions", "3")
    cli(server, "pub", "events/a", "1")
    out = cli(server, "streams").stdout.decode()
    assert "events" in out and "3" in out
    js = json.loads(cli(server, "streams", "--json").stdout)
    ev = [s for s in js["streams"] if s["name"] == "events"][0]
    assert ev["partitions"] == 3
    cli(server, "streams", "delete", "events")
    assert "events" not in cli(server, "streams").stdout.decode()


def test_cli_errors(server):
    p = cli(server, "pub", "bad/+/subject", "x", check=False)
    assert p.returncode == 1 and b"invalid" in p.stderr.lower()
    p = cli(server, "frobnicate", check=False)
    assert p.returncode == 2


def test_sub_ends_cleanly_when_server_stops(make_server):
    s = make_server()
    env = dict(os.environ, JUNCTION_URL=s.url)
    cli(s, "pub", "bye/x", "last")
    sub = subprocess.Popen([BIN, "sub", "bye/#", "--json", "--from", "earliest"], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, env=env)
    try:
        # Once the subscriber has printed the record, stop the server.
        line = sub.stdout.readline()
        assert json.loads(line)["value"] == "last"
        assert s.stop() == 0
        _, errout = sub.communicate(timeout=30)
    finally:
        if sub.poll() is None:
            sub.kill()
    assert sub.returncode == 0, errout
