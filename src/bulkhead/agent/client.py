"""The agent's side of the agent protocol over plain `http.client`: enroll, desired state with ETag, reports, downloads."""

from __future__ import annotations

import http.client
import json
import re
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urljoin, urlsplit

from .errors import BadResponse, ConfigError, DownloadError, ServerRejected, ServerUnreachable, TLSError, TunnelError
from .websocket import WebSocket

__all__ = ["Client", "Fetched", "Response", "parse_content_range"]

USER_AGENT = "bulkhead-agent"
_CHUNK = 64 * 1024


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> dict[str, Any]:
        """The body as a JSON object; anything else (a captive portal's HTML, truncated JSON) is a BadResponse."""
        ctype = self.headers.get("content-type", "application/json").split(";")[0].strip().lower()
        if not (ctype == "application/json" or ctype.endswith("+json")):
            got = ctype or "no content type"
            raise BadResponse(f"expected JSON, got {got} ({_snippet(self.body)}): a captive portal or proxy?")
        try:
            doc = json.loads(self.body)
        except (ValueError, RecursionError) as e:
            raise BadResponse(f"the server's JSON does not parse ({e}): {_snippet(self.body)}") from None
        if not isinstance(doc, dict):
            raise BadResponse(f"expected a JSON object, got {type(doc).__name__}: {_snippet(self.body)}")
        return doc

    def error(self) -> str:
        try:
            doc = json.loads(self.body)
            return str(doc.get("detail") or doc.get("error") or doc) if isinstance(doc, dict) else _snippet(self.body)
        except (ValueError, RecursionError):
            return _snippet(self.body)


def _snippet(body: bytes, n: int = 200) -> str:
    text = body[:n].decode(errors="replace")
    return repr(text) + ("..." if len(body) > n else "")


_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


def parse_content_range(value: str | None) -> tuple[int, int, int | None]:
    """`bytes START-END/TOTAL` (TOTAL may be `*`); anything else is a BadResponse."""
    m = _CONTENT_RANGE.fullmatch((value or "").strip())
    if m is None:
        raise BadResponse(f"malformed Content-Range {value!r} in a 206 answer")
    start, end = int(m.group(1)), int(m.group(2))
    total = int(m.group(3)) if m.group(3) != "*" else None
    if end < start or (total is not None and end >= total):
        raise BadResponse(f"inconsistent Content-Range {value!r} in a 206 answer")
    return start, end, total


@dataclass
class Fetched:
    """The outcome of one (possibly partial) download attempt."""

    written: int  # bytes appended to the file by this attempt
    restarted: bool  # the server ignored the range (the artifact changed), so the file was restarted from 0
    total: int | None
    etag: str | None


