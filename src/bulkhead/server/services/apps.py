"""Apps (versioned container applications), registry credentials, and desired apps/files per device or group."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from ..db import Database
from ..errors import Conflict, Invalid, NotFound
from ..models import App, Device, DeviceGroup, Release, Rollout, Tenant
from ..security import seal
from ..vuln_models import AppSbom
from . import audit
from .app_sboms import AppSbomService, check_app_sbom, sboms_of
from .auth import Principal
from .desired import compose_to_containers, normalize_container, normalize_file, normalize_package, seal_file
from .devices import find_device
from .fleet_names import check_group_names, listing
from .keyset import Page, Paged, keyset, paged
from .lookups import tenant_release
from .versions import refuse_downgrade

__all__ = ["AppService", "app_json"]


def app_json(a: App, sbom: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "id": a.id,
        "name": a.name,
        "version": a.version,
        "containers": a.containers,
        "created_at": a.created_at.isoformat(),
        "sbom": sbom,
    }


class AppService:
    def __init__(self, db: Database, secret: bytes, sboms: AppSbomService | None = None) -> None:
        self.db, self.secret, self.sboms = db, secret, sboms

    def create(
        self,
        who: Principal,
        name: str,
        version: str,
        containers: list[dict[str, Any]] | None,
        compose: str | None,
        sbom: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Create an app version, with its CycloneDX SBOM when one is given (a bad SBOM refuses the whole version)."""
        who.require("operator")
        tid = who.require_tenant()
        if not name or not version or len(name) > 128 or len(version) > 128:
            raise Invalid("an app needs a name and a version (1-128 characters each)")
        specs = _specs(containers, compose)
        if sbom is not None:
            if self.sboms is None:
                raise Invalid("this server keeps no app SBOMs")
            check_app_sbom(sbom)
        with self.db.session() as s:
            if s.scalar(select(App).where(App.tenant_id == tid, App.name == name, App.version == version)) is not None:
                raise Conflict(
                    f"app '{name}' version '{version}' exists already; change its containers with 'bulkhead app update' "
                    "or create a new version"
                )
            app = App(tenant_id=tid, name=name, version=version, containers=specs)
            s.add(app)
            s.flush()
            audit.record(s, who, "app.create", f"{name}:{version}")
            kept = self.sboms.attach_document(s, who, app, sbom) if sbom is not None and self.sboms is not None else None
            return app_json(app, kept)

    def update(
        self, who: Principal, name: str, version: str, containers: list[dict[str, Any]] | None, compose: str | None
    ) -> dict[str, Any]:
        """Replace an app version's containers: devices that run it recreate the containers that changed."""
        who.require("operator")
        tid = who.require_tenant()
        specs = _specs(containers, compose)
        with self.db.session() as s:
            app = _find_app(s, tid, name, version)
            app.containers = specs
            audit.record(s, who, "app.update", f"{name}:{version}", containers=[c["name"] for c in specs])
            return app_json(app, sboms_of(s, [app.id]).get(app.id))

    def delete(self, who: Principal, name: str, version: str) -> None:
        """Delete an app version nothing uses: no group or device wants it and no rollout names it."""
        who.require("operator")
        tid = who.require_tenant()
        with self.db.session() as s:
            app = _find_app(s, tid, name, version)
            users = [
                f"group '{g.name}'"
                for g in s.scalars(select(DeviceGroup).where(DeviceGroup.tenant_id == tid))
                if ((g.desired or {}).get("apps") or {}).get(name) == version
            ]
            users += [
                f"device '{d.name}'"
                for d in s.scalars(select(Device).where(Device.tenant_id == tid))
                if ((d.desired or {}).get("apps") or {}).get(name) == version
            ]
            users += [f"rollout '{r}'" for r in s.scalars(select(Rollout.name).where(Rollout.app_id == app.id))]
            if users:
                raise Conflict(
                    f"app '{name}' version '{version}' is still used by {listing(users)}; move those to another "
                    "version (group set / device set --app) and delete those rollouts first"
                )
            audit.record(s, who, "app.delete", f"{name}:{version}")
            sbom = sboms_of(s, [app.id]).get(app.id)
            if sbom is not None:
                s.execute(delete(AppSbom).where(AppSbom.app_id == app.id))
            s.delete(app)
        if sbom is not None and self.sboms is not None:
            self.sboms.remove_unused(sbom["sha256"])

    def list_apps(self, who: Principal, name: str | None, page: Page) -> Paged[dict[str, Any]]:
        who.require("viewer")
        tid = who.require_tenant()
        with self.db.session() as s:
            q = select(App).where(App.tenant_id == tid)
            if name:
                q = q.where(App.name == name)
            rows = list(s.scalars(keyset(q, [App.name, App.id], page)))
            sboms = sboms_of(s, [a.id for a in rows])
            return paged(rows, page, lambda a: (a.name, a.id), lambda a: app_json(a, sboms.get(a.id)))

    def set_registry(self, who: Principal, host: str, username: str, password: str) -> dict[str, Any]:
        who.require("admin")
        tid = who.require_tenant()
        if not host or "/" in host:
            raise Invalid("registry host must be 'name[:port]', e.g. 'registry.example.com:5000'")
        with self.db.session() as s:
            tenant = s.get(Tenant, tid)
            assert tenant is not None
            sealed = seal(self.secret, password)  # stored encrypted with the server secret
            tenant.registries = {**(tenant.registries or {}), host: {"username": username, "password": sealed}}
            audit.record(s, who, "registry.set", host, username=username)
            return {"host": host, "username": username}

    # -- desired apps and files ------------------------------------------------------
    def set_desired(
        self,
        who: Principal,
        target: str,
        ref: str,
        release_id: int | str | None = "keep",
        apps: dict[str, str | None] | None = None,
        files: list[dict[str, Any]] | None = None,
        remove_files: list[str] | None = None,
        allow_downgrade: bool = False,
        packages: dict[str, dict[str, Any] | None] | None = None,
    ) -> dict[str, Any]:
        """Change a device's or group's desired state; only the parts given change. A group's release older
        than the one it has, or than what its devices run, is refused unless `allow_downgrade`."""
        who.require("operator")
        tid = who.require_tenant()
        with self.db.session() as s:
            obj: Device | DeviceGroup = self._target(s, tid, target, ref)
            desired = dict(obj.desired or {})
            if release_id != "keep":
                if target == "device":
                    raise Invalid("set a device's release with 'desired-release'")
                if release_id is not None:
                    rel = tenant_release(s, tid, int(release_id))
                    if not allow_downgrade:
                        _refuse_group_downgrade(s, tid, ref, desired.get("release_id"), rel)
                desired["release_id"] = release_id
            if apps:
                current = dict(desired.get("apps") or {})
                for name, version in apps.items():
                    if (
                        version is not None
                        and s.scalar(select(App.id).where(App.tenant_id == tid, App.name == name, App.version == version)) is None
                    ):
                        raise NotFound(f"app '{name}' version '{version}' does not exist; create it with 'bulkhead app create'")
                    current[name] = version
                desired["apps"] = current
            if files or remove_files:
                current_files = {f["path"]: f for f in desired.get("files") or []}
                for f in files or []:
                    nf = seal_file(normalize_file(f), self.secret)  # a file marked secret is sealed at rest
                    current_files[nf["path"]] = nf
                for p in remove_files or []:
                    current_files.pop(p, None)
                desired["files"] = [current_files[p] for p in sorted(current_files)]
            if packages:
                current_pkgs = dict(desired.get("packages") or {})
                for pname, spec in packages.items():
                    if spec is None:
                        current_pkgs.pop(pname, None)
                    else:
                        current_pkgs[pname] = normalize_package(pname, spec)
                desired["packages"] = {n: current_pkgs[n] for n in sorted(current_pkgs)}
            obj.desired = desired
            audit.record(
                s, who, f"{target}.desired", ref, apps=apps, files=[f.get("path") for f in files or []], remove_files=remove_files
            )
            if packages:
                audit.record(s, who, f"{target}.packages", ref, packages=packages)
            return {"target": target, "ref": ref, "desired": _summary(desired)}

    def _target(self, s: Session, tid: int, target: str, ref: str) -> Device | DeviceGroup:
        if target == "group":
            group = s.scalar(select(DeviceGroup).where(DeviceGroup.tenant_id == tid, DeviceGroup.name == ref))
            if group is None:
                check_group_names([ref])
                group = DeviceGroup(tenant_id=tid, name=ref, desired={})
                s.add(group)
            return group
        return find_device(s, tid, ref)


