"""hawkBit DDI conformance: every JSON field and status rule that real clients depend on, over real HTTP."""

from __future__ import annotations

import collections
import hashlib
import os
import re
import secrets
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from bulkhead.lab.pki import make_pki
from tests.conftest import RAUC_DATA
from tests.live import live_server
from tests.server.conftest import LiveServer
from tests.swu.conftest import signed_swu

GOOD = RAUC_DATA / "good-verity-bundle.raucb"
HMS = re.compile(r"^\d\d:[0-5]\d:[0-5]\d$")


def _wait(cond: Callable[[], Any], what: str, timeout: float = 20) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := cond():
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


class Ddi:
    def __init__(self, server: LiveServer, tenant: str, cid: str, auth: dict[str, str]) -> None:
        self.base = f"{server.url}/{tenant}/controller/v1/{cid}"
        self.c = httpx.Client(headers=auth, timeout=30)

    def get(self, path: str = "", **kw: Any) -> httpx.Response:
        return self.c.get(self.base + path, **kw)

    def root(self) -> dict[str, Any]:
        r = self.get()
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body

    def links(self) -> dict[str, Any]:
        links: dict[str, Any] = self.root().get("_links", {})
        return links

    def feedback(
        self, kind: str, action: str, execution: str, finished: str = "none", progress: Any = None, **extra: Any
    ) -> httpx.Response:
        result: dict[str, Any] = {"finished": finished} if progress is None else {"finished": finished, "progress": progress}
        body = {"id": action, "time": "20261125T101010", "status": {"execution": execution, "result": result, **extra}}
        return self.c.post(f"{self.base}/{kind}/{action}/feedback", json=body)


@pytest.fixture
def setup(server: LiveServer) -> tuple[httpx.Client, int, Ddi, str]:
    c = server.client(server.tenant())
    r = c.post("/api/v1/releases", content=GOOD.read_bytes())
    assert r.status_code == 201, r.text
    name = f"ctl-{uuid.uuid4().hex[:6]}"
    dev = c.post("/api/v1/devices", json={"name": name, "compatible": "Test Config", "groups": ["ddi"]})
    assert dev.status_code == 201, dev.text
    tenant = c.get("/api/v1/tenant").json()["name"]
    ddi = Ddi(server, tenant, name, {"authorization": f"TargetToken {dev.json()['target_token']}"})
    return c, r.json()["id"], ddi, name


def _rollout(c: httpx.Client, rel: int, **kw: Any) -> dict[str, Any]:
    body = {"name": f"r-{uuid.uuid4().hex[:6]}", "release_id": rel, "target": {"groups": ["ddi"]}, **kw}
    r = c.post("/api/v1/rollouts", json=body)
    assert r.status_code == 201, r.text
    out: dict[str, Any] = r.json()
    return out


