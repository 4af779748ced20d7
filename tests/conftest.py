"""Shared fixtures: the golden test data and small helpers."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

SHARED = Path(os.environ.get("BULKHEAD_TESTDATA") or Path(__file__).resolve().parents[2] / "shared" / "testdata")
RAUC_DATA = SHARED / "rauc"
DEV_CA = RAUC_DATA / "openssl-ca" / "dev-ca.pem"


def need_tool(name: str, package: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"'{name}' is missing: install the Debian package '{package}'")
    return path


@pytest.fixture(scope="session")
def rauc_data() -> Path:
    if not RAUC_DATA.is_dir():
        pytest.skip(f"golden RAUC test data not found at {RAUC_DATA} (shared/testdata beside the repository)")
    return RAUC_DATA
