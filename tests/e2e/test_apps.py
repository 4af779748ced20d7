"""A container app moves v1 -> v2 -> v1 through real Podman, pulled with credentials from a local registry."""

from __future__ import annotations

import json
import subprocess

from tests.e2e.conftest import Fleet
from tests.registry import Registry


def _containers(owner: str) -> dict[str, dict[str, str]]:
    out = subprocess.run(
        ["podman", "ps", "-a", "--format", "json", "--filter", f"label=bulkhead.owner={owner}"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return {c["Names"][0]: {"image": c["Image"], "state": c["State"], **(c.get("Labels") or {})} for c in json.loads(out or "[]")}


def _version_inside(name: str) -> str:
    return subprocess.run(
        ["podman", "exec", name, "/bin/busybox", "cat", "/version"], capture_output=True, text=True, check=True
    ).stdout.strip()


def test_app_v1_to_v2_and_back_with_drift_and_files(fleet: Fleet, registry: Registry) -> None:
    img1 = registry.push(fleet.work, "web", "1", "web-v1")
    img2 = registry.push(fleet.work, "web", "2", "web-v2")
    with fleet.api() as c:
        for version, img in (("1", img1), ("2", img2)):
            c.post(
                "/api/v1/apps",
                json={"name": "web", "version": version, "containers": [{"name": "main", "image": img, "env": {"V": version}}]},
            ).raise_for_status()
        c.put("/api/v1/registries", json={"host": registry.host, "username": "lab", "password": "lab-secret"}).raise_for_status()
        c.patch("/api/v1/groups/lab/desired", json={"apps": {"web": "1"}}).raise_for_status()
    owner = "app-dev"
    dev = fleet.device(owner, insecure_registries=[registry.host], attributes={"site": "plant-7"})
    name = f"{owner}.web.main"
    try:
        fleet.wait(lambda: _containers(owner).get(name, {}).get("state") == "running", 90, "app v1 running")
        assert _version_inside(name) == "web-v1"

        # Drift: someone stops the container by hand; the agent starts it again.
        subprocess.run(["podman", "stop", "--time", "1", name], check=True, capture_output=True)
        fleet.wait(lambda: _containers(owner).get(name, {}).get("state") == "running", 60, "drift corrected")

        for version, marker in (("2", "web-v2"), ("1", "web-v1")):
            with fleet.api() as c:
                c.patch(f"/api/v1/devices/{owner}/desired", json={"apps": {"web": version}}).raise_for_status()
            fleet.wait(
                lambda v=version: (
                    _containers(owner).get(name, {}).get("bulkhead.version") == v
                    and _containers(owner)[name]["state"] == "running"
                ),
                90,
                f"app v{version} running",
            )
            assert _version_inside(name) == marker
        events = fleet.api().get(f"/api/v1/devices/{owner}/events").json()
        assert any(e["kind"] == "app" and e["phase"] == "applied" and e["details"]["version"] == "2" for e in events)
        inv = fleet.wait(lambda: fleet.show(owner)["reported"].get("containers"), 30, "containers in the inventory")
        assert {c["name"] for c in inv} == {name}

        # A templated file with a command after the change; then the app is removed.
        with fleet.api() as c:
            c.patch(
                f"/api/v1/devices/{owner}/desired",
                json={
                    "apps": {"web": None},
                    "files": [{"path": "/etc/app/site.conf", "content": "site=${site} device=${name}\n", "template": True,
                               "mode": "0640", "on_change": f"touch {dev.root / 'reloaded'}"}],
                },
            ).raise_for_status()  # fmt: skip
        target = dev.root / "fs" / "etc" / "app" / "site.conf"
        fleet.wait(lambda: target.exists() and (dev.root / "reloaded").exists(), 60, "file placed")
        assert target.read_text() == f"site=plant-7 device={owner}\n" and oct(target.stat().st_mode & 0o777) == "0o640"
        fleet.wait(lambda: name not in _containers(owner), 60, "app removed")
    finally:
        subprocess.run(["podman", "rm", "--force", "--time", "1", name], capture_output=True, check=False)


def test_app_version_rollout_in_two_phases_then_a_bad_version_pauses_and_keeps_the_old(fleet: Fleet, registry: Registry) -> None:
    images = {v: registry.push(fleet.work, "shop", v, f"shop-v{v}") for v in ("1", "2")}
    images["3"] = f"{registry.host}/shop:3-never-pushed"
    with fleet.api() as c:
        for version, img in images.items():
            r = c.post("/api/v1/apps", json={"name": "shop", "version": version, "containers": [{"name": "main", "image": img}]})
            r.raise_for_status()
        c.put("/api/v1/registries", json={"host": registry.host, "username": "lab", "password": "lab-secret"}).raise_for_status()
        for group in ("canary", "line"):
            c.patch(f"/api/v1/groups/{group}/desired", json={"apps": {"shop": "1"}}).raise_for_status()
    devs = {
        "canary": fleet.device("ar-canary", group="canary", insecure_registries=[registry.host]),
        "line": fleet.device("ar-line", group="line", insecure_registries=[registry.host]),
    }
    names = {g: f"ar-{g}.shop.main" for g in devs}

    def runs(group: str, version: str) -> bool:
        c = _containers(f"ar-{group}").get(names[group], {})
        return c.get("bulkhead.version") == version and c.get("state") == "running"

    try:
        fleet.wait(lambda: runs("canary", "1") and runs("line", "1"), 120, "v1 on both devices")
        phases = [{"group": "canary", "error_threshold": 0}, {"group": "line", "error_threshold": 0}]
        with fleet.api() as c:
            body = {"name": "shop-2", "app": {"name": "shop", "version": "2"}, "target": {"groups": ["canary", "line"]}}
            c.post("/api/v1/rollouts", json={**body, "phases": phases}).raise_for_status()
        fleet.wait(lambda: runs("canary", "2"), 90, "v2 on the canary")
        fleet.wait(lambda: fleet.api().get("/api/v1/rollouts/shop-2").json()["status"] == "finished", 90, "rollout finished")
        assert runs("line", "2") and _version_inside(names["line"]) == "shop-v2"

        # v3's image does not exist: the canary fails, keeps running v2, and the rollout pauses before the line.
        with fleet.api() as c:
            body = {"name": "shop-3", "app": {"name": "shop", "version": "3"}, "target": {"groups": ["canary", "line"]}}
            c.post("/api/v1/rollouts", json={**body, "phases": phases}).raise_for_status()
        ro = fleet.wait(
            lambda: (x := fleet.api().get("/api/v1/rollouts/shop-3").json())["status"] == "paused" and x, 90, "shop-3 paused"
        )
        assert ro["counts"] == {"failure": 1} and ro["phases"][1]["devices"] == 0
        act = fleet.api().get("/api/v1/rollouts/shop-3/actions").json()[0]
        assert act["device"] == "ar-canary" and "3-never-pushed" in act["history"][-1]["message"]
        assert runs("canary", "2") and _version_inside(names["canary"]) == "shop-v2"
        assert runs("line", "2")
    finally:
        for owner in ("ar-canary", "ar-line"):
            for name in _containers(owner):
                subprocess.run(["podman", "rm", "--force", "--time", "1", name], capture_output=True, check=False)
