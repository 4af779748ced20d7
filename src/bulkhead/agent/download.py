"""Resumable artifact download: Range from what is on disk, If-Range on the ETag, size and sha256 checked."""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from pathlib import Path

from .backoff import full_jitter
from .client import Client
from .errors import DownloadError, IntegrityError, ServerUnreachable
from .state import ReleaseRef

__all__ = ["discard_downloads", "fetch_release", "sha256_file"]

log = logging.getLogger(__name__)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def fetch_release(
    client: Client,
    rel: ReleaseRef,
    directory: Path,
    on_progress: Callable[[int, int], None] | None = None,
    rate_limit: int | None = None,
    max_wait: float = 60.0,
    sleep: Callable[[float], None] = time.sleep,
    max_tries: int = 8,
) -> Path:
    """Download the release's bundle into `directory`, resuming any bytes already there; returns the verified file.

    Network failures are retried with full-jitter exponential backoff (windows capped at `max_wait` seconds) and
    always resume from the bytes on disk; an artifact that changed on the server restarts from 0. After
    `max_tries` tries in a row that brought no byte, the ServerUnreachable goes up to the main loop, which polls
    again (the desired release may have changed) and resumes the download on its next pass.
    Errors of the local disk (full, read-only) are a DownloadError naming the directory.
    """
    try:
        return _fetch(client, rel, directory, on_progress, rate_limit, max_wait, sleep, max_tries)
    except OSError as e:
        raise DownloadError(f"release {rel.version}: cannot keep the download in {directory}: {e}") from None


def _fetch(
    client: Client,
    rel: ReleaseRef,
    directory: Path,
    on_progress: Callable[[int, int], None] | None,
    rate_limit: int | None,
    max_wait: float,
    sleep: Callable[[float], None],
    max_tries: int,
) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    final = directory / f"{rel.sha256}.raucb"
    if final.exists() and final.stat().st_size == rel.size and sha256_file(final) == rel.sha256:
        return final
    part = directory / f"{rel.sha256}.raucb.part"
    etag_file = directory / f"{rel.sha256}.etag"
    for stale in directory.glob("*.raucb*"):  # other releases' leftovers: free the space
        if not stale.name.startswith(rel.sha256):
            stale.unlink(missing_ok=True)
    failures, integrity_retries = 0, 0
    while True:
        have = part.stat().st_size if part.exists() else 0
        if have > rel.size:
            log.warning("partial download is larger than the release (%d > %d): starting over", have, rel.size)
            part.unlink()
            have = 0
        if have < rel.size:
            etag = etag_file.read_text().strip() if etag_file.exists() and have else None
            if have:
                log.info("resuming download of %s at byte %d of %d", rel.version, have, rel.size)
            done = have

            def progress(n: int) -> None:
                nonlocal done
                done += n
                if on_progress is not None:
                    on_progress(done, rel.size)

            try:
                with part.open("ab") as f:
                    fetched = client.download(rel.url, f, have, etag, progress, rate_limit)
                if fetched.etag:
                    etag_file.write_text(fetched.etag)
                if fetched.restarted:
                    log.warning("the artifact changed on the server: the download restarted from byte 0")
                if fetched.written == 0:
                    raise ServerUnreachable("the server closed the connection without sending bytes")
                failures = 0
            except ServerUnreachable as e:
                failures = 0 if done > have else failures + 1  # bytes arrived before the cut: progress
                if failures >= max_tries:
                    raise ServerUnreachable(f"download of {rel.version}: {failures} tries brought no byte; last: {e}") from None
                delay = full_jitter(failures, cap=max_wait)
                log.warning("download interrupted (%s); retrying in %.1f s", e, delay)
                sleep(delay)
                continue
            continue  # loop re-checks the size on disk
        if sha256_file(part) != rel.sha256:
            part.unlink()
            etag_file.unlink(missing_ok=True)
            integrity_retries += 1
            if integrity_retries > 1:
                raise IntegrityError(f"release {rel.version}: downloaded bytes do not match sha256 {rel.sha256} (twice)")
            log.warning("downloaded bundle does not match its sha256: downloading it again")
            continue
        part.replace(final)
        etag_file.unlink(missing_ok=True)
        return final


def discard_downloads(directory: Path) -> None:
    for f in directory.glob("*.raucb*"):
        f.unlink(missing_ok=True)
    for f in directory.glob("*.etag"):
        f.unlink(missing_ok=True)
