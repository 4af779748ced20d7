"""`bulkhead cra`: CRA duties — products and their support periods, Article 14 cases and their submissions."""

from __future__ import annotations

import hashlib
import json as jsonlib
from pathlib import Path
from typing import Any
from urllib.parse import quote

import typer

from . import output
from .client import LimitOpt
from .cra_advisory import advisory_app, provider_app
from .errors import CliError
from .manage import JsonOpt, client, show
from .notify import notify_app

cra_app = typer.Typer(help="CRA duties: products and support periods, Article 14 cases.", no_args_is_help=True)
product_app = typer.Typer(help="Products (one per compatible): name, manufacturer, support end.", no_args_is_help=True)
case_app = typer.Typer(help="Article 14 cases: awareness, deadlines, submissions.", no_args_is_help=True)
cra_app.add_typer(product_app, name="product")
cra_app.add_typer(case_app, name="case")
cra_app.add_typer(notify_app, name="notify")
cra_app.add_typer(advisory_app, name="advisory")
cra_app.add_typer(provider_app, name="provider")

_SUBMISSIONS = ("early_warning", "notification", "final_report")
_CASE_COLUMNS = ["id", "kind", "state", "title", "awareness_at", "deadlines", "overdue", "assignee"]


def _product_path(compatible: str) -> str:
    return f"/api/v1/products/{quote(compatible, safe='')}"


def _submission(value: str) -> str:
    name = value.replace("-", "_")
    if name not in _SUBMISSIONS:
        raise CliError(f"the submission must be one of {', '.join(s.replace('_', '-') for s in _SUBMISSIONS)}, not {value!r}")
    return name


@product_app.command("set")
def product_set(
    ctx: typer.Context,
    compatible: str = typer.Argument(..., help="The compatible of the product's releases and devices"),
    name: str = typer.Option(..., "--name", help="The product's name as it is placed on the market"),
    manufacturer: str = typer.Option(..., "--manufacturer"),
    support_end: str | None = typer.Option(None, "--support-end", help="The last day of support, YYYY-MM-DD"),
    json: bool = JsonOpt,
) -> None:
    """Create or replace a product; its devices show the support end to their users (audited)."""
    body = {"name": name, "manufacturer": manufacturer, "support_end": support_end}
    show(client(ctx).request("PUT", _product_path(compatible), json=body), json, title=f"product {compatible}")


@product_app.command("list")
def product_list(
    ctx: typer.Context,
    ending_within: int | None = typer.Option(None, "--ending-within", help="Only those whose support ends within N days"),
    json: bool = JsonOpt,
) -> None:
    """The products with their support status (ending_soon: within the server's warning period, 180 days by default)."""
    params = {"ending_within": ending_within} if ending_within is not None else None
    rows = client(ctx).request("GET", "/api/v1/products", params=params)
    if json:
        output.emit_json(rows)
        return
    flat = [{**r, "ending_soon": r["support"]["ending_soon"], "warning": r["support"]["warning"]} for r in rows]
    show(flat, False, ["compatible", "name", "manufacturer", "support_end", "ending_soon", "warning"])


@product_app.command("show")
def product_show(ctx: typer.Context, compatible: str, json: bool = JsonOpt) -> None:
    """One product: its support status and warning, its releases, when each was last deployed and how long it is kept."""
    data = client(ctx).request("GET", _product_path(compatible))
    if json:
        output.emit_json(data)
        return
    summary = {k: data[k] for k in ("compatible", "name", "manufacturer", "support_end")}
    summary["days left"] = data["support"]["days_left"]
    if data["support"]["warning"]:
        summary["WARNING"] = data["support"]["warning"]
    output.record(summary, title=data["name"])
    output.table(data["releases"], ["id", "version", "created_at", "last_deployed", "retained_until"], "releases")


