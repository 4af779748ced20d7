"""Hardening at the edge: bounded bodies, one JSON error contract, validated input, auth-failure limits, file modes, docs."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import re
import select
import socket
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from tests.live import LiveServer, live_server

FAIL_LIMIT, FAIL_WINDOW = 5, 3


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    env = {"BULKHEAD_AUTH_FAIL_LIMIT": str(FAIL_LIMIT), "BULKHEAD_AUTH_FAIL_WINDOW": str(FAIL_WINDOW)}
    with live_server(tmp_path_factory.mktemp("hardening"), env) as s:
        yield s


def _tree_rss(pid: int) -> int:
    """Resident memory (bytes) of a process and all its descendants (the HTTP server's workers)."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            status = Path(f"/proc/{p}/status").read_text()
            total += int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) * 1024  # type: ignore[union-attr]
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, AttributeError):
            continue
    return total


def _push(url: str, path: str, size: int, chunked: bool) -> tuple[int, dict[str, str], bytes]:
    """POST `size` bytes of JSON-looking data over a raw socket; stop sending as soon as the server answers."""
    u = urlsplit(url)
    sock = socket.create_connection((u.hostname, u.port), timeout=30)
    framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {size}"
    sock.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{framing}\r\n\r\n".encode())
    block = b'{"a": "' + b"x" * (1024 * 1024 - 7)
    sent = 0
    try:
        while sent < size:
            if select.select([sock], [], [], 0)[0]:
                break  # the answer came before the body was complete
            piece = block[: size - sent]
            sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
            sent += len(piece)
    except OSError:
        pass  # the server closed the connection after its answer
    raw = b""
    while b"\r\n\r\n" not in raw or len(raw) < raw.index(b"\r\n\r\n") + 4 + _length(raw):
        chunk = sock.recv(65536)
        if not chunk:
            break
        raw += chunk
    sock.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body


def _length(raw: bytes) -> int:
    m = re.search(rb"content-length:\s*(\d+)", raw.split(b"\r\n\r\n")[0], re.IGNORECASE)
    return int(m.group(1)) if m else 0


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_100_mib_json_body_gets_413_without_memory_growth(srv: LiveServer, chunked: bool) -> None:
    assert srv.proc is not None
    httpx.get(srv.url + "/healthz").raise_for_status()
    before = _tree_rss(srv.proc.pid)
    status, headers, body = _push(srv.url, "/device/v1/enroll", 100 * 1024 * 1024, chunked)
    after = _tree_rss(srv.proc.pid)
    assert status == 413, body[:300]
    err = json.loads(body)
    assert err["error"] == "too_large" and str(1024 * 1024) in err["message"] and err["request_id"] == headers["x-request-id"]
    assert after - before < 10 * 1024 * 1024, f"server RSS grew by {(after - before) / 2**20:.1f} MiB"
    assert httpx.get(srv.url + "/healthz").status_code == 200


def _device(c: httpx.Client, name: str) -> dict[str, str]:
    boot = c.post("/api/v1/bootstrap-tokens", json={"name": name}).json()
    r = c.post("/device/v1/enroll", json={"bootstrap_token": boot["token"], "name": name, "compatible": "Test Config"})
    r.raise_for_status()
    return {"authorization": f"Bearer {r.json()['credential']}"}


def _raw(c: httpx.Client, method: str, path: str, text: str, headers: dict[str, str] | None = None) -> httpx.Response:
    return c.request(method, path, content=text.encode(), headers={"content-type": "application/json", **(headers or {})})


def _is_error(r: httpx.Response, status: int, *words: str) -> None:
    assert r.status_code == status, (r.status_code, r.text)
    body = r.json()
    assert set(body) == {"error", "message", "request_id"} and body["request_id"] == r.headers["x-request-id"], body
    for w in words:
        assert w in body["message"], body