def test_root_config_data_etag_and_deployment_fields(setup: tuple[httpx.Client, int, Ddi, str]) -> None:
    c, rel, ddi, name = setup
    root = ddi.root()
    assert HMS.match(root["config"]["polling"]["sleep"])
    assert set(root["_links"]) == {"configData"} and root["_links"]["configData"]["href"] == ddi.base + "/configData"
    for body, attrs in [
        ({"data": {"hw": "rev2", "serial": "42"}}, {"hw": "rev2", "serial": "42"}),  # mode missing: merge
        ({"mode": "merge", "data": {"mac": "aa"}}, {"hw": "rev2", "serial": "42", "mac": "aa"}),
        ({"mode": "remove", "data": {"serial": ""}}, {"hw": "rev2", "mac": "aa"}),
        ({"mode": "replace", "data": {"only": "this"}}, {"only": "this"}),
    ]:
        assert ddi.c.put(ddi.base + "/configData", json={"id": "", "status": {"execution": "closed"}, **body}).status_code == 200
        assert c.get(f"/api/v1/devices/{name}").json()["attributes"] == attrs
    bad = ddi.c.put(ddi.base + "/configData", json={"mode": "upsert", "data": {}})
    assert bad.status_code == 400 and "merge, replace or remove" in bad.json()["message"]
    assert "_links" not in ddi.root()  # attributes arrived: nothing to do

    _rollout(c, rel, type="forced")
    r = ddi.get()
    href = r.json()["_links"]["deploymentBase"]["href"]
    assert re.match(rf"^{re.escape(ddi.base)}/deploymentBase/\d+\?c=-?\d+$", href)
    assert ddi.get(headers={"if-none-match": r.headers["etag"]}).status_code == 304
    dep = ddi.c.get(href).json()
    action = href.split("/deploymentBase/")[1].split("?")[0]
    blob = GOOD.read_bytes()
    art = dep["deployment"]["chunks"][0]["artifacts"][0]
    assert dep["id"] == action and isinstance(dep["id"], str)
    assert dep["deployment"]["download"] == "forced" and dep["deployment"]["update"] == "forced"
    assert "maintenanceWindow" not in dep["deployment"]
    chunk = dep["deployment"]["chunks"][0]
    assert (chunk["part"], chunk["version"], chunk["name"]) == ("os", "2011.03-2", "Test Config")
    assert art["filename"] == "Test-Config-2011.03-2.raucb" and art["size"] == len(blob)
    assert art["hashes"] == {
        "sha1": hashlib.sha1(blob).hexdigest(),
        "md5": hashlib.md5(blob).hexdigest(),
        "sha256": hashlib.sha256(blob).hexdigest(),
    }
    links = art["_links"]
    assert set(links) == {"download", "download-http", "md5sum", "md5sum-http"}
    assert links["download"]["href"].startswith("http://") and links["download"]["href"] == links["download-http"]["href"]

    # Artifact delivery: Range for DDI clients, no status record per range request.
    history = _history(c, name)
    for i in range(20):
        part = ddi.c.get(links["download"]["href"], headers={"range": f"bytes={i * 100}-{i * 100 + 99}"})
        assert part.status_code == 206 and part.content == blob[i * 100 : i * 100 + 100]
    assert part.headers["content-range"] == f"bytes 1900-1999/{len(blob)}"
    assert ddi.c.get(links["download"]["href"]).content == blob
    md5 = ddi.c.get(links["md5sum"]["href"])
    assert md5.text == f"{hashlib.md5(blob).hexdigest()}  {art['filename']}\n"
    assert ddi.c.get(links["download"]["href"].replace(".raucb", ".swu")).status_code == 404
    assert _history(c, name) == history

    # Feedback: proceeding keeps it open; unknown execution is refused; closed+none is success.
    assert ddi.feedback("deploymentBase", action, "proceeding", progress=None, details=["Downloading"]).status_code == 200
    bad = ddi.feedback("deploymentBase", action, "finished")
    assert bad.status_code == 400 and "closed, proceeding, canceled" in bad.json()["message"]
    assert ddi.feedback("deploymentBase", action, "closed", "none", details=["done"]).status_code == 200
    assert _action(c, name)["status"] == "success"
    root = ddi.root()
    assert "deploymentBase" not in root.get("_links", {})
    assert root["_links"]["installedBase"]["href"] == f"{ddi.base}/installedBase/{action}"
    assert ddi.get(f"/installedBase/{action}").json()["deployment"]["chunks"][0]["version"] == "2011.03-2"
    assert ddi.feedback("deploymentBase", action, "proceeding").status_code == 410
    assert ddi.feedback("deploymentBase", action, "closed", "success").status_code == 200  # a final status: always accepted
    assert ddi.get(f"/deploymentBase/{action}").status_code == 410
    put = ddi.c.put(ddi.base + "/installedBase", json={"name": "os", "version": "2011.03-2"})
    assert put.status_code == 200 and c.get(f"/api/v1/devices/{name}").json()["reported"]["os_version"] == "2011.03-2"


def _action(c: httpx.Client, device: str) -> dict[str, Any]:
    rows = [a for r in c.get("/api/v1/rollouts").json() for a in c.get(f"/api/v1/rollouts/{r['id']}/actions").json()]
    mine = [a for a in rows if a["device"] == device]
    return mine[-1]


def _history(c: httpx.Client, device: str) -> int:
    return len(_action(c, device)["history"])


