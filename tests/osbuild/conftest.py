"""Reference-image fixtures: skip with the missing package's name; the builds need root and the Debian mirror."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bulkhead.osbuild.reference import missing_packages


def need_image_tools() -> None:
    missing = missing_packages()
    if missing:
        pytest.skip(f"the image build needs the Debian package(s) {', '.join(missing)} ('make setup' installs them)")
    if os.geteuid() != 0:
        pytest.skip("the image build needs root (mmdebstrap --mode=root)")


@pytest.fixture(scope="session")
def image_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One base-rootfs cache for every image test of the session, shared by the xdist workers (the builds lock it)."""
    base = tmp_path_factory.getbasetemp()
    return (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "image-cache"
