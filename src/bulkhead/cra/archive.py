"""Read the JSON members of a feed's zip archive with bounds, so a zip bomb or a broken archive is refused, not unpacked.

The CVE list's bulk archive is a zip holding one zip (``cves.zip``) that holds one JSON file per record; its deltas and
the OSV exports are zips of JSON files. :func:`iter_members` yields ``(member name, bytes)`` for the members whose
name ends with ``suffix``, walking into nested ``.zip`` members (one level; the nested zip is unpacked to a temporary
file, counted against the same bounds). It refuses, with :class:`FeedFormatError` saying what
was wrong:

- a file that is not a zip archive, or a member whose data is corrupt (CRC);
- more members than ``max_members`` (over all levels);
- a member larger than ``max_member`` or, summed, more than ``max_total`` unpacked bytes; these are checked on the
  sizes the archive declares *and* on the bytes actually inflated (a member that lies about its size is cut off);
- a compression ratio above ``max_ratio`` for a member larger than 1 MiB (the mark of a zip bomb; JSON compresses
  about 10:1);
- a member name that is absolute or climbs out with ``..`` (never extracted by name, but a sign of a crafted file).
"""

from __future__ import annotations

import os
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .feed_errors import FeedFormatError

__all__ = ["ArchiveLimits", "iter_members"]

_BLOCK = 1 << 20


@dataclass(frozen=True)
class ArchiveLimits:
    max_members: int = 2_000_000  # the CVE list holds about 300,000 records, OSV's npm export about 200,000
    max_total: int = 16 << 30  # unpacked bytes over all members (the CVE list unpacks to about 3 GiB)
    max_member: int = 256 << 20  # one record (the largest CVE records are a few MiB)
    max_ratio: int = 200  # unpacked / packed, for members over 1 MiB


class _Budget:
    def __init__(self, limits: ArchiveLimits, label: str) -> None:
        self.limits, self.label = limits, label
        self.members = 0
        self.total = 0

    def member(self, info: zipfile.ZipInfo, where: str) -> None:
        lim = self.limits
        self.members += 1
        if self.members > lim.max_members:
            raise FeedFormatError(f"{self.label}: more than {lim.max_members} members; refused as a possible zip bomb")
        name = info.filename
        if name.startswith("/") or ".." in name.split("/"):
            raise FeedFormatError(f"{self.label}: member {where}{name!r} has an unsafe path; refused")
        if info.file_size > lim.max_member and not name.endswith(".zip"):  # a nested zip is bounded by max_total
            raise FeedFormatError(
                f"{self.label}: member {where}{name} declares {info.file_size} bytes, over the {lim.max_member} byte "
                "limit for one member; refused as a possible zip bomb"
            )
        if info.file_size > _BLOCK and info.file_size > lim.max_ratio * max(info.compress_size, 1):
            raise FeedFormatError(
                f"{self.label}: member {where}{name} inflates {info.file_size // max(info.compress_size, 1)}:1 "
                f"(over {lim.max_ratio}:1); refused as a possible zip bomb"
            )

    def spend(self, n: int, name: str) -> None:
        self.total += n
        if self.total > self.limits.max_total:
            raise FeedFormatError(
                f"{self.label}: unpacks to more than {self.limits.max_total} bytes (at {name}); refused as a possible zip bomb"
            )


def _read(zf: zipfile.ZipFile, info: zipfile.ZipInfo, budget: _Budget, where: str) -> bytes:
    chunks: list[bytes] = []
    size = 0
    with zf.open(info) as f:
        while block := f.read(min(_BLOCK, budget.limits.max_member + 1 - size)):
            size += len(block)
            budget.spend(len(block), where + info.filename)
            if size > budget.limits.max_member:
                raise FeedFormatError(
                    f"{budget.label}: member {where}{info.filename} inflates past the {budget.limits.max_member} byte "
                    "limit for one member; refused as a possible zip bomb"
                )
            chunks.append(block)
    return b"".join(chunks)


def _open(path: Path | str, label: str) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(path)
    except zipfile.BadZipFile as e:
        raise FeedFormatError(f"{label}: not a zip archive ({e})") from None


def iter_members(
    path: Path,
    suffix: str = ".json",
    limits: ArchiveLimits | None = None,
    label: str | None = None,
    tmpdir: Path | None = None,
) -> Iterator[tuple[str, bytes]]:
    """The members of the zip at ``path`` (and of zips inside it) whose name ends with ``suffix``, in archive order.
    A nested zip is unpacked into ``tmpdir`` (default: the archive's directory)."""
    lim = limits or ArchiveLimits()
    budget = _Budget(lim, label or path.name)
    try:
        with _open(path, budget.label) as outer:
            for info in outer.infolist():
                if info.is_dir():
                    continue
                budget.member(info, "")
                if info.filename.endswith(".zip"):
                    yield from _nested(outer, info, tmpdir or path.parent, suffix, budget)
                elif info.filename.endswith(suffix):
                    yield info.filename, _read(outer, info, budget, "")
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, NotImplementedError) as e:
        raise FeedFormatError(f"{budget.label}: the archive is corrupt ({type(e).__name__}: {e})") from None


def _nested(
    outer: zipfile.ZipFile, info: zipfile.ZipInfo, tmpdir: Path, suffix: str, budget: _Budget
) -> Iterator[tuple[str, bytes]]:
    fd, tmp = tempfile.mkstemp(dir=tmpdir, prefix=".nested.", suffix=".zip")
    try:
        with os.fdopen(fd, "wb") as out, outer.open(info) as f:
            while block := f.read(_BLOCK):
                budget.spend(len(block), info.filename)
                out.write(block)
        with _open(tmp, f"{budget.label}: {info.filename}") as inner:
            where = info.filename + "!"
            for sub in inner.infolist():
                if sub.is_dir():
                    continue
                budget.member(sub, where)
                if sub.filename.endswith(".zip"):
                    raise FeedFormatError(f"{budget.label}: zip {where}{sub.filename} nested two deep; refused")
                if sub.filename.endswith(suffix):
                    yield sub.filename, _read(inner, sub, budget, where)
    finally:
        Path(tmp).unlink(missing_ok=True)
