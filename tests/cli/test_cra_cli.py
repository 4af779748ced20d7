"""`bulkhead cra product|case` against a live server: products and their support warning, a case by hand from open to
its exported notification, and exit code 2 with the server's message for bad input."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.cli.conftest import cli
from tests.live import LiveServer


def ok(srv: LiveServer, token: str, *args: str) -> Any:
    res = cli(srv, token, *args, "--json")
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def test_products_and_a_case_from_open_to_its_exported_submission(srv: LiveServer, tmp_path: Path) -> None:
    token = srv.tenant()
    p = ok(
        srv,
        token,
        "cra",
        "product",
        "set",
        "gw-3",
        "--name",
        "Gateway 3",
        "--manufacturer",
        "Acme",
        "--support-end",
        "2031-12-31",
    )
    assert p["support_end"] == "2031-12-31" and p["support"]["ending_soon"] is False
    assert [r["compatible"] for r in ok(srv, token, "cra", "product", "list")] == ["gw-3"]
    assert ok(srv, token, "cra", "product", "list", "--ending-within", "30") == []
    shown = cli(srv, token, "cra", "product", "show", "gw-3")
    assert shown.returncode == 0 and "Gateway 3" in shown.stdout and "releases" in shown.stdout

    case = ok(srv, token, "cra", "case", "open", "Update server breached", "--kind", "incident", "--compatible", "gw-3",
              "--aware", "2026-09-14T08:00:00Z")  # fmt: skip
    cid = str(case["id"])
    assert case["state"] == "awareness_pending"
    confirmed = ok(srv, token, "cra", "case", "confirm", cid)
    assert confirmed["deadlines"]["early_warning"] == "2026-09-15T08:00:00+00:00"
    assert ok(srv, token, "cra", "case", "assign", cid, "psirt")["assignee"] == "psirt"
    assert ok(srv, token, "cra", "case", "note", cid, "isolate the admin network", "--mitigations")["mitigations"]
    entry = ok(srv, token, "cra", "case", "note", cid, "BSI asks for logs", "--csirt", "--reference", "CERT-1")
    assert entry["kind"] == "csirt_request" and entry["reference"] == "CERT-1"
    assert ok(srv, token, "cra", "case", "submit", cid, "early-warning", "--reference", "SRP-1")["state"] == "notification_due"
    assert [c["id"] for c in ok(srv, token, "cra", "case", "list", "--state", "notification_due")] == [case["id"]]

    doc = ok(srv, token, "cra", "case", "export", cid, "early-warning")
    assert doc["submitted"]["reference"] == "SRP-1" and doc["fields"]["product"][0]["name"] == "Gateway 3"
    page = tmp_path / "notification.html"
    res = cli(srv, token, "cra", "case", "export", cid, "notification", "--html", "--out", str(page))
    assert res.returncode == 0, res.stderr
    assert "isolate the admin network" in page.read_text() and "Notification" in page.read_text()
    table = cli(srv, token, "cra", "case", "show", cid)
    assert table.returncode == 0 and "SRP-1" in table.stdout and "CERT-1" in table.stdout


def test_bad_input_exits_2_with_the_reason(srv: LiveServer) -> None:
    token = srv.tenant()
    res = cli(srv, token, "cra", "case", "open", "x", "--cve", "not-a-cve!")
    assert res.returncode == 2 and "not a vulnerability id" in res.stderr
    res = cli(srv, token, "cra", "case", "submit", "1", "early-warning", "--reference", "R")
    assert res.returncode == 2 and "does not exist" in res.stderr
    res = cli(srv, token, "cra", "case", "export", "1", "final-words")
    assert res.returncode == 2 and "early-warning, notification, final-report" in res.stderr
    res = cli(srv, token, "cra", "product", "show", "nope")
    assert res.returncode == 2 and "bulkhead cra product set" in res.stderr
    assert ok(srv, token, "cra", "case", "list") == []
