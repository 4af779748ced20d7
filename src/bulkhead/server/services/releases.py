"""Releases: verified upload of RAUC bundles, listing, and guarded deletion."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, BinaryIO

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bulkhead.cra import SbomError, identify
from bulkhead.rauc import BundleError, Keyring, Reader, load_keyring, open_bundle
from bulkhead.swu import SwuError, is_swu, read_swu

from ..db import Database
from ..errors import Conflict, Invalid, NotFound, PayloadTooLarge, Unprocessable
from ..models import DeltaBundle, Device, Release, ReleaseSbom, Rollout, Tenant
from ..security_models import SecurityMark
from ..store import ArtifactStore, Staged
from ..vuln_models import AppSbom
from . import audit
from .auth import Principal
from .keyset import Page, Paged, keyset, paged
from .lookups import tenant_release

__all__ = ["MAX_SBOM_BYTES", "ReleaseService", "Upload"]

MAX_SBOM_BYTES = 64 << 20  # an SBOM is parsed whole; a rootfs SBOM is a few MiB
SBOM_MEDIA_TYPES = {
    "spdx": "application/spdx+json",
    "spdx3": "application/spdx+json",  # SPDX 3.0.1 JSON-LD
    "cyclonedx": "application/vnd.cyclonedx+json",
}


class Upload:
    """A request body staged in the artifact store while it is hashed; never held in memory."""

    def __init__(self, staged: Staged, sha256: str, size: int, md5: str = "", sha1: str = "") -> None:
        self.staged, self.sha256, self.size = staged, sha256, size
        self.md5, self.sha1 = md5, sha1  # hawkBit DDI clients check these

    @classmethod
    async def receive(cls, store: ArtifactStore, chunks: AsyncIterator[bytes], max_bytes: int, declared: int | None) -> Upload:
        if declared is not None and declared > max_bytes:
            raise PayloadTooLarge(
                f"upload of {declared} bytes exceeds the limit of {max_bytes} bytes (BULKHEAD_MAX_UPLOAD_BYTES)"
            )
        staging = store.stage()
        h, md5, sha1 = hashlib.sha256(), hashlib.md5(usedforsecurity=False), hashlib.sha1(usedforsecurity=False)
        size = 0
        try:
            async for chunk in chunks:
                size += len(chunk)
                if size > max_bytes:
                    raise PayloadTooLarge(f"upload exceeds the limit of {max_bytes} bytes (BULKHEAD_MAX_UPLOAD_BYTES)")
                h.update(chunk)
                md5.update(chunk)
                sha1.update(chunk)
                staging.write(chunk)
                if staging.needs_flush:  # a remote store sends a part (memory stays bounded)
                    await asyncio.to_thread(staging.flush)
            if declared is not None and size != declared:
                raise Invalid(f"upload truncated: received {size} of {declared} bytes; send the file again")
            if size == 0:
                raise Invalid("empty upload: send the bundle file as the request body")
            staged = staging.finish() if store.kind == "fs" else await asyncio.to_thread(staging.finish)
        except BaseException:
            staging.abort()
            raise
        return cls(staged, h.hexdigest(), size, md5.hexdigest(), sha1.hexdigest())

    @classmethod
    def from_file(cls, store: ArtifactStore, src: Path) -> Upload:
        """A file the server made itself (a delta it built), hashed, then moved into the store's incoming area."""
        h, md5, sha1 = hashlib.sha256(), hashlib.md5(usedforsecurity=False), hashlib.sha1(usedforsecurity=False)
        size = 0
        with src.open("rb") as f:
            while chunk := f.read(1 << 20):
                size += len(chunk)
                h.update(chunk)
                md5.update(chunk)
                sha1.update(chunk)
        return cls(store.stage_file(src), h.hexdigest(), size, md5.hexdigest(), sha1.hexdigest())

    def reader(self) -> AbstractContextManager[Reader]:
        """Random access for the bundle library."""
        return self.staged.reader()

    def open(self) -> BinaryIO:
        return self.staged.open()

    def local(self) -> AbstractContextManager[Path]:
        """A local file with the bytes, for tools that need a path."""
        return self.staged.local()

    def discard(self) -> None:
        self.staged.discard()


def sbom_json(b: ReleaseSbom) -> dict[str, Any]:
    return {
        "format": b.format,
        "spec_version": b.spec_version,
        "components": b.components,
        "sha256": b.sha256,
        "size": b.size,
        "created_at": b.created_at.isoformat(),
    }


def release_json(r: Release, sboms: list[ReleaseSbom] | None = None) -> dict[str, Any]:
    return {
        "id": r.id,
        "compatible": r.compatible,
        "version": r.version,
        "description": r.description,
        "build": r.build,
        "format": r.format,
        "sha256": r.sha256,
        "size": r.size,
        "signer": r.signer,
        "images": r.info.get("images", []),
        "created_at": r.created_at.isoformat(),
        "sboms": [sbom_json(b) for b in sboms or []],
    }


def _marks(s: Session, ids: list[int]) -> dict[int, SecurityMark]:
    """The security-update marks of these releases (services/security.py)."""
    return {m.release_id: m for m in s.scalars(select(SecurityMark).where(SecurityMark.release_id.in_(ids)))} if ids else {}


