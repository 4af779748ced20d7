"""The vulnerability feeds shared by every server host: each host keeps the feed directory in its own data directory,
and the hosts keep their copies alike through the artifact store and the database (table `feed_files`).

Feed jobs run once per cluster, on whichever host claims them, and an administrator's import reaches one host; scans
run on any host. So the host that fetched or imported a feed *publishes* what changed: each changed file's bytes go
into the artifact store under their sha256, and its row in `feed_files` names them. Before a host reads the feeds
(a scan, the feed status) it *pulls*: every file whose row names other bytes than its copy is downloaded, checked
against its digest and renamed into place, data files before the state files that describe them; a file the cluster
dropped is removed. A file this host changed and has not published yet is left alone by a pull (its feed job
publishes it next). Temporary files, locks, partial downloads (`*.part`) and the CVE list's archive cache
(`*.downloads/`) stay each host's own.

Each host remembers, per file, the size and modification time it last wrote or published and the digest they were
(`.replica.json` in the feed directory), so neither a pull nor a publish hashes a file that did not change. A file's
previous bytes stay in the store until the file changes again: a host still downloading them finishes.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import shutil
import socket
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bulkhead.cra.feeds import sha256_file

from .db import Database
from .models import utcnow
from .store import ArtifactStore
from .vuln_state_models import FeedFile

__all__ = ["FeedReplica", "ReplicaError"]

log = logging.getLogger(__name__)

SIDECAR = ".replica.json"
# Each host's own: dot files (locks, temporary files, the sidecar), partial downloads, the CVE list's archive cache.
_OWN = re.compile(r"(^|/)\.|\.part$|\.downloads(/|$)")
# A path a row may name: relative, below the feed directory (no `..`, no dot file), of plain characters.
_SAFE = re.compile(r"[A-Za-z0-9_+-][A-Za-z0-9_.+-]*(/[A-Za-z0-9_+-][A-Za-z0-9_.+-]*)*\Z")


class ReplicaError(Exception):
    """A file could not be brought up to date from the cluster (the host keeps reading its own copy)."""


@dataclass(frozen=True)
class _Known:
    size: int
    mtime_ns: int
    sha256: str

    def matches(self, st: os.stat_result) -> bool:
        return (self.size, self.mtime_ns) == (st.st_size, st.st_mtime_ns)


class FeedReplica:
    def __init__(self, db: Database, store: ArtifactStore, directory: Path, host: str | None = None) -> None:
        self.db, self.store, self.directory = db, store, directory
        self.host = (host or socket.gethostname())[:255]
        self._thread_lock = threading.Lock()

    # -- the operations ------------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def changing(self) -> Iterator[None]:
        """Around a fetch or an import on this host: the cluster's copy first (the fetch goes on from its newest
        validators and deltas), then what changed published. No pull on this host runs meanwhile (a pull asked for
        then is skipped: readers read this host's copy), so none puts an older copy over the one being made."""
        with self._locked(wait=True):
            with contextlib.suppress(ReplicaError):  # logged; the files that arrived are in place
                self._pull()
            yield
            retired, _ = self._publish()
        self._remove(retired)

    def publish(self) -> int:
        """Put the files this host changed (fetched, imported) into the store and record them; the number of files
        published or dropped."""
        with self._locked(wait=True):
            retired, count = self._publish()
        self._remove(retired)
        return count

    def pull(self, wait: bool = True) -> int | None:
        """Bring this host's copy up to the cluster's; the number of files downloaded or removed, None when another
        pull or a fetch holds the directory and `wait` is False. Raises ReplicaError naming the files that could not
        be brought up to date (the others are)."""
        with self._locked(wait) as got:
            return self._pull() if got else None

    def _publish(self) -> tuple[set[str], int]:
        known, files = self._known(), self._files()
        put: dict[str, _Known] = {}
        for rel, st in files.items():
            mine = known.get(rel)
            if mine is not None and mine.matches(st):
                continue
            # The bytes stored are those hashed: a copy, hashed and then put into the store.
            fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".replica.", suffix=".tmp")
            os.close(fd)
            try:
                shutil.copyfile(self.directory / rel, tmp)
                sha = sha256_file(Path(tmp))
                if mine is None or mine.sha256 != sha:
                    self.store.commit(self.store.stage_file(Path(tmp)), sha)
                    put[rel] = _Known(st.st_size, st.st_mtime_ns, sha)
            finally:
                Path(tmp).unlink(missing_ok=True)
            known[rel] = _Known(st.st_size, st.st_mtime_ns, sha)
        gone = [rel for rel in known if rel not in files]
        try:
            retired = self._record(put, gone)
        except IntegrityError:  # another host recorded a file new to both at the same moment: ours replaces it
            retired = self._record(put, gone)
        for rel in gone:
            del known[rel]
        self._save(known)
        return retired, len(put) + len(gone)

    def _pull(self) -> int:
        known, files = self._known(), self._files()
        with self.db.read() as s:
            rows = {rel: sha for rel, sha in s.execute(select(FeedFile.path, FeedFile.sha256))}
        changed = 0
        failed: list[str] = []
        # Data files first, the state files that name their digests last, and none of those when a data file did not
        # arrive: a reader never sees a state whose data is not here.
        for rel in sorted(rows, key=lambda p: (p.endswith(".state.json"), p)):
            sha = rows[rel]
            if not _SAFE.match(rel) or _OWN.search(rel):
                log.warning("feed_files names %r, not a file of the feed directory: left alone", rel)
                failed.append(rel)
                continue
            st, mine = files.get(rel), known.get(rel)
            if st is not None and mine is not None:
                if not mine.matches(st):
                    continue  # changed here, not published yet: this host's copy until its feed job publishes it
                if mine.sha256 == sha:
                    continue
            elif st is not None and sha256_file(self.directory / rel) == sha:
                known[rel] = _Known(st.st_size, st.st_mtime_ns, sha)  # the same bytes, from before sharing
                continue
            if failed and rel.endswith(".state.json"):
                failed.append(rel)
                continue
            try:
                known[rel] = self._download(rel, sha)
                changed += 1
            except Exception as e:
                log.warning("feed file %s: could not fetch its current copy (%s) from the store: %s", rel, sha[:12], e)
                failed.append(rel)
        for rel in [r for r in known if r not in rows]:
            st = files.get(rel)
            if st is not None and known[rel].matches(st):  # the cluster dropped it (unchanged here since)
                (self.directory / rel).unlink(missing_ok=True)
                del known[rel]
                changed += 1
        self._save(known)
        if failed:
            raise ReplicaError(f"{len(failed)} feed file(s) could not be brought up to date: {', '.join(failed[:5])}")
        return changed

    def _remove(self, retired: set[str]) -> None:
        for sha in retired:
            with contextlib.suppress(Exception):  # what is left behind is only space
                self.store.remove(sha)

    # -- the database --------------------------------------------------------------------------------------------
    def _record(self, put: dict[str, _Known], gone: list[str]) -> set[str]:
        """Rows for the files published and dropped; the digests no row names any more (their bytes can go)."""
        if not put and not gone:
            return set()
        dropped: set[str] = set()
        with self.db.session() as s:
            rows = self._existing(s, [*put, *gone])
            for rel, new in put.items():
                row = rows.get(rel)
                if row is None:
                    s.add(FeedFile(path=rel, sha256=new.sha256, size=new.size, host=self.host, updated_at=utcnow()))
                    continue
                if row.previous_sha256 and row.previous_sha256 != new.sha256:
                    dropped.add(row.previous_sha256)
                row.previous_sha256, row.sha256, row.size = row.sha256, new.sha256, new.size
                row.host, row.updated_at = self.host, utcnow()
            for rel in gone:
                if (row := rows.get(rel)) is not None:
                    dropped |= {x for x in (row.sha256, row.previous_sha256) if x}
                    s.delete(row)
            s.flush()
            if not dropped:
                return set()
            named = s.execute(
                select(FeedFile.sha256, FeedFile.previous_sha256).where(
                    or_(FeedFile.sha256.in_(dropped), FeedFile.previous_sha256.in_(dropped))
                )
            )
            return dropped - {sha for row in named for sha in row}

    def _existing(self, s: Session, paths: list[str]) -> dict[str, FeedFile]:
        return {r.path: r for r in s.scalars(select(FeedFile).where(FeedFile.path.in_(paths)).with_for_update())}

    # -- this host's directory -----------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _locked(self, wait: bool) -> Iterator[bool]:
        """One pull, publish or change at a time on this host (threads and processes); yields False when the
        directory is held and `wait` is False."""
        self.directory.mkdir(parents=True, exist_ok=True)
        if not self._thread_lock.acquire(blocking=wait):
            yield False
            return
        try:
            with (self.directory / ".replica.lock").open("a") as f:
                try:
                    fcntl.flock(f, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    yield False
                    return
                try:
                    yield True
                finally:
                    fcntl.flock(f, fcntl.LOCK_UN)
        finally:
            self._thread_lock.release()

    def _files(self) -> dict[str, os.stat_result]:
        out: dict[str, os.stat_result] = {}
        for root, dirs, names in os.walk(self.directory):
            base = os.path.relpath(root, self.directory)
            dirs[:] = [d for d in dirs if not _OWN.search(os.path.normpath(os.path.join(base, d)))]
            for name in names:
                rel = os.path.normpath(os.path.join(base, name))
                if not _OWN.search(rel) and _SAFE.match(rel):
                    out[rel] = os.stat(os.path.join(root, name))
        return out

    def _known(self) -> dict[str, _Known]:
        try:
            doc = json.loads((self.directory / SIDECAR).read_text())
            return {rel: _Known(*v) for rel, v in doc.items()}
        except (OSError, ValueError, TypeError):
            return {}  # none yet (or unreadable): every file is compared by its digest once

    def _save(self, known: dict[str, _Known]) -> None:
        doc = {rel: [k.size, k.mtime_ns, k.sha256] for rel, k in sorted(known.items())}
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".replica.", suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            json.dump(doc, f)
        os.replace(tmp, self.directory / SIDECAR)

    def _download(self, rel: str, sha: str) -> _Known:
        """The stored bytes into place (checked against their digest first)."""
        target = self.directory / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        os.close(fd)
        try:
            with self.store.local(sha) as src:
                shutil.copyfile(src, tmp)
            if (got := sha256_file(Path(tmp))) != sha:
                raise ReplicaError(f"the store's copy has sha256 {got}")
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        st = target.stat()
        return _Known(st.st_size, st.st_mtime_ns, sha)
