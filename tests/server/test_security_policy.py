"""Security updates by policy over a real database of each kind, with an injectable clock (no sleeping): a security
release becomes a due device's desired OS release (the answer its agent polls) within its window; a postponed device
gets it only when the postponement ends; opt_out devices never automatically; feature releases are left to rollouts;
postponing past the limit is refused and changes nothing; the job's statements do not grow with the fleet."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, func, select

from bulkhead.server.db import Database
from bulkhead.server.errors import Conflict, Invalid, NotFound
from bulkhead.server.jobs import Jobs
from bulkhead.server.models import Action, AuditEvent, Device, DeviceGroup, Release, Rollout, Tenant
from bulkhead.server.security_models import SecurityPostponement
from bulkhead.server.services.auth import Principal
from bulkhead.server.services.devices import DeviceService
from bulkhead.server.services.rollouts import RolloutService
from bulkhead.server.services.security import SecurityService
from bulkhead.server.settings import Settings

T0 = dt.datetime(2027, 3, 1, 9, 0, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)
GW = "lab-gw"


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> dt.datetime:
        return self.now


class Env:
    def __init__(self, db: Database) -> None:
        self.db, self.clock = db, Clock()
        self.rollouts = RolloutService(db)
        self.sec = SecurityService(
            db, window_days=7, max_postpone_days=30, clock=self.clock, on_rollout=lambda rid, now: self.rollouts.advance(rid, now)
        )
        self.devices = DeviceService(db, b"k" * 32)
        with db.session() as s:
            t = Tenant(name="acme")
            s.add(t)
            s.flush()
            self.tid = t.id
            s.add_all([DeviceGroup(tenant_id=t.id, name=g, desired={}) for g in ("field", "lab")])
            self.rel = {v: self._release(s, v) for v in ("1.0", "1.1", "1.2")}
        self.op = Principal(kind="user", name="olga", tenant_id=self.tid, tenant="acme", role="operator")

    def _release(self, s: Any, version: str) -> int:
        r = Release(
            tenant_id=self.tid, compatible=GW, version=version, format="plain", sha256=version.ljust(64, "0"), size=1, info={}
        )
        s.add(r)
        s.flush()
        return r.id

    def device(self, name: str, groups: list[str], os_version: str = "1.0") -> int:
        with self.db.session() as s:
            d = Device(tenant_id=self.tid, name=name, compatible=GW, status="active", groups=groups, tags=[], attributes={},
                       os_version=os_version, desired={}, desired_release_id=self.rel[os_version])  # fmt: skip
            s.add(d)
            s.flush()
            return d.id

    def desired(self, name: str) -> str | None:
        """The OS release version the device's state answer names (what its agent would fetch)."""
        with self.db.session() as s:
            dev_id = s.scalar(select(Device.id).where(Device.name == name))
        _dev, rel, _ = self.devices.own_state(Principal("device", name, self.tid, device_id=dev_id))
        return rel.version if rel is not None else None

    def run(self) -> int:
        return sum(self.sec.run(self.clock.now).values())


@pytest.fixture
def env(db: Database) -> Env:
    return Env(db)


def test_a_security_release_installs_within_its_window_and_a_postponed_device_when_its_postponement_ends(env: Env) -> None:
    for name in ("a", "b"):
        env.device(name, ["field"])
    env.device("c", ["lab"])
    env.sec.mark(env.op, env.rel["1.1"], reason="CVE-2027-0001")
    env.sec.postpone(env.op, env.rel["1.1"], "b", None, 10, None, "line stop until the 20th")

    env.clock.now = T0 + 7 * DAY - dt.timedelta(minutes=1)  # inside the window: nothing yet
    assert env.run() == 0 and env.desired("a") == "1.0"
    env.clock.now = T0 + 7 * DAY  # due
    assert env.run() == 2  # a and c; b is postponed
    assert (env.desired("a"), env.desired("b"), env.desired("c")) == ("1.1", "1.0", "1.1")
    assert env.run() == 0  # idempotent: placed devices are not placed again
    with env.db.session() as s:
        r = s.scalar(select(Rollout).where(Rollout.release_id == env.rel["1.1"]))
        assert r is not None and r.created_by == "system:security-policy" and r.status == "running"

    env.clock.now = T0 + 17 * DAY - dt.timedelta(minutes=1)
    assert env.run() == 0 and env.desired("b") == "1.0"
    env.clock.now = T0 + 17 * DAY  # the postponement ends: b installs
    assert env.run() == 1 and env.desired("b") == "1.1"
    pending = env.sec.device_status(env.op, "b")["pending"]
    assert pending["state"] == "due" and pending["postponed_until"] == (T0 + 17 * DAY).isoformat()


