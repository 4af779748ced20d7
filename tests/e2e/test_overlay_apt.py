"""The package overlay with the real apt of this host (apt-get with its own configuration, lists, cache and dpkg
status in a temporary root, as a device's apt would run): apt verifies the InRelease signature and fetches the
packages; a tampered Packages file, a wrong key, an expired index and a missing device credential are each refused."""

from __future__ import annotations

import gzip
import hashlib
import lzma
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from bulkhead.agent.packages import Apt as AgentApt
from bulkhead.agent.packages import overlay_files
from bulkhead.lab.apt_root import make_apt_root
from tests.live import LiveServer, live_server
from tests.overlay_debs import make_deb

pytestmark = pytest.mark.skipif(
    not all(shutil.which(t) for t in ("apt-get", "gpg", "gpgv", "dpkg-deb")), reason="needs apt, gpg and dpkg-deb"
)


@dataclass
class Apt:
    root: Path
    env: dict[str, str]
    key: Path

    def run(self, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["apt-get", *args], env=self.env, cwd=cwd, capture_output=True, text=True, timeout=60)

    def policy(self, name: str) -> str:
        return subprocess.run(["apt-cache", "policy", name], env=self.env, capture_output=True, text=True, check=True).stdout

    def forget(self) -> None:
        """Forget every index apt fetched, as a device that never ran apt-get update."""
        lists = self.root / "var/lib/apt/lists"
        shutil.rmtree(lists)
        (lists / "partial").mkdir(parents=True)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with live_server(tmp_path_factory.mktemp("overlay-server")) as srv:
        yield srv


def _apt_root(root: Path, url: str, device: str, credential: str, public_key: str) -> Apt:
    conf = make_apt_root(root)
    key = root / "keys/bulkhead-overlay.asc"
    key.parent.mkdir(parents=True, exist_ok=True)
    key.write_text(public_key)
    (root / "etc/apt/sources.list.d/bulkhead.sources").write_text(
        f"Types: deb\nURIs: {url}/overlay/apt\nSuites: bookworm\nComponents: main\nSigned-By: {key}\n"
    )
    auth = root / "etc/apt/auth.conf.d/bulkhead.conf"
    auth.write_text(f"machine {url}/overlay/apt\nlogin {device}\npassword {credential}\n")
    auth.chmod(0o600)
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env.update(APT_CONFIG=str(conf), LC_ALL="C")
    return Apt(root, env, key)


def _tamper(path: Path, data: bytes) -> None:
    path.chmod(0o644)
    path.write_bytes(data)


