"""Kernel modules a delta can see through: Debian's `.ko.xz` stored uncompressed, an initramfs of the boot drivers.

Debian compresses every kernel module on its own (`.ko.xz`). A kernel security update is a new ABI: every module
is rebuilt, re-signed with the build's throwaway key and installed under a new directory, so every compressed
module differs from the old one in nearly every byte, and no byte-level delta (ours, zstd's, xdelta3, RAUC's
adaptive install, casync) finds anything to reuse: 94 MB of the trixie image. Uncompressed, two builds of one
kernel source give modules that differ in their signature, their version string and the code the update changed;
the rest is the old slot's blocks. The bundle's squashfs compresses them again (zstd) for the full download, so a
full bundle grows little; the slot holds about 400 MB more (Debian's generic kernel: 4,230 modules).

The kernel loads uncompressed and compressed modules alike (the signature covers the uncompressed module, so it
stays valid); depmod is run again so that modules.dep names the `.ko` files. The initramfs carries only the drivers
that reach the root slot (MODULES=list, `BOOT_MODULES`): with Debian's default (MODULES=most, 831 modules) it
would hold 144 MB uncompressed, which GRUB reads and the kernel unpacks at every boot. Every other module is
loaded from the root slot after it is mounted.

Run by the builder inside mmdebstrap's chroot environment (`hook_command`: this Python calls `main` with the
rootfs and the boot drivers); the pure part (`decompress_modules`, `boot_modules`, `initramfs_conf`) is what the
tests drive.
"""

from __future__ import annotations

import gzip
import lzma
import os
import shlex
import subprocess
import sys
import zlib
from collections.abc import Iterable, Sequence
from pathlib import Path

from .errors import BuildError

__all__ = [
    "BOOT_MODULES",
    "HOOK_VERSION",
    "boot_modules",
    "decompress_modules",
    "hook_command",
    "initramfs_conf",
    "main",
    "prepare",
]

# The root slot's file system and what reaches it: QEMU/KVM (virtio), Hyper-V, VMware, Xen, NVMe, SATA, eMMC and SD
# on x86 boards, USB. A name the kernel builds in or lacks is left out (boot_modules).
BOOT_MODULES = (
    "ext4", "crc32c_generic", "crc32c_intel",
    "virtio_pci", "virtio_blk", "virtio_scsi", "sd_mod",
    "hv_storvsc", "vmw_pvscsi", "xen_blkfront",
    "nvme", "ahci", "ata_piix",
    "mmc_block", "sdhci_pci", "sdhci_acpi",
    "usb_storage", "uas", "xhci_pci", "ehci_pci",
)  # fmt: skip
# Part of the base tarball's cache key: a change to what the hook does must not reuse bases made the old way.
HOOK_VERSION = 1
_DECOMPRESS = {".xz": lzma.decompress, ".gz": gzip.decompress}
INITRAMFS_CONF = "etc/initramfs-tools/conf.d/bulkhead-modules.conf"
INITRAMFS_MODULES = "etc/initramfs-tools/modules"


def _module_dirs(root: Path) -> list[Path]:
    base = root / "usr/lib/modules"
    if not base.is_dir():
        base = root / "lib/modules"
    return sorted(p for p in base.iterdir() if p.is_dir()) if base.is_dir() else []


def decompress_modules(root: Path) -> int:
    """Replace every `*.ko.xz` and `*.ko.gz` under the rootfs's module directories with the `.ko` it holds (same mode
    and times); return how many. A module compressed another way is a build error naming it."""
    count = 0
    for kdir in _module_dirs(root):
        for dirpath, _dirs, files in os.walk(kdir):
            for name in sorted(files):
                if ".ko." not in name:
                    continue
                path = Path(dirpath) / name
                stem, ext = os.path.splitext(name)
                if not stem.endswith(".ko"):
                    continue
                if ext not in _DECOMPRESS:
                    raise BuildError(
                        f"kernel module {path.relative_to(root)} is compressed as {ext}, which this build does not read"
                    )
                try:
                    data = _DECOMPRESS[ext](path.read_bytes())
                except (lzma.LZMAError, zlib.error, OSError, EOFError) as e:
                    raise BuildError(f"kernel module {path.relative_to(root)} does not decompress: {e}") from None
                st = path.stat()
                dest = path.with_name(stem)
                tmp = dest.with_name(dest.name + ".partial")
                tmp.write_bytes(data)
                os.chmod(tmp, st.st_mode & 0o7777)
                os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns))
                os.replace(tmp, dest)
                path.unlink()
                count += 1
    return count


