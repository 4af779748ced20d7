"""The Debian reference image builder: mmdebstrap rootfs -> ext4 (reproducible) -> RAUC bundle, GPT disk, SBOMs.

Steps (each reported to `progress`): base rootfs from mmdebstrap (cached by its inputs when a cache
directory is given), the Bulkhead layer on top (RAUC config, GRUB A/B, agent, data partition), the
ext4 image with fixed UUID, hash seed and times, the signed verity bundle with a block-hash-index, the
EFI system partition with GRUB, the disk image, the SBOMs and the build manifest.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..rauc import create_bundle
from . import layout as L
from .errors import BuildError, OsBuildError, ToolMissing
from .initramfs import uncompressed_initramfs
from .kmods import BOOT_MODULES, HOOK_VERSION, hook_command
from .sbom import parse_dpkg_status, write_sboms

__all__ = ["BASE_PACKAGES", "DEFAULT_SUITE", "BuildResult", "BuildSpec", "build_image", "debian_suites", "missing_packages"]

# The packages of this repository a device carries: the agent and what it imports (tests/test_architecture.py).
DEVICE_PACKAGES = ("agent", "protocol", "rauc")

# nftables: netavark, Podman's network stack on trixie, sets up container networks and published ports with nft.
BASE_PACKAGES = (
    "systemd", "systemd-sysv", "udev", "dbus", "linux-image-amd64", "initramfs-tools", "rauc", "rauc-service",
    "grub-common", "e2fsprogs", "dosfstools", "squashfs-tools", "podman", "runc", "python3", "python3-cryptography",
    "python3-asn1crypto", "ca-certificates", "iproute2", "nftables",
)  # fmt: skip
TOOLS = {
    "mmdebstrap": "mmdebstrap",
    "mke2fs": "e2fsprogs",
    "debugfs": "e2fsprogs",
    "mksquashfs": "squashfs-tools",
    "grub-mkimage": "grub-efi-amd64-bin",
    "grub-editenv": "grub-common",
    "mkfs.vfat": "dosfstools",
    "mcopy": "mtools",
    "sfdisk": "fdisk",
    "systemctl": "systemd",
    "zstd": "zstd",
}
# Enabled in the image: the agent, Podman's storage check and the containers' start and stop, the factory reset's
# erasure (when asked for), DHCP networking.
UNITS = ("bulkhead-agent.service", "bulkhead-containers.service", "bulkhead-factory-reset.service", "systemd-networkd.service")
GRUB_MODULES = (
    "part_gpt", "fat", "ext2", "normal", "linux", "boot", "configfile", "loadenv", "test", "echo", "reboot",
    "serial", "terminal", "efi_gop", "all_video", "gzio", "search", "sleep", "true",
)  # fmt: skip
SQUASHFS = ("-comp", "zstd")
# Peak disk use of one build, measured on the default package set: base tarball 0.8 GiB, unpacked
# rootfs 1 GiB, rootfs.ext4 0.9 GiB, bundle 0.3 GiB, sparse disk image 0.9 GiB (plus mmdebstrap's temp).
NEED_FREE = 4 << 30
Progress = Callable[[str], None]


# Debian 13: RAUC 1.13, built with HTTP streaming and adaptive updates (Debian 12's RAUC 1.8 has neither).
DEFAULT_SUITE = "trixie"


def debian_suites(release: str) -> tuple[str, ...]:
    """What an image of a Debian release is built from: the release, its updates and its security updates."""
    return (release, f"{release}-updates", f"{release}-security")


@dataclass(frozen=True)
class BuildSpec:
    version: str
    out: Path
    cert: Path
    key: Path
    keyring: Path | None = None  # what devices trust (default: the signing certificate)
    compatible: str = "bulkhead-qemux86-64"
    suites: tuple[str, ...] = debian_suites(DEFAULT_SUITE)
    packages: tuple[str, ...] = ()  # added to BASE_PACKAGES
    mirror: str = "http://deb.debian.org/debian"
    security_mirror: str = "http://deb.debian.org/debian-security"
    source_date_epoch: int = 1700000000
    server: str = "http://10.0.2.2:8080"  # QEMU user networking: the host
    bootstrap_token: str = ""
    customize: tuple[str, ...] = ()  # shell commands run with "$1" = the rootfs directory
    insecure_registries: tuple[str, ...] = ()  # registries the agent pulls from over plain HTTP (a lab's)
    cache: Path | None = None  # where base rootfs tarballs are kept by their inputs
    make_bundle: bool = True  # False: no signed bundle (e.g. a disk image only for the factory)
    make_disk: bool = True  # False: no GPT disk image (e.g. a release that only goes out over the air)
    # True: kernel modules stored uncompressed and an initramfs of the boot drivers, so that a kernel update's
    # delta sees through them (osbuild/kmods.py); False: as Debian packages them (slots about 400 MB smaller)
    uncompressed_modules: bool = True
    boot_modules: tuple[str, ...] = BOOT_MODULES  # the initramfs's drivers, with uncompressed_modules
    layout: L.Layout = field(default_factory=L.Layout)

    def base_inputs(self) -> dict[str, Any]:
        return {
            "suites": list(self.suites),
            "mirror": self.mirror,
            "security_mirror": self.security_mirror,
            "packages": sorted({*BASE_PACKAGES, *self.packages}),
            "source_date_epoch": self.source_date_epoch,
            "arch": "amd64",
            **(
                {"kernel_modules": f"uncompressed/{HOOK_VERSION}", "boot_modules": list(self.boot_modules)}
                if self.uncompressed_modules
                else {}
            ),
        }


@dataclass(frozen=True)
class BuildResult:
    rootfs: Path
    bundle: Path | None  # None when the spec asked for no bundle
    disk: Path | None  # None when the spec asked for no disk image
    spdx: Path
    cyclonedx: Path
    manifest: Path
    seconds: float


def missing_packages() -> list[str]:
    """The Debian packages whose programs the build needs and this machine lacks."""
    return sorted({pkg for tool, pkg in TOOLS.items() if shutil.which(tool) is None})


def _need_tools() -> None:
    missing = missing_packages()
    if missing:
        raise ToolMissing(f"the image build needs the Debian package(s) {', '.join(missing)}", "run 'make setup' as root")
    if os.geteuid() != 0:
        raise OsBuildError("the image build runs as root (mmdebstrap --mode=root, file ownership in the rootfs)")


def _need_space(where: Path, need: int = NEED_FREE) -> None:
    """Refuse to start a build that would run out of disk halfway (and leave a confusing tar/dpkg error)."""
    free = shutil.disk_usage(where).free
    if free < need:
        raise BuildError(
            f"{where} has {free / 2**30:.1f} GiB free; one image build needs about {need / 2**30:.0f} GiB",
            "free some space or pass --out (and --cache) on a larger disk",
        )


def _run(cmd: Sequence[str], what: str, env: dict[str, str] | None = None, stdin: str | None = None) -> str:
    res = subprocess.run(list(cmd), capture_output=True, text=True, check=False, input=stdin, env={**os.environ, **(env or {})})
    if res.returncode != 0:
        raise BuildError(f"{what} failed (exit {res.returncode}): {(res.stderr or res.stdout).strip()[-1500:]}")
    return res.stdout


def _sources(spec: BuildSpec) -> list[str]:
    out = []
    for suite in spec.suites:
        mirror = spec.security_mirror if suite.endswith("-security") else spec.mirror
        out.append(f"deb {mirror} {suite} main")
    return out


def _base(spec: BuildSpec, work: Path, progress: Progress) -> Path:
    """The Debian rootfs as a tarball from mmdebstrap; reused from the cache when its inputs are the same.

    Builds sharing a cache take a lock per base: the second one waits for the first one's mmdebstrap and
    reuses its tarball instead of running its own into the same file.
    """
    key = hashlib.sha256(json.dumps(spec.base_inputs(), sort_keys=True).encode()).hexdigest()[:24]
    if spec.cache is None:
        return _mmdebstrap(spec, work, work / "base.tar", progress)
    spec.cache.mkdir(parents=True, exist_ok=True)
    cached = spec.cache / f"base-{key}.tar"
    with (spec.cache / f"base-{key}.lock").open("w") as lock:
        if not cached.exists():
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                progress(f"base rootfs: waiting for another build making {cached.name}")
                fcntl.flock(lock, fcntl.LOCK_EX)
        if cached.exists():
            progress(f"base rootfs: cached {cached.name}")
            return cached
        return _mmdebstrap(spec, work, cached, progress)


def _mmdebstrap(spec: BuildSpec, work: Path, target: Path, progress: Progress) -> Path:
    progress(f"base rootfs: mmdebstrap {' '.join(spec.suites)} ({len(spec.base_inputs()['packages'])} packages)")
    partial = target.with_suffix(".partial.tar")
    _run(
        [
            "mmdebstrap", "--mode=root", "--variant=apt", "--format=tar",
            "--include=" + ",".join(spec.base_inputs()["packages"]),
            "--aptopt=Acquire::Languages \"none\"",
            # run by mmdebstrap in its chroot environment (/proc, /sys, /dev mounted): this Python, this package
            *(["--customize-hook=" + hook_command(spec.boot_modules)] if spec.uncompressed_modules else []),
            spec.suites[0], str(partial), *_sources(spec),
        ],
        "mmdebstrap",
        env={"SOURCE_DATE_EPOCH": str(spec.source_date_epoch), "TMPDIR": str(work)},  # its chroot on the build's disk
    )  # fmt: skip
    os.replace(partial, target)
    return target


def _write(root: Path, rel: str, text: str, mode: int = 0o644) -> None:
    path = root / rel.lstrip("/")
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_symlink():
        path.unlink()
    path.write_text(text)
    path.chmod(mode)


def _agent_sources() -> Path:
    return Path(__file__).resolve().parent.parent  # the bulkhead package this builder runs from


def _layer(spec: BuildSpec, root: Path) -> None:
    """Bulkhead's part of the rootfs: RAUC, GRUB slot layout, mounts, the agent and its service, networking."""
    lay = spec.layout
    keyring = (spec.keyring or spec.cert).read_text()
    _write(root, "/etc/rauc/system.conf", L.system_conf(lay, spec.compatible))
    _write(root, "/etc/rauc/keyring.pem", keyring)
    _write(root, "/etc/fstab", L.fstab(lay))
    (root / "boot/efi").mkdir(parents=True, exist_ok=True)
    (root / "data").mkdir(exist_ok=True)
    _write(root, "/etc/hostname", "bulkhead\n")
    _write(root, "/etc/bulkhead/os-release", L.os_release(spec.version, spec.compatible, spec.suites[0]))
    agent_toml = L.agent_config(spec.server, spec.bootstrap_token, spec.compatible, spec.insecure_registries)
    _write(root, "/etc/bulkhead/agent.toml.in", agent_toml, 0o600)
    _write(root, "/usr/lib/bulkhead/agent-config", L.AGENT_CONFIG_SCRIPT, 0o755)
    _write(root, "/etc/systemd/system/bulkhead-agent.service", L.agent_unit())
    _write(root, "/usr/lib/bulkhead/containers", L.CONTAINERS_SCRIPT, 0o755)
    _write(root, "/etc/systemd/system/bulkhead-containers.service", L.containers_unit())
    _write(root, "/usr/lib/bulkhead/factory-reset", L.factory_reset_script(lay), 0o755)
    _write(root, L.PREINIT, L.preinit_script(), 0o755)
    _write(root, "/etc/systemd/system/bulkhead-factory-reset.service", L.factory_reset_unit(lay))
    _write(root, "/etc/systemd/network/80-dhcp.network", L.network_unit())
    _write(root, "/etc/containers/storage.conf", L.STORAGE_CONF)
    _write(root, "/etc/modules-load.d/bulkhead.conf", L.MODULES_LOAD)
    # The agent, from this repository: the agent, the shared protocol and the bundle library (their dependencies are Debian's).
    src, dest = _agent_sources(), root / "usr/lib/python3/dist-packages/bulkhead"
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    shutil.copy2(src / "__init__.py", dest / "__init__.py")
    for pkg in DEVICE_PACKAGES:
        shutil.copytree(src / pkg, dest / pkg, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    _run(
        ["systemctl", f"--root={root}", "enable", *UNITS],
        "enabling the image's units",
    )
    for cmd in spec.customize:
        _run(["sh", "-c", cmd, "customize", str(root)], f"customize hook {cmd!r}")
    for initrd in sorted((root / "boot").glob("initrd.img-*")):  # after the hooks: a hook may add a kernel
        if initrd.is_file() and not initrd.is_symlink():
            data = initrd.read_bytes()
            raw = uncompressed_initramfs(data)
            if raw != data:  # the next release's delta sees through it (osbuild/initramfs.py)
                initrd.write_bytes(raw)


def _clamp_times(root: Path, epoch: int) -> None:
    """Files newer than SOURCE_DATE_EPOCH get it as their time (the layer's files, hooks' output)."""
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*filenames, *dirnames, "."]:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            if st.st_mtime > epoch or st.st_atime != epoch:
                os.utime(p, (epoch, min(int(st.st_mtime), epoch)), follow_symlinks=False)


