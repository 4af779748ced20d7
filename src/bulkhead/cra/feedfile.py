"""Open a local feed file as bytes, gunzipping it when it is gzip-compressed (recognised by its magic bytes)."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import IO, cast

__all__ = ["GZIP_MAGIC", "is_gzip", "open_feed_file"]

GZIP_MAGIC = b"\x1f\x8b"


def is_gzip(path: Path) -> bool:
    with path.open("rb") as f:
        return f.read(2) == GZIP_MAGIC


def open_feed_file(path: Path) -> IO[bytes]:
    """The file's content as a binary stream: decompressed on the fly when it is gzip, as is otherwise."""
    if is_gzip(path):
        return cast(IO[bytes], gzip.open(path, "rb"))
    return path.open("rb")
