"""Vulnerability monitoring end to end: lab devices (real RAUC services and agents) on a release whose SBOM lists a
vulnerable libssl3 are exposed to CVE-2024-5535; a rollout of the release with the fixed libssl3 takes each device out
of the exposure once it reports the new version; a VEX "not affected" takes another CVE out of the exposure and keeps
it in the record; a KEV update flags a CVE that still affects the fleet exploited and records the event.

Derived data (written by this module, from files of the repository and of `shared/testdata`):
- each release's rootfs holds a dpkg status file of four bookworm packages (real Debian package names, sources and
  versions); its SBOM is made from that file the way the reference image builder makes its own
  (`bulkhead.osbuild.sbom`), and the lab devices report the dpkg database of the slot they boot;
- the Debian tracker feed: `tests/cra/data/debian-tracker-edge.json` (constructed entries, see its README) plus one
  entry constructed in the same style: linux CVE-2024-1086, bookworm, resolved in 6.1.76-1;
- the KEV feed: the real CISA catalogue `shared/testdata/cve/kev/known_exploited_vulnerabilities.json`, first without
  CVE-2024-1086 (count lowered to match), then as it is (CISA added that CVE on 2024-05-30);
- the CVE records: the 32 real CVE JSON 5 records of `shared/testdata/cve/` as one array (descriptions, CVSS).

Scans run through the API: the server's job scans new inventories every 10 minutes; the test asks for a scan of the
devices' new inventories at each poll instead of waiting for it.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bulkhead.lab import images
from bulkhead.osbuild.sbom import parse_dpkg_status, spdx
from tests.conftest import SHARED
from tests.e2e.conftest import COMPATIBLE, Fleet, make_fleet, need_lab
from tests.live import live_server
from tests.server.vuln_fixtures import scan

TRACKER_EDGE = Path(__file__).parents[1] / "cra/data/debian-tracker-edge.json"
KEV = SHARED / "cve/kev/known_exploited_vulnerabilities.json"
OLD_SSL, NEW_SSL = "3.0.11-1~deb12u2", "3.0.15-1~deb12u1"  # CVE-2024-5535 is fixed in bookworm by 3.0.14-1~deb12u1
SSL_CVE, VEX_CVE, KEV_CVE = "CVE-2024-5535", "CVE-2024-2398", "CVE-2024-1086"
# (binary package, version, source package): libcurl4 is open to CVE-2024-2398 in bookworm, the kernel to CVE-2024-1086
PACKAGES = [
    ("libcurl4", "7.88.1-10+deb12u5", "curl"),
    ("libssl3", OLD_SSL, "openssl"),
    ("linux-image-6.1.0-17-amd64-unsigned", "6.1.69-1", "linux"),
    ("rauc", "1.8-2", "rauc"),
]


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    """conftest's fleet, with a server whose feed jobs fetch from a mirror that is not there: the hourly KEV job cannot
    bring CISA's live catalogue in during the test; the feeds are the files imported here."""
    need_lab()
    with live_server(tmp_path / "server", env_extra={"BULKHEAD_FEED_MIRROR": "http://127.0.0.1:9/feeds"}) as srv:
        f = make_fleet(srv, tmp_path)
        try:
            yield f
        finally:
            f.shutdown()


def dpkg_status(libssl3: str) -> str:
    """A dpkg status file (the fields dpkg writes, in its order) of PACKAGES with libssl3 at `libssl3`."""
    out = []
    for name, version, source in PACKAGES:
        version = libssl3 if name == "libssl3" else version
        out.append(
            f"Package: {name}\nStatus: install ok installed\nPriority: optional\nSection: misc\n"
            f"Maintainer: Debian Maintainers <debian-devel@lists.debian.org>\nArchitecture: amd64\n"
            + (f"Source: {source}\n" if source != name else "")
            + f"Version: {version}\nDescription: {name} (lab image)\n"
        )
    return "\n".join(out)


