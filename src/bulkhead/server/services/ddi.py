"""hawkBit DDI: who is calling (TargetToken, GatewayToken, client certificate) and what the resources say.

The DDI resources are views of the same devices, releases and rollout actions the rest of the server uses:
an open action is a `deploymentBase` (or a `cancelAction` while a cancel waits for the device), feedback
moves the action's status, and `configData` writes the device's attributes.
"""

from __future__ import annotations

import re
import zlib
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..db import Database
from ..errors import Conflict, Gone, Invalid, NotFound
from ..models import Action, Device, Release, StateChange, Tenant, utcnow
from ..security import PREFIX_DEVICE, new_token
from . import audit
from .actions import install_gate, note, open_action, record_status
from .artifacts import artifact_filename, delta_filename
from .auth import Principal
from .ddi_auth import DdiAuth, DdiCaller
from .ddi_feedback import TERMINAL, Feedback, next_status, parse_feedback, record_event
from .deltas import offered_delta
from .device_rows import add_device
from .devices import desired_release
from .fleet_names import NAME, check_group_names
from .rollout_sql import is_offered
from .rollouts import RolloutService

__all__ = ["DdiAuth", "DdiCaller", "DdiService", "artifact_filename", "sleep_hms"]

_ATTR_KEY = re.compile(r"^[^\s]{1,128}\Z")
MAX_CONFIG_ATTRIBUTES = 64  # a device's attributes from configData, in all (merge adds up)
MAX_VERSION_CHARS = 256


