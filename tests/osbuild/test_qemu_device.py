"""A whole device in QEMU, Debian 13 "trixie" with RAUC 1.13: v1 boots through OVMF and GRUB, its agent enrolls
with the server on the host; a rollout of v2 (v1 plus a few packages) is installed by RAUC streaming the
signed URL over HTTP (Range requests through NBD), adaptively: RAUC fetches only the blocks its slots lack, so
the server counts at most 40 % of the bundle for the device; the device reboots into the other slot with the
GRUB backend and reports success. A v3 (v2 with an init that dies before the health check), installed adaptively
too (at most 10 % of its bundle fetched), is rolled back by GRUB's boot counting and reported as rolled back.
A container app with a named volume (pulled from a registry on the host) runs from v1 on, through the update, the
rollback and a power cut, and keeps its volume's data: it appends the boot's id to a file in the volume at each
start and serves the file on a port QEMU forwards to the host. Last, a factory reset asked for on the server: the
device erases its data partition, enrolls again with the credential it held, and runs the app again on an empty
volume. Every slot is mounted read-only, /etc and /var being overlays on the data partition: the machine id systemd
wrote to /etc at the first boot stays through the update, the rollback and the power cut, and the factory reset
erases it with the rest. A remote command (`findmnt` of the root) and a read of the agent's journal run on the
device and come back. The serial console is kept under $BULKHEAD_TEST_ARTIFACTS when it fails."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from bulkhead.lab.pki import make_pki
from bulkhead.lab.qemu import OVMF_CODE, QemuDevice, QemuSpec
from bulkhead.osbuild import BuildSpec, build_image
from bulkhead.osbuild.layout import Layout
from tests.live import LiveServer, free_port, live_server
from tests.osbuild.conftest import need_image_tools
from tests.registry import Registry

COMPATIBLE = "bulkhead-qemux86-64"
TRIXIE = ("trixie", "trixie-updates", "trixie-security")
# Slots of 1.6 GiB (the product's are 2 GiB): RAUC hashes both slots whole for an adaptive install, which takes
# minutes under QEMU's emulation; the image needs about 1.45 GiB (its kernel modules are stored uncompressed, so
# that a kernel update's delta sees through them: osbuild/kmods.py; the device boots from the initramfs of boot
# drivers and loads nbd and dm-verity from the slot).
LAYOUT = Layout(slot_mib=1600)
# The app: each start appends the boot's id to its volume, then serves the volume over HTTP on the device's port 8080.
APP_COMMAND = "cat /proc/sys/kernel/random/boot_id >> /vol/starts && exec /bin/busybox httpd -f -p 8080 -h /vol"
V2_PACKAGES = ("jq", "less", "tree")  # v2 adds a few packages (and their libraries) to v1
BROKEN = 'ln -sf /bin/false "$1/usr/sbin/init"'


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
def test_qemu_device_updates_through_grub_and_rolls_back_a_broken_release(
    tmp_path: Path, image_cache: Path, registry: Registry
) -> None:
    need_image_tools()
    if shutil.which("qemu-system-x86_64") is None or not OVMF_CODE.exists():
        pytest.skip("QEMU needs the Debian packages qemu-system-x86 and ovmf ('make setup' installs them)")
    pki = make_pki(tmp_path / "pki")
    port, app_port = free_port(), free_port()
    guest_registry = registry.host.replace("127.0.0.1", "10.0.2.2")  # QEMU's user networking: the host's loopback
    image = registry.push(tmp_path, "vol", "1", "vol-v1").replace(registry.host, guest_registry)
    env = {"BULKHEAD_ACCESS_LOG": "1", "BULKHEAD_POLL_INTERVAL": "15"}  # the device hears of each step sooner
    with live_server(tmp_path / "server", env, port=port) as srv:
        token = srv.tenant(ca=pki.ca)
        with srv.client(token) as c:
            boot = c.post("/api/v1/bootstrap-tokens", json={"name": "qemu", "group": "qemu"}).json()["token"]
            app = {"name": "vol", "image": image, "command": ["/bin/busybox", "sh", "-c", APP_COMMAND],
                   "volumes": ["appdata:/vol"], "ports": ["8080:8080"]}  # fmt: skip
            c.post("/api/v1/apps", json={"name": "vol", "version": "1", "containers": [app]}).raise_for_status()
            creds = {"host": guest_registry, "username": registry.username, "password": registry.password}
            c.put("/api/v1/registries", json=creds).raise_for_status()
            c.patch("/api/v1/groups/qemu/desired", json={"apps": {"vol": "1"}}).raise_for_status()
        started = time.monotonic()
        built = {}
        for version, packages, hooks in (("1", (), ()), ("2", V2_PACKAGES, ()), ("3", V2_PACKAGES, (BROKEN,))):
            spec = BuildSpec(
                version=version, out=tmp_path / f"v{version}", cert=pki.cert, key=pki.key, keyring=pki.ca,
                compatible=COMPATIBLE, server=f"http://10.0.2.2:{port}", bootstrap_token=boot,
                insecure_registries=(guest_registry,), packages=packages, customize=hooks, cache=image_cache,
                suites=TRIXIE, layout=LAYOUT,
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
        spec = QemuSpec(disk, tmp_path / "serial.log", name="qemu-dev-1", cpus=1, forwards=((app_port, 8080),))
        dev = QemuDevice(spec)
        dev.start()
        try:
            t0 = time.monotonic()

            def device() -> dict[str, Any] | None:
                with srv.client(token) as c:
                    r = c.get("/api/v1/devices/qemu-dev-1")
                    return r.json() if r.status_code == 200 else None

            def starts() -> list[str]:
                """The boots the app's container started in, from its volume (empty while it does not answer)."""
                try:
                    r = httpx.get(f"http://127.0.0.1:{app_port}/starts", timeout=10)
                except httpx.HTTPError:
                    return []
                return r.text.split() if r.status_code == 200 else []

            doc = _wait(lambda: (d := device()) and d["reported"].get("os_version") == "1" and d, 600, "v1 to report", dev)
            print(f"boot to the first report: {time.monotonic() - t0:.0f} s")
            assert doc["compatible"] == COMPATIBLE and doc["reported"]["rauc"]["booted"] == "A"
            # The slot is mounted read-only; /etc and /var are overlays on the data partition (osbuild/layout.py's
            # preinit), so the machine id systemd wrote to /etc at the first boot stays until the factory reset.
            root = doc["reported"]["root"]
            assert root["read_only"] is True and root["overlays"] == ["/etc", "/var"] and root["machine_id"], root
            machine_id = root["machine_id"]
            assert "bulkhead preinit: the root file system is read-only" in dev.serial()
            seen = _wait(starts, 600, "the app to run on v1", dev)
            print(f"the app runs on v1: {time.monotonic() - t0:.0f} s")
            # A remote command and a read of the journal, run by the agent on the device at its next poll.
            with srv.client(token) as c:
                mounts = c.post("/api/v1/devices/qemu-dev-1/commands", json={"argv": ["findmnt", "-no", "OPTIONS", "/"]})
                journal = c.post("/api/v1/devices/qemu-dev-1/logs", json={"unit": "bulkhead-agent.service", "lines": 50})
                ids = [mounts.json()["id"], journal.json()["id"]]

            def finished() -> list[dict[str, Any]] | None:
                with srv.client(token) as c:
                    cmds = [c.get(f"/api/v1/commands/{i}").json() for i in ids]
                return cmds if all(x["status"] not in ("pending", "running") for x in cmds) else None

            ran, logs = _wait(finished, 300, "the remote command and the journal read", dev)
            assert ran["status"] == "exited" and ran["exit_code"] == 0 and ran["output"].startswith("ro,"), ran
            assert logs["status"] == "exited" and logs["exit_code"] == 0, logs
            assert "Started bulkhead-agent.service" in logs["output"], logs["output"][-2000:]
            print(f"a remote command and the agent's journal came back: {time.monotonic() - t0:.0f} s")

            with srv.client(token) as c:
                body = {"name": "to-v2", "release_id": releases["2"], "target": {"groups": ["qemu"]}}
                assert c.post("/api/v1/rollouts", json=body).status_code == 201
            act = _wait(lambda: (a := _action(srv, token, "to-v2")) and not a["active"] and a, 1200, "v2 to finish", dev)
            assert act["status"] == "success", act
            doc = _wait(lambda: (d := device()) and d["reported"].get("os_version") == "2" and d, 300, "v2 to report", dev)
            assert doc["reported"]["rauc"]["booted"] == "B"
            assert "Booting slot B" in dev.serial()
            assert doc["reported"]["root"] == root, "v2's root is read-only too, with v1's /etc changes"
            # The app came back on v2 (the health check that let v2 stay requires it) with its volume's data.
            now = _wait(lambda: (s := starts()) and len(s) > len(seen) and s, 300, "the app on v2", dev)
            assert now[: len(seen)] == seen and now[-1] not in seen, (seen, now)
            seen = now
            print(f"v2 runs the app with its volume: {time.monotonic() - t0:.0f} s")
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
            v3_size = built["3"].bundle.stat().st_size  # type: ignore[union-attr]
            v3_served = _wait(lambda: (d := device()) and d["bytes_served"] - served, 60, "v3's bytes counted", dev)
            print(f"v2 -> v3: the device fetched {v3_served} of the bundle's {v3_size} bytes ({v3_served / v3_size:.1%})")
            # One file differs from v2 (the root file system keeps its UUID from release to release, so its metadata
            # blocks are v2's): 3.4 % measured (2026-12-05), 25.4 % when each release had its own UUID.
            assert 0 < v3_served <= 0.1 * v3_size, (v3_served, v3_size)
            log = dev.serial()
            assert "Attempted to kill init" in log  # v3 never reached the agent
            a_at = log.rfind("Booting slot A")
            assert a_at >= 0 and "Booting slot B" in log[a_at:]  # GRUB skipped A after its failed try
            doc = device()
            assert doc is not None and doc["reported"]["os_version"] == "2" and doc["reported"]["rauc"]["booted"] == "B"
            assert doc["reported"]["root"]["machine_id"] == machine_id
            now = _wait(lambda: (s := starts()) and len(s) > len(seen) and s, 300, "the app after the rollback", dev)
            assert now[: len(seen)] == seen and now[-1] not in seen, (seen, now)
            seen = now
            print(f"rolled back, the app runs with its volume: {time.monotonic() - t0:.0f} s")

            # A power cut with the container running: the next boot finds Podman's storage left in use, reads all
            # of it, and starts the container on the same volume.
            console = len(dev.serial())
            dev.reset()  # under -no-reboot QEMU ends; _wait's running() starts it again, cold
            now = _wait(lambda: (s := starts()) and len(s) > len(seen) and s, 600, "the app after a power cut", dev)
            assert now[: len(seen)] == seen and now[-1] not in seen, (seen, now)
            assert "the last boot did not stop its containers" in dev.serial()[console:]
            assert "the last boot did not stop its containers" not in dev.serial()[:console]  # clean reboots stopped them
            print(f"after a power cut, the app runs with its volume: {time.monotonic() - t0:.0f} s")

            # Factory reset: the data partition (the app's volume, the agent's state and credential) is erased at the
            # next boot; the device enrolls again with the credential it held and converges on an empty partition.
            console = len(dev.serial())
            with srv.client(token) as c:
                epoch = c.post("/api/v1/devices/qemu-dev-1/factory-reset").json()["credential_epoch"]

            def reenrolled() -> bool:
                with srv.client(token) as c:
                    events = c.get("/api/v1/devices/qemu-dev-1/events").json()
                return any(e["details"].get("event") == "enrolled" and e["details"].get("factory_reset") for e in events)

            _wait(reenrolled, 600, "the device to enroll again after its factory reset", dev)
            fresh = _wait(starts, 600, "the app on the erased data partition", dev)
            assert len(fresh) == 1 and fresh[0] not in seen, (seen, fresh)  # an empty volume: only this start
            assert "factory reset: the data partition is empty" in dev.serial()[console:]
            assert "bulkhead preinit: a factory reset is pending" in dev.serial()[console:]
            doc = device()
            assert doc is not None and doc["credential_epoch"] > epoch and doc["factory_reset_requested_at"] is None
            assert doc["reported"]["root"]["read_only"] is True
            assert doc["reported"]["root"]["machine_id"] != machine_id, "the erasure took /etc's changes with it"
            print(f"whole device scenario: {time.monotonic() - t0:.0f} s")
            with srv.client(token) as c:
                for e in c.get("/api/v1/devices/qemu-dev-1/events").json():
                    print(e["device_time"], e["kind"], e["phase"], str(e["details"])[:120])  # where the time went
        except BaseException:
            keep = Path(os.environ.get("BULKHEAD_TEST_ARTIFACTS", "test-artifacts"))
            keep.mkdir(parents=True, exist_ok=True)
            shutil.copy(tmp_path / "serial.log", keep / "qemu-serial.log")
            raise
        finally:
            dev.stop()
