"""Reading nginx's delivery log into the byte counters: whole lines only, exactly once, across processes,
restarts, rotation and truncation (delivery/offload_log.py), on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from sqlalchemy import select

from bulkhead.server.db import Database
from bulkhead.server.delivery.offload_log import OffloadLog
from bulkhead.server.models import Device, Tenant
from bulkhead.server.notify_models import NotifyCursor


def _devices(db: Database, n: int) -> list[int]:
    with db.session() as s:
        t = Tenant(name=f"t-{uuid.uuid4().hex[:8]}")
        s.add(t)
        s.flush()
        devs = [Device(tenant_id=t.id, name=f"d{i}", compatible="c") for i in range(n)]
        s.add_all(devs)
        s.flush()
        return [d.id for d in devs]


def _served(db: Database, device_id: int) -> int:
    with db.session() as s:
        return int(s.scalar(select(Device.bytes_served).where(Device.id == device_id)) or 0)


def _line(device: int | str, nbytes: int, status: int = 206) -> bytes:
    return f'{{"device":"{device}","bytes":{nbytes},"time":"2026-12-03T12:00:00+00:00","status":{status},"range":""}}\n'.encode()


def test_whole_lines_are_counted_once_by_any_number_of_readers(db: Database, tmp_path: Path) -> None:
    a, b = _devices(db, 2)
    log = tmp_path / "delivery.log"
    log.write_bytes(_line(a, 100) + _line(b, 7) + _line("", 999) + _line(a, 0, 200) + _line(a, 23)[:20])  # a half line
    first, second = OffloadLog(db, log, 5.0), OffloadLog(db, log, 5.0)  # two server processes
    assert first.ingest() == 107
    assert second.ingest() == 0 and first.ingest() == 0
    assert (_served(db, a), _served(db, b)) == (100, 7)
    with log.open("ab") as f:  # nginx finishes the line, and writes another
        f.write(_line(a, 23)[20:] + _line(b, 5))
    assert second.ingest() == 28
    assert OffloadLog(db, log, 5.0).ingest() == 0  # a restarted process starts at the stored cursor
    assert (_served(db, a), _served(db, b)) == (123, 12)


def test_a_rotated_log_is_finished_before_the_new_one(db: Database, tmp_path: Path) -> None:
    (a,) = _devices(db, 1)
    log = tmp_path / "delivery.log"
    log.write_bytes(_line(a, 1))
    reader = OffloadLog(db, log, 5.0)
    assert reader.ingest() == 1
    with log.open("ab") as f:
        f.write(_line(a, 10))  # written before the rotation, read after it
    os.rename(log, tmp_path / "delivery.log.1")  # logrotate; nginx reopens on USR1
    log.write_bytes(_line(a, 100))
    assert reader.ingest() == 110 and _served(db, a) == 111
    (tmp_path / "delivery.log.1").unlink()  # the next rotation compresses it away: its cursor goes too
    assert reader.ingest() == 0
    with db.session() as s:
        names = s.scalars(select(NotifyCursor.name).where(NotifyCursor.name.startswith("xa:"))).all()
    assert names == [reader._prefix + str(log.stat().st_ino)]


def test_a_truncated_log_is_read_from_its_start(db: Database, tmp_path: Path) -> None:
    (a,) = _devices(db, 1)
    log = tmp_path / "delivery.log"
    log.write_bytes(_line(a, 5) * 3)
    reader = OffloadLog(db, log, 5.0)
    assert reader.ingest() == 15
    with log.open("r+b") as f:  # copytruncate, then one new line
        f.truncate(0)
        f.write(_line(a, 2))
    assert reader.ingest() == 2 and _served(db, a) == 17


def test_lines_in_another_format_count_nothing(db: Database, tmp_path: Path) -> None:
    (a,) = _devices(db, 1)
    log = tmp_path / "delivery.log"
    log.write_bytes(b'127.0.0.1 - - [03/Dec/2026] "GET / HTTP/1.1" 200 5\n' + b'{"bytes":5,"device":"1"}\n' + _line(a, 3))
    assert OffloadLog(db, log, 5.0).ingest() == 3 and _served(db, a) == 3
    assert OffloadLog(db, tmp_path / "missing.log", 5.0).ingest() == 0
