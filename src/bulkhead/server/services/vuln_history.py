"""The fleet's exposure over time: a sample of the exposure summary after each change that can move it.

Written in the transaction of the change (a scan run's end, a KEV update, a VEX statement set, imported or
withdrawn), only when the summary differs from the tenant's last sample: a day of unchanged scans adds nothing.
Read back for the plot over a window (90 days by default), at most `MAX_POINTS` samples (the last of each equal
step when there are more).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..models import utcnow
from ..vuln_state_models import VulnExposureSample
from .auth import Principal
from .vuln_summary import Exposure, exposure_of

__all__ = ["MAX_POINTS", "Sample", "history", "record", "thin"]

MAX_POINTS = 200
X = VulnExposureSample


@dataclass(frozen=True)
class Sample:
    at: dt.datetime
    cause: str
    cves: int
    kev: int
    devices: int
    by_severity: dict[str, int]


def _same(last: X | None, now: Exposure) -> bool:
    return (
        last is not None
        and (last.cves, last.kev, last.devices) == (now.cves, now.kev, now.devices)
        and dict(last.by_severity) == now.by_severity
    )


def record(s: Session, tid: int, cause: str) -> bool:
    """Sample the tenant's exposure now (after the caller's changes are flushed); False when it did not move."""
    s.flush()
    now = exposure_of(s, tid)
    last = s.scalar(select(X).where(X.tenant_id == tid).order_by(X.at.desc(), X.id.desc()).limit(1))
    if _same(last, now):
        return False
    s.add(
        X(
            tenant_id=tid, at=utcnow(), cause=cause[:64], cves=now.cves, kev=now.kev, devices=now.devices,
            by_severity=dict(now.by_severity),
        )
    )  # fmt: skip
    return True


def thin(samples: list[Sample], start: dt.datetime, end: dt.datetime, most: int = MAX_POINTS) -> list[Sample]:
    """Pure: at most `most` samples, the last of each of `most` equal steps from start to end (a plot's pixel
    holds one value; the last one is what the fleet looked like at the end of that step)."""
    if len(samples) <= most:
        return samples
    span = max(1e-6, (end - start).total_seconds())
    kept: dict[int, Sample] = {}
    for x in samples:
        kept[min(most - 1, int((x.at - start).total_seconds() / span * most))] = x
    return [kept[k] for k in sorted(kept)]


def history(s: Session, who: Principal, since: dt.datetime, until: dt.datetime) -> tuple[Sample | None, list[Sample]]:
    """The sample in force at `since` (the last one before it, None if there is none) and the samples in the window."""
    who.require("viewer")
    tid = who.require_tenant()
    before = s.scalar(select(X).where(X.tenant_id == tid, X.at < since).order_by(X.at.desc(), X.id.desc()).limit(1))
    rows = s.scalars(select(X).where(X.tenant_id == tid, X.at >= since, X.at <= until).order_by(X.at, X.id)).all()
    return (_sample(before) if before else None), thin([_sample(x) for x in rows], since, until)


def _sample(x: X) -> Sample:
    return Sample(x.at, x.cause, x.cves, x.kev, x.devices, {k: int(v) for k, v in (x.by_severity or {}).items()})
