"""Retry delays: full-jitter exponential backoff in the main loop and the download, jitter on the poll interval."""

from __future__ import annotations

import json
import random
import socket
import statistics
from pathlib import Path

import pytest

from bulkhead.agent.agent import Agent
from bulkhead.agent.backoff import full_jitter
from bulkhead.agent.client import Client
from bulkhead.agent.config import AgentConfig, PodmanConfig
from bulkhead.agent.download import fetch_release
from bulkhead.agent.errors import ServerUnreachable
from bulkhead.agent.state import ReleaseRef

from .fakes import FakeRauc
from .httpd import Answer, Request, serve


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("attempt", [0, 1, 2, 5, 8, 9, 20])
def test_full_jitter_stays_in_its_window_and_fills_it(attempt: int) -> None:
    rng = random.Random(attempt)
    window = min(300.0, 2.0**attempt)
    samples = [full_jitter(attempt, base=1.0, cap=300.0, rng=rng) for _ in range(4000)]
    assert all(0.0 <= s <= window for s in samples)
    assert min(samples) < 0.02 * window and max(samples) > 0.98 * window  # the whole window, from 0 up
    assert statistics.fmean(samples) == pytest.approx(window / 2, rel=0.05)  # uniform: the mean is the middle
    assert statistics.pstdev(samples) == pytest.approx(window / 12**0.5, rel=0.05)


def test_the_window_grows_from_base_and_stops_at_the_cap() -> None:
    rng = random.Random(1)
    for attempt, window in [(0, 0.5), (1, 1.0), (3, 4.0), (7, 60.0), (10_000, 60.0)]:
        assert max(full_jitter(attempt, base=0.5, cap=60.0, rng=rng) for _ in range(500)) <= window
    assert full_jitter(-3, base=2.0, cap=10.0, rng=rng) <= 2.0


def test_a_fleet_does_not_retry_in_lockstep() -> None:
    """1000 devices at their sixth failure: spread over the whole 64 s window, not bunched at one instant."""
    waits = [full_jitter(6, rng=random.Random(device)) for device in range(1000)]
    per_second = [sum(1 for w in waits if s <= w < s + 1) for s in range(64)]
    assert max(per_second) < 40  # lockstep would put all 1000 into one second


def _agent(tmp_path: Path, server: str, **kw: object) -> Agent:
    cfg = AgentConfig(
        server=server, data_dir=tmp_path / "data", name="dev-1", compatible="lab", bootstrap_token="bhb_x",
        podman=PodmanConfig(enabled=False), **kw,  # type: ignore[arg-type]
    )  # fmt: skip
    agent = Agent(cfg)
    agent.rauc = agent.updater.rauc = FakeRauc()  # type: ignore[assignment]
    return agent


def test_the_main_loop_backs_off_with_full_jitter_and_never_raises(tmp_path: Path) -> None:
    random.seed(7)
    agent = _agent(tmp_path, f"http://127.0.0.1:{_closed_port()}")  # cannot enroll: every pass fails
    waits = [agent.tick() for _ in range(12)]
    for n, w in enumerate(waits):
        assert 0.0 <= w <= min(300.0, 2.0**n)
    assert len(set(waits)) == len(waits)  # random, not a fixed ladder
    assert agent._failures == 12


def test_a_good_pass_resets_the_backoff_and_waits_the_servers_interval_plus_jitter(tmp_path: Path) -> None:
    doc = {"device": {"attributes": {}}, "desired": {"release": None, "apps": [], "files": []}, "poll_interval": 40}

    def handler(r: Request) -> Answer:
        if r.path == "/device/v1/enroll":
            body = {"credential": "bhd_1", "name": "dev-1", "device_id": 1, "status": "active"}
        elif r.path == "/device/v1/reports":
            body = {"accepted_seq": max((e["seq"] for e in json.loads(r.body)["events"]), default=0)}
        else:
            body = doc
        return Answer(200, json.dumps(body).encode(), [("content-type", "application/json")])

    with serve(handler) as url:
        agent = _agent(tmp_path, url, jitter=0.25)
        agent._failures = 5
        waits = [agent.tick() for _ in range(5)]
    assert agent._failures == 0
    assert all(40.0 <= w <= 50.0 for w in waits) and len(set(waits)) == 5


def test_a_download_retries_with_full_jitter_and_hands_back_after_tries_without_a_byte(tmp_path: Path) -> None:
    random.seed(3)
    rel = ReleaseRef(1, "2.0", "lab", "ab" * 32, 100, f"http://127.0.0.1:{_closed_port()}/bundle")
    sleeps: list[float] = []
    with pytest.raises(ServerUnreachable, match="8 tries brought no byte"):
        fetch_release(Client("http://x"), rel, tmp_path, max_wait=60.0, sleep=sleeps.append, max_tries=8)
    assert len(sleeps) == 7
    for n, s in enumerate(sleeps, start=1):
        assert 0.0 <= s <= min(60.0, 2.0**n)
