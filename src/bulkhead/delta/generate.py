"""Make an image patch (format in patch.py) from a source image to a target image.

1. Every 4 KiB source block is indexed by its hash; a target block found there is a COPY (runs merge).
   Filesystem images keep file contents block-aligned, so moved files cost nothing.
2. The other target blocks are compared with source data at a few candidate byte offsets:
   - voted: the source blocks no target block reused (the old versions of changed files) are indexed at
     content-defined anchors (8-byte words whose hash falls in 1/8 of the space); each anchor a target
     block shares votes for one alignment; the four best alignments (2 votes or more) are candidates;
   - neighbours: files are contiguous, so the alignment of the previous target block (a COPY or a DIFF)
     continued by one block, and the next block's (voted or COPY) stepped back by one, are candidates too.
     They find the changed tails and relocation tables of rebuilt binaries, where every 8-byte word
     changed (no anchor matches) but target minus source is still a few repeating byte patterns.
   The candidate whose difference deflates smallest wins when it is clearly smaller than the block
   deflated (DIFF), else the block is RAW, or STORE when it does not compress.
3. The differences and literal blocks go into one xz stream (LZMA2, 64 MiB dictionary: a device needs
   about that much memory to apply it), incompressible blocks into a stored one, the operations into a third.

Memory on the generating host is about 40 bytes per block plus 16 bytes per anchor of the changed
regions; time is dominated by xz on the changed data, which runs on its own thread beside the matching
(the output is the same bytes as compressing inline).
"""

from __future__ import annotations

import hashlib
import lzma
import os
import queue
import threading
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from .errors import DeltaError
from .patch import BLOCK, OP_COPY, OP_DIFF, OP_END, OP_RAW, OP_STORE, OP_ZERO, Header, put_varint, sha256_prefix, sub_blocks

__all__ = ["DeltaStats", "make_patch"]

ANCHOR_BITS = 3  # one position in 8 is a sample point
MIN_VOTES = 2  # shared sample points a voted source alignment needs to be a candidate
VOTED = 4  # voted alignments tried per block (a block can hold pieces of several old places)
DIFF_GAIN = 0.8  # a difference must deflate to at most this share of the block's own deflated size
STORE_RATIO = 0.97  # a block that deflates to more than this share of itself is stored as is
BATCH = 256  # target blocks aligned per vectorized step
# preset 9 with a 64 MiB dictionary: "extreme" gains ~1.5% on this data for 1.8x the time
XZ_FILTERS = [{"id": lzma.FILTER_LZMA2, "preset": 9, "dict_size": 64 << 20}]
Progress = Callable[[str], None]


@dataclass(frozen=True)
class DeltaStats:
    target_blocks: int
    copy_blocks: int
    zero_blocks: int
    diff_blocks: int
    raw_blocks: int
    stored_blocks: int
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


def _words(data: bytes) -> np.ndarray:
    """The little-endian 8-byte word starting at every position of `data` (len(data) - 7 of them)."""
    b = np.frombuffer(data, dtype=np.uint8).astype(np.uint64)
    n = len(b) - 7
    w = np.zeros(max(n, 0), dtype=np.uint64)
    for k in range(8):
        w |= b[k : k + n] << np.uint64(8 * k)
    return w


