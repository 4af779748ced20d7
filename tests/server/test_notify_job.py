"""The notification job over a real, migrated database (SQLite and PostgreSQL): webhooks to a real HTTP receiver (a thread with
http.server) with a valid HMAC signature, a retry after a 500, an e-mail to a real SMTP server (aiosmtpd), and an
event of each kind reaching its subscriber once and nobody else. The clock is injected: retries need no sleeping."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import socket
import threading
from collections.abc import Iterator
from email import message_from_bytes
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from bulkhead.server.cra_models import CraCase
from bulkhead.server.db import Database, migrate
from bulkhead.server.models import AuditEvent, Device, DeviceEvent, Tenant
from bulkhead.server.services.auth import Principal
from bulkhead.server.services.notifications import EVENT_KINDS, NotificationService
from bulkhead.server.services.notify_send import SmtpConfig
from bulkhead.server.services.vuln_kev import KEV_EVENT
from tests.server.conftest import pg_url


class Clock:
    def __init__(self) -> None:
        self.now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)

    def __call__(self) -> dt.datetime:
        return self.now


class Receiver:
    """A local webhook receiver: records every POST (path, headers, body) and answers the next queued status."""

    def __init__(self) -> None:
        self.got: list[dict[str, Any]] = []
        self.statuses: list[int] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                outer.got.append({"path": self.path, "headers": dict(self.headers), "body": body})
                self.send_response(outer.statuses.pop(0) if outer.statuses else 204)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *_a: Any) -> None:
                return None

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.httpd.shutdown()
    r.httpd.server_close()


class Mailbox:
    def __init__(self) -> None:
        self.messages: list[Any] = []

    async def handle_DATA(self, _server: Any, _session: Any, envelope: Any) -> str:
        self.messages.append(envelope)
        return "250 OK"


@pytest.fixture(params=["sqlite", "postgresql"])
def env(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Database, Principal, Clock]]:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}" if request.param == "sqlite" else pg_url()  # a fresh database
    migrate(url)
    db = Database(url)
    with db.session() as s:
        t = Tenant(name="acme")
        s.add(t)
        s.flush()
        tid = t.id
    yield db, Principal(kind="user", name="ada", tenant_id=tid, tenant="acme", role="admin"), Clock()
    db.dispose()


def _audit(db: Database, tid: int | None, action: str, subject: str, **details: Any) -> None:
    with db.session() as s:
        s.add(AuditEvent(tenant_id=tid, actor="system:test", action=action, subject=subject, details=details))


def test_webhook_is_signed_and_logged(env: tuple[Database, Principal, Clock], receiver: Receiver) -> None:
    db, admin, clock = env
    svc = NotificationService(db, clock=clock)
    sub = svc.add(admin, "webhook", receiver.url + "/hook", ["rollout.paused"])
    _audit(db, admin.tenant_id, "rollout.pause", "canary", reason="2 of 10 failed")
    assert svc.run() == {"queued": 1, "attempted": 1}

    [req] = receiver.got
    body, headers = req["body"], req["headers"]
    expected = "sha256=" + hmac.new(sub["secret"].encode(), body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(headers["X-Bulkhead-Signature"], expected)
    payload = json.loads(body)
    assert payload["kind"] == headers["X-Bulkhead-Event"] == "rollout.paused"
    assert payload["id"] == headers["X-Bulkhead-Delivery"] and payload["tenant"] == "acme"
    assert "2 of 10 failed" in payload["summary"] and int(headers["X-Bulkhead-Timestamp"]) > 0
    [d] = svc.deliveries(admin, sub["id"])
    assert d["state"] == "delivered" and [a["status_code"] for a in d["attempts"]] == [204]
    assert svc.run() == {"queued": 0, "attempted": 0}  # read again (the cursor lags): not sent twice
    assert len(receiver.got) == 1


def test_retry_after_500_then_success(env: tuple[Database, Principal, Clock], receiver: Receiver) -> None:
    db, admin, clock = env
    svc = NotificationService(db, clock=clock)
    sub = svc.add(admin, "webhook", receiver.url, ["vuln.kev_exploited"])
    receiver.statuses = [500]
    _audit(db, admin.tenant_id, KEV_EVENT, "CVE-2024-3094", devices=3)
    svc.run()
    [d] = svc.deliveries(admin, sub["id"])
    assert d["state"] == "pending" and d["attempts"][0]["status_code"] == 500 and d["attempts"][0]["ok"] is False
    assert svc.deliver_due() == 0  # backoff: not yet due
    clock.now += dt.timedelta(seconds=31)
    assert svc.deliver_due() == 1
    [d] = svc.deliveries(admin, sub["id"])
    assert d["state"] == "delivered" and [(a["status_code"], a["ok"]) for a in d["attempts"]] == [(500, False), (204, True)]
    assert len(receiver.got) == 2 and receiver.got[0]["body"] == receiver.got[1]["body"]


def test_gives_up_after_five_attempts(env: tuple[Database, Principal, Clock]) -> None:
    db, admin, clock = env
    svc = NotificationService(db, clock=clock)
    sub = svc.add(admin, "webhook", "http://127.0.0.1:9/refused", ["rollout.paused"])  # nothing listens there
    _audit(db, admin.tenant_id, "rollout.pause", "r1")
    svc.run()
    for _ in range(6):
        clock.now += dt.timedelta(minutes=10)
        svc.deliver_due()
    [d] = svc.deliveries(admin, sub["id"])
    assert d["state"] == "failed" and len(d["attempts"]) == 5 and all(a["error"] for a in d["attempts"])


def test_email_reaches_a_real_smtp_server(env: tuple[Database, Principal, Clock]) -> None:
    db, admin, clock = env
    box = Mailbox()
    with socket.socket() as probe:  # a free port (aiosmtpd checks its server by connecting to the given port)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    smtpd = Controller(box, hostname="127.0.0.1", port=port)
    smtpd.start()
    try:
        svc = NotificationService(db, SmtpConfig("127.0.0.1", port, sender="fleet@example.com"), clock=clock)
        sub = svc.add(admin, "email", "security@example.com", ["vuln.kev_exploited"])
        _audit(db, admin.tenant_id, KEV_EVENT, "CVE-2024-3094", devices=2)
        svc.run()
    finally:
        smtpd.stop()
    [env_] = box.messages
    assert env_.rcpt_tos == ["security@example.com"] and env_.mail_from == "fleet@example.com"
    msg = message_from_bytes(env_.content)
    assert "CVE-2024-3094" in msg["Subject"] and "affects 2 device(s)" in msg.get_payload()
    [d] = svc.deliveries(admin, sub["id"])
    assert d["state"] == "delivered" and d["attempts"][0]["status_code"] == 250


def test_each_kind_reaches_its_subscriber_once(env: tuple[Database, Principal, Clock], receiver: Receiver) -> None:
    db, admin, clock = env
    tid = admin.tenant_id
    feeds = [{"name": "nvd", "ok": True, "last_error": None}]
    svc = NotificationService(db, feed_status=lambda: feeds, clock=clock)
    for kind in EVENT_KINDS:
        svc.add(admin, "webhook", f"{receiver.url}/{kind}", [kind])
    with db.session() as s:  # another tenant subscribed to everything hears only the (global) feed
        other = Tenant(name="other")
        s.add(other)
        s.flush()
        other_id = other.id
    outsider = Principal(kind="user", name="bob", tenant_id=other_id, tenant="other", role="admin")
    svc.add(outsider, "webhook", f"{receiver.url}/other", list(EVENT_KINDS))

    _audit(db, tid, KEV_EVENT, "CVE-2024-3094", devices=1)
    _audit(db, tid, "rollout.pause", "canary")
    _audit(db, tid, "rollout.resume", "canary")  # not an event anyone can subscribe to
    _audit(db, tid, "alert.fired", "d1", alert="disk-full", metric="disk_percent", threshold=90.0, value=97.0)
    with db.session() as s:
        dev = Device(tenant_id=tid, name="d1", compatible="board")
        s.add(dev)
        s.flush()
        s.add(DeviceEvent(tenant_id=tid, device_id=dev.id, seq=1, kind="update", phase="success"))
        s.add(DeviceEvent(tenant_id=tid, device_id=dev.id, seq=2, kind="update", phase="rolled_back"))
        s.add(DeviceEvent(tenant_id=tid, device_id=dev.id, seq=3, kind="security", details={"event": "tampered_bundle"}))
        s.add(CraCase(tenant_id=tid, kind="vulnerability", source="manual", title="xz", state="early_warning_due",
                      cves=["CVE-2024-3094"], awareness_at=clock.now - dt.timedelta(hours=13), opened_by="user:ada"))  # fmt: skip
    feeds[0] = {"name": "nvd", "ok": False, "last_error": "HTTP 503", "last_success": "2026-01-01T00:00:00+00:00"}
    svc.run()
    svc.run()  # a second pass finds nothing new

    by_path: dict[str, list[str]] = {}
    for r in receiver.got:
        by_path.setdefault(r["path"], []).append(json.loads(r["body"])["kind"])
    assert by_path == {f"/{k}": [k] for k in EVENT_KINDS} | {"/other": ["feed.failing"]}
    case = next(json.loads(r["body"]) for r in receiver.got if r["path"] == "/cra.case.deadline")
    assert case["data"]["submission"] == "early_warning" and case["data"]["stage"] == "approaching"

    clock.now += dt.timedelta(hours=12)  # the early warning is now overdue: one more, once
    svc.run()
    svc.run()
    stages = [json.loads(r["body"])["data"]["stage"] for r in receiver.got if r["path"] == "/cra.case.deadline"]
    assert stages == ["approaching", "overdue"]


def test_bad_subscriptions_are_refused(env: tuple[Database, Principal, Clock]) -> None:
    from bulkhead.server.errors import Forbidden, Invalid

    db, admin, clock = env
    svc = NotificationService(db, clock=clock)
    for channel, target, events in [
        ("webhook", "ftp://example.com/x", ["rollout.paused"]),
        ("webhook", "file:///etc/passwd", ["rollout.paused"]),
        ("webhook", "http://[", ["rollout.paused"]),
        ("webhook", "http://", ["rollout.paused"]),
        ("email", "a@example.com\nBcc: b@example.com", ["feed.failing"]),
        ("webhook", "https://example.com/x", ["rollout.exploded"]),
        ("webhook", "https://example.com/x", []),
        ("email", "not-an-address", ["feed.failing"]),
        ("pigeon", "x", ["feed.failing"]),
    ]:
        with pytest.raises(Invalid):
            svc.add(admin, channel, target, events)
    operator = Principal(kind="user", name="op", tenant_id=admin.tenant_id, tenant="acme", role="operator")
    with pytest.raises(Forbidden):
        svc.add(operator, "email", "a@example.com", ["feed.failing"])
    assert svc.list_subscriptions(admin) == []
