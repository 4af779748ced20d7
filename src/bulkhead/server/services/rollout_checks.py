"""What a new rollout must satisfy before it is stored: a target that names what exists and matches devices,
phases that can each guard the next, and no downgrade nobody asked for."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from debian.debian_support import Version
from sqlalchemy import Text, cast, func, select
from sqlalchemy.orm import Session, aliased

from ..errors import Invalid
from ..models import App, Device, DeviceGroup, Release
from .desired import merge_desired
from .fleet_names import known_groups, known_tags, listing
from .rollout_plan import phase_sizes, phase_sizes_counted
from .rollout_sql import json_array_has, matching_devices, target_filter
from .rollout_subject import Subject
from .versions import compare_versions

__all__ = ["check_target", "refuse_downgrades"]


def check_target(
    s: Session, tid: int, target: dict[str, Any], phases: list[dict[str, Any]], allow_empty: bool
) -> tuple[int, dict[int, Sequence[str]] | None]:
    """How many devices the target matches now, and, when a phase is a group's, which (id -> groups; without group
    phases the database only counts them: placing them is one statement, rollout_sql.insert_ranked). Refused:
    groups that do not exist (in the target or a phase), and, unless `allow_empty` (a rollout that waits for
    devices to join), tags no device has, a target that matches no device, and a phase that would hold no device
    while a later one holds some."""
    wanted = [*target["groups"], *(p["group"] for p in phases if p.get("group"))]
    missing = sorted({g for g in wanted if not _group_exists(s, tid, g)})
    if missing:
        raise Invalid(
            f"group(s) {', '.join(missing)} do not exist; groups: {listing(known_groups(s, tid))} "
            "(create one with 'bulkhead group create NAME' and add devices with 'bulkhead group add-device')"
        )
    if allow_empty:
        return _matching(s, tid, target, phases)
    missing = sorted({tag for tag in target["tags"] if not _tag_exists(s, tid, tag)})
    if missing:
        raise Invalid(
            f"no device has tag(s) {', '.join(missing)}; tags: {listing(known_tags(s, tid))} "
            "(pass allow_empty, CLI --allow-empty, for a rollout that waits for devices to join)"
        )
    count, devices = _matching(s, tid, target, phases)
    if not count:
        q = select(func.count()).select_from(Device).where(Device.tenant_id == tid, Device.status == "active")
        if target["compatible"]:
            q = q.where(Device.compatible == target["compatible"])
        of_kind = s.scalar(q) or 0
        kind = f" of compatible '{target['compatible']}'" if target["compatible"] else ""
        raise Invalid(
            f"the target matches no device ({of_kind} active device(s){kind}; groups: {listing(known_groups(s, tid))}; "
            f"tags: {listing(known_tags(s, tid))}); fix the target, or pass allow_empty (CLI --allow-empty) for a rollout "
            "that waits for devices to join"
        )
    sizes = phase_sizes(phases, devices) if devices is not None else phase_sizes_counted(phases, [((), count)])
    for i, size in enumerate(sizes):
        if size == 0 and any(sizes[i + 1 :]):
            raise Invalid(
                f"phase {i + 1} ('{phases[i]['name']}') would hold no device of the {count} the target "
                f"matches, so it could not guard the later phases; phase sizes would be {sizes}. Add devices "
                "to it, drop it, or pass allow_empty (CLI --allow-empty) to have the rollout pause there"
            )
    return count, devices


def _group_exists(s: Session, tid: int, name: str) -> bool:
    """A group row, or a device that names the group (what `known_groups` lists), found by the database."""
    if s.scalar(select(DeviceGroup.id).where(DeviceGroup.tenant_id == tid, DeviceGroup.name == name)) is not None:
        return True
    return s.scalar(select(Device.id).where(Device.tenant_id == tid, json_array_has(s, Device.groups, name)).limit(1)) is not None


def _tag_exists(s: Session, tid: int, name: str) -> bool:
    return s.scalar(select(Device.id).where(Device.tenant_id == tid, json_array_has(s, Device.tags, name)).limit(1)) is not None


def _matching(
    s: Session, tid: int, target: dict[str, Any], phases: list[dict[str, Any]]
) -> tuple[int, dict[int, Sequence[str]] | None]:
    """How many devices match, counted by the database; with a group phase also id -> groups (read for the sizes)."""
    if any(p.get("group") for p in phases):
        devices = {row[0]: row[1] or [] for row in s.execute(matching_devices(s, tid, target, True).order_by(Device.id))}
        return len(devices), devices
    return int(s.scalar(select(func.count()).select_from(matching_devices(s, tid, target, False).subquery())) or 0), None


def refuse_downgrades(s: Session, tid: int, subject: Subject, target: dict[str, Any]) -> None:
    """Refuse when a targeted device runs (or is to run) a newer version than the rollout's.

    The database groups the devices by what they run; only the distinct versions are compared here."""
    rel, app = subject.release, subject.app
    newer: list[str] = []
    count = 0
    subject_text = subject.words()
    matching = [Device.tenant_id == tid, Device.status == "active", *target_filter(s, target)]
    if rel is not None:
        desired = aliased(Release)
        current = func.coalesce(Device.os_version, desired.version)
        base = select(current.label("v"), func.count()).outerjoin(desired, desired.id == Device.desired_release_id)
        versions = {v: n for v, n in s.execute(base.where(*matching).group_by(current)) if v is not None}
        bad = [v for v in versions if compare_versions(rel.version, v) < 0]
        count = sum(versions[v] for v in bad)
        if bad:
            q = select(Device.name, current).outerjoin(desired, desired.id == Device.desired_release_id)
            q = q.where(*matching, current.in_(bad)).order_by(Device.id).limit(10)
            newer = [f"{name} ({v})" for name, v in s.execute(q)]
        subject_text = f"release {rel.version}"
    else:
        # An app or a package set: what a device is to run comes from its groups' and its own desired state.
        group_desired = {g.name: g.desired or {} for g in s.scalars(select(DeviceGroup).where(DeviceGroup.tenant_id == tid))}
        g_text, d_text = cast(Device.groups, Text), cast(Device.desired, Text)
        combos = s.execute(select(g_text, d_text, func.count()).where(*matching).group_by(g_text, d_text))
        for groups_json, desired_json, n in combos:
            groups = json.loads(groups_json) if groups_json else []
            layers = [group_desired[g] for g in groups or [] if g in group_desired] + [json.loads(desired_json or "{}") or {}]
            merged = merge_desired(layers)
            ahead = _newer_app(app, merged) if app is not None else _newer_packages(subject.packages or {}, merged)
            if ahead:
                count += n
                names = select(Device.name).where(*matching, g_text == groups_json, d_text == desired_json)
                newer += [f"{name} ({ahead})" for name in s.scalars(names.order_by(Device.id).limit(10 - len(newer)))]
        if app is not None:
            subject_text = f"app {app.name} version {app.version}"
    if count:
        more = f" … and {count - len(newer)} more" if count > len(newer) else ""
        raise Invalid(
            f"{subject_text} is older than what {count} device(s) run or are to run: {', '.join(newer)}{more}; "
            "that is a downgrade: pass allow_downgrade (CLI --allow-downgrade) if you mean it"
        )


def _newer_app(app: App, merged: dict[str, Any]) -> str | None:
    current = merged["apps"].get(app.name)
    return current if current is not None and compare_versions(app.version, current) < 0 else None


def _newer_packages(packages: dict[str, dict[str, Any]], merged: dict[str, Any]) -> str | None:
    """The desired packages newer (Debian's version order) than the rollout's, in words; None when none is."""
    current = {p["name"]: p.get("version") for p in merged["packages"]}
    ahead = [
        f"{name} {current[name]}"
        for name, p in sorted(packages.items())
        if p.get("version") and current.get(name) and Version(str(current[name])) > Version(p["version"])
    ]
    return ", ".join(ahead) or None
