"""`bulkhead osbuild`: the upstream watcher (git ls-remote vs the kas lock file; build, release, canary)."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import typer
from rich.logging import RichHandler

from bulkhead.osbuild import PublishError
from bulkhead.osbuild.upstream import GitRemote, SubprocessRunner
from bulkhead.osbuild.watch import Outcome, Watcher, load_watch_config

from . import output
from .client import Client
from .errors import CliError
from .manage import JsonOpt, client

app = typer.Typer(help="OS builds: follow upstream layers, rebuild, release.", no_args_is_help=True)

__all__ = ["HttpPublisher", "app"]


class HttpPublisher:
    """Releases, SBOMs and rollouts through the management API."""

    def __init__(self, api: Client) -> None:
        self.api = api

    def _call(self, what: str, fn: Any, *args: Any, **kw: Any) -> Any:
        try:
            return fn(*args, **kw)
        except CliError as exc:
            raise PublishError(f"{what}: {exc}") from exc

    def release(self, bundle: Path) -> dict[str, Any]:
        return self._call(f"upload of {bundle.name}", self.api.upload, bundle, False)  # type: ignore[no-any-return]

    def attach_sbom(self, release_id: int, sbom: Path) -> dict[str, Any]:
        with sbom.open("rb") as f:
            return self._call(  # type: ignore[no-any-return]
                f"SBOM {sbom.name}",
                self.api.request,
                "PUT",
                f"/api/v1/releases/{release_id}/sbom",
                content=f,
                headers={"content-type": "application/json", "content-length": str(sbom.stat().st_size)},
            )

    def start_rollout(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._call(f"rollout {body['name']}", self.api.request, "POST", "/api/v1/rollouts", json=body)  # type: ignore[no-any-return]


def _logging(state_dir: Path, quiet: bool) -> None:
    state_dir.mkdir(parents=True, exist_ok=True)
    logger = logging.getLogger("bulkhead.osbuild")
    logger.setLevel(logging.INFO)
    logger.handlers.clear()
    logger.propagate = False  # its own handlers: the file always, the console unless --json
    file = logging.FileHandler(state_dir / "watch.log")
    file.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logger.addHandler(file)
    if not quiet:
        logger.addHandler(RichHandler(console=output.err_console, show_path=False))


def _summary(outcomes: list[Outcome]) -> list[dict[str, Any]]:
    return [
        {
            "target": o.target,
            "status": o.status,
            "version": o.version or "",
            "release": (o.release or {}).get("id", ""),
            "changed": ", ".join(o.changes),
            "note": "; ".join(filter(None, [o.reason, *o.warnings])),
        }
        for o in outcomes
    ]


@app.command("watch")
def watch(
    ctx: typer.Context,
    config: Path = typer.Option(..., "--config", help="Watch config (YAML): targets, their kas files or repos, build, bundle"),
    once: bool = typer.Option(False, "--once", help="Check every target once and exit (for cron or CI)"),
    json: bool = JsonOpt,
) -> None:
    """Follow the layer repositories upstream; on a new commit: lock it, build, release, and start the canary rollout.

    Exit status with --once: 0 when every target is up to date or released, 2 when a check or build failed.
    """
    cfg = load_watch_config(config)
    _logging(cfg.state_dir, quiet=json)
    watcher = Watcher(cfg, GitRemote(), SubprocessRunner(), HttpPublisher(client(ctx)))
    while True:
        outcomes = watcher.run_once()
        if once:
            if json:
                output.emit_json([o.__dict__ for o in outcomes])
            else:
                output.table(_summary(outcomes), ["target", "status", "version", "release", "changed", "note"], "watch")
            if not all(o.ok for o in outcomes):
                raise CliError("not every target is up to date or released: see the notes above and the build logs")
            return
        time.sleep(cfg.interval_minutes * 60)
