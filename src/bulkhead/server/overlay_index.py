"""The APT indexes of one overlay suite, as a pure function of its packages: Packages (plain, .gz, .xz) per
architecture and the Release that lists their sums (Valid-Until, Acquire-By-Hash). Signing is the caller's job."""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import lzma
from collections.abc import Iterable
from dataclasses import dataclass
from email.utils import format_datetime

from debian.deb822 import Deb822

__all__ = ["COMPONENT", "IndexedPackage", "SuiteIndex", "build_suite", "by_hash_path", "pool_path"]

COMPONENT = "main"


@dataclass(frozen=True)
class IndexedPackage:
    name: str
    version: str
    architecture: str
    control: str  # the package's control paragraph (ending in a newline), without the index fields
    sha256: str
    md5: str
    size: int


@dataclass(frozen=True)
class SuiteIndex:
    release: str  # the Release file, to be signed
    files: dict[str, bytes]  # path relative to dists/SUITE → contents


def pool_path(sha256: str, name: str, version: str, architecture: str) -> str:
    """The package's Filename: content-addressed, so the same name and version in two suites never collide."""
    upstream = version.split(":", 1)[-1]  # Debian's file names leave out the epoch
    return f"pool/{sha256[:2]}/{sha256}/{name}_{upstream}_{architecture}.deb"


def by_hash_path(path: str, sha256: str) -> str:
    """Where Acquire-By-Hash finds an index file: next to it, under by-hash/SHA256/."""
    return f"{path.rsplit('/', 1)[0]}/by-hash/SHA256/{sha256}"


def _stanza(p: IndexedPackage) -> str:
    return (
        f"{p.control}Filename: {pool_path(p.sha256, p.name, p.version, p.architecture)}\n"
        f"Size: {p.size}\nMD5sum: {p.md5}\nSHA256: {p.sha256}\n"
    )


def packages_file(packages: Iterable[IndexedPackage]) -> bytes:
    return "\n".join(_stanza(p) for p in sorted(packages, key=lambda p: (p.name, p.version, p.architecture))).encode()


def build_suite(
    suite: str,
    label: str,
    architectures: tuple[str, ...],
    packages: list[IndexedPackage],
    now: dt.datetime,
    valid_for: dt.timedelta,
) -> SuiteIndex:
    """Every index file of the suite and its (unsigned) Release; `Architecture: all` packages are in every Packages."""
    files: dict[str, bytes] = {}
    for arch in architectures:
        plain = packages_file(p for p in packages if p.architecture in (arch, "all"))
        base = f"{COMPONENT}/binary-{arch}/Packages"
        files[base] = plain
        files[base + ".gz"] = gzip.compress(plain, compresslevel=6, mtime=0)
        files[base + ".xz"] = lzma.compress(plain, preset=1)
    release = Deb822()
    release["Origin"] = "Bulkhead"
    release["Label"] = label
    release["Suite"] = suite
    release["Codename"] = suite
    release["Date"] = format_datetime(now.astimezone(dt.UTC), usegmt=True)
    release["Valid-Until"] = format_datetime((now + valid_for).astimezone(dt.UTC), usegmt=True)
    release["Architectures"] = " ".join(architectures)
    release["Components"] = COMPONENT
    release["Acquire-By-Hash"] = "yes"
    sums = {
        name: (hashlib.md5(data, usedforsecurity=False).hexdigest(), hashlib.sha256(data).hexdigest(), len(data))
        for name, data in sorted(files.items())
    }
    release["MD5Sum"] = "".join(f"\n {md5} {size:>10} {name}" for name, (md5, _, size) in sums.items())
    release["SHA256"] = "".join(f"\n {sha} {size:>10} {name}" for name, (_, sha, size) in sums.items())
    text = release.dump()
    assert text is not None
    return SuiteIndex(text, files)
