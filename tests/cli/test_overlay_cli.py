"""`bulkhead overlay` against a live server: upload (and a refused one: exit 2 with the server's message), list,
key, desired packages of a group, remove."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.cli.conftest import cli
from tests.live import LiveServer
from tests.overlay_debs import make_deb

pytestmark = pytest.mark.skipif(not (shutil.which("gpg") and shutil.which("dpkg-deb")), reason="needs gpg and dpkg-deb")


def ok(srv: LiveServer, token: str, *args: str) -> Any:
    res = cli(srv, token, *args, "--json")
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def test_overlay_commands(srv: LiveServer, tmp_path: Path) -> None:
    token = srv.tenant()
    deb = make_deb(tmp_path, "hello-cli", "1.0-1")
    up = ok(srv, token, "overlay", "upload", str(deb), "--suite", "bookworm")
    assert (up["name"], up["version"], up["suite"]) == ("hello-cli", "1.0-1", "bookworm")
    again = cli(srv, token, "overlay", "upload", str(deb), "--suite", "bookworm")
    assert again.returncode == 2 and "already in suite bookworm" in again.stderr
    assert [p["id"] for p in ok(srv, token, "overlay", "list", "--suite", "bookworm")] == [up["id"]]
    key = ok(srv, token, "overlay", "key")
    assert key["public_key"].startswith("-----BEGIN PGP PUBLIC KEY BLOCK-----")
    assert cli(srv, token, "overlay", "key", "--out", str(tmp_path / "k.asc")).returncode == 0
    assert (tmp_path / "k.asc").read_text() == key["public_key"]
    desired = ok(srv, token, "overlay", "desired", "--group", "line", "--hold", "hello-cli=1.0-1", "--remove", "telnet")
    assert desired["desired"]["packages"]["hello-cli"] == {"name": "hello-cli", "version": "1.0-1", "hold": True, "remove": False}
    assert cli(srv, token, "overlay", "desired", "--group", "line").returncode == 2
    assert cli(srv, token, "overlay", "remove", str(up["id"])).returncode == 0
    assert ok(srv, token, "overlay", "list") == []


def test_overlay_key_rotation_from_the_cli(srv: LiveServer) -> None:
    token = srv.tenant()
    first = ok(srv, token, "overlay", "key")
    rotating = ok(srv, token, "overlay", "key", "--rotate")
    assert rotating["retiring_fingerprint"] == first["fingerprint"] != rotating["fingerprint"]
    again = cli(srv, token, "overlay", "key", "--rotate")
    assert again.returncode == 2 and "not finished" in again.stderr
    both = cli(srv, token, "overlay", "key", "--rotate", "--finish")
    assert both.returncode != 0 and "not both" in both.stderr
    done = ok(srv, token, "overlay", "key", "--finish")
    assert done["fingerprint"] == rotating["fingerprint"] and done["retiring_fingerprint"] is None
