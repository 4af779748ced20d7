"""Human output (rich tables) or JSON for scripts; one time format for each (ISO 8601 UTC / local relative)."""

from __future__ import annotations

import datetime as dt
import json
import sys
from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

__all__ = [
    "console",
    "emit_json",
    "err_console",
    "error",
    "is_time_key",
    "iso_utc",
    "line",
    "parse_time",
    "record",
    "relative_time",
    "table",
]

console = Console()
err_console = Console(stderr=True)

_TIME_KEYS = frozenset({"last_seen", "device_time", "at"})


def is_time_key(key: str) -> bool:
    """Fields that carry a point in time: `*_at` (created_at, updated_at, ...), last_seen, device_time, at."""
    return key.endswith("_at") or key in _TIME_KEYS


def parse_time(value: Any) -> dt.datetime | None:
    """A datetime or an ISO 8601 string as an aware UTC datetime (naive means UTC, as the server stores it)."""
    if isinstance(value, dt.datetime):
        when = value
    elif isinstance(value, str) and len(value) >= 19 and value[4:5] == "-" and value[10:11] in ("T", " "):
        try:
            when = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    else:
        return None
    return when.replace(tzinfo=dt.UTC) if when.tzinfo is None else when.astimezone(dt.UTC)


def iso_utc(value: Any) -> Any:
    """ISO 8601 in UTC with a Z (`2026-12-02T19:53:52Z`, sub-seconds kept); anything not a time is returned as is."""
    when = parse_time(value)
    if when is None:
        return value
    return when.isoformat().replace("+00:00", "Z")


def relative_time(value: Any, now: dt.datetime | None = None) -> str:
    """For people: '12 s ago', '3 min ago', '5 h ago', '2 days ago', 'in 4 min'; older than a week: the local date."""
    when = parse_time(value)
    if when is None:
        return "" if value is None else str(value)
    now = now or dt.datetime.now(dt.UTC)
    seconds = (now - when).total_seconds()
    ahead, span = seconds < 0, abs(seconds)
    if span >= 7 * 86400:
        return when.astimezone().strftime("%Y-%m-%d %H:%M")
    if span < 5:
        return "just now"
    for size, unit in ((86400, " days"), (3600, " h"), (60, " min"), (1, " s")):
        if span >= size:
            n = int(span // size)
            text = f"{n}{' day' if unit == ' days' and n == 1 else unit}"
            return f"in {text}" if ahead else f"{text} ago"
    return "just now"  # pragma: no cover (span >= 5 above)


def _json_times(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: iso_utc(v) if is_time_key(str(k)) else _json_times(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_json_times(x) for x in data]
    return data


def emit_json(data: Any) -> None:
    """JSON on standard output; every time field in ISO 8601 UTC."""
    sys.stdout.write(json.dumps(_json_times(data), indent=2, default=str) + "\n")


def error(message: str, label: str = "error") -> None:
    """An error on standard error: the message is printed as it is (never read as rich markup)."""
    text = Text(f"{label}:", style="red")
    text.append(f" {message}", style="")
    err_console.print(text, highlight=False, soft_wrap=True)


def line(message: str) -> None:
    """A line on standard error that is never wrapped or read as markup (commands to copy and paste)."""
    err_console.print(message, markup=False, highlight=False, soft_wrap=True)


def table(rows: Sequence[dict[str, Any]], columns: Sequence[str], title: str | None = None) -> None:
    t = Table(title=title)
    for c in columns:
        t.add_column(c)
    for r in rows:
        t.add_row(*["" if r.get(c) is None else _cell(c, r.get(c)) for c in columns])
    console.print(t)


def record(data: dict[str, Any], title: str | None = None) -> None:
    t = Table(show_header=False, title=title)
    t.add_column("field", style="bold")
    t.add_column("value")
    for k, v in data.items():
        t.add_row(k, _cell(k, v))
    console.print(t)


def _cell(key: str, v: Any) -> Text:
    if is_time_key(key) and parse_time(v) is not None:
        return Text(relative_time(v))
    return Text(_fmt(v))


def _fmt(v: Any) -> str:
    if isinstance(v, (list, tuple)):
        return ", ".join(_fmt(x) for x in v)
    if isinstance(v, dict):
        return json.dumps(v, default=str)
    return str(v)
