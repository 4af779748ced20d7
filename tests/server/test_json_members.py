"""The JSON checks of request bodies: the nesting depth outside strings, and a body parsed once with the raw text of
each top-level member (what the report path fingerprints an inventory by)."""

from __future__ import annotations

import json

import pytest

from bulkhead.server.limits import SAME, JsonRefused, json_problem, parse_json_members, text_digest


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


def test_a_member_seen_before_is_recognised_by_its_text_and_not_parsed_again() -> None:
    inventory = '{"os_version": "1", "packages": [{"name": "a"}]}'
    known = {"inventory": (len(inventory), text_digest(inventory))}
    value, raw = parse_json_members(('{"events": [], "inventory": ' + inventory + "}").encode(), known=known)
    assert value == {"events": [], "inventory": SAME} and raw["inventory"] == inventory
    other = inventory.replace('"1"', '"2"')  # same length, other text: parsed
    value, _ = parse_json_members(('{"inventory": ' + other + ', "events": []}').encode(), known=known)
    assert value["inventory"]["os_version"] == "2"
    longer = inventory[:-1] + ', "x": 1}'  # starts with the known text's prefix but goes on
    value, _ = parse_json_members(('{"inventory": ' + longer + "}").encode(), known=known)
    assert value["inventory"]["x"] == 1
    with pytest.raises(JsonRefused, match="NaN"):  # the rest of the body is still checked
        parse_json_members(('{"inventory": ' + inventory + ', "events": NaN}').encode(), known=known)


@pytest.mark.parametrize("levels", [31, 32, 33])
def test_members_nest_as_deep_as_json_problem_allows(levels: int) -> None:
    body = ('{"events": [], "inventory": ' + "[" * levels + "]" * levels + "}").encode()
    refused = json_problem(body) is not None
    assert refused is (levels > 31)
    if refused:
        with pytest.raises(JsonRefused, match="deeper than 32"):
            parse_json_members(body)
    else:
        parse_json_members(body)
