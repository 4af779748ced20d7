"""The image layout's texts, checked by the tools that read them: sfdisk, grub-script-check, RAUC's keyfile syntax."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

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
