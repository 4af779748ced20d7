"""The pure decision of security updates by policy (services/security_plan.py): which release, when due, postponed."""

from __future__ import annotations

import datetime as dt

import pytest

from bulkhead.server.errors import Conflict, Invalid
from bulkhead.server.services.security_plan import (
    Policy,
    SecurityRelease,
    decide,
    effective_policy,
    group_postponement,
    parse_policy,
    pick_release,
    postpone_until,
)

T0 = dt.datetime(2027, 1, 10, 12, 0, tzinfo=dt.UTC)
AUTO7 = Policy("automatic", 7, "tenant")
R11 = SecurityRelease(11, "1.1", T0)
R12 = SecurityRelease(12, "1.2", T0 + dt.timedelta(days=1))


def test_the_newest_security_release_newer_than_the_running_version_is_picked() -> None:
    assert pick_release([R11, R12], "1.0") == R12
    assert pick_release([R12, R11], "1.1") == R12
    assert pick_release([R11, R12], "1.2") is None
    assert pick_release([R11, R12], None) is None  # the device has not said what it runs yet
    assert pick_release([R11], "1.0", desired="2.0") is None  # its owner chose a newer release already
    assert pick_release([R11], "1.0", desired="1.0") == R11


def test_the_devices_own_policy_wins_then_its_last_group_with_one_then_the_tenant() -> None:
    groups = {"a": Policy("opt_out", 7, "group a"), "b": Policy("automatic", 2, "group b")}
    own = Policy("automatic", 1, "device")
    assert effective_policy(own, ["a", "b"], groups, AUTO7) == own
    assert effective_policy(None, ["a", "b"], groups, AUTO7).source == "group b"
    assert effective_policy(None, ["b", "a", "c"], groups, AUTO7).source == "group a"
    assert effective_policy(None, ["c"], groups, AUTO7) == AUTO7


def test_due_after_the_window_postponed_until_its_end_never_when_opted_out() -> None:
    assert decide(R11, AUTO7, None, T0 + dt.timedelta(days=6)).state == "waiting"
    d = decide(R11, AUTO7, None, T0 + dt.timedelta(days=7))
    assert d.state == "due" and d.due_at == T0 + dt.timedelta(days=7) and d.install_at == d.due_at
    until = T0 + dt.timedelta(days=20)
    assert decide(R11, AUTO7, until, T0 + dt.timedelta(days=19)).state == "postponed"
    assert decide(R11, AUTO7, until, T0 + dt.timedelta(days=19)).install_at == until
    assert decide(R11, AUTO7, until, until).state == "due"
    # a postponement that ends before the due date changes nothing
    assert decide(R11, AUTO7, T0 + dt.timedelta(days=3), T0 + dt.timedelta(days=2)).state == "waiting"
    opted = decide(R11, Policy("opt_out", 7, "device"), None, T0 + dt.timedelta(days=400))
    assert opted.state == "opt_out" and opted.install_at is None


def test_group_postponement_is_the_latest_of_the_devices_groups() -> None:
    a, b = T0 + dt.timedelta(days=1), T0 + dt.timedelta(days=5)
    assert group_postponement(["x", "y"], {"x": a, "y": b}) == b
    assert group_postponement(["z"], {"x": a}) is None


def test_postponement_extends_up_to_the_limit_and_is_refused_past_it() -> None:
    due = T0 + dt.timedelta(days=7)
    first = postpone_until(due, None, 10, None, 30, T0)
    assert first == due + dt.timedelta(days=10)
    second = postpone_until(due, first, 20, None, 30, T0)
    assert second == due + dt.timedelta(days=30)
    with pytest.raises(Conflict, match="at most 30 days in total"):
        postpone_until(due, second, 1, None, 30, T0)
    # asked after the due date: counted from now, still limited from the due date
    late = due + dt.timedelta(days=25)
    with pytest.raises(Conflict, match="at most 30 days"):
        postpone_until(due, None, 6, None, 30, late)
    assert postpone_until(due, None, None, due + dt.timedelta(days=3), 30, T0) == due + dt.timedelta(days=3)


@pytest.mark.parametrize(
    ("days", "until", "match"),
    [
        (None, None, "either days"),
        (3, T0 + dt.timedelta(days=9), "either days"),
        (0, None, "at least 1"),
        (True, None, "whole number"),
        (None, T0 - dt.timedelta(days=1), "in the future"),
    ],
)
def test_bad_postponements_are_refused(days: object, until: dt.datetime | None, match: str) -> None:
    with pytest.raises(Invalid, match=match):
        postpone_until(T0 + dt.timedelta(days=7), None, days, until, 30, T0)


def test_policies_are_checked() -> None:
    assert parse_policy("opt_out", None, "group g") == Policy("opt_out", 7, "group g")
    with pytest.raises(Invalid, match="mode must be one of automatic, opt_out"):
        parse_policy("manual", 7, "tenant")
    with pytest.raises(Invalid, match="window_days"):
        parse_policy("automatic", 400, "tenant")
    with pytest.raises(Invalid, match="window_days"):
        parse_policy("automatic", -1, "tenant")
