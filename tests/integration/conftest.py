"""Fixtures that start the real junction binary on free loopback ports.

Every server is started by the test that needs it, in its own temporary data
directory, and stopped by PID when the test ends.
"""
import os
import signal
import socket
import subprocess
import tempfile
import time

import pytest
import requests

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.abspath(os.path.join(ROOT, os.environ.get("JUNCTION_BIN", "build/junction")))


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """One junction process. start() waits until /v1/health answers."""

    def __init__(self, data_dir, extra=(), port=None):
        self.data_dir = data_dir
        self.port = port or free_port()
        self.extra = list(extra)
        self.proc = None
        self.url = f"http://127.0.0.1:{self.port}"
        self.mqtt_port = free_port()
        self.amqp_port = free_port()
        self.kafka_port = free_port()
        self.log_path = os.path.join(data_dir, "..", f"server-{self.port}.log")

    def start(self, wait=True):
        self.log = open(self.log_path, "ab")
        args = [BIN, "serve", "--data_dir", self.data_dir,
                "--http.listen", f"127.0.0.1:{self.port}", "--log_level", "warn",
                "--mqtt.listen", f"127.0.0.1:{self.mqtt_port}",
                "--amqp.listen", f"127.0.0.1:{self.amqp_port}",
                "--kafka.listen", f"127.0.0.1:{self.kafka_port}"] + self.extra
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT)
        if wait:
            self.wait_ready()
        return self

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
