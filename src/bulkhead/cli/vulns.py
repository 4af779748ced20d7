"""`bulkhead vuln` and `bulkhead vex`: vulnerability feeds, scans, the CVE list and one CVE's exposure, VEX statements."""

from __future__ import annotations

import json as jsonlib
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import typer

from . import output
from .client import LimitOpt
from .errors import CliError
from .manage import JsonOpt, client, show

vuln_app = typer.Typer(help="Vulnerability monitoring: feeds, scans, which CVE affects which device.", no_args_is_help=True)
VEX_FORMATS = ("openvex", "cyclonedx")
vex_app = typer.Typer(help="VEX statements: triage decisions per product (compatible) and CVE.", no_args_is_help=True)

_SEVERITIES = ("low", "medium", "high", "critical")


@vuln_app.command("feeds")
def feeds(ctx: typer.Context, json: bool = JsonOpt) -> None:
    """The feeds the server keeps: freshness, record count, the last error (a failing feed keeps its last good data)."""
    rows = client(ctx).request("GET", "/api/v1/vulnerability-feeds")
    show(rows, json, ["name", "has_data", "ok", "stale", "records", "origin", "last_success", "last_error"])


@vuln_app.command("sync")
def sync(ctx: typer.Context, json: bool = JsonOpt) -> None:
    """Fetch every fetchable feed now (conditional and resumable; the server needs Internet access)."""
    rows = client(ctx).request("POST", "/api/v1/vulnerability-feeds/sync")
    show(rows, json, ["name", "has_data", "ok", "records", "last_success", "last_error"])


@vuln_app.command("import")
def import_feed(
    ctx: typer.Context,
    file: Path = typer.Argument(
        ...,
        exists=True,
        dir_okay=False,
        help="The feed file (plain or gzip; cvelist: a cvelistV5 bulk or delta zip; osv: one ecosystem's all.zip)",
    ),
    feed: str = typer.Option(..., "--feed", help="cve-records, cvelist, debian-tracker, cisa-kev, first-epss or osv"),
    json: bool = JsonOpt,
) -> None:
    """Import a feed file brought in by hand (air-gapped sites); a file that is not that feed is refused."""
    data = client(ctx).upload(file, show_progress=not json, url=f"/api/v1/vulnerability-feeds/{quote(feed, safe='')}/import")
    show(data, json, title=f"feed {feed}")


@vuln_app.command("scan")
def scan(
    ctx: typer.Context,
    devices_only: bool = typer.Option(False, "--devices-only", help="Only devices whose inventory no scan has seen yet"),
    incremental: bool = typer.Option(
        False, "--incremental", help="Only what changed since the last run: changed CVEs, new releases and inventories"
    ),
    wait: bool = typer.Option(True, "--wait/--no-wait", help="Wait for the scan job to finish (default), or return at once"),
    timeout: float = typer.Option(600.0, "--timeout", help="With --wait: give up waiting after this many seconds"),
    json: bool = JsonOpt,
) -> None:
    """Match the tenant's releases, device inventories and apps against the held feeds; the run is kept. The scan runs
    as a job on the server: this waits for it unless --no-wait (then follow it with `bulkhead vuln scans`)."""
    api = client(ctx)
    kind = "devices" if devices_only else "incremental" if incremental else "full"
    run = api.request("POST", "/api/v1/vulnerabilities/scan", json={"kind": kind})
    deadline = time.monotonic() + timeout
    delay = 0.2
    while wait and run.get("status") in ("queued", "running"):
        if time.monotonic() > deadline:
            raise CliError(f"scan run {run['id']} is still {run['status']} after {timeout:g} s; see 'bulkhead vuln scans'")
        time.sleep(delay)
        delay = min(delay * 1.5, 2.0)
        run = api.request("GET", f"/api/v1/vulnerabilities/scans/{run['id']}")
    if run.get("status") == "failed":
        raise CliError(f"scan run {run['id']} failed: {run.get('error')}; the server log has the details")
    show(run if json else {k: run.get(k) for k in ("id", "kind", "status", "started_at", "finished_at", "counts")}, json,
         title="scan")  # fmt: skip


@vuln_app.command("scans")
def scans(ctx: typer.Context, limit: int | None = LimitOpt, json: bool = JsonOpt) -> None:
    """The tenant's scan runs, newest first: when, which feed versions, what was found."""
    rows = client(ctx).pages("/api/v1/vulnerabilities/scans", limit=limit)
    show(rows, json, ["id", "kind", "status", "actor", "started_at", "counts", "error"])


