"""Two builds of the same inputs, each from its own mmdebstrap run, give a byte-identical rootfs image.

One build runs mmdebstrap itself; the other takes its base from the session's image cache, which another
mmdebstrap run filled (the QEMU test's, when it runs alongside; else this test's own second run).
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import pytest

from bulkhead.lab.pki import make_pki
from bulkhead.osbuild import BuildSpec, build_image
from tests.osbuild.conftest import need_image_tools
from tests.sbom_validators import validate


def _debugfs_ls(image: Path, path: str) -> list[str]:
    """Names in a directory of an ext4 image (debugfs's `ls -p`: /inode/mode/uid/gid/name/size/)."""
    res = subprocess.run(["debugfs", "-R", f"ls -p {path}", str(image)], capture_output=True, text=True, check=True)
    return [ln.split("/")[5] for ln in res.stdout.splitlines() if ln.count("/") >= 6 and ln.split("/")[5] not in (".", "..")]


def _cpio_names(data: bytes) -> list[str]:
    """Every file name in a concatenation of newc cpio archives (an uncompressed initramfs)."""
    names, off = [], 0
    while off + 110 <= len(data):
        if data[off : off + 6] not in (b"070701", b"070702"):
            off += 4  # padding between archives
            continue
        size, name_size = int(data[off + 54 : off + 62], 16), int(data[off + 94 : off + 102], 16)
        names.append(data[off + 110 : off + 110 + name_size - 1].decode())
        off = (((off + 110 + name_size + 3) & ~3) + size + 3) & ~3
    return names


def _sha256(p: Path) -> str:
    h = hashlib.sha256()
    with p.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


@pytest.mark.slow
def test_two_builds_give_the_same_rootfs_and_a_complete_manifest(tmp_path: Path, image_cache: Path) -> None:
    need_image_tools()
    pki = make_pki(tmp_path / "pki")
    results = []
    for run, cache in (("b", None), ("a", image_cache)):  # the uncached one first: the cache is filled meanwhile
        spec = BuildSpec(
            version="7.1", out=tmp_path / run, cert=pki.cert, key=pki.key, keyring=pki.ca, bootstrap_token="boot-x",
            cache=cache, make_bundle=False, make_disk=False,  # the QEMU test makes and uses both
        )  # fmt: skip
        result = build_image(spec)
        assert result.bundle is None and result.disk is None and not list((tmp_path / run).glob("*.raucb"))
        results.append(result)
    b, a = results
    assert _sha256(a.rootfs) == _sha256(b.rootfs)
    manifest = json.loads(a.manifest.read_text())
    assert manifest["version"] == "7.1" and manifest["inputs"]["source_date_epoch"] == 1700000000
    assert {"rauc", "podman", "python3", "systemd", "linux-image-amd64"} <= set(manifest["packages"])
    assert manifest["outputs"]["rootfs.ext4"]["sha256"] == _sha256(a.rootfs)
    assert set(manifest["outputs"]) == {"rootfs.ext4", "sbom.spdx.json", "sbom.cdx.json"}
    assert manifest["inputs"]["base_sha256"] == json.loads(b.manifest.read_text())["inputs"]["base_sha256"]
    spdx = json.loads(a.spdx.read_text())
    assert spdx["spdxVersion"] == "SPDX-2.3" and len(spdx["packages"]) == len(manifest["packages"]) + 1
    cdx = json.loads(a.cyclonedx.read_text())
    assert cdx["specVersion"] == "1.6" and {c["name"] for c in cdx["components"]} == set(manifest["packages"])
    assert validate("spdx", a.spdx.read_text()) == [] and validate("cyclonedx", a.cyclonedx.read_text()) == []
    assert a.spdx.read_bytes() == b.spdx.read_bytes() and a.cyclonedx.read_bytes() == b.cyclonedx.read_bytes()
    # The kernel modules are stored uncompressed (osbuild/kmods.py), indexed for them, and the initramfs has the
    # boot drivers only.
    (kver,) = _debugfs_ls(a.rootfs, "/usr/lib/modules")
    assert _debugfs_ls(a.rootfs, f"/usr/lib/modules/{kver}/kernel/fs/ext4") == ["ext4.ko"]
    cat = ["debugfs", "-R", f"cat /usr/lib/modules/{kver}/modules.dep", str(a.rootfs)]
    dep = subprocess.run(cat, capture_output=True, text=True, check=True).stdout
    assert "kernel/fs/ext4/ext4.ko: " in dep and ".ko.xz" not in dep
    assert "kernel_modules" in manifest["inputs"]
    initrd = tmp_path / "initrd"
    subprocess.run(["debugfs", "-R", f"dump /boot/initrd.img-{kver} {initrd}", str(a.rootfs)], capture_output=True, check=True)
    modules = {Path(n).name for n in _cpio_names(initrd.read_bytes()) if ".ko" in n}
    assert {"ext4.ko", "virtio_blk.ko", "nvme.ko", "ahci.ko"} <= modules, modules  # stored uncompressed, readable
    assert len(modules) < 80 and "nbd.ko" not in modules, modules  # the boot drivers and what they need: no more
