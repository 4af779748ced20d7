"""The OpenAPI document types every answer, and what the server really answers matches it.

Every JSON response of a representative flow (tenant, users, release, devices, reports, apps, rollouts, deltas,
hawkBit DDI) is checked against the document's schema for its operation and status, with `jsonschema`; the
answers the lean poll app serves (device state, DDI root) are checked too, so their documentation stays true.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from jsonschema import Draft202012Validator

from bulkhead.osbuild.sbom import cyclonedx, parse_dpkg_status
from tests.server.conftest import LiveServer
from tests.server.test_releases import GOOD

_SCALARS = {"string", "integer", "number", "boolean", "null"}
_STATUS = "Package: rauc\nStatus: install ok installed\nArchitecture: amd64\nVersion: 1.8-2\n"
_seq = iter(range(1, 1_000_000))


def _resolve(doc: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[1]
        schema = doc["components"]["schemas"][name]
    return schema


def _typed(doc: dict[str, Any], schema: dict[str, Any]) -> bool:
    """Whether a response schema says what the body holds (not `{}` or an object without properties)."""
    schema = _resolve(doc, schema)
    if "anyOf" in schema or "oneOf" in schema:
        return all(_typed(doc, s) for s in schema.get("anyOf", schema.get("oneOf", [])))
    if "enum" in schema or "const" in schema:
        return True
    kind = schema.get("type")
    if kind == "array":
        return _typed(doc, schema.get("items") or {})
    if kind == "object" or "properties" in schema:
        return bool(schema.get("properties"))
    return kind in _SCALARS


def _binary(schema: dict[str, Any]) -> bool:
    return schema.get("type") == "string" and schema.get("format") == "binary"


def _operations(doc: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            yield method.upper(), path, op


@pytest.fixture(scope="module")
def openapi(server: LiveServer) -> dict[str, Any]:
    r = httpx.get(server.url + "/openapi.json")
    r.raise_for_status()
    doc: dict[str, Any] = r.json()
    return doc


def test_every_response_has_a_typed_schema(openapi: dict[str, Any]) -> None:
    untyped, missing, undocumented, wrong_errors = [], [], [], []
    for method, path, op in _operations(openapi):
        ok = {code: resp for code, resp in op["responses"].items() if code.startswith("2")}
        if not ok:
            missing.append(f"{method} {path}")
        for code, resp in ok.items():
            for media, content in (resp.get("content") or {}).items():
                schema = content.get("schema") or {}
                if _binary(schema):
                    continue  # a documented file download
                if not _typed(openapi, schema):
                    untyped.append(f"{method} {path} {code} {media}")
                elif not _resolve(openapi, schema.get("items") or schema).get("description"):
                    undocumented.append(f"{method} {path} {code}")
        # Every refusal (the 4XX range, and each status documented on its own) has the server's error body.
        for code in ("4XX", *(c for c in op["responses"] if c.startswith("4"))):
            errors = op["responses"].get(code, {}).get("content", {}).get("application/json", {}).get("schema", {})
            if set(_resolve(openapi, errors).get("properties", {})) != {"error", "message", "request_id"}:
                wrong_errors.append(f"{method} {path} {code}")
    assert not missing, f"operations without a success response: {missing}"
    assert not wrong_errors, f"operations that do not document the server's error body: {wrong_errors}"
    assert not untyped, f"responses without a typed schema: {untyped}"
    assert not undocumented, f"response models without a description: {undocumented}"


def _unbounded_integers(doc: dict[str, Any], schema: dict[str, Any], where: str, seen: set[str]) -> Iterator[str]:
    """Every integer in `schema` (through $refs, unions, arrays and properties) without both a minimum and a
    maximum within 64 bits."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[1]
        if name in seen:
            return
        seen.add(name)
        schema = doc["components"]["schemas"][name]
    for part in schema.get("anyOf", []) + schema.get("oneOf", []) + schema.get("allOf", []):
        yield from _unbounded_integers(doc, part, where, seen)
    if schema.get("type") == "integer":
        low = schema.get("minimum", schema.get("exclusiveMinimum"))
        high = schema.get("maximum", schema.get("exclusiveMaximum"))
        if low is None or high is None or low < -(2**63) or high > 2**63 - 1:
            yield where
    if isinstance(schema.get("items"), dict):
        yield from _unbounded_integers(doc, schema["items"], where + "[]", seen)
    for name, prop in (schema.get("properties") or {}).items():
        yield from _unbounded_integers(doc, prop, f"{where}.{name}", seen)
    if isinstance(schema.get("additionalProperties"), dict):
        yield from _unbounded_integers(doc, schema["additionalProperties"], where + ".*", seen)


