"""Small test releases: an ext4 rootfs whose /etc/os-release names the version, in a signed plain RAUC bundle."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Mapping
from pathlib import Path

from bulkhead.rauc import create_bundle

from .rauc_service import LabError

__all__ = ["build_release"]


def build_release(
    work: Path,
    compatible: str,
    version: str,
    cert: Path,
    key: Path,
    size_mib: int = 4,
    random_mib: int = 0,
    fmt: str = "plain",
    install_seconds: float = 0,
    files: Mapping[str, str] | None = None,
) -> Path:
    """Build `work/<compatible>-<version>.raucb` (plain: Debian's RAUC 1.8 installs it without dm-verity).

    `install_seconds` adds a slot post-install hook that sleeps, so an install lasts long enough to be
    interrupted or canceled in a test. `files` adds files to the rootfs (path under / -> text), e.g. the dpkg
    database `var/lib/dpkg/status` that a lab device with `packages_from_slot` reports.
    """
    root = work / f"rootfs-{version}"
    (root / "etc").mkdir(parents=True, exist_ok=True)
    (root / "etc" / "os-release").write_text(f'NAME="Bulkhead lab"\nID=bulkhead-lab\nVERSION_ID="{version}"\n')
    for name, text in (files or {}).items():
        path = root / name.lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    if random_mib:
        (root / "payload.bin").write_bytes(os.urandom(random_mib << 20))
    content = work / f"content-{version}"
    content.mkdir(parents=True, exist_ok=True)
    img = content / "rootfs.ext4"
    img.unlink(missing_ok=True)
    fs_uuid = str(uuid.uuid5(uuid.NAMESPACE_DNS, f"{compatible}/{version}"))
    try:
        subprocess.run(
            ["mkfs.ext4", "-q", "-F", "-d", str(root), "-E", "root_owner=0:0", "-U", fs_uuid, str(img), f"{size_mib}M"],
            check=True,
            capture_output=True,
            text=True,
            env={**os.environ, "E2FSPROGS_FAKE_TIME": "1700000000"},
        )
    except FileNotFoundError:
        raise LabError("'mkfs.ext4' is missing: install the Debian package e2fsprogs") from None
    except subprocess.CalledProcessError as e:
        raise LabError(f"mkfs.ext4 failed: {e.stderr.strip()}") from None
    manifest = f"[update]\ncompatible={compatible}\nversion={version}\ndescription=Lab release {version}\n\n"
    image = "[image.rootfs]\nfilename=rootfs.ext4\n"
    hook = content / "hook.sh"
    hook.unlink(missing_ok=True)
    if install_seconds:
        hook.write_text(f'#!/bin/sh\nif [ "$1" = slot-post-install ]; then sleep {install_seconds}; fi\nexit 0\n')
        hook.chmod(0o755)
        manifest += "[hooks]\nfilename=hook.sh\n\n"
        image += "hooks=post-install\n"
    (content / "manifest.raucm").write_text(manifest + image)
    out = work / f"{compatible}-{version}.raucb"
    out.unlink(missing_ok=True)
    create_bundle(content, out, cert.read_bytes(), key.read_bytes(), fmt=fmt)
    return out