def feeds(work: Path) -> dict[str, Path]:
    """The feed files to import (see the module's docstring)."""
    if not (SHARED / "cve").is_dir():
        pytest.skip(f"shared testdata not found: {SHARED}")
    tracker = json.loads(TRACKER_EDGE.read_text())
    tracker["linux"] = {
        KEV_CVE: {
            "scope": "local",
            "releases": {
                "bookworm": {
                    "status": "resolved",
                    "repositories": {"bookworm": "6.1.76-1"},
                    "fixed_version": "6.1.76-1",
                    "urgency": "not yet assigned",
                }
            },
        }
    }
    kev = json.loads(KEV.read_text())
    assert any(v["cveID"] == KEV_CVE for v in kev["vulnerabilities"])
    kev["vulnerabilities"] = [v for v in kev["vulnerabilities"] if v["cveID"] != KEV_CVE]
    kev["count"] = len(kev["vulnerabilities"])
    records = [json.loads(p.read_text()) for p in sorted((SHARED / "cve").glob("CVE-*.json"))]
    out = {
        "debian-tracker": work / "debian-tracker.json",
        "kev-before": work / "kev-without-1086.json",
        "cve-records": work / "cve-records.json",
    }
    out["debian-tracker"].write_text(json.dumps(tracker))
    out["kev-before"].write_text(json.dumps(kev))
    out["cve-records"].write_text(json.dumps(records))
    return out


def import_feed(fleet: Fleet, name: str, path: Path) -> None:
    """The feeds serve every tenant: the server administrator imports them."""
    with fleet.server.client(fleet.server.admin) as a:
        r = a.post(f"/api/v1/vulnerability-feeds/{name}/import", content=path.read_bytes())
        assert r.status_code == 200, r.text


def release(fleet: Fleet, version: str, libssl3: str) -> tuple[dict[str, Any], Path]:
    """Release `version` (its rootfs holding the dpkg database) with its SBOM; returns it and its rootfs image."""
    status = dpkg_status(libssl3)
    bundle = images.build_release(
        fleet.work, COMPATIBLE, version, fleet.pki.cert, fleet.pki.key, files={"var/lib/dpkg/status": status}
    )
    rel = fleet.upload(bundle)
    sbom = spdx(parse_dpkg_status(status), COMPATIBLE, version, dt.datetime(2024, 7, 1, tzinfo=dt.UTC))
    with fleet.api() as c:
        r = c.put(f"/api/v1/releases/{rel['id']}/sbom", content=json.dumps(sbom).encode())
        assert r.status_code == 200, r.text
    return rel, fleet.work / f"content-{version}" / "rootfs.ext4"  # the image build_release put in the bundle


def get(c: httpx.Client, path: str, **params: Any) -> Any:
    r = c.get(path, params=params)
    assert r.status_code == 200, r.text
    return r.json()


def cves(c: httpx.Client, **params: Any) -> dict[str, dict[str, Any]]:
    return {row["cve"]: row for row in get(c, "/api/v1/vulnerabilities", **params)}