def _specs(containers: list[dict[str, Any]] | None, compose: str | None) -> list[dict[str, Any]]:
    if (containers is None) == (compose is None):
        raise Invalid("give either 'containers' or 'compose' (a compose file's text)")
    specs = compose_to_containers(compose) if compose is not None else [normalize_container(c) for c in containers or []]
    if not specs:
        raise Invalid("an app needs at least one container")
    if len({c["name"] for c in specs}) != len(specs):
        raise Invalid("container names within an app must be unique")
    return specs


def _find_app(s: Session, tid: int, name: str, version: str) -> App:
    app = s.scalar(select(App).where(App.tenant_id == tid, App.name == name, App.version == version))
    if app is None:
        versions = list(s.scalars(select(App.version).where(App.tenant_id == tid, App.name == name).order_by(App.id)))
        raise NotFound(f"app '{name}' version '{version}' does not exist; versions of '{name}': {listing(versions)}")
    return app


def _refuse_group_downgrade(s: Session, tid: int, group: str, current_id: Any, rel: Release) -> None:
    """A group's new release must not be older than its current one, nor than what its devices of the
    release's compatible run."""
    current = s.get(Release, current_id) if isinstance(current_id, int) else None
    if current is not None and current.compatible == rel.compatible:
        refuse_downgrade(rel.version, current.version, f"group '{group}' has release {current.version}", False)
    for d in s.scalars(select(Device).where(Device.tenant_id == tid, Device.compatible == rel.compatible)):
        if group in (d.groups or []) and d.os_version:
            refuse_downgrade(rel.version, d.os_version, f"device '{d.name}' of group '{group}' runs {d.os_version}", False)


def _summary(desired: dict[str, Any]) -> dict[str, Any]:
    return {
        "release_id": desired.get("release_id"),
        "apps": desired.get("apps") or {},
        "files": [{"path": f["path"], "sha256": f["sha256"], "mode": f["mode"]} for f in desired.get("files") or []],
        **({"packages": desired["packages"]} if desired.get("packages") else {}),
    }
