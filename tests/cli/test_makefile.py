"""The Makefile's gates: `make lint`, `make typecheck`, `make importcheck` are targets, and `make test` runs them first."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _dry_run(tmp_path: Path, *targets: str) -> list[str]:
    """What make would run (-n: nothing runs), with a virtualenv path that is already "set up"."""
    if shutil.which("make") is None:
        pytest.skip("'make' is missing: install the Debian package make")
    venv = tmp_path / "venv"
    venv.mkdir(exist_ok=True)
    (venv / ".installed").touch()  # newer than pyproject.toml: the setup recipe has nothing to do
    res = subprocess.run(
        ["make", "-n", "--no-print-directory", "-C", str(REPO), f"VENV={venv}", *targets],
        capture_output=True,
        text=True,
        check=False,
    )
    assert res.returncode == 0, res.stderr
    return [ln.replace(str(venv), "VENV") for ln in res.stdout.splitlines()]


def test_each_gate_is_a_target(tmp_path: Path) -> None:
    assert _dry_run(tmp_path, "lint") == ["VENV/bin/ruff check src tests bench"]
    assert _dry_run(tmp_path, "typecheck") == ["VENV/bin/mypy"]
    assert _dry_run(tmp_path, "importcheck") == ["VENV/bin/lint-imports"]


def test_make_test_runs_the_gates_before_the_tests(tmp_path: Path) -> None:
    lines = _dry_run(tmp_path, "test")
    gates = ["VENV/bin/ruff check src tests bench", "VENV/bin/mypy", "VENV/bin/lint-imports"]
    assert lines[:3] == gates
    assert any("VENV/bin/pytest" in ln for ln in lines[3:])
