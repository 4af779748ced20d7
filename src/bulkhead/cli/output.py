"""Human output (rich tables) or JSON for scripts."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.table import Table

console = Console()
err_console = Console(stderr=True)


def emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def table(rows: Sequence[dict[str, Any]], columns: Sequence[str], title: str | None = None) -> None:
    t = Table(title=title)
    for c in columns:
        t.add_column(c)
    for r in rows:
        t.add_row(*["" if r.get(c) is None else _fmt(r.get(c)) for c in columns])
    console.print(t)


def record(data: dict[str, Any], title: str | None = None) -> None:
    t = Table(show_header=False, title=title)
    t.add_column("field", style="bold")
    t.add_column("value")
    for k, v in data.items():
        t.add_row(k, _fmt(v))
    console.print(t)


def _fmt(v: Any) -> str:
    if isinstance(v, (list, tuple)):
        return ", ".join(_fmt(x) for x in v)
    if isinstance(v, dict):
        return json.dumps(v, default=str)
    return str(v)
