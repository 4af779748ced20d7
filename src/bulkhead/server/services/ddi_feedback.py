"""hawkBit DDI feedback: parsing, the status it moves an action to, and its entry in the device's event history."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bulkhead.protocol import DdiExecution, DdiResult, ddi_action_status

from ..errors import Invalid
from ..models import Device, DeviceEvent, utcnow
from .reports import PHASES

__all__ = ["EXECUTIONS", "RESULTS", "Feedback", "next_status", "parse_feedback", "record_event"]

EXECUTIONS = tuple(DdiExecution)
RESULTS = tuple(DdiResult)
TERMINAL = ("success", "failure", "canceled")


@dataclass(frozen=True)
class Feedback:
    execution: str
    finished: str
    messages: list[str]
    progress: str | None

    @property
    def text(self) -> str | None:
        text = "; ".join(self.messages) or None
        if self.progress:
            text = f"{text or ''} ({self.progress})".strip()
        return text

    @property
    def about_download(self) -> bool:
        """Whether the client's words are about fetching the artifact ("Downloading", "Download complete ...")."""
        return any("download" in m.lower() for m in self.messages)


def parse_feedback(body: Any) -> Feedback:
    if not isinstance(body, dict) or not isinstance(body.get("status"), dict):
        raise Invalid("feedback needs a JSON object with 'status': {'execution': ..., 'result': {'finished': ...}}")
    st = body["status"]
    execution = st.get("execution")
    if execution not in EXECUTIONS:
        raise Invalid(f"status.execution must be one of {', '.join(EXECUTIONS)}; got {execution!r}")
    result = st.get("result") or {}
    finished = result.get("finished", "none") if isinstance(result, dict) else "none"
    if finished not in RESULTS:
        raise Invalid(f"status.result.finished must be one of {', '.join(RESULTS)}; got {finished!r}")
    details = st.get("details") or []
    if not isinstance(details, list):
        raise Invalid("status.details must be a list of strings")
    progress = None
    prog = result.get("progress") if isinstance(result, dict) else None
    if isinstance(prog, dict) and "cnt" in prog:  # hawkBit's chunk counter (SWUpdate)
        progress = f"{prog.get('cnt')}/{prog.get('of')}"[:64]
    elif isinstance(prog, dict) and isinstance(prog.get("percentage"), int | float):  # rauc-hawkbit: RAUC's progress
        progress = f"{prog['percentage']}%"[:64]
    return Feedback(execution, finished, [str(d)[:1000] for d in details][:20], progress)


def next_status(current: str, before_cancel: str | None, fb: Feedback, cancel: bool) -> str | None:
    """The action's new status for a feedback (the shared table in `bulkhead.protocol`), or None to only note it.

    Only words about the download itself ("Download complete. 3.1 MB/s") keep an action downloading.
    """
    installing = bool(fb.messages) and not fb.about_download
    return ddi_action_status(current, fb.execution, fb.finished, cancel, before_cancel, installing)


def record_event(
    s: Session, dev: Device, status: str, release_id: int | None, action_id: int, fb: Feedback | None, message: str = ""
) -> None:
    """One entry in the device's event history (`bulkhead device events`), as an agent's report would add."""
    last = s.scalar(select(func.max(DeviceEvent.seq)).where(DeviceEvent.device_id == dev.id)) or 0
    details: dict[str, Any] = {"source": "ddi", "action_id": action_id}
    if fb is not None:
        details.update(execution=fb.execution, finished=fb.finished)
        if fb.messages:
            details["messages"] = fb.messages
        if fb.progress:
            details["progress"] = fb.progress
    if message:
        details["message"] = message
    s.add(
        DeviceEvent(
            tenant_id=dev.tenant_id,
            device_id=dev.id,
            seq=max(int(last), dev.report_seq or 0) + 1,
            kind="update",
            phase=status if status in PHASES else None,
            release_id=release_id,
            details=details,
            device_time=None,
            at=utcnow(),
        )
    )
