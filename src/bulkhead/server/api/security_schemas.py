"""Wire models of security updates by policy: marks, policies, postponements, a device's pending security update."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from .fields import Name, Text
from .wire import Out, Time

__all__ = [
    "MarkIn",
    "MarkOut",
    "PendingOut",
    "PolicyIn",
    "PolicyListOut",
    "PolicyOut",
    "PostponeIn",
    "PostponementOut",
    "RunOut",
]

Mode = Literal["automatic", "opt_out"]


class MarkIn(BaseModel):
    """Mark a release a security update."""

    model_config = ConfigDict(extra="forbid")
    available_at: dt.datetime | None = Field(
        None, description="since when the fix is available (with offset; default: now); the window counts from it"
    )
    reason: Text | None = Field(None, description="why, e.g. the CVEs it fixes")


class RolloutRef(Out):
    """The rollout that installs a security release (made by the policy once a device is due)."""

    id: int
    name: str
    status: str


class MarkOut(Out):
    """A release marked a security update, and the rollout the policy installs it with (made once a device is due)."""

    release_id: int
    compatible: str
    version: str
    available_at: Time
    marked_by: str
    reason: str | None
    rollout: RolloutRef | None


class PolicyIn(BaseModel):
    """A security-update policy: automatic within window_days of availability, or opt_out (never automatically)."""

    model_config = ConfigDict(extra="forbid")
    mode: Mode = "automatic"
    window_days: int | None = Field(None, ge=0, le=365, description="default: the server's (7 days)")


class PolicyOut(Out):
    """A security-update policy of the tenant (its default), a group or a device."""

    scope: Literal["tenant", "group", "device"]
    group: str | None
    device: str | None
    mode: Mode
    window_days: int
    updated_by: str
    updated_at: Time


class EffectivePolicy(Out):
    """The policy that holds and where it comes from."""

    mode: Mode
    window_days: int
    source: str = Field(description="device, group NAME, or tenant")


class PolicyListOut(Out):
    """The tenant's default policy, the postponement limit, and every group's and device's own policy."""

    default: EffectivePolicy
    max_postpone_days: int
    policies: list[PolicyOut]


class PostponeIn(BaseModel):
    """Postpone a security release for one device or one group: days more, or until a time; reason required."""

    model_config = ConfigDict(extra="forbid")
    release_id: int = Field(ge=1, le=2**31 - 1)
    device: Name | None = None
    group: Name | None = None
    days: int | None = Field(None, ge=1, le=365)
    until: dt.datetime | None = Field(None, description="with offset")
    reason: Text = Field(min_length=1, description="why (audited)")


class PostponementOut(Out):
    """A security release postponed for a group or a device until a time (audited with who and why)."""

    id: int
    release_id: int
    version: str | None
    group: str | None
    device: str | None
    until: Time
    reason: str
    postponed_by: str
    created_at: Time
    updated_at: Time


class Pending(Out):
    """A device's pending security update and its state at the server's clock."""

    release_id: int
    version: str
    available_at: Time
    due_at: Time
    postponed_until: Time | None
    installs_at: Time | None = Field(description="null: the device's policy is opt_out")
    state: Literal["due", "waiting", "postponed", "opt_out"]
    policy: EffectivePolicy


class PendingOut(Out):
    """A device and its pending security update (null: none)."""

    device: str
    os_version: str | None
    pending: Pending | None


class RunOut(Out):
    """What one run of the policy did: devices given their security update, per rollout."""

    placed: int = Field(description="devices given their security update now")
    rollouts: dict[str, int]
