"""Make an image patch (format in patch.py) from a source image to a target image.

1. Every 4 KiB source block is indexed by its hash; a target block found there is a COPY (runs merge).
   Filesystem images keep file contents block-aligned, so moved files cost nothing.
2. The other target blocks are compared with source data at byte offsets found by voting: 16-byte
   samples of the source blocks no target block reused (the old versions of changed files) are indexed
   every 16 bytes; each sample the target block shares votes for one alignment; the best alignment
   wins when the difference is clearly more compressible than the block itself (DIFF, else RAW).
3. The differences and literal blocks go into one xz stream (LZMA2, 64 MiB dictionary: a device needs
   about that much memory to apply it), the operations into another.

Memory on the generating host is about 40 bytes per source block plus the sample index of the changed
regions; time is dominated by hashing and by xz on the changed data.
"""

from __future__ import annotations

import hashlib
import lzma
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .errors import DeltaError
from .patch import BLOCK, OP_COPY, OP_DIFF, OP_END, OP_RAW, OP_ZERO, Header, put_varint, sub_blocks

__all__ = ["DeltaStats", "make_patch"]

SAMPLE = 16  # bytes per sample of the alignment index
STEP = 16  # distance between indexed samples in the source
XZ_FILTERS = [{"id": lzma.FILTER_LZMA2, "preset": 9 | lzma.PRESET_EXTREME, "dict_size": 64 << 20}]
Progress = Callable[[str], None]


@dataclass(frozen=True)
class DeltaStats:
    target_blocks: int
    copy_blocks: int
    zero_blocks: int
    diff_blocks: int
    raw_blocks: int
    patch_bytes: int


def _blocks(path: Path) -> list[bytes]:
    """The 16-byte blake2b of each BLOCK of a file (the last one zero-padded)."""
    out = []
    with path.open("rb") as f:
        while chunk := f.read(BLOCK * 256):
            mv = memoryview(chunk)
            for i in range(0, len(chunk), BLOCK):
                piece = mv[i : i + BLOCK]
                if len(piece) < BLOCK:
                    piece = memoryview(bytes(piece) + bytes(BLOCK - len(piece)))
                out.append(hashlib.blake2b(piece, digest_size=16).digest())
    return out


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


class _Ops:
    def __init__(self) -> None:
        self.buf = bytearray()
        self.run: list[int] | None = None  # [op, count, arg]

    def add(self, op: int, arg: int = 0) -> None:
        r = self.run
        if r is not None and r[0] == op and op != OP_DIFF and (op != OP_COPY or r[2] + r[1] == arg):
            r[1] += 1
            return
        self.flush()
        self.run = [op, 1, arg]

    def flush(self) -> None:
        if self.run is None:
            return
        op, count, arg = self.run
        put_varint(self.buf, op)
        if op == OP_COPY:
            put_varint(self.buf, arg)
            put_varint(self.buf, count)
        elif op == OP_DIFF:
            put_varint(self.buf, arg)
        else:
            put_varint(self.buf, count)
        self.run = None

    def finish(self) -> bytes:
        self.flush()
        put_varint(self.buf, OP_END)
        return bytes(self.buf)


def _best_alignment(block: bytes, index: dict[bytes, int], source_size: int) -> int | None:
    """The source offset whose 4 KiB shares the most samples with `block` (at least 2), or None."""
    votes: dict[int, int] = {}
    mv = memoryview(block)
    get = index.get
    for j in range(BLOCK - SAMPLE + 1):
        p = get(mv[j : j + SAMPLE].tobytes())
        if p is not None:
            off = p - j
            votes[off] = votes.get(off, 0) + 1
    best = None
    best_votes = 1
    for off, n in votes.items():
        if n > best_votes and 0 <= off <= source_size - BLOCK:
            best, best_votes = off, n
    return best