def test_soft_window_download_only_and_cancel(setup: tuple[httpx.Client, int, Ddi, str]) -> None:
    c, rel, ddi, name = setup
    c.put("/api/v1/groups/ddi/window", json={"window": {"cron": "0 0 29 2 *", "duration_minutes": 30}}).raise_for_status()
    _rollout(c, rel, type="soft")
    closed_href = ddi.links()["deploymentBase"]["href"]
    dep = ddi.c.get(closed_href).json()["deployment"]
    assert (dep["download"], dep["update"], dep["maintenanceWindow"]) == ("attempt", "skip", "unavailable")
    c.put("/api/v1/groups/ddi/window", json={"window": {"cron": "* * * * *", "duration_minutes": 10}}).raise_for_status()
    open_href = ddi.links()["deploymentBase"]["href"]
    assert open_href != closed_href  # ?c= changes when the window opens
    dep = ddi.c.get(open_href).json()["deployment"]
    assert (dep["download"], dep["update"], dep["maintenanceWindow"]) == ("attempt", "attempt", "available")
    action = dep and open_href.split("/deploymentBase/")[1].split("?")[0]

    # Cancel: the device rejects it and carries on, then a second cancel is confirmed.
    assert ddi.feedback("deploymentBase", action, "download").status_code == 200
    rollout = c.get("/api/v1/rollouts").json()[-1]["name"]
    c.post(f"/api/v1/rollouts/{rollout}/cancel").raise_for_status()
    cancel = ddi.links()["cancelAction"]["href"]
    assert "deploymentBase" not in ddi.links()
    info = ddi.c.get(cancel).json()
    assert info == {"id": action, "cancelAction": {"stopId": action}}
    assert ddi.feedback("cancelAction", action, "rejected", "success", details=["not now"]).status_code == 200
    assert _action(c, name)["status"] == "downloading" and "deploymentBase" in ddi.links()
    c.put("/api/v1/groups/ddi/window", json={"window": None}).raise_for_status()

    c2 = _rollout(c, rel, type="download_only")
    href = ddi.links()["deploymentBase"]["href"]
    a2 = href.split("/deploymentBase/")[1].split("?")[0]
    if a2 == action:  # the rejected-cancel action still outranks; close it first
        assert ddi.feedback("deploymentBase", action, "closed", "failure", details=["gave up"]).status_code == 200
        href = ddi.links()["deploymentBase"]["href"]
        a2 = href.split("/deploymentBase/")[1].split("?")[0]
    dep = ddi.c.get(href).json()["deployment"]
    assert (dep["download"], dep["update"]) == ("forced", "skip") and "maintenanceWindow" not in dep
    assert ddi.feedback("deploymentBase", a2, "downloaded", "none").status_code == 200
    assert _action(c, name)["status"] == "downloaded" and _action(c, name)["active"] is False
    _wait(lambda: c.get(f"/api/v1/rollouts/{c2['name']}").json()["status"] == "finished", "the download-only rollout to finish")

    c3 = _rollout(c, rel, type="forced")
    a3 = ddi.links()["deploymentBase"]["href"].split("/deploymentBase/")[1].split("?")[0]
    c.post(f"/api/v1/rollouts/{c3['name']}/cancel").raise_for_status()  # not started yet: canceled outright
    assert "_links" not in ddi.root() or "cancelAction" not in ddi.links()
    assert ddi.get(f"/deploymentBase/{a3}").status_code == 410


