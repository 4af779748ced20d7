"""Container apps, pure: compare the desired apps with the containers that run and plan the actions to converge."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

__all__ = ["Action", "Running", "container_name", "plan_apps", "spec_hash"]

LABEL_OWNER, LABEL_APP, LABEL_VERSION, LABEL_SPEC = "bulkhead.owner", "bulkhead.app", "bulkhead.version", "bulkhead.spec"


def container_name(owner: str, app: str, container: str) -> str:
    base = f"{app}.{container}"
    return base if owner == "bulkhead" else f"{owner}.{base}"


def spec_hash(spec: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Running:
    """A container this agent manages, as Podman lists it."""

    name: str
    app: str
    version: str
    spec: str
    state: str  # running, exited, created, ...


@dataclass(frozen=True)
class Action:
    kind: str  # create | recreate | start | remove
    name: str
    app: str
    version: str = ""
    spec: dict[str, Any] | None = None


def plan_apps(owner: str, desired: list[dict[str, Any]], running: list[Running]) -> list[Action]:
    """Actions that make the managed containers equal the desired apps (removals first, to free names and ports)."""
    have = {r.name: r for r in running}
    want: dict[str, tuple[str, str, dict[str, Any]]] = {}
    for app in desired:
        for c in app["containers"]:
            want[container_name(owner, app["name"], c["name"])] = (app["name"], app["version"], c)
    actions = [Action("remove", n, r.app, r.version) for n, r in sorted(have.items()) if n not in want]
    for name, (app_name, version, spec) in sorted(want.items()):
        cur = have.get(name)
        if cur is None:
            actions.append(Action("create", name, app_name, version, spec))
        elif cur.spec != spec_hash(spec) or cur.version != version:
            actions.append(Action("recreate", name, app_name, version, spec))
        elif cur.state != "running":
            actions.append(Action("start", name, app_name, version, spec))
    return actions
