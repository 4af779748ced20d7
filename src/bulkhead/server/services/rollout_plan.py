"""The pure core of rollouts: validation, targeting, phase assignment, thresholds and maintenance windows.

Nothing here touches the database or the clock: callers pass `now` and plain values, so every rule is
table-tested (tests/server/test_rollout_plan.py).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from bulkhead import protocol
from bulkhead.protocol import ActionStatus

from ..errors import Invalid

__all__ = [
    "ACTION_STATUSES",
    "ACTION_TYPES",
    "FAILED",
    "OPEN",
    "TERMINAL",
    "allocate_new",
    "allocate_phases",
    "assign_phase",
    "matches",
    "next_opening",
    "parse_phases",
    "parse_target",
    "parse_window",
    "phase_sizes",
    "phase_sizes_counted",
    "phase_verdict",
    "window_open",
]

ACTION_TYPES = ("soft", "forced", "download_only")
# The action statuses in the order of an update (the table of which may follow which is in bulkhead.protocol).
ACTION_STATUSES = tuple(ActionStatus)
OPEN = tuple(s for s in ActionStatus if s in protocol.OPEN)
FAILED = tuple(s for s in ActionStatus if s in protocol.FAILED)
TERMINAL = tuple(s for s in ActionStatus if s in protocol.TERMINAL)
_TARGET_KEYS = {"tags", "groups", "compatible", "attributes"}
_PHASE_KEYS = {"name", "group", "percent", "success_threshold", "error_threshold"}


def _names(raw: Any, what: str) -> list[str]:
    if raw is None:
        return []
    if not isinstance(raw, list) or not all(isinstance(x, str) and x for x in raw):
        raise Invalid(f"target.{what} must be a list of names")
    return list(raw)


def parse_target(raw: Any) -> dict[str, Any]:
    """Validate a target filter. Every given condition must hold (tags: all of them; groups: any of them)."""
    if not isinstance(raw, dict):
        raise Invalid("target must be an object with tags, groups, compatible and/or attributes")
    unknown = set(raw) - _TARGET_KEYS
    if unknown:
        raise Invalid(f"target has unknown keys {sorted(unknown)}; use {sorted(_TARGET_KEYS)}")
    attrs = raw.get("attributes") or {}
    if not isinstance(attrs, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in attrs.items()):
        raise Invalid("target.attributes must map attribute names to the required string values")
    compatible = raw.get("compatible")
    if compatible is not None and not isinstance(compatible, str):
        raise Invalid("target.compatible must be a string")
    return {
        "tags": _names(raw.get("tags"), "tags"),
        "groups": _names(raw.get("groups"), "groups"),
        "compatible": compatible,
        "attributes": attrs,
    }


def matches(
    target: Mapping[str, Any], compatible: str, tags: Sequence[str], groups: Sequence[str], attributes: Mapping[str, Any]
) -> bool:
    if target.get("compatible") and target["compatible"] != compatible:
        return False
    if not set(target.get("tags") or []) <= set(tags):
        return False
    wanted_groups = target.get("groups") or []
    if wanted_groups and not set(wanted_groups) & set(groups):
        return False
    return all(str(attributes.get(k)) == v for k, v in (target.get("attributes") or {}).items())


def _threshold(raw: Any, default: int, what: str) -> int:
    value = default if raw is None else raw
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 100:
        raise Invalid(f"{what} must be a percentage from 0 to 100")
    return value


def parse_phases(raw: Any) -> list[dict[str, Any]]:
    """Phases by group or by percentage of the target; none given means one phase with every device."""
    if raw is None or raw == []:
        raw = [{"percent": 100}]
    if not isinstance(raw, list) or len(raw) > 50:
        raise Invalid("phases must be a list of at most 50 phases")
    phases, total = [], 0
    for i, p in enumerate(raw, 1):
        if not isinstance(p, dict):
            raise Invalid(f"phase {i} must be an object")
        unknown = set(p) - _PHASE_KEYS
        if unknown:
            raise Invalid(f"phase {i} has unknown keys {sorted(unknown)}; use {sorted(_PHASE_KEYS)}")
        group, percent = p.get("group"), p.get("percent")
        if (group is None) == (percent is None):
            raise Invalid(f"phase {i} needs exactly one of 'group' (a device group) or 'percent' (of the target)")
        if percent is not None:
            if not isinstance(percent, int) or isinstance(percent, bool) or not 1 <= percent <= 100:
                raise Invalid(f"phase {i}: percent must be an integer from 1 to 100")
            total += percent
            if total > 100:
                raise Invalid(f"phase {i}: the phases' percentages add up to more than 100")
        elif not isinstance(group, str) or not group:
            raise Invalid(f"phase {i}: group must be a group name")
        phases.append(
            {
                "name": str(p.get("name") or (f"group {group}" if group else f"{percent}%")),
                "group": group,
                "percent": percent,
                "success_threshold": _threshold(p.get("success_threshold"), 100, f"phase {i}: success_threshold"),
                "error_threshold": _threshold(p.get("error_threshold"), 20, f"phase {i}: error_threshold"),
            }
        )
    return phases


def _bucket(rollout_id: int, device_id: int) -> int:
    """A stable 0..99 position of a device within a rollout, so percentage phases pick a fair sample."""
    return int.from_bytes(hashlib.sha256(f"{rollout_id}:{device_id}".encode()).digest()[:4], "big") % 100


def assign_phase(phases: Sequence[Mapping[str, Any]], rollout_id: int, device_id: int, groups: Sequence[str]) -> int:
    """The phase a device belongs to: the first group phase naming one of its groups, else its percentage
    bucket among the percentage phases, else the last phase (devices nobody placed still get the release)."""
    for i, p in enumerate(phases):
        if p.get("group") and p["group"] in groups:
            return i
    bucket, upto = _bucket(rollout_id, device_id), 0
    for i, p in enumerate(phases):
        if p.get("percent"):
            upto += int(p["percent"])
            if bucket < upto:
                return i
    return len(phases) - 1


def _quotas(phases: Sequence[Mapping[str, Any]], n: int) -> dict[int, int]:
    """How many of `n` devices each percentage phase holds: its share rounded, at least one while devices
    remain; when the percentages add up to 100 the last one takes the rest (no device lost to rounding)."""
    pct = [(i, int(p["percent"])) for i, p in enumerate(phases) if p.get("percent")]
    whole = sum(v for _, v in pct) >= 100
    quotas, left = {}, n
    for k, (i, v) in enumerate(pct):
        want = left if whole and k == len(pct) - 1 else max(1, (n * v + 50) // 100)
        quotas[i] = min(left, want)
        left -= quotas[i]
    return quotas


def _group_phase(phases: Sequence[Mapping[str, Any]], groups: Sequence[str]) -> int | None:
    return next((i for i, p in enumerate(phases) if p.get("group") and p["group"] in groups), None) if groups else None


def allocate_phases(
    phases: Sequence[Mapping[str, Any]],
    rollout_id: int,
    devices: Mapping[int, Sequence[str]],
    placed: Mapping[int, int],
) -> dict[int, int]:
    """The phase of each new device (`devices`: id -> groups, those not in `placed`); `placed` are the devices
    that have a phase already (id -> phase index), which they keep.

    A device goes to the first group phase naming one of its groups. The others fill the percentage phases in
    a stable pseudo-random order (a hash of rollout and device), each phase up to its quota of the whole
    percentage population, so every percentage phase holds at least one device while devices remain
    (`34%, 66%` of 3 devices: 1 and 2). Devices left over (percentages below 100, or no percentage phase)
    go to the last phase: nobody in the target is left without the release."""
    held: dict[int, int] = {}
    for ph in placed.values():
        held[ph] = held.get(ph, 0) + 1
    return allocate_new(phases, rollout_id, {d: g for d, g in devices.items() if d not in placed}, held)


def allocate_new(
    phases: Sequence[Mapping[str, Any]],
    rollout_id: int,
    devices: Mapping[int, Sequence[str]],
    held: Mapping[int, int],
) -> dict[int, int]:
    """`allocate_phases` given how many devices each phase holds already (`held`: phase index -> count) instead of
    the placed devices themselves: what a rollout knows from one count per phase in the database."""
    out: dict[int, int] = {}
    by_pct: list[int] = []
    for dev_id, groups in devices.items():
        grp = _group_phase(phases, groups)
        if grp is not None:
            out[dev_id] = grp
        else:
            by_pct.append(dev_id)
    pct_phases = {i for i, p in enumerate(phases) if p.get("percent")}
    held_pct = {i: n for i, n in held.items() if i in pct_phases}
    quotas = _quotas(phases, sum(held_pct.values()) + len(by_pct))
    room = {i: q - held_pct.get(i, 0) for i, q in quotas.items()}
    open_rooms = [i for i in sorted(room) if room[i] > 0]
    if len(open_rooms) == 1 and room[open_rooms[0]] >= len(by_pct):
        # One phase takes them all (e.g. the default single 100% phase): the order does not matter, skip the hashing.
        out.update(dict.fromkeys(by_pct, open_rooms[0]))
        return out
    order = sorted(room)
    for dev_id in sorted(by_pct, key=lambda d: (_bucket(rollout_id, d), d)):
        free = next((i for i in order if room[i] > 0), None)
        if free is None:
            out[dev_id] = len(phases) - 1
        else:
            room[free] -= 1
            if not room[free]:
                order.remove(free)
            out[dev_id] = free
    return out


def rank_bounds(phases: Sequence[Mapping[str, Any]], n: int) -> list[tuple[int, int]]:
    """`allocate_new` for a rollout's first placement without group phases, as rank ranges: (last rank, phase) pairs
    in order for `n` devices ranked 1, 2, ... by (bucket, id); a rank past the last pair goes to the last phase. The
    database then places every device in one statement (rollout_sql.insert_ranked)."""
    bounds, upto = [], 0
    for i, q in sorted(_quotas(phases, n).items()):
        if q > 0:
            upto += q
            bounds.append((upto, i))
    return bounds


def phase_sizes(phases: Sequence[Mapping[str, Any]], devices: Mapping[int, Sequence[str]]) -> list[int]:
    """How many of `devices` (id -> groups) each phase would hold: `allocate_phases` counted, without hashing."""
    sizes = [0] * len(phases)
    n_pct = 0
    for groups in devices.values():
        grp = _group_phase(phases, groups)
        if grp is None:
            n_pct += 1
        else:
            sizes[grp] += 1
    quotas = _quotas(phases, n_pct)
    for i, q in quotas.items():
        sizes[i] += q
    sizes[-1] += n_pct - sum(quotas.values())
    return sizes


def phase_sizes_counted(phases: Sequence[Mapping[str, Any]], counts: Iterable[tuple[Sequence[str], int]]) -> list[int]:
    """`phase_sizes` from how many devices have each set of groups (`counts`: (groups, number) pairs), as a database
    counts them: a rollout's preview without a row per device."""
    sizes = [0] * len(phases)
    n_pct = 0
    for groups, n in counts:
        grp = _group_phase(phases, groups)
        if grp is None:
            n_pct += n
        else:
            sizes[grp] += n
    quotas = _quotas(phases, n_pct)
    for i, q in quotas.items():
        sizes[i] += q
    sizes[-1] += n_pct - sum(quotas.values())
    return sizes


