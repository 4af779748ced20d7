"""The OS-update state machine: typed state, pure transitions, and an atomic on-disk store.

The orchestrator (updater.py) writes the state *before* each side effect; on start it asks
`resume()` what a persisted phase means given the slot the bootloader actually booted.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import asdict, dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import Any

from .errors import StateError

__all__ = ["Phase", "ReleaseRef", "Resume", "StateStore", "UpdateState", "resume", "wants_update"]

_SHA256 = re.compile(r"[0-9a-f]{64}")
MAX_INSTALL_ATTEMPTS = 3
MAX_REBOOT_ATTEMPTS = 3


class Phase(StrEnum):
    IDLE = "idle"
    DOWNLOADING = "downloading"
    DOWNLOADED = "downloaded"  # verified on disk; waiting until the install is allowed (download-only, maintenance window)
    INSTALLING = "installing"
    REBOOTING = "rebooting"
    VERIFYING = "verifying"
    ROLLING_BACK = "rolling_back"  # health check failed: slot marked bad, rebooting into the old one


@dataclass(frozen=True)
class ReleaseRef:
    id: int
    version: str
    compatible: str
    sha256: str
    size: int
    url: str
    signed_url: str | None = None
    install: bool = True  # False: download only, or the maintenance window is closed
    action_id: int | None = None  # the server's rollout action, when a rollout sent it
    # The delta bundle the server offers for the version this device runs (smaller than the full bundle).
    delta_from: str | None = None
    delta_sha256: str | None = None
    delta_size: int | None = None
    delta_url: str | None = None
    delta_signed_url: str | None = None
    format: str = "plain"  # the bundle's format: RAUC streams only verity (and crypt) bundles

    @classmethod
    def from_wire(cls, d: dict[str, Any]) -> ReleaseRef:
        """The release from the server's desired state; a malformed one is a ValueError naming what is wrong."""
        try:
            return cls._from_wire(d)
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise ValueError(f"malformed release in the desired state: {type(e).__name__}: {e}") from None

    @classmethod
    def _from_wire(cls, d: dict[str, Any]) -> ReleaseRef:
        action = d.get("action") or {}
        delta = d.get("delta") or {}
        for digest in (d["sha256"], delta.get("sha256") if delta else "0" * 64):
            if not (isinstance(digest, str) and _SHA256.fullmatch(digest)):
                raise ValueError(f"sha256 {digest!r} is not 64 hex digits")
        return cls(
            int(d["id"]),
            str(d["version"]),
            str(d["compatible"]),
            str(d["sha256"]),
            int(d["size"]),
            str(d["url"]),
            d.get("signed_url"),
            bool(action.get("install", True)),
            int(action["id"]) if action.get("id") is not None else None,
            str(delta["from_version"]) if delta else None,
            str(delta["sha256"]) if delta else None,
            int(delta["size"]) if delta else None,
            str(delta["url"]) if delta else None,
            delta.get("signed_url") if delta else None,
            str(d.get("format") or "plain"),
        )

    def delta_for(self, running: str | None) -> ReleaseRef | None:
        """The delta bundle as an artifact to download, when it applies to the version running; else None."""
        if not self.delta_sha256 or not self.delta_url or self.delta_size is None or running != self.delta_from:
            return None
        return replace(self, sha256=self.delta_sha256, size=self.delta_size, url=self.delta_url, signed_url=self.delta_signed_url)

    @property
    def attempt(self) -> str:
        """What a give-up is remembered by: a new rollout action (a retry) is a new attempt."""
        return f"{self.id}@{self.action_id}" if self.action_id is not None else str(self.id)


@dataclass(frozen=True)
class UpdateState:
    phase: Phase = Phase.IDLE
    release: ReleaseRef | None = None
    from_slot: str | None = None  # the slot booted when the install started
    target_slot: str | None = None  # the slot RAUC installed into
    install_attempts: int = 0
    reboot_attempts: int = 0
    reason: str | None = None
    given_up: dict[str, str] = field(default_factory=dict)  # release id -> why it failed or rolled back
    artifact: str | None = None  # what was installed: "delta", "full" or "stream"
    download_bytes: int = 0  # size of what was downloaded for this update
    delta_refused: str | None = None  # why RAUC refused the delta bundle: the full bundle is used instead

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["phase"] = self.phase.value
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> UpdateState:
        """The state from its JSON document; anything malformed is a StateError."""
        try:
            return cls._from_json(d)
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise StateError(f"the update state is malformed: {type(e).__name__}: {e}") from None

    @classmethod
    def _from_json(cls, d: dict[str, Any]) -> UpdateState:
        rel = d.get("release")
        return cls(
            phase=Phase(d.get("phase", "idle")),
            release=ReleaseRef(**rel) if rel else None,
            from_slot=d.get("from_slot"),
            target_slot=d.get("target_slot"),
            install_attempts=int(d.get("install_attempts", 0)),
            reboot_attempts=int(d.get("reboot_attempts", 0)),
            reason=d.get("reason"),
            given_up=dict(d.get("given_up") or {}),
            artifact=d.get("artifact"),
            download_bytes=int(d.get("download_bytes") or 0),
            delta_refused=d.get("delta_refused"),
        )

    def to(self, phase: Phase, **changes: Any) -> UpdateState:
        return replace(self, phase=phase, **changes)

    def finish(self, outcome: str | None = None) -> UpdateState:
        """Back to idle; a failed or rolled-back release is remembered so it is not retried in a loop."""
        given_up = dict(self.given_up)
        if outcome and self.release is not None:
            given_up[self.release.attempt] = outcome
        return UpdateState(given_up=given_up)


