"""Support periods and release retention, pure: how long a product is supported, and until when a release is kept.

A product's support end is a date; within `warn_days` of it (or after it) the product is flagged. A release that was
ever deployed is kept for `retention_years` after the later of its last deployment and the product's support end
(the CRA keeps technical documentation 10 years after placing on the market or for the support period, whichever is
longer).
"""

from __future__ import annotations

import calendar
import datetime as dt
from dataclasses import dataclass

__all__ = ["SupportStatus", "add_years", "retained_until", "support_status"]


@dataclass(frozen=True)
class SupportStatus:
    support_end: dt.date | None
    days_left: int | None  # negative once it has ended; None when no end is set
    ended: bool
    ending_soon: bool  # ends within the warning period (and has not ended)
    warning: str | None  # what to tell a person, or None


def support_status(support_end: dt.date | None, today: dt.date, warn_days: int) -> SupportStatus:
    if support_end is None:
        return SupportStatus(None, None, False, False, "no support end date set: the CRA asks for one (bulkhead cra product set)")
    left = (support_end - today).days
    ended = left < 0
    soon = not ended and left <= warn_days
    warning = None
    if ended:
        warning = f"support ended on {support_end.isoformat()} ({-left} days ago)"
    elif soon:
        warning = f"support ends on {support_end.isoformat()}, in {left} days"
    return SupportStatus(support_end, left, ended, soon, warning)


def add_years(t: dt.datetime, years: int) -> dt.datetime:
    """`years` calendar years later (29 February becomes 28 February in a common year)."""
    year = t.year + years
    return t.replace(year=year, day=min(t.day, calendar.monthrange(year, t.month)[1]))


def retained_until(last_deployed: dt.datetime, support_end: dt.date | None, retention_years: int) -> dt.datetime:
    """The end of a deployed release's retention: `retention_years` after its last deployment, or after the product's
    support end when that is later."""
    start = last_deployed
    if support_end is not None:
        end = dt.datetime.combine(support_end, dt.time(), tzinfo=dt.UTC)
        start = max(start, end)
    return add_years(start, retention_years)
