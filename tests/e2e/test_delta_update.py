"""Delta updates end to end: lab devices (Debian's real RAUC 1.8 service) and their agents against a live server.

- a device on v1 is offered the v1→v2 delta bundle, RAUC installs it, it reboots into v2 and reports success
  with the bytes it downloaded (the delta's, a fraction of the full bundle's);
- a device on another version gets the full bundle;
- a delta whose patch is damaged (but signed), and a device whose source slot was modified, are refused by
  the install hook before any slot switch: with the fallback off the device reports the refusal and stays on
  its good slot; with it on (the default) it installs the full bundle instead.
"""

from __future__ import annotations

from typing import Any

from bulkhead.delta.bundle import create_delta_bundle
from bulkhead.rauc import load_keyring
from tests.delta.conftest import damaged_delta, ext4, full_bundle
from tests.e2e.conftest import COMPATIBLE, Fleet


def _events(fleet: Fleet, name: str) -> list[dict[str, Any]]:
    with fleet.api() as c:
        events: list[dict[str, Any]] = list(reversed(c.get(f"/api/v1/devices/{name}/events").json()))
        return events


def _final(fleet: Fleet, name: str) -> dict[str, Any]:
    return next(e for e in reversed(_events(fleet, name)) if e["kind"] == "update" and e["phase"] in ("success", "failure"))


def test_delta_update_per_device_with_refusals(fleet: Fleet) -> None:
    work = fleet.work / "images"
    work.mkdir()
    v1, v2 = ext4(work, 1), ext4(work, 2)
    v3 = ext4(work, 3)
    pki = fleet.pki
    full = {v: full_bundle(work, img, v, pki.cert, pki.key, COMPATIBLE) for v, img in (("1", v1), ("2", v2), ("3", v3))}
    rel = {v: fleet.upload(b) for v, b in full.items()}
    delta = work / "delta-1-2.raucb"
    create_delta_bundle(full["1"], full["2"], delta, pki.cert.read_bytes(), pki.key.read_bytes(),
                        load_keyring(pki.ca.read_bytes()), fmt="plain")  # fmt: skip
    with fleet.api() as c:
        for target, bundle in ((rel["2"], delta), (rel["3"], damaged_delta(work, v1, v3, "3", pki.cert, pki.key, COMPATIBLE))):
            r = c.post(f"/api/v1/releases/{target['id']}/deltas", content=bundle.read_bytes())
            assert r.status_code == 201, r.text
    tampered = work / "tampered.ext4"
    blob = bytearray(v1.read_bytes())
    blob[1 << 20 : (1 << 20) + 8] = b"tampered"
    tampered.write_bytes(bytes(blob))

    on1 = fleet.device("on-v1", initial_version="1", initial_image=v1)
    other = fleet.device("on-v0", initial_version="0.9")
    modified = fleet.device("modified", initial_version="1", initial_image=tampered)
    modified_strict = fleet.device("modified-strict", initial_version="1", initial_image=tampered, delta_fallback=False)
    damaged_strict = fleet.device("damaged-strict", initial_version="1", initial_image=v1, delta_fallback=False)
    fleet.wait(lambda: all(fleet.show(d.spec.name)["reported"].get("os_version") for d in fleet.devices), 60, "inventory")
    with fleet.api() as c:
        for d in (on1, other, modified, modified_strict):
            c.put(f"/api/v1/devices/{d.spec.name}/desired-release", json={"release_id": rel["2"]["id"]}).raise_for_status()
        c.put(
            f"/api/v1/devices/{damaged_strict.spec.name}/desired-release", json={"release_id": rel["3"]["id"]}
        ).raise_for_status()

    def done() -> bool:
        return all(fleet.show(d.spec.name)["update"].get("phase") in ("success", "failure") for d in fleet.devices)

    fleet.wait(done, 240, "every device to finish")
    full2, delta_size = full["2"].stat().st_size, delta.stat().st_size

    # v1: the delta, installed by RAUC's hook; the device runs v2 from slot B and says what it downloaded
    ok = _final(fleet, "on-v1")
    assert ok["phase"] == "success" and ok["details"]["artifact"] == "delta", ok
    assert ok["details"]["download_bytes"] == delta_size < full2 / 4
    assert on1.booted == "B" and on1.boots == 2
    assert on1.rauc.slot("B").read_bytes()[: v2.stat().st_size] == v2.read_bytes()
    assert fleet.show("on-v1")["bytes_served"] == delta_size or fleet.wait(
        lambda: fleet.show("on-v1")["bytes_served"] == delta_size, 30, "byte counters"
    )

    # another version: the full bundle
    ok = _final(fleet, "on-v0")
    assert ok["phase"] == "success" and ok["details"]["artifact"] == "full"
    assert ok["details"]["download_bytes"] == full2 and other.booted == "B"

    # a modified source slot: the hook refuses the delta before writing; the default falls back to the full bundle
    refusal = next(e for e in _events(fleet, "modified") if e["kind"] == "delta")
    assert refusal["phase"] == "refused" and "not the image this delta was made from" in refusal["details"]["reason"]
    ok = _final(fleet, "modified")
    assert ok["phase"] == "success" and ok["details"]["artifact"] == "full" and modified.booted == "B"
    assert "not the image this delta was made from" in ok["details"]["delta_refused"]

    # without the fallback: refused, reported, and the device stays on its good slot
    for d, why in ((modified_strict, "not the image this delta was made from"), (damaged_strict, "sha256")):
        failed = _final(fleet, d.spec.name)
        assert failed["phase"] == "failure" and "delta bundle refused" in failed["details"]["reason"], failed
        assert why in failed["details"]["reason"], failed
        assert d.booted == "A" and d.boots == 1, (d.spec.name, d.booted, d.boots)
        primary = d.rauc.root / "boot" / "primary"  # RAUC never changed the boot order
        assert not primary.exists() or d.rauc.primary() == "A"
        assert fleet.show(d.spec.name)["update"]["phase"] == "failure"
