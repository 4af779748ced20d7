"""The Range parser: RFC 7233 forms, the cap on ranges, and no blow-up on hostile headers."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bulkhead.server.delivery.ranges import MAX_RANGES, ByteRange, RangeNotSatisfiable, _parse, parse_range


@pytest.mark.parametrize(
    "header,expect",
    [
        ("bytes=0-3", [ByteRange(0, 3)]),
        ("bytes=-4", [ByteRange(96, 99)]),
        ("bytes=90-", [ByteRange(90, 99)]),
        ("bytes=90-500", [ByteRange(90, 99)]),
        ("bytes=0-1, 5-6", [ByteRange(0, 1), ByteRange(5, 6)]),
        ("bytes=0-10,5-20", [ByteRange(0, 20)]),
        ("bytes=-0,0-0", [ByteRange(0, 0)]),
    ],
)
def test_forms(header: str, expect: list[ByteRange]) -> None:
    assert parse_range(header, 100) == expect


@pytest.mark.parametrize("header", ["items=0-1", "bytes=abc", "bytes=5-2", "bytes=1", "bytes=0x1-2", "bytes=\u0661-\u0662"])
def test_invalid_headers_are_ignored(header: str) -> None:
    assert parse_range(header, 100) is None


@pytest.mark.parametrize("header", ["bytes=100-", "bytes=200-300", "bytes=-0"])
def test_unsatisfiable(header: str) -> None:
    with pytest.raises(RangeNotSatisfiable):
        parse_range(header, 100)


def test_cap_on_ranges() -> None:
    ok = ",".join(f"{i * 2}-{i * 2}" for i in range(MAX_RANGES))
    assert len(parse_range("bytes=" + ok, 1000) or []) == MAX_RANGES
    with pytest.raises(RangeNotSatisfiable, match="more than"):
        parse_range("bytes=" + ok + ",999-999", 1000)


def test_hostile_header_is_refused_before_parsing() -> None:
    with pytest.raises(RangeNotSatisfiable):
        parse_range("bytes=" + "0-1," * 100_000, 1000)


@given(st.text(max_size=300), st.integers(min_value=0, max_value=10**12))
def test_any_header_gives_ranges_none_or_416(header: str, size: int) -> None:
    try:
        result = parse_range(header, size)
    except RangeNotSatisfiable:
        return
    if result is not None:
        assert all(0 <= r.start <= r.end < size for r in result)


def _outcome(f: object, *args: object) -> object:
    try:
        return f(*args)  # type: ignore[operator]
    except RangeNotSatisfiable:
        return "416"


@given(st.integers(0, 10**19 + 5), st.integers(0, 10**19 + 5), st.integers(0, 10**12))
def test_fast_path_for_one_closed_range_answers_as_the_general_parser(start: int, end: int, size: int) -> None:
    header = f"bytes={start}-{end}"
    assert _outcome(parse_range, header, size) == _outcome(_parse, header, size, MAX_RANGES)