class Client:
    """One HTTP(S) connection per call; the agent makes few requests, so simplicity beats pooling.

    Every failure leaves this class as an AgentError: network, TLS and HTTP-parsing exceptions of the standard
    library are wrapped here (ServerUnreachable, TLSError, BadResponse), so the rest of the agent sees only its own.
    """

    def __init__(
        self,
        server: str,
        ca_file: Path | None = None,
        timeout: float = 30.0,
        client_cert: Path | None = None,
        client_key: Path | None = None,
    ) -> None:
        self.server = server.rstrip("/")
        self.timeout = timeout
        self.credential: str | None = None
        self.ca_file = ca_file
        # The server is verified (hostname and chain) against `ca_file` alone when given, else the system trust store.
        try:
            self._ssl = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
        except (OSError, ValueError) as e:  # ssl.SSLError is an OSError
            raise ConfigError(f"ca_file {ca_file}: cannot load the CA bundle ({e}); it must be PEM certificates") from None
        if client_cert is not None:  # mutual TLS: the device shows its certificate (nginx's trusted-header mode)
            try:
                self._ssl.load_cert_chain(str(client_cert), str(client_key) if client_key else None)
            except (OSError, ValueError) as e:
                raise ConfigError(
                    f"client_cert {client_cert} / client_key {client_key or '(in client_cert)'}: cannot load ({e}); "
                    "they must be a PEM certificate and its unencrypted private key"
                ) from None

    def _connect(self, url: str) -> tuple[http.client.HTTPConnection, str]:
        try:
            parts = urlsplit(url if "://" in url else self.server + url)
            path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            if parts.scheme == "https":
                return http.client.HTTPSConnection(parts.netloc, timeout=self.timeout, context=self._ssl), path
            if parts.scheme == "http":
                return http.client.HTTPConnection(parts.netloc, timeout=self.timeout), path
        except (ValueError, http.client.HTTPException) as e:  # e.g. a non-numeric port in a URL the server sent
            raise BadResponse(f"unusable URL {url!r}: {e}") from None
        raise BadResponse(f"unusable URL {url!r}: only http and https are supported")

    def _wrap(self, e: BaseException, what: str) -> ServerUnreachable:
        """A standard-library exception from talking to the server, as the agent's own error."""
        if isinstance(e, ssl.SSLCertVerificationError):
            trust = f"the CA bundle {self.ca_file}" if self.ca_file else "the system trust store (set ca_file in agent.toml)"
            return TLSError(f"{what}: the server's certificate is not trusted by {trust}: {e.verify_message or e}")
        if isinstance(e, ssl.SSLError):
            return TLSError(f"{what}: TLS failed ({e}); check ca_file, client_cert and client_key in agent.toml")
        if isinstance(e, (OSError, http.client.HTTPException)):
            return ServerUnreachable(f"{what}: {type(e).__name__}: {e}")
        return BadResponse(f"{what}: malformed answer: {type(e).__name__}: {e}")

    def _headers(self, extra: dict[str, str] | None, auth: bool) -> dict[str, str]:
        h = {"user-agent": USER_AGENT, "accept-encoding": "identity"}
        if auth and self.credential:
            h["authorization"] = f"Bearer {self.credential}"
        return {**h, **(extra or {})}

    def websocket(self, url: str) -> WebSocket:
        """A WebSocket to `url` with the device's credential, over the same TLS settings (remote sessions)."""
        try:
            return WebSocket.connect(url, self._headers(None, True), self._ssl, self.timeout)
        except TunnelError:
            raise
        except (OSError, ValueError) as e:
            raise self._wrap(e, f"WebSocket {url}") from None

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
        except (OSError, http.client.HTTPException, ValueError, UnicodeError) as e:
            raise self._wrap(e, f"{method} {url}") from None
        finally:
            conn.close()
        if resp.status >= 500:
            raise ServerUnreachable(f"{method} {url}: server error {resp.status}: {resp.error()}")
        if resp.status >= 400:
            raise ServerRejected(resp.status, resp.error())
        if not (200 <= resp.status < 300 or resp.status == 304):
            raise BadResponse(f"{method} {url}: unexpected status {resp.status} (a proxy or captive portal?)")
        return resp

    def rotate_credential(self) -> str:
        """A new credential for this device (POST /device/v1/credential/rotate); the caller persists it, then uses it.

        The server keeps the old credential valid until the new one is first used, so an answer lost on the way
        (or a power cut before it is on disk) is repaired by rotating again with the old one.
        """
        doc = self.request("POST", "/device/v1/credential/rotate").json()
        new = doc.get("credential") if isinstance(doc, dict) else None
        if not isinstance(new, str) or not new or not new.isprintable():
            raise BadResponse("the credential rotation answer has no credential")
        return new

    def download(
        self,
        url: str,
        out: BinaryIO,
        offset: int,
        etag: str | None,
        on_bytes: Callable[[int], None] | None = None,
        rate_limit: int | None = None,
        auth: bool = True,
        hops: int = 0,
    ) -> Fetched:
        """Append the artifact from `offset` to `out` with a Range request; If-Range guards against a changed artifact.

        A redirect (a server whose artifacts are in object storage hands out presigned URLs) is followed once,
        without the credential; the redirect's ETag stays the artifact's (the storage's own ETag is another)."""
        h = self._headers({"if-range": etag} if etag and offset else None, auth)
        if offset:
            h["range"] = f"bytes={offset}-"
        conn, path = self._connect(url)
        written = 0
        try:
            conn.request("GET", path, headers=h)
            r = conn.getresponse()
            location = r.getheader("location")
            if r.status in (301, 302, 303, 307, 308) and location and hops == 0:
                # The target is content-addressed (immutable): its range needs no If-Range.
                got = self.download(urljoin(url, location), out, offset, None, on_bytes, rate_limit, False, 1)
                return Fetched(got.written, got.restarted, got.total, r.getheader("etag") or got.etag)
            if r.status >= 500:
                raise ServerUnreachable(f"download: server error {r.status}")
            if r.status == 416:
                raise DownloadError(f"the server has fewer than {offset} bytes of this artifact")
            if r.status >= 400:
                raise ServerRejected(r.status, r.read(300).decode(errors="replace"))
            if r.status not in (200, 206):
                raise BadResponse(f"download: unexpected status {r.status} (a proxy or captive portal?)")
            restarted = False
            total: int | None = None
            if r.status == 206:
                start, _end, total = parse_content_range(r.getheader("content-range"))
                if start != offset:
                    raise DownloadError(f"server answered range starting at {start}, asked for {offset}")
            else:  # 200: the whole artifact (no range support, or If-Range did not match)
                if offset:
                    out.seek(0)
                    out.truncate()
                    restarted = True
                length = r.getheader("content-length")
                total = int(length) if length and length.isascii() and length.isdigit() else None
            started = time.monotonic()
            while True:
                chunk = r.read(_CHUNK)
                if not chunk:
                    break
                try:
                    out.write(chunk)
                except OSError as e:  # the device's disk, not the network: retrying the request will not help
                    raise DownloadError(f"cannot store the download: {e}; free space in the data partition") from None
                written += len(chunk)
                if on_bytes is not None:
                    on_bytes(len(chunk))
                if rate_limit:
                    ahead = written / rate_limit - (time.monotonic() - started)
                    if ahead > 0:
                        time.sleep(ahead)
            if r.length:  # http.client counts down the Content-Length; a short read at EOF does not raise by itself
                raise ServerUnreachable(f"download: the connection closed {r.length} bytes before the announced end")
            return Fetched(written, restarted, total, r.getheader("etag"))
        except (OSError, http.client.HTTPException, ValueError, UnicodeError) as e:
            raise self._wrap(e, f"download interrupted after {written} bytes") from None
        finally:
            out.flush()
            conn.close()
