"""An initramfs the delta can see through: its compressed part stored uncompressed (pure, but for the zstd tool).

Debian's initramfs-tools writes an initramfs as an uncompressed cpio archive of the files that are compressed
already (Debian's `.ko.xz` kernel modules, when the image keeps them: osbuild/kmods.py stores them uncompressed by
default) followed by the rest of the files, compressed (gzip, zstd or xz). Any
change to the image regenerates it, and a compressed stream that differs in one file differs almost everywhere
after it: a delta of two initramfs is as large as the compressed part. The kernel unpacks uncompressed cpio
archives as well, one after the other, so the compressed part is decompressed in place; the bundle's squashfs
compresses the image anyway. Compressed kernel modules in the first part stay as they are (each is compressed on its
own).
"""

from __future__ import annotations

import gzip
import lzma
import subprocess

from .errors import BuildError

__all__ = ["uncompressed_initramfs"]

_CPIO = (b"070701", b"070702")
_HEADER = 110  # newc: magic and 13 fields of 8 hex digits
_GZIP, _ZSTD, _XZ = b"\x1f\x8b", b"\x28\xb5\x2f\xfd", b"\xfd7zXZ\x00"


def _cpio_end(data: bytes, off: int) -> int:
    """The offset after the newc archive that starts at `off` (its TRAILER!!! entry, 4-byte aligned)."""
    while True:
        header = data[off : off + _HEADER]
        if len(header) < _HEADER or header[:6] not in _CPIO:
            raise BuildError(f"the initramfs has a broken cpio archive at byte {off}")
        try:
            size, name_size = int(header[54:62], 16), int(header[94:102], 16)
        except ValueError:
            raise BuildError(f"the initramfs has a broken cpio header at byte {off}") from None
        name = data[off + _HEADER : off + _HEADER + name_size - 1]
        off = (off + _HEADER + name_size + 3) & ~3
        off = (off + size + 3) & ~3
        if off > len(data):
            raise BuildError("the initramfs ends inside a cpio archive")
        if name == b"TRAILER!!!":
            return off


def _decompress(stream: bytes) -> bytes:
    try:
        if stream.startswith(_GZIP):
            return gzip.decompress(stream)
        if stream.startswith(_XZ):
            return lzma.decompress(stream)
    except (OSError, EOFError, lzma.LZMAError) as e:
        raise BuildError(f"the initramfs's compressed part is broken: {e}") from None
    if stream.startswith(_ZSTD):
        res = subprocess.run(["zstd", "-dcq"], input=stream, capture_output=True, check=False)
        if res.returncode != 0:
            raise BuildError(f"zstd could not decompress the initramfs: {res.stderr.decode(errors='replace').strip()}")
        return res.stdout
    raise BuildError(f"the initramfs has a part compressed in a way this build does not read (magic {stream[:6].hex()})")


def uncompressed_initramfs(data: bytes) -> bytes:
    """`data` with every compressed part replaced by the cpio archives it holds; uncompressed parts kept as they are."""
    out, off = [], 0
    while off < len(data):
        if data[off] == 0:  # padding between archives
            nxt = len(data) - len(data[off:].lstrip(b"\0"))
            out.append(data[off:nxt])
            off = nxt
        elif data[off : off + 6] in _CPIO:
            end = _cpio_end(data, off)
            out.append(data[off:end])
            off = end
        else:  # the compressed rest: one stream to the end
            out.append(uncompressed_initramfs(_decompress(data[off:])))
            break
    return b"".join(out)
