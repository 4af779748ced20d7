"""The agent's side of the agent protocol over plain `http.client`: enroll, desired state with ETag, reports, downloads."""

from __future__ import annotations

import http.client
import json
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urlsplit

from .errors import DownloadError, ServerRejected, ServerUnreachable

__all__ = ["Client", "Fetched", "Response"]

USER_AGENT = "bulkhead-agent"
_CHUNK = 64 * 1024


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def error(self) -> str:
        try:
            doc = json.loads(self.body)
            return str(doc.get("detail") or doc.get("error") or doc)
        except ValueError:
            return self.body[:300].decode(errors="replace")


@dataclass
class Fetched:
    """The outcome of one (possibly partial) download attempt."""

    written: int  # bytes appended to the file by this attempt
    restarted: bool  # the server ignored the range (the artifact changed), so the file was restarted from 0
    total: int | None
    etag: str | None


class Client:
    """One HTTP(S) connection per call; the agent makes few requests, so simplicity beats pooling."""

    def __init__(self, server: str, ca_file: Path | None = None, timeout: float = 30.0) -> None:
        self.server = server.rstrip("/")
        self.timeout = timeout
        self.credential: str | None = None
        self._ssl = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)

    def _connect(self, url: str) -> tuple[http.client.HTTPConnection, str]:
        parts = urlsplit(url if "://" in url else self.server + url)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        if parts.scheme == "https":
            return http.client.HTTPSConnection(parts.netloc, timeout=self.timeout, context=self._ssl), path
        return http.client.HTTPConnection(parts.netloc, timeout=self.timeout), path

    def _headers(self, extra: dict[str, str] | None, auth: bool) -> dict[str, str]:
        h = {"user-agent": USER_AGENT, "accept-encoding": "identity"}
        if auth and self.credential:
            h["authorization"] = f"Bearer {self.credential}"
        return {**h, **(extra or {})}

    def request(
        self, method: str, url: str, body: Any = None, headers: dict[str, str] | None = None, auth: bool = True
    ) -> Response:
        """A JSON request; 5xx and network errors raise ServerUnreachable, other non-2xx/304 ServerRejected."""
        data = json.dumps(body).encode() if body is not None else None
        h = self._headers(headers, auth)
        if data is not None:
            h["content-type"] = "application/json"
        conn, path = self._connect(url)
        try:
            conn.request(method, path, body=data, headers=h)
            r = conn.getresponse()
            resp = Response(r.status, {k.lower(): v for k, v in r.getheaders()}, r.read())
        except (OSError, http.client.HTTPException) as e:
            raise ServerUnreachable(f"{method} {url}: {e}") from None
        finally:
            conn.close()
        if resp.status >= 500:
            raise ServerUnreachable(f"{method} {url}: server error {resp.status}: {resp.error()}")
        if resp.status >= 400:
            raise ServerRejected(resp.status, resp.error())
        return resp

    def rotate_credential(self) -> str:
        """Swap this device's credential for a new one (POST /device/v1/credential/rotate); the caller persists it."""
        doc = self.request("POST", "/device/v1/credential/rotate").json()
        self.credential = str(doc["credential"])
        return self.credential

    def download(
        self,
        url: str,
        out: BinaryIO,
        offset: int,
        etag: str | None,
        on_bytes: Callable[[int], None] | None = None,
        rate_limit: int | None = None,
        auth: bool = True,
    ) -> Fetched:
        """Append the artifact from `offset` to `out` with a Range request; If-Range guards against a changed artifact."""
        h = self._headers({"if-range": etag} if etag and offset else None, auth)
        if offset:
            h["range"] = f"bytes={offset}-"
        conn, path = self._connect(url)
        written = 0
        try:
            conn.request("GET", path, headers=h)
            r = conn.getresponse()
            if r.status >= 500:
                raise ServerUnreachable(f"download: server error {r.status}")
            if r.status == 416:
                raise DownloadError(f"the server has fewer than {offset} bytes of this artifact")
            if r.status >= 400:
                raise ServerRejected(r.status, r.read(300).decode(errors="replace"))
            restarted = False
            total: int | None = None
            if r.status == 206:
                crange = r.getheader("content-range", "")
                start = int(crange.split()[1].split("-")[0]) if crange.startswith("bytes ") else -1
                if start != offset:
                    raise DownloadError(f"server answered range starting at {start}, asked for {offset}")
                total = int(crange.rsplit("/", 1)[1]) if "/" in crange and not crange.endswith("*") else None
            else:  # 200: the whole artifact (no range support, or If-Range did not match)
                if offset:
                    out.seek(0)
                    out.truncate()
                    restarted = True
                length = r.getheader("content-length")
                total = int(length) if length and length.isdigit() else None
            started = time.monotonic()
            while True:
                chunk = r.read(_CHUNK)
                if not chunk:
                    break
                out.write(chunk)
                written += len(chunk)
                if on_bytes is not None:
                    on_bytes(len(chunk))
                if rate_limit:
                    ahead = written / rate_limit - (time.monotonic() - started)
                    if ahead > 0:
                        time.sleep(ahead)
            return Fetched(written, restarted, total, r.getheader("etag"))
        except (OSError, http.client.HTTPException) as e:
            raise ServerUnreachable(f"download interrupted after {written} bytes: {e}") from None
        finally:
            out.flush()
            conn.close()
