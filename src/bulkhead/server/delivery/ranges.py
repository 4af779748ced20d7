"""Parse HTTP Range headers (RFC 7233), linear in the header's length, with a cap on ranges."""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["MAX_RANGES", "RangeNotSatisfiable", "parse_range"]

MAX_RANGES = 16
_MAX_HEADER = 4096
_ONE = re.compile(r"bytes=([0-9]{1,19})-([0-9]{1,19})")  # what RAUC and casync send: one closed range


class RangeNotSatisfiable(Exception):
    """Answer 416 with `Content-Range: bytes */size`."""


@dataclass(frozen=True)
class ByteRange:
    start: int
    end: int  # inclusive

    @property
    def length(self) -> int:
        return self.end - self.start + 1


def _int(text: str) -> int | None:
    text = text.strip(" \t")
    if not text or not text.isascii() or not text.isdigit() or len(text) > 19:
        return None
    return int(text)


def parse_range(header: str, size: int, max_ranges: int = MAX_RANGES) -> list[ByteRange] | None:
    """Satisfiable ranges in request order (overlaps merged), None to ignore the header (serve 200).

    Raises RangeNotSatisfiable when no range fits the file or too many are asked for.
    """
    if m := _ONE.fullmatch(header):  # fast path, same answer as the general parser below
        start, end = int(m.group(1)), int(m.group(2))
        if end < start:
            return None
        if start >= size:
            raise RangeNotSatisfiable("no requested range lies within the file")
        return [ByteRange(start, min(end, size - 1))]
    return _parse(header, size, max_ranges)


def _parse(header: str, size: int, max_ranges: int) -> list[ByteRange] | None:
    if len(header) > _MAX_HEADER:
        raise RangeNotSatisfiable("Range header too long")
    unit, sep, spec = header.partition("=")
    if not sep or unit.strip().lower() != "bytes":
        return None
    if spec.count(",") >= max_ranges:
        raise RangeNotSatisfiable(f"more than {max_ranges} ranges requested")
    ranges: list[ByteRange] = []
    for part in spec.split(","):
        part = part.strip(" \t")
        if not part:
            continue
        first, dash, last = part.partition("-")
        if not dash:
            return None
        if first.strip() == "":
            n = _int(last)
            if n is None:
                return None
            if n == 0 or size == 0:
                continue
            ranges.append(ByteRange(max(0, size - n), size - 1))
            continue
        start = _int(first)
        end = _int(last) if last.strip() else None
        if start is None or (last.strip() and end is None) or (end is not None and end < start):
            return None
        if start >= size:
            continue
        end = size - 1 if end is None else end
        ranges.append(ByteRange(start, min(end, size - 1)))
    if not ranges:
        raise RangeNotSatisfiable("no requested range lies within the file")
    return _coalesce(ranges)


def _coalesce(ranges: list[ByteRange]) -> list[ByteRange]:
    """Merge overlapping ranges (RFC 7233 4.1 allows it); a client cannot multiply the bytes sent."""
    if len(ranges) == 1:
        return ranges
    ordered = sorted(ranges, key=lambda r: r.start)
    merged = [ordered[0]]
    for r in ordered[1:]:
        last = merged[-1]
        if r.start <= last.end:
            merged[-1] = ByteRange(last.start, max(last.end, r.end))
        else:
            merged.append(r)
    if len(merged) == len(ranges):
        return ranges
    return merged