def _with_mark(out: dict[str, Any], marks: dict[int, SecurityMark]) -> dict[str, Any]:
    m = marks.get(out["id"])
    out["security"] = (
        {"available_at": m.available_at.isoformat(), "marked_by": m.marked_by, "reason": m.reason} if m is not None else None
    )
    return out


def _bundle_fields(upload: Upload, keyring: Keyring) -> dict[str, Any]:
    try:
        with upload.reader() as reader:
            bundle = open_bundle(reader)
            bundle.verify(keyring)
            info = bundle.info()
    except BundleError as exc:
        raise Unprocessable(f"bundle rejected: {exc}") from exc
    if not info.version:
        raise Unprocessable("bundle rejected: its manifest has no [update] version; releases need one")
    return {
        "compatible": info.compatible,
        "version": info.version,
        "description": info.description,
        "build": info.build,
        "format": info.format,
        "signer": info.signer,
        "info": info.to_json(),
    }


def _swu_fields(upload: Upload, keyring: Keyring, compatible: str | None) -> dict[str, Any]:
    try:
        with upload.local() as path:
            info = read_swu(path, keyring)
    except SwuError as exc:
        raise Unprocessable(f"SWUpdate image rejected: {exc}") from exc
    if not compatible:
        raise Invalid(
            "a .swu does not name the devices it is for: pass --compatible (the devices' compatible), "
            "or set the tenant's default with 'bulkhead ddi configure --default-compatible'"
        )
    return {
        "compatible": compatible,
        "version": info.description.version,
        "description": info.description.description,
        "build": None,
        "format": "swu",
        "signer": info.signer,
        "info": info.to_json(),
    }


