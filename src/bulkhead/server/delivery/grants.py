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
- expiry and anything the feed does not name per device (a tenant deleted): every `sweep` seconds each
  server process removes expired grants and reconciles every device's grants with its row. An expired URL
  works behind nginx until then (`sweep`, 10 s by default, of a URL valid for an hour).

The grant names nothing nginx could not check itself: the URL's parameters are its path, so a grant serves
exactly the URL that was authorized, and nothing else.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select

from ..db import Database
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
    def __init__(self, db: Database, root: Path, sweep: float = 10.0, interval: float = 0.5) -> None:
        self.db, self.root, self.sweep, self.interval = db, root, sweep, interval
        self._pending: set[int] = set()  # devices the change feed marked, not yet looked at
        self._lock = threading.Lock()  # the feed marks from whichever thread committed
        self._task: asyncio.Task[None] | None = None

    # -- issuing ------------------------------------------------------------------------
    def path(self, sha256: str, p: SignedParams) -> Path:
        return self.root / str(p.device_id) / str(p.epoch) / f"{sha256}.{p.expires}.{p.sig}"

    def issue(self, sha256: str, p: SignedParams) -> bool:
        """Grant the signed URL (already verified: signature, expiry, the device active under this epoch) to nginx.
        False when it is not granted (revoked meanwhile, or the directory could not be written: nginx then asks
        the server as before)."""
        path = self.path(sha256, p)
        if path.exists():
            return True
        try:
            for _ in range(2):  # a sweep may remove the (empty) directory between makedirs and open
                path.parent.mkdir(parents=True, exist_ok=True)
                try:
                    os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o640))
                    break
                except FileNotFoundError:
                    continue
            else:
                return False
        except OSError as exc:
            log.warning("could not write the offload grant %s (%s): nginx asks the server for every range", path, exc)
            return False
        state = self._states([p.device_id]).get(p.device_id)  # read again after the file exists (see above)
        if state is None or not state.active or state.epoch != p.epoch:
            _unlink(path)
            return False
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
        last_sweep = 0.0
        while True:
            await asyncio.sleep(self.interval)
            try:
                if time.monotonic() - last_sweep >= self.sweep:
                    self._take()  # the sweep looks at every device
                    await asyncio.to_thread(self.sweep_all)
                    last_sweep = time.monotonic()
                elif self._pending:
                    await asyncio.to_thread(self.revoke_pending)
            except Exception:
                log.exception("could not update the offload grants in %s; trying again", self.root)

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


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
