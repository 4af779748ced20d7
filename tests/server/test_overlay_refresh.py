"""The overlay's periodic re-signing: a suite with less than half its Valid-Until left is published again (new
Date and Valid-Until, new signature), one with more is left alone; a re-signed suite still lists its packages."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import pytest
from debian.deb822 import Deb822

from bulkhead.server.db import Database
from bulkhead.server.models import Tenant, utcnow
from bulkhead.server.overlay_keys import RepoPgp
from bulkhead.server.services.auth import Principal
from bulkhead.server.services.overlay import OverlayService
from bulkhead.server.services.releases import Upload
from bulkhead.server.store import FsStore
from tests.overlay_debs import make_deb

pytestmark = pytest.mark.skipif(not (shutil.which("gpg") and shutil.which("dpkg-deb")), reason="needs gpg and dpkg-deb")


def test_suites_are_re_signed_before_they_expire(db: Database, tmp_path: Path) -> None:
    with db.session() as s:
        tenant = Tenant(name="acme")
        s.add(tenant)
        s.flush()
        tid = tenant.id
    store = FsStore(tmp_path / "artifacts")
    svc = OverlayService(db, store, RepoPgp(tmp_path / "openpgp-apt"), b"s" * 32, ("amd64",), 7, 1 << 20)
    who = Principal("user", "ops", tid, "acme", "operator")
    svc.upload(who, "bookworm", Upload.from_file(store, make_deb(tmp_path, "hello-refresh", "1.0-1")))
    device = Principal("device", "d1", tid, "acme", "device", 1)
    first = svc.release_file(device, "bookworm", "InRelease")

    assert svc.refresh(utcnow() + dt.timedelta(days=3)) == 0  # more than half of the 7 days left
    assert svc.release_file(device, "bookworm", "InRelease") == first
    later = utcnow() + dt.timedelta(days=4)
    assert svc.refresh(later) == 1
    assert svc.refresh(later) == 0  # just re-signed
    release = Deb822(svc.release_file(device, "bookworm", "Release"))
    until = dt.datetime.strptime(release["Valid-Until"], "%a, %d %b %Y %H:%M:%S %Z").replace(tzinfo=dt.UTC)
    assert abs(until - (later + dt.timedelta(days=7))) < dt.timedelta(seconds=2)
    assert svc.release_file(device, "bookworm", "InRelease") != first
    packages = store.path(svc.index_file(device, "bookworm", "main/binary-amd64/Packages")).read_text()
    assert "Package: hello-refresh" in packages