def test_auth_gateway_token_auto_register_default_tenant_and_certificates(server: LiveServer) -> None:
    token = server.tenant()
    c = server.client(token)
    tenant = c.get("/api/v1/tenant").json()["name"]
    gw = c.put("/api/v1/ddi", json={"auto_register": True, "default_compatible": "Test Config", "rotate_gateway_token": True})
    assert gw.status_code == 200, gw.text
    gateway = gw.json()["gateway_token"]
    base = f"{server.url}/{tenant}/controller/v1"
    assert httpx.get(f"{base}/newbie").status_code == 401
    assert httpx.get(f"{base}/newbie", headers={"authorization": "GatewayToken nope"}).status_code == 401
    r = httpx.get(f"{base}/newbie", headers={"authorization": f"GatewayToken {gateway}"})
    assert r.status_code == 200 and "configData" in r.json()["_links"]
    dev = c.get("/api/v1/devices/newbie").json()
    assert dev["compatible"] == "Test Config"
    c.put("/api/v1/ddi", json={"auto_register": False}).raise_for_status()
    time.sleep(10.5)  # the tenant's DDI settings are cached for 10 s
    assert httpx.get(f"{base}/stranger", headers={"authorization": f"GatewayToken {gateway}"}).status_code == 404

    own = c.post("/api/v1/devices", json={"name": "dev-a", "compatible": "Test Config"}).json()["target_token"]
    assert httpx.get(f"{base}/dev-b", headers={"authorization": f"TargetToken {own}"}).status_code == 403
    assert (
        httpx.get(f"{server.url}/DEFAULT/controller/v1/dev-a", headers={"authorization": f"TargetToken {own}"}).status_code == 200
    )
    assert httpx.get(f"{base}/newbie", headers={"x-client-cn": "newbie"}).status_code == 200
    assert httpx.get(f"{base}/newbie", headers={"x-client-cn": "dev-a"}).status_code == 403
    assert c.post("/api/v1/devices", json={"name": "dev-a", "compatible": "Test Config"}).status_code == 409
    c.close()