def test_every_integer_a_client_sends_is_bounded(openapi: dict[str, Any]) -> None:
    """An unbounded integer reaches the database and fails there (SQLite: 'Python int too large to convert', a 500
    that schemathesis found on ?subscription=); every integer in a parameter or a request body says its range."""
    unbounded = []
    for method, path, op in _operations(openapi):
        for param in op.get("parameters", []):
            where = f"{method} {path} {param['in']} {param['name']}"
            unbounded += _unbounded_integers(openapi, param.get("schema", {}), where, set())
        for media in op.get("requestBody", {}).get("content", {}).values():
            unbounded += _unbounded_integers(openapi, media.get("schema", {}), f"{method} {path} body", set())
    assert not unbounded, "integers without a range:\n" + "\n".join(sorted(set(unbounded)))


def test_raw_bodies_are_documented(openapi: dict[str, Any]) -> None:
    """Routes that parse their body themselves still document it (hawkBit feedback, configData, installedBase)."""
    ddi = "/{tenant}/controller/v1/{controller_id}"
    raw = [
        ("post", ddi + "/deploymentBase/{action_id}/feedback"),
        ("post", ddi + "/cancelAction/{action_id}/feedback"),
        ("put", ddi + "/configData"),
        ("put", ddi + "/installedBase"),
    ]
    for method, path in raw:
        op = openapi["paths"][path][method]
        schema = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema", {})
        assert _typed(openapi, schema), f"{method.upper()} {path}: no typed request body"
    feedback = openapi["paths"][raw[0][1]]["post"]
    status = feedback["requestBody"]["content"]["application/json"]["schema"]["properties"]["status"]
    assert "closed" in status["properties"]["execution"]["enum"]
    assert not feedback["responses"]["200"].get("content")  # its answer has no body
    root = openapi["paths"][ddi]["get"]["responses"]
    assert "application/hal+json" in root["200"]["content"] and "304" in root