def test_malformed_json_is_400_and_stores_nothing(srv: LiveServer) -> None:
    with srv.client(srv.tenant(keyring=False)) as c:
        deep = '{"name": "deep", "version": "1", "containers": ' + "[" * 5000 + "]" * 5000 + "}"
        _is_error(_raw(c, "POST", "/api/v1/apps", deep), 400, "deeper than 32")
        _is_error(_raw(c, "POST", "/api/v1/bootstrap-tokens", '{"name": "nan", "expires_in_hours": NaN}'), 400, "NaN")
        _is_error(_raw(c, "POST", "/api/v1/bootstrap-tokens", '{"name": "inf", "expires_in_hours": 1e999}'), 400, "range")
        _is_error(_raw(c, "POST", "/api/v1/bootstrap-tokens", '{"name": "big", "max_uses": 18446744073709551616}'), 400, "range")
        surrogate = '{"name": "s\\ud800", "version": "1", "containers": [{"name": "m", "image": "busybox"}]}'
        _is_error(_raw(c, "POST", "/api/v1/apps", surrogate), 400, "surrogate")
        _is_error(_raw(c, "POST", "/api/v1/apps", '{"name": "n\\u0000", "version": "1"}'), 400, "NUL")
        assert [t["name"] for t in c.get("/api/v1/bootstrap-tokens").json()] == []
        assert c.get("/api/v1/apps").json() == []


def test_refs_and_ids_out_of_range_are_4xx(srv: LiveServer) -> None:
    with srv.client(srv.tenant(keyring=False)) as c:
        for path in ("/api/v1/devices/²", "/api/v1/devices/2147483648", "/api/v1/rollouts/²", "/api/v1/rollouts/٣"):
            _is_error(c.get(path), 404)
        _is_error(c.get(f"/api/v1/releases/{2**64}"), 422)
        _is_error(c.get(f"/api/v1/releases/{2**31}"), 422)  # primary keys are 32-bit on PostgreSQL
        _is_error(c.get("/api/v1/apps", params={"name": "a\x00"}), 400, "NUL")
        _is_error(c.get("/api/v1/devices/a%00b"), 400, "NUL")
        _is_error(c.get(f"/api/v1/releases/{2**63}/deltas"), 422)
        _is_error(c.delete(f"/api/v1/bootstrap-tokens/{2**64}"), 422)
        _is_error(c.get("/api/v1/releases/0"), 422)


def test_group_names_that_no_url_can_name_are_refused_wherever_a_group_is_made(srv: LiveServer) -> None:
    """An empty group name (found by schemathesis through device provisioning) listed a group that /groups/{name}
    cannot address; every path that creates a group or puts a device into one checks the name the same way."""
    with srv.client(srv.tenant(keyring=False)) as c:
        for bad in ("", " ", "a b", "x/y", "-lead", "tab\t", "é", "newline-at-end\n"):
            r = c.post("/api/v1/devices", json={"name": "p1", "compatible": "Test Config", "groups": ["ok", bad]})
            _is_error(r, 400, "group name", "letters, digits")
            if bad:  # "" is no group for a bootstrap token, as it always was
                _is_error(c.post("/api/v1/bootstrap-tokens", json={"name": "b", "group": bad}), 400, "group name")
            _is_error(c.post("/api/v1/groups", json={"name": bad}), 400, "group name")
        _is_error(c.patch("/api/v1/groups/a%20b/desired", json={"apps": {}}), 400, "group name")
        assert c.get("/api/v1/devices").json() == []
        assert c.get("/api/v1/bootstrap-tokens").json() == []
        assert c.get("/api/v1/groups").json() == []
        r = c.post("/api/v1/bootstrap-tokens", json={"name": "b", "group": ""})
        assert r.status_code == 201 and r.json()["group"] is None, r.text
        r = c.post("/api/v1/devices", json={"name": "p1", "compatible": "Test Config", "groups": ["ok", "ok", "x.1"]})
        assert r.status_code == 201, r.text
        assert c.get("/api/v1/devices/p1").json()["groups"] == ["ok", "x.1"]  # a repeat is one membership


