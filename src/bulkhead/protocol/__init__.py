"""What the agent, the server and the hawkBit DDI layer share: statuses, one transition table, wire constants.

Standard library only: the agent imports it on devices.
"""

from .limits import MAX_EVENT_DETAILS_BYTES, bounded_details
from .security import INTEGRITY_EVENTS, MAX_SECURITY_MESSAGE, SecurityEvent
from .statuses import (
    ACTION_TRANSITIONS,
    AGENT_PHASE_ACTION,
    APP_PHASE_ACTION,
    FAILED,
    OPEN,
    ROLLOUT_TRANSITIONS,
    TERMINAL,
    ActionStatus,
    DdiExecution,
    DdiResult,
    DeviceStatus,
    EventKind,
    RolloutStatus,
    UpdatePhase,
    action_may,
    ddi_action_status,
    rollout_may,
)

__all__ = [
    "ACTION_TRANSITIONS",
    "AGENT_PHASE_ACTION",
    "APP_PHASE_ACTION",
    "FAILED",
    "INTEGRITY_EVENTS",
    "MAX_EVENT_DETAILS_BYTES",
    "MAX_SECURITY_MESSAGE",
    "OPEN",
    "ROLLOUT_TRANSITIONS",
    "TERMINAL",
    "ActionStatus",
    "DdiExecution",
    "DdiResult",
    "DeviceStatus",
    "EventKind",
    "RolloutStatus",
    "SecurityEvent",
    "UpdatePhase",
    "action_may",
    "bounded_details",
    "ddi_action_status",
    "rollout_may",
]
