"""A stored artifact as an HTTP response: the file itself from the filesystem store, else streamed from the store."""

from __future__ import annotations

from collections.abc import Iterator

from fastapi.responses import FileResponse, Response, StreamingResponse

from ..store import ArtifactStore

__all__ = ["stored_response"]

_CHUNK = 1 << 20


def stored_response(store: ArtifactStore, sha256: str, media_type: str, filename: str | None = None) -> Response:
    """`filename`: sent as an attachment under that name (a browser saves it instead of showing it)."""
    path = store.local_path(sha256)
    if path is not None:
        return FileResponse(path, media_type=media_type, filename=filename)
    headers = {"content-length": str(size := store.stat(sha256).size), "etag": f'"{sha256}"'}  # missing: 404 now
    if filename is not None:
        headers["content-disposition"] = f'attachment; filename="{filename}"'

    def chunks() -> Iterator[bytes]:
        body = store.get_range(sha256, 0, size)
        try:
            while data := body.read(_CHUNK):
                yield data
        finally:
            body.close()

    return StreamingResponse(chunks() if size else iter(()), media_type=media_type, headers=headers)
