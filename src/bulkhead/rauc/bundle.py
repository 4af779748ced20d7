"""Open a RAUC bundle from a random-access reader, verify it as RAUC does, and describe it."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from asn1crypto import cms as acms

from .cms import MAX_CMS_SIZE, ParsedCms, Verified, parse_cms
from .crypt import DecryptingReader
from .errors import (
    BundleFormatError,
    ManifestError,
    SignatureError,
    SquashfsError,
    TruncatedBundleError,
)
from .keyring import Keyring, describe
from .manifest import Manifest, parse_manifest
from .reader import Reader, read_exact
from .squashfs import SquashFS
from .verity import BLOCK, verify_tree

__all__ = ["Bundle", "BundleInfo", "ImageInfo", "open_bundle"]

TRAILER = 8
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class ImageInfo:
    slotclass: str
    variant: str | None
    filename: str
    size: int | None
    sha256: str | None
    adaptive: tuple[str, ...]
    hooks: tuple[str, ...]


@dataclass(frozen=True)
class BundleInfo:
    """What `bundle info --json` prints and what the server stores for a release."""

    compatible: str
    version: str | None
    description: str | None
    build: str | None
    format: str
    images: list[ImageInfo]
    signer: str | None
    chain: list[str]
    verified: bool
    size: int
    payload_size: int
    verity_hash: str | None = None
    verity_salt: str | None = None
    verity_size: int | None = None
    meta: dict[str, dict[str, str]] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "compatible": self.compatible,
            "version": self.version,
            "description": self.description,
            "build": self.build,
            "format": self.format,
            "images": [
                {
                    "slotclass": i.slotclass,
                    "variant": i.variant,
                    "filename": i.filename,
                    "size": i.size,
                    "sha256": i.sha256,
                    "adaptive": list(i.adaptive),
                    "hooks": list(i.hooks),
                }
                for i in self.images
            ],
            "signer": self.signer,
            "chain": self.chain,
            "verified": self.verified,
            "size": self.size,
            "payload_size": self.payload_size,
            "verity": None
            if self.verity_hash is None
            else {"hash": self.verity_hash, "salt": self.verity_salt, "size": self.verity_size},
            "meta": self.meta,
            "files": self.files,
        }


class Bundle:
    """A bundle's layout: payload, CMS, and (once read) the signed manifest."""

    def __init__(self, reader: Reader, cms: ParsedCms, payload_size: int) -> None:
        self.reader = reader
        self.cms = cms
        self.payload_size = payload_size
        self.verified: Verified | None = None
        self._manifest: Manifest | None = None

    @property
    def size(self) -> int:
        return self.reader.size

    @property
    def is_detached(self) -> bool:
        return self.cms.encapsulated is None

    # -- manifest ---------------------------------------------------------------
    @property
    def manifest(self) -> Manifest:
        if self._manifest is None:
            if self.cms.encapsulated is not None:
                self._manifest = parse_manifest(self.cms.encapsulated)
            else:
                self._manifest = parse_manifest(self.squashfs().read_file("manifest.raucm", 1 << 20))
            self._check_layout(self._manifest)
        return self._manifest

    def _check_layout(self, m: Manifest) -> None:
        if self.is_detached:
            if m.format != "plain":
                raise BundleFormatError(f"bundle has a detached signature but its manifest says format={m.format}")
            return
        if m.format == "plain":
            raise BundleFormatError("bundle has an inline signature but its manifest says format=plain")
        if not (m.verity_hash and m.verity_salt and m.verity_size is not None):
            raise ManifestError(f"{m.format} bundle manifest lacks verity-hash, verity-salt or verity-size")
        if m.format == "crypt" and not m.crypt_key:
            raise ManifestError("crypt bundle manifest lacks crypt-key")
        data = self.payload_size - m.verity_size
        if data <= 0 or data % BLOCK or m.verity_size % BLOCK:
            raise BundleFormatError(
                f"verity layout does not fit: payload {self.payload_size} bytes, hash tree {m.verity_size} bytes "
                f"(data and tree must be positive multiples of {BLOCK})"
            )

    @property
    def data_size(self) -> int:
        """Bytes of (squashfs) data before the verity hash tree."""
        m = self.manifest
        return self.payload_size - (m.verity_size or 0)

    def squashfs(self) -> SquashFS:
        m = self._manifest
        if m is not None and m.format == "crypt":
            assert m.crypt_key is not None
            return SquashFS(DecryptingReader(self.reader, 0, self.data_size, m.crypt_key))
        limit = self.payload_size if m is None else self.data_size
        return SquashFS(self.reader, 0, limit)

    # -- verification -----------------------------------------------------------
    def verify(
        self, keyring: Keyring, check_payload: bool = True, progress: Progress | None = None, at: dt.datetime | None = None
    ) -> Verified:
        """Verify the signature (and, for verity/crypt, the whole payload against its hash tree)."""
        if self.is_detached:
            digest = self._digest_payload(progress)
            self.verified = self.cms.verify(keyring, digest, at)
        else:
            self.verified = self.cms.verify(keyring, None, at)
        m = self.manifest
        if not self.is_detached and check_payload:
            assert m.verity_salt and m.verity_hash and m.verity_size is not None
            total = self.data_size
            verify_tree(
                self.reader,
                0,
                total,
                total,
                m.verity_size,
                bytes.fromhex(m.verity_salt),
                bytes.fromhex(m.verity_hash),
                (lambda done: progress(done, total)) if progress else None,
            )
        return self.verified

    def _digest_payload(self, progress: Progress | None) -> bytes:
        h = self.cms.new_digest()
        chunk = 4 * 1024 * 1024
        for off in range(0, self.payload_size, chunk):
            h.update(read_exact(self.reader, off, min(chunk, self.payload_size - off), "bundle payload"))
            if progress:
                progress(min(off + chunk, self.payload_size), self.payload_size)
        return bytes(h.digest())

    def info(self, list_files: bool = True) -> BundleInfo:
        m = self.manifest
        files: list[str] = []
        if list_files and m.format != "crypt":
            try:
                files = sorted(e.name for e in self.squashfs().listdir())
            except SquashfsError:
                files = []
        v = self.verified
        return BundleInfo(
            compatible=m.compatible,
            version=m.version,
            description=m.description,
            build=m.build,
            format=m.format,
            images=[ImageInfo(i.slotclass, i.variant, i.filename, i.size, i.sha256, i.adaptive, i.hooks) for i in m.images],
            signer=describe(v.signer) if v else self._unverified_signer(),
            chain=[describe(c) for c in v.chain] if v else [],
            verified=v is not None,
            size=self.size,
            payload_size=self.payload_size,
            verity_hash=m.verity_hash,
            verity_salt=m.verity_salt,
            verity_size=m.verity_size,
            meta=m.meta,
            files=files,
        )

    def _unverified_signer(self) -> str | None:
        try:
            return describe(self.cms.signer_cert())
        except SignatureError:
            return None


