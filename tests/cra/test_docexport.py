"""The technical documentation archive: the same members give the same bytes; the manifest hashes what it lists."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import random
import tarfile
from collections.abc import Iterator

import pytest

from bulkhead.cra.docexport import MANIFEST, Member, bytes_member, iter_archive, json_member
from bulkhead.cra.errors import CraError


def _members(vex_status: str = "not_affected") -> list[Member]:
    big = random.Random(0).randbytes(3 << 20)  # several chunks, incompressible, streamed

    def chunks() -> Iterator[bytes]:
        for i in range(0, len(big), 1 << 20):
            yield big[i : i + (1 << 20)]

    return [
        json_member("product.json", {"name": "Gateway", "compatible": "gw"}, "the product"),
        Member("releases/1.0-1/sbom/uploaded-spdx.json", len(big), chunks, "an SBOM as uploaded"),
        json_member("vex/openvex.json", {"statements": [{"status": vex_status}]}),
        bytes_member("process/update-and-signing.md", "# Ünicode\n".encode()),
    ]


def _archive(members: list[Member], mtime: int = 1_700_000_000) -> bytes:
    return b"".join(iter_archive(members, mtime, {"format": "test/1"}))


def _read(data: bytes) -> dict[str, tuple[bytes, tarfile.TarInfo]]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        out = {}
        for info in tar.getmembers():
            f = tar.extractfile(info)
            assert f is not None
            out[info.name] = (f.read(), info)
        return out


def test_the_same_members_give_byte_identical_archives() -> None:
    a, b = _archive(_members()), _archive(_members())
    assert a == b
    assert gzip.decompress(a)  # a valid gzip stream
    assert a[4:8] == b"\0\0\0\0"  # no gzip timestamp
    assert a[3] & 0x08 == 0  # no file name in the gzip header


def test_members_keep_their_order_mtime_and_neutral_owner_and_the_manifest_comes_last() -> None:
    data = _archive(_members(), mtime=1234)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        infos = tar.getmembers()
    assert [i.name for i in infos] == [m.path for m in _members()] + [MANIFEST]
    for i in infos:
        assert (i.mtime, i.uid, i.gid, i.uname, i.gname, i.mode) == (1234, 0, 0, "", "", 0o644)


def test_the_manifest_lists_every_member_with_its_sha256_and_size() -> None:
    files = _read(_archive(_members()))
    manifest = json.loads(files[MANIFEST][0])
    assert manifest["format"] == "test/1"
    assert [m["path"] for m in manifest["members"]] == [m.path for m in _members()]
    for entry in manifest["members"]:
        body = files[entry["path"]][0]
        assert entry["sha256"] == hashlib.sha256(body).hexdigest()
        assert entry["size"] == len(body)
    assert manifest["members"][0]["description"] == "the product"


def test_a_changed_member_changes_the_archive_and_only_its_own_hash() -> None:
    before = json.loads(_read(_archive(_members()))[MANIFEST][0])["members"]
    changed = _archive(_members(vex_status="affected"))
    assert changed != _archive(_members())
    after = json.loads(_read(changed)[MANIFEST][0])["members"]
    differ = [a["path"] for a, b in zip(before, after, strict=True) if a["sha256"] != b["sha256"]]
    assert differ == ["vex/openvex.json"]


@pytest.mark.parametrize("path", ["/etc/passwd", "../x", "a//b", "a/./b", "", MANIFEST, "a\\b"])
def test_a_path_that_is_not_plain_and_relative_is_refused(path: str) -> None:
    with pytest.raises(CraError, match=r"plain relative path|twice"):
        _archive([bytes_member(path, b"x")])


def test_a_duplicate_path_is_refused() -> None:
    with pytest.raises(CraError, match="twice"):
        _archive([bytes_member("a.json", b"1"), bytes_member("a.json", b"2")])


@pytest.mark.parametrize("size", [1, 5])
def test_a_member_whose_bytes_differ_from_its_declared_size_is_refused(size: int) -> None:
    with pytest.raises(CraError, match="declared"):
        _archive([Member("a.bin", size, lambda: (b"abc",))])


def test_the_archive_streams_in_bounded_pieces() -> None:
    pieces = list(iter_archive(_members(), 0))
    assert len(pieces) > 1
    assert max(len(p) for p in pieces) < 2 << 20
