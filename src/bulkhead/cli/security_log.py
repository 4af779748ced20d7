"""`bulkhead device security-log NAME` and `bulkhead cra security-events`: the device security log (CRA Annex I)."""

from __future__ import annotations

from typing import Any

import typer

from bulkhead.protocol import SecurityEvent

from .manage import JsonOpt, client, show

__all__ = ["cra_security_events", "device_security_log"]

_COLS = ["device_time", "device", "kind", "version", "message"]
KindOpt = typer.Option(None, "--kind", help=f"Only events of this kind: {', '.join(SecurityEvent)}")
LimitOpt = typer.Option(50, "--limit", help="At most this many, newest first")


def _rows(ctx: typer.Context, path: str, kind: str | None, limit: int) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = client(ctx).pages(path, params={"kind": kind} if kind else None, limit=limit)
    return rows


def device_security_log(
    ctx: typer.Context, device: str, kind: str | None = KindOpt, limit: int = LimitOpt, json: bool = JsonOpt
) -> None:
    """The device's security events (refused bundles, tampered downloads, rejected credentials, unexpected slot
    changes, rollbacks), newest first."""
    show(_rows(ctx, f"/api/v1/devices/{device}/security-events", kind, limit), json, _COLS)


def cra_security_events(ctx: typer.Context, kind: str | None = KindOpt, limit: int = LimitOpt, json: bool = JsonOpt) -> None:
    """Every device's security events (CRA Annex I device security log), newest first."""
    show(_rows(ctx, "/api/v1/security-events", kind, limit), json, _COLS)
