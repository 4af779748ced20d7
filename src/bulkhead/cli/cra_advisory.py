"""`bulkhead cra advisory` and `bulkhead cra provider`: CSAF advisories and the tenant's public CSAF provider."""

from __future__ import annotations

import json as jsonlib
from pathlib import Path
from typing import Any

import typer

from . import output
from .errors import CliError
from .manage import JsonOpt, client, show

advisory_app = typer.Typer(help="CSAF 2.0 security advisories: create, revise, publish, export.", no_args_is_help=True)
provider_app = typer.Typer(help="The tenant's public CSAF provider: publisher, contact, policy, key.", no_args_is_help=True)

_COLUMNS = ["id", "tracking_id", "state", "version", "compatible", "cves", "title", "current_release_date"]
_BASE = "/api/v1/cra/advisories"


def _vectors(cvss: list[str]) -> dict[str, str] | None:
    out = {}
    for item in cvss:
        cve, sep, vector = item.partition("=")
        if not sep or not cve or not vector:
            raise CliError(f"--cvss takes CVE=VECTOR, e.g. CVE-2024-3094=CVSS:3.1/AV:N/AC:L/…, not {item!r}")
        out[cve.strip()] = vector.strip()
    return out or None


def _summary(data: dict[str, Any]) -> dict[str, Any]:
    keys = ("tracking_id", "state", "version", "compatible", "cves", "title", "initial_release_date", "current_release_date")
    out = {k: data.get(k) for k in keys}
    if data.get("pending_change"):
        out["pending change"] = data["pending_change"]
    if data.get("signed_by"):
        out["signed by"] = data["signed_by"]
    if data.get("url"):
        out["url"] = data["url"]
    return out


