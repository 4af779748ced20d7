"""The Podman adapter runs containers with the host access their spec asks for (real Podman, private storage)."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest

from bulkhead.agent.podman import Podman
from bulkhead.lab.device import PODMAN_RUN_ARGS
from tests.conftest import need_tool


def test_privileged_devices_and_network_mode_reach_podman(tmp_path: Path) -> None:
    need_tool("podman", "podman")
    need_tool("runc", "runc")
    busybox = shutil.which("busybox")
    if busybox is None:
        pytest.skip("'busybox' is missing: install the Debian package 'busybox-static'")
    run = Path(tempfile.mkdtemp(prefix="bh-podman-", dir="/tmp"))  # Podman wants a runroot under 50 characters
    base = ("podman", "--root", str(tmp_path / "root"), "--runroot", str(run), "--storage-driver", "vfs")
    root = tmp_path / "img"
    (root / "bin").mkdir(parents=True)
    shutil.copy(busybox, root / "bin" / "busybox")
    subprocess.run(["tar", "-C", str(root), "-cf", str(tmp_path / "img.tar"), "."], check=True)
    cmd = 'CMD ["/bin/busybox","sleep","300"]'
    subprocess.run([*base, "import", "--quiet", "--change", cmd, str(tmp_path / "img.tar"), "localhost/bb:1"], check=True)
    podman = Podman(command=base, run_args=tuple(PODMAN_RUN_ARGS))

    def host_config(name: str) -> dict[str, Any]:
        out = subprocess.run([*base, "inspect", name], check=True, capture_output=True, text=True).stdout
        config: dict[str, Any] = json.loads(out)[0]["HostConfig"]
        return config

    try:
        podman.create(
            "bulkhead.hw.p", "hw", "1", {"name": "p", "image": "localhost/bb:1", "privileged": True, "network_mode": "none"}
        )
        host = host_config("bulkhead.hw.p")
        assert host["Privileged"] is True and host["NetworkMode"] == "none"
        podman.create("bulkhead.hw.d", "hw", "1", {"name": "d", "image": "localhost/bb:1", "devices": ["/dev/null:/dev/xnull"]})
        host = host_config("bulkhead.hw.d")
        assert [d["PathInContainer"] for d in host["Devices"]] == ["/dev/xnull"]
        assert host["Privileged"] is False and host["NetworkMode"] != "none"
    finally:
        subprocess.run([*base, "rm", "--force", "--all", "--time", "0"], capture_output=True, check=False)
        shutil.rmtree(run, ignore_errors=True)
