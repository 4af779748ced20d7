"""Backup and restore of one server: the database, the data directory's secrets and the filesystem artifact store.

A backup is one tar file (gzip-compressed when its name ends in .gz or .tgz), written 0600 because it holds the
server's secrets:

    manifest.json        format, time, database kind, store kind, what is inside
    database.sqlite      SQLite: a consistent copy made with SQLite's online backup API (the server may run)
    database.pgdump      PostgreSQL: `pg_dump --format=custom` (a consistent snapshot; the server may run)
    jobs.sqlite          the embedded job queue (only when BULKHEAD_JOBS_URL is unset)
    data/...             the data directory's own files: secret.key (it also opens the signing keys the database
                         keeps sealed), admin.token, openpgp/ and openpgp-apt/ (this host's GnuPG copies of them),
                         feeds/ (downloaded vulnerability feeds); not the database, queue, artifacts or run-time
                         files
    artifacts/ab/ab…     the filesystem store's content-addressed files (an S3 store is not copied: keep the
                         bucket with its own versioning or replication, docs/deploy.md)

The database is copied first and the artifacts after it: artifacts are written once under their digest before a
row names them, so every artifact the copied database names is in the backup. A restore needs a fresh data
directory (and, for PostgreSQL, an empty database); it checks every artifact's digest as it writes it.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import sqlite3
import subprocess
import tarfile
import tempfile
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from sqlalchemy.engine import make_url

from .errors import ServerError
from .settings import Settings

__all__ = ["FORMAT", "BackupError", "Summary", "backup", "restore"]

FORMAT = 1
# Data-directory entries that are not copied as files: the databases (copied consistently instead), the artifact
# store (copied by digest), and what a running server makes and remakes (metrics, delta work, logs, sockets).
_SKIP = re.compile(r"^(bulkhead\.db|jobs\.db)(-wal|-shm|-journal)?$|^(artifacts|run|delta-builds)$|\.(log|lock|sock)$")
_ARTIFACT = re.compile(r"^artifacts/([0-9a-f]{2})/([0-9a-f]{64})$")
_CHUNK = 1024 * 1024


class BackupError(ServerError):
    """A backup or restore that cannot be made; the message says what to do."""

    status = 400
    code = "backup"


@dataclass
class Summary:
    database: str  # sqlite or postgresql
    store: str  # fs or s3
    artifacts: int = 0
    artifact_bytes: int = 0
    files: list[str] = field(default_factory=list)  # the data directory's files, relative
    notes: list[str] = field(default_factory=list)


def _kind(url: str) -> str:
    return "postgresql" if url.startswith("postgresql") else "sqlite"


def _libpq(url: str) -> str:
    """The URL as libpq's tools take it (no SQLAlchemy driver suffix)."""
    return re.sub(r"^postgresql\+\w+://", "postgresql://", url)


def _sqlite_path(url: str) -> Path:
    name = make_url(url).database
    if not name or name == ":memory:":
        raise BackupError(f"{url} is not a SQLite database file")
    return Path(name)


def _run(cmd: list[str], what: str) -> None:
    tool = shutil.which(cmd[0])
    if tool is None:
        raise BackupError(f"{cmd[0]} is not installed: install the PostgreSQL client tools (Debian: postgresql-client)")
    proc = subprocess.run([tool, *cmd[1:]], capture_output=True, text=True)
    if proc.returncode != 0:
        raise BackupError(f"{what} failed: {proc.stderr.strip()[-2000:]}")


def _sqlite_copy(src: Path, dst: Path) -> None:
    """A consistent copy of a live SQLite database (the online backup API: writers may go on meanwhile)."""
    if not src.exists():
        raise BackupError(f"the database {src} does not exist: is BULKHEAD_DATA_DIR (or BULKHEAD_DATABASE_URL) right?")
    source = sqlite3.connect(src, timeout=30)
    target = sqlite3.connect(dst)
    try:
        source.backup(target)
    finally:
        target.close()
        source.close()


