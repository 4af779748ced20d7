"""Background jobs through huey: rollout progression (now, at a scheduled time, on a periodic sweep), delta builds.

The embedded default keeps its queue in `jobs.db` (SQLite) in the data directory, so nothing else has to
run; `BULKHEAD_JOBS_URL=redis://HOST:6379/0` puts the queue in Redis, which lets several server machines
(or `bulkhead worker` processes) share it. Each server process runs a small in-process consumer.
"""

from __future__ import annotations

import datetime as dt
import logging
import socket
import threading
import time
from typing import Any

from huey import RedisHuey, SqliteHuey, crontab
from huey.api import Huey
from huey.consumer import Consumer
from huey.signals import SIGNAL_EXECUTING

from .job_claims import PeriodicClaims
from .services.deltas import DeltaService
from .services.device_metrics import MetricsService
from .services.notifications import NotificationService
from .services.overlay import OverlayService
from .services.remote_sessions import RemoteSessionService
from .services.rollouts import RolloutService
from .services.security import SecurityService
from .services.vulns import VulnService
from .settings import Settings

__all__ = ["Jobs"]

log = logging.getLogger(__name__)

# Changes to one rollout within this many seconds share one evaluation (per process): a fleet's reports come in
# thousands per second, and every one that moves an action asks for an evaluation.
COALESCE_SECONDS = 1.0
_HOST = socket.gethostname()


class _EmbeddedConsumer(Consumer):  # type: ignore[misc]
    """A consumer that lives inside the server process: the ASGI server owns the signal handlers."""

    def _set_signal_handlers(self) -> None:
        return None


class _OncePerCluster:
    """A huey whose scheduler enqueues a periodic job only when this process claims the job's minute: every server
    process (and host) runs a scheduler, and without claims each would enqueue its own copy of every periodic job."""

    claims: PeriodicClaims | None = None

    def read_periodic(self, timestamp: dt.datetime | None) -> list[Any]:
        due: list[Any] = super().read_periodic(timestamp)  # type: ignore[misc]
        if self.claims is None or not due:
            return due
        when = timestamp if timestamp is not None else self._get_timestamp()  # type: ignore[attr-defined]
        claims = self.claims
        return [task for task in due if claims.claim(task.name, when)]


class _RedisHuey(_OncePerCluster, RedisHuey):  # type: ignore[misc]
    pass


class _SqliteHuey(_OncePerCluster, SqliteHuey):  # type: ignore[misc]
    pass