def test_opt_out_devices_and_feature_releases_are_never_installed_automatically(env: Env) -> None:
    env.device("a", ["field"])
    env.device("b", ["lab"])
    env.device("c", ["lab"])
    env.sec.set_policy(env.op, "group", "lab", "opt_out", None)
    env.sec.set_policy(env.op, "device", "c", "automatic", 2)  # a device's own policy wins over its group's
    env.clock.now = T0 + 400 * DAY
    assert env.run() == 0  # 1.1 and 1.2 are feature releases: the owner's rollouts decide
    assert env.desired("a") == "1.0"

    env.sec.mark(env.op, env.rel["1.2"], available_at=T0)
    assert env.run() == 2
    assert (env.desired("a"), env.desired("b"), env.desired("c")) == ("1.2", "1.0", "1.2")
    assert env.sec.device_status(env.op, "b")["pending"]["state"] == "opt_out"
    assert env.sec.device_status(env.op, "b")["pending"]["installs_at"] is None


def test_postponing_past_the_limit_and_bad_input_are_refused_and_change_nothing(env: Env) -> None:
    env.device("a", ["field"])
    rid = env.rel["1.1"]
    with pytest.raises(Conflict, match="not a security update"):
        env.sec.postpone(env.op, rid, "a", None, 5, None, "why")
    env.sec.mark(env.op, rid)
    env.sec.postpone(env.op, rid, None, "field", 20, None, "harvest season")
    before = _snapshot(env)
    with pytest.raises(Conflict, match="at most 30 days in total"):
        env.sec.postpone(env.op, rid, None, "field", 11, None, "more")
    bad: list[tuple[dict[str, Any], type[Exception], str]] = [
        ({"device": "a", "group": "field", "days": 1, "reason": "x"}, Invalid, "either device or group"),
        ({"device": "a", "days": 1, "reason": " "}, Invalid, "say why"),
        ({"device": "nope", "days": 1, "reason": "x"}, NotFound, "device 'nope' does not exist"),
        ({"group": "nope", "days": 1, "reason": "x"}, NotFound, "group 'nope' does not exist"),
        ({"device": "a", "days": 0, "reason": "x"}, Invalid, "at least 1"),
        ({"device": "a", "until": "2027-03-05T00:00:00", "reason": "x"}, Invalid, "offset"),
    ]
    for body, exc, match in bad:
        with pytest.raises(exc, match=match):
            env.sec.postpone(
                env.op, rid, body.get("device"), body.get("group"), body.get("days"), body.get("until"), body["reason"]
            )
    with pytest.raises(Invalid, match="mode must be one of"):
        env.sec.set_policy(env.op, "group", "field", "manual", 3)
    viewer = Principal(kind="user", name="v", tenant_id=env.tid, tenant="acme", role="viewer")
    with pytest.raises(Exception, match="needs role 'operator'"):
        env.sec.postpone(viewer, rid, "a", None, 1, None, "x")
    assert _snapshot(env) == before


def _snapshot(env: Env) -> tuple[Any, ...]:
    with env.db.session() as s:
        posts = [(p.key, p.until) for p in s.scalars(select(SecurityPostponement).order_by(SecurityPostponement.id))]
        audits = s.scalar(select(func.count()).select_from(AuditEvent))
    return posts, audits, env.sec.list_policies(env.op)["policies"]


