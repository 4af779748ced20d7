"""The HTTP client boundary: whatever the network or a misbehaving server sends, the agent sees only its own errors."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from bulkhead.agent.agent import Agent
from bulkhead.agent.client import Client, parse_content_range
from bulkhead.agent.config import AgentConfig, PodmanConfig
from bulkhead.agent.errors import AgentError, BadResponse, DownloadError, ServerUnreachable
from bulkhead.agent.state import ReleaseRef

from .fakes import FakeRauc
from .httpd import Answer, Request, serve

PORTAL = b"<html><body>Please accept the terms of use</body></html>"
GOOD = {
    "device": {"id": 1, "name": "dev-1", "attributes": {}},
    "desired": {"release": None, "apps": [], "files": []},
    "poll_interval": 30,
}


def _agent(tmp_path: Path, server: str) -> Agent:
    cfg = AgentConfig(
        server=server, data_dir=tmp_path / "data", name="dev-1", compatible="lab", podman=PodmanConfig(enabled=False)
    )
    agent = Agent(cfg)
    agent.client.credential = "tok"
    agent.rauc = agent.updater.rauc = FakeRauc()  # type: ignore[assignment]
    return agent


def test_a_captive_portal_page_is_a_bad_response_and_the_agent_keeps_its_last_desired_state(tmp_path: Path) -> None:
    answers = [Answer(200, json.dumps(GOOD).encode(), [("content-type", "application/json"), ("etag", '"1"')])]
    answers.append(Answer(200, PORTAL, [("content-type", "text/html")]))
    with serve(lambda r: answers.pop(0) if len(answers) > 1 else answers[0]) as url:
        agent = _agent(tmp_path, url)
        assert agent.poll() == GOOD
        assert agent.poll() == GOOD  # the portal's page neither crashes the agent nor replaces the kept state
        with pytest.raises(BadResponse, match="captive portal"):
            agent.client.request("GET", "/device/v1/state").json()
        agent.run_once()  # a whole pass behind the portal: no exception


@pytest.mark.parametrize(
    "body",
    [
        b'{"desired": {"release": nul',  # truncated
        b"[1, 2]",
        b'{"no": "desired"}',
        b'{"desired": {"release": {"id": 1, "version": "2", "compatible": "lab", "sha256": "../x", "size": 1, "url": "u"}}}',
        b'{"desired": {"release": {"id": "x"}}}',
        b'{"desired": {"files": [{"path": "/etc/a", "content_b64": "%%%", "sha256": "0"}]}}',
        b'{"desired": {"apps": [{"name": "a", "version": "1", "containers": "web"}]}}',
        b"[" * 100_000,
    ],
)
def test_a_malformed_state_document_is_refused_and_not_cached(tmp_path: Path, body: bytes) -> None:
    with serve(lambda r: Answer(200, body, [("content-type", "application/json")])) as url:
        agent = _agent(tmp_path, url)
        assert agent.poll() is None
        assert not agent.desired_path.exists()
        agent.run_once()


def _download(url: str, answer: Answer, offset: int = 0) -> bytes:
    out = io.BytesIO(b"x" * offset)
    out.seek(offset)
    with serve(lambda r: answer) as base:
        Client(base).download(base + url, out, offset, '"e"')
    return out.getvalue()


@pytest.mark.parametrize(
    "crange", ["bytes abc-def/ghi", "bytes 5-/10", "bytes=5-9/10", "bytes 5-9/", "bytes 9-5/10", "bytes 5-19/10", ""]
)
def test_a_malformed_content_range_is_a_bad_response(crange: str) -> None:
    with pytest.raises(BadResponse, match="Content-Range"):
        _download("/a", Answer(206, b"12345", [("content-range", crange)]), offset=5)


def test_content_range_parsing() -> None:
    assert parse_content_range("bytes 5-9/10") == (5, 9, 10)
    assert parse_content_range("bytes 0-9/*") == (0, 9, None)


def test_a_range_that_starts_elsewhere_is_a_download_error() -> None:
    with pytest.raises(DownloadError, match="starting at 0"):
        _download("/a", Answer(206, b"12345", [("content-range", "bytes 0-4/10")]), offset=5)


@pytest.mark.parametrize(
    "answer",
    [
        Answer(200, b"0123456789", content_length=100, cut_after=5),  # Content-Length lie, stream cut
        Answer(raw=b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n01"),  # connection closed early
        Answer(raw=b"garbage\r\n\r\n"),  # not HTTP
        Answer(raw=b""),  # nothing at all
        Answer(raw=b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"),  # malformed chunking
        Answer(raw=b"HTTP/1.1 200 OK\r\n" + b"X: " + b"a" * 70_000 + b"\r\n\r\n"),  # header line too long
        Answer(302, b"", [("location", "http://portal.example/")]),
    ],
)
def test_broken_answers_are_agent_errors(answer: Answer) -> None:
    with pytest.raises(ServerUnreachable):
        _download("/a", answer)
    with serve(lambda r: answer) as base, pytest.raises(AgentError):
        Client(base).request("GET", "/x").json()


def test_a_url_the_agent_cannot_use_is_a_bad_response() -> None:
    for url in ("http://127.0.0.1:notaport/x", "ftp://host/x", "http://[::1/x"):
        with pytest.raises(BadResponse):
            Client("http://127.0.0.1:9").request("GET", url)


def test_a_release_with_a_path_for_its_sha256_is_refused() -> None:
    wire = {"id": 1, "version": "2", "compatible": "c", "sha256": "../" * 3 + "etc", "size": 1, "url": "u"}
    with pytest.raises(ValueError, match="sha256"):
        ReleaseRef.from_wire(wire)


def test_a_reports_answer_without_accepted_seq_is_a_bad_response(tmp_path: Path) -> None:
    def handler(r: Request) -> Answer:
        return Answer(200, b'{"accepted_seq": "lots"}', [("content-type", "application/json")])

    with serve(handler) as url:
        agent = _agent(tmp_path, url)
        agent.outbox.add("agent", None, None, event="x")
        with pytest.raises(BadResponse, match="accepted_seq"):
            agent.outbox.flush(agent.client)
        assert agent.outbox.pending()  # nothing dropped


def test_a_401_does_not_cost_the_device_its_credential(tmp_path: Path) -> None:
    """A proxy's 401 must not delete the credential: the agent enrolls again and keeps it until that works."""
    answers = {"/device/v1/state": Answer(401, b'{"error": "unauthorized"}', [("content-type", "application/json")])}
    answers["/device/v1/enroll"] = Answer(403, b'{"error": "bootstrap token revoked"}', [("content-type", "application/json")])
    enrolled = {"credential": "bhd_new", "name": "dev-1", "device_id": 1, "status": "active"}

    with serve(lambda r: answers.get(r.path, Answer(200, b"{}", [("content-type", "application/json")]))) as url:
        cfg = AgentConfig(
            server=url, data_dir=tmp_path / "data", name="dev-1", compatible="lab", bootstrap_token="bhb_x",
            podman=PodmanConfig(enabled=False),
        )  # fmt: skip
        (tmp_path / "data").mkdir()
        (tmp_path / "data" / "credential").write_text("bhd_old")
        agent = Agent(cfg)
        agent.rauc = agent.updater.rauc = FakeRauc()  # type: ignore[assignment]
        agent.tick()  # 401
        agent.tick()  # enrolling again fails
        assert agent.credential_path.read_text() == "bhd_old" and agent.client.credential == "bhd_old"
        answers["/device/v1/enroll"] = Answer(201, json.dumps(enrolled).encode(), [("content-type", "application/json")])
        agent.tick()
        assert agent.credential_path.read_text() == "bhd_new" and agent.client.credential == "bhd_new"


def test_a_full_disk_is_a_download_error_not_a_network_error() -> None:
    class FullDisk(io.BytesIO):
        def write(self, b: object) -> int:
            raise OSError(28, "No space left on device")

    with serve(lambda r: Answer(200, b"x" * 1000)) as base, pytest.raises(DownloadError, match="No space left"):
        Client(base).download(base + "/a", FullDisk(), 0, None)
