"""The initramfs stored uncompressed (osbuild/initramfs.py): what the kernel unpacks stays the same files."""

from __future__ import annotations

import gzip
import lzma
import shutil
import subprocess

import pytest

from bulkhead.osbuild.errors import BuildError
from bulkhead.osbuild.initramfs import uncompressed_initramfs


def _cpio(files: dict[str, bytes]) -> bytes:
    """A newc archive, as initramfs-tools writes them (cpio -H newc)."""
    out = b""
    for i, (name, data) in enumerate([*files.items(), ("TRAILER!!!", b"")]):
        raw = name.encode() + b"\0"
        fields = [i + 1, 0o100644, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(raw), 0]
        header = b"070701" + b"".join(b"%08X" % f for f in fields)
        entry = header + raw
        entry += b"\0" * (-len(entry) % 4) + data
        out += entry + b"\0" * (-len(entry) % 4)
    return out


EARLY = _cpio({"usr/lib/modules/6.12/kernel/a.ko.xz": b"\xfd7zXZ\x00 module", "kernel/x86/microcode/x.bin": b"u" * 5})
MAIN = _cpio({"init": b"#!/bin/sh\nexec run-init\n", "usr/bin/busybox": bytes(range(256)) * 40})


def _zstd(data: bytes) -> bytes:
    if shutil.which("zstd") is None:
        pytest.skip("'zstd' is missing: install the Debian package 'zstd'")
    return subprocess.run(["zstd", "-q", "-c"], input=data, capture_output=True, check=True).stdout


@pytest.mark.parametrize("compress", [gzip.compress, lzma.compress, _zstd], ids=["gzip", "xz", "zstd"])
def test_the_compressed_part_is_stored_as_the_archive_it_holds(compress: object) -> None:
    padding = b"\0" * (-len(EARLY) % 512)  # initramfs-tools pads the uncompressed part
    image = EARLY + padding + compress(MAIN)  # type: ignore[operator]
    assert uncompressed_initramfs(image) == EARLY + padding + MAIN


def test_an_uncompressed_or_a_wholly_compressed_initramfs() -> None:
    assert uncompressed_initramfs(EARLY + MAIN) == EARLY + MAIN  # nothing to do: the same bytes
    assert uncompressed_initramfs(gzip.compress(MAIN)) == MAIN


def test_two_releases_differing_in_one_file_differ_in_that_file_only() -> None:
    """What the change is for: compressed, one changed file changes the stream from there on."""
    other = _cpio({"init": b"#!/bin/sh\nexec run-init\n", "usr/bin/busybox": bytes(range(256)) * 39 + b"x" * 256})
    a, b = uncompressed_initramfs(EARLY + gzip.compress(MAIN)), uncompressed_initramfs(EARLY + gzip.compress(other))
    assert len(a) == len(b) and 0 < sum(x != y for x, y in zip(a, b, strict=True)) <= 256  # the changed 256 bytes


@pytest.mark.parametrize(
    "broken",
    [EARLY[:200], EARLY[:-4], b"BZh91AY&SY" + b"\0" * 20, EARLY + gzip.compress(MAIN)[:30]],
    ids=["cut-cpio", "no-trailer", "bzip2", "cut-gzip"],
)
def test_an_initramfs_it_cannot_read_is_a_build_error(broken: bytes) -> None:
    with pytest.raises(BuildError):
        uncompressed_initramfs(broken)
