"""The shared status vocabulary: one table, no status that cannot be reached or left, the DDI mapping."""

from __future__ import annotations

import pytest

from bulkhead.protocol import (
    ACTION_TRANSITIONS,
    AGENT_PHASE_ACTION,
    FAILED,
    OPEN,
    ROLLOUT_TRANSITIONS,
    TERMINAL,
    ActionStatus,
    RolloutStatus,
    UpdatePhase,
    action_may,
    ddi_action_status,
    rollout_may,
)


def test_every_status_has_a_row_and_open_and_terminal_partition_them() -> None:
    assert set(ACTION_TRANSITIONS) == set(ActionStatus)
    assert set(ROLLOUT_TRANSITIONS) == set(RolloutStatus)
    assert set(ActionStatus) == OPEN | TERMINAL and not OPEN & TERMINAL
    assert FAILED < TERMINAL


def test_enum_members_equal_their_stored_text() -> None:
    assert ActionStatus.ROLLED_BACK == "rolled_back"
    assert RolloutStatus.RUNNING == "running"


@pytest.mark.parametrize("closed", ["success", "canceled"])
def test_a_successful_or_canceled_action_never_reopens(closed: str) -> None:
    assert not any(action_may(closed, s) for s in ActionStatus if s != closed)


def test_a_failed_action_reopens_only_as_scheduled_for_a_retry() -> None:
    for failed in FAILED:
        assert [s for s in ActionStatus if s != failed and action_may(failed, s)] == [ActionStatus.SCHEDULED]


def test_a_device_may_report_any_working_phase_after_another() -> None:
    assert action_may("rebooting", "installing")  # an agent retries the install after a rollback
    assert action_may("scheduled", "success")
    assert action_may("canceling", "installing")  # the device declined the cancel and carries on
    assert not action_may("canceling", "scheduled")


def test_rollout_transitions() -> None:
    assert rollout_may("finished", "running")  # late joiners reopen it
    assert not rollout_may("canceled", "running")
    assert not rollout_may("waiting_approval", "paused")
    with pytest.raises(ValueError):
        rollout_may("running", "bogus")


def test_agent_phases_map_onto_action_statuses() -> None:
    assert AGENT_PHASE_ACTION[UpdatePhase.VERIFYING] is ActionStatus.REBOOTING
    assert UpdatePhase.IDLE not in AGENT_PHASE_ACTION


@pytest.mark.parametrize(
    ("current", "execution", "finished", "cancel", "expected"),
    [
        ("scheduled", "proceeding", "none", False, "downloading"),
        ("downloaded", "proceeding", "none", False, None),
        ("installing", "closed", "success", False, "success"),
        ("installing", "closed", "none", False, "success"),
        ("installing", "closed", "failure", False, "failure"),
        ("downloading", "proceeding", "failure", False, None),
        ("canceling", "canceled", "none", True, "canceled"),
        ("canceling", "rejected", "none", True, "installing"),
        ("scheduled", "rejected", "none", False, None),
    ],
)
def test_ddi_feedback(current: str, execution: str, finished: str, cancel: bool, expected: str | None) -> None:
    assert ddi_action_status(current, execution, finished, cancel, "installing") == expected


@pytest.mark.parametrize("current", ["scheduled", "downloading", "downloaded"])
def test_ddi_progress_about_the_install_means_installing(current: str) -> None:
    assert ddi_action_status(current, "proceeding", "none", False, installing=True) == "installing"
    assert ddi_action_status("rebooting", "proceeding", "none", False, installing=True) is None


def test_the_agents_update_phases_are_protocol_phases() -> None:
    from bulkhead.agent.state import Phase

    assert {p.value for p in Phase} <= {p.value for p in UpdatePhase}


def test_event_details_are_cut_to_what_the_server_accepts() -> None:
    import json

    from bulkhead.protocol import MAX_EVENT_DETAILS_BYTES, bounded_details

    small = {"reason": "rauc said no", "version": "1.2"}
    assert bounded_details(small) == small
    long = bounded_details({"reason": "x" * 50_000, "version": "1.2"})
    assert long["version"] == "1.2" and long["reason"].startswith("x" * 2000) and "48000 more" in long["reason"]
    huge = bounded_details({"version": "1.2", "log": ["y" * 1000] * 100, "reason": "z"})
    assert huge["truncated"] is True and huge["version"] == "1.2" and "log" not in huge
    assert len(json.dumps(huge)) <= MAX_EVENT_DETAILS_BYTES
