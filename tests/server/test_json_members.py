"""The JSON checks of request bodies: the nesting depth outside strings, and a body parsed once with the raw text of
each top-level member (what the report path fingerprints an inventory by)."""

from __future__ import annotations

import json

import pytest

from bulkhead.server.limits import JsonRefused, json_problem, parse_json_members


@pytest.mark.parametrize(
    ("text", "deep"),
    [
        ('{"a": "[[[[[[[[[["}', False),  # brackets inside strings do not count
        ('{"a\\"[[[[": "\\\\", "b": [[["x"]]]}', False),  # escaped quotes and backslashes do not open strings
        ('{"a": "\\\\\\"[[[[[[", "b": 1}', False),
        ('[[[[[["\\\\"]]]]]]', True),
        ('{"a": [[[[{"b": []}]]]]}', True),
        ('{"a": [[[]], [[]], [[]], [[]], [[]], [[]]]}', False),  # many brackets, little depth
    ],
)
def test_depth_counts_brackets_outside_strings_only(text: str, deep: bool) -> None:
    json.loads(text)
    assert (json_problem(text.encode(), max_depth=5) is not None) is deep


def test_members_are_parsed_once_with_their_raw_text() -> None:
    body = b' {"events" : [1, {"x": "}"}], "inventory":{"os_version": "1", "p": ["a\\"b"]} , "x": null}\n'
    value, raw = parse_json_members(body)
    assert value == json.loads(body)
    assert raw == {"events": '[1, {"x": "}"}]', "inventory": '{"os_version": "1", "p": ["a\\"b"]}', "x": "null"}
    assert parse_json_members(b"[1, 2]") == ([1, 2], {})
    for bad, message in [
        (b'{"a": 1,}', "not valid JSON"),
        (b'{"a": 1} {}', "not valid JSON"),
        (b'{"a": NaN}', "NaN"),
        (b'{"a": 123456789012345678901234}', "out of range"),
        (b'{"a": "\\u0000"}', "NUL"),
        (b'{"a": "\\ud800"}', "surrogate"),
        (b'{"a": ' + b"[" * 40 + b"]" * 40 + b"}", "deeper than 32"),
    ]:
        with pytest.raises(JsonRefused, match=message):
            parse_json_members(bad)
