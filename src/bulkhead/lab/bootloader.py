"""The lab's bootloader: picks the slot to boot from the boot-state files, with boot counting.

Like GRUB in meta-rauc-community's qemux86-64: try the primary slot while it is good and has
attempts left (each boot uses one; marking the slot good refills them), else fall back to the other.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["BootState", "boot", "choose_slot"]

SLOTS = ("A", "B")


class BootState:
    def __init__(self, directory: Path) -> None:
        self.dir = directory

    def _read(self, name: str, default: str) -> str:
        try:
            return (self.dir / name).read_text().strip() or default
        except FileNotFoundError:
            return default

    def primary(self) -> str:
        return self._read("primary", "A")

    def state(self, slot: str) -> str:
        return self._read(f"state.{slot}", "good")

    def attempts(self, slot: str) -> int:
        try:
            return int(self._read(f"attempts.{slot}", "3"))
        except ValueError:
            return 0

    def write(self, name: str, value: str) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / name).write_text(value + "\n")


def choose_slot(primary: str, states: dict[str, str], attempts: dict[str, int]) -> str | None:
    """The slot to boot: the primary if good with attempts left, else the other good one with attempts left."""
    order = [primary, *[s for s in SLOTS if s != primary]]
    for slot in order:
        if states.get(slot, "good") == "good" and attempts.get(slot, 3) > 0:
            return slot
    return None


def boot(directory: Path) -> str:
    """Choose the slot, use one of its attempts, and record it as the current slot."""
    bs = BootState(directory)
    states = {s: bs.state(s) for s in SLOTS}
    attempts = {s: bs.attempts(s) for s in SLOTS}
    slot = choose_slot(bs.primary(), states, attempts)
    if slot is None:  # nothing bootable: a real board would stop here; the lab boots the primary to show it
        slot = bs.primary()
    else:
        bs.write(f"attempts.{slot}", str(attempts[slot] - 1))
    bs.write("current", slot)
    return slot
