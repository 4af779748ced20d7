"""The Debian Security Tracker JSON (security-tracker.debian.org/tracker/data/json), read into what matching needs.

The document is ``{source-package: {issue: {description, scope, debianbug, releases: {codename: {status,
repositories, fixed_version, urgency, nodsa, nodsa_reason, next_point_update}}}}}``; issues are ``CVE-…`` or the
tracker's own ``TEMP-…`` names. ``status`` is ``resolved`` (then ``fixed_version`` says from which version on; ``"0"``
means the release never had the vulnerable code), ``open`` (no fix in that release) or ``undetermined``. ``nodsa``
is the security team's note why no advisory is planned; ``nodsa_reason`` is ``""`` (no-dsa), ``"ignored"`` or
``"postponed"``.

The real file is about 70 MB. :func:`iter_packages` reads it one source package at a time, so only one package's
raw entries exist at any moment; :func:`read_tracker` keeps per release only status, fixed version, urgency and
the no-DSA note (descriptions and repository versions are dropped), optionally for the named releases only, and
shares identical release entries.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import IO, Any, cast

from .feed_errors import FeedFormatError
from .feedfile import open_feed_file

__all__ = [
    "DebianTracker",
    "ReleaseEntry",
    "TrackerIssue",
    "TrackerStatus",
    "iter_packages",
    "load_tracker",
    "parse_package",
    "read_tracker",
]

_CHUNK = 1 << 20
_DECODER = json.JSONDecoder()
_WS = re.compile(r"[ \t\n\r]*")


class TrackerStatus(StrEnum):
    RESOLVED = "resolved"
    OPEN = "open"
    UNDETERMINED = "undetermined"


@dataclass(frozen=True, slots=True)
class ReleaseEntry:
    """What the tracker says about one issue in one source package in one release."""

    status: TrackerStatus
    fixed_version: str | None = None  # with RESOLVED: "0" = never affected, else the first fixed version
    urgency: str = "not yet assigned"  # as the tracker writes it: "high", "low**", "unimportant", "end-of-life", ...
    nodsa: str | None = None  # the security team's note ("Minor issue") when no advisory is planned
    nodsa_reason: str | None = None  # "" (no-dsa), "ignored", "postponed"
    next_point_update: bool = False  # the fix is scheduled for the release's next point release


@dataclass(frozen=True, slots=True)
class TrackerIssue:
    """One issue of one source package, across releases."""

    name: str  # "CVE-2024-6387" or the tracker's "TEMP-0000000-ABCDEF"
    package: str
    releases: Mapping[str, ReleaseEntry]
    scope: str | None = None  # "local", "remote"
    debianbug: int | None = None


class DebianTracker:
    """The parsed tracker: source package → issue name → :class:`TrackerIssue`."""

    def __init__(self, packages: dict[str, dict[str, TrackerIssue]]) -> None:
        self._packages = packages

    def issues(self, source_package: str) -> Mapping[str, TrackerIssue]:
        return self._packages.get(source_package, {})

    def packages(self) -> Iterable[str]:
        return self._packages.keys()

    def __len__(self) -> int:
        """The number of (source package, issue) records."""
        return sum(len(v) for v in self._packages.values())


def _fail(msg: str) -> FeedFormatError:
    return FeedFormatError(f"not a Debian Security Tracker JSON document: {msg} (get it from {_URL})")


_URL = "https://security-tracker.debian.org/tracker/data/json"


class _Reader:
    """A growing text buffer over a stream; ``pos`` is where parsing stands."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self.buf = ""
        self.pos = 0
        self.eof = False
        self.consumed = 0  # characters dropped from the front of buf, for error positions

    def more(self, at_least: int = _CHUNK) -> bool:
        if self.eof:
            return False
        chunk = self.stream.read(max(at_least, _CHUNK))
        if not chunk:
            self.eof = True
            return False
        self.consumed += self.pos
        self.buf = self.buf[self.pos :] + chunk
        self.pos = 0
        return True

    def peek(self) -> str:
        """The next non-blank character ("" at the end), skipping blanks."""
        while True:
            self.pos = _WS.match(self.buf, self.pos).end()  # type: ignore[union-attr]
            if self.pos < len(self.buf):
                return self.buf[self.pos]
            if not self.more():
                return ""

    def expect(self, char: str, what: str) -> None:
        got = self.peek()
        if got != char:
            raise _fail(f"expected {what} at character {self.consumed + self.pos}, found {got or 'the end'!r}")
        self.pos += 1

    def value(self) -> Any:
        """Decode the JSON value at pos, reading more of the stream until it is complete."""
        while True:
            try:
                value, end = _DECODER.raw_decode(self.buf, self.pos)
            except json.JSONDecodeError as e:
                # an incomplete value fails like a malformed one: read more (doubling) until the stream ends
                if not self.more(at_least=len(self.buf) - self.pos):
                    raise _fail(f"{e.msg} at character {self.consumed + e.pos}") from None
                continue
            self.pos = end
            return value


