"""Import direction: nothing imports server or cli; the agent and bundle library carry no server dependency."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def test_import_contracts_hold() -> None:
    exe = Path(sys.executable).parent / "lint-imports"
    res = subprocess.run([str(exe)], capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1], check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "0 broken" in res.stdout


def test_bundle_library_imports_without_server_deps() -> None:
    code = (
        "import sys, bulkhead.rauc; bad = [m for m in ('fastapi', 'sqlalchemy', 'httpx', 'typer', 'rich', 'pydantic') "
        "if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stdout


def test_the_device_image_ships_every_package_the_agent_imports() -> None:
    """The reference image copies only DEVICE_PACKAGES into the device: an agent import outside them would fail
    only on a booted device (the QEMU test found it so, after 10 minutes)."""
    from bulkhead.osbuild.reference import DEVICE_PACKAGES

    code = (
        "import sys, bulkhead.agent.main, bulkhead.agent.agent; "
        "import json; print(json.dumps(sorted({m.split('.')[1] for m in sys.modules if m.startswith('bulkhead.')})))"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    imported = set(json.loads(res.stdout))
    assert imported <= set(DEVICE_PACKAGES), imported - set(DEVICE_PACKAGES)
    assert "protocol" in imported
