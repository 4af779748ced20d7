"""Random-access readers: the only I/O the bundle library does goes through them."""

from __future__ import annotations

import os
from typing import Protocol, runtime_checkable

from .errors import TruncatedBundleError

__all__ = ["BytesReader", "FileReader", "Reader", "read_exact"]


@runtime_checkable
class Reader(Protocol):
    """Anything that can return bytes at an offset: a file, a buffer, an HTTP range client."""

    @property
    def size(self) -> int: ...

    def read_at(self, offset: int, length: int) -> bytes: ...


class FileReader:
    """A reader over an open file descriptor (pread, no shared file position)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._fd = os.open(path, os.O_RDONLY)
        self._size = os.fstat(self._fd).st_size

    @property
    def size(self) -> int:
        return self._size

    def read_at(self, offset: int, length: int) -> bytes:
        return os.pread(self._fd, length, offset)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> FileReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class BytesReader:
    """A reader over bytes in memory (tests, small bundles)."""

    def __init__(self, data: bytes) -> None:
        self._data = memoryview(data)

    @property
    def size(self) -> int:
        return len(self._data)

    def read_at(self, offset: int, length: int) -> bytes:
        return bytes(self._data[offset : offset + length])


def read_exact(reader: Reader, offset: int, length: int, what: str) -> bytes:
    """Read exactly `length` bytes or raise TruncatedBundleError naming `what`."""
    if offset < 0 or length < 0:
        raise TruncatedBundleError(f"{what}: negative offset or length", at_byte=max(offset, 0))
    if offset + length > reader.size:
        raise TruncatedBundleError(
            f"{what} needs bytes {offset}..{offset + length} but the file ends at byte {reader.size}",
            at_byte=reader.size,
        )
    data = reader.read_at(offset, length)
    if len(data) != length:
        raise TruncatedBundleError(f"{what}: short read at byte {offset + len(data)}", at_byte=offset + len(data))
    return data
