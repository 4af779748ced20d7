"""Read and verify a .swu (cpio archive: sw-description, its CMS signature, then the artifacts), or write one."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import libarchive
from cryptography import x509

from bulkhead.rauc.cms import parse_cms, sign_cms
from bulkhead.rauc.errors import BundleError
from bulkhead.rauc.keyring import Keyring

from .description import SwDescription, parse_sw_description
from .errors import SwuError

__all__ = ["SwuInfo", "create_swu", "is_swu", "read_swu"]

_DESCRIPTION, _SIGNATURE = "sw-description", "sw-description.sig"
_MAX_DESCRIPTION = 1 << 20  # sw-description is a small text file
_NOT_SWU = "a .swu is a cpio archive (newc or crc) whose first member is sw-description"


@dataclass(frozen=True)
class SwuInfo:
    description: SwDescription
    signer: str
    members: dict[str, int]  # name -> size

    def to_json(self) -> dict[str, Any]:
        return {**self.description.to_json(), "signer": self.signer, "members": self.members}


def is_swu(head: bytes) -> bool:
    """Whether a file starting with `head` is a cpio archive of the kinds SWUpdate reads."""
    return head[:6] in (b"070701", b"070702")


def read_swu(path: Path, keyring: Keyring) -> SwuInfo:
    """Verify the signature of sw-description, then every artifact's sha256 against it; stream, never load whole."""
    with path.open("rb") as f:
        if not is_swu(f.read(6)):
            raise SwuError("not a SWUpdate image", _NOT_SWU)
    members: dict[str, int] = {}
    digests: dict[str, str] = {}
    text = b""
    signature = b""
    try:
        with libarchive.file_reader(str(path), format_name="cpio") as archive:
            for i, entry in enumerate(archive):
                name = entry.pathname
                if i == 0 and name != _DESCRIPTION:
                    raise SwuError(f"the first member is {name!r}, not sw-description", _NOT_SWU)
                if name in members:
                    raise SwuError(f"member {name!r} appears twice", "each file may be in the archive once")
                members[name] = entry.size
                if name in (_DESCRIPTION, _SIGNATURE):
                    if entry.size > _MAX_DESCRIPTION:
                        raise SwuError(f"{name} is {entry.size} bytes; at most {_MAX_DESCRIPTION} are accepted")
                    if name == _DESCRIPTION:
                        text = b"".join(entry.get_blocks())
                    else:
                        signature = b"".join(entry.get_blocks())
                    continue
                h = hashlib.sha256()
                for block in entry.get_blocks():
                    h.update(block)
                digests[name] = h.hexdigest()
    except libarchive.ArchiveError as exc:
        raise SwuError(f"the archive is truncated or corrupt: {exc.msg}", _NOT_SWU) from exc
    if not members:
        raise SwuError("the archive is empty", _NOT_SWU)
    if not signature:
        raise SwuError(
            "sw-description.sig is missing: the image is not signed",
            "sign sw-description with CMS (openssl cms -sign ... -outform DER) and put the signature second",
        )
    signer = _verify(text, signature, keyring)
    try:
        desc = parse_sw_description(text.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise SwuError("sw-description is not UTF-8 text") from exc
    for art in desc.artifacts:
        if art.filename not in digests:
            raise SwuError(f"sw-description names {art.filename!r}, which is not in the archive")
        if digests[art.filename] != art.sha256:
            raise SwuError(
                f"{art.filename}: sha256 {digests[art.filename]} does not match sw-description's {art.sha256}",
                "the archive was altered after signing, or sw-description was not regenerated",
            )
    return SwuInfo(desc, signer, members)


def _verify(content: bytes, signature: bytes, keyring: Keyring) -> str:
    try:
        cms = parse_cms(signature)
        h = cms.new_digest()
        h.update(content)
        return cms.verify(keyring, h.digest()).signer_name
    except BundleError as exc:  # the bundle library's signature and trust errors
        raise SwuError(f"signature of sw-description: {exc}") from exc


def _chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            yield block


def create_swu(out: Path, description: str, files: Mapping[str, Path], cert: x509.Certificate, key: Any) -> Path:
    """Write a signed .swu: sw-description, its detached CMS signature, then `files` in order."""
    text = description.encode()
    parse_sw_description(description)  # refuse to sign what SWUpdate would not read
    sig = sign_cms(text, cert, key, detached=True)
    tmp = out.with_name(out.name + ".part")
    with libarchive.file_writer(str(tmp), "cpio_newc") as archive:
        archive.add_file_from_memory(_DESCRIPTION, len(text), text, permission=0o644)
        archive.add_file_from_memory(_SIGNATURE, len(sig), sig, permission=0o644)
        for name, path in files.items():
            archive.add_file_from_memory(name, path.stat().st_size, _chunks(path), permission=0o644)
    tmp.replace(out)
    return out
