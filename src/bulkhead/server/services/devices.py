"""Devices: bootstrap tokens, enrollment, approval, tags, and what a device may see of itself."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bulkhead.protocol import DeviceStatus

from ..db import Database
from ..errors import Conflict, Forbidden, Invalid, NotFound, Unauthorized
from ..ids import as_id
from ..models import App, BootstrapToken, DeltaBundle, Device, DeviceGroup, Release, Tenant, utcnow
from ..security import PREFIX_BOOTSTRAP, PREFIX_DEVICE, hash_token, new_token, unseal
from . import audit, device_reset
from .actions import install_gate, open_action, open_app_actions, open_package_action
from .artifacts import artifact_filename, delta_filename
from .auth import Principal, _aware
from .command_rows import pending_commands
from .deltas import offered_delta
from .desired import image_registry, merge_desired, open_file
from .device_list import DeviceFilter, device_page, device_page_json
from .device_rows import add_device
from .fleet_names import NAME, NAME_RULE, check_group_names
from .json_pages import JsonPage
from .keyset import Page, Paged, keyset, paged
from .lookups import tenant_release
from .security_events import device_counts as security_counts
from .versions import refuse_downgrade

__all__ = ["DeviceService", "desired_release", "device_json", "find_device", "lifecycle_json", "merged_desired"]

log = logging.getLogger(__name__)

_DISABLED = "device '{name}' is disabled: an operator must enable it ('bulkhead device enable {name}')"


def device_json(d: Device) -> dict[str, Any]:
    return {
        "id": d.id,
        "name": d.name,
        "compatible": d.compatible,
        "status": d.status,
        "tags": d.tags,
        "groups": d.groups,
        "attributes": d.attributes,
        "reported": d.reported,
        "desired_release_id": d.desired_release_id,
        "desired": {
            "apps": (d.desired or {}).get("apps") or {},
            "files": [f["path"] for f in (d.desired or {}).get("files") or []],
            "packages": (d.desired or {}).get("packages") or {},
        },
        "update": d.update_status or {},
        "bytes_served": d.bytes_served,
        "last_seen": d.last_seen.isoformat() if d.last_seen else None,
    }


def _bootstrap_json(b: BootstrapToken) -> dict[str, Any]:
    return {
        "id": b.id,
        "name": b.name,
        "group": b.group_name,
        "revoked": b.revoked,
        "uses": b.uses,
        "max_uses": b.max_uses,
        "requires_approval": b.requires_approval,
        "expires_at": b.expires_at.isoformat() if b.expires_at else None,
    }


def lifecycle_json(d: Device) -> dict[str, Any]:
    """A device's identity state: status, credential epoch, whether one re-enrollment is allowed."""
    return {
        "id": d.id,
        "name": d.name,
        "status": d.status,
        "credential_epoch": d.credential_epoch or 0,
        "reenroll_allowed": bool(d.reenroll_allowed),
        "factory_reset_requested_at": d.factory_reset_at.isoformat() if d.factory_reset_at else None,
    }


def find_device(s: Session, tenant_id: int, ref: str) -> Device:
    """A tenant's device by id (digits) or name, or NotFound."""
    q = select(Device).where(Device.tenant_id == tenant_id)
    dev_id = as_id(ref)
    q = q.where(Device.id == dev_id) if dev_id is not None else q.where(Device.name == ref)
    dev = s.scalar(q)
    if dev is None:
        raise NotFound(f"device '{ref}' does not exist")
    return dev


def merged_desired(s: Session, dev: Device) -> dict[str, Any]:
    """The device's desired state: its groups' layers in order, then its own (later wins)."""
    layers: list[dict[str, Any]] = []
    if dev.groups:
        groups = {
            g.name: g
            for g in s.scalars(
                select(DeviceGroup).where(DeviceGroup.tenant_id == dev.tenant_id, DeviceGroup.name.in_(dev.groups))
            )
        }
        layers = [groups[n].desired or {} for n in dev.groups if n in groups]
    layers.append({**(dev.desired or {}), "release_id": dev.desired_release_id})
    return merge_desired(layers)


def desired_release(s: Session, dev: Device, merged: dict[str, Any] | None = None) -> Release | None:
    """The OS release the device's (or its groups') desired state names, if it is the tenant's and fits the device."""
    release_id = (merged if merged is not None else merged_desired(s, dev))["release_id"]
    rel = s.get(Release, release_id) if release_id else None
    if rel is not None and (rel.tenant_id != dev.tenant_id or rel.compatible != dev.compatible):
        return None
    return rel


