"""Security updates by policy, pure: which security release a device is due, from when, and whether a postponement holds.

No clock here: every function that depends on the time takes `now`. The shell (services/security.py) reads the
fleet in buckets of devices that share what the decision depends on (groups, OS version, desired release) and asks
these functions once per bucket, never once per device.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import Conflict, Invalid
from .versions import compare_versions

__all__ = [
    "DEFAULT_WINDOW_DAYS",
    "MAX_WINDOW_DAYS",
    "MODES",
    "ROLLOUT_OWNER",
    "Decision",
    "Policy",
    "SecurityRelease",
    "decide",
    "due_at",
    "effective_policy",
    "group_postponement",
    "parse_policy",
    "pick_release",
    "postpone_until",
]

MODES = ("automatic", "opt_out")
DEFAULT_WINDOW_DAYS = 7
MAX_WINDOW_DAYS = 365
# created_by of the rollouts this policy makes (one per security release): the policy, not a target, places their devices.
ROLLOUT_OWNER = "system:security-policy"


@dataclass(frozen=True)
class Policy:
    """How security updates reach a device: automatically within `window_days` of availability, or not (opt_out)."""

    mode: str
    window_days: int
    source: str  # "device", "group NAME" or "tenant"

    def json(self) -> dict[str, Any]:
        return {"mode": self.mode, "window_days": self.window_days, "source": self.source}


@dataclass(frozen=True)
class SecurityRelease:
    id: int
    version: str
    available_at: dt.datetime


@dataclass(frozen=True)
class Decision:
    """One device's pending security update: its release, due date, postponement, and the state at `now`:
    due (it installs now), waiting (its window is open), postponed, or opt_out (never automatically)."""

    release: SecurityRelease
    policy: Policy
    due_at: dt.datetime
    postponed_until: dt.datetime | None
    state: str

    @property
    def install_at(self) -> dt.datetime | None:
        if self.policy.mode == "opt_out":
            return None
        return max(self.due_at, self.postponed_until or self.due_at)

    def json(self) -> dict[str, Any]:
        install_at = self.install_at
        return {
            "release_id": self.release.id,
            "version": self.release.version,
            "available_at": self.release.available_at.isoformat(),
            "due_at": self.due_at.isoformat(),
            "postponed_until": self.postponed_until.isoformat() if self.postponed_until else None,
            "installs_at": install_at.isoformat() if install_at else None,
            "state": self.state,
            "policy": self.policy.json(),
        }


def parse_policy(mode: Any, window_days: Any, source: str) -> Policy:
    """A policy from API input: mode automatic or opt_out, window 0-365 whole days."""
    if mode not in MODES:
        raise Invalid(f"mode must be one of {', '.join(MODES)} (got {mode!r})")
    if window_days is None:
        window_days = DEFAULT_WINDOW_DAYS
    if not isinstance(window_days, int) or isinstance(window_days, bool) or not 0 <= window_days <= MAX_WINDOW_DAYS:
        raise Invalid(f"window_days must be a whole number of days from 0 to {MAX_WINDOW_DAYS} (got {window_days!r})")
    return Policy(str(mode), window_days, source)


def effective_policy(
    device: Policy | None, groups: Sequence[str], group_policies: Mapping[str, Policy], default: Policy
) -> Policy:
    """The device's own policy, else that of the last of its groups that has one (later groups win, as in its desired
    state), else the tenant's default."""
    if device is not None:
        return device
    for name in reversed(groups):
        if name in group_policies:
            return group_policies[name]
    return default


def pick_release(releases: Sequence[SecurityRelease], running: str | None, desired: str | None = None) -> SecurityRelease | None:
    """The newest security release newer than the version the device runs; None when the device's version is not known
    yet or when the release its owner chose for it is at least as new (releases are taken as cumulative)."""
    if running is None:
        return None
    newer = [r for r in releases if compare_versions(r.version, running) > 0]
    if not newer:
        return None
    best = newer[0]
    for r in newer[1:]:
        if compare_versions(r.version, best.version) > 0:
            best = r
    if desired is not None and compare_versions(desired, best.version) >= 0:
        return None
    return best


def due_at(release: SecurityRelease, policy: Policy) -> dt.datetime:
    """When the release must be installed: its availability plus the policy's window."""
    return release.available_at + dt.timedelta(days=policy.window_days)


def group_postponement(groups: Sequence[str], until: Mapping[str, dt.datetime]) -> dt.datetime | None:
    """The latest postponement any of the device's groups holds for one release (None: none)."""
    found = [until[g] for g in groups if g in until]
    return max(found) if found else None


def decide(release: SecurityRelease, policy: Policy, postponed_until: dt.datetime | None, now: dt.datetime) -> Decision:
    """Where a device stands with one security release at `now` (its own postponement, else its groups', is given)."""
    due = due_at(release, policy)
    if policy.mode == "opt_out":
        state = "opt_out"
    elif postponed_until is not None and postponed_until > now and postponed_until > due:
        state = "postponed"
    elif due <= now:
        state = "due"
    else:
        state = "waiting"
    return Decision(release, policy, due, postponed_until, state)


def postpone_until(
    due: dt.datetime,
    current: dt.datetime | None,
    days: Any,
    until: dt.datetime | None,
    max_days: int,
    now: dt.datetime,
) -> dt.datetime:
    """The end of a postponement asked for: `until`, or `days` more after the current one (or after the due date).

    A postponement lasts at most `max_days` past the due date in total, however many times it is extended; past that
    it is refused (Conflict, saying the limit and the latest allowed end)."""
    if (days is None) == (until is None):
        raise Invalid("give either days (to postpone by) or until (an ISO 8601 time with offset), not both")
    if days is not None:
        if not isinstance(days, int) or isinstance(days, bool) or days < 1:
            raise Invalid(f"days must be a whole number of days, at least 1 (got {days!r})")
        base = max(current or due, due, now)
        end = base + dt.timedelta(days=days)
    else:
        assert until is not None
        end = until
    if end <= now:
        raise Invalid(f"the postponement must end in the future; it would end at {end.isoformat()}")
    limit = due + dt.timedelta(days=max_days)
    if end > limit:
        raise Conflict(
            f"a security update may be postponed by at most {max_days} days in total past its due date "
            f"{due.isoformat()} (BULKHEAD_SECURITY_MAX_POSTPONE_DAYS): until {limit.isoformat()} at the latest, "
            f"not {end.isoformat()}"
        )
    return end
