"""The Debian matcher: golden verdicts on the real tracker excerpts and on the version edge cases of the derived fixture.

Each expectation is (CVE, status, fixed_version, severity); the reasons are checked where they carry the tracker's note.
The derived fixture tests/cra/data/debian-tracker-edge.json is described in tests/cra/data/README.md.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bulkhead.cra.debian_tracker import DebianTracker, ReleaseEntry, TrackerStatus, load_tracker
from bulkhead.cra.debian_urgency import urgency_severity
from bulkhead.cra.match_debian import debian_codename, debian_source, decide, match_component, match_debian
from bulkhead.cra.model import Component, ComponentOrigin, Finding, FindingStatus, Severity
from tests.conftest import SHARED

AFF, FIX, NA, UI = FindingStatus.AFFECTED, FindingStatus.FIXED, FindingStatus.NOT_AFFECTED, FindingStatus.UNDER_INVESTIGATION
EDGE = Path(__file__).parent / "data" / "debian-tracker-edge.json"
VUNNEL = SHARED / "debian-security" / "tracker-json" / "vunnel-debian.json"
OSV_MOCK = SHARED / "debian-security" / "tracker-json" / "osv.dev-debian_security_tracker_mock.json"


def deb(
    name: str, version: str, release: str = "bookworm", source: str | None = None, source_version: str | None = None
) -> Component:
    return Component(
        name=name,
        version=version,
        origin=ComponentOrigin.INVENTORY,
        source_name=source,
        source_version=source_version,
        distro="debian",
        distro_release=release,
    )


def verdicts(findings: list[Finding]) -> list[tuple[str, FindingStatus, str | None, Severity | None]]:
    return [(f.cve, f.status, f.fixed_version, f.severity) for f in findings]


@pytest.fixture(scope="module")
def edge() -> DebianTracker:
    return load_tracker(EDGE)


@pytest.fixture(scope="module")
def vunnel() -> DebianTracker:
    if not VUNNEL.is_file():
        pytest.skip(f"test data not found at {VUNNEL}")
    return load_tracker(VUNNEL)


# --- version edge cases (derived fixture) ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("installed", "status"),
    [
        ("1:9.2p1-2+deb12u2", AFF),  # one security update behind
        ("1:9.2p1-2+deb12u3", FIX),  # exactly the fix
        ("1:9.3p1-1", FIX),
        ("9.9p1-1", AFF),  # no epoch = epoch 0: older than any 1:..., whatever the digits say
        ("2:1.0-1", FIX),  # a higher epoch wins
    ],
)
def test_epochs(edge: DebianTracker, installed: str, status: FindingStatus) -> None:
    [f] = match_component(deb("openssh-server", installed, source="openssh"), edge)
    assert (f.cve, f.status) == ("CVE-2024-6387", status)
    assert f.fixed_version == "1:9.2p1-2+deb12u3"
    assert f.source == "debian-tracker"


@pytest.mark.parametrize(
    ("installed", "status"),
    [
        ("3.0.14-1~deb12u1", FIX),
        ("3.0.14-1", FIX),  # "~" sorts before the end: 3.0.14-1~deb12u1 < 3.0.14-1
        ("3.0.13-1~deb12u1", AFF),
        ("3.0.14~rc1-1", AFF),  # a pre-release with "~" is older than the release
        ("3.0.14-1~deb12u0", AFF),
    ],
)
def test_tilde(edge: DebianTracker, installed: str, status: FindingStatus) -> None:
    [f] = match_component(deb("libssl3", installed, source="openssl"), edge)
    assert (f.cve, f.status, f.fixed_version) == ("CVE-2024-5535", status, "3.0.14-1~deb12u1")


@pytest.mark.parametrize(
    ("installed", "status"),
    [
        ("2.36-9+deb12u10", FIX),  # u10 > u7 numerically (a string comparison says the opposite)
        ("2.36-9+deb12u7", FIX),
        ("2.36-9+deb12u6", AFF),
        ("2.36-9", AFF),  # the point release before any security update
    ],
)
def test_deb12u_security_updates(edge: DebianTracker, installed: str, status: FindingStatus) -> None:
    [f] = match_component(deb("libc6", installed, source="glibc"), edge)
    assert (f.status, f.severity) == (status, Severity.HIGH)


def test_fixed_version_zero_is_not_affected(edge: DebianTracker) -> None:
    [f] = match_component(deb("openssh-server", "1:8.4p1-5+deb11u3", "bullseye", "openssh"), edge)
    assert (f.status, f.fixed_version) == (NA, None)
    assert "fixed_version 0" in f.reason
    [xz] = match_component(deb("liblzma5", "5.4.1-0.2", source="xz-utils"), edge)
    assert xz.status is NA


def test_plus_really_version_in_sid(edge: DebianTracker) -> None:
    [f] = match_component(deb("liblzma5", "5.6.1+really5.4.5-1", "sid", "xz-utils"), edge)
    assert f.status is FIX
    [g] = match_component(deb("liblzma5", "5.6.1-1", "sid", "xz-utils"), edge)
    assert (g.status, g.fixed_version) == (AFF, "5.6.1+really5.4.5-1")


def test_unfixed_with_the_trackers_notes_stays_affected(edge: DebianTracker) -> None:
    fs = match_component(deb("busybox", "1:1.35.0-4"), edge)
    assert verdicts(fs) == [
        ("CVE-2022-48174", AFF, None, Severity.LOW),
        ("CVE-2023-42364", AFF, None, Severity.LOW),  # unimportant -> LOW (documented mapping)
    ]
    assert "no fixed version yet" in fs[0].reason and "no-dsa: Minor issue" in fs[0].reason
    assert "ignored: Negligible security impact" in fs[1].reason
    [post] = match_component(deb("libssl1.1", "1.1.1w-0+deb11u1", "bullseye", "openssl"), edge)
    assert post.status is AFF and "postponed: Minor issue" in post.reason
    [eol] = match_component(deb("busybox", "1:1.30.1-4", "buster"), edge)
    assert (eol.status, eol.severity) == (AFF, Severity.UNKNOWN) and "end-of-life" in eol.reason


def test_next_point_release_and_undetermined(edge: DebianTracker) -> None:
    fs = match_component(deb("curl", "7.88.1-10+deb12u5"), edge)
    assert verdicts(fs) == [("CVE-2024-2398", AFF, None, Severity.MEDIUM), ("CVE-2024-7264", UI, None, Severity.UNKNOWN)]
    assert "next bookworm point release" in fs[0].reason
    assert "undetermined" in fs[1].reason


def test_binary_maps_onto_its_source_and_the_reason_says_so(edge: DebianTracker) -> None:
    [f] = match_component(deb("libssl3", "3.0.13-1~deb12u1", source="openssl", source_version="3.0.13-1~deb12u1"), edge)
    assert "[source openssl 3.0.13-1~deb12u1]" in f.reason
    assert match_component(deb("libssl3", "3.0.13-1~deb12u1"), edge) == []  # without its source name: no such package


def test_source_version_wins_over_a_binnmu_binary_version() -> None:
    assert debian_source(deb("libfoo1", "1.2-3+b1")) == ("libfoo1", "1.2-3")
    assert debian_source(deb("libfoo1", "1:1.2-3+b2", source="foo", source_version="1:1.2-3")) == ("foo", "1:1.2-3")


def test_release_not_in_the_tracker_entry_gives_no_finding_and_unknown_codename_is_skipped(edge: DebianTracker) -> None:
    assert match_component(deb("glibc", "2.31-13", "bullseye"), edge) == []
    assert match_component(deb("glibc", "2.36-9", release=""), edge) == []
    assert [f.status for f in match_component(deb("glibc", "2.36-9", release=""), edge, release="bookworm")] == [AFF]


def test_only_debian_components_are_matched(edge: DebianTracker) -> None:
    yocto = Component(name="glibc", version="2.39", origin=ComponentOrigin.SPDX, distro="poky", distro_release="bookworm")
    by_purl = Component(name="glibc", version="2.36-9", origin=ComponentOrigin.CYCLONEDX, purl="pkg:deb/debian/glibc@2.36-9")
    assert match_debian([yocto], edge) == []
    assert [f.status for f in match_debian([by_purl], edge, release="bookworm")] == [AFF]


# --- golden: the real tracker excerpts -------------------------------------------------------------------------------


def test_golden_vunnel_excerpt(vunnel: DebianTracker) -> None:
    components = [
        deb("chromium", "90.0.4430.212-1", "bullseye"),
        deb("chromium", "98.0.4758.102-1~deb11u1", "bullseye"),
        deb("chromium", "89.0.4389.114-1~deb10u1", "buster"),
        deb("sogo", "5.8.0-1", "bookworm", "sope"),
        deb("sogo", "5.8.0-1+deb12u1", "bookworm", "sope"),
        deb("libjs-prototype", "1.7.1-3", "buster", "prototypejs"),
        deb("txt2man", "1.5.5-4", "jessie"),
        deb("backupninja", "1.1.0-2", "buster"),
    ]
    fs = match_debian(components, vunnel)
    got = [(f.component.version, *v) for f, v in zip(fs, verdicts(fs), strict=True)]
    assert got == [
        ("1.1.0-2", "CVE-2005-3111", FIX, "0.8-2", Severity.MEDIUM),
        ("1.7.1-3", "CVE-2007-2383", NA, None, Severity.LOW),
        ("1.7.1-3", "CVE-2008-7220", FIX, "1.6.0.2-1", Severity.HIGH),  # urgency "high**"
        ("1.5.5-4", "CVE-2013-1444", AFF, "1.5.5-4.1", Severity.LOW),  # "low**"
        ("89.0.4389.114-1~deb10u1", "CVE-2022-0456", AFF, None, Severity.UNKNOWN),  # open, end-of-life
        ("90.0.4430.212-1", "CVE-2022-0456", AFF, "98.0.4758.80-1~deb11u1", Severity.UNKNOWN),
        ("98.0.4758.102-1~deb11u1", "CVE-2022-0456", FIX, "98.0.4758.80-1~deb11u1", Severity.UNKNOWN),
        ("5.8.0-1", "CVE-2025-53603", AFF, "5.8.0-1+deb12u1", Severity.UNKNOWN),
        ("5.8.0-1+deb12u1", "CVE-2025-53603", FIX, "5.8.0-1+deb12u1", Severity.UNKNOWN),
    ]


def test_golden_osv_mock_excerpt() -> None:
    if not OSV_MOCK.is_file():
        pytest.skip(f"test data not found at {OSV_MOCK}")
    t = load_tracker(OSV_MOCK)
    assert verdicts(match_debian([deb("apparmor", "3.0.8-3")], t)) == [
        ("CVE-2014-1424", NA, None, Severity.LOW),
        ("CVE-2016-1585", AFF, None, Severity.LOW),
        ("CVE-2017-6507", FIX, "2.11.0-3", Severity.UNKNOWN),
    ]
    trixie = verdicts(match_debian([deb("apparmor", "3.0.11-1", "trixie")], t))
    assert trixie[1] == ("CVE-2016-1585", AFF, "3.0.12-1", Severity.LOW)


# --- the decision table directly -------------------------------------------------------------------------------------


def test_odd_tracker_values_never_pass_as_fixed() -> None:
    resolved = TrackerStatus.RESOLVED
    assert decide(ReleaseEntry(resolved, "<unfixed>"), "1.0-1", "bookworm")[0] is AFF
    assert decide(ReleaseEntry(resolved, "undetermined"), "1.0-1", "bookworm")[0] is UI
    assert decide(ReleaseEntry(resolved, None), "1.0-1", "bookworm")[0] is UI
    status, reason, _ = decide(ReleaseEntry(resolved, "1.0-2"), "not a version", "bookworm")
    assert status is UI and "cannot compare" in reason


@pytest.mark.parametrize(
    ("urgency", "severity"),
    [
        ("high", Severity.HIGH),
        ("high**", Severity.HIGH),
        ("medium", Severity.MEDIUM),
        ("low**", Severity.LOW),
        ("unimportant", Severity.LOW),
        ("not yet assigned", Severity.UNKNOWN),
        ("end-of-life", Severity.UNKNOWN),
        ("", Severity.UNKNOWN),
    ],
)
def test_urgency_mapping(urgency: str, severity: Severity) -> None:
    assert urgency_severity(urgency) is severity


@pytest.mark.parametrize(
    ("given", "codename"),
    [
        ("bookworm", "bookworm"),
        ("Bookworm", "bookworm"),
        ("12", "bookworm"),
        ("12.5", "bookworm"),
        ("13", "trixie"),
        ("unstable", "sid"),
        ("sid", "sid"),
        ("", None),
        (None, None),
    ],
)
def test_release_as_os_release_writes_it(given: str | None, codename: str | None) -> None:
    assert debian_codename(given) == codename


def test_a_version_id_release_matches_like_its_codename(edge: DebianTracker) -> None:
    [f] = match_component(deb("libc6", "2.36-9+deb12u6", release="12.5", source="glibc"), edge)
    assert (f.status, f.fixed_version) == (AFF, "2.36-9+deb12u7") and "(bookworm)" in f.reason
