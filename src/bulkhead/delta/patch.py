#!/usr/bin/env python3
"""Bulkhead's image patch format and its applier. Standard library only: this file is also the install
hook inside delta bundles, so it runs on a device with nothing but python3.

A patch turns one exact source image (the booted slot's first `source_size` bytes) into one target image.
The target is cut into blocks of `block` bytes; each block is, in order, one of:

    COPY  a source block, by index (runs of consecutive source blocks are one op)
    ZERO  zeros
    RAW   literal bytes from the data stream
    STORE literal bytes from the stored stream (incompressible data: compressed files, keys)
    DIFF  the 4 KiB of source at any byte offset plus (bytewise, mod 256) 4 KiB from the data stream

DIFF is what makes updated executables cheap: a rebuilt library differs from its old version in
addresses spread all over it, so target minus source is mostly zeros, which the data stream's LZMA
squeezes to little. File layout:

    b"BHDELTA1\\n" | u32 header length | header (JSON) | ops (xz) | data (xz) | stored (as is)

The header holds the sizes and sha256 of source and target and the lengths of the two streams. The
applier checks the source's sha256 before it writes a byte, streams the data (memory stays at the xz
dictionary plus a few MiB), and checks the target's sha256 over what it wrote before it reports success.
"""

from __future__ import annotations

import hashlib
import json
import lzma
import os
import struct
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

MAGIC = b"BHDELTA1\n"
BLOCK = 4096
OP_END, OP_COPY, OP_ZERO, OP_RAW, OP_DIFF, OP_STORE = 0, 1, 2, 3, 4, 5
_CHUNK = 1 << 20
_H = int.from_bytes(b"\x80" * BLOCK, "little")
_L = int.from_bytes(b"\x7f" * BLOCK, "little")


class PatchError(Exception):
    """A patch that cannot be applied here: wrong source, damaged patch, or a target that does not verify."""


class SourceMismatch(PatchError):
    """The source (the booted slot) is not the image the patch was made from: nothing was written."""


class SetupError(PatchError):
    """The hook cannot tell which slot to read (no rauc.slot=, no system.conf): nothing was written."""


# The hook's exit codes. RAUC reports only "Child process exited with code N" (the hook's stderr goes to its
# log), so the code is how the agent tells the device's owner why a delta was refused (agent/updater.py).
EXIT_SOURCE, EXIT_DAMAGED, EXIT_SETUP = 3, 4, 5


@dataclass(frozen=True)
class Header:
    source_size: int
    source_sha256: str
    target_size: int
    target_sha256: str
    ops_len: int
    data_len: int
    stored_len: int = 0
    block: int = BLOCK

    def to_bytes(self) -> bytes:
        doc = json.dumps(self.__dict__, sort_keys=True).encode()
        return MAGIC + struct.pack("<I", len(doc)) + doc

    @classmethod
    def read(cls, f: BinaryIO) -> Header:
        if f.read(len(MAGIC)) != MAGIC:
            raise PatchError("not a Bulkhead image patch (bad magic)")
        raw = f.read(4)
        if len(raw) != 4:
            raise PatchError("patch is truncated in its header")
        (n,) = struct.unpack("<I", raw)
        if n > 1 << 16:
            raise PatchError("patch header is too large: the file is damaged")
        try:
            doc = json.loads(f.read(n))
            head = cls(**doc)
        except (ValueError, TypeError) as exc:
            raise PatchError(f"patch header is damaged: {exc}") from exc
        if head.block != BLOCK:
            raise PatchError(f"patch uses {head.block}-byte blocks; this applier knows {BLOCK}")
        return head


def add_blocks(base: bytes, diff: bytes) -> bytes:
    """Bytewise (base + diff) mod 256 for two BLOCK-sized strings (SWAR on Python integers)."""
    x, y = int.from_bytes(base, "little"), int.from_bytes(diff, "little")
    return (((x & _L) + (y & _L)) ^ ((x ^ y) & _H)).to_bytes(BLOCK, "little")


def sub_blocks(target: bytes, base: bytes) -> bytes:
    """Bytewise (target - base) mod 256, the inverse of add_blocks."""
    x, y = int.from_bytes(target, "little"), int.from_bytes(base, "little")
    return (((x | _H) - (y & _L)) ^ ((x ^ ~y) & _H)).to_bytes(BLOCK, "little")


def put_varint(out: bytearray, n: int) -> None:
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)


def _varints(buf: bytes) -> Iterator[int]:
    n = shift = 0
    for b in buf:
        n |= (b & 0x7F) << shift
        if b & 0x80:
            shift += 7
        else:
            yield n
            n = shift = 0