class Jobs:
    def __init__(
        self,
        settings: Settings,
        rollouts: RolloutService,
        deltas: DeltaService | None = None,
        vulns: VulnService | None = None,
        notifications: NotificationService | None = None,
        security: SecurityService | None = None,
        claims: PeriodicClaims | None = None,
        overlay: OverlayService | None = None,
        metrics: MetricsService | None = None,
        remote_sessions: RemoteSessionService | None = None,
    ) -> None:
        """`claims`: the shared database's periodic-job claims (None: this process enqueues every periodic job)."""
        huey = (
            _RedisHuey("bulkhead", url=settings.jobs_url, results=False)
            if settings.jobs_url
            else _SqliteHuey("bulkhead", filename=str(settings.data_dir / "jobs.db"), results=False)
        )
        huey.claims = claims
        self.huey: Huey = huey

        @huey.signal(SIGNAL_EXECUTING)  # type: ignore[untyped-decorator]
        def _executing(_signal: str, task: Any, *_args: Any) -> None:
            # One line per run, with the task's id: which host ran what (several hosts share one queue), and the proof
            # that each queued task ran once (tests/e2e/test_cluster.py reads these from the servers' JSON logs).
            log.info("job %s started", task.name, extra={"job": task.name, "task_id": task.id, "host": _HOST})

        self.rollouts = rollouts
        self._consumer: Consumer | None = None

        self._lock = threading.Lock()
        self._last: dict[int | None, float] = {}  # when an evaluation of a rollout (None: all) was last asked for
        self._trailing: dict[int | None, float] = {}  # an evaluation queued for the end of the window

        def advance(rollout_id: int | None, joiners: bool = False) -> None:
            rollouts.advance(rollout_id, joiners=joiners)

        def sweep() -> None:
            """Scheduled starts that were missed, and devices that joined a running rollout's target. Finished and
            canceled rollouts are not selected: they cost nothing here."""
            rollouts.advance(None)

        self._advance = self.huey.task(name="rollouts.advance", retries=3, retry_delay=5)(advance)
        self.huey.periodic_task(crontab(minute="*"), name="rollouts.sweep")(sweep)
        self._build_delta: Any = None
        self.vuln_tasks: dict[str, Any] = {}
        if deltas is not None:

            def build_delta(delta_id: int) -> None:
                deltas.build(delta_id, lambda m: log.info("delta %s: %s", delta_id, m))

            # A build takes minutes of CPU; huey's consumer runs it on one of its worker threads.
            self._build_delta = self.huey.task(name="deltas.build")(build_delta)

        if vulns is not None:
            self._vuln_jobs(vulns)
        if notifications is not None:
            # New events into deliveries and due deliveries (re)tried, every minute (services/notifications.py).
            self.huey.periodic_task(crontab(minute="*"), name="notify.run")(notifications.run)
        self.security_task: Any = None
        if security is not None:

            def security_run() -> None:
                security.run()

            # Security updates by policy: devices whose security update is due get it, every minute (services/security.py).
            self.security_task = self.huey.periodic_task(crontab(minute="*"), name="security.run")(security_run)
        if overlay is not None:

            def overlay_refresh() -> None:
                overlay.refresh()

            # Overlay suites re-signed before their Valid-Until (half the validity left), hourly (services/overlay.py).
            self.huey.periodic_task(crontab(minute="23"), name="overlay.refresh")(overlay_refresh)

        if metrics is not None:

            def metrics_run() -> None:
                metrics.run()

            # Offline alerts, hourly averages of old samples, samples past retention: every minute (device_metrics.py).
            self.huey.periodic_task(crontab(minute="*"), name="metrics.run")(metrics_run)
        if remote_sessions is not None:

            def sessions_sweep() -> None:
                remote_sessions.sweep()

            # Remote sessions idle with nothing joined, and connections never joined: every minute (remote_sessions.py).
            self.huey.periodic_task(crontab(minute="*"), name="sessions.sweep")(sessions_sweep)

    def _vuln_jobs(self, vulns: VulnService) -> None:
        """Vulnerability monitoring: feeds fetched and every tenant re-scanned daily, KEV hourly (an event for each CVE
        newly known exploited that affects a tenant), devices with a new inventory matched every ten minutes, and the
        feeds fetched again every four hours (a changed feed re-matches incrementally), and the scans asked for through
        the API."""

        def daily() -> None:
            vulns.sync()
            vulns.scan_all("full")

        def kev() -> None:
            vulns.sync_kev()
            vulns.kev_all()

        def sync() -> None:  # between the daily runs: a changed feed re-matches what it changed
            vulns.sync(rescan=True)

        def devices() -> None:
            vulns.fail_abandoned()  # a queued scan lost with a stopped server does not stay "queued" for ever
            vulns.scan_all("devices")

        def scan(run_id: int) -> None:
            vulns.run_queued(run_id)

        # A scan asked for through the API runs here, off the request (POST answers 202 with the queued run).
        vulns.enqueue_scan = self.huey.task(name="vulns.scan")(scan)
        self.vuln_tasks = {
            "daily": self.huey.periodic_task(crontab(minute="17", hour="3"), name="vulns.daily")(daily),
            "kev": self.huey.periodic_task(crontab(minute="7"), name="vulns.kev")(kev),
            "devices": self.huey.periodic_task(crontab(minute="*/10"), name="vulns.devices")(devices),
            "sync": self.huey.periodic_task(crontab(minute="47", hour="*/4"), name="vulns.sync")(sync),
        }

    def depth(self) -> tuple[int, int]:
        """Jobs waiting in the queue: (pending now, scheduled for later). Raises when the queue does not answer."""
        return int(self.huey.pending_count()), int(self.huey.scheduled_count())

    def build_delta(self, delta_id: int) -> Any:
        """Enqueue a server-side delta build (the services are given this in their constructors)."""
        if self._build_delta is None:
            raise RuntimeError("this job queue was made without the delta service")
        return self._build_delta(delta_id)

    def advance(self, rollout_id: int | None, eta: dt.datetime | None = None) -> Any:
        """Evaluate a rollout (None: every rollout, after a device joined or changed its tags or groups, when
        finished rollouts take in the devices that match them now) now, at `eta`, or, when one was asked for
        within the last COALESCE_SECONDS, once at the end of that window for all the changes within it."""
        args = (rollout_id, rollout_id is None)
        if eta is not None:
            # huey keeps whole seconds: a little late is fine, early would find the rollout not yet due.
            return self._advance.schedule(args=args, eta=eta.astimezone(dt.UTC) + dt.timedelta(seconds=1))
        now = time.monotonic()
        with self._lock:
            last = self._last.get(rollout_id)
            if last is None or now >= last + COALESCE_SECONDS:
                if len(self._last) > 10_000:
                    self._last = {k: v for k, v in self._last.items() if v > now - COALESCE_SECONDS}
                    self._trailing = {k: v for k, v in self._trailing.items() if v > now}
                self._last[rollout_id] = now
                due = None
            elif self._trailing.get(rollout_id, 0.0) > now:
                return None  # the evaluation queued for the end of this window reads this change too
            else:
                due = last + COALESCE_SECONDS
                self._trailing[rollout_id] = self._last[rollout_id] = due
        if due is None:
            return self._advance(*args)
        # Whole seconds again: one more, so that it never runs before the window's end (and misses a change).
        return self._advance.schedule(args=args, delay=due - now + 1)

    def start(self, workers: int = 2) -> None:
        # Two threads: a delta build (minutes of CPU) must not hold up rollout progression.

        self._consumer = _EmbeddedConsumer(self.huey, workers=workers, worker_type="thread", periodic=True)
        self._consumer.start()

    def stop(self) -> None:
        if self._consumer is not None:
            self._consumer.stop(graceful=True)
            self._consumer = None
