"""`bulkhead overlay rebuild` (osbuild/overlay_rebuild.py): the pure parts, then the real thing: Debian's `hello`
fetched from the archive, patched, bumped to +bulkhead1 with a changelog entry naming a CVE, built in a clean
mmdebstrap chroot, uploaded to a live server's overlay through the CLI, and installed by the agent's apt applier on
a Debian root made by mmdebstrap, where apt verifies the overlay's InRelease and the patched program runs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from debian.changelog import Changelog

from bulkhead.agent.packages import Apt as AgentApt
from bulkhead.agent.packages import overlay_files
from bulkhead.osbuild.errors import OsBuildError
from bulkhead.osbuild.overlay_rebuild import (
    RebuildSpec,
    build_script,
    changelog_entry,
    entry_args,
    fetch_script,
    next_version,
    write_entry,
)
from tests.live import live_server

PATCH = Path(__file__).parents[1] / "data" / "overlay-hello-greeting.patch"
CVE = "CVE-2099-0001"  # the test's patch fixes no real CVE: the id only has to reach the overlay and the VEX statement


def test_next_version_sorts_after_the_patched_one() -> None:
    assert next_version("2.10-3") == "2.10-3+bulkhead1"
    assert next_version("3.0.11-1~deb12u2") == "3.0.11-1~deb12u2+bulkhead1"
    assert next_version("1:2.0-1+bulkhead1") == "1:2.0-1+bulkhead2"
    assert next_version("2.0-1+bulkhead9") == "2.0-1+bulkhead10"
    with pytest.raises(ValueError):
        next_version("not a version!")


def test_the_changelog_entry_is_one_debian_changelog_block_naming_the_cves() -> None:
    text = changelog_entry("openssl", "3.0.11-1+bulkhead1", "bookworm", "fix.patch", ["CVE-2024-5535"], "", 1764800000.0)
    [block] = list(Changelog(text))
    assert str(block.version) == "3.0.11-1+bulkhead1" and block.distributions == "bookworm" and block.urgency == "high"
    assert "CVE-2024-5535" in "\n".join(block.changes()) and block.date == "Wed, 03 Dec 2025 22:13:20 +0000"


def test_a_bad_request_is_refused_before_anything_runs(tmp_path: Path) -> None:
    patch = tmp_path / "fix.patch"
    patch.write_text("--- a/x\n+++ b/x\n")
    for spec, why in (
        (RebuildSpec("Hello World", patch), "not a Debian source package"),
        (RebuildSpec("hello", patch, suite="Bookworm!"), "not a suite"),
        (RebuildSpec("hello", patch, cves=("CVE-24-1",)), "not CVE ids"),
        (RebuildSpec("hello", tmp_path / "missing.patch"), "is not a file"),
    ):
        with pytest.raises(OsBuildError, match=why):
            spec.check()
    script = fetch_script(RebuildSpec("hello", patch))
    assert "apt-get source -q --only-source hello" in script and "debian/patches/fix.patch" in script
    assert "dpkg-buildpackage -b" in build_script()


def test_the_hook_between_the_stages_writes_the_entry_after_the_fetched_version(tmp_path: Path) -> None:
    patch = tmp_path / "fix.patch"
    patch.write_text("--- a/x\n+++ b/x\n")
    spec = RebuildSpec("hello", patch, cves=("CVE-2024-1",), when=1764800000.0)
    (tmp_path / "entry.json").write_text(json.dumps(entry_args(spec)))
    (tmp_path / "version").write_text("2.10-3+bulkhead1\n")
    assert write_entry(tmp_path) == "2.10-3+bulkhead2"
    [block] = list(Changelog((tmp_path / "entry").read_text()))
    assert str(block.version) == "2.10-3+bulkhead2" and "CVE-2024-1" in "\n".join(block.changes())
    (tmp_path / "version").write_text("2.10-3\n")
    r = subprocess.run([sys.executable, "-m", "bulkhead.osbuild.overlay_rebuild", str(tmp_path)], capture_output=True, text=True)
    assert r.returncode == 0 and "rebuilding as 2.10-3+bulkhead1" in r.stderr, r.stderr
    (tmp_path / "version").write_text("not a version!\n")
    r = subprocess.run([sys.executable, "-m", "bulkhead.osbuild.overlay_rebuild", str(tmp_path)], capture_output=True, text=True)
    assert r.returncode == 1 and "no changelog entry could be prepared" in r.stderr, "the hook fails the build"


def _need_rebuild_tools() -> None:
    missing = [t for t in ("mmdebstrap", "apt-get", "gpg", "gpgv", "dpkg-deb") if shutil.which(t) is None]
    if missing:
        pytest.skip(f"missing {', '.join(missing)}: install the Debian packages mmdebstrap, apt, gnupg, gpgv, dpkg")
    if os.geteuid() != 0:
        pytest.skip("mmdebstrap's chroots need root here")


def test_rebuild_hello_with_a_patch_upload_it_and_install_it_with_apt(tmp_path: Path) -> None:
    _need_rebuild_tools()
    with live_server(tmp_path / "server") as server:
        token = server.tenant()
        env = {**os.environ, "BULKHEAD_SERVER": server.url, "BULKHEAD_TOKEN": token, "COLUMNS": "200"}
        args = ["overlay", "rebuild", "hello", "--patch", str(PATCH), "--suite", "bookworm", "--cve", CVE]
        r = subprocess.run(
            [sys.executable, "-m", "bulkhead.cli", *args, "--out", str(tmp_path / "out"), "--json"],
            env=env, capture_output=True, text=True, timeout=1800,
        )  # fmt: skip
        assert r.returncode == 0, r.stderr[-3000:]
        [deb] = list((tmp_path / "out").glob("hello_*.deb"))
        assert deb.name == "hello_2.10-3+bulkhead1_amd64.deb", "the version after bookworm's 2.10-3"
        with server.client(token) as c:
            [pkg] = c.get("/api/v1/overlay/packages", params={"name": "hello"}).json()
            assert (pkg["version"], pkg["fixes"], pkg["suite"]) == ("2.10-3+bulkhead1", [CVE], "bookworm")
            boot = c.post("/api/v1/bootstrap-tokens", json={"name": "deb-dev", "group": "line"}).json()
            cred = c.post(
                "/device/v1/enroll", json={"bootstrap_token": boot["token"], "name": "deb-dev", "compatible": "Test Config"}
            ).json()["credential"]
            c.patch(
                "/api/v1/devices/deb-dev/desired", json={"packages": {"hello": {"version": pkg["version"]}}}
            ).raise_for_status()
            auth = {"authorization": f"Bearer {cred}"}
            state = c.get("/device/v1/state", headers=auth).json()["desired"]
            key = c.get(state["overlay"]["key_url"], headers=auth).text

        # The device: a Debian root made by mmdebstrap, its own apt and dpkg, the agent's apt applier.
        root = tmp_path / "device"
        made = subprocess.run(
            ["mmdebstrap", "--variant=minbase", "bookworm", str(root), "deb http://deb.debian.org/debian bookworm main"],
            capture_output=True, text=True, timeout=1800,
        )  # fmt: skip
        assert made.returncode == 0, made.stderr[-2000:]
        conf = tmp_path / "apt.conf"
        conf.write_text(
            "".join(
                f'{k} "{v}";\n'
                for k, v in {
                    "Dir": root,
                    "Dir::State::status": root / "var/lib/dpkg/status",
                    "Debug::NoLocking": "1",
                    "APT::Sandbox::User": "root",
                    "Acquire::Languages": "none",
                }.items()
            )
            + f'DPkg::Options {{ "--root={root}"; "--force-not-root"; }};\n'
        )
        apt = AgentApt(root, {"APT_CONFIG": str(conf), "PATH": os.environ.get("PATH", "/usr/bin:/bin")})
        ov = state["overlay"]
        assert apt.write_overlay(overlay_files(root, ov["url"], "bookworm", ov["components"], key, "deb-dev", cred))
        result = apt.apply(state["packages"])
        assert result.ok and result.installed.get("hello") == "2.10-3+bulkhead1", result.error
        out = subprocess.run(["chroot", str(root), "/usr/bin/hello"], capture_output=True, text=True, check=True).stdout
        assert out.strip() == "Hello, patched world!", "the patched program runs on the device"
