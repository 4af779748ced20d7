"""Pure: the UI's plots over time from the services' answers (a rollout's timeline, the exposure history)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from ..services.rollout_timeline import Timeline
from .charts import Series, StepChart, step_chart

__all__ = ["exposure_chart", "health_chart", "rollout_chart"]

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


def _percent(used: Any, total: Any) -> int | None:
    return round(100 * used / total) if used is not None and total else None


def health_chart(samples: list[dict[str, Any]], start: dt.datetime, end: dt.datetime) -> StepChart | None:
    """CPU, memory and disk use in percent over the window (None: no sample in it)."""
    lines = []
    for name, css, used, total in (("CPU %", "warn", "cpu_percent", None), ("memory %", "ok", "memory_used", "memory_total"),
                                   ("disk %", "bad", "disk_used", "disk_total")):  # fmt: skip
        points = []
        for x in samples:
            v = (round(x[used]) if x[used] is not None else None) if total is None else _percent(x[used], x[total])
            if v is not None:
                points.append((_time(x["at"]), v))
        if points:
            lines.append(Series(name, css, points))
    return step_chart(start, end, lines) if lines else None
