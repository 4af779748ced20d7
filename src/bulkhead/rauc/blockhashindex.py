"""RAUC's block-hash-index: sha256 of every 4 KiB block of an image, concatenated."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from .errors import BundleError

__all__ = ["INDEX_BLOCK", "block_hash_index"]

INDEX_BLOCK = 4096


def block_hash_index(chunks: Iterable[bytes]) -> bytes:
    """Index of the data in `chunks` (any chunking); the total must be a multiple of 4096."""
    out = bytearray()
    pending = b""
    for chunk in chunks:
        buf = memoryview(pending + chunk) if pending else memoryview(chunk)
        whole = len(buf) - len(buf) % INDEX_BLOCK
        for off in range(0, whole, INDEX_BLOCK):
            out += hashlib.sha256(buf[off : off + INDEX_BLOCK]).digest()
        pending = bytes(buf[whole:])
    if pending:
        raise BundleError(
            "an image with adaptive=block-hash-index must be a multiple of 4096 bytes", "pad the image to whole 4 KiB blocks"
        )
    return bytes(out)
