"""Reading a .swu: the signature of sw-description and every artifact's sha256 are checked, streaming."""

from __future__ import annotations

from pathlib import Path

import libarchive
import pytest

from bulkhead.lab.pki import make_pki
from bulkhead.rauc import load_keyring
from bulkhead.swu import SwuError, is_swu, read_swu
from tests.swu.conftest import signed_swu


@pytest.fixture
def payload(tmp_path: Path) -> Path:
    p = tmp_path / "app.bin"
    p.write_bytes(b"payload " * 1000)
    return p


def test_reads_a_signed_image(tmp_path: Path, payload: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    swu = signed_swu(tmp_path / "u.swu", pki, "1.4", {"app.bin": payload}, Path("/opt"))
    assert is_swu(swu.read_bytes()[:6])
    info = read_swu(swu, load_keyring(pki.ca.read_bytes()))
    assert info.description.version == "1.4"
    assert info.signer.endswith("CN = Bulkhead Demo Release Signer")
    assert info.members == {
        "sw-description": info.members["sw-description"],
        "sw-description.sig": info.members["sw-description.sig"],
        "app.bin": 8000,
    }


def test_an_untrusted_signer_is_refused(tmp_path: Path, payload: Path) -> None:
    swu = signed_swu(tmp_path / "u.swu", make_pki(tmp_path / "a"), "1", {"app.bin": payload}, Path("/opt"))
    other = make_pki(tmp_path / "b", org="Someone Else")
    with pytest.raises(SwuError, match="signature of sw-description"):
        read_swu(swu, load_keyring(other.ca.read_bytes()))


def _rewrite(src: Path, dst: Path, change: dict[str, bytes | None], order: list[str] | None = None) -> Path:
    """Copy a .swu member by member, replacing (or dropping, with None) some members."""
    members: dict[str, bytes] = {}
    with libarchive.file_reader(str(src)) as a:
        for e in a:
            members[e.pathname] = b"".join(e.get_blocks())
    for name, data in change.items():
        if data is None:
            members.pop(name)
        else:
            members[name] = data
    with libarchive.file_writer(str(dst), "cpio_newc") as out:
        for name in order or list(members):
            out.add_file_from_memory(name, len(members[name]), members[name])
    return dst


def test_a_tampered_artifact_is_refused(tmp_path: Path, payload: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    swu = signed_swu(tmp_path / "u.swu", pki, "1", {"app.bin": payload}, Path("/opt"))
    bad = _rewrite(swu, tmp_path / "bad.swu", {"app.bin": b"evil " * 1600})
    with pytest.raises(SwuError, match="does not match sw-description"):
        read_swu(bad, load_keyring(pki.ca.read_bytes()))


def test_unsigned_missing_artifact_and_wrong_order_are_refused(tmp_path: Path, payload: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    keyring = load_keyring(pki.ca.read_bytes())
    swu = signed_swu(tmp_path / "u.swu", pki, "1", {"app.bin": payload}, Path("/opt"))
    with pytest.raises(SwuError, match="not signed"):
        read_swu(_rewrite(swu, tmp_path / "a.swu", {"sw-description.sig": None}), keyring)
    with pytest.raises(SwuError, match="not in the archive"):
        read_swu(_rewrite(swu, tmp_path / "b.swu", {"app.bin": None}), keyring)
    with pytest.raises(SwuError, match="first member"):
        read_swu(_rewrite(swu, tmp_path / "c.swu", {}, ["app.bin", "sw-description", "sw-description.sig"]), keyring)


def test_truncated_and_foreign_files_are_refused(tmp_path: Path, payload: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    keyring = load_keyring(pki.ca.read_bytes())
    swu = signed_swu(tmp_path / "u.swu", pki, "1", {"app.bin": payload}, Path("/opt"))
    cut = tmp_path / "cut.swu"
    cut.write_bytes(swu.read_bytes()[:3000])
    with pytest.raises(SwuError):
        read_swu(cut, keyring)
    other = tmp_path / "x.swu"
    other.write_bytes(b"PK\x03\x04 a zip file")
    with pytest.raises(SwuError, match="not a SWUpdate image"):
        read_swu(other, keyring)
