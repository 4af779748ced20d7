"""Shared helpers for benchmarks: the machine's description and result files."""

from __future__ import annotations

import datetime as dt
import os
import platform
import subprocess
from pathlib import Path

HERE = Path(__file__).resolve().parent
CACHE = HERE / ".cache"
RESULTS = HERE / "results"


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    kernel = platform.release()
    py = platform.python_version()
    return f"{os.cpu_count()} cores ({cpu}), {mem:.0f} GiB RAM, Linux {kernel}, Python {py}"


def write_result(name: str, title: str, table: list[list[str]], notes: str = "") -> Path:
    RESULTS.mkdir(exist_ok=True)
    head, *rows = table
    lines = [
        f"# {title}",
        "",
        f"- date: {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M UTC}",
        f"- machine: {machine()}",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    if notes:
        lines += ["", notes]
    out = RESULTS / f"{name}.md"
    out.write_text("\n".join(lines) + "\n")
    print(out.read_text())
    return out


def run(cmd: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, check=True, **kw)  # type: ignore[call-overload, no-any-return]