def test_a_postponement_withdraws_actions_not_started_and_is_audited_with_who_and_why(env: Env) -> None:
    env.device("a", ["field"])
    env.sec.mark(env.op, env.rel["1.1"], available_at=T0 - 10 * DAY)
    assert env.run() == 1 and env.desired("a") == "1.1"
    out = env.sec.postpone(env.op, env.rel["1.1"], "a", None, 3, None, "customer demo")
    assert out["withdrawn"] == 1 and env.desired("a") == "1.0"
    with env.db.session() as s:
        ev = s.scalar(select(AuditEvent).where(AuditEvent.action == "security.postpone"))
        assert ev is not None and ev.actor == "user:olga" and ev.details["reason"] == "customer demo"
    [p] = env.sec.list_postponements(env.op, None)
    env.sec.end_postponement(env.op, p["id"])  # ended by hand: it installs at the next run
    assert env.run() == 1 and env.desired("a") == "1.1"


def test_the_job_is_set_based_whatever_the_fleet_size(env: Env) -> None:
    """Statements per run do not grow with the devices: 30 devices in 3 buckets cost what 3 devices do."""
    env.sec.mark(env.op, env.rel["1.1"], available_at=T0 - 10 * DAY)

    def statements() -> int:
        count = [0]

        def seen(*_a: Any) -> None:
            count[0] += 1

        event.listen(env.db.engine, "before_cursor_execute", seen)
        try:
            env.run()
        finally:
            event.remove(env.db.engine, "before_cursor_execute", seen)
        return count[0]

    for i, g in enumerate(("field", "lab", "field")):
        env.device(f"s{i}", [g] if i < 2 else [])
    small = statements()
    for i in range(30):
        env.device(f"m{i}", [["field"], ["lab"], []][i % 3])
    large = statements()
    assert large <= small + 2, (small, large)
    with env.db.session() as s:
        assert s.scalar(select(func.count()).select_from(Action)) == 33


def test_the_periodic_job_installs_and_unmarking_cancels_the_policy_rollout(env: Env, tmp_path: Path) -> None:
    """The server's job queue runs the policy every minute (jobs.py); taking the mark away cancels its rollout."""
    jobs = Jobs(Settings(data_dir=tmp_path), env.rollouts, security=env.sec)
    assert jobs.security_task.task_class().validate_datetime(dt.datetime(2027, 3, 1, 9, 1))
    env.device("a", ["field"])
    env.device("b", ["field"])
    env.sec.mark(env.op, env.rel["1.1"], available_at=dt.datetime.now(dt.UTC) - 8 * DAY)
    env.clock.now = dt.datetime.now(dt.UTC)
    jobs.security_task.call_local()  # what the consumer runs
    assert env.desired("a") == "1.1" and env.desired("b") == "1.1"

    env.sec.unmark(env.op, env.rel["1.1"], env.rollouts)
    assert env.desired("a") == "1.0"  # canceled before the device started
    with env.db.session() as s:
        r = s.scalar(select(Rollout).where(Rollout.release_id == env.rel["1.1"]))
        assert r is not None and r.status == "canceled"
    assert env.sec.list_releases(env.op) == [] and env.run() == 0


def test_a_device_the_owners_rollout_already_updates_is_not_given_the_release_twice(env: Env) -> None:
    env.device("a", ["field"])
    env.device("b", ["lab"])
    env.rollouts.create(env.op, {"name": "owner", "release_id": env.rel["1.1"], "target": {"groups": ["lab"]}})
    env.sec.mark(env.op, env.rel["1.1"], available_at=T0 - 8 * DAY)
    assert env.run() == 1  # only a: b has the owner's open action for 1.1
    with env.db.session() as s:
        held = s.execute(select(Device.name, func.count()).join(Action, Action.device_id == Device.id).group_by(Device.name))
        assert dict(held.all()) == {"a": 1, "b": 1}
