"""The agent's health checks after an OS update: what decides between marking the slot good and rolling back."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bulkhead.agent.agent import Agent
from bulkhead.agent.config import AgentConfig, HealthConfig, PodmanConfig
from bulkhead.agent.errors import PodmanError


def _agent(tmp_path: Path, required: tuple[str, ...] = ()) -> Agent:
    # a Podman whose storage is broken, as seen in a QEMU guest after a slot switch
    podman = tmp_path / "podman"
    podman.write_text("#!/bin/sh\necho 'Error: kernel does not support overlay fs' >&2\nexit 125\n")
    podman.chmod(0o755)
    cfg = AgentConfig(
        server="http://127.0.0.1:9", data_dir=tmp_path / "data", name="dev-1",
        health=HealthConfig(required_containers=required), podman=PodmanConfig(command=(str(podman),)),
    )  # fmt: skip
    return Agent(cfg)


def test_a_device_that_runs_no_containers_is_not_rolled_back_for_podman(tmp_path: Path) -> None:
    agent = _agent(tmp_path)
    agent.desired_path.write_text(json.dumps({"desired": {"apps": []}}))
    assert agent._containers_running() is None


def test_containers_the_device_needs_are_checked_with_podman(tmp_path: Path) -> None:
    agent = _agent(tmp_path, required=("web",))
    with pytest.raises(PodmanError, match="overlay"):
        agent._containers_running()