@vuln_app.command("exposure")
def exposure(
    ctx: typer.Context,
    days: int = typer.Option(90, min=1, max=3650, help="The window: the last N days"),
    json: bool = JsonOpt,
) -> None:
    """The fleet's exposure now and after each scan, KEV update and VEX or overlay change of the window."""
    data = client(ctx).request("GET", "/api/v1/vulnerability-exposure", params={"days": days})
    if json:
        show(data, True)
        return
    rows = [*([data["before"]] if data["before"] else []), *data["samples"], {**data["now"], "cause": "now"}]
    show(rows, False, ["at", "cause", "devices", "cves", "kev", "by_severity"])


@vuln_app.command("list")
def list_vulns(
    ctx: typer.Context,
    release: int | None = typer.Option(None, "--release", help="Only this release's findings (release id)"),
    device: str | None = typer.Option(None, "--device", help="Only this device's findings"),
    group: str | None = typer.Option(None, "--group", help="Only the findings of this group's devices"),
    kev: bool = typer.Option(False, "--kev", help="Only known exploited vulnerabilities (CISA KEV)"),
    min_severity: str | None = typer.Option(None, "--min-severity", help="low, medium, high or critical"),
    status: str | None = typer.Option(None, "--status", help="affected, fixed, not_affected or under_investigation"),
    limit: int | None = LimitOpt,
    json: bool = JsonOpt,
) -> None:
    """One row per CVE: its worst status, severity, KEV and EPSS, the components it concerns, affected devices."""
    if sum(x is not None for x in (release, device, group)) > 1:
        raise CliError("give at most one of --release, --device and --group")
    if min_severity is not None and min_severity not in _SEVERITIES:
        raise CliError(f"--min-severity must be one of {', '.join(_SEVERITIES)}, not {min_severity!r}")
    params: dict[str, Any] = {"release": release, "device": device, "group": group, "min_severity": min_severity}
    params = {k: v for k, v in params.items() if v is not None}
    if kev:
        params["kev"] = "true"
    if status:
        params["status"] = status
    rows = client(ctx).pages("/api/v1/vulnerabilities", params, limit)
    show(rows, json, ["cve", "status", "severity", "cvss", "epss", "kev", "devices", "components", "fixed_versions"])


@vuln_app.command("show")
def show_vuln(ctx: typer.Context, cve: str, json: bool = JsonOpt) -> None:
    """One CVE: findings per release, fleet exposure (devices, groups, versions), the fix, VEX statements."""
    data = client(ctx).request("GET", f"/api/v1/vulnerabilities/{quote(cve, safe='')}")
    if json:
        output.emit_json(data)
        return
    summary = {k: data.get(k) for k in ("cve", "severity", "cvss", "epss", "kev", "kev_date", "published")}
    summary["description"] = (data.get("description") or "")[:400]
    summary["devices affected"] = data["exposure"]["devices"]
    summary["groups"] = data["exposure"]["groups"]
    summary["versions"] = data["exposure"]["versions"]
    summary["member states"] = data["exposure"].get("countries", {})
    summary["fixed in (package)"] = data["fix"]["versions"]
    summary["fixed in (release)"] = [f"{r['compatible']} {r['version'] or '(none yet)'}" for r in data["fix"]["releases"]]
    output.record(summary, title=data["cve"])
    cols = ["release", "component", "component_version", "status", "matcher_status", "fixed_version", "source", "reason"]
    output.table(data["findings"], cols, "releases")
    for f in data["findings"]:
        if f.get("vex_note"):
            output.line(f"note (release {f['release']}, {f['component']}): {f['vex_note']}")
    if data["device_findings"]:
        output.table(data["device_findings"], ["compatible", "component", "component_version", "status", "devices"], "devices")
    if data["vex"]:
        cols = ["id", "compatible", "component", "component_version", "status", "justification", "origin", "actor", "at"]
        output.table(data["vex"], cols, "VEX")


@vuln_app.command("devices")
def devices(ctx: typer.Context, cve: str, limit: int | None = LimitOpt, json: bool = JsonOpt) -> None:
    """The devices a CVE affects, by name."""
    rows = client(ctx).pages(f"/api/v1/vulnerabilities/{quote(cve, safe='')}/devices", limit=limit)
    show(rows, json, ["name", "compatible", "os_version", "groups"])