@dataclass
class Checker:
    """An httpx response hook: validates every JSON success against the OpenAPI schema of its operation."""

    doc: dict[str, Any]
    checked: set[str] = field(default_factory=set)
    _routes: list[tuple[re.Pattern[str], int, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        for path in self.doc["paths"]:
            pattern = "^" + re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(path)) + "$"
            literal = len(re.sub(r"\{[^/]+?\}", "", path))
            self._routes.append((re.compile(pattern), literal, path))

    def route(self, method: str, path: str) -> str:
        found = [(lit, p) for rx, lit, p in self._routes if rx.match(path) and method.lower() in self.doc["paths"][p]]
        assert found, f"{method} {path} is not in the OpenAPI document"
        return max(found)[1]

    def __call__(self, r: httpx.Response) -> None:
        r.read()
        if not 200 <= r.status_code < 500 or not r.content:
            return
        method, template = r.request.method, self.route(r.request.method, r.request.url.path)
        op = self.doc["paths"][template][method.lower()]
        resp = op["responses"].get(str(r.status_code)) or op["responses"].get(f"{r.status_code // 100}XX")
        assert resp, f"{method} {template} answered {r.status_code}, which the document does not list"
        media = r.headers.get("content-type", "").split(";")[0]
        content = (resp.get("content") or {}).get(media)
        assert content, f"{method} {template} answered {media}; the document lists {list(resp.get('content') or {})}"
        if _binary(content["schema"]):
            return
        schema = {**content["schema"], "components": self.doc["components"]}
        errors = sorted(Draft202012Validator(schema).iter_errors(r.json()), key=lambda e: list(e.path))
        assert not errors, f"{method} {r.request.url.path}: " + "; ".join(
            f"{'/'.join(map(str, e.path))}: {e.message}" for e in errors[:5]
        )
        self.checked.add(f"{method} {template}" + (f" {r.status_code}" if r.status_code >= 400 else ""))


def _client(server: LiveServer, check: Checker, token: str | None = None, scheme: str = "Bearer") -> httpx.Client:
    headers = {"authorization": f"{scheme} {token}"} if token else {}
    return httpx.Client(base_url=server.url, headers=headers, timeout=60, event_hooks={"response": [check]})


def _ok(r: httpx.Response, status: int = 200) -> Any:
    assert r.status_code == status, f"{r.request.method} {r.request.url.path}: {r.status_code} {r.text}"
    return r.json() if r.content else None


def _report(dev: httpx.Client, phase: str, release_id: int, **details: Any) -> None:
    event = {"seq": next(_seq), "kind": "update", "phase": phase, "release_id": release_id, "details": details}
    _ok(dev.post("/device/v1/reports", json={"events": [event]}))


def test_real_answers_match_the_document(server: LiveServer, openapi: dict[str, Any]) -> None:
    check = Checker(openapi)
    with _client(server, check, server.admin) as admin:
        _ok(admin.get("/healthz"))
        tenant = _ok(admin.post("/api/v1/tenants", json={"name": f"s-{uuid.uuid4().hex[:8]}"}), 201)
        _ok(admin.get("/api/v1/tenants"))
    c = _client(server, check, tenant["token"])
    _ok(c.put("/api/v1/keyring", json={"pem": (GOOD.parent / "openssl-ca" / "dev-ca.pem").read_text()}))
    _ok(c.get("/api/v1/keyring"))
    _ok(c.get("/api/v1/tenant"))
    _ok(c.post("/api/v1/users", json={"name": "ci", "role": "operator"}), 201)
    _ok(c.get("/api/v1/users"))
    _ok(c.post("/api/v1/tokens", json={"name": "pipeline", "user": "ci", "expires_in_days": 3}), 201)

    rel = _ok(c.post("/api/v1/releases", content=GOOD.read_bytes()), 201)
    sbom = cyclonedx(parse_dpkg_status(_STATUS), "img", rel["version"], dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
    _ok(c.put(f"/api/v1/releases/{rel['id']}/sbom", json=sbom))
    _ok(c.get("/api/v1/releases"))
    _ok(c.get(f"/api/v1/releases/{rel['id']}"))
    assert c.get(f"/api/v1/releases/{rel['id']}/sbom").headers["content-type"] == "application/vnd.cyclonedx+json"

    # Devices: enrollment (one needs approval), reports, tags, desired state.
    boot = _ok(c.post("/api/v1/bootstrap-tokens", json={"name": "line", "group": "line", "max_uses": 5}), 201)
    gated = _ok(c.post("/api/v1/bootstrap-tokens", json={"name": "gated", "requires_approval": True}), 201)
    _ok(c.get("/api/v1/bootstrap-tokens"))
    enroll = {"bootstrap_token": boot["token"], "name": "dev-1", "compatible": "Test Config", "attributes": {"hw": "2"}}
    dev1 = _ok(c.post("/device/v1/enroll", json=enroll), 201)
    pending = _ok(c.post("/device/v1/enroll", json={**enroll, "bootstrap_token": gated["token"], "name": "dev-2"}), 201)
    assert pending["status"] == "pending"
    _ok(c.post("/api/v1/devices/dev-2/approve"))
    d1 = _client(server, check, dev1["credential"])
    _ok(d1.get("/device/v1/state"))
    inventory = {"os_version": "2011.03-1", "booted": "A", "packages": [{"name": "rauc", "version": "1.8"}]}
    event = {"seq": next(_seq), "kind": "agent", "phase": None, "details": {"started": True}, "at": "2026-01-01T00:00:00+00:00"}
    _ok(d1.post("/device/v1/reports", json={"events": [event], "inventory": inventory}))
    _ok(c.post("/api/v1/devices/dev-1/tags", json={"add": ["lab"]}))
    _ok(c.put("/api/v1/devices/dev-2/desired-release", json={"release_id": rel["id"]}))
    _ok(c.get("/api/v1/devices"))
    _ok(c.get("/api/v1/devices/dev-1"))

    container = {"name": "web", "image": "registry.example.com:5000/web@sha256:" + "a" * 64, "ports": ["8080:80"]}
    _ok(c.post("/api/v1/apps", json={"name": "web", "version": "1", "containers": [container]}), 201)
    _ok(c.post("/api/v1/apps", json={"name": "web", "version": "2", "containers": [container]}), 201)
    _ok(c.get("/api/v1/apps"))
    _ok(c.put("/api/v1/registries", json={"host": "registry.example.com:5000", "username": "u", "password": "p"}))
    files = [{"path": "/etc/motd", "content": "hello\n", "on_change": "true"}]
    _ok(c.patch("/api/v1/devices/dev-1/desired", json={"apps": {"web": "1"}, "files": files}))
    _ok(c.patch("/api/v1/groups/line/desired", json={"release_id": rel["id"]}))
    _ok(c.put("/api/v1/groups/line/window", json={"window": {"cron": "0 2 * * *", "duration_minutes": 60}}))
    state = _ok(d1.get("/device/v1/state"))
    assert state["desired"]["apps"] and state["desired"]["files"] and state["desired"]["registries"]

    # Rollouts: an OS release in two phases, with progress, pause, resume, retry, cancel; an app rollout.
    body = {
        "name": "os",
        "release_id": rel["id"],
        "target": {"groups": ["line"]},
        "phases": [{"group": "line", "error_threshold": 50}, {"percent": 100}],
    }
    _ok(c.post("/api/v1/rollouts", json=body), 201)
    release = _ok(d1.get("/device/v1/state"))["desired"]["release"]
    assert release["action"]["type"] == "soft"
    _report(d1, "downloading", rel["id"], progress=40)
    _ok(c.post("/api/v1/rollouts/os/pause"))
    _ok(c.post("/api/v1/rollouts/os/resume"))
    _report(d1, "failure", rel["id"], reason="disk full")
    _ok(c.get("/api/v1/rollouts"))
    _ok(c.get("/api/v1/rollouts/os"))
    _ok(c.get("/api/v1/rollouts/os/actions"))
    _ok(c.post("/api/v1/rollouts/os/retry"))
    _ok(c.post("/api/v1/rollouts/os/cancel"))
    _ok(c.get("/api/v1/devices/dev-1/events"))
    app_rollout = {"name": "web2", "app": {"name": "web", "version": "2"}, "target": {"tags": ["lab"]}, "type": "download_only"}
    _ok(c.post("/api/v1/rollouts", json=app_rollout), 201)
    assert _ok(d1.get("/device/v1/state"))["desired"]["prefetch"]
    held = {**app_rollout, "name": "later", "type": "forced", "requires_approval": True}
    _ok(c.post("/api/v1/rollouts", json=held), 201)
    _ok(c.post("/api/v1/rollouts/later/approve"))

    # Deltas: the plan and the signing key (none here).
    _ok(c.get(f"/api/v1/releases/{rel['id']}/deltas"))
    plan = _ok(c.get(f"/api/v1/releases/{rel['id']}/delta-plan"))
    assert "2011.03-1" in [source["version"] for source in plan["sources"]]
    _ok(c.get("/api/v1/delta-signing"))
    _ok(c.delete("/api/v1/delta-signing"))

    # hawkBit DDI: settings, a provisioned controller, its root, deployment, feedback, cancel, installedBase.
    _ok(c.put("/api/v1/ddi", json={"auto_register": True, "default_compatible": "Test Config", "rotate_gateway_token": True}))
    ctl = _ok(c.post("/api/v1/devices", json={"name": "ctl-1", "compatible": "Test Config", "groups": ["ddi"]}), 201)
    ddi = _client(server, check, ctl["target_token"], scheme="TargetToken")
    base = f"/{tenant['name']}/controller/v1/ctl-1"
    _ok(ddi.put(base + "/configData", json={"mode": "merge", "data": {"serial": "42"}}))
    _ok(ddi.get(base))
    _ok(c.post("/api/v1/rollouts", json={"name": "ddi", "release_id": rel["id"], "target": {"groups": ["ddi"]}}), 201)
    href = _ok(ddi.get(base))["_links"]["deploymentBase"]["href"]
    action = href.split("/deploymentBase/")[1].split("?")[0]
    _ok(ddi.get(f"{base}/deploymentBase/{action}", params={"actionHistory": -1}))
    progress = {"finished": "none", "progress": {"cnt": 1, "of": 2}}
    feedback = {"id": action, "status": {"execution": "proceeding", "result": progress}}
    _ok(ddi.post(f"{base}/deploymentBase/{action}/feedback", json=feedback))
    _ok(c.post("/api/v1/rollouts/ddi/cancel"))
    assert "cancelAction" in _ok(ddi.get(base))["_links"]
    _ok(ddi.get(f"{base}/cancelAction/{action}"))
    rejected = {"id": action, "status": {"execution": "rejected", "result": {"finished": "none"}}}
    _ok(ddi.post(f"{base}/cancelAction/{action}/feedback", json=rejected))
    closed = {"id": action, "status": {"execution": "closed", "result": {"finished": "success"}, "details": ["done"]}}
    _ok(ddi.post(f"{base}/deploymentBase/{action}/feedback", json=closed))
    _ok(ddi.get(f"{base}/installedBase/{action}"))
    _ok(ddi.put(base + "/installedBase", json={"name": "os", "version": rel["version"]}))
    _ok(c.get("/api/v1/audit"))

    # Refusals carry the documented error body, also FastAPI's own validation errors.
    assert c.post("/api/v1/users", json={"name": "x"}).status_code == 422
    assert c.get("/api/v1/devices/nobody").status_code == 404
    assert c.post("/api/v1/rollouts/os/resume").status_code == 409
    assert ddi.post(f"{base}/deploymentBase/{action}/feedback", json={"status": {"execution": "done"}}).status_code == 400

    expected = {
        "GET /healthz", "POST /api/v1/tenants", "GET /api/v1/tenants", "PUT /api/v1/keyring", "GET /api/v1/keyring",
        "GET /api/v1/tenant", "POST /api/v1/users", "GET /api/v1/users", "POST /api/v1/tokens", "POST /api/v1/releases",
        "PUT /api/v1/releases/{release_id}/sbom", "GET /api/v1/releases", "GET /api/v1/releases/{release_id}",
        "POST /api/v1/bootstrap-tokens", "GET /api/v1/bootstrap-tokens", "POST /device/v1/enroll",
        "POST /api/v1/devices/{ref}/approve", "GET /device/v1/state", "POST /device/v1/reports",
        "POST /api/v1/devices/{ref}/tags", "PUT /api/v1/devices/{ref}/desired-release", "GET /api/v1/devices",
        "GET /api/v1/devices/{ref}", "POST /api/v1/apps", "GET /api/v1/apps", "PUT /api/v1/registries",
        "PATCH /api/v1/devices/{ref}/desired", "PATCH /api/v1/groups/{name}/desired", "PUT /api/v1/groups/{name}/window",
        "POST /api/v1/rollouts", "GET /api/v1/rollouts", "GET /api/v1/rollouts/{ref}", "GET /api/v1/rollouts/{ref}/actions",
        "POST /api/v1/rollouts/{ref}/{verb}", "GET /api/v1/devices/{ref}/events", "GET /api/v1/releases/{release_id}/deltas",
        "GET /api/v1/releases/{release_id}/delta-plan", "GET /api/v1/delta-signing", "DELETE /api/v1/delta-signing",
        "PUT /api/v1/ddi", "POST /api/v1/devices", "GET /{tenant}/controller/v1/{controller_id}",
        "GET /{tenant}/controller/v1/{controller_id}/deploymentBase/{action_id}",
        "GET /{tenant}/controller/v1/{controller_id}/cancelAction/{action_id}",
        "GET /{tenant}/controller/v1/{controller_id}/installedBase/{action_id}",
        "PUT /{tenant}/controller/v1/{controller_id}/installedBase", "GET /api/v1/audit",
    }  # fmt: skip
    expected |= {
        "POST /api/v1/users 422", "GET /api/v1/devices/{ref} 404", "POST /api/v1/rollouts/{ref}/{verb} 409",
        "POST /{tenant}/controller/v1/{controller_id}/deploymentBase/{action_id}/feedback 400",
    }  # fmt: skip
    assert expected <= check.checked, f"not checked: {sorted(expected - check.checked)}"
