"""The I/O of the upstream watcher: `git ls-remote` for upstream heads, and the build command in a subprocess."""

from __future__ import annotations

import os
import re
import signal
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from .errors import BuildError, OsBuildError

__all__ = ["GitRemote", "SubprocessRunner", "UpstreamError"]

_LINE = re.compile(r"^([0-9a-f]{40})\t(\S+)$")


class UpstreamError(OsBuildError):
    """An upstream repository could not be asked for its head."""


class GitRemote:
    """Asks a remote repository for the commit at the head of a branch, without cloning it."""

    def __init__(self, timeout: float = 120) -> None:
        self.timeout = timeout

    def head(self, url: str, branch: str) -> str:
        ref = f"refs/heads/{branch}"
        env = {**os.environ, "GIT_TERMINAL_PROMPT": "0"}  # never wait for a password on a terminal
        try:
            proc = subprocess.run(
                ["git", "ls-remote", "--exit-code", url, ref],
                capture_output=True,
                text=True,
                timeout=self.timeout,
                env=env,
                check=False,
            )
        except FileNotFoundError as exc:
            raise UpstreamError("git is not installed", "apt install git") from exc
        except subprocess.TimeoutExpired as exc:
            raise UpstreamError(f"git ls-remote {url} took longer than {self.timeout:.0f} s", "check the network") from exc
        if proc.returncode == 2:
            raise UpstreamError(f"{url} has no branch {branch}", "check the branch in the kas file or watch config")
        if proc.returncode != 0:
            raise UpstreamError(f"git ls-remote {url} failed: {proc.stderr.strip() or proc.returncode}")
        for line in proc.stdout.splitlines():
            m = _LINE.match(line)
            if m and m.group(2) == ref:
                return m.group(1)
        raise UpstreamError(f"git ls-remote {url} {ref} gave no commit: {proc.stdout.strip()!r}")


class SubprocessRunner:
    """Runs a build command; its output goes to a log file that is kept, whatever the outcome."""

    def run(self, argv: Sequence[str], cwd: Path, env: Mapping[str, str], log: Path, timeout: float) -> None:
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("ab") as out:
            try:
                # its own process group, so that a timeout stops the whole build (bitbake and its workers)
                proc = subprocess.Popen(
                    list(argv), cwd=cwd, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
                )
            except FileNotFoundError as exc:
                raise BuildError(f"build command {argv[0]!r} not found", "check 'build' in the watch config") from exc
            try:
                code = proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired as exc:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
                raise BuildError(f"build took longer than {timeout:.0f} s and was stopped", f"see {log}") from exc
            except BaseException:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait()
                raise
        if code != 0:
            raise BuildError(f"build command exited with status {code}", f"see {log}")
