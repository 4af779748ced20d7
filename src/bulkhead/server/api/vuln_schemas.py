"""Wire models of vulnerability monitoring: feeds, scan runs, the CVE list, one CVE's exposure, VEX statements."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, StringConstraints

from .fields import Compatible, Text
from .wire import Out, Time, absent

__all__ = [
    "CveDetail",
    "CveRow",
    "CycloneDxVexOut",
    "ExposedDevice",
    "FeedOut",
    "OpenVexOut",
    "ScanIn",
    "ScanRunOut",
    "VexDocumentOut",
    "VexFormat",
    "VexIn",
    "VexOut",
]

Status = Literal["affected", "fixed", "not_affected", "under_investigation"]
Severity = Literal["unknown", "none", "low", "medium", "high", "critical"]
VexFormat = Literal["openvex", "cyclonedx"]
CveId = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]


class FeedOut(Out):
    """One vulnerability feed: freshness, size, the last error, and its source's notice."""

    name: str
    url: str = Field(description="where it is fetched from (empty: import only)")
    import_only: bool
    has_data: bool
    ok: bool = Field(description="has data and the last attempt succeeded")
    stale: bool = Field(description="no data, or not confirmed current for two intervals")
    age_seconds: int | None
    records: int | None
    origin: str | None = Field(description="http, or 'import FILE'")
    last_attempt: Time | None
    last_success: Time | None
    last_changed: Time | None
    last_error: str | None = Field(description="why the last attempt failed; the last good copy is kept")
    attribution: str
    interval_seconds: int
    detail: dict[str, Any] = Field(
        default_factory=dict,
        description="what a feed kept from several files holds: the CVE list's `as_of`, bulk `base` and applied "
        "`deltas` (and records its parser `skipped`); OSV's `ecosystems` (records, last success, error of each)",
    )


class ScanIn(BaseModel):
    """What to scan: `full` (every release and device profile), `incremental` (only what changed since the last full
    or incremental run: changed vulnerabilities, new releases and inventories) or `devices` (only inventories no scan
    has seen)."""

    kind: Literal["full", "incremental", "devices"] = "full"


class ScanRunOut(Out):
    """One scan run, kept for good: when, the feed versions it read, and what it found."""

    id: int
    kind: str = Field(description="full, incremental, devices or kev")
    actor: str
    started_at: Time
    finished_at: Time | None
    feeds: dict[str, Any] = Field(description="feed -> {sha256, records, origin, last_changed, last_success}")
    counts: dict[str, Any]
    status: str = Field(description="queued, running, done or failed")
    error: str | None = Field(None, description="why a failed run failed")


class ScanQueued(ScanRunOut):
    """A scan put on the job queue: follow `status_url` until its status is done or failed."""

    status_url: str = Field(description="GET this for the run's state")


class CveRow(Out):
    """One CVE in the scope asked for: its worst status there, severity, exploitation data, and exposure."""

    cve: str
    status: Status | None = Field(description="the worst effective status among its findings (affected first)")
    statuses: dict[str, int] = Field(description="how many distinct component findings have each status")
    severity: Severity
    cvss: float | None
    epss: float | None
    kev: bool = Field(description="listed in CISA's Known Exploited Vulnerabilities catalogue")
    kev_date: str | None = Field(description="when CISA added it")
    components: list[str] = Field(description="'name version' of the components it concerns")
    fixed_versions: list[str] = Field(description="package versions that fix it (of affected findings)")
    devices: int = Field(description="devices it affects in the scope (0 for a release scope)")


class FindingOut(Out):
    """What the CVE means for one component of one release."""

    release_id: int | None
    release: str | None
    compatible: str
    component: str
    component_version: str
    purl: str | None
    status: Status = Field(description="effective: the matcher's, or the VEX statement's")
    matcher_status: Status
    severity: Severity
    cvss: float | None
    epss: float | None
    kev: bool
    kev_date: str | None
    fixed_version: str | None
    source: str = Field(description="what decided: cve5, nvd, debian-tracker, sbom, osv (app SBOMs)")
    reason: str
    kernel: bool
    vex_id: int | None
    vex_note: str | None = Field(
        description="a statement exists for another version of the component, not for this one: triage it again"
    )
    run_id: int


class DeviceFindingOut(Out):
    """Devices that run one component version, and what the CVE means for it there."""

    compatible: str
    component: str
    component_version: str
    status: Status
    fixed_version: str | None
    app: str | None = Field(None, description="the app whose SBOM lists the component (None: the OS)")
    app_version: str | None = None
    devices: int


class ExposureOut(Out):
    devices: int = Field(description="devices the CVE affects")
    groups: dict[str, int] = Field(description="group -> affected devices in it")
    versions: dict[str, int] = Field(description="reported OS version -> affected devices")
    countries: dict[str, int] = Field(
        description="member state (device attribute `country`, ISO 3166-1 alpha-2) -> affected devices; "
        '"unknown": devices without one'
    )


