"""`bulkhead delta create|apply` as a subprocess: a signed delta bundle, JSON output, clear errors."""

from __future__ import annotations

import json
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
        env={"COLUMNS": "200", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
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