@case_app.command("open")
def case_open(
    ctx: typer.Context,
    title: str = typer.Argument(..., help="What happened, in a line"),
    kind: str = typer.Option("vulnerability", "--kind", help="vulnerability (actively exploited) or incident (severe)"),
    cve: list[str] = typer.Option([], "--cve", help="A CVE id the case concerns (repeat for several)"),
    compatible: str | None = typer.Option(None, "--compatible", help="The product (needed when no CVE names its devices)"),
    aware: str | None = typer.Option(None, "--aware", help="The suggested awareness time, ISO 8601 with zone (default now)"),
    json: bool = JsonOpt,
) -> None:
    """Open an Article 14 case by hand; a person then confirms the awareness time (`bulkhead cra case confirm`)."""
    body = {"kind": kind, "title": title, "cves": cve, "compatible": compatible, "suggested_awareness_at": aware}
    show(client(ctx).request("POST", "/api/v1/cra/cases", json=body), json, title="case")


@case_app.command("list")
def case_list(
    ctx: typer.Context,
    state: str | None = typer.Option(None, "--state", help="Only cases in this state, e.g. awareness_pending"),
    limit: int | None = LimitOpt,
    json: bool = JsonOpt,
) -> None:
    """The cases, newest first, with their deadlines and what is overdue."""
    rows = client(ctx).pages("/api/v1/cra/cases", {"state": state} if state else None, limit)
    show(rows, json, _CASE_COLUMNS)


@case_app.command("show")
def case_show(ctx: typer.Context, case_id: int, json: bool = JsonOpt) -> None:
    """One case: state, deadlines, the corrective measure, its log and the pre-filled reporting fields."""
    data = client(ctx).request("GET", f"/api/v1/cra/cases/{case_id}")
    if json:
        output.emit_json(data)
        return
    keys = ("kind", "state", "cves", "suggested_awareness_at", "awareness_at", "deadlines", "overdue", "corrective", "assignee")
    output.record({k: data[k] for k in keys} | {"next": ", ".join(data["allowed"]) or "(final)"}, title=data["title"])
    fields = data["fields"]
    output.record(
        {
            "products": ", ".join(f"{p['name'] or p['compatible']}" for p in fields["product"]),
            "affected versions": fields["affected_versions"],
            "member states": fields["member_states"],
            "devices": fields["devices"]["affected"],
        },
        title="reporting fields",
    )
    if data["entries"]:
        output.table(data["entries"], ["seq", "kind", "submission", "reference", "actor", "at", "text"], "log")


@case_app.command("confirm")
def case_confirm(
    ctx: typer.Context,
    case_id: int,
    aware: str | None = typer.Option(None, "--aware", help="When awareness began, ISO 8601 with zone (default: suggested)"),
    json: bool = JsonOpt,
) -> None:
    """Confirm the awareness time: the early warning is due 24 h after it, the notification 72 h (audited)."""
    show(client(ctx).request("POST", f"/api/v1/cra/cases/{case_id}/confirm", json={"awareness_at": aware}), json, title="case")


@case_app.command("assign")
def case_assign(ctx: typer.Context, case_id: int, assignee: str, json: bool = JsonOpt) -> None:
    """Give the case to someone (audited)."""
    show(client(ctx).request("PATCH", f"/api/v1/cra/cases/{case_id}", json={"assignee": assignee}), json, title="case")


@case_app.command("note")
def case_note(
    ctx: typer.Context,
    case_id: int,
    text: str,
    csirt: bool = typer.Option(False, "--csirt", help="Record a CSIRT's request (with --reference) instead of a note"),
    reference: str | None = typer.Option(None, "--reference", help="The CSIRT request's reference"),
    mitigations: bool = typer.Option(False, "--mitigations", help="Set TEXT as the case's mitigations (reported)"),
    json: bool = JsonOpt,
) -> None:
    """Add a note to the case's log, record a CSIRT request, or set the mitigations (audited)."""
    c = client(ctx)
    if mitigations:
        show(c.request("PATCH", f"/api/v1/cra/cases/{case_id}", json={"mitigations": text}), json, title="case")
        return
    body = {"text": text, "kind": "csirt_request" if csirt else "note", "reference": reference}
    show(c.request("POST", f"/api/v1/cra/cases/{case_id}/notes", json=body), json, title="entry")


