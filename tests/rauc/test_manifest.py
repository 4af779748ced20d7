"""Manifest parsing follows RAUC's rules: unknown groups/keys refused with their line, lists, escapes."""

from __future__ import annotations

import pytest

from bulkhead.rauc import ManifestError, parse_manifest

BASE = "[update]\ncompatible=Foo\nversion=1.0\n\n[image.rootfs]\nfilename=rootfs.img\n"


def test_unknown_key_names_its_line() -> None:
    with pytest.raises(ManifestError) as exc:
        parse_manifest(BASE + "colour=blue\n")
    assert exc.value.line == 7
    assert "unknown key 'colour'" in str(exc.value)


def test_unknown_group_names_its_line() -> None:
    with pytest.raises(ManifestError) as exc:
        parse_manifest(BASE + "\n[keyring]\npath=/x\n")
    assert exc.value.line == 8
    assert "unknown group [keyring]" in str(exc.value)


def test_lists_accept_trailing_separator() -> None:
    m = parse_manifest(BASE + "hooks=pre-install;post-install;\nadaptive=block-hash-index;\n")
    assert m.images[0].hooks == ("pre-install", "post-install")
    assert m.images[0].adaptive == ("block-hash-index",)


def test_unknown_hook_is_refused() -> None:
    with pytest.raises(ManifestError, match="unknown value 'pre-flight'"):
        parse_manifest(BASE + "hooks=pre-flight\n")


def test_escapes_and_whitespace() -> None:
    m = parse_manifest("[update]\ncompatible = Foo\\sBar\ndescription=line1\\nline2\n")
    assert m.compatible == "Foo Bar"
    assert m.description == "line1\nline2"


def test_key_before_group_is_refused() -> None:
    with pytest.raises(ManifestError, match="before the first"):
        parse_manifest("compatible=Foo\n" + BASE)


def test_bad_integer_size() -> None:
    with pytest.raises(ManifestError, match="non-negative integer"):
        parse_manifest(BASE + "size=12k\n")


def test_image_needs_filename() -> None:
    with pytest.raises(ManifestError, match="missing 'filename'"):
        parse_manifest("[update]\ncompatible=Foo\n\n[image.rootfs]\nsha256=" + "0" * 64 + "\n")


def test_variant_and_meta_sections() -> None:
    m = parse_manifest(BASE + "\n[image.appfs.rpi4]\nfilename=app.img\n\n[meta.release]\nchannel=beta\n")
    assert m.images[1].slotclass == "appfs" and m.images[1].variant == "rpi4"
    assert m.meta == {"release": {"channel": "beta"}}


def test_round_trip() -> None:
    m = parse_manifest(
        BASE + "sha256=" + "a" * 64 + "\nsize=4096\nadaptive=block-hash-index;\n"
        "\n[bundle]\nformat=verity\nverity-hash="
        + "b" * 64
        + "\nverity-salt="
        + "c" * 64
        + "\nverity-size=4096\n\n[hooks]\nfilename=hook.sh\nhooks=install-check;\n"
    )
    assert parse_manifest(m.to_text()) == m
