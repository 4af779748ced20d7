"""A read-only squashfs 4.0 reader over a random-access reader (enough for RAUC bundles)."""

from __future__ import annotations

import lzma
import struct
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from .errors import SquashfsError
from .reader import Reader, read_exact

__all__ = ["SquashEntry", "SquashFS"]

MAGIC = 0x73717368
_SUPER = struct.Struct("<IIIIIHHHHHHQQQQQQQQ")
_META_MAX = 8192
_NO_FRAGMENT = 0xFFFFFFFF
_DIR_TYPES = (1, 8)
_FILE_TYPES = (2, 9)


def _zstd(data: bytes) -> bytes:
    try:
        import zstandard  # optional: the server and CLI install it (extra "cli"); the agent does not need it
    except ImportError as exc:
        raise SquashfsError("squashfs uses zstd compression but the 'zstandard' module is not installed") from exc
    return bytes(zstandard.ZstdDecompressor().decompress(data, max_output_size=1 << 20))


_DECOMPRESS: dict[int, Callable[[bytes], bytes]] = {
    1: zlib.decompress,
    2: lambda d: lzma.decompress(d, format=lzma.FORMAT_ALONE),
    4: lambda d: lzma.decompress(d, format=lzma.FORMAT_XZ),
    6: _zstd,
}
_COMPRESSION_NAMES = {1: "gzip", 2: "lzma", 3: "lzo", 4: "xz", 5: "lz4", 6: "zstd"}


@dataclass(frozen=True)
class SquashEntry:
    """One directory entry: its name, type and (for files) size and data layout."""

    name: str
    kind: str
    size: int
    inode_ref: int


@dataclass(frozen=True)
class _FileInode:
    blocks_start: int
    size: int
    fragment: int
    frag_offset: int
    block_sizes: tuple[int, ...]


