"""Content-addressed artifact store on the filesystem (sha256 → file)."""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

__all__ = ["ArtifactStore"]

_SHA = re.compile(r"^[0-9a-f]{64}$")


class ArtifactStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.incoming = root / ".incoming"
        self.incoming.mkdir(parents=True, exist_ok=True)

    def path(self, sha256: str) -> Path:
        if not _SHA.match(sha256):
            raise ValueError("not a sha256 digest")
        return self.root / sha256[:2] / sha256

    def new_upload(self) -> tuple[int, Path]:
        """A temporary file for an upload in progress (same filesystem, so commit is a rename)."""
        fd, name = tempfile.mkstemp(prefix="upload-", dir=self.incoming)
        return fd, Path(name)

    def commit(self, tmp: Path, sha256: str) -> Path:
        dst = self.path(sha256)
        dst.parent.mkdir(exist_ok=True)
        if dst.exists():
            tmp.unlink(missing_ok=True)
        else:
            os.replace(tmp, dst)
            os.chmod(dst, 0o444)
        return dst

    def remove(self, sha256: str) -> None:
        self.path(sha256).unlink(missing_ok=True)

    def clean_incoming(self) -> None:
        """Drop uploads left behind by a crash (called at start)."""
        for p in self.incoming.iterdir():
            p.unlink(missing_ok=True)
