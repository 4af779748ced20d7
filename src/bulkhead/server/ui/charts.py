"""Server-rendered charts: the geometry of a horizontal bar chart, drawn as inline SVG by a template (no JavaScript).

Only numbers and the rows' own labels leave here; the template writes them, autoescaped, into the SVG.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Bar", "BarChart", "bar_chart"]

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