def test_apt_verifies_fetches_and_refuses_tampering_wrong_keys_and_stale_indexes(server: LiveServer, tmp_path: Path) -> None:
    v1, v2 = make_deb(tmp_path, "hello-overlay", "1.0-1"), make_deb(tmp_path, "hello-overlay", "1.0-2")
    with server.client(server.tenant()) as c:
        for deb in (v1, v2):
            assert c.post("/api/v1/overlay/packages", params={"suite": "bookworm"}, content=deb.read_bytes()).status_code == 201
        key = c.get("/api/v1/overlay/key").json()["public_key"]
        boot = c.post("/api/v1/bootstrap-tokens", json={"name": "apt-dev", "group": "line"}).json()
        enrolled = c.post(
            "/device/v1/enroll", json={"bootstrap_token": boot["token"], "name": "apt-dev", "compatible": "Test Config"}
        ).json()
    apt = _apt_root(tmp_path / "root", server.url, "apt-dev", enrolled["credential"], key)

    # verified and fetched
    r = apt.run("update")
    assert r.returncode == 0 and "InRelease" in r.stdout and "W:" not in r.stderr, r.stdout + r.stderr
    assert "Candidate: 1.0-2" in apt.policy("hello-overlay")
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    r = apt.run("download", "hello-overlay=1.0-1", cwd=downloads)
    assert r.returncode == 0, r.stdout + r.stderr
    fetched = downloads / "hello-overlay_1.0-1_all.deb"
    assert fetched.read_bytes() == v1.read_bytes()
    subprocess.run(["dpkg-deb", "-x", str(fetched), str(tmp_path / "x")], check=True)
    assert (tmp_path / "x/usr/share/hello-overlay/version").read_text() == "1.0-1\n"

    # a wrong key: apt refuses the index (its signature cannot be verified)
    home = tmp_path / "gnupg"
    home.mkdir(mode=0o700)
    gpg = ["gpg", "--homedir", str(home), "--batch", "--pinentry-mode", "loopback", "--passphrase", ""]
    subprocess.run([*gpg, "--quick-gen-key", "Not The Repository", "ed25519", "sign", "never"], check=True, capture_output=True)
    apt.key.write_bytes(subprocess.run([*gpg, "--armor", "--export"], check=True, capture_output=True).stdout)
    apt.forget()
    r = apt.run("update")
    assert r.returncode != 0 and "NO_PUBKEY" in r.stdout + r.stderr and "is not signed" in r.stderr, r.stdout + r.stderr
    assert "Unable to locate package" in apt.run("download", "hello-overlay", cwd=downloads).stderr
    # the agent's applier gets the same refusal and reports apt's own words
    wanted = [{"name": "hello-overlay", "version": "1.0-1", "hold": False, "remove": False}]
    refused = AgentApt(apt.root, apt.env).apply(wanted)
    assert not refused.ok and refused.error is not None and refused.error.startswith("apt-get update failed"), refused
    assert "NO_PUBKEY" in refused.error or "is not signed" in refused.error, refused.error
    apt.key.write_text(key)

    # a tampered Packages (every compression of it, so apt has no untampered one to fall back to): refused
    release = httpx.get(f"{server.url}/overlay/apt/dists/bookworm/Release", auth=("apt-dev", enrolled["credential"])).text
    sums = {line.split()[2]: line.split()[0] for line in release.split("SHA256:")[1].strip().splitlines()}
    base = "main/binary-amd64/Packages"
    store = server.data_dir / "artifacts"
    originals = {n: (store / sums[n][:2] / sums[n]).read_bytes() for n in (base, base + ".gz", base + ".xz")}
    forged = originals[base].replace(b"Version: 1.0-2", b"Version: 9.9-9")
    assert forged != originals[base]
    for name, data in ((base, forged), (base + ".gz", gzip.compress(forged)), (base + ".xz", lzma.compress(forged))):
        _tamper(store / sums[name][:2] / sums[name], data)
    try:
        apt.forget()
        r = apt.run("update")
        out = r.stdout + r.stderr
        assert r.returncode != 0 and ("Hash Sum mismatch" in out or "unexpected size" in out), out
        assert "9.9-9" not in apt.policy("hello-overlay")
        apt.forget()
        refused = AgentApt(apt.root, apt.env).apply(wanted)
        assert not refused.ok and refused.error is not None, refused
        assert "Hash Sum mismatch" in refused.error or "unexpected size" in refused.error, refused.error
    finally:
        for name, data in originals.items():
            _tamper(store / sums[name][:2] / sums[name], data)
            assert hashlib.sha256(data).hexdigest() == sums[name]

    # an index older than apt accepts (as a replayed one past its Valid-Until): refused
    apt.forget()
    time.sleep(2)
    r = apt.run("-o", "Acquire::Max-ValidTime=1", "update")
    assert r.returncode != 0 and "is expired" in r.stderr, r.stdout + r.stderr

    # without the device's credential: refused by the server, and apt says so
    (apt.root / "etc/apt/auth.conf.d/bulkhead.conf").unlink()
    apt.forget()
    r = apt.run("update")
    assert r.returncode != 0 and "401" in r.stdout + r.stderr, r.stdout + r.stderr

    # and with it again: all well
    apt.root.joinpath("etc/apt/auth.conf.d/bulkhead.conf").write_text(
        f"machine {server.url}/overlay/apt\nlogin apt-dev\npassword {enrolled['credential']}\n"
    )
    r = apt.run("update")
    assert r.returncode == 0 and "Candidate: 1.0-2" in apt.policy("hello-overlay"), r.stdout + r.stderr


