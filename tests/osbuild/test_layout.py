"""The image layout's texts, checked by the tools that read them: sfdisk, grub-script-check, RAUC's keyfile syntax."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from bulkhead.lab.device import PODMAN_RUN_ARGS
from bulkhead.osbuild import layout as L
from bulkhead.rauc.keyfile import get_string, parse_keyfile


def test_partition_table_is_what_sfdisk_writes(tmp_path: Path) -> None:
    if shutil.which("sfdisk") is None:
        pytest.skip("sfdisk is missing: install the Debian package fdisk")
    lay = L.Layout(esp_mib=8, slot_mib=32, data_mib=16)
    disk = tmp_path / "disk.img"
    with disk.open("wb") as f:
        f.truncate(lay.disk_mib << 20)
    subprocess.run(["sfdisk", "-q", str(disk)], input=L.partition_script(lay, "seed"), text=True, check=True)
    table = json.loads(subprocess.run(["sfdisk", "--json", str(disk)], capture_output=True, text=True, check=True).stdout)
    parts = table["partitiontable"]["partitions"]
    assert [p["name"] for p in parts] == ["efi", "rootfs-a", "rootfs-b", "data"]
    assert [(p["start"] // 2048, p["size"] // 2048) for p in parts] == lay.offsets_mib
    assert parts[0]["type"] == "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
    assert parts[1]["uuid"] == L.stable_uuid("seed", "rootfs-a").upper()  # fixed: the disk image is reproducible


def test_grub_script_parses_and_boots_each_slot_from_its_own_partition(tmp_path: Path) -> None:
    cfg = L.grub_cfg(L.Layout())
    assert "linux (hd0,gpt2)/vmlinuz root=/dev/vda2" in cfg and "rauc.slot=A" in cfg
    assert "linux (hd0,gpt3)/vmlinuz root=/dev/vda3" in cfg and "rauc.slot=B" in cfg
    assert "save_env --file $prefix/grubenv A_TRY B_TRY" in cfg
    if shutil.which("grub-script-check") is None:
        pytest.skip("grub-script-check is missing: install the Debian package grub-common")
    (tmp_path / "grub.cfg").write_text(cfg)
    subprocess.run(["grub-script-check", str(tmp_path / "grub.cfg")], check=True)


def test_system_conf_names_the_grub_backend_and_both_slots() -> None:
    conf = parse_keyfile(L.system_conf(L.Layout(), "c-1"))
    groups = {g.name: {k: get_string(e) for k, e in g.entries.items()} for g in conf}
    assert groups["system"]["compatible"] == "c-1" and groups["system"]["bootloader"] == "grub"
    assert groups["system"]["grubenv"] == "/boot/efi/EFI/BOOT/grubenv"
    # the status file where devices have it, and a data directory on the data partition (adaptive updates' indexes)
    assert groups["system"]["statusfile"] == "/data/rauc.status" and groups["system"]["data-directory"] == "/data/rauc"
    assert groups["slot.rootfs.0"] == {"device": "/dev/vda2", "type": "ext4", "bootname": "A"}
    assert groups["slot.rootfs.1"] == {"device": "/dev/vda3", "type": "ext4", "bootname": "B"}


def test_agent_config_quotes_its_values() -> None:
    import tomllib

    doc = tomllib.loads(L.agent_config('http://h:1/"x"', "tok\\en", "c").replace("@NAME@", "dev-1"))
    assert doc["server"] == 'http://h:1/"x"' and doc["bootstrap_token"] == "tok\\en" and doc["name"] == "dev-1"
    assert doc["data_dir"] == "/data/bulkhead"


def test_os_release_names_the_debian_release_underneath() -> None:
    from bulkhead.agent.inventory import parse_os_release

    doc = parse_os_release(L.os_release("2.1", "c-1", "trixie"))
    assert doc["ID"] == "bulkhead" and doc["VERSION_ID"] == "2.1" and doc["VERSION_CODENAME"] == "trixie"
    assert doc["IMAGE_ID"] == "c-1" and doc["ID_LIKE"] == "debian"


def _podman_env(tmp_path: Path) -> dict[str, str]:
    """Podman with storage, run state and libpod's temporary directory of its own: the script's `--all`
    sees only this test's containers."""
    (tmp_path / "storage.conf").write_text(
        L.STORAGE_CONF.replace("/data/", f"{tmp_path}/data/").replace("/run/containers/storage", f"{tmp_path}/run")
    )
    (tmp_path / "containers.conf").write_text(f'[engine]\ntmp_dir = "{tmp_path}/libpod"\n')
    return {
        **os.environ,
        "CONTAINERS_STORAGE_CONF": str(tmp_path / "storage.conf"),
        "CONTAINERS_CONF": str(tmp_path / "containers.conf"),
        "BULKHEAD_DATA": str(tmp_path / "data"),
    }


