"""`bulkhead image build`: the Debian reference image (rootfs, signed bundle, GPT disk, SBOMs, build manifest)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from bulkhead.osbuild import BuildSpec, build_image
from bulkhead.osbuild.reference import BASE_PACKAGES, DEFAULT_SUITE, debian_suites

from . import output
from .manage import JsonOpt, show

app = typer.Typer(help="OS images: the Debian reference image with the container-OS layout.", no_args_is_help=True)

__all__ = ["app"]


@app.command("build")
def build(
    version: str = typer.Option(..., help="Release version (the bundle's and /etc/bulkhead/os-release's)"),
    out: Path = typer.Option(..., help="Output directory"),
    cert: Path = typer.Option(..., help="Signing certificate (PEM) for the bundle"),
    key: Path = typer.Option(..., help="Signing key (PEM)"),
    keyring: Path | None = typer.Option(None, help="CA the devices trust for updates (default: --cert)"),
    compatible: str = typer.Option("bulkhead-qemux86-64", help="RAUC compatible of the image"),
    server: str = typer.Option("http://10.0.2.2:8080", help="Server URL the agent enrolls with"),
    bootstrap_token: str = typer.Option("", envvar="BULKHEAD_BOOTSTRAP_TOKEN", help="Bootstrap token for the first boot"),
    suite: str = typer.Option(
        DEFAULT_SUITE, "--suite", help="Debian release: trixie (RAUC 1.13: streaming, adaptive updates) or bookworm"
    ),
    suites: list[str] = typer.Option(
        [], "--suites", help="Debian suites instead of --suite's release, -updates and -security (repeatable)"
    ),
    package: list[str] = typer.Option([], "--packages", help=f"Extra packages (repeatable; always: {', '.join(BASE_PACKAGES)})"),
    mirror: str = typer.Option("http://deb.debian.org/debian", help="Debian mirror"),
    security_mirror: str = typer.Option("http://deb.debian.org/debian-security", help="Debian security mirror"),
    source_date_epoch: int = typer.Option(1700000000, envvar="SOURCE_DATE_EPOCH", help="Time of every file in the image"),
    customize: list[str] = typer.Option([], help='Shell command run on the rootfs as "$1" (repeatable)'),
    cache: Path | None = typer.Option(None, help="Keep base rootfs tarballs here, reused for the same inputs"),
    insecure_registry: list[str] = typer.Option([], help="Registry (HOST:PORT) the agent pulls from over HTTP (repeatable)"),
    bundle: bool = typer.Option(True, "--bundle/--no-bundle", help="Make the signed RAUC bundle"),
    disk: bool = typer.Option(True, "--disk/--no-disk", help="Make the GPT disk image"),
    compressed_modules: bool = typer.Option(
        False,
        "--compressed-modules",
        help="Keep Debian's .ko.xz kernel modules and initramfs (slots ~400 MB smaller; a kernel update's delta ~4x bigger)",
    ),
    json: bool = JsonOpt,
) -> None:
    """Build the reference image: reproducible ext4 rootfs, verity bundle with block-hash-index, disk image, SBOMs."""
    spec = BuildSpec(
        version=version,
        out=out,
        cert=cert,
        key=key,
        keyring=keyring,
        compatible=compatible,
        suites=tuple(suites) or debian_suites(suite),
        packages=tuple(package),
        mirror=mirror,
        security_mirror=security_mirror,
        source_date_epoch=source_date_epoch,
        server=server,
        bootstrap_token=bootstrap_token,
        customize=tuple(customize),
        insecure_registries=tuple(insecure_registry),
        cache=cache,
        make_bundle=bundle,
        make_disk=disk,
        uncompressed_modules=not compressed_modules,
    )
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=output.err_console) as bar:
        task = bar.add_task("starting", total=None)
        result = build_image(spec, lambda step: bar.update(task, description=step))
    show(
        {
            "rootfs": str(result.rootfs),
            "bundle": str(result.bundle) if result.bundle else None,
            "disk": str(result.disk) if result.disk else None,
            "spdx": str(result.spdx),
            "cyclonedx": str(result.cyclonedx),
            "manifest": str(result.manifest),
            "seconds": round(result.seconds, 1),
        },
        json,
    )