def parse_ops(buf: bytes) -> list[tuple[int, int, int]]:
    """(op, count, argument) triples; COPY's argument is the first source block, DIFF's the source offset."""
    it = _varints(buf)
    ops = []
    try:
        while (op := next(it)) != OP_END:
            if op == OP_COPY:
                start, count = next(it), next(it)
                ops.append((op, count, start))
            elif op in (OP_ZERO, OP_RAW, OP_STORE):
                ops.append((op, next(it), 0))
            elif op == OP_DIFF:
                ops.append((op, 1, next(it)))
            else:
                raise PatchError(f"unknown patch operation {op}: the patch is damaged")
    except StopIteration:
        raise PatchError("patch operations end early: the patch is damaged") from None
    return ops


class _Data:
    """The data stream, decompressed as it is read."""

    def __init__(self, f: BinaryIO, length: int) -> None:
        self.f, self.left = f, length
        self.dec = lzma.LZMADecompressor(format=lzma.FORMAT_XZ, memlimit=96 << 20)
        self.buf = bytearray()

    def _feed(self) -> None:
        """Decompress one step: more input when xz needs it, else what it still holds."""
        chunk = b""
        if self.dec.needs_input:
            chunk = self.f.read(min(self.left, 1 << 16))
            if not chunk:
                raise PatchError("patch data is truncated")
            self.left -= len(chunk)
        try:
            self.buf += self.dec.decompress(chunk, max_length=_CHUNK)
        except lzma.LZMAError as exc:
            raise PatchError(f"patch data is damaged: {exc}") from exc

    def read(self, n: int) -> bytes:
        while len(self.buf) < n:
            if self.dec.eof:
                raise PatchError("patch data ends early: the patch is damaged")
            self._feed()
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def finish(self) -> None:
        """Read the stream to its end, so xz checks its CRC and index: a damaged tail is an error too."""
        while not self.dec.eof:
            self._feed()
        if self.buf or self.left or self.dec.unused_data:
            raise PatchError("patch data is longer than its operations use: the patch is damaged")