def _data_files(data_dir: Path, db_file: Path | None) -> Iterator[tuple[Path, str]]:
    """The data directory's own regular files (path, archive name), sorted, without what _SKIP names."""
    for root, dirs, files in os.walk(data_dir):
        rel_root = Path(root).relative_to(data_dir)
        if rel_root == Path("."):
            dirs[:] = [d for d in dirs if not _SKIP.search(d)]
        dirs.sort()
        for name in sorted(files):
            path = Path(root) / name
            if rel_root == Path(".") and (_SKIP.search(name) or (db_file is not None and path == db_file)):
                continue
            if _SKIP.search(name) or not path.is_file() or path.is_symlink():
                continue  # sockets (gpg-agent), locks, logs
            yield path, (rel_root / name).as_posix()


def _artifacts(root: Path) -> Iterator[tuple[Path, str]]:
    if not root.is_dir():
        return
    for sub in sorted(p for p in root.iterdir() if p.is_dir() and re.fullmatch(r"[0-9a-f]{2}", p.name)):
        for path in sorted(sub.iterdir()):
            if re.fullmatch(r"[0-9a-f]{64}", path.name) and path.name.startswith(sub.name) and path.is_file():
                yield path, f"artifacts/{sub.name}/{path.name}"


def _add(tar: tarfile.TarFile, path: Path, name: str, mode: int = 0o600) -> None:
    info = tar.gettarinfo(str(path), arcname=name)
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mode = mode
    with path.open("rb") as f:
        tar.addfile(info, f)


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), 0o600, int(time.time())
    tar.addfile(info, io.BytesIO(data))


def _tar_mode(path: Path, write: bool) -> Any:
    gz = path.name.endswith((".gz", ".tgz"))
    return ("w:gz" if gz else "w") if write else "r:*"


def backup(settings: Settings, out: Path) -> Summary:
    """Write a backup of the server `settings` describe to `out` (replaced atomically; the server may be running)."""
    url = settings.db_url
    summary = Summary(_kind(url), settings.store)
    out = out.resolve()
    if out.is_relative_to(settings.data_dir.resolve()):
        raise BackupError(f"write the backup outside the data directory {settings.data_dir}, not to {out}")
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".bulkhead-backup-", dir=out.parent) as tmp:
        work = Path(tmp)
        db_file: Path | None = None
        if summary.database == "sqlite":
            db_file = _sqlite_path(url).resolve()
            _sqlite_copy(db_file, work / "database.sqlite")
            db_member = "database.sqlite"
        else:
            db_member = "database.pgdump"
            _run(
                ["pg_dump", "--format=custom", "--no-owner", "--no-privileges", f"--file={work / db_member}", _libpq(url)],
                "pg_dump of the database",
            )
        jobs = settings.data_dir / "jobs.db"
        has_jobs = settings.jobs_url is None and jobs.exists()
        if has_jobs:
            _sqlite_copy(jobs, work / "jobs.sqlite")
        if os.environ.get("BULKHEAD_SECRET"):
            summary.notes.append("BULKHEAD_SECRET is set in the environment: keep it (it is not in the backup)")
        if os.environ.get("BULKHEAD_ADMIN_TOKEN"):
            summary.notes.append("BULKHEAD_ADMIN_TOKEN is set in the environment: keep it (it is not in the backup)")
        if settings.store == "s3":
            summary.notes.append(
                f"artifacts are in the S3 bucket {settings.s3_bucket} and not in this backup: "
                "keep the bucket (versioning or replication, docs/deploy.md)"
            )
        partial = work / ("backup.tar" + (".gz" if _tar_mode(out, True) == "w:gz" else ""))
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode=_tar_mode(out, True)) as tar:
            _add(tar, work / db_member, db_member)
            if has_jobs:
                _add(tar, work / "jobs.sqlite", "jobs.sqlite")
            for path, name in _data_files(settings.data_dir, db_file):
                _add(tar, path, f"data/{name}")
                summary.files.append(name)
            if settings.store == "fs":
                for path, name in _artifacts(settings.artifacts_dir):
                    _add(tar, path, name, 0o444)
                    summary.artifacts += 1
                    summary.artifact_bytes += path.stat().st_size
            manifest = {
                "format": FORMAT,
                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "database": summary.database,
                "database_member": db_member,
                "jobs": has_jobs,
                "store": settings.store,
                "s3_bucket": settings.s3_bucket if settings.store == "s3" else None,
                "artifacts": summary.artifacts,
                "artifact_bytes": summary.artifact_bytes,
                "files": summary.files,
                "notes": summary.notes,
            }
            _add_bytes(tar, "manifest.json", json.dumps(manifest, indent=2).encode())
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(partial, out)
    return summary