def _tree_rss_kib(pid: int) -> int:
    """VmRSS of a process and all its descendants (granian's workers are children of the server process)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        todo.extend(children.get(p, []))
        try:
            status = Path(f"/proc/{p}/status").read_text()
        except OSError:
            continue
        total += next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")), 0)
    return total


def _hammer(url: str, tenant: str, count: int, threads: int = 4) -> collections.Counter[int]:
    """`count` DDI polls, each with a new random GatewayToken and controller id (and every fourth with a tenant
    that does not exist), over keep-alive connections."""

    def run(n: int) -> collections.Counter[int]:
        seen: collections.Counter[int] = collections.Counter()
        with httpx.Client(base_url=url, timeout=30) as c:
            for i in range(n):
                t = tenant if i % 4 else f"t-{secrets.token_hex(6)}"  # a quarter name tenants that do not exist
                path = f"/{t}/controller/v1/c-{secrets.token_hex(8)}"
                seen[c.get(path, headers={"authorization": f"GatewayToken {secrets.token_hex(24)}"}).status_code] += 1
        return seen

    with ThreadPoolExecutor(threads) as pool:
        return sum(pool.map(run, [count // threads] * threads), collections.Counter())


def test_unauthenticated_gateway_tokens_leave_memory_flat(tmp_path: Path) -> None:
    """25,000 DDI requests with random GatewayTokens: all 401, and the server's RSS grows by less than 10 MiB (a
    leak of 420 bytes per unknown token, the size of a cached entry, would pass it).

    The failed-authentication limit is off here, so that every request reaches the DDI caller lookup (with it on,
    all but the first 60 would be answered 429 before; the limit has its own test in test_hardening.py).
    """
    with live_server(tmp_path / "srv", {"BULKHEAD_AUTH_FAIL_LIMIT": "0"}) as srv:
        c = srv.client(srv.tenant(keyring=False))
        tenant = c.get("/api/v1/tenant").json()["name"]
        c.put("/api/v1/ddi", json={"auto_register": True, "rotate_gateway_token": True}).raise_for_status()
        assert srv.proc is not None
        assert _hammer(srv.url, tenant, 4000) == {401: 4000}  # warm up: pools, lazily imported code
        before = _tree_rss_kib(srv.proc.pid)
        started = time.monotonic()
        assert _hammer(srv.url, tenant, 25_000) == {401: 25_000}
        grown = _tree_rss_kib(srv.proc.pid) - before
        print(f"RSS before {before} KiB, grown by {grown} KiB over 25,000 unauthenticated DDI requests")
        assert grown < 10 * 1024, f"RSS grew by {grown} KiB over 25,000 unauthenticated requests"
        assert time.monotonic() - started < 600
        c.close()


def test_an_aborted_whole_file_download_counts_only_what_was_sent(server: LiveServer, tmp_path: Path) -> None:
    """A DDI client that reads 1 MiB of a 48 MiB artifact and hangs up is not counted for the whole file."""
    pki = make_pki(tmp_path / "pki")
    payload = tmp_path / "rootfs.img"
    payload.write_bytes(os.urandom(48 << 20))
    swu = signed_swu(tmp_path / "big.swu", pki, "9.0", {payload.name: payload}, Path("/opt"))
    c = server.client(server.tenant(ca=pki.ca))
    rel = c.post("/api/v1/releases", params={"compatible": "board-x"}, content=swu.read_bytes())
    assert rel.status_code == 201, rel.text
    name = f"ab-{uuid.uuid4().hex[:6]}"
    token = c.post("/api/v1/devices", json={"name": name, "compatible": "board-x", "groups": ["ab"]}).json()["target_token"]
    body = {"name": f"r-{uuid.uuid4().hex[:6]}", "release_id": rel.json()["id"], "target": {"groups": ["ab"]}}
    c.post("/api/v1/rollouts", json=body).raise_for_status()
    ddi = Ddi(server, c.get("/api/v1/tenant").json()["name"], name, {"authorization": f"TargetToken {token}"})
    dep = ddi.c.get(ddi.links()["deploymentBase"]["href"]).json()
    url = dep["deployment"]["chunks"][0]["artifacts"][0]["_links"]["download"]["href"]
    got = 0
    with ddi.c.stream("GET", url) as r:
        assert r.status_code == 200 and int(r.headers["content-length"]) == swu.stat().st_size
        for chunk in r.iter_raw(64 * 1024):
            got += len(chunk)
            if got >= 1 << 20:
                break
    # The counters reach the database in aggregate every few seconds; give them two flushes.
    served = _wait(lambda: c.get(f"/api/v1/devices/{name}").json()["bytes_served"], "the byte count")
    time.sleep(6)
    served = c.get(f"/api/v1/devices/{name}").json()["bytes_served"]
    # Counted as it goes out: what the kernel's socket buffers and the HTTP server's took before the hang-up was seen
    # counts too (up to 30 of the 48 MiB on a loaded CI machine), never the whole file.
    assert got <= served < swu.stat().st_size, (got, served, swu.stat().st_size)
    c.close()


def _events(c: httpx.Client, device: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = c.get(f"/api/v1/devices/{device}/events").json()
    return rows


def test_install_progress_is_installing_and_feedback_is_in_device_events(setup: tuple[httpx.Client, int, Ddi, str]) -> None:
    """What rauc-hawkbit sends during RAUC's install (proceeding + RAUC's progress) moves the action to installing;
    every feedback is in `device events`."""
    c, rel, ddi, name = setup
    _rollout(c, rel, type="forced")
    href = ddi.links()["deploymentBase"]["href"]
    action = href.split("/deploymentBase/")[1].split("?")[0]
    assert ddi.c.get(href).status_code == 200
    assert _action(c, name)["status"] == "downloading"
    # rauc-hawkbit-updater's words about the download keep it downloading ...
    assert ddi.feedback("deploymentBase", action, "proceeding", details=["Download complete. 3.10 MB/s"]).status_code == 200
    assert _action(c, name)["status"] == "downloading"
    # ... RAUC's progress (rauc-hawkbit: the description and {"percentage": N}) is the install.
    r = ddi.feedback("deploymentBase", action, "proceeding", details=["Installing"], progress={"percentage": 0})
    assert r.status_code == 200 and _action(c, name)["status"] == "installing"
    ddi.feedback("deploymentBase", action, "proceeding", details=["Checking bundle"], progress={"percentage": 20})
    assert _action(c, name)["status"] == "installing"
    done = ddi.feedback("deploymentBase", action, "closed", "success", details=["Rauc bundle update completed"])
    assert done.status_code == 200
    assert _action(c, name)["status"] == "success"
    events = _events(c, name)
    assert [e["phase"] for e in events] == ["success", "installing", "installing", "downloading", "downloading"]
    assert all(e["kind"] == "update" and e["release_id"] == rel for e in events)
    assert events[0]["details"]["messages"] == ["Rauc bundle update completed"]
    assert events[2]["details"]["progress"] == "0%" and events[2]["details"]["action_id"] == int(action)
    assert [e["seq"] for e in events] == sorted((e["seq"] for e in events), reverse=True)


def test_a_desired_release_without_rollout_is_offered_and_installed(setup: tuple[httpx.Client, int, Ddi, str]) -> None:
    """A release set on the device's group (no rollout) reaches the hawkBit client as a deploymentBase."""
    c, rel, ddi, name = setup
    assert "deploymentBase" not in ddi.root().get("_links", {})
    c.patch("/api/v1/groups/ddi/desired", json={"release_id": rel}).raise_for_status()
    href = _wait(lambda: ddi.links().get("deploymentBase", {}).get("href"), "the desired release to be offered")
    action = href.split("/deploymentBase/")[1].split("?")[0]
    dep = ddi.c.get(href).json()
    assert dep["id"] == action
    assert (dep["deployment"]["download"], dep["deployment"]["update"]) == ("forced", "forced")
    art = dep["deployment"]["chunks"][0]["artifacts"][0]
    assert dep["deployment"]["chunks"][0]["version"] == "2011.03-2" and art["size"] == GOOD.stat().st_size
    assert ddi.c.get(art["_links"]["download"]["href"]).content == GOOD.read_bytes()
    assert c.get(f"/api/v1/devices/{name}").json()["update"]["phase"] == "downloading"
    ddi.feedback("deploymentBase", action, "proceeding", details=["Installing"], progress={"percentage": 0})
    assert c.get(f"/api/v1/devices/{name}").json()["update"]["phase"] == "installing"
    assert ddi.feedback("deploymentBase", action, "closed", "success").status_code == 200
    dev = c.get(f"/api/v1/devices/{name}").json()
    assert dev["update"]["phase"] == "success" and dev["update"]["version"] == "2011.03-2"
    assert [e["phase"] for e in _events(c, name)] == ["success", "installing", "downloading"]
    root = _wait(lambda: "deploymentBase" not in (r := ddi.root()).get("_links", {}) and r, "the offer to end")
    assert root["_links"]["installedBase"]["href"] == f"{ddi.base}/installedBase/{action}"
    assert ddi.get(f"/installedBase/{action}").json()["deployment"]["chunks"][0]["version"] == "2011.03-2"
    assert ddi.feedback("deploymentBase", action, "proceeding").status_code == 410
    assert ddi.get(f"/deploymentBase/{action}").status_code == 410


