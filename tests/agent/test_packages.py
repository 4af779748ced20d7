"""The agent's apt adapter on an image-based device (agent/packages.py): a read-only root refuses package changes
before apt runs, with what to do instead."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from bulkhead.agent.packages import READ_ONLY, Apt, read_only


def test_a_read_only_root_refuses_package_changes_before_apt_runs(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("mounting a read-only file system needs root")
    usr = tmp_path / "usr"
    usr.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "ro-usr", str(usr)], check=True)
    try:
        assert read_only(usr) and not read_only(tmp_path)
        result = Apt(root=tmp_path).apply([{"name": "jq"}])
        assert not result.ok and result.error == READ_ONLY
        assert "build them into the OS release" in READ_ONLY and not (tmp_path / "var").exists()
    finally:
        subprocess.run(["umount", str(usr)], check=True)
    assert not read_only(tmp_path / "absent")
