"""Users, tokens, ACLs and the anonymous rule over REST."""
import subprocess

import pytest

from conftest import BIN, free_port


def test_admin_users_tokens_acls(server):
    r = server.put("/v1/users/alice", json={"password": "s3cret", "admin": False})
    assert r.status_code == 200, r.text
    assert any(u["name"] == "alice" for u in server.get("/v1/users").json()["users"])
    t = server.post("/v1/tokens", json={"user": "alice", "description": "ci"})
    assert t.status_code == 201, t.text
    token = t.json()["token"]
    tid = t.json()["id"]
    assert any(x["id"] == tid for x in server.get("/v1/tokens").json()["tokens"])
    # Restrict alice to publishing under sensors/#.
    r = server.post("/v1/acls", json={"user": "alice", "perms": ["publish"], "filter": "sensors/#"})
    assert r.status_code == 201, r.text
    h = {"Authorization": f"Bearer {token}"}
    assert server.post("/v1/publish/sensors/a", data=b"1", headers=h).status_code == 201
    r = server.post("/v1/publish/other/a", data=b"1", headers=h)
    assert r.status_code == 403 and r.json()["code"] == "forbidden"
    # Basic auth with the password works too; a wrong password does not.
    assert server.post("/v1/publish/sensors/b", data=b"1", auth=("alice", "s3cret")).status_code == 201
    r = server.post("/v1/publish/sensors/b", data=b"1", auth=("alice", "wrong"))
    assert r.status_code == 401 and r.json()["code"] == "unauthorized"
    r = server.post("/v1/publish/sensors/b", data=b"1", headers={"Authorization": "Bearer jnt_nope"})
    assert r.status_code == 401
    # Non-admin users cannot administer.
    r = server.get("/v1/users", headers=h)
    assert r.status_code == 403
    # Revoked tokens stop working.
    assert server.delete(f"/v1/tokens/{tid}").status_code == 204
    assert server.post("/v1/publish/sensors/a", data=b"1", headers=h).status_code == 401
    assert server.delete("/v1/users/alice").status_code == 204


def test_users_survive_restart(make_server):
    s = make_server()
    s.put("/v1/users/bob", json={"password": "pw", "admin": True})
    s.stop()
    s.start()
    assert s.get("/v1/users", auth=("bob", "pw")).status_code == 200


def test_no_anonymous_when_disabled(make_server):
    s = make_server(["--allow_anonymous", "false", "--admin.user", "root", "--admin.password", "pw"])
    r = s.post("/v1/publish/x", data=b"1")
    assert r.status_code == 401
    assert r.json()["code"] == "unauthorized"
    assert s.post("/v1/publish/x", data=b"1", auth=("root", "pw")).status_code == 201
    # health stays open for probes
    assert s.get("/v1/health").status_code == 200


def test_refuses_public_listen_without_users(tmpdir_path):
    p = subprocess.run([BIN, "serve", "--data_dir", tmpdir_path, "--http.listen", f"0.0.0.0:{free_port()}"],
                       capture_output=True, timeout=30)
    assert p.returncode != 0
    assert b"anonymous" in p.stderr.lower() or b"user" in p.stderr.lower()


def test_invalid_config_names_line(tmpdir_path):
    conf = f"{tmpdir_path}/bad.conf"
    with open(conf, "w") as f:
        f.write("# comment\ndata_dir = /tmp/x\nno_such_option = 1\n")
    p = subprocess.run([BIN, "serve", "--config", conf], capture_output=True, timeout=30)
    assert p.returncode != 0
    assert b"bad.conf:3" in p.stderr and b"no_such_option" in p.stderr


def test_serve_help_lists_options():
    p = subprocess.run([BIN, "serve", "--help"], capture_output=True, timeout=30)
    assert p.returncode == 0
    out = p.stdout.decode()
    for opt in ("data_dir", "http.listen", "streams.fsync", "allow_anonymous", "tls.cert"):
        assert opt in out
