"""Podman adapter: list, pull, run, start and remove the agent's containers through the `podman` command."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

from .apps import LABEL_APP, LABEL_OWNER, LABEL_SPEC, LABEL_VERSION, Running, spec_hash
from .command import run_tool
from .errors import PodmanError
from .state import write_atomic

__all__ = ["Podman", "write_authfile"]


def write_authfile(path: Path, registries: dict[str, dict[str, str]]) -> Path:
    """Registry credentials in the containers-auth.json format, readable by root only."""
    auths = {
        host: {"auth": base64.b64encode(f"{c['username']}:{c['password']}".encode()).decode()} for host, c in registries.items()
    }
    write_atomic(path, json.dumps({"auths": auths}).encode(), 0o600)
    return path


class Podman:
    def __init__(
        self,
        command: tuple[str, ...] = ("podman",),
        owner: str = "bulkhead",
        run_args: tuple[str, ...] = (),
        insecure_registries: tuple[str, ...] = (),
        authfile: Path | None = None,
    ) -> None:
        self.command, self.owner, self.run_args = command, owner, run_args
        self.insecure, self.authfile = insecure_registries, authfile

    def _run(self, *args: str, timeout: float = 600) -> str:
        label = f"podman {' '.join(args[:2])}"
        return run_tool(self.command, args, PodmanError, "apps need Podman on the device", label, timeout)

    def managed(self) -> list[Running]:
        out = self._run("ps", "-a", "--format", "json", "--filter", f"label={LABEL_OWNER}={self.owner}")
        result = []
        for c in json.loads(out or "[]"):
            labels = c.get("Labels") or {}
            names = c.get("Names") or [""]
            result.append(
                Running(
                    names[0],
                    labels.get(LABEL_APP, ""),
                    labels.get(LABEL_VERSION, ""),
                    labels.get(LABEL_SPEC, ""),
                    c.get("State", ""),
                )
            )
        return result

    def _tls(self, image: str) -> list[str]:
        host = image.split("/", 1)[0]
        return ["--tls-verify=false"] if host in self.insecure else []

    def pull(self, image: str) -> None:
        auth = ["--authfile", str(self.authfile)] if self.authfile and self.authfile.exists() else []
        self._run("pull", "--quiet", *auth, *self._tls(image), image)

    def create(self, name: str, app: str, version: str, spec: dict[str, Any]) -> None:
        """Run the container detached (its image pulled already), labelled so that drift can be detected."""
        args = [
            "run",
            "-d",
            "--name",
            name,
            "--label",
            f"{LABEL_OWNER}={self.owner}",
            "--label",
            f"{LABEL_APP}={app}",
            "--label",
            f"{LABEL_VERSION}={version}",
            "--label",
            f"{LABEL_SPEC}={spec_hash(spec)}",
            "--restart",
            spec.get("restart", "always"),
        ]
        for k, v in sorted(spec.get("env", {}).items()):
            args += ["--env", f"{k}={v}"]
        for p in spec.get("ports", []):
            args += ["--publish", p]
        for v in spec.get("volumes", []):
            args += ["--volume", v]
        if spec.get("privileged"):
            args.append("--privileged")
        for d in spec.get("devices", []):
            args += ["--device", d]
        if spec.get("network_mode"):
            args += ["--network", spec["network_mode"]]
        self._run(*args, *self.run_args, spec["image"], *spec.get("command", []))

    def start(self, name: str) -> None:
        self._run("start", name)

    def remove(self, name: str) -> None:
        self._run("rm", "--force", "--time", "5", name)

    def states(self) -> dict[str, str]:
        return {c.name: c.state for c in self.managed()}
