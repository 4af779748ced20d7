"""Grants nginx checks by itself: each signed download URL the server authorized, as an empty file.

A device streaming a bundle (RAUC, through NBD) asks for it in thousands of small ranges on one signed URL.
Behind nginx with delivery offloaded (offload.py), each range cost an authorization subrequest answered from
nginx's proxy cache at best: about 70 % of plain nginx's range rate (docs/adr/0008). Instead, when the server
hands a signed URL's download to nginx, it also creates

    <root>/<device id>/<credential epoch>/<sha256>.<expires>.<signature>

and nginx (contrib/nginx/bulkhead-offload.conf) serves a request for exactly that URL, in canonical form, from
the store when the file exists, without asking the server. The check comes from nginx's open-file cache,
looked at again every second. A file exists only while its URL is valid:

- it is created after the signature, the expiry and the device's status and epoch were checked, and the
  device's row is read again once the file exists: a revocation that committed meanwhile is either seen by
  that read (the file goes at once) or marked in the change feed afterwards (and removes it, below);
- revocation: every change to a device in the change feed (disable, credential reset or rotation, deletion,
  a factory reset's re-enrollment) removes its grants under every epoch but its current one, or all of them
  when it is no longer active or no longer exists; nginx stops serving them within a second more;
- expiry: the process that issued a grant removes it when its URL expires (it keeps their expiries in a heap);
- a process that stops takes back the grants it issued;
- anything else (grants of a process that crashed, a tenant deleted, which the feed does not name per device):
  once a minute on each host (a claim in the database: one process of the host's workers) the grants are
  swept: expired ones removed, every device's grants reconciled with its row. Walking 100,000 grants took
  1.6 s here, which is why this is not done more often.

The grant names nothing nginx could not check itself: the URL's parameters are its path, so a grant serves
exactly the URL that was authorized, and nothing else.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import heapq
import logging
import os
import shutil
import socket
import threading
import time
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select

from ..background import cancel
from ..db import Database
from ..job_claims import PeriodicClaims
from ..models import Device
from ..security import SignedParams

__all__ = ["GrantState", "OffloadGrants"]

log = logging.getLogger(__name__)

_BATCH = 1000  # device rows read per query when reconciling


@dataclass(frozen=True)
class GrantState:
    """What a device's grants must match: its current credential epoch, and whether it may download at all."""

    epoch: int
    active: bool


