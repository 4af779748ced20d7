"""Server-rendered charts: the geometry of a horizontal bar chart and of lines over time (counts that change in
steps), drawn as inline SVG by templates (no JavaScript).

Only numbers and the rows' own labels leave here; the template writes them, autoescaped, into the SVG.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

__all__ = ["Bar", "BarChart", "Line", "Series", "StepChart", "bar_chart", "step_chart"]

ROW = 22  # px per bar
LABEL = 190  # px for the labels on the left
WIDTH = 640  # the chart's whole width (it scales down with the page: viewBox)
COUNT = 60  # px for the count right of the bar
MAX_BARS = 12  # the rest are summed into one "other versions" bar


@dataclass(frozen=True)
class Bar:
    label: str
    n: int
    y: int
    width: int  # px of the bar


@dataclass(frozen=True)
class BarChart:
    bars: list[Bar]
    width: int
    height: int
    label_width: int
    total: int


def bar_chart(rows: list[tuple[str | None, int]], none_label: str = "not reported") -> BarChart:
    """Bars for (label, count) rows, biggest first as given; a bar's length is its share of the biggest."""
    rows = list(rows)
    if len(rows) > MAX_BARS:
        rest = sum(n for _, n in rows[MAX_BARS - 1 :])
        rows = [*rows[: MAX_BARS - 1], (f"{len(rows) - MAX_BARS + 1} other versions", rest)]
    top = max((n for _, n in rows), default=0) or 1
    span = WIDTH - LABEL - COUNT
    bars = [
        Bar(label if label is not None else none_label, n, i * ROW, max(1, round(span * n / top)) if n else 0)
        for i, (label, n) in enumerate(rows)
    ]
    return BarChart(bars, WIDTH, max(ROW, len(bars) * ROW), LABEL, sum(n for _, n in rows))


# -- lines over time -----------------------------------------------------------------------------------------------
PLOT_W, PLOT_H = 640, 200  # the whole chart
LEFT, BOTTOM, TOP, RIGHT = 56, 26, 10, 12  # margins: y labels on the left, times below


@dataclass(frozen=True)
class Series:
    """One line: a value that holds until its next point (a count of devices, of CVEs)."""

    name: str
    css: str  # the line's class (its colour in the style sheet)
    points: list[tuple[dt.datetime, int]]  # in time order
    initial: int | None = None  # its value at the chart's start (None: the line begins at its first point)


@dataclass(frozen=True)
class Line:
    name: str
    css: str
    path: str  # an SVG polyline's points, "x,y x,y ..."
    last: int  # the value at the chart's end


@dataclass(frozen=True)
class StepChart:
    width: int
    height: int
    left: int
    top: int
    bottom: int  # y of the time axis
    right: int  # x of the chart's end
    lines: list[Line]
    y_max: int
    start_label: str
    end_label: str


def _label(t: dt.datetime, span: dt.timedelta) -> str:
    return t.strftime("%Y-%m-%d %H:%M:%S" if span < dt.timedelta(hours=1) else "%Y-%m-%d %H:%M") + " UTC"


def _nice(n: int) -> int:
    """The y axis' top: the smallest of 1, 2 or 5 times 10^k at or above n (at least 1)."""
    top = 1
    while True:
        for m in (1, 2, 5):
            if m * top >= n:
                return m * top
        top *= 10


def step_chart(start: dt.datetime, end: dt.datetime, series: list[Series]) -> StepChart:
    """Lines from start to end, each holding its value until its next point (counts change in steps)."""
    end = max(end, start + dt.timedelta(seconds=1))
    span = (end - start).total_seconds()
    right, bottom = PLOT_W - RIGHT, PLOT_H - BOTTOM
    values = [v for s in series for _, v in s.points] + [s.initial for s in series if s.initial is not None]
    y_max = _nice(max(values, default=0))

    def x(t: dt.datetime) -> float:
        return LEFT + (right - LEFT) * min(1.0, max(0.0, (t - start).total_seconds() / span))

    def y(v: int) -> float:
        return bottom - (bottom - TOP) * v / y_max

    lines = []
    for s in series:
        pts: list[tuple[float, float]] = []
        value = s.initial
        if value is not None:
            pts.append((x(start), y(value)))
        for t, v in s.points:
            if value is not None:
                pts.append((x(t), y(value)))  # held until now, then the step
            pts.append((x(t), y(v)))
            value = v
        if value is not None:
            pts.append((right, y(value)))
        path = " ".join(f"{a:.1f},{b:.1f}" for a, b in pts)
        lines.append(Line(s.name, s.css, path, value if value is not None else 0))
    return StepChart(PLOT_W, PLOT_H, LEFT, TOP, bottom, right, lines, y_max, _label(start, end - start), _label(end, end - start))
