"""The real agent against a misbehaving server: random statuses, bodies, headers, truncated and slow answers.

Each iteration is one pass of the agent's main loop (`Agent.tick`, what `run()` repeats). Whatever the server
does, the pass must end in the agent's own handled errors, and the update in flight (a download-only release)
must survive: the state file parses, its release and phase are intact, nothing is given up or set aside.
RAUC is the test double behind the adapter's interface (no install happens in a download-only update).
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bulkhead.agent.agent import Agent
from bulkhead.agent.config import AgentConfig, PodmanConfig
from bulkhead.agent.state import STATE_FORMAT, Phase, StateStore

from .fakes import FakeRauc
from .httpd import Answer, Request, serve

SEED = 20261202
ITERATIONS = 300
BUNDLE = random.Random(SEED).randbytes(1536 * 1024)
SHA = hashlib.sha256(BUNDLE).hexdigest()
JSON = [("content-type", "application/json")]
PORTAL = b"<!DOCTYPE html><html><head><title>Hotel WiFi</title></head><body>Accept the terms</body></html>"


class FuzzServer:
    """Answers each request correctly with probability `good`, else with one of many kinds of nonsense."""

    def __init__(self, seed: int, good: float = 0.4) -> None:
        self.rng = random.Random(seed)
        self.good = good
        self.base = ""
        self.lock = threading.Lock()
        self.kinds: dict[str, int] = {}
        self.accepted_seq = 0
        self.budget = 10**9  # correct answers left in this pass: a flaky link lets only a few requests through

    # -- what a correct server says --------------------------------------------------------
    def state_doc(self) -> dict[str, object]:
        release = {
            "id": 7, "version": "2.0", "compatible": "lab", "format": "plain", "sha256": SHA, "size": len(BUNDLE),
            "url": f"{self.base}/device/v1/releases/7/bundle", "action": {"id": 3, "type": "soft", "install": False},
        }  # fmt: skip
        return {
            "device": {"id": 1, "name": "dev-1", "tags": [], "groups": [], "attributes": {}},
            "desired": {"release": release, "apps": [], "files": [], "prefetch": [], "registries": {}},
            "poll_interval": 30,
        }

    def correct(self, r: Request) -> Answer:
        if r.path == "/device/v1/enroll":
            body = {"credential": "bhd_fuzz", "name": "dev-1", "device_id": 1, "status": "active"}
            return Answer(200, json.dumps(body).encode(), JSON)
        if r.path == "/device/v1/reports":
            events = json.loads(r.body).get("events") or []
            self.accepted_seq = max([self.accepted_seq, *(e["seq"] for e in events)])
            return Answer(200, json.dumps({"accepted_seq": self.accepted_seq}).encode(), JSON)
        if r.path.endswith("/bundle"):
            m = re.fullmatch(r"bytes=(\d+)-", r.headers.get("range", ""))
            start = int(m.group(1)) if m else 0
            if start >= len(BUNDLE):
                return Answer(416, b"", [("content-range", f"bytes */{len(BUNDLE)}")])
            part = BUNDLE[start:]
            # The link drops after a few KiB, so the download spans many passes and restarts (not once the server recovers).
            cut = self.rng.randrange(1, 16 * 1024) if self.good < 1.0 else None
            headers = [("etag", f'"{SHA[:16]}"'), ("content-type", "application/octet-stream")]
            if m:
                headers.append(("content-range", f"bytes {start}-{len(BUNDLE) - 1}/{len(BUNDLE)}"))
            return Answer(206 if m else 200, part, headers, cut_after=cut)
        if r.path == "/device/v1/state":
            return Answer(200, json.dumps(self.state_doc()).encode(), [*JSON, ("etag", '"s1"')])
        return Answer(200, b'{"status": "ok"}', JSON)

    # -- nonsense --------------------------------------------------------------------------
    def body(self) -> bytes:
        rng = self.rng
        good = json.dumps(self.state_doc()).encode()
        choices: list[bytes] = [
            PORTAL,
            good[: rng.randrange(len(good))],  # truncated JSON
            b"",
            rng.randbytes(rng.randrange(1, 300)),
            b"[1, 2, 3]",
            b'"just a string"',
            b"null",
            b"{" * 5000,
            b'{"desired": [], "poll_interval": "soon"}',
            b'{"desired": {"release": {"id": 7, "version": 2}}}',
            b'{"desired": {"release": {"id": 7, "version": "2.0", "compatible": "lab", "sha256": "../../x", "size": 1,'
            b' "url": "u"}}}',
            json.dumps({**self.state_doc(), "poll_interval": rng.choice([-1, 0, 1e308, "x", None, True])}).encode(),
            json.dumps({"credential": rng.choice([None, 5, "", "a\nb"]), "accepted_seq": rng.choice(["1", None, 1.5])}).encode(),
            b'{"accepted_seq": 99999999999999999999999999}',
            BUNDLE[: rng.randrange(1, 4096)],
        ]
        return rng.choice(choices)

    def headers(self) -> list[tuple[str, str]]:
        rng = self.rng
        ctype = rng.choice(
            ["application/json", "text/html; charset=utf-8", "text/plain", "application/json; charset=utf-8", "", "\x00\x7f"]
        )
        h = [("content-type", ctype)] if ctype else []
        crange = rng.choice(
            [
                None, "bytes abc-def/ghi", "bytes 0-", "bytes 5-2/10", "bytes=0-10/20", "bytes 0-10/*", "bytes */100",
                f"bytes {rng.randrange(10**6)}-{rng.randrange(10**6)}/{rng.randrange(10**6)}", "bytes -1--5/3", "\u00ff" * 20,
                f"bytes 0-{len(BUNDLE) * 2}/{len(BUNDLE) * 2}",
            ]
        )  # fmt: skip
        if crange is not None:
            h.append(("content-range", crange))
        if rng.random() < 0.3:
            h.append(("etag", rng.choice(['"x"', "", 'W/"weak"', "\u00e9\u00e8" * 50, '"' * 300])))
        if rng.random() < 0.1:
            h += [(f"x-junk-{i}", "y" * rng.randrange(100)) for i in range(rng.choice([5, 150]))]  # >100 headers
        return h

    def nonsense(self, r: Request) -> Answer:
        rng = self.rng
        kind = rng.choice(["status", "status", "body", "body", "lie", "cut", "raw", "slow", "bad-range"])
        self.kinds[kind] = self.kinds.get(kind, 0) + 1
        if kind == "status":
            status = rng.choice(
                [100, 102, 199, 201, 204, 206, 301, 302, 304, 400, 401, 403, 404, 409, 413, 416, 429, 500, 502, 503, 599]
            )
            return Answer(status, self.body(), self.headers())
        if kind == "body":
            return Answer(rng.choice([200, 200, 206]), self.body(), self.headers())
        if kind == "lie":  # Content-Length lies in both directions
            body = self.correct(r).body or self.body()
            return Answer(200, body, self.headers(), content_length=max(0, len(body) + rng.choice([-50, -1, 1, 10_000])))
        if kind == "cut":
            a = self.correct(r)
            a.cut_after = rng.randrange(0, max(1, min(len(a.body), 32 * 1024)))
            a.content_length = len(a.body) if rng.random() < 0.5 else None
            return a
        if kind == "raw":
            return Answer(
                raw=rng.choice(
                    [
                        b"",
                        b"garbage\r\n\r\n",
                        b"HTTP/1.1 2000 OK\r\n\r\n",
                        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
                        b"HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\n{}",
                        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 7\r\n\r\n{}",
                        b"HTTP/1.1 206 Partial\r\nContent-Range: bytes 0-1/2\r\n" + b"X: " + b"a" * 70_000 + b"\r\n\r\n",
                        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nbroken header line\r\n\r\n{}",
                        b'HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n{"desired":',
                    ]
                )
            )
        if kind == "slow":
            a = self.correct(r)
            a.delay = rng.uniform(0.02, 0.15)  # the agent's timeout in this test is 0.1 s
            return a
        a = self.correct(r)  # bad-range: the right bytes under a wrong or malformed Content-Range
        return Answer(206, a.body, [h for h in self.headers() if h[0] != "content-range"] + [("content-range", rng.choice(
            ["bytes 1-2/3", "nonsense", f"bytes 0-{len(BUNDLE)}/{len(BUNDLE)}", "bytes 0-0/0"]))])  # fmt: skip

    def __call__(self, r: Request) -> Answer:
        with self.lock:
            if self.budget > 0 and self.rng.random() < self.good:
                self.budget -= 1
                self.kinds["good"] = self.kinds.get("good", 0) + 1
                return self.correct(r)
            return self.nonsense(r)


def _agent(tmp_path: Path, url: str) -> Agent:
    cfg = AgentConfig(
        server=url, data_dir=tmp_path / "data", name="dev-1", compatible="lab", bootstrap_token="bhb_fuzz",
        files_root=tmp_path / "root", os_release=tmp_path / "os-release", podman=PodmanConfig(enabled=False),
    )  # fmt: skip
    agent = Agent(cfg)
    agent.client.timeout = 0.1
    agent.rauc = agent.updater.rauc = FakeRauc()  # type: ignore[assignment]
    agent.updater.sleep = lambda s: None  # download retries back off without waiting (the waits are tested elsewhere)
    return agent


def _check_state(data: Path, started: bool) -> bool:
    """The state file parses, and once the update started its release and phase are intact; returns `started`."""
    path = data / "update-state.json"
    assert not (data / "update-state.json.unreadable").exists()
    if not path.exists():
        assert not started, "the state file disappeared"
        return False
    doc = json.loads(path.read_text())
    assert doc["format_version"] == STATE_FORMAT
    state = StateStore(path).load()
    assert state.given_up == {}, state.given_up
    if state.phase is Phase.IDLE:
        assert not started, "the update in flight was lost"
        return False
    assert state.phase in (Phase.DOWNLOADING, Phase.DOWNLOADED)
    assert state.release is not None
    assert (state.release.id, state.release.action_id, state.release.sha256, state.release.install) == (7, 3, SHA, False)
    if state.phase is Phase.DOWNLOADED:
        assert hashlib.sha256((data / "downloads" / f"{SHA}.raucb").read_bytes()).hexdigest() == SHA
    return True


@pytest.fixture
def data_root(tmp_path: Path) -> Iterator[Path]:
    """On tmpfs when there is one: the agent fsyncs every event, and thousands of them are not what is tested."""
    if not Path("/dev/shm").is_dir():
        yield tmp_path
        return
    d = Path(tempfile.mkdtemp(prefix="bulkhead-fuzz-", dir="/dev/shm"))
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_the_agent_survives_a_misbehaving_server(data_root: Path, caplog: pytest.LogCaptureFixture) -> None:
    tmp_path = data_root
    caplog.set_level("CRITICAL")  # thousands of warnings are the point; keep the log quiet
    server = FuzzServer(SEED)
    began = time.monotonic()
    with serve(server) as url:
        server.base = url
        agent = _agent(tmp_path, url)
        agent.updater.resume_after_start()
        started, phases = False, set()
        for i in range(ITERATIONS):
            if i and i % 50 == 0:  # the agent restarts (a crash loop would show here): same data, new process state
                agent = _agent(tmp_path, url)
                agent.updater.resume_after_start()
            server.budget = server.rng.randrange(1, 5)
            try:
                wait = agent.tick()
            except KeyboardInterrupt:
                raise
            except BaseException as e:  # SystemExit too: the agent must never exit
                pytest.fail(f"iteration {i}: the main loop step raised {type(e).__name__}: {e} ({server.kinds})")
            assert 0.0 <= wait <= 300.0 * 1.1
            started = _check_state(tmp_path / "data", started)
            phases.add(StateStore(tmp_path / "data" / "update-state.json").load().phase)
        fuzz_time = time.monotonic() - began

        # The server recovers: the agent finishes the download and its reports get through.
        server.good, server.budget = 1.0, 10**9
        for _ in range(5):
            agent.tick()
        assert _check_state(tmp_path / "data", started)
        assert StateStore(tmp_path / "data" / "update-state.json").load().phase is Phase.DOWNLOADED
        assert agent.outbox.pending() == [] and server.accepted_seq > 0

    assert fuzz_time < 60, f"{ITERATIONS} iterations took {fuzz_time:.0f} s"
    assert started and {Phase.DOWNLOADING, Phase.DOWNLOADED} <= phases  # the download spanned passes and restarts
    assert all(server.kinds.get(k, 0) > 10 for k in ("good", "status", "body", "lie", "cut", "raw", "slow", "bad-range"))