class SquashFS:
    """Squashfs image starting at `offset` of `reader`."""

    def __init__(self, reader: Reader, offset: int = 0, limit: int | None = None) -> None:
        self.reader = reader
        self.offset = offset
        raw = read_exact(reader, offset, _SUPER.size, "squashfs superblock")
        f = _SUPER.unpack(raw)
        (
            magic,
            self.inode_count,
            _mtime,
            self.block_size,
            self.fragment_count,
            comp,
            block_log,
            _flags,
            _ids,
            major,
            _minor,
            self.root_ref,
            self.bytes_used,
            _id_tab,
            _xattr,
            self.inode_table,
            self.dir_table,
            self.fragment_table,
            _export,
        ) = f
        if magic != MAGIC:
            raise SquashfsError("no squashfs image at the start of the payload")
        if major != 4:
            raise SquashfsError(f"squashfs version {major} is not supported (need 4)")
        if self.block_size != 1 << block_log or not 4096 <= self.block_size <= 1 << 20:
            raise SquashfsError("squashfs superblock has an invalid block size")
        end = limit if limit is not None else reader.size - offset
        if self.bytes_used > end or max(self.inode_table, self.dir_table) > self.bytes_used:
            raise SquashfsError(f"squashfs claims {self.bytes_used} bytes but the payload holds {end}")
        if comp not in _DECOMPRESS:
            raise SquashfsError(f"squashfs compression '{_COMPRESSION_NAMES.get(comp, comp)}' is not supported")
        self._decompress = _DECOMPRESS[comp]
        self._meta_cache: dict[int, tuple[bytes, int]] = {}

    # -- low level ---------------------------------------------------------------
    def _inflate(self, data: bytes, limit: int) -> bytes:
        try:
            out = self._decompress(data)
        except (zlib.error, lzma.LZMAError, ValueError) as exc:
            raise SquashfsError(f"squashfs block does not decompress: {exc}") from exc
        if len(out) > limit:
            raise SquashfsError("squashfs block decompresses to more than its maximum size")
        return out

    def _meta_block(self, pos: int) -> tuple[bytes, int]:
        """Decompressed metadata block at absolute image position `pos`, and the next block's position."""
        if pos in self._meta_cache:
            return self._meta_cache[pos]
        if pos + 2 > self.bytes_used:
            raise SquashfsError("squashfs metadata reference points past the image")
        (hdr,) = struct.unpack("<H", read_exact(self.reader, self.offset + pos, 2, "squashfs metadata"))
        size = hdr & 0x7FFF
        if size == 0 or size > _META_MAX or pos + 2 + size > self.bytes_used:
            raise SquashfsError("squashfs metadata block has an invalid size")
        data = read_exact(self.reader, self.offset + pos + 2, size, "squashfs metadata")
        if not hdr & 0x8000:
            data = self._inflate(data, _META_MAX)
        result = (data, pos + 2 + size)
        if len(self._meta_cache) < 4096:
            self._meta_cache[pos] = result
        return result

    def _meta_read(self, pos: int, offset: int, length: int) -> tuple[bytes, int, int]:
        """Read `length` bytes of a metadata stream; return data and the (pos, offset) after it."""
        out = bytearray()
        while True:
            block, nxt = self._meta_block(pos)
            if offset > len(block):
                raise SquashfsError("squashfs metadata offset out of range")
            take = block[offset : offset + length - len(out)]
            out += take
            offset += len(take)
            if len(out) >= length:
                return bytes(out), pos, offset
            pos, offset = nxt, 0

    def _inode(self, ref: int) -> tuple[int, bytes, int, int]:
        pos = self.inode_table + (ref >> 16)
        data, pos, off = self._meta_read(pos, ref & 0xFFFF, 16)
        (kind,) = struct.unpack_from("<H", data)
        return kind, data, pos, off

    def _dir_location(self, ref: int) -> tuple[int, int, int]:
        kind, _hdr, pos, off = self._inode(ref)
        if kind == 1:
            body, _, _ = self._meta_read(pos, off, 16)
            block, _links, size, boff, _parent = struct.unpack("<IIHHI", body)
        elif kind == 8:
            body, _, _ = self._meta_read(pos, off, 24)
            _links, size, block, _parent, _icount, boff, _xattr = struct.unpack("<IIIIHHI", body)
        else:
            raise SquashfsError("squashfs path component is not a directory")
        return block, boff, size

    def _file(self, ref: int) -> _FileInode:
        kind, _hdr, pos, off = self._inode(ref)
        if kind == 2:
            body, pos, off = self._meta_read(pos, off, 16)
            start, frag, foff, size = struct.unpack("<IIII", body)
        elif kind == 9:
            body, pos, off = self._meta_read(pos, off, 40)
            start, size, _sparse, _links, frag, foff, _xattr = struct.unpack("<QQQIIII", body)
        else:
            raise SquashfsError("squashfs entry is not a regular file")
        nblocks = size // self.block_size if frag != _NO_FRAGMENT else -(-size // self.block_size)
        if nblocks > (self.bytes_used // 4) + 1:
            raise SquashfsError("squashfs file claims more blocks than the image can hold")
        sizes, _, _ = self._meta_read(pos, off, 4 * nblocks)
        return _FileInode(start, size, frag, foff, struct.unpack(f"<{nblocks}I", sizes))

    # -- directories -------------------------------------------------------------
    def listdir(self, path: str = "") -> list[SquashEntry]:
        ref = self._lookup_dir(path)
        return list(self._iter_dir(ref))

    def _iter_dir(self, ref: int) -> Iterator[SquashEntry]:
        block, boff, size = self._dir_location(ref)
        remaining = size - 3
        pos, off = self.dir_table + block, boff
        while remaining > 0:
            hdr, pos, off = self._meta_read(pos, off, 12)
            count, start, _inode_no = struct.unpack("<III", hdr)
            remaining -= 12
            if count > 255:
                raise SquashfsError("squashfs directory header is corrupt")
            for _ in range(count + 1):
                ent, pos, off = self._meta_read(pos, off, 8)
                eoff, _idelta, kind, nsize = struct.unpack("<HhHH", ent)
                name, pos, off = self._meta_read(pos, off, nsize + 1)
                remaining -= 8 + nsize + 1
                ref_child = (start << 16) | eoff
                kind_name = "dir" if kind in _DIR_TYPES else "file" if kind in _FILE_TYPES else "other"
                fsize = self._file(ref_child).size if kind_name == "file" else 0
                yield SquashEntry(name.decode("utf-8", "replace"), kind_name, fsize, ref_child)

    def _lookup_dir(self, path: str) -> int:
        ref = self.root_ref
        for part in [p for p in path.split("/") if p]:
            ref = self._find(ref, part, want_dir=True).inode_ref
        return int(ref)

    def _find(self, dir_ref: int, name: str, want_dir: bool = False) -> SquashEntry:
        for entry in self._iter_dir(dir_ref):
            if entry.name == name:
                if want_dir and entry.kind != "dir":
                    raise SquashfsError(f"'{name}' is not a directory")
                return entry
        raise FileNotFoundError(name)

    def stat(self, path: str) -> SquashEntry:
        parent, _, name = path.strip("/").rpartition("/")
        return self._find(self._lookup_dir(parent), name)

    def exists(self, path: str) -> bool:
        try:
            self.stat(path)
        except FileNotFoundError:
            return False
        return True

    # -- file data ---------------------------------------------------------------
    def iter_file(self, path: str) -> Iterator[bytes]:
        """Yield the contents of a regular file block by block."""
        entry = self.stat(path)
        if entry.kind != "file":
            raise SquashfsError(f"'{path}' is not a regular file")
        inode = self._file(entry.inode_ref)
        pos = inode.blocks_start
        remaining = inode.size
        for bs in inode.block_sizes:
            size = bs & 0xFFFFFF
            want = min(self.block_size, remaining)
            if size == 0:
                yield b"\0" * want
            else:
                data = read_exact(self.reader, self.offset + pos, size, "squashfs data block")
                yield data if bs & 0x1000000 else self._inflate(data, self.block_size)
                pos += size
            remaining -= want
        if inode.fragment != _NO_FRAGMENT and remaining > 0:
            yield self._fragment(inode.fragment)[inode.frag_offset : inode.frag_offset + remaining]

    def data_blocks(self, path: str) -> list[int]:
        """Bytes each data block of a regular file takes in the image (0 for a sparse block), in order;
        each covers `block_size` bytes of the file (what a Range reader such as RAUC's streaming fetches)."""
        entry = self.stat(path)
        if entry.kind != "file":
            raise SquashfsError(f"'{path}' is not a regular file")
        return [bs & 0xFFFFFF for bs in self._file(entry.inode_ref).block_sizes]

    def read_file(self, path: str, max_size: int = 16 * 1024 * 1024) -> bytes:
        entry = self.stat(path)
        if entry.size > max_size:
            raise SquashfsError(f"'{path}' is {entry.size} bytes, more than the {max_size} allowed here")
        return b"".join(self.iter_file(path))

    def _fragment(self, index: int) -> bytes:
        if index >= self.fragment_count:
            raise SquashfsError("squashfs fragment index out of range")
        (table_block,) = struct.unpack(
            "<Q", read_exact(self.reader, self.offset + self.fragment_table + 8 * (index // 512), 8, "squashfs fragment table")
        )
        entry, _, _ = self._meta_read(table_block, (index % 512) * 16, 16)
        start, size, _unused = struct.unpack("<QII", entry)
        raw = read_exact(self.reader, self.offset + start, size & 0xFFFFFF, "squashfs fragment")
        return raw if size & 0x1000000 else self._inflate(raw, self.block_size)