def _status_lines(doc: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for v in doc.get("vulnerabilities", []):
        name = v.get("cve") or ", ".join(i["text"] for i in v.get("ids", []))
        for status, ids in v.get("product_status", {}).items():
            rows.append({"vulnerability": name, "status": status, "products": ", ".join(ids)})
        for r in v.get("remediations", []):
            rows.append({"vulnerability": name, "status": r["category"], "products": r["details"]})
    return rows


def _show_advisory(data: dict[str, Any], json: bool, title: str) -> None:
    if json:
        output.emit_json(data)
        return
    output.record(_summary(data), title=f"{title} {data['id']}")
    if data.get("document"):
        output.table(_status_lines(data["document"]), ["vulnerability", "status", "products"], "draft document")


@advisory_app.command("create")
def advisory_create(
    ctx: typer.Context,
    compatible: str = typer.Argument(..., help="The product (its compatible)"),
    cve: list[str] = typer.Option(..., "--cve", help="A CVE the advisory is about (repeat for several)"),
    title: str | None = typer.Option(None, "--title", help="Default: the CVEs and the product's name"),
    summary: str | None = typer.Option(None, "--summary", help="The summary note (default: made from the data)"),
    cvss: list[str] = typer.Option([], "--cvss", help="CVE=VECTOR: a CVSS 3.x vector scored into the advisory"),
    preview: bool = typer.Option(False, "--preview", help="Print the CSAF document it would have; store nothing"),
    json: bool = JsonOpt,
) -> None:
    """A draft advisory made from the product's findings, VEX and fixing releases (audited); publish it after."""
    body = {"compatible": compatible, "cves": cve, "title": title, "summary": summary, "cvss": _vectors(cvss)}
    c = client(ctx)
    if preview:
        output.emit_json(c.request("POST", f"{_BASE}/preview", json=body))
        return
    _show_advisory(c.request("POST", _BASE, json=body), json, "advisory")


@advisory_app.command("list")
def advisory_list(
    ctx: typer.Context,
    state: str | None = typer.Option(None, "--state", help="draft, final or revised"),
    json: bool = JsonOpt,
) -> None:
    """The advisories, newest first."""
    rows = client(ctx).request("GET", _BASE, params={"state": state} if state else None)
    show(rows, json, _COLUMNS)


@advisory_app.command("show")
def advisory_show(ctx: typer.Context, advisory_id: int, json: bool = JsonOpt) -> None:
    """One advisory and, unless it is published and unchanged, the statuses and remediations of its draft."""
    _show_advisory(client(ctx).request("GET", f"{_BASE}/{advisory_id}"), json, "advisory")


@advisory_app.command("revise")
def advisory_revise(
    ctx: typer.Context,
    advisory_id: int,
    change: str | None = typer.Option(None, "--change", help="What this revision changes (needed once published)"),
    title: str | None = typer.Option(None, "--title"),
    summary: str | None = typer.Option(None, "--summary"),
    cve: list[str] = typer.Option([], "--cve", help="Replace the CVEs (repeat for several)"),
    cvss: list[str] = typer.Option([], "--cvss", help="CVE=VECTOR (replaces the vectors)"),
    json: bool = JsonOpt,
) -> None:
    """Make the advisory again from the current data (a fix released since shows), optionally changing it (audited)."""
    body: dict[str, Any] = {"change": change}
    if title is not None:
        body["title"] = title
    if summary is not None:
        body["summary"] = summary
    if cve:
        body["cves"] = cve
    if cvss:
        body["cvss"] = _vectors(cvss)
    _show_advisory(client(ctx).request("PATCH", f"{_BASE}/{advisory_id}", json=body), json, "advisory")


@advisory_app.command("publish")
def advisory_publish(ctx: typer.Context, advisory_id: int, json: bool = JsonOpt) -> None:
    """Publish the next version (status final), hashed and signed, on the tenant's CSAF provider (audited)."""
    _show_advisory(client(ctx).request("POST", f"{_BASE}/{advisory_id}/publish"), json, "published advisory")


@advisory_app.command("export")
def advisory_export(
    ctx: typer.Context,
    advisory_id: int,
    draft: bool = typer.Option(False, "--draft", help="The working draft instead of the published version"),
    html: bool = typer.Option(False, "--html", help="An HTML page instead of the CSAF JSON"),
    out: Path | None = typer.Option(None, "-o", "--out", help="Write it here instead of standard output"),
    json: bool = typer.Option(True, "--json", help="The document is JSON unless --html is given"),
) -> None:
    """The CSAF document (the published bytes as served, or the draft), as JSON or an HTML page."""
    params = {"version": "draft" if draft else "published", "format": "html" if html else "json"}
    resp = client(ctx).raw("GET", f"{_BASE}/{advisory_id}/document", params=params)
    if out is not None:
        try:
            out.write_bytes(resp.content)
        except OSError as exc:
            raise CliError(f"cannot write {out}: {exc}") from exc
        output.line(f"advisory {advisory_id} written to {out}")
    elif html:
        output.console.print(resp.text, markup=False, highlight=False, soft_wrap=True, end="")
    else:
        output.console.print(jsonlib.dumps(resp.json(), indent=2, sort_keys=True), markup=False, highlight=False, soft_wrap=True)


@provider_app.command("show")
def provider_show(ctx: typer.Context, json: bool = JsonOpt) -> None:
    """The provider's URLs (provider-metadata.json, security.txt, advisories page), publisher, contact and key."""
    data = client(ctx).request("GET", "/api/v1/cra/provider")
    if json:
        output.emit_json(data)
        return
    keys = ("provider_metadata", "security_txt", "advisories_page", "contact", "policy")
    signing = data["signing"]
    record = {k: data[k] for k in keys} | {"publisher": data["publisher"]["name"]}
    record["signing key"] = signing["fingerprint"] or (
        "generated on first publish" if signing["available"] else "UNAVAILABLE: gpg is not installed on the server"
    )
    output.record(record, title=f"CSAF provider of {data['tenant']}")


@provider_app.command("set")
def provider_set(
    ctx: typer.Context,
    contact: str | None = typer.Option(None, "--contact", help="Security contact: e-mail, mailto:, https: or tel:"),
    policy: str | None = typer.Option(None, "--policy", help="The disclosure policy's https URL"),
    publisher: str | None = typer.Option(None, "--publisher", help="The publisher's name in advisories"),
    namespace: str | None = typer.Option(None, "--namespace", help="The publisher's https URL"),
    json: bool = JsonOpt,
) -> None:
    """Set what the provider and security.txt say (admins; audited). Options left out stay as they are."""
    body = {
        k: v
        for k, v in {"contact": contact, "policy": policy, "publisher_name": publisher, "namespace": namespace}.items()
        if v is not None
    }
    if not body:
        raise CliError("give at least one of --contact, --policy, --publisher, --namespace")
    show(client(ctx).request("PATCH", "/api/v1/cra/provider", json=body), json, title="CSAF provider")


@provider_app.command("import-key")
def provider_import_key(
    ctx: typer.Context,
    key: Path = typer.Argument(
        ..., help="ASCII-armoured OpenPGP secret key without passphrase (gpg --armor --export-secret-keys)"
    ),
    json: bool = JsonOpt,
) -> None:
    """Sign advisories with this key from now on (admins; audited)."""
    try:
        text = key.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise CliError(f"cannot read {key}: {exc}") from exc
    show(client(ctx).request("PUT", "/api/v1/cra/provider/key", json={"secret_key": text}), json, title="CSAF provider")
