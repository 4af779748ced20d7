"""The agent's health checks after an OS update: what decides between marking the slot good and rolling back."""

from __future__ import annotations

import json
import shutil
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


def _dpkg_root(root: Path, version: str) -> Path:
    """A root whose dpkg has hello `version` installed, and an apt configuration that reads only this root."""
    admin = root / "var/lib/dpkg"
    (admin / "updates").mkdir(parents=True)
    (admin / "status").write_text(
        f"Package: hello\nStatus: install ok installed\nPriority: optional\nSection: misc\nMaintainer: T <t@example.com>\n"
        f"Architecture: all\nVersion: {version}\nDescription: test\n"
    )
    for d in ("etc/apt/apt.conf.d", "etc/apt/sources.list.d", "var/lib/apt/lists/partial", "var/cache/apt/archives/partial",
              "var/log/apt"):  # fmt: skip
        (root / d).mkdir(parents=True, exist_ok=True)
    conf = root / "apt.conf"
    conf.write_text(
        f'Dir "{root}";\nDir::State::status "{admin / "status"}";\nDebug::NoLocking "1";\n'
        f'DPkg::Options {{ "--root={root}"; "--force-not-root"; }};\n'  # dpkg never touches this host's packages
    )
    return conf


def _apt_agent(tmp_path: Path, root: Path, conf: Path) -> Agent:
    """An agent whose apt works on `root` only, without Podman."""
    cfg = AgentConfig(
        server="http://127.0.0.1:9", data_dir=tmp_path / "data", name="dev-1", apt_root=root, apt_config=conf,
        health=HealthConfig(check_apps=False), podman=PodmanConfig(enabled=False),
    )  # fmt: skip
    return Agent(cfg)


@pytest.mark.skipif(not shutil.which("dpkg-query") or not shutil.which("apt-get"), reason="needs dpkg and apt")
def test_the_slot_is_healthy_only_with_the_desired_packages_as_asked(tmp_path: Path) -> None:
    """After an OS update the new slot's dpkg decides: packages as asked pass without running apt; a package the
    new slot has at another version is applied again, and while apt cannot, the check says what is wrong; what apt
    can do (a removal) is done and then passes."""
    root = tmp_path / "root"
    conf = _dpkg_root(root, "1.0-1")
    agent = _apt_agent(tmp_path, root, conf)

    def want(packages: list[dict[str, object]]) -> str | None:
        agent.desired_path.write_text(json.dumps({"desired": {"packages": packages}}))
        return agent._packages_as_desired()

    hello = {"name": "hello", "version": "1.0-1", "hold": False, "remove": False}
    assert want([]) is None, "no desired packages: nothing to check"
    assert want([hello]) is None
    wrong = want([{**hello, "version": "2.0-1"}])
    assert wrong == "packages not as asked: hello (asked 2.0-1, has 1.0-1)", wrong
    assert want([{**hello, "version": None, "remove": True}]) is None, "a removal apt can do is done, then healthy"
    assert agent._apt().installed(["hello"]) == {}
    assert "packages" in [name for name, _ in agent._checks()]


@pytest.mark.skipif(not shutil.which("dpkg-query") or not shutil.which("apt-get"), reason="needs dpkg and apt")
def test_a_package_rollouts_action_is_named_in_the_report_once_per_action(tmp_path: Path) -> None:
    """The rollout counts a device by the action id its package report carries: reported once per action (the same
    packages under a new action are reported again), never for an action outside its window."""
    root = tmp_path / "root"
    conf = _dpkg_root(root, "1.0-1")
    agent = _apt_agent(tmp_path, root, conf)
    hello = [{"name": "hello", "version": "1.0-1", "hold": False, "remove": False}]

    def converge(action: dict[str, object] | None) -> list[dict[str, object]]:
        desired = {"packages": hello, **({"packages_action": action} if action else {})}
        before = len(agent.outbox.pending())
        agent.converge_packages(desired, {"desired": desired})
        return [e["details"] for e in agent.outbox.pending()[before:] if e["kind"] == "package"]

    assert [d.get("action") for d in converge({"id": 7, "type": "soft", "install": True})] == [7]
    assert converge({"id": 7, "type": "soft", "install": True}) == [], "said once"
    assert [d.get("action") for d in converge({"id": 8, "type": "soft", "install": True})] == [8]
    [outside] = converge({"id": 9, "type": "soft", "install": False, "window_opens_at": "2028-02-29T00:00:00+00:00"})
    assert "action" not in outside and outside["installed"] == {"hello": "1.0-1"}