def test_containers_script_stops_every_container_and_starts_the_restart_always_ones(tmp_path: Path) -> None:
    for tool, pkg in (("podman", "podman"), ("runc", "runc"), ("busybox", "busybox-static")):
        if shutil.which(tool) is None:
            pytest.skip(f"'{tool}' is missing: install the Debian package '{pkg}'")
    if os.geteuid() != 0:
        pytest.skip("the containers script runs Podman as root, as the device does")
    env = _podman_env(tmp_path)
    script = tmp_path / "containers"
    script.write_text(L.CONTAINERS_SCRIPT)
    script.chmod(0o755)

    def podman(*args: str) -> str:
        return subprocess.run(["podman", *args], env=env, capture_output=True, text=True, check=True).stdout

    def run(action: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(script), action], env=env, capture_output=True, text=True, check=False, timeout=120)

    def states() -> dict[str, str]:
        return {c["Names"][0]: c["State"] for c in json.loads(podman("ps", "-a", "--format", "json"))}

    root = tmp_path / "img"
    (root / "bin").mkdir(parents=True)
    shutil.copy("/usr/bin/busybox", root / "bin" / "busybox")
    subprocess.run(["tar", "-C", str(root), "-cf", str(tmp_path / "img.tar"), "."], check=True)
    podman("import", "--quiet", str(tmp_path / "img.tar"), "localhost/box:1")
    marker = tmp_path / "data" / "containers" / ".in-use"
    try:
        sleep = ["/bin/busybox", "sleep", "600"]
        common = [*PODMAN_RUN_ARGS, "--network", "none", "localhost/box:1"]  # the lab's limits: this VM refuses more
        podman("run", "-d", "--name", "always", "--restart", "always", "-v", "appdata:/vol", *common, *sleep)
        podman("run", "-d", "--name", "once", *common, *sleep)
        assert states() == {"always": "running", "once": "running"}
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.touch()  # as the boot that started them left it

        stop = run("stop")  # shutdown: everything stops before the data partition is unmounted
        assert stop.returncode == 0, stop.stderr
        assert states() == {"always": "exited", "once": "exited"} and not marker.exists()

        start = run("start")  # the next boot, after a clean shutdown
        assert start.returncode == 0, start.stderr
        assert states() == {"always": "running", "once": "exited"} and marker.exists()
        assert "did not stop its containers" not in start.stdout
        assert "appdata" in podman("volume", "ls", "--format", "{{.Name}}")  # volumes are never touched

        again = run("start")  # a boot after a power cut: the marker is still there, every layer is read
        assert again.returncode == 0, again.stderr
        assert "the last boot did not stop its containers" in again.stdout
        assert states()["always"] == "running"
        assert run("reset").returncode == 2
    finally:
        subprocess.run(["podman", "rm", "--all", "--force", "--time", "0"], env=env, capture_output=True, check=False)
        subprocess.run(["podman", "volume", "prune", "--force"], env=env, capture_output=True, check=False)


def test_agent_config_names_the_registries_reached_over_http() -> None:
    import tomllib

    from bulkhead.agent.config import parse_config

    text = L.agent_config("http://10.0.2.2:1", "t", "c", ("10.0.2.2:5000",)).replace("@NAME@", "dev-1")
    cfg = parse_config(tomllib.loads(text))
    assert cfg.podman.insecure_registries == ("10.0.2.2:5000",) and cfg.podman.run_args == ("--runtime", "runc")
    assert "insecure_registries" not in L.agent_config("http://h", "t", "c")


def _loop(image: Path) -> str:
    return subprocess.run(["losetup", "--find", "--show", str(image)], capture_output=True, text=True, check=True).stdout.strip()


def test_grub_mounts_the_slot_read_only_and_starts_the_preinit_script() -> None:
    cfg = L.grub_cfg(L.Layout())
    assert f"root=/dev/vda2 ro rootwait init={L.PREINIT} " in cfg and f"root=/dev/vda3 ro rootwait init={L.PREINIT} " in cfg
    assert " rw " not in cfg


