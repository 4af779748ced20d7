"""The package overlay: a signed APT repository per tenant (ADR 9). Uploads checked and stored, suites published
(indexes in the artifact store, Release signed with the tenant's repository key), and what a device may fetch."""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..db import Database
from ..errors import Conflict, NotFound
from ..models import Tenant, utcnow
from ..overlay_debs import read_deb, valid_suite
from ..overlay_index import IndexedPackage, build_suite, by_hash_path
from ..overlay_keys import RepoPgp
from ..overlay_models import OverlayPackage, OverlaySuite
from ..store import ArtifactMissing, ArtifactStore
from . import audit, overlay_fixes, vuln_history
from .auth import Principal
from .overlay_blobs import dropped, lock_publishing, unreferenced
from .releases import Upload
from .signing_keys import APT, SharedKeys, StoredKeys

__all__ = ["OverlayService", "package_json"]

RELEASE_FILES = ("InRelease", "Release", "Release.gpg")


def package_json(p: OverlayPackage) -> dict[str, Any]:
    return {
        "id": p.id,
        "suite": p.suite,
        "name": p.name,
        "version": p.version,
        "architecture": p.architecture,
        "sha256": p.sha256,
        "size": p.size,
        "uploaded_by": p.uploaded_by,
        "created_at": p.created_at.isoformat(),
        "fixes": list(p.fixes or []),
    }


def _keys_json(k: StoredKeys) -> dict[str, Any]:
    rotated_at = k.rotated_at.isoformat() if k.rotated_at else None
    return {"fingerprint": k.current, "retiring_fingerprint": k.retiring, "rotated_at": rotated_at, "public_key": k.public}


def suite_json(r: OverlaySuite) -> dict[str, Any]:
    return {
        "suite": r.suite,
        "fingerprint": r.fingerprint,
        "published_at": r.published_at.isoformat(),
        "valid_until": r.valid_until.isoformat(),
    }


