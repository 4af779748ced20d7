"""Alerts: a tenant's (or one group's) rules over devices' health, firing once per episode into the notifications.

A rule is a metric above a threshold (`disk_percent`, `memory_percent`, `cpu_percent`, `temperature_c`, judged on
each sample as it arrives), a device not heard from for longer than N minutes (`offline_minutes`, judged every
minute by the metrics job), or a device event (`rolled_back`, `security_event`: each one fires, through the
notification job that reads those events, once per rule and event). A threshold rule that starts to hold for a
device writes the audit event `alert.fired` (and keeps an `alert_states` row); when it stops holding,
`alert.resolved`. The notification job turns `alert.fired`
into deliveries for subscriptions to `device.alert` (webhook or e-mail); event rules add a group's scope to what the
tenant-wide kinds `device.rolled_back` and `device.security_event` deliver.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any, NamedTuple

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from bulkhead.protocol import DeviceStatus

from ..db import Database
from ..errors import Conflict, Invalid, NotFound
from ..metric_models import AlertRule, AlertState
from ..models import Device, DeviceGroup, utcnow
from . import audit
from .auth import Principal
from .fleet_names import NAME, NAME_RULE

__all__ = ["EVENTS", "METRICS", "AlertService", "EventRules", "event_rules", "judged", "matching"]

METRICS = ("disk_percent", "memory_percent", "cpu_percent", "temperature_c", "offline_minutes", "rolled_back", "security_event")
EVENTS = ("rolled_back", "security_event")  # each such device event fires (the notification job: services/notifications.py)
EventRules = dict[tuple[int, str], list[AlertRule]]  # (tenant, event) -> its rules
FIRED, RESOLVED = "alert.fired", "alert.resolved"


def judged(sample: dict[str, Any]) -> dict[str, float]:
    """The figures rules look at, from one sample (those it has)."""
    out: dict[str, float] = {}
    for name, used, total in (("disk_percent", "disk_used", "disk_total"), ("memory_percent", "memory_used", "memory_total")):
        if sample.get(used) is not None and sample.get(total):
            out[name] = round(100.0 * sample[used] / sample[total], 2)
    for name in ("cpu_percent", "temperature_c"):
        if sample.get(name) is not None:
            out[name] = float(sample[name])
    return out


def event_rules(s: Session) -> EventRules:
    """Every tenant's event rules, by tenant and event."""
    rules: EventRules = {}
    for r in s.scalars(select(AlertRule).where(AlertRule.metric.in_(EVENTS))):
        rules.setdefault((r.tenant_id, r.metric), []).append(r)
    return rules


def matching(rules: EventRules, tenant_id: int, event: str, groups: list[Any] | None) -> list[AlertRule]:
    """The tenant's rules for this event that cover a device of these groups."""
    return [r for r in rules.get((tenant_id, event), []) if _applies(r, groups)]


def _rule_json(r: AlertRule) -> dict[str, Any]:
    return {
        "id": r.id, "name": r.name, "metric": r.metric, "threshold": r.threshold, "group": r.group,
        "created_by": r.created_by, "created_at": r.created_at.isoformat(),
    }  # fmt: skip


def _server(tenant_id: int) -> Principal:
    return Principal(kind="system", name="alerts", tenant_id=tenant_id)


def _applies(rule: AlertRule, groups: list[Any] | None) -> bool:
    return rule.group is None or rule.group in (groups or [])


class _Target(NamedTuple):
    id: int
    tenant_id: int
    name: str


