"""HTTP client for the management API: server URL and token from options or environment."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import typer
from rich.markup import escape
from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

from .errors import CliError

DEFAULT_SERVER = "http://127.0.0.1:8080"
# Rows per request when the CLI reads a paged list: the largest page the server gives, or BULKHEAD_PAGE_SIZE.
PAGE_SIZE = 1000

LimitOpt = typer.Option(None, "--limit", min=1, help="Print at most this many rows (default: all of them, page by page)")


class Client:
    def __init__(self, server: str, token: str | None) -> None:
        self.server = server.rstrip("/")
        headers = {"authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.Client(base_url=self.server, headers=headers, timeout=httpx.Timeout(30, read=600))

    def request(self, method: str, path: str, **kw: Any) -> Any:
        resp = self.raw(method, path, **kw)
        if resp.status_code == 204 or not resp.content:
            return None
        return resp.json()

    def pages(self, path: str, params: dict[str, Any] | None = None, limit: int | None = None) -> list[Any]:
        """Every row of a paged list (or the first `limit`): follows the X-Next-Cursor header from page to page."""
        rows: list[Any] = []
        cursor: str | None = None
        while True:
            page = int(os.environ.get("BULKHEAD_PAGE_SIZE") or PAGE_SIZE)
            size = page if limit is None else min(page, limit - len(rows))
            query = {**(params or {}), "limit": size, **({"cursor": cursor} if cursor else {})}
            resp = self.raw("GET", path, params=query)
            rows += resp.json()
            cursor = resp.headers.get("x-next-cursor")
            if not cursor or (limit is not None and len(rows) >= limit):
                return rows

    def raw(self, method: str, path: str, **kw: Any) -> httpx.Response:
        """The response of a successful request; a refusal or a network failure raises CliError."""
        try:
            resp = self.http.request(method, path, **kw)
        except httpx.ConnectError as exc:
            raise CliError(
                f"cannot reach the server at {self.server}: {exc}. Is it running? (--server / BULKHEAD_SERVER)"
            ) from exc
        except httpx.HTTPError as exc:
            raise CliError(f"request to {self.server}{path} failed: {exc}") from exc
        if resp.status_code >= 400:
            try:
                msg = resp.json().get("message") or resp.text
            except ValueError:
                msg = resp.text
            raise CliError(f"server answered {resp.status_code}: {msg}")
        return resp

    def upload(self, path: Path, show_progress: bool, params: dict[str, str] | None = None, url: str = "/api/v1/releases") -> Any:
        size = path.stat().st_size

        def chunks(progress: Progress | None, task: Any) -> Iterator[bytes]:
            with path.open("rb") as f:
                while chunk := f.read(1 << 20):
                    if progress is not None:
                        progress.update(task, advance=len(chunk))
                    yield chunk

        headers = {"content-type": "application/octet-stream", "content-length": str(size)}
        if not show_progress:
            return self.request("POST", url, content=chunks(None, None), headers=headers, params=params)
        with Progress(
            "[progress.description]{task.description}", BarColumn(), DownloadColumn(), TransferSpeedColumn(), transient=True
        ) as progress:
            task = progress.add_task(f"uploading {escape(path.name)}", total=size)
            return self.request("POST", url, content=chunks(progress, task), headers=headers, params=params)