def test_rollout_start_far_in_the_future_is_refused_before_anything_is_stored(srv: LiveServer) -> None:
    with srv.client(srv.tenant(keyring=False)) as c:
        c.post(
            "/api/v1/apps", json={"name": "web", "version": "1", "containers": [{"name": "m", "image": "b"}]}
        ).raise_for_status()
        body = {"name": "late", "app": {"name": "web", "version": "1"}, "start_at": "9999-12-31T23:59:59-01:00"}
        _is_error(c.post("/api/v1/rollouts", json=body), 400, "2100")
        _is_error(c.post("/api/v1/rollouts", json={**body, "start_at": "2030-01-01T00:00:00"}), 400, "time zone offset")
        assert c.get("/api/v1/rollouts").json() == []
        r = c.post("/api/v1/rollouts", json={**body, "start_at": "2030-01-01T02:00:00+02:00", "allow_empty": True})
        assert r.status_code == 201, r.text
        when = dt.datetime.fromisoformat(r.json()["start_at"])
        assert when == dt.datetime(2030, 1, 1, tzinfo=dt.UTC)  # the offset honoured


def test_reports_bounded_seq_strict_and_within_window(srv: LiveServer) -> None:
    with srv.client(srv.tenant(keyring=False)) as c:
        dev = _device(c, "d1")

        def report(event: dict[str, object]) -> httpx.Response:
            return c.post("/device/v1/reports", json={"events": [{"kind": "agent", **event}]}, headers=dev)

        _is_error(report({"seq": 1, "details": {"log": "x" * 20000}}), 400, "16384")
        _is_error(report({"seq": True}), 400, "positive integer")
        _is_error(report({"seq": 2**63 - 1}), 400, "above the last accepted")
        _is_error(report({"seq": 1, "at": "9999-01-01T00:00:00+00:00"}), 400, "2100")
        attrs = {f"k{i}": "v" for i in range(100)}
        _is_error(
            c.post("/device/v1/enroll", json={"bootstrap_token": "x", "name": "d2", "compatible": "c", "attributes": attrs}), 422
        )
        assert c.get("/api/v1/devices/d1/events").json() == []
        r = report({"seq": 1, "details": {"log": "ok"}})
        assert r.status_code == 200 and r.json() == {"accepted_seq": 1}, r.text
        assert report({"seq": 2}).json() == {"accepted_seq": 2}  # later events are not dropped


def test_every_error_is_json_with_a_request_id_and_security_headers(srv: LiveServer) -> None:
    with srv.client(srv.tenant(keyring=False)) as c:
        responses = [
            (c.get("/no/such/route"), 404),
            (c.put("/healthz"), 405),
            (c.post("/api/v1/bootstrap-tokens", json={"group": 5}), 422),
            (c.get("/api/v1/devices/nobody"), 404),
            (c.get("/api/v1/devices", headers={"authorization": "Bearer bht_wrong"}), 401),
            (httpx.get(srv.url + "/device/v1/state"), 401),
            (httpx.get(srv.url + "/dl/" + "0" * 64), 403),  # a signed URL without its signature
        ]
    ids = set()
    for r, status in responses:
        _is_error(r, status)
        assert "traceback" not in r.text.lower()
        assert r.headers["x-content-type-options"] == "nosniff" and r.headers["x-frame-options"] == "DENY"
        assert "strict-transport-security" not in r.headers  # only over TLS
        ids.add(r.headers["x-request-id"])
    assert len(ids) == len(responses)
    ok = httpx.get(srv.url + "/healthz")
    assert ok.headers["x-content-type-options"] == "nosniff" and len(ok.headers["x-request-id"]) == 32


def test_data_files_are_private(srv: LiveServer) -> None:
    assert stat.S_IMODE(srv.data_dir.stat().st_mode) == 0o700
    for name in ("bulkhead.db", "jobs.db", "secret.key", "admin.token"):
        assert stat.S_IMODE((srv.data_dir / name).stat().st_mode) == 0o600, name


def test_docs_page_needs_no_other_host(srv: LiveServer) -> None:
    html = httpx.get(srv.url + "/docs").text
    assert "SwaggerUIBundle" in html and not re.search(r"(src|href)=\"?(https?:)?//", html), html
    for asset in re.findall(r'(?:src|href)="(/[^"]+)"', html):
        r = httpx.get(srv.url + asset)
        assert r.status_code == 200 and len(r.content) > 1000, asset
    assert not re.search(r"(src|href)=\"?(https?:)?//", httpx.get(srv.url + "/redoc").text)


