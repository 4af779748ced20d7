"""contrib/compose: the images built from Debian packages (scripts/build-images.sh), the stack started with one
`podman-compose up`, and a device that enrolls, polls and downloads its bundle through nginx's TLS.

The Debian roots are cached under ~/.cache/bulkhead-images (BULKHEAD_IMAGE_CACHE): the first run builds them
(a few minutes), later runs only re-import them unless the project's source changed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import RAUC_DATA, need_tool
from tests.e2e.test_nginx_tls import make_tls_pki
from tests.live import free_port

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "contrib" / "compose" / "compose.yaml"
GOOD = RAUC_DATA / "good-verity-bundle.raucb"
# What containers need on this machine (DESIGN.md): runc, and lowered limits.
CONTAINERS_CONF = """[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]
[engine]
runtime = "runc"
"""


def _compose_tool() -> str:
    found = shutil.which("podman-compose") or str(Path(sys.executable).parent / "podman-compose")
    if not Path(found).exists():
        pytest.skip("podman-compose is missing: pip install -e '.[dev]'")
    return found


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path, str]]:
    """The compose stack up on a free port: (https URL, CA file, admin token); torn down with its volumes."""
    for tool, package in (("podman", "podman"), ("mmdebstrap", "mmdebstrap")):
        need_tool(tool, package)
    if os.geteuid() != 0:
        pytest.skip("the image build runs as root (mmdebstrap --mode=root)")
    compose = _compose_tool()
    work = tmp_path_factory.mktemp("compose")
    conf = work / "containers.conf"
    conf.write_text(CONTAINERS_CONF)
    env = {**os.environ, "CONTAINERS_CONF": str(conf), "PYTHON": sys.executable}
    build = subprocess.run(["bash", str(ROOT / "scripts" / "build-images.sh")], env=env, capture_output=True, text=True)
    assert build.returncode == 0, build.stderr[-4000:]

    pki = make_tls_pki(work / "tls")
    shutil.copy(pki.ca, work / "tls" / "device-ca.pem")
    for f in (work / "tls").iterdir():
        f.chmod(0o644)  # read by nginx's own user in its container
    port, admin = free_port(), "bhs_" + uuid.uuid4().hex
    env.update(
        {
            "BULKHEAD_HTTPS_PORT": str(port),
            "BULKHEAD_TLS_DIR": str(work / "tls"),
            "BULKHEAD_PUBLIC_URL": f"https://localhost:{port}",
            "BULKHEAD_ADMIN_TOKEN": admin,
            "POSTGRES_PASSWORD": uuid.uuid4().hex,
        }
    )
    project = f"bh{uuid.uuid4().hex[:8]}"
    cmd = [compose, "--project-name", project, "--file", str(COMPOSE)]
    try:
        up = subprocess.run([*cmd, "up", "--detach"], env=env, capture_output=True, text=True, timeout=300)
        assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
        url = f"https://localhost:{port}"
        deadline, last = time.monotonic() + 120, ""
        while time.monotonic() < deadline:
            try:
                r = httpx.get(url + "/readyz", verify=str(pki.ca), timeout=5)
                if r.status_code == 200:
                    break
                last = f"{r.status_code} {r.text[:500]}"
            except httpx.HTTPError as exc:
                last = repr(exc)
            time.sleep(1)
        else:
            logs = subprocess.run([*cmd, "logs"], env=env, capture_output=True, text=True, timeout=60)
            pytest.fail(f"the stack is not ready in 120 s ({last}):\n{logs.stdout[-4000:]}{logs.stderr[-2000:]}")
        yield url, pki.ca, admin
    finally:
        subprocess.run([*cmd, "down", "--volumes"], env=env, capture_output=True, timeout=300)


def test_the_compose_stack_serves_devices_through_nginx_tls(stack: tuple[str, Path, str]) -> None:
    url, ca, admin = stack
    ready = httpx.get(url + "/readyz", verify=str(ca)).json()
    assert ready["status"] == "ready", ready  # the database, the queue and the store answer
    with httpx.Client(base_url=url, verify=str(ca), timeout=60) as c:
        r = c.post("/api/v1/tenants", json={"name": "acme"}, headers={"authorization": f"Bearer {admin}"})
        assert r.status_code == 201, r.text
        tenant = {"authorization": f"Bearer {r.json()['token']}"}
        c.put("/api/v1/keyring", json={"pem": (RAUC_DATA / "openssl-ca" / "dev-ca.pem").read_text()}, headers=tenant)
        rel = c.post("/api/v1/releases", content=GOOD.read_bytes(), headers=tenant)
        assert rel.status_code == 201, rel.text  # upload through nginx, verified, into PostgreSQL and the store
        boot = c.post("/api/v1/bootstrap-tokens", json={"name": "b"}, headers=tenant).json()["token"]
        dev = c.post("/device/v1/enroll", json={"bootstrap_token": boot, "name": "d1", "compatible": "Test Config"})
        assert dev.status_code in (200, 201), dev.text
        device = {"authorization": f"Bearer {dev.json()['credential']}"}
        c.put("/api/v1/devices/d1/desired-release", json={"release_id": rel.json()["id"]}, headers=tenant).raise_for_status()
        state = c.get("/device/v1/state", headers=device)
        assert state.status_code == 200 and state.json()["desired"]["release"]["id"] == rel.json()["id"]
        bundle = f"/device/v1/releases/{rel.json()['id']}/bundle"
        assert c.get(bundle, headers=device).content == GOOD.read_bytes()
        part = c.get(bundle, headers={**device, "range": "bytes=100-199"})
        assert part.status_code == 206 and part.content == GOOD.read_bytes()[100:200]
