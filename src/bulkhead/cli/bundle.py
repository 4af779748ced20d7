"""`bulkhead bundle info|verify|create`: the bundle library on the command line."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

from bulkhead.rauc import FileReader, create_bundle, load_keyring, open_bundle

from . import output
from .errors import CliError

app = typer.Typer(help="Inspect, verify and create RAUC bundles.", no_args_is_help=True)


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise CliError(f"cannot read {what} {path}: {exc.strerror}") from exc


def _verify_with_progress(bundle, keyring, quiet: bool) -> None:  # type: ignore[no-untyped-def]
    if quiet:
        bundle.verify(keyring)
        return
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        transient=True,
        console=output.err_console,
    ) as progress:
        task = progress.add_task("verifying", total=bundle.size)
        bundle.verify(keyring, progress=lambda done, total: progress.update(task, completed=done, total=total))


@app.command()
def info(
    bundle: Path = typer.Argument(..., exists=True, dir_okay=False),
    keyring: Path | None = typer.Option(None, help="PEM trust anchors to verify against"),
    no_verify: bool = typer.Option(False, "--no-verify", help="Show the manifest without checking the signature"),
    check_purpose: str = typer.Option("smimesign", help="smimesign, codesign or any"),
    json: bool = typer.Option(False, "--json", help="Machine-readable output"),
) -> None:
    """Show a bundle's manifest, format, images and signer."""
    if not no_verify and keyring is None:
        raise CliError("give --keyring PEM to verify the bundle, or --no-verify to only show it")
    with FileReader(bundle) as reader:
        b = open_bundle(reader)
        if not no_verify:
            assert keyring is not None
            _verify_with_progress(b, load_keyring(_read(keyring, "keyring"), check_purpose), json)
        data = b.info().to_json()
    if json:
        output.emit_json(data)
        return
    output.record(
        {k: data[k] for k in ("compatible", "version", "description", "build", "format", "signer", "verified", "size")},
        title=str(bundle),
    )
    output.table(data["images"], ["slotclass", "variant", "filename", "size", "sha256", "adaptive"], title="images")


@app.command()
def verify(
    bundle: Path = typer.Argument(..., exists=True, dir_okay=False),
    keyring: Path = typer.Option(..., help="PEM trust anchors"),
    check_purpose: str = typer.Option("smimesign", help="smimesign, codesign or any"),
    json: bool = typer.Option(False, "--json"),
) -> None:
    """Verify signature, chain and (verity) payload; exit 0 only when all hold."""
    with FileReader(bundle) as reader:
        b = open_bundle(reader)
        _verify_with_progress(b, load_keyring(_read(keyring, "keyring"), check_purpose), json)
        info = b.info(list_files=False)
    if json:
        output.emit_json({"verified": True, "signer": info.signer, "chain": info.chain, "format": info.format})
    else:
        output.console.print(f"[green]OK[/green] {bundle}: {info.format} bundle signed by '{info.signer}'")


@app.command()
def create(
    content_dir: Path = typer.Argument(..., exists=True, file_okay=False),
    out: Path = typer.Argument(...),
    cert: Path = typer.Option(..., help="Signing certificate (PEM)"),
    key: Path = typer.Option(..., help="Signing key (PEM)"),
    intermediate: list[Path] = typer.Option([], help="Intermediate certificate(s) to include"),
    format: str = typer.Option("verity", "--format", help="plain or verity"),
    json: bool = typer.Option(False, "--json"),
) -> None:
    """Build and sign a bundle from CONTENT_DIR (manifest.raucm + images)."""
    if out.exists():
        raise CliError(f"{out} exists; remove it or choose another output path")
    manifest = create_bundle(
        content_dir, out, _read(cert, "certificate"), _read(key, "key"), [_read(i, "intermediate") for i in intermediate], format
    )
    if json:
        output.emit_json(
            {
                "bundle": str(out),
                "format": manifest.format,
                "compatible": manifest.compatible,
                "version": manifest.version,
                "verity_hash": manifest.verity_hash,
            }
        )
    else:
        output.console.print(f"[green]created[/green] {out} ({manifest.format}, {manifest.compatible} {manifest.version})")
