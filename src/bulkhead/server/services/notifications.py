"""Notifications: per-tenant subscriptions, the job that turns new events into deliveries, and sending them.

The job (`run`, every minute from jobs.py) reads what already records each event, so no request path does more work
and nothing is lost on a crash: audit events `vuln.kev_exploited` and `rollout.pause`, device events with phase
`rolled_back` and device events of kind `security` (security_events.py) are read past a cursor per table (the cursor
stays five minutes behind, and an event reaches a subscription once: deliveries are unique per subscription and event
key); Article 14 case deadlines and the feeds' state are looked at on every pass. A delivery is tried at once and,
after a connection error, an HTTP 5xx or an SMTP 4xx, again with exponential backoff, MAX_ATTEMPTS times in all; every
attempt is logged.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import secrets
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import httpx
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from bulkhead.cra.article14 import CaseKind, CaseState, deadlines, overdue

from ..cra_models import CraCase
from ..cursors import locked_cursor
from ..db import Database
from ..errors import Invalid, NotFound
from ..metric_models import AlertRule
from ..models import AuditEvent, Device, DeviceEvent, Release, Tenant
from ..notify_models import NotifyAttempt, NotifyCursor, NotifyDelivery, NotifySubscription
from . import audit
from .alerts import FIRED, EventRules, event_rules, matching
from .auth import Principal
from .clock import Clock, system_clock
from .notify_send import Outcome, SmtpConfig, send_email, send_webhook
from .security_events import INTEGRITY, is_security
from .vuln_kev import KEV_EVENT

__all__ = ["EVENT_KINDS", "MAX_ATTEMPTS", "NotificationService"]

log = logging.getLogger(__name__)

EVENT_KINDS = (
    "cra.case.deadline", "vuln.kev_exploited", "rollout.paused", "device.rolled_back", "feed.failing",
    "device.integrity_failure", "device.security_event", "device.alert",
)  # fmt: skip
# A device's security event (security_events.py) reaches a subscription once, whichever of these it chose.
_SECURITY_KINDS = ("device.integrity_failure", "device.security_event")
MAX_ATTEMPTS = 5
BACKOFF = dt.timedelta(seconds=30)  # before the 2nd attempt; doubled before each next one (30 s, 1, 2, 4 min)
LEASE = dt.timedelta(minutes=5)  # a delivery being sent is not picked up by another process for this long
CURSOR_LAG = dt.timedelta(minutes=5)  # rows younger than this are read again next pass (late commits are not missed)
DEADLINE_WARNING = dt.timedelta(hours=12)
BATCH = 1000
_AUDIT_KINDS = {KEV_EVENT: "vuln.kev_exploited", "rollout.pause": "rollout.paused", FIRED: "device.alert"}
_EMAIL = re.compile(r"^[^@\s<>,;\"]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")
_FAR = dt.datetime.max.replace(tzinfo=dt.UTC)
FeedStatus = Callable[[], list[dict[str, Any]]]


def _iso(t: dt.datetime | None) -> str | None:
    return t.isoformat() if t else None


def _http_url(target: str) -> bool:
    try:
        parts = urlsplit(target)
        httpx.URL(target)  # what the sender will parse
        return parts.scheme in ("http", "https") and bool(parts.hostname) and parts.port != 0
    except (ValueError, httpx.InvalidURL):
        return False


def _has(s: Session, sub_id: int, key: str) -> bool:
    q = select(NotifyDelivery.id).where(NotifyDelivery.subscription_id == sub_id, NotifyDelivery.event_key == key)
    return s.scalar(q) is not None


class NotificationService:
    def __init__(
        self,
        db: Database,
        smtp: SmtpConfig | None = None,
        feed_status: FeedStatus | None = None,
        clock: Clock = system_clock,
    ) -> None:
        self.db, self.smtp, self.feed_status, self.clock = db, smtp, feed_status, clock

    # -- subscriptions ----------------------------------------------------------------------------------------
    def add(self, who: Principal, channel: str, target: str, events: list[str]) -> dict[str, Any]:
        """A new subscription (admins; audited). A webhook's secret is in this answer only: keep it."""
        who.require("admin")
        tid = who.require_tenant()
        target = target.strip()
        if channel == "webhook":
            if not _http_url(target):
                raise Invalid(f"webhook URL must be an http:// or https:// URL with a host, not {target!r}")
        elif channel == "email":
            if not _EMAIL.fullmatch(target) or len(target) > 320:
                raise Invalid(f"{target!r} is not an e-mail address (name@example.com)")
        else:
            raise Invalid(f"channel must be webhook or email, not {channel!r}")
        unknown = [e for e in events if e not in EVENT_KINDS]
        if unknown or not events:
            named = ", ".join(map(repr, unknown)) or "(none given)"
            raise Invalid(f"unknown event kind {named}; choose from {', '.join(EVENT_KINDS)}")
        with self.db.session() as s:
            sub = NotifySubscription(
                tenant_id=tid,
                channel=channel,
                target=target,
                secret=secrets.token_urlsafe(32) if channel == "webhook" else None,
                events=sorted(set(events)),
                created_by=f"{who.kind}:{who.name}",
                created_at=self.clock(),
            )
            s.add(sub)
            s.flush()
            audit.record(s, who, "notify.subscription.add", f"subscription {sub.id}", channel=channel, events=sub.events)
            return self._sub_json(sub) | {"secret": sub.secret}

    def list_subscriptions(self, who: Principal) -> list[dict[str, Any]]:
        who.require("operator")
        with self.db.session() as s:
            q = select(NotifySubscription).where(NotifySubscription.tenant_id == who.require_tenant())
            return [self._sub_json(x) for x in s.scalars(q.order_by(NotifySubscription.id))]

    def remove(self, who: Principal, sub_id: int) -> None:
        """Remove a subscription and its delivery log (admins; audited)."""
        who.require("admin")
        with self.db.session() as s:
            sub = self._own(s, who, sub_id)
            audit.record(s, who, "notify.subscription.remove", f"subscription {sub.id}", channel=sub.channel)
            s.delete(sub)

    def test(self, who: Principal, sub_id: int) -> dict[str, Any]:
        """Send a test event to a subscription now (admins; audited); the answer is its delivery with the attempt."""
        who.require("admin")
        now = self.clock()
        with self.db.session() as s:
            sub = self._own(s, who, sub_id)
            tenant = s.get(Tenant, sub.tenant_id)
            payload = self._payload("test", tenant.name if tenant else "", now, "a test notification", {})
            d = self._enqueue(s, sub, "test", f"test:{uuid.uuid4().hex}", payload, now)
            assert d is not None
            audit.record(s, who, "notify.subscription.test", f"subscription {sub.id}", delivery=d.uid)
            did = d.id
        self._attempt(did, now)
        return self.delivery(who, did)

    def deliveries(self, who: Principal, subscription: int | None, limit: int = 100) -> list[dict[str, Any]]:
        """The delivery log, newest first, each with its attempts (operators)."""
        who.require("operator")
        with self.db.session() as s:
            q = select(NotifyDelivery).where(NotifyDelivery.tenant_id == who.require_tenant())
            if subscription is not None:
                q = q.where(NotifyDelivery.subscription_id == subscription)
            rows = list(s.scalars(q.order_by(NotifyDelivery.id.desc()).limit(limit)))
            return [self._delivery_json(s, d) for d in rows]

    def delivery(self, who: Principal, delivery_id: int) -> dict[str, Any]:
        who.require("operator")
        with self.db.session() as s:
            d = s.get(NotifyDelivery, delivery_id)
            if d is None or d.tenant_id != who.require_tenant():
                raise NotFound(f"no delivery {delivery_id}")
            return self._delivery_json(s, d)

    # -- the job ----------------------------------------------------------------------------------------------
    def run(self) -> dict[str, int]:
        """One pass: new events into deliveries, then every delivery that is due tried. Returns the counts."""
        queued = self.collect()
        sent = self.deliver_due()
        return {"queued": queued, "attempted": sent}

    def collect(self) -> int:
        now = self.clock()
        with self.db.session() as s:
            subs: dict[tuple[int, str], list[NotifySubscription]] = {}
            for sub in s.scalars(select(NotifySubscription)):
                for kind in sub.events or []:
                    subs.setdefault((sub.tenant_id, kind), []).append(sub)
            names = {t.id: t.name for t in s.scalars(select(Tenant))} if subs else {}
            n = self._from_audit(s, subs, names, now) + self._from_device_events(s, subs, names, now)
            n += self._from_cases(s, subs, names, now) + self._from_feeds(s, subs, names, now)
            return n

    def deliver_due(self) -> int:
        now = self.clock()
        with self.db.session() as s:
            due = list(
                s.execute(
                    select(NotifyDelivery.id, NotifyDelivery.next_attempt_at)
                    .where(NotifyDelivery.state == "pending", NotifyDelivery.next_attempt_at <= now)
                    .order_by(NotifyDelivery.next_attempt_at)
                    .limit(100)
                )
            )
        sent = 0
        for did, at in due:
            try:
                sent += self._attempt(did, now, at)
            except Exception:  # one bad delivery must not stop the others; it is tried again after its lease
                log.exception("notification delivery %s", did)
        return sent

    # -- event sources ----------------------------------------------------------------------------------------
    def _fanout(
        self, s: Session, subs: dict[tuple[int, str], list[NotifySubscription]], names: dict[int, str],
        tid: int, kind: str, key: str, at: dt.datetime, now: dt.datetime, summary: str, data: dict[str, Any],
    ) -> int:  # fmt: skip
        n = 0
        for sub in subs.get((tid, kind), []):
            if sub.created_at > at:
                continue  # an event from before the subscription existed
            if self._enqueue(s, sub, kind, key, self._payload(kind, names.get(tid, ""), at, summary, data), now):
                n += 1
        return n

    def _advance(self, s: Session, cursor: NotifyCursor, model: type[AuditEvent] | type[DeviceEvent]) -> None:
        cutoff = dt.datetime.now(dt.UTC) - CURSOR_LAG  # rows' own times are the wall clock's
        top = s.scalar(select(func.max(model.id)).where(model.id > cursor.position, model.at < cutoff))
        if top is not None:
            cursor.position = int(top)

    def _from_audit(self, s: Session, subs: Any, names: dict[int, str], now: dt.datetime) -> int:
        cursor = locked_cursor(s, "audit_events")
        n = 0
        if any(k in _AUDIT_KINDS.values() for _t, k in subs):
            q = (
                select(AuditEvent)
                .where(AuditEvent.id > cursor.position, AuditEvent.action.in_(list(_AUDIT_KINDS)))
                .order_by(AuditEvent.id)
                .limit(BATCH)
            )
            for e in s.scalars(q):
                if e.tenant_id is None:
                    continue
                kind = _AUDIT_KINDS[e.action]
                if kind == "device.alert":
                    d = e.details
                    summary = (
                        f"{e.subject}: alert {d.get('alert')} fired ({d.get('metric')} {d.get('value')} > {d.get('threshold')})"
                    )
                elif kind == "rollout.paused":
                    why = e.details.get("reason")
                    summary = f"rollout {e.subject} paused" + (f": {why}" if why else f" by {e.actor}")
                else:
                    summary = f"{e.subject} is known exploited and affects {e.details.get('devices', '?')} device(s)"
                data = {"subject": e.subject, "actor": e.actor, "details": e.details}
                n += self._fanout(s, subs, names, e.tenant_id, kind, f"audit:{e.id}", e.at, now, summary, data)
        self._advance(s, cursor, AuditEvent)
        return n

    def _from_device_events(self, s: Session, subs: Any, names: dict[int, str], now: dt.datetime) -> int:
        cursor = locked_cursor(s, "device_events")
        n = 0
        rules = event_rules(s) if any(k == "device.alert" for _t, k in subs) else {}
        if any(k == "device.rolled_back" for _t, k in subs) or any(m == "rolled_back" for _t, m in rules):
            q = (
                select(DeviceEvent, Device.name, Release.version, Device.groups)
                .join(Device, Device.id == DeviceEvent.device_id)
                .outerjoin(Release, Release.id == DeviceEvent.release_id)
                .where(DeviceEvent.id > cursor.position, DeviceEvent.phase == "rolled_back")
                .order_by(DeviceEvent.id)
                .limit(BATCH)
            )
            for e, device, version, groups in s.execute(q):
                summary = f"device {device} rolled back" + (f" from {version}" if version else "")
                data = {"device": device, "release": version, "kind": e.kind, "details": e.details}
                key = f"device_event:{e.id}"
                n += self._fanout(s, subs, names, e.tenant_id, "device.rolled_back", key, e.at, now, summary, data)
                for rule in matching(rules, e.tenant_id, "rolled_back", groups):
                    n += self._alert(s, subs, names, rule, e, key, now, summary, data)
        if any(k in _SECURITY_KINDS for _t, k in subs) or any(m == "security_event" for _t, m in rules):
            n += self._from_security_events(s, subs, names, now, cursor.position, rules)
        self._advance(s, cursor, DeviceEvent)
        return n

    def _alert(
        self, s: Session, subs: Any, names: dict[int, str], rule: AlertRule, e: DeviceEvent, key: str, now: dt.datetime,
        summary: str, data: dict[str, Any],
    ) -> int:  # fmt: skip
        """An event alert rule (services/alerts.py) that holds for this event: a `device.alert`, once per rule and event."""
        text = f"alert {rule.name} fired: {summary}"
        detail = {**data, "alert": rule.name, "metric": rule.metric, "group": rule.group}
        return self._fanout(s, subs, names, e.tenant_id, "device.alert", f"alert:{rule.id}:{key}", e.at, now, text, detail)

    def _from_security_events(
        self, s: Session, subs: Any, names: dict[int, str], now: dt.datetime, after: int, rules: EventRules
    ) -> int:
        """Security events past the cursor: every one to `device.security_event`, integrity failures (a bundle that
        failed its signature, verity or sha256 check) to `device.integrity_failure`; one delivery per subscription."""
        n = 0
        q = (
            select(DeviceEvent, Device.name, Release.version, Device.groups)
            .join(Device, Device.id == DeviceEvent.device_id)
            .outerjoin(Release, Release.id == DeviceEvent.release_id)
            .where(DeviceEvent.id > after, is_security())
            .order_by(DeviceEvent.id)
            .limit(BATCH)
        )
        for e, device, release, groups in s.execute(q):
            kind = str((e.details or {}).get("event"))
            version = release or (e.details or {}).get("version")
            summary = f"device {device}: security event {kind}" + (f" ({version})" if version else "")
            message = (e.details or {}).get("message")
            if message:
                summary += f": {message[:300]}"
            data = {"device": device, "release": version, "release_id": e.release_id, "event": kind, "seq": e.seq,
                    "device_time": _iso(e.device_time), "details": e.details}  # fmt: skip
            key = f"security_event:{e.id}"
            kinds = ("device.integrity_failure", "device.security_event") if kind in INTEGRITY else ("device.security_event",)
            for notify_kind in kinds:
                n += self._fanout(s, subs, names, e.tenant_id, notify_kind, key, e.at, now, summary, data)
            for rule in matching(rules, e.tenant_id, "security_event", groups):
                n += self._alert(s, subs, names, rule, e, key, now, summary, data)
        return n

    def _from_cases(self, s: Session, subs: Any, names: dict[int, str], now: dt.datetime) -> int:
        tenants = {t for t, k in subs if k == "cra.case.deadline"}
        if not tenants:
            return 0
        n = 0
        q = select(CraCase).where(CraCase.tenant_id.in_(tenants), CraCase.awareness_at.is_not(None))
        for c in s.scalars(q):
            state = CaseState(c.state)
            due = deadlines(CaseKind(c.kind), c.awareness_at, c.corrective_at, c.notified_at)
            for name in overdue(state, due, _FAR):  # the submissions still to make that have a deadline
                t = getattr(due, name)
                stage = "overdue" if now > t else "approaching" if now >= t - DEADLINE_WARNING else None
                if stage is None:
                    continue
                summary = f"case {c.id} ({c.title}): the {name.replace('_', ' ')} is " + (
                    f"overdue since {t.isoformat()}" if stage == "overdue" else f"due at {t.isoformat()}"
                )
                data = {"case": c.id, "title": c.title, "state": c.state, "submission": name, "due": t.isoformat(),
                        "stage": stage, "cves": list(c.cves or [])}  # fmt: skip
                key = f"case:{c.id}:{name}:{t.isoformat()}:{stage}"
                n += self._fanout(s, subs, names, c.tenant_id, "cra.case.deadline", key, now, now, summary, data)
                # once overdue, the warning 12 h before is not sent late: the overdue one says more
                if stage == "overdue":
                    self._skip(s, subs, c.tenant_id, f"case:{c.id}:{name}:{t.isoformat()}:approaching", now)
        return n

    def _from_feeds(self, s: Session, subs: Any, names: dict[int, str], now: dt.datetime) -> int:
        tenants = sorted({t for t, k in subs if k == "feed.failing"})
        if not tenants or self.feed_status is None:
            return 0
        n = 0
        for st in self.feed_status():
            if st.get("ok") or not st.get("last_error"):
                continue
            # one notification per failing streak: the key names the last success before it
            key = f"feed:{st['name']}:{st.get('last_success') or 'never'}"
            summary = f"vulnerability feed {st['name']} is failing: {st['last_error']}"
            data = {k: st.get(k) for k in ("name", "url", "last_attempt", "last_success", "last_error", "stale")}
            for tid in tenants:
                n += self._fanout(s, subs, names, tid, "feed.failing", key, now, now, summary, data)
        return n

    def _skip(self, s: Session, subs: Any, tid: int, key: str, now: dt.datetime) -> None:
        for sub in subs.get((tid, "cra.case.deadline"), []):
            if not _has(s, sub.id, key):
                s.add(
                    NotifyDelivery(
                        tenant_id=tid,
                        subscription_id=sub.id,
                        uid=uuid.uuid4().hex,
                        event_kind="cra.case.deadline",
                        event_key=key,
                        payload={},
                        state="skipped",
                        attempts=0,
                        next_attempt_at=None,
                        created_at=now,
                    )
                )

    # -- deliveries -------------------------------------------------------------------------------------------
    @staticmethod
    def _payload(kind: str, tenant: str, at: dt.datetime, summary: str, data: dict[str, Any]) -> dict[str, Any]:
        return {"kind": kind, "tenant": tenant, "at": at.isoformat(), "summary": summary, "data": data}

    def _enqueue(
        self, s: Session, sub: NotifySubscription, kind: str, key: str, payload: dict[str, Any], now: dt.datetime
    ) -> NotifyDelivery | None:
        """A pending delivery, or None when this event already reached this subscription."""
        if _has(s, sub.id, key):
            return None
        uid = uuid.uuid4().hex
        d = NotifyDelivery(
            tenant_id=sub.tenant_id, subscription_id=sub.id, uid=uid, event_kind=kind, event_key=key,
            payload=payload | {"id": uid}, state="pending", attempts=0, next_attempt_at=now, created_at=now,
        )  # fmt: skip
        s.add(d)
        s.flush()
        return d

    def _attempt(self, did: int, now: dt.datetime, expected: dt.datetime | None = None) -> bool:
        """Try one delivery (claimed first, so that two processes never send it at once); False if not claimed."""
        with self.db.session() as s:
            q = update(NotifyDelivery).where(NotifyDelivery.id == did, NotifyDelivery.state == "pending")
            if expected is not None:
                q = q.where(NotifyDelivery.next_attempt_at == expected)
            if s.execute(q.values(next_attempt_at=now + LEASE)).rowcount != 1:  # type: ignore[attr-defined]
                return False
        with self.db.session() as s:
            d = s.get(NotifyDelivery, did)
            sub = s.get(NotifySubscription, d.subscription_id) if d else None
            if d is None or sub is None:
                return False
            kind, payload, uid = d.event_kind, dict(d.payload), d.uid
            channel, target, secret = sub.channel, sub.target, sub.secret
        if channel == "webhook":
            out: Outcome = send_webhook(target, secret or "", uid, kind, payload, int(now.timestamp()))
        else:
            out = send_email(self.smtp, target, kind, payload, uid)
        with self.db.session() as s:
            d = s.get(NotifyDelivery, did)
            if d is None:
                return True
            s.add(NotifyAttempt(delivery_id=did, at=now, ok=out.ok, status_code=out.status_code, error=out.error))
            d.attempts += 1
            if out.ok:
                d.state, d.next_attempt_at = "delivered", None
            elif out.retry and d.attempts < MAX_ATTEMPTS:
                d.next_attempt_at = now + BACKOFF * (2 ** (d.attempts - 1))
            else:
                d.state, d.next_attempt_at = "failed", None
        return True

    # -- JSON -------------------------------------------------------------------------------------------------
    def _own(self, s: Session, who: Principal, sub_id: int) -> NotifySubscription:
        sub = s.get(NotifySubscription, sub_id)
        if sub is None or sub.tenant_id != who.require_tenant():
            raise NotFound(f"no subscription {sub_id}; `bulkhead cra notify list` shows them")
        return sub

    @staticmethod
    def _sub_json(sub: NotifySubscription) -> dict[str, Any]:
        return {
            "id": sub.id,
            "channel": sub.channel,
            "target": sub.target,
            "events": list(sub.events or []),
            "created_by": sub.created_by,
            "created_at": sub.created_at.isoformat(),
        }

    @staticmethod
    def _delivery_json(s: Session, d: NotifyDelivery) -> dict[str, Any]:
        attempts = s.scalars(select(NotifyAttempt).where(NotifyAttempt.delivery_id == d.id).order_by(NotifyAttempt.id))
        return {
            "id": d.id,
            "uid": d.uid,
            "subscription_id": d.subscription_id,
            "event_kind": d.event_kind,
            "state": d.state,
            "attempts": [{"at": a.at.isoformat(), "ok": a.ok, "status_code": a.status_code, "error": a.error} for a in attempts],
            "next_attempt_at": _iso(d.next_attempt_at),
            "created_at": d.created_at.isoformat(),
            "payload": d.payload,
        }
