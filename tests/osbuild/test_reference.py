"""The reference builder's checks that run before any step: disk space."""

from __future__ import annotations

import os
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
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


def test_builds_sharing_a_cache_run_mmdebstrap_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from bulkhead.osbuild import reference

    runs: list[Path] = []

    def slow_mmdebstrap(spec: reference.BuildSpec, work: Path, target: Path, progress: object) -> Path:
        runs.append(target)
        time.sleep(0.5)  # long enough for the second build to find the first one at work
        target.with_suffix(".partial.tar").write_bytes(b"base")
        os.replace(target.with_suffix(".partial.tar"), target)
        return target

    monkeypatch.setattr(reference, "_mmdebstrap", slow_mmdebstrap)
    cache = tmp_path / "cache"
    spec = reference.BuildSpec(version="1", out=tmp_path / "out", cert=tmp_path / "c", key=tmp_path / "k", cache=cache)
    steps: list[str] = []
    with ThreadPoolExecutor(2) as pool:
        bases = list(pool.map(lambda i: reference._base(spec, tmp_path / f"w{i}", steps.append), range(2)))
    assert len(runs) == 1 and bases[0] == bases[1] == runs[0] and bases[0].read_bytes() == b"base"
    assert any("waiting for another build" in s for s in steps) and any("cached" in s for s in steps)
    assert reference._base(spec, tmp_path / "w3", steps.append) == runs[0] and len(runs) == 1  # later builds reuse it
