"""The pure rollout rules: targeting, phase assignment, thresholds and maintenance windows."""

from __future__ import annotations

import datetime as dt
from collections import Counter

import pytest

from bulkhead.server.errors import Invalid
from bulkhead.server.services.rollout_plan import (
    allocate_new,
    allocate_phases,
    assign_phase,
    matches,
    next_opening,
    parse_phases,
    parse_target,
    parse_window,
    phase_sizes,
    phase_verdict,
    window_open,
)

UTC = dt.UTC


def test_target_matching() -> None:
    t = parse_target({"tags": ["eu", "beta"], "groups": ["line1", "line2"], "attributes": {"hw": "rev2"}})
    assert matches(t, "c", ["eu", "beta", "x"], ["line2"], {"hw": "rev2"})
    assert not matches(t, "c", ["eu"], ["line2"], {"hw": "rev2"})  # every tag is required
    assert not matches(t, "c", ["eu", "beta"], ["line3"], {"hw": "rev2"})  # one of the groups is required
    assert not matches(t, "c", ["eu", "beta"], ["line1"], {"hw": "rev1"})
    assert matches(parse_target({"compatible": "c"}), "c", [], [], {})
    assert not matches(parse_target({"compatible": "c"}), "d", [], [], {})


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"colour": "red"}, "unknown keys"),
        ({"tags": "eu"}, "list of names"),
        ({"attributes": {"hw": 2}}, "string values"),
    ],
)
def test_bad_targets(raw: object, message: str) -> None:
    with pytest.raises(Invalid, match=message):
        parse_target(raw)


def test_phases_defaults_and_errors() -> None:
    assert parse_phases(None) == [
        {"name": "100%", "group": None, "percent": 100, "success_threshold": 100, "error_threshold": 20}
    ]
    for raw, message in [
        ([{"group": "a", "percent": 10}], "exactly one of"),
        ([{}], "exactly one of"),
        ([{"percent": 60}, {"percent": 50}], "more than 100"),
        ([{"percent": 0}], "from 1 to 100"),
        ([{"group": "a", "error_threshold": 101}], "percentage from 0 to 100"),
        ([{"group": "a", "when": "now"}], "unknown keys"),
    ]:
        with pytest.raises(Invalid, match=message):
            parse_phases(raw)


def test_percentage_phases_split_the_target_fairly_and_stably() -> None:
    phases = parse_phases([{"percent": 10}, {"percent": 40}, {"percent": 50}])
    where = Counter(assign_phase(phases, 7, d, []) for d in range(10_000))
    assert abs(where[0] - 1000) < 150 and abs(where[1] - 4000) < 250 and abs(where[2] - 5000) < 250
    assert [assign_phase(phases, 7, d, []) for d in range(50)] == [assign_phase(phases, 7, d, []) for d in range(50)]


def test_group_phases_and_leftovers() -> None:
    phases = parse_phases([{"group": "canary"}, {"group": "line"}])
    assert assign_phase(phases, 1, 1, ["line", "canary"]) == 0
    assert assign_phase(phases, 1, 1, ["line"]) == 1
    assert assign_phase(phases, 1, 1, ["other"]) == 1  # devices no phase names go to the last one


@pytest.mark.parametrize(
    ("counts", "accepted", "verdict"),
    [
        ({"scheduled": 4}, 0, "wait"),
        ({"success": 3, "installing": 1}, 0, "wait"),
        ({"success": 4}, 0, "next"),
        ({"success": 3, "rolled_back": 1}, 0, "pause"),  # 25% >= 20%
        ({"success": 9, "failure": 1}, 0, "wait"),  # 10% < 20%, but not all succeeded
        ({"success": 3, "rolled_back": 1}, 1, "next"),  # the operator accepted that failure by resuming
        ({"success": 2, "rolled_back": 2}, 1, "pause"),  # a new failure after the resume
        ({}, 0, "next"),
    ],
)
def test_phase_verdicts(counts: dict[str, int], accepted: int, verdict: str) -> None:
    phase = {"name": "p", "success_threshold": 100, "error_threshold": 20}
    assert phase_verdict(phase, counts, accepted)[0] == verdict


def test_pause_reason_names_the_numbers() -> None:
    phase = {"name": "canary", "success_threshold": 100, "error_threshold": 50}
    verdict, why = phase_verdict(phase, {"success": 1, "failure": 1})
    assert verdict == "pause" and "1 of 2 devices failed in phase 'canary'" in why and "resume" in why


