"""Delta bundles: standard RAUC bundles whose images are patches from one source release's images.

The bundle carries, per slot image, `<image>.bhdelta` (patch.py's format) with `hooks=install`, and the
applier itself as the bundle's hook (`bulkhead-delta-hook`, standard library only). RAUC (1.8 and newer,
no streaming needed) verifies the signature and the patch's sha256 from the signed manifest, then runs
the hook instead of writing the image: it checks the booted slot's sha256, rebuilds the target image
into the inactive slot and checks the target's sha256 (both recorded in the signed patch) before RAUC
marks the slot bootable. The bundle's version is the target release's version; the patch header says
which source it needs, and `read_delta_info` reads that back (the server uses it on upload).
"""

from __future__ import annotations

import io
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..rauc import Bundle, FileReader, Keyring, Manifest, open_bundle
from ..rauc import create_bundle as write_bundle
from ..rauc.errors import BundleError
from ..rauc.manifest import Image
from . import patch as patch_module
from .errors import DeltaError
from .generate import DeltaStats, make_patch
from .patch import Header, PatchError

__all__ = ["HOOK_NAME", "PATCH_SUFFIX", "DeltaInfo", "create_delta_bundle", "read_delta_info"]

HOOK_NAME = "bulkhead-delta-hook"
PATCH_SUFFIX = ".bhdelta"
Progress = Callable[[str], None]


@dataclass(frozen=True)
class DeltaImage:
    slotclass: str
    filename: str  # the patch in the bundle
    header: Header


@dataclass(frozen=True)
class DeltaInfo:
    compatible: str
    version: str  # the target release's version
    images: tuple[DeltaImage, ...]


def _open(path: Path, keyring: Keyring | None, what: str) -> tuple[Bundle, FileReader]:
    if not path.is_file():
        raise DeltaError(f"{what} bundle {path} does not exist", "pass the release bundles (.raucb) of both versions")
    reader = FileReader(path)
    try:
        bundle = open_bundle(reader)
        if keyring is not None:
            bundle.verify(keyring)
        bundle.manifest  # noqa: B018  (parses and checks the manifest)
    except BundleError as exc:
        reader.close()
        raise DeltaError(f"{what} bundle {path}: {exc}") from exc
    return bundle, reader


def _extract(bundle: Bundle, img: Image, dest: Path) -> None:
    with dest.open("wb") as f:
        for chunk in bundle.squashfs().iter_file(img.filename):
            f.write(chunk)


def create_delta_bundle(
    old: Path,
    new: Path,
    out: Path,
    cert_pem: bytes,
    key_pem: bytes,
    keyring: Keyring | None = None,
    fmt: str = "verity",
    progress: Progress = lambda _m: None,
) -> tuple[Manifest, dict[str, DeltaStats]]:
    """Write the delta bundle that turns the devices running `old` into `new`; `out` appears only when done."""
    ob, oreader = _open(old, keyring, "old")
    try:
        nb, nreader = _open(new, keyring, "new")
        try:
            om, nm = ob.manifest, nb.manifest
            if om.compatible != nm.compatible:
                raise DeltaError(
                    f"the bundles are for different devices (compatible '{om.compatible}' and '{nm.compatible}')",
                    "a delta only goes between releases of one compatible",
                )
            if om.version == nm.version:
                raise DeltaError(f"both bundles have version {nm.version}", "pass the old and the new release")
            olds = {i.slotclass: i for i in om.images}
            missing = [i.slotclass for i in nm.images if i.slotclass not in olds]
            if missing:
                raise DeltaError(f"the old bundle has no image for slot class(es) {', '.join(missing)}", "ship the full bundle")
            if nm.hook_filename or any(i.hooks for i in nm.images):
                raise DeltaError("the new bundle has its own hooks", "delta bundles replace the install step; ship it in full")
            out.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(prefix="bulkhead-delta-", dir=out.parent) as tmp:
                work = Path(tmp)
                content = work / "content"
                content.mkdir()
                images, stats = [], {}
                for img in nm.images:
                    oimg = olds[img.slotclass]
                    progress(f"{img.slotclass}: extracting {oimg.filename} ({om.version}) and {img.filename} ({nm.version})")
                    src, dst = work / f"old-{oimg.filename}", work / f"new-{img.filename}"
                    _extract(ob, oimg, src)
                    _extract(nb, img, dst)
                    name = img.filename + PATCH_SUFFIX
                    progress(f"{img.slotclass}: computing the patch")
                    stats[img.slotclass] = make_patch(src, dst, content / name, progress)
                    src.unlink()
                    dst.unlink()
                    images.append(Image(slotclass=img.slotclass, filename=name, hooks=("install",)))
                hook = content / HOOK_NAME
                shutil.copyfile(patch_module.__file__, hook)
                hook.chmod(0o755)
                manifest = Manifest(
                    compatible=nm.compatible, version=nm.version,
                    description=f"{nm.description or nm.version} (delta from {om.version})", build=nm.build,
                    hook_filename=HOOK_NAME, images=tuple(images),
                )  # fmt: skip
                (content / "manifest.raucm").write_text(manifest.to_text())
                progress("signing the delta bundle")
                try:
                    signed = write_bundle(content, out, cert_pem, key_pem, fmt=fmt)
                except BundleError as exc:
                    raise DeltaError(f"the delta bundle could not be written: {exc}") from exc
        finally:
            nreader.close()
    finally:
        oreader.close()
    return signed, stats


def read_delta_info(bundle: Bundle) -> DeltaInfo | None:
    """What a (signature-checked) bundle patches, or None when it is a full bundle."""
    m = bundle.manifest
    if m.hook_filename != HOOK_NAME or not m.images or not all(i.filename.endswith(PATCH_SUFFIX) for i in m.images):
        return None
    images = []
    fs = bundle.squashfs()
    for img in m.images:
        if "install" not in img.hooks:
            raise DeltaError(f"delta image {img.filename} has no install hook", "rebuild it with 'bulkhead delta create'")
        first = next(iter(fs.iter_file(img.filename)), b"")
        try:
            head = Header.read(io.BytesIO(first))
        except PatchError as exc:
            raise DeltaError(f"delta image {img.filename}: {exc}") from exc
        images.append(DeltaImage(img.slotclass, img.filename, head))
    return DeltaInfo(m.compatible, m.version or "", tuple(images))
