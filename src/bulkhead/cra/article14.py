"""CRA Article 14 reporting, pure: case states with one transition table, and the deadlines that follow from them.

A case starts `awareness_pending` (opened from an exploited vulnerability or by hand); a person confirms the time the
manufacturer became aware, and from that time: the early warning is due within 24 hours, the notification within
72 hours, and the final report 14 days after a corrective or mitigating measure is available (an actively exploited
vulnerability) or one month after the notification was submitted (a severe incident). Each submission moves the case
one step; a case that turns out not to be reportable is dismissed with a reason. Nothing here reads a clock: every
function that needs the time takes `now`.
"""

from __future__ import annotations

import calendar
import datetime as dt
from dataclasses import dataclass
from enum import StrEnum

from .errors import CraError

__all__ = [
    "EARLY_WARNING",
    "NOTIFICATION",
    "SUBMISSIONS",
    "TRANSITIONS",
    "CaseEvent",
    "CaseKind",
    "CaseState",
    "Deadlines",
    "IllegalTransition",
    "add_month",
    "deadlines",
    "next_state",
    "overdue",
]

EARLY_WARNING = dt.timedelta(hours=24)
NOTIFICATION = dt.timedelta(hours=72)
FINAL_AFTER_FIX = dt.timedelta(days=14)


class CaseKind(StrEnum):
    VULNERABILITY = "vulnerability"  # an actively exploited vulnerability (Article 14(1))
    INCIDENT = "incident"  # a severe incident having an impact on the security of the product (Article 14(3))


class CaseState(StrEnum):
    AWARENESS_PENDING = "awareness_pending"  # opened; a person has not yet confirmed when awareness began
    EARLY_WARNING_DUE = "early_warning_due"
    NOTIFICATION_DUE = "notification_due"
    FINAL_REPORT_DUE = "final_report_due"
    CLOSED = "closed"  # the final report was submitted
    DISMISSED = "dismissed"  # not reportable (a false positive, not exploited, not our product), with a reason


class CaseEvent(StrEnum):
    CONFIRM = "confirm"
    EARLY_WARNING = "early_warning"
    NOTIFICATION = "notification"
    FINAL_REPORT = "final_report"
    DISMISS = "dismiss"


# The submissions, in the order Article 14 asks for them (each is also the event its submission raises).
SUBMISSIONS = (CaseEvent.EARLY_WARNING, CaseEvent.NOTIFICATION, CaseEvent.FINAL_REPORT)

S, E = CaseState, CaseEvent
# The one transition table: (state, event) -> next state. Anything not listed is refused.
TRANSITIONS: dict[tuple[CaseState, CaseEvent], CaseState] = {
    (S.AWARENESS_PENDING, E.CONFIRM): S.EARLY_WARNING_DUE,
    (S.AWARENESS_PENDING, E.DISMISS): S.DISMISSED,
    (S.EARLY_WARNING_DUE, E.EARLY_WARNING): S.NOTIFICATION_DUE,
    (S.EARLY_WARNING_DUE, E.DISMISS): S.DISMISSED,
    (S.NOTIFICATION_DUE, E.NOTIFICATION): S.FINAL_REPORT_DUE,
    (S.NOTIFICATION_DUE, E.DISMISS): S.DISMISSED,
    (S.FINAL_REPORT_DUE, E.FINAL_REPORT): S.CLOSED,
}
del S, E


class IllegalTransition(CraError):
    """An event the case's state does not allow; the message says which events it allows."""

    def __init__(self, state: CaseState, event: CaseEvent) -> None:
        allowed = sorted(e.value for (s, e) in TRANSITIONS if s == state)
        hint = f"it allows: {', '.join(allowed)}" if allowed else "it is final"
        super().__init__(f"a case in state {state.value} cannot take '{event.value}'; {hint}")
        self.state, self.event = state, event


def next_state(state: CaseState, event: CaseEvent) -> CaseState:
    """The state after `event`, or IllegalTransition."""
    try:
        return TRANSITIONS[(state, event)]
    except KeyError:
        raise IllegalTransition(state, event) from None


def add_month(t: dt.datetime) -> dt.datetime:
    """One calendar month later (the 31st of a shorter month becomes its last day)."""
    year, month = (t.year + 1, 1) if t.month == 12 else (t.year, t.month + 1)
    return t.replace(year=year, month=month, day=min(t.day, calendar.monthrange(year, month)[1]))


@dataclass(frozen=True)
class Deadlines:
    early_warning: dt.datetime | None
    notification: dt.datetime | None
    final_report: dt.datetime | None


def deadlines(
    kind: CaseKind,
    awareness_at: dt.datetime | None,
    corrective_at: dt.datetime | None = None,
    notified_at: dt.datetime | None = None,
) -> Deadlines:
    """When each submission is due: nothing before awareness is confirmed; the final report of a vulnerability once a
    corrective measure is available (14 days after), of an incident once the notification was submitted (a month)."""
    if awareness_at is None:
        return Deadlines(None, None, None)
    if kind is CaseKind.VULNERABILITY:
        final = corrective_at + FINAL_AFTER_FIX if corrective_at is not None else None
    else:
        final = add_month(notified_at) if notified_at is not None else None
    return Deadlines(awareness_at + EARLY_WARNING, awareness_at + NOTIFICATION, final)


_PENDING = {
    CaseState.EARLY_WARNING_DUE: ("early_warning", "notification", "final_report"),
    CaseState.NOTIFICATION_DUE: ("notification", "final_report"),
    CaseState.FINAL_REPORT_DUE: ("final_report",),
}


def overdue(state: CaseState, due: Deadlines, now: dt.datetime) -> list[str]:
    """The submissions still to make whose deadline has passed at `now`."""
    return [name for name in _PENDING.get(state, ()) if (t := getattr(due, name)) is not None and now > t]
