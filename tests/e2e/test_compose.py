"""contrib/compose/compose.yaml for real: its images built from Debian packages (scripts/build-images.sh, nothing
pulled from a registry), the stack started with one `podman-compose up -d`, and a lab device with the Bulkhead
agent and real RAUC enrolling and updating through its nginx over TLS, the bundle coming from the stack's
SeaweedFS bucket (the S3 store), not from the server's volume.

A first image build takes about 11 minutes on a 2-core machine, so this module is not part of `make test` (its
budget is 40 minutes): `make test-compose` runs it, and CI runs that after `make test` (.ci/run). Image roots are
cached (~/.cache/bulkhead-images): a second run rebuilds only what changed.
"""

from __future__ import annotations

import os
import secrets
import shutil
import ssl
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import build_release, make_fleet, need_lab
from tests.e2e.test_nginx_tls import make_tls_pki
from tests.live import LiveServer, free_port

pytestmark = pytest.mark.compose

ROOT = Path(__file__).parents[2]
COMPOSE = ROOT / "contrib" / "compose"


def _compose_exe() -> str:
    exe = shutil.which("podman-compose") or str(Path(sys.executable).parent / "podman-compose")
    if not Path(exe).exists():
        pytest.skip("podman-compose is missing: pip install podman-compose (in the dev extra)")
    return exe


def _need() -> None:
    need_lab()
    missing = [t for t in ("podman", "mmdebstrap") if shutil.which(t) is None]
    if missing:
        pytest.skip(f"missing {', '.join(missing)}: install Debian packages podman and mmdebstrap")


def _build_images() -> None:
    r = subprocess.run(
        ["bash", str(ROOT / "scripts" / "build-images.sh")],
        env={**os.environ, "PYTHON": sys.executable},
        capture_output=True,
        text=True,
        timeout=2400,
    )
    assert r.returncode == 0, f"scripts/build-images.sh failed:\n{r.stderr[-4000:]}"


