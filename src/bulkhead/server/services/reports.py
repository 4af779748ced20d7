"""Agent reports: update events (idempotent by sequence number) and inventory, recorded per device."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from sqlalchemy import select

from bulkhead.protocol import MAX_EVENT_DETAILS_BYTES, EventKind, UpdatePhase

from ..db import Database
from ..errors import Forbidden, Invalid, Unauthorized
from ..ids import MAX_ID
from ..models import Device, DeviceEvent, utcnow
from .auth import Principal
from .devices import find_device
from .rollouts import RolloutService

__all__ = ["EVENT_KINDS", "MAX_DETAILS_BYTES", "MAX_EVENTS", "PHASES", "SEQ_WINDOW", "ReportService"]

EVENT_KINDS = tuple(EventKind)
PHASES = tuple(UpdatePhase)
MAX_EVENTS = 500
MAX_INVENTORY_BYTES = 512 * 1024
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


class ReportService:
    def __init__(self, db: Database, rollouts: RolloutService) -> None:
        self.db, self.rollouts = db, rollouts

    def ingest(self, who: Principal, events: list[Any], inventory: dict[str, Any] | None) -> dict[str, Any]:
        """Record a batch; events at or below the last accepted seq are duplicates of a retried batch and are skipped."""
        if who.kind != "device" or who.device_id is None:
            raise Forbidden("this endpoint is for devices")
        if len(events) > MAX_EVENTS:
            raise Invalid(f"at most {MAX_EVENTS} events per report; send the rest in the next one")
        parsed = sorted((_event(e) for e in events), key=lambda e: e["seq"])
        if inventory is not None and len(repr(inventory)) > MAX_INVENTORY_BYTES:
            raise Invalid("inventory is too large")
        with self.db.session() as s:
            dev = s.get(Device, who.device_id, with_for_update=True)
            if dev is None:
                raise Unauthorized("device no longer exists: enroll again")
            if parsed and parsed[-1]["seq"] > dev.report_seq + SEQ_WINDOW:
                raise Invalid(
                    f"event seq {parsed[-1]['seq']} is more than {SEQ_WINDOW} above the last accepted one ({dev.report_seq}); "
                    "number events one by one"
                )
            fresh = [e for e in parsed if e["seq"] > dev.report_seq]
            changed: set[int] = set()
            for e in fresh:
                s.add(
                    DeviceEvent(
                        tenant_id=dev.tenant_id,
                        device_id=dev.id,
                        seq=e["seq"],
                        kind=e["kind"],
                        phase=e["phase"],
                        release_id=e["release_id"],
                        details=e["details"],
                        device_time=e["at"],
                    )
                )
                if e["kind"] == "update" and e["phase"]:
                    dev.update_status = {
                        "phase": e["phase"],
                        "release_id": e["release_id"],
                        **{k: e["details"][k] for k in ("version", "reason", "progress", "slot") if k in e["details"]},
                        "at": (e["at"] or utcnow()).isoformat(),
                    }
                    rid = self.rollouts.on_agent_event(s, dev, e["phase"], e["release_id"], e["details"].get("reason"))
                    if rid is not None:
                        changed.add(rid)
                elif e["kind"] == "app" and e["phase"]:
                    rid = self.rollouts.on_app_event(s, dev, e["phase"], e["details"])
                    if rid is not None:
                        changed.add(rid)
            if fresh:
                dev.report_seq = fresh[-1]["seq"]
            if inventory is not None:
                dev.reported = inventory
                version = inventory.get("os_version")
                if isinstance(version, str) and version and version != dev.os_version:
                    dev.os_version = version[:256]  # marks the device: which delta it is offered depends on it
            dev.last_seen = utcnow()
            accepted = dev.report_seq
        for rid in changed:
            self.rollouts.on_change(rid)
        return {"accepted_seq": accepted}

    def events(self, who: Principal, ref: str, limit: int = 100) -> list[dict[str, Any]]:
        who.require("viewer")
        tid = who.require_tenant()
        with self.db.session() as s:
            dev = find_device(s, tid, ref)
            rows = s.scalars(
                select(DeviceEvent)
                .where(DeviceEvent.device_id == dev.id)
                .order_by(DeviceEvent.seq.desc())
                .limit(min(limit, 1000))
            )
            return [
                {
                    "seq": e.seq,
                    "kind": e.kind,
                    "phase": e.phase,
                    "release_id": e.release_id,
                    "details": e.details,
                    "device_time": e.device_time.isoformat() if e.device_time else None,
                    "at": e.at.isoformat(),
                }
                for e in rows
            ]
