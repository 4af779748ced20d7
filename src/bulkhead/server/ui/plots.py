"""Pure: the UI's plots over time from the services' answers (a rollout's timeline, the exposure history)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from ..services.rollout_timeline import Timeline
from .charts import Series, StepChart, step_chart

__all__ = ["exposure_chart", "rollout_chart"]

_ROLLOUT_LINES = (("succeeded", "ok"), ("failed", "bad"), ("canceled", "dim"))


def rollout_chart(t: Timeline) -> StepChart:
    """Devices succeeded, failed and canceled, from 0 at the rollout's start."""
    end = t.ends[-1] if t.ends else t.start
    lines = [Series(name, css, list(zip(t.ends, t.series[name], strict=True)), initial=0) for name, css in _ROLLOUT_LINES]
    return step_chart(t.start, end, lines)


def _time(raw: str) -> dt.datetime:
    return dt.datetime.fromisoformat(raw)


def exposure_chart(history: dict[str, Any]) -> StepChart | None:
    """Exposed devices and CVEs affecting devices over the window (None: nothing was ever sampled)."""
    before, samples, now = history["before"], history["samples"], history["now"]
    if before is None and not samples:
        return None
    start, end = _time(history["since"]), _time(now["at"])
    lines = []
    for key, name, css in (("devices", "exposed devices", "bad"), ("cves", "CVEs affecting devices", "warn")):
        points = [(_time(x["at"]), int(x[key])) for x in samples] + [(end, int(now[key]))]
        lines.append(Series(name, css, points, initial=int(before[key]) if before else None))
    return step_chart(start, end, lines)
