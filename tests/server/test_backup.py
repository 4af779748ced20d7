"""`bulkhead backup create|restore`: a live server's fleet, restored into a fresh data directory (and database),
answers the same, serves the same artifacts byte for byte (ranges too), and devices' credentials still work."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import RAUC_DATA
from tests.live import live_server
from tests.seaweed import S3Server
from tests.server.conftest import pg_url

GOOD = RAUC_DATA / "good-verity-bundle.raucb"


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bulkhead.cli", *args], env={**os.environ, **env}, capture_output=True, text=True, timeout=120
    )


def _fleet(c: httpx.Client) -> dict[str, Any]:
    rel = c.post("/api/v1/releases", content=GOOD.read_bytes())
    assert rel.status_code == 201, rel.text
    devices = {}
    for name, group in (("canary-1", "canary"), ("line-1", "line")):
        boot = c.post("/api/v1/bootstrap-tokens", json={"name": name, "group": group}).json()["token"]
        r = c.post("/device/v1/enroll", json={"bootstrap_token": boot, "name": name, "compatible": "Test Config"})
        r.raise_for_status()
        devices[name] = r.json()["credential"]
    body = {
        "name": "r1",
        "release_id": rel.json()["id"],
        "target": {"groups": ["canary", "line"]},
        "phases": [{"group": "canary"}, {"group": "line"}],
    }
    ro = c.post("/api/v1/rollouts", json=body)
    assert ro.status_code == 201, ro.text
    return {"release": rel.json(), "devices": devices, "rollout": ro.json()["id"]}


def _view(c: httpx.Client, fleet: dict[str, Any]) -> dict[str, Any]:
    """What the management API says about the fleet (without counters that move on their own)."""

    def devices() -> list[tuple[Any, ...]]:
        r = c.get("/api/v1/devices", params={"limit": 100})
        r.raise_for_status()
        body = r.json()
        items = body["items"] if isinstance(body, dict) else body
        return sorted((d["id"], d["name"], d["compatible"]) for d in items)

    ro = c.get(f"/api/v1/rollouts/{fleet['rollout']}").json()
    return {
        "devices": devices(),
        "releases": c.get("/api/v1/releases").json(),
        "rollout": (ro["name"], ro["status"], ro["release_id"], [p["devices"] for p in ro["phases"]]),
    }


def _device_sees(url: str, credential: str, release: dict[str, Any]) -> bytes:
    """The canary polls its desired state and downloads its bundle whole and by a range; returns the whole."""
    h = {"authorization": f"Bearer {credential}"}
    with httpx.Client(base_url=url, headers=h, timeout=60) as d:
        state = d.get("/device/v1/state")
        assert state.status_code == 200, state.text
        assert state.json()["desired"]["release"]["id"] == release["id"]
        bundle = f"/device/v1/releases/{release['id']}/bundle"
        whole = d.get(bundle)
        assert whole.status_code == 200 and whole.headers["etag"] == f'"{release["sha256"]}"'
        part = d.get(bundle, headers={"range": "bytes=1000-4999"})
        assert part.status_code == 206 and part.content == whole.content[1000:5000]
        assert part.headers["content-range"] == f"bytes 1000-4999/{len(whole.content)}"
        return whole.content


def _damaged(archive: Path, out: Path) -> Path:
    """A copy of the backup with one byte of its bundle changed."""
    with tarfile.open(archive) as src, tarfile.open(out, "w") as dst:
        for info in src:
            data = src.extractfile(info).read() if info.isfile() else None  # type: ignore[union-attr]
            if data is not None and info.name.startswith("artifacts/") and info.size > 100:
                data = data[:50] + bytes([data[50] ^ 1]) + data[51:]
            dst.addfile(info, io.BytesIO(data) if data is not None else None)
    return out


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_backup_of_a_live_server_restores_into_a_fresh_one(tmp_path: Path, database: str) -> None:
    env_a: dict[str, str] = {"BULKHEAD_ADMIN_TOKEN": "", "BULKHEAD_SECRET": ""}
    env_b = dict(env_a)
    if database == "postgresql":
        env_a["BULKHEAD_DATABASE_URL"] = pg_url()
        env_b["BULKHEAD_DATABASE_URL"] = pg_url()  # a fresh, empty database
    archive = tmp_path / "backups" / "bulkhead.tar.gz"
    with live_server(tmp_path / "a", env_a) as a:
        token = a.tenant()
        with a.client(token) as c:
            fleet = _fleet(c)
            before = _view(c, fleet)
            served = _device_sees(a.url, fleet["devices"]["canary-1"], fleet["release"])
            assert served == GOOD.read_bytes()
            made = cli("backup", "create", "-o", str(archive), "--data-dir", str(a.data_dir), env=env_a)  # while it runs
            assert made.returncode == 0, made.stderr
            assert "sqlite database" in made.stderr if database == "sqlite" else "postgresql database" in made.stderr
        assert archive.stat().st_mode & 0o077 == 0  # it holds the server's secrets
        admin = a.admin

    fresh = tmp_path / "b"
    bad = _damaged(archive, tmp_path / "damaged.tar")
    refused = cli("backup", "restore", str(bad), "--data-dir", str(fresh), env=env_b)
    assert refused.returncode == 2 and "damaged" in refused.stderr, refused.stderr
    assert sorted(p.name for p in fresh.iterdir()) == ["artifacts"] and not any((fresh / "artifacts").iterdir())
    done = cli("backup", "restore", str(archive), "--data-dir", str(fresh), env=env_b)
    assert done.returncode == 0, done.stderr
    with live_server(fresh, env_b) as b:
        assert b.admin == admin
        with b.client(token) as c:
            assert _view(c, fleet) == before  # the tenant's token works; the same fleet
        assert _device_sees(b.url, fleet["devices"]["canary-1"], fleet["release"]) == served  # credentials work

    again = cli("backup", "restore", str(archive), "--data-dir", str(fresh), env=env_b)
    assert again.returncode == 2 and "not empty" in again.stderr  # never over a server that has data


def test_restore_refuses_what_is_not_a_backup(tmp_path: Path) -> None:
    junk = tmp_path / "junk.tar"
    junk.write_bytes(b"not a tar file at all" * 100)
    r = cli("backup", "restore", str(junk), "--data-dir", str(tmp_path / "d"), env={"BULKHEAD_DATABASE_URL": ""})
    assert r.returncode == 2 and "not a Bulkhead backup" in r.stderr
    assert not (tmp_path / "d" / "bulkhead.db").exists()
    r = cli("backup", "restore", str(tmp_path / "missing.tar"), "--data-dir", str(tmp_path / "d"), env={})
    assert r.returncode == 2 and "is not a file" in r.stderr


def test_backup_on_the_s3_store_leaves_the_artifacts_in_the_bucket_and_restores_onto_it(tmp_path: Path, s3: S3Server) -> None:
    """As in the compose stack (SeaweedFS): the backup holds the database and the data directory's files, notes the
    bucket, and a server restored with the same S3 settings serves the same bundle from the bucket."""
    env = {"BULKHEAD_ADMIN_TOKEN": "", "BULKHEAD_SECRET": "", **s3.env(s3.bucket())}
    archive = tmp_path / "bulkhead.tar"
    with live_server(tmp_path / "a", env) as a:
        token = a.tenant()
        with a.client(token) as c:
            fleet = _fleet(c)
            before = _view(c, fleet)
            served = _device_sees(a.url, fleet["devices"]["canary-1"], fleet["release"])
        made = cli("backup", "create", "-o", str(archive), "--data-dir", str(a.data_dir), env=env)
        assert made.returncode == 0, made.stderr
        assert "0 artifacts" in made.stderr and f"note: artifacts are in the S3 bucket {env['BULKHEAD_S3_BUCKET']}" in made.stderr
    fs_archive = tmp_path / "fs.tar"  # a backup of a server on the filesystem store ...
    with live_server(tmp_path / "fs", {"BULKHEAD_ADMIN_TOKEN": ""}) as fs:
        assert cli("backup", "create", "-o", str(fs_archive), "--data-dir", str(fs.data_dir), env={}).returncode == 0
    with tarfile.open(archive) as t:
        assert not [n for n in t.getnames() if n.startswith("artifacts/")]
    refused = cli("backup", "restore", str(fs_archive), "--data-dir", str(tmp_path / "x"), env=env)  # ... not onto S3
    assert refused.returncode == 2 and "BULKHEAD_STORE=fs" in refused.stderr, refused.stderr

    done = cli("backup", "restore", str(archive), "--data-dir", str(tmp_path / "b"), env=env)
    assert done.returncode == 0, done.stderr
    with live_server(tmp_path / "b", env) as b:
        with b.client(token) as c:
            assert _view(c, fleet) == before
        assert _device_sees(b.url, fleet["devices"]["canary-1"], fleet["release"]) == served == GOOD.read_bytes()
