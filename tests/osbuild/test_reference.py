"""The reference builder's checks that run before any step: disk space."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from bulkhead.osbuild.errors import BuildError
from bulkhead.osbuild.reference import _need_space


def test_a_build_refuses_to_start_on_a_disk_without_room(tmp_path: Path) -> None:
    free = shutil.disk_usage(tmp_path).free
    with pytest.raises(BuildError) as exc:
        _need_space(tmp_path, need=free + (1 << 40))
    assert f"{tmp_path} has" in str(exc.value) and "GiB free" in str(exc.value) and "larger disk" in str(exc.value)
    assert list(tmp_path.iterdir()) == []  # nothing written
    _need_space(tmp_path, need=1)  # enough room: no error
