"""Interop tests: clients nobody here wrote, against our server."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest


def wait_for(cond: Callable[[], Any], timeout: float, what: str, log: Path) -> Any:
    """Poll `cond` until it returns something true; fail with the client's log tail after `timeout` seconds."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if value := cond():
            return value
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}\n{log.read_text()[-4000:]}")
