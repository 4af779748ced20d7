"""kas project files: loaded and validated by kas itself, the layer repositories they name, and lock files.

A kas lock file (`<name>.lock.yml` next to `<name>.yml`) pins each repository to a commit:

    header:
      version: 14
    overrides:
      repos:
        poky:
          commit: 0123...
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ..agent.state import write_atomic
from .errors import OsBuildError

__all__ = ["KAS_FILE_VERSION", "LayerRepo", "load_kas", "lock_path", "read_lock", "render_lock", "repos_of", "write_lock"]

KAS_FILE_VERSION = 14
_SHA = re.compile(r"^[0-9a-f]{40}$")


@dataclass(frozen=True)
class LayerRepo:
    """A layer repository followed upstream: where it is and which branch."""

    name: str
    url: str
    branch: str


def load_kas(path: Path) -> dict[str, Any]:
    """The merged configuration of a kas file and its includes, each file checked against kas's own schema."""
    try:
        from kas.context import create_global_context, get_context
        from kas.includehandler import IncludeHandler
        from kas.kasusererror import KasUserError
    except ImportError as exc:  # pragma: no cover - kas is a dependency of the osbuild extra
        raise OsBuildError("the kas package is not installed", "pip install 'bulkhead[osbuild]'") from exc
    if not path.is_file():
        raise OsBuildError(f"kas file {path} does not exist", "give the path of a kas project file (.yml)")
    if get_context() is None:
        create_global_context(argparse.Namespace(no_color=True))
    try:
        config, missing = IncludeHandler([str(path)], use_lock=False).get_config()
    except KasUserError as exc:
        raise OsBuildError(f"kas file {path} is not valid: {exc}", "see https://kas.readthedocs.io for the format") from exc
    if missing:
        raise OsBuildError(f"kas file {path} includes files from repositories not checked out: {', '.join(missing)}")
    return config  # type: ignore[no-any-return]


def repos_of(config: dict[str, Any]) -> list[LayerRepo]:
    """The remote repositories of a merged kas configuration (repositories without a URL are local)."""
    default_branch = ((config.get("defaults") or {}).get("repos") or {}).get("branch")
    out = []
    for name, repo in sorted((config.get("repos") or {}).items()):
        repo = repo or {}
        if not repo.get("url"):
            continue
        branch = repo.get("branch") or default_branch
        if not branch:
            raise OsBuildError(f"kas repository {name} has no branch", "set repos.<name>.branch or defaults.repos.branch")
        out.append(LayerRepo(name, str(repo["url"]), str(branch)))
    return out


def lock_path(kas_file: Path) -> Path:
    """kas's own naming: kas/machines/qemux86-64.yml -> kas/machines/qemux86-64.lock.yml."""
    return kas_file.with_name(f"{kas_file.stem}.lock{kas_file.suffix}")


def read_lock(path: Path) -> dict[str, str]:
    """The pinned commit of each repository; an absent lock file pins nothing."""
    if not path.exists():
        return {}
    try:
        doc = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise OsBuildError(f"lock file {path} is not valid YAML: {exc}", "fix it or delete it to lock anew") from exc
    repos = (doc.get("overrides") or {}).get("repos") if isinstance(doc, dict) else None
    if not isinstance(repos, dict) or not repos:
        raise OsBuildError(f"lock file {path} has no overrides.repos mapping", "a kas lock file is expected")
    out = {}
    for name, entry in repos.items():
        commit = (entry or {}).get("commit") if isinstance(entry, dict) else None
        if not isinstance(commit, str) or not _SHA.match(commit):
            raise OsBuildError(f"lock file {path}: repository {name} has no 40-hex commit", "fix it or delete it to lock anew")
        out[str(name)] = commit
    return out


def render_lock(commits: dict[str, str]) -> str:
    """A kas lock file pinning each repository to its commit, sorted so that diffs stay small."""
    for name, commit in commits.items():
        if not _SHA.match(commit):
            raise ValueError(f"{name}: {commit!r} is not a 40-hex commit")
    doc = {"header": {"version": KAS_FILE_VERSION}, "overrides": {"repos": {n: {"commit": commits[n]} for n in sorted(commits)}}}
    return "# Written by 'bulkhead osbuild watch': the layer commits of the last released build.\n" + yaml.safe_dump(
        doc, sort_keys=False
    )


def write_lock(path: Path, text: str) -> None:
    """Replace the lock file atomically: a reader sees the old or the new one, never half of one."""
    write_atomic(path, text.encode(), mode=0o644)  # a file kept in the project's repository, readable by all
