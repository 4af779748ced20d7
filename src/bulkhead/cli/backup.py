"""`bulkhead backup create|restore`: back up one server's database, secrets and artifacts, and restore them."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from . import output
from .errors import CliError

if TYPE_CHECKING:
    from bulkhead.server.settings import Settings

app = typer.Typer(help="Back up a server (database, data-directory secrets, artifacts) and restore it.", no_args_is_help=True)

_DATA_DIR = typer.Option(Path("bulkhead-data"), envvar="BULKHEAD_DATA_DIR", help="The server's data directory")


def _settings(data_dir: Path) -> Settings:
    from bulkhead.server.errors import SettingsError
    from bulkhead.server.settings import load_settings

    try:
        return load_settings(data_dir=data_dir)
    except SettingsError as exc:
        raise CliError(exc.message) from exc


@app.command("create")
def create(
    out: Path = typer.Option(..., "--output", "-o", help="The backup file to write (.tar, or .tar.gz to compress)"),
    data_dir: Path = _DATA_DIR,
    json: bool = typer.Option(False, "--json", help="Machine-readable output (what the backup holds)"),
) -> None:
    """Back up the server of DATA_DIR (and BULKHEAD_DATABASE_URL, BULKHEAD_STORE) while it runs.

    The file holds the server's secrets: keep it as safe as the data directory. With the S3 store the
    artifacts stay in the bucket (see docs/deploy.md).
    """
    from bulkhead.server.backup import BackupError, backup

    settings = _settings(data_dir)
    try:
        s = backup(settings, out)
    except BackupError as exc:
        raise CliError(exc.message) from exc
    if json:
        output.emit_json({"file": str(out), **asdict(s)})
        return
    output.err_console.print(
        f"backup {out}: {s.database} database, {s.artifacts} artifacts ({s.artifact_bytes} bytes), {len(s.files)} data files",
        markup=False,
    )
    for note in s.notes:
        output.err_console.print(f"note: {note}", markup=False)


@app.command("restore")
def restore_cmd(
    archive: Path = typer.Argument(..., help="A backup file made by `bulkhead backup create`"),
    data_dir: Path = _DATA_DIR,
    json: bool = typer.Option(False, "--json", help="Machine-readable output (what was restored)"),
) -> None:
    """Restore a backup into a new, empty DATA_DIR (and an empty database if BULKHEAD_DATABASE_URL is set).

    Start the server on DATA_DIR afterwards; devices keep their credentials.
    """
    from bulkhead.server.backup import BackupError, restore

    settings = _settings(data_dir)
    try:
        s = restore(settings, archive)
    except BackupError as exc:
        raise CliError(exc.message) from exc
    if json:
        output.emit_json({"file": str(archive), "data_dir": str(data_dir), **asdict(s)})
        return
    output.err_console.print(
        f"restored {archive} into {data_dir}: {s.database} database, {s.artifacts} artifacts, {len(s.files)} data files",
        markup=False,
    )
    for note in s.notes:
        output.err_console.print(f"note: {note}", markup=False)
