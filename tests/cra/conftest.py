"""The real Yocto SBOMs of the shared testdata as session fixtures, and the derived fixtures' folder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import SHARED

FIXTURES = Path(__file__).parent / "components" / "fixtures"
BEAGLEBONE = SHARED / "yocto-spdx/spdx-2.2/vulnscout-core-image-minimal-beaglebone-yocto/extracted"
SPDX3 = SHARED / "yocto-spdx/spdx-3.0.1/vulnscout-core-image-minimal-qemux86-64/core-image-minimal-qemux86-64.rootfs.spdx.json"


def load(path: Path) -> Any:
    return json.loads(path.read_text())


@pytest.fixture(scope="session")
def beaglebone_docs() -> list[dict[str, Any]]:
    if not BEAGLEBONE.is_dir():
        pytest.skip(f"shared testdata not found: {BEAGLEBONE}")
    return [load(p) for p in sorted(BEAGLEBONE.glob("*.spdx.json"))]


@pytest.fixture(scope="session")
def spdx3_doc() -> dict[str, Any]:
    if not SPDX3.is_file():
        pytest.skip(f"shared testdata not found: {SPDX3}")
    doc: dict[str, Any] = load(SPDX3)
    return doc
