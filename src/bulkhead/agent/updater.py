"""The OS-update orchestrator: drives the state machine of state.py through download, RAUC, reboot and health."""

from __future__ import annotations

import datetime as dt
import logging
import re
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from bulkhead.protocol import EventKind, SecurityEvent, UpdatePhase

from . import security
from .client import Client
from .download import discard_downloads, fetch_release
from .errors import IntegrityError, RaucError
from .health import Check, run_checks
from .outbox import Outbox
from .rauc import Rauc, RaucStatus
from .state import Phase, ReleaseRef, StateStore, UpdateState, resume, wants_update, write_atomic
from .update_lock import UpdateLock

__all__ = ["Updater", "delta_refusal"]

_BEFORE_INSTALL = (Phase.IDLE, Phase.DOWNLOADING, Phase.DOWNLOADED)
DEFAULT_LOCK_MAX = 3600.0  # seconds an application's update lock may delay an install when the server says nothing
_HOOK_EXIT = re.compile(r"slot hook: Child process exited with code (\d+)")
# The delta install hook's exit codes (bulkhead/delta/patch.py, a standalone file inside every delta bundle: the
# agent on the device does not ship it, so the protocol is these numbers; tests/agent pins both sides together).
DELTA_REFUSALS = {
    3: "the booted slot is not the image this delta was made from (modified, or another build); nothing was written",
    4: "the delta's patch is damaged: the rebuilt image does not match the release's sha256; the slot was not marked",
    5: "the install hook cannot tell which slot is booted (no rauc.slot= or system.conf); nothing was written",
}

log = logging.getLogger(__name__)