def sleep_hms(seconds: int) -> str:
    """hawkBit's polling time: HH:MM:SS, never above 23:59:59."""
    seconds = max(0, min(int(seconds), 23 * 3600 + 59 * 60 + 59))
    return f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class DdiService:
    def __init__(self, db: Database, rollouts: RolloutService, poll_interval: int, delta_max_ratio: float = 0.75) -> None:
        self.db, self.rollouts, self.poll_interval = db, rollouts, poll_interval
        self.delta_max_ratio = delta_max_ratio

    # -- management side ------------------------------------------------------------
    def configure(
        self, who: Principal, auto_register: bool | None, default_compatible: str | None, rotate_gateway_token: bool
    ) -> dict[str, Any]:
        who.require("admin")
        tid = who.require_tenant()
        token = None
        with self.db.session() as s:
            tenant = s.get(Tenant, tid)
            assert tenant is not None
            ddi = dict(tenant.ddi or {})
            if auto_register is not None:
                ddi["auto_register"] = auto_register
            if default_compatible is not None:
                ddi["default_compatible"] = default_compatible
            if rotate_gateway_token:
                token, h = new_token("bhg_")
                ddi["gateway_token_hash"] = h
            tenant.ddi = ddi
            audit.record(
                s, who, "ddi.configure", tenant.name, auto_register=ddi.get("auto_register"), rotated=rotate_gateway_token
            )
            out = {k: v for k, v in ddi.items() if k != "gateway_token_hash"}
            out["gateway_token_set"] = "gateway_token_hash" in ddi
            if token:
                out["gateway_token"] = token
            return out

    def provision(
        self, who: Principal, name: str, compatible: str, groups: list[str], attributes: dict[str, str]
    ) -> dict[str, Any]:
        """Create a device ahead of time and return its credential (its DDI TargetToken)."""
        who.require("operator")
        tid = who.require_tenant()
        if not NAME.match(name):
            raise Invalid(f"device name {name!r} is invalid: 1-128 letters, digits, '.', '_', ':' or '-'")
        if not compatible:
            raise Invalid("compatible must be the device's RAUC compatible (or the SWUpdate hardware it runs)")
        groups = check_group_names(groups)
        credential, ch = new_token(PREFIX_DEVICE)
        with self.db.session() as s:
            if s.scalar(select(Device.id).where(Device.tenant_id == tid, Device.name == name)) is not None:
                raise Conflict(f"device '{name}' already exists")
            dev = add_device(s, tid, name, compatible, "active", groups, attributes, credential_hash=ch)
            s.flush()
            audit.record(s, who, "device.provision", name)
            return {"device_id": dev.id, "name": name, "credential": credential, "target_token": credential}

    # -- device side ------------------------------------------------------------------
    def _action(self, s: Session, caller: DdiCaller, action_id: int, lock: bool = False) -> Action:
        """The controller's own action; `lock` (feedback) holds its row so a concurrent cancel is not overwritten."""
        a = s.get(Action, action_id, with_for_update=lock) if action_id < DESIRED_BASE else None
        # App actions are for our agent; an action of a phase not open yet is not the device's to fetch or report on.
        if a is None or a.device_id != caller.device_id or a.release_id is None or not is_offered(s, a):
            raise NotFound(f"action {action_id} does not exist for controller '{caller.name}'")
        return a

    def root(self, caller: DdiCaller, base: str) -> dict[str, Any]:
        now = utcnow()
        with self.db.session() as s:
            dev = s.get(Device, caller.device_id)
            if dev is None:
                raise NotFound("controller no longer exists")
            links: dict[str, Any] = {}
            act = open_action(s, dev.id)
            if act is not None and act.status == "canceling":
                links["cancelAction"] = {"href": f"{base}/cancelAction/{act.id}"}
            elif act is not None:
                ok = install_gate(s, act, dev, now).install
                c = _crc(f"{act.id}:{act.action_type}:{ok}")
                links["deploymentBase"] = {"href": f"{base}/deploymentBase/{act.id}?c={c}"}
            elif (rel := _open_desired(s, dev)) is not None:
                # No rollout for this device: the release its own or its groups' desired state names.
                links["deploymentBase"] = {"href": f"{base}/deploymentBase/{desired_action_id(rel.id)}?c={_crc(rel.sha256)}"}
            if dev.attributes_wanted:
                links["configData"] = {"href": f"{base}/configData"}
            done = _installed_action(s, dev)
            if done is not None:
                links["installedBase"] = {"href": f"{base}/installedBase/{done}"}
        body: dict[str, Any] = {"config": {"polling": {"sleep": sleep_hms(self.poll_interval)}}}
        if links:
            body["_links"] = links
        return body

    def deployment(
        self, caller: DdiCaller, action_id: int, base: str, installed: bool = False, history: int = 0
    ) -> dict[str, Any]:
        with self.db.session() as s:
            dev = s.get(Device, caller.device_id)
            if dev is None:
                raise NotFound("controller no longer exists")
            if action_id >= DESIRED_BASE:
                return self._desired_deployment(s, dev, action_id, base, installed, history)
            a = self._action(s, caller, action_id)
            if installed:
                if a.status != "success":
                    raise NotFound(f"action {action_id} did not install successfully")
            elif not a.active:
                raise Gone(f"action {action_id} is closed ({a.status})")
            elif a.status == "scheduled":
                # hawkBit's "retrieved": from now on a cancel needs the device's confirmation
                record_status(a, "downloading", "deployment retrieved by the device", source="device")
                record_event(s, dev, "downloading", a.release_id, a.id, None, "deployment retrieved by the device")
            rel = s.get(Release, a.release_id)
            assert rel is not None
            gate = install_gate(s, a, dev, utcnow())
            ok = gate.install or not a.active  # an installed deployment is shown as it was allowed
            if a.action_type == "download_only":
                download, update = "forced", "skip"
            else:
                handling = "forced" if a.action_type == "forced" else "attempt"
                download, update = handling, handling if ok else "skip"
            deployment = self._deployment_body(s, rel, dev, base, download, update)
            if gate.window is not None and a.action_type != "download_only":
                deployment["maintenanceWindow"] = "available" if ok else "unavailable"
            body: dict[str, Any] = {"id": str(a.id), "deployment": deployment}
            if history:
                entries = (a.history or [])[-history:] if history > 0 else a.history or []
                body["actionHistory"] = {
                    "status": a.status,
                    "messages": [f"{e['at']} {e['status']}: {e.get('message', '')}".strip() for e in reversed(entries)],
                }
            return body

    def _desired_deployment(
        self, s: Session, dev: Device, action_id: int, base: str, installed: bool, history: int
    ) -> dict[str, Any]:
        """The deployment of a device's or group's desired release (no rollout, so no Action row)."""
        rel = _desired_target(s, dev, action_id)
        status = _desired_status(dev, action_id)
        if installed:
            if status != "success":
                raise NotFound(f"action {action_id} did not install successfully")
        elif status in TERMINAL:
            raise Gone(f"action {action_id} is closed ({status})")
        elif getattr(_open_desired(s, dev), "id", None) != rel.id:
            raise Gone(f"action {action_id} is no longer wanted: the device's desired release changed")
        elif status == "scheduled":
            _set_desired_status(dev, action_id, rel, "downloading")
            record_event(s, dev, "downloading", rel.id, action_id, None, "deployment retrieved by the device")
            status = "downloading"
        body: dict[str, Any] = {"id": str(action_id), "deployment": self._deployment_body(s, rel, dev, base, "forced", "forced")}
        if history:
            body["actionHistory"] = {"status": status, "messages": []}
        return body

    def _deployment_body(self, s: Session, rel: Release, dev: Device, base: str, download: str, update: str) -> dict[str, Any]:
        name, size = artifact_filename(rel), rel.size
        hashes = dict((rel.info or {}).get("hashes") or {})
        hashes.setdefault("sha256", rel.sha256)
        offered = offered_delta(s, rel, dev, self.delta_max_ratio)
        if offered is not None:
            # The smallest artifact that applies to what the device runs: a delta bundle is a standard
            # RAUC bundle, so rauc-hawkbit-updater installs it like the full one.
            delta, source_version = offered
            name, size = delta_filename(rel, source_version), delta.size
            hashes = dict(delta.info.get("hashes") or {})
            hashes.setdefault("sha256", delta.sha256)
        art = f"{base}/softwaremodules/{rel.id}/artifacts/{name}"
        return {
            "download": download,
            "update": update,
            "chunks": [
                {
                    "part": "os",
                    "version": rel.version,
                    "name": rel.compatible,
                    "artifacts": [
                        {
                            "filename": name,
                            "hashes": {
                                "sha1": hashes.get("sha1", ""),
                                "md5": hashes.get("md5", ""),
                                "sha256": hashes["sha256"],
                            },
                            "size": size,
                            "_links": {
                                "download": {"href": art},
                                "download-http": {"href": art},
                                "md5sum": {"href": art + ".MD5SUM"},
                                "md5sum-http": {"href": art + ".MD5SUM"},
                            },
                        }
                    ],
                }
            ],
        }

    def cancel_info(self, caller: DdiCaller, action_id: int) -> dict[str, Any]:
        with self.db.session() as s:
            a = self._action(s, caller, action_id)
            if a.status != "canceling" and a.active:
                raise NotFound(f"action {action_id} is not being canceled")
            return {"id": str(a.id), "cancelAction": {"stopId": str(a.id)}}

    def feedback(self, caller: DdiCaller, action_id: int, body: Any, cancel: bool = False) -> None:
        fb = parse_feedback(body)
        rollout_id = None
        with self.db.session() as s:
            dev = s.get(Device, caller.device_id)
            if dev is None:
                raise NotFound("controller no longer exists")
            if action_id >= DESIRED_BASE and not cancel:
                self._desired_feedback(s, dev, action_id, fb)
                return
            a = self._action(s, caller, action_id, lock=True)
            final = fb.execution in ("closed", "canceled") or (fb.execution == "downloaded" and a.action_type == "download_only")
            text = fb.text
            if not a.active:
                if not final:
                    raise Gone(f"action {action_id} is closed ({a.status}); only a final status is still accepted")
                note(a, text, source="device")
                record_event(s, dev, a.status, a.release_id, a.id, fb)
                return
            new = next_status(a.status, a.status_before_cancel, fb, cancel)
            if new is None:
                note(a, f"{fb.execution}: {text or ''}", source="device")
            else:
                record_status(a, new, text, source="device")
                if cancel and a.status != "canceling":
                    a.status_before_cancel = None
                rollout_id = a.rollout_id
            record_event(s, dev, a.status, a.release_id, a.id, fb)
            dev.update_status = {
                "phase": a.status,
                "release_id": a.release_id,
                "action_id": a.id,
                "at": utcnow().isoformat(),
                "source": "ddi",
            }
            if a.status == "success" and a.release_id is not None and a.action_type != "download_only":
                rel = s.get(Release, a.release_id)
                if rel is not None:
                    dev.os_version = rel.version  # what it runs now: the source of its next delta
        if rollout_id is not None:
            self.rollouts.on_change(rollout_id)

    def _desired_feedback(self, s: Session, dev: Device, action_id: int, fb: Feedback) -> None:
        rel = _desired_target(s, dev, action_id)
        current = _desired_status(dev, action_id)
        if current in TERMINAL:
            if fb.execution not in ("closed", "canceled"):
                raise Gone(f"action {action_id} is closed ({current}); only a final status is still accepted")
            record_event(s, dev, current, rel.id, action_id, fb)
            return
        status = next_status(current, None, fb, cancel=False) or current
        _set_desired_status(dev, action_id, rel, status)
        record_event(s, dev, status, rel.id, action_id, fb)
        if status == "success":
            dev.os_version = rel.version  # what it runs now: the desired release is no longer offered
        elif status in TERMINAL:
            # Not offered again (until the desired release changes): tell every process's poll cache.
            s.add(StateChange(tenant_id=dev.tenant_id, device_id=dev.id, at=utcnow()))

    def config_data(self, caller: DdiCaller, body: Any) -> None:
        if not isinstance(body, dict) or not isinstance(body.get("data"), dict):
            raise Invalid("configData needs a JSON object with 'data': {attribute: value}")
        data = body["data"]
        mode = body.get("mode") or "merge"
        if mode not in ("merge", "replace", "remove"):
            raise Invalid("mode must be merge, replace or remove")
        if len(data) > MAX_CONFIG_ATTRIBUTES:
            raise Invalid(f"configData has {len(data)} attributes; at most {MAX_CONFIG_ATTRIBUTES}")
        for k, v in data.items():
            if not _ATTR_KEY.match(k) or not isinstance(v, str | int | float | bool) or len(str(v)) > 128:
                raise Invalid(f"attribute {k!r}: keys are 1-128 characters without spaces, values at most 128 characters")
        clean = {k: str(v) for k, v in data.items()}
        with self.db.session() as s:
            dev = s.get(Device, caller.device_id)
            assert dev is not None
            current = dict(dev.attributes or {})
            if mode == "merge":
                current.update(clean)
            elif mode == "replace":
                current = clean
            else:
                for k in clean:
                    current.pop(k, None)
            if len(current) > MAX_CONFIG_ATTRIBUTES:
                raise Invalid(f"the device would have {len(current)} attributes; at most {MAX_CONFIG_ATTRIBUTES} (use replace)")
            dev.attributes, dev.attributes_wanted = current, False

    def installed_base(self, caller: DdiCaller, body: Any) -> dict[str, Any]:
        """A device declares what it runs (after an update outside the server, or at first contact)."""
        if not isinstance(body, dict) or not isinstance(body.get("version"), str) or not body["version"]:
            raise Invalid("installedBase needs {'name': ..., 'version': ...} of what the device runs")
        name = body.get("name")
        if len(body["version"]) > MAX_VERSION_CHARS or not (name is None or (isinstance(name, str) and len(name) <= 256)):
            raise Invalid(f"installedBase: version at most {MAX_VERSION_CHARS} characters, name a string of at most 256")
        with self.db.session() as s:
            # Locked: two at once for a device without an inventory row would both insert one.
            dev = s.get(Device, caller.device_id, with_for_update={"key_share": True})
            assert dev is not None
            rel = s.scalar(
                select(Release).where(
                    Release.tenant_id == dev.tenant_id, Release.compatible == dev.compatible, Release.version == body["version"]
                )
            )
            dev.os_version = body["version"]
            dev.reported = {
                **(dev.reported or {}),
                "os_version": body["version"],
                "installed": {"name": body.get("name"), "version": body["version"]},
            }
            dev.reported_sha256 = None  # the inventory is no longer the text an agent last sent: its next one is written
            return {"release_id": rel.id if rel else None, "version": body["version"]}


