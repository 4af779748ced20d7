"""Agent reports: update events (idempotent by sequence number) and inventory, recorded per device.

Reports are validated one by one (`prepare`, pure) and written in batches (`write`): one transaction locks the
batch's device rows, inserts every new event in one statement and updates each device once (the statements:
report_sql.py); rollouts are touched only by events with a phase. The device API gathers concurrent requests into
one batch (groupcommit.py) and answers each after its batch committed.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy.orm import Session

from bulkhead.protocol import MAX_EVENT_DETAILS_BYTES, EventKind, UpdatePhase

from ..db import Database
from ..errors import Forbidden, Invalid, ServerError, Unauthorized
from ..ids import MAX_ID
from ..models import Device, utcnow
from .auth import Principal, credential_holders
from .inventory import Inventory, inventory_of
from .report_sql import insert_events, lock_devices, update_devices, waited_devices
from .rollouts import RolloutService
from .security_events import check_details as check_security

__all__ = ["EVENT_KINDS", "MAX_DETAILS_BYTES", "MAX_EVENTS", "PHASES", "SEQ_WINDOW", "Report", "ReportService"]

log = logging.getLogger(__name__)

EVENT_KINDS = tuple(EventKind)
PHASES = tuple(UpdatePhase)
MAX_EVENTS = 500
MAX_DETAILS_BYTES = MAX_EVENT_DETAILS_BYTES  # one event's details, as JSON
# How far above the last accepted seq a report may go: an agent counts its events one by one, so a bigger jump is
# a broken or hostile counter (and a seq near 2^63 would make the device drop every later event as a duplicate).
SEQ_WINDOW = 1_000_000
_EARLIEST = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)  # a device without a real-time clock may report 1970
_LATEST = dt.datetime(2100, 12, 31, 23, 59, 59, tzinfo=dt.UTC)


def _event(raw: Any) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise Invalid("each event must be an object")
    seq, kind, phase = raw.get("seq"), raw.get("kind"), raw.get("phase")
    if type(seq) is not int or seq <= 0:  # strict: a JSON true is not a sequence number
        raise Invalid(f"event seq must be a positive integer, got {seq!r}")
    if kind not in EVENT_KINDS:
        raise Invalid(f"event {seq}: kind must be one of {', '.join(EVENT_KINDS)}")
    if phase is not None and phase not in PHASES:
        raise Invalid(f"event {seq}: phase must be one of {', '.join(PHASES)}")
    details = raw.get("details") or {}
    if not isinstance(details, dict):
        raise Invalid(f"event {seq}: details must be an object")
    if len(json.dumps(details)) > MAX_DETAILS_BYTES:
        raise Invalid(f"event {seq}: details are larger than {MAX_DETAILS_BYTES} bytes of JSON; send less")
    if kind == EventKind.SECURITY:
        check_security(seq, phase, details)
    at = None
    if raw.get("at"):
        try:
            at = dt.datetime.fromisoformat(str(raw["at"]))
            at = at.astimezone(dt.UTC) if at.tzinfo is not None else at  # stored in UTC (models.UTCDateTime)
        except (ValueError, OverflowError):
            raise Invalid(f"event {seq}: 'at' must be an ISO 8601 time") from None
        if not _EARLIEST <= (at if at.tzinfo else at.replace(tzinfo=dt.UTC)) <= _LATEST:
            raise Invalid(f"event {seq}: 'at' must be between the years 1970 and 2100")
    release_id = raw.get("release_id")
    if release_id is not None and (type(release_id) is not int or not 1 <= release_id <= MAX_ID):
        raise Invalid(f"event {seq}: release_id must be an integer")
    return {"seq": seq, "kind": kind, "phase": phase, "release_id": release_id, "details": details, "at": at}


@dataclass(frozen=True)
class Report:
    """One device's validated report: its events in seq order, and its inventory if it sent one.

    The device is named by its id (`tenant_id`, `device_id`) or, on the lean report path, by the hash of the
    credential it sent (`credential`): the batch that writes the report finds the device, checks it and locks its
    row in one statement, so a device new to the process costs no lookup of its own.
    """

    tenant_id: int | None
    device_id: int | None
    events: list[dict[str, Any]]
    inventory: Inventory | None
    credential: str | None = None


@dataclass
class _Seen:
    """A locked device row as the batch leaves it."""

    seq: int
    inventory_sha256: str | None
    os_version: str | None
    values: dict[str, Any] = field(default_factory=dict)  # what the batch writes to the row
    os_version_changed: bool = False


Outcome = int | Exception  # the accepted seq, or why the report was refused


class ReportService:
    def __init__(self, db: Database, rollouts: RolloutService) -> None:
        self.db, self.rollouts = db, rollouts

    def prepare(
        self,
        who: Principal,
        events: list[Any],
        inventory: dict[str, Any] | Inventory | None,
        inventory_text: str | None = None,
    ) -> Report:
        """Check a report without touching the database; `inventory_text`: the inventory's JSON as the device sent it."""
        if who.kind != "device" or who.device_id is None or who.tenant_id is None:
            raise Forbidden("this endpoint is for devices")
        if who.device_status == "disabled":
            raise _disabled(who.name)
        return Report(who.tenant_id, who.device_id, *_checked(events, inventory, inventory_text))

    def prepare_sent(
        self, credential: str, events: list[Any], inventory: dict[str, Any] | Inventory | None, inventory_text: str | None
    ) -> Report:
        """`prepare` for a report that came with a device credential (its hash): the device is found and checked
        (it exists, holds this credential, is not disabled) by the batch that writes the report."""
        return Report(None, None, *_checked(events, inventory, inventory_text), credential=credential)

    def ingest(self, who: Principal, events: list[Any], inventory: dict[str, Any] | None) -> dict[str, Any]:
        """Record one report; events at or below the last accepted seq are duplicates of a retried batch and are skipped."""
        outcome = self.write([self.prepare(who, events, inventory)])[0]
        if isinstance(outcome, Exception):
            raise outcome
        return {"accepted_seq": outcome}

    def write(self, reports: list[Report]) -> list[Outcome]:
        """Record a batch in one transaction; each report's outcome in order. A report refused here (its device is
        gone, its seq out of the window) changes nothing and does not hold up the others.

        If the transaction fails as a whole, each report is tried again in a transaction of its own, so one
        report that the database refuses costs the others nothing.
        """
        try:
            outcomes, changed = self._write(reports)
        except Exception:
            if len(reports) == 1:
                raise
            log.warning("a batch of %d reports failed; writing them one by one", len(reports), exc_info=True)
            return [self._write_alone(r) for r in reports]
        for rid in changed:
            self.rollouts.on_change(rid)
        return outcomes

    def _write_alone(self, report: Report) -> Outcome:
        try:
            return self.write([report])[0]
        except Exception as exc:
            if not isinstance(exc, ServerError):
                log.exception(
                    "could not record a report of device %s", report.device_id or f"with credential {report.credential:.8}…"
                )
            return exc

    def _write(self, reports: list[Report]) -> tuple[list[Outcome], set[int]]:
        now = utcnow()
        with self.db.session() as s:
            ids = sorted({r.device_id for r in reports if r.device_id is not None})
            credentials = sorted({r.credential for r in reports if r.credential is not None})
            locked = lock_devices(s, ids, credentials)
            seen = {r.id: _Seen(r.report_seq, r.reported_sha256, r.os_version) for r in locked}
            holders = credential_holders(s, locked, set(credentials))
            outcomes: list[Outcome] = []
            new_events: list[dict[str, Any]] = []
            phased: list[tuple[int, dict[str, Any]]] = []  # events the rollouts hear of, in order
            for report in reports:
                if report.credential is not None:
                    holder = holders.get(report.credential)
                    if holder is None or holder.status == "disabled":
                        outcomes.append(Unauthorized(_UNKNOWN) if holder is None else _disabled(holder.name))
                        continue
                    report = replace(report, tenant_id=holder.tenant_id, device_id=holder.id)
                dev = seen.get(report.device_id or 0)
                if dev is None:
                    outcomes.append(Unauthorized("device no longer exists: enroll again"))
                    continue
                events = report.events
                if events and events[-1]["seq"] > dev.seq + SEQ_WINDOW:
                    outcomes.append(
                        Invalid(
                            f"event seq {events[-1]['seq']} is more than {SEQ_WINDOW} above the last accepted one "
                            f"({dev.seq}); number events one by one"
                        )
                    )
                    continue
                fresh = [e for e in events if e["seq"] > dev.seq]
                dev_id = report.device_id or 0
                dev.values["last_seen"] = now
                for e in fresh:
                    new_events.append(_event_row(report, e, now))
                    if e["phase"] and e["kind"] in ("update", "app", "package"):
                        phased.append((dev_id, e))
                        if e["kind"] == "update":
                            dev.values["update_status"] = _update_status(e)
                if fresh:
                    dev.seq = dev.values["report_seq"] = fresh[-1]["seq"]
                inv = report.inventory
                if inv is not None and inv.sha256 != dev.inventory_sha256:
                    dev.inventory_sha256 = dev.values["reported_sha256"] = inv.sha256
                    dev.values["reported"] = inv  # its text as sent (PostgreSQL), or parsed (SQLite)
                if inv is not None and inv.os_version is not None and inv.os_version != dev.os_version:
                    dev.os_version, dev.os_version_changed = inv.os_version, True  # written through the ORM below
                outcomes.append(dev.seq)
            insert_events(s, new_events, now)
            written = [(device_id, dev.values) for device_id, dev in sorted(seen.items()) if dev.values]
            update_devices(s, written, now, {device_id: dev.seq for device_id, dev in seen.items()})
            changed = self._orm_changes(s, seen, phased)
        return outcomes, changed

    def _orm_changes(self, s: Session, seen: dict[int, _Seen], phased: list[tuple[int, dict[str, Any]]]) -> set[int]:
        """The rare writes others listen to, through the ORM (the change feed sees them): a new OS version (which
        delta the device is offered depends on it) and events with a phase (a rollout's action follows them)."""
        changed: set[int] = set()
        for device_id, dev in seen.items():
            if dev.os_version_changed:
                row = s.get(Device, device_id)
                assert row is not None  # locked above
                row.os_version = dev.os_version
        if phased:
            # Most update and app events are of devices no rollout is waiting for (a desired release, a device's own
            # apps): one query finds the devices that have an offered action, and only their events go through the ORM.
            waited = waited_devices(s, sorted({d for d, _ in phased}))
            phased = [(d, e) for d, e in phased if d in waited]
        for device_id, e in phased:
            row = s.get(Device, device_id)
            assert row is not None  # locked above
            if e["kind"] == "update":
                rid = self.rollouts.on_agent_event(s, row, e["phase"], e["release_id"], e["details"].get("reason"))
            elif e["kind"] == "package":
                rid = self.rollouts.on_package_event(s, row, e["phase"], e["details"])
            else:
                rid = self.rollouts.on_app_event(s, row, e["phase"], e["details"])
            if rid is not None:
                changed.add(rid)
        return changed


