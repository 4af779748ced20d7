"""hawkBit DDI: who is calling (TargetToken, GatewayToken, client certificate) and what the resources say.

The DDI resources are views of the same devices, releases and rollout actions the rest of the server uses:
an open action is a `deploymentBase` (or a `cancelAction` while a cancel waits for the device), feedback
moves the action's status, and `configData` writes the device's attributes.
"""

from __future__ import annotations

import re
import time
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ..changes import ChangeFeed
from ..db import Database
from ..errors import Conflict, Forbidden, Gone, Invalid, NotFound, Unauthorized
from ..models import Action, Device, Release, Tenant, utcnow
from ..security import PREFIX_DEVICE, hash_token, new_token
from . import audit
from .artifacts import artifact_filename, delta_filename
from .auth import Authenticator, Principal
from .deltas import offered_delta
from .devices import NAME
from .rollouts import RolloutService, install_gate, note, open_action, record_status

__all__ = ["DdiAuth", "DdiCaller", "DdiService", "artifact_filename", "sleep_hms"]

_CACHE_TTL = 10.0
_DEVICE_CACHE_TTL = 600.0
EXECUTIONS = ("closed", "proceeding", "canceled", "scheduled", "rejected", "resumed", "downloaded", "download")
RESULTS = ("success", "failure", "none")
_ATTR_KEY = re.compile(r"^[^\s]{1,128}$")
MAX_CONFIG_ATTRIBUTES = 64  # a device's attributes from configData, in all (merge adds up)
MAX_VERSION_CHARS = 256


@dataclass(frozen=True)
class DdiCaller:
    tenant_id: int
    device_id: int
    name: str
    compatible: str


def sleep_hms(seconds: int) -> str:
    """hawkBit's polling time: HH:MM:SS, never above 23:59:59."""
    seconds = max(0, min(int(seconds), 23 * 3600 + 59 * 60 + 59))
    return f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def _auth_header(headers: Mapping[str, str]) -> tuple[str, str] | None:
    value = headers.get("authorization", "")
    scheme, _, token = value.partition(" ")
    if not token.strip():
        return None
    return scheme.lower(), token.strip()


