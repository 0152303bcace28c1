"""HTTPS listener with a self-signed certificate made at test time."""
import os
import subprocess

import requests

from conftest import free_port


def test_https(make_server, tmpdir_path):
    cert = os.path.join(tmpdir_path, "cert.pem")
    key = os.path.join(tmpdir_path, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert,
                    "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   check=True, capture_output=True)
    port = free_port()
    s = make_server(["--https.listen", f"127.0.0.1:{port}", "--tls.cert", cert, "--tls.key", key])
    r = requests.post(f"https://127.0.0.1:{port}/v1/publish/tls/x", data=b"secure", verify=cert, timeout=10)
    assert r.status_code == 201, r.text
    r = requests.get(f"https://127.0.0.1:{port}/v1/streams/tls/partitions/0/records", verify=cert, timeout=10)
    assert r.json()["records"][0]["value"] == "secure"
    # plain HTTP keeps working beside it
    assert s.get("/v1/health").status_code == 200