@pytest.mark.parametrize("case", ["boot", "factory-reset-pending", "yocto", "no-data-partition"])
def test_preinit_makes_etc_and_var_writable_on_the_data_partition(tmp_path: Path, case: str) -> None:
    """The script as the image has it, run in a mount namespace of its own against an EFI and a data partition on loop
    devices named by the slot's fstab: /etc and /var become overlays whose changes land on the data partition, and the
    init it hands over to sees them; with a factory reset pending, the data partition is not touched (the erasure
    comes next) and the changes go to a tmpfs. meta-bulkhead's copy (a Yocto machine's fstab: no EFI partition there)
    starts systemd itself; an fstab without /data leaves the changes on a tmpfs and still boots."""
    for tool, pkg in (("losetup", "mount"), ("mkfs.ext4", "e2fsprogs"), ("unshare", "util-linux")):
        if shutil.which(tool) is None:
            pytest.skip(f"'{tool}' is missing: install the Debian package '{pkg}'")
    if os.geteuid() != 0:
        pytest.skip("mounting the partitions and the overlays needs root")
    reset_pending, persistent = case == "factory-reset-pending", case in ("boot", "yocto")
    images = {n: tmp_path / f"part{n}.img" for n in (1, 4)}
    for image in images.values():
        with image.open("wb") as f:
            f.truncate(16 << 20)
    # The EFI partition is FAT on the device; the script lets mount find its type, and this machine's kernel has no
    # FAT: ext4 stands in for it here (the QEMU device test boots the real one).
    subprocess.run(["mkfs.ext4", "-q", "-F", "-L", "efi", str(images[1])], check=True)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-L", "data", str(images[4])], check=True)
    loops = {n: _loop(image) for n, image in images.items()}
    try:
        (tmp_path / "dev").mkdir()
        for n, dev in loops.items():
            (tmp_path / "dev" / f"disk{n}").symlink_to(dev)
        lay = L.Layout(disk=str(tmp_path / "dev" / "disk"))
        if reset_pending:
            mnt = tmp_path / "esp"
            mnt.mkdir()
            subprocess.run(["mount", loops[1], str(mnt)], check=True)
            (mnt / "bulkhead").mkdir()
            (mnt / "bulkhead" / "factory-reset").write_text("bhd_credential\n")
            subprocess.run(["umount", str(mnt)], check=True)
        root = tmp_path / "root"
        for d in (
            "etc",
            "var/lib",
            "data",
            "boot/efi",
            "run",
            "tmp",
            "sbin",
            "usr/lib/bulkhead",
            "lib/systemd",
            "proc",
            "sys",
            "dev",
        ):
            (root / d).mkdir(parents=True)
        (root / "etc" / "hostname").write_text("from-the-slot\n")
        fstab = {
            "boot": L.fstab(lay),
            "factory-reset-pending": L.fstab(lay),
            # as meta-rauc-community's machine layers write it: a comment, /data by device, no EFI partition (and here
            # a trailing slash and no newline at the end)
            "yocto": f"# {lay.part(1)} /data ext4\n/dev/root / auto defaults 1 1\n{lay.part(4)}  /data/ auto defaults,sync 0 0",
            "no-data-partition": f"{lay.part(1)}\t/boot/efi\tvfat\tumask=0077\t0\t2\n",
        }[case]
        (root / "etc" / "fstab").write_text(fstab)
        preinit = root / L.PREINIT.lstrip("/")
        script = L.preinit_script(root=str(root), init="/lib/systemd/systemd" if case == "yocto" else "/sbin/init")
        assert (script.replace(f"root={root}\n", "root=\n") == L.YOCTO_PREINIT) is (case == "yocto")
        preinit.write_text(script)
        preinit.chmod(0o755)
        seen = tmp_path / "seen"
        init = root / ("lib/systemd/systemd" if case == "yocto" else "sbin/init")  # what the image's systemd would see
        init.write_text(
            f"#!/bin/sh\necho written-at-run-time > {root}/etc/machine-id\ntouch {root}/var/lib/state\n"
            f'echo "args: $*" > {seen}\nfindmnt -rn -o TARGET,FSTYPE | grep "^{root}" >> {seen}\n'
        )
        init.chmod(0o755)
        subprocess.run(["unshare", "--mount", "--propagation", "private", str(preinit), "--arg"], check=True)
        mounts = seen.read_text()
        assert mounts.startswith("args: --arg\n")  # the kernel's arguments reach init
        assert f"{root}/etc overlay" in mounts and f"{root}/var overlay" in mounts and f"{root}/tmp tmpfs" in mounts
        # no initramfs mounted the kernel filesystems here (as on a Yocto machine): the script did
        assert all(
            f"{root}/{d} {t}" in mounts for d, t in (("proc", "proc"), ("sys", "sysfs"), ("dev", "devtmpfs"), ("run", "tmpfs"))
        )
        assert (f"{root}/data ext4" in mounts) is persistent
        assert f"{root}/boot/efi" not in mounts  # looked at, then left to systemd's mount
        assert not (root / "etc" / "machine-id").exists() and (root / "etc" / "hostname").read_text() == "from-the-slot\n"
        data = tmp_path / "data"
        data.mkdir()
        subprocess.run(["mount", loops[4], str(data)], check=True)
        try:
            upper = data / "overlay"
            if not persistent:
                assert not upper.exists()  # untouched: the erasure comes next, or no fstab entry named it
            else:
                assert (upper / "etc" / "upper" / "machine-id").read_text() == "written-at-run-time\n"
                assert (upper / "var" / "upper" / "lib" / "state").is_file()
        finally:
            subprocess.run(["umount", str(data)], check=True)
    finally:
        for dev in loops.values():
            subprocess.run(["losetup", "-d", dev], check=False)
