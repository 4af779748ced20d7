"""`bulkhead delta create|apply`: delta bundles, made where the release key is (the owner's CI)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import typer

from bulkhead.delta.bundle import create_delta_bundle
from bulkhead.delta.errors import DeltaError
from bulkhead.delta.generate import make_patch
from bulkhead.delta.patch import PatchError, apply_patch
from bulkhead.rauc import load_keyring

from . import output
from .bundle import _read
from .errors import CliError

app = typer.Typer(help="Delta bundles: updates close to the size of what changed.", no_args_is_help=True)


@app.command()
def create(
    old: Path = typer.Option(..., "--from", help="The release bundle the devices run now (.raucb)"),
    new: Path = typer.Option(..., "--to", help="The release bundle to update them to (.raucb)"),
    cert: Path = typer.Option(..., help="Release signing certificate (PEM)"),
    key: Path = typer.Option(..., help="Release signing key (PEM; RAUC_KEY_PASSPHRASE if encrypted)"),
    keyring: Path | None = typer.Option(None, help="Verify both bundles against these trust anchors first"),
    out: Path | None = typer.Option(None, help="Output (default: <compatible>-<old>-to-<new>.raucb next to --to)"),
    fmt: str = typer.Option("verity", "--format", help="verity (default) or plain (RAUC without dm-verity)"),
    json: bool = typer.Option(False, "--json"),
) -> None:
    """Build a signed delta bundle that turns devices running --from into --to."""
    ring = load_keyring(_read(keyring, "keyring")) if keyring else None
    cert_pem, key_pem = _read(cert, "certificate"), _read(key, "key")
    started = time.monotonic()
    target = out
    if target is None:
        target = new.with_name(f"{new.stem}-delta-from-{old.stem}.raucb")
    try:
        with output.err_console.status("delta") as status:
            manifest, stats = create_delta_bundle(
                old, new, target, cert_pem, key_pem, ring, fmt, progress=lambda m: status.update(m)
            )
    except DeltaError as exc:
        raise CliError(str(exc)) from exc
    size = target.stat().st_size
    images = {k: dict(v.__dict__) for k, v in stats.items()}
    doc: dict[str, Any] = {
        "bundle": str(target),
        "compatible": manifest.compatible,
        "version": manifest.version,
        "size": size,
        "full_size": new.stat().st_size,
        "seconds": round(time.monotonic() - started, 1),
        "images": images,
    }
    if json:
        output.emit_json(doc)
        return
    output.record({k: doc[k] for k in ("bundle", "compatible", "version", "size", "full_size", "seconds")}, title="delta bundle")
    output.table([{"slotclass": k, **v} for k, v in images.items()], ["slotclass", "target_blocks", "copy_blocks",
                 "diff_blocks", "raw_blocks", "zero_blocks", "patch_bytes"], title="patches")  # fmt: skip


@app.command()
def patch(
    old: Path = typer.Argument(..., exists=True, dir_okay=False, help="Source image (e.g. the old rootfs.ext4)"),
    new: Path = typer.Argument(..., exists=True, dir_okay=False, help="Target image"),
    out: Path = typer.Argument(..., help="Where to write the patch (.bhdelta)"),
    json: bool = typer.Option(False, "--json"),
) -> None:
    """Make a bare image patch (what a delta bundle carries per slot), for tests and benchmarks."""
    started = time.monotonic()
    try:
        with output.err_console.status("patch") as status:
            stats = make_patch(old, new, out, progress=lambda m: status.update(m))
    except DeltaError as exc:
        raise CliError(str(exc)) from exc
    doc = {**stats.__dict__, "seconds": round(time.monotonic() - started, 1)}
    if json:
        output.emit_json(doc)
    else:
        output.record(doc, title=str(out))


@app.command()
def apply(
    patch: Path = typer.Argument(..., exists=True, dir_okay=False, help="A .bhdelta patch (from a delta bundle)"),
    source: Path = typer.Option(..., help="The source image or slot device"),
    target: Path = typer.Option(..., help="Where to write the target image"),
) -> None:
    """Apply a patch outside RAUC (tests, recovery): checks the source and the result like the install hook."""
    try:
        head = apply_patch(str(patch), str(source), str(target))
    except PatchError as exc:
        raise CliError(str(exc)) from exc
    except OSError as exc:
        raise CliError(f"{exc.filename}: {exc.strerror}") from exc
    output.err_console.print(f"wrote {head.target_size} bytes to {target}; sha256 {head.target_sha256} verified")
