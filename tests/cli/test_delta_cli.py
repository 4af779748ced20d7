"""`bulkhead delta create|apply` as a subprocess: a signed delta bundle, JSON output, clear errors."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

from bulkhead.delta.patch import PatchError
from bulkhead.lab.pki import make_pki
from bulkhead.rauc import FileReader, load_keyring, open_bundle
from tests.cli.conftest import CLI
from tests.delta.conftest import ext4, full_bundle


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args],
        capture_output=True,
        text=True,
        check=False,
        env={"COLUMNS": "200", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "PYTHONPATH": os.environ.get("PYTHONPATH", "")},
    )


def test_create_then_apply(tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    v1, v2 = ext4(tmp_path, 1), ext4(tmp_path, 2)
    b1 = full_bundle(tmp_path, v1, "1", pki.cert, pki.key)
    b2 = full_bundle(tmp_path, v2, "2", pki.cert, pki.key)
    keys = ["--cert", str(pki.cert), "--key", str(pki.key), "--keyring", str(pki.ca)]
    res = _run("delta", "create", "--from", str(b1), "--to", str(b2), *keys, "--json")
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    out = Path(doc["bundle"])
    assert out.name == "full-2-delta-from-full-1.raucb" and doc["version"] == "2" and doc["size"] < doc["full_size"] / 4
    assert doc["images"]["rootfs"]["copy_blocks"] > 0
    with FileReader(out) as r:
        b = open_bundle(r)
        b.verify(load_keyring(pki.ca.read_bytes()))  # signed with the release key: devices trust it as is
        patch_bytes = b"".join(b.squashfs().iter_file("rootfs.ext4.bhdelta"))
    patch = tmp_path / "p.bhdelta"
    patch.write_bytes(patch_bytes)
    res = _run("delta", "apply", str(patch), "--source", str(v1), "--target", str(tmp_path / "rebuilt"))
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "rebuilt").read_bytes() == v2.read_bytes()
    res = _run("delta", "apply", str(patch), "--source", str(v1), "--target", str(tmp_path / "again"), "--json")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout) == {
        "target": str(tmp_path / "again"),
        "size": v2.stat().st_size,
        "sha256": hashlib.sha256(v2.read_bytes()).hexdigest(),
        "verified": True,
    }

    res = _run("delta", "apply", str(patch), "--source", str(v2), "--target", str(tmp_path / "x"))
    assert res.returncode == 2 and "not the image this patch was made from" in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "x").exists()
    assert PatchError.__name__ not in res.stderr

    res = _run("delta", "create", "--from", str(b1), "--to", str(b1), *keys)
    assert res.returncode == 2 and "both bundles have version 1" in res.stderr
    other = make_pki(tmp_path / "other", org="Someone Else")
    res = _run("delta", "create", "--from", str(b1), "--to", str(b2), "--cert", str(pki.cert), "--key", str(pki.key),
               "--keyring", str(other.ca), "--out", str(tmp_path / "no.raucb"))  # fmt: skip
    assert res.returncode == 2 and "old bundle" in res.stderr and not (tmp_path / "no.raucb").exists()


def test_ci_pipeline_against_a_server(srv, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """What an owner's CI runs: upload releases, ask the plan, create and upload the delta, see it offered."""
    from tests.cli.conftest import cli

    pki = make_pki(tmp_path / "pki")
    token = srv.tenant(ca=pki.ca)
    v1, v2 = ext4(tmp_path, 1), ext4(tmp_path, 2)
    b1 = full_bundle(tmp_path, v1, "1", pki.cert, pki.key)
    b2 = full_bundle(tmp_path, v2, "2", pki.cert, pki.key)
    ids = [json.loads(cli(srv, token, "release", "upload", str(b), "--json").stdout)["id"] for b in (b1, b2)]
    boot = json.loads(cli(srv, token, "bootstrap", "create", "lab", "--json").stdout)["token"]
    with srv.client() as c:
        cred = c.post("/device/v1/enroll", json={"bootstrap_token": boot, "name": "d1", "compatible": "delta-lab"}).json()
        auth = {"authorization": f"Bearer {cred['credential']}"}
        c.post("/device/v1/reports", json={"inventory": {"os_version": "1"}}, headers=auth).raise_for_status()

    res = cli(srv, token, "delta", "plan", str(ids[1]), "--json")
    assert res.returncode == 0, res.stderr
    [src] = json.loads(res.stdout)["sources"]
    assert (src["version"], src["devices"], src["delta"]) == ("1", 1, None) and "bulkhead delta create" in src["advice"]
    human = cli(srv, token, "delta", "plan", str(ids[1]))
    assert human.returncode == 0 and "build it" in human.stdout and "no (no signing key on the server)" in human.stdout, (
        human.stdout
    )

    keys = ["--cert", str(pki.cert), "--key", str(pki.key), "--keyring", str(pki.ca)]
    out = tmp_path / "d.raucb"
    assert cli(srv, token, "delta", "create", "--from", str(b1), "--to", str(b2), *keys, "--out", str(out)).returncode == 0
    up = cli(srv, token, "delta", "upload", str(ids[1]), str(out), "--json")
    assert up.returncode == 0, up.stderr
    assert json.loads(up.stdout)["source_version"] == "1"
    again = cli(srv, token, "delta", "upload", str(ids[1]), str(out))
    assert again.returncode == 2 and "already has a delta from 1" in again.stderr and "Traceback" not in again.stderr
    listed = cli(srv, token, "delta", "list", str(ids[1]))
    assert listed.returncode == 0 and "ready" in listed.stdout
    [src] = json.loads(cli(srv, token, "delta", "plan", str(ids[1]), "--json").stdout)["sources"]
    assert src["advice"] == "delta ready"

    nokey = cli(srv, token, "delta", "build", str(ids[1]), "--from", "1")
    assert nokey.returncode == 2 and "holds no signing key" in nokey.stderr
    shown = cli(srv, token, "delta", "signing-key", "show", "--json")
    assert json.loads(shown.stdout)["server_signing"] is False
    setkey = cli(srv, token, "delta", "signing-key", "set", "--cert", str(pki.cert), "--key", str(pki.key), "--json")
    assert setkey.returncode == 0 and json.loads(setkey.stdout)["server_signing"] is True
    removed = cli(srv, token, "delta", "signing-key", "remove", "--json")
    assert json.loads(removed.stdout)["server_signing"] is False
    d = json.loads(up.stdout)["id"]
    assert cli(srv, token, "delta", "delete", str(ids[1]), str(d)).returncode == 0
    assert json.loads(cli(srv, token, "delta", "list", str(ids[1]), "--json").stdout) == []
