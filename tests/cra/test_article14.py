"""Article 14's rules, pure: the deadlines from a confirmed awareness time, and the one transition table (every
transition it does not list is refused). Times are given, never read from a clock."""

from __future__ import annotations

import datetime as dt
import itertools

import pytest

from bulkhead.cra.article14 import (
    TRANSITIONS,
    CaseEvent,
    CaseKind,
    CaseState,
    IllegalTransition,
    add_month,
    deadlines,
    next_state,
    overdue,
)
from bulkhead.cra.srp import SUBMISSION_FIELDS, render_html, submission_document
from bulkhead.cra.support_period import retained_until, support_status

AWARE = dt.datetime(2026, 9, 14, 8, 30, tzinfo=dt.UTC)


def test_early_warning_24h_and_notification_72h_after_awareness() -> None:
    due = deadlines(CaseKind.VULNERABILITY, AWARE)
    assert due.early_warning == dt.datetime(2026, 9, 15, 8, 30, tzinfo=dt.UTC)
    assert due.notification == dt.datetime(2026, 9, 17, 8, 30, tzinfo=dt.UTC)
    assert due.final_report is None  # no corrective measure yet


def test_nothing_is_due_before_awareness_is_confirmed() -> None:
    due = deadlines(CaseKind.VULNERABILITY, None, corrective_at=AWARE)
    assert (due.early_warning, due.notification, due.final_report) == (None, None, None)


def test_final_report_of_a_vulnerability_is_due_14_days_after_the_corrective_measure() -> None:
    fix = dt.datetime(2026, 9, 20, 12, 0, tzinfo=dt.UTC)
    assert deadlines(CaseKind.VULNERABILITY, AWARE, corrective_at=fix).final_report == fix + dt.timedelta(days=14)
    # a notification submitted does not start a vulnerability's final-report clock
    assert deadlines(CaseKind.VULNERABILITY, AWARE, notified_at=fix).final_report is None


def test_final_report_of_an_incident_is_due_one_month_after_the_notification() -> None:
    notified = dt.datetime(2026, 9, 16, 10, 0, tzinfo=dt.UTC)
    assert deadlines(CaseKind.INCIDENT, AWARE, notified_at=notified).final_report == dt.datetime(
        2026, 10, 16, 10, 0, tzinfo=dt.UTC
    )
    assert deadlines(CaseKind.INCIDENT, AWARE, corrective_at=notified).final_report is None


def test_a_month_later_keeps_the_day_or_takes_the_last_of_a_shorter_month() -> None:
    assert add_month(dt.datetime(2027, 1, 31, tzinfo=dt.UTC)) == dt.datetime(2027, 2, 28, tzinfo=dt.UTC)
    assert add_month(dt.datetime(2028, 1, 31, tzinfo=dt.UTC)) == dt.datetime(2028, 2, 29, tzinfo=dt.UTC)
    assert add_month(dt.datetime(2026, 12, 15, tzinfo=dt.UTC)) == dt.datetime(2027, 1, 15, tzinfo=dt.UTC)


def test_overdue_names_the_pending_submissions_whose_deadline_passed() -> None:
    due = deadlines(CaseKind.VULNERABILITY, AWARE)
    assert overdue(CaseState.EARLY_WARNING_DUE, due, AWARE + dt.timedelta(hours=23)) == []
    assert overdue(CaseState.EARLY_WARNING_DUE, due, AWARE + dt.timedelta(hours=25)) == ["early_warning"]
    assert overdue(CaseState.EARLY_WARNING_DUE, due, AWARE + dt.timedelta(hours=73)) == ["early_warning", "notification"]
    assert overdue(CaseState.NOTIFICATION_DUE, due, AWARE + dt.timedelta(hours=73)) == ["notification"]
    assert overdue(CaseState.CLOSED, due, AWARE + dt.timedelta(days=99)) == []


