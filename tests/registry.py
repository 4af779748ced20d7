"""A real container registry for tests: Debian's docker-registry on loopback, and tiny busybox images pushed to it."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.live import free_port

__all__ = ["Registry", "registry_server"]


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


@contextmanager
def registry_server(d: Path) -> Iterator[Registry]:
    """Debian's docker-registry (the CNCF distribution registry) on loopback in `d`, with htpasswd credentials."""
    for tool, pkg in (("docker-registry", "docker-registry"), ("podman", "podman"), ("runc", "runc"),
                      ("htpasswd", "apache2-utils"), ("busybox", "busybox-static")):  # fmt: skip
        if shutil.which(tool) is None:
            pytest.skip(f"'{tool}' is missing: install the Debian package '{pkg}'")
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
