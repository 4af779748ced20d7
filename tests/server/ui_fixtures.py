"""Helpers for the web UI tests: a tenant with signed-in users of each role, devices, a rollout."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass

import httpx

from tests.conftest import DEV_CA, RAUC_DATA
from tests.server.conftest import LiveServer
from tests.server.test_rollouts import Dev

GOOD = RAUC_DATA / "good-verity-bundle.raucb"
PASSWORD = "correct horse battery"


@dataclass
class Tenant:
    name: str
    api: httpx.Client  # the tenant admin's API token

    def user(self, name: str, role: str, password: str = PASSWORD) -> None:
        if name != "admin":
            self.api.post("/api/v1/users", json={"name": name, "role": role}).raise_for_status()
        self.api.put(f"/api/v1/users/{name}/password", json={"password": password}).raise_for_status()


def tenant(server: LiveServer) -> Tenant:
    """A fresh tenant (keyring: the RAUC test CA) whose admin may sign in with PASSWORD."""
    name = unique("ui")
    with server.client(server.admin) as c:
        r = c.post("/api/v1/tenants", json={"name": name})
        r.raise_for_status()
    api = server.client(r.json()["token"])
    api.put("/api/v1/keyring", json={"pem": DEV_CA.read_text()}).raise_for_status()
    t = Tenant(name, api)
    t.user("admin", "admin")
    return t


def browser(server: LiveServer) -> httpx.Client:
    return httpx.Client(base_url=server.url, timeout=60, follow_redirects=False)


def login(server: LiveServer, t: Tenant, user: str, password: str = PASSWORD) -> httpx.Client:
    b = browser(server)
    r = b.post("/ui/login", data={"tenant": t.name, "user": user, "password": password, "next": "/ui/"})
    assert r.status_code == 303, r.text
    return b


def csrf(b: httpx.Client, page: str = "/ui/account") -> str:
    m = re.search(r'name="csrf" value="([^"]+)"', b.get(page).text)
    assert m, "the page carries its CSRF token"
    return m.group(1)


def release(t: Tenant) -> int:
    r = t.api.post("/api/v1/releases", content=GOOD.read_bytes())
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


def device(t: Tenant, name: str, group: str = "lab") -> Dev:
    return Dev(t.api, name, group)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"