# -- desired releases: offered like an action, with an id of their own --------------------------------------------
DESIRED_BASE = 1 << 30  # action ids from here on name a desired release (positive 32-bit: SWUpdate keeps an int)


def desired_action_id(release_id: int) -> int:
    return DESIRED_BASE + release_id


def _crc(text: str) -> int:
    c = zlib.crc32(text.encode())
    return c - (1 << 32) if c >= 1 << 31 else c


def _desired_status(dev: Device, action_id: int) -> str:
    status = dev.update_status or {}
    return str(status.get("phase") or "scheduled") if status.get("action_id") == action_id else "scheduled"


def _set_desired_status(dev: Device, action_id: int, rel: Release, phase: str) -> None:
    dev.update_status = {
        "phase": phase,
        "release_id": rel.id,
        "action_id": action_id,
        "version": rel.version,
        "at": utcnow().isoformat(),
        "source": "ddi",
    }


def _open_desired(s: Session, dev: Device) -> Release | None:
    """The desired release to offer: named by the device's or its groups' desired state, not what the device runs,
    and not already tried to the end (a failed or canceled one waits for the desired release to change)."""
    rel = desired_release(s, dev)
    if rel is None or rel.version == dev.os_version:
        return None
    if _desired_status(dev, desired_action_id(rel.id)) in TERMINAL:
        return None
    return rel


def _desired_target(s: Session, dev: Device, action_id: int) -> Release:
    rel = s.get(Release, action_id - DESIRED_BASE)
    if rel is None or rel.tenant_id != dev.tenant_id or rel.compatible != dev.compatible:
        raise NotFound(f"action {action_id} does not exist for controller '{dev.name}'")
    return rel


def _installed_action(s: Session, dev: Device) -> int | None:
    """The action whose deployment the device runs: its latest successful DDI install."""
    status = dev.update_status or {}
    if status.get("source") == "ddi" and status.get("phase") == "success" and isinstance(status.get("action_id"), int):
        return int(status["action_id"])
    done = s.scalar(
        select(Action.id)
        .where(
            Action.device_id == dev.id,
            Action.active.is_(False),
            Action.status == "success",
            Action.release_id.is_not(None),
        )
        .order_by(Action.id.desc())
        .limit(1)
    )
    return int(done) if done is not None else None