def make_patch(source: Path, target: Path, out: Path, progress: Progress = lambda _m: None) -> DeltaStats:
    """Write the patch turning `source` into `target` to `out` (atomically); return what it holds."""
    for p in (source, target):
        if not p.is_file():
            raise DeltaError(f"{p} is not a file", "pass the old and new image files (e.g. rootfs.ext4)")
    source_size, target_size = source.stat().st_size, target.stat().st_size
    if source_size < BLOCK:
        raise DeltaError(f"source image {source} has only {source_size} bytes", "pass a filesystem image")
    progress("hashing the source and target blocks")
    src_hashes = _blocks(source)
    if source_size % BLOCK:
        src_hashes.pop()  # a partial last block is never copied: the device's slot holds other bytes there
    where: dict[bytes, int] = {}
    for i, h in enumerate(src_hashes):
        where.setdefault(h, i)
    tgt_hashes = _blocks(target)
    zero_hash = hashlib.blake2b(bytes(BLOCK), digest_size=16).digest()

    plan: list[int | None] = []  # source block per target block (or None)
    used = bytearray(len(src_hashes))
    for h in tgt_hashes:
        hit = where.get(h)
        plan.append(hit)
        if hit is not None:
            used[hit] = 1

    progress("indexing the changed regions of the source")
    index: dict[bytes, int] = {}
    with source.open("rb") as f:
        for i, u in enumerate(used):
            if u or src_hashes[i] == zero_hash:
                continue
            f.seek(i * BLOCK)
            data = f.read(BLOCK)
            base = i * BLOCK
            for j in range(0, BLOCK - SAMPLE + 1, STEP):
                index.setdefault(data[j : j + SAMPLE], base + j)

    progress("encoding the changed blocks")
    ops = _Ops()
    comp = lzma.LZMACompressor(format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC64, filters=XZ_FILTERS)
    tmp = out.with_name(out.name + ".partial")
    data_tmp = out.with_name(out.name + ".data.partial")
    counts = {OP_COPY: 0, OP_ZERO: 0, OP_DIFF: 0, OP_RAW: 0}
    try:
        with source.open("rb") as sf, target.open("rb") as tf, data_tmp.open("wb") as df:
            for n, (h, at) in enumerate(zip(tgt_hashes, plan, strict=True)):
                if at is not None:
                    ops.add(OP_COPY, at)
                    counts[OP_COPY] += 1
                    continue
                if h == zero_hash:
                    ops.add(OP_ZERO)
                    counts[OP_ZERO] += 1
                    continue
                tf.seek(n * BLOCK)
                block = tf.read(BLOCK)
                block += bytes(BLOCK - len(block))
                off = _best_alignment(block, index, source_size)
                chosen = block
                op = OP_RAW
                if off is not None:
                    sf.seek(off)
                    diff = sub_blocks(block, sf.read(BLOCK))
                    if diff.count(0) > block.count(0) + BLOCK // 8:
                        chosen, op = diff, OP_DIFF
                ops.add(op, off or 0)
                counts[op] += 1
                df.write(comp.compress(chosen))
            df.write(comp.flush())
        ops_xz = lzma.compress(ops.finish(), format=lzma.FORMAT_XZ, preset=9)
        head = Header(
            source_size=source_size, source_sha256=_sha256(source), target_size=target_size,
            target_sha256=_sha256(target), ops_len=len(ops_xz), data_len=data_tmp.stat().st_size,
        )  # fmt: skip
        with tmp.open("wb") as f, data_tmp.open("rb") as df:
            f.write(head.to_bytes())
            f.write(ops_xz)
            while chunk := df.read(1 << 20):
                f.write(chunk)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
        data_tmp.unlink(missing_ok=True)
    return DeltaStats(
        target_blocks=len(tgt_hashes), copy_blocks=counts[OP_COPY], zero_blocks=counts[OP_ZERO],
        diff_blocks=counts[OP_DIFF], raw_blocks=counts[OP_RAW], patch_bytes=out.stat().st_size,
    )  # fmt: skip
