"""`bulkhead release sbom-export` against a live server: each format to a file or standard output, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

from bulkhead.cra.components import read_sbom
from tests.cli.conftest import cli
from tests.live import LiveServer
from tests.sbom_validators import validate
from tests.server.test_release_sboms import docs
from tests.server.test_releases import GOOD


def test_release_sbom_export(srv: LiveServer, tmp_path: Path) -> None:
    token = srv.tenant()
    rel = json.loads(cli(srv, token, "release", "upload", str(GOOD), "--json").stdout)
    rid = str(rel["id"])
    res = cli(srv, token, "release", "sbom-export", rid)
    assert res.returncode == 2 and "has no SBOM" in res.stderr and "Traceback" not in res.stderr
    attached = tmp_path / "img.cdx.json"
    attached.write_bytes(docs("1")[1])
    assert cli(srv, token, "release", "sbom", rid, str(attached)).returncode == 0
    want = [(c.name, c.version, c.purl) for c in read_sbom([json.loads(attached.read_text())])]

    for fmt in ("cyclonedx", "spdx", "spdx3"):
        out = tmp_path / f"export.{fmt}.json"
        res = cli(srv, token, "release", "sbom-export", rid, "--format", fmt, "-o", str(out), "--json")
        assert res.returncode == 0, res.stderr
        assert json.loads(res.stdout) == {"release": rel["id"], "format": fmt, "file": str(out), "size": out.stat().st_size}
        assert validate(fmt, out.read_text()) == []
        assert [(c.name, c.version, c.purl) for c in read_sbom([json.loads(out.read_text())])] == want
    res = cli(srv, token, "release", "sbom-export", rid, "-f", "spdx")
    assert res.returncode == 0 and json.loads(res.stdout)["spdxVersion"] == "SPDX-2.3"

    res = cli(srv, token, "release", "sbom-export", rid, "--format", "swid")
    assert res.returncode == 2 and "400" in res.stderr and "cyclonedx, spdx, spdx3" in res.stderr
