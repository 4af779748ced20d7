"""Running the device's tools (rauc, podman): one place that turns their failures into the agent's errors."""

from __future__ import annotations

import subprocess
from collections.abc import Mapping, Sequence

from .errors import AgentError

__all__ = ["run_tool"]


def run_tool(
    command: Sequence[str],
    args: Sequence[str],
    error: type[AgentError],
    missing: str,
    label: str,
    timeout: float,
    env: Mapping[str, str] | None = None,
) -> str:
    """Run `command args`; return stdout, or raise `error` naming what failed (`missing` says what to install)."""
    try:
        r = subprocess.run(
            [*command, *args],
            env=dict(env) if env is not None else None,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except FileNotFoundError:
        raise error(f"'{command[0]}' is not installed: {missing}") from None
    except subprocess.TimeoutExpired:
        raise error(f"'{label}' did not finish within {timeout:.0f} s") from None
    if r.returncode != 0:
        raise error(f"'{label}' failed: {(r.stderr or r.stdout).strip()[-600:]}")
    return r.stdout
