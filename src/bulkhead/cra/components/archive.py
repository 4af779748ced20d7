"""The documents of a Yocto SPDX 2 image archive (`IMAGE-MACHINE.rootfs.spdx.tar.zst`, or .tar/.tar.gz/.tar.xz).

Yocto's create-spdx-2.2 deploys the image SBOM as a tar of JSON documents (the image document, one per package,
recipe and runtime dependency, plus index.json); read_spdx2 needs all of them. Bounded: members and unpacked
bytes are limited so that a hostile archive cannot exhaust memory.
"""

from __future__ import annotations

import io
import json
import tarfile
from typing import Any

import zstandard

from ..errors import SbomContentError

__all__ = ["MAX_UNPACKED_BYTES", "spdx_archive_documents"]

MAX_UNPACKED_BYTES = 512 * 1024 * 1024
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"  # a zstd frame; pzstd (Yocto's default) starts with a skippable frame instead


def _is_zstd(data: bytes) -> bool:
    skippable = data[1:4] == b"\x2a\x4d\x18" and 0x50 <= data[0] <= 0x5F
    return data.startswith(_ZSTD_MAGIC) or skippable


def _unzstd(data: bytes, max_bytes: int) -> bytes:
    """Decompress every frame (pzstd writes many), refusing more than max_bytes."""
    out = bytearray()
    try:
        with zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data), read_across_frames=True) as reader:
            while chunk := reader.read(1 << 20):
                out += chunk
                if len(out) > max_bytes:
                    raise SbomContentError(f"the SPDX archive unpacks to more than {max_bytes} bytes; refusing it")
    except zstandard.ZstdError as e:
        raise SbomContentError(f"not a readable SPDX archive (zstd): {e}") from e
    return bytes(out)


def spdx_archive_documents(data: bytes, max_bytes: int = MAX_UNPACKED_BYTES) -> list[dict[str, Any]]:
    """Every `*.spdx.json` document of the archive (index.json is only a table of contents and is skipped)."""
    if _is_zstd(data):
        data = _unzstd(data, max_bytes)
    out: list[dict[str, Any]] = []
    total = 0
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tar:
            for member in tar:
                if not member.isfile() or not member.name.endswith(".spdx.json"):
                    continue
                total += member.size
                if total > max_bytes:
                    raise SbomContentError(f"the SPDX archive unpacks to more than {max_bytes} bytes; refusing it")
                f = tar.extractfile(member)
                if f is None:
                    continue
                doc = json.loads(f.read())
                if not isinstance(doc, dict):
                    raise SbomContentError(f"{member.name} in the SPDX archive is not a JSON object")
                out.append(doc)
    except (tarfile.TarError, zstandard.ZstdError, EOFError, OSError) as e:
        raise SbomContentError(f"not a readable SPDX archive (tar, optionally zstd/gzip/xz compressed): {e}") from e
    except json.JSONDecodeError as e:
        raise SbomContentError(f"a document in the SPDX archive is not JSON: {e}") from e
    if not out:
        raise SbomContentError("the archive holds no *.spdx.json document")
    return out
