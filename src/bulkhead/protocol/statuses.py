"""The update, action and rollout statuses as enums, and the one table of which status may follow which.

Values are the strings on the wire and in the database, so an enum member compares equal to its stored text.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum

__all__ = [
    "ACTION_TRANSITIONS",
    "AGENT_PHASE_ACTION",
    "APP_PHASE_ACTION",
    "FAILED",
    "OPEN",
    "ROLLOUT_TRANSITIONS",
    "TERMINAL",
    "ActionStatus",
    "DdiExecution",
    "DdiResult",
    "DeviceStatus",
    "EventKind",
    "RolloutStatus",
    "UpdatePhase",
    "action_may",
    "ddi_action_status",
    "rollout_may",
]


class EventKind(StrEnum):
    """What an agent's report event is about."""

    UPDATE = "update"
    APP = "app"
    FILE = "file"
    AGENT = "agent"
    DELTA = "delta"
    SECURITY = "security"  # a security event (CRA Annex I): its SecurityEvent kind is in details["event"]
    PACKAGE = "package"  # desired Debian packages applied with apt (the package overlay)


class UpdatePhase(StrEnum):
    """The phases an agent reports (its OS-update state machine's phases plus outcomes)."""

    IDLE = "idle"
    DOWNLOADING = "downloading"
    DOWNLOADED = "downloaded"  # verified on disk; waiting until the install is allowed
    INSTALLING = "installing"
    REBOOTING = "rebooting"
    VERIFYING = "verifying"
    ROLLING_BACK = "rolling_back"  # health check failed: slot marked bad, rebooting into the old one
    SUCCESS = "success"
    FAILURE = "failure"
    ROLLED_BACK = "rolled_back"
    CANCELED = "canceled"
    APPLIED = "applied"  # an app, file or package set is in place
    REFUSED = "refused"  # a delta bundle RAUC refused (its source slot did not match, or the patch was damaged)


class ActionStatus(StrEnum):
    """One device's part in a rollout."""

    SCHEDULED = "scheduled"
    DOWNLOADING = "downloading"
    DOWNLOADED = "downloaded"
    INSTALLING = "installing"
    REBOOTING = "rebooting"
    CANCELING = "canceling"  # the rollout was canceled; waiting for the device to confirm
    SUCCESS = "success"
    FAILURE = "failure"
    ROLLED_BACK = "rolled_back"
    CANCELED = "canceled"


class DeviceStatus(StrEnum):
    """A device's standing with its server."""

    PENDING = "pending"  # enrolled with a token that requires approval; an operator approves it
    ACTIVE = "active"
    DISABLED = "disabled"  # refused everything until an operator enables it


class RolloutStatus(StrEnum):
    WAITING_APPROVAL = "waiting_approval"
    SCHEDULED = "scheduled"
    RUNNING = "running"
    PAUSED = "paused"
    FINISHED = "finished"
    CANCELED = "canceled"


class DdiExecution(StrEnum):
    """hawkBit DDI feedback `status.execution`."""

    CLOSED = "closed"
    PROCEEDING = "proceeding"
    CANCELED = "canceled"
    SCHEDULED = "scheduled"
    REJECTED = "rejected"
    RESUMED = "resumed"
    DOWNLOADED = "downloaded"
    DOWNLOAD = "download"


class DdiResult(StrEnum):
    """hawkBit DDI feedback `status.result.finished`."""

    SUCCESS = "success"
    FAILURE = "failure"
    NONE = "none"


A = ActionStatus
OPEN = frozenset({A.SCHEDULED, A.DOWNLOADING, A.DOWNLOADED, A.INSTALLING, A.REBOOTING, A.CANCELING})
FAILED = frozenset({A.FAILURE, A.ROLLED_BACK})
TERMINAL = frozenset({A.SUCCESS, A.CANCELED, *FAILED})
_WORKING = OPEN - {A.CANCELING}

# The one table: which action status may follow which. A device reports the phase it is in, so any working
# status may follow any other (an agent retries an install after a rollback); a closed action reopens only when
# an operator retries a failed one; a canceled or successful action stays closed.
ACTION_TRANSITIONS: Mapping[ActionStatus, frozenset[ActionStatus]] = {
    **{s: frozenset(OPEN | TERMINAL) for s in _WORKING},
    # A scheduled action is canceled at once; one under way waits for the device, which may decline and carry on.
    A.CANCELING: frozenset((_WORKING - {A.SCHEDULED}) | TERMINAL),
    A.FAILURE: frozenset({A.SCHEDULED}),
    A.ROLLED_BACK: frozenset({A.SCHEDULED}),
    A.SUCCESS: frozenset(),
    A.CANCELED: frozenset(),
}

