"""The vulnerability feeds shared by several hosts (feed_replica.py): what one host fetched or imported, the others
read; their own temporary files stay their own; a change not published yet is not overwritten; a bad stored copy
is refused."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from bulkhead.server.db import Database
from bulkhead.server.feed_replica import SIDECAR, FeedReplica, ReplicaError
from bulkhead.server.services.auth import Principal
from bulkhead.server.services.vulns import VulnService
from bulkhead.server.store import FsStore
from bulkhead.server.vuln_state_models import FeedFile
from tests.server.vuln_fixtures import KEV

ADMIN = Principal(kind="system", name="admin")


def _hosts(db: Database, tmp_path: Path) -> tuple[FeedReplica, FeedReplica, FsStore]:
    store = FsStore(tmp_path / "store")  # one store both hosts reach (a bucket, a shared mount)
    return (
        FeedReplica(db, store, tmp_path / "a" / "feeds", host="a"),
        FeedReplica(db, store, tmp_path / "b" / "feeds", host="b"),
        store,
    )


def _tree(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts)
    }


def _stored(db: Database, store: FsStore, rel: str) -> Path:
    """Where the store keeps the bytes the cluster's row for `rel` names."""
    with db.session() as s:
        row = s.get(FeedFile, rel)
        assert row is not None
        return store.path(row.sha256)


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def test_what_one_host_publishes_the_other_pulls_and_its_own_files_stay_its_own(db: Database, tmp_path: Path) -> None:
    a, b, store = _hosts(db, tmp_path)
    _write(a.directory / "cisa-kev.json", b'{"v": 1}')
    _write(a.directory / "cisa-kev.state.json", b'{"sha256": "x1"}')
    _write(a.directory / "osv" / "PyPI.zip", b"zip bytes")
    own = {
        ".cisa-kev.lock": b"",
        ".cvelist.import.123.tmp": b"half",
        "debian-tracker.json.part": b"partial download",
        "cvelist.downloads/2026-12-05_delta.zip": b"archive cache",
    }
    for rel, data in own.items():
        _write(a.directory / rel, data)
    assert a.publish() == 3
    assert b.pull() == 3
    assert _tree(b.directory) == {
        "cisa-kev.json": b'{"v": 1}',
        "cisa-kev.state.json": b'{"sha256": "x1"}',
        "osv/PyPI.zip": b"zip bytes",
    }, "the data, the states and the nested files arrive; temporary files, locks, partial downloads and caches do not"
    assert a.publish() == 0 and b.pull() == 0, "nothing changed: nothing moves"
    assert b.publish() == 0, "what a host pulled is not published back"

    # A new version: pulled over the old one; the old bytes stay in the store until the file changes again.
    first = b.directory.joinpath("cisa-kev.json").stat()
    _write(a.directory / "cisa-kev.json", b'{"v": 2}')
    assert a.publish() == 1 and b.pull() == 1
    assert (b.directory / "cisa-kev.json").read_bytes() == b'{"v": 2}'
    with db.session() as s:
        row = s.get(FeedFile, "cisa-kev.json")
        assert row is not None and row.host == "a" and row.previous_sha256 is not None
        v1 = row.previous_sha256
    assert store.path(v1).exists(), "a host may still be downloading the previous version"
    _write(a.directory / "cisa-kev.json", b'{"v": 3}')
    a.publish()
    assert not store.path(v1).exists(), "two versions back: its bytes are gone from the store"
    assert first.st_ino != b.directory.joinpath("cisa-kev.json").stat().st_ino

    # A file the publishing host dropped (an ecosystem no longer configured) goes from the other host too.
    (a.directory / "osv" / "PyPI.zip").unlink()
    assert a.publish() == 1 and b.pull() == 2  # v3 of the catalogue, and the dropped file
    assert not (b.directory / "osv" / "PyPI.zip").exists()
    with db.session() as s:
        assert sorted(s.scalars(select(FeedFile.path))) == ["cisa-kev.json", "cisa-kev.state.json"]


def test_a_change_not_published_yet_is_not_overwritten_by_a_pull(db: Database, tmp_path: Path) -> None:
    a, b, _ = _hosts(db, tmp_path)
    _write(a.directory / "first-epss.csv.gz", b"day 1")
    a.publish()
    b.pull()
    # b's feed job fetched a newer copy and has not published it yet when a scan on b pulls.
    _write(b.directory / "first-epss.csv.gz", b"day 2, fetched by b")
    assert b.pull() == 0
    assert (b.directory / "first-epss.csv.gz").read_bytes() == b"day 2, fetched by b"
    assert b.publish() == 1 and a.pull() == 1
    assert (a.directory / "first-epss.csv.gz").read_bytes() == b"day 2, fetched by b"


def test_a_host_that_held_the_feeds_before_sharing_takes_the_clusters_copy(db: Database, tmp_path: Path) -> None:
    a, b, _ = _hosts(db, tmp_path)
    _write(a.directory / "cisa-kev.json", b"current")
    a.publish()
    _write(b.directory / "cisa-kev.json", b"weeks old")  # b's own copy from before it shared the feeds
    _write(b.directory / "cve-records.json", b"only b has it")
    assert b.pull() == 1
    assert (b.directory / "cisa-kev.json").read_bytes() == b"current"
    assert b.publish() == 1  # its file the cluster did not have
    a.pull()
    assert (a.directory / "cve-records.json").read_bytes() == b"only b has it"


