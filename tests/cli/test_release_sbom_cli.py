"""`bulkhead release sbom` against a live server: attach, download, and a clear error for a file that is no SBOM."""

from __future__ import annotations

import json
from pathlib import Path

from tests.cli.conftest import cli
from tests.live import LiveServer
from tests.server.test_release_sboms import docs
from tests.server.test_releases import GOOD


def test_release_sbom_attach_and_get(srv: LiveServer, tmp_path: Path) -> None:
    token = srv.tenant()
    rel = json.loads(cli(srv, token, "release", "upload", str(GOOD), "--json").stdout)
    spdx_file, cdx_file = tmp_path / "img.spdx.json", tmp_path / "img.cdx.json"
    spdx_file.write_bytes(docs("1")[0])
    cdx_file.write_bytes(docs("1")[1])
    for f, fmt in ((spdx_file, "spdx"), (cdx_file, "cyclonedx")):
        res = cli(srv, token, "release", "sbom", str(rel["id"]), str(f), "--json")
        assert res.returncode == 0 and json.loads(res.stdout)["format"] == fmt, res.stderr
    out = tmp_path / "got.json"
    res = cli(srv, token, "release", "sbom", str(rel["id"]), "--get", "cyclonedx", "--out", str(out))
    assert res.returncode == 0 and out.read_bytes() == cdx_file.read_bytes()
    res = cli(srv, token, "release", "sbom", str(rel["id"]), "--get", "spdx")
    assert res.returncode == 0 and json.loads(res.stdout)["spdxVersion"] == "SPDX-2.3"

    bad = tmp_path / "notes.json"
    bad.write_text('{"notes": "not an SBOM"}')
    res = cli(srv, token, "release", "sbom", str(rel["id"]), str(bad))
    assert res.returncode == 2 and "not an SBOM" in res.stderr and "Traceback" not in res.stderr
    res = cli(srv, token, "release", "sbom", str(rel["id"]))
    assert res.returncode == 2 and "--get FORMAT" in res.stderr