def test_agent_apt_installs_exact_versions_holds_recovers_and_reports_apts_message(server: LiveServer, tmp_path: Path) -> None:
    """The agent's apt applier (agent/packages.py) on a dpkg root of its own: the overlay's files written from the
    state the server gives, exact versions installed, held, an interrupted dpkg finished first, apt's error kept."""
    v1, v2 = make_deb(tmp_path, "hello-agent", "1.0-1"), make_deb(tmp_path, "hello-agent", "1.0-2")
    with server.client(server.tenant()) as c:
        for deb in (v1, v2):
            assert c.post("/api/v1/overlay/packages", params={"suite": "bookworm"}, content=deb.read_bytes()).status_code == 201
        boot = c.post("/api/v1/bootstrap-tokens", json={"name": "agent-dev", "group": "line"}).json()
        cred = c.post(
            "/device/v1/enroll", json={"bootstrap_token": boot["token"], "name": "agent-dev", "compatible": "Test Config"}
        ).json()["credential"]
        c.patch("/api/v1/devices/agent-dev/desired", json={"packages": {"hello-agent": {"version": "1.0-1"}}}).raise_for_status()
        state = c.get("/device/v1/state", headers={"authorization": f"Bearer {cred}"}).json()["desired"]
        key = c.get(state["overlay"]["key_url"], headers={"authorization": f"Bearer {cred}"}).text
    root = tmp_path / "device"
    apt_env = _apt_root(root, server.url, "agent-dev", cred, key).env
    # the agent's own files replace the test's
    for p in ("etc/apt/sources.list.d/bulkhead.sources", "etc/apt/auth.conf.d/bulkhead.conf"):
        (root / p).unlink()
    apt = AgentApt(root, {"APT_CONFIG": apt_env["APT_CONFIG"], "PATH": os.environ.get("PATH", "/usr/bin:/bin")})
    ov = state["overlay"]
    files = overlay_files(root, ov["url"], "bookworm", ov["components"], key, "agent-dev", cred)
    assert apt.write_overlay(files) and not apt.write_overlay(files)  # written once, then unchanged
    assert (root / "etc/apt/auth.conf.d/bulkhead.conf").stat().st_mode & 0o777 == 0o600
    assert "Pin-Priority: 990" in (root / "etc/apt/preferences.d/bulkhead").read_text()

    result = apt.apply(state["packages"])
    assert result.ok and result.installed == {"hello-agent": "1.0-1"}, result.error
    assert (root / "usr/share/hello-agent/version").read_text() == "1.0-1\n"

    result = apt.apply([{"name": "hello-agent", "version": "1.0-2", "hold": True, "remove": False}])
    assert result.ok and result.installed == {"hello-agent": "1.0-2"}, result.error
    assert (root / "usr/share/hello-agent/version").read_text() == "1.0-2\n"
    held = subprocess.run(["apt-mark", "showhold"], env=apt.env, capture_output=True, text=True).stdout.split()
    assert held == ["hello-agent"]

    # Converged: the agent's next passes run nothing but dpkg-query (no apt-get update): a broken source is not
    # even read. Asking for the hold to go is a change again, and apt runs.
    wanted = [{"name": "hello-agent", "version": "1.0-2", "hold": True, "remove": False}]
    source = root / "etc/apt/sources.list.d/bulkhead.sources"
    good = source.read_bytes()
    source.write_text("Types: deb\nthis line is no field\n")  # apt-get update refuses the file outright
    assert apt.converged(wanted) and not apt.converged([{**wanted[0], "hold": False}])
    result = apt.apply(wanted)
    assert result.ok and result.installed == {"hello-agent": "1.0-2"}, result.error
    result = apt.apply([{**wanted[0], "hold": False}])
    assert not result.ok and result.error is not None, "a change runs apt (which refuses the broken source)"
    assert result.error.startswith("apt-get update failed (exit 100)") and "could not be read" in result.error
    source.write_bytes(good)

    # a power cut in dpkg: its journal says the package is only unpacked; dpkg --configure -a runs first
    status = (root / "var/lib/dpkg/status").read_text()
    record = next(p for p in status.split("\n\n") if p.startswith("Package: hello-agent"))
    (root / "var/lib/dpkg/updates/0000").write_text(
        record.replace("Status: hold ok installed", "Status: hold ok unpacked").replace(
            "Status: install ok installed", "Status: install ok unpacked"
        )
        + "\n"
    )
    assert apt.interrupted()
    result = apt.apply([{"name": "hello-agent", "version": "1.0-2", "hold": True, "remove": False}], update=False)
    assert result.ok and not apt.interrupted() and result.installed == {"hello-agent": "1.0-2"}, result.error

    # a version the overlay does not have: apt's own message
    result = apt.apply([{"name": "hello-agent", "version": "7.0-1", "hold": False, "remove": False}])
    assert not result.ok and result.error is not None and "Version '7.0-1' for 'hello-agent' was not found" in result.error
    result = apt.apply([{"name": "hello-agent", "version": None, "hold": False, "remove": True}], update=False)
    assert result.ok and result.installed == {} and not (root / "usr/share/hello-agent/version").exists(), result.error


