"""Kernel modules stored uncompressed and the initramfs's boot drivers (osbuild/kmods.py); the image build and the
QEMU device test run the whole of it (the device boots from that initramfs and loads nbd and dm-verity)."""

from __future__ import annotations

import gzip
import lzma
import os
from pathlib import Path

import pytest

from bulkhead.osbuild.errors import BuildError
from bulkhead.osbuild.kmods import BOOT_MODULES, boot_modules, decompress_modules, initramfs_conf

KVER = "6.12.118+deb13-amd64"


def _tree(root: Path, kver: str = KVER) -> Path:
    kdir = root / "usr/lib/modules" / kver
    (kdir / "kernel/fs/ext4").mkdir(parents=True)
    (kdir / "kernel/drivers/block").mkdir(parents=True)
    return kdir


def test_compressed_modules_become_the_modules_they_hold_with_their_mode_and_times(tmp_path: Path) -> None:
    kdir = _tree(tmp_path)
    ext4, virtio = b"\x7fELF ext4 module" * 500, b"\x7fELF virtio_blk" * 300
    xz = kdir / "kernel/fs/ext4/ext4.ko.xz"
    xz.write_bytes(lzma.compress(ext4, check=lzma.CHECK_CRC32))  # as the kernel's Makefile compresses them
    gz = kdir / "kernel/drivers/block/virtio_blk.ko.gz"
    gz.write_bytes(gzip.compress(virtio))
    for p in (xz, gz):
        p.chmod(0o640)
        os.utime(p, (1700000000, 1700000000))
    plain = kdir / "kernel/drivers/block/loop.ko"
    plain.write_bytes(b"\x7fELF loop")
    (kdir / "modules.dep").write_text("kernel/fs/ext4/ext4.ko.xz:\n")

    assert decompress_modules(tmp_path) == 2

    assert (kdir / "kernel/fs/ext4/ext4.ko").read_bytes() == ext4
    assert (kdir / "kernel/drivers/block/virtio_blk.ko").read_bytes() == virtio
    assert not xz.exists() and not gz.exists() and plain.read_bytes() == b"\x7fELF loop"
    st = (kdir / "kernel/fs/ext4/ext4.ko").stat()
    assert st.st_mode & 0o777 == 0o640 and st.st_mtime == 1700000000
    assert (kdir / "modules.dep").read_text() == "kernel/fs/ext4/ext4.ko.xz:\n"  # depmod (in the chroot) rewrites it
    assert not list(tmp_path.rglob("*.partial"))


def test_a_module_compressed_another_way_or_broken_is_a_build_error_naming_it(tmp_path: Path) -> None:
    kdir = _tree(tmp_path)
    (kdir / "kernel/fs/ext4/ext4.ko.zst").write_bytes(b"(\xb5/\xfd")
    with pytest.raises(BuildError, match=r"ext4\.ko\.zst is compressed as \.zst"):
        decompress_modules(tmp_path)
    (kdir / "kernel/fs/ext4/ext4.ko.zst").unlink()
    (kdir / "kernel/fs/ext4/ext4.ko.xz").write_bytes(b"\xfd7zXZ\x00 not really")
    with pytest.raises(BuildError, match=r"ext4\.ko\.xz does not decompress"):
        decompress_modules(tmp_path)
    assert (kdir / "kernel/fs/ext4/ext4.ko.xz").exists() and not (kdir / "kernel/fs/ext4/ext4.ko").exists()


def test_boot_modules_are_the_wanted_ones_every_kernel_has_built_in_or_as_modules(tmp_path: Path) -> None:
    old, new = _tree(tmp_path, "6.12.117+deb13-amd64"), _tree(tmp_path)
    for kdir in (old, new):
        (kdir / "kernel/fs/ext4/ext4.ko").write_bytes(b"m")
        (kdir / "kernel/drivers/block/virtio_blk.ko.xz").write_bytes(b"m")  # compressed or not, '-' or '_'
        (kdir / "kernel/drivers/block/crc32c-intel.ko").write_bytes(b"m")
    (new / "kernel/drivers/block/nvme.ko").write_bytes(b"m")  # only one kernel has it as a module ...
    (old / "modules.builtin").write_text("kernel/drivers/nvme/host/nvme.ko\n")  # ... the other built in

    assert boot_modules(tmp_path) == ["ext4", "crc32c_intel", "virtio_blk", "nvme"]
    assert boot_modules(tmp_path, ("virtio_blk", "ahci", "ext4")) == ["virtio_blk", "ext4"]


def test_no_kernel_or_no_ext4_driver_is_a_build_error_saying_what_is_missing(tmp_path: Path) -> None:
    with pytest.raises(BuildError, match=r"no kernel modules directory.*linux-image-amd64"):
        boot_modules(tmp_path)
    kdir = _tree(tmp_path)
    (kdir / "kernel/drivers/block/virtio_blk.ko").write_bytes(b"m")
    with pytest.raises(BuildError, match="no ext4 driver"):
        boot_modules(tmp_path)


def test_the_initramfs_configuration_lists_only_the_boot_drivers() -> None:
    conf, modules = initramfs_conf(["ext4", "virtio_blk"])
    assert "MODULES=list\n" in conf and modules == "ext4\nvirtio_blk\n"
    assert {"ext4", "virtio_blk", "nvme", "ahci", "mmc_block", "usb_storage"} <= set(BOOT_MODULES)