class DeviceService:
    def __init__(
        self, db: Database, secret: bytes, delta_max_ratio: float = 0.75, on_change: Callable[[], object] = lambda: None
    ) -> None:
        self.db, self.secret, self.delta_max_ratio = db, secret, delta_max_ratio
        # Called after a device joined or changed (enrolled, approved, tagged): running rollouts may take it in.
        self.on_change = on_change

    # -- bootstrap tokens ---------------------------------------------------------
    def create_bootstrap(
        self,
        who: Principal,
        name: str,
        group: str | None,
        expires_in_hours: float | None,
        requires_approval: bool,
        max_uses: int | None,
    ) -> dict[str, Any]:
        who.require("admin")
        tid = who.require_tenant()
        if expires_in_hours is not None and expires_in_hours <= 0:
            raise Invalid("expires_in_hours must be positive")
        if max_uses is not None and max_uses <= 0:
            raise Invalid("max_uses must be positive")
        token, h = new_token(PREFIX_BOOTSTRAP)
        expires = utcnow() + dt.timedelta(hours=expires_in_hours) if expires_in_hours else None
        group = group or None  # "" is no group, as it always was
        if group is not None:
            check_group_names([group])
        with self.db.session() as s:
            if group and s.scalar(select(DeviceGroup).where(DeviceGroup.tenant_id == tid, DeviceGroup.name == group)) is None:
                s.add(DeviceGroup(tenant_id=tid, name=group))
            bt = BootstrapToken(
                tenant_id=tid,
                name=name,
                token_hash=h,
                group_name=group,
                requires_approval=requires_approval,
                expires_at=expires,
                max_uses=max_uses,
            )
            s.add(bt)
            s.flush()
            audit.record(s, who, "bootstrap.create", name, group=group)
            return {
                "id": bt.id,
                "name": name,
                "token": token,
                "group": group,
                "requires_approval": requires_approval,
                "max_uses": max_uses,
                "expires_at": expires.isoformat() if expires else None,
            }

    def list_bootstrap(self, who: Principal, page: Page) -> Paged[dict[str, Any]]:
        who.require("admin")  # names, groups and uses of enrollment secrets: admins only, like creating them
        tid = who.require_tenant()
        with self.db.session() as s:
            q = select(BootstrapToken).where(BootstrapToken.tenant_id == tid)
            rows = list(s.scalars(keyset(q, [BootstrapToken.id], page)))
            return paged(rows, page, lambda b: (b.id,), _bootstrap_json)

    def revoke_bootstrap(self, who: Principal, token_id: int) -> None:
        who.require("admin")
        with self.db.session() as s:
            bt = s.get(BootstrapToken, token_id)
            if bt is None or bt.tenant_id != who.tenant_id:
                raise NotFound(f"bootstrap token {token_id} does not exist")
            bt.revoked = True
            audit.record(s, who, "bootstrap.revoke", bt.name)

    # -- enrollment ---------------------------------------------------------------
    def enroll(self, bootstrap: str, name: str, compatible: str, attributes: dict[str, Any]) -> dict[str, Any]:
        """Exchange a bootstrap token for a per-device credential.

        A name that exists is never taken over: its credential stays until the device rotates it itself or an
        operator resets it (`reset_credential`), which allows exactly one enrollment under the name.
        """
        if not NAME.match(name):
            raise Invalid(f"device name {name!r} is invalid: 1-128 letters, digits, '.', '_', ':' or '-'")
        if not compatible or len(compatible) > 256:
            raise Invalid("compatible must be the device's RAUC compatible string (1-256 characters)")
        credential, ch = new_token(PREFIX_DEVICE)
        with self.db.session() as s:
            bt = s.scalar(select(BootstrapToken).where(BootstrapToken.token_hash == hash_token(bootstrap)).with_for_update())
            if bt is None:
                raise Unauthorized("unknown bootstrap token")
            if bt.revoked:
                raise Unauthorized("this bootstrap token was revoked; ask the operator for a new one")
            if bt.expires_at and _aware(bt.expires_at) < utcnow():
                raise Unauthorized("this bootstrap token has expired; ask the operator for a new one")
            if bt.max_uses is not None and bt.uses >= bt.max_uses:
                raise Unauthorized("this bootstrap token has been used up")
            if bt.group_name and not NAME.match(bt.group_name):  # a token made before group names were checked
                log.warning("refused enrollment of %r: bootstrap token %r names group %r", name, bt.name, bt.group_name)
                raise Conflict(
                    f"bootstrap token '{bt.name}' puts devices into group {bt.group_name!r}, which is not a valid group "
                    f"name ({NAME_RULE}): an administrator revokes it and creates a new one with a valid --group"
                )
            dev = s.scalar(select(Device).where(Device.tenant_id == bt.tenant_id, Device.name == name).with_for_update())
            status = "pending" if bt.requires_approval else "active"
            if dev is not None and not dev.reenroll_allowed:
                log.warning(
                    "refused enrollment over existing device %r of tenant %s (bootstrap token %r)", name, bt.tenant_id, bt.name
                )
                raise Conflict(
                    f"device '{name}' is already enrolled and keeps its credential: the device itself renews it with "
                    "POST /device/v1/credential/rotate; if it lost it, an operator allows one new enrollment with "
                    f"'bulkhead device reset-credential {name}'"
                )
            reenroll = dev is not None
            if dev is None:
                groups = [bt.group_name] if bt.group_name else []
                dev = add_device(s, bt.tenant_id, name, compatible, status, groups, attributes, enrolled_with=bt.id)
            else:
                # Re-enrollment after an operator's reset: once; a token that requires approval makes it pending
                # again, and a disabled device stays disabled.
                if dev.status == "disabled":
                    status = "disabled"
                dev.compatible, dev.status, dev.attributes = compatible, status, {**dev.attributes, **attributes}
                dev.reenroll_allowed = False
                dev.credential_epoch = (dev.credential_epoch or 0) + 1
                dev.enrolled_with, dev.previous_credential_hash = bt.id, None
                dev.report_seq = 0  # a device that lost its credential lost its outbox too: its events start at 1
            dev.credential_hash = ch
            dev.last_seen = utcnow()
            bt.uses += 1
            try:
                s.flush()
            except IntegrityError as exc:  # another enrollment took the name at the same moment
                raise Conflict(f"device '{name}' was enrolled at the same moment by another request") from exc
            audit.record(
                s,
                Principal("device", name, bt.tenant_id),
                "device.enroll",
                name,
                bt.tenant_id,
                bootstrap=bt.name,
                status=status,
                reenroll=reenroll,
            )
            out = {"device_id": dev.id, "name": name, "credential": credential, "status": status}
        self.on_change()
        return out

    # -- management -----------------------------------------------------------------
    def _own(self, s: Session, who: Principal, ref: str) -> Device:
        return find_device(s, who.require_tenant(), ref)

    def list_devices(self, who: Principal, filters: DeviceFilter, page: Page) -> Paged[dict[str, Any]]:
        """One page of the tenant's devices that match `filters` (list rows: no inventory), by id."""
        who.require("viewer")
        tid = who.require_tenant()
        with self.db.read() as s:
            return device_page(s, tid, filters, page)

    def list_devices_json(self, who: Principal, filters: DeviceFilter, page: Page) -> JsonPage:
        """`list_devices` as the API sends it: the page's JSON array (written by PostgreSQL there)."""
        who.require("viewer")
        tid = who.require_tenant()
        with self.db.read() as s:
            return device_page_json(s, tid, filters, page)

    def show(self, who: Principal, ref: str) -> dict[str, Any]:
        who.require("viewer")
        with self.db.session() as s:
            dev = self._own(s, who, ref)
            identity = {k: v for k, v in lifecycle_json(dev).items() if k in ("credential_epoch", "factory_reset_requested_at")}
            return device_json(dev) | identity | {"security_events": security_counts(s, dev.id)}

    def approve(self, who: Principal, ref: str) -> dict[str, Any]:
        return self._move(who, ref, DeviceStatus.PENDING, "pending approval", "device.approve", device_json)

    def _move(
        self, who: Principal, ref: str, expect: DeviceStatus, said: str, action: str, render: Callable[[Device], dict[str, Any]]
    ) -> dict[str, Any]:
        """An operator moves a device from `expect` to active (approve, enable), audited; running rollouts may take it."""
        who.require("operator")
        with self.db.session() as s:
            dev = self._own(s, who, ref)
            if dev.status != expect:
                raise Conflict(f"device '{dev.name}' is {dev.status}, not {said}")
            dev.status = DeviceStatus.ACTIVE
            audit.record(s, who, action, dev.name)
            out = render(dev)
        self.on_change()
        return out

    def tag(self, who: Principal, ref: str, add: list[str], remove: list[str]) -> dict[str, Any]:
        who.require("operator")
        for t in add:
            if not NAME.match(t):
                raise Invalid(f"tag {t!r} is invalid: letters, digits, '.', '_', ':' or '-'")
        with self.db.session() as s:
            dev = self._own(s, who, ref)
            dev.tags = sorted((set(dev.tags) | set(add)) - set(remove))
            audit.record(s, who, "device.tag", dev.name, add=add, remove=remove)
            out = device_json(dev)
        self.on_change()
        return out

    def set_desired_release(
        self, who: Principal, ref: str, release_id: int | None, allow_downgrade: bool = False
    ) -> dict[str, Any]:
        who.require("operator")
        with self.db.session() as s:
            dev = self._own(s, who, ref)
            if release_id is not None:
                rel = tenant_release(s, who.tenant_id, release_id)
                if rel.compatible != dev.compatible:
                    raise Invalid(f"release is for '{rel.compatible}' but device '{dev.name}' is '{dev.compatible}'")
                if not allow_downgrade:
                    refuse_downgrade(rel.version, dev.os_version, f"device '{dev.name}' runs {dev.os_version}", False)
            dev.desired_release_id = release_id
            audit.record(s, who, "device.desired", dev.name, release_id=release_id)
            return device_json(dev)

    # -- identity and lifecycle ------------------------------------------------------
    def reset_credential(self, who: Principal, ref: str) -> dict[str, Any]:
        """Revoke a device's credential and every signed URL it holds.

        An enrolled device may then enroll again under its name, once (with a bootstrap token; one that requires
        approval makes it pending again). A device created by `provision` (or registered over DDI) never
        enrolls: it gets its new credential (its DDI TargetToken) in this answer instead.
        """
        who.require("operator")
        credential: str | None = None
        with self.db.session() as s:
            dev = self._own(s, who, ref)
            dev.credential_epoch = (dev.credential_epoch or 0) + 1
            dev.previous_credential_hash = None
            if dev.enrolled_with is None:
                credential, dev.credential_hash = new_token(PREFIX_DEVICE)
                dev.reenroll_allowed = False
            else:
                dev.credential_hash = None
                dev.reenroll_allowed = True
            audit.record(s, who, "device.reset_credential", dev.name, epoch=dev.credential_epoch)
            out = lifecycle_json(dev)
            if credential is not None:
                out["credential"] = credential
        return out

    def factory_reset(self, who: Principal, ref: str, cancel: bool = False) -> dict[str, Any]:
        """Ask the device to erase its data partition and enroll again, or withdraw that (services/device_reset.py)."""
        with self.db.session() as s:
            dev = self._own(s, who, ref)
            (device_reset.cancel if cancel else device_reset.request)(s, who, dev)
            out = lifecycle_json(dev)
        return out

    def reenroll_proven(self, name: str, previous_credential: str, compatible: str, attributes: dict[str, Any]) -> dict[str, Any]:
        """Enrollment after a factory reset, proved with the credential the device held (no bootstrap token)."""
        with self.db.session() as s:
            out = device_reset.reenroll_proven(s, name, previous_credential, compatible, attributes)
        self.on_change()
        return out

    def rotate_credential(self, who: Principal) -> dict[str, Any]:
        """A device swaps its own credential for a new one.

        Its signed URLs stop working at once; the old credential when the device first uses the new one.
        """
        if who.kind != "device" or who.device_id is None:
            raise Forbidden("this endpoint is for devices: send the device's own credential")
        credential, ch = new_token(PREFIX_DEVICE)
        with self.db.session() as s:
            dev = s.get(Device, who.device_id, with_for_update=True)
            if dev is None:
                raise Unauthorized("device no longer exists: enroll again")
            if dev.status == "disabled":
                raise Forbidden(_DISABLED.format(name=dev.name))
            # The credential the device last used stays valid until it first uses the new one: a rotation whose
            # answer was lost does not lock it out (it rotates again with the old one). An unconfirmed new one is dropped.
            if dev.previous_credential_hash is None:
                dev.previous_credential_hash = dev.credential_hash
            dev.credential_hash = ch
            dev.credential_epoch = (dev.credential_epoch or 0) + 1
            audit.record(s, who, "device.rotate_credential", dev.name, epoch=dev.credential_epoch)
            return {"device_id": dev.id, "name": dev.name, "credential": credential, "status": dev.status}

    def disable(self, who: Principal, ref: str) -> dict[str, Any]:
        """Stop serving a device (403 on every device route, no artifacts) until it is enabled; it keeps its credential."""
        who.require("operator")
        with self.db.session() as s:
            dev = self._own(s, who, ref)
            if dev.status == "pending":
                raise Conflict(f"device '{dev.name}' is pending approval: delete it to refuse it ('bulkhead device delete')")
            if dev.status != "disabled":
                dev.status = "disabled"
                dev.credential_epoch = (dev.credential_epoch or 0) + 1  # signed URLs handed out before die now
                audit.record(s, who, "device.disable", dev.name)
            out = lifecycle_json(dev)
        self.on_change()
        return out

    def enable(self, who: Principal, ref: str) -> dict[str, Any]:
        return self._move(who, ref, DeviceStatus.DISABLED, "disabled", "device.enable", lifecycle_json)

    def delete(self, who: Principal, ref: str) -> dict[str, Any]:
        """Decommission a device: its row, credential, history and rollout actions go; its name may enroll anew."""
        who.require("admin")
        with self.db.session() as s:
            dev = self._own(s, who, ref)
            out = {"id": dev.id, "name": dev.name, "deleted": True}
            audit.record(s, who, "device.delete", dev.name, device_id=dev.id)
            s.delete(dev)
        self.on_change()
        return out

    # -- the device's own view ----------------------------------------------------
    def own_state(self, who: Principal) -> tuple[Device, Release | None, dict[str, Any]]:
        """The device, its desired release, and its merged desired apps, files and registry credentials."""
        if who.kind != "device" or who.device_id is None:
            raise Forbidden("this endpoint is for devices")
        with self.db.session() as s:
            dev = s.get(Device, who.device_id)
            if dev is None:
                raise Unauthorized("device no longer exists: enroll again")
            if dev.status == "disabled":
                raise Forbidden(_DISABLED.format(name=dev.name))
            if dev.status != "active":
                raise Forbidden(f"device is {dev.status}: an operator must approve it ('bulkhead device approve {dev.name}')")
            merged = merged_desired(s, dev)
            rel = desired_release(s, dev, merged)
            action: dict[str, Any] | None = None
            act = open_action(s, dev.id)
            if act is not None and act.status != "canceling":
                # A rollout's action outranks the group's or device's desired release while it is open.
                rel = s.get(Release, act.release_id)
                gate = install_gate(s, act, dev, utcnow())
                action = {
                    "id": act.id,
                    "type": act.action_type,
                    "install": gate.install,
                    "window_opens_at": gate.opens_at.isoformat() if gate.opens_at else None,
                }
            # An app rollout's action outranks the desired version of that app; outside its window (or when
            # download-only) the device only pulls the new version's images ("prefetch") and keeps running the old.
            wanted: dict[str, App | None] = {name: None for name in merged["apps"]}
            app_actions: dict[str, dict[str, Any]] = {}
            prefetch: list[dict[str, Any]] = []
            for act_app, offered in open_app_actions(s, dev.id):
                gate = install_gate(s, act_app, dev, utcnow())
                info = {"id": act_app.id, "type": act_app.action_type, "install": gate.install}
                if gate.install:
                    wanted[offered.name], app_actions[offered.name] = offered, info
                else:
                    info["window_opens_at"] = gate.opens_at.isoformat() if gate.opens_at else None
                    prefetch.append(
                        {"name": offered.name, "version": offered.version, "containers": offered.containers, "action": info}
                    )
            apps: list[dict[str, Any]] = []
            for name, chosen in sorted(wanted.items()):
                app = chosen or s.scalar(
                    select(App).where(App.tenant_id == dev.tenant_id, App.name == name, App.version == merged["apps"][name])
                )
                if app is not None:
                    entry: dict[str, Any] = {"name": name, "version": app.version, "containers": app.containers}
                    if name in app_actions:
                        entry["action"] = app_actions[name]
                    apps.append(entry)
            hosts = {image_registry(c["image"]) for a in (*apps, *prefetch) for c in a["containers"]}
            tenant = s.get(Tenant, dev.tenant_id)
            known = (tenant.registries if tenant else None) or {}
            registries = {}
            for h in sorted(x for x in hosts if x and x in known):
                try:
                    registries[h] = {"username": known[h]["username"], "password": unseal(self.secret, known[h]["password"])}
                except ValueError:
                    log.error("registry credentials for %s cannot be decrypted (server secret changed?); set them again", h)
            try:
                files = [open_file(f, self.secret) for f in merged["files"]]
            except ValueError:
                raise Conflict("a secret file cannot be decrypted (the server secret changed?); set the file again") from None
            desired = {"apps": apps, "files": files, "registries": registries, "action": action}
            delta = offered_delta(s, rel, dev, self.delta_max_ratio) if rel is not None else None
            if delta is not None:
                row, source_version = delta
                desired["delta"] = {"id": row.id, "from_version": source_version, "sha256": row.sha256, "size": row.size}
            if prefetch:
                desired["prefetch"] = prefetch
            packages = merged["packages"]
            pkg = open_package_action(s, dev.id)
            if pkg is not None:
                # A package rollout's set outranks the desired packages of those names while its action is open, within
                # its window; outside it the device keeps what it has and learns when the window opens.
                act_pkg, rollout_packages = pkg
                gate = install_gate(s, act_pkg, dev, utcnow())
                desired["packages_action"] = {
                    "id": act_pkg.id,
                    "type": act_pkg.action_type,
                    "install": gate.install,
                    "window_opens_at": gate.opens_at.isoformat() if gate.opens_at else None,
                }
                if gate.install:
                    by_name = {p["name"]: p for p in packages} | rollout_packages
                    packages = [by_name[n] for n in sorted(by_name)]
            if packages:
                desired["packages"] = packages
            if commands := pending_commands(s, dev.id):
                desired["commands"] = commands  # remote commands: not desired state, popped by the state answer
            tenant = s.get(Tenant, dev.tenant_id)
            if tenant is not None and (tenant.remote_access or {}).get("enabled"):
                desired["remote"] = {}  # remote sessions allowed: the agent keeps its tunnel's control channel
            return dev, rel, desired

    def release_for_device(self, tenant_id: int, compatible: str, release_id: int) -> Release:
        """A release a device may download: its tenant's, for its compatible."""
        with self.db.session() as s:
            return tenant_release(s, tenant_id, release_id, compatible)

    def release_artifacts(self, tenant_id: int, compatible: str, release_id: int) -> dict[str, tuple[str, str]]:
        """The files of a release a device may download, by DDI artifact name: {name: (sha256, md5)}."""
        with self.db.session() as s:
            rel = tenant_release(s, tenant_id, release_id, compatible)
            out = {artifact_filename(rel): (rel.sha256, str((rel.info or {}).get("hashes", {}).get("md5", "")))}
            for d, version in s.execute(
                select(DeltaBundle, Release.version)
                .join(Release, Release.id == DeltaBundle.source_release_id)
                .where(DeltaBundle.release_id == rel.id)
            ):
                if d.sha256:
                    out[delta_filename(rel, version)] = (d.sha256, str(d.info.get("hashes", {}).get("md5", "")))
            return out

    def device_delta(self, who: Principal, release_id: int, delta_id: int) -> DeltaBundle:
        """A delta bundle of a release this device may download."""
        rel = self.device_release(who, release_id)
        with self.db.session() as s:
            d = s.get(DeltaBundle, delta_id)
            if d is None or d.release_id != rel.id or not d.sha256:
                raise NotFound(f"release {release_id} has no delta {delta_id}")
            return d

    def device_release(self, who: Principal, release_id: int) -> Release:
        """A release this device may download: same tenant and compatible."""
        if who.kind != "device":
            raise Forbidden("this endpoint is for devices")
        if who.device_status == "disabled":
            raise Forbidden(_DISABLED.format(name=who.name))
        if who.device_status != "active":
            raise Forbidden("device is not approved yet")
        return self.release_for_device(who.tenant_id or 0, who.compatible or "", release_id)