def _debugfs_times(root: Path, image: Path, epoch: int) -> None:
    """mke2fs copies ctime and atime from the files it reads; set them to the epoch in the image."""
    lines = []
    for dirpath, dirnames, filenames in os.walk(root):
        rel = "/" + os.path.relpath(dirpath, root) if dirpath != str(root) else "/"
        links = [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]
        for p in [rel, *(os.path.join(rel, n) for n in [*filenames, *links])]:
            if '"' in p or "\n" in p:  # debugfs cannot quote these; nothing in Debian has them
                raise BuildError(f"file name {p!r} contains a quote or newline", "rename it in your customize hook")
            lines.append(f'sif "{p}" ctime @{epoch}\nsif "{p}" atime @{epoch}\n')  # debugfs takes backslashes as is
    cmds = image.with_suffix(".debugfs")
    cmds.write_text("".join(lines))
    res = subprocess.run(
        ["debugfs", "-w", "-f", str(cmds), str(image)],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "E2FSPROGS_FAKE_TIME": str(epoch)},
    )
    # debugfs echoes each command ("debugfs: sif ...") and exits 0 even when one fails: read what it said
    errors = [ln for ln in (res.stdout + res.stderr).splitlines() if ln.strip() and not ln.startswith("debugfs")]
    if res.returncode != 0 or errors:
        raise BuildError(f"debugfs could not set inode times: {'; '.join(errors[:5]) or res.returncode}")
    cmds.unlink()