def test_a_failed_desired_release_is_not_offered_again(setup: tuple[httpx.Client, int, Ddi, str]) -> None:
    c, rel, ddi, name = setup
    c.put(f"/api/v1/devices/{name}/desired-release", json={"release_id": rel}).raise_for_status()
    href = _wait(lambda: ddi.links().get("deploymentBase", {}).get("href"), "the desired release to be offered")
    action = href.split("/deploymentBase/")[1].split("?")[0]
    assert ddi.feedback("deploymentBase", action, "closed", "failure", details=["no space"]).status_code == 200
    assert c.get(f"/api/v1/devices/{name}").json()["update"]["phase"] == "failure"
    _wait(lambda: "deploymentBase" not in ddi.root().get("_links", {}), "the failed offer to end", timeout=5)
    assert ddi.get(f"/deploymentBase/{action}").status_code == 410
    assert ddi.get("/deploymentBase/999999999").status_code == 404  # neither an action nor a release of this device
    # A rollout still reaches it, and outranks the desired state.
    _rollout(c, rel, type="forced")
    assert int(ddi.links()["deploymentBase"]["href"].split("/deploymentBase/")[1].split("?")[0]) < (1 << 30)


def test_ddi_feedback_is_in_device_events(setup: tuple[httpx.Client, int, Ddi, str]) -> None:
    """`bulkhead device events NAME` shows a hawkBit client's feedback, as it shows an agent's reports."""
    c, rel, ddi, name = setup
    _rollout(c, rel, type="forced")
    href = ddi.links()["deploymentBase"]["href"]
    action = href.split("/deploymentBase/")[1].split("?")[0]
    ddi.c.get(href).raise_for_status()
    ddi.feedback("deploymentBase", action, "closed", "failure", details=["Failed to install software bundle."])
    events = _events(c, name)
    assert [(e["kind"], e["phase"], e["release_id"]) for e in events] == [
        ("update", "failure", rel),
        ("update", "downloading", rel),
    ]
    assert events[0]["details"]["messages"] == ["Failed to install software bundle."]
    assert events[0]["details"]["source"] == "ddi" and events[0]["details"]["finished"] == "failure"
