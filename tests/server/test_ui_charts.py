"""The UI's server-side charts (ui/charts.py, ui/plots.py): pure geometry, no browser."""

from __future__ import annotations

import datetime as dt

from bulkhead.server.services.rollout_timeline import build
from bulkhead.server.ui.charts import LEFT, PLOT_H, PLOT_W, RIGHT, TOP, Series, bar_chart, step_chart
from bulkhead.server.ui.plots import exposure_chart, rollout_chart

T0 = dt.datetime(2026, 12, 1, 8, 0, tzinfo=dt.UTC)
BOTTOM = PLOT_H - 26


def _points(path: str) -> list[tuple[float, float]]:
    return [(float(x), float(y)) for x, y in (p.split(",") for p in path.split())]


def test_bar_chart_sums_the_tail_into_one_bar_and_scales_to_the_biggest() -> None:
    chart = bar_chart([(f"v{i}", 20 - i) for i in range(15)])
    assert len(chart.bars) == 12 and chart.bars[-1].label == "4 other versions" and chart.total == sum(range(6, 21))
    assert chart.bars[0].width > chart.bars[1].width > 0


def test_a_step_line_holds_each_value_until_the_next_point_and_spans_the_chart() -> None:
    hour = dt.timedelta(hours=1)
    chart = step_chart(T0, T0 + 2 * hour, [Series("up", "ok", [(T0 + hour, 10)], initial=0)])
    [line] = chart.lines
    pts = _points(line.path)
    mid = LEFT + (PLOT_W - RIGHT - LEFT) / 2
    assert chart.y_max == 10 and line.last == 10
    assert pts == [(LEFT, BOTTOM), (mid, BOTTOM), (mid, TOP), (PLOT_W - RIGHT, TOP)], "0 until the middle, then 10"
    assert chart.start_label == "2026-12-01 08:00 UTC" and chart.end_label == "2026-12-01 10:00 UTC"


def test_the_y_axis_tops_at_a_round_number_and_an_empty_chart_draws_zero() -> None:
    for top, want in ((0, 1), (3, 5), (7, 10), (11, 20), (230, 500), (100_000, 100_000)):
        assert step_chart(T0, T0, [Series("n", "ok", [(T0, top)])]).y_max == want
    flat = step_chart(T0, T0, [Series("n", "ok", [], initial=0)])
    assert flat.lines[0].last == 0 and _points(flat.lines[0].path)[0] == (LEFT, BOTTOM)


def test_rollout_chart_draws_three_lines_from_zero() -> None:
    t = build(T0, 60.0, 3, [("succeeded", 1, 4), ("failed", 2, 1)])
    chart = rollout_chart(t)
    assert [(line.name, line.last) for line in chart.lines] == [("succeeded", 4), ("failed", 1), ("canceled", 0)]
    assert all(_points(line.path)[0] == (LEFT, BOTTOM) for line in chart.lines)


def test_exposure_chart_starts_at_the_sample_in_force_and_ends_now() -> None:
    def sample(at: dt.datetime, devices: int, cves: int) -> dict[str, object]:
        return {"at": at.isoformat(), "cause": "scan", "cves": cves, "kev": 0, "devices": devices, "by_severity": {}}

    now = {"at": (T0 + dt.timedelta(days=2)).isoformat(), "cves": 1, "kev": 0, "devices": 0, "by_severity": {}}
    history = {"since": T0.isoformat(), "now": now, "before": sample(T0 - dt.timedelta(days=5), 3, 2), "samples": []}
    chart = exposure_chart(history)
    assert chart is not None
    devices, cves = chart.lines
    assert (devices.name, devices.last, cves.last) == ("exposed devices", 0, 1)
    assert _points(devices.path)[0] == (LEFT, BOTTOM - (BOTTOM - TOP) * 3 / 5), "3 of a 5-high axis at the start"
    assert exposure_chart({**history, "before": None}) is None, "never sampled: no plot"