class ExposureSummary(Out):
    """The fleet's exposure at one moment."""

    at: Time
    cves: int = Field(description="CVEs affecting at least one device")
    kev: int = Field(description="of those, in CISA's Known Exploited Vulnerabilities catalogue")
    devices: int = Field(description="devices at least one CVE affects")
    by_severity: dict[str, int] = Field(description="CVEs by their worst severity: critical, high, medium, low, unknown")


class ExposureSample(ExposureSummary):
    cause: str = Field(description="what moved it: 'scan N (kind)', 'kev N', 'vex', 'vex import', 'vex withdrawn'")


class ExposureHistoryOut(Out):
    """The exposure now and after each change in the window (at most 200 samples: the last of each step)."""

    since: Time
    now: ExposureSummary
    before: ExposureSample | None = Field(description="the sample in force at `since` (null: none earlier)")
    samples: list[ExposureSample]


class FixingRelease(Out):
    compatible: str
    release_id: int | None = Field(description="the first later release the CVE does not affect (null: none yet)")
    version: str | None


class FixOut(Out):
    versions: list[str] = Field(description="package versions that fix it")
    releases: list[FixingRelease]


class VexOut(Out):
    """A VEX statement: the triage decision for a product (compatible) and CVE, optionally one component."""

    id: int
    compatible: str
    cve: str
    component: str | None
    component_version: str | None = Field(
        description="the component version it was triaged against: it applies while the component has it (null: any)"
    )
    purl: str | None
    origin: Literal["user", "sbom", "overlay"] = Field(
        description="sbom: what a release's SBOM says (Yocto CVE_STATUS); overlay: a package of the tenant's overlay "
        "whose changelog names the CVE as fixed (withdrawn when the package is removed)"
    )
    status: Status
    justification: str | None
    impact_statement: str | None
    action_statement: str | None
    actor: str
    at: Time


class CveDetail(Out):
    """One CVE across the tenant: per-release findings, device findings, fleet exposure, the fix, VEX."""

    cve: str
    description: str | None
    published: str | None
    severity: Severity
    cvss: float | None
    epss: float | None
    kev: bool
    kev_date: str | None
    findings: list[FindingOut]
    device_findings: list[DeviceFindingOut]
    exposure: ExposureOut
    fix: FixOut
    vex: list[VexOut]


class ExposedDevice(Out):
    """A device the CVE affects."""

    name: str
    compatible: str
    os_version: str | None
    groups: list[str]


class VexIn(BaseModel):
    """A triage decision. not_affected needs a justification or an impact statement; a justification goes only with
    not_affected (CycloneDX: code_not_present, code_not_reachable, requires_configuration, requires_dependency,
    requires_environment, protected_by_compiler, protected_at_runtime, protected_at_perimeter,
    protected_by_mitigating_control; OpenVEX: component_not_present, vulnerable_code_not_present,
    vulnerable_code_not_in_execute_path, vulnerable_code_cannot_be_controlled_by_adversary,
    inline_mitigations_already_exist)."""

    compatible: Compatible = Field(description="the product: the RAUC compatible of its releases")
    cve: CveId
    component: Annotated[str, StringConstraints(min_length=1, max_length=256)] | None = Field(
        None, description="one component (by name); absent: every component of the product"
    )
    component_version: Annotated[str, StringConstraints(min_length=1, max_length=256)] | None = Field(
        None,
        description="the component version triaged (default: the version the product's newest scanned release has; "
        '"*": every version); the statement applies while the component has this version',
    )
    purl: Annotated[str, StringConstraints(min_length=5, max_length=1024)] | None = Field(
        None, description="the component as a package URL (gives component and component_version)"
    )
    status: Status
    justification: Annotated[str, StringConstraints(max_length=64)] | None = None
    impact_statement: Text | None = None
    action_statement: Text | None = None


class OpenVexStatement(Out):
    """One OpenVEX statement: a vulnerability, the products (compatible, optional subcomponent), the status."""

    vulnerability: dict[str, str]
    products: list[dict[str, Any]]
    status: Status
    timestamp: Time
    justification: str = absent("OpenVEX justification (with not_affected)")
    impact_statement: str = absent("why it is not affected")
    action_statement: str = absent("what to do (with affected)")


class CycloneDxVexOut(Out):
    """The tenant's VEX statements as one CycloneDX 1.6 JSON document (components and vulnerabilities[].analysis)."""

    bomFormat: Literal["CycloneDX"]
    specVersion: str
    serialNumber: str
    version: int
    metadata: dict[str, Any]
    components: list[dict[str, Any]] = absent("the products, their components nested")
    vulnerabilities: list[dict[str, Any]] = absent("one per statement: id, analysis, affects")


class OpenVexOut(Out):
    """The tenant's VEX statements as one OpenVEX 0.2.0 document."""

    context: str = Field(alias="@context")
    id: str = Field(alias="@id")
    author: str
    timestamp: Time
    version: int
    tooling: str
    statements: list[OpenVexStatement]


VexDocumentOut = Annotated[
    OpenVexOut | CycloneDxVexOut,
    Field(description="A VEX document: OpenVEX 0.2.0 (format=openvex) or CycloneDX 1.6 (format=cyclonedx)"),
]
