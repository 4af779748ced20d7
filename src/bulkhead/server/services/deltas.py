"""Delta bundles of a release: verified upload, the fleet's plan, the choice per device, and server-side builds.

A delta bundle patches the images of one *source* release into the images of its *target* release. The
server learns both from the bundle itself: the signed manifest names the target's compatible and version,
and each patch header records the sha256 of the source and target images, which must be the images of
releases the tenant already has. Devices are offered a delta only for the OS version they report running
and only when it is clearly smaller than the full bundle (`delta_max_ratio`); otherwise the full bundle.

Key custody: by default deltas are built where the release key is (`bulkhead delta create` in the owner's
CI) and uploaded. The server builds them itself only after the tenant has given it a signing key for
that purpose (`bulkhead delta signing-key set`), and every delta it built says so (`origin: server`).
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bulkhead.delta.bundle import create_delta_bundle, read_delta_info
from bulkhead.delta.errors import DeltaError
from bulkhead.rauc import BundleError, Keyring, load_keyring, open_bundle
from bulkhead.rauc.writer import load_signer

from ..db import Database
from ..errors import Conflict, Invalid, NotFound, Unprocessable
from ..models import DeltaBundle, Device, Release, Tenant, utcnow
from ..security import seal, unseal
from . import audit
from .auth import Principal
from .keyset import Page, Paged, keyset, paged
from .lookups import tenant_release
from .releases import ReleaseService, Upload

__all__ = ["DeltaService", "delta_json", "offered_delta"]

log = logging.getLogger(__name__)


def delta_json(d: DeltaBundle, source_version: str, full_size: int) -> dict[str, Any]:
    return {
        "id": d.id,
        "release_id": d.release_id,
        "source_release_id": d.source_release_id,
        "source_version": source_version,
        "status": d.info.get("status", "ready"),
        "error": d.info.get("error"),
        "origin": d.info.get("origin", "upload"),
        "sha256": d.sha256,
        "size": d.size,
        "ratio": round(d.size / full_size, 4) if d.size and full_size else None,
        "signer": d.signer,
        "created_at": d.created_at.isoformat(),
    }


def offered_delta(s: Session, rel: Release, dev: Device, max_ratio: float) -> tuple[DeltaBundle, str] | None:
    """The delta bundle this device should download for `rel`, with its source version, or None for the full bundle.

    A delta applies only to the version the device reports running, and is offered only when it is at most
    `max_ratio` of the full bundle (a delta barely smaller than the full bundle is not worth its apply cost).
    """
    if not dev.os_version or dev.os_version == rel.version or rel.format == "swu":
        return None
    row = s.execute(
        select(DeltaBundle, Release.version)
        .join(Release, Release.id == DeltaBundle.source_release_id)
        .where(DeltaBundle.release_id == rel.id, Release.version == dev.os_version, Release.compatible == rel.compatible)
    ).first()
    if row is None:
        return None
    delta, version = row
    if delta.info.get("status", "ready") != "ready" or delta.size > max_ratio * rel.size:
        return None
    return delta, version


@dataclass(frozen=True)
class _Match:
    release: Release
    source: Release
    info: dict[str, Any]


def _image_hashes(rel: Release) -> dict[str, str]:
    return {i["slotclass"]: i["sha256"] for i in (rel.info or {}).get("images", [])}


class DeltaService:
    def __init__(
        self,
        db: Database,
        releases: ReleaseService,
        secret: bytes,
        max_ratio: float,
        data_dir: Path,
        enqueue: Callable[[int], Any] = lambda _id: None,
    ) -> None:
        self.db, self.releases, self.store = db, releases, releases.store
        self.secret, self.max_ratio, self.data_dir = secret, max_ratio, data_dir
        # Enqueues a server-side build of delta row `id` (the job queue runs `build`).
        self.enqueue = enqueue

    # -- helpers --------------------------------------------------------------------------
    @staticmethod
    def _release(s: Session, who: Principal, release_id: int) -> Release:
        return tenant_release(s, who.tenant_id, release_id)

    @staticmethod
    def _keyring(s: Session, tenant_id: int) -> Keyring:
        tenant = s.get(Tenant, tenant_id)
        assert tenant is not None
        if not tenant.keyring_pem:
            raise Invalid("this tenant has no keyring: upload one with 'bulkhead keyring set CA.pem' first")
        return load_keyring(tenant.keyring_pem.encode(), tenant.keyring_check_purpose)

    def _match(self, s: Session, tenant_id: int, target: Release, upload: Upload, keyring: Keyring) -> _Match:
        """Verify a delta bundle file and find its source release; raise Unprocessable naming what is wrong."""
        try:
            with upload.reader() as reader:
                bundle = open_bundle(reader)
                bundle.verify(keyring)
                info = read_delta_info(bundle)
                signer = bundle.info().signer
        except (BundleError, DeltaError) as exc:
            raise Unprocessable(f"delta bundle rejected: {exc}") from exc
        if info is None:
            raise Unprocessable(
                "delta bundle rejected: this is a full bundle (no Bulkhead patch images); upload it as a release instead"
            )
        if info.compatible != target.compatible or info.version != target.version:
            raise Unprocessable(
                f"delta bundle rejected: it makes '{info.compatible}' {info.version}, but release {target.id} is "
                f"'{target.compatible}' {target.version}; upload it to the release it makes"
            )
        want = _image_hashes(target)
        for img in info.images:
            if want.get(img.slotclass) != img.header.target_sha256:
                raise Unprocessable(
                    f"delta bundle rejected: its {img.slotclass} image is not the one of release {target.version} "
                    "(another build with the same version?); build it again from the stored release bundles"
                )
        sources = s.scalars(
            select(Release).where(
                Release.tenant_id == tenant_id, Release.compatible == target.compatible, Release.id != target.id
            )
        )
        for src in sources:
            have = _image_hashes(src)
            if all(have.get(i.slotclass) == i.header.source_sha256 for i in info.images):
                images = [
                    {
                        "slotclass": i.slotclass,
                        "filename": i.filename,
                        "source_sha256": i.header.source_sha256,
                        "target_sha256": i.header.target_sha256,
                    }
                    for i in info.images
                ]
                return _Match(target, src, {"images": images, "signer": signer})
        raise Unprocessable(
            "delta bundle rejected: it patches images of no release on this server; upload the source release first "
            "(devices are matched to a delta by the version they run)"
        )

    # -- upload ---------------------------------------------------------------------------
    def ingest(self, who: Principal, release_id: int, upload: Upload) -> dict[str, Any]:
        """Verify and store a delta bundle for release `release_id`; on any error nothing stays."""
        try:
            who.require("operator")
            tid = who.require_tenant()
            with self.db.session() as s:
                target = self._release(s, who, release_id)
                if target.format == "swu":
                    raise Invalid("delta bundles are RAUC bundles; this release is a SWUpdate image")
                m = self._match(s, tid, target, upload, self._keyring(s, tid))
                existing = s.scalar(
                    select(DeltaBundle).where(DeltaBundle.release_id == target.id, DeltaBundle.source_release_id == m.source.id)
                )
                if existing is not None:
                    raise Conflict(
                        f"release {target.version} already has a delta from {m.source.version} (delta {existing.id}); "
                        f"delete it first ('bulkhead delta delete {target.id} {existing.id}')"
                    )
                try:
                    hashes = {"md5": upload.md5, "sha1": upload.sha1, "sha256": upload.sha256}
                    row = DeltaBundle(
                        tenant_id=tid, release_id=target.id, source_release_id=m.source.id, sha256=upload.sha256,
                        size=upload.size, signer=m.info["signer"],
                        info={"images": m.info["images"], "hashes": hashes, "origin": "upload", "status": "ready"},
                    )  # fmt: skip
                    s.add(row)
                    s.flush()
                except IntegrityError as exc:  # a concurrent upload of the same pair
                    raise Conflict(f"release {target.version} already has a delta from {m.source.version}") from exc
                self.store.commit(upload.staged, upload.sha256)
                audit.record(
                    s, who, "delta.create", f"{target.compatible} {target.version}", source=m.source.version, sha256=upload.sha256
                )
                return delta_json(row, m.source.version, target.size)
        finally:
            upload.discard()

    def list_deltas(self, who: Principal, release_id: int, page: Page) -> Paged[dict[str, Any]]:
        who.require("viewer")
        with self.db.session() as s:
            rel = self._release(s, who, release_id)
            q = (
                select(DeltaBundle, Release.version)
                .join(Release, Release.id == DeltaBundle.source_release_id)
                .where(DeltaBundle.release_id == rel.id)
            )
            rows = s.execute(keyset(q, [DeltaBundle.id], page)).all()
            return paged(rows, page, lambda r: (r[0].id,), lambda r: delta_json(r[0], r[1], rel.size))

    def delete(self, who: Principal, release_id: int, delta_id: int) -> None:
        who.require("operator")
        with self.db.session() as s:
            rel = self._release(s, who, release_id)
            d = s.get(DeltaBundle, delta_id)
            if d is None or d.release_id != rel.id:
                raise NotFound(f"release {release_id} has no delta {delta_id}")
            sha = d.sha256
            s.delete(d)
            s.flush()
            audit.record(s, who, "delta.delete", f"{rel.compatible} {rel.version}", delta=delta_id)
        self.releases.remove_unused(sha)

    # -- the fleet's plan -----------------------------------------------------------------
    def plan(self, who: Principal, release_id: int) -> dict[str, Any]:
        """Which OS versions the devices of this release's compatible run, and which have a delta to it."""
        who.require("viewer")
        tid = who.require_tenant()
        with self.db.session() as s:
            rel = self._release(s, who, release_id)
            counts = s.execute(
                select(Device.os_version, func.count())
                .where(Device.tenant_id == tid, Device.compatible == rel.compatible)
                .group_by(Device.os_version)
            ).all()
            releases = {
                r.version: r
                for r in s.scalars(select(Release).where(Release.tenant_id == tid, Release.compatible == rel.compatible))
            }
            deltas = {
                d.source_release_id: (d, v)
                for d, v in s.execute(
                    select(DeltaBundle, Release.version)
                    .join(Release, Release.id == DeltaBundle.source_release_id)
                    .where(DeltaBundle.release_id == rel.id)
                )
            }
            tenant = s.get(Tenant, tid)
            server_key = bool(tenant and tenant.delta_signing)
            sources = []
            for version, n in sorted(counts, key=lambda c: (-c[1], c[0] or "")):
                if version == rel.version:
                    continue
                src = releases.get(version) if version else None
                d = deltas.get(src.id) if src else None
                if version is None:
                    advice = "these devices have not reported an OS version yet; they get the full bundle"
                elif src is None:
                    advice = "no release with this version is on the server: these devices get the full bundle"
                elif d is None:
                    advice = (
                        f"build it: bulkhead delta create --from <{version}.raucb> --to <{rel.version}.raucb> ...; "
                        f"then bulkhead delta upload {rel.id} FILE"
                        + (f" (or: bulkhead delta generate {rel.id} --from {version})" if server_key else "")
                    )
                else:
                    small = d[0].size <= self.max_ratio * rel.size
                    advice = "delta ready" if small else "delta not clearly smaller: full bundle offered"
                sources.append(
                    {
                        "version": version,
                        "devices": n,
                        "release_id": src.id if src else None,
                        "delta": delta_json(d[0], d[1], rel.size) if d else None,
                        "advice": advice,
                    }
                )
            return {
                "release": {"id": rel.id, "compatible": rel.compatible, "version": rel.version, "size": rel.size},
                "devices_on_release": sum(n for v, n in counts if v == rel.version),
                "sources": sources,
                "max_ratio": self.max_ratio,
                "server_signing": server_key,
            }

    # -- server-side builds (only with the tenant's own delta signing key) ----------------
    def set_signing_key(self, who: Principal, cert_pem: str, key_pem: str) -> dict[str, Any]:
        """Let the server build and sign delta bundles with this certificate and key (checked against the keyring)."""
        who.require("admin")
        tid = who.require_tenant()
        with self.db.session() as s:
            subject = _check_signer(cert_pem.encode(), key_pem.encode(), self._keyring(s, tid))
            tenant = s.get(Tenant, tid)
            assert tenant is not None
            tenant.delta_signing = {
                "cert_pem": cert_pem,
                "key_sealed": seal(self.secret, key_pem),
                "subject": subject,
                "set_by": who.name,
                "set_at": utcnow().isoformat(),
            }
            audit.record(s, who, "delta.signing_key", tenant.name, certificate=subject)
            return self.signing_info(s, tenant)

    @staticmethod
    def signing_info(s: Session, tenant: Tenant) -> dict[str, Any]:
        ds = tenant.delta_signing
        if not ds:
            return {
                "server_signing": False,
                "message": "the server holds no signing key: build delta bundles where the release key is "
                "(bulkhead delta create) and upload them (bulkhead delta upload)",
            }
        return {
            "server_signing": True,
            "subject": ds.get("subject"),
            "set_by": ds.get("set_by"),
            "set_at": ds.get("set_at"),
            "message": "the server signs the delta bundles it builds with this key; remove it with "
            "'bulkhead delta signing-key remove'",
        }

    def get_signing(self, who: Principal) -> dict[str, Any]:
        who.require("viewer")
        with self.db.session() as s:
            tenant = s.get(Tenant, who.require_tenant())
            assert tenant is not None
            return self.signing_info(s, tenant)

    def remove_signing_key(self, who: Principal) -> dict[str, Any]:
        who.require("admin")
        with self.db.session() as s:
            tenant = s.get(Tenant, who.require_tenant())
            assert tenant is not None
            tenant.delta_signing = None
            audit.record(s, who, "delta.signing_key_removed", tenant.name)
            return self.signing_info(s, tenant)

    def request_build(self, who: Principal, release_id: int, source_version: str) -> dict[str, Any]:
        """Queue a server-side build of the delta from `source_version`; refused without a tenant signing key."""
        who.require("operator")
        tid = who.require_tenant()
        with self.db.session() as s:
            rel = self._release(s, who, release_id)
            tenant = s.get(Tenant, tid)
            assert tenant is not None
            if not tenant.delta_signing:
                raise Conflict(
                    "the server holds no signing key for this tenant, so it does not build delta bundles: build it "
                    f"where the release key is (bulkhead delta create) and upload it (bulkhead delta upload {rel.id} FILE), "
                    "or give the server a key first (bulkhead delta signing-key set --cert C --key K)"
                )
            if rel.format == "swu":
                raise Invalid("delta bundles are RAUC bundles; this release is a SWUpdate image")
            src = s.scalar(
                select(Release).where(
                    Release.tenant_id == tid, Release.compatible == rel.compatible, Release.version == source_version
                )
            )
            if src is None or src.id == rel.id:
                raise NotFound(f"no other release '{rel.compatible}' {source_version} on the server to build a delta from")
            old = s.scalar(select(DeltaBundle).where(DeltaBundle.release_id == rel.id, DeltaBundle.source_release_id == src.id))
            if old is not None and old.info.get("status") != "failed":
                state = old.info.get("status", "ready")
                raise Conflict(f"release {rel.version} already has a delta from {source_version} ({state})")
            if old is not None:
                s.delete(old)
                s.flush()
            row = DeltaBundle(
                tenant_id=tid, release_id=rel.id, source_release_id=src.id, sha256="", size=0, signer=None,
                info={"status": "building", "origin": "server", "requested_by": who.name},
            )  # fmt: skip
            s.add(row)
            s.flush()
            audit.record(s, who, "delta.build", f"{rel.compatible} {rel.version}", source=source_version)
            out = delta_json(row, src.version, rel.size)
            out["message"] = f"the server builds it in the background and signs it with {tenant.delta_signing.get('subject')}"
            delta_id = row.id
        self.enqueue(delta_id)
        return out

    def build(self, delta_id: int, progress: Callable[[str], None] = lambda _m: None) -> None:
        """The background job: build, sign, verify and store delta row `delta_id` (status ready or failed)."""
        with self.db.session() as s:
            row = s.get(DeltaBundle, delta_id)
            if row is None or row.info.get("status") != "building":
                return
            rel, src, tenant = s.get(Release, row.release_id), s.get(Release, row.source_release_id), s.get(Tenant, row.tenant_id)
            assert rel is not None and src is not None and tenant is not None
            signing = dict(tenant.delta_signing or {})
            keyring_pem, purpose = tenant.keyring_pem or "", tenant.keyring_check_purpose
            new_sha, old_sha, fmt = rel.sha256, src.sha256, rel.format
            tid, rel_id = tenant.id, rel.id
        error: str | None = None
        try:
            if not signing:
                raise DeltaError("the tenant's signing key was removed before the build ran", "set it again and retry")
            key_pem = unseal(self.secret, signing["key_sealed"]).encode()
            keyring = load_keyring(keyring_pem.encode(), purpose)
            work = self.data_dir / "delta-builds"
            work.mkdir(exist_ok=True)
            # A remote store's bundles are fetched to temporary files under the data directory (refused when they
            # would fill it) and removed after the build.
            with (
                tempfile.TemporaryDirectory(prefix="build-", dir=work) as tmp,
                self.store.local(new_sha) as new_path,
                self.store.local(old_sha) as old_path,
            ):
                out = Path(tmp) / "delta.raucb"
                create_delta_bundle(
                    old_path, new_path, out, signing["cert_pem"].encode(), key_pem, keyring,
                    fmt="verity" if fmt == "verity" else "plain", progress=progress,
                )  # fmt: skip
                upload = Upload.from_file(self.store, out)
                try:
                    with self.db.session() as s:
                        target = s.get(Release, rel_id)
                        row = s.get(DeltaBundle, delta_id)
                        if target is None or row is None:
                            return  # deleted meanwhile
                        m = self._match(s, tid, target, upload, keyring)
                        row.sha256, row.size, row.signer = upload.sha256, upload.size, m.info["signer"]
                        hashes = {"md5": upload.md5, "sha1": upload.sha1, "sha256": upload.sha256}
                        row.info = {**row.info, "images": m.info["images"], "hashes": hashes, "status": "ready"}
                        self.store.commit(upload.staged, upload.sha256)
                finally:
                    upload.discard()
        except (DeltaError, BundleError, Unprocessable, ValueError, OSError) as exc:
            error = str(exc)
            log.error("delta build %s failed: %s", delta_id, error)
        if error is not None:
            with self.db.session() as s:
                row = s.get(DeltaBundle, delta_id)
                if row is not None:
                    row.info = {**row.info, "status": "failed", "error": error}


def _check_signer(cert_pem: bytes, key_pem: bytes, keyring: Keyring) -> str:
    """The key must belong to the certificate and the keyring must trust it, or devices would refuse every delta."""
    try:
        cert, key, _ = load_signer(cert_pem, key_pem)
        keyring.verify_chain(cert, [])
    except BundleError as exc:
        raise Invalid(f"signing key rejected: {exc}; use a certificate the tenant keyring trusts") from exc
    pub = serialization.PublicFormat.SubjectPublicKeyInfo
    if cert.public_key().public_bytes(serialization.Encoding.DER, pub) != key.public_key().public_bytes(
        serialization.Encoding.DER, pub
    ):
        raise Invalid("signing key rejected: the key does not belong to the certificate; pass the certificate's own key")
    return cert.subject.rfc4514_string()
