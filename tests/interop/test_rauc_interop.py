"""Interop both ways with Debian's rauc: bundles written by either tool are read by the other."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from bulkhead.lab.pki import make_pki
from bulkhead.lab.rauc_service import RaucDevice
from bulkhead.rauc import (
    BundleError,
    BytesReader,
    FileReader,
    create_bundle,
    load_keyring,
    open_bundle,
)
from tests.conftest import RAUC_DATA, need_tool

CA = RAUC_DATA / "openssl-ca"


def content_dir(tmp: Path, version: str = "1", size: int = 64 * 1024, adaptive: bool = False) -> Path:
    c = tmp / f"content-{version}"
    c.mkdir()
    (c / "rootfs.img").write_bytes(os.urandom(size))
    extra = "adaptive=block-hash-index;\n" if adaptive else ""
    (c / "manifest.raucm").write_text(
        f"[update]\ncompatible=Test Config\nversion={version}\n\n[image.rootfs]\nfilename=rootfs.img\n{extra}"
    )
    return c


def rauc_info(bundle: Path, keyring: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["rauc", "info", f"--keyring={keyring}", str(bundle)], capture_output=True, text=True, check=False)


@pytest.mark.parametrize("fmt", ["plain", "verity"])
def test_rauc_reads_our_bundles(tmp_path: Path, fmt: str) -> None:
    need_tool("rauc", "rauc")
    need_tool("mksquashfs", "squashfs-tools")
    c = content_dir(tmp_path, adaptive=fmt == "verity")
    out = tmp_path / "ours.raucb"
    create_bundle(c, out, (CA / "rel/release-1.cert.pem").read_bytes(), (CA / "rel/private/release-1.pem").read_bytes(), fmt=fmt)
    res = rauc_info(out, CA / "dev-ca.pem")
    assert res.returncode == 0, res.stderr
    assert "Test Config" in res.stdout and f"Bundle Format: \t{fmt}" in res.stdout


@pytest.mark.parametrize("fmt", ["plain", "verity"])
def test_we_read_rauc_bundles(tmp_path: Path, fmt: str) -> None:
    rauc = need_tool("rauc", "rauc")
    c = content_dir(tmp_path)
    (c / "manifest.raucm").write_text((c / "manifest.raucm").read_text().replace("[image", f"[bundle]\nformat={fmt}\n\n[image"))
    out = tmp_path / "theirs.raucb"
    subprocess.run(
        [
            rauc,
            "bundle",
            f"--cert={CA / 'rel/release-1.cert.pem'}",
            f"--key={CA / 'rel/private/release-1.pem'}",
            str(c),
            str(out),
        ],
        check=True,
        capture_output=True,
    )
    with FileReader(out) as r:
        b = open_bundle(r)
        b.verify(load_keyring((CA / "dev-ca.pem").read_bytes()))
        assert b.manifest.format == fmt
        assert b.squashfs().read_file("rootfs.img") == (c / "rootfs.img").read_bytes()


@pytest.mark.parametrize(
    "cert,purpose",
    [(c, p) for c in ("codeSigning-rauc", "codeSigning-openssl", "emailProtection") for p in ("smimesign", "codesign")],
)
def test_purpose_rules_agree_with_rauc(tmp_path: Path, cert: str, purpose: str) -> None:
    rauc = need_tool("rauc", "rauc")
    c = content_dir(tmp_path)
    out = tmp_path / "b.raucb"
    subprocess.run(
        [
            rauc,
            "bundle",
            f"--cert={CA / f'dev/xku-{cert}.cert.pem'}",
            f"--key={CA / f'dev/private/xku-{cert}.pem'}",
            str(c),
            str(out),
        ],
        check=True,
        capture_output=True,
    )
    conf = tmp_path / "system.conf"
    conf.write_text(
        f"[system]\ncompatible=Test Config\nbootloader=noop\n[keyring]\npath={CA / 'dev-ca.pem'}\n"
        + ("check-purpose=codesign\n" if purpose == "codesign" else "")
    )
    theirs = subprocess.run([rauc, "-c", str(conf), "info", str(out)], capture_output=True, check=False).returncode == 0
    try:
        with FileReader(out) as r:
            open_bundle(r).verify(load_keyring((CA / "dev-ca.pem").read_bytes(), purpose))
        ours = True
    except BundleError:
        ours = False
    assert ours == theirs


def real_tools_refuse(path: Path, fmt: str, pos: int, payload: int) -> bool:
    """rauc checks the CMS (and a plain payload); a verity payload is checked by dm-verity at
    mount time, which this host lacks, so veritysetup (same format, same kernel algorithm) checks it."""
    if rauc_info(path, CA / "dev-ca.pem").returncode != 0:
        return True
    if fmt != "verity" or pos >= payload:
        return False
    veritysetup = need_tool("veritysetup", "cryptsetup-bin")
    with FileReader(path) as r:
        m = open_bundle(r).manifest
    assert m.verity_size is not None and m.verity_hash and m.verity_salt
    data = payload - m.verity_size
    res = subprocess.run(
        [
            veritysetup,
            "verify",
            str(path),
            str(path),
            m.verity_hash,
            f"--hash-offset={data}",
            f"--salt={m.verity_salt}",
            "--no-superblock",
            f"--data-blocks={data // 4096}",
        ],
        capture_output=True,
        check=False,
    )
    return res.returncode != 0


@pytest.mark.parametrize("fmt", ["plain", "verity"])
def test_flipped_byte_is_refused_by_both(tmp_path: Path, fmt: str) -> None:
    need_tool("rauc", "rauc")
    c = content_dir(tmp_path, size=16 * 1024)
    out = tmp_path / "ours.raucb"
    create_bundle(c, out, (CA / "rel/release-1.cert.pem").read_bytes(), (CA / "rel/private/release-1.pem").read_bytes(), fmt=fmt)
    data = out.read_bytes()
    cms_size = int.from_bytes(data[-8:], "big")
    payload = len(data) - 8 - cms_size
    keyring = load_keyring((CA / "dev-ca.pem").read_bytes())
    # payload start, middle and end; CMS start, middle (signature value) and end
    positions = [0, payload // 2, payload - 1, payload + 10, payload + cms_size // 2, payload + cms_size - 5]
    for pos in positions:
        bad = bytearray(data)
        bad[pos] ^= 0x01
        path = tmp_path / f"bad-{pos}.raucb"
        path.write_bytes(bytes(bad))
        assert real_tools_refuse(path, fmt, pos, payload), f"the real tools accepted a flip at byte {pos}"
        with pytest.raises(BundleError):
            open_bundle(BytesReader(bytes(bad))).verify(keyring)


def test_real_rauc_service_installs_our_bundle(tmp_path: Path) -> None:
    need_tool("rauc", "rauc")
    need_tool("dbus-daemon", "dbus")
    if os.geteuid() != 0:
        pytest.skip("installing through the RAUC service needs root (loop mounts, mount namespace)")
    pki = make_pki(tmp_path / "pki")
    c = tmp_path / "content"
    c.mkdir()
    image = os.urandom(256 * 1024)
    (c / "rootfs.img").write_bytes(image)
    (c / "manifest.raucm").write_text("[update]\ncompatible=lab-test\nversion=2\n\n[image.rootfs]\nfilename=rootfs.img\n")
    bundle = tmp_path / "b.raucb"
    create_bundle(c, bundle, pki.cert.read_bytes(), pki.key.read_bytes(), fmt="plain")
    with RaucDevice(tmp_path / "dev", "lab-test", pki.ca) as dev:
        dev.start("A")
        res = dev.install(bundle)
        assert res.returncode == 0, res.stderr + res.stdout
        assert dev.slot("B").read_bytes()[: len(image)] == image
        assert dev.primary() == "B"
        # a bundle with one flipped byte is refused and leaves slot A's image in place
        bad = bytearray(bundle.read_bytes())
        bad[100] ^= 0xFF
        (tmp_path / "bad.raucb").write_bytes(bytes(bad))
        before = dev.slot("A").read_bytes()
        assert dev.install(tmp_path / "bad.raucb").returncode != 0
        assert dev.slot("A").read_bytes() == before
