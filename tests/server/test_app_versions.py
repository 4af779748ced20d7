"""App versions: image references checked, compose keys supported or refused by name, change and delete."""

from __future__ import annotations

import httpx
import pytest

from bulkhead.server.errors import Invalid
from bulkhead.server.services.imageref import check_image
from tests.server.conftest import LiveServer

DIGEST = "sha256:" + "0123456789abcdef" * 4


@pytest.mark.parametrize(
    "image",
    [
        "busybox",
        "web:1.2",
        "library/web:latest",
        "reg.example.com/team/web:1.2",
        "localhost:5000/web",
        "127.0.0.1:5000/a__b/c-d.e",
        f"reg.example.com/web@{DIGEST}",
        f"reg.example.com:5000/web:1@{DIGEST}",
    ],
)
def test_valid_image_references(image: str) -> None:
    assert check_image(image, "c") == image


@pytest.mark.parametrize(
    ("image", "message"),
    [
        ("reg.example.com/web@sha256:...", "64 lowercase hex digits"),  # the README's old placeholder
        ("web@sha256:abc", "64 lowercase hex digits"),
        (f"web@sha256:{'A' * 64}", "64 lowercase hex digits"),
        ("web@md5:abc", "not supported"),
        ("Web:1", "not a valid repository name component"),
        ("reg.example.com/team//web", "not a valid repository name component"),
        ("web:-1", "invalid tag"),
        ("web:1 2", "invalid tag"),
        ("bad_host:port/web", "invalid registry host"),
        ("", "image must be a reference"),
    ],
)
def test_invalid_image_references(image: str, message: str) -> None:
    with pytest.raises(Invalid, match=message):
        check_image(image, "c")


def _app(c: httpx.Client, body: dict[str, object]) -> httpx.Response:
    return c.post("/api/v1/apps", json=body)


def test_compose_keys_are_supported_or_refused_by_name(server: LiveServer) -> None:
    c = server.client(server.tenant())
    compose = (
        "services:\n  hw:\n    image: reg.example.com/hw:1\n    privileged: true\n"
        "    devices: ['/dev/ttyUSB0:/dev/ttyUSB0']\n    network_mode: host\n  plain:\n    image: web:1\n"
    )
    r = _app(c, {"name": "hw", "version": "1", "compose": compose})
    assert r.status_code == 201, r.text
    hw, plain = r.json()["containers"]
    assert hw["privileged"] is True and hw["devices"] == ["/dev/ttyUSB0:/dev/ttyUSB0"] and hw["network_mode"] == "host"
    assert "privileged" not in plain and "devices" not in plain  # specs without them are as before
    for text, message in (
        ("services:\n  a:\n    image: x\n    depends_on: [b]\n  b:\n    image: y\n", "uses 'depends_on'"),
        ("services:\n  a:\n    image: x\n    healthcheck: {test: true}\n    cap_add: [ALL]\n", "'cap_add', 'healthcheck'"),
        ("services:\n  a:\n    image: x\n    network_mode: 'service:b'\n", "network_mode 'service:b'"),
        ("services:\n  a:\n    image: x\n    devices: [ttyUSB0]\n", "devices must be a list"),
        ("services:\n  a:\n    image: 'reg.example.com/web@sha256:...'\n", "64 lowercase hex digits"),
    ):
        r = _app(c, {"name": "bad", "version": "1", "compose": text})
        assert r.status_code == 400 and message in r.json()["message"], (text, r.text)
    assert c.get("/api/v1/apps", params={"name": "bad"}).json() == []
    c.close()


def test_app_versions_can_be_changed_and_deleted_when_unused(server: LiveServer) -> None:
    c = server.client(server.tenant())
    assert _app(c, {"name": "web", "version": "1", "containers": [{"name": "m", "image": "web:1"}]}).status_code == 201
    r = c.put("/api/v1/apps/web/1", json={"containers": [{"name": "m", "image": f"reg.example.com/web@{DIGEST}"}]})
    assert r.status_code == 200 and r.json()["containers"][0]["image"] == f"reg.example.com/web@{DIGEST}", r.text
    bad = c.put("/api/v1/apps/web/1", json={"containers": [{"name": "m", "image": "web@sha256:..."}]})
    assert bad.status_code == 400
    assert c.get("/api/v1/apps", params={"name": "web"}).json()[0]["containers"][0]["image"].endswith(DIGEST)
    missing = c.put("/api/v1/apps/web/9", json={"containers": [{"name": "m", "image": "web:9"}]})
    assert missing.status_code == 404 and "versions of 'web': 1" in missing.json()["message"]

    c.patch("/api/v1/groups/shop/desired", json={"apps": {"web": "1"}}).raise_for_status()
    r = c.delete("/api/v1/apps/web/1")
    assert r.status_code == 409 and "group 'shop'" in r.json()["message"], r.text
    c.patch("/api/v1/groups/shop/desired", json={"apps": {"web": None}}).raise_for_status()
    assert c.delete("/api/v1/apps/web/1").status_code == 204
    assert c.get("/api/v1/apps", params={"name": "web"}).json() == []
    audit = [e["action"] for e in c.get("/api/v1/audit", params={"action": "app."}).json()]
    assert "app.update" in audit and "app.delete" in audit
    c.close()
