"""A RAUC stand-in behind the adapter's interface (status, install, mark-*), for tests that drive the whole agent, and
that agent built against a live server (`lab_agent`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bulkhead.agent.agent import Agent
from bulkhead.agent.config import AgentConfig, PodmanConfig
from bulkhead.agent.rauc import RaucStatus, SlotInfo


@dataclass
class FakeRauc:
    compatible: str = "lab"
    booted: str = "A"
    versions: dict[str, str | None] = field(default_factory=lambda: {"A": "1.0", "B": None})
    installed: list[str] = field(default_factory=list)
    marked: list[tuple[str, str]] = field(default_factory=list)

    def status(self) -> RaucStatus:
        slots = tuple(
            SlotInfo(f"rootfs.{i}", b, "booted" if b == self.booted else "inactive", "good", v, "ok")
            for i, (b, v) in enumerate(sorted(self.versions.items()))
        )
        return RaucStatus(self.compatible, self.booted, self.booted, slots)

    def install(self, source: str, on_progress: Callable[[int, str], None] | None = None) -> None:
        self.installed.append(source)

    def version(self) -> tuple[int, int] | None:
        return (1, 8)

    def mark_good(self, slot: str = "booted") -> None:
        self.marked.append(("good", slot))

    def mark_bad(self, slot: str = "booted") -> None:
        self.marked.append(("bad", slot))

    def mark_active(self, slot: str = "booted") -> None:
        self.marked.append(("active", slot))


def lab_agent(server: str, data: Path, name: str, bootstrap: str, root: Path | None = None) -> Agent:
    """The real agent against `server`, its state in `data`, without Podman and with RAUC's stand-in above."""
    root = root or data
    cfg = AgentConfig(
        server=server, data_dir=data, name=name, compatible="lab", bootstrap_token=bootstrap,
        files_root=root / "root", podman=PodmanConfig(enabled=False), os_release=root / "os-release",
    )  # fmt: skip
    agent = Agent(cfg)
    agent.rauc = agent.updater.rauc = FakeRauc()  # type: ignore[assignment]
    return agent
