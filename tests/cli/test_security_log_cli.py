"""`bulkhead device security-log NAME` and `bulkhead cra security-events` against a live server; `device show`
counts the device's security events; a kind the server does not know exits 2 with its message."""

from __future__ import annotations

import json

from tests.cli.conftest import cli
from tests.live import LiveServer

REFUSED = "RAUC install failed: signature verification failed: error:1700009E:CMS routines::verification failure"


def test_security_log_commands(srv: LiveServer) -> None:
    token = srv.tenant(keyring=False)
    with srv.client(token) as c:
        boot = c.post("/api/v1/bootstrap-tokens", json={"name": "b"}).json()["token"]
        for name, event in (("cam-1", "signature_refused"), ("cam-2", "unexpected_slot_change")):
            cred = c.post("/device/v1/enroll", json={"bootstrap_token": boot, "name": name, "compatible": "c"}).json()
            ev = {"seq": 1, "kind": "security", "phase": None, "details": {"event": event, "message": REFUSED}}
            r = c.post("/device/v1/reports", json={"events": [ev]}, headers={"authorization": f"Bearer {cred['credential']}"})
            assert r.status_code == 200, r.text

    res = cli(srv, token, "device", "security-log", "cam-1", "--json")
    assert res.returncode == 0, res.stderr
    [row] = json.loads(res.stdout)
    assert row["kind"] == "signature_refused" and row["message"] == REFUSED and row["device"] == "cam-1"
    table = cli(srv, token, "device", "security-log", "cam-1")
    assert table.returncode == 0 and "signature_refused" in table.stdout

    every = json.loads(cli(srv, token, "cra", "security-events", "--json").stdout)
    assert [r["device"] for r in every] == ["cam-2", "cam-1"]
    slots = json.loads(cli(srv, token, "cra", "security-events", "--kind", "unexpected_slot_change", "--json").stdout)
    assert [r["device"] for r in slots] == ["cam-2"]

    shown = cli(srv, token, "device", "show", "cam-1")
    assert shown.returncode == 0 and "signature_refused=1" in shown.stdout

    bad = cli(srv, token, "cra", "security-events", "--kind", "bogus")
    assert bad.returncode == 2 and "signature_refused" in bad.stderr
    missing = cli(srv, token, "device", "security-log", "nobody")
    assert missing.returncode == 2 and "nobody" in missing.stderr
