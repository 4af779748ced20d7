"""RAUC adapter: status, install with progress, mark-good/bad/active, through the `rauc` command (which talks D-Bus)."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .command import run_tool
from .errors import RaucError

__all__ = ["Rauc", "RaucStatus", "SlotInfo", "parse_progress", "parse_status"]

_PROGRESS = re.compile(r"^\s*(\d{1,3})%\s+(.*)$")


@dataclass(frozen=True)
class SlotInfo:
    name: str
    bootname: str | None
    state: str
    boot_status: str | None
    version: str | None
    status: str | None  # RAUC's slot status after the last install ("ok", "failed", ...)


@dataclass(frozen=True)
class RaucStatus:
    compatible: str
    booted: str
    primary: str | None  # bootname of the slot the bootloader tries next
    slots: tuple[SlotInfo, ...]

    def bootable(self) -> list[SlotInfo]:
        return [s for s in self.slots if s.bootname]

    def slot(self, bootname: str) -> SlotInfo | None:
        return next((s for s in self.slots if s.bootname == bootname), None)

    def booted_version(self) -> str | None:
        slot = self.slot(self.booted)
        return slot.version if slot else None

    def to_json(self) -> dict[str, Any]:
        return {
            "compatible": self.compatible,
            "booted": self.booted,
            "primary": self.primary,
            "slots": {
                s.name: {"bootname": s.bootname, "state": s.state, "boot_status": s.boot_status, "version": s.version}
                for s in self.slots
            },
        }


def parse_status(doc: Mapping[str, Any]) -> RaucStatus:
    """`rauc status --detailed --output-format=json` (RAUC 1.8 and newer) as typed data."""
    slots: list[SlotInfo] = []
    for entry in doc.get("slots") or []:
        for name, info in entry.items():
            st = info.get("slot_status") or {}
            bundle = st.get("bundle") or {}
            slots.append(
                SlotInfo(
                    name,
                    info.get("bootname"),
                    info.get("state", ""),
                    info.get("boot_status"),
                    bundle.get("version"),
                    st.get("status"),
                )
            )
    by_name = {s.name: s for s in slots}
    primary_slot = by_name.get(doc.get("boot_primary") or "")
    return RaucStatus(
        compatible=str(doc.get("compatible", "")),
        booted=str(doc.get("booted", "")),
        primary=primary_slot.bootname if primary_slot else None,
        slots=tuple(sorted(slots, key=lambda s: s.name)),
    )


def parse_progress(line: str) -> tuple[int, str] | None:
    m = _PROGRESS.match(line)
    return (min(int(m.group(1)), 100), m.group(2).strip()) if m else None


class Rauc:
    """Runs `rauc` (the client of the RAUC D-Bus service); the environment selects the bus."""

    def __init__(self, command: tuple[str, ...] = ("rauc",), env: Mapping[str, str] | None = None, timeout: float = 3600) -> None:
        self.command, self.env, self.timeout = command, dict(env) if env is not None else None, timeout

    def _run(self, *args: str, timeout: float = 60) -> str:
        label = f"rauc {' '.join(args)}"
        return run_tool(self.command, args, RaucError, "the agent needs RAUC on the device", label, timeout, self.env)

    def status(self) -> RaucStatus:
        out = self._run("status", "--detailed", "--output-format=json")
        try:
            return parse_status(json.loads(out))
        except (ValueError, AttributeError) as e:
            raise RaucError(f"could not read 'rauc status' output: {e}") from None

    def install(self, source: str, on_progress: Callable[[int, str], None] | None = None) -> None:
        """Install a bundle (path or URL); progress lines from RAUC are passed on as (percent, message)."""
        try:
            proc = subprocess.Popen(
                [*self.command, "install", source], env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
            )
        except FileNotFoundError:
            raise RaucError(f"'{self.command[0]}' is not installed: the agent needs RAUC on the device") from None
        tail: list[str] = []
        assert proc.stdout is not None
        for line in proc.stdout:
            tail = [*tail, line.rstrip()][-12:]
            p = parse_progress(line)
            if p is not None and on_progress is not None:
                on_progress(*p)
        try:
            code = proc.wait(self.timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise RaucError(f"RAUC install did not finish within {self.timeout:.0f} s") from None
        if code != 0:
            errors = [t for t in tail if "rror" in t or "fail" in t.lower()] or tail[-3:]
            raise RaucError("RAUC install failed: " + " | ".join(errors))

    def version(self) -> tuple[int, int] | None:
        """RAUC's (major, minor) from `rauc --version`, or None when it cannot be told."""
        try:
            out = self._run("--version", timeout=20)
        except RaucError:
            return None
        m = re.search(r"\b(\d+)\.(\d+)", out)
        return (int(m.group(1)), int(m.group(2))) if m else None

    def mark_good(self) -> None:
        self._run("status", "mark-good", "booted")

    def mark_bad(self, slot: str = "booted") -> None:
        self._run("status", "mark-bad", slot)

    def mark_active(self, slot: str = "booted") -> None:
        self._run("status", "mark-active", slot)