def test_a_stored_copy_that_is_not_what_its_row_names_is_refused(db: Database, tmp_path: Path) -> None:
    a, b, store = _hosts(db, tmp_path)
    _write(a.directory / "cisa-kev.json", b"good")
    _write(a.directory / "debian-tracker.json", b"tracker")
    a.publish()
    bad = _stored(db, store, "cisa-kev.json")
    os.chmod(bad, 0o644)
    bad.write_bytes(b"tampered")
    with pytest.raises(ReplicaError, match=r"cisa-kev\.json"):
        b.pull()
    assert not (b.directory / "cisa-kev.json").exists(), "nothing unchecked is put in place"
    assert (b.directory / "debian-tracker.json").read_bytes() == b"tracker", "the other files still arrive"
    assert [p.name for p in b.directory.iterdir() if p.name.endswith(".tmp")] == []


def test_a_feed_imported_on_one_host_is_what_a_scan_on_another_reads(db: Database, tmp_path: Path) -> None:
    store = FsStore(tmp_path / "store")
    host_a = VulnService(db, store, tmp_path / "a", shared=True)
    host_b = VulnService(db, store, tmp_path / "b", shared=True)
    alone = VulnService(db, FsStore(tmp_path / "other-store"), tmp_path / "c")  # not sharing: its own feeds
    kev = tmp_path / "kev.json"
    shutil.copy(KEV, kev)
    imported = host_a.import_feed(ADMIN, "cisa-kev", kev)
    assert imported["has_data"] and imported["records"] > 1000
    seen = next(st for st in host_b.feed_status(ADMIN) if st["name"] == "cisa-kev")
    assert seen["has_data"] and (seen["records"], seen["last_changed"]) == (imported["records"], imported["last_changed"])
    assert host_b.feeds.versions()["cisa-kev"]["sha256"] == host_a.feeds.versions()["cisa-kev"]["sha256"]
    catalog = host_b.feeds.kev()
    assert catalog is not None and "CVE-2024-36971" in catalog
    assert not next(st for st in alone.feed_status(ADMIN) if st["name"] == "cisa-kev")["has_data"]
    assert (tmp_path / "b" / "feeds" / SIDECAR).exists()


def test_a_row_naming_a_path_outside_the_feed_directory_is_left_alone(db: Database, tmp_path: Path) -> None:
    a, b, _ = _hosts(db, tmp_path)
    _write(a.directory / "cisa-kev.json", b"good")
    a.publish()
    with db.session() as s:
        good = s.get(FeedFile, "cisa-kev.json")
        assert good is not None
        for path in ("../../secret.key", "/etc/cron.d/x", "osv/../../../x", ".replica.json"):
            s.add(FeedFile(path=path, sha256=good.sha256, size=good.size, host="evil", updated_at=good.updated_at))
    with pytest.raises(ReplicaError, match="4 feed file"):
        b.pull()
    assert (b.directory / "cisa-kev.json").read_bytes() == b"good"
    assert not (tmp_path / "secret.key").exists() and not (tmp_path / "x").exists()


def test_a_state_waits_for_its_data(db: Database, tmp_path: Path) -> None:
    """A data file that could not be fetched holds the states back: no reader sees a state naming data not here."""
    a, b, store = _hosts(db, tmp_path)
    _write(a.directory / "cisa-kev.json", b"v1")
    _write(a.directory / "cisa-kev.state.json", b'{"sha256": "v1"}')
    a.publish()
    b.pull()
    _write(a.directory / "cisa-kev.json", b"v2")
    _write(a.directory / "cisa-kev.state.json", b'{"sha256": "v2"}')
    a.publish()
    v2 = _stored(db, store, "cisa-kev.json")
    held = tmp_path / "held"
    shutil.move(v2, held)  # the store lost it for a moment
    with pytest.raises(ReplicaError):
        b.pull()
    assert (b.directory / "cisa-kev.json").read_bytes() == b"v1"
    assert (b.directory / "cisa-kev.state.json").read_bytes() == b'{"sha256": "v1"}'
    shutil.move(held, v2)
    assert b.pull() == 2
    assert _tree(b.directory) == {"cisa-kev.json": b"v2", "cisa-kev.state.json": b'{"sha256": "v2"}'}


def test_no_pull_runs_while_this_host_changes_the_feeds(db: Database, tmp_path: Path) -> None:
    a, b, _ = _hosts(db, tmp_path)
    _write(a.directory / "first-epss.csv.gz", b"cluster copy")
    a.publish()
    with b.changing():  # b's feed job: it pulled the cluster's copy first
        assert (b.directory / "first-epss.csv.gz").read_bytes() == b"cluster copy"
        assert b.pull(wait=False) is None, "a reader's pull meanwhile is skipped, not queued behind the fetch"
        _write(b.directory / "first-epss.csv.gz", b"fetched by b")
    a.pull()
    assert (a.directory / "first-epss.csv.gz").read_bytes() == b"fetched by b", "published when the change ended"


def test_two_hosts_recording_the_same_new_file_at_once_both_succeed(
    db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b, _ = _hosts(db, tmp_path)
    _write(a.directory / "osv" / "npm.zip", b"a's copy")
    _write(b.directory / "osv" / "npm.zip", b"b's copy")
    b.publish()
    existing = FeedReplica._existing
    stale = [True]

    def read_before_b_recorded(self: FeedReplica, s: Session, paths: list[str]) -> dict[str, FeedFile]:
        if stale:  # a read the rows just before b recorded the file: its insert meets b's row
            stale.clear()
            return {}
        return existing(self, s, paths)

    monkeypatch.setattr(FeedReplica, "_existing", read_before_b_recorded)
    assert a.publish() == 1
    assert not stale, "the race was played"
    b.pull()
    assert (b.directory / "osv" / "npm.zip").read_bytes() == b"a's copy", "the later one holds"
