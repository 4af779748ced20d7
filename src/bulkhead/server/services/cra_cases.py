"""Article 14 cases as the API uses them: opened from the KEV event or by hand, confirmed, assigned, noted, submitted.

Authorization lives here: viewers read; operators and admins change (every change audited as `cra.case.*`). The rules
(states, transitions, deadlines) are bulkhead.cra.article14's; the fields each submission carries are gathered by
cra_fields and shaped by bulkhead.cra.srp. The time comes from one injectable clock.

A case opens by itself in the same transaction as the audit event `vuln.kev_exploited` (a CVE newly known exploited
that affects the tenant): state `awareness_pending`, the event's time suggested as the awareness time. A vulnerability
case learns its corrective measure from the exposure's fixing release (the first later release the CVE does not
touch) when it is read, unless one was set by hand; the final report is due 14 days after that release was uploaded.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from sqlalchemy import event, func, select
from sqlalchemy.orm import Session

from bulkhead.cra.article14 import (
    TRANSITIONS,
    CaseEvent,
    CaseKind,
    CaseState,
    IllegalTransition,
    deadlines,
    next_state,
    overdue,
)
from bulkhead.cra.srp import SUBMISSION_FIELDS, render_html, submission_document

from ..cra_models import CraCase, CraCaseEntry
from ..db import Database
from ..errors import Conflict, Invalid, NotFound
from ..models import AuditEvent, Release
from . import audit
from .auth import Principal
from .clock import Clock, system_clock
from .cra_fields import case_fields
from .keyset import Page, Paged, keyset, paged
from .vuln_exposure import _fixing_releases
from .vuln_kev import KEV_EVENT

__all__ = ["SYSTEM_ACTOR", "CaseService"]

SYSTEM_ACTOR = "system:cra"
_CVE = re.compile(r"^(CVE-\d{4}-\d{4,}|GHSA(-[23456789cfghjmpqrvwx]{4}){3}|[A-Z][A-Z0-9]{1,15}-[A-Za-z0-9_.:-]{1,48})\Z")
MAX_TITLE, MAX_TEXT, MAX_REF = 500, 20_000, 256


def _text(value: str | None, what: str, limit: int, required: bool = True) -> str | None:
    value = (value or "").strip()
    if not value:
        if required:
            raise Invalid(f"{what} is required")
        return None
    if len(value) > limit:
        raise Invalid(f"{what} is {len(value)} characters; the limit is {limit}")
    if any(ord(c) < 32 and c not in "\n\t" for c in value):
        raise Invalid(f"{what} contains control characters")
    return value


def _aware(t: dt.datetime, what: str) -> dt.datetime:
    if t.tzinfo is None:
        raise Invalid(f"{what} needs a time zone, such as 2026-09-14T08:00:00Z")
    if not 2000 <= t.year <= 9000:
        raise Invalid(f"{what} {t.isoformat()} is not a plausible time")
    return t.astimezone(dt.UTC)


def _iso(t: dt.datetime | None) -> str | None:
    return t.isoformat() if t else None


class CaseService:
    def __init__(self, db: Database, clock: Clock = system_clock) -> None:
        self.db, self.clock = db, clock
        event.listen(db.factory, "before_flush", self._open_from_kev)

    # -- the KEV hook ------------------------------------------------------------------------------------------
    def _open_from_kev(self, s: Session, _ctx: Any, _instances: Any) -> None:
        """A `vuln.kev_exploited` audit event being written opens a case in the same transaction (once per CVE)."""
        events = [o for o in s.new if isinstance(o, AuditEvent) and o.action == KEV_EVENT and o.tenant_id is not None]
        for e in events:
            if e.at is None:
                e.at = self.clock()
            with s.no_autoflush:
                known = s.scalar(select(CraCase.id).where(CraCase.tenant_id == e.tenant_id, CraCase.kev_cve == e.subject))
            if known is not None or any(
                isinstance(o, CraCase) and (o.tenant_id, o.kev_cve) == (e.tenant_id, e.subject) for o in s.new
            ):
                continue
            s.add(
                CraCase(
                    tenant_id=e.tenant_id,
                    kind=CaseKind.VULNERABILITY.value,
                    source="kev",
                    kev_cve=e.subject,
                    title=f"{e.subject} is actively exploited (CISA KEV) and affects devices",
                    state=CaseState.AWARENESS_PENDING.value,
                    cves=[e.subject],
                    suggested_awareness_at=e.at,
                    signal=dict(e.details or {}),
                    opened_by=e.actor,
                    created_at=e.at,
                    updated_at=e.at,
                )
            )
            s.add(
                AuditEvent(
                    tenant_id=e.tenant_id,
                    actor=e.actor,
                    action="cra.case.open",
                    subject=e.subject,
                    details={"source": "kev", "suggested_awareness_at": e.at.isoformat()},
                    at=e.at,
                )
            )

    # -- reading -----------------------------------------------------------------------------------------------
    def list_cases(self, who: Principal, state: str | None, page: Page) -> Paged[dict[str, Any]]:
        """The tenant's cases, newest first, optionally in one state."""
        who.require("viewer")
        tid = who.require_tenant()
        if state is not None and state not in {st.value for st in CaseState}:
            raise Invalid(f"unknown state {state!r}; the states are {', '.join(st.value for st in CaseState)}")
        now = self.clock()
        with self.db.session() as s:
            q = select(CraCase).where(CraCase.tenant_id == tid)
            if state:
                q = q.where(CraCase.state == state)
            rows = list(s.scalars(keyset(q, [CraCase.id], page, descending=True)))
            for c in rows:
                self._refresh(s, c, now)
            return paged(rows, page, lambda c: (c.id,), lambda c: self._json(c, now))

    def show(self, who: Principal, case_id: int) -> dict[str, Any]:
        """One case: state, deadlines and what is overdue, its log, and the pre-filled fields."""
        who.require("viewer")
        now = self.clock()
        with self.db.session() as s:
            c = self._get(s, who, case_id)
            self._refresh(s, c, now)
            out = self._json(c, now)
            out["entries"] = [self._entry_json(e) for e in self._entries(s, c)]
            out["fields"] = case_fields(s, c)
            return out

    def export(self, who: Principal, case_id: int, submission: str, fmt: str = "json") -> dict[str, Any] | str:
        """A submission's document: as it was submitted (the recorded fields), or as it would be sent now."""
        who.require("viewer")
        if submission not in SUBMISSION_FIELDS:
            raise Invalid(f"unknown submission {submission!r}; the submissions are {', '.join(SUBMISSION_FIELDS)}")
        if fmt not in ("json", "html"):
            raise Invalid(f"unknown format {fmt!r}: json or html")
        now = self.clock()
        with self.db.session() as s:
            c = self._get(s, who, case_id)
            self._refresh(s, c, now)
            sent = s.scalar(
                select(CraCaseEntry)
                .where(CraCaseEntry.case_id == c.id, CraCaseEntry.kind == "submission", CraCaseEntry.submission == submission)
                .order_by(CraCaseEntry.id.desc())
                .limit(1)
            )
            if sent is not None and sent.payload:
                doc = dict(sent.payload)
            else:
                doc = submission_document(submission, self._json(c, now), case_fields(s, c))
                doc["submitted"] = None
        return render_html(doc) if fmt == "html" else doc

    # -- changes -----------------------------------------------------------------------------------------------
    def open(
        self,
        who: Principal,
        kind: str,
        title: str,
        cves: list[str],
        compatible: str | None,
        suggested_awareness_at: dt.datetime | None,
    ) -> dict[str, Any]:
        """Open a case by hand: an actively exploited vulnerability or a severe incident."""
        who.require("operator")
        tid = who.require_tenant()
        try:
            k = CaseKind(kind)
        except ValueError:
            raise Invalid(f"unknown kind {kind!r}: vulnerability or incident") from None
        name = _text(title, "title", MAX_TITLE)
        ids = []
        for cve in cves:
            value = cve.strip().upper() if cve.strip().upper().startswith("CVE-") else cve.strip()
            if not _CVE.match(value):
                raise Invalid(f"{cve!r} is not a vulnerability id such as CVE-2024-3094")
            if value not in ids:
                ids.append(value)
        compatible = _text(compatible, "compatible", 256, required=False)
        if not ids and compatible is None:
            raise Invalid("name the product (compatible) or the CVE ids the case concerns, so its devices can be found")
        now = self.clock()
        suggested = _aware(suggested_awareness_at, "suggested_awareness_at") if suggested_awareness_at else now
        if suggested > now:
            raise Invalid("the awareness time cannot be in the future")
        with self.db.session() as s:
            c = CraCase(
                tenant_id=tid,
                kind=k.value,
                source="manual",
                title=name,
                state=CaseState.AWARENESS_PENDING.value,
                cves=ids,
                compatible=compatible,
                suggested_awareness_at=suggested,
                signal={},
                opened_by=f"{who.kind}:{who.name}",
                created_at=now,
                updated_at=now,
            )
            s.add(c)
            s.flush()
            audit.record(s, who, "cra.case.open", f"case {c.id}", kind=k.value, cves=ids, compatible=compatible)
            return self._json(c, now)

    def confirm(self, who: Principal, case_id: int, awareness_at: dt.datetime | None) -> dict[str, Any]:
        """A person confirms when the manufacturer became aware (default: the suggested time); deadlines follow."""
        who.require("operator")
        now = self.clock()
        with self.db.session() as s:
            c = self._get(s, who, case_id, lock=True)
            at = _aware(awareness_at, "awareness_at") if awareness_at else c.suggested_awareness_at or now
            if at > now:
                raise Invalid("the awareness time cannot be in the future")
            self._move(c, CaseEvent.CONFIRM, now)
            c.awareness_at, c.awareness_by = at, f"{who.kind}:{who.name}"
            s.flush()
            out = self._json(c, now)
            audit.record(s, who, "cra.case.confirm", f"case {c.id}", awareness_at=at.isoformat(), deadlines=out["deadlines"])
            return out

    def update(self, who: Principal, case_id: int, changes: dict[str, str | None]) -> dict[str, Any]:
        """Set the assignee, the mitigations or the title (a key given as null clears it, except the title)."""
        who.require("operator")
        now = self.clock()
        with self.db.session() as s:
            c = self._get(s, who, case_id, lock=True)
            if "assignee" in changes:
                c.assignee = _text(changes["assignee"], "assignee", 256, required=False)
            if "mitigations" in changes:
                c.mitigations = _text(changes["mitigations"], "mitigations", MAX_TEXT, required=False)
            if "title" in changes:
                c.title = _text(changes["title"], "title", MAX_TITLE) or c.title
            c.updated_at = now
            s.flush()
            audit.record(s, who, "cra.case.update", f"case {c.id}", changes=dict(changes))
            return self._json(c, now)

    def set_corrective(
        self,
        who: Principal,
        case_id: int,
        release_id: int | None,
        description: str | None,
        available_at: dt.datetime | None,
    ) -> dict[str, Any]:
        """Name the corrective or mitigating measure by hand: a release (available when it was uploaded, unless
        `available_at` says otherwise) or a description (available at `available_at`, default now)."""
        who.require("operator")
        now = self.clock()
        text = _text(description, "description", MAX_TEXT, required=False)
        if release_id is None and text is None:
            raise Invalid("name the release that fixes it (release_id) or describe the measure (description)")
        with self.db.session() as s:
            c = self._get(s, who, case_id, lock=True)
            if c.state in (CaseState.CLOSED.value, CaseState.DISMISSED.value):
                raise Conflict(f"case {c.id} is {c.state}; its corrective measure is part of what was reported")
            measure: dict[str, Any] = {"origin": "manual", "description": text}
            at = _aware(available_at, "available_at") if available_at else None
            if release_id is not None:
                rel = s.get(Release, release_id)
                if rel is None or rel.tenant_id != c.tenant_id:
                    raise NotFound(f"release {release_id} does not exist")
                measure |= {"release_id": rel.id, "version": rel.version, "compatible": rel.compatible}
                at = at or rel.created_at
            at = at or now
            if at > now:
                raise Invalid("available_at cannot be in the future: set it once the measure is available")
            c.corrective, c.corrective_at, c.updated_at = measure, at, now
            s.flush()
            audit.record(s, who, "cra.case.corrective", f"case {c.id}", available_at=at.isoformat(), **measure)
            return self._json(c, now)

    def note(self, who: Principal, case_id: int, text: str, kind: str = "note", reference: str | None = None) -> dict[str, Any]:
        """Add a note, or record a CSIRT's request (kind `csirt_request`, with its reference)."""
        who.require("operator")
        body = _text(text, "text", MAX_TEXT)
        ref = _text(reference, "reference", MAX_REF, required=False)
        if kind not in ("note", "csirt_request"):
            raise Invalid("kind must be note or csirt_request")
        now = self.clock()
        with self.db.session() as s:
            c = self._get(s, who, case_id, lock=True)
            entry = self._add_entry(s, c, who, now, kind=kind, text=body, reference=ref)
            c.updated_at = now
            s.flush()
            audit.record(s, who, f"cra.case.{kind}", f"case {c.id}", reference=ref)
            return self._entry_json(entry)

    def submit(self, who: Principal, case_id: int, submission: str, reference: str, text: str | None) -> dict[str, Any]:
        """Record that a submission was made on the reporting platform (its reference; the fields sent are kept)."""
        who.require("operator")
        if submission not in SUBMISSION_FIELDS:
            raise Invalid(f"unknown submission {submission!r}; the submissions are {', '.join(SUBMISSION_FIELDS)}")
        ref = _text(reference, "reference", MAX_REF)
        note = _text(text, "text", MAX_TEXT, required=False)
        now = self.clock()
        with self.db.session() as s:
            c = self._get(s, who, case_id, lock=True)
            self._refresh(s, c, now)
            before = self._json(c, now)
            self._move(c, CaseEvent(submission), now)
            doc = submission_document(submission, before, case_fields(s, c))
            doc["submitted"] = {"at": now.isoformat(), "by": f"{who.kind}:{who.name}", "reference": ref}
            if submission == CaseEvent.NOTIFICATION.value:
                c.notified_at = now
            entry = self._add_entry(
                s, c, who, now, kind="submission", submission=submission, reference=ref, text=note, payload=doc
            )
            s.flush()
            audit.record(s, who, "cra.case.submit", f"case {c.id}", submission=submission, reference=ref, state=c.state)
            out = self._json(c, now)
            out["entry"] = self._entry_json(entry)
            return out

    def dismiss(self, who: Principal, case_id: int, reason: str) -> dict[str, Any]:
        """Close a case as not reportable, with the reason (kept and audited)."""
        who.require("operator")
        why = _text(reason, "reason", MAX_TEXT)
        now = self.clock()
        with self.db.session() as s:
            c = self._get(s, who, case_id, lock=True)
            self._move(c, CaseEvent.DISMISS, now)
            c.dismissed_reason = why
            s.flush()
            audit.record(s, who, "cra.case.dismiss", f"case {c.id}", reason=why)
            return self._json(c, now)

    # -- helpers -----------------------------------------------------------------------------------------------
    def _get(self, s: Session, who: Principal, case_id: int, lock: bool = False) -> CraCase:
        tid = who.require_tenant()
        c = s.get(CraCase, case_id, with_for_update=lock) if isinstance(case_id, int) else None
        if c is None or c.tenant_id != tid:
            raise NotFound(f"case {case_id} does not exist; 'bulkhead cra case list' shows the cases")
        return c

    def _move(self, c: CraCase, ev: CaseEvent, now: dt.datetime) -> None:
        try:
            c.state = next_state(CaseState(c.state), ev).value
        except IllegalTransition as e:
            raise Conflict(str(e)) from None
        c.updated_at = now

    def _refresh(self, s: Session, c: CraCase, now: dt.datetime) -> None:
        """A vulnerability case without a corrective measure takes the exposure's fixing release once there is one."""
        if c.kind != CaseKind.VULNERABILITY.value or c.corrective_at is not None or not c.cves:
            return
        if c.state in (CaseState.CLOSED.value, CaseState.DISMISSED.value):
            return
        found: list[Release] = []
        for cve in c.cves:
            for fix in _fixing_releases(s, c.tenant_id, cve):
                rel = s.get(Release, fix["release_id"]) if fix["release_id"] is not None else None
                if rel is not None:
                    found.append(rel)
        if not found:
            return
        rel = min(found, key=lambda r: (r.created_at, r.id))
        c.corrective = {"origin": "exposure", "release_id": rel.id, "version": rel.version, "compatible": rel.compatible}
        c.corrective_at = rel.created_at
        s.add(
            AuditEvent(
                tenant_id=c.tenant_id,
                actor=SYSTEM_ACTOR,
                action="cra.case.corrective",
                subject=f"case {c.id}",
                details={**c.corrective, "available_at": rel.created_at.isoformat()},
                at=now,
            )
        )
        s.flush()

    def _entries(self, s: Session, c: CraCase) -> list[CraCaseEntry]:
        return list(s.scalars(select(CraCaseEntry).where(CraCaseEntry.case_id == c.id).order_by(CraCaseEntry.seq)))

    def _add_entry(self, s: Session, c: CraCase, who: Principal, now: dt.datetime, **fields: Any) -> CraCaseEntry:
        seq = (s.scalar(select(func.max(CraCaseEntry.seq)).where(CraCaseEntry.case_id == c.id)) or 0) + 1
        entry = CraCaseEntry(tenant_id=c.tenant_id, case_id=c.id, actor=f"{who.kind}:{who.name}", at=now, seq=seq, **fields)
        s.add(entry)
        return entry

    @staticmethod
    def _entry_json(e: CraCaseEntry) -> dict[str, Any]:
        return {
            "seq": e.seq,
            "kind": e.kind,
            "submission": e.submission,
            "reference": e.reference,
            "text": e.text,
            "actor": e.actor,
            "at": e.at.isoformat(),
        }

    @staticmethod
    def _json(c: CraCase, now: dt.datetime) -> dict[str, Any]:
        state = CaseState(c.state)
        due = deadlines(CaseKind(c.kind), c.awareness_at, c.corrective_at, c.notified_at)
        return {
            "id": c.id,
            "kind": c.kind,
            "source": c.source,
            "title": c.title,
            "state": c.state,
            "allowed": sorted(e.value for (st, e) in TRANSITIONS if st == state),
            "cves": list(c.cves or []),
            "compatible": c.compatible,
            "suggested_awareness_at": _iso(c.suggested_awareness_at),
            "awareness_at": _iso(c.awareness_at),
            "awareness_by": c.awareness_by,
            "deadlines": {
                "early_warning": _iso(due.early_warning),
                "notification": _iso(due.notification),
                "final_report": _iso(due.final_report),
            },
            "overdue": overdue(state, due, now),
            "corrective_at": _iso(c.corrective_at),
            "corrective": c.corrective,
            "notified_at": _iso(c.notified_at),
            "assignee": c.assignee,
            "mitigations": c.mitigations,
            "dismissed_reason": c.dismissed_reason,
            "signal": c.signal or {},
            "opened_by": c.opened_by,
            "created_at": c.created_at.isoformat(),
            "updated_at": c.updated_at.isoformat(),
        }
