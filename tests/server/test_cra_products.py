"""CRA products on a live server (SQLite and PostgreSQL): one per compatible with its support end, warnings when it
ends soon, deployed releases retained (deletion refused with the date until when), the support end in the devices'
desired state; bad input refused and nothing changed."""

from __future__ import annotations

import datetime as dt
import time
import uuid
from typing import Any

import httpx
import pytest

from tests.conftest import RAUC_DATA
from tests.server.conftest import LiveServer
from tests.server.test_schemas import Checker

GOOD = RAUC_DATA / "good-verity-bundle.raucb"
COMPATIBLE = "Test Config"  # the compatible of the test bundle


@pytest.fixture(scope="module")
def checker(server: LiveServer) -> Checker:
    return Checker(httpx.get(server.url + "/openapi.json").json())


def _client(server: LiveServer, checker: Checker, token: str) -> httpx.Client:
    c = server.client(token)
    c.event_hooks["response"].append(checker)
    return c


def _device(c: httpx.Client) -> tuple[str, dict[str, str]]:
    name = f"d-{uuid.uuid4().hex[:8]}"
    boot = c.post("/api/v1/bootstrap-tokens", json={"name": name}).json()
    r = c.post("/device/v1/enroll", json={"bootstrap_token": boot["token"], "name": name, "compatible": COMPATIBLE})
    assert r.status_code == 201, r.text
    return name, {"authorization": f"Bearer {r.json()['credential']}"}


def _runs(c: httpx.Client, name: str, auth: dict[str, str], version: str) -> None:
    """The device reports that it runs `version` (reports are written in batches: wait until it shows)."""
    r = c.post("/device/v1/reports", json={"events": [], "inventory": {"os_version": version}}, headers=auth)
    assert r.status_code == 200, r.text
    deadline = time.monotonic() + 20
    while (c.get(f"/api/v1/devices/{name}").json().get("reported") or {}).get("os_version") != version:
        assert time.monotonic() < deadline, f"{name} never showed os_version {version}"
        time.sleep(0.1)


def _support(c: httpx.Client, auth: dict[str, str], until: str | None) -> dict[str, Any] | None:
    """The device's state answer's `support`, once it is `until` (answers are cached briefly by every process)."""
    deadline = time.monotonic() + 20
    while True:
        support: dict[str, Any] | None = c.get("/device/v1/state", headers=auth).json().get("support")
        if (support or {}).get("support_end") == until or time.monotonic() > deadline:
            return support
        time.sleep(0.2)


def test_products_support_warnings_and_what_devices_are_told(server: LiveServer, checker: Checker) -> None:
    token = server.tenant()
    today = dt.datetime.now(dt.UTC).date()
    soon = (today + dt.timedelta(days=30)).isoformat()
    with _client(server, checker, token) as c:
        _, auth = _device(c)
        assert "support" not in c.get("/device/v1/state", headers=auth).json()  # no product yet: nothing said

        body = {"name": "Gateway 3", "manufacturer": "Acme GmbH", "support_end": "2031-12-31"}
        r = c.put(f"/api/v1/products/{COMPATIBLE}", json=body)
        assert r.status_code == 201, r.text
        p = r.json()
        assert (p["compatible"], p["name"], p["support_end"]) == (COMPATIBLE, "Gateway 3", "2031-12-31")
        assert p["support"]["ending_soon"] is False and p["support"]["warning"] is None and p["support"]["warning_days"] == 180
        assert _support(c, auth, "2031-12-31") == {
            "product": "Gateway 3",
            "manufacturer": "Acme GmbH",
            "support_end": "2031-12-31",
        }

        r = c.put(f"/api/v1/products/{COMPATIBLE}", json={**body, "support_end": soon})  # replaced
        assert r.status_code == 200 and r.json()["support"]["ending_soon"] is True
        assert "in 30 days" in r.json()["support"]["warning"]
        assert (_support(c, auth, soon) or {}).get("support_end") == soon  # devices learn the new end at once
        c.put("/api/v1/products/other-board", json={**body, "name": "Sensor", "support_end": "2035-01-01"}).raise_for_status()

        assert [p["compatible"] for p in c.get("/api/v1/products").json()] == ["Test Config", "other-board"]
        assert [p["compatible"] for p in c.get("/api/v1/products", params={"ending_within": 60}).json()] == [COMPATIBLE]
        shown = c.get(f"/api/v1/products/{COMPATIBLE}").json()
        assert shown["support"]["days_left"] == 30 and shown["releases"] == []
        entries = [e for e in c.get("/api/v1/audit", params={"action": "cra.product.set"}).json() if e["subject"] == COMPATIBLE]
        assert [(e["details"]["support_end_before"], e["details"]["support_end"]) for e in entries] == [
            ("2031-12-31", soon),
            (None, "2031-12-31"),
        ]


