"""What a new rollout must satisfy before it is stored: a target that names what exists and matches devices,
phases that can each guard the next, and no downgrade nobody asked for."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..errors import Invalid
from ..models import App, Device, DeviceGroup, Release
from .desired import merge_desired
from .fleet_names import known_groups, known_tags, listing
from .rollout_plan import allocate_phases, matches
from .versions import compare_versions

__all__ = ["check_target", "refuse_downgrades"]


def check_target(s: Session, tid: int, target: dict[str, Any], phases: list[dict[str, Any]], allow_empty: bool) -> list[Device]:
    """The devices the target matches now. Refused: groups that do not exist (in the target or a phase),
    and, unless `allow_empty` (a rollout that waits for devices to join), tags no device has, a target that
    matches no device, and a phase that would hold no device while a later one holds some."""
    groups = known_groups(s, tid)
    wanted = [*target["groups"], *(p["group"] for p in phases if p.get("group"))]
    missing = sorted({g for g in wanted if g not in groups})
    if missing:
        raise Invalid(
            f"group(s) {', '.join(missing)} do not exist; groups: {listing(groups)} "
            "(create one with 'bulkhead group create NAME' and add devices with 'bulkhead group add-device')"
        )
    if allow_empty:
        return _matching(s, tid, target)
    tags = known_tags(s, tid)
    missing = sorted(set(target["tags"]) - set(tags))
    if missing:
        raise Invalid(
            f"no device has tag(s) {', '.join(missing)}; tags: {listing(tags)} "
            "(pass allow_empty, CLI --allow-empty, for a rollout that waits for devices to join)"
        )
    devices = _matching(s, tid, target)
    if not devices:
        active = list(s.scalars(select(Device).where(Device.tenant_id == tid, Device.status == "active")))
        of_kind = [d for d in active if not target["compatible"] or d.compatible == target["compatible"]]
        kind = f" of compatible '{target['compatible']}'" if target["compatible"] else ""
        raise Invalid(
            f"the target matches no device ({len(of_kind)} active device(s){kind}; groups: {listing(groups)}; "
            f"tags: {listing(tags)}); fix the target, or pass allow_empty (CLI --allow-empty) for a rollout "
            "that waits for devices to join"
        )
    plan = allocate_phases(phases, 0, {d.id: d.groups or [] for d in devices}, {})
    sizes = [sum(1 for ph in plan.values() if ph == i) for i in range(len(phases))]
    for i, size in enumerate(sizes):
        if size == 0 and any(sizes[i + 1 :]):
            raise Invalid(
                f"phase {i + 1} ('{phases[i]['name']}') would hold no device of the {len(devices)} the target "
                f"matches, so it could not guard the later phases; phase sizes would be {sizes}. Add devices "
                "to it, drop it, or pass allow_empty (CLI --allow-empty) to have the rollout pause there"
            )
    return devices


def _matching(s: Session, tid: int, target: dict[str, Any]) -> list[Device]:
    q = select(Device).where(Device.tenant_id == tid, Device.status == "active")
    if target["compatible"]:
        q = q.where(Device.compatible == target["compatible"])
    return [d for d in s.scalars(q) if matches(target, d.compatible, d.tags or [], d.groups or [], d.attributes or {})]


def refuse_downgrades(s: Session, tid: int, rel: Release | None, app: App | None, devices: list[Device]) -> None:
    """Refuse when a targeted device runs (or is to run) a newer version than the rollout's."""
    newer: list[str] = []
    if rel is not None:
        for d in devices:
            current = d.os_version
            if current is None and d.desired_release_id is not None:
                desired = s.get(Release, d.desired_release_id)
                current = desired.version if desired is not None else None
            if current is not None and compare_versions(rel.version, current) < 0:
                newer.append(f"{d.name} ({current})")
        subject = f"release {rel.version}"
    elif app is not None:
        group_desired = {g.name: g.desired or {} for g in s.scalars(select(DeviceGroup).where(DeviceGroup.tenant_id == tid))}
        for d in devices:
            layers = [group_desired[g] for g in d.groups or [] if g in group_desired] + [d.desired or {}]
            current = merge_desired(layers)["apps"].get(app.name)
            if current is not None and compare_versions(app.version, current) < 0:
                newer.append(f"{d.name} ({current})")
        subject = f"app {app.name} version {app.version}"
    if newer:
        raise Invalid(
            f"{subject} is older than what {len(newer)} device(s) run or are to run: {listing(newer, 10)}; "
            "that is a downgrade: pass allow_downgrade (CLI --allow-downgrade) if you mean it"
        )
