"""Fuzzing the trailer, CMS and manifest parsers: any input gives a result or a typed error."""

from __future__ import annotations

import contextlib
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bulkhead.rauc import BundleError, BytesReader, load_keyring, open_bundle, parse_manifest
from bulkhead.rauc.cms import parse_cms
from tests.conftest import DEV_CA, RAUC_DATA

GOOD = (RAUC_DATA / "good-verity-bundle.raucb").read_bytes() if RAUC_DATA.is_dir() else b""
PLAIN = (RAUC_DATA / "good-bundle.raucb").read_bytes() if RAUC_DATA.is_dir() else b""
FUZZ = settings(
    max_examples=int(__import__("os").environ.get("BULKHEAD_FUZZ_EXAMPLES", "300")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def _keyring():  # type: ignore[no-untyped-def]
    return load_keyring(Path(DEV_CA).read_bytes())


@FUZZ
@given(st.binary(max_size=2048))
def test_manifest_parser_random_bytes(data: bytes) -> None:
    with contextlib.suppress(BundleError):
        parse_manifest(data)


@FUZZ
@given(st.text(alphabet="[]=;#\\ \nabcimageupdatcompatiblfornm.0123456789", max_size=400))
def test_manifest_parser_structured_text(text: str) -> None:
    with contextlib.suppress(BundleError):
        parse_manifest(text)


@FUZZ
@given(st.binary(max_size=4096))
def test_cms_parser_random_bytes(data: bytes) -> None:
    with contextlib.suppress(BundleError):
        parse_cms(data)


@FUZZ
@given(
    st.lists(st.tuples(st.integers(min_value=0), st.integers(min_value=0, max_value=255)), min_size=1, max_size=8),
    st.sampled_from(["verity", "plain"]),
)
def test_mutated_bundles_fail_typed(mutations: list[tuple[int, int]], which: str) -> None:
    """Flip bytes anywhere (trailer, CMS, squashfs): open + verify + info only ever raise BundleError."""
    data = bytearray(GOOD if which == "verity" else PLAIN)
    for pos, val in mutations:
        data[pos % len(data)] = val
    try:
        b = open_bundle(BytesReader(bytes(data)))
        b.verify(_keyring())
        b.info()
    except BundleError:
        pass


@FUZZ
@given(st.integers(min_value=0, max_value=30000))
def test_truncation_anywhere_fails_typed(cut: int) -> None:
    try:
        b = open_bundle(BytesReader(GOOD[:cut]))
        b.verify(_keyring())
    except BundleError:
        pass
