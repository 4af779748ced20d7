"""What security-update decisions read from the database: a tenant's policies, security releases and postponements
(all set by people, so few rows), and the rollout the policy made for a release."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from ..models import Release, Rollout
from ..security_models import SecurityMark, SecurityPolicyRow, SecurityPostponement
from .security_plan import (
    ROLLOUT_OWNER,
    Decision,
    Policy,
    SecurityRelease,
    decide,
    effective_policy,
    group_postponement,
    pick_release,
)

__all__ = ["TenantView", "load_view", "policy_rollout"]


@dataclass
class TenantView:
    """What a tenant's decisions read: its policies, security releases and postponements (all set by people)."""

    default: Policy
    groups: dict[str, Policy] = field(default_factory=dict)
    devices: dict[int, Policy] = field(default_factory=dict)
    releases: dict[str, list[SecurityRelease]] = field(default_factory=dict)  # by compatible
    group_until: dict[int, dict[str, dt.datetime]] = field(default_factory=dict)  # release id -> group -> until
    device_until: dict[int, dict[int, dt.datetime]] = field(default_factory=dict)  # release id -> device id -> until

    def decide(
        self,
        compatible: str,
        device_id: int | None,
        groups: list[str],
        running: str | None,
        desired: str | None,
        now: dt.datetime,
    ) -> Decision | None:
        rel = pick_release(self.releases.get(compatible, []), running, desired)
        if rel is None:
            return None
        policy = effective_policy(self.devices.get(device_id) if device_id else None, groups, self.groups, self.default)
        own = self.device_until.get(rel.id, {}).get(device_id) if device_id else None
        until = own if own is not None else group_postponement(groups, self.group_until.get(rel.id, {}))
        return decide(rel, policy, until, now)

    def special(self) -> set[int]:
        """Devices decided one by one: those with a policy or a postponement of their own."""
        ids = set(self.devices)
        for per in self.device_until.values():
            ids |= set(per)
        return ids


def load_view(s: Session, tid: int, window_days: int, compatible: str | None = None, device_id: int | None = None) -> TenantView:
    """What decisions read; for one device (`device_id`: its state answer), only its own rows of devices' policies
    and postponements, so a poll reads a few rows however many devices have their own."""
    t = TenantView(Policy("automatic", window_days, "tenant"))
    q = select(SecurityMark, Release.compatible, Release.version).join(Release, Release.id == SecurityMark.release_id)
    q = q.where(SecurityMark.tenant_id == tid)
    if compatible is not None:
        q = q.where(Release.compatible == compatible)
    for m, comp, version in s.execute(q.order_by(SecurityMark.release_id)):
        t.releases.setdefault(comp, []).append(SecurityRelease(m.release_id, version, m.available_at))
    if device_id is not None and not t.releases:
        return t  # a device's poll with no security release of its kind: nothing more to read (the common case)
    policies = select(SecurityPolicyRow).where(SecurityPolicyRow.tenant_id == tid)
    postponements = select(SecurityPostponement).where(SecurityPostponement.tenant_id == tid)
    if device_id is not None:
        policies = policies.where(or_(SecurityPolicyRow.device_id.is_(None), SecurityPolicyRow.device_id == device_id))
        postponements = postponements.where(
            or_(SecurityPostponement.device_id.is_(None), SecurityPostponement.device_id == device_id)
        )
    for p in s.scalars(policies):
        if p.key == "tenant":
            t.default = Policy(p.mode, p.window_days, "tenant")
        elif p.group_name is not None:
            t.groups[p.group_name] = Policy(p.mode, p.window_days, f"group {p.group_name}")
        elif p.device_id is not None:
            t.devices[p.device_id] = Policy(p.mode, p.window_days, "device")
    for pp in s.scalars(postponements):
        if pp.group_name is not None:
            t.group_until.setdefault(pp.release_id, {})[pp.group_name] = pp.until
        elif pp.device_id is not None:
            t.device_until.setdefault(pp.release_id, {})[pp.device_id] = pp.until
    return t


def policy_rollout(s: Session, tid: int, release_id: int) -> Rollout | None:
    """The rollout the policy made for a security release, if it made one."""
    q = select(Rollout).where(Rollout.tenant_id == tid, Rollout.release_id == release_id, Rollout.created_by == ROLLOUT_OWNER)
    return s.scalar(q)