def _rootfs_image(spec: BuildSpec, root: Path, image: Path) -> None:
    used = sum(os.lstat(os.path.join(d, f)).st_size for d, _, fs in os.walk(root) for f in fs)
    mib = -(-int(used * 1.3 + (128 << 20)) // (64 << 20)) * 64  # 30% + 128 MiB free, in 64 MiB steps
    if mib > spec.layout.slot_mib:
        raise BuildError(f"the rootfs needs {mib} MiB but a slot has {spec.layout.slot_mib} MiB", "use fewer --packages")
    # The file system's UUID and directory hash seed stay the same from one release to the next: ext4 seeds every
    # metadata block's checksum with the UUID, so a new UUID changed every inode table, bitmap and directory block,
    # spread over the whole image, and RAUC's adaptive install fetched a quarter of the bundle for a one-file change.
    # (Both slots then carry the same UUID, as when one image is written to both; the device mounts by partition.)
    seed = spec.compatible
    image.unlink(missing_ok=True)
    _run(
        [
            "mke2fs", "-q", "-F", "-t", "ext4", "-d", str(root), "-L", "rootfs", "-U", L.stable_uuid(seed, "rootfs"),
            "-E", f"hash_seed={L.stable_uuid(seed, 'hash')},root_owner=0:0", str(image), f"{mib}M",
        ],
        "mke2fs (rootfs)",
        {"E2FSPROGS_FAKE_TIME": str(spec.source_date_epoch)},
    )  # fmt: skip
    _debugfs_times(root, image, spec.source_date_epoch)


def _bundle(spec: BuildSpec, rootfs: Path, out: Path, work: Path) -> None:
    content = work / "bundle"
    shutil.rmtree(content, ignore_errors=True)
    content.mkdir()
    os.link(rootfs, content / "rootfs.ext4")
    (content / "manifest.raucm").write_text(
        f"[update]\ncompatible={spec.compatible}\nversion={spec.version}\n"
        f"description=Bulkhead reference OS {spec.version}\nbuild={spec.source_date_epoch}\n\n"
        "[image.rootfs]\nfilename=rootfs.ext4\nadaptive=block-hash-index\n"
    )
    try:
        # zstd: several times faster to build than gzip, smaller, and in every kernel RAUC runs with
        create_bundle(content, out, spec.cert.read_bytes(), spec.key.read_bytes(), fmt="verity", mksquashfs_args=SQUASHFS)
    except Exception as e:  # the bundle library's errors carry their own hint
        raise BuildError(f"bundle: {e}") from e


def _esp(spec: BuildSpec, work: Path) -> Path:
    efi = work / "BOOTX64.EFI"
    _run(
        ["grub-mkimage", "-O", "x86_64-efi", "-o", str(efi), "-p", "/EFI/BOOT", *GRUB_MODULES],
        "grub-mkimage",
    )
    cfg = work / "grub.cfg"
    cfg.write_text(L.grub_cfg(spec.layout))
    env = work / "grubenv"
    env.unlink(missing_ok=True)
    _run(["grub-editenv", str(env), "create"], "grub-editenv")
    _run(["grub-editenv", str(env), "set", *(f"{k}={v}" for k, v in L.GRUBENV_INITIAL.items())], "grub-editenv")
    esp = work / "esp.img"
    esp.unlink(missing_ok=True)
    seed = f"{spec.compatible}/{spec.version}"
    _run(
        ["mkfs.vfat", "--invariant", "-i", L.stable_uuid(seed, "esp")[:8], "-n", "EFI", "-C", str(esp),
         str(spec.layout.esp_mib * 1024)],
        "mkfs.vfat",
    )  # fmt: skip
    _run(["mmd", "-i", str(esp), "::/EFI", "::/EFI/BOOT"], "mmd")
    _run(["mcopy", "-i", str(esp), str(efi), str(cfg), str(env), "::/EFI/BOOT/"], "mcopy")
    return esp


def _sparse_copy(src: Path, dest: Path, offset: int) -> None:
    zero = bytes(1 << 20)
    with src.open("rb") as f, dest.open("r+b") as g:
        pos = offset
        while chunk := f.read(1 << 20):
            if chunk != zero[: len(chunk)]:
                g.seek(pos)
                g.write(chunk)
            pos += len(chunk)


def _disk(spec: BuildSpec, esp: Path, rootfs: Path, work: Path, out: Path) -> None:
    lay = spec.layout
    data = work / "data.img"
    data.unlink(missing_ok=True)
    seed = f"{spec.compatible}/{spec.version}"
    _run(
        ["mke2fs", "-q", "-F", "-t", "ext4", "-L", "data", "-U", L.stable_uuid(seed, "data"), str(data), f"{lay.data_mib}M"],
        "mke2fs (data)",
        {"E2FSPROGS_FAKE_TIME": str(spec.source_date_epoch)},
    )
    partial = out.with_suffix(".partial")
    partial.unlink(missing_ok=True)
    with partial.open("wb") as f:
        f.truncate(lay.disk_mib << 20)
    _run(["sfdisk", "--no-reread", "--no-tell-kernel", "-q", str(partial)], "sfdisk", stdin=L.partition_script(lay, seed))
    (esp_at, _), (a_at, _), _, (data_at, _) = lay.offsets_mib
    for img, at in ((esp, esp_at), (rootfs, a_at), (data, data_at)):
        _sparse_copy(img, partial, at << 20)
    os.replace(partial, out)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def build_image(spec: BuildSpec, progress: Progress = lambda _m: None, keep_work: bool = False) -> BuildResult:
    """Build the reference image for `spec` into `spec.out`; outputs appear only when their step completed."""
    _need_tools()
    for p in (spec.cert, spec.key, *([spec.keyring] if spec.keyring else [])):
        if not p.is_file():
            raise OsBuildError(f"{p} does not exist", "pass --cert, --key (and --keyring) as PEM files")
    started = dt.datetime.now(dt.UTC)
    out = spec.out
    out.mkdir(parents=True, exist_ok=True)
    _need_space(out)
    work = Path(tempfile.mkdtemp(prefix=".work-", dir=out))
    try:
        base = _base(spec, work, progress)
        progress("rootfs: unpacking and adding the Bulkhead layer")
        root = work / "rootfs"
        root.mkdir()
        _run(["tar", "--numeric-owner", "-xpf", str(base), "-C", str(root)], "unpacking the base rootfs")
        _layer(spec, root)
        _clamp_times(root, spec.source_date_epoch)
        packages = parse_dpkg_status((root / "var/lib/dpkg/status").read_text(errors="replace"))
        progress("rootfs: ext4 image (fixed UUID, hash seed and times)")
        rootfs = out / "rootfs.ext4"
        _rootfs_image(spec, root, work / "rootfs.ext4")
        os.replace(work / "rootfs.ext4", rootfs)
        shutil.rmtree(root)
        bundle = disk = None
        if spec.make_bundle:
            progress("bundle: signed verity bundle with a block-hash-index")
            bundle = out / f"{spec.compatible}-{spec.version}.raucb"
            _bundle(spec, rootfs, bundle, work)
        if spec.make_disk:
            progress("disk: EFI system partition with GRUB, GPT disk image")
            esp = _esp(spec, work)
            disk = out / "disk.img"
            _disk(spec, esp, rootfs, work, disk)
        progress("SBOM and build manifest")
        when = dt.datetime.fromtimestamp(spec.source_date_epoch, dt.UTC)
        name = f"bulkhead-{spec.compatible}"
        spdx_path, cdx_path = write_sboms(packages, name, spec.version, when, out)
        seconds = (dt.datetime.now(dt.UTC) - started).total_seconds()
        manifest = out / "build-manifest.json"
        doc = {
            "version": spec.version,
            "compatible": spec.compatible,
            "inputs": {
                **spec.base_inputs(),
                "customize": list(spec.customize),
                "server": spec.server,
                "layout": asdict(spec.layout),
                "base_sha256": _sha256(base),
            },
            "packages": {p.name: p.version for p in packages},
            "outputs": {
                p.name: {"size": p.stat().st_size, "sha256": _sha256(p)}
                for p in (rootfs, bundle, disk, spdx_path, cdx_path)
                if p is not None
            },
            "built_at": started.isoformat(),
            "seconds": round(seconds, 1),
        }
        manifest.write_text(json.dumps(doc, indent=1, sort_keys=True))
        return BuildResult(rootfs, bundle, disk, spdx_path, cdx_path, manifest, seconds)
    finally:
        if not keep_work:
            shutil.rmtree(work, ignore_errors=True)
