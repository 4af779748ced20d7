"""Image pairs for the delta tests: small ext4 filesystems made by mkfs.ext4 from deterministic trees."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
from pathlib import Path

import pytest

from bulkhead.delta import patch as patch_module
from bulkhead.delta.bundle import HOOK_NAME
from bulkhead.delta.generate import make_patch
from bulkhead.rauc import Image, Manifest, create_bundle


def _tree(root: Path, version: int) -> None:
    rng = random.Random(7)
    (root / "usr/lib").mkdir(parents=True)
    (root / "etc").mkdir()
    # an "executable" whose new version differs in a few bytes every ~300 bytes (addresses after a rebuild)
    lib = bytearray(rng.randbytes(600_000))
    if version == 2:
        for i in range(0, len(lib), 311):
            lib[i] = (lib[i] + 1) % 256
    (root / "usr/lib/libdemo.so").write_bytes(lib)
    for n in range(40):  # unchanged files, which move when files before them change size
        (root / "usr/lib" / f"data{n:02}.bin").write_bytes(rng.randbytes(20_000 + n * 100))
    (root / "etc/os-release").write_text(f'VERSION_ID="{version}"\n')
    if version == 1:
        (root / "usr/lib/removed.txt").write_text("gone in v2\n" * 3000)
    else:
        (root / "usr/lib/added.bin").write_bytes(rng.randbytes(30_000))


def ext4(work: Path, version: int, size_mib: int = 8) -> Path:
    if shutil.which("mkfs.ext4") is None:
        pytest.skip("mkfs.ext4 is missing: install the Debian package e2fsprogs")
    root = work / f"tree-{version}"
    _tree(root, version)
    img = work / f"rootfs-{version}.ext4"
    subprocess.run(
        ["mkfs.ext4", "-q", "-F", "-d", str(root), "-E", "root_owner=0:0", "-U", f"0000000{version}-0000-4000-8000-000000000000",
         str(img), f"{size_mib}M"],
        check=True, capture_output=True, env={**os.environ, "E2FSPROGS_FAKE_TIME": "1700000000"},
    )  # fmt: skip
    return img


def full_bundle(work: Path, image: Path, version: str, cert: Path, key: Path, compatible: str = "delta-lab") -> Path:
    content = work / f"content-{version}"
    content.mkdir()
    shutil.copy(image, content / "rootfs.ext4")
    (content / "manifest.raucm").write_text(
        f"[update]\ncompatible={compatible}\nversion={version}\ndescription=release {version}\n\n"
        "[image.rootfs]\nfilename=rootfs.ext4\n"
    )
    out = work / f"full-{version}.raucb"
    create_bundle(content, out, cert.read_bytes(), key.read_bytes(), fmt="plain")
    return out


def damaged_delta(
    work: Path, source: Path, target: Path, version: str, cert: Path, key: Path, compatible: str = "delta-lab"
) -> Path:
    """A delta bundle, properly signed, whose patch data was damaged before signing (what a generator bug would make)."""
    content = work / f"damaged-{version}"
    content.mkdir()
    patch = content / "rootfs.ext4.bhdelta"
    make_patch(source, target, patch)
    raw = bytearray(patch.read_bytes())
    raw[-200] ^= 0x01
    patch.write_bytes(bytes(raw))
    shutil.copy(patch_module.__file__, content / HOOK_NAME)
    (content / HOOK_NAME).chmod(0o755)
    img = Image(slotclass="rootfs", filename=patch.name, hooks=("install",))
    manifest = Manifest(compatible=compatible, version=version, hook_filename=HOOK_NAME, images=(img,))
    (content / "manifest.raucm").write_text(manifest.to_text())
    out = work / f"damaged-delta-{version}.raucb"
    create_bundle(content, out, cert.read_bytes(), key.read_bytes(), fmt="plain")
    return out