def _fresh(settings: Settings) -> None:
    """Refuse to restore over a server that has data: the data directory must be new (empty but for artifacts/)."""
    busy = [p.name for p in settings.data_dir.iterdir() if p.name != "artifacts" and not p.name.endswith(".log")]
    store = settings.artifacts_dir
    if store.is_dir():
        busy += [f"artifacts/{p.name}" for p in store.iterdir() if p.name != ".incoming" or any(p.iterdir())]
    if busy:
        raise BackupError(
            f"the data directory {settings.data_dir} is not empty ({', '.join(sorted(busy)[:5])}): restore into a new, "
            "empty data directory (and an empty database), then point the server at it"
        )


def _pg_empty(url: str) -> None:
    import psycopg

    try:
        with psycopg.connect(_libpq(url), connect_timeout=10) as conn:
            row = conn.execute("SELECT count(*) FROM information_schema.tables WHERE table_schema = current_schema()").fetchone()
    except psycopg.Error as exc:
        raise BackupError(f"cannot connect to the target database: {exc}") from exc
    if row and row[0]:
        raise BackupError(
            "the target PostgreSQL database is not empty: create a new one (createdb) and set BULKHEAD_DATABASE_URL to it"
        )


def _safe(name: str) -> str:
    parts = Path(name).parts
    if not name or name.startswith("/") or ".." in parts or "\\" in name:
        raise BackupError(f"the backup holds an unsafe path {name!r}: it is not a Bulkhead backup")
    return name


def _write(src: IO[bytes], dst: Path, mode: int, sha256: str | None = None) -> int:
    """Copy `src` to `dst` (new file, `mode`); with `sha256`, fail unless the bytes have that digest."""
    dst.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    h = hashlib.sha256()
    size = 0
    tmp = dst.with_name(f".{dst.name}.restoring")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        while chunk := src.read(_CHUNK):
            f.write(chunk)
            h.update(chunk)
            size += len(chunk)
        f.flush()
        os.fsync(f.fileno())
    if sha256 is not None and h.hexdigest() != sha256:
        tmp.unlink()
        raise BackupError(f"artifact {sha256} in the backup is damaged (its bytes hash to {h.hexdigest()})")
    os.chmod(tmp, mode)
    os.replace(tmp, dst)
    return size


def _manifest(tar: tarfile.TarFile, archive: Path) -> dict[str, Any]:
    try:
        member = tar.extractfile("manifest.json")
        manifest = json.load(member) if member else None
    except (KeyError, ValueError):
        manifest = None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BackupError(f"{archive} has no manifest.json of backup format {FORMAT}: it is not a Bulkhead backup")
    return manifest


def _check_target(settings: Settings, manifest: dict[str, Any]) -> str:
    """The target's database kind, once the target is known to fit the backup and to be empty."""
    target = _kind(settings.db_url)
    if manifest["database"] != target:
        raise BackupError(
            f"the backup holds a {manifest['database']} database but the target is {target}: "
            + (
                "set BULKHEAD_DATABASE_URL to a new, empty PostgreSQL database"
                if manifest["database"] == "postgresql"
                else "unset BULKHEAD_DATABASE_URL (or give a sqlite:/// URL)"
            )
        )
    if manifest.get("store", "fs") == "fs" and settings.store == "s3":
        raise BackupError("the backup holds a filesystem artifact store: restore it with BULKHEAD_STORE=fs (unset)")
    _fresh(settings)
    if target == "postgresql":
        _pg_empty(settings.db_url)
    return target


