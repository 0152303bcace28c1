"""The web console in a real browser: headless Chromium (Debian's chromium)
driven by playwright-core (tests/js/console_test.mjs), plus the static
serving of the embedded assets."""
import json
import os
import shutil
import subprocess

import pytest

from conftest import ROOT

JS = os.path.join(ROOT, "tests", "js")


def test_assets_served_with_types_and_etags(server):
    r = server.get("/")
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/html")
    assert "Junction" in r.text and "/app.js" in r.text
    assert "default-src 'self'" in r.headers["Content-Security-Policy"]
    etag = r.headers["ETag"]
    assert server.get("/index.html").headers["ETag"] == etag
    r2 = server.get("/", headers={"If-None-Match": etag})
    assert r2.status_code == 304 and r2.content == b""
    for path, ctype in (("/app.js", "text/javascript"), ("/chart.js", "text/javascript"),
                        ("/app.css", "text/css"), ("/favicon.svg", "image/svg+xml")):
        r = server.get(path)
        assert r.status_code == 200 and r.headers["Content-Type"].startswith(ctype), path
        assert r.headers["ETag"] != etag
    # Nothing outside this server is referenced.
    for path in ("/", "/app.js", "/chart.js", "/app.css"):
        body = server.get(path).text
        assert "http://" not in body and "https://" not in body, path
    assert server.get("/nope.js").status_code == 404


def test_console_in_headless_chromium(make_server):
    # The webhooks part delivers to a receiver the script runs on loopback.
    server = make_server(["--webhooks.allow_hosts", "127.0.0.1/32"])
    chromium = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    if not os.path.exists(chromium) or not shutil.which("node"):
        pytest.skip("chromium and node are needed (scripts/install-deps.sh test)")
    if not os.path.isdir(os.path.join(JS, "node_modules", "playwright-core")):
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=JS, check=True, capture_output=True, timeout=300)
    shot = os.path.join(ROOT, "build", "console.png")
    os.makedirs(os.path.dirname(shot), exist_ok=True)
    p = subprocess.run(["node", os.path.join(JS, "console_test.mjs"), server.url, shot], capture_output=True,
                       text=True, timeout=180)
    lines = p.stdout.strip().splitlines()
    assert p.returncode == 0 and lines, p.stdout + p.stderr
    out = json.loads(lines[-1])
    assert out["ok"], out
    assert os.path.getsize(shot) > 10000
    assert os.path.getsize(shot.replace(".png", "-webhooks.png")) > 10000
