"""The web UI over HTTP: sign-in, sessions, CSRF, roles, escaping, audit (real server, SQLite and PostgreSQL)."""

from __future__ import annotations

import re

import httpx

from tests.server.conftest import LiveServer
from tests.server.test_release_sboms import docs as sbom_docs
from tests.server.ui_fixtures import PASSWORD, browser, csrf, device, login, release, tenant, unique


def test_root_sends_a_browser_to_the_overview_and_a_visitor_to_the_login(server: LiveServer) -> None:
    b = browser(server)
    r = b.get("/")
    assert r.status_code == 303 and r.headers["location"] == "/ui/"
    r = b.get("/ui/devices")
    assert r.status_code == 303 and r.headers["location"] == "/ui/login?next=/ui/devices"
    page = b.get("/ui/login")
    assert page.status_code == 200 and 'name="password"' in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert b.get("/ui/devices", headers={"hx-request": "true"}).headers["hx-redirect"].startswith("/ui/login")


def test_sign_in_sets_a_hardened_session_cookie_secure_behind_tls(server: LiveServer) -> None:
    t = tenant(server)
    b = browser(server)
    form = {"tenant": t.name, "user": "admin", "password": PASSWORD, "next": "/ui/devices"}
    r = b.post("/ui/login", data=form)
    assert r.status_code == 303 and r.headers["location"] == "/ui/devices"
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie and "path=/" in cookie and "secure" not in cookie
    r = browser(server).post("/ui/login", data=form, headers={"x-forwarded-proto": "https"})
    assert "; secure" in r.headers["set-cookie"].lower()
    assert b.get("/ui/").status_code == 200
    # The token is a server-side session's: its value is not the user's name or anything guessable
    assert len(b.cookies["bulkhead_session"]) >= 40
    # Nobody signs a browser in from another site's page (login CSRF)
    r = browser(server).post("/ui/login", data=form, headers={"origin": "http://evil.example"})
    assert r.status_code == 403 and "set-cookie" not in r.headers
    # An open redirect is not possible through `next`
    r = browser(server).post("/ui/login", data={**form, "next": "//evil.example/"})
    assert r.headers["location"] == "/ui/"


def test_wrong_password_and_unknown_user_get_the_same_answer_and_change_nothing(server: LiveServer) -> None:
    t = tenant(server)
    for user, password in [("admin", "wrong password!"), ("nobody", PASSWORD)]:
        r = browser(server).post("/ui/login", data={"tenant": t.name, "user": user, "password": password})
        assert r.status_code == 401 and "wrong tenant, user name or password" in r.text
        assert "bulkhead_session" not in r.headers.get("set-cookie", "")
    # A user with no password (API tokens only) cannot sign in
    t.api.post("/api/v1/users", json={"name": "ci", "role": "admin"}).raise_for_status()
    r = browser(server).post("/ui/login", data={"tenant": t.name, "user": "ci", "password": ""})
    assert r.status_code == 401


def test_failed_sign_ins_are_limited_per_account(server: LiveServer) -> None:
    t = tenant(server)
    t.user("target", "viewer")
    for _ in range(10):
        r = browser(server).post("/ui/login", data={"tenant": t.name, "user": "target", "password": "guess guess guess"})
        assert r.status_code == 401
    # Past the limit even the right password waits: the guesser cannot tell when it guessed right
    r = browser(server).post("/ui/login", data={"tenant": t.name, "user": "target", "password": PASSWORD})
    assert r.status_code == 429 and int(r.headers["retry-after"]) > 0 and "too many failed sign-ins" in r.text
    # Other accounts are not locked by it
    assert login(server, t, "admin").get("/ui/").status_code == 200


def test_logout_ends_the_session_on_the_server(server: LiveServer) -> None:
    t = tenant(server)
    b = login(server, t, "admin")
    stolen = b.cookies["bulkhead_session"]
    assert b.post("/ui/logout", data={"csrf": csrf(b)}).status_code == 303
    replay = browser(server)
    replay.cookies.set("bulkhead_session", stolen)
    assert replay.get("/ui/").status_code == 303  # the copied cookie no longer signs anyone in