@vex_app.command("set")
def vex_set(
    ctx: typer.Context,
    compatible: str = typer.Option(..., "--compatible", help="The product: the compatible of its releases"),
    cve: str = typer.Option(..., "--cve"),
    status: str = typer.Option(..., "--status", help="not_affected, affected, fixed or under_investigation"),
    component: str | None = typer.Option(None, "--component", help="Only this component (default: the whole product)"),
    component_version: str | None = typer.Option(
        None, "--component-version", help="The version triaged (default: the newest scanned release's; * for every version)"
    ),
    purl: str | None = typer.Option(None, "--purl", help="The component as a package URL (gives name and version)"),
    justification: str | None = typer.Option(
        None, "--justification", help="With not_affected: a CycloneDX or OpenVEX justification, e.g. code_not_reachable"
    ),
    impact: str | None = typer.Option(None, "--impact", help="Impact statement: why it is not affected"),
    action: str | None = typer.Option(None, "--action", help="Action statement: what users should do"),
    json: bool = JsonOpt,
) -> None:
    """Set the triage decision for a product and CVE; it applies at once to all its releases and devices (audited). A
    component's statement applies while the component keeps the version it was triaged against."""
    body = {
        "compatible": compatible,
        "cve": cve,
        "status": status,
        "component": component,
        "component_version": component_version,
        "purl": purl,
        "justification": justification,
        "impact_statement": impact,
        "action_statement": action,
    }
    show(client(ctx).request("PUT", "/api/v1/vex", json=body), json, title="VEX statement")


@vex_app.command("list")
def vex_list(
    ctx: typer.Context,
    compatible: str | None = typer.Option(None, "--compatible"),
    cve: str | None = typer.Option(None, "--cve"),
    limit: int | None = LimitOpt,
    json: bool = JsonOpt,
) -> None:
    """The tenant's VEX statements."""
    params = {k: v for k, v in {"compatible": compatible, "cve": cve}.items() if v}
    rows = client(ctx).pages("/api/v1/vex", params, limit)
    show(rows, json, ["id", "compatible", "cve", "component", "component_version", "status", "justification", "origin", "at"])


@vex_app.command("delete")
def vex_delete(ctx: typer.Context, vex_id: int, json: bool = JsonOpt) -> None:
    """Withdraw a statement: its findings show what the matcher said again (audited)."""
    client(ctx).request("DELETE", f"/api/v1/vex/{vex_id}")
    if json:
        output.emit_json({"deleted": vex_id})
    else:
        output.line(f"VEX statement {vex_id} deleted")


@vex_app.command("import")
def vex_import(
    ctx: typer.Context,
    file: Path = typer.Argument(..., exists=True, dir_okay=False, help="An OpenVEX or CycloneDX VEX JSON document"),
    compatible: str | None = typer.Option(
        None, "--compatible", help="The product every statement is for (default: as the document names it)"
    ),
    fmt: str | None = typer.Option(None, "--format", help="openvex or cyclonedx (default: detected)"),
    json: bool = JsonOpt,
) -> None:
    """Import an OpenVEX or CycloneDX VEX document's statements (all or none; audited)."""
    if fmt is not None and fmt not in VEX_FORMATS:
        raise CliError(f"--format must be one of {', '.join(VEX_FORMATS)}, not {fmt!r}")
    try:
        doc = jsonlib.loads(file.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise CliError(f"{file} is not JSON ({e}); give an OpenVEX or CycloneDX VEX document") from None
    if not isinstance(doc, dict):
        raise CliError(f"{file} is not a VEX document: expected a JSON object (OpenVEX or CycloneDX)")
    params = {k: v for k, v in {"compatible": compatible, "format": fmt}.items() if v}
    rows = client(ctx).request("POST", "/api/v1/vex/import", json=doc, params=params or None)
    show(rows, json, ["id", "compatible", "cve", "component", "component_version", "status", "justification"])


@vex_app.command("export")
def vex_export(
    ctx: typer.Context,
    compatible: str | None = typer.Option(None, "--compatible", help="Only this product's statements"),
    out: Path | None = typer.Option(None, "--out", help="Write the document here instead of standard output"),
    fmt: str = typer.Option("openvex", "--format", help="openvex (OpenVEX 0.2.0) or cyclonedx (CycloneDX 1.6 VEX)"),
    json: bool = typer.Option(True, "--json", help="The document is JSON in any case"),
) -> None:
    """Export the statements as an OpenVEX 0.2.0 or CycloneDX 1.6 VEX JSON document."""
    if fmt not in VEX_FORMATS:
        raise CliError(f"--format must be one of {', '.join(VEX_FORMATS)}, not {fmt!r}")
    params = {"format": fmt} | ({"compatible": compatible} if compatible else {})
    doc = client(ctx).request("GET", "/api/v1/vex/export", params=params)
    text = jsonlib.dumps(doc, indent=2) + "\n"
    if out is not None:
        out.write_text(text)
        n = len(doc["statements"] if fmt == "openvex" else doc.get("vulnerabilities", []))
        output.line(f"{n} statements written to {out}")
    else:
        output.console.print(text, markup=False, highlight=False, soft_wrap=True, end="")
