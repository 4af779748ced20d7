"""Write plain and verity bundles from a content directory, as `rauc bundle` does."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from .blockhashindex import block_hash_index
from .cms import sign_cms
from .errors import BundleError, ManifestError, ToolError
from .manifest import Manifest, parse_manifest
from .reader import FileReader
from .verity import BLOCK, build_tree

__all__ = ["MKSQUASHFS_ARGS", "create_bundle", "load_signer"]

MKSQUASHFS_ARGS = ("-all-root", "-noappend", "-no-progress", "-no-xattrs")
_CHUNK = 1 << 20


def load_signer(
    cert_pem: bytes, key_pem: bytes, intermediates_pem: Sequence[bytes] = ()
) -> tuple[x509.Certificate, Any, list[x509.Certificate]]:
    """Load the signing certificate, its private key and intermediates."""
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
    except ValueError as exc:
        raise BundleError(f"signing certificate is not a PEM certificate: {exc}", "pass --cert CERT.pem") from exc
    try:
        password = os.environ.get("RAUC_KEY_PASSPHRASE", "").encode() or None
        key = serialization.load_pem_private_key(key_pem, password=password)
    except (ValueError, TypeError) as exc:
        raise BundleError(
            f"signing key cannot be loaded: {exc}", "pass --key KEY.pem (set RAUC_KEY_PASSPHRASE if it is encrypted)"
        ) from exc
    inters = []
    for pem in intermediates_pem:
        inters.extend(x509.load_pem_x509_certificates(pem))
    return cert, key, inters


def _hash_file(path: Path, want_index: bool) -> tuple[str, int, bytes | None]:
    """sha256, size and (optionally) block-hash-index of a file, in one streaming pass."""
    h = hashlib.sha256()
    size = 0

    def chunks() -> Iterator[bytes]:
        nonlocal size
        with path.open("rb") as f:
            while chunk := f.read(_CHUNK):
                h.update(chunk)
                size += len(chunk)
                yield chunk

    if want_index:
        index: bytes | None = block_hash_index(chunks())
    else:
        index = None
        for _ in chunks():
            pass
    return h.hexdigest(), size, index


def _stage(content: Path, staging: Path) -> Manifest:
    """Copy (hard-link where possible) the content, fill in image hashes and block-hash-indexes."""
    mpath = content / "manifest.raucm"
    if not mpath.is_file():
        raise ManifestError(f"no manifest.raucm in {content}")
    manifest = parse_manifest(mpath.read_bytes())
    if manifest.format == "crypt":
        raise BundleError("writing crypt bundles is not supported", "build a verity bundle and use 'rauc encrypt'")
    for src in content.iterdir():
        if src.name == "manifest.raucm":
            continue
        dst = staging / src.name
        if src.is_dir():
            shutil.copytree(src, dst, symlinks=True)
        else:
            try:
                os.link(src, dst)
            except OSError:
                shutil.copy2(src, dst)
    images = []
    for img in manifest.images:
        path = content / img.filename
        if not path.is_file():
            raise ManifestError(f"image file '{img.filename}' of [{img.section}] is not in {content}")
        adaptive = "block-hash-index" in img.adaptive
        digest, size, index = _hash_file(path, adaptive)
        if index is not None:
            (staging / f"{img.filename}.block-hash-index").write_bytes(index)
        images.append(replace(img, sha256=digest, size=size))
    return replace(manifest, images=tuple(images))


def _mksquashfs(src: Path, out: Path, extra: Sequence[str]) -> None:
    exe = shutil.which("mksquashfs")
    if exe is None:
        raise ToolError("mksquashfs was not found on PATH")
    res = subprocess.run([exe, str(src), str(out), *MKSQUASHFS_ARGS, *extra], capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise ToolError(f"mksquashfs failed ({res.returncode}): {res.stderr.strip()[-500:]}")


def create_bundle(
    content_dir: str | os.PathLike[str],
    out: str | os.PathLike[str],
    cert_pem: bytes,
    key_pem: bytes,
    intermediates_pem: Sequence[bytes] = (),
    fmt: str = "verity",
    salt: bytes | None = None,
    mksquashfs_args: Sequence[str] = (),
) -> Manifest:
    """Build a signed bundle at `out`; return the signed manifest. `out` appears only when complete."""
    if fmt not in ("plain", "verity"):
        raise BundleError(f"cannot write format '{fmt}'", "use --format plain or --format verity")
    cert, key, inters = load_signer(cert_pem, key_pem, intermediates_pem)
    content = Path(content_dir)
    out_path = Path(out)
    with tempfile.TemporaryDirectory(prefix="bulkhead-bundle-", dir=out_path.parent) as tmp:
        staging = Path(tmp) / "content"
        staging.mkdir()
        manifest = replace(
            _stage(content, staging), format=fmt, verity_hash=None, verity_salt=None, verity_size=None, crypt_key=None
        )
        (staging / "manifest.raucm").write_text(manifest.to_text())
        sqfs = Path(tmp) / "payload.sqfs"
        _mksquashfs(staging, sqfs, mksquashfs_args)
        partial = Path(tmp) / "bundle.raucb"
        if fmt == "plain":
            payload = sqfs.read_bytes()
            cms = sign_cms(payload, cert, key, inters, detached=True)
            shutil.move(sqfs, partial)
        else:
            size = sqfs.stat().st_size
            pad = (-size) % BLOCK
            with sqfs.open("ab") as f:
                f.write(b"\0" * pad)
            salt = salt if salt is not None else os.urandom(32)
            with FileReader(sqfs) as reader:
                tree = build_tree(reader, 0, size + pad, salt)
            with sqfs.open("ab") as f:
                f.write(tree.tree)
            manifest = replace(manifest, verity_hash=tree.root_hash.hex(), verity_salt=salt.hex(), verity_size=len(tree.tree))
            cms = sign_cms(manifest.to_text().encode(), cert, key, inters, detached=False)
            shutil.move(sqfs, partial)
        with partial.open("ab") as f:
            f.write(cms)
            f.write(len(cms).to_bytes(8, "big"))
            f.flush()
            os.fsync(f.fileno())
        os.replace(partial, out_path)
    return manifest
