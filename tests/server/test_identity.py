"""Device identity and revocation: no takeover by enrollment, credential reset and rotation, signed URLs bound
to the credential epoch and canonical only, API token and user removal, device disable/enable/delete."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import RAUC_DATA
from tests.server.conftest import LiveServer

GOOD = RAUC_DATA / "good-verity-bundle.raucb"


def enroll(c: httpx.Client, token: str, name: str, compatible: str = "Test Config") -> httpx.Response:
    return c.post("/device/v1/enroll", json={"bootstrap_token": token, "name": name, "compatible": compatible})


def bootstrap(c: httpx.Client, name: str, **extra: Any) -> str:
    r = c.post("/api/v1/bootstrap-tokens", json={"name": name, **extra})
    r.raise_for_status()
    return str(r.json()["token"])


def state(server: LiveServer, credential: str) -> httpx.Response:
    with server.client(credential) as d:
        return d.get("/device/v1/state")


def within(seconds: float, check: Callable[[], bool]) -> None:
    """`check` holds within `seconds` (looked at every 50 ms)."""
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"not within {seconds} s"
        time.sleep(0.05)


def audited(c: httpx.Client, action: str, subject: str) -> bool:
    return any(e["subject"] == subject for e in c.get("/api/v1/audit", params={"action": action}).json())


# -- no takeover by enrollment ---------------------------------------------------------------------


def test_enrolling_over_an_active_device_is_refused_and_the_device_keeps_working(server: LiveServer) -> None:
    admin = server.tenant()
    with server.client(admin) as c:
        real = enroll(c, bootstrap(c, "line"), "victim").json()["credential"]
        other = bootstrap(c, "other")
        r = enroll(c, other, "victim")
        assert r.status_code == 409, r.text
        assert r.json()["error"] == "conflict" and "reset-credential victim" in r.json()["message"]
        assert "credential" not in r.json()
        # the refused attempt used nothing up and changed nothing
        assert [b["uses"] for b in c.get("/api/v1/bootstrap-tokens").json() if b["name"] == "other"] == [0]
        assert c.get("/api/v1/devices/victim").json()["status"] == "active"
    assert state(server, real).status_code == 200


def test_enrolling_over_a_pending_device_is_refused_and_it_stays_pending(server: LiveServer) -> None:
    admin = server.tenant()
    with server.client(admin) as c:
        real = enroll(c, bootstrap(c, "gate", requires_approval=True), "waiting").json()
        assert real["status"] == "pending"
        r = enroll(c, bootstrap(c, "open"), "waiting")  # a token without approval must not activate it
        assert r.status_code == 409, r.text
        assert c.get("/api/v1/devices/waiting").json()["status"] == "pending"
    r = state(server, real["credential"])
    assert r.status_code == 403 and "approve" in r.json()["message"]  # still its own credential, still pending


def test_enrolling_over_a_provisioned_ddi_device_is_refused(server: LiveServer) -> None:
    admin = server.tenant()
    with server.client(admin) as c:
        tenant = c.get("/api/v1/tenant").json()["name"]
        prov = c.post("/api/v1/devices", json={"name": "ddi-1", "compatible": "Test Config"}).json()
        r = enroll(c, bootstrap(c, "b"), "ddi-1")
        assert r.status_code == 409, r.text
    with httpx.Client(base_url=server.url) as d:
        r = d.get(f"/{tenant}/controller/v1/ddi-1", headers={"authorization": f"TargetToken {prov['target_token']}"})
        assert r.status_code == 200, r.text


# -- credential reset and rotation -----------------------------------------------------------------


def test_reset_credential_allows_exactly_one_reenrollment_and_respects_approval(server: LiveServer) -> None:
    admin = server.tenant()
    with server.client(admin) as c:
        old = enroll(c, bootstrap(c, "plain"), "lost-1").json()["credential"]
        gated = bootstrap(c, "gated", requires_approval=True)
        r = c.post("/api/v1/devices/lost-1/reset-credential")
        assert r.status_code == 200, r.text
        assert r.json()["reenroll_allowed"] is True and r.json()["credential"] is None
        assert audited(c, "device.reset_credential", "lost-1")
        within(1.0, lambda: state(server, old).status_code == 401)
        again = enroll(c, gated, "lost-1")
        assert again.status_code == 201 and again.json()["status"] == "pending"
        events = [e for e in c.get("/api/v1/audit", params={"action": "device.enroll"}).json() if e["subject"] == "lost-1"]
        assert [e["details"]["reenroll"] for e in events] == [True, False]  # newest first
        second = enroll(c, bootstrap(c, "third"), "lost-1")
        assert second.status_code == 409  # once only
        new = again.json()["credential"]
        r = state(server, new)
        assert r.status_code == 403 and "approve" in r.json()["message"]
        c.post("/api/v1/devices/lost-1/approve").raise_for_status()
        assert state(server, new).status_code == 200
        assert state(server, old).status_code == 401


def test_reset_credential_of_a_provisioned_device_issues_its_new_token(server: LiveServer) -> None:
    admin = server.tenant()
    with server.client(admin) as c:
        tenant = c.get("/api/v1/tenant").json()["name"]
        old = c.post("/api/v1/devices", json={"name": "ddi-2", "compatible": "Test Config"}).json()["target_token"]
        r = c.post("/api/v1/devices/ddi-2/reset-credential").json()
        assert r["reenroll_allowed"] is False and r["credential"].startswith("bhd_")
        assert enroll(c, bootstrap(c, "b"), "ddi-2").status_code == 409  # still not enrollable

    def poll(token: str) -> int:
        with httpx.Client(base_url=server.url) as d:
            return d.get(f"/{tenant}/controller/v1/ddi-2", headers={"authorization": f"TargetToken {token}"}).status_code

    within(1.0, lambda: poll(old) == 401)
    assert poll(r["credential"]) == 200


def _with_release(server: LiveServer, c: httpx.Client, device: str) -> None:
    rel = c.post("/api/v1/releases", content=GOOD.read_bytes())
    assert rel.status_code in (201, 409), rel.text
    rid = rel.json()["id"] if rel.status_code == 201 else c.get("/api/v1/releases").json()[0]["id"]
    c.put(f"/api/v1/devices/{device}/desired-release", json={"release_id": rid}).raise_for_status()


def signed_url(server: LiveServer, credential: str) -> str:
    r = state(server, credential)
    assert r.status_code == 200, r.text
    return str(r.json()["desired"]["release"]["signed_url"])


def fetch(url: str) -> int:
    return httpx.get(url, headers={"range": "bytes=0-3"}).status_code


def rotate(server: LiveServer, credential: str) -> httpx.Response:
    with server.client(credential) as d:
        return d.post("/device/v1/credential/rotate")


def test_rotation_replaces_the_credential_and_its_signed_urls(server: LiveServer) -> None:
    admin = server.tenant()
    with server.client(admin) as c:
        old = enroll(c, bootstrap(c, "b"), "rot-1").json()["credential"]
        _with_release(server, c, "rot-1")
    old_url = signed_url(server, old)
    assert fetch(old_url) == 206
    r = rotate(server, old)
    assert r.status_code == 200, r.text
    new = r.json()["credential"]
    assert new != old and new.startswith("bhd_") and r.json()["name"] == "rot-1"
    within(1.0, lambda: fetch(old_url) == 403)  # URLs of the old epoch die at once
    # the old credential works until the device first uses the new one (a lost answer does not lock it out)
    assert state(server, old).status_code == 200
    assert fetch(signed_url(server, new)) == 206
    within(1.0, lambda: state(server, old).status_code == 401)
    assert state(server, new).status_code == 200
    with server.client(admin) as c:
        assert audited(c, "device.rotate_credential", "rot-1")
        r = c.post("/device/v1/credential/rotate")  # a user's token is not a device
        assert r.status_code == 403


def test_a_rotation_whose_answer_was_lost_is_repeated_with_the_old_credential(server: LiveServer) -> None:
    admin = server.tenant()
    with server.client(admin) as c:
        old = enroll(c, bootstrap(c, "b"), "rot-2").json()["credential"]
    lost = rotate(server, old).json()["credential"]  # the device never saw this answer
    again = rotate(server, old)
    assert again.status_code == 200, again.text
    new = again.json()["credential"]
    within(1.0, lambda: state(server, lost).status_code == 401)  # the unconfirmed one is dropped
    assert state(server, new).status_code == 200
    within(1.0, lambda: state(server, old).status_code == 401)
    assert rotate(server, old).status_code == 401


# -- signed URLs -------------------------------------------------------------------------------------


def test_signed_urls_accept_only_their_canonical_form(server: LiveServer) -> None:
    admin = server.tenant()
    with server.client(admin) as c:
        cred = enroll(c, bootstrap(c, "b"), "canon-1").json()["credential"]
        _with_release(server, c, "canon-1")
    url = signed_url(server, cred)
    assert fetch(url) == 206
    # the same device id spelled differently: d=01, d=+1
    assert fetch(re.sub(r"([?&])d=", r"\g<1>d=0", url)) == 403
    assert fetch(re.sub(r"([?&])d=", r"\g<1>d=%2B", url)) == 403
    base, query = url.split("?", 1)
    params = dict(p.split("=", 1) for p in query.split("&"))
    assert set(params) == {"d", "e", "k", "s"}

    def variant(**changed: str) -> str:
        return base + "?" + "&".join(f"{k}={changed.get(k, v)}" for k, v in params.items())

    refused = [
        variant(d="0" + params["d"]),  # leading zero
        variant(d="+" + params["d"]),  # plus sign
        variant(d="%2B" + params["d"]),  # an encoded plus sign
        variant(d="%20" + params["d"]),  # leading whitespace
        variant(d=params["d"] + "%20"),  # trailing whitespace
        variant(e="0" + params["e"]),
        variant(k="0" + params["k"]),
        variant(k="+" + params["k"]),
        variant(s=params["s"].upper()),
        url + "&d=" + params["d"],  # a parameter twice
        url + "&x=1",  # an unknown parameter
        base + "?" + re.sub(r"&k=\d+", "", query),  # no epoch
        variant(d="٣"),  # a non-ASCII digit
        variant(e="99999999999999999999"),  # beyond 64 bits
    ]
    for u in refused:
        r = httpx.get(u)
        assert r.status_code == 403, (u, r.status_code)
        assert r.json()["error"] == "forbidden"
    assert fetch(url) == 206


def test_signed_query_parser_and_epoch_binding() -> None:
    from bulkhead.server.security import parse_signed_query, sign_url, verify_url

    secret, sha = b"k" * 32, "ab" * 32
    query = sign_url(secret, sha, 7, 3, 60, now=1_000_000.0)
    p = parse_signed_query(query)
    assert p is not None and (p.device_id, p.epoch, p.expires) == (7, 3, 1_000_060)
    assert verify_url(secret, sha, p, now=1_000_000.0)
    assert not verify_url(secret, sha, p, now=1_000_061.0)  # expired
    forged = parse_signed_query(query.replace("k=3", "k=4"))  # another epoch: the signature does not match
    assert forged is not None and not verify_url(secret, sha, forged, now=1_000_000.0)
    for bad in (
        "",
        "d=7",
        query + "&d=7",
        query.replace("d=7", "d=07"),
        query.replace("d=7", "d=+7"),
        query.replace("d=7", "d= 7"),
        query.replace("d=7", "d=7\n"),
        query.replace("d=7", "d=\u0667"),
        query.replace("d=7", "d"),
        query.replace("&", ";"),
        query + "&",
        query.replace("d=7", "d=9223372036854775808"),
    ):
        assert parse_signed_query(bad) is None, bad
    assert parse_signed_query(query.replace("d=7", "d=9223372036854775807")) is not None


# -- lifecycle: devices ------------------------------------------------------------------------------


def test_disable_enable_and_delete_a_device(server: LiveServer) -> None:
    admin = server.tenant()
    with server.client(admin) as c:
        cred = enroll(c, bootstrap(c, "b"), "life-1").json()["credential"]
        _with_release(server, c, "life-1")
        rid = c.get("/api/v1/devices/life-1").json()["desired_release_id"]
        url = signed_url(server, cred)
        bundle = f"/device/v1/releases/{rid}/bundle"
        with server.client(cred) as d:
            assert d.get(bundle, headers={"range": "bytes=0-3"}).status_code == 206
        r = c.post("/api/v1/devices/life-1/disable")
        assert r.status_code == 200 and r.json()["status"] == "disabled", r.text
        assert audited(c, "device.disable", "life-1")
        within(1.0, lambda: state(server, cred).status_code == 403)
        r = state(server, cred)
        assert "disabled" in r.json()["message"] and "bulkhead device enable life-1" in r.json()["message"]
        with server.client(cred) as d:
            r = d.get(bundle, headers={"range": "bytes=0-3"})
            assert r.status_code == 403 and "disabled" in r.json()["message"]
            assert d.post("/device/v1/reports", json={"events": []}).status_code == 403
            assert d.post("/device/v1/credential/rotate").status_code == 403
        assert fetch(url) == 403
        r = c.post("/api/v1/devices/life-1/enable")
        assert r.status_code == 200 and r.json()["status"] == "active"
        assert audited(c, "device.enable", "life-1")
        within(1.0, lambda: state(server, cred).status_code == 200)
        assert fetch(url) == 403  # URLs handed out before the disable stay dead
        assert fetch(signed_url(server, cred)) == 206
        assert c.post("/api/v1/devices/life-1/enable").status_code == 409  # not disabled

        r = c.delete("/api/v1/devices/life-1")
        assert r.status_code == 200 and r.json() == {"id": r.json()["id"], "name": "life-1", "deleted": True}
        assert audited(c, "device.delete", "life-1")
        within(1.0, lambda: state(server, cred).status_code == 401)
        assert c.get("/api/v1/devices/life-1").status_code == 404
        assert c.delete("/api/v1/devices/life-1").status_code == 404
        assert enroll(c, bootstrap(c, "again"), "life-1").status_code == 201  # the name is free again


def test_a_disabled_ddi_device_is_refused_until_enabled(server: LiveServer) -> None:
    admin = server.tenant()
    with server.client(admin) as c:
        tenant = c.get("/api/v1/tenant").json()["name"]
        token = c.post("/api/v1/devices", json={"name": "ddi-3", "compatible": "Test Config"}).json()["target_token"]

        def poll() -> int:
            with httpx.Client(base_url=server.url) as d:
                return d.get(f"/{tenant}/controller/v1/ddi-3", headers={"authorization": f"TargetToken {token}"}).status_code

        assert poll() == 200
        c.post("/api/v1/devices/ddi-3/disable").raise_for_status()
        within(1.0, lambda: poll() == 403)
        c.post("/api/v1/devices/ddi-3/enable").raise_for_status()
        within(1.0, lambda: poll() == 200)


def test_a_pending_device_is_deleted_not_disabled(server: LiveServer) -> None:
    admin = server.tenant()
    with server.client(admin) as c:
        enroll(c, bootstrap(c, "g", requires_approval=True), "p-1").raise_for_status()
        r = c.post("/api/v1/devices/p-1/disable")
        assert r.status_code == 409 and "delete" in r.json()["message"]


def test_device_lifecycle_needs_the_right_role(server: LiveServer) -> None:
    admin = server.tenant()
    with server.client(admin) as c:
        enroll(c, bootstrap(c, "b"), "r-1").raise_for_status()
        viewer = c.post("/api/v1/tokens", json={"name": "v", "user": "vera", "role": "viewer"}).json()["token"]
        operator = c.post("/api/v1/tokens", json={"name": "o", "user": "otto", "role": "operator"}).json()["token"]
    with server.client(viewer) as v:
        for path in ("reset-credential", "disable", "enable"):
            assert v.post(f"/api/v1/devices/r-1/{path}").status_code == 403
    with server.client(operator) as o:
        assert o.delete("/api/v1/devices/r-1").status_code == 403  # decommissioning is for admins
        assert o.post("/api/v1/devices/r-1/disable").status_code == 200


# -- lifecycle: API tokens, users, bootstrap tokens --------------------------------------------------


def test_viewer_cannot_list_bootstrap_tokens(server: LiveServer) -> None:
    admin = server.tenant()
    with server.client(admin) as c:
        bootstrap(c, "secret-line")
        viewer = c.post("/api/v1/tokens", json={"name": "v", "user": "vic", "role": "viewer"}).json()["token"]
        operator = c.post("/api/v1/tokens", json={"name": "o", "user": "olga", "role": "operator"}).json()["token"]
        assert [b["name"] for b in c.get("/api/v1/bootstrap-tokens").json()] == ["secret-line"]
    for token in (viewer, operator):
        with server.client(token) as v:
            r = v.get("/api/v1/bootstrap-tokens")
            assert r.status_code == 403 and "admin" in r.json()["message"]


def test_list_and_revoke_api_tokens(server: LiveServer) -> None:
    admin = server.tenant()
    with server.client(admin) as c:
        ci = c.post("/api/v1/tokens", json={"name": "ci", "user": "ci-bot", "role": "operator"}).json()["token"]
        rows = c.get("/api/v1/tokens").json()
        assert {(r["name"], r["user"], r["role"], r["revoked"]) for r in rows} == {
            ("initial-admin", "admin", "admin", False),
            ("ci", "ci-bot", "operator", False),
        }
        assert all("token" not in r and "token_hash" not in r for r in rows)
        with server.client(ci) as x:
            assert x.get("/api/v1/devices").status_code == 200
            assert x.get("/api/v1/tokens").status_code == 403  # admins only
        ci_id = next(r["id"] for r in rows if r["name"] == "ci")
        r = c.delete(f"/api/v1/tokens/{ci_id}")
        assert r.status_code == 200 and r.json()["revoked"] is True
        assert audited(c, "token.revoke", "ci")
        with server.client(ci) as x:
            within(1.0, lambda: x.get("/api/v1/devices").status_code == 401)
            assert "revoked" in x.get("/api/v1/devices").json()["message"]
        # the tenant's last usable admin token cannot be revoked (that would lock the tenant out)
        admin_id = next(r["id"] for r in rows if r["name"] == "initial-admin")
        r = c.delete(f"/api/v1/tokens/{admin_id}")
        assert r.status_code == 409 and "last usable admin token" in r.json()["message"]
        assert c.get("/api/v1/devices").status_code == 200
        assert c.delete("/api/v1/tokens/999999").status_code == 404
        # an id beyond the database's range is a 422 naming it, not a 500 from the driver (not fuzzed: the run would
        # revoke its own token)
        r = c.delete(f"/api/v1/tokens/{2**70}")
        assert r.status_code == 422 and "token_id" in r.text
    with server.client(server.tenant()) as other:  # another tenant cannot see or revoke them
        assert other.delete(f"/api/v1/tokens/{admin_id}").status_code == 404
        assert all(r["id"] != admin_id for r in other.get("/api/v1/tokens").json())


def test_delete_user_revokes_their_tokens_and_keeps_the_last_admin(server: LiveServer) -> None:
    admin = server.tenant()
    with server.client(admin) as c:
        bob = c.post("/api/v1/tokens", json={"name": "bob-1", "user": "bob", "role": "operator"}).json()["token"]
        c.post("/api/v1/tokens", json={"name": "bob-2", "user": "bob"}).raise_for_status()
        with server.client(bob) as b:
            assert b.get("/api/v1/devices").status_code == 200
        r = c.delete("/api/v1/users/bob")
        assert r.status_code == 200 and r.json() == {"name": "bob", "role": "operator", "deleted": True, "tokens_revoked": 2}
        assert audited(c, "user.delete", "bob")
        with server.client(bob) as b:
            within(1.0, lambda: b.get("/api/v1/devices").status_code == 401)
        assert "bob" not in [u["name"] for u in c.get("/api/v1/users").json()]
        assert all(t["user"] != "bob" for t in c.get("/api/v1/tokens").json())
        assert c.delete("/api/v1/users/bob").status_code == 404
        r = c.delete("/api/v1/users/admin")
        assert r.status_code == 409 and "last admin" in r.json()["message"]
        # a second admin may be removed by the first
        ada = c.post("/api/v1/tokens", json={"name": "ada-1", "user": "ada", "role": "admin"}).json()["token"]
        with server.client(ada) as a:
            assert a.get("/api/v1/tokens").status_code == 200
        assert c.delete("/api/v1/users/ada").status_code == 200
        assert c.get("/api/v1/users").status_code == 200


@pytest.mark.parametrize("path", ["/api/v1/tokens/1", "/api/v1/users/admin", "/api/v1/devices/x"])
def test_lifecycle_routes_need_a_token(server: LiveServer, path: str) -> None:
    assert httpx.delete(server.url + path).status_code == 401


def test_byte_counters_still_flush_after_a_device_they_counted_was_deleted(tmp_path: Path) -> None:
    from bulkhead.server.db import Database, migrate
    from bulkhead.server.delivery.counters import ByteCounter
    from bulkhead.server.models import Device, Tenant

    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    migrate(url)
    db = Database(url)
    with db.session() as s:
        t = Tenant(name="t")
        s.add(t)
        s.flush()
        devs = [Device(tenant_id=t.id, name=n, compatible="c", tags=[], groups=[], attributes={}, reported={}) for n in "ab"]
        s.add_all(devs)
        s.flush()
        gone, kept = devs[0].id, devs[1].id
    counter = ByteCounter(db, 5.0)
    for device_id in (gone, kept):
        counter.seen(device_id)
        counter.add(device_id, 100)
    with db.session() as s:
        s.delete(s.get(Device, gone))
    counter.flush()
    assert counter._seen == {} and counter._pending == {}  # nothing kept back for a retry that would fail forever
    with db.session() as s:
        dev = s.get(Device, kept)
        assert dev is not None and dev.last_seen is not None and dev.bytes_served == 100
    db.dispose()