def phase_verdict(
    phase: Mapping[str, Any],
    counts: Mapping[str, int],
    accepted_failures: int = 0,
    later_devices: int = 0,
    empty_accepted: bool = False,
) -> tuple[str, str]:
    """("pause", why) when the error threshold is crossed, ("next", why) when the success threshold is met,
    else ("wait", ""). Failures the operator accepted by resuming count as done, not as errors.

    An empty phase is no passed gate: while later phases hold devices (`later_devices`) it pauses the rollout
    until the operator resumes it (`empty_accepted`), so an empty canary never waves the whole fleet through."""
    total = sum(counts.values())
    if total == 0:
        if later_devices and not empty_accepted:
            return "pause", (
                f"phase '{phase['name']}' has no devices, so it cannot vouch for the {later_devices} device(s) of "
                "the later phases; add devices to it, or resume to skip it"
            )
        return "next", "phase has no devices"
    failed = sum(counts.get(s, 0) for s in FAILED)
    fresh_failures = max(0, failed - accepted_failures)
    if fresh_failures and fresh_failures * 100 >= phase["error_threshold"] * total:
        return "pause", (
            f"{failed} of {total} devices failed in phase '{phase['name']}' "
            f"(error threshold {phase['error_threshold']}%); resume to go on, or cancel"
        )
    done = counts.get("success", 0) + min(failed, accepted_failures)
    if done * 100 >= phase["success_threshold"] * total:
        return "next", f"{done} of {total} devices done in phase '{phase['name']}'"
    return "wait", ""