def test_exposure_follows_the_devices_through_a_rollout_vex_and_kev(fleet: Fleet) -> None:
    files = feeds(fleet.work)
    import_feed(fleet, "cve-records", files["cve-records"])
    import_feed(fleet, "debian-tracker", files["debian-tracker"])
    import_feed(fleet, "cisa-kev", files["kev-before"])
    r10, image10 = release(fleet, "1.0", OLD_SSL)
    r11, _ = release(fleet, "1.1", NEW_SSL)
    names = {"canary-1": "canary", "line-1": "line", "line-2": "line"}
    for name, group in names.items():
        fleet.device(name, group=group, initial_version="1.0", initial_image=image10, packages_from_slot=True)

    def packages(name: str) -> dict[str, str]:
        reported: dict[str, Any] = fleet.show(name)["reported"]
        listed: dict[str, str] = (reported.get("packages") or {}).get("packages") or {}
        return listed

    # The agents report the dpkg database of the slot they run: the image's packages, as its SBOM lists them.
    fleet.wait(lambda: all(packages(n).get("libssl3") for n in names), 60, "the devices' package inventories")
    for name in names:
        assert packages(name) == {n: (OLD_SSL if n == "libssl3" else v) for n, v, _ in PACKAGES}
        assert fleet.show(name)["reported"]["os_version"] == "1.0"

    with fleet.api() as c:
        held = {f["name"]: f for f in get(c, "/api/v1/vulnerability-feeds")}
        assert held["cisa-kev"]["url"].startswith("http://127.0.0.1:9/feeds/") and held["cisa-kev"]["origin"].startswith("import")
        assert held["cve-records"]["records"] == 32 and held["debian-tracker"]["has_data"]
        run = scan(c, "full")
        assert run["counts"]["releases"] == 2 and run["counts"]["devices_mapped"] == 3
        assert run["feeds"]["debian-tracker"]["sha256"] and run["feeds"]["cisa-kev"]["sha256"]
        old, new = cves(c, release=r10["id"]), cves(c, release=r11["id"])
        assert old[SSL_CVE]["status"] == "affected" and old[SSL_CVE]["components"] == [f"libssl3 {OLD_SSL}"]
        assert new[SSL_CVE]["status"] == "fixed"
        for found in (old, new):  # what the update does not change
            assert found[VEX_CVE]["status"] == "affected" and found[KEV_CVE]["status"] == "affected"
            assert found[KEV_CVE]["kev"] is False
        for name in names:
            assert cves(c, device=name)[SSL_CVE]["status"] == "affected"
        shown = get(c, f"/api/v1/vulnerabilities/{SSL_CVE}")
        assert shown["exposure"] == {
            "devices": 3,
            "groups": {"canary": 1, "line": 2},
            "versions": {"1.0": 3},
            "countries": {"unknown": 3},
        }
        assert shown["fix"]["versions"] == ["3.0.14-1~deb12u1"]
        assert shown["fix"]["releases"] == [{"compatible": COMPATIBLE, "release_id": r11["id"], "version": "1.1"}]
        assert "OpenSSL" in shown["description"]
        assert sorted(d["name"] for d in get(c, f"/api/v1/vulnerabilities/{SSL_CVE}/devices")) == sorted(names)

        body = {
            "name": "fix-openssl",
            "release_id": r11["id"],
            "target": {"groups": ["canary", "line"]},
            "phases": [{"group": "canary"}, {"group": "line"}],
        }
        r = c.post("/api/v1/rollouts", json=body)
        assert r.status_code == 201, r.text

    # Each device leaves the exposure when it reports the fixed libssl3 (with the new release), not before; the canary
    # phase goes first, so there is a moment when the canary is out and the line devices are still exposed.
    seen: list[tuple[frozenset[str], frozenset[str]]] = []  # (devices reporting 1.1, devices exposed) per poll

    def drops() -> bool:
        before = {n for n in names if packages(n).get("libssl3") == NEW_SSL}
        with fleet.api() as c:
            scan(c, "devices")
            exposed = {d["name"] for d in get(c, f"/api/v1/vulnerabilities/{SSL_CVE}/devices")}
            exposure = get(c, f"/api/v1/vulnerabilities/{SSL_CVE}")["exposure"]
        still_old = {n for n in names if packages(n).get("libssl3") == OLD_SSL}
        assert not before & exposed, f"{before & exposed} reported the fixed libssl3 before the scan, yet are exposed"
        assert still_old <= exposed, f"{still_old - exposed} still reported the old libssl3 after the scan, yet are not"
        assert set(exposure["versions"]) <= {"1.0"}, exposure  # (the server's own scan job may have run meanwhile)
        seen.append((frozenset(before), frozenset(exposed)))
        return not exposed and before == set(names)

    fleet.wait(drops, 300, "every device to report the fixed libssl3 and leave the exposure")
    assert (frozenset({"canary-1"}), frozenset({"line-1", "line-2"})) in seen, seen
    with fleet.api() as c:
        fleet.wait(lambda: get(c, "/api/v1/rollouts/fix-openssl")["status"] == "finished", 60, "the rollout to finish")
        for name in names:
            dev = fleet.show(name)
            assert dev["reported"]["os_version"] == "1.1" and dev["update"]["phase"] == "success"
            assert packages(name) == {n: (NEW_SSL if n == "libssl3" else v) for n, v, _ in PACKAGES}
            assert cves(c, device=name)[SSL_CVE]["status"] == "fixed"
        shown = get(c, f"/api/v1/vulnerabilities/{SSL_CVE}")
        assert shown["exposure"] == {"devices": 0, "groups": {}, "versions": {}, "countries": {}}
        by_release = {f["release"]: f["status"] for f in shown["findings"]}
        assert by_release == {"1.0": "affected", "1.1": "fixed"}  # the record of release 1.0 stays
        assert cves(c)[SSL_CVE]["devices"] == 0 and cves(c, release=r10["id"])[SSL_CVE]["status"] == "affected"
        assert all(SSL_CVE not in cves(c, device=name, status="affected") for name in names)

        # VEX: libcurl4's HTTP/2 push leak is out of reach in this product; the CVE leaves the exposure, not the record.
        assert get(c, f"/api/v1/vulnerabilities/{VEX_CVE}")["exposure"]["devices"] == 3
        vex = {
            "compatible": COMPATIBLE,
            "cve": VEX_CVE,
            "status": "not_affected",
            "justification": "code_not_reachable",
            "impact_statement": "no program of this product enables HTTP/2 server push in libcurl",
        }
        r = c.put("/api/v1/vex", json=vex)
        assert r.status_code == 201, r.text
        vex_id = r.json()["id"]
        shown = get(c, f"/api/v1/vulnerabilities/{VEX_CVE}")
        assert shown["exposure"]["devices"] == 0 and get(c, f"/api/v1/vulnerabilities/{VEX_CVE}/devices") == []
        assert {f["release"] for f in shown["findings"]} == {"1.0", "1.1"}
        for f in shown["findings"] + shown["device_findings"]:
            assert f["status"] == "not_affected", f
        for f in shown["findings"]:
            assert (f["matcher_status"], f["vex_id"]) == ("affected", vex_id)
        assert shown["vex"][0]["justification"] == "code_not_reachable"
        for name in names:
            listed = cves(c, device=name)
            assert listed[VEX_CVE]["status"] == "not_affected" and listed[VEX_CVE]["devices"] == 0
            assert VEX_CVE not in cves(c, device=name, status="affected")
        assert [e["action"] for e in get(c, "/api/v1/audit", action="vex.")] == ["vex.set"]

        # KEV: CISA lists the kernel's CVE-2024-1086 while every device still runs the vulnerable kernel.
        assert get(c, "/api/v1/audit", action="vuln.kev_exploited") == []
        import_feed(fleet, "cisa-kev", KEV)
        shown = get(c, f"/api/v1/vulnerabilities/{KEV_CVE}")
        assert shown["kev"] is True and shown["kev_date"] == "2024-05-30"
        assert shown["exposure"] == {
            "devices": 3,
            "groups": {"canary": 1, "line": 2},
            "versions": {"1.1": 3},
            "countries": {"unknown": 3},
        }
        assert {f["release"]: f["kev"] for f in shown["findings"]} == {"1.0": True, "1.1": True}
        assert set(cves(c, kev=True)) == {KEV_CVE}
        [event] = get(c, "/api/v1/audit", action="vuln.kev_exploited")
        assert event["subject"] == KEV_CVE and event["actor"]
        details = event["details"]
        assert details["devices"] == 3 and details["releases"] == ["1.0", "1.1"]
        assert details["kev_date_added"] == "2024-05-30" and details["kev_due_date"] == "2024-06-20"
        assert get(c, "/api/v1/vulnerabilities/scans", limit=1)[0]["kind"] == "kev"  # the catalogue's run is kept
