"""Fixtures that start the real junction binary on free loopback ports.

Every server is started by the test that needs it, in its own temporary data
directory, and stopped by PID when the test ends.
"""
import os
import random
import signal
import socket
import subprocess
import tempfile
import time

import pytest
import requests

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.abspath(os.path.join(ROOT, os.environ.get("JUNCTION_BIN", "build/junction")))


def _ephemeral_range():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            lo, hi = (int(x) for x in f.read().split())
            return lo, hi
    except (OSError, ValueError):
        return 32768, 60999


_EPHEMERAL = _ephemeral_range()
_handed_out = set()


def free_port():
    """A loopback port that is free now and that the kernel will not pick.

    Ports from bind(port 0) come from the ephemeral range, where any outgoing
    connection on the machine (a webhook delivery, a client) may take them
    before the server binds. Ports below that range are only ever taken on
    purpose, so a port found free here stays free. Each port is handed out
    once per test process.
    """
    lo, hi = 10000, _EPHEMERAL[0] - 1
    if hi - lo < 1000:          # an unusual range: fall back to the kernel's pick
        lo, hi = _EPHEMERAL[1] + 1, 65535
    rng = random.Random(os.getpid() ^ time.monotonic_ns())
    for _ in range(1000):
        port = rng.randint(lo, hi)
        if port in _handed_out:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise RuntimeError("no free loopback port")


class Server:
    """One junction process. start() waits until /v1/health answers."""

    def __init__(self, data_dir, extra=(), port=None):
        self.data_dir = data_dir
        self.fixed_port = port is not None
        self.started = False
        self.extra = list(extra)
        self.proc = None
        self._pick_ports(port)

    def _pick_ports(self, port=None):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.mqtt_port = free_port()
        self.amqp_port = free_port()
        self.kafka_port = free_port()
        self.log_path = os.path.join(self.data_dir, "..", f"server-{self.port}.log")

    def start(self, wait=True):
        """Starts the process. If a port was taken between picking and binding
        (another program on the machine), the ports are picked again: that is
        the test environment's race, not a server failure. Only on a first
        start: a restart keeps its ports, which the test may hold on to."""
        for attempt in range(3):
            self._spawn()
            if not wait:
                return self
            try:
                self.wait_ready()
                self.started = True
                return self
            except RuntimeError:
                lost_race = (self.proc.poll() is not None and "address already in use" in self.read_log()
                             and not self.fixed_port and not self.started and attempt < 2)
                if not lost_race:
                    raise
                self.log.close()
                self.proc = None
                self._pick_ports()
        return self

    def _spawn(self):
        self.log = open(self.log_path, "ab")
        args = [BIN, "serve", "--data_dir", self.data_dir,
                "--http.listen", f"127.0.0.1:{self.port}", "--log_level", "warn",
                "--mqtt.listen", f"127.0.0.1:{self.mqtt_port}",
                "--amqp.listen", f"127.0.0.1:{self.amqp_port}",
                "--kafka.listen", f"127.0.0.1:{self.kafka_port}"] + self.extra
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout=30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"junction exited with {self.proc.returncode}: {self.read_log()}")
            try:
                r = requests.get(self.url + "/v1/health", timeout=1)
                if r.status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.05)
        raise RuntimeError("junction did not become ready: " + self.read_log())

    def read_log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode(errors="replace")[-4000:]
        except OSError:
            return ""

    def stop(self, sig=signal.SIGTERM, timeout=30):
        """Stops the process by PID; returns its exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        rc = self.proc.returncode
        self.proc = None
        return rc

    def kill(self):
        return self.stop(signal.SIGKILL)

    # small helpers
    def get(self, path, **kw):
        return requests.get(self.url + path, timeout=10, **kw)

    def post(self, path, **kw):
        return requests.post(self.url + path, timeout=10, **kw)

    def put(self, path, **kw):
        return requests.put(self.url + path, timeout=10, **kw)

    def delete(self, path, **kw):
        return requests.delete(self.url + path, timeout=10, **kw)

    def patch(self, path, **kw):
        return requests.patch(self.url + path, timeout=10, **kw)


@pytest.fixture
def tmpdir_path():
    with tempfile.TemporaryDirectory(prefix="junction-test-") as d:
        yield d


@pytest.fixture
def make_server(tmpdir_path):
    """Factory: make_server(extra_args) -> started Server; all stopped at the end."""
    servers = []

    def make(extra=(), data_dir=None, port=None, start=True):
        d = data_dir or os.path.join(tmpdir_path, f"data{len(servers)}")
        os.makedirs(d, exist_ok=True)
        s = Server(d, extra, port)
        servers.append(s)
        if start:
            s.start()
        return s

    yield make
    for s in servers:
        rc = s.stop()
        # A clean shutdown exits 0; a sanitizer report would make it non-zero.
        assert rc in (None, 0), f"junction exited with {rc}: {s.read_log()}"


@pytest.fixture
def server(make_server):
    return make_server()


def cli(server, *args, input=None, timeout=30, check=True):
    """Runs `junction <args> --url <server>` and returns the CompletedProcess."""
    env = dict(os.environ, JUNCTION_URL=server.url)
    p = subprocess.run([BIN, *args], input=input, capture_output=True, timeout=timeout, env=env)
    if check and p.returncode != 0:
        raise AssertionError(f"junction {' '.join(args)} -> {p.returncode}: {p.stderr.decode()}")
    return p


def eventually(probe, timeout=10, interval=0.05, failure=None):
    """Calls probe() until it returns something truthy and returns that;
    fails after `timeout` seconds, with failure() as the message when given.
    For effects that a server applies after its answer (a delivery, an
    expiry), so tests wait on the effect rather than for a guessed time."""
    deadline = time.monotonic() + timeout
    while True:
        got = probe()
        if got or time.monotonic() >= deadline:
            break
        time.sleep(interval)
    assert got, failure() if failure else f"condition not met within {timeout} s"
    return got