def _names(kdir: Path) -> set[str]:
    """Module names of a kernel's tree, as modprobe compares them ('-' and '_' alike), built-in ones included."""
    names = {n.split(".ko")[0].replace("-", "_") for _d, _s, fs in os.walk(kdir) for n in fs if ".ko" in n}
    builtin = kdir / "modules.builtin"
    if builtin.is_file():
        names |= {Path(ln.strip()).name.split(".ko")[0].replace("-", "_") for ln in builtin.read_text().splitlines() if ln}
    return names


def boot_modules(root: Path, wanted: Iterable[str] = BOOT_MODULES) -> list[str]:
    """The wanted modules every kernel of the rootfs has (a module another kernel build lacks or builds in is left
    out, since mkinitramfs fails on a name it cannot find); at least the root file system's driver."""
    have: set[str] | None = None
    for kdir in _module_dirs(root):
        have = _names(kdir) if have is None else have & _names(kdir)
    if have is None:
        raise BuildError("the rootfs has no kernel modules directory", "add a kernel package (linux-image-amd64)")
    out = [m for m in wanted if m.replace("-", "_") in have]
    if "ext4" not in out:
        raise BuildError("the kernel has no ext4 driver, which the root slot is formatted with")
    return out


def initramfs_conf(modules: Iterable[str]) -> tuple[str, str]:
    """(conf.d file, /etc/initramfs-tools/modules) for an initramfs with only `modules` and their dependencies."""
    conf = "# Bulkhead: the initramfs carries the drivers that reach the root slot; the rest load from the slot.\nMODULES=list\n"
    return conf, "".join(f"{m}\n" for m in modules)


def _chroot(root: Path, *cmd: str) -> None:
    res = subprocess.run(["chroot", str(root), *cmd], capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise BuildError(
            f"{' '.join(cmd)} in the rootfs failed (exit {res.returncode}): {(res.stderr or res.stdout).strip()[-1500:]}"
        )


def prepare(root: Path, wanted: Iterable[str] = BOOT_MODULES) -> int:
    """Decompress the modules, index them again and regenerate the initramfs with the boot drivers; return the count.
    Needs root and the chroot's /proc, /sys and /dev (mmdebstrap's customize hooks have them)."""
    count = decompress_modules(root)
    conf, modules = initramfs_conf(boot_modules(root, wanted))
    (root / INITRAMFS_CONF).parent.mkdir(parents=True, exist_ok=True)
    (root / INITRAMFS_CONF).write_text(conf)
    (root / INITRAMFS_MODULES).write_text(modules)
    for kdir in _module_dirs(root):
        _chroot(root, "depmod", kdir.name)
    _chroot(root, "update-initramfs", "-u", "-k", "all")
    return count


def hook_command(modules: Sequence[str]) -> str:
    """The mmdebstrap --customize-hook that runs `main` with this Python (mmdebstrap passes the rootfs as $1)."""
    code = "import sys; from bulkhead.osbuild.kmods import main; sys.exit(main(sys.argv[1:]))"
    return " ".join([shlex.quote(sys.executable), "-c", shlex.quote(code), '"$1"', *map(shlex.quote, modules)])


def main(argv: Sequence[str]) -> int:
    """ROOT [MODULE ...]: prepare the rootfs at ROOT with those boot drivers (default BOOT_MODULES)."""
    try:
        n = prepare(Path(argv[0]), argv[1:] or BOOT_MODULES)
    except BuildError as e:
        print(f"bulkhead kmods: {e}", file=sys.stderr)
        return 1
    print(f"bulkhead kmods: {n} kernel modules stored uncompressed, initramfs with the boot drivers")
    return 0
