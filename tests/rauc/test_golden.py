"""Golden vectors made by the real rauc: our reader and verifier agree with `rauc info`."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from bulkhead.rauc import (
    BundleFormatError,
    FileReader,
    ManifestError,
    SignatureError,
    SignerNotTrustedError,
    load_keyring,
    open_bundle,
    parse_manifest,
)
from bulkhead.rauc.reader import BytesReader
from bulkhead.rauc.verity import build_tree
from tests.conftest import RAUC_DATA, need_tool

GOOD = sorted(p.name for p in RAUC_DATA.glob("good-*.raucb") if "encrypted" not in p.name) if RAUC_DATA.is_dir() else []


def keyring(data: Path, name: str = "dev-ca.pem"):  # type: ignore[no-untyped-def]
    return load_keyring((data / "openssl-ca" / name).read_bytes())


@pytest.mark.parametrize("name", GOOD)
def test_good_bundle_verifies(rauc_data: Path, name: str) -> None:
    with FileReader(rauc_data / name) as r:
        b = open_bundle(r)
        v = b.verify(keyring(rauc_data))
        info = b.info()
    assert info.verified
    assert v.signer_name.startswith("O = Test Org, CN = Test Org")
    assert info.compatible == "Test Config"


@pytest.mark.parametrize("name", GOOD)
def test_fields_match_rauc_info(rauc_data: Path, name: str) -> None:
    rauc = need_tool("rauc", "rauc")
    res = subprocess.run(
        [rauc, "info", "--output-format=json", f"--keyring={rauc_data / 'openssl-ca/dev-ca.pem'}", str(rauc_data / name)],
        capture_output=True,
        text=True,
        check=True,
    )
    theirs = json.loads(res.stdout)
    with FileReader(rauc_data / name) as r:
        b = open_bundle(r)
        b.verify(keyring(rauc_data))
        ours = b.info()
    assert ours.compatible == theirs["compatible"]
    assert ours.version == theirs["version"]
    assert ours.description == theirs.get("description")
    assert ours.build == theirs.get("build")
    theirs_images = [next(iter(i.values())) for i in theirs["images"]]
    assert [(i.filename, i.sha256, i.size) for i in ours.images] == [
        (i["filename"], i["checksum"], i["size"]) for i in theirs_images
    ]


def test_invalid_signature_is_refused(rauc_data: Path) -> None:
    with (
        FileReader(rauc_data / "invalid-sig-bundle.raucb") as r,
        pytest.raises(SignatureError, match="signature verification failed"),
    ):
        open_bundle(r).verify(keyring(rauc_data))


def test_signer_outside_keyring_is_not_trusted(rauc_data: Path) -> None:
    with FileReader(rauc_data / "good-verity-bundle.raucb") as r, pytest.raises(SignerNotTrustedError, match="Release-1"):
        open_bundle(r).verify(keyring(rauc_data, "dev-only-ca.pem"))


def test_dummy_verity_root_hash(rauc_data: Path) -> None:
    info = dict(line.split(":", 1) for line in (rauc_data / "dummy.verity.info").read_text().splitlines() if ":" in line)
    salt = bytes.fromhex(info["Salt"].strip())
    blocks = int(info["Data blocks"].strip())
    data = (rauc_data / "dummy.verity").read_bytes()
    tree = build_tree(BytesReader(data), 0, blocks * 4096, salt)
    assert tree.root_hash.hex() == info["Root hash"].strip()
    assert data[blocks * 4096 :] == tree.tree


def test_broken_manifest_is_refused(rauc_data: Path) -> None:
    with pytest.raises(ManifestError, match="compatible"):
        parse_manifest((rauc_data / "broken-manifest.raucm").read_bytes())


def test_example_manifest_parses(rauc_data: Path) -> None:
    m = parse_manifest((rauc_data / "manifest.raucm").read_bytes())
    assert m.compatible == "FooCorp Super BarBazzer"
    assert [i.slotclass for i in m.images] == ["rootfs", "appfs"]
    assert m.images[0].hooks == ("pre-install", "post-install")


def test_adaptive_bundle_index_matches_image(rauc_data: Path) -> None:
    from bulkhead.rauc import block_hash_index

    with FileReader(rauc_data / "good-adaptive-meta-bundle.raucb") as r:
        b = open_bundle(r)
        b.verify(keyring(rauc_data))
        sq = b.squashfs()
        image = sq.read_file("appfs.img")
        assert block_hash_index([image]) == sq.read_file("appfs.img.block-hash-index")
        assert b.manifest.images[1].adaptive == ("block-hash-index",)
        assert b.manifest.meta["version"]["channel"] == "beta"
        blocks = sq.data_blocks("appfs.img")  # what a Range reader fetches per squashfs block
        assert len(blocks) == len(image) // sq.block_size and all(0 <= n <= sq.block_size + 64 for n in blocks)


def test_crypt_bundle_payload_decrypts(rauc_data: Path) -> None:
    with FileReader(rauc_data / "good-crypt-bundle-unencrypted.raucb") as r:
        b = open_bundle(r)
        b.verify(keyring(rauc_data))
        assert b.manifest.format == "crypt"
        names = {e.name for e in b.squashfs().listdir()}
    assert {"manifest.raucm", "rootfs.img", "appfs.img"} <= names


def test_encrypted_envelope_needs_recipient_key(rauc_data: Path) -> None:
    with FileReader(rauc_data / "good-crypt-bundle-encrypted.raucb") as r, pytest.raises(SignatureError, match="encrypted"):
        open_bundle(r)


def test_truncated_bundle_is_refused(rauc_data: Path) -> None:
    data = (rauc_data / "good-verity-bundle.raucb").read_bytes()
    with pytest.raises(BundleFormatError):
        open_bundle(BytesReader(data[: len(data) // 2])).verify(keyring(rauc_data))


def test_non_bundle_is_refused(rauc_data: Path) -> None:
    with pytest.raises(BundleFormatError, match="not a RAUC bundle"):
        open_bundle(BytesReader((rauc_data / "manifest.raucm").read_bytes()))


@pytest.mark.parametrize(
    "sig,purpose,ok",
    [
        ("manifest-ep1.sig", "smimesign", True),
        ("manifest-cs1.sig", "codesign", True),
        ("manifest-cs1.sig", "smimesign", False),
        ("manifest-ep1.sig", "codesign", False),
        ("manifest-ts1.sig", "smimesign", False),
    ],
)
def test_key_usage_purposes(rauc_data: Path, sig: str, purpose: str, ok: bool) -> None:
    """Signatures over `manifest` made with different extended key usages, checked as RAUC does."""
    from bulkhead.rauc.cms import parse_cms

    ca = rauc_data / "openssl-ca"
    content = (ca / "manifest").read_bytes()
    cms = parse_cms((ca / sig).read_bytes())
    h = cms.new_digest()
    h.update(content)
    kr = load_keyring((ca / "dev-ca.pem").read_bytes(), purpose)
    if ok:
        cms.verify(kr, h.digest() if cms.encapsulated is None else None)
    else:
        with pytest.raises(SignerNotTrustedError):
            cms.verify(kr, h.digest() if cms.encapsulated is None else None)


def test_verity_mismatch_names_the_block(rauc_data: Path) -> None:
    from bulkhead.rauc import VerityMismatchError

    data = bytearray((rauc_data / "good-verity-bundle.raucb").read_bytes())
    data[4096 + 7] ^= 1  # inside data block 1
    with pytest.raises(VerityMismatchError) as exc:
        open_bundle(BytesReader(bytes(data))).verify(keyring(rauc_data))
    assert exc.value.block == 1 and "data block 1" in str(exc.value)