def iter_packages(stream: IO[bytes] | IO[str]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Yield ``(source package, raw issues)`` one package at a time from the document's text."""
    if isinstance(stream, io.TextIOBase):
        yield from _iter_text(cast(IO[str], stream))
        return
    text = io.TextIOWrapper(cast(io.BufferedReader, stream), encoding="utf-8")
    try:
        yield from _iter_text(text)
    finally:
        text.detach()  # the caller's stream stays open: it is theirs to close


def _iter_text(stream: IO[str]) -> Iterator[tuple[str, dict[str, Any]]]:
    r = _Reader(stream)
    r.expect("{", "the document's opening '{'")
    if r.peek() == "}":
        r.pos += 1
        return
    while True:
        if r.peek() != '"':
            raise _fail(f"expected a source package name at character {r.consumed + r.pos}")
        name = r.value()
        r.expect(":", "':' after a package name")
        if r.peek() != "{":
            raise _fail(f"the entry of source package {name!r} is not an object")
        issues = r.value()
        yield name, issues
        sep = r.peek()
        r.pos += 1
        if sep == "}":
            break
        if sep != ",":
            raise _fail(f"expected ',' or '}}' after source package {name!r}, found {sep or 'the end'!r}")
    if r.peek() != "":
        raise _fail(f"trailing data after the document at character {r.consumed + r.pos}")


def _str(v: Any) -> str | None:
    return v if isinstance(v, str) else None


def parse_package(
    name: str,
    raw: Mapping[str, Any],
    releases: frozenset[str] | None = None,
    shared: dict[ReleaseEntry, ReleaseEntry] | None = None,
) -> dict[str, TrackerIssue]:
    """The typed issues of one source package; ``releases`` keeps only those codenames, ``shared`` de-duplicates."""
    out: dict[str, TrackerIssue] = {}
    for issue, body in raw.items():
        if not isinstance(body, dict):
            raise _fail(f"issue {issue!r} of source package {name!r} is not an object")
        rels = body.get("releases") or {}  # the tracker writes [] for an issue without releases
        if not isinstance(rels, dict):
            rels = {}
        entries: dict[str, ReleaseEntry] = {}
        for codename, r in rels.items():
            if releases is not None and codename not in releases:
                continue
            if not isinstance(r, dict):
                raise _fail(f"{name} {issue} release {codename!r} is not an object")
            try:
                status = TrackerStatus(str(r.get("status")))
            except ValueError:
                raise _fail(f"{name} {issue} release {codename!r} has unknown status {r.get('status')!r}") from None
            entry = ReleaseEntry(
                status=status,
                fixed_version=_str(r.get("fixed_version")) or None,
                urgency=_str(r.get("urgency")) or "not yet assigned",
                nodsa=_str(r.get("nodsa")),
                nodsa_reason=_str(r.get("nodsa_reason")),
                next_point_update=bool(r.get("next_point_update")),
            )
            if shared is not None:
                entry = shared.setdefault(entry, entry)
            entries[codename] = entry
        if releases is not None and not entries:
            continue
        bug = body.get("debianbug")
        out[issue] = TrackerIssue(
            name=issue,
            package=name,
            releases=entries,
            scope=_str(body.get("scope")),
            debianbug=bug if isinstance(bug, int) else None,
        )
    return out


def read_tracker(stream: IO[bytes] | IO[str], releases: Iterable[str] | None = None) -> DebianTracker:
    """Parse a whole tracker document from a stream (keeping only ``releases``' codenames when given)."""
    wanted = frozenset(releases) if releases is not None else None
    shared: dict[ReleaseEntry, ReleaseEntry] = {}
    packages: dict[str, dict[str, TrackerIssue]] = {}
    for name, raw in iter_packages(stream):
        issues = parse_package(name, raw, wanted, shared)
        if issues:
            packages[name] = issues
    return DebianTracker(packages)


def load_tracker(path: Path, releases: Iterable[str] | None = None) -> DebianTracker:
    """Parse a tracker file (plain or gzip-compressed)."""
    with open_feed_file(path) as f:
        return read_tracker(f, releases)