@case_app.command("fix")
def case_fix(
    ctx: typer.Context,
    case_id: int,
    release: int | None = typer.Option(None, "--release", help="The id of the release that fixes it"),
    description: str | None = typer.Option(None, "--description", help="The measure, when it is not a release"),
    available: str | None = typer.Option(None, "--available", help="When it became available (default: upload or now)"),
    json: bool = JsonOpt,
) -> None:
    """Name the corrective measure by hand (found by itself from the exposure's fixing release otherwise)."""
    body = {"release_id": release, "description": description, "available_at": available}
    show(client(ctx).request("PUT", f"/api/v1/cra/cases/{case_id}/corrective", json=body), json, title="case")


@case_app.command("submit")
def case_submit(
    ctx: typer.Context,
    case_id: int,
    submission: str = typer.Argument(..., help="early-warning, notification or final-report"),
    reference: str = typer.Option(..., "--reference", help="The reporting platform's reference of the submission"),
    text: str | None = typer.Option(None, "--text", help="A note kept with it"),
    json: bool = JsonOpt,
) -> None:
    """Record a submission made on ENISA's Single Reporting Platform: who, when, its reference and the fields sent."""
    body = {"submission": _submission(submission), "reference": reference, "text": text}
    data = client(ctx).request("POST", f"/api/v1/cra/cases/{case_id}/submissions", json=body)
    show(data if json else {k: data[k] for k in ("id", "state", "deadlines", "overdue")}, json, title="case")


@case_app.command("dismiss")
def case_dismiss(ctx: typer.Context, case_id: int, reason: str, json: bool = JsonOpt) -> None:
    """Close a case as not reportable, with the reason (audited)."""
    show(client(ctx).request("POST", f"/api/v1/cra/cases/{case_id}/dismiss", json={"reason": reason}), json, title="case")


@case_app.command("export")
def case_export(
    ctx: typer.Context,
    case_id: int,
    submission: str = typer.Argument(..., help="early-warning, notification or final-report"),
    html: bool = typer.Option(False, "--html", help="A printable HTML page instead of JSON"),
    out: Path | None = typer.Option(None, "--out", help="Write it here instead of standard output"),
    json: bool = typer.Option(True, "--json", help="The document is JSON unless --html is given"),
) -> None:
    """A submission's fields (as submitted, or as they would be sent now), as JSON or a printable HTML page."""
    params: dict[str, Any] = {"format": "html" if html else "json"}
    resp = client(ctx).raw("GET", f"/api/v1/cra/cases/{case_id}/submissions/{_submission(submission)}", params=params)
    text = resp.text if html else jsonlib.dumps(resp.json(), indent=2, sort_keys=True) + "\n"
    if out is not None:
        out.write_text(text)
        output.line(f"{_submission(submission)} of case {case_id} written to {out}")
    else:
        output.console.print(text, markup=False, highlight=False, soft_wrap=True, end="")


@cra_app.command("export")
def techdoc_export(
    ctx: typer.Context,
    product: str = typer.Option(..., "--product", help="The product's compatible"),
    out: Path = typer.Option(..., "-o", "--out", help="The archive to write (a tar.gz)"),
    json: bool = JsonOpt,
) -> None:
    """The product's technical documentation (CRA Annex VII) as one deterministic tar.gz with a manifest.json."""
    c = client(ctx)
    c.raw("GET", _product_path(product))  # an unknown product or a missing right is a clear error before any write
    tmp = out.with_name(out.name + ".part")
    digest, size = hashlib.sha256(), 0
    try:
        with c.http.stream("GET", "/api/v1/cra/export", params={"product": product}) as resp:
            if resp.status_code >= 400:
                resp.read()
                raise CliError(f"server answered {resp.status_code}: {resp.json().get('message') or resp.text}")
            with tmp.open("wb") as f:
                for chunk in resp.iter_bytes():
                    f.write(chunk)
                    digest.update(chunk)
                    size += len(chunk)
        tmp.replace(out)
    except OSError as exc:
        raise CliError(f"cannot write {out}: {exc}") from exc
    finally:
        tmp.unlink(missing_ok=True)
    if json:
        output.emit_json({"product": product, "path": str(out), "size": size, "sha256": digest.hexdigest()})
    else:
        output.line(f"technical documentation of {product} written to {out} ({size} bytes, sha256 {digest.hexdigest()})")
