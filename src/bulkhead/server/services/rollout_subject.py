"""What a rollout installs: an OS release (`release_id`), an app version (`app`: {name, version}) or a package set
(`packages`: {name: {version, hold, remove}}, Debian packages the devices get with apt from the overlay), exactly
one of them; and how it is named in answers and the audit log."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..errors import Invalid, NotFound
from ..models import App, Release, Rollout
from .desired import normalize_package
from .lookups import tenant_release

__all__ = ["MAX_PACKAGES", "Subject", "package_words", "rollout_subject", "subject_of"]

MAX_PACKAGES = 256


@dataclass(frozen=True)
class Subject:
    release: Release | None = None
    app: App | None = None
    packages: dict[str, dict[str, Any]] | None = None

    def words(self) -> str:
        if self.app is not None:
            return f"app {self.app.name}:{self.app.version}"
        if self.packages is not None:
            return package_words(self.packages)
        return f"release {self.release.version}" if self.release is not None else "nothing"

    def audit(self) -> dict[str, Any]:
        if self.release is not None:
            return {"release": self.release.version}
        if self.app is not None:
            return {"app": f"{self.app.name}:{self.app.version}"}
        return {"packages": self.packages}


def package_words(packages: dict[str, dict[str, Any]], most: int = 3) -> str:
    """'packages hello=2.10-3+bulkhead1, curl (hold), old (remove)'."""

    def one(p: dict[str, Any]) -> str:
        if p.get("remove"):
            return f"{p['name']} (remove)"
        text = f"{p['name']}={p['version']}" if p.get("version") else p["name"]
        return text + (" (hold)" if p.get("hold") else "")

    names = sorted(packages)
    more = f" and {len(names) - most} more" if len(names) > most else ""
    return "packages " + ", ".join(one(packages[n]) for n in names[:most]) + more


def rollout_subject(s: Session, tid: int, body: dict[str, Any], target: dict[str, Any], action_type: str) -> Subject:
    """The subject of a new rollout's body, checked; a release sets the target's compatible."""
    release_id, app_ref, packages = body.get("release_id"), body.get("app"), body.get("packages")
    if sum(x is not None for x in (release_id, app_ref, packages)) != 1:
        raise Invalid("give exactly one of release_id (an OS release), app ({name, version}) or packages ({name: {version}})")
    if packages is not None:
        return Subject(packages=_packages(packages, action_type))
    if app_ref is not None:
        if (
            not isinstance(app_ref, dict)
            or not isinstance(app_ref.get("name"), str)
            or not isinstance(app_ref.get("version"), str)
        ):
            raise Invalid("app must be {name, version}, e.g. {'name': 'web', 'version': '2'}")
        app = s.scalar(select(App).where(App.tenant_id == tid, App.name == app_ref["name"], App.version == app_ref["version"]))
        if app is None:
            raise NotFound(f"app '{app_ref['name']}' version '{app_ref['version']}' does not exist")
        return Subject(app=app)  # target.compatible, if given, narrows the devices; an app can run on any
    rel = tenant_release(s, tid, release_id)
    if target["compatible"] and target["compatible"] != rel.compatible:
        raise Invalid(f"target.compatible '{target['compatible']}' differs from the release's '{rel.compatible}'")
    target["compatible"] = rel.compatible
    return Subject(release=rel)


def _packages(packages: Any, action_type: str) -> dict[str, dict[str, Any]]:
    if not isinstance(packages, dict) or not 1 <= len(packages) <= MAX_PACKAGES:
        raise Invalid(f"packages must be an object of 1-{MAX_PACKAGES} packages: {{'hello': {{'version': '2.10-3'}}}}")
    if action_type == "download_only":
        raise Invalid("a package rollout installs: its type is soft or forced (download_only is for releases and apps)")
    out: dict[str, dict[str, Any]] = {}
    for name in sorted(packages):
        spec = packages[name]
        if not isinstance(name, str) or not isinstance(spec, dict):
            raise Invalid(f"package {name!r}: give {{version, hold, remove}}")
        out[name] = normalize_package(name, spec)
    return out


def subject_of(s: Session, r: Rollout) -> Subject:
    """A stored rollout's subject."""
    if r.app_id is not None:
        return Subject(app=s.get(App, r.app_id))
    if r.packages is not None:
        return Subject(packages=r.packages)
    return Subject(release=s.get(Release, r.release_id))
