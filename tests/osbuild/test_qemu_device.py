"""A whole device in QEMU, Debian 13 "trixie" with RAUC 1.13: v1 boots through OVMF and GRUB, its agent enrolls
with the server on the host; a rollout of v2 (v1 plus a few changed files) is installed by RAUC streaming the
signed URL over HTTP (Range requests through NBD), adaptively: RAUC fetches only the blocks its slots lack, so
the server counts at most 40 % of the bundle for the device; the device reboots into the other slot with the
GRUB backend and reports success. A v3 whose init dies before the health check is rolled back by GRUB's boot
counting and reported as rolled back. The serial console is kept under $BULKHEAD_TEST_ARTIFACTS when it fails."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bulkhead.lab.pki import make_pki
from bulkhead.lab.qemu import OVMF_CODE, QemuDevice, QemuSpec
from bulkhead.osbuild import BuildSpec, build_image
from bulkhead.osbuild.layout import Layout
from tests.live import LiveServer, free_port, live_server
from tests.osbuild.conftest import need_image_tools

COMPATIBLE = "bulkhead-qemux86-64"
TRIXIE = ("trixie", "trixie-updates", "trixie-security")
# Slots of 1 GiB (the product's are 2 GiB): RAUC hashes both slots whole for an adaptive install, which takes
# minutes under QEMU's emulation; the image needs about 0.9 GiB.
LAYOUT = Layout(slot_mib=1024)
V2_CHANGE = 'mkdir -p "$1/usr/share/bulkhead-v2" && head -c 3000000 /dev/urandom > "$1/usr/share/bulkhead-v2/payload"'


def _wait(cond: Callable[[], Any], timeout: float, what: str, dev: QemuDevice) -> Any:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = cond()
        if value:
            return value
        if not dev.running():
            raise AssertionError(f"QEMU stopped while waiting for {what}")
        if dev.boot_watchdog():
            print(f"the machine hung between firmware and kernel while waiting for {what}: reset it")
        time.sleep(2)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}; serial tail:\n{dev.serial()[-3000:]}")


def _action(srv: LiveServer, token: str, rollout: str) -> dict[str, Any] | None:
    with srv.client(token) as c:
        acts = c.get(f"/api/v1/rollouts/{rollout}/actions").json()
    return acts[0] if acts else None


@pytest.mark.slow
def test_qemu_device_updates_through_grub_and_rolls_back_a_broken_release(tmp_path: Path, image_cache: Path) -> None:
    need_image_tools()
    if shutil.which("qemu-system-x86_64") is None or not OVMF_CODE.exists():
        pytest.skip("QEMU needs the Debian packages qemu-system-x86 and ovmf ('make setup' installs them)")
    pki = make_pki(tmp_path / "pki")
    port = free_port()
    with live_server(tmp_path / "server", {"BULKHEAD_ACCESS_LOG": "1"}, port=port) as srv:
        token = srv.tenant(ca=pki.ca)
        with srv.client(token) as c:
            boot = c.post("/api/v1/bootstrap-tokens", json={"name": "qemu", "group": "qemu"}).json()["token"]
        started = time.monotonic()
        built = {}
        for version, hooks in (("1", ()), ("2", (V2_CHANGE,)), ("3", ('ln -sf /bin/false "$1/usr/sbin/init"',))):
            spec = BuildSpec(
                version=version, out=tmp_path / f"v{version}", cert=pki.cert, key=pki.key, keyring=pki.ca,
                compatible=COMPATIBLE, server=f"http://10.0.2.2:{port}", bootstrap_token=boot,
                customize=hooks, cache=image_cache, suites=TRIXIE, layout=LAYOUT,
                make_bundle=version != "1", make_disk=version == "1",  # v1 boots from its disk, v2 and v3 go out as bundles
            )  # fmt: skip
            built[version] = build_image(spec)
            built[version].rootfs.unlink()  # keep the disk within a CI machine's room
        print(f"three images built in {time.monotonic() - started:.0f} s")
        releases = {}
        with srv.client(token) as c:
            for version in ("2", "3"):
                bundle = built[version].bundle
                assert bundle is not None and built[version].disk is None
                r = c.post("/api/v1/releases", content=bundle.read_bytes(), timeout=300)
                assert r.status_code == 201, r.text
                releases[version] = r.json()["id"]

        disk = tmp_path / "device.img"
        subprocess.run(["cp", "--sparse=always", str(built["1"].disk), str(disk)], check=True)
        # One emulated CPU: QEMU runs one host thread per guest CPU, and the suite's other worker needs the other core.
        dev = QemuDevice(QemuSpec(disk, tmp_path / "serial.log", name="qemu-dev-1", cpus=1))
        dev.start()
        try:
            t0 = time.monotonic()

            def device() -> dict[str, Any] | None:
                with srv.client(token) as c:
                    r = c.get("/api/v1/devices/qemu-dev-1")
                    return r.json() if r.status_code == 200 else None

            doc = _wait(lambda: (d := device()) and d["reported"].get("os_version") == "1" and d, 600, "v1 to report", dev)
            print(f"boot to the first report: {time.monotonic() - t0:.0f} s")
            assert doc["compatible"] == COMPATIBLE and doc["reported"]["rauc"]["booted"] == "A"

            with srv.client(token) as c:
                body = {"name": "to-v2", "release_id": releases["2"], "target": {"groups": ["qemu"]}}
                assert c.post("/api/v1/rollouts", json=body).status_code == 201
            act = _wait(lambda: (a := _action(srv, token, "to-v2")) and not a["active"] and a, 1200, "v2 to finish", dev)
            assert act["status"] == "success", act
            doc = _wait(lambda: (d := device()) and d["reported"].get("os_version") == "2" and d, 300, "v2 to report", dev)
            assert doc["reported"]["rauc"]["booted"] == "B"
            assert "Booting slot B" in dev.serial()
            # RAUC streamed the signed URL and fetched only what the slots lacked: the server counted the bytes.
            size = built["2"].bundle.stat().st_size  # type: ignore[union-attr]
            served = doc["bytes_served"]
            print(f"v1 -> v2: the device fetched {served} of the bundle's {size} bytes ({served / size:.1%})")
            assert 0 < served <= 0.4 * size, (served, size)
            ranges = re.findall(r'"GET /dl/[0-9a-f]{64} HTTP/1\.1" 206', (tmp_path / "server" / "server.log").read_text())
            print(f"the server answered {len(ranges)} range requests on the signed URL")
            assert len(ranges) > 10  # RAUC streamed: many ranges of the signed URL, no whole download

            with srv.client(token) as c:
                body = {"name": "to-v3", "release_id": releases["3"], "target": {"groups": ["qemu"]}}
                assert c.post("/api/v1/rollouts", json=body).status_code == 201
            act = _wait(lambda: (a := _action(srv, token, "to-v3")) and not a["active"] and a, 1200, "v3 to end", dev)
            assert act["status"] == "rolled_back", act
            log = dev.serial()
            assert "Attempted to kill init" in log  # v3 never reached the agent
            a_at = log.rfind("Booting slot A")
            assert a_at >= 0 and "Booting slot B" in log[a_at:]  # GRUB skipped A after its failed try
            doc = device()
            assert doc is not None and doc["reported"]["os_version"] == "2" and doc["reported"]["rauc"]["booted"] == "B"
            print(f"whole device scenario: {time.monotonic() - t0:.0f} s")
        except BaseException:
            keep = Path(os.environ.get("BULKHEAD_TEST_ARTIFACTS", "test-artifacts"))
            keep.mkdir(parents=True, exist_ok=True)
            shutil.copy(tmp_path / "serial.log", keep / "qemu-serial.log")
            raise
        finally:
            dev.stop()
