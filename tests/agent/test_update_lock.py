"""The update lock: an application that holds it (the real `flock` command here) delays an OS install; the bundle
stays downloaded, the wait is reported once, the install starts when the lock is released or at the server's
maximum; while the agent installs it holds the lock, so an application that asks for it then is refused."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from bulkhead.agent.client import Client
from bulkhead.agent.config import load_config
from bulkhead.agent.errors import AgentError
from bulkhead.agent.outbox import Outbox
from bulkhead.agent.state import Phase, ReleaseRef, StateStore
from bulkhead.agent.update_lock import UpdateLock
from bulkhead.agent.updater import Updater

from .fakes import FakeRauc

pytestmark = pytest.mark.skipif(shutil.which("flock") is None, reason="needs flock (Debian package util-linux)")


@contextmanager
def held_by_an_application(path: Path) -> Iterator[None]:
    """`flock PATH sleep`: another process holds the lock until the block ends."""
    path.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(["flock", "--exclusive", str(path), "sleep", "60"], start_new_session=True)
    try:
        deadline = time.monotonic() + 10
        while subprocess.run(["flock", "--nonblock", str(path), "true"]).returncode == 0:  # not taken yet
            assert time.monotonic() < deadline, "flock did not take the lock"
            time.sleep(0.05)
        yield
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # flock and its sleep, which holds the lock's descriptor too
        proc.wait()
        # The sleep is not our child: it lets go when the kernel has ended it, a moment after flock (on a loaded
        # machine the test's next step came first and found the lock still held).
        deadline = time.monotonic() + 10
        while subprocess.run(["flock", "--nonblock", str(path), "true"]).returncode != 0:
            assert time.monotonic() < deadline, "the application's sleep did not end"
            time.sleep(0.02)


def _updates(up: Updater) -> list[dict[str, Any]]:
    return [e for e in up.outbox.pending() if e["kind"] == "update"]


def _setup(tmp_path: Path, lock_max: float | None) -> tuple[Updater, FakeRauc, ReleaseRef]:
    body = b"bundle bytes"
    rel = ReleaseRef(7, "2.0", "lab", hashlib.sha256(body).hexdigest(), len(body), "http://127.0.0.1:9/b", lock_max=lock_max)
    (tmp_path / "downloads").mkdir()
    (tmp_path / "downloads" / f"{rel.sha256}.raucb").write_bytes(body)  # downloaded and verified already
    rauc = FakeRauc()
    up = Updater(
        Client("http://127.0.0.1:9"), rauc, StateStore(tmp_path / "update-state.json"), Outbox(tmp_path / "outbox"),
        tmp_path / "downloads", lambda: None, lambda: [], 5.0, lambda: None, slot_path=tmp_path / "booted-slot",
        lock=UpdateLock(tmp_path / "run" / "update.lock"),
    )  # fmt: skip
    return up, rauc, rel


def test_an_application_holding_the_lock_delays_the_install_until_it_lets_go(tmp_path: Path) -> None:
    up, rauc, rel = _setup(tmp_path, lock_max=3600)
    assert up.lock is not None
    with held_by_an_application(up.lock.path):
        up.step(rel)
        up.step(rel)
        assert rauc.installed == [] and up.store.load().phase is Phase.DOWNLOADED
        waits = [e for e in _updates(up) if "update lock" in (e["details"].get("reason") or "")]
        assert len(waits) == 1 and waits[0]["phase"] == "downloaded", "the wait is reported once"
        assert "an application holds it" in waits[0]["details"]["reason"]
    up.step(rel)
    assert len(rauc.installed) == 1 and up.store.load().phase is Phase.REBOOTING
    # the agent holds the lock through the install and the reboot: an application asking now is refused
    assert subprocess.run(["flock", "--nonblock", str(up.lock.path), "true"]).returncode != 0
    up.lock.release()
    assert subprocess.run(["flock", "--nonblock", str(up.lock.path), "true"]).returncode == 0


def test_a_pass_that_stops_before_the_install_lets_the_lock_go(tmp_path: Path) -> None:
    up, rauc, rel = _setup(tmp_path, lock_max=3600)
    assert up.lock is not None
    up.step(replace(rel, install=False))  # downloaded; the window is closed
    for f in (tmp_path / "downloads").iterdir():
        f.unlink()  # the kept bundle is gone, and the server (port 9) cannot be reached to fetch it again
    up.sleep = lambda _s: None
    with pytest.raises(AgentError):
        up.step(rel)  # the lock is free, taken for the install, then the download fails
    assert not up.lock.held and rauc.installed == []
    assert subprocess.run(["flock", "--nonblock", str(up.lock.path), "true"]).returncode == 0, "applications may take it"


def test_the_servers_maximum_ends_the_wait(tmp_path: Path) -> None:
    up, rauc, rel = _setup(tmp_path, lock_max=600)
    now = [1_000_000.0]
    up.clock = lambda: now[0]
    assert up.lock is not None
    with held_by_an_application(up.lock.path):
        up.step(rel)
        now[0] += 599
        up.step(rel)
        assert rauc.installed == [], "within the maximum: still waiting"
        now[0] += 2
        up.step(rel)
        assert len(rauc.installed) == 1, "past the maximum: installed although the lock is held"
    reasons = [e["details"].get("reason") or "" for e in _updates(up)]
    assert any("held longer than the server's maximum (600 s): installing anyway" in r for r in reasons), reasons


def test_without_a_lock_configured_nothing_waits_and_the_config_names_the_path(tmp_path: Path) -> None:
    up, rauc, rel = _setup(tmp_path, lock_max=None)
    up.lock = None
    up.step(rel)
    assert len(rauc.installed) == 1
    conf = tmp_path / "agent.toml"
    conf.write_text('server = "http://s"\nname = "d"\nupdate_lock = "/run/bulkhead/update.lock"\n')
    assert load_config(conf).update_lock == Path("/run/bulkhead/update.lock")
    conf.write_text('server = "http://s"\nname = "d"\n')
    assert load_config(conf).update_lock is None
    assert replace(rel, lock_max=None) == ReleaseRef.from_wire({**_wire(rel), "update_lock_max_seconds": None})
    assert ReleaseRef.from_wire({**_wire(rel), "update_lock_max_seconds": 120}).lock_max == 120.0


def _wire(rel: ReleaseRef) -> dict[str, Any]:
    return {
        "id": rel.id,
        "version": rel.version,
        "compatible": rel.compatible,
        "sha256": rel.sha256,
        "size": rel.size,
        "url": rel.url,
    }
