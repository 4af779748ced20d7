"""A shell session's recording: what the device's terminal showed, as an asciicast v2 file (asciinema's format:
a JSON header line, then `[seconds, "o", text]` for output and `[seconds, "r", "COLSxROWS"]` for a resize).

Only the output is kept (what the operator saw; what they typed echoes there, passwords do not), at most
`MAX_BYTES`; then a last event says the rest was left out.
"""

from __future__ import annotations

import codecs
import hashlib
import json
import time
from pathlib import Path
from typing import IO

__all__ = ["MAX_BYTES", "Recording"]

MAX_BYTES = 64 * 1024 * 1024


class Recording:
    def __init__(self, path: Path, session_id: int, cols: int = 80, rows: int = 24) -> None:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.path, self.started = path, time.monotonic()
        self._decode = codecs.getincrementaldecoder("utf-8")("replace")
        self._hash, self.size, self.full = hashlib.sha256(), 0, False
        self._f: IO[bytes] = path.open("wb")
        header = {"version": 2, "width": cols, "height": rows, "timestamp": int(time.time()), "title": f"session {session_id}"}
        self._line(header)

    def _line(self, doc: object) -> None:
        data = (json.dumps(doc, ensure_ascii=False) + "\n").encode()
        if self.full:
            return
        if self.size + len(data) > MAX_BYTES:
            self.full = True
            data = (json.dumps([self._at(), "o", "\r\n[recording stopped: it reached its size limit]\r\n"]) + "\n").encode()
        self._f.write(data)
        self._hash.update(data)
        self.size += len(data)

    def _at(self) -> float:
        return round(time.monotonic() - self.started, 6)

    def output(self, data: bytes) -> None:
        if text := self._decode.decode(data):
            self._line([self._at(), "o", text])

    def resize(self, cols: int, rows: int) -> None:
        self._line([self._at(), "r", f"{cols}x{rows}"])

    def finish(self) -> tuple[Path, str, int]:
        """The file, its sha256 and size, closed."""
        if text := self._decode.decode(b"", final=True):
            self._line([self._at(), "o", text])
        self._f.close()
        return self.path, self._hash.hexdigest(), self.size
