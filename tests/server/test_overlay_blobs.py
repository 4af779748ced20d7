"""The overlay's index files in the store: a publication drops the generation before the previous one, and its
files leave the store unless another suite (of any tenant) still names them; the two kept generations stay."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from bulkhead.server.db import Database
from bulkhead.server.models import Tenant
from bulkhead.server.overlay_keys import RepoPgp
from bulkhead.server.overlay_models import OverlaySuite
from bulkhead.server.services.auth import Principal
from bulkhead.server.services.overlay import OverlayService
from bulkhead.server.services.overlay_blobs import dropped
from bulkhead.server.services.releases import Upload
from bulkhead.server.store import FsStore
from tests.overlay_debs import make_deb

pytestmark = pytest.mark.skipif(not (shutil.which("gpg") and shutil.which("dpkg-deb")), reason="needs gpg and dpkg-deb")


def test_the_dropped_generation_is_what_neither_kept_one_has() -> None:
    old = {
        "a": {"sha256": "1" * 64},
        "b": {"sha256": "2" * 64},
        "empty": {"sha256": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
    }
    assert dropped(old, {"x": {"sha256": "2" * 64}}, {}) == {"1" * 64}, "kept files and the empty file stay"


def _generations(db: Database, tid: int) -> tuple[set[str], set[str]]:
    with db.session() as s:
        row = s.query(OverlaySuite).filter_by(tenant_id=tid, suite="bookworm").one()
        return {f["sha256"] for f in row.files.values()}, {f["sha256"] for f in row.previous_files.values()}


def test_old_index_files_leave_the_store_unless_another_suite_names_them(db: Database, tmp_path: Path) -> None:
    with db.session() as s:
        acme, other = Tenant(name="acme"), Tenant(name="other")
        s.add_all([acme, other])
        s.flush()
        tids = acme.id, other.id
    store = FsStore(tmp_path / "artifacts")
    svc = OverlayService(db, store, RepoPgp(tmp_path / "openpgp-apt"), b"s" * 32, ("amd64",), 7, 1 << 20)
    who = [Principal("user", "ops", tid, name, "operator") for tid, name in zip(tids, ("acme", "other"), strict=True)]

    built: dict[tuple[str, str], Path] = {}

    def upload(i: int, name: str, version: str) -> set[str]:
        # One .deb per package, copied for each upload: dpkg-deb stamps the build time into the archive, so two builds
        # a second apart would differ (and with them the index files the test compares).
        if (name, version) not in built:
            built[name, version] = make_deb(tmp_path / f"{name}-{version}", name, version)
        deb = built[name, version]
        copy = tmp_path / f"{i}-{deb.name}"
        shutil.copyfile(deb, copy)
        svc.upload(who[i], "bookworm", Upload.from_file(store, copy))
        return _generations(db, tids[i])[0]

    first = upload(0, "blob-a", "1.0-1")
    assert upload(1, "blob-a", "1.0-1") == first, "the same packages: the same index files, shared in the store"
    second = upload(0, "blob-b", "1.0-1")
    third = upload(0, "blob-c", "1.0-1")
    assert _generations(db, tids[0]) == (third, second)
    assert all(store.path(sha).exists() for sha in first), "the other tenant's suite still names them"

    fourth = upload(0, "blob-d", "1.0-1")
    assert _generations(db, tids[0]) == (fourth, third)
    gone = second - third - fourth
    assert gone and not any(store.path(sha).exists() for sha in gone), "the dropped generation left the store"
    assert all(store.path(sha).exists() for sha in third | fourth | first)
    device = Principal("device", "d1", tids[0], "acme", "device", 1)
    packages = store.path(svc.index_file(device, "bookworm", "main/binary-amd64/Packages")).read_text()
    assert all(f"Package: blob-{x}" in packages for x in "abcd")
