"""Version order (PEP 440, else dpkg), API times (offset required, UTC, sane range), and the UTC column type."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from bulkhead.server.errors import Invalid
from bulkhead.server.models import Base, Tenant
from bulkhead.server.services.times import parse_time
from bulkhead.server.services.versions import compare_versions, refuse_downgrade


@pytest.mark.parametrize(
    ("older", "newer"),
    [
        ("1.0", "2.0"),
        ("1.9", "1.10"),
        ("2.0rc1", "2.0"),
        ("2026.5.1", "2026.12.1"),
        ("1.0-r3", "1.0-r10"),  # not PEP 440: dpkg order
        ("2024.05~rc1", "2024.05"),
        ("1.2.3", "1.2.3+git5"),
        ("2026.20261202-abc", "2026.20261203-abc"),
    ],
)
def test_version_order(older: str, newer: str) -> None:
    assert compare_versions(older, newer) == -1 and compare_versions(newer, older) == 1
    assert compare_versions(newer, newer) == 0


def test_refuse_downgrade_names_both_versions() -> None:
    with pytest.raises(Invalid, match=r"version 1\.0 is older than 2\.0 .*allow_downgrade"):
        refuse_downgrade("1.0", "2.0", "device 'd'", allow=False)
    refuse_downgrade("1.0", "2.0", "device 'd'", allow=True)
    refuse_downgrade("2.0", None, "device 'd'", allow=False)


def test_parse_time() -> None:
    assert parse_time("2030-01-01T05:00:00+05:00", "t") == dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
    assert parse_time("2030-01-01T00:00:00Z", "t").utcoffset() == dt.timedelta(0)
    for raw, message in (
        ("2030-01-01T00:00:00", "offset"),
        ("9999-12-31T23:59:59-12:00", "outside 2000-01-01 to 2100-01-01"),
        ("0001-01-01T00:00:00+01:00", "outside"),
        ("soon", "ISO 8601"),
    ):
        with pytest.raises(Invalid, match=message):
            parse_time(raw, "t")


def test_utc_column_type_keeps_the_instant_on_sqlite() -> None:
    engine = create_engine("sqlite://")
    Base.metadata.create_all(engine)
    at = dt.datetime(2030, 1, 1, 7, 0, tzinfo=dt.timezone(dt.timedelta(hours=5)))
    with Session(engine) as s:
        s.add(Tenant(name="t", created_at=at))
        s.commit()
    with Session(engine) as s:
        got = s.scalar(select(Tenant.created_at))
    assert got == at and got is not None and got.tzinfo is dt.UTC and got.hour == 2
