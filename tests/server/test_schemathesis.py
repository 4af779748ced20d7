"""The gate: schemathesis fuzzes every operation of the OpenAPI document against a live server on SQLite.

Authenticated as a tenant administrator (so the management routes run past authentication), with the failed-
authentication limit off (the DDI and device routes answer 401 to most generated credentials), and without the
two operations that revoke the run's own credential. It must find no
server error, no undocumented status code, no response that breaks its schema and no wrong content type.
Bounded by --max-time so that the whole test takes at most 3 minutes on two cores.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.live import live_server

pytest.importorskip("schemathesis")

CHECKS = "not_a_server_error,status_code_conformance,response_schema_conformance,content_type_conformance"
MAX_SECONDS = 140


def _failure_report(out: str, server_log: Path) -> str:
    """What a failed run found: schemathesis' failure block (the operation, the request as curl, the response) and
    the server's own tracebacks; the summary alone names neither."""
    sections = [out[i : i + 8000] for i in (out.find("= ERRORS ="), out.find("= FAILURES =")) if i >= 0]
    failures = "\n".join(sections) if sections else out[-6000:]
    log = server_log.read_text(errors="replace") if server_log.exists() else ""
    tracebacks = [log[m.start() : m.start() + 3000] for m in re.finditer("Traceback", log)]
    return failures + "\n--- server tracebacks ---\n" + "\n...\n".join(tracebacks[:3])


def test_schemathesis_finds_no_server_error_or_contract_violation(tmp_path: Path) -> None:
    with live_server(tmp_path / "data", {"BULKHEAD_AUTH_FAIL_LIMIT": "0"}) as srv:
        token = srv.tenant()
        st = Path(sys.executable).parent / "st"
        cmd = [
            str(st) if st.exists() else "st",
            "run",
            f"{srv.url}/openapi.json",
            "--header",
            f"Authorization: Bearer {token}",
            "--checks",
            CHECKS,
            "--max-time",
            str(MAX_SECONDS),
            # One worker: with two, hypothesis describes its filters with ast.parse from two threads at once, and
            # CPython 3.11.7's ast module is not thread-safe there ("AST constructor recursion depth mismatch",
            # a crash of the tool, not a finding; seen once in CI).
            "--workers",
            "1",
            "--generation-database",
            "none",
            # hypothesis' too_slow health check times the generation of data, which a loaded two-core machine (the
            # QEMU device test beside it) fails while the same seed passes on a quiet one: a verdict on the machine,
            # not on the server. Every other health check stays.
            "--suppress-health-check",
            "too_slow",
            "--report-dir",
            str(tmp_path / "report"),
            "--no-color",
            # Revoking the run's own token or deleting its user would answer 401 to everything after it (both are
            # tested in test_identity.py); every other operation runs.
            "--exclude-name",
            "DELETE /api/v1/tokens/{token_id}",
            "--exclude-name",
            "DELETE /api/v1/users/{name}",
        ]
        if seed := os.environ.get("BULKHEAD_ST_SEED"):  # replay a run: the seed is in every report
            cmd += ["--seed", seed]
        run = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=MAX_SECONDS + 60)
    out = run.stdout + run.stderr
    summary = [line for line in out.splitlines() if re.search(r"\d+ generated", line) or line.startswith("=====")]
    print("\n".join(summary[-3:]))
    assert run.returncode == 0, _failure_report(out, tmp_path / "data" / "server.log")
    assert "Server error" not in out and re.search(r"Tested: (\d+)", out), out[-3000:]