def test_password_change_and_admin_reset_end_every_session(server: LiveServer) -> None:
    t = tenant(server)
    t.user("ops", "operator")
    first, second = login(server, t, "ops"), login(server, t, "ops")
    r = first.post(
        "/ui/account/password", data={"csrf": csrf(first), "current": "not it at all", "new": "x" * 12, "repeat": "x" * 12}
    )
    assert r.status_code == 401 and "current password is wrong" in r.text
    r = first.post("/ui/account/password", data={"csrf": csrf(first), "current": PASSWORD, "new": "short", "repeat": "short"})
    assert r.status_code == 400 and "at least 10 characters" in r.text
    new = "a new long passphrase"
    r = first.post("/ui/account/password", data={"csrf": csrf(first), "current": PASSWORD, "new": new, "repeat": new})
    assert r.status_code == 200 and "password was changed" in r.text
    assert first.get("/ui/").status_code == 200  # this browser got a new session
    assert second.get("/ui/").status_code == 303  # the other one ended
    login(server, t, "ops", new)
    # An admin resets it (the CLI's API call): every session of the user ends
    third = login(server, t, "ops", new)
    out = t.api.put("/api/v1/users/ops/password", json={"password": "reset by the admin"}).json()
    assert out["sessions_ended"] >= 2 and third.get("/ui/").status_code == 303
    r = t.api.put("/api/v1/users/ops/password", json={"password": "short"})
    assert r.status_code == 400 and r.json()["error"] == "invalid"
    # Removing the user ends its sessions too
    fourth = login(server, t, "ops", "reset by the admin")
    assert t.api.delete("/api/v1/users/ops").status_code == 200
    assert fourth.get("/ui/").status_code == 303
    audit = {e["action"] for e in t.api.get("/api/v1/audit", params={"action": "user."}).json()}
    assert {"user.login", "user.password.change", "user.password.reset", "user.delete"} <= audit


def test_writes_need_the_session_csrf_token_and_are_audited_with_the_user(server: LiveServer) -> None:
    t = tenant(server)
    t.user("ops", "operator")
    d = device(t, unique("dev"))
    dev_id = t.api.get(f"/api/v1/devices/{d.name}").json()["id"]
    b = login(server, t, "ops")
    token = csrf(b, f"/ui/devices/{dev_id}")
    for forged in [{}, {"csrf": "not-the-token"}, {"csrf": csrf(login(server, t, "admin"))}]:
        r = b.post(f"/ui/devices/{dev_id}/disable", data=forged)
        assert r.status_code == 403 and "CSRF" in r.text, r.text
    r = b.post(f"/ui/devices/{dev_id}/disable", data={"csrf": token}, headers={"origin": "http://evil.example"})
    assert r.status_code == 403 and "another site" in r.text
    assert t.api.get(f"/api/v1/devices/{d.name}").json()["status"] == "active"  # nothing changed
    r = b.post(f"/ui/devices/{dev_id}/disable", data={"csrf": token})
    assert r.status_code == 303
    assert t.api.get(f"/api/v1/devices/{d.name}").json()["status"] == "disabled"
    # The same token in a header (htmx requests)
    r = b.post(f"/ui/devices/{dev_id}/enable", headers={"x-csrf-token": token, "hx-request": "true"})
    assert r.status_code == 303 and t.api.get(f"/api/v1/devices/{d.name}").json()["status"] == "active"
    r = b.post(f"/ui/devices/{dev_id}/tags", data={"csrf": token, "add": "line-2 lab", "remove": ""})
    assert set(t.api.get(f"/api/v1/devices/{d.name}").json()["tags"]) == {"line-2", "lab"}
    log = b.get("/ui/audit", params={"action": "device."}).text
    assert "device.disable" in log and "user:ops (web)" in log
    events = t.api.get("/api/v1/audit", params={"action": "device."}).json()
    assert {(e["action"], e["actor"]) for e in events} >= {
        ("device.disable", "user:ops (web)"),
        ("device.enable", "user:ops (web)"),
        ("device.tag", "user:ops (web)"),
    }


def test_a_viewer_sees_no_write_controls_and_a_forged_write_is_refused(server: LiveServer) -> None:
    t = tenant(server)
    t.user("watcher", "viewer")
    rel = release(t)
    d = device(t, unique("dev"))
    dev_id = t.api.get(f"/api/v1/devices/{d.name}").json()["id"]
    r = t.api.post("/api/v1/rollouts", json={"name": "r1", "release_id": rel, "target": {"groups": ["lab"]}})
    assert r.status_code == 201, r.text
    rid = r.json()["id"]
    v = login(server, t, "watcher")
    pages = [f"/ui/devices/{dev_id}", f"/ui/rollouts/{rid}", f"/ui/rollouts/{rid}/progress", "/ui/", "/ui/devices"]
    for page in pages:
        text = v.get(page).text
        assert "hx-post" not in text and "/disable" not in text and "/pause" not in text, page
    assert v.get("/ui/users").status_code == 403 and v.get("/ui/audit").status_code == 403
    token = csrf(v)
    r = v.post(f"/ui/rollouts/{rid}/pause", data={"csrf": token})
    assert r.status_code == 403 and "needs role &#39;operator&#39;" in r.text
    r = v.post(f"/ui/devices/{dev_id}/disable", data={"csrf": token})
    assert r.status_code == 403
    assert t.api.get(f"/api/v1/rollouts/{rid}").json()["status"] == "running"
    assert t.api.get(f"/api/v1/devices/{d.name}").json()["status"] == "active"
    # An operator sees them and may use them; the htmx answer is the progress partial
    t.user("ops", "operator")
    o = login(server, t, "ops")
    assert 'hx-post="/ui/rollouts/' in o.get(f"/ui/rollouts/{rid}").text
    r = o.post(f"/ui/rollouts/{rid}/pause", headers={"x-csrf-token": csrf(o), "hx-request": "true"})
    assert r.status_code == 200 and 'id="resume"' in r.text and "paused" in r.text
    assert t.api.get(f"/api/v1/rollouts/{rid}").json()["status"] == "paused"