class OffloadGrants:
    def __init__(self, db: Database, root: Path, interval: float = 0.5) -> None:
        self.db, self.root, self.interval = db, root, interval
        self._pending: set[int] = set()  # devices the change feed marked, not yet looked at
        self._lock = threading.Lock()  # the feed marks from whichever thread committed
        self._expiring: list[tuple[int, str]] = []  # heap: (expires, path) of the grants this process issued
        self._claims = PeriodicClaims(db)
        self._claim = f"offload.grants:{zlib.crc32(socket.gethostname().encode()):08x}"  # per host
        self._task: asyncio.Task[None] | None = None
        self._warned = False

    # -- issuing ------------------------------------------------------------------------
    def path(self, sha256: str, p: SignedParams) -> Path:
        return self.root / str(p.device_id) / str(p.epoch) / f"{sha256}.{p.expires}.{p.sig}"

    def issue(self, sha256: str, p: SignedParams) -> bool:
        """Grant the signed URL (already verified: signature, expiry, the device active under this epoch) to nginx.
        False when it is not granted (revoked meanwhile, or the directory or the database failed: nginx then asks
        the server as before; the download itself is not affected)."""
        path = self.path(sha256, p)
        try:
            if path.exists():
                return True
            for _ in range(2):  # a sweep may remove the (empty) directory between makedirs and open
                path.parent.mkdir(parents=True, exist_ok=True)
                try:
                    os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
                    break
                except FileNotFoundError:
                    continue
            else:
                return False
            state = self._states([p.device_id]).get(p.device_id)  # read again after the file exists (see above)
        except Exception as exc:  # an OSError, or the database: the request is served without the grant
            if not self._warned:
                log.warning("could not grant %s to nginx (%s): nginx asks the server for each of its ranges", path, exc)
                self._warned = True
            with contextlib.suppress(OSError):
                path.unlink()
            return False
        if state is None or not state.active or state.epoch != p.epoch:
            _unlink(path)
            return False
        with self._lock:
            heapq.heappush(self._expiring, (p.expires, str(path)))
        return True

    # -- revoking and expiring ----------------------------------------------------------
    def changed(self, device_ids: Iterable[int]) -> None:
        """The change feed marked these devices (from the thread that committed, or its poller): only noted here."""
        with self._lock:
            self._pending.update(device_ids)

    def _take(self) -> set[int]:
        with self._lock:
            pending, self._pending = self._pending, set()
        return pending

    def expire(self, now: float | None = None) -> int:
        """Remove the grants this process issued whose URLs have expired; returns how many."""
        now = time.time() if now is None else now
        removed = 0
        while True:
            with self._lock:
                if not self._expiring or self._expiring[0][0] >= now:
                    return removed
                _, path = heapq.heappop(self._expiring)
            removed += _unlink(Path(path))

    def revoke_pending(self) -> int:
        """Remove the grants the marked devices no longer hold; returns the number of devices looked at."""
        ids = [d for d in self._take() if (self.root / str(d)).is_dir()]
        if ids:
            self._reconcile(ids)
        return len(ids)

    def sweep_all(self, now: float | None = None) -> int:
        """Reconcile every device's grants with its row and remove expired ones; returns the grants removed."""
        now = time.time() if now is None else now
        if not self.root.is_dir():
            return 0
        ids = [int(e.name) for e in os.scandir(self.root) if e.name.isdigit() and e.is_dir(follow_symlinks=False)]
        self._reconcile(ids)
        removed = 0
        for device in ids:
            for epoch_dir in _subdirs(self.root / str(device)):
                for entry in _entries(epoch_dir):
                    if _expires(entry.name) < now:
                        removed += _unlink(Path(entry.path))
                _rmdir_empty(epoch_dir)
            _rmdir_empty(self.root / str(device))
        return removed

    def _reconcile(self, ids: list[int]) -> None:
        for i in range(0, len(ids), _BATCH):
            chunk = ids[i : i + _BATCH]
            states = self._states(chunk)
            for device in chunk:
                state = states.get(device)
                device_dir = self.root / str(device)
                if state is None or not state.active:
                    shutil.rmtree(device_dir, ignore_errors=True)
                    continue
                for epoch_dir in _subdirs(device_dir):
                    if epoch_dir.name != str(state.epoch):
                        shutil.rmtree(epoch_dir, ignore_errors=True)

    def _states(self, ids: list[int]) -> dict[int, GrantState]:
        with self.db.session() as s:
            rows = s.execute(select(Device.id, Device.credential_epoch, Device.status).where(Device.id.in_(ids)))
            return {int(r[0]): GrantState(int(r[1] or 0), r[2] == "active") for r in rows}

    # -- the task -----------------------------------------------------------------------
    async def _run(self) -> None:
        minute = None
        while True:
            await asyncio.sleep(self.interval)
            try:
                if self._pending:
                    await asyncio.to_thread(self.revoke_pending)
                if self._expiring:
                    await asyncio.to_thread(self.expire)
                now = dt.datetime.now(dt.UTC)
                if now.minute != minute:
                    minute = now.minute
                    if await asyncio.to_thread(self._claims.claim, self._claim, now):
                        await asyncio.to_thread(self.sweep_all)
            except Exception:
                log.exception("could not update the offload grants in %s; trying again", self.root)

    def start(self) -> None:
        # The names are signed URLs (bearer credentials): only the server's user (and nginx's workers, run as it)
        # may list them.
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.root.chmod(0o700)
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """Stop, and take back the grants this process issued: nobody here would expire or revoke them."""
        await cancel(self._task)
        with self._lock:
            issued, self._expiring = self._expiring, []
        for _, path in issued:
            _unlink(Path(path))


def _subdirs(path: Path) -> list[Path]:
    try:
        return [Path(e.path) for e in os.scandir(path) if e.is_dir(follow_symlinks=False)]
    except FileNotFoundError:
        return []


def _entries(path: Path) -> list[os.DirEntry[str]]:
    try:
        return list(os.scandir(path))
    except FileNotFoundError:
        return []


def _expires(name: str) -> int:
    """The expiry in a grant's name (<sha256>.<expires>.<signature>); 0 (expired) for anything else."""
    parts = name.split(".")
    return int(parts[1]) if len(parts) == 3 and parts[1].isdigit() else 0


def _unlink(path: Path) -> int:
    try:
        path.unlink()
        return 1
    except FileNotFoundError:
        return 0


def _rmdir_empty(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.rmdir()
