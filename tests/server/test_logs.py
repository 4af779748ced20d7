"""JSON log lines carry the request id of the request being served, extra fields and the traceback."""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path

import httpx

from bulkhead.server.asgi import REQUEST_ID
from bulkhead.server.logs import JsonFormatter
from tests.live import live_server


def _record(msg: str, exc: bool = False, **extra: object) -> logging.LogRecord:
    info = None
    if exc:
        try:
            raise ValueError("boom")
        except ValueError:
            info = sys.exc_info()
    record = logging.LogRecord("bulkhead.server", logging.WARNING, __file__, 1, msg, ("x",), info)
    for k, v in extra.items():
        setattr(record, k, v)
    return record


def test_a_line_is_one_json_object_with_the_request_id() -> None:
    token = REQUEST_ID.set("abc123")
    try:
        line = JsonFormatter().format(_record("device %s refused", device="d-1"))
    finally:
        REQUEST_ID.reset(token)
    entry = json.loads(line)
    assert entry["message"] == "device x refused"
    assert entry["request_id"] == "abc123"
    assert entry["level"] == "warning" and entry["logger"] == "bulkhead.server"
    assert entry["device"] == "d-1"
    assert entry["time"].endswith("Z")
    assert "\n" not in line


def test_outside_a_request_the_id_is_a_dash_and_a_traceback_is_kept() -> None:
    entry = json.loads(JsonFormatter().format(_record("failed %s", exc=True)))
    assert entry["request_id"] == "-"
    assert "ValueError: boom" in entry["exception"]


def test_the_server_logs_json_lines_with_the_answers_request_id(tmp_path: Path) -> None:
    with live_server(tmp_path / "srv", env_extra={"BULKHEAD_LOG_FORMAT": "json"}) as srv:
        with httpx.Client(base_url=srv.url, headers={"authorization": "Bearer bh_wrong"}) as c:
            r = c.get("/api/v1/devices")
        assert r.status_code == 401
        rid = r.headers["x-request-id"]
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and rid not in (srv.data_dir / "server.log").read_text():
            time.sleep(0.1)
    lines = [ln for ln in (srv.data_dir / "server.log").read_text().splitlines() if rid in ln]
    assert lines, "the refused request is logged"
    entry = json.loads(lines[0])
    assert entry["request_id"] == rid and "authentication failed" in entry["message"]
