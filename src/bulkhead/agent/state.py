"""The OS-update state machine: typed state, pure transitions, and an atomic on-disk store.

The orchestrator (updater.py) writes the state *before* each side effect; on start it asks
`resume()` what a persisted phase means given the slot the bootloader actually booted.
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from enum import StrEnum
from pathlib import Path
from typing import Any

from .errors import StateError

__all__ = ["STATE_FORMAT", "Phase", "ReleaseRef", "Resume", "StateStore", "UpdateState", "resume", "wants_update"]

log = logging.getLogger(__name__)
_SHA256 = re.compile(r"[0-9a-f]{64}")
# The state file's format. New optional fields do not change it: readers keep fields they do not know (`extra`)
# and default the ones they miss. It goes up only when an existing field changes meaning, so that an older agent
# must not act on the file; see StateStore.load for what such an agent does.
STATE_FORMAT = 1
_TYPES: dict[str, tuple[type, ...]] = {
    "str": (str,),
    "int": (int,),
    "bool": (bool,),
    "str | None": (str, type(None)),
    "int | None": (int, type(None)),
}


def _own_fields(obj: Any) -> dict[str, Any]:
    return {f.name: getattr(obj, f.name) for f in fields(obj) if f.name != "extra"}


def _split(cls: Any, d: dict[str, Any], special: tuple[str, ...] = ()) -> tuple[dict[str, Any], dict[str, Any]]:
    """The fields `cls` knows (type-checked; `special` ones are left to the caller) and the ones it does not."""
    names = {f.name: f for f in fields(cls) if f.name != "extra"}
    known: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for key, value in d.items():
        f = names.get(key)
        if f is None:
            extra[key] = value
        elif key not in special:
            kinds = _TYPES.get(str(f.type))
            if kinds is not None and (not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds)):
                raise ValueError(f"{key} is {value!r}, expected {f.type}")
            known[key] = value
    return known, extra


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
    lock_max: float | None = None  # the server's longest wait (seconds) for an application's update lock
    # Fields a newer agent wrote that this one does not know: kept, so that writing the state back loses nothing.
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False, repr=False)

    def to_json(self) -> dict[str, Any]:
        return {**self.extra, **_own_fields(self)}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ReleaseRef:
        """The release as the state file keeps it; unknown fields go to `extra`, malformed ones raise ValueError."""
        if not isinstance(d, dict):
            raise ValueError("release is not an object")
        known, extra = _split(cls, d)
        return cls(**known, extra=extra)

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
            float(d["update_lock_max_seconds"]) if d.get("update_lock_max_seconds") is not None else None,
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
    lock_since: float | None = None  # when (Unix time) the install first found an application holding the update lock
    # Fields a newer agent wrote that this one does not know: kept while the update they belong to is in flight.
    extra: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def to_json(self) -> dict[str, Any]:
        d = {**self.extra, **_own_fields(self)}
        d["phase"] = self.phase.value
        d["release"] = self.release.to_json() if self.release is not None else None
        d["given_up"] = dict(self.given_up)
        return {"format_version": STATE_FORMAT, **d}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> UpdateState:
        """The state from its JSON document; anything malformed is a StateError."""
        try:
            return cls._from_json(d)
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise StateError(f"the update state is malformed: {type(e).__name__}: {e}") from None

    @classmethod
    def _from_json(cls, d: dict[str, Any]) -> UpdateState:
        known, extra = _split(cls, {k: v for k, v in d.items() if k != "format_version"}, ("phase", "release", "given_up"))
        rel = d.get("release")
        given_up = d.get("given_up") or {}
        if not isinstance(given_up, dict) or not all(isinstance(v, str) for v in given_up.values()):
            raise ValueError("given_up must map release attempts to reasons")
        return cls(
            **known,
            phase=Phase(d.get("phase", "idle")),
            release=ReleaseRef.from_json(rel) if rel else None,
            given_up={str(k): v for k, v in given_up.items()},
            extra=extra,
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
    """Persists a JSON document atomically: temp file, fsync, rename, fsync of the directory.

    A file this agent cannot act on (written by a newer agent in a newer *major* format, or corrupt) is not
    guessed at: it is moved aside (`update-state.json.unreadable`), the update it describes is abandoned and
    remembered as given up (so the agent does not reinstall it in a loop; the operator retries with a new
    action), and `on_reset` is told so that the agent reports it. The booted slot runs this agent, so the
    normal boot path (mark it good) is the safe one. Fields of a newer *compatible* file are kept instead.
    """

    def __init__(self, path: Path, on_reset: Callable[[str, int | None], None] | None = None) -> None:
        self.path = path
        self.on_reset = on_reset

    def load(self) -> UpdateState:
        try:
            doc = json.loads(self.path.read_bytes())
        except FileNotFoundError:
            return UpdateState()
        except OSError as e:  # the disk, not the content: do not discard anything
            raise StateError(f"cannot read the update state {self.path}: {e}") from None
        except (ValueError, RecursionError) as e:
            return self._set_aside(None, f"is not valid JSON ({e})")
        if not isinstance(doc, dict):
            return self._set_aside(None, "is not a JSON object")
        version = doc.get("format_version", 1)  # files from before the version was written are format 1
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            return self._set_aside(doc, f"has an unknown format_version {version!r}")
        if version > STATE_FORMAT:
            return self._set_aside(doc, f"was written by a newer agent (format {version}; this agent reads {STATE_FORMAT})")
        try:
            return UpdateState.from_json(doc)
        except StateError as e:
            return self._set_aside(doc, f"is malformed ({e})")

    def _set_aside(self, doc: dict[str, Any] | None, why: str) -> UpdateState:
        aside = self.path.with_name(self.path.name + ".unreadable")
        try:
            os.replace(self.path, aside)
        except OSError as e:
            raise StateError(f"the update state {self.path} {why}, and it cannot be moved aside: {e}") from None
        given_up, release_id, attempt = _salvage(doc or {})
        reason = f"the update state {why}; kept as {aside.name}; the update in flight is abandoned"
        if attempt is not None:
            given_up[attempt] = reason
        state = UpdateState(given_up=given_up)
        self.save(state)
        log.error("%s", reason)
        if self.on_reset is not None:
            self.on_reset(reason, release_id)
        return state

    def save(self, state: UpdateState) -> None:
        try:
            write_atomic(self.path, json.dumps(state.to_json(), indent=1).encode())
        except OSError as e:
            raise StateError(f"cannot write the update state {self.path}: {e}; the data partition must be writable") from None


def _salvage(doc: dict[str, Any]) -> tuple[dict[str, str], int | None, str | None]:
    """From a file this agent cannot act on: the given-up attempts and the release in flight, where readable."""
    raw = doc.get("given_up")
    given_up = {str(k): v for k, v in raw.items() if isinstance(v, str)} if isinstance(raw, dict) else {}
    rel = doc.get("release")
    rid = rel.get("id") if isinstance(rel, dict) else None
    if isinstance(rid, bool) or not isinstance(rid, int):
        return given_up, None, None
    action = rel.get("action_id") if isinstance(rel, dict) else None
    attempt = f"{rid}@{action}" if isinstance(action, int) and not isinstance(action, bool) else str(rid)
    return given_up, rid, attempt


def write_atomic(path: Path, data: bytes, mode: int | None = 0o600) -> None:
    """Write `path` whole or not at all, durably. `mode` None: no chmod (a FAT file system has no modes; mkstemp's
    file is the owner's only)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if mode is not None:
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
