"""Signed URLs granted to nginx (delivery/grants.py): a grant exists only while its URL is valid — created after
the device's row is read again, removed when the device is disabled, reset or deleted (through the change feed)
and when the URL expires (the sweep) — on SQLite and PostgreSQL."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

from sqlalchemy import delete, update

from bulkhead.server.changes import ChangeFeed
from bulkhead.server.db import Database
from bulkhead.server.delivery.grants import OffloadGrants
from bulkhead.server.models import Device, Tenant
from bulkhead.server.security import SignedParams

SHA = "cd" * 32


def _devices(db: Database, n: int) -> list[int]:
    with db.session() as s:
        t = Tenant(name=f"t-{uuid.uuid4().hex[:8]}")
        s.add(t)
        s.flush()
        devs = [Device(tenant_id=t.id, name=f"d{i}", compatible="c", status="active") for i in range(n)]
        s.add_all(devs)
        s.flush()
        return [d.id for d in devs]


def _params(device: int, epoch: int = 0, expires: int | None = None, sig: str = "a" * 40) -> SignedParams:
    return SignedParams(device, int(time.time()) + 3600 if expires is None else expires, epoch, sig)


def _set(db: Database, device: int, **values: object) -> None:
    with db.session() as s:
        s.execute(update(Device).where(Device.id == device).values(**values))


def test_a_grant_is_the_urls_parameters_as_a_path_and_only_for_the_current_epoch(db: Database, tmp_path: Path) -> None:
    (a,) = _devices(db, 1)
    grants = OffloadGrants(db, tmp_path / "grants")
    p = _params(a)
    assert grants.issue(SHA, p)
    assert grants.path(SHA, p) == tmp_path / "grants" / str(a) / "0" / f"{SHA}.{p.expires}.{'a' * 40}"
    assert grants.path(SHA, p).is_file() and grants.issue(SHA, p)  # twice: still there
    # The caller checked a stale epoch (the credential was reset after it looked): read again, not granted.
    _set(db, a, credential_epoch=1)
    stale = _params(a, epoch=0, sig="b" * 40)
    assert not grants.issue(SHA, stale) and not grants.path(SHA, stale).exists()
    assert grants.issue(SHA, _params(a, epoch=1))
    _set(db, a, status="disabled")
    assert not grants.issue(SHA, _params(a, epoch=1, sig="c" * 40))
    assert not grants.issue(SHA, _params(a + 1000))  # no such device


def test_changes_in_the_feed_revoke_the_devices_grants(db: Database, tmp_path: Path) -> None:
    a, b, c = _devices(db, 3)
    feed = ChangeFeed(db)
    feed.install()
    grants = OffloadGrants(db, tmp_path / "grants")
    feed.listen(grants.changed)
    for d in (a, b, c):
        assert grants.issue(SHA, _params(d))
    kept = grants.path(SHA, _params(c))
    with db.session() as s:  # a credential reset: the epoch moves on
        s.get_one(Device, a).credential_epoch = 1
    fresh = _params(a, epoch=1, sig="e" * 40)
    assert grants.issue(SHA, fresh)
    with db.session() as s:
        s.get_one(Device, b).status = "disabled"
    assert grants.revoke_pending() == 2  # the two devices the feed named, no other
    assert not (tmp_path / "grants" / str(a) / "0").exists() and grants.path(SHA, fresh).is_file()
    assert not (tmp_path / "grants" / str(b)).exists() and kept.is_file()
    with db.session() as s:  # deleted
        s.delete(s.get_one(Device, c))
    assert grants.revoke_pending() == 1 and not (tmp_path / "grants" / str(c)).exists()
    assert grants.revoke_pending() == 0


def test_the_sweep_removes_expired_grants_and_those_of_devices_changed_behind_the_feeds_back(
    db: Database, tmp_path: Path
) -> None:
    a, b = _devices(db, 2)
    grants = OffloadGrants(db, tmp_path / "grants")
    now = time.time()
    old, new = _params(a, expires=int(now) - 1, sig="1" * 40), _params(a, expires=int(now) + 60, sig="2" * 40)
    # issue() does not look at the expiry (the server verified it just before): an expired grant stands for one
    # issued just before its URL expired.
    assert grants.issue(SHA, old) and grants.issue(SHA, new) and grants.issue(SHA, _params(b))
    (tmp_path / "grants" / str(a) / "0" / "stray").write_text("")  # not a grant's name: removed too
    with db.session() as s:  # a bulk delete writes no change-feed row
        s.execute(delete(Device).where(Device.id == b))
    assert grants.sweep_all(now) == 2
    assert not grants.path(SHA, old).exists() and grants.path(SHA, new).is_file()
    assert not (tmp_path / "grants" / str(b)).exists()
    assert grants.sweep_all(now + 61) == 1 and not (tmp_path / "grants" / str(a)).exists()  # empty directories go
    assert grants.issue(SHA, _params(a, sig="3" * 40))  # and come back
    assert OffloadGrants(db, tmp_path / "absent").sweep_all() == 0


def test_the_issuing_process_removes_its_grants_when_their_urls_expire(db: Database, tmp_path: Path) -> None:
    (a,) = _devices(db, 1)
    grants = OffloadGrants(db, tmp_path / "grants")
    now = int(time.time())
    soon, later = _params(a, expires=now + 5, sig="5" * 40), _params(a, expires=now + 50, sig="6" * 40)
    assert grants.issue(SHA, later) and grants.issue(SHA, soon)
    assert grants.expire(now + 4) == 0 and grants.path(SHA, soon).is_file()
    assert grants.expire(now + 6) == 1 and not grants.path(SHA, soon).exists() and grants.path(SHA, later).is_file()
    assert grants.expire(now + 51) == 1 and not grants.path(SHA, later).exists()
    assert grants.expire(now + 100) == 0


def test_a_stopping_process_takes_back_its_grants_and_keeps_the_directory_private(db: Database, tmp_path: Path) -> None:
    import asyncio

    (a,) = _devices(db, 1)
    grants = OffloadGrants(db, tmp_path / "grants")

    async def life() -> None:
        grants.start()
        assert (tmp_path / "grants").stat().st_mode & 0o777 == 0o700  # the names are bearer credentials
        assert grants.issue(SHA, _params(a))
        await grants.stop()

    asyncio.run(life())
    assert not grants.path(SHA, _params(a)).exists()


def test_a_database_that_fails_means_no_grant_and_no_error(tmp_path: Path) -> None:
    broken = Database(f"sqlite:///{tmp_path / 'absent' / 'db.sqlite'}")  # its directory does not exist
    grants = OffloadGrants(broken, tmp_path / "grants")
    assert not grants.issue(SHA, _params(1))
    assert not any(p.is_file() for p in (tmp_path / "grants").rglob("*"))
    broken.dispose()
