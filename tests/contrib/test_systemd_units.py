"""contrib/systemd: the server and backup units pass `systemd-analyze verify` and keep their hardening."""

from __future__ import annotations

import configparser
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import need_tool

UNITS = Path(__file__).resolve().parents[2] / "contrib" / "systemd"
BULKHEAD = Path(sys.executable).parent / "bulkhead"


def _unit(name: str) -> configparser.RawConfigParser:
    p = configparser.RawConfigParser(strict=False, interpolation=None)
    p.optionxform = str  # type: ignore[assignment,method-assign]
    p.read(UNITS / name)
    return p


def _installed(tmp: Path, name: str) -> Path:
    """The unit as installed with the venv of this test run in place of /opt/bulkhead."""
    out = tmp / name
    out.write_text((UNITS / name).read_text().replace("/opt/bulkhead/bin/bulkhead", str(BULKHEAD)))
    return out


@pytest.mark.parametrize("name", ["bulkhead-server.service", "bulkhead-backup.service", "bulkhead-backup.timer"])
def test_units_verify(tmp_path: Path, name: str) -> None:
    analyze = need_tool("systemd-analyze", "systemd")
    for unit in ("bulkhead-server.service", "bulkhead-backup.service", "bulkhead-backup.timer"):
        _installed(tmp_path, unit)
    r = subprocess.run([analyze, "verify", "--man=no", str(tmp_path / name)], capture_output=True, text=True, timeout=60)
    problems = [line for line in (r.stdout + r.stderr).splitlines() if str(tmp_path) in line or "bulkhead" in line]
    assert r.returncode == 0 and not problems, r.stdout + r.stderr


def test_server_unit_is_hardened(tmp_path: Path) -> None:
    service = _unit("bulkhead-server.service")["Service"]
    assert service["DynamicUser"] == "yes" and service["ProtectSystem"] == "strict"
    assert service["NoNewPrivileges"] == "yes" and service["ReadWritePaths"] == "/var/lib/bulkhead"
    assert service["Environment"] == "BULKHEAD_DATA_DIR=/var/lib/bulkhead" and service["CapabilityBoundingSet"] == ""
    analyze = need_tool("systemd-analyze", "systemd")
    r = subprocess.run(
        [analyze, "security", "--offline=yes", "--no-pager", str(_installed(tmp_path, "bulkhead-server.service"))],
        capture_output=True,
        text=True,
        timeout=60,
    )
    score = next(line for line in r.stdout.splitlines() if "Overall exposure level" in line)
    assert float(score.split(":")[1].split()[0]) <= 2.0, r.stdout  # systemd's "OK" band and below
