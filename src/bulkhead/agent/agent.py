"""The agent's main loop: enroll, poll the desired state, converge (OS, apps, files), report."""

from __future__ import annotations

import json
import logging
import random
import subprocess
import time
from typing import Any

from bulkhead.protocol import EventKind, SecurityEvent, UpdatePhase

from . import inventory, security, support
from .apps import container_name, plan_apps
from .backoff import full_jitter
from .client import Client
from .commands import CommandRunner
from .config import AgentConfig
from .desired import check_state, poll_interval
from .errors import AgentError, BadResponse, PodmanError, RaucError, ServerRejected, ServerUnreachable
from .factory_reset import PREVIOUS_CREDENTIAL, RESET_ATTEMPT, erasure_failed, leave_credential, note_attempt
from .files import apply_files
from .health import Check, command_check
from .metrics import MetricsSampler
from .outbox import Outbox
from .packages import Apt, PackageResult, overlay_files
from .podman import Podman, write_authfile
from .rauc import Rauc
from .state import ReleaseRef, StateStore, write_atomic
from .tunnel import Tunnel
from .update_lock import UpdateLock
from .updater import Updater

__all__ = ["Agent"]

log = logging.getLogger(__name__)


class Agent:
    def __init__(self, cfg: AgentConfig) -> None:
        self.cfg = cfg
        d = cfg.data_dir
        d.mkdir(parents=True, exist_ok=True)
        self.client = Client(cfg.server, cfg.ca_file, client_cert=cfg.client_cert, client_key=cfg.client_key)
        self.credential_path = d / "credential"
        if self.credential_path.exists():
            self.client.credential = self.credential_path.read_text().strip()
        self.outbox = Outbox(d / "outbox")
        self.rauc = Rauc(cfg.rauc_command)
        self.podman = Podman(
            cfg.podman.command, cfg.podman.owner, cfg.podman.run_args, cfg.podman.insecure_registries, d / "registry-auth.json"
        )
        self.desired_path, self.etag_path = d / "desired.json", d / "desired.etag"
        self.interval = 60.0
        self._last_flush = 0.0
        self._last_packages: tuple[float, dict[str, Any]] = (0.0, {})
        self._app_report: str | None = None
        self._package_report: str | None = None
        self._prefetched: dict[str, str | None] = {}  # app:version:action -> last pull error (None: pulled)
        self._refused: int | None = None  # the last release refused for its format, reported once
        self._failures = 0  # passes that failed in a row (backoff)
        self._credential_refused = False  # the server answered 401: enroll again, keeping the credential meanwhile
        self._reset_refused = False  # a factory reset this device cannot carry out was reported
        self._answered = False  # the last poll's document came from the server (200 or 304), not from the disk
        self.commands = CommandRunner(self.client, d)  # an administrator's command lines (agent/commands.py)
        self.metrics = MetricsSampler(cfg.metrics_interval, d)  # health figures, sent with the reports
        self.tunnel = Tunnel(self.client.websocket, cfg.remote_shell, cfg.remote_sessions)  # remote sessions
        self.updater = Updater(
            self.client,
            self.rauc,
            StateStore(d / "update-state.json", self._state_reset),
            self.outbox,
            d / "downloads",
            self._reboot,
            self._checks,
            cfg.health.deadline,
            lambda: inventory.read_os_release(cfg.os_release).get("VERSION_ID"),
            cfg.rate_limit,
            cfg.rauc_streaming,
            self._flush_soon,
            cfg.deltas,
            cfg.delta_fallback,
            d / "booted-slot",
            UpdateLock(cfg.update_lock) if cfg.update_lock is not None else None,
        )

    def _state_reset(self, reason: str, release_id: int | None) -> None:
        """The update state could not be acted on and was set aside (StateStore.load): the server hears why."""
        if release_id is not None:
            self.outbox.add(EventKind.UPDATE, UpdatePhase.FAILURE, release_id, reason=reason)
        else:
            self.outbox.add(EventKind.AGENT, None, None, event="state_reset", reason=reason)

    # -- server ---------------------------------------------------------------------------
    def enroll(self) -> None:
        """Enroll when there is no credential, or after the server refused it (the old one is kept until then)."""
        if self.client.credential and not self._credential_refused:
            return
        if not self.client.credential and self._enroll_after_reset():
            return
        if not self.cfg.bootstrap_token:
            if self.client.credential:
                return  # nothing to enroll with: keep trying the credential (an operator may reset it on the server)
            raise AgentError("no device credential and no bootstrap_token in the config: add one to enroll")
        compatible = self.cfg.compatible or self.rauc.status().compatible
        r = self.client.request(
            "POST",
            "/device/v1/enroll",
            {
                "bootstrap_token": self.cfg.bootstrap_token,
                "name": self.cfg.name,
                "compatible": compatible,
                "attributes": self.cfg.attributes,
            },
            auth=False,
        )
        self._store_credential(r.json())
        self.outbox.add(EventKind.AGENT, None, None, event="enrolled")

    def _enroll_after_reset(self) -> bool:
        """After a factory reset: enroll with the credential the erasure kept (agent/factory_reset.py)."""
        kept = self.cfg.data_dir / PREVIOUS_CREDENTIAL
        try:
            previous = kept.read_text().strip()
        except OSError:
            return False
        compatible = self.cfg.compatible or self.rauc.status().compatible
        body = {"name": self.cfg.name, "compatible": compatible, "attributes": self.cfg.attributes}
        body["previous_credential"] = previous
        try:
            r = self.client.request("POST", "/device/v1/enroll", body, auth=False)
        except ServerRejected as e:
            if e.status not in (401, 422):
                raise
            log.error("the server did not take the credential kept through the factory reset (%s): enrolling as new", e)
            kept.unlink(missing_ok=True)
            return False
        self._store_credential(r.json())
        kept.unlink(missing_ok=True)
        self.outbox.add(EventKind.AGENT, None, None, event="enrolled", factory_reset=True)
        return True

    def _store_credential(self, doc: Any) -> None:
        if not isinstance(doc, dict) or not isinstance(doc.get("credential"), str):
            raise BadResponse("the enrollment answer has no credential")
        if not doc["credential"].isprintable() or not doc["credential"]:
            raise BadResponse("the enrollment answer has no credential")
        write_atomic(self.credential_path, doc["credential"].encode(), 0o600)
        self.client.credential = doc["credential"]
        self._credential_refused = False
        log.info("enrolled as %s (device %s, %s)", doc.get("name"), doc.get("device_id"), doc.get("status"))

    def factory_reset(self, request: dict[str, Any]) -> None:
        """The server asked for a factory reset: leave the credential outside the data partition, say so, reboot;
        the image erases the partition before it is mounted again."""
        marker = self.cfg.factory_reset_marker
        if marker is None or not self.client.credential:
            if not self._reset_refused:
                self._reset_refused = True
                why = "this device's image has no factory reset (no factory_reset_marker in the agent's config)"
                log.error("factory reset requested at %s: %s", request.get("requested_at"), why)
                self.outbox.add(EventKind.AGENT, None, None, event="factory_reset_failed", reason=why)
                self.flush()
            return
        attempt = self.cfg.data_dir / RESET_ATTEMPT  # on the partition the erasure empties
        if erasure_failed(marker, attempt):  # rebooting again would only repeat it
            if not self._reset_refused:
                self._reset_refused = True
                why = (
                    "the data partition was not erased at the last boot (the marker is still in place): see the "
                    "journal of bulkhead-factory-reset.service"
                )
                log.error("factory reset: %s", why)
                self.outbox.add(EventKind.AGENT, None, None, event="factory_reset_failed", reason=why)
                self.flush()
            return
        try:
            note_attempt(attempt)
            leave_credential(marker, self.client.credential)
        except OSError as e:
            raise AgentError(f"factory reset: the credential cannot be kept in {marker}: {e}") from e
        log.warning("factory reset requested at %s: rebooting to erase the data partition", request.get("requested_at"))
        self.outbox.add(EventKind.AGENT, None, None, event="factory_reset", requested_at=request.get("requested_at"))
        self.flush()
        self._reboot()

    def rotate_credential(self, now: float | None = None) -> None:
        """Renew the credential once it is `rotate_credential_days` old (its file's age); a failure waits a pass."""
        days = self.cfg.rotate_credential_days
        if days <= 0 or not self.client.credential or self._credential_refused:
            return
        try:
            age = (now or time.time()) - self.credential_path.stat().st_mtime
        except OSError:
            return
        if age < days * 86400:
            return
        try:
            new = self.client.rotate_credential()
        except (ServerUnreachable, ServerRejected, BadResponse) as e:
            log.warning("credential rotation failed (%s): trying again at the next pass", e)
            return
        write_atomic(self.credential_path, new.encode(), 0o600)  # on disk before it is used (see rotate_credential)
        self.client.credential = new
        log.info("device credential renewed (it was %.0f days old)", age / 86400)
        self.outbox.add(EventKind.AGENT, None, None, event="credential_rotated")

    def poll(self) -> dict[str, Any] | None:
        """The desired state: fresh from the server (ETag/304), or the last one kept on disk when offline."""
        etag = self.etag_path.read_text().strip() if self.etag_path.exists() and self.desired_path.exists() else None
        try:
            r = self.client.request("GET", "/device/v1/state", headers={"if-none-match": etag} if etag else None)
        except ServerRejected as e:
            if e.status == 401:
                # Enroll again, but keep the credential until that works: a 401 from a proxy or captive portal
                # must not cost the device its identity (the server never hands a known name a new one freely).
                log.warning("the server refused this device's credential: enrolling again at the next pass")
                if not self._credential_refused:  # one event per refusal, however many polls it lasts
                    security.report(self.outbox, SecurityEvent.CREDENTIAL_REJECTED, str(e), endpoint="/device/v1/state")
                self._credential_refused = True
            raise
        except ServerUnreachable as e:
            log.warning("server unreachable (%s): working from the last desired state", e)
            self._answered = False
            return self._cached()
        self._answered = True
        if r.status == 304:
            return self._cached()
        try:
            doc = check_state(r.json())
        except BadResponse as e:  # a captive portal, a proxy's error page, a broken answer: keep the last good state
            log.warning("unusable answer to the state poll (%s): working from the last desired state", e)
            self._answered = False
            return self._cached()
        write_atomic(self.desired_path, r.body)
        if r.headers.get("etag"):
            write_atomic(self.etag_path, r.headers["etag"].encode())
        return doc

    def _cached(self) -> dict[str, Any] | None:
        try:
            doc = json.loads(self.desired_path.read_bytes())
            return check_state(doc) if isinstance(doc, dict) else None
        except (OSError, ValueError, RecursionError, BadResponse):
            return None

    def _flush_soon(self) -> None:
        if time.monotonic() - self._last_flush > 2.0:
            self.flush()

    def flush(self) -> None:
        self._last_flush = time.monotonic()
        try:
            self.outbox.flush(self.client)
        except ServerUnreachable as e:
            log.info("reports stay buffered on disk: %s", e)
        except ServerRejected as e:
            log.warning("server refused the reports: %s", e)
        samples = self.metrics.pending()
        if samples:
            try:
                self.client.request("POST", "/device/v1/metrics", {"samples": samples})
                self.metrics.sent(len(samples))
            except ServerUnreachable as e:
                log.info("metrics stay buffered: %s", e)
            except ServerRejected as e:
                log.warning("server refused the metrics (dropped): %s", e)
                if e.status in (400, 422):
                    self.metrics.sent(len(samples))  # they would be refused again

    # -- device actions -------------------------------------------------------------------
    def _reboot(self) -> None:
        r = subprocess.run(list(self.cfg.reboot_command), capture_output=True, text=True, timeout=120, check=False)
        if r.returncode != 0:
            raise AgentError(f"reboot command failed ({r.returncode}): {(r.stderr or r.stdout).strip()[-300:]}")
        time.sleep(600)  # the reboot takes the agent down; if it did not, the next pass reboots again

    def _checks(self) -> list[tuple[str, Check]]:
        checks: list[tuple[str, Check]] = [("server", self._server_reachable)]
        if self.cfg.health.check_apps or self.cfg.health.required_containers:
            checks.append(("containers", self._containers_running))
        if self.cfg.health.check_packages:
            checks.append(("packages", self._packages_as_desired))
        if self.cfg.health.command:
            env = {"BULKHEAD_BOOTED_SLOT": self._booted_slot()}
            checks.append(("command", command_check(self.cfg.health.command, env)))
        return checks

    def _booted_slot(self) -> str:
        try:
            return self.rauc.status().booted
        except RaucError:
            return ""

    def _server_reachable(self) -> str | None:
        try:
            self.client.request("GET", "/healthz", auth=False)
            return None
        except (ServerUnreachable, ServerRejected) as e:
            return str(e)

    def _containers_running(self) -> str | None:
        doc = self._cached() or {}
        apps = doc.get("desired", {}).get("apps") or []
        wanted = set(self.cfg.health.required_containers)
        if self.cfg.health.check_apps:
            wanted |= {a.name for a in plan_apps(self.podman.owner, apps, [])}
        if not wanted or not self.cfg.podman.enabled:
            return None  # a device that runs no containers is not rolled back for what Podman says
        if self.cfg.health.check_apps and apps:
            self.converge_apps(apps, report=False)
        states = self.podman.states()
        down = sorted(n for n in wanted if states.get(n) != "running")
        return f"not running: {', '.join(down)}" if down else None

    def _packages_as_desired(self) -> str | None:
        """After an OS update the new slot has the image's packages: the desired ones are applied on it, and the
        slot is healthy only when dpkg has them as asked (a device without desired packages passes)."""
        doc = self._cached() or {}
        desired = doc.get("desired") or {}
        packages = desired.get("packages") or []
        if not packages:
            return None
        self.converge_packages(desired, doc)
        apt = self._apt()
        if apt.converged(packages):
            return None
        have = apt.installed([p["name"] for p in packages])
        wrong = []
        for p in packages:
            if not apt.converged([p]):
                asked = p.get("version") or ("removed" if p.get("remove") else "installed")
                wrong.append(f"{p['name']} (asked {asked}, has {have.get(p['name'], 'none')})")
        return "packages not as asked: " + ", ".join(wrong)

    def _apt(self) -> Apt:
        env = {"APT_CONFIG": str(self.cfg.apt_config)} if self.cfg.apt_config else None
        return Apt(self.cfg.apt_root, env)

    def converge_apps(self, apps: list[dict[str, Any]], report: bool = True) -> None:
        if not self.cfg.podman.enabled:
            return
        doc = self._cached() or {}
        registries = doc.get("desired", {}).get("registries") or {}
        if registries:
            write_authfile(self.podman.authfile or self.cfg.data_dir / "registry-auth.json", registries)
        errors: dict[str, str] = {}
        for action in plan_apps(self.podman.owner, apps, self.podman.managed()):
            if action.app in errors:
                continue
            try:
                log.info("app %s: %s %s", action.app, action.kind, action.name)
                if action.spec is not None and action.kind in ("create", "recreate"):
                    self.podman.pull(action.spec["image"])  # before the old container goes: a bad image keeps it
                if action.kind in ("remove", "recreate"):
                    self.podman.remove(action.name)
                if action.kind in ("create", "recreate") and action.spec is not None:
                    self.podman.create(action.name, action.app, action.version, action.spec)
                if action.kind == "start":
                    self.podman.start(action.name)
            except PodmanError as e:
                errors[action.app] = str(e)
        if report:
            states = self.podman.states()
            for a in apps:
                down = [
                    c["name"]
                    for c in a["containers"]
                    if states.get(container_name(self.podman.owner, a["name"], c["name"])) != "running"
                ]
                if down and a["name"] not in errors:
                    errors[a["name"]] = f"not running after start: {', '.join(down)}"
            summary = {
                a["name"]: {"version": a["version"], "action": (a.get("action") or {}).get("id"), "error": errors.get(a["name"])}
                for a in apps
            }
            key = json.dumps([summary, sorted(states.items())], sort_keys=True)
            if key != self._app_report:
                self._app_report = key
                for a in apps:
                    phase = UpdatePhase.FAILURE if a["name"] in errors else UpdatePhase.APPLIED
                    self.outbox.add(EventKind.APP, phase, None, app=a["name"], version=a["version"], error=errors.get(a["name"]))

    def prefetch_apps(self, entries: list[dict[str, Any]]) -> None:
        """Pull the images of app versions the device may not run yet (download-only, or outside the window)."""
        if not self.cfg.podman.enabled:
            return
        for e in entries:
            key = f"{e['name']}:{e['version']}:{(e.get('action') or {}).get('id')}"
            if key in self._prefetched and self._prefetched[key] is None:
                continue
            error = None
            try:
                for c in e["containers"]:
                    self.podman.pull(c["image"])
            except PodmanError as err:
                error = str(err)
            if key not in self._prefetched or self._prefetched[key] != error:
                phase = UpdatePhase.FAILURE if error else UpdatePhase.DOWNLOADED
                self.outbox.add(EventKind.APP, phase, None, app=e["name"], version=e["version"], error=error)
            self._prefetched[key] = error

    def collect_inventory(self) -> dict[str, Any]:
        os_release = inventory.read_os_release(self.cfg.os_release)
        os_version = os_release.get("VERSION_ID")
        try:
            status = self.rauc.status()
            rauc = status.to_json()
            os_version = status.booted_version() or os_version
        except RaucError as e:
            rauc = {"error": str(e)}
        containers: list[dict[str, Any]] = []
        if self.cfg.podman.enabled:
            try:
                containers = [
                    {"name": c.name, "app": c.app, "version": c.version, "state": c.state} for c in self.podman.managed()
                ]
            except PodmanError as e:
                containers = [{"error": str(e)}]
        at, pkgs = self._last_packages
        if not pkgs or time.monotonic() - at > self.cfg.packages_interval:
            pkgs = inventory.installed_packages()
            self._last_packages = (time.monotonic(), pkgs)
        return inventory.build(os_version, rauc, os_release, containers, pkgs, inventory.root_filesystem())

    # -- loop -----------------------------------------------------------------------------
    def run_once(self) -> None:
        self.metrics.start()  # once: a thread samples every metrics_interval
        self.enroll()
        self.rotate_credential()
        doc = self.poll()
        if doc is not None:
            try:
                support.write_status(self.cfg.data_dir / support.FILE_NAME, doc)  # what the device's user may be shown
            except OSError as e:
                log.warning("the support status file cannot be written: %s", e)
        if doc is not None and self._answered and isinstance(doc.get("factory_reset"), dict):
            # only as the server says it now: a request withdrawn while the device was offline must not erase it
            self.factory_reset(doc["factory_reset"])  # reboots, unless this device cannot be reset
        if doc is not None and self._answered:
            self.commands.handle(doc.get("commands") or [])  # run in a thread of their own, once each
            self.tunnel.want((doc.get("remote") or {}).get("tunnel"))  # the control channel, while the tenant allows
        desired = (doc or {}).get("desired") or {}
        if doc is not None and self.cfg.poll_interval is None:
            self.interval = poll_interval(doc)
        release = desired.get("release")
        if release and release.get("format", "plain") == "swu":
            if self._refused != release["id"]:  # said once; the server shows it on the action
                self._refused = release["id"]
                why = f"release {release['version']} is a SWUpdate image (.swu); this device updates with RAUC bundles"
                log.error("OS update: %s", why)
                self.outbox.add(EventKind.UPDATE, UpdatePhase.FAILURE, release["id"], reason=why, version=release["version"])
            release = None
        try:
            self.updater.step(ReleaseRef.from_wire(release) if release else None)
        except AgentError as e:
            log.error("OS update: %s", e)
        try:
            self.converge_apps(desired.get("apps") or [])
            self.prefetch_apps(desired.get("prefetch") or [])
        except AgentError as e:
            log.error("apps: %s", e)
        variables = {**self.cfg.attributes, **((doc or {}).get("device", {}).get("attributes") or {}), "name": self.cfg.name}
        for res in apply_files(self.cfg.files_root, desired.get("files") or [], variables, self.cfg.data_dir / "files.json"):
            if res.changed or res.error:
                self.outbox.add(
                    EventKind.FILE,
                    UpdatePhase.FAILURE if res.error else UpdatePhase.APPLIED,
                    None,
                    path=res.path,
                    error=res.error,
                )
        self.converge_packages(desired, doc)
        self.outbox.set_inventory(self.collect_inventory())
        self.flush()

    def converge_packages(self, desired: dict[str, Any], doc: dict[str, Any] | None) -> None:
        """Desired Debian packages with apt from the tenant's overlay; the outcome reported once per change (and
        once per package rollout action, whose id the report carries so that the rollout counts it)."""
        packages, overlay = desired.get("packages") or [], desired.get("overlay")
        if not packages or doc is None:
            return
        action = desired.get("packages_action") or {}
        action_id = action.get("id") if action.get("install") else None
        apt = self._apt()
        error = None
        if overlay:
            suite = inventory.read_os_release(self.cfg.os_release).get("VERSION_CODENAME") or "bookworm"
            try:
                key = self.client.request("GET", overlay["key_url"]).body.decode()
                files = overlay_files(
                    self.cfg.apt_root,
                    overlay["url"],
                    suite,
                    overlay.get("components") or ["main"],
                    key,
                    self.cfg.name,
                    self.client.credential or "",
                )
                apt.write_overlay(files)
            except (AgentError, OSError, KeyError) as e:
                error = f"the overlay's source cannot be set up: {e}"
        result = apt.apply(packages) if error is None else PackageResult(False, error)
        key = json.dumps([packages, result.ok, result.error, result.installed, action_id], sort_keys=True)
        if key != self._package_report:
            self._package_report = key
            self._last_packages = (0.0, {})  # the inventory scans the packages again
            phase = UpdatePhase.APPLIED if result.ok else UpdatePhase.FAILURE
            extra = {"action": action_id} if action_id is not None else {}
            self.outbox.add(EventKind.PACKAGE, phase, None, installed=result.installed, error=result.error, **extra)
            if result.error:
                log.error("packages: %s", result.error)

    def tick(self) -> float:
        """One pass of the main loop with its error handling; returns the seconds to wait before the next pass.

        After a successful pass: the server's poll interval plus up to `jitter` of it. After a failed one:
        full-jitter exponential backoff (1 s doubling to 5 min), so a fleet that lost its server spreads out.
        """
        try:
            self.run_once()
        except AgentError as e:
            wait = full_jitter(self._failures, base=1.0, cap=300.0)
            self._failures += 1
            log.warning("%s; retrying in %.1f s", e, wait)
            return wait
        self._failures = 0
        return (self.cfg.poll_interval or self.interval) * (1 + random.random() * self.cfg.jitter)

    def run(self) -> None:
        try:
            self.updater.resume_after_start()
        except AgentError as e:
            log.error("resuming the update: %s", e)
        while True:
            time.sleep(self.tick())
