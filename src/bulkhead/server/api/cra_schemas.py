"""Wire models of the CRA duties: products with their support period, Article 14 cases and their submissions."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from .fields import BodyId, Compatible, Name
from .wire import Out, Time

__all__ = [
    "CaseDetail",
    "CaseEntryOut",
    "CaseOut",
    "CaseUpdateIn",
    "ConfirmIn",
    "CorrectiveIn",
    "DismissIn",
    "NoteIn",
    "OpenCaseIn",
    "ProductDetail",
    "ProductIn",
    "ProductOut",
    "SubmissionDoc",
    "SubmitIn",
]

Submission = Literal["early_warning", "notification", "final_report"]
CaseText = Field(None, max_length=20_000)


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ProductIn(_In):
    name: str = Field(min_length=1, max_length=256, description="the product's name as it is placed on the market")
    manufacturer: str = Field(min_length=1, max_length=256)
    support_end: dt.date | None = Field(None, description="the last day of the support period (null: not set yet)")


class SupportOut(Out):
    """Where the product stands in its support period."""

    days_left: int | None = Field(description="days until the support end (negative once it ended)")
    ended: bool
    ending_soon: bool = Field(description="ends within warning_days (BULKHEAD_SUPPORT_WARNING_DAYS)")
    warning_days: int
    warning: str | None


class ProductOut(Out):
    """A product (per compatible): name, manufacturer, support end and the warning when it ends soon."""

    compatible: str
    name: str
    manufacturer: str
    support_end: str | None
    support: SupportOut
    created_at: Time
    updated_at: Time


class ProductRelease(Out):
    """One release of the product: when it was last deployed and until when it is retained."""

    id: int
    version: str
    created_at: Time
    last_deployed: Time | None = Field(description="last rollout, device event or device running it (null: never)")
    retained_until: Time | None = Field(description="cannot be deleted before this (null: never deployed)")


class ProductDetail(ProductOut):
    """A product with its releases."""

    releases: list[ProductRelease]


class OpenCaseIn(_In):
    kind: Literal["vulnerability", "incident"]
    title: str = Field(min_length=1, max_length=500)
    cves: list[Name] = Field(default_factory=list, max_length=100)
    compatible: Compatible | None = Field(None, description="the product; needed when no CVE names the devices")
    suggested_awareness_at: dt.datetime | None = Field(None, description="default: now")


class ConfirmIn(_In):
    awareness_at: dt.datetime | None = Field(None, description="when the manufacturer became aware (default: the suggested time)")


class CaseUpdateIn(_In):
    assignee: str | None = Field(None, max_length=256)
    mitigations: str | None = CaseText
    title: str | None = Field(None, min_length=1, max_length=500)


class CorrectiveIn(_In):
    release_id: BodyId | None = Field(None, description="the release that fixes it")
    description: str | None = CaseText
    available_at: dt.datetime | None = Field(None, description="default: the release's upload time, or now")


class NoteIn(_In):
    text: str = Field(min_length=1, max_length=20_000)
    kind: Literal["note", "csirt_request"] = "note"
    reference: str | None = Field(None, max_length=256, description="a CSIRT request's reference")


class SubmitIn(_In):
    submission: Submission
    reference: str = Field(min_length=1, max_length=256, description="the reporting platform's reference")
    text: str | None = CaseText


class DismissIn(_In):
    reason: str = Field(min_length=1, max_length=20_000)


class Deadlines(Out):
    """When each submission is due (null: its clock has not started)."""

    early_warning: Time | None
    notification: Time | None
    final_report: Time | None


class CaseEntryOut(Out):
    """One entry of a case's log: a note, a submission, or a CSIRT request."""

    seq: int
    kind: str
    submission: str | None
    reference: str | None
    text: str | None
    actor: str
    at: Time


class CaseOut(Out):
    """An Article 14 case: state, awareness time, deadlines, what is overdue, the corrective measure."""

    id: int
    kind: str
    source: str
    title: str
    state: str
    allowed: list[str] = Field(description="the events the state allows")
    cves: list[str]
    compatible: str | None
    suggested_awareness_at: Time | None
    awareness_at: Time | None
    awareness_by: str | None
    deadlines: Deadlines
    overdue: list[str]
    corrective_at: Time | None
    corrective: dict[str, Any] | None
    notified_at: Time | None
    assignee: str | None
    mitigations: str | None
    dismissed_reason: str | None
    signal: dict[str, Any]
    opened_by: str
    created_at: Time
    updated_at: Time


class CaseDetail(CaseOut):
    """A case with its log and the pre-filled reporting fields."""

    entries: list[CaseEntryOut]
    fields: dict[str, Any] = Field(description="the pre-filled fields of the Single Reporting Platform")


class SubmitOut(CaseOut):
    """The case after a submission, and the log entry that records it."""

    entry: CaseEntryOut


class SubmissionDoc(Out):
    """A submission's document: the case, when it is due, the fields it carries, and who submitted it."""

    format: str
    submission: str
    case: dict[str, Any]
    fields: dict[str, Any]
    submitted: dict[str, Any] | None = Field(description="who submitted it, when, with which reference (null: not yet)")