R = RolloutStatus
ROLLOUT_TRANSITIONS: Mapping[RolloutStatus, frozenset[RolloutStatus]] = {
    R.WAITING_APPROVAL: frozenset({R.SCHEDULED, R.RUNNING, R.CANCELED}),
    R.SCHEDULED: frozenset({R.RUNNING, R.PAUSED, R.CANCELED}),
    R.RUNNING: frozenset({R.PAUSED, R.FINISHED, R.CANCELED}),
    R.PAUSED: frozenset({R.RUNNING, R.CANCELED}),
    R.FINISHED: frozenset({R.RUNNING}),  # late joiners or a retry reopen it
    R.CANCELED: frozenset(),
}

# An agent's reported update phase -> the status of its action (phases not listed change nothing).
AGENT_PHASE_ACTION: Mapping[str, ActionStatus] = {
    UpdatePhase.DOWNLOADING: A.DOWNLOADING,
    UpdatePhase.DOWNLOADED: A.DOWNLOADED,
    UpdatePhase.INSTALLING: A.INSTALLING,
    UpdatePhase.REBOOTING: A.REBOOTING,
    UpdatePhase.VERIFYING: A.REBOOTING,
    UpdatePhase.ROLLING_BACK: A.REBOOTING,
    UpdatePhase.SUCCESS: A.SUCCESS,
    UpdatePhase.FAILURE: A.FAILURE,
    UpdatePhase.ROLLED_BACK: A.ROLLED_BACK,
    UpdatePhase.CANCELED: A.CANCELED,
}
# What an agent reports about an app version -> the status of that app version's action.
APP_PHASE_ACTION: Mapping[str, ActionStatus] = {
    UpdatePhase.APPLIED: A.SUCCESS,
    UpdatePhase.FAILURE: A.FAILURE,
    UpdatePhase.DOWNLOADED: A.DOWNLOADED,
}


def action_may(current: str, new: str) -> bool:
    """Whether an action may go from `current` to `new` (staying put is always allowed: it only adds a note)."""
    return current == new or ActionStatus(new) in ACTION_TRANSITIONS[ActionStatus(current)]


def rollout_may(current: str, new: str) -> bool:
    return current == new or RolloutStatus(new) in ROLLOUT_TRANSITIONS[RolloutStatus(current)]


def ddi_action_status(
    current: str, execution: str, finished: str, cancel: bool, before_cancel: str | None = None, installing: bool = False
) -> ActionStatus | None:
    """An action's new status for a hawkBit feedback, or None when the feedback only goes into its history.

    `cancel`: the feedback answers the cancelAction; `before_cancel`: the status the action had when canceled;
    `installing`: the client's words are about the install (rauc-hawkbit-updater and rauc-hawkbit pass RAUC's
    progress messages on, SWUpdate says "Installing Update Chunk Artifacts."), not about the download.
    """
    ex, done = DdiExecution(execution), DdiResult(finished)
    if cancel:
        if ex is DdiExecution.CANCELED or (ex is DdiExecution.CLOSED and done is not DdiResult.FAILURE):
            return A.CANCELED
        if ex is DdiExecution.REJECTED or (ex is DdiExecution.CLOSED and done is DdiResult.FAILURE):
            return ActionStatus(before_cancel) if before_cancel else A.DOWNLOADING  # the device carries on
        return None
    if ex is DdiExecution.CLOSED:
        return A.FAILURE if done is DdiResult.FAILURE else A.SUCCESS  # closed + none counts as success
    if ex is DdiExecution.CANCELED:
        return A.CANCELED
    if ex is DdiExecution.DOWNLOAD:
        return A.DOWNLOADING
    if ex is DdiExecution.DOWNLOADED:
        return A.DOWNLOADED
    if ex in (DdiExecution.PROCEEDING, DdiExecution.RESUMED):
        if done is DdiResult.FAILURE:
            return None  # an error along the way; the final closed/failure decides
        if installing and current in (A.SCHEDULED, A.DOWNLOADING, A.DOWNLOADED):
            return A.INSTALLING
        return A.DOWNLOADING if current == A.SCHEDULED else None
    if ex is DdiExecution.SCHEDULED:
        return A.SCHEDULED if current == A.SCHEDULED else None
    return None  # rejected: the device declined for now; the action stays open