def _unpack(tar: tarfile.TarFile, settings: Settings, manifest: dict[str, Any], work: Path, summary: Summary) -> Path | None:
    """Write the backup's files into the data directory; returns the PostgreSQL dump to restore, if any."""
    dump: Path | None = None
    for info in tar:
        name = _safe(info.name)
        if info.isdir() or name == "manifest.json":
            continue
        if not info.isfile():
            raise BackupError(f"the backup holds {name!r}, which is not a regular file: it is not a Bulkhead backup")
        src = tar.extractfile(info)
        assert src is not None
        if name == manifest.get("database_member"):
            if summary.database == "sqlite":
                _write(src, _sqlite_path(settings.db_url), 0o600)
            else:
                dump = work / "database.pgdump"
                _write(src, dump, 0o600)
        elif name == "jobs.sqlite":
            if settings.jobs_url is None:
                _write(src, settings.data_dir / "jobs.db", 0o600)
        elif m := _ARTIFACT.match(name):
            if not m.group(2).startswith(m.group(1)):
                raise BackupError(f"the backup holds a misplaced artifact {name!r}")
            summary.artifact_bytes += _write(src, settings.artifacts_dir / m.group(1) / m.group(2), 0o444, m.group(2))
            summary.artifacts += 1
        elif name.startswith("data/"):
            rel = name.removeprefix("data/")
            _write(src, settings.data_dir / rel, 0o600)
            summary.files.append(rel)
        else:
            raise BackupError(f"the backup holds an unknown member {name!r}: it was made by a newer Bulkhead")
    if summary.artifacts != manifest.get("artifacts", summary.artifacts):
        raise BackupError(f"the backup is truncated: {summary.artifacts} of {manifest['artifacts']} artifacts in it")
    return dump


def _empty_again(data_dir: Path) -> None:
    """Undo a restore that did not finish: the data directory was fresh, so everything in it is ours."""
    for p in data_dir.iterdir():
        if p.name.endswith(".log"):
            continue
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
    (data_dir / "artifacts").mkdir(mode=0o700, exist_ok=True)


def restore(settings: Settings, archive: Path) -> Summary:
    """Restore `archive` into the fresh data directory (and empty database) that `settings` describe.

    The files are written and checked first and the PostgreSQL dump restored last, in one transaction: a backup
    that turns out damaged leaves the data directory empty again and the database untouched.
    """
    if not archive.is_file():
        raise BackupError(f"{archive} is not a file: give the path of a backup made by `bulkhead backup create`")
    try:
        tar = tarfile.open(archive, _tar_mode(archive, False))  # noqa: SIM115 - closed by the `with tar` below
    except (tarfile.TarError, OSError) as exc:
        raise BackupError(f"{archive} is not a Bulkhead backup (not a tar file: {exc})") from exc
    with tar:
        try:
            manifest = _manifest(tar, archive)
        except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
            raise BackupError(f"{archive} is damaged or truncated ({exc}): take another backup") from exc
        summary = Summary(_check_target(settings, manifest), manifest.get("store", "fs"), notes=list(manifest.get("notes", [])))
        try:
            with tempfile.TemporaryDirectory(prefix=".restore-", dir=settings.data_dir) as tmp:
                dump = _unpack(tar, settings, manifest, Path(tmp), summary)
                if dump is not None:
                    _run(
                        [
                            "pg_restore",
                            "--no-owner",
                            "--no-privileges",
                            "--exit-on-error",
                            "--single-transaction",
                            f"--dbname={_libpq(settings.db_url)}",
                            str(dump),
                        ],
                        "pg_restore into the target database",
                    )
        except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
            _empty_again(settings.data_dir)
            raise BackupError(f"{archive} is damaged or truncated ({exc}): nothing was restored") from exc
        except BaseException:
            _empty_again(settings.data_dir)
            raise
    return summary
