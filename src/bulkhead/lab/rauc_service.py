"""A real RAUC service on this machine: private D-Bus bus, file-backed A/B slots, custom bootloader.

RAUC learns the booted slot from /proc/cmdline, so the service runs in its own mount
namespace where a file with `rauc.slot=<bootname>` is bind-mounted over /proc/cmdline.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

__all__ = ["LabError", "RaucDevice"]

_BUS_CONF = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path={bus}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*" eavesdrop="true"/>
    <allow receive_sender="*"/>
  </policy>
</busconfig>
"""

# Boot state kept in files: primary slot, per-slot good/bad, and boot attempts left (as GRUB's
# ORDER/<slot>_OK/<slot>_TRY in meta-rauc-community's qemux86-64): set-primary makes a slot the
# first choice with fresh attempts; marking it good refills them; see bootloader.py for the boot side.
_BACKEND = """#!/bin/sh
set -e
d="$(dirname "$0")/boot"
mkdir -p "$d"
case "$1" in
  get-primary) cat "$d/primary" 2>/dev/null || echo A ;;
  set-primary) echo good > "$d/state.$2"; echo 3 > "$d/attempts.$2"; echo "$2" > "$d/primary" ;;
  get-state) cat "$d/state.$2" 2>/dev/null || echo good ;;
  set-state) echo "$3" > "$d/state.$2"; if [ "$3" = good ]; then echo 3 > "$d/attempts.$2"; fi ;;
  get-current) cat "$d/current" 2>/dev/null || echo A ;;
  *) echo "unknown command $1" >&2; exit 1 ;;
esac
"""


class LabError(Exception):
    """The lab could not start or drive a simulated device."""


class RaucDevice:
    """One simulated device: its RAUC service, bus, slots and bootloader state, under `root`."""

    def __init__(self, root: Path, compatible: str, keyring: Path, slot_size: int = 1 << 20) -> None:
        # RAUC reads relative paths in system.conf from the file's own directory: every path written there is absolute.
        self.root, self.keyring = root.absolute(), keyring.absolute()
        self.compatible, self.slot_size = compatible, slot_size
        # D-Bus takes socket paths of at most 99 bytes: deep lab directories get a short one in /tmp.
        self.bus_path = self.root / "bus"
        if len(str(self.bus_path.resolve())) > 90:
            digest = hashlib.sha256(str(self.root.resolve()).encode()).hexdigest()[:16]
            self.bus_path = Path(tempfile.gettempdir()) / f"bulkhead-lab-{digest}.bus"
        self._bus: subprocess.Popen[bytes] | None = None
        self._service: subprocess.Popen[bytes] | None = None

    # -- layout -----------------------------------------------------------------
    def slot(self, bootname: str) -> Path:
        return self.root / f"slot-{bootname}.img"

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "DBUS_SYSTEM_BUS_ADDRESS": f"unix:path={self.bus_path}"}

    def _write_config(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "mnt").mkdir(exist_ok=True)
        for name in ("A", "B"):
            if not self.slot(name).exists():
                with self.slot(name).open("wb") as f:
                    f.truncate(self.slot_size)
        backend = self.root / "backend.sh"
        backend.write_text(_BACKEND)
        backend.chmod(0o755)
        shutil.copy(self.keyring, self.root / "keyring.pem")
        (self.root / "system.conf").write_text(
            f"[system]\ncompatible={self.compatible}\nbootloader=custom\nmountprefix={self.root / 'mnt'}\n"
            f"statusfile={self.root / 'status.raucs'}\n\n"
            f"[handlers]\nbootloader-custom-backend={backend}\n\n"
            f"[keyring]\npath={self.root / 'keyring.pem'}\n\n"
            f"[slot.rootfs.0]\ndevice={self.slot('A')}\ntype=raw\nbootname=A\n\n"
            f"[slot.rootfs.1]\ndevice={self.slot('B')}\ntype=raw\nbootname=B\n"
        )
        (self.root / "bus.conf").write_text(_BUS_CONF.format(bus=self.bus_path))

    # -- processes --------------------------------------------------------------
    def start(self, booted: str = "A") -> None:
        for tool in ("rauc", "dbus-daemon", "unshare"):
            if shutil.which(tool) is None:
                raise LabError(f"'{tool}' is missing: install Debian packages rauc, dbus and util-linux")
        if os.geteuid() != 0:
            raise LabError("the RAUC service needs root (loop mounts and a private mount namespace)")
        self._write_config()
        (self.root / "cmdline").write_text(f"console=ttyS0 rauc.slot={booted}\n")
        (self.root / "boot").mkdir(exist_ok=True)
        (self.root / "boot" / "current").write_text(booted + "\n")
        self.stop(power_cut=True)  # a leftover service of an earlier boot would hold the bus
        self.bus_path.unlink(missing_ok=True)
        self._bus = subprocess.Popen(
            ["dbus-daemon", f"--config-file={self.root / 'bus.conf'}", "--nofork", "--nopidfile"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _wait(lambda: self.bus_path.exists(), 10, "D-Bus bus did not come up")
        log = (self.root / "rauc-service.log").open("ab")
        script = f"mount --bind {self.root / 'cmdline'} /proc/cmdline && exec rauc service --conf={self.root / 'system.conf'}"
        self._service = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c", script], env=self.env, stdout=log, stderr=log
        )
        _wait(self._service_ready, 20, f"RAUC service did not start (see {self.root / 'rauc-service.log'})")

    def _service_ready(self) -> bool:
        if self._service is not None and self._service.poll() is not None:
            raise LabError(
                f"RAUC service exited with {self._service.returncode}: " + (self.root / "rauc-service.log").read_text()[-800:]
            )
        res = subprocess.run(["rauc", "status", "--output-format=json"], env=self.env, capture_output=True, check=False)
        return res.returncode == 0

    def stop(self, power_cut: bool = False) -> None:
        """Stop the service and its bus; `power_cut` kills them at once (SIGKILL), mid-write if need be."""
        for proc in (self._service, self._bus):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGKILL if power_cut else signal.SIGTERM)
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
        self._service = self._bus = None

    # -- operations ---------------------------------------------------------------
    def rauc(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["rauc", *args], env=self.env, capture_output=True, text=True, timeout=timeout, check=False)

    def install(self, bundle: Path) -> subprocess.CompletedProcess[str]:
        return self.rauc("install", str(bundle))

    def primary(self) -> str:
        return (self.root / "boot" / "primary").read_text().strip()

    def __enter__(self) -> RaucDevice:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _wait(cond: object, timeout: float, message: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise LabError(message)
