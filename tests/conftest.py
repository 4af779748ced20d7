"""Shared fixtures: the golden test data and small helpers."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tests.registry import Registry

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


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """A container registry on loopback with credentials (lab devices pull from it; QEMU guests as 10.0.2.2)."""
    from tests.registry import registry_server  # it imports tests.live, which imports this module

    with registry_server(tmp_path_factory.mktemp("registry")) as reg:
        yield reg


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Slow tests first, each followed by one quick test, longest first (the whole-device QEMU test).

    With `pytest -n 2 --maxschedchunk 2` xdist gives each worker its first two items, so the two longest
    tests start at once on different workers instead of one after the other on the same one.
    """
    order = ("test_qemu_device", "test_reproducible")

    def rank(item: pytest.Item) -> int:
        name = item.path.stem
        return order.index(name) if name in order else len(order)

    slow = sorted((i for i in items if i.get_closest_marker("slow")), key=rank)
    quick = [i for i in items if not i.get_closest_marker("slow")]
    head: list[pytest.Item] = []
    for n, item in enumerate(slow):
        head.append(item)
        if n < len(quick):
            head.append(quick[n])
    items[:] = head + quick[len(slow) :]


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """The PostgreSQL databases the tests made are dropped (each xdist worker drops its own)."""
    from tests.pg import drop_created

    if left := drop_created():
        print(f"\nPostgreSQL test databases that could not be dropped: {', '.join(left)}")