def test_a_deployed_release_is_retained_and_the_refusal_says_until_when(server: LiveServer, checker: Checker) -> None:
    token = server.tenant()
    with _client(server, checker, token) as c:
        c.put(f"/api/v1/products/{COMPATIBLE}", json={"name": "G", "manufacturer": "M", "support_end": "2026-06-30"})
        rel = c.post("/api/v1/releases", content=GOOD.read_bytes()).json()
        assert c.get(f"/api/v1/products/{COMPATIBLE}").json()["releases"][0]["last_deployed"] is None
        name, auth = _device(c)
        _runs(c, name, auth, rel["version"])  # a device reported running it: it was deployed

        r = c.delete(f"/api/v1/releases/{rel['id']}")
        until = dt.datetime.now(dt.UTC).year + 10  # the support end (2026-06-30) is earlier than the deployment
        assert r.status_code == 409, r.text
        message = r.json()["message"]
        assert f"retained until {until}-" in message and "BULKHEAD_RELEASE_RETENTION_YEARS" in message
        assert c.get(f"/api/v1/releases/{rel['id']}").status_code == 200  # nothing changed
        [shown] = c.get(f"/api/v1/products/{COMPATIBLE}").json()["releases"]
        assert shown["last_deployed"] is not None and shown["retained_until"].startswith(f"{until}-")

    # a release never deployed may go; so may one of a compatible no product was registered for
    with _client(server, checker, server.tenant()) as c:
        c.put(f"/api/v1/products/{COMPATIBLE}", json={"name": "G", "manufacturer": "M"}).raise_for_status()
        rel = c.post("/api/v1/releases", content=GOOD.read_bytes()).json()
        assert c.delete(f"/api/v1/releases/{rel['id']}").status_code == 204
    with _client(server, checker, server.tenant()) as c:
        rel = c.post("/api/v1/releases", content=GOOD.read_bytes()).json()
        name, auth = _device(c)
        _runs(c, name, auth, rel["version"])
        assert c.delete(f"/api/v1/releases/{rel['id']}").status_code == 204


def test_a_rollout_deleted_since_still_counts_as_a_deployment(server: LiveServer, checker: Checker) -> None:
    with _client(server, checker, server.tenant()) as c:
        c.put(f"/api/v1/products/{COMPATIBLE}", json={"name": "G", "manufacturer": "M"}).raise_for_status()
        rel = c.post("/api/v1/releases", content=GOOD.read_bytes()).json()
        r = c.post(
            "/api/v1/rollouts",
            json={"name": "r", "release_id": rel["id"], "target": {"compatible": COMPATIBLE}, "allow_empty": True},
        )
        assert r.status_code == 201, r.text
        assert c.delete("/api/v1/rollouts/r").status_code == 204  # no device: nothing open
        r = c.delete(f"/api/v1/releases/{rel['id']}")
        assert r.status_code == 409 and "retained until" in r.json()["message"]


def test_bad_product_input_is_refused_and_changes_nothing(server: LiveServer, checker: Checker) -> None:
    token = server.tenant()
    with _client(server, checker, token) as c:
        viewer = c.post("/api/v1/tokens", json={"name": "ro", "user": "vera", "role": "viewer"}).json()["token"]
        good = {"name": "G", "manufacturer": "M", "support_end": "2030-01-01"}
        for body, status, message in [
            ({**good, "support_end": "soon"}, 422, "support_end"),
            ({**good, "name": ""}, 422, "name"),
            ({**good, "name": "  "}, 400, "printable"),
            ({"name": "G"}, 422, "manufacturer"),
            ({**good, "support_end": "9999-01-01"}, 400, "plausible"),
            ({**good, "colour": "red"}, 422, "colour"),
        ]:
            r = c.put(f"/api/v1/products/{COMPATIBLE}", json=body)
            assert r.status_code == status and message in r.json()["message"], (body, r.text)
        assert c.get("/api/v1/products").json() == []
        r = c.get(f"/api/v1/products/{COMPATIBLE}")
        assert r.status_code == 404 and "bulkhead cra product set" in r.json()["message"]
        for days in (-1, 36501, 2**70):  # the documented range, checked at the edge (it was unbounded there)
            r = c.get("/api/v1/products", params={"ending_within": days})
            assert r.status_code == 422 and "ending_within" in r.text
        c.put(f"/api/v1/products/{COMPATIBLE}", json=good).raise_for_status()
    with server.client(viewer) as v:
        assert v.get(f"/api/v1/products/{COMPATIBLE}").json()["name"] == "G"  # viewers read
        r = v.put(f"/api/v1/products/{COMPATIBLE}", json={**good, "name": "X"})
        assert r.status_code == 403 and "operator" in r.json()["message"]
        assert v.get(f"/api/v1/products/{COMPATIBLE}").json()["name"] == "G"
    with server.client(server.tenant()) as other:
        assert other.get(f"/api/v1/products/{COMPATIBLE}").status_code == 404
