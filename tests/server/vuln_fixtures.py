"""Releases, devices and feed files for the vulnerability monitoring tests, derived from the shared testdata.

- CVE records: the 32 real CVE JSON 5 records of `shared/testdata/cve/` as one JSON array (the `cve-records` feed).
- Debian tracker: `tests/cra/data/debian-tracker-edge.json` (its README says what each entry is made of).
- KEV: the real CISA catalogue `shared/testdata/cve/kev/known_exploited_vulnerabilities.json`, and a copy of it
  without CVE-2024-36971 (count lowered to match) to see that CVE become exploited.
- SBOMs: the Yocto CycloneDX subset `tests/cra/components/fixtures/beaglebone-subset.cdx-1.5.json` (from the real
  beaglebone SPDX), and the Debian SPDX 2.3 subset `debian-subset.spdx-2.3.json` as is (libssl3 3.0.15-1~deb12u1,
  which carries the fix of CVE-2024-5535) and with libssl3 at 3.0.11-1~deb12u2 (before the fix).
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from bulkhead.lab.pki import DemoPki, make_pki
from tests.conftest import SHARED
from tests.delta.conftest import ext4, full_bundle

CRA = Path(__file__).parents[1] / "cra"
CDX_YOCTO = CRA / "components/fixtures/beaglebone-subset.cdx-1.5.json"
SPDX_DEBIAN = CRA / "components/fixtures/debian-subset.spdx-2.3.json"
TRACKER = CRA / "data/debian-tracker-edge.json"
KEV = SHARED / "cve/kev/known_exploited_vulnerabilities.json"
OLD_SSL, NEW_SSL = "3.0.11-1~deb12u2", "3.0.15-1~deb12u1"
DEBIAN, YOCTO = "vuln-debian", "vuln-yocto"
BOOKWORM = {"ID": "debian", "VERSION_ID": "12", "VERSION_CODENAME": "bookworm"}


@dataclass
class Lab:
    pki: DemoPki
    bundles: dict[tuple[str, str], Path]  # (compatible, version) -> signed bundle
    feeds: dict[str, Path]  # feed name -> file to import


def debian_sbom(libssl: str) -> bytes:
    doc = json.loads(SPDX_DEBIAN.read_text())
    for p in doc["packages"]:
        if p["name"] == "libssl3":
            p["versionInfo"] = libssl
            p["sourceInfo"] = f"built from Debian source package openssl {libssl}"
            for ref in p.get("externalRefs", []):
                ref["referenceLocator"] = ref["referenceLocator"].replace(NEW_SSL, libssl)
    doc["documentNamespace"] += f"-{libssl}"
    return json.dumps(doc).encode()


def make_lab(work: Path) -> Lab:
    if not (SHARED / "cve").is_dir():
        pytest.skip(f"shared testdata not found: {SHARED}")
    pki = make_pki(work / "pki")
    image = ext4(work, 1)
    bundles = {}
    for compatible, version in ((DEBIAN, "1"), (DEBIAN, "2"), (YOCTO, "1")):
        d = work / f"{compatible}-{version}"
        d.mkdir()
        bundles[(compatible, version)] = full_bundle(d, image, version, pki.cert, pki.key, compatible)
    records = [json.loads(p.read_text()) for p in sorted((SHARED / "cve").glob("CVE-*.json"))]
    (work / "cve-records.json").write_text(json.dumps(records))
    kev = json.loads(KEV.read_text())
    kev["vulnerabilities"] = [v for v in kev["vulnerabilities"] if v["cveID"] != "CVE-2024-36971"]
    kev["count"] = len(kev["vulnerabilities"])
    (work / "kev-without-36971.json").write_text(json.dumps(kev))
    feeds = {
        "cve-records": work / "cve-records.json",
        "debian-tracker": TRACKER,
        "cisa-kev": KEV,
        "kev-without-36971": work / "kev-without-36971.json",
    }
    return Lab(pki, bundles, feeds)


def import_feed(c: httpx.Client, name: str, path: Path) -> dict[str, Any]:
    r = c.post(f"/api/v1/vulnerability-feeds/{name}/import", content=path.read_bytes())
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()
    return out


def release(c: httpx.Client, lab: Lab, compatible: str, version: str, sbom: bytes) -> int:
    r = c.post("/api/v1/releases", content=lab.bundles[(compatible, version)].read_bytes())
    assert r.status_code == 201, r.text
    rid: int = r.json()["id"]
    r = c.put(f"/api/v1/releases/{rid}/sbom", content=sbom)
    assert r.status_code == 200, r.text
    return rid


def device(c: httpx.Client, compatible: str, group: str | None = None) -> tuple[str, dict[str, str]]:
    name = f"d-{uuid.uuid4().hex[:8]}"
    boot = c.post("/api/v1/bootstrap-tokens", json={"name": name, "group": group}).json()
    r = c.post("/device/v1/enroll", json={"bootstrap_token": boot["token"], "name": name, "compatible": compatible})
    assert r.status_code == 201, r.text
    return name, {"authorization": f"Bearer {r.json()['credential']}"}


def report(c: httpx.Client, name: str, auth: dict[str, str], os_version: str, packages: dict[str, str] | None = None,
           fmt: str = "dpkg", os_release: dict[str, str] | None = None) -> None:  # fmt: skip
    inv: dict[str, Any] = {"os_version": os_version, "os_release": os_release or BOOKWORM}
    if packages is not None:
        inv["packages"] = {"format": fmt, "count": len(packages), "packages": packages}
    r = c.post("/device/v1/reports", json={"events": [], "inventory": inv}, headers=auth)
    assert r.status_code == 200, r.text
    deadline = time.monotonic() + 20
    while c.get(f"/api/v1/devices/{name}").json()["reported"] != inv:
        assert time.monotonic() < deadline, f"{name} never showed os_version {os_version}"
        time.sleep(0.1)


def scan(c: httpx.Client, kind: str = "full") -> dict[str, Any]:
    """Ask for a scan (queued as a job: 202) and wait for its run to finish."""
    r = c.post("/api/v1/vulnerabilities/scan", json={"kind": kind})
    assert r.status_code == 202, r.text
    out: dict[str, Any] = r.json()
    assert out["status"] in ("queued", "running", "done") and r.headers["location"] == out["status_url"]
    url, deadline = out["status_url"], time.monotonic() + 60
    while out["status"] in ("queued", "running"):
        assert time.monotonic() < deadline, f"scan run {out['id']} never finished: {out}"
        time.sleep(0.1)
        r = c.get(url)
        assert r.status_code == 200, r.text
        out = r.json()
    assert out["status"] == "done", out
    return out


def cves(c: httpx.Client, **params: Any) -> dict[str, dict[str, Any]]:
    r = c.get("/api/v1/vulnerabilities", params=params)
    assert r.status_code == 200, r.text
    return {row["cve"]: row for row in r.json()}
