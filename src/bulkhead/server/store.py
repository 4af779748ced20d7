"""Content-addressed artifact stores (sha256 → bytes): the interface, and the filesystem backend (the default).

An upload is *staged* (written while it is hashed), checked, then *committed* under its digest; a staged upload that
is not committed is discarded and leaves nothing. Readers get random access (`reader`, for the bundle library), a
file object (`open`), byte ranges (`get_range`, for delivery) or, for tools that need a path, a local file (`local`).
The S3 backend is in store_s3.py.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import tempfile
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

from bulkhead.rauc import FileReader, Reader

from .errors import NotFound
from .settings import Settings

__all__ = [
    "INCOMING_STALE",
    "MIN_FREE_BYTES",
    "ArtifactMissing",
    "ArtifactStore",
    "Body",
    "FsStore",
    "ReaderIO",
    "Staged",
    "Staging",
    "Stored",
    "check_dir",
    "check_sha256",
    "open_store",
]

_SHA = re.compile(r"^[0-9a-f]{64}\Z")
MIN_FREE_BYTES = 64 * 1024 * 1024  # below this an upload or a delta build fails half-way
# An incoming file untouched this long (seconds) is a crashed upload's; a younger one may be another host's upload.
INCOMING_STALE = 24 * 3600.0


def check_sha256(sha256: str) -> str:
    if not _SHA.match(sha256):
        raise ValueError("not a sha256 digest")
    return sha256


class ArtifactMissing(NotFound, FileNotFoundError):
    """A digest the database names is not in the store (deleted, or the store is not the one the database used)."""

    def __init__(self, sha256: str, where: str) -> None:
        super().__init__(
            f"artifact {sha256} is not in the artifact store ({where}); it was deleted, or the server is configured "
            "with another store than the one it was uploaded to (check BULKHEAD_STORE and BULKHEAD_S3_BUCKET)"
        )
        self.sha256 = sha256


@dataclass(frozen=True)
class Stored:
    size: int
    mtime: float  # seconds since the epoch


class Body(Protocol):
    """A byte range being read: `read(n)` until it returns b"", then `close()`."""

    def read(self, n: int = -1) -> bytes: ...

    def close(self) -> None: ...


class ClosingReader(Reader, Protocol):
    def close(self) -> None: ...


class ReaderIO(io.RawIOBase):
    """A seekable read-only file object over a `Reader` (size + read_at); wrap it in io.BufferedReader."""

    def __init__(self, reader: Reader, close: bool = True) -> None:
        super().__init__()
        self._r, self._pos, self._close = reader, 0, close

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._r.size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        n = min(len(buffer), self._r.size - self._pos)
        if n <= 0:
            return 0
        data = self._r.read_at(self._pos, n)
        buffer[: len(data)] = data
        self._pos += len(data)
        return len(data)

    def close(self) -> None:
        if not self.closed and self._close:
            closer = getattr(self._r, "close", None)
            if closer is not None:
                closer()
        super().close()


class Staged(ABC):
    """An upload's bytes in the store's incoming area: readable, not yet under its digest."""

    size: int

    @abstractmethod
    def reader(self) -> AbstractContextManager[Reader]: ...

    def open(self) -> BinaryIO:
        raise NotImplementedError

    @abstractmethod
    def local(self) -> AbstractContextManager[Path]:
        """A local file with the bytes (the file itself, or a temporary download)."""

    @abstractmethod
    def discard(self) -> None:
        """Remove the bytes (idempotent; after a commit it does nothing)."""


class Staging(ABC):
    """An upload being written. `write` never blocks on the network; when `needs_flush`, call `flush` (in a thread)."""

    needs_flush: bool = False

    @abstractmethod
    def write(self, data: bytes) -> None: ...

    def flush(self) -> None:  # noqa: B027 - a backend that buffers nothing has nothing to flush
        pass

    @abstractmethod
    def finish(self) -> Staged: ...

    @abstractmethod
    def abort(self) -> None:
        """Drop everything written so far (idempotent)."""


class ArtifactStore(ABC):
    """Where the artifacts live. `root` is a local working directory (staging files, downloads for tools)."""

    kind: str
    root: Path

    @abstractmethod
    def stage(self) -> Staging: ...

    def stage_file(self, src: Path, keep: bool = False) -> Staged:
        """A local file the server made itself (a delta it built), moved or copied into the incoming area (`keep`:
        copied, the file stays)."""
        staging = self.stage()
        try:
            with src.open("rb") as f:
                while chunk := f.read(1 << 20):
                    staging.write(chunk)
                    if staging.needs_flush:
                        staging.flush()
            staged = staging.finish()
        except BaseException:
            staging.abort()
            raise
        if not keep:
            src.unlink(missing_ok=True)
        return staged

    def stage_bytes(self, data: bytes) -> Staged:
        staging = self.stage()
        try:
            staging.write(data)
            if staging.needs_flush:
                staging.flush()
            return staging.finish()
        except BaseException:
            staging.abort()
            raise

    @abstractmethod
    def commit(self, staged: Staged, sha256: str) -> None:
        """Keep the staged bytes under `sha256` (the caller computed it while they were written)."""

    @abstractmethod
    def remove(self, sha256: str) -> None: ...

    @abstractmethod
    def clean_incoming(self) -> None:
        """Drop uploads left behind by a crash (called at start)."""

    @abstractmethod
    def stat(self, sha256: str) -> Stored:
        """Size and modification time; raises ArtifactMissing."""

    @abstractmethod
    def reader(self, sha256: str) -> ClosingReader:
        """Random access to the artifact (close it after); raises ArtifactMissing."""

    def open(self, sha256: str) -> BinaryIO:
        """A buffered, seekable file object over the artifact (close it after); raises ArtifactMissing."""
        return io.BufferedReader(ReaderIO(self.reader(sha256)), 1 << 20)

    @abstractmethod
    def get_range(self, sha256: str, start: int, length: int) -> Body:
        """`length` bytes from `start` (length ≥ 1), to be read in chunks; raises ArtifactMissing."""

    @abstractmethod
    def local(self, sha256: str) -> AbstractContextManager[Path]:
        """The artifact as a local file, for tools that need a path; raises ArtifactMissing."""

    def local_path(self, sha256: str) -> str | None:
        """The artifact's own path when it is a local file (delivery then reads it directly), else None."""
        return None

    def presign(self, sha256: str, seconds: int) -> str | None:
        """A URL a device can fetch the artifact from directly (with Range), or None when the store has none."""
        return None

    @abstractmethod
    def check(self) -> str:
        """Readiness: "ok" or what is wrong (no paths or credentials: the answer is unauthenticated)."""


