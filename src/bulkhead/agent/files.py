"""Desired files: verify the checksum, render templates from device attributes, write atomically, run on_change."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import string
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import AgentError, IntegrityError
from .state import write_atomic

__all__ = ["FileResult", "apply_files", "render"]

log = logging.getLogger(__name__)


def render(spec: dict[str, Any], variables: dict[str, str]) -> bytes:
    """The file's bytes after checking the server's sha256; templates use `${name}` from the device attributes."""
    data = base64.b64decode(spec["content_b64"])
    if hashlib.sha256(data).hexdigest() != spec["sha256"]:
        raise IntegrityError(f"file {spec['path']}: content does not match its sha256")
    if spec.get("template"):
        try:
            return string.Template(data.decode()).substitute(variables).encode()
        except (KeyError, ValueError) as e:
            raise AgentError(f"file {spec['path']}: template needs variable {e}; set it as a device attribute") from None
    return data


@dataclass(frozen=True)
class FileResult:
    path: str
    changed: bool
    error: str | None = None


def apply_files(root: Path, specs: list[dict[str, Any]], variables: dict[str, str], ledger: Path) -> list[FileResult]:
    """Place each file under `root`; files this agent placed before and that are no longer desired are removed.

    The ledger (a JSON list of managed paths) is written after the changes, so a crash only repeats work.
    """
    results: list[FileResult] = []
    try:
        previous = set(json.loads(ledger.read_text()))
    except (FileNotFoundError, ValueError):
        previous = set()
    for spec in specs:
        target = root / spec["path"].lstrip("/")
        try:
            data = render(spec, variables)
            mode = int(spec.get("mode", "0644"), 8)
            current = target.read_bytes() if target.exists() else None
            if current == data and (target.stat().st_mode & 0o7777) == mode:
                results.append(FileResult(spec["path"], False))
                continue
            write_atomic(target, data, mode)
            log.info("wrote %s (%d bytes)", target, len(data))
            if spec.get("on_change"):
                r = subprocess.run(["sh", "-c", spec["on_change"]], capture_output=True, text=True, timeout=300, check=False)
                if r.returncode != 0:
                    raise AgentError(
                        f"on_change of {spec['path']} exited {r.returncode}: {(r.stderr or r.stdout).strip()[-300:]}"
                    )
            results.append(FileResult(spec["path"], True))
        except (AgentError, OSError, subprocess.TimeoutExpired) as e:
            results.append(FileResult(spec["path"], False, str(e)))
    wanted = {s["path"] for s in specs}
    for gone in sorted(previous - wanted):
        try:
            os.unlink(root / gone.lstrip("/"))
            results.append(FileResult(gone, True))
        except FileNotFoundError:
            pass
        except OSError as e:
            results.append(FileResult(gone, False, f"could not remove: {e}"))
    write_atomic(ledger, json.dumps(sorted(wanted)).encode())
    return results
