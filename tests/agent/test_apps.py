"""Planning container actions: create, recreate on spec or version change, start stopped ones, remove orphans."""

from __future__ import annotations

from bulkhead.agent.apps import Action, Running, container_name, plan_apps, spec_hash

SPEC = {"name": "main", "image": "reg:5000/web:1", "command": [], "env": {}, "ports": [], "volumes": [], "restart": "always"}


def app(version: str, spec: dict[str, object] = SPEC) -> dict[str, object]:
    return {"name": "web", "version": version, "containers": [spec]}


def test_plan() -> None:
    name = container_name("bulkhead", "web", "main")
    assert name == "web.main" and container_name("dev1", "web", "main") == "dev1.web.main"
    assert plan_apps("bulkhead", [app("1")], []) == [Action("create", name, "web", "1", SPEC)]
    ok = Running(name, "web", "1", spec_hash(SPEC), "running")
    assert plan_apps("bulkhead", [app("1")], [ok]) == []
    assert plan_apps("bulkhead", [app("1")], [Running(name, "web", "1", spec_hash(SPEC), "exited")])[0].kind == "start"
    assert plan_apps("bulkhead", [app("2")], [ok])[0].kind == "recreate"
    changed = {**SPEC, "env": {"A": "1"}}
    assert plan_apps("bulkhead", [app("1", changed)], [ok]) == [Action("recreate", name, "web", "1", changed)]
    orphan = Running("old.main", "old", "3", "x", "running")
    assert plan_apps("bulkhead", [app("1")], [orphan, ok]) == [Action("remove", "old.main", "old", "3")]
