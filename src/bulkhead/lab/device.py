"""A simulated device: its own RAUC service (see rauc_service.py) plus its own agent process, with reboot and power cut."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .apt_root import make_apt_root
from .bootloader import boot
from .rauc_service import LabError, RaucDevice

__all__ = ["DeviceSpec", "LabDevice"]

PODMAN_RUN_ARGS = ["--runtime", "runc", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"]


@dataclass
class DeviceSpec:
    name: str
    server: str
    bootstrap_token: str
    compatible: str
    keyring: Path
    initial_version: str = "1.0"
    slot_size: int = 16 << 20
    poll_interval: float = 2.0
    health_deadline: float = 20.0
    insecure_registries: list[str] = field(default_factory=list)
    rate_limit: int | None = None
    attributes: dict[str, str] = field(default_factory=dict)
    agent_compatible: str | None = None  # enroll with this instead of RAUC's (to test the agent's own check)
    initial_image: Path | None = None  # slot A's content at first power-on (as after a full install); default zeros
    delta_fallback: bool = True  # the agent installs the full bundle when RAUC refuses a delta
    # The agent lists the packages of the booted slot's dpkg database (/var/lib/dpkg/status in its ext4 image) instead
    # of this machine's: what the device reports follows the release it runs.
    packages_from_slot: bool = False
    # Desired packages (the package overlay): the agent's apt and dpkg work on a root of the device's own, never on
    # this machine's; its inventory lists that root's packages. The root belongs to the booted slot's image (an
    # image written by an OS update boots with an empty dpkg database, as a new root file system would).
    apt: bool = False
    metrics_interval: float = 60.0  # the agent's samples of its health figures (0: none)

    def __post_init__(self) -> None:
        # Paths end up in config files (RAUC's system.conf reads relative paths from its own directory): absolute.
        self.keyring = Path(self.keyring).absolute()
        if self.initial_image is not None:
            self.initial_image = Path(self.initial_image).absolute()


def _toml(value: Any) -> str:
    return json.dumps(value)  # JSON strings, numbers, booleans and arrays are valid TOML values


class LabDevice:
    """Everything lives under `root`: slots, boot state, the agent's data partition, logs."""

    def __init__(self, root: Path, spec: DeviceSpec) -> None:
        self.root, self.spec = root.absolute(), spec  # written into agent.toml: from any working directory
        self.rauc = RaucDevice(self.root / "rauc", spec.compatible, spec.keyring, spec.slot_size)
        self.agent: subprocess.Popen[bytes] | None = None
        self.booted: str | None = None
        self.boots = 0
        self._apt_root: tuple[int, Path] | None = None  # (boot, path): see apt_root

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def reboot_flag(self) -> Path:
        return self.root / "reboot-requested"

    @property
    def update_lock(self) -> Path:
        """The device's update lock (an application holds it with flock to delay an OS install)."""
        return self.root / "run" / "update.lock"

    def _write_config(self) -> Path:
        r = self.root
        r.mkdir(parents=True, exist_ok=True)
        osr = r / "os-release"
        if not osr.exists():
            osr.write_text(f'NAME="Bulkhead lab"\nID=bulkhead-lab\nVERSION_ID="{self.spec.initial_version}"\n')
        s = self.spec
        health_cmd = f'! grep -qx "$BULKHEAD_BOOTED_SLOT" {r / "fail-health"} 2>/dev/null'
        lines = [
            f"server = {_toml(s.server)}",
            f"name = {_toml(s.name)}",
            f"bootstrap_token = {_toml(s.bootstrap_token)}",
            f"data_dir = {_toml(str(self.data_dir))}",
            f"os_release = {_toml(str(osr))}",
            f"files_root = {_toml(str(r / 'fs'))}",
            f"reboot_command = {_toml(['touch', str(self.reboot_flag)])}",
            f"update_lock = {_toml(str(self.update_lock))}",
            f"poll_interval = {s.poll_interval}",
            f"metrics_interval = {s.metrics_interval}",
            "jitter = 0.2",
            "packages_interval = 600",
        ]
        if s.agent_compatible:
            lines.append(f"compatible = {_toml(s.agent_compatible)}")
        if s.rate_limit:
            lines.append(f"rate_limit = {s.rate_limit}")
        if not s.delta_fallback:
            lines.append("delta_fallback = false")
        if s.attributes:
            lines.append("attributes = { " + ", ".join(f"{k} = {_toml(v)}" for k, v in s.attributes.items()) + " }")
        if s.apt:
            lines += [f"apt_root = {_toml(str(self.apt_root))}", f"apt_config = {_toml(str(self._apt_config()))}"]
        lines += [
            "",
            "[health]",
            f"deadline = {s.health_deadline}",
            f"command = {_toml(health_cmd)}",
            "",
            "[podman]",
            f"owner = {_toml(s.name)}",
            f"run_args = {_toml(PODMAN_RUN_ARGS)}",
            f"insecure_registries = {_toml(s.insecure_registries)}",
        ]
        path = r / "agent.toml"
        path.write_text("\n".join(lines) + "\n")
        return path

    # -- power ------------------------------------------------------------------------
    def power_on(self) -> str:
        """Boot: the bootloader picks a slot, the RAUC service starts with it, then the agent."""
        slot_a = self.rauc.slot("A")
        if self.spec.initial_image is not None and not slot_a.exists():
            slot_a.parent.mkdir(parents=True, exist_ok=True)
            with self.spec.initial_image.open("rb") as src, slot_a.open("wb") as f:
                shutil.copyfileobj(src, f)
                f.truncate(max(self.spec.slot_size, f.tell()))
        self.reboot_flag.unlink(missing_ok=True)
        self.booted = boot(self.rauc.root / "boot")
        self.boots += 1
        config = self._write_config()  # after the bootloader: the apt root is the booted slot's
        if self.spec.packages_from_slot:
            self._dpkg_from_slot(self.booted)
        self.rauc.start(self.booted)
        self._start_agent(config)
        return self.booted

    @property
    def dpkg_dir(self) -> Path:
        return self.root / "dpkg"

    @property
    def apt_root(self) -> Path:
        """The booted slot's apt root: one per slot and image content (named by the image's digest at boot)."""
        if self._apt_root is None or self._apt_root[0] != self.boots:
            slot = self.booted or "A"
            image = self.rauc.slot(slot)
            digest = hashlib.sha256(image.read_bytes()).hexdigest()[:16] if image.exists() else "empty"
            self._apt_root = (self.boots, self.root / "apt" / f"{slot}-{digest}")
        return self._apt_root[1]

    def _apt_config(self) -> Path:
        """The booted slot's apt root (its dpkg database kept across boots) and its APT_CONFIG."""
        return make_apt_root(self.apt_root)

    def _dpkg_from_slot(self, slot: str) -> None:
        """Copy the slot's dpkg status file (read from its ext4 image with debugfs, no mount) to `dpkg_dir`, where the
        agent's dpkg-query reads it (DPKG_ADMINDIR); a slot without one (or without a file system) lists no packages."""
        self.dpkg_dir.mkdir(parents=True, exist_ok=True)
        status = self.dpkg_dir / "status"
        status.unlink(missing_ok=True)
        try:
            subprocess.run(
                ["debugfs", "-R", "dump /var/lib/dpkg/status status", str(self.rauc.slot(slot))],
                cwd=self.dpkg_dir,
                capture_output=True,
                check=False,
            )
        except FileNotFoundError:
            raise LabError("'debugfs' is missing: install the Debian package e2fsprogs") from None
        if not status.exists():
            status.write_text("")

    def _start_agent(self, config: Path) -> None:
        log = (self.root / "agent.log").open("ab")
        log.write(f"--- boot {self.boots}: slot {self.booted} ---\n".encode())
        log.flush()
        dpkg = {"DPKG_ADMINDIR": str(self.dpkg_dir)} if self.spec.packages_from_slot else {}
        if self.spec.apt:
            dpkg = {"DPKG_ADMINDIR": str(self.apt_root / "var/lib/dpkg")}
        self.agent = subprocess.Popen(
            [sys.executable, "-m", "bulkhead.agent.main", "--config", str(config), "run"],
            env={**self.rauc.env, "PYTHONUNBUFFERED": "1", **dpkg},
            stdout=log,
            stderr=log,
            start_new_session=True,
        )

    def _stop_agent(self, sig: int) -> None:
        if self.agent is not None and self.agent.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.agent.pid, sig)
            try:
                self.agent.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.agent.pid, signal.SIGKILL)
                self.agent.wait()
        self.agent = None

    def crash_agent(self) -> None:
        """Kill the agent alone (SIGKILL); tick() restarts it as systemd's Restart=always would."""
        if self.agent is not None and self.agent.poll() is None:
            os.killpg(self.agent.pid, signal.SIGKILL)
            self.agent.wait()

    def shutdown(self) -> None:
        self._stop_agent(signal.SIGTERM)
        self.rauc.stop()

    def power_cut(self) -> None:
        """Everything dies at once: the agent, any RAUC install in flight, the bus."""
        self._stop_agent(signal.SIGKILL)
        self.rauc.stop(power_cut=True)

    def reboot(self) -> str:
        self.shutdown()
        return self.power_on()

    def tick(self) -> None:
        """Supervise: honour a requested reboot; restart a crashed agent (as systemd's Restart=always would)."""
        if self.reboot_flag.exists():
            self.reboot()
        elif self.agent is not None and self.agent.poll() is not None:
            time.sleep(0.5)
            self._start_agent(self.root / "agent.toml")

    # -- inspection -------------------------------------------------------------------
    def update_state(self) -> dict[str, Any]:
        try:
            doc: dict[str, Any] = json.loads((self.data_dir / "update-state.json").read_text())
            return doc
        except (FileNotFoundError, ValueError):
            return {"phase": "idle"}

    def fail_health(self, slot: str | None) -> None:
        """Make `slot` fail its health check (None: every slot passes)."""
        f = self.root / "fail-health"
        if slot is None:
            f.unlink(missing_ok=True)
        else:
            f.write_text(slot + "\n")

    def status(self) -> dict[str, Any]:
        return {
            "name": self.spec.name,
            "booted": self.booted,
            "boots": self.boots,
            "agent_running": self.agent is not None and self.agent.poll() is None,
            "update": self.update_state().get("phase"),
        }