def _anchors(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Content-defined sample points: positions whose 8-byte word hashes into 1/ANCHOR of the space.

    The same content gives the same anchors wherever it sits, so an old and a new version of a file
    share anchors even where bytes moved or changed around them.
    """
    w = _words(data)
    with np.errstate(over="ignore"):
        h = (w * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(64 - ANCHOR_BITS)
    # words of one repeated byte (zero runs, padding) are everywhere and say nothing about alignment
    pos = np.flatnonzero((h == 0) & (w % np.uint64(0x0101010101010101) != 0))
    return w[pos], pos


class _SourceIndex:
    """Anchors of the source regions no target block reuses: sorted keys, their source offsets."""

    def __init__(self, source: Path, blocks: list[int]) -> None:
        keys, offs = [], []
        with source.open("rb") as f:
            for run_start, run_len in _runs(blocks):
                for at in range(run_start, run_start + run_len, 4096):  # 16 MiB at a time
                    f.seek(at * BLOCK)
                    data = f.read(min(4096, run_start + run_len - at) * BLOCK)
                    k, p = _anchors(data)
                    keys.append(k)
                    offs.append(p.astype(np.int64) + at * BLOCK)
        key = np.concatenate(keys) if keys else np.zeros(0, np.uint64)
        off = np.concatenate(offs) if offs else np.zeros(0, np.int64)
        order = np.argsort(key, kind="stable")
        self.keys, self.offs = key[order], off[order]

    def align(self, blocks: bytes, count: int, source_size: int) -> list[list[int]]:
        """For each of `count` consecutive target blocks in `blocks`, the source offsets with the most
        votes (at most VOTED, most votes first)."""
        out: list[list[int]] = [[] for _ in range(count)]
        if not len(self.keys):
            return out
        k, pos = _anchors(blocks)
        at = np.searchsorted(self.keys, k)
        hit = at < len(self.keys)
        hit[hit] = self.keys[at[hit]] == k[hit]
        if not hit.any():
            return out
        pos, src = pos[hit], self.offs[at[hit]]
        block = pos // BLOCK
        base = src - (pos - block * BLOCK)  # the source offset that would line up with the block's start
        ok = (base >= 0) & (base <= source_size - BLOCK)
        block, base = block[ok], base[ok]
        if not len(block):
            return out
        pairs = np.stack([block, base], axis=1)
        uniq, counts = np.unique(pairs, axis=0, return_counts=True)
        order = np.lexsort((-counts, uniq[:, 0]))  # per block, the most voted alignment first
        uniq, counts = uniq[order], counts[order]
        keep = counts >= MIN_VOTES
        for b, off in uniq[keep].tolist():
            if len(out[b]) < VOTED:
                out[b].append(off)
        return out


def _runs(blocks: list[int]) -> list[tuple[int, int]]:
    runs: list[tuple[int, int]] = []
    for b in blocks:
        if runs and runs[-1][0] + runs[-1][1] == b:
            runs[-1] = (runs[-1][0], runs[-1][1] + 1)
        else:
            runs.append((b, 1))
    return runs


class _XzWriter:
    """The data stream, compressed on a thread of its own (lzma releases the GIL): xz, the slowest step,
    runs beside the block matching instead of after each block. A context manager: on leaving without an
    error it finishes the stream; on an error it stops the thread and the caller discards the file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.queue: queue.Queue[bytes | None] = queue.Queue(maxsize=16)
        self.pending = bytearray()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="delta-xz", daemon=True)

    def __enter__(self) -> _XzWriter:
        self.thread.start()
        return self

    def _run(self) -> None:
        comp = lzma.LZMACompressor(format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC64, filters=XZ_FILTERS)
        try:
            with self.path.open("wb") as f:
                while (chunk := self.queue.get()) is not None:
                    f.write(comp.compress(chunk))
                f.write(comp.flush())
        except BaseException as exc:  # handed to the caller in __exit__
            self.error = exc
            while self.queue.get() is not None:  # let the producer finish instead of blocking on a full queue
                pass

    def _check(self) -> None:
        if self.error is not None:
            raise DeltaError(f"cannot write the patch's data stream: {self.error}", "check the output directory")

    def write(self, data: bytes) -> None:
        self._check()  # a full disk stops the matching now, not after minutes of work that goes nowhere
        self.pending += data
        if len(self.pending) >= 1 << 20:
            self.queue.put(bytes(self.pending))
            self.pending.clear()

    def __exit__(self, exc_type: object, *_rest: object) -> None:
        if exc_type is None and self.pending:
            self.queue.put(bytes(self.pending))
        self.queue.put(None)
        self.thread.join()
        if exc_type is None:
            self._check()


def _copy_offset(plan: list[int | None], n: int) -> int | None:
    """The source offset target block `n` is copied from, if it is a COPY."""
    at = plan[n] if n < len(plan) else None
    return None if at is None else at * BLOCK


def _candidates(voted: list[int], before: int | None, after: int | None, source_size: int) -> list[int]:
    """Source offsets to try for one target block: the voted alignments, the previous block's continued,
    the next block's stepped back; each once, only where a whole block of source is there."""
    out: list[int] = []
    for off in (*voted, None if before is None else before + BLOCK, None if after is None else after - BLOCK):
        if off is not None and 0 <= off <= source_size - BLOCK and off not in out:
            out.append(off)
    return out


