"""The overlay closes the CVE loop (services/overlay_fixes.py): a patched package whose changelog entry names a CVE
becomes a `fixed` VEX statement for that package at that version, so the device that installs it is no longer
exposed while the one still at the old version is; removing the package withdraws it. Real server, both databases,
real .debs built by dpkg-deb, the real Debian tracker excerpt and CVE records."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import httpx
import pytest

from bulkhead.server.overlay_debs import read_deb
from tests.overlay_debs import make_deb
from tests.server.conftest import LiveServer
from tests.server.vuln_fixtures import DEBIAN, OLD_SSL, Lab, debian_sbom, device, import_feed, make_lab, release, report, scan

pytestmark = pytest.mark.skipif(
    not (shutil.which("gpg") and shutil.which("dpkg-deb")), reason="needs gpg (apt install gnupg) and dpkg-deb (dpkg)"
)

CVE = "CVE-2024-5535"
PATCHED = OLD_SSL + "+bulkhead1"


def _patched_deb(work: Path, version: str, entry_version: str, text: str) -> Path:
    """libssl3 `version` whose changelog's newest entry is for `entry_version` and says `text`."""
    changelog = (
        f"openssl ({entry_version}) bookworm-security; urgency=high\n\n  * {text}\n\n"
        " -- Bulkhead Ops <ops@example.com>  Thu, 03 Dec 2026 10:00:00 +0000\n\n"
        f"openssl ({OLD_SSL}) bookworm-security; urgency=medium\n\n  * CVE-2023-0001: an older fix.\n\n"
        " -- Debian <debian@example.com>  Mon, 01 Jan 2024 10:00:00 +0000\n"
    )
    files: dict[str, str | bytes] = {"usr/share/doc/libssl3/changelog.Debian.gz": gzip.compress(changelog.encode())}
    sub = work / f"deb-{len(list(work.iterdir()))}"
    sub.mkdir()
    return make_deb(sub, "libssl3", version, arch="amd64", files=files)


def test_the_changelog_entry_of_the_packages_own_version_says_what_it_fixes(tmp_path: Path) -> None:
    named = _patched_deb(tmp_path, PATCHED, PATCHED, f"Fix {CVE} (SSL_select_next_proto over-read) and CVE-2024-9143.")
    assert read_deb(named, ("amd64",)).fixes == ("CVE-2024-5535", "CVE-2024-9143"), "only the newest entry counts"
    other = _patched_deb(tmp_path, PATCHED, "3.0.11-1~deb12u3", f"Fix {CVE}.")
    assert read_deb(other, ("amd64",)).fixes == (), "an entry of another version says nothing about this one"
    plain = make_deb(tmp_path, "hello-plain", "1.0")
    assert read_deb(plain, ("amd64",)).fixes == ()


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Lab:
    return make_lab(tmp_path_factory.mktemp("overlay-fixes"))


def _exposed(c: httpx.Client) -> int:
    r = c.get(f"/api/v1/vulnerabilities/{CVE}")
    assert r.status_code == 200, r.text
    return int(r.json()["exposure"]["devices"])


def test_a_patched_overlay_package_ends_the_exposure_of_the_devices_that_install_it(
    server: LiveServer, lab: Lab, tmp_path: Path
) -> None:
    with server.client(server.admin) as a:
        import_feed(a, "cve-records", lab.feeds["cve-records"])
        import_feed(a, "debian-tracker", lab.feeds["debian-tracker"])
    c = server.client(server.tenant(ca=lab.pki.ca))
    release(c, lab, DEBIAN, "1", debian_sbom(OLD_SSL))
    (a_name, a_auth), (b_name, b_auth) = device(c, DEBIAN), device(c, DEBIAN)
    for name, auth in ((a_name, a_auth), (b_name, b_auth)):
        report(c, name, auth, "1", {"libssl3": OLD_SSL})
    scan(c)
    assert _exposed(c) == 2

    deb = _patched_deb(tmp_path, PATCHED, PATCHED, f"Fix {CVE}: SSL_select_next_proto buffer over-read.")
    r = c.post("/api/v1/overlay/packages", params={"suite": "bookworm"}, content=deb.read_bytes())
    assert r.status_code == 201, r.text
    assert r.json()["fixes"] == [CVE]
    [st] = [v for v in c.get("/api/v1/vex", params={"cve": CVE}).json() if v["origin"] == "overlay"]
    assert (st["status"], st["component"], st["component_version"]) == ("fixed", "libssl3", PATCHED)
    assert "from the package overlay" in st["action_statement"]
    assert _exposed(c) == 2, "nobody runs the patched version yet"

    report(c, a_name, a_auth, "1", {"libssl3": PATCHED})  # device a installed it (the agent reports its packages)
    scan(c, "devices")
    assert _exposed(c) == 1, "the device that installed the patched package is no longer exposed"
    exposed = [d["name"] for d in c.get(f"/api/v1/vulnerabilities/{CVE}/devices").json()]
    assert exposed == [b_name]
    last = c.get("/api/v1/vulnerability-exposure").json()["samples"][-1]
    assert last["cause"].startswith("scan") and last["devices"] == 1, "the exposure history shows the drop"

    pkg = r.json()["id"]
    assert c.delete(f"/api/v1/overlay/packages/{pkg}").status_code == 204
    assert [v for v in c.get("/api/v1/vex", params={"cve": CVE}).json() if v["origin"] == "overlay"] == []
    assert _exposed(c) == 2, "the package left the overlay: its statement went with it"
    audit = c.get("/api/v1/audit", params={"action": "overlay.upload"}).json()
    assert audit[0]["details"]["fixes"] == [CVE]
    c.close()