class ReleaseService:
    def __init__(self, db: Database, store: ArtifactStore) -> None:
        self.db, self.store = db, store
        # Called with the session and the release before a deletion; raises to refuse it (the CRA's retention).
        self.before_delete: Callable[[Session, Release], None] | None = None

    def ingest(self, who: Principal, upload: Upload, compatible: str | None = None) -> dict[str, Any]:
        """Verify a RAUC bundle or SWUpdate .swu against the tenant keyring and store it; on any error nothing stays."""
        try:
            who.require("operator")
            tid = who.require_tenant()
            with self.db.session() as s:
                tenant = s.get(Tenant, tid)
                assert tenant is not None
                if not tenant.keyring_pem:
                    raise Invalid("this tenant has no keyring: upload one with 'bulkhead keyring set CA.pem' first")
                keyring = load_keyring(tenant.keyring_pem.encode(), tenant.keyring_check_purpose)
                default_compatible = (tenant.ddi or {}).get("default_compatible")
            with upload.open() as f:
                swu = is_swu(f.read(6))
            if swu:
                fields = _swu_fields(upload, keyring, compatible or default_compatible)
            else:
                if compatible:
                    raise Invalid("--compatible is only for SWUpdate images; a RAUC bundle names its compatible in its manifest")
                fields = _bundle_fields(upload, keyring)
            hashes = {"md5": upload.md5, "sha1": upload.sha1, "sha256": upload.sha256}
            try:
                with self.db.session() as s:
                    rel = Release(tenant_id=tid, sha256=upload.sha256, size=upload.size, **fields)
                    rel.info = {**rel.info, "hashes": hashes}
                    s.add(rel)
                    s.flush()
                    self.store.commit(upload.staged, upload.sha256)
                    audit.record(s, who, "release.create", f"{rel.compatible} {rel.version}", sha256=upload.sha256)
                    return release_json(rel)
            except IntegrityError as exc:
                raise Conflict(
                    f"release {fields['version']} for compatible '{fields['compatible']}' already exists; bump the version"
                ) from exc
        finally:
            upload.discard()

    def list_releases(self, who: Principal, compatible: str | None, page: Page) -> Paged[dict[str, Any]]:
        who.require("viewer")
        tid = who.require_tenant()
        with self.db.session() as s:
            q = select(Release).where(Release.tenant_id == tid)
            if compatible:
                q = q.where(Release.compatible == compatible)
            releases = list(s.scalars(keyset(q, [Release.id], page)))
            sboms: dict[int, list[ReleaseSbom]] = {}
            ids = [r.id for r in releases]
            if ids:
                for b in s.scalars(select(ReleaseSbom).where(ReleaseSbom.release_id.in_(ids)).order_by(ReleaseSbom.format)):
                    sboms.setdefault(b.release_id, []).append(b)
            marks = _marks(s, ids)
            return paged(releases, page, lambda r: (r.id,), lambda r: _with_mark(release_json(r, sboms.get(r.id)), marks))

    def get(self, who: Principal, release_id: int) -> dict[str, Any]:
        who.require("viewer")
        with self.db.session() as s:
            rel = self._own(s, who, release_id)
            return _with_mark(release_json(rel, self._sboms(s, rel.id)), _marks(s, [rel.id]))

    @staticmethod
    def _sboms(s: Any, release_id: int) -> list[ReleaseSbom]:
        return list(s.scalars(select(ReleaseSbom).where(ReleaseSbom.release_id == release_id).order_by(ReleaseSbom.format)))

    def attach_sbom(self, who: Principal, release_id: int, upload: Upload) -> dict[str, Any]:
        """Keep an SPDX 2, SPDX 3.0.1 or CycloneDX JSON document as the release's SBOM of that format (replacing an
        older one)."""
        try:
            who.require("operator")
            with self.db.session() as s:
                self._own(s, who, release_id)
            try:
                with upload.open() as f:
                    doc = json.load(f)
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise Unprocessable(f"SBOM rejected: not JSON ({exc}); upload SPDX or CycloneDX JSON") from exc
            try:
                info = identify(doc)
            except SbomError as exc:
                raise Unprocessable(f"SBOM rejected: {exc}") from exc
            replaced = None
            with self.db.session() as s:
                rel = self._own(s, who, release_id)
                old = s.scalar(select(ReleaseSbom).where(ReleaseSbom.release_id == rel.id, ReleaseSbom.format == info.format))
                if old is not None:
                    replaced = old.sha256
                    s.delete(old)
                    s.flush()
                row = ReleaseSbom(
                    release_id=rel.id,
                    format=info.format,
                    spec_version=info.spec_version,
                    sha256=upload.sha256,
                    size=upload.size,
                    components=info.components,
                )
                s.add(row)
                s.flush()
                self.store.commit(upload.staged, upload.sha256)
                audit.record(s, who, "release.sbom", f"{rel.compatible} {rel.version}", format=info.format, sha256=upload.sha256)
                out = sbom_json(row)
            if replaced and replaced != upload.sha256:
                self.remove_unused(replaced)
            return out
        finally:
            upload.discard()

    def sbom_file(self, who: Principal, release_id: int, fmt: str | None) -> tuple[str, str]:
        """The stored SBOM of a release (the given format, or the only/SPDX one): its digest and media type."""
        who.require("viewer")
        if fmt is not None and fmt not in SBOM_MEDIA_TYPES:
            raise Invalid(f"unknown SBOM format {fmt!r}: use spdx, spdx3 or cyclonedx")
        with self.db.session() as s:
            rel = self._own(s, who, release_id)
            sboms = {b.format: b for b in self._sboms(s, rel.id)}
        if not sboms:
            raise NotFound(f"release {release_id} has no SBOM; attach one with 'bulkhead release sbom {release_id} FILE'")
        if fmt is None:
            fmt = "spdx" if "spdx" in sboms else next(iter(sboms))
        if fmt not in sboms:
            raise NotFound(f"release {release_id} has no {fmt} SBOM (it has: {', '.join(sorted(sboms))})")
        return sboms[fmt].sha256, SBOM_MEDIA_TYPES[fmt]

    def remove_unused(self, sha256: str) -> None:
        """Delete a stored file no release, SBOM or delta bundle refers to any more."""
        with self.db.session() as s:
            used = (
                s.scalar(select(func.count()).select_from(Release).where(Release.sha256 == sha256))
                or s.scalar(select(func.count()).select_from(ReleaseSbom).where(ReleaseSbom.sha256 == sha256))
                or s.scalar(select(func.count()).select_from(DeltaBundle).where(DeltaBundle.sha256 == sha256))
                or s.scalar(select(func.count()).select_from(AppSbom).where(AppSbom.sha256 == sha256))
            )
        if not used:
            self.store.remove(sha256)

    def _own(self, s: Any, who: Principal, release_id: int) -> Release:
        return tenant_release(s, who.tenant_id, release_id)

    def delete(self, who: Principal, release_id: int) -> None:
        who.require("operator")
        with self.db.session() as s:
            rel = self._own(s, who, release_id)
            needed = s.scalar(select(func.count()).select_from(Device).where(Device.desired_release_id == rel.id))
            if needed:
                raise Conflict(
                    f"release {rel.version} is still the desired release of {needed} device(s); assign them another release first"
                )
            rollouts = list(s.scalars(select(Rollout.name).where(Rollout.release_id == rel.id)))
            if rollouts:
                raise Conflict(
                    f"release {rel.version} is used by rollout(s) {', '.join(rollouts)}; delete those first "
                    "(their actions are the devices' update history)"
                )
            if self.before_delete is not None:
                self.before_delete(s, rel)  # the CRA's retention of deployed releases (cra_products.check_retention)
            shas = {rel.sha256, *(b.sha256 for b in self._sboms(s, rel.id))}
            for b in self._sboms(s, rel.id):
                s.delete(b)
            # Delta bundles to and from this release go with it (a delta is matched to devices by its source release).
            for d in s.scalars(
                select(DeltaBundle).where((DeltaBundle.release_id == rel.id) | (DeltaBundle.source_release_id == rel.id))
            ):
                if d.sha256:
                    shas.add(d.sha256)
                s.delete(d)
            s.delete(rel)
            s.flush()
            audit.record(s, who, "release.delete", f"{rel.compatible} {rel.version}")
        for sha in shas:
            self.remove_unused(sha)
