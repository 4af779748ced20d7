"""CSAF advisories as HTML pages for people, pure: every value from the document escaped, no template engine."""

from __future__ import annotations

from collections.abc import Iterable
from html import escape
from typing import Any

__all__ = ["advisory_html", "index_html"]

_STYLE = (
    "body{font-family:sans-serif;max-width:60em;margin:2em auto;padding:0 1em;line-height:1.4}"
    "table{border-collapse:collapse}th,td{border:1px solid #ccc;padding:.3em .6em;text-align:left;vertical-align:top}"
)
_STATUS_LABELS = {
    "known_affected": "Affected",
    "fixed": "Fixed",
    "known_not_affected": "Not affected",
    "under_investigation": "Under investigation",
    "first_fixed": "First fixed",
}


def _page(title: str, body: str) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head><body>{body}</body></html>\n"
    )


def _names(doc: dict[str, Any]) -> dict[str, str]:
    """product id → its full name, from the product tree's branches."""
    out: dict[str, str] = {}

    def walk(branches: list[dict[str, Any]]) -> None:
        for b in branches:
            if "product" in b:
                out[b["product"]["product_id"]] = b["product"]["name"]
            walk(b.get("branches", []))

    walk(doc.get("product_tree", {}).get("branches", []))
    return out


def _products(ids: Iterable[str], names: dict[str, str]) -> str:
    return ", ".join(escape(names.get(i, i)) for i in ids)


def _link(url: str, text: str) -> str:
    safe = url if url.startswith(("https://", "http://")) else "#"
    return f'<a href="{escape(safe)}">{escape(text)}</a>'


def advisory_html(doc: dict[str, Any], json_url: str | None = None) -> str:
    """One advisory: title, tracking, notes, and per vulnerability its products by status, remediations, scores."""
    d = doc["document"]
    t = d["tracking"]
    names = _names(doc)
    parts = [f"<h1>{escape(d['title'])}</h1>"]
    rows = [
        ("Advisory", t["id"]),
        ("Publisher", d["publisher"]["name"]),
        ("Status", t["status"]),
        ("Version", t["version"]),
        ("Initial release", t["initial_release_date"]),
        ("Current release", t["current_release_date"]),
        ("Severity", d.get("aggregate_severity", {}).get("text", "")),
        ("TLP", d.get("distribution", {}).get("tlp", {}).get("label", "")),
    ]
    parts.append("<table>" + "".join(f"<tr><th>{escape(k)}</th><td>{escape(str(v))}</td></tr>" for k, v in rows) + "</table>")
    if json_url:
        parts.append(f"<p>Machine-readable: {_link(json_url, 'CSAF 2.0 JSON')} (with .sha256, .sha512, .asc)</p>")
    for n in d.get("notes", []):
        parts.append(f"<h2>{escape(n.get('title') or n['category'])}</h2><p>{escape(n['text'])}</p>")
    for v in doc.get("vulnerabilities", []):
        name = v.get("cve") or ", ".join(i["text"] for i in v.get("ids", []))
        parts.append(f"<h2>{escape(name)}</h2>")
        for n in v.get("notes", []):
            parts.append(f"<p><strong>{escape(n.get('title') or n['category'])}:</strong> {escape(n['text'])}</p>")
        status = v.get("product_status", {})
        if status:
            parts.append(
                "<table><tr><th>Status</th><th>Products</th></tr>"
                + "".join(
                    f"<tr><td>{escape(_STATUS_LABELS.get(k, k))}</td><td>{_products(ids, names)}</td></tr>"
                    for k, ids in status.items()
                )
                + "</table>"
            )
        for s in v.get("scores", []):
            for kind in ("cvss_v3", "cvss_v2"):
                if kind in s:
                    c = s[kind]
                    parts.append(
                        f"<p>CVSS {escape(str(c['version']))}: {escape(str(c['baseScore']))}"
                        f" {escape(str(c.get('baseSeverity', '')))} <code>{escape(c['vectorString'])}</code></p>"
                    )
        for r in v.get("remediations", []):
            parts.append(
                f"<p><strong>{escape(r['category'].replace('_', ' ').capitalize())}:</strong> {escape(r['details'])}"
                f" ({_products(r.get('product_ids', []), names)})</p>"
            )
        for r in v.get("references", []):
            parts.append(f"<p>{_link(r['url'], r['summary'])}</p>")
    return _page(f"{t['id']}: {d['title']}", "".join(parts))


def index_html(publisher: str, entries: Iterable[tuple[str, str, str, str]]) -> str:
    """The list of published advisories: (page url, tracking id, title, current release date), newest first."""
    rows = "".join(
        f"<tr><td>{_link(url, tid)}</td><td>{escape(title)}</td><td>{escape(date)}</td></tr>"
        for url, tid, title, date in sorted(entries, key=lambda e: (e[3], e[1]), reverse=True)
    )
    body = f"<h1>Security advisories of {escape(publisher)}</h1>"
    body += f"<table><tr><th>Advisory</th><th>Title</th><th>Updated</th></tr>{rows}</table>" if rows else "<p>None yet.</p>"
    return _page(f"Security advisories of {publisher}", body)
