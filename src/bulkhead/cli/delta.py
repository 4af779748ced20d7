"""`bulkhead delta`: delta bundles, made where the release key is (the owner's CI), and the server's view of them.

Offline: `create` (a signed delta bundle from two release bundles), `patch` and `apply` (bare image patches).
Against a server: `plan` (which versions the fleet runs for a release), `upload`, `list`, `delete`, `build`
(the server builds one, only with a signing key the tenant gave it) and `signing-key set|show|remove`.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape

from bulkhead.delta.bundle import create_delta_bundle
from bulkhead.delta.errors import DeltaError
from bulkhead.delta.generate import make_patch
from bulkhead.delta.patch import PatchError, apply_patch
from bulkhead.rauc import load_keyring

from . import output
from .bundle import _read
from .errors import CliError
from .manage import JsonOpt, client, show

app = typer.Typer(help="Delta bundles: updates close to the size of what changed.", no_args_is_help=True)
signing_app = typer.Typer(help="The key with which the server may sign the delta bundles it builds.", no_args_is_help=True)
app.add_typer(signing_app, name="signing-key")

DELTA_COLUMNS = ["id", "source_version", "status", "origin", "size", "ratio", "signer", "error"]


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
                old, new, target, cert_pem, key_pem, ring, fmt, progress=lambda m: status.update(escape(m))
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
            stats = make_patch(old, new, out, progress=lambda m: status.update(escape(m)))
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
    json: bool = JsonOpt,
) -> None:
    """Apply a patch outside RAUC (tests, recovery): checks the source and the result like the install hook."""
    try:
        head = apply_patch(str(patch), str(source), str(target))
    except PatchError as exc:
        raise CliError(str(exc)) from exc
    except OSError as exc:
        raise CliError(f"{exc.filename}: {exc.strerror}") from exc
    if json:
        output.emit_json({"target": str(target), "size": head.target_size, "sha256": head.target_sha256, "verified": True})
    else:
        output.line(f"wrote {head.target_size} bytes to {target}; sha256 {head.target_sha256} verified")


# -- against a server ---------------------------------------------------------------------


@app.command()
def plan(
    ctx: typer.Context, release_id: int = typer.Argument(..., help="The release to update the fleet to"), json: bool = JsonOpt
) -> None:
    """Which OS versions the fleet runs for this release's compatible, and which have a delta to it."""
    doc = client(ctx).request("GET", f"/api/v1/releases/{release_id}/delta-plan")
    if json:
        output.emit_json(doc)
        return
    rel = doc["release"]
    output.record(
        {
            "release": f"{rel['compatible']} {rel['version']} (id {rel['id']}, {rel['size']:,} bytes)",
            "devices already on it": doc["devices_on_release"],
            "delta offered when at most": f"{doc['max_ratio']:.0%} of the full bundle",
            "server builds deltas": "yes (tenant signing key set)"
            if doc["server_signing"]
            else "no (no signing key on the server)",
        },
        title="delta plan",
    )
    rows = [
        {
            "version": s["version"] or "(not reported)",
            "devices": s["devices"],
            "delta": f"{s['delta']['size']:,} B ({s['delta']['ratio']:.1%})" if s["delta"] and s["delta"]["size"] else "",
            "advice": s["advice"],
        }
        for s in doc["sources"]
    ]
    output.table(rows, ["version", "devices", "delta", "advice"], title="source versions")


@app.command()
def upload(
    ctx: typer.Context,
    release_id: int = typer.Argument(..., help="The release the delta bundle makes"),
    bundle: Path = typer.Argument(..., exists=True, dir_okay=False, help="From 'bulkhead delta create'"),
    json: bool = JsonOpt,
) -> None:
    """Upload a delta bundle; the server verifies it and finds its source release from the patch headers."""
    show(client(ctx).upload(bundle, show_progress=not json, url=f"/api/v1/releases/{release_id}/deltas"), json, title="delta")


@app.command("list")
def list_(ctx: typer.Context, release_id: int, json: bool = JsonOpt) -> None:
    """The delta bundles of a release."""
    show(client(ctx).pages(f"/api/v1/releases/{release_id}/deltas"), json, DELTA_COLUMNS, "delta bundles")


@app.command()
def delete(ctx: typer.Context, release_id: int, delta_id: int, json: bool = JsonOpt) -> None:
    """Delete a delta bundle; devices on its source version get the full bundle from then on."""
    client(ctx).request("DELETE", f"/api/v1/releases/{release_id}/deltas/{delta_id}")
    if json:
        output.emit_json({"deleted": delta_id, "release_id": release_id})
    else:
        output.line(f"deleted delta {delta_id} of release {release_id}")


@app.command()
def build(
    ctx: typer.Context,
    release_id: int = typer.Argument(..., help="The release to build a delta to"),
    source_version: str = typer.Option(..., "--from", help="The version the devices run now"),
    json: bool = JsonOpt,
) -> None:
    """Have the server build and sign the delta itself (only when the tenant gave it a signing key)."""
    body = {"source_version": source_version}
    show(client(ctx).request("POST", f"/api/v1/releases/{release_id}/deltas/build", json=body), json, title="delta build")


@signing_app.command("set")
def signing_set(
    ctx: typer.Context,
    cert: Path = typer.Option(..., help="Signing certificate (PEM); must chain to the tenant keyring"),
    key: Path = typer.Option(..., help="Its private key (PEM, unencrypted: the server keeps it sealed)"),
    json: bool = JsonOpt,
) -> None:
    """Give the server a key to sign the delta bundles it builds (a dedicated delta-signing certificate is best)."""
    body = {"cert_pem": _read(cert, "certificate").decode(), "key_pem": _read(key, "key").decode()}
    show(client(ctx).request("PUT", "/api/v1/delta-signing", json=body), json, title="delta signing")


@signing_app.command("show")
def signing_show(ctx: typer.Context, json: bool = JsonOpt) -> None:
    """Whether the server holds a delta signing key, and whose."""
    show(client(ctx).request("GET", "/api/v1/delta-signing"), json, title="delta signing")


@signing_app.command("remove")
def signing_remove(ctx: typer.Context, json: bool = JsonOpt) -> None:
    """Take the key away: the server builds no more delta bundles."""
    show(client(ctx).request("DELETE", "/api/v1/delta-signing"), json, title="delta signing")