def open_bundle(reader: Reader, envelope_key: tuple[bytes, bytes] | None = None) -> Bundle:
    """Read the trailer and the CMS; nothing else is read yet."""
    size = reader.size
    if size < TRAILER:
        raise TruncatedBundleError(f"file is {size} bytes, too small to be a RAUC bundle", at_byte=size)
    cms_size = int.from_bytes(read_exact(reader, size - TRAILER, TRAILER, "signature size trailer"), "big")
    if cms_size == 0 or cms_size > MAX_CMS_SIZE:
        raise BundleFormatError(
            f"the last 8 bytes give a signature size of {cms_size} bytes (valid: 1..{MAX_CMS_SIZE}): "
            "the file is not a RAUC bundle, or it is truncated or has extra bytes at the end"
        )
    if cms_size + TRAILER >= size:
        raise TruncatedBundleError(
            f"the trailer gives a {cms_size}-byte signature but the file has only {size - TRAILER} bytes before it", at_byte=size
        )
    payload_size = size - TRAILER - cms_size
    raw = read_exact(reader, payload_size, cms_size, "CMS signature")
    if envelope_key is not None and _is_enveloped(raw):
        from .crypt import decrypt_envelope

        raw = decrypt_envelope(raw, *envelope_key)
    elif _is_enveloped(raw):
        raise SignatureError(
            "the bundle's manifest is encrypted (rauc encrypt)", "give the certificate and key of one of its recipients"
        )
    try:
        cms = parse_cms(raw)
    except SignatureError as exc:
        raise BundleFormatError(
            f"not a RAUC bundle, or truncated: the bytes before the trailer are no valid CMS signature ({exc.message})"
        ) from exc
    return Bundle(reader, cms, payload_size)


def _is_enveloped(raw: bytes) -> bool:
    try:
        return bool(acms.ContentInfo.load(raw)["content_type"].native == "enveloped_data")
    except (ValueError, TypeError, KeyError):
        return False
