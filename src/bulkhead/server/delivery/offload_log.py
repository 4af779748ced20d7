"""Bytes nginx sent for offloaded downloads, read from its JSON access log into the devices' counters, exactly once.

nginx writes one JSON line per offloaded response to a device (contrib/nginx/bulkhead-offload.conf, format
`bulkhead_delivery`): `{"device":"<id>","bytes":<body bytes sent>,...}`, those two first. Every server process
reads the file every few seconds from a cursor kept in the database (the `notify_cursors` table, one row per
log file: host and inode), and adds the bytes and moves the cursor in one transaction under the row's lock:
a crash before the commit reads the same lines again, after it never, and two processes never read the same
lines. Only whole lines are read (nginx may be midway through a buffer). A rotated file (logrotate's default
`rename`, with `delaycompress`) is finished from its old name, `<log>.1`, before the new file is started.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import socket
import zlib
from collections import defaultdict
from pathlib import Path

from sqlalchemy import delete

from ..background import cancel
from ..cursors import locked_cursor
from ..db import Database
from ..notify_models import NotifyCursor
from .counters import add_bytes

__all__ = ["OffloadLog"]

log = logging.getLogger(__name__)

_CHUNK = 8 * 1024 * 1024  # read at most this much per transaction
_LINE = re.compile(rb'^\{"device":"([0-9]{0,18})","bytes":([0-9]{1,18})[,}].*$', re.MULTILINE)


class OffloadLog:
    def __init__(self, db: Database, path: Path, interval: float) -> None:
        self.db, self.path, self.interval = db, path, interval
        # Cursor names: "xa:<host>:<inode>" (at most 32 characters), so hosts sharing a database keep their own.
        self._prefix = f"xa:{zlib.crc32(socket.gethostname().encode()):08x}:"
        self._task: asyncio.Task[None] | None = None
        self._missing_warned = False

    def ingest(self) -> int:
        """Read every whole line not read yet (the rotated file first); returns the bytes added to counters."""
        total = 0
        live: set[str] = set()
        for path in self._files():
            try:
                fd = os.open(path, os.O_RDONLY)
            except FileNotFoundError:
                continue
            try:
                name = self._prefix + str(os.fstat(fd).st_ino)
                live.add(name)
                while (n := self._step(fd, name)) is not None:
                    total += n
            finally:
                os.close(fd)
        if not live and not self._missing_warned:
            log.warning("delivery offload log %s does not exist (yet): no offloaded bytes are counted", self.path)
            self._missing_warned = True
        if live:
            # Forget the cursors of files rotated away for good (their inode may be given to a new file), looking at
            # the names again just before, in case the log was rotated meanwhile.
            for path in self._files():
                with contextlib.suppress(FileNotFoundError):
                    live.add(self._prefix + str(os.stat(path).st_ino))
            with self.db.session() as s:
                s.execute(delete(NotifyCursor).where(NotifyCursor.name.startswith(self._prefix), NotifyCursor.name.not_in(live)))
        return total

    def _files(self) -> tuple[Path, Path]:
        return self.path.with_name(self.path.name + ".1"), self.path

    def _step(self, fd: int, name: str) -> int | None:
        """One transaction: lock the cursor, read the next whole lines, add their bytes, move the cursor.
        None when there was nothing (more) to read."""
        with self.db.session() as s:
            cursor = locked_cursor(s, name)
            size = os.fstat(fd).st_size
            position = cursor.position if cursor.position <= size else 0  # truncated (copytruncate): from the start
            data = os.pread(fd, min(_CHUNK, size - position), position) if size > position else b""
            end = data.rfind(b"\n") + 1
            if end == 0:
                if position != cursor.position:
                    cursor.position = position
                return None
            pending, sent = _parse(data[:end], name)
            cursor.position = position + end
            add_bytes(s, pending, self.interval)
            return sent

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await asyncio.to_thread(self.ingest)
            except Exception:
                log.exception("could not read the delivery offload log %s; trying again", self.path)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        await cancel(self._task)
        try:
            self.ingest()
        except Exception:
            log.exception("could not read the delivery offload log %s at shutdown", self.path)


def _parse(lines: bytes, name: str) -> tuple[dict[int, int], int]:
    """Bytes per device in these log lines (a regular expression, not a JSON parser: this runs for every range
    request nginx serves); lines without a device (a user's download) count for nobody."""
    pending: defaultdict[int, int] = defaultdict(int)
    sent = 0
    matched = 0
    for m in _LINE.finditer(lines):
        matched += 1
        if m.group(1) and (n := int(m.group(2))):
            pending[int(m.group(1))] += n
            sent += n
    if matched != (count := lines.count(b"\n")):
        log.warning(
            "delivery offload log (%s): %d of %d lines are not in nginx's bulkhead_delivery format (they start "
            '{"device":"ID","bytes":N; see contrib/nginx/bulkhead-offload.conf), their bytes are not counted',
            name,
            count - matched,
            count,
        )
    return dict(pending), sent
