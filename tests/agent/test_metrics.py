"""The agent's health figures (agent/metrics.py): read from a /proc and /sys laid out as the kernel writes them, from
this machine's real ones, and kept until the server has them."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

from bulkhead.agent.metrics import MAX_KEPT, MetricsSampler, read_sample

NET_DEV = """Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo: 5000      50    0    0    0     0          0         0     5000      50    0    0    0     0       0          0
  eth0: 1000      10    0    0    0     0          0         0     2000      20    0    0    0     0       0          0
  wlan0: 300       3    0    0    0     0          0         0      400       4    0    0    0     0       0          0
"""


def _proc(root: Path, busy: int, idle: int) -> Path:
    proc = root / "proc"
    (proc / "net").mkdir(parents=True, exist_ok=True)
    (proc / "stat").write_text(f"cpu  {busy} 0 0 {idle} 0 0 0 0 0 0\ncpu0 1 2 3 4\n")
    (proc / "meminfo").write_text("MemTotal:        2048000 kB\nMemFree:          100000 kB\nMemAvailable:     512000 kB\n")
    (proc / "uptime").write_text("3600.50 7000.00\n")
    (proc / "loadavg").write_text("0.42 0.30 0.20 1/123 4567\n")
    (proc / "net" / "dev").write_text(NET_DEV)
    return proc


def test_a_sample_from_the_kernels_files(tmp_path: Path) -> None:
    proc = _proc(tmp_path, busy=100, idle=900)
    sys = tmp_path / "sys"
    for zone, milli in (("thermal_zone0", 45000), ("thermal_zone1", 61500)):
        (sys / "class" / "thermal" / zone).mkdir(parents=True)
        (sys / "class" / "thermal" / zone / "temp").write_text(f"{milli}\n")
    first, cpu = read_sample(proc, sys, tmp_path)
    assert "cpu_percent" not in first and cpu == (100, 1000)  # no previous counters yet
    _proc(tmp_path, busy=400, idle=1600)
    s, _ = read_sample(proc, sys, tmp_path, cpu)
    assert s["cpu_percent"] == 30.0  # 300 busy of 1000 jiffies
    assert (s["memory_total"], s["memory_used"]) == (2048000 * 1024, (2048000 - 512000) * 1024)
    assert (s["net_rx_bytes"], s["net_tx_bytes"]) == (1300, 2400)  # loopback left out
    assert (s["uptime_seconds"], s["load1"], s["temperature_c"]) == (3600.5, 0.42, 61.5)  # the hottest zone
    assert 0 < s["disk_used"] <= s["disk_total"]
    assert dt.datetime.fromisoformat(s["at"]).tzinfo is not None


def test_what_the_device_cannot_measure_is_left_out(tmp_path: Path) -> None:
    s, _ = read_sample(tmp_path / "no-proc", tmp_path / "no-sys", tmp_path / "no-disk")
    assert set(s) == {"at"}


def test_this_machines_real_figures(tmp_path: Path) -> None:
    sampler = MetricsSampler(60, tmp_path)
    sampler.start()
    time.sleep(0.3)  # a few jiffies for the CPU percentage
    sampler.sample()
    sampler.stop()
    [s] = sampler.pending()
    assert 0 <= s["cpu_percent"] <= 100 and s["memory_total"] > s["memory_used"] > 0 and s["uptime_seconds"] > 0
    assert s["net_rx_bytes"] >= 0 and s["disk_total"] > 0


def test_samples_are_kept_until_sent_and_bounded(tmp_path: Path) -> None:
    sampler = MetricsSampler(0, tmp_path, tmp_path / "proc", tmp_path / "sys")
    sampler.start()  # interval 0: no thread
    assert sampler._thread is None
    for _ in range(3):
        sampler.sample()
    assert len(sampler.pending()) == 3
    sampler.sent(2)
    assert len(sampler.pending()) == 1
    for _ in range(MAX_KEPT + 10):
        sampler.sample()
    assert len(sampler.pending()) == MAX_KEPT
