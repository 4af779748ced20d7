"""Health checks after booting a new slot: server reachable, required containers running, custom command."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable

__all__ = ["Check", "command_check", "run_checks"]

Check = Callable[[], str | None]  # returns None when healthy, else why not


def command_check(command: str, env: dict[str, str]) -> Check:
    def check() -> str | None:
        try:
            r = subprocess.run(
                ["sh", "-c", command], capture_output=True, text=True, timeout=60, env={**os.environ, **env}, check=False
            )
        except subprocess.TimeoutExpired:
            return f"health command '{command}' did not finish within 60 s"
        if r.returncode != 0:
            return f"health command '{command}' exited {r.returncode}: {(r.stderr or r.stdout).strip()[-200:]}"
        return None

    return check


def run_checks(
    checks: list[tuple[str, Check]], deadline: float, interval: float = 2.0, sleep: Callable[[float], None] = time.sleep
) -> str | None:
    """Retry until every check passes or `deadline` seconds pass; returns None (healthy) or the last failure."""
    end = time.monotonic() + deadline
    while True:
        failure = None
        for name, check in checks:
            try:
                why = check()
            except Exception as e:  # a check that crashes is a failing check, with its reason
                why = f"{type(e).__name__}: {e}"
            if why is not None:
                failure = f"{name}: {why}"
                break
        if failure is None:
            return None
        if time.monotonic() + interval > end:
            return failure
        sleep(interval)