def _aware(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


class OverlayService:
    def __init__(
        self,
        db: Database,
        store: ArtifactStore,
        pgp: RepoPgp,
        secret: bytes,
        architectures: tuple[str, ...],
        valid_days: int,
        max_deb_bytes: int,
    ) -> None:
        self.db, self.store, self.pgp = db, store, pgp
        self.signing = SharedKeys(db, secret, pgp, APT)  # the same keys on every host
        self.architectures, self.max_deb_bytes = architectures, max_deb_bytes
        self.valid_for = dt.timedelta(days=valid_days)

    # -- keys ---------------------------------------------------------------------------------------------------

    @staticmethod
    def _uid(tenant_id: int, tenant: str | None) -> str:
        return f"Bulkhead overlay repository of {tenant or tenant_id}"

    def _key(self, tenant_id: int, tenant: str | None, s: Session | None = None) -> StoredKeys:
        """The tenant's keys; in `s` when a session is open (SQLite: a second one would wait for it)."""
        uid = self._uid(tenant_id, tenant)
        return self.signing.keys(tenant_id, uid) if s is None else self.signing.ensure(s, tenant_id, uid)[0]

    def key(self, who: Principal) -> dict[str, Any]:
        """The tenant's repository keys (the current one generated on first use): what devices name in Signed-By."""
        who.require("viewer")
        return _keys_json(self._key(who.require_tenant(), who.tenant))

    def device_key(self, who: Principal) -> str:
        assert who.tenant_id is not None
        return self._key(who.tenant_id, who.tenant).public

    def rotate_key(self, who: Principal) -> dict[str, Any]:
        """A new current key; every suite is published again, signed by the new and the retiring key (admins)."""
        who.require("admin")
        tid = who.require_tenant()
        keys = self.signing.rotate(tid, self._uid(tid, who.tenant), utcnow())
        self._republish(who, tid, keys, "overlay.key.rotate", retiring=keys.retiring)
        return _keys_json(keys)

    def finish_rotation(self, who: Principal) -> dict[str, Any]:
        """The retiring key deleted; every suite is published again, signed by the current key only (admins)."""
        who.require("admin")
        tid = who.require_tenant()
        keys, retired = self.signing.finish(tid, self._uid(tid, who.tenant))
        self._republish(who, tid, keys, "overlay.key.finish", retired=retired)
        return _keys_json(keys)

    def _republish(self, who: Principal, tid: int, keys: StoredKeys, action: str, **details: Any) -> None:
        with self.db.session() as s:
            for suite in sorted(s.scalars(select(OverlaySuite.suite).where(OverlaySuite.tenant_id == tid))):
                self._publish(s, tid, suite, keys)
            audit.record(s, who, action, keys.current, **details)

    # -- uploads ------------------------------------------------------------------------------------------------

    def upload(self, who: Principal, suite: str, upload: Upload) -> dict[str, Any]:
        """Check a .deb and publish it in `suite`; on any error nothing is stored."""
        try:
            who.require("operator")
            tid = who.require_tenant()
            valid_suite(suite)
            keys = self._key(tid, who.tenant)  # signing must work before anything is stored
            with upload.local() as path:
                info = read_deb(path, self.architectures)
            try:
                with self.db.session() as s:
                    clash = s.scalar(
                        select(OverlayPackage.id).where(
                            OverlayPackage.tenant_id == tid,
                            OverlayPackage.suite == suite,
                            OverlayPackage.name == info.name,
                            OverlayPackage.version == info.version,
                            OverlayPackage.architecture == info.architecture,
                        )
                    )
                    if clash is not None:
                        raise self._duplicate(info.name, info.version, info.architecture, suite)
                    row = OverlayPackage(
                        tenant_id=tid,
                        suite=suite,
                        name=info.name,
                        version=info.version,
                        architecture=info.architecture,
                        control=info.control,
                        sha256=upload.sha256,
                        md5=upload.md5,
                        size=upload.size,
                        uploaded_by=f"{who.kind}:{who.name}",
                        fixes=list(info.fixes),
                    )
                    s.add(row)
                    s.flush()
                    self.store.commit(upload.staged, upload.sha256)
                    self._publish(s, tid, suite, keys)
                    if overlay_fixes.declare(s, tid, row, f"{who.kind}:{who.name}"):
                        vuln_history.record(s, tid, "overlay upload")
                    audit.record(
                        s, who, "overlay.upload", f"{suite} {info.name} {info.version} {info.architecture}",
                        sha256=upload.sha256, fixes=list(info.fixes),
                    )  # fmt: skip
                    return package_json(row)
            except IntegrityError as exc:
                raise self._duplicate(info.name, info.version, info.architecture, suite) from exc
        finally:
            upload.discard()

    @staticmethod
    def _duplicate(name: str, version: str, arch: str, suite: str) -> Conflict:
        return Conflict(
            f"{name} {version} ({arch}) is already in suite {suite}: a published version never changes; "
            "bump the version (e.g. +bulkhead2) or remove the old one first"
        )

    def list_packages(self, who: Principal, suite: str | None = None, name: str | None = None) -> list[dict[str, Any]]:
        who.require("viewer")
        tid = who.require_tenant()
        with self.db.session() as s:
            q = select(OverlayPackage).where(OverlayPackage.tenant_id == tid)
            if suite:
                q = q.where(OverlayPackage.suite == suite)
            if name:
                q = q.where(OverlayPackage.name == name)
            q = q.order_by(OverlayPackage.suite, OverlayPackage.name, OverlayPackage.id)
            return [package_json(p) for p in s.scalars(q)]

    def list_suites(self, who: Principal) -> list[dict[str, Any]]:
        who.require("viewer")
        tid = who.require_tenant()
        with self.db.session() as s:
            rows = s.scalars(select(OverlaySuite).where(OverlaySuite.tenant_id == tid).order_by(OverlaySuite.suite))
            return [suite_json(r) for r in rows]

    def remove(self, who: Principal, package_id: int) -> None:
        """Remove a package from its suite and publish the suite again; its file goes when nothing else names it."""
        who.require("operator")
        tid = who.require_tenant()
        keys = self._key(tid, who.tenant)
        with self.db.session() as s:
            row = s.get(OverlayPackage, package_id)
            if row is None or row.tenant_id != tid:
                raise NotFound(f"no overlay package {package_id}: see bulkhead overlay list")
            sha, suite = row.sha256, row.suite
            if overlay_fixes.withdraw(s, tid, row):
                vuln_history.record(s, tid, "overlay remove")
            s.delete(row)
            s.flush()
            self._publish(s, tid, suite, keys)
            audit.record(s, who, "overlay.remove", f"{suite} {row.name} {row.version} {row.architecture}", sha256=sha)
            unused = not s.scalar(select(func.count()).select_from(OverlayPackage).where(OverlayPackage.sha256 == sha))
        if unused:
            self.store.remove(sha)

    # -- publishing ---------------------------------------------------------------------------------------------

    def _publish(self, s: Session, tid: int, suite: str, keys: StoredKeys, now: dt.datetime | None = None) -> OverlaySuite:
        """Generate and sign the suite's indexes from its rows (in the caller's transaction); the files of the
        generation it drops leave the store unless something else names them (overlay_blobs.py)."""
        now = now or utcnow()
        lock_publishing(s)
        row = s.scalar(select(OverlaySuite).where(OverlaySuite.tenant_id == tid, OverlaySuite.suite == suite).with_for_update())
        tenant = s.get(Tenant, tid)
        assert tenant is not None
        pkgs = [
            IndexedPackage(p.name, p.version, p.architecture, p.control, p.sha256, p.md5, p.size)
            for p in s.scalars(select(OverlayPackage).where(OverlayPackage.tenant_id == tid, OverlayPackage.suite == suite))
        ]
        index = build_suite(suite, f"Bulkhead overlay of {tenant.name}", self.architectures, pkgs, now, self.valid_for)
        files: dict[str, Any] = {}
        for path, data in index.files.items():
            sha = hashlib.sha256(data).hexdigest()
            try:
                self.store.stat(sha)
            except ArtifactMissing:
                self.store.commit(self.store.stage_bytes(data), sha)
            files[path] = {"sha256": sha, "size": len(data)}
        release = index.release.encode()
        bundle = self.signing.bundle(keys)
        inrelease = self.pgp.clearsign(tid, bundle, release)
        detached = self.pgp.detach_sign(tid, bundle, release)
        gone: set[str] = set()
        if row is None:
            row = OverlaySuite(tenant_id=tid, suite=suite, previous_files={})
            s.add(row)
        else:
            gone = dropped(row.previous_files or {}, row.files, files)
            row.previous_files = row.files
        row.release, row.inrelease, row.release_gpg, row.fingerprint = index.release, inrelease, detached, keys.current
        row.files, row.published_at, row.valid_until = files, now, now + self.valid_for
        s.flush()
        # Under the publishing lock, before the commit: a failed commit leaves the dropped generation's row without
        # its files, which only a device still reading that generation (two publications ago) would miss.
        for sha in unreferenced(s, gone):
            self.store.remove(sha)
        return row

    def refresh(self, now: dt.datetime | None = None) -> int:
        """Publish again (re-sign) every suite with less than half its validity left; the number published."""
        now = now or utcnow()
        due_before = now + self.valid_for / 2
        with self.db.session() as s:
            due = [(r.tenant_id, r.suite) for r in s.scalars(select(OverlaySuite).where(OverlaySuite.valid_until < due_before))]
        for tid, suite in due:
            with self.db.session() as s:
                tenant = s.get(Tenant, tid)
                self._publish(s, tid, suite, self._key(tid, tenant.name if tenant else None, s), now)
        return len(due)

    # -- what devices fetch -------------------------------------------------------------------------------------

    def _suite(self, s: Session, who: Principal, suite: str) -> OverlaySuite:
        row = s.scalar(select(OverlaySuite).where(OverlaySuite.tenant_id == who.tenant_id, OverlaySuite.suite == suite))
        if row is None:
            raise NotFound(f"the overlay has no suite {suite!r}: upload a package to it first (bulkhead overlay upload)")
        return row

    def release_file(self, who: Principal, suite: str, name: str) -> str:
        """InRelease, Release or Release.gpg of the device's tenant's suite (published again first when due)."""
        with self.db.session() as s:
            row = self._suite(s, who, suite)
            if _aware(row.valid_until) < utcnow() + self.valid_for / 2:
                row = self._publish(s, row.tenant_id, suite, self._key(row.tenant_id, who.tenant, s))
            return {"InRelease": row.inrelease, "Release": row.release, "Release.gpg": row.release_gpg}[name]

    def index_file(self, who: Principal, suite: str, path: str) -> str:
        """The digest of an index file (by its path, or its by-hash path) of this or the previous generation."""
        with self.db.session() as s:
            row = self._suite(s, who, suite)
            for files in (row.files, row.previous_files or {}):
                if path in files:
                    return str(files[path]["sha256"])
                for name, f in files.items():
                    if by_hash_path(name, f["sha256"]) == path:
                        return str(f["sha256"])
        raise NotFound(f"dists/{suite}/{path} is not in the overlay's index")

    def pool_file(self, who: Principal, sha256: str, filename: str) -> str:
        """The digest of a package the device's tenant has uploaded (NotFound otherwise)."""
        with self.db.session() as s:
            found = s.scalar(
                select(OverlayPackage.id)
                .where(OverlayPackage.tenant_id == who.tenant_id, OverlayPackage.sha256 == sha256)
                .limit(1)
            )
        if found is None or not filename.endswith(".deb"):
            raise NotFound(f"pool/{sha256}/{filename} is not in the overlay")
        return sha256