def test_failed_authentications_are_limited_per_address_and_logged_without_the_secret(srv: LiveServer) -> None:
    token = srv.tenant(keyring=False)
    time.sleep(FAIL_WINDOW)  # a fresh window for this address
    secret = "bht_" + "s3cr3t" * 6
    with srv.client(secret) as bad:
        for _ in range(FAIL_LIMIT):
            assert bad.get("/api/v1/devices").status_code == 401
        r = bad.get("/api/v1/devices")
        _is_error(r, 429, "try again")
        assert 1 <= int(r.headers["retry-after"]) <= FAIL_WINDOW
        with srv.client(token) as good:  # the address is blocked, whatever it presents
            assert good.get("/api/v1/devices").status_code == 429
            assert good.get("/healthz").status_code == 200  # a load balancer's health check still passes
        time.sleep(int(r.headers["retry-after"]) + 0.2)
        with srv.client(token) as good:
            assert good.get("/api/v1/devices").status_code == 200
    log = (srv.data_dir / "server.log").read_text()
    assert "authentication failed from 127.0.0.1: GET /api/v1/devices" in log
    assert secret not in log and "s3cr3t" not in log


def test_secret_file_contents_are_sealed_at_rest_and_delivered_to_the_device(srv: LiveServer) -> None:
    marker = b"wifi-psk-" + b"9" * 24
    with srv.client(srv.tenant(keyring=False)) as c:
        dev = _device(c, "sealed-1")
        files = [
            {"path": "/etc/psk", "content": marker.decode(), "secret": True, "mode": "0600"},
            {"path": "/etc/motd", "content": "plain-motd-text\n"},
        ]
        r = c.patch("/api/v1/devices/sealed-1/desired", json={"files": files})
        assert r.status_code == 200, r.text
        assert "content_b64" not in r.text and "content_sealed" not in r.text
        _is_error(c.patch("/api/v1/devices/sealed-1/desired", json={"files": [{**files[0], "secret": "yes"}]}), 400, "secret")
        state = c.get("/device/v1/state", headers=dev).json()
    got = {f["path"]: base64.b64decode(f["content_b64"]) for f in state["desired"]["files"]}
    assert got == {"/etc/psk": marker, "/etc/motd": b"plain-motd-text\n"}
    httpx.get(srv.url + "/healthz")  # let SQLite's WAL settle into the files read below
    db = b"".join(p.read_bytes() for p in srv.data_dir.glob("bulkhead.db*"))
    assert base64.b64encode(b"plain-motd-text\n") in db  # the file is in this database…
    assert marker not in db and base64.b64encode(marker) not in db  # …but the secret one is not in clear


def test_an_unexpected_exception_is_a_json_500_logged_with_its_request_id(caplog: pytest.LogCaptureFixture) -> None:
    from bulkhead.server.edge import Edge

    async def broken(scope: dict[str, object], receive: object, send: object) -> None:
        raise RuntimeError("secret internals /srv/bulkhead/x.py line 3")

    sent: list[dict[str, object]] = []

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": b"", "more_body": False}

    scope = {"type": "http", "method": "GET", "path": "/x", "headers": [], "client": ("10.0.0.1", 5), "scheme": "https"}
    with caplog.at_level("ERROR", logger="bulkhead.server"):
        asyncio.run(Edge(broken)(scope, receive, send))
    start, body = sent
    headers = dict(start["headers"])  # type: ignore[call-overload]
    assert start["status"] == 500 and headers[b"content-type"] == b"application/json"
    assert headers[b"strict-transport-security"].startswith(b"max-age=")  # served over TLS
    err = json.loads(body["body"])  # type: ignore[arg-type]
    assert err["error"] == "internal" and err["request_id"] == headers[b"x-request-id"].decode()
    assert "secret internals" not in err["message"] and "Traceback" not in err["message"]
    assert err["request_id"] in caplog.text and "secret internals" in caplog.text  # the operator finds it in the log
