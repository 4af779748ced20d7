"""Web sign-in through a tenant's OpenID Connect provider, against a real provider (oidc-provider, tests/
oidc_provider.py) and the real server on both databases: the code flow with PKCE, accounts bound at their first
sign-in, refusals that say why and change nothing, and the admin-only settings."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import httpx

from tests.oidc_provider import oidc_provider, sign_in_at_provider
from tests.server.conftest import LiveServer
from tests.server.ui_fixtures import browser, csrf, login, tenant


def _audit(t_api: httpx.Client, action: str) -> list[dict[str, object]]:
    events: list[dict[str, object]] = t_api.get("/api/v1/audit", params={"action": action}).json()
    return events


def _start(b: httpx.Client, tenant_name: str) -> httpx.Response:
    r = b.get("/ui/oidc/start", params={"tenant": tenant_name, "next": "/ui/devices"})
    assert r.status_code == 303, r.text
    return r


def test_sign_in_through_the_tenants_provider_binds_the_account_and_refuses_strangers(server: LiveServer) -> None:
    t = tenant(server)
    t.user("alice", "operator")
    t.api.post("/api/v1/users", json={"name": "viewer1", "role": "viewer"}).raise_for_status()
    with oidc_provider(server.url + "/ui/oidc/callback", usernames={"impostor": "alice"}) as idp:
        body = {"issuer": idp.issuer, "client_id": idp.client_id, "client_secret": idp.client_secret}
        # Settings: admins only, checked, the secret never shown.
        bad = t.api.put("/api/v1/oidc", json={**body, "issuer": "http://idp.example.com"})
        assert bad.status_code == 400 and "https" in bad.json()["message"]
        assert t.api.put("/api/v1/oidc", json={**body, "default_role": "root"}).status_code == 422
        assert t.api.put("/api/v1/oidc", json={**body, "extra": 1}).status_code == 422
        assert t.api.get("/api/v1/oidc").status_code == 404
        r = t.api.put("/api/v1/oidc", json=body)
        assert r.status_code == 201, r.text
        shown = t.api.get("/api/v1/oidc").json()
        assert shown["issuer"] == idp.issuer and shown["client_secret_set"] is True
        assert idp.client_secret not in r.text + str(shown), "the secret is never shown"
        assert t.api.put("/api/v1/oidc", json={**body, "client_secret": None}).status_code == 200, "the secret stays"

        # The login page offers the tenant's single sign-on.
        b = browser(server)
        page = b.get("/ui/login", params={"tenant": t.name}).text
        assert f'href="/ui/oidc/start?tenant={t.name}' in page
        assert "has no single sign-on" in b.get("/ui/login", params={"tenant": "nobody-here"}).text

        # An existing user signs in: bound, session open, audited.
        start = _start(b, t.name)
        sent = parse_qs(urlsplit(start.headers["location"]).query)
        assert sent["code_challenge_method"] == ["S256"] and sent["state"][0] and sent["nonce"][0]
        back = sign_in_at_provider(b, start, "alice", idp.issuer)
        assert back.status_code == 303 and back.headers["location"] == "/ui/devices", back.text
        home = b.get("/ui/")
        assert home.status_code == 200 and "alice" in home.text
        logins = _audit(t.api, "user.login")
        assert any(e["actor"] == "user:alice (web)" and "oidc" in str(e["details"]) for e in logins), logins
        assert [e["subject"] for e in _audit(t.api, "user.identity.bind")] == ["alice"]

        # A second sign-in finds the binding; a different provider account claiming the same name does not get in.
        b2 = browser(server)
        assert sign_in_at_provider(b2, _start(b2, t.name), "alice", idp.issuer).status_code == 303
        b3 = browser(server)
        refused = sign_in_at_provider(b3, _start(b3, t.name), "impostor", idp.issuer)
        assert refused.status_code == 401 and "bound to another account" in refused.text
        assert b3.get("/ui/").status_code in (303, 307), "no session"

        # No account and no default role: refused, nothing created; with a default role the user is made.
        b4 = browser(server)
        refused = sign_in_at_provider(b4, _start(b4, t.name), "mallory", idp.issuer)
        assert refused.status_code == 401 and "there is no user &#39;mallory&#39;" in refused.text, refused.text
        assert "mallory" not in str(t.api.get("/api/v1/users").json())
        assert t.api.put("/api/v1/oidc", json={**body, "default_role": "viewer"}).status_code == 200
        assert sign_in_at_provider(b4, _start(b4, t.name), "mallory", idp.issuer).status_code == 303
        users = {u["name"]: u["role"] for u in t.api.get("/api/v1/users").json()}
        assert users["mallory"] == "viewer", "a new user gets the default role, never more"

        # Operators and viewers cannot change or read the settings.
        op = server.client(t.api.post("/api/v1/tokens", json={"name": "op", "user": "alice"}).json()["token"])
        assert op.put("/api/v1/oidc", json=body).status_code == 403 and op.get("/api/v1/oidc").status_code == 403
        assert {e["action"] for e in _audit(t.api, "oidc.")} == {"oidc.set"}
        assert t.api.delete("/api/v1/oidc").status_code == 204
        assert "has no single sign-on" in b.get("/ui/login", params={"tenant": t.name}).text


def test_a_callback_that_is_not_this_browsers_sign_in_opens_no_session(server: LiveServer) -> None:
    t = tenant(server)
    t.user("alice", "viewer")
    with oidc_provider(server.url + "/ui/oidc/callback") as idp:
        body = {"issuer": idp.issuer, "client_id": idp.client_id, "client_secret": idp.client_secret}
        t.api.put("/api/v1/oidc", json=body).raise_for_status()
        b = browser(server)
        r = b.get("/ui/oidc/callback", params={"code": "x", "state": "y"})
        assert r.status_code == 400 and "sign in again" in r.text, "no sign-in in progress in this browser"
        start = _start(b, t.name)
        r = b.get("/ui/oidc/callback", params={"code": "x", "state": "forged"})
        assert r.status_code == 400 and "does not belong" in r.text, "a state that is not this browser's"
        start = _start(b, t.name)
        state = parse_qs(urlsplit(start.headers["location"]).query)["state"][0]
        r = b.get("/ui/oidc/callback", params={"error": "access_denied", "error_description": "<b>no</b>", "state": state})
        assert r.status_code == 401 and "&lt;b&gt;no&lt;/b&gt;" in r.text, "the provider's refusal, escaped"
        start = _start(b, t.name)
        state = parse_qs(urlsplit(start.headers["location"]).query)["state"][0]
        r = b.get("/ui/oidc/callback", params={"code": "a-code-the-provider-never-issued", "state": state})
        assert r.status_code == 401 and "refused the code" in r.text
        assert b.get("/ui/").status_code in (303, 307) and not _audit(t.api, "user.login")
        assert b.get("/ui/oidc/start", params={"tenant": "no-such-tenant"}).status_code == 404


def test_admins_set_and_remove_single_sign_on_on_the_users_page(server: LiveServer) -> None:
    """The users page sets the provider through the same checks as the API (nothing stored on a refusal), shows
    the redirect URI to register and what was set, escaped; operators get neither the page nor the write."""
    t = tenant(server)
    t.user("ops", "operator")
    admin = login(server, t, "admin")
    page = admin.get("/ui/users").text
    assert "Off: users sign in with their password" in page and f"{server.url}/ui/oidc/callback" in page
    form = {"issuer": "https://idp.example.test/realms/<b>x</b>", "client_id": "bulkhead", "client_secret": "s3cret",
            "username_claim": "preferred_username", "default_role": ""}  # fmt: skip
    assert admin.post("/ui/users/oidc", data=form).status_code == 403, "no CSRF token"
    bad = admin.post("/ui/users/oidc", data={**form, "issuer": "http://idp.example.test", "csrf": csrf(admin)})
    assert bad.status_code == 400 and "https" in bad.text
    assert admin.post("/ui/users/oidc", data={**form, "client_id": "", "csrf": csrf(admin)}).status_code == 400
    assert t.api.get("/api/v1/oidc").status_code == 404, "refused forms stored nothing"
    r = admin.post("/ui/users/oidc", data={**form, "csrf": csrf(admin)})
    assert r.status_code == 303, r.text
    shown = t.api.get("/api/v1/oidc").json()
    assert (shown["issuer"], shown["default_role"], shown["updated_by"]) == (form["issuer"], None, "user:admin (web)")
    page = admin.get("/ui/users").text
    assert "&lt;b&gt;x&lt;/b&gt;" in page and "<b>x</b>" not in page and "are refused" in page
    assert "s3cret" not in page, "the secret is never shown"
    ops = login(server, t, "ops")
    assert ops.get("/ui/users").status_code == 403
    assert ops.post("/ui/users/oidc/delete", data={"csrf": csrf(ops)}).status_code == 403
    assert admin.post("/ui/users/oidc/delete", data={"csrf": csrf(admin)}).status_code == 303
    assert t.api.get("/api/v1/oidc").status_code == 404
    assert [e["actor"] for e in _audit(t.api, "oidc.")] == ["user:admin (web)", "user:admin (web)"]
