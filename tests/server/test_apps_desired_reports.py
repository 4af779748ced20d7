"""Apps, desired state merged from groups and device, the state ETag, and agent reports (deduplicated, validated)."""

from __future__ import annotations

import base64

from tests.server.conftest import LiveServer

COMPOSE = """
services:
  web:
    image: registry.example.com:5000/web@sha256:abababababababababababababababababababababababababababababababab
    environment: [MODE=prod, DEBUG]
    ports: ["8080:80"]
    restart: on-failure:3
  cache:
    image: redis:7
"""


def _device(c, name: str, group: str = "line"):  # type: ignore[no-untyped-def]
    boot = c.post("/api/v1/bootstrap-tokens", json={"name": name, "group": group}).json()
    r = c.post("/device/v1/enroll", json={"bootstrap_token": boot["token"], "name": name, "compatible": "Test Config"})
    return {"authorization": f"Bearer {r.json()['credential']}"}


def test_apps_from_specs_and_compose_and_their_errors(server: LiveServer) -> None:
    with server.client(server.tenant()) as c:
        r = c.post("/api/v1/apps", json={"name": "stack", "version": "1", "compose": COMPOSE})
        assert r.status_code == 201, r.text
        web = {x["name"]: x for x in r.json()["containers"]}["web"]
        assert web["env"] == {"MODE": "prod", "DEBUG": ""} and web["ports"] == ["8080:80"] and web["restart"] == "on-failure"
        assert c.post("/api/v1/apps", json={"name": "stack", "version": "1", "compose": COMPOSE}).status_code == 409
        bad = [
            ({"name": "a", "version": "1", "compose": "services: ["}, "not valid YAML"),
            ({"name": "a", "version": "1", "compose": "services:\n  x:\n    build: .\n"}, "uses 'build'"),
            (
                {"name": "a", "version": "1", "containers": [{"name": "m", "image": "x", "cap_add": ["ALL"]}]},
                "unknown container field",
            ),
            ({"name": "a", "version": "1", "containers": [{"name": "m", "image": "x", "ports": ["eighty"]}]}, "HOST:CONTAINER"),
            ({"name": "a", "version": "1"}, "either 'containers' or 'compose'"),
        ]
        for body, message in bad:
            r = c.post("/api/v1/apps", json=body)
            assert r.status_code == 400 and message in r.json()["message"], (body, r.text)
        assert [a["version"] for a in c.get("/api/v1/apps", params={"name": "a"}).json()] == []


def test_desired_state_merge_etag_and_registries(server: LiveServer) -> None:
    with server.client(server.tenant()) as c:
        for v in ("1", "2"):
            c.post(
                "/api/v1/apps",
                json={"name": "web", "version": v, "containers": [{"name": "m", "image": f"reg.example:5000/web:{v}"}]},
            )
        c.post("/api/v1/apps", json={"name": "agent-sidecar", "version": "1", "containers": [{"name": "m", "image": "busybox"}]})
        c.put(
            "/api/v1/registries", json={"host": "reg.example:5000", "username": "u", "password": "s3cr3t-pull-pass"}
        ).raise_for_status()
        c.put("/api/v1/registries", json={"host": "other.example", "username": "o", "password": "q"}).raise_for_status()
        dev = _device(c, "d1")
        r = c.patch("/api/v1/groups/line/desired", json={"apps": {"web": "1", "agent-sidecar": "1"},
                                                         "files": [{"path": "/etc/motd", "content": "hi\n"}]})  # fmt: skip
        assert r.status_code == 200, r.text
        s1 = c.get("/device/v1/state", headers=dev)
        apps = {a["name"]: a["version"] for a in s1.json()["desired"]["apps"]}
        assert apps == {"web": "1", "agent-sidecar": "1"}
        assert s1.json()["desired"]["registries"] == {"reg.example:5000": {"username": "u", "password": "s3cr3t-pull-pass"}}
        if server.backend == "sqlite":  # stored encrypted with the server secret, not in clear
            db = b"".join(p.read_bytes() for p in server.data_dir.glob("*.db*"))
            assert db and b"s3cr3t-pull-pass" not in db
        assert s1.json()["desired"]["files"][0]["content_b64"] == base64.b64encode(b"hi\n").decode()
        etag = s1.headers["etag"]
        assert c.get("/device/v1/state", headers={**dev, "if-none-match": etag}).status_code == 304
        # The device overrides its group: another web version, the sidecar removed.
        c.patch("/api/v1/devices/d1/desired", json={"apps": {"web": "2", "agent-sidecar": None}}).raise_for_status()
        s2 = c.get("/device/v1/state", headers={**dev, "if-none-match": etag})
        assert s2.status_code == 200 and s2.headers["etag"] != etag
        assert {a["name"]: a["version"] for a in s2.json()["desired"]["apps"]} == {"web": "2"}
        # Bad input changes nothing.
        for body, message in [
            ({"apps": {"web": "9"}}, "does not exist"),
            ({"files": [{"path": "etc/x", "content": "x"}]}, "must be absolute"),
            ({"files": [{"path": "/x", "content_b64": "%%%"}]}, "not valid base64"),
            ({"files": [{"path": "/x", "content": "x", "mode": "rwx"}]}, "octal"),
        ]:
            r = c.patch("/api/v1/devices/d1/desired", json=body)
            assert r.status_code in (400, 404) and message in r.json()["message"], r.text
        assert c.get("/device/v1/state", headers={**dev, "if-none-match": s2.headers["etag"]}).status_code == 304


def test_reports_are_deduplicated_and_validated(server: LiveServer) -> None:
    with server.client(server.tenant()) as c:
        dev = _device(c, "d2")
        ev = [
            {"seq": 1, "kind": "update", "phase": "downloading", "release_id": None, "details": {"version": "2", "progress": 50}},
            {"seq": 2, "kind": "update", "phase": "rolled_back", "details": {"version": "2", "reason": "health check failed"}},
        ]
        r = c.post("/device/v1/reports", json={"events": ev, "inventory": {"os_version": "1"}}, headers=dev)
        assert r.json() == {"accepted_seq": 2}
        # A retried batch (the answer was lost) is not recorded twice.
        assert c.post("/device/v1/reports", json={"events": ev}, headers=dev).json() == {"accepted_seq": 2}
        events = c.get("/api/v1/devices/d2/events").json()
        assert [e["seq"] for e in events] == [2, 1]
        shown = c.get("/api/v1/devices/d2").json()
        assert shown["update"]["phase"] == "rolled_back" and shown["update"]["reason"] == "health check failed"
        assert shown["reported"] == {"os_version": "1"}
        for bad, message in [
            ([{"seq": 0, "kind": "update"}], "positive integer"),
            ([{"seq": 3, "kind": "weather"}], "kind must be"),
            ([{"seq": 3, "kind": "update", "phase": "exploded"}], "phase must be"),
            ([{"seq": 3, "kind": "update", "at": "yesterday"}], "ISO 8601"),
            ([{"seq": 3, "kind": "update", "at": "9999-12-31T23:00:00-05:00"}], "ISO 8601"),  # beyond UTC's range
        ]:
            r = c.post("/device/v1/reports", json={"events": bad}, headers=dev)
            assert r.status_code == 400 and message in r.json()["message"]
        assert len(c.get("/api/v1/devices/d2/events").json()) == 2
        # Users cannot post reports; devices cannot read the management API.
        assert c.post("/device/v1/reports", json={"events": []}).status_code == 403
        assert c.get("/api/v1/devices", headers=dev).status_code == 403
