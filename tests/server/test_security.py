"""Sealing stored secrets with the server secret."""

from __future__ import annotations

import multiprocessing
from pathlib import Path
from typing import Any

import pytest

from bulkhead.server.security import load_secret, seal, unseal


def test_seal_round_trip_and_refusals() -> None:
    a, b = b"a" * 32, b"b" * 32
    sealed = seal(a, "hunter2")
    assert sealed.startswith("v1:") and "hunter2" not in sealed and seal(a, "hunter2") != sealed  # random nonce
    assert unseal(a, sealed) == "hunter2"
    with pytest.raises(ValueError, match="another server secret"):
        unseal(b, sealed)
    tampered = sealed[:-4] + ("AAAA" if not sealed.endswith("AAAA") else "BBBB")
    with pytest.raises(ValueError):
        unseal(a, tampered)
    with pytest.raises(ValueError, match="not a sealed value"):
        unseal(a, "plain")


def _load_after(barrier: Any, data_dir: Path, out: Any) -> None:
    barrier.wait()
    out.put(load_secret(data_dir))


def test_server_processes_starting_together_share_one_whole_secret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BULKHEAD_SECRET", raising=False)
    ctx = multiprocessing.get_context("fork")
    n = 8
    barrier, out = ctx.Barrier(n), ctx.Queue()
    procs = [ctx.Process(target=_load_after, args=(barrier, tmp_path, out)) for _ in range(n)]
    for p in procs:
        p.start()
    keys = [out.get(timeout=30) for _ in procs]
    for p in procs:
        p.join(timeout=30)
        assert p.exitcode == 0
    assert len(set(keys)) == 1 and len(keys[0]) == 32
    assert load_secret(tmp_path) == keys[0]
    assert [p.name for p in tmp_path.iterdir()] == ["secret.key"]  # no temporary files left
    assert (tmp_path / "secret.key").stat().st_mode & 0o777 == 0o600