def test_windows_with_time_zones() -> None:
    w = parse_window({"cron": "0 2 * * *", "duration_minutes": 120, "timezone": "Europe/Berlin"})
    assert w is not None
    winter = dt.datetime(2026, 12, 1, 1, 30, tzinfo=UTC)  # 02:30 in Berlin (CET, UTC+1)
    assert window_open(w, winter)
    assert window_open(w, dt.datetime(2026, 12, 1, 1, 0, tzinfo=UTC))  # exactly at the start
    assert not window_open(w, dt.datetime(2026, 12, 1, 3, 0, tzinfo=UTC))  # 04:00 Berlin: closed
    assert not window_open(w, dt.datetime(2026, 12, 1, 0, 59, tzinfo=UTC))
    summer = dt.datetime(2026, 7, 1, 0, 30, tzinfo=UTC)  # 02:30 in Berlin (CEST, UTC+2)
    assert window_open(w, summer)
    assert next_opening(w, dt.datetime(2026, 12, 1, 12, 0, tzinfo=UTC)) == dt.datetime(2026, 12, 2, 1, 0, tzinfo=UTC)
    assert next_opening(w, winter) == winter
    assert window_open(None, winter)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"cron": "every night", "duration_minutes": 60}, "5-field cron"),
        ({"cron": "0 2 * * *", "duration_minutes": 0}, "duration_minutes"),
        ({"cron": "0 2 * * *", "duration_minutes": 60, "timezone": "Mars/Olympus"}, "IANA time zone"),
        ({"cron": "0 2 * * *", "duration_minutes": 60, "tz": "UTC"}, "unknown keys"),
    ],
)
def test_bad_windows(raw: object, message: str) -> None:
    with pytest.raises(Invalid, match=message):
        parse_window(raw)


def test_every_percentage_phase_holds_a_device_while_devices_remain() -> None:
    phases = parse_phases([{"percent": 34}, {"percent": 66}])
    for rollout_id in range(1, 200):
        plan = allocate_phases(phases, rollout_id, {d: [] for d in (11, 12, 13)}, {})
        assert sorted(Counter(plan.values()).items()) == [(0, 1), (1, 2)], rollout_id
    three = parse_phases([{"percent": 1}, {"percent": 1}, {"percent": 98}])
    assert Counter(allocate_phases(three, 5, {d: [] for d in range(4)}, {}).values()) == {0: 1, 1: 1, 2: 2}
    # Devices placed before keep their phase; a late joiner fills the phase below its quota.
    assert allocate_phases(phases, 1, {1: [], 2: [], 3: []}, {1: 1, 2: 1}) == {3: 0}


@pytest.mark.parametrize(
    "raw",
    [
        None,
        [{"percent": 10}, {"percent": 90}],
        [{"percent": 50}],
        [{"group": "canary"}, {"percent": 30}, {"percent": 30}],
        [{"group": "canary"}, {"group": "line"}],
        [{"percent": 1}, {"percent": 1}, {"percent": 98}],
    ],
)
def test_sizes_counts_and_joiners_agree_with_the_allocation(raw: object) -> None:
    """What creation checks (`phase_sizes`, no hashing), what it stores (`allocate_new` from nothing) and what a
    rollout that places its devices in two goes (the second knowing only the first's counts) are the same split."""
    phases = parse_phases(raw)
    devices = {d: (["canary"] if d % 7 == 0 else ["line"] if d % 5 == 0 else []) for d in range(1, 61)}
    whole = allocate_phases(phases, 9, devices, {})
    sizes = [Counter(whole.values()).get(i, 0) for i in range(len(phases))]
    assert phase_sizes(phases, devices) == sizes
    assert allocate_new(phases, 9, devices, {}) == whole
    first = {d: g for d, g in devices.items() if d <= 30}
    placed = allocate_new(phases, 9, first, {})
    held = Counter(placed.values())
    later = allocate_new(phases, 9, {d: g for d, g in devices.items() if d > 30}, held)
    assert Counter({**placed, **later}.values()) == Counter(whole.values())


def test_empty_phase_pauses_while_later_phases_hold_devices() -> None:
    phase = {"name": "canary", "success_threshold": 100, "error_threshold": 20}
    verdict, why = phase_verdict(phase, {}, later_devices=5)
    assert verdict == "pause" and "no devices" in why and "resume to skip" in why
    assert phase_verdict(phase, {}, later_devices=5, empty_accepted=True)[0] == "next"
    assert phase_verdict(phase, {}, later_devices=0)[0] == "next"
