"""`bulkhead cra export` against a live server: the archive is written whole (and the same twice); an unknown product
is exit code 2 with the server's advice, and no file is left behind."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

from tests.cli.conftest import cli
from tests.live import LiveServer


def test_export_writes_the_archive_and_an_unknown_product_writes_nothing(srv: LiveServer, tmp_path: Path) -> None:
    token = srv.tenant()
    res = cli(srv, token, "cra", "product", "set", "gw-x", "--name", "Gateway X", "--manufacturer", "Acme")
    assert res.returncode == 0, res.stderr
    first, second = tmp_path / "a.tar.gz", tmp_path / "b.tar.gz"
    for out in (first, second):
        res = cli(srv, token, "cra", "export", "--product", "gw-x", "-o", str(out))
        assert res.returncode == 0, res.stderr
        assert str(out) in res.stdout + res.stderr
    assert first.read_bytes() == second.read_bytes()
    with tarfile.open(fileobj=io.BytesIO(first.read_bytes()), mode="r:gz") as tar:
        names = tar.getnames()
        manifest = tar.extractfile("manifest.json")
        assert manifest is not None
        listed = [m["path"] for m in json.loads(manifest.read())["members"]]
    assert names[-1] == "manifest.json" and listed == names[:-1] and "product.json" in names
    assert not list(tmp_path.glob("*.part"))
    res = cli(srv, token, "cra", "export", "--product", "gw-x", "-o", str(second), "--json")
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout)
    assert summary["sha256"] == hashlib.sha256(first.read_bytes()).hexdigest() and summary["size"] == first.stat().st_size

    missing = tmp_path / "none.tar.gz"
    res = cli(srv, token, "cra", "export", "--product", "nope", "-o", str(missing))
    assert res.returncode == 2 and "404" in res.stderr and "bulkhead cra product set" in res.stderr
    assert not missing.exists() and not list(tmp_path.glob("*.part"))
