"""Power cuts at 20 random points of an install: every device comes back on a good slot and converges."""

from __future__ import annotations

import json
import os
import random
import time
from dataclasses import dataclass

from bulkhead.lab.device import LabDevice
from tests.e2e.conftest import Fleet, build_release

PHASES = ("downloading", "installing", "rebooting", "verifying")
MAX_DELAY = {"downloading": 0.8, "installing": 0.25, "rebooting": 0.1, "verifying": 0.1}  # about each phase's length here
ORDER = {"idle": 0, "downloading": 1, "installing": 2, "rebooting": 3, "verifying": 4}


@dataclass
class Cycle:
    release: dict[str, object]
    phase: str  # cut this long after the agent enters this phase
    delay: float
    seen_active: bool = False
    armed_at: float | None = None
    cut_in: str | None = None  # the phase the agent was in when the power went


def _booted_ok(d: LabDevice, version: str) -> bool:
    r = d.rauc.rauc("status", "--detailed", "--output-format=json")
    if r.returncode != 0:
        return False
    doc = json.loads(r.stdout)
    slots = {k: v for e in doc["slots"] for k, v in e.items()}
    booted = next(v for v in slots.values() if v.get("bootname") == doc["booted"])
    primary = slots.get(doc.get("boot_primary") or "", {})
    return (
        booted["boot_status"] == "good"
        and primary.get("bootname") == doc["booted"]
        and (booted.get("slot_status") or {}).get("bundle", {}).get("version") == version
    )


def test_power_cut_at_20_random_points(fleet: Fleet) -> None:
    seed = int(os.environ.get("BULKHEAD_POWER_CUT_SEED", time.time()))
    rng = random.Random(seed)
    releases = [fleet.upload(build_release(fleet.work, v, fleet.pki, random_mib=2)) for v in ("2.0", "3.0")]
    devices = [fleet.device(f"pc-{i}", initial_version="1.0", rate_limit=2 << 20, health_deadline=10) for i in range(4)]
    fleet.wait(lambda: all(fleet.show(d.spec.name)["last_seen"] for d in devices), 60, "enrollment")
    plan = {d.spec.name: [releases[i % 2] for i in range(5)] for d in devices}  # 4 devices x 5 cuts = 20 points
    current: dict[str, Cycle | None] = {d.spec.name: None for d in devices}
    done: list[Cycle] = []
    api = fleet.api()

    def advance() -> None:
        for d in devices:
            d.tick()
            name = d.spec.name
            cyc = current[name]
            if cyc is None:
                if not plan[name]:
                    continue
                rel = plan[name].pop(0)
                n = len(done) + sum(1 for c in current.values() if c is not None)
                phase = PHASES[n % len(PHASES)]
                cyc = current[name] = Cycle(rel, phase, rng.uniform(0, MAX_DELAY[phase]))
                # The plan goes back and forth between releases: downgrades are deliberate here.
                body = {"release_id": rel["id"], "allow_downgrade": True}
                api.put(f"/api/v1/devices/{name}/desired-release", json=body).raise_for_status()
                continue
            if cyc.cut_in is None:
                phase = d.update_state().get("phase", "idle")
                cyc.seen_active |= phase != "idle"
                if cyc.armed_at is None and ORDER.get(phase, 0) >= ORDER[cyc.phase]:
                    cyc.armed_at = time.monotonic()
                finished = cyc.seen_active and phase == "idle"
                if (cyc.armed_at is not None and time.monotonic() - cyc.armed_at >= cyc.delay) or finished:
                    cyc.cut_in = "after the update" if finished else phase
                    d.power_cut()
                    time.sleep(0.2)
                    d.power_on()
                continue
            if time.monotonic() % 1 < 0.9:  # ask the server about once a second
                continue
            up = fleet.show(name)["update"]
            ok = up.get("release_id") == cyc.release["id"] and up.get("phase") == "success"
            if ok and _booted_ok(d, str(cyc.release["version"])):
                done.append(cyc)
                current[name] = None

    end = time.monotonic() + 600
    while len(done) < 20:
        assert time.monotonic() < end, f"power cuts did not converge in 600 s (seed {seed}): {current}"
        advance()
        time.sleep(0.01)
    # Every cut landed somewhere in the install (the phases the agent was in when the power went):
    mid = [c.cut_in for c in done if c.cut_in != "after the update"]
    assert len(mid) >= 10 and len(set(mid)) >= 3, sorted((c.cut_in or "", c.phase) for c in done)
    for d in devices:  # each ran 2.0, 3.0, 2.0, 3.0, 2.0: it ends on 2.0, on a good slot that is also the primary
        assert _booted_ok(d, "2.0")
        assert fleet.show(d.spec.name)["update"]["phase"] == "success"
    print(f"power cuts (seed {seed}):", sorted((c.cut_in, round(c.delay, 2)) for c in done))
