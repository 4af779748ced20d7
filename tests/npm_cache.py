"""npm packages the tests run with node (the CSAF validator, the OpenID Connect provider), installed once into the
test cache (XDG_CACHE_HOME/bulkhead-tests/NAME)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

__all__ = ["cache_dir", "npm_install"]


def cache_dir(name: str) -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "bulkhead-tests" / name


def npm_install(cache: Path, package: str, module: str, what: str) -> Path:
    """`package` (name@version) installed under `cache` unless node_modules/`module` is there; skips naming what is
    missing when node or npm is not installed or the registry cannot be reached."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip(f"node and npm are needed for {what} (apt install nodejs npm)")
    if not (cache / "node_modules" / module).exists():
        cache.mkdir(parents=True, exist_ok=True)
        r = subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", "--prefix", str(cache), package],
            capture_output=True,
            text=True,
            timeout=600,
        )
        if r.returncode != 0:
            pytest.skip(f"npm could not install {package}: {r.stderr[-500:]}")
    return cache