def sha256_prefix(path: str, size: int) -> str:
    """sha256 of the first `size` bytes of a file or block device."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        left = size
        while left:
            chunk = f.read(min(_CHUNK, left))
            if not chunk:
                raise SourceMismatch(f"{path} is shorter than the {size} bytes the patch starts from")
            h.update(chunk)
            left -= len(chunk)
    return h.hexdigest()


def apply_patch(patch_path: str, source_path: str, target_path: str, check_source: bool = True) -> Header:
    """Write the target image into `target_path` (a file or the inactive slot's device).

    Raises PatchError, before writing anything, when the source is not the one the patch was made from,
    and after writing when the result's sha256 is not the target's (the slot then holds garbage and must
    not be marked bootable; RAUC does not when the install hook fails).
    """
    with open(patch_path, "rb") as pf:
        head = Header.read(pf)
        if check_source:
            got = sha256_prefix(source_path, head.source_size)
            if got != head.source_sha256:
                raise SourceMismatch(
                    f"the source slot {source_path} is not the image this patch was made from "
                    f"(sha256 {got[:16]}…, the patch needs {head.source_sha256[:16]}…): install the full bundle"
                )
        try:
            ops = parse_ops(lzma.decompress(pf.read(head.ops_len), format=lzma.FORMAT_XZ))
        except lzma.LZMAError as exc:
            raise PatchError(f"patch operations are damaged: {exc}") from exc
        data = _Data(pf, head.data_len)
        stored_at = pf.tell() + head.data_len
        stored_left = head.stored_len
        digest = hashlib.sha256()
        zero = bytes(BLOCK)
        written = 0
        flags = os.O_WRONLY | (0 if os.path.exists(target_path) else os.O_CREAT)
        with (
            open(source_path, "rb", buffering=0) as src,
            open(patch_path, "rb") as stored,
            os.fdopen(os.open(target_path, flags, 0o644), "wb") as dst,
        ):
            stored.seek(stored_at)

            def emit(chunk: bytes) -> None:
                nonlocal written
                if written + len(chunk) > head.target_size:  # the last block of an image not made of whole blocks
                    chunk = chunk[: max(0, head.target_size - written)]
                digest.update(chunk)
                dst.write(chunk)
                written += len(chunk)

            def emit_from(f: BinaryIO, want: int, short: str) -> None:
                while want:
                    chunk = f.read(min(want, _CHUNK))
                    if not chunk:
                        raise PatchError(short)
                    emit(chunk)
                    want -= len(chunk)

            for op, count, arg in ops:
                if op == OP_COPY:
                    if (arg + count) * BLOCK > head.source_size:
                        raise PatchError("patch copies beyond the source image: the patch is damaged")
                    src.seek(arg * BLOCK)
                    emit_from(src, count * BLOCK, "the source ended while copying from it")
                elif op == OP_ZERO:
                    for _ in range(count):
                        emit(zero)
                elif op == OP_RAW:
                    for _ in range(count):
                        emit(data.read(BLOCK))
                elif op == OP_STORE:
                    if count * BLOCK > stored_left:
                        raise PatchError("patch's stored data is truncated: the patch is damaged")
                    emit_from(stored, count * BLOCK, "patch's stored data is truncated: the patch is damaged")
                    stored_left -= count * BLOCK
                else:
                    if arg + BLOCK > head.source_size:
                        raise PatchError("patch reads beyond the source image: the patch is damaged")
                    src.seek(arg)
                    emit(add_blocks(src.read(BLOCK), data.read(BLOCK)))
            data.finish()
            if stored_left:
                raise PatchError("patch's stored data is longer than its operations use: the patch is damaged")
            if written != head.target_size:
                raise PatchError(f"patch produced {written} bytes, the target has {head.target_size}: the patch is damaged")
            dst.flush()
            if os.path.isfile(target_path):
                dst.truncate(head.target_size)
            os.fsync(dst.fileno())
    if digest.hexdigest() != head.target_sha256:
        raise PatchError("the reconstructed image does not match the target's sha256: the patch is damaged")
    return head


# --- RAUC install hook -----------------------------------------------------------------------------------


def _system_slots(conf: str) -> list[dict[str, str]]:
    import configparser

    cp = configparser.ConfigParser(interpolation=None)
    cp.read(conf)
    out = []
    for name in cp.sections():
        if name.startswith("slot."):
            cls = name.split(".")[1]
            out.append({"name": name[5:], "class": cls, **dict(cp[name])})
    return out


def source_slot(conf: str, target_device: str, slot_class: str, cmdline: str) -> str:
    """The booted slot of the target's class: the device the patch reads (never the one it writes)."""
    booted = next((w.split("=", 1)[1] for w in cmdline.split() if w.startswith("rauc.slot=")), None)
    peers = [s for s in _system_slots(conf) if s["class"] == slot_class and s.get("device") != target_device]
    if booted is not None:
        peers = [s for s in peers if s.get("bootname") == booted] or peers
    if len(peers) != 1:
        raise SetupError(f"cannot tell which {slot_class} slot is booted (rauc.slot={booted}): install the full bundle")
    return peers[0]["device"]


def _conf_from_args(args: list[str]) -> str | None:
    for i, a in enumerate(args):
        if a.startswith("--conf="):
            return a.split("=", 1)[1]
        if a in ("-c", "--conf") and i + 1 < len(args):
            return args[i + 1]
    return None


def system_conf(env: dict[str, str], pid: int) -> str:
    """The system.conf RAUC runs with: RAUC 1.8 does not tell hooks, so look at the `rauc` process that
    started this one (its --conf), else RAUC's default locations."""
    if env.get("RAUC_SYSTEM_CONFIG"):
        return env["RAUC_SYSTEM_CONFIG"]
    for _ in range(8):
        try:
            with open(f"/proc/{pid}/stat") as f:
                pid = int(f.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                args = [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
        except (OSError, ValueError, IndexError):
            break
        if args and os.path.basename(args[0]) == "rauc":
            conf = _conf_from_args(args)
            if conf:
                return conf
            break
    for path in ("/etc/rauc/system.conf", "/run/rauc/system.conf", "/usr/lib/rauc/system.conf"):
        if os.path.exists(path):
            return path
    raise SetupError("cannot find RAUC's system.conf to tell which slot is booted")


def hook_main(argv: list[str], env: dict[str, str]) -> int:
    """`hook slot-install`: RAUC runs this instead of writing the image (manifest: hooks=install)."""
    if len(argv) < 2 or argv[1] != "slot-install":
        return 0  # other hook phases: nothing to do
    target = env["RAUC_SLOT_DEVICE"]
    patch = env["RAUC_IMAGE_NAME"]
    try:
        with open("/proc/cmdline") as f:
            cmdline = f.read()
        source = source_slot(system_conf(env, os.getpid()), target, env["RAUC_SLOT_CLASS"], cmdline)
        head = apply_patch(patch, source, target)
    except (SourceMismatch, SetupError) as exc:
        print(f"bulkhead delta: {exc}", file=sys.stderr)
        return EXIT_SOURCE if isinstance(exc, SourceMismatch) else EXIT_SETUP
    except PatchError as exc:
        print(f"bulkhead delta: {exc}", file=sys.stderr)
        return EXIT_DAMAGED
    except (OSError, KeyError) as exc:
        print(f"bulkhead delta: {exc}", file=sys.stderr)
        return EXIT_SETUP
    print(f"bulkhead delta: wrote {head.target_size} bytes to {target} from {source}; sha256 verified")
    return 0


def main(argv: list[str]) -> int:
    """As RAUC's hook (`slot-install`), or by hand: `patch.py apply PATCH SOURCE TARGET`."""
    if len(argv) == 5 and argv[1] == "apply":
        try:
            apply_patch(argv[2], argv[3], argv[4])
        except (PatchError, OSError) as exc:
            print(f"bulkhead delta: {exc}", file=sys.stderr)
            return 1
        return 0
    return hook_main(argv, dict(os.environ))


if __name__ == "__main__":
    sys.exit(main(sys.argv))
