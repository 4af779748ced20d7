"""A stored artifact as an HTTP response: the file itself from the filesystem store, else streamed from the store."""

from __future__ import annotations

from collections.abc import Iterator

from fastapi.responses import FileResponse, Response, StreamingResponse

from ..store import ArtifactStore

__all__ = ["stored_response"]

_CHUNK = 1 << 20


def stored_response(store: ArtifactStore, sha256: str, media_type: str) -> Response:
    path = store.local_path(sha256)
    if path is not None:
        return FileResponse(path, media_type=media_type)
    size = store.stat(sha256).size  # a missing object is a 404 before the response starts

    def chunks() -> Iterator[bytes]:
        body = store.get_range(sha256, 0, size)
        try:
            while data := body.read(_CHUNK):
                yield data
        finally:
            body.close()

    return StreamingResponse(
        chunks() if size else iter(()), media_type=media_type, headers={"content-length": str(size), "etag": f'"{sha256}"'}
    )
