"""Several server hosts on one PostgreSQL database and one store: what each host keeps for itself stays correct.

The three-host kill test with nginx, Redis and lab devices is tests/e2e/test_cluster.py; these are its parts.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select, text

from bulkhead.server import changes
from bulkhead.server.changes import ChangeFeed
from bulkhead.server.db import Database, migrate
from bulkhead.server.models import Device, Rollout, Tenant
from bulkhead.server.services.rollouts import RolloutService
from bulkhead.server.settings import load_settings
from bulkhead.server.store import INCOMING_STALE, FsStore, open_store
from tests.server.conftest import pg_url
from tests.server.test_rollout_scale import _fleet, _report_all, _who


def _pg() -> str:
    return "postgresql+psycopg://" + pg_url().removeprefix("postgresql://")


def test_hosts_starting_at_once_on_a_fresh_postgresql_database_all_migrate_it() -> None:
    """Three hosts start together: each migrates at start, one after the other under an advisory lock (without it,
    two run the same CREATE TABLEs at once and all but one fail to start)."""
    url = _pg()
    code = "import sys; from bulkhead.server.db import migrate; migrate(sys.argv[1])"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2] / "src")}
    procs = [subprocess.Popen([sys.executable, "-c", code, url], env=env, stderr=subprocess.PIPE, text=True) for _ in range(3)]
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], "\n".join(e[-1500:] for e in errors)
    engine = create_engine(url)
    with engine.connect() as c:
        heads = c.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
        assert len(heads) == 1, heads
        assert c.execute(text("SELECT count(*) FROM tenants")).scalar() == 0
    engine.dispose()


def _device(db: Database, tenant: str, name: str) -> int:
    with db.session() as s:
        t = Tenant(name=tenant)
        s.add(t)
        s.flush()
        d = Device(tenant_id=t.id, name=name, compatible="c", status="active", tags=[], groups=["g"], attributes={})
        s.add(d)
        s.flush()
        return d.id


def test_a_change_committed_after_the_other_hosts_skipped_its_id_still_reaches_them(monkeypatch: pytest.MonkeyPatch) -> None:
    """Host A's long transaction takes a state-change id, a short one after it commits first; host B waits for the
    missing id, gives up waiting (it may have been rolled back), and must still see the change when A commits."""
    url = _pg()
    migrate(url)
    host_a, host_b = Database(url), Database(url)
    try:
        writer, reader = ChangeFeed(host_a), ChangeFeed(host_b)
        writer.install()
        slow_dev, quick_dev = _device(host_a, "t1", "slow"), _device(host_a, "t2", "quick")
        now = [1000.0]
        monkeypatch.setattr(changes.time, "monotonic", lambda: now[0])
        reader.apply(reader._read())  # the devices' creation, marked at 1000
        now[0] += 1
        before = now[0]  # B caches answers for both devices now
        now[0] += 1
        with host_a.session() as long_tx:
            dev = long_tx.get(Device, slow_dev)
            assert dev is not None
            dev.groups = ["moved"]
            long_tx.flush()  # its state_changes row has its id now; the commit comes much later
            with host_a.session() as short_tx:
                other = short_tx.get(Device, quick_dev)
                assert other is not None
                other.tags = ["x"]
            reader.apply(reader._read())
            assert not reader.valid(None, quick_dev, before)
            now[0] += changes._GAP_SECONDS + 1
            reader.apply(reader._read())
            reader.apply(reader._read())
            assert reader.valid(None, slow_dev, before), "not committed yet: nothing to see"
        now[0] += 1
        reader.apply(reader._read())
        assert not reader.valid(None, slow_dev, before), "the late commit invalidates B's cached answers too"
        assert reader._late == {}, "seen once, no longer watched"
    finally:
        host_a.dispose()
        host_b.dispose()


def test_a_host_starting_keeps_the_uploads_another_host_is_receiving(tmp_path: Path) -> None:
    shared = tmp_path / "store"
    a = FsStore(shared)
    fd, receiving = a.new_upload()  # host A is receiving an upload into the shared store
    os.write(fd, b"part of a bundle")
    fd2, crashed = a.new_upload()  # an upload a crash left behind long ago
    os.close(fd2)
    old = time.time() - INCOMING_STALE - 60
    os.utime(crashed, (old, old))
    FsStore(shared).clean_incoming()  # host B starts
    assert receiving.exists(), "another host's upload in progress is left alone"
    assert not crashed.exists(), "a stale leftover is still cleaned"
    os.write(fd, b" and the rest")
    os.close(fd)


def test_the_filesystem_store_can_live_outside_the_data_directory(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path / "host-1", store_dir=tmp_path / "shared-store")
    store = open_store(settings)
    assert isinstance(store, FsStore) and store.root == tmp_path / "shared-store"
    assert (tmp_path / "shared-store" / ".incoming").is_dir()


def test_an_evaluation_asked_for_while_another_host_evaluates_the_rollout_waits_and_sees_the_change() -> None:
    """The canaries' last report asks for an evaluation while another host's evaluation of the same rollout holds
    it: the new one waits and opens the next phase, instead of skipping it until the next minute's sweep."""
    url = _pg()
    migrate(url)
    db = Database(url)
    try:
        tid, rel = _fleet(db, 6)
        svc = RolloutService(db)
        body = {"name": "r", "release_id": rel, "target": {}, "phases": [{"group": "canary"}, {"group": "line"}]}
        ro = svc.create(_who(tid), body)
        _report_all(db, svc, 0, ro["id"])
        with db.session() as other_host:
            other_host.execute(select(Rollout.id).where(Rollout.id == ro["id"]).with_for_update())
            asked = threading.Thread(target=svc.advance, args=(ro["id"],))
            asked.start()
            time.sleep(0.5)
        asked.join(30)
        assert svc.show(_who(tid), "r")["current_phase"] == 1
    finally:
        db.dispose()


def test_a_delta_built_in_the_data_directory_enters_a_store_on_another_file_system(tmp_path: Path) -> None:
    """Delta builds happen in the host's data directory; the shared store is usually another file system (a mount),
    where a rename does not reach."""
    shm = Path("/dev/shm")
    if not shm.is_dir() or os.stat(shm).st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("needs /dev/shm on a file system of its own")
    built = shm / f"delta-{os.getpid()}.raucb"
    built.write_bytes(b"delta bytes")
    store = FsStore(tmp_path / "store")
    staged = store.stage_file(built)
    store.commit(staged, "ab" * 32)
    assert (tmp_path / "store" / "ab" / ("ab" * 32)).read_bytes() == b"delta bytes"
    assert not built.exists()
