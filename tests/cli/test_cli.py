"""The CLI's exit-code contract (0 ok, 1 bug, 2 user error) and JSON output."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import DEV_CA, RAUC_DATA

CLI = [sys.executable, "-m", "bulkhead.cli"]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, check=False)


def test_bundle_info_json() -> None:
    res = run("bundle", "info", "--keyring", str(DEV_CA), "--json", str(RAUC_DATA / "good-verity-bundle.raucb"))
    assert res.returncode == 0, res.stderr
    data = json.loads(res.stdout)
    assert {k: data[k] for k in ("compatible", "version", "format", "verified")} == {
        "compatible": "Test Config",
        "version": "2011.03-2",
        "format": "verity",
        "verified": True,
    }
    assert data["signer"] == "O = Test Org, CN = Test Org Release-1"
    assert {"slotclass", "filename", "size", "sha256", "adaptive"} <= set(data["images"][0])


def test_verify_bad_signature_is_user_error() -> None:
    res = run("bundle", "verify", "--keyring", str(DEV_CA), str(RAUC_DATA / "invalid-sig-bundle.raucb"))
    assert res.returncode == 2
    assert "signature verification failed" in res.stderr and "Traceback" not in res.stderr


def test_missing_file_is_user_error(tmp_path: Path) -> None:
    res = run("bundle", "verify", "--keyring", str(DEV_CA), str(tmp_path / "nope.raucb"))
    assert res.returncode == 2


def test_unreachable_server_is_user_error() -> None:
    res = run("--server", "http://127.0.0.1:9", "release", "list")
    assert res.returncode == 2 and "cannot reach the server" in res.stderr


def test_server_options_are_checked_before_anything_starts(tmp_path: Path) -> None:
    res = run("server", "--data-dir", str(tmp_path / "d"), "--http-server", "nginx")
    assert res.returncode == 2 and "--http-server must be granian or uvicorn" in res.stderr
    res = run("server", "--data-dir", str(tmp_path / "d"), "--log-level", "loud")
    assert res.returncode == 2 and "--log-level" in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "d").exists()  # refused before the data directory is made


def test_create_then_verify(tmp_path: Path) -> None:
    ca = RAUC_DATA / "openssl-ca"
    c = tmp_path / "content"
    c.mkdir()
    (c / "rootfs.img").write_bytes(b"\1" * 8192)
    (c / "manifest.raucm").write_text(
        "[update]\ncompatible=X\nversion=1\n\n[image.rootfs]\nfilename=rootfs.img\nadaptive=block-hash-index;\n"
    )
    out = tmp_path / "b.raucb"
    create = ("bundle", "create", "--cert", str(ca / "rel/release-1.cert.pem"), "--key", str(ca / "rel/private/release-1.pem"))
    res = run(*create, str(c), str(out))
    assert res.returncode == 0, res.stderr
    info = json.loads(run("bundle", "info", "--keyring", str(DEV_CA), "--json", str(out)).stdout)
    assert "rootfs.img.block-hash-index" in info["files"]
    assert run(*create, str(c), str(out)).returncode == 2