def test_a_key_rotation_keeps_every_device_verifying_until_it_is_finished(server: LiveServer, tmp_path: Path) -> None:
    """During a rotation the indexes carry the old and the new key's signatures: a device that holds only the old
    key and one that fetched both keep verifying. Finished, only the new key signs: the old key alone is refused
    and the new one verifies. Only admins rotate; each step is audited."""
    token = server.tenant()
    with server.client(token) as c:
        assert (
            c.post(
                "/api/v1/overlay/packages",
                params={"suite": "bookworm"},
                content=make_deb(tmp_path, "hello-rot", "1.0-1").read_bytes(),
            ).status_code
            == 201
        )
        old = c.get("/api/v1/overlay/key").json()
        assert old["retiring_fingerprint"] is None
        boot = c.post("/api/v1/bootstrap-tokens", json={"name": "rot-dev", "group": "line"}).json()
        cred = c.post(
            "/device/v1/enroll", json={"bootstrap_token": boot["token"], "name": "rot-dev", "compatible": "Test Config"}
        ).json()["credential"]
        stale = _apt_root(tmp_path / "stale", server.url, "rot-dev", cred, old["public_key"])  # never fetches again
        r = stale.run("update")
        assert r.returncode == 0 and "W:" not in r.stderr, r.stdout + r.stderr

        c.post("/api/v1/users", json={"name": "ops", "role": "operator"}).raise_for_status()
        ops = c.post("/api/v1/tokens", json={"name": "ops", "user": "ops"}).json()["token"]
        with server.client(ops) as o:
            assert o.post("/api/v1/overlay/key/rotate").status_code == 403
        rotating = c.post("/api/v1/overlay/key/rotate")
        assert rotating.status_code == 200, rotating.text
        new = rotating.json()
        assert new["retiring_fingerprint"] == old["fingerprint"] and new["fingerprint"] != old["fingerprint"]
        assert c.post("/api/v1/overlay/key/rotate").status_code == 409, "one rotation at a time"
        device_key = c.get("/overlay/apt/key.asc", headers={"authorization": f"Bearer {cred}"})
        assert device_key.status_code == 200 and device_key.text == new["public_key"]

        for apt in (stale, _apt_root(tmp_path / "fresh", server.url, "rot-dev", cred, new["public_key"])):
            apt.forget()
            r = apt.run("update")
            assert r.returncode == 0 and "E:" not in r.stderr and "Candidate: 1.0-1" in apt.policy("hello-rot"), r.stderr

        done = c.post("/api/v1/overlay/key/finish")
        assert done.status_code == 200, done.text
        current = done.json()
        assert current["fingerprint"] == new["fingerprint"] and current["retiring_fingerprint"] is None
        assert c.post("/api/v1/overlay/key/finish").status_code == 409, "nothing to finish"
        stale.forget()
        r = stale.run("update")
        assert r.returncode != 0 and "NO_PUBKEY" in r.stdout + r.stderr, "the old key alone no longer verifies"
        fresh = _apt_root(tmp_path / "current", server.url, "rot-dev", cred, current["public_key"])
        r = fresh.run("update")
        assert r.returncode == 0 and "Candidate: 1.0-1" in fresh.policy("hello-rot"), r.stdout + r.stderr
        actions = [e["action"] for e in c.get("/api/v1/audit", params={"action": "overlay.key"}).json()]
        assert sorted(actions) == ["overlay.key.finish", "overlay.key.rotate"]
