"""The upstream watcher: when a layer repository moves upstream, lock the new commits, build, release.

For each target of its config the watcher asks every layer repository for the head of its branch
(`git ls-remote`) and compares it with the kas lock file. When a commit differs it writes the new lock,
runs the build, uploads the bundle as a release with its SBOMs, and optionally starts a canary rollout.
A failed build or upload puts the old lock back, so the next run tries again; nothing else is changed.

The I/O (git, the build process, the server) comes in through small interfaces, so the decisions here
are tested on their own; `bulkhead osbuild watch` wires in the real ones.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import glob
import json
import logging
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .errors import BuildError, OsBuildError
from .kasconfig import LayerRepo, load_kas, lock_path, read_lock, render_lock, repos_of, write_lock

__all__ = [
    "Heads",
    "Outcome",
    "Publisher",
    "Runner",
    "TargetSpec",
    "WatchConfig",
    "Watcher",
    "changed_repos",
    "load_watch_config",
]

log = logging.getLogger("bulkhead.osbuild.watch")

PLACEHOLDERS = ("version", "out", "kas", "lock", "target", "workdir")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RepoSpec(_Strict):
    url: str = Field(min_length=1)
    branch: str = Field(min_length=1)


class RolloutSpec(_Strict):
    """The canary rollout started after a release (the body of POST /api/v1/rollouts, less the release)."""

    name: str = "{target}-{version}"
    type: Literal["soft", "forced", "download_only"] = "soft"
    target: dict[str, Any] = Field(default_factory=dict)
    phases: list[dict[str, Any]] | None = None
    window: dict[str, Any] | None = None
    requires_approval: bool = False
    allow_empty: bool = Field(False, description="start the rollout even if no device matches its target yet")


class TargetSpec(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    kas: Path | None = Field(None, description="kas file: its remote repositories are watched; its lock file is kept")
    repos: dict[str, RepoSpec] = Field(default_factory=dict, description="repositories to watch without a kas file")
    lock: Path | None = Field(None, description="lock file (default: the kas file's <name>.lock.yml)")
    build: list[str] = Field(min_length=1, description="build command; {version} {out} {kas} {lock} {target} {workdir}")
    workdir: Path | None = None
    bundle: str = Field(min_length=1, description="path or glob of the bundle the build makes, relative to workdir")
    sboms: list[str] = Field(default_factory=list, description="paths or globs of SBOMs to attach to the release")
    version: str = Field("{timestamp}", description="release version; {timestamp} {date} {rev} {target}")
    rollout: RolloutSpec | None = None
    timeout_minutes: float = Field(360, gt=0)

    @model_validator(mode="after")
    def _sources(self) -> TargetSpec:
        if self.kas is None and not self.repos:
            raise ValueError("give a kas file (kas) or the repositories to watch (repos)")
        if self.kas is None and self.lock is None:
            raise ValueError("without a kas file, say where the lock file is (lock)")
        return self


class WatchConfig(_Strict):
    targets: list[TargetSpec] = Field(min_length=1)
    interval_minutes: float = Field(15, gt=0)
    state_dir: Path = Path(".bulkhead-watch")

    @model_validator(mode="after")
    def _unique(self) -> WatchConfig:
        names = [t.name for t in self.targets]
        if len(set(names)) != len(names):
            raise ValueError(f"target names must be unique: {names}")
        return self


def load_watch_config(path: Path) -> WatchConfig:
    """Read and check a watch config; relative paths in it are relative to the config file."""
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError as exc:
        raise OsBuildError(f"watch config {path} does not exist") from exc
    except yaml.YAMLError as exc:
        raise OsBuildError(f"watch config {path} is not valid YAML: {exc}") from exc
    try:
        cfg = WatchConfig.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'config'}: {e['msg']}" for e in exc.errors())
        raise OsBuildError(f"watch config {path} is not valid: {problems}", "see docs/osbuild.md for the format") from exc
    base = path.parent.resolve()

    def rel(p: Path | None) -> Path | None:
        return None if p is None else (p if p.is_absolute() else base / p).resolve()

    targets = []
    for t in cfg.targets:
        for template in (*t.build, t.bundle, *t.sboms):
            _check_template(template, PLACEHOLDERS, t.name)
        _check_template(t.version, ("timestamp", "date", "rev", "target"), t.name)
        if t.rollout:
            _check_template(t.rollout.name, ("version", "target"), t.name)
        targets.append(t.model_copy(update={"kas": rel(t.kas), "lock": rel(t.lock), "workdir": rel(t.workdir) or base}))
    return cfg.model_copy(update={"targets": targets, "state_dir": rel(cfg.state_dir)})


def _check_template(template: str, names: Sequence[str], target: str) -> None:
    try:
        template.format_map({n: "x" for n in names})
    except (KeyError, IndexError, ValueError) as exc:
        raise OsBuildError(f"target {target}: {template!r} uses an unknown placeholder {exc}; known: {', '.join(names)}") from exc


class Heads(Protocol):
    def head(self, url: str, branch: str) -> str: ...


class Runner(Protocol):
    def run(self, argv: Sequence[str], cwd: Path, env: Mapping[str, str], log: Path, timeout: float) -> None: ...


class Publisher(Protocol):
    """The server side of a release: the bundle, its SBOMs, a rollout. Failures raise PublishError."""

    def release(self, bundle: Path) -> dict[str, Any]: ...

    def attach_sbom(self, release_id: int, sbom: Path) -> dict[str, Any]: ...

    def start_rollout(self, body: dict[str, Any]) -> dict[str, Any]: ...


@dataclass
class Outcome:
    """What one check of one target did."""

    target: str
    status: Literal["unchanged", "released", "failed"]
    changes: dict[str, list[str | None]] = field(default_factory=dict)  # repo -> [locked, upstream]
    version: str | None = None
    release: dict[str, Any] | None = None
    sboms: list[str] = field(default_factory=list)
    rollout: dict[str, Any] | None = None
    reason: str | None = None
    warnings: list[str] = field(default_factory=list)
    build_log: str | None = None

    @property
    def ok(self) -> bool:
        return self.status != "failed" and not self.warnings


def changed_repos(locked: Mapping[str, str], heads: Mapping[str, str]) -> dict[str, list[str | None]]:
    """Repositories whose upstream head is not the locked commit: {name: [locked or None, head]}."""
    return {name: [locked.get(name), head] for name, head in sorted(heads.items()) if locked.get(name) != head}


def release_version(template: str, target: str, now: dt.datetime, changes: Mapping[str, list[str | None]]) -> str:
    rev = next((str(new)[:12] for _old, new in changes.values()), "")
    return template.format_map(
        {"timestamp": now.strftime("%Y%m%d%H%M%S"), "date": now.strftime("%Y%m%d"), "rev": rev, "target": target}
    )


class Watcher:
    def __init__(
        self,
        config: WatchConfig,
        heads: Heads,
        runner: Runner,
        publisher: Publisher,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self.config, self.heads, self.runner, self.publisher, self.clock = config, heads, runner, publisher, clock

    def run_once(self) -> list[Outcome]:
        """Check every target once; one watcher at a time per state directory."""
        with self._exclusive():
            outcomes = [self.check(t) for t in self.config.targets]
        for o in outcomes:
            self._record(o)
        return outcomes

    @contextmanager
    def _exclusive(self) -> Iterator[None]:
        self.config.state_dir.mkdir(parents=True, exist_ok=True)
        with (self.config.state_dir / "watch.lock").open("w") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError as exc:
                raise OsBuildError(
                    f"another watcher is running with state directory {self.config.state_dir}", "wait for it, or stop it"
                ) from exc
            yield

    def _record(self, outcome: Outcome) -> None:
        entry = {"at": self.clock().isoformat(), **asdict(outcome)}
        with (self.config.state_dir / "history.jsonl").open("a") as f:
            f.write(json.dumps(entry) + "\n")

    def _repos(self, t: TargetSpec) -> list[LayerRepo]:
        repos = repos_of(load_kas(t.kas)) if t.kas is not None else []
        have = {r.name for r in repos}
        return repos + [LayerRepo(n, r.url, r.branch) for n, r in sorted(t.repos.items()) if n not in have]

    def check(self, t: TargetSpec) -> Outcome:
        lock = t.lock or lock_path(t.kas)  # type: ignore[arg-type]  # the config requires one of them
        try:
            repos = self._repos(t)
            locked = read_lock(lock)
            heads = {}
            for r in repos:
                heads[r.name] = self.heads.head(r.url, r.branch)
                pinned = (locked.get(r.name) or "-")[:12]
                log.info("%s: %s %s is at %s (locked: %s)", t.name, r.name, r.branch, heads[r.name][:12], pinned)
        except OsBuildError as exc:
            log.error("%s: cannot compare with upstream: %s", t.name, exc)
            return Outcome(t.name, "failed", reason=str(exc))
        changes = changed_repos(locked, heads)
        if not changes:
            log.info("%s: every layer is at its locked commit; nothing to build", t.name)
            return Outcome(t.name, "unchanged")
        # Pins of repositories no longer watched are kept as they were.
        new_lock = {**locked, **heads}
        version = release_version(t.version, t.name, self.clock(), changes)
        outcome = Outcome(t.name, "failed", changes=changes, version=version)
        for name, (old, new) in changes.items():
            log.info("%s: %s moved %s -> %s", t.name, name, (old or "unlocked")[:12], str(new)[:12])
        previous = lock.read_text() if lock.exists() else None
        write_lock(lock, render_lock(new_lock))
        log.info("%s: locked the new commits in %s; building version %s", t.name, lock, version)
        try:
            outcome.release = self._build_and_release(t, lock, version, outcome)
        except BaseException as exc:  # whatever stopped it (even a bug or ^C), the lock goes back
            if previous is None:
                lock.unlink(missing_ok=True)
            else:
                write_lock(lock, previous)
            if not isinstance(exc, OsBuildError):
                raise
            log.error("%s: %s; the lock file is back at the released commits", t.name, exc)
            outcome.reason = str(exc)
            return outcome
        outcome.status = "released"
        self._after_release(t, version, outcome)
        return outcome

    def _build_and_release(self, t: TargetSpec, lock: Path, version: str, outcome: Outcome) -> dict[str, Any]:
        stamp = self.clock().strftime("%Y%m%dT%H%M%SZ")
        out = self.config.state_dir / "builds" / f"{t.name}-{stamp}"
        out.mkdir(parents=True, exist_ok=True)
        workdir = t.workdir or Path.cwd()
        values = {"version": version, "out": str(out), "kas": str(t.kas or ""), "lock": str(lock), "target": t.name}
        values["workdir"] = str(workdir)
        argv = [a.format_map(values) for a in t.build]
        build_log = out / "build.log"
        outcome.build_log = str(build_log)
        env = {"BULKHEAD_VERSION": version, "BULKHEAD_OUT": str(out), "BULKHEAD_LOCK": str(lock)}
        log.info("%s: running %s (log: %s)", t.name, " ".join(argv), build_log)
        self.runner.run(argv, workdir, env, build_log, t.timeout_minutes * 60)
        bundle = self._one(workdir, t.bundle.format_map(values), "bundle")
        sboms = [self._one(workdir, s.format_map(values), "SBOM") for s in t.sboms]
        log.info("%s: build done; uploading %s (%d bytes)", t.name, bundle, bundle.stat().st_size)
        release = self.publisher.release(bundle)
        log.info("%s: released %s %s as release %s", t.name, release.get("compatible"), release.get("version"), release.get("id"))
        outcome.sboms = [str(s) for s in sboms]
        return release

    def _after_release(self, t: TargetSpec, version: str, outcome: Outcome) -> None:
        """SBOMs and the canary rollout: the release exists now, so a failure here is a warning, not a rollback."""
        assert outcome.release is not None
        rid = int(outcome.release["id"])
        for sbom in outcome.sboms:
            try:
                info = self.publisher.attach_sbom(rid, Path(sbom))
                log.info("%s: attached %s SBOM %s (%s components)", t.name, info.get("format"), sbom, info.get("components"))
            except OsBuildError as exc:
                outcome.warnings.append(f"SBOM {sbom} not attached: {exc}")
                log.error("%s: SBOM %s not attached: %s", t.name, sbom, exc)
        if t.rollout is None:
            return
        spec = t.rollout
        body = {
            "name": spec.name.format_map({"version": version, "target": t.name}),
            "release_id": rid,
            "type": spec.type,
            "target": spec.target,
            "phases": spec.phases,
            "window": spec.window,
            "requires_approval": spec.requires_approval,
            "allow_empty": spec.allow_empty,
        }
        try:
            outcome.rollout = self.publisher.start_rollout(body)
            log.info("%s: started rollout %s of release %s", t.name, body["name"], rid)
        except OsBuildError as exc:
            outcome.warnings.append(f"rollout {body['name']} not started: {exc}")
            log.error("%s: rollout %s not started: %s", t.name, body["name"], exc)

    @staticmethod
    def _one(workdir: Path, pattern: str, what: str) -> Path:
        full = pattern if os.path.isabs(pattern) else str(workdir / pattern)
        matches = sorted(glob.glob(full))
        if not matches:
            raise BuildError(f"the build made no {what} matching {pattern}", "check 'bundle'/'sboms' in the watch config")
        if len(matches) > 1:
            names = ", ".join(Path(m).name for m in matches)
            raise BuildError(f"several files match the {what} pattern {pattern}: {names}", "make the pattern name one file")
        return Path(matches[0])
