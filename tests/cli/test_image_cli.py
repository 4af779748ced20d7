"""`bulkhead image build`: which Debian release an image is built from (the build itself: tests/osbuild)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from bulkhead.cli import image, main
from bulkhead.osbuild import BuildResult, BuildSpec


@pytest.mark.parametrize(
    ("args", "suites"),
    [
        ([], ("trixie", "trixie-updates", "trixie-security")),
        (["--suite", "bookworm"], ("bookworm", "bookworm-updates", "bookworm-security")),
        (["--suites", "trixie", "--suites", "trixie-backports"], ("trixie", "trixie-backports")),
    ],
)
def test_the_image_is_built_from_trixie_unless_told(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], suites: tuple[str, ...]
) -> None:
    specs: list[BuildSpec] = []

    def build(spec: BuildSpec, progress: object) -> BuildResult:  # the build is the osbuild tests' subject
        specs.append(spec)
        out = spec.out
        return BuildResult(out / "rootfs.ext4", None, None, out / "s.spdx", out / "s.cdx", out / "m.json", 1.0)

    monkeypatch.setattr(image, "build_image", build)
    res = CliRunner().invoke(
        main.app,
        ["image", "build", "--version", "1", "--out", str(tmp_path), "--cert", "c.pem", "--key", "k.pem", *args],
    )
    assert res.exit_code == 0, res.output
    assert [s.suites for s in specs] == [suites]


def test_a_lab_registry_reached_over_http_goes_into_the_agent_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    specs: list[BuildSpec] = []

    def build(spec: BuildSpec, progress: object) -> BuildResult:
        specs.append(spec)
        return BuildResult(spec.out / "r", None, None, spec.out / "s", spec.out / "c", spec.out / "m", 1.0)

    monkeypatch.setattr(image, "build_image", build)
    args = ["image", "build", "--version", "1", "--out", str(tmp_path), "--cert", "c.pem", "--key", "k.pem"]
    res = CliRunner().invoke(main.app, [*args, "--insecure-registry", "10.0.2.2:5000", "--insecure-registry", "lab:80"])
    assert res.exit_code == 0, res.output
    assert specs[0].insecure_registries == ("10.0.2.2:5000", "lab:80")


@pytest.mark.parametrize(("args", "uncompressed"), [([], True), (["--compressed-modules"], False)])
def test_kernel_modules_are_stored_uncompressed_unless_told(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], uncompressed: bool
) -> None:
    specs: list[BuildSpec] = []

    def build(spec: BuildSpec, progress: object) -> BuildResult:
        specs.append(spec)
        return BuildResult(spec.out / "r", None, None, spec.out / "s", spec.out / "c", spec.out / "m", 1.0)

    monkeypatch.setattr(image, "build_image", build)
    res = CliRunner().invoke(
        main.app, ["image", "build", "--version", "1", "--out", str(tmp_path), "--cert", "c.pem", "--key", "k.pem", *args]
    )
    assert res.exit_code == 0, res.output
    assert specs[0].uncompressed_modules is uncompressed
    assert ("kernel_modules" in specs[0].base_inputs()) is uncompressed  # a base of the other kind is not reused
