"""App version SBOMs: one CycloneDX 1.4-1.6 JSON document per app version, checked, stored content-addressed.

An SBOM is checked before anything is stored: it must be CycloneDX JSON that `bulkhead.cra.sbom.identify` accepts
and whose components `bulkhead.cra.components` reads; a document that is not is refused (422) and nothing changes.
The scans match its components (those with a package URL) against OSV records for the devices that run the version.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bulkhead.cra import SbomError, identify
from bulkhead.cra.components import read_sbom
from bulkhead.cra.errors import CraError

from ..db import Database
from ..errors import NotFound, Unprocessable
from ..models import App, DeltaBundle, Release, ReleaseSbom
from ..store import ArtifactStore, Staged
from ..vuln_models import AppSbom
from . import audit
from .auth import Principal
from .releases import Upload

__all__ = ["MAX_APP_SBOM_BYTES", "AppSbomService", "app_sbom_json", "check_app_sbom"]

MAX_APP_SBOM_BYTES = 16 << 20  # an app's SBOM is parsed whole; a container image's is well under a MiB or two
MEDIA_TYPE = "application/vnd.cyclonedx+json"


def app_sbom_json(b: AppSbom) -> dict[str, Any]:
    return {
        "format": "cyclonedx",
        "spec_version": b.spec_version,
        "sha256": b.sha256,
        "size": b.size,
        "components": b.components,
        "created_at": b.created_at.isoformat(),
    }


def check_app_sbom(doc: Any) -> tuple[str, int]:
    """(spec version, components) of a CycloneDX document an app version may carry; Unprocessable naming the problem
    otherwise (what to upload instead)."""
    try:
        info = identify(doc)
    except SbomError as exc:
        raise Unprocessable(f"app SBOM rejected: {exc}; upload CycloneDX 1.4-1.6 JSON") from exc
    if info.format != "cyclonedx":
        raise Unprocessable(
            f"app SBOM rejected: it is {info.format}, an app version carries CycloneDX 1.4-1.6 JSON "
            "(e.g. from 'syft IMAGE -o cyclonedx-json' or 'trivy image --format cyclonedx')"
        )
    try:
        read_sbom([doc])
    except CraError as exc:
        raise Unprocessable(f"app SBOM rejected: its components cannot be read: {exc}") from exc
    return info.spec_version, info.components


class AppSbomService:
    def __init__(self, db: Database, store: ArtifactStore) -> None:
        self.db, self.store = db, store

    def attach(self, who: Principal, name: str, version: str, upload: Upload) -> dict[str, Any]:
        """Keep a CycloneDX JSON document (the upload) as the app version's SBOM, replacing the one it had."""
        try:
            who.require("operator")
            tid = who.require_tenant()
            with self.db.session() as s:
                _app(s, tid, name, version)  # an unknown app version is a 404 before the body is read
            try:
                with upload.open() as f:
                    doc = json.load(f)
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise Unprocessable(f"app SBOM rejected: not JSON ({exc}); upload CycloneDX 1.4-1.6 JSON") from exc
            spec, count = check_app_sbom(doc)
            with self.db.session() as s:
                app = _app(s, tid, name, version)
                out, replaced = self._keep(s, who, app, spec, count, upload.staged, upload.sha256, upload.size)
            if replaced and replaced != upload.sha256:
                self.remove_unused(replaced)
            return out
        finally:
            upload.discard()

    def attach_document(self, s: Session, who: Principal, app: App, doc: Any) -> dict[str, Any]:
        """Keep an already checked document (given with a new app version) in the caller's transaction."""
        spec, count = check_app_sbom(doc)
        data = json.dumps(doc, separators=(",", ":")).encode()
        staged = self.store.stage_bytes(data)
        try:
            out, _ = self._keep(s, who, app, spec, count, staged, hashlib.sha256(data).hexdigest(), len(data))
            return out
        finally:
            staged.discard()

    def _keep(
        self, s: Session, who: Principal, app: App, spec: str, count: int, staged: Staged, sha256: str, size: int
    ) -> tuple[dict[str, Any], str | None]:
        old = s.scalar(select(AppSbom).where(AppSbom.app_id == app.id))
        replaced = None
        if old is not None:
            replaced = old.sha256
            s.delete(old)
            s.flush()
        row = AppSbom(tenant_id=app.tenant_id, app_id=app.id, spec_version=spec, sha256=sha256, size=size, components=count)
        s.add(row)
        s.flush()
        self.store.commit(staged, sha256)
        audit.record(s, who, "app.sbom", f"{app.name}:{app.version}", sha256=sha256, components=count)
        return app_sbom_json(row), replaced

    def sbom_file(self, who: Principal, name: str, version: str) -> str:
        """The digest of the app version's stored SBOM."""
        who.require("viewer")
        tid = who.require_tenant()
        with self.db.session() as s:
            app = _app(s, tid, name, version)
            row = s.scalar(select(AppSbom).where(AppSbom.app_id == app.id))
            if row is None:
                raise NotFound(
                    f"app '{name}' version '{version}' has no SBOM; attach one with 'bulkhead app sbom {name} {version} FILE'"
                )
            return row.sha256

    def remove_unused(self, sha256: str) -> None:
        """Delete a stored file nothing refers to any more (an app SBOM may share its bytes with a release's)."""
        with self.db.session() as s:
            used = any(
                s.scalar(select(func.count()).select_from(t).where(t.sha256 == sha256))
                for t in (AppSbom, Release, ReleaseSbom, DeltaBundle)
            )
        if not used:
            self.store.remove(sha256)


def sboms_of(s: Session, app_ids: list[int]) -> dict[int, dict[str, Any]]:
    """The SBOM summary of each app version that has one."""
    if not app_ids:
        return {}
    return {b.app_id: app_sbom_json(b) for b in s.scalars(select(AppSbom).where(AppSbom.app_id.in_(app_ids)))}


def _app(s: Session, tid: int, name: str, version: str) -> App:
    app = s.scalar(select(App).where(App.tenant_id == tid, App.name == name, App.version == version))
    if app is None:
        raise NotFound(f"app '{name}' version '{version}' does not exist; create it with 'bulkhead app create'")
    return app