def test_the_reporting_path_in_order() -> None:
    state = CaseState.AWARENESS_PENDING
    for ev, expected in [
        (CaseEvent.CONFIRM, CaseState.EARLY_WARNING_DUE),
        (CaseEvent.EARLY_WARNING, CaseState.NOTIFICATION_DUE),
        (CaseEvent.NOTIFICATION, CaseState.FINAL_REPORT_DUE),
        (CaseEvent.FINAL_REPORT, CaseState.CLOSED),
    ]:
        state = next_state(state, ev)
        assert state is expected


@pytest.mark.parametrize(
    ("state", "event"),
    [(s, e) for s, e in itertools.product(CaseState, CaseEvent) if (s, e) not in TRANSITIONS],
)
def test_every_transition_not_in_the_table_is_refused(state: CaseState, event: CaseEvent) -> None:
    with pytest.raises(IllegalTransition) as info:
        next_state(state, event)
    assert state.value in str(info.value) and event.value in str(info.value)


def test_the_table_has_no_way_out_of_a_final_state_and_refusals_say_what_is_allowed() -> None:
    assert not [k for k in TRANSITIONS if k[0] in (CaseState.CLOSED, CaseState.DISMISSED)]
    with pytest.raises(IllegalTransition, match="it allows: confirm, dismiss"):
        next_state(CaseState.AWARENESS_PENDING, CaseEvent.NOTIFICATION)
    with pytest.raises(IllegalTransition, match="it is final"):
        next_state(CaseState.CLOSED, CaseEvent.DISMISS)
    # a submitted notification cannot be dismissed: it was reported
    with pytest.raises(IllegalTransition):
        next_state(CaseState.FINAL_REPORT_DUE, CaseEvent.DISMISS)


def test_support_status_warns_within_the_period_and_after_the_end() -> None:
    today = dt.date(2026, 9, 1)
    assert support_status(dt.date(2030, 1, 1), today, 180).warning is None
    soon = support_status(dt.date(2027, 1, 1), today, 180)
    assert soon.ending_soon and not soon.ended and soon.days_left == 122 and "in 122 days" in (soon.warning or "")
    ended = support_status(dt.date(2026, 8, 1), today, 180)
    assert ended.ended and not ended.ending_soon and "ended" in (ended.warning or "")
    assert "no support end" in (support_status(None, today, 180).warning or "")


def test_retention_counts_from_the_later_of_last_deployment_and_support_end() -> None:
    deployed = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
    assert retained_until(deployed, None, 10) == dt.datetime(2036, 3, 1, 12, 0, tzinfo=dt.UTC)
    assert retained_until(deployed, dt.date(2031, 6, 30), 10) == dt.datetime(2041, 6, 30, tzinfo=dt.UTC)
    assert retained_until(dt.datetime(2028, 2, 29, tzinfo=dt.UTC), None, 1) == dt.datetime(2029, 2, 28, tzinfo=dt.UTC)


def test_submissions_carry_their_fields_and_the_html_page_escapes_every_value() -> None:
    case = {"id": 7, "kind": "vulnerability", "title": "<script>alert(1)</script>", "awareness_at": AWARE.isoformat()}
    case["deadlines"] = {"early_warning": "2026-09-15T08:30:00+00:00"}
    fields = {"member_states": {"DE": 2}, "cve_ids": ["CVE-2024-1"], "mitigations": "<b>x</b>", "devices": {"affected": 3}}
    early = submission_document("early_warning", case, fields)
    assert set(early["fields"]) == set(SUBMISSION_FIELDS["early_warning"]) and "devices" not in early["fields"]
    assert early["case"]["due"] == "2026-09-15T08:30:00+00:00"
    final = submission_document("final_report", case, fields)
    assert final["fields"]["devices"] == {"affected": 3} and "corrective_measure_progress" in final["fields"]
    page = render_html(submission_document("notification", case, fields))
    assert "<script>" not in page and "&lt;script&gt;" in page and "&lt;b&gt;x&lt;/b&gt;" in page
    assert "DE" in page and page.startswith("<!DOCTYPE html>")
