"""Notifications on a live server (SQLite and PostgreSQL): subscriptions made, listed and removed over the API, a test
event sent to a real local HTTP receiver with a valid signature and logged, bad input refused with nothing stored."""

from __future__ import annotations

import hashlib
import hmac
import json

import httpx
import pytest

from tests.server.conftest import LiveServer
from tests.server.test_notify_job import Receiver
from tests.server.test_schemas import Checker

SUBS = "/api/v1/notifications/subscriptions"


@pytest.fixture(scope="module")
def checker(server: LiveServer) -> Checker:
    return Checker(httpx.get(server.url + "/openapi.json").json())


def _client(server: LiveServer, checker: Checker) -> httpx.Client:
    c = server.client(server.tenant(keyring=False))
    c.event_hooks["response"].append(checker)
    return c


def test_subscribe_test_and_log(server: LiveServer, checker: Checker) -> None:
    receiver = Receiver()
    try:
        with _client(server, checker) as c:
            r = c.post(SUBS, json={"channel": "webhook", "target": receiver.url + "/in", "events": ["rollout.paused"]})
            assert r.status_code == 201, r.text
            sub = r.json()
            assert sub["secret"] and sub["events"] == ["rollout.paused"]
            [listed] = c.get(SUBS).json()
            assert "secret" not in listed and listed["id"] == sub["id"]

            r = c.post(f"{SUBS}/{sub['id']}/test")
            assert r.status_code == 200, r.text
            d = r.json()
            assert d["state"] == "delivered" and d["event_kind"] == "test" and d["attempts"][0]["status_code"] == 204
            [got] = receiver.got
            expected = "sha256=" + hmac.new(sub["secret"].encode(), got["body"], hashlib.sha256).hexdigest()
            assert got["headers"]["X-Bulkhead-Signature"] == expected
            assert got["headers"]["X-Bulkhead-Delivery"] == d["uid"] == json.loads(got["body"])["id"]

            [logged] = c.get("/api/v1/notifications/deliveries", params={"subscription": sub["id"]}).json()
            assert logged["uid"] == d["uid"] and logged["attempts"] == d["attempts"]
            actions = [e["action"] for e in c.get("/api/v1/audit", params={"action": "notify."}).json()]
            assert {"notify.subscription.add", "notify.subscription.test"} <= set(actions)

            assert c.delete(f"{SUBS}/{sub['id']}").status_code == 204
            assert c.get(SUBS).json() == []
            r = c.delete(f"{SUBS}/{sub['id']}")
            assert r.status_code == 404 and r.json()["error"]
    finally:
        receiver.httpd.shutdown()
        receiver.httpd.server_close()


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"channel": "webhook", "target": "ftp://example.com/hook", "events": ["rollout.paused"]}, "http"),
        ({"channel": "webhook", "target": "https://example.com/hook", "events": ["rollout.exploded"]}, "rollout.exploded"),
        ({"channel": "email", "target": "not an address", "events": ["feed.failing"]}, "e-mail"),
        ({"channel": "sms", "target": "+491234", "events": ["feed.failing"]}, "channel"),
        ({"channel": "email", "target": "a@example.com", "events": []}, "events"),
    ],
)
def test_bad_subscriptions_are_refused(server: LiveServer, checker: Checker, body: dict[str, object], says: str) -> None:
    with _client(server, checker) as c:
        r = c.post(SUBS, json=body)
        assert 400 <= r.status_code < 500, r.text
        err = r.json()
        assert set(err) >= {"error", "message"} and says in err["message"]
        assert c.get(SUBS).json() == []


@pytest.mark.parametrize("value", [str(2**70), "0", "-1"])
def test_a_delivery_filter_out_of_the_id_range_is_refused(server: LiveServer, checker: Checker, value: str) -> None:
    """Schemathesis found ?subscription=<a 70-bit number> answering 500 (SQLite cannot hold it): now a 422 that
    names the parameter, on either database."""
    with _client(server, checker) as c:
        r = c.get("/api/v1/notifications/deliveries", params={"subscription": value})
        assert r.status_code == 422, r.text
        assert "subscription" in r.text
        assert c.get("/api/v1/notifications/deliveries").status_code == 200


def test_the_api_answers_every_event_kind_the_service_knows() -> None:
    """A kind the service takes but the API's answer model does not list made the subscription's answer a 500 after
    it was stored (found with device.alert)."""
    from typing import get_args

    from bulkhead.server.api.notify_schemas import EventKind
    from bulkhead.server.services.notifications import EVENT_KINDS

    assert set(get_args(EventKind)) == set(EVENT_KINDS)
