"""Device metrics: CPU, memory, the data partition's disk, temperature, uptime, network counters and load, read from
/proc and /sys every `interval` seconds by a thread, kept (at most a day's) until the agent sends them with its
reports (`POST /device/v1/metrics`).

The readers are pure over a root directory (tests give them a fake /proc); a figure the device cannot measure (no
thermal zone) is left out.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import threading
from collections import deque
from pathlib import Path
from typing import Any

__all__ = ["MAX_KEPT", "MetricsSampler", "read_sample"]

log = logging.getLogger(__name__)
MAX_KEPT = 1440  # samples kept while the server is unreachable (a day at one a minute); the oldest go first


def _cpu_times(proc: Path) -> tuple[int, int] | None:
    """(busy, total) jiffies of all CPUs since boot."""
    try:
        fields = [int(x) for x in (proc / "stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    total = sum(fields[:8])  # guest times are already in user and nice
    return total - idle, total


def _meminfo(proc: Path) -> dict[str, int]:
    out: dict[str, int] = {}
    try:
        for line in (proc / "meminfo").read_text().splitlines():
            key, _, rest = line.partition(":")
            parts = rest.split()
            if parts and parts[0].isdigit():
                out[key] = int(parts[0]) * 1024
    except OSError:
        pass
    return out


def _net(proc: Path) -> tuple[int, int] | None:
    try:
        lines = (proc / "net" / "dev").read_text().splitlines()[2:]
    except OSError:
        return None
    rx = tx = 0
    for line in lines:
        name, _, rest = line.partition(":")
        values = rest.split()
        if name.strip() != "lo" and len(values) >= 9:
            rx, tx = rx + int(values[0]), tx + int(values[8])
    return rx, tx


def _temperature(sys: Path) -> float | None:
    hottest = None
    for zone in sorted((sys / "class" / "thermal").glob("thermal_zone*/temp")):
        try:
            value = int(zone.read_text().strip()) / 1000.0
        except (OSError, ValueError):
            continue
        hottest = value if hottest is None else max(hottest, value)
    return hottest


def read_sample(
    proc: Path = Path("/proc"), sys: Path = Path("/sys"), disk: Path = Path("/"), previous_cpu: tuple[int, int] | None = None
) -> tuple[dict[str, Any], tuple[int, int] | None]:
    """One sample now, and the CPU counters the next sample's CPU percentage is measured against."""
    sample: dict[str, Any] = {"at": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")}
    cpu = _cpu_times(proc)
    if cpu is not None and previous_cpu is not None and cpu[1] > previous_cpu[1]:
        sample["cpu_percent"] = round(100.0 * (cpu[0] - previous_cpu[0]) / (cpu[1] - previous_cpu[1]), 1)
    mem = _meminfo(proc)
    if "MemTotal" in mem and "MemAvailable" in mem:
        sample["memory_total"], sample["memory_used"] = mem["MemTotal"], mem["MemTotal"] - mem["MemAvailable"]
    try:
        st = os.statvfs(disk)
        sample["disk_total"] = st.f_blocks * st.f_frsize
        sample["disk_used"] = (st.f_blocks - st.f_bfree) * st.f_frsize
    except OSError:
        pass
    if (temp := _temperature(sys)) is not None:
        sample["temperature_c"] = temp
    try:
        sample["uptime_seconds"] = float((proc / "uptime").read_text().split()[0])
        sample["load1"] = float((proc / "loadavg").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        pass
    if (net := _net(proc)) is not None:
        sample["net_rx_bytes"], sample["net_tx_bytes"] = net
    return sample, cpu


class MetricsSampler:
    """Samples every `interval` seconds in a thread of its own; `pending()` and `sent(n)` for the sender."""

    def __init__(self, interval: float, disk: Path, proc: Path = Path("/proc"), sys: Path = Path("/sys")) -> None:
        self.interval, self.disk, self.proc, self.sys = interval, disk, proc, sys
        self._samples: deque[dict[str, Any]] = deque(maxlen=MAX_KEPT)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._cpu: tuple[int, int] | None = None

    def start(self) -> None:
        if self.interval > 0 and self._thread is None:
            self._cpu = _cpu_times(self.proc)  # the first sample's CPU percentage covers the first interval
            self._thread = threading.Thread(target=self._run, name="bulkhead-metrics", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def sample(self) -> None:
        try:
            s, self._cpu = read_sample(self.proc, self.sys, self.disk, self._cpu)
        except Exception:  # a sampler that dies would go unnoticed: log and go on
            log.exception("metrics: sampling failed")
            return
        with self._lock:
            self._samples.append(s)

    def pending(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._samples)

    def sent(self, n: int) -> None:
        """The oldest `n` samples reached the server."""
        with self._lock:
            for _ in range(min(n, len(self._samples))):
                self._samples.popleft()