# -- filesystem ---------------------------------------------------------------------------------------------


class _FsStaged(Staged):
    def __init__(self, path: Path, size: int) -> None:
        self.path, self.size = path, size

    @contextmanager
    def reader(self) -> Iterator[Reader]:
        with FileReader(self.path) as r:
            yield r

    def open(self) -> BinaryIO:
        return self.path.open("rb")

    @contextmanager
    def local(self) -> Iterator[Path]:
        yield self.path

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)


class _FsStaging(Staging):
    def __init__(self, incoming: Path) -> None:
        fd, name = tempfile.mkstemp(prefix="upload-", dir=incoming)
        self.path, self.size = Path(name), 0
        self.f: BinaryIO | None = os.fdopen(fd, "wb")

    def write(self, data: bytes) -> None:
        assert self.f is not None
        self.f.write(data)
        self.size += len(data)

    def finish(self) -> Staged:
        assert self.f is not None
        self.f.close()
        self.f = None
        return _FsStaged(self.path, self.size)

    def abort(self) -> None:
        if self.f is not None:
            self.f.close()
            self.f = None
        self.path.unlink(missing_ok=True)


class _FileBody:
    def __init__(self, path: Path, start: int, length: int) -> None:
        self.f = path.open("rb")
        self.f.seek(start)
        self.left = length

    def read(self, n: int = -1) -> bytes:
        n = self.left if n < 0 else min(n, self.left)
        data = self.f.read(n) if n > 0 else b""
        self.left -= len(data)
        return data

    def close(self) -> None:
        self.f.close()


