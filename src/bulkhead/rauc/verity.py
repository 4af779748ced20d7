"""dm-verity hash trees as RAUC's verity bundles use them (format 1, sha256, 4 KiB blocks, no superblock)."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from .errors import VerityMismatchError
from .reader import Reader, read_exact

__all__ = ["BLOCK", "VerityTree", "build_tree", "hash_blocks", "tree_layout", "verify_tree"]

BLOCK = 4096
_DIGEST = 32
_PER_BLOCK = BLOCK // _DIGEST
_CHUNK = 4 * 1024 * 1024  # bytes read per step: 1024 blocks
Progress = Callable[[int], None]


@dataclass(frozen=True)
class VerityTree:
    """A computed tree: the root hash and the hash area in on-disk order (top level first)."""

    root_hash: bytes
    tree: bytes


def tree_layout(data_blocks: int) -> list[int]:
    """Number of hash blocks per level, level 0 (hashes of data) first."""
    levels = []
    n = data_blocks
    while True:
        n = (n + _PER_BLOCK - 1) // _PER_BLOCK
        levels.append(n)
        if n <= 1:
            return levels


def hash_blocks(data: bytes | memoryview, salt: bytes) -> bytes:
    """sha256(salt || block) for each 4 KiB block of `data`, concatenated."""
    base = hashlib.sha256(salt)
    mv = memoryview(data)
    out = bytearray()
    for off in range(0, len(mv), BLOCK):
        h = base.copy()
        h.update(mv[off : off + BLOCK])
        out += h.digest()
    return bytes(out)


def _pack(hashes: bytes) -> bytes:
    """Pad a level's hashes to whole blocks with zeros."""
    rem = len(hashes) % BLOCK
    return hashes + b"\0" * ((BLOCK - rem) % BLOCK)


def _level0(reader: Reader, offset: int, size: int, salt: bytes, progress: Progress | None) -> bytes:
    """Hash every data block, reading and hashing on two threads (hashlib releases the GIL)."""
    parts: list[bytes] = []

    def work(start: int) -> bytes:
        return hash_blocks(read_exact(reader, offset + start, min(_CHUNK, size - start), "verity data"), salt)

    with ThreadPoolExecutor(max_workers=2) as pool:
        for i, part in enumerate(pool.map(work, range(0, size, _CHUNK))):
            parts.append(part)
            if progress:
                progress(min((i + 1) * _CHUNK, size))
    return b"".join(parts)


def build_tree(reader: Reader, offset: int, size: int, salt: bytes, progress: Progress | None = None) -> VerityTree:
    """Compute the tree over `size` bytes at `offset` (size must be a multiple of 4096)."""
    if size % BLOCK:
        raise VerityMismatchError(f"verity data size {size} is not a multiple of {BLOCK}")
    levels = [_pack(_level0(reader, offset, size, salt, progress))]
    while len(levels[-1]) > BLOCK:
        levels.append(_pack(hash_blocks(levels[-1], salt)))
    root = hashlib.sha256(salt + levels[-1]).digest()
    return VerityTree(root, b"".join(reversed(levels)))


def verify_tree(
    reader: Reader,
    data_offset: int,
    data_size: int,
    tree_offset: int,
    tree_size: int,
    salt: bytes,
    root_hash: bytes,
    progress: Progress | None = None,
) -> None:
    """Check data and stored hash tree against the signed root hash; name the first bad block."""
    computed = build_tree(reader, data_offset, data_size, salt, progress)
    if len(computed.tree) != tree_size:
        raise VerityMismatchError(
            f"verity hash tree is {tree_size} bytes in the bundle but {len(computed.tree)} bytes "
            f"are needed for {data_size} bytes of data"
        )
    if not hmac.compare_digest(computed.root_hash, root_hash):
        stored = read_exact(reader, tree_offset, tree_size, "verity hash tree")
        block = _first_bad_block(computed.tree, stored, data_size)
        where = "the hash tree was modified"
        if block is not None:
            where = f"data block {block} (byte {block * BLOCK}) does not match the hash tree"
        raise VerityMismatchError(f"verity root hash mismatch: {where}", block=block)
    stored = read_exact(reader, tree_offset, tree_size, "verity hash tree")
    if stored != computed.tree:
        raise VerityMismatchError("verity hash tree stored in the bundle differs from the data's tree")


def _first_bad_block(computed: bytes, stored: bytes, data_size: int) -> int | None:
    """The first data block whose hash differs from the stored tree, if any."""
    levels = tree_layout(data_size // BLOCK)
    level0_start = sum(levels[1:]) * BLOCK
    comp0 = computed[level0_start:]
    stor0 = stored[level0_start : level0_start + len(comp0)]
    for i in range(0, min(len(comp0), len(stor0)), _DIGEST):
        if comp0[i : i + _DIGEST] != stor0[i : i + _DIGEST]:
            return i // _DIGEST
    return None