class Updater:
    def __init__(
        self,
        client: Client,
        rauc: Rauc,
        store: StateStore,
        outbox: Outbox,
        downloads: Path,
        reboot: Callable[[], None],
        checks: Callable[[], list[tuple[str, Check]]],
        health_deadline: float,
        fallback_version: Callable[[], str | None],
        rate_limit: int | None = None,
        streaming: bool | None = False,
        on_progress_flush: Callable[[], None] = lambda: None,
        deltas: bool = True,
        delta_fallback: bool = True,
        slot_path: Path | None = None,
        lock: UpdateLock | None = None,
    ) -> None:
        self.client, self.rauc, self.store, self.outbox = client, rauc, store, outbox
        self.downloads, self.reboot, self.checks = downloads, reboot, checks
        self.health_deadline, self.fallback_version = health_deadline, fallback_version
        self.rate_limit, self.streaming, self.flush = rate_limit, streaming, on_progress_flush
        self.deltas, self.delta_fallback = deltas, delta_fallback
        # The slot the agent last saw booted (or booted by its own update): a boot into another one while no update
        # is in flight is a security event (someone or something switched slots behind the agent's back).
        self.slot_path = slot_path
        self._tampered: set[tuple[int, str]] = set()  # downloads reported as tampered (one event per release and digest)
        self.sleep: Callable[[float], None] = time.sleep  # between download retries (tests make it instant)
        self.lock = lock  # an application's update lock (update_lock.py); None: none is honoured
        self.clock: Callable[[], float] = time.time  # when the lock was found held (tests move it)

    # -- helpers ------------------------------------------------------------------------
    def can_stream(self, rel: ReleaseRef) -> bool:
        """Whether RAUC streams this release itself: verity (or crypt) bundles, RAUC 1.10+ (or configured so)."""
        if self.streaming is None:  # auto: ask RAUC once
            v = self.rauc.version()
            self.streaming = v is not None and v >= (1, 10)
            log.info(
                "RAUC %s: %s",
                ".".join(map(str, v)) if v else "of unknown version",
                "streams" if self.streaming else "downloads first",
            )
        return bool(self.streaming) and rel.format in ("verity", "crypt") and bool(rel.signed_url)

    def booted_version(self, status: RaucStatus) -> str | None:
        return status.booted_version() or self.fallback_version()

    def _save(self, state: UpdateState, report: bool = True, **details: object) -> UpdateState:
        self.store.save(state)
        if report and state.release is not None:
            self.outbox.add(EventKind.UPDATE, state.phase.value, state.release.id, version=state.release.version, **details)
        return state

    def _known_slot(self) -> str | None:
        if self.slot_path is None:
            return None
        try:
            return self.slot_path.read_text().strip() or None
        except OSError:
            return None

    def _note_slot(self, booted: str) -> None:
        if self.slot_path is not None and booted and self._known_slot() != booted:
            write_atomic(self.slot_path, booted.encode())

    def _check_slot(self, status: RaucStatus) -> None:
        """No update in flight: the booted slot must be the one the agent last knew (else a security event)."""
        known = self._known_slot()
        if known is not None and status.booted and known != status.booted:
            why = f"booted slot {status.booted}, but no update of the agent's asked for it (the last booted slot was {known})"
            log.warning("security: %s", why)
            security.report(
                self.outbox, SecurityEvent.UNEXPECTED_SLOT_CHANGE, why, None, status.booted_version(),
                slot=status.booted, expected_slot=known,
            )  # fmt: skip
        self._note_slot(status.booted)

    def _finish(self, state: UpdateState, outcome: str, reason: str | None, status: RaucStatus | None = None) -> UpdateState:
        rel = state.release
        done = state.finish(None if outcome == "success" else outcome)
        if rel is not None and outcome == "rolled_back":
            security.report(
                self.outbox, SecurityEvent.HEALTH_ROLLBACK, reason or "the update rolled back", rel.id, rel.version,
                slot=status.booted if status is not None else None,
            )  # fmt: skip
        if status is not None:
            self._note_slot(status.booted)
        if rel is not None:
            if outcome == "success":
                done.given_up.pop(rel.attempt, None)
            details: dict[str, object] = {"version": rel.version}
            if reason:
                details["reason"] = reason
            if status is not None:
                details["slot"] = status.booted
            if state.artifact:
                details["artifact"], details["download_bytes"] = state.artifact, state.download_bytes
            if state.delta_refused:
                details["delta_refused"] = state.delta_refused
            self.outbox.add(EventKind.UPDATE, outcome, rel.id, **details)
        log.info("update %s: %s%s", rel.version if rel else "?", outcome, f" ({reason})" if reason else "")
        self.store.save(done)
        discard_downloads(self.downloads)
        return done

    # -- after a (re)start --------------------------------------------------------------
    def resume_after_start(self) -> None:
        state = self.store.load()
        if state.phase is Phase.IDLE or state.release is None:
            # Nothing in flight: this boot is a normal one, so confirm the slot (as rauc-mark-good.service does).
            self.rauc.mark_good()
            return
        status = self.rauc.status()
        other = state.target_slot or next((s.bootname for s in status.bootable() if s.bootname != state.from_slot), None)
        slot = status.slot(other) if other else None
        installed = slot is not None and slot.version == state.release.version and slot.status in (None, "ok")
        r = resume(state, status.booted, status.primary, installed)
        log.info(
            "resuming update to %s: persisted phase %s, booted %s -> %s",
            state.release.version,
            state.phase.value,
            status.booted,
            r.phase.value,
        )
        if r.outcome is not None:
            if r.outcome == "rolled_back":
                try:
                    self.rauc.mark_active("booted")  # make the running slot primary again
                except RaucError as e:
                    log.warning("could not make the booted slot primary: %s", e)
            self._finish(state, r.outcome, r.reason, status)
        elif r.phase is not state.phase:
            target = state.target_slot or (status.booted if r.phase is Phase.VERIFYING else None)
            self._save(state.to(r.phase, target_slot=target))

    # -- one pass -----------------------------------------------------------------------
    def step(self, desired: ReleaseRef | None) -> None:
        """Drive the update as far as it can go now (until idle, or until the reboot is requested). The agent holds
        the update lock only while an install or its reboot is under way: a pass that ends before (a failed download,
        a closed window, a canceled release, the end) lets applications have it again."""
        try:
            self._step(desired)
        finally:
            if self.lock is not None and self.lock.held and self.store.load().phase in _BEFORE_INSTALL:
                self.lock.release()

    def _step(self, desired: ReleaseRef | None) -> None:
        state = self.store.load()
        status = self.rauc.status()
        if state.phase is Phase.IDLE:
            self._check_slot(status)
            if desired is None or not wants_update(state, desired, self.booted_version(status)):
                return
            if desired.compatible != status.compatible:
                state = UpdateState(release=desired, given_up=state.given_up)
                self._finish(state, "failure", f"release is for '{desired.compatible}' but this device is '{status.compatible}'")
                return
            state = self._save(UpdateState(Phase.DOWNLOADING, desired, from_slot=status.booted, given_up=state.given_up))
        if state.phase is Phase.DOWNLOADING:
            assert state.release is not None
            if desired is None or desired.id != state.release.id:
                self._finish(state, "canceled", "the desired release changed before the install started")
                return
            source, state = self._download(state, desired, status)
            if not desired.install:
                self._save(state.to(Phase.DOWNLOADED, release=desired), reason=_why_waiting(desired))
                return
            if self._locked(state, desired):
                return
            state = self._install(state, source, desired, status)
        elif state.phase is Phase.DOWNLOADED:
            assert state.release is not None
            if desired is None:
                return  # the action is over (download-only): keep the verified artifact for a later install
            if desired.id != state.release.id:
                self._finish(state, "canceled", "the desired release changed before the install started")
                return
            if not desired.install:
                if desired.action_id != state.release.action_id:
                    self._save(state.to(Phase.DOWNLOADED, release=desired), reason=_why_waiting(desired))
                return
            if self._locked(state, desired):
                return
            state = state.to(Phase.DOWNLOADED, release=desired)
            source, state = self._download(state, desired, status)
            state = self._install(state, source, desired, status)
        elif state.phase is Phase.INSTALLING:
            assert state.release is not None
            fresh = desired if desired and desired.id == state.release.id else state.release
            source, state = self._download(state, fresh, status)
            state = self._install(state, source, fresh, status)
        if state.phase in (Phase.REBOOTING, Phase.ROLLING_BACK):
            self._reboot(state)
            return
        if state.phase is Phase.VERIFYING:
            self._verify(state, status)

    def _locked(self, state: UpdateState, desired: ReleaseRef) -> bool:
        """Whether the install waits for an application's update lock. The agent takes the lock when it is free and
        keeps it through the install and the reboot; while an application holds it the bundle stays downloaded, the
        wait is reported once, and it ends at the server's maximum (then the install goes ahead, said so)."""
        if self.lock is None or self.lock.take():
            return False
        now = self.clock()
        since = state.lock_since if state.lock_since is not None else now
        limit = desired.lock_max if desired.lock_max is not None else DEFAULT_LOCK_MAX
        if now - since >= limit:
            log.warning("update %s: the update lock is held past the server's maximum; installing", desired.version)
            self._save(
                replace(state, lock_since=None),
                reason=f"the update lock {self.lock.path} was held longer than the server's maximum ({limit:.0f} s): "
                "installing anyway",
            )
            return False
        if state.lock_since is None or state.phase is not Phase.DOWNLOADED:
            until = dt.datetime.fromtimestamp(since + limit, dt.UTC).isoformat(timespec="seconds")
            self._save(
                replace(state.to(Phase.DOWNLOADED, release=desired), lock_since=since),
                reason=f"waiting for the update lock {self.lock.path}: an application holds it; the install starts when "
                f"it is released, at the latest at {until}",
            )
        return True

    def _download(self, state: UpdateState, fresh: ReleaseRef, status: RaucStatus) -> tuple[str, UpdateState]:
        """Fetch the smallest artifact that applies: the delta bundle for the running version, a RAUC stream, or
        the full bundle. Returns what to hand RAUC and the state noting which artifact it is."""
        rel = state.release
        assert rel is not None
        delta = fresh.delta_for(self.booted_version(status)) if self.deltas and not state.delta_refused else None
        if delta is not None:
            path = self._fetch(delta, f"delta from {delta.delta_from}")
            return path, replace(state, artifact="delta", download_bytes=delta.size)
        if state.artifact != "stream-failed" and self.can_stream(fresh):
            assert fresh.signed_url is not None
            return fresh.signed_url, replace(state, artifact="stream", download_bytes=0)  # RAUC fetches the ranges itself
        return self._fetch(fresh, "full bundle"), replace(state, artifact="full", download_bytes=fresh.size)

    def _fetch(self, artifact: ReleaseRef, what: str) -> str:
        last = [-1]

        def progress(done: int, total: int) -> None:
            pct = done * 100 // max(total, 1)
            if pct // 10 != last[0] // 10:
                last[0] = pct
                self.outbox.add(
                    "update", "downloading", artifact.id, version=artifact.version, progress=pct, bytes=done, artifact=what
                )
                self.flush()

        try:
            return str(fetch_release(self.client, artifact, self.downloads, progress, self.rate_limit, sleep=self.sleep))
        except IntegrityError as e:
            if (artifact.id, artifact.sha256) not in self._tampered:
                self._tampered.add((artifact.id, artifact.sha256))
                security.report(
                    self.outbox, SecurityEvent.TAMPERED_BUNDLE, str(e), artifact.id, artifact.version,
                    artifact=what, sha256=artifact.sha256,
                )  # fmt: skip
            raise

    def _install(self, state: UpdateState, source: str, fresh: ReleaseRef, status: RaucStatus) -> UpdateState:
        """Count the attempt, install through RAUC, and note the slot it made primary; the next phase is the reboot.

        RAUC refusing a delta bundle (the booted slot is not the image the patch was made from, or the patch is
        damaged) changes nothing on the device: the refusal is reported and, unless `delta_fallback` is off,
        the full bundle is installed instead.
        """
        assert state.release is not None
        state = self._save(state.to(Phase.INSTALLING, install_attempts=state.install_attempts + 1))
        last = [-1]

        def progress(pct: int, message: str) -> None:
            if pct // 20 != last[0] // 20:
                last[0] = pct
                self.outbox.add(
                    "update", "installing", state.release.id if state.release else None, progress=pct, message=message
                )
                self.flush()

        try:
            self.rauc.install(source, progress)
        except RaucError as e:
            rel = state.release
            if state.artifact != "stream" and security.rauc_refusal(str(e)):  # a stream is tried again downloaded
                log.error("security: RAUC refused the bundle of %s: %s", rel.version if rel else "?", e)
                security.report(
                    self.outbox, SecurityEvent.SIGNATURE_REFUSED, str(e), rel.id if rel else None,
                    rel.version if rel else None, artifact=state.artifact,
                    sha256=fresh.delta_sha256 if state.artifact == "delta" else fresh.sha256,
                )  # fmt: skip
            if state.artifact == "stream":  # e.g. RAUC built without streaming support: download the bundle instead
                log.warning("RAUC could not stream the bundle (%s): downloading it", e)
                self.outbox.add(
                    "update", "installing", rel.id if rel else None, version=rel.version if rel else None,
                    message=f"RAUC could not stream the bundle, downloading it instead: {str(e)[-400:]}",
                )  # fmt: skip
                source, state = self._download(replace(state, artifact="stream-failed"), fresh, status)
                return self._install(state, source, fresh, status)
            if state.artifact != "delta":
                self._finish(state, "failure", str(e))
                raise
            why = delta_refusal(str(e))
            log.warning("RAUC refused the delta bundle: %s (%s)", why, e)
            self.outbox.add(
                EventKind.DELTA, UpdatePhase.REFUSED, rel.id if rel else None, version=rel.version if rel else None, reason=why
            )
            state = self._save(replace(state, delta_refused=why), report=False)
            if not self.delta_fallback:
                self._finish(state, "failure", f"delta bundle refused: {why}")
                raise
            source, state = self._download(state, fresh, status)
            return self._install(state, source, fresh, status)
        return self._save(state.to(Phase.REBOOTING, target_slot=self.rauc.status().primary))

    def _reboot(self, state: UpdateState) -> None:
        self._save(state.to(state.phase, reboot_attempts=state.reboot_attempts + 1), report=False)
        self.flush()
        log.info("rebooting (%s)", state.phase.value)
        self.reboot()

    def _verify(self, state: UpdateState, status: RaucStatus) -> None:
        failure = run_checks(self.checks(), self.health_deadline)
        if failure is None:
            self.rauc.mark_good()
            self._finish(state, "success", None, status)
            return
        log.warning("health check failed on slot %s: %s", status.booted, failure)
        state = self._save(
            state.to(Phase.ROLLING_BACK, reason=f"health check failed: {failure}", reboot_attempts=0), reason=failure
        )
        self.rauc.mark_bad("booted")
        self._reboot(state)


def delta_refusal(rauc_error: str) -> str:
    """Why RAUC refused a delta bundle, from the install hook's exit code in RAUC's error (its stderr goes to the log)."""
    m = _HOOK_EXIT.search(rauc_error)
    if m is not None and int(m.group(1)) in DELTA_REFUSALS:
        return DELTA_REFUSALS[int(m.group(1))]
    return rauc_error


def _why_waiting(rel: ReleaseRef) -> str:
    return (
        f"release {rel.version} is on the device; the server does not allow the install now (download-only or outside the window)"
    )
