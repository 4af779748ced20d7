"""Assemble the CRA technical documentation (Annex VII) into one deterministic tar.gz, streamed member by member.

Pure: members in, archive bytes out. A :class:`Member` is a path, its declared size and a callable giving its bytes
in chunks (so a large SBOM is read from the store while it is written, never held whole). :func:`iter_archive`
yields the gzip stream of a POSIX (pax) tar whose members come in the order given, followed by ``manifest.json``
listing every member's path, size and sha256 (computed while it streamed). Everything that could vary between two
exports of the same data is fixed: member order, mtime (the caller's ``mtime``, e.g. the newest record's time),
owner (0/0, no names), mode 0644, and the gzip header (no file name, mtime 0).
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from .errors import CraError

__all__ = ["MANIFEST", "Member", "bytes_member", "iter_archive", "json_bytes", "json_member"]

MANIFEST = "manifest.json"
_BLOCK = tarfile.BLOCKSIZE
_RECORD = tarfile.RECORDSIZE


@dataclass(frozen=True)
class Member:
    path: str  # relative, "/"-separated, no ".." (checked)
    size: int
    chunks: Callable[[], Iterable[bytes]]
    description: str = ""


def json_bytes(value: Any) -> bytes:
    """Canonical JSON: sorted keys, two-space indent, UTF-8, a final newline (the same value gives the same bytes)."""
    return (json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str) + "\n").encode()


def bytes_member(path: str, data: bytes, description: str = "") -> Member:
    return Member(path, len(data), lambda: (data,), description)


def json_member(path: str, value: Any, description: str = "") -> Member:
    return bytes_member(path, json_bytes(value), description)


def _check_path(path: str, seen: set[str]) -> None:
    parts = path.split("/")
    if not path or path.startswith("/") or any(p in ("", ".", "..") for p in parts) or "\\" in path:
        raise CraError(f"archive member path {path!r} is not a plain relative path")
    if path in seen or path == MANIFEST:
        raise CraError(f"archive member {path!r} appears twice")
    seen.add(path)


def _header(path: str, size: int, mtime: int) -> bytes:
    info = tarfile.TarInfo(path)
    info.size, info.mtime, info.mode = size, mtime, 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.type = tarfile.REGTYPE
    return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "strict")


def _tar(members: Iterable[Member], mtime: int, manifest: Callable[[list[dict[str, Any]]], bytes]) -> Iterator[bytes]:
    """The uncompressed tar stream; the manifest member last, made from the listed members' hashes."""
    listed: list[dict[str, Any]] = []
    seen: set[str] = set()
    total = 0
    for m in members:
        _check_path(m.path, seen)
        head = _header(m.path, m.size, mtime)
        yield head
        digest, n = hashlib.sha256(), 0
        for chunk in m.chunks():
            n += len(chunk)
            if n > m.size:
                raise CraError(f"archive member {m.path!r} is longer than its declared {m.size} bytes")
            digest.update(chunk)
            yield chunk
        if n != m.size:
            raise CraError(f"archive member {m.path!r} has {n} bytes, not its declared {m.size}")
        pad = -n % _BLOCK
        yield b"\0" * pad
        total += len(head) + n + pad
        entry: dict[str, Any] = {"path": m.path, "sha256": digest.hexdigest(), "size": n}
        if m.description:
            entry["description"] = m.description
        listed.append(entry)
    data = manifest(listed)
    head = _header(MANIFEST, len(data), mtime)
    pad = -len(data) % _BLOCK
    yield head + data + b"\0" * pad
    total += len(head) + len(data) + pad + 2 * _BLOCK
    yield b"\0" * (2 * _BLOCK + (-total % _RECORD))


def iter_archive(members: Iterable[Member], mtime: int, header: dict[str, Any] | None = None) -> Iterator[bytes]:
    """The tar.gz stream of `members` (in their order) and a final ``manifest.json``: ``header``'s keys plus
    ``members`` (path, size, sha256, description). The same members and mtime give the same bytes."""

    def manifest(listed: list[dict[str, Any]]) -> bytes:
        return json_bytes({**(header or {}), "members": listed})

    # wbits 31: a gzip wrapper whose header has no file name and mtime 0 (zlib writes neither), so it is reproducible.
    z = zlib.compressobj(6, zlib.DEFLATED, 31)
    buf = io.BytesIO()
    for piece in _tar(members, max(0, int(mtime)), manifest):
        out = z.compress(piece)
        if out:
            buf.write(out)
        if buf.tell() >= 1 << 16:
            yield buf.getvalue()
            buf.seek(0)
            buf.truncate()
    buf.write(z.flush())
    yield buf.getvalue()