class DdiAuth:
    """Resolves a DDI caller. Everything on a poll's path is cached for a few seconds: no database per poll."""

    def __init__(self, db: Database, auth: Authenticator, cert_header: str | None, feed: ChangeFeed | None = None) -> None:
        self.db, self.auth, self.feed = db, auth, feed
        self.cert_header = cert_header.lower() if cert_header else None
        self._tenants: dict[str, tuple[float, Tenant | None]] = {}
        self._devices: dict[tuple[int, str], tuple[float, float, DdiCaller]] = {}

    def _tenant(self, name: str, gateway_hash: str | None = None) -> Tenant | None:
        key = f"{name.lower()}|{gateway_hash or ''}"
        now = time.monotonic()
        hit = self._tenants.get(key)
        if hit and hit[0] > now:
            return hit[1]
        with self.db.session() as s:
            rows = list(s.scalars(select(Tenant).where(func.lower(Tenant.name) == name.lower())))
            if not rows and name.upper() == "DEFAULT":
                # hawkBit's default tenant: the tenant whose gateway token this is, or the only tenant there is.
                everyone = list(s.scalars(select(Tenant)))
                rows = [t for t in everyone if gateway_hash and (t.ddi or {}).get("gateway_token_hash") == gateway_hash]
                if not rows and len(everyone) == 1:
                    rows = everyone
            tenant = rows[0] if rows else None
        self._tenants[key] = (now + _CACHE_TTL, tenant)
        return tenant

    def _device(self, tenant: Tenant, controller_id: str, may_register: bool) -> DdiCaller:
        key = (tenant.id, controller_id)
        now = time.monotonic()
        hit = self._devices.get(key)
        if hit and hit[0] > now and (self.feed is None or self.feed.valid(tenant.id, hit[2].device_id, hit[1])):
            return hit[2]
        with self.db.session() as s:
            dev = s.scalar(select(Device).where(Device.tenant_id == tenant.id, Device.name == controller_id))
            if dev is None:
                ddi = tenant.ddi or {}
                if not (may_register and ddi.get("auto_register")):
                    raise NotFound(f"unknown controller '{controller_id}'; create it or let the tenant auto-register devices")
                if not NAME.match(controller_id):
                    raise Invalid(f"controller id {controller_id!r} is not a valid device name")
                dev = Device(
                    tenant_id=tenant.id,
                    name=controller_id,
                    compatible=str(ddi.get("default_compatible") or ""),
                    status="active",
                    groups=list(ddi.get("groups") or []),
                    tags=[],
                    attributes={},
                    reported={},
                )
                s.add(dev)
                s.flush()
                audit.record(s, Principal("device", controller_id, tenant.id), "device.register", controller_id, via="ddi")
            if dev.status != "active":
                raise Forbidden(f"device '{controller_id}' is {dev.status}: an operator must approve it")
            caller = DdiCaller(tenant.id, dev.id, dev.name, dev.compatible)
        if len(self._devices) > 200_000:
            self._devices.clear()
        # Cached until the change feed reports a change to the device (or its tenant); without a feed, briefly.
        self._devices[key] = (now + (_DEVICE_CACHE_TTL if self.feed else _CACHE_TTL), now, caller)
        return caller

    def resolve(self, tenant_name: str, controller_id: str, headers: Mapping[str, str]) -> DdiCaller:
        auth = _auth_header(headers)
        if auth and auth[0] == "targettoken":
            p = self.auth.resolve(auth[1])
            if p.kind != "device" or p.device_id is None:
                raise Unauthorized("a TargetToken must be the device's own credential")
            if p.name != controller_id:
                raise Forbidden(f"this TargetToken belongs to '{p.name}', not '{controller_id}'")
            if (p.tenant or "").lower() != tenant_name.lower() and tenant_name.upper() != "DEFAULT":
                raise Forbidden(f"this TargetToken belongs to another tenant than '{tenant_name}'")
            if p.device_status != "active":
                raise Forbidden(f"device '{p.name}' is {p.device_status}: an operator must approve it")
            return DdiCaller(p.tenant_id or 0, p.device_id, p.name, p.compatible or "")
        if auth and auth[0] == "gatewaytoken":
            h = hash_token(auth[1])
            tenant = self._tenant(tenant_name, h)
            if tenant is None or (tenant.ddi or {}).get("gateway_token_hash") != h:
                raise Unauthorized("unknown GatewayToken for this tenant")
            return self._device(tenant, controller_id, may_register=True)
        if self.cert_header and headers.get(self.cert_header):
            if headers[self.cert_header] != controller_id:
                raise Forbidden("the client certificate's CN does not name this controller")
            tenant = self._tenant(tenant_name)
            if tenant is None:
                raise NotFound(f"unknown tenant '{tenant_name}'")
            return self._device(tenant, controller_id, may_register=True)
        raise Unauthorized("send 'Authorization: TargetToken <device token>' or 'GatewayToken <tenant gateway token>'")


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
        credential, ch = new_token(PREFIX_DEVICE)
        with self.db.session() as s:
            if s.scalar(select(Device.id).where(Device.tenant_id == tid, Device.name == name)) is not None:
                raise Conflict(f"device '{name}' already exists")
            dev = Device(
                tenant_id=tid,
                name=name,
                compatible=compatible,
                status="active",
                credential_hash=ch,
                groups=groups,
                tags=[],
                attributes=attributes,
                reported={},
            )
            s.add(dev)
            s.flush()
            audit.record(s, who, "device.provision", name)
            return {"device_id": dev.id, "name": name, "credential": credential, "target_token": credential}

    # -- device side ------------------------------------------------------------------
    def _action(self, s: Session, caller: DdiCaller, action_id: int) -> Action:
        a = s.get(Action, action_id)
        if a is None or a.device_id != caller.device_id or a.release_id is None:  # app actions are for our agent
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
                c = zlib.crc32(f"{act.id}:{act.action_type}:{ok}".encode())
                links["deploymentBase"] = {"href": f"{base}/deploymentBase/{act.id}?c={c - (1 << 32) if c >= 1 << 31 else c}"}
            if dev.attributes_wanted:
                links["configData"] = {"href": f"{base}/configData"}
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
            a = self._action(s, caller, action_id)
            if installed:
                if a.status != "success":
                    raise NotFound(f"action {action_id} did not install successfully")
            elif not a.active:
                raise Gone(f"action {action_id} is closed ({a.status})")
            elif a.status == "scheduled":
                # hawkBit's "retrieved": from now on a cancel needs the device's confirmation
                record_status(a, "downloading", "deployment retrieved by the device", source="device")
            rel = s.get(Release, a.release_id)
            dev = s.get(Device, caller.device_id)
            assert rel is not None and dev is not None
            gate = install_gate(s, a, dev, utcnow())
            ok = gate.install or not a.active  # an installed deployment is shown as it was allowed
            if a.action_type == "download_only":
                download, update = "forced", "skip"
            else:
                handling = "forced" if a.action_type == "forced" else "attempt"
                download, update = handling, handling if ok else "skip"
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
            deployment: dict[str, Any] = {
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

    def cancel_info(self, caller: DdiCaller, action_id: int) -> dict[str, Any]:
        with self.db.session() as s:
            a = self._action(s, caller, action_id)
            if a.status != "canceling" and a.active:
                raise NotFound(f"action {action_id} is not being canceled")
            return {"id": str(a.id), "cancelAction": {"stopId": str(a.id)}}

    def feedback(self, caller: DdiCaller, action_id: int, body: Any, cancel: bool = False) -> None:
        execution, finished, messages, progress = _parse_feedback(body)
        rollout_id = None
        with self.db.session() as s:
            a = self._action(s, caller, action_id)
            dev = s.get(Device, caller.device_id)
            assert dev is not None
            final = execution in ("closed", "canceled") or (execution == "downloaded" and a.action_type == "download_only")
            text = "; ".join(messages) or None
            if progress:
                text = f"{text or ''} ({progress})".strip()
            if not a.active:
                if not final:
                    raise Gone(f"action {action_id} is closed ({a.status}); only a final status is still accepted")
                note(a, text, source="device")
                return
            new = _next_status(a, execution, finished, cancel)
            if new is None:
                note(a, f"{execution}: {text or ''}", source="device")
            else:
                record_status(a, new, text, source="device")
                if cancel and a.status != "canceling":
                    a.status_before_cancel = None
                rollout_id = a.rollout_id
            dev.update_status = {"phase": a.status, "release_id": a.release_id, "at": utcnow().isoformat(), "source": "ddi"}
            if a.status == "success" and a.release_id is not None and a.action_type != "download_only":
                rel = s.get(Release, a.release_id)
                if rel is not None:
                    dev.os_version = rel.version  # what it runs now: the source of its next delta
        if rollout_id is not None:
            self.rollouts.on_change(rollout_id)

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
            dev = s.get(Device, caller.device_id)
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
            return {"release_id": rel.id if rel else None, "version": body["version"]}


def _parse_feedback(body: Any) -> tuple[str, str, list[str], str | None]:
    if not isinstance(body, dict) or not isinstance(body.get("status"), dict):
        raise Invalid("feedback needs a JSON object with 'status': {'execution': ..., 'result': {'finished': ...}}")
    st = body["status"]
    execution = st.get("execution")
    if execution not in EXECUTIONS:
        raise Invalid(f"status.execution must be one of {', '.join(EXECUTIONS)}; got {execution!r}")
    result = st.get("result") or {}
    finished = result.get("finished", "none") if isinstance(result, dict) else "none"
    if finished not in RESULTS:
        raise Invalid(f"status.result.finished must be one of {', '.join(RESULTS)}; got {finished!r}")
    details = st.get("details") or []
    if not isinstance(details, list):
        raise Invalid("status.details must be a list of strings")
    progress = None
    prog = result.get("progress") if isinstance(result, dict) else None
    if isinstance(prog, dict) and "cnt" in prog:
        progress = f"{prog.get('cnt')}/{prog.get('of')}"[:64]
    return execution, finished, [str(d)[:1000] for d in details][:20], progress


def _next_status(a: Action, execution: str, finished: str, cancel: bool) -> str | None:
    """The action's new status for a feedback, or None to only note it in the history."""
    if cancel:  # feedback on the cancelAction
        if execution == "canceled" or (execution == "closed" and finished != "failure"):
            return "canceled"
        if execution == "rejected" or (execution == "closed" and finished == "failure"):
            return a.status_before_cancel or "downloading"  # the device carries on with the update
        return None
    if execution == "closed":
        return "failure" if finished == "failure" else "success"  # closed + none counts as success
    if execution == "canceled":
        return "canceled"
    if execution == "download":
        return "downloading"
    if execution == "downloaded":
        return "downloaded"
    if execution in ("proceeding", "resumed"):
        if finished == "failure":
            return None  # an error along the way; the final closed/failure decides
        return {"scheduled": "downloading", "downloaded": "installing"}.get(a.status)
    if execution == "scheduled":
        return "scheduled" if a.status == "scheduled" else None
    return None  # rejected: the device declined for now; the action stays open
