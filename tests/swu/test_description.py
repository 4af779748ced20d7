"""sw-description parsing: what a release needs, and clear errors for what SWUpdate would refuse."""

from __future__ import annotations

import pytest

from bulkhead.swu import SwuError, parse_sw_description

SHA = "a" * 64


def test_parses_version_hardware_and_artifacts_of_every_section() -> None:
    d = parse_sw_description(
        f"""software = {{
          version = "2.1.0"; description = "field update";
          hardware-compatibility: [ "1.0", "1.2" ];
          images: ( {{ filename = "rootfs.ext4.gz"; device = "/dev/mmcblk0p2"; type = "raw"; sha256 = "{SHA}"; }} );
          scripts: ( {{ filename = "post.sh"; type = "shellscript"; sha256 = "{SHA.upper()}"; }} );
          bootenv: ( {{ name = "upgrade_available"; value = "1"; }} );
        }};"""
    )
    assert (d.version, d.description, d.hardware_compatibility) == ("2.1.0", "field update", ("1.0", "1.2"))
    assert [(a.filename, a.section, a.handler) for a in d.artifacts] == [
        ("rootfs.ext4.gz", "images", "raw"),
        ("post.sh", "scripts", "shellscript"),
    ]
    assert d.artifacts[1].sha256 == SHA  # normalised to lower case


def test_artifacts_inside_board_and_selection_groups_are_found() -> None:
    d = parse_sw_description(
        f"""software = {{ version = "1"; myboard = {{ stable = {{
            images: ( {{ filename = "a.img"; sha256 = "{SHA}"; }} ); }}; }}; }};"""
    )
    assert [a.filename for a in d.artifacts] == ["a.img"]


@pytest.mark.parametrize(
    "text,message",
    [
        ("software = { version = ", "not valid libconfig"),
        ('hardware = { version = "1"; };', "no 'software' group"),
        ('software = { description = "x"; };', "no software.version"),
        ('software = { version = "1"; hardware-compatibility = "1.0"; };', "must be a list"),
        ('software = { version = "1"; images: ( { filename = "a.img"; } ); };', "has no valid sha256"),
    ],
)
def test_bad_descriptions_are_refused_with_the_reason(text: str, message: str) -> None:
    with pytest.raises(SwuError, match=message):
        parse_sw_description(text)
