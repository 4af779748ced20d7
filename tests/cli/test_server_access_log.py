"""`bulkhead server --access-log`: one line per request (method, path, status) from either HTTP server, off by
default, never with the query string (a signed URL's is a credential). Devices' range requests show as 206
lines (RAUC streaming a bundle, in the QEMU device test)."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from tests.live import live_server


@pytest.mark.parametrize("http_server", ["granian", "uvicorn"])
def test_every_request_is_logged_only_when_asked(tmp_path: Path, http_server: str) -> None:
    for on in (False, True):
        data = tmp_path / f"{http_server}-{on}"
        with live_server(data, http_server=http_server, args=("--access-log",) if on else ()) as srv:
            assert httpx.get(srv.url + "/api/v1/releases?limit=1&s=secret").status_code == 401
        log = (data / "server.log").read_text()
        logged = re.search(r'"GET /api/v1/releases HTTP/1\.1" 401', log)
        assert bool(logged) is on and "secret" not in log, log[-2000:]