class AlertService:
    def __init__(self, db: Database) -> None:
        self.db = db

    # -- rules ---------------------------------------------------------------------------------
    def add(self, who: Principal, name: str, metric: str, threshold: float, group: str | None) -> dict[str, Any]:
        who.require("operator")
        tid = who.require_tenant()
        if not NAME.match(name):
            raise Invalid(f"alert name {name!r}: {NAME_RULE}")
        if metric not in METRICS:
            raise Invalid(f"metric {metric!r} is not one of {', '.join(METRICS)}")
        if metric.endswith("_percent") and not 0 <= threshold <= 100:
            raise Invalid(f"a {metric} threshold is a percentage, 0 to 100")
        if metric == "offline_minutes" and threshold < 1:
            raise Invalid("an offline_minutes threshold is at least 1 minute")
        with self.db.session() as s:
            if (
                group is not None
                and s.scalar(select(DeviceGroup.id).where(DeviceGroup.tenant_id == tid, DeviceGroup.name == group)) is None
            ):
                raise NotFound(f"group '{group}' does not exist")
            if s.scalar(select(AlertRule.id).where(AlertRule.tenant_id == tid, AlertRule.name == name)) is not None:
                raise Conflict(f"alert '{name}' exists: remove it first to change it")
            rule = AlertRule(
                tenant_id=tid, name=name, metric=metric, threshold=threshold, group=group,
                created_by=f"{who.kind}:{who.name}", created_at=utcnow(),
            )  # fmt: skip
            s.add(rule)
            s.flush()
            audit.record(s, who, "alert.rule_add", name, metric=metric, threshold=threshold, group=group)
            return _rule_json(rule)

    def rules(self, who: Principal) -> list[dict[str, Any]]:
        who.require("viewer")
        with self.db.read() as s:
            q = select(AlertRule).where(AlertRule.tenant_id == who.require_tenant()).order_by(AlertRule.name)
            return [_rule_json(r) for r in s.scalars(q)]

    def remove(self, who: Principal, name: str) -> None:
        who.require("operator")
        with self.db.session() as s:
            rule = s.scalar(select(AlertRule).where(AlertRule.tenant_id == who.require_tenant(), AlertRule.name == name))
            if rule is None:
                raise NotFound(f"alert '{name}' does not exist")
            s.execute(delete(AlertState).where(AlertState.rule_id == rule.id))
            s.delete(rule)
            audit.record(s, who, "alert.rule_remove", name)

    def firing(self, who: Principal) -> list[dict[str, Any]]:
        """What fires now in the tenant: rule, device, since when, the value that crossed."""
        who.require("viewer")
        with self.db.read() as s:
            q = (
                select(AlertState, AlertRule, Device.name)
                .join(AlertRule, AlertRule.id == AlertState.rule_id)
                .join(Device, Device.id == AlertState.device_id)
                .where(AlertState.tenant_id == who.require_tenant())
                .order_by(AlertState.since.desc())
            )
            return [
                {
                    "alert": r.name,
                    "metric": r.metric,
                    "threshold": r.threshold,
                    "device": name,
                    "since": st.since.isoformat(),
                    "value": st.value,
                }
                for st, r, name in s.execute(q)
            ]

    # -- judging -------------------------------------------------------------------------------
    def judge_sample(self, s: Session, dev: Device, figures: dict[str, float], at: dt.datetime) -> None:
        """The device's newest sample against the tenant's metric rules (in the ingesting transaction)."""
        rules = [r for r in s.scalars(select(AlertRule).where(AlertRule.tenant_id == dev.tenant_id)) if r.metric in figures]
        target = _Target(dev.id, dev.tenant_id, dev.name)
        self._judge(s, target, [(r, figures[r.metric]) for r in rules if _applies(r, dev.groups)], at)

    def judge_offline(self, now: dt.datetime | None = None) -> int:
        """Every offline rule against its devices' last contact (only the devices past its threshold, and those it
        fires for, are read); the alerts that fired in this pass."""
        now = now or utcnow()
        fired = 0
        with self.db.session() as s:
            for rule in list(s.scalars(select(AlertRule).where(AlertRule.metric == "offline_minutes"))):
                cutoff = now - dt.timedelta(minutes=rule.threshold)
                cols = (Device.id, Device.tenant_id, Device.name, Device.groups, Device.last_seen, Device.created_at)
                silent = select(*cols).where(
                    Device.tenant_id == rule.tenant_id,
                    Device.status == DeviceStatus.ACTIVE,
                    Device.enrolled_with.is_not(None),
                    func.coalesce(Device.last_seen, Device.created_at) < cutoff,
                )
                back = select(*cols).join(AlertState, AlertState.device_id == Device.id).where(AlertState.rule_id == rule.id)
                rows = {r[0]: r for q in (silent, back) for r in s.execute(q)}
                for dev_id, tid, name, groups, last_seen, created_at in rows.values():
                    if _applies(rule, groups):
                        minutes = round((now - (last_seen or created_at)).total_seconds() / 60, 1)
                        fired += self._judge(s, _Target(dev_id, tid, name), [(rule, minutes)], now)
        return fired

    def _judge(self, s: Session, dev: _Target, checks: Iterable[tuple[AlertRule, float]], at: dt.datetime) -> int:
        fired = 0
        for rule, value in checks:
            state = s.get(AlertState, (rule.id, dev.id))
            if value > rule.threshold and state is None:
                s.add(AlertState(rule_id=rule.id, device_id=dev.id, tenant_id=dev.tenant_id, since=at, value=value))
                audit.record(
                    s, _server(dev.tenant_id), FIRED, dev.name, alert=rule.name, metric=rule.metric,
                    threshold=rule.threshold, value=value, group=rule.group,
                )  # fmt: skip
                fired += 1
            elif value <= rule.threshold and state is not None:
                s.delete(state)
                audit.record(s, _server(dev.tenant_id), RESOLVED, dev.name, alert=rule.name, metric=rule.metric, value=value)
        return fired