def test_hostile_html_from_devices_is_shown_as_text(server: LiveServer) -> None:
    t = tenant(server)
    evil = "<script>alert(1)</script><img src=x onerror=alert(2)>"
    boot = t.api.post("/api/v1/bootstrap-tokens", json={"name": "b"}).json()["token"]
    r = t.api.post(
        "/device/v1/enroll",
        json={"bootstrap_token": boot, "name": "evil-1", "compatible": f"Test {evil}", "attributes": {evil: evil}},
    )
    assert r.status_code == 201, r.text
    dev = {"authorization": f"Bearer {r.json()['credential']}"}
    inventory = {"os_version": evil, "packages": {"format": "dpkg", "count": 1, "packages": {evil: evil}}}
    ev = [{"seq": 1, "kind": "update", "phase": "installing", "details": {"message": evil}}]
    t.api.post("/device/v1/reports", json={"events": ev, "inventory": inventory}, headers=dev).raise_for_status()
    dev_id = t.api.get("/api/v1/devices/evil-1").json()["id"]
    b = login(server, t, "admin")
    for page in ["/ui/", "/ui/devices", f"/ui/devices/{dev_id}", f"/ui/devices/{dev_id}/packages?q=script"]:
        text = b.get(page).text
        assert "<script>alert" not in text and "<img src=x" not in text, page
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text, page


def test_device_list_filters_and_pages_on_the_server(server: LiveServer) -> None:
    t = tenant(server)
    for i in range(3):
        device(t, f"line-{i}", "line")
    device(t, "canary-0", "canary")
    t.api.post("/api/v1/devices/line-1/tags", json={"add": ["blue"]})
    b = login(server, t, "admin")

    def names(html: str) -> list[str]:
        return re.findall(r'<a href="/ui/devices/\d+">([^<]+)</a>', html)

    assert sorted(names(b.get("/ui/devices").text)) == ["canary-0", "line-0", "line-1", "line-2"]
    assert names(b.get("/ui/devices", params={"group": "canary"}).text) == ["canary-0"]
    assert names(b.get("/ui/devices", params={"name": "line-"}).text) == ["line-0", "line-1", "line-2"]
    assert names(b.get("/ui/devices", params={"status": "disabled"}).text) == []
    # htmx asks for the rows only
    partial = b.get("/ui/devices", params={"name": "canary"}, headers={"hx-request": "true"}).text
    assert names(partial) == ["canary-0"] and "<html" not in partial
    r = b.get("/ui/devices", params={"cursor": "bm90LWEtY3Vyc29y"})
    assert r.status_code == 400 and "cursor" in r.text


def test_device_list_pages_follow_the_keyset_cursor(server: LiveServer) -> None:
    t = tenant(server)
    boot = t.api.post("/api/v1/bootstrap-tokens", json={"name": "many"}).json()["token"]
    for i in range(55):
        body = {"bootstrap_token": boot, "name": f"d{i:03}", "compatible": "Test Config"}
        t.api.post("/device/v1/enroll", json=body).raise_for_status()
    b = login(server, t, "admin")
    first = b.get("/ui/devices").text
    m = re.search(r'href="(/ui/devices\?[^"]*cursor=[^"]+)" rel="next"', first)
    assert m, "the first page links to the next"
    second = b.get(m.group(1).replace("&amp;", "&")).text
    shown = re.findall(r'<a href="/ui/devices/\d+">(d\d+)</a>', first) + re.findall(
        r'<a href="/ui/devices/\d+">(d\d+)</a>', second
    )
    assert sorted(shown) == [f"d{i:03}" for i in range(55)] and 'rel="next"' not in second


