"""End-to-end fixtures: a real server, a tenant with its own PKI and ext4 releases, lab devices (registry: tests/conftest.py)."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from bulkhead.lab import images
from bulkhead.lab.device import DeviceSpec, LabDevice
from bulkhead.lab.pki import DemoPki, make_pki
from tests.live import LiveServer, live_server

COMPATIBLE = "bulkhead-lab"


def need_lab() -> None:
    missing = [t for t in ("rauc", "dbus-daemon", "unshare", "mkfs.ext4", "mksquashfs") if shutil.which(t) is None]
    if missing:
        pytest.skip(f"missing {', '.join(missing)}: install Debian packages rauc, dbus, util-linux, e2fsprogs, squashfs-tools")
    if os.geteuid() != 0:
        pytest.skip("the lab's RAUC services need root (loop mounts, mount namespaces)")


def build_release(work: Path, version: str, pki: DemoPki, size_mib: int = 4, random_mib: int = 0) -> Path:
    return images.build_release(work, COMPATIBLE, version, pki.cert, pki.key, size_mib, random_mib)


@dataclass
class Fleet:
    server: LiveServer
    token: str
    pki: DemoPki
    bootstrap: str
    work: Path
    releases: dict[str, dict[str, Any]] = field(default_factory=dict)
    devices: list[LabDevice] = field(default_factory=list)

    def api(self) -> httpx.Client:
        return self.server.client(self.token)

    def upload(self, bundle: Path) -> dict[str, Any]:
        with self.api() as c:
            r = c.post("/api/v1/releases", content=bundle.read_bytes())
            r.raise_for_status()
            rel: dict[str, Any] = r.json()
            self.releases[rel["version"]] = rel
            return rel

    def device(self, name: str, group: str | None = None, **spec: Any) -> LabDevice:
        """A lab device, powered on; `group` enrolls it with a bootstrap token of that group (default: 'lab')."""
        bootstrap = self.bootstrap
        if group is not None:
            with self.api() as c:
                r = c.post("/api/v1/bootstrap-tokens", json={"name": f"{group}-{name}", "group": group})
                r.raise_for_status()
                bootstrap = r.json()["token"]
        d = LabDevice(
            self.work / "devices" / name,
            DeviceSpec(name, self.server.url, bootstrap, COMPATIBLE, self.pki.ca, poll_interval=1.0, **spec),
        )
        self.devices.append(d)
        d.power_on()
        return d

    def show(self, name: str) -> dict[str, Any]:
        with self.api() as c:
            r = c.get(f"/api/v1/devices/{name}")
            if r.status_code == 404:  # not enrolled yet
                return {"reported": {}, "update": {}, "last_seen": None}
            r.raise_for_status()
            doc: dict[str, Any] = r.json()
            return doc

    def wait(self, cond: Callable[[], Any], timeout: float, what: str, tick: Callable[[], None] | None = None) -> Any:
        """Poll `cond` (while supervising the devices: reboots, agent restarts) until it is truthy."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            for d in self.devices:
                d.tick()
            if tick is not None:
                tick()
            value = cond()
            if value:
                return value
            time.sleep(0.2)
        logs = "\n".join(f"--- {d.spec.name}\n" + (d.root / "agent.log").read_text()[-3000:] for d in self.devices)
        pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}\n{logs}")

    def shutdown(self) -> None:
        for d in self.devices:
            d.shutdown()
        self.devices.clear()


def make_fleet(server: LiveServer, work: Path) -> Fleet:
    pki = make_pki(work / "pki")
    token = server.tenant(ca=pki.ca)
    with server.client(token) as c:
        boot = c.post("/api/v1/bootstrap-tokens", json={"name": "lab", "group": "lab"})
        boot.raise_for_status()
    return Fleet(server, token, pki, boot.json()["token"], work)


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    """A server of its own (SQLite), a tenant with its PKI as keyring, and a group bootstrap token."""
    need_lab()
    with live_server(tmp_path / "server") as srv:
        f = make_fleet(srv, tmp_path)
        try:
            yield f
        finally:
            f.shutdown()
