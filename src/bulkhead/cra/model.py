"""The vocabulary of vulnerability monitoring, shared by SBOM readers, feed parsers and matchers (pure data).

A *component* is what an SBOM or a device's inventory says is installed; a *finding* is what a matcher says a
known vulnerability means for one component. Statuses use the VEX vocabulary (CycloneDX analysis / OpenVEX).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

__all__ = ["Component", "ComponentOrigin", "Finding", "FindingStatus", "SbomVulnStatement", "Severity"]


class ComponentOrigin(StrEnum):
    """Where a component record came from."""

    SPDX = "spdx"
    CYCLONEDX = "cyclonedx"
    INVENTORY = "inventory"  # a device's reported package list (dpkg/opkg/rpm)


class FindingStatus(StrEnum):
    """What a vulnerability means for a component (OpenVEX / CycloneDX VEX vocabulary)."""

    AFFECTED = "affected"
    FIXED = "fixed"
    NOT_AFFECTED = "not_affected"
    UNDER_INVESTIGATION = "under_investigation"


class Severity(StrEnum):
    """A qualitative severity (CVSS v3.1/v4.0 rating scale; Debian urgencies map onto it)."""

    NONE = "none"
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class SbomVulnStatement:
    """What the SBOM itself says about one CVE for a component (Yocto CVE_STATUS/patched/ignored, SPDX 3 VEX)."""

    cve: str
    status: FindingStatus
    justification: str | None = None  # e.g. "fixed-version", "cpe-incorrect", "backported-patch", a VEX justification
    detail: str | None = None


@dataclass(frozen=True)
class Component:
    """One installed piece of software, as precise as its source allows."""

    name: str
    version: str
    origin: ComponentOrigin
    purl: str | None = None
    cpes: tuple[str, ...] = ()
    source_name: str | None = None  # Debian source package (binary packages map onto it), Yocto recipe name
    source_version: str | None = None
    distro: str | None = None  # e.g. "debian", "poky"
    distro_release: str | None = None  # Debian codename ("bookworm"), Yocto release ("scarthgap")
    is_kernel: bool = False
    statements: tuple[SbomVulnStatement, ...] = field(default=())
    supplier: str | None = None  # who supplies it, as the SBOM names them (an organisation, a maintainer)
    hashes: tuple[tuple[str, str], ...] = ()  # (algorithm, hex digest), algorithms as `hash_algorithm` names them
    # The source files compiled into it, when the SBOM lists them (Yocto's SPDX_INCLUDE_COMPILED_SOURCES): a kernel
    # CVE whose record names only files outside this set does not concern this build. None: the SBOM does not say.
    compiled_sources: frozenset[str] | None = None


@dataclass(frozen=True)
class Finding:
    """The verdict of a matcher for one (component, vulnerability) pair."""

    cve: str
    component: Component
    status: FindingStatus
    reason: str  # why: "version 1.2 in [1.0, 1.3)", "Debian fixed_version 2.36-9+deb12u4 <= installed", ...
    fixed_version: str | None = None  # the version that fixes it, when a source says
    source: str = ""  # which feed decided: "debian-tracker", "cve5", "nvd", "osv", "sbom"
    kernel: bool = False  # a Linux kernel CVE (the component is the kernel): triaged by kernel config, not by package
    severity: Severity | None = None  # the deciding source's own rating when it gives one (Debian urgency)
    cvss: float | None = None  # the deciding source's own CVSS base score (an OSV record's vector, scored)
