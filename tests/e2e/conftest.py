"""End-to-end fixtures: a real server, a tenant with its own PKI and ext4 releases, lab devices, a registry."""

from __future__ import annotations

import os
import shutil
import subprocess
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
from tests.live import LiveServer, free_port, live_server

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


@dataclass
class Registry:
    host: str
    username: str
    password: str

    def push(self, work: Path, name: str, tag: str, marker: str) -> str:
        """Build a tiny busybox image locally (`podman import`) and push it; returns the reference."""
        root = work / f"img-{name}-{tag}"
        (root / "bin").mkdir(parents=True, exist_ok=True)
        shutil.copy("/usr/bin/busybox", root / "bin" / "busybox")
        (root / "version").write_text(marker + "\n")
        tar = work / f"img-{name}-{tag}.tar"
        subprocess.run(["tar", "-C", str(root), "-cf", str(tar), "."], check=True)
        ref = f"{self.host}/{name}:{tag}"
        cmd = 'CMD ["/bin/busybox","sh","-c","trap \\"exit 0\\" TERM; while true; do sleep 1; done"]'
        subprocess.run(["podman", "import", "--quiet", "--change", cmd, str(tar), ref], check=True, capture_output=True)
        subprocess.run(
            ["podman", "push", "--quiet", "--tls-verify=false", "--creds", f"{self.username}:{self.password}", ref],
            check=True,
            capture_output=True,
        )
        subprocess.run(["podman", "rmi", "--force", ref], check=False, capture_output=True)
        return ref


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """Debian's docker-registry (the CNCF distribution registry) on loopback, with htpasswd credentials."""
    for tool, pkg in (("docker-registry", "docker-registry"), ("podman", "podman"), ("runc", "runc"),
                      ("htpasswd", "apache2-utils"), ("busybox", "busybox-static")):  # fmt: skip
        if shutil.which(tool) is None:
            pytest.skip(f"'{tool}' is missing: install the Debian package '{pkg}'")
    d = tmp_path_factory.mktemp("registry")
    subprocess.run(["htpasswd", "-Bbc", str(d / "htpasswd"), "lab", "lab-secret"], check=True, capture_output=True)
    port = free_port()
    (d / "config.yml").write_text(
        f"version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {d / 'data'}\n"
        f"http:\n  addr: 127.0.0.1:{port}\nauth:\n  htpasswd:\n    realm: lab\n    path: {d / 'htpasswd'}\n"
    )
    log = (d / "registry.log").open("wb")
    proc = subprocess.Popen(["docker-registry", "serve", str(d / "config.yml")], stdout=log, stderr=log)
    try:
        end = time.monotonic() + 20
        while time.monotonic() < end:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/v2/").status_code == 401:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        yield Registry(f"127.0.0.1:{port}", "lab", "lab-secret")
    finally:
        proc.terminate()
        proc.wait(10)
