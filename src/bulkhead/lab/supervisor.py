"""The lab supervisor: boots N simulated devices, reboots them when asked, cuts their power on request.

`python -m bulkhead.lab.supervisor DIR` runs it in the foreground (the CLI's `lab up` starts it
detached); DIR/lab.json lists the devices; DIR/control/<device>.json carries requests.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from .device import DeviceSpec, LabDevice

__all__ = ["Lab", "load_lab", "request", "write_lab"]

log = logging.getLogger("bulkhead.lab")


def _write_json(path: Path, doc: Any) -> None:
    """Readers (the CLI, tests) poll these files: they must never see a half-written one."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(doc, indent=1))
    tmp.replace(path)


def write_lab(directory: Path, specs: list[DeviceSpec]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    devices = [
        {**asdict(s), "keyring": str(s.keyring), "initial_image": str(s.initial_image) if s.initial_image else None}
        for s in specs
    ]
    _write_json(directory / "lab.json", {"devices": devices})


def load_lab(directory: Path) -> list[DeviceSpec]:
    doc = json.loads((directory / "lab.json").read_text())
    return [DeviceSpec(**{**d, "keyring": Path(d["keyring"])}) for d in doc["devices"]]


def request(directory: Path, device: str, **req: Any) -> None:
    """Leave a request for the supervisor (power-cut, reboot, fail-health)."""
    ctl = directory / "control"
    ctl.mkdir(parents=True, exist_ok=True)
    _write_json(ctl / f"{device}.json", req)


class Lab:
    def __init__(self, directory: Path, specs: list[DeviceSpec], parent: int | None = None) -> None:
        self.dir, self.parent = directory.absolute(), parent
        self.devices = {s.name: LabDevice(self.dir / "devices" / s.name, s) for s in specs}
        self._cuts: dict[str, tuple[str | None, float, float | None]] = {}  # name -> (phase, after, armed_at)
        self._stop = False

    def up(self) -> None:
        for d in self.devices.values():
            d.power_on()
            log.info("%s booted slot %s", d.spec.name, d.booted)

    def down(self) -> None:
        for d in self.devices.values():
            d.shutdown()

    def _requests(self) -> None:
        ctl = self.dir / "control"
        if not ctl.is_dir():
            return
        for f in ctl.glob("*.json"):
            name = f.stem
            try:
                req = json.loads(f.read_text())
            finally:
                f.unlink(missing_ok=True)
            dev = self.devices.get(name)
            if dev is None:
                log.warning("request for unknown device %s ignored", name)
                continue
            action = req.get("action")
            if action == "power-cut":
                self._cuts[name] = (req.get("phase"), float(req.get("after", 0)), None)
            elif action == "reboot":
                dev.reboot()
            elif action == "fail-health":
                dev.fail_health(req.get("slot"))

    def _power_cuts(self) -> None:
        now = time.monotonic()
        for name, (phase, after, armed) in list(self._cuts.items()):
            dev = self.devices[name]
            if armed is None:
                if phase is None or dev.update_state().get("phase") == phase:
                    self._cuts[name] = (phase, after, now)
                continue
            if now - armed >= after:
                del self._cuts[name]
                log.info("%s: power cut (phase %s)", name, dev.update_state().get("phase"))
                dev.power_cut()
                time.sleep(0.2)
                dev.power_on()

    def status(self) -> list[dict[str, Any]]:
        return [d.status() for d in self.devices.values()]

    def _parent_alive(self) -> bool:
        """A lab tied to a parent (the demo) goes down with it, however the parent ended."""
        if self.parent is None:
            return True
        try:
            os.kill(self.parent, 0)
            return True
        except ProcessLookupError:
            return False

    def run(self) -> None:
        signal.signal(signal.SIGTERM, lambda *_: setattr(self, "_stop", True))
        self.up()
        _write_json(self.dir / "status.json", self.status())
        _write_json(self.dir / "ready", self.status())
        try:
            while not self._stop and self._parent_alive():
                self._requests()
                self._power_cuts()
                for d in self.devices.values():
                    d.tick()
                _write_json(self.dir / "status.json", self.status())
                time.sleep(0.1)
        finally:
            self.down()
            (self.dir / "ready").unlink(missing_ok=True)


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    directory = Path(argv[0])
    (directory / "supervisor.pid").write_text(str(os.getpid()))
    try:
        parent = int(os.environ["BULKHEAD_LAB_PARENT"]) if os.environ.get("BULKHEAD_LAB_PARENT") else None
        Lab(directory, load_lab(directory), parent).run()
    finally:
        (directory / "supervisor.pid").unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
