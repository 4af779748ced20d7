"""FIRST EPSS scores (the daily ``epss_scores-YYYY-MM-DD.csv.gz``), parsed.

The file starts with a comment line ``#model_version:v2025.03.14,score_date:2025-08-25T12:55:00Z`` (files from
before 2022 have none), then the header ``cve,epss,percentile`` and one row per CVE. ``epss`` is the probability
of exploitation activity in the next 30 days, ``percentile`` the share of CVEs scored at or below it; both in
[0, 1]. Plain or gzip-compressed; ``only`` keeps the scores of the given CVEs (a fleet's) out of about 300,000.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from .feed_errors import FeedFormatError
from .feedfile import open_feed_file

__all__ = ["EpssScore", "EpssScores", "load_epss", "read_epss"]

_URL = "https://epss.empiricalsecurity.com/epss_scores-current.csv.gz"


@dataclass(frozen=True, slots=True)
class EpssScore:
    epss: float
    percentile: float


@dataclass(frozen=True)
class EpssScores:
    model_version: str | None
    score_date: dt.datetime | None
    scores: Mapping[str, EpssScore]

    def get(self, cve: str) -> EpssScore | None:
        return self.scores.get(cve)

    def __len__(self) -> int:
        return len(self.scores)


def _fail(msg: str) -> FeedFormatError:
    return FeedFormatError(f"not a FIRST EPSS scores CSV: {msg} (get it from {_URL})")


def _meta(line: str) -> tuple[str | None, dt.datetime | None]:
    fields = dict(part.split(":", 1) for part in line.lstrip("#").strip().split(",") if ":" in part)
    date = None
    if "score_date" in fields:
        try:
            date = dt.datetime.fromisoformat(fields["score_date"].strip())
        except ValueError:
            raise _fail(f"score_date is not a timestamp: {fields['score_date']!r}") from None
    return fields.get("model_version"), date


def _unit(raw: str, what: str, line: int) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise _fail(f"line {line}: {what} {raw!r} is not a number") from None
    if not 0.0 <= value <= 1.0:
        raise _fail(f"line {line}: {what} {value} is outside [0, 1]")
    return value


def read_epss(stream: IO[bytes], only: Collection[str] | None = None) -> EpssScores:
    text = io.TextIOWrapper(stream, encoding="utf-8", newline="")
    first = text.readline()
    model_version, score_date, line_no = None, None, 1
    if first.startswith("#"):
        model_version, score_date = _meta(first)
        first = text.readline()
        line_no += 1
    header = [h.strip() for h in first.strip().split(",")]
    if header[:3] != ["cve", "epss", "percentile"]:
        raise _fail(f"line {line_no}: expected the header 'cve,epss,percentile', found {first.strip()[:80]!r}")
    wanted = set(only) if only is not None else None
    scores: dict[str, EpssScore] = {}
    for row in csv.reader(text):
        line_no += 1
        if not row:
            continue
        if len(row) < 3 or not row[0].startswith("CVE-"):
            raise _fail(f"line {line_no}: expected 'CVE-…,epss,percentile', found {','.join(row)[:80]!r}")
        if wanted is not None and row[0] not in wanted:
            continue
        scores[row[0]] = EpssScore(_unit(row[1], "epss", line_no), _unit(row[2], "percentile", line_no))
    return EpssScores(model_version, score_date, scores)


def load_epss(path: Path, only: Collection[str] | None = None) -> EpssScores:
    """The scores from a file (plain or gzip-compressed)."""
    with open_feed_file(path) as f:
        try:
            return read_epss(f, only)
        except UnicodeDecodeError as e:
            raise _fail(f"not UTF-8 text ({e})") from None