class FsStore(ArtifactStore):
    """Files under `root`: `ab/abcd…` by digest, uploads in `root/.incoming` (same filesystem: commit is a rename)."""

    kind = "fs"

    def __init__(self, root: Path) -> None:
        self.root = root
        self.incoming = root / ".incoming"
        self.incoming.mkdir(parents=True, exist_ok=True)

    def path(self, sha256: str) -> Path:
        return self.root / check_sha256(sha256)[:2] / sha256

    def new_upload(self) -> tuple[int, Path]:
        """A temporary file for an upload in progress (same filesystem, so commit is a rename)."""
        fd, name = tempfile.mkstemp(prefix="upload-", dir=self.incoming)
        return fd, Path(name)

    def stage(self) -> Staging:
        return _FsStaging(self.incoming)

    def stage_file(self, src: Path, keep: bool = False) -> Staged:
        fd, path = self.new_upload()
        os.close(fd)
        if keep:
            shutil.copyfile(src, path)
        else:  # a rename, or a copy when the store is another file system (a shared mount, BULKHEAD_STORE_DIR)
            shutil.move(src, path)
        return _FsStaged(Path(path), path.stat().st_size)

    def commit(self, staged: Staged | Path, sha256: str) -> None:
        """Rename the staged file (or a file of `new_upload`) to its digest's path."""
        tmp = staged if isinstance(staged, Path) else staged.path if isinstance(staged, _FsStaged) else None
        if tmp is None:
            raise TypeError("the filesystem store commits only its own staged uploads")
        dst = self.path(sha256)
        dst.parent.mkdir(exist_ok=True)
        if dst.exists():
            tmp.unlink(missing_ok=True)
        else:
            os.replace(tmp, dst)
            os.chmod(dst, 0o444)

    def remove(self, sha256: str) -> None:
        self.path(sha256).unlink(missing_ok=True)

    def clean_incoming(self) -> None:
        """Only files untouched for INCOMING_STALE: with several hosts sharing the store (docs/deployment.md), a host
        that starts must not delete the uploads another host is receiving or verifying right now."""
        cutoff = time.time() - INCOMING_STALE
        for p in self.incoming.iterdir():
            with contextlib.suppress(FileNotFoundError):  # committed or removed by its own host meanwhile
                if p.stat().st_mtime < cutoff:
                    p.unlink(missing_ok=True)

    def _existing(self, sha256: str) -> Path:
        p = self.path(sha256)
        if not p.exists():
            raise ArtifactMissing(sha256, "the data directory")
        return p

    def stat(self, sha256: str) -> Stored:
        try:
            st = os.stat(self.path(sha256))
        except FileNotFoundError:
            raise ArtifactMissing(sha256, "the data directory") from None
        return Stored(st.st_size, st.st_mtime)

    def reader(self, sha256: str) -> ClosingReader:
        try:
            return FileReader(self.path(sha256))
        except FileNotFoundError:
            raise ArtifactMissing(sha256, "the data directory") from None

    def open(self, sha256: str) -> BinaryIO:
        try:
            return self.path(sha256).open("rb")
        except FileNotFoundError:
            raise ArtifactMissing(sha256, "the data directory") from None

    def get_range(self, sha256: str, start: int, length: int) -> Body:
        try:
            return _FileBody(self.path(sha256), start, length)
        except FileNotFoundError:
            raise ArtifactMissing(sha256, "the data directory") from None

    @contextmanager
    def local(self, sha256: str) -> Iterator[Path]:
        yield self._existing(sha256)

    def local_path(self, sha256: str) -> str | None:
        return str(self.path(sha256))

    def check(self) -> str:
        return check_dir(self.root)


def check_dir(root: Path) -> str:
    """Readiness of a local directory: writable, with room for an upload."""
    if not os.access(root, os.W_OK | os.X_OK):
        return "not writable"
    try:
        free = shutil.disk_usage(root).free
    except OSError as exc:
        return f"cannot be read ({type(exc).__name__})"
    return "ok" if free >= MIN_FREE_BYTES else f"{free // (1024 * 1024)} MiB free, below 64 MiB"


def open_store(settings: Settings) -> ArtifactStore:
    """The store the settings name (BULKHEAD_STORE: fs, the default, or s3)."""
    if settings.store == "s3":
        from .store_s3 import S3Store

        return S3Store.from_settings(settings)
    return FsStore(settings.store_dir or settings.artifacts_dir)