def _encode(block: bytes, cands: list[int], source: BinaryIO) -> tuple[int, bytes, int]:
    """(op, bytes for its stream, source offset) for one target block: the candidate difference that
    deflates smallest when it clearly beats the block itself, else the block (RAW or STORE)."""
    own = len(zlib.compress(block, 1))
    best, out = own * DIFF_GAIN, (OP_STORE if own > BLOCK * STORE_RATIO else OP_RAW, block, 0)
    for off in cands:
        source.seek(off)
        diff = sub_blocks(block, source.read(BLOCK))
        size = len(zlib.compress(diff, 1))
        if size < best:
            best, out = size, (OP_DIFF, diff, off)
    return out


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
    unused = [i for i, u in enumerate(used) if not u and src_hashes[i] != zero_hash]
    index = _SourceIndex(source, unused)

    progress("encoding the changed blocks")
    ops = _Ops()
    tmp = out.with_name(out.name + ".partial")
    data_tmp = out.with_name(out.name + ".data.partial")
    stored_tmp = out.with_name(out.name + ".stored.partial")
    counts = {OP_COPY: 0, OP_ZERO: 0, OP_DIFF: 0, OP_RAW: 0, OP_STORE: 0}
    try:
        with (
            source.open("rb") as sf,
            target.open("rb") as tf,
            _XzWriter(data_tmp) as df,
            stored_tmp.open("wb") as xf,
        ):
            pending: list[int] = []  # target blocks waiting for alignment (batched)
            last_block, last_at = -2, None  # the previous target block and the source offset it came from

            def drain() -> None:
                nonlocal last_block, last_at
                runs = _runs(pending)
                for run_start, run_len in runs:
                    tf.seek(run_start * BLOCK)
                    data = tf.read(run_len * BLOCK)
                    data += bytes(run_len * BLOCK - len(data))
                    offsets = index.align(data, run_len, source_size)
                    for k in range(run_len):
                        n = run_start + k
                        block = data[k * BLOCK : (k + 1) * BLOCK]
                        after = next(iter(offsets[k + 1]), None) if k + 1 < run_len else _copy_offset(plan, n + 1)
                        before = last_at if last_block == n - 1 else None
                        cands = _candidates(offsets[k], before, after, source_size)
                        op, chosen, off = _encode(block, cands, sf)
                        last_block, last_at = n, (off if op == OP_DIFF else None)
                        ops.add(op, off)
                        counts[op] += 1
                        if op == OP_STORE:
                            xf.write(chosen)
                        else:
                            df.write(chosen)
                pending.clear()

            for n, (h, at) in enumerate(zip(tgt_hashes, plan, strict=True)):
                if at is not None or h == zero_hash:
                    drain()
                    if at is not None:
                        last_block, last_at = n, at * BLOCK
                        ops.add(OP_COPY, at)
                        counts[OP_COPY] += 1
                    else:
                        ops.add(OP_ZERO)
                        counts[OP_ZERO] += 1
                    continue
                pending.append(n)
                if len(pending) >= BATCH:
                    drain()
            drain()
        ops_xz = lzma.compress(ops.finish(), format=lzma.FORMAT_XZ, preset=9)
        head = Header(
            source_size=source_size, source_sha256=sha256_prefix(str(source), source_size), target_size=target_size,
            target_sha256=sha256_prefix(str(target), target_size), ops_len=len(ops_xz), data_len=data_tmp.stat().st_size,
            stored_len=stored_tmp.stat().st_size,
        )  # fmt: skip
        with tmp.open("wb") as f:
            f.write(head.to_bytes())
            f.write(ops_xz)
            for part in (data_tmp, stored_tmp):
                with part.open("rb") as pf:
                    while chunk := pf.read(1 << 20):
                        f.write(chunk)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, out)
    except OSError as exc:  # an output directory that is missing or full, a read error
        raise DeltaError(
            f"cannot write the patch {out}: {exc.strerror or exc}", "check the output path and its free space"
        ) from exc
    finally:
        tmp.unlink(missing_ok=True)
        data_tmp.unlink(missing_ok=True)
        stored_tmp.unlink(missing_ok=True)
    return DeltaStats(
        target_blocks=len(tgt_hashes), copy_blocks=counts[OP_COPY], zero_blocks=counts[OP_ZERO],
        diff_blocks=counts[OP_DIFF], raw_blocks=counts[OP_RAW],
        stored_blocks=counts[OP_STORE], patch_bytes=out.stat().st_size,
    )  # fmt: skip