def wants_update(state: UpdateState, desired: ReleaseRef | None, booted_version: str | None) -> bool:
    """An idle agent starts an update when the desired release differs from what runs and was not given up."""
    if state.phase is not Phase.IDLE or desired is None:
        return False
    return desired.version != booted_version and desired.attempt not in state.given_up


@dataclass(frozen=True)
class Resume:
    """What to do with a persisted phase after a (re)start: the next phase and, if finished, the outcome."""

    phase: Phase
    outcome: str | None = None  # success | failure | rolled_back when the update is over
    reason: str | None = None


def resume(state: UpdateState, booted: str, primary: str | None, target_installed: bool) -> Resume:
    """Decide, from the persisted phase and what the bootloader did, how an interrupted update continues.

    `booted` is the slot running now, `primary` the slot the bootloader will try next, and
    `target_installed` whether RAUC's status says the target slot holds the release's bundle.
    """
    p = state.phase
    on_new = state.from_slot is not None and booted != state.from_slot
    if p in (Phase.IDLE, Phase.DOWNLOADING, Phase.DOWNLOADED):
        return Resume(p)
    if p is Phase.INSTALLING:
        if on_new:
            return Resume(Phase.VERIFYING)  # the install finished and the device rebooted before we noted it
        if target_installed and primary is not None and primary != booted:
            return Resume(Phase.REBOOTING)  # RAUC finished (new slot is primary) but the reboot did not happen
        if state.install_attempts >= MAX_INSTALL_ATTEMPTS:
            return Resume(Phase.IDLE, "failure", f"install interrupted {state.install_attempts} times; giving up")
        return Resume(Phase.INSTALLING)  # redo the install: RAUC rewrites the inactive slot from the start
    if p is Phase.REBOOTING:
        if on_new:
            return Resume(Phase.VERIFYING)
        if primary == state.target_slot and state.reboot_attempts < MAX_REBOOT_ATTEMPTS:
            return Resume(Phase.REBOOTING)  # the reboot did not happen yet (or power failed first): reboot again
        return Resume(
            Phase.IDLE,
            "rolled_back",
            f"the bootloader did not start slot {state.target_slot}; it booted {booted} (the old slot) instead",
        )
    if p is Phase.VERIFYING:
        if on_new:
            return Resume(Phase.VERIFYING)
        return Resume(
            Phase.IDLE,
            "rolled_back",
            f"slot {state.target_slot} failed before it was marked good (boot counting fell back to {booted})",
        )
    # ROLLING_BACK: the health check failed; we marked the new slot bad and rebooted.
    if on_new:
        if state.reboot_attempts < MAX_REBOOT_ATTEMPTS:
            return Resume(Phase.ROLLING_BACK)
        return Resume(Phase.IDLE, "failure", f"could not leave the failed slot {booted}: {state.reason}")
    return Resume(Phase.IDLE, "rolled_back", state.reason or "health check failed")


class StateStore:
    """Persists a JSON document atomically: temp file, fsync, rename, fsync of the directory."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> UpdateState:
        try:
            doc = json.loads(self.path.read_bytes())
        except FileNotFoundError:
            return UpdateState()
        except (OSError, ValueError, RecursionError) as e:
            raise StateError(f"cannot read the update state {self.path}: {e}") from None
        if not isinstance(doc, dict):
            raise StateError(f"the update state {self.path} is not a JSON object")
        return UpdateState.from_json(doc)

    def save(self, state: UpdateState) -> None:
        try:
            write_atomic(self.path, json.dumps(state.to_json(), indent=1).encode())
        except OSError as e:
            raise StateError(f"cannot write the update state {self.path}: {e}; the data partition must be writable") from None


def write_atomic(path: Path, data: bytes, mode: int = 0o600) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