_UNKNOWN = "unknown device credential: enroll again"


def _disabled(name: str) -> Forbidden:
    return Forbidden(f"device '{name}' is disabled: an operator must enable it ('bulkhead device enable {name}')")


def _checked(
    events: list[Any], inventory: dict[str, Any] | Inventory | None, inventory_text: str | None
) -> tuple[list[dict[str, Any]], Inventory | None]:
    if len(events) > MAX_EVENTS:
        raise Invalid(f"at most {MAX_EVENTS} events per report; send the rest in the next one")
    parsed = sorted((_event(e) for e in events), key=lambda e: e["seq"])
    if inventory is not None and not isinstance(inventory, Inventory):
        inventory = inventory_of(inventory, inventory_text)
    return parsed, inventory


def _event_row(report: Report, e: dict[str, Any], now: dt.datetime) -> dict[str, Any]:
    return {
        "tenant_id": report.tenant_id,
        "device_id": report.device_id,
        "seq": e["seq"],
        "kind": e["kind"],
        "phase": e["phase"],
        "release_id": e["release_id"],
        "details": e["details"],
        "device_time": e["at"],
        "at": now,
    }


def _update_status(e: dict[str, Any]) -> dict[str, Any]:
    return {
        "phase": e["phase"],
        "release_id": e["release_id"],
        **{k: e["details"][k] for k in ("version", "reason", "progress", "slot") if k in e["details"]},
        "at": (e["at"] or utcnow()).isoformat(),
    }
