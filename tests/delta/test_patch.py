"""The patch format's core: bytewise arithmetic, varints, and the applier's checks on damaged input."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bulkhead.delta import patch as P
from bulkhead.delta.generate import make_patch
from bulkhead.delta.patch import BLOCK, Header, PatchError, apply_patch


def test_add_inverts_sub_bytewise_mod_256() -> None:
    a, b = os.urandom(BLOCK), os.urandom(BLOCK)
    d = P.sub_blocks(a, b)
    assert P.add_blocks(b, d) == a
    assert d == bytes((x - y) % 256 for x, y in zip(a, b, strict=True))
    assert P.sub_blocks(a, a) == bytes(BLOCK)


def test_ops_round_trip_and_damage() -> None:
    buf = bytearray()  # COPY 7 blocks from 300; ZERO 5; RAW 1; DIFF at 123456789; END
    for n in (1, 300, 7, 2, 5, 3, 1, 4, 123456789, 0):
        P.put_varint(buf, n)
    assert P.parse_ops(bytes(buf)) == [(1, 7, 300), (2, 5, 0), (3, 1, 0), (4, 1, 123456789)]
    with pytest.raises(PatchError, match="end early"):
        P.parse_ops(bytes(buf[:-3]))
    with pytest.raises(PatchError, match="unknown patch operation 9"):
        P.parse_ops(bytes([9, 0]))


def test_source_slot_is_the_booted_peer(tmp_path: Path) -> None:
    conf = tmp_path / "system.conf"
    conf.write_text(
        "[system]\ncompatible=x\n\n[slot.rootfs.0]\ndevice=/dev/vda2\nbootname=A\n\n"
        "[slot.rootfs.1]\ndevice=/dev/vda3\nbootname=B\n\n[slot.appfs.0]\ndevice=/dev/vda5\n"
    )
    assert P.source_slot(str(conf), "/dev/vda3", "rootfs", "root=/dev/vda2 rauc.slot=A quiet") == "/dev/vda2"
    assert P.source_slot(str(conf), "/dev/vda2", "rootfs", "rauc.slot=B") == "/dev/vda3"


def _pair(tmp_path: Path) -> tuple[Path, Path, Path]:
    src = tmp_path / "src"
    src.write_bytes(os.urandom(BLOCK * 64))
    data = bytearray(src.read_bytes())
    data[BLOCK * 3 : BLOCK * 3 + 10] = b"0123456789"
    tgt = tmp_path / "tgt"
    tgt.write_bytes(bytes(data[BLOCK * 8 :]) + bytes(data[: BLOCK * 8]) + b"tail")  # rotated, edited, odd size
    patch = tmp_path / "p.bhdelta"
    make_patch(src, tgt, patch)
    return src, tgt, patch


def test_apply_rebuilds_the_target_exactly(tmp_path: Path) -> None:
    src, tgt, patch = _pair(tmp_path)
    out = tmp_path / "out"
    out.write_bytes(b"x" * (BLOCK * 100))  # a slot bigger than the image: only the image's bytes matter
    head = apply_patch(str(patch), str(src), str(out))
    assert out.read_bytes() == tgt.read_bytes() and head.target_size == tgt.stat().st_size
    assert patch.stat().st_size < 2 * BLOCK  # one DIFF block, the rest copies


def test_a_modified_source_is_refused_before_writing(tmp_path: Path) -> None:
    src, _tgt, patch = _pair(tmp_path)
    with src.open("r+b") as f:
        f.seek(BLOCK * 40)
        byte = f.read(1)
        f.seek(BLOCK * 40)
        f.write(bytes([byte[0] ^ 0xFF]))  # a changed byte, whatever the random source held
    out = tmp_path / "out"
    out.write_bytes(b"untouched")
    with pytest.raises(PatchError, match="not the image this patch was made from"):
        apply_patch(str(patch), str(src), str(out))
    assert out.read_bytes() == b"untouched"


def test_damaged_patches_are_refused(tmp_path: Path) -> None:
    src, _tgt, patch = _pair(tmp_path)
    raw = patch.read_bytes()
    head_len = len(Header.read(patch.open("rb")).to_bytes())
    cases = {
        "bad magic": b"X" + raw[1:],
        "truncated": raw[: len(raw) - 20],
        "damaged": raw[:-30] + bytes(b ^ 0x55 for b in raw[-30:]),
        "header is damaged": raw[:12] + b"{" + raw[13:],
    }
    for name, data in cases.items():
        bad = tmp_path / f"bad-{name}"
        bad.write_bytes(data)
        with pytest.raises(PatchError):
            apply_patch(str(bad), str(src), str(tmp_path / "out"))
    assert head_len < 400