def parse_window(raw: Any) -> dict[str, Any] | None:
    """A maintenance window: a cron expression for its start, a duration, and a time zone (default UTC)."""
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise Invalid("window must be an object with cron, duration_minutes and timezone")
    unknown = set(raw) - {"cron", "duration_minutes", "timezone"}
    if unknown:
        raise Invalid(f"window has unknown keys {sorted(unknown)}; use cron, duration_minutes, timezone")
    cron, minutes, tz = raw.get("cron"), raw.get("duration_minutes"), raw.get("timezone") or "UTC"
    if not isinstance(cron, str) or not croniter.is_valid(cron) or len(cron.split()) != 5:
        raise Invalid(f"window.cron {cron!r} is not a 5-field cron expression (e.g. '0 2 * * *' for 02:00 daily)")
    if not isinstance(minutes, int) or isinstance(minutes, bool) or not 1 <= minutes <= 7 * 24 * 60:
        raise Invalid("window.duration_minutes must be an integer from 1 to 10080 (a week)")
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise Invalid(f"window.timezone {tz!r} is not an IANA time zone (e.g. 'Europe/Berlin')") from None
    return {"cron": cron, "duration_minutes": minutes, "timezone": tz}


def _last_start(window: Mapping[str, Any], now: dt.datetime) -> dt.datetime:
    local = now.astimezone(ZoneInfo(window["timezone"])).replace(second=0, microsecond=0)
    if croniter.match(window["cron"], local):
        return local
    prev: dt.datetime = croniter(window["cron"], local).get_prev(dt.datetime)
    return prev


def window_open(window: Mapping[str, Any] | None, now: dt.datetime) -> bool:
    """True when there is no window or `now` lies within [start, start + duration) of its latest start."""
    if not window:
        return True
    start = _last_start(window, now)
    return now < start + dt.timedelta(minutes=int(window["duration_minutes"]))


def next_opening(window: Mapping[str, Any], now: dt.datetime) -> dt.datetime:
    """When the window opens next (now, if it is open)."""
    if window_open(window, now):
        return now
    local = now.astimezone(ZoneInfo(window["timezone"]))
    nxt: dt.datetime = croniter(window["cron"], local).get_next(dt.datetime)
    return nxt.astimezone(dt.UTC)