def test_admin_manages_users_from_the_ui(server: LiveServer) -> None:
    t = tenant(server)
    b = login(server, t, "admin")
    token = csrf(b, "/ui/users")
    r = b.post("/ui/users", data={"csrf": token, "name": "newop", "role": "operator", "password": "short"})
    assert r.status_code == 400 and "at least 10" in r.text
    assert "newop" not in {u["name"] for u in t.api.get("/api/v1/users").json()}  # nothing half-created
    r = b.post("/ui/users", data={"csrf": token, "name": "newop", "role": "operator", "password": "a fine password"})
    assert r.status_code == 303
    assert login(server, t, "newop", "a fine password").get("/ui/").status_code == 200
    assert b.post("/ui/users/newop/password", data={"csrf": token, "password": "reset password!"}).status_code == 303
    login(server, t, "newop", "reset password!")
    assert b.post("/ui/users/newop/delete", data={"csrf": token}).status_code == 303
    r = browser(server).post("/ui/login", data={"tenant": t.name, "user": "newop", "password": "reset password!"})
    assert r.status_code == 401
    actors = {(e["action"], e["actor"]) for e in t.api.get("/api/v1/audit", params={"action": "user."}).json()}
    assert ("user.create", "user:admin (web)") in actors and ("user.delete", "user:admin (web)") in actors


def test_release_and_rollout_pages(server: LiveServer) -> None:
    t = tenant(server)
    rel = release(t)
    device(t, unique("dev"))
    r = t.api.post("/api/v1/rollouts", json={"name": "r-pages", "release_id": rel, "target": {"groups": ["lab"]}})
    rid = r.json()["id"]
    b = login(server, t, "admin")
    assert "r-pages" in b.get("/ui/rollouts").text and "r-pages" in b.get("/ui/").text
    page = b.get(f"/ui/releases/{rel}").text
    assert "Signer" in page and "No SBOM attached" in page
    assert b.get(f"/ui/releases/{rel}/sbom").status_code == 404
    spdx, _cdx = sbom_docs("ui-1")  # bytes no other test stores (the store keeps one copy per content)
    t.api.put(f"/api/v1/releases/{rel}/sbom", content=spdx).raise_for_status()
    link = re.search(r'href="(/ui/releases/\d+/sbom\?format=spdx)" download', b.get(f"/ui/releases/{rel}").text)
    assert link, "the release page links its SBOM"
    got = b.get(link.group(1))
    assert got.status_code == 200 and got.content == spdx and "attachment" in got.headers["content-disposition"]
    assert browser(server).get(link.group(1)).status_code == 303  # not without a session
    dev_id = t.api.get("/api/v1/devices").json()[0]["id"]
    card = b.get(f"/ui/devices/{dev_id}/identity").text
    assert 'id="device-status"' in card and "<html" not in card
    progress = b.get(f"/ui/rollouts/{rid}/progress").text
    assert "of 1 devices succeeded" in progress and "<html" not in progress
    assert b.get("/ui/rollouts/999999").status_code == 404


def test_forms_are_bounded_and_must_be_urlencoded(server: LiveServer) -> None:
    t = tenant(server)
    b = login(server, t, "admin")
    r = b.post("/ui/account/password", content=b"x" * (70 * 1024), headers={"content-type": "application/x-www-form-urlencoded"})
    assert r.status_code == 413
    r = b.post("/ui/account/password", json={"csrf": "x"})
    assert r.status_code == 400
    assert isinstance(b, httpx.Client)


def test_an_admin_asks_for_a_factory_reset_after_ticking_the_box_and_may_withdraw_it(server: LiveServer) -> None:
    t = tenant(server)
    t.user("ops", "operator")
    d = device(t, unique("dev"))
    dev_id = t.api.get(f"/api/v1/devices/{d.name}").json()["id"]
    ops = login(server, t, "ops")
    assert "/factory-reset" not in ops.get(f"/ui/devices/{dev_id}").text  # an operator has no such button
    r = ops.post(f"/ui/devices/{dev_id}/factory-reset", data={"csrf": csrf(ops), "confirm": "on"})
    assert r.status_code == 403
    admin = login(server, t, "admin")
    page = admin.get(f"/ui/devices/{dev_id}").text
    assert f"/ui/devices/{dev_id}/factory-reset" in page and 'name="confirm" required' in page
    token = csrf(admin, f"/ui/devices/{dev_id}")
    r = admin.post(f"/ui/devices/{dev_id}/factory-reset", data={"csrf": token})  # the box not ticked
    assert r.status_code == 400 and "tick the box" in r.text
    assert "factory_reset" not in d.state()
    r = admin.post(f"/ui/devices/{dev_id}/factory-reset", data={"csrf": token, "confirm": "on"})
    assert r.status_code == 303 and d.state()["factory_reset"]["requested_at"]
    assert 'id="factory-reset"' in admin.get(f"/ui/devices/{dev_id}/identity").text
    assert "factory-reset-cancel" in admin.get(f"/ui/devices/{dev_id}").text
    r = admin.post(f"/ui/devices/{dev_id}/factory-reset-cancel", data={"csrf": token})
    assert r.status_code == 303 and "factory_reset" not in d.state()
    actions = [e["action"] for e in t.api.get("/api/v1/audit", params={"action": "device.factory"}).json()]
    assert sorted(actions) == ["device.factory_reset", "device.factory_reset_cancel"]
