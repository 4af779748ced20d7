"""How many devices each phase of a rollout would get, counted by the database (the web UI's live preview).

The same target filter (rollout_sql.target_filter) and phase rules (rollout_plan) as creating the rollout, but set
based: one COUNT, or one COUNT per distinct set of groups when a phase is a group's, never a row per device.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Text, cast, func, select
from sqlalchemy.orm import Session

from ..models import Device
from .rollout_plan import phase_sizes_counted
from .rollout_sql import target_filter

__all__ = ["preview_sizes"]


def preview_sizes(s: Session, tid: int, target: dict[str, Any], phases: list[dict[str, Any]]) -> tuple[int, list[int]]:
    """(devices the target matches now, devices per phase) for a parsed target and parsed phases."""
    where = [Device.tenant_id == tid, Device.status == "active", *target_filter(s, target)]
    if any(p.get("group") for p in phases):
        groups = cast(Device.groups, Text)
        rows = s.execute(select(groups, func.count()).where(*where).group_by(groups)).all()
        counts = [((json.loads(g) if g else None) or [], int(n)) for g, n in rows]
    else:
        counts = [((), int(s.scalar(select(func.count()).select_from(Device).where(*where)) or 0))]
    sizes = phase_sizes_counted(phases, counts)
    return sum(n for _, n in counts), sizes
