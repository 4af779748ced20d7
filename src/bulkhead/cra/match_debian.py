"""Match Debian packages against the Debian Security Tracker (a pure function; golden-tested).

A binary package maps onto its source package (``Component.source_name``/``source_version``, as dpkg's
``Source:`` field gives them; without them the binary's own name and version, less a binNMU suffix ``+bN``).
The tracker entry of that source package for the release's codename decides, with dpkg's version order
(python-debian, which uses python3-apt's implementation when installed):

- ``resolved`` with ``fixed_version`` ``"0"``: not affected (that release never had the vulnerable code);
- ``resolved`` with a fixed version ≤ installed: fixed; > installed: affected, and ``fixed_version`` says which
  version fixes it;
- ``open`` (the tracker's ``<unfixed>``): affected, no fix yet; a no-DSA note ("Minor issue"), ``ignored`` or
  ``postponed`` keeps it affected and goes into the reason, so does an end-of-life urgency;
- ``undetermined``: under investigation.

The release is a codename ("bookworm"); a version number as os-release's VERSION_ID writes it ("12", "12.5") and
"unstable" are read as their codename. An issue the tracker does not list for the release gives no finding; a
component whose release is unknown (neither on the component nor passed in) is skipped: pass ``release``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from debian.debian_support import Version

from .debian_tracker import DebianTracker, ReleaseEntry, TrackerStatus
from .debian_urgency import urgency_severity
from .model import Component, Finding, FindingStatus

__all__ = ["SOURCE", "debian_codename", "debian_source", "decide", "is_debian", "match_component", "match_debian"]

SOURCE = "debian-tracker"
_BINNMU = re.compile(r"\+b\d+$")


# os-release VERSION_ID (and SBOMs that copy it) -> the codename the tracker uses
_CODENAMES = {"9": "stretch", "10": "buster", "11": "bullseye", "12": "bookworm", "13": "trixie", "14": "forky"}


def debian_codename(release: str | None) -> str | None:
    """The tracker's codename for a release as SBOMs and os-release write it: "bookworm", "12", "12.5", "unstable"."""
    if not release:
        return None
    value = release.strip().lower()
    if value == "unstable":
        return "sid"
    return _CODENAMES.get(value.split(".", 1)[0], value)


def is_debian(component: Component) -> bool:
    """Whether a component is a Debian package (by its distro or its purl)."""
    if component.distro is not None:
        return component.distro.lower() == "debian"
    return bool(component.purl and component.purl.startswith("pkg:deb/debian/"))


def debian_source(component: Component) -> tuple[str, str]:
    """The source package name and version a binary package was built from."""
    name = component.source_name or component.name
    version = component.source_version or _BINNMU.sub("", component.version)
    return name, version


def _notes(entry: ReleaseEntry, release: str) -> str:
    notes = []
    if entry.nodsa is not None or entry.nodsa_reason:
        note = entry.nodsa or ""
        if entry.nodsa_reason == "ignored":
            notes.append(f"the security team will not fix it in {release} (ignored{': ' + note if note else ''})")
        elif entry.nodsa_reason == "postponed":
            notes.append(f"the fix is postponed to a later update (postponed{': ' + note if note else ''})")
        else:
            notes.append(f"no security advisory planned (no-dsa{': ' + note if note else ''})")
    if entry.next_point_update:
        notes.append(f"a fix is scheduled for the next {release} point release")
    if entry.urgency.rstrip("*") == "end-of-life":
        notes.append(f"security support for this package in {release} has ended (end-of-life)")
    return "".join(f"; {n}" for n in notes)


def decide(entry: ReleaseEntry, installed: str, release: str) -> tuple[FindingStatus, str, str | None]:
    """The status, reason and fixing version of one tracker entry for an installed source version."""
    fixed = entry.fixed_version
    if entry.status is TrackerStatus.UNDETERMINED or fixed == "undetermined":
        return FindingStatus.UNDER_INVESTIGATION, f"Debian tracker: undetermined in {release}{_notes(entry, release)}", None
    if entry.status is TrackerStatus.OPEN or fixed is None or fixed == "<unfixed>":
        if entry.status is TrackerStatus.RESOLVED and fixed is None:
            return (
                FindingStatus.UNDER_INVESTIGATION,
                f"Debian tracker: resolved in {release} without a fixed version; compare {installed} by hand",
                None,
            )
        return FindingStatus.AFFECTED, f"Debian tracker: open in {release}, no fixed version yet{_notes(entry, release)}", None
    if fixed == "0":
        return FindingStatus.NOT_AFFECTED, f"Debian tracker: {release} never had the vulnerable code (fixed_version 0)", None
    try:
        have, need = Version(installed), Version(fixed)
    except ValueError as e:
        return FindingStatus.UNDER_INVESTIGATION, f"cannot compare {installed!r} with Debian fixed_version {fixed!r}: {e}", fixed
    if have >= need:
        return FindingStatus.FIXED, f"Debian fixed_version {fixed} <= installed {installed} ({release})", fixed
    reason = f"installed {installed} < Debian fixed_version {fixed} ({release}){_notes(entry, release)}"
    return FindingStatus.AFFECTED, reason, fixed


def match_component(component: Component, tracker: DebianTracker, release: str | None = None) -> list[Finding]:
    """The findings of the tracker for one Debian component (``release`` overrides the component's codename)."""
    codename = debian_codename(release or component.distro_release)
    if not codename:
        return []
    source, installed = debian_source(component)
    via = "" if source == component.name and installed == component.version else f" [source {source} {installed}]"
    findings = []
    for name, issue in tracker.issues(source).items():
        entry = issue.releases.get(codename)
        if entry is None:
            continue
        status, reason, fixed = decide(entry, installed, codename)
        findings.append(
            Finding(
                cve=name,
                component=component,
                status=status,
                reason=reason + via,
                fixed_version=fixed,
                source=SOURCE,
                severity=urgency_severity(entry.urgency),
            )
        )
    return findings


def match_debian(components: Iterable[Component], tracker: DebianTracker, release: str | None = None) -> list[Finding]:
    """The findings for every Debian component (others are left to the other matchers), ordered by CVE then name."""
    out = [f for c in components if is_debian(c) for f in match_component(c, tracker, release)]
    out.sort(key=lambda f: (f.cve, f.component.name, f.component.version))
    return out