@dataclass(frozen=True)
class Stack:
    url: str  # its nginx
    exe: str
    project: str
    work: Path
    env: dict[str, str]

    def exec(self, service: str, script: str) -> str:
        """The output of a shell script run in a service's container (podman-compose exec)."""
        r = subprocess.run(
            [self.exe, "-p", self.project, "exec", "-T", service, "bash", "-c", script],
            cwd=self.work, env=self.env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert r.returncode == 0, f"{script!r} in {service} failed ({r.returncode}):\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}"
        return r.stdout

    def seaweedfs_files(self, directory: str) -> dict[str, int]:
        """The files of a directory of SeaweedFS's filer (a bucket is /buckets/NAME), by weed shell in its container:
        name -> size."""
        out = self.exec("seaweedfs", f"echo 'fs.ls -l {directory}' | weed shell -master=127.0.0.1:9333 -filer=127.0.0.1:8888")
        # -rw-rw----   2 root root 4194816 /buckets/NAME/ab/abcd...
        files = [line.split() for line in out.splitlines() if line.startswith("-")]
        return {f[-1].rsplit("/", 1)[-1]: int(f[-2]) for f in files}


@contextmanager
def _stack(work: Path, env: dict[str, str]) -> Iterator[Stack]:
    """The compose stack up (one command); down with its volumes afterwards."""
    exe = _compose_exe()
    project = f"bh-{uuid.uuid4().hex[:8]}"
    for name in ("compose.yaml", "nginx.conf"):
        shutil.copy(COMPOSE / name, work / name)
    # As docs/deploy.md says for hosts like these test machines: runc, and limits the VM's kernel takes.
    conf = work / "containers.conf"
    conf.write_text('[containers]\ndefault_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]\n[engine]\nruntime = "runc"\n')
    run_env = {**os.environ, "CONTAINERS_CONF": str(conf), **env}
    up = subprocess.run([exe, "-p", project, "up", "-d"], cwd=work, env=run_env, capture_output=True, text=True, timeout=600)
    try:
        assert up.returncode == 0, f"podman-compose up failed:\n{up.stdout[-2000:]}\n{up.stderr[-4000:]}"
        yield Stack(f"https://127.0.0.1:{env['BULKHEAD_HTTPS_PORT']}", exe, project, work, run_env)
    finally:
        logs = subprocess.run([exe, "-p", project, "logs", "--tail", "40"], cwd=work, env=run_env, capture_output=True, text=True)
        (work / "compose.log").write_text(logs.stdout + logs.stderr)
        subprocess.run([exe, "-p", project, "down", "-v"], cwd=work, env=run_env, capture_output=True, timeout=300)


def _ready(url: str, ca: Path, seconds: float) -> dict[str, object]:
    """/readyz through nginx's TLS, once the server has migrated the database and reached Redis."""
    deadline, last = time.monotonic() + seconds, "no answer"
    while time.monotonic() < deadline:
        try:
            r = httpx.get(url + "/readyz", verify=ssl.create_default_context(cafile=ca), timeout=5)
            if r.status_code == 200:
                body: dict[str, object] = r.json()
                return body
            last = f"{r.status_code} {r.text[:300]}"
        except httpx.HTTPError as exc:
            last = repr(exc)
        time.sleep(1)
    raise AssertionError(f"the compose stack was not ready within {seconds:.0f} s: {last}")


def test_the_compose_stack_starts_with_one_command_and_a_lab_device_updates_through_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _need()
    _compose_exe()
    _build_images()  # cached roots: seconds when nothing changed
    work = tmp_path / "compose"
    (work / "tls").mkdir(parents=True)
    pki = make_tls_pki(tmp_path / "tls-pki")  # not "pki": make_fleet puts the RAUC signing PKI there
    for src, dst in ((pki.server_cert, "server.pem"), (pki.server_key, "server.key"), (pki.ca, "device-ca.pem")):
        shutil.copy(src, work / "tls" / dst)
    (work / "tls" / "server.key").chmod(0o644)  # read by nginx's workers in their container
    port = free_port()
    admin = "bhs_" + secrets.token_urlsafe(32)
    env = {
        "POSTGRES_PASSWORD": secrets.token_urlsafe(16),
        "BULKHEAD_ADMIN_TOKEN": admin,
        "BULKHEAD_PUBLIC_URL": f"https://127.0.0.1:{port}",
        "BULKHEAD_HTTPS_PORT": str(port),
        "BULKHEAD_TLS_DIR": str(work / "tls"),
        "S3_ACCESS_KEY": "bh-" + secrets.token_hex(8),
        "S3_SECRET_KEY": secrets.token_urlsafe(24),
        "S3_BUCKET": "bulkhead-compose-test",
    }
    with _stack(work, env) as stack:
        url = stack.url
        ready = _ready(url, pki.ca, 240)
        assert ready == {"status": "ready", "checks": {"database": "ok", "queue": "ok", "store": "ok"}}, ready
        monkeypatch.setenv("SSL_CERT_FILE", str(pki.ca))  # the agent and the test's clients trust the test CA only
        srv = LiveServer(url, admin, work, "compose")
        fleet = make_fleet(srv, tmp_path)
        try:
            dev = fleet.device("compose-dev", initial_version="1.0")
            v2 = fleet.upload(build_release(fleet.work, "2.0", fleet.pki))
            fleet.wait(lambda: fleet.show("compose-dev")["last_seen"], 90, "the agent to enroll through the stack")
            with fleet.api() as c:
                c.put("/api/v1/devices/compose-dev/desired-release", json={"release_id": v2["id"]}).raise_for_status()
            fleet.wait(lambda: fleet.show("compose-dev")["update"].get("phase") == "success", 300, "the update")
            assert dev.booted == "B" and fleet.show("compose-dev")["update"]["version"] == "2.0"
            served = fleet.wait(lambda: fleet.show("compose-dev")["bytes_served"], 60, "the byte count")
            assert served >= v2["size"]  # the bundle came through the stack's nginx, the agent's only address
            # ... from SeaweedFS: the bundle is an object of its bucket (under its digest), the server's volume holds
            # no artifact (only its scratch directory)
            objects = stack.seaweedfs_files(f"/buckets/{env['S3_BUCKET']}/{v2['sha256'][:2]}/")
            assert objects.get(v2["sha256"]) == v2["size"], objects
            local = stack.exec("server", "find /var/lib/bulkhead -path '*/artifacts/*' -type f")
            assert local.strip() == "", f"artifacts in the server's volume:\n{local}"
        finally:
            fleet.shutdown()
