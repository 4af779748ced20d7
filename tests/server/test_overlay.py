"""The package overlay (ADR 9): uploads checked (nothing stored on refusal), the suite's indexes and their signatures
(verified by gpgv against the served key), Valid-Until, by-hash files, and device authentication."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import shutil
import subprocess
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from debian.deb822 import Deb822, Packages

from tests.overlay_debs import make_deb
from tests.server.conftest import LiveServer

pytestmark = pytest.mark.skipif(
    not (shutil.which("gpg") and shutil.which("gpgv") and shutil.which("dpkg-deb")), reason="needs gpg, gpgv and dpkg-deb"
)


def _device(c: httpx.Client, name: str) -> dict[str, str]:
    """A device enrolled in the tenant of `c`; the Basic authorization apt sends for it."""
    boot = c.post("/api/v1/bootstrap-tokens", json={"name": name, "group": "line"}).json()
    r = c.post("/device/v1/enroll", json={"bootstrap_token": boot["token"], "name": name, "compatible": "Test Config"})
    r.raise_for_status()
    basic = base64.b64encode(f"{name}:{r.json()['credential']}".encode()).decode()
    return {"authorization": f"Basic {basic}"}


def _upload(c: httpx.Client, deb: Path, suite: str = "bookworm") -> httpx.Response:
    return c.post("/api/v1/overlay/packages", params={"suite": suite}, content=deb.read_bytes())


def _stored(server: LiveServer, data: bytes) -> bool:
    sha = hashlib.sha256(data).hexdigest()
    return (server.data_dir / "artifacts" / sha[:2] / sha).exists()


def test_uploads_are_checked_and_a_refused_one_stores_nothing(server: LiveServer, tmp_path: Path) -> None:
    with server.client(server.tenant()) as c:
        good = make_deb(tmp_path, "hello-overlay", "1.0-1")
        r = _upload(c, good)
        assert r.status_code == 201, r.text
        assert {k: r.json()[k] for k in ("name", "version", "architecture", "suite")} == {
            "name": "hello-overlay",
            "version": "1.0-1",
            "architecture": "all",
            "suite": "bookworm",
        }
        garbage = b"!<arch>\nnot really a debian package" + bytes(range(256))
        s390 = make_deb(tmp_path, "hello-s390", "1.0", arch="s390x")
        refused: list[tuple[bytes, str, int, str]] = [
            (garbage, "bookworm", 422, "not a Debian binary package"),
            (b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01" + bytes(64), "bookworm", 422, "not a Debian binary package"),
            (s390.read_bytes(), "bookworm", 422, "architecture 's390x' is not served"),
            (make_deb(tmp_path, "other", "2.0").read_bytes(), "Bookworm!", 422, "is not a suite name"),
            (good.read_bytes(), "bookworm", 409, "already in suite bookworm"),
        ]
        for data, suite, status, message in refused:
            r = c.post("/api/v1/overlay/packages", params={"suite": suite}, content=data)
            assert r.status_code == status and message in r.json()["message"], r.text
            assert r.json()["error"]
            if data != good.read_bytes():
                assert not _stored(server, data)
        listed = c.get("/api/v1/overlay/packages").json()
        assert [(p["name"], p["version"]) for p in listed] == [("hello-overlay", "1.0-1")]
        # the same version in another suite is another package
        assert _upload(c, good, "trixie").status_code == 201
        assert [s["suite"] for s in c.get("/api/v1/overlay/suites").json()] == ["bookworm", "trixie"]


def _gpgv(tmp: Path, public_key: str, *files: Path) -> subprocess.CompletedProcess[str]:
    keyring = tmp / "keyring.gpg"
    subprocess.run(["gpg", "--dearmor", "--yes", "-o", str(keyring)], input=public_key.encode(), check=True)
    return subprocess.run(["gpgv", "--keyring", str(keyring), *map(str, files)], capture_output=True, text=True)


def _sums(release: str) -> dict[str, tuple[str, int]]:
    para = Deb822(release)
    out = {}
    for line in para["SHA256"].strip().splitlines():
        sha, size, name = line.split()
        out[name] = (sha, int(size))
    return out


def test_suite_indexes_are_signed_valid_until_and_by_hash(server: LiveServer, tmp_path: Path) -> None:
    with server.client(server.tenant()) as c:
        v1, v2 = make_deb(tmp_path, "hello-overlay", "1.0-1"), make_deb(tmp_path, "hello-overlay", "1.0-2")
        amd = make_deb(tmp_path, "tool-overlay", "3:2.1", arch="amd64")
        for deb in (v1, v2, amd):
            assert _upload(c, deb).status_code == 201
        key = c.get("/api/v1/overlay/key").json()
        dev = _device(c, "overlay-dev-1")
        repo = "/overlay/apt/dists/bookworm"
        served_key = c.get("/overlay/apt/key.asc", headers=dev)
        assert served_key.status_code == 200 and served_key.text == key["public_key"]

        inrelease = c.get(f"{repo}/InRelease", headers=dev)
        assert inrelease.status_code == 200
        (tmp_path / "InRelease").write_bytes(inrelease.content)
        ok = _gpgv(tmp_path, key["public_key"], tmp_path / "InRelease")
        assert ok.returncode == 0, ok.stderr
        release = c.get(f"{repo}/Release", headers=dev).content
        (tmp_path / "Release").write_bytes(release)
        (tmp_path / "Release.gpg").write_bytes(c.get(f"{repo}/Release.gpg", headers=dev).content)
        assert _gpgv(tmp_path, key["public_key"], tmp_path / "Release.gpg", tmp_path / "Release").returncode == 0
        (tmp_path / "Release").write_bytes(release.replace(b"Suite: bookworm", b"Suite: bookwurm"))
        assert _gpgv(tmp_path, key["public_key"], tmp_path / "Release.gpg", tmp_path / "Release").returncode != 0

        para = Deb822(release.decode())
        assert para["Acquire-By-Hash"] == "yes" and para["Suite"] == para["Codename"] == "bookworm"
        date, until = parsedate_to_datetime(para["Date"]), parsedate_to_datetime(para["Valid-Until"])
        assert until - date == dt.timedelta(days=7)
        assert abs(dt.datetime.now(dt.UTC) - date) < dt.timedelta(minutes=5)

        sums = _sums(release.decode())
        assert {"main/binary-amd64/Packages", "main/binary-amd64/Packages.xz", "main/binary-arm64/Packages.gz"} <= set(sums)
        for name, (sha, size) in sums.items():
            by_path = c.get(f"{repo}/{name}", headers=dev)
            directory = name.rsplit("/", 1)[0]
            by_hash = c.get(f"{repo}/{directory}/by-hash/SHA256/{sha}", headers=dev)
            for r in (by_path, by_hash):
                assert r.status_code == 200 and hashlib.sha256(r.content).hexdigest() == sha and len(r.content) == size
        assert c.get(f"{repo}/main/binary-amd64/by-hash/SHA256/{'0' * 64}", headers=dev).status_code == 404

        amd64 = list(Packages.iter_paragraphs(c.get(f"{repo}/main/binary-amd64/Packages", headers=dev).text, use_apt_pkg=False))
        arm64 = list(Packages.iter_paragraphs(c.get(f"{repo}/main/binary-arm64/Packages", headers=dev).text, use_apt_pkg=False))
        assert [(p["Package"], p["Version"]) for p in amd64] == [
            ("hello-overlay", "1.0-1"),
            ("hello-overlay", "1.0-2"),
            ("tool-overlay", "3:2.1"),
        ]
        assert [p["Package"] for p in arm64] == ["hello-overlay", "hello-overlay"]  # `all` in every architecture
        tool = amd64[2]
        assert tool["Filename"].endswith("/tool-overlay_2.1_amd64.deb") and tool["Description"].startswith("overlay test")
        assert tool["SHA256"] == hashlib.sha256(amd.read_bytes()).hexdigest() and int(tool["Size"]) == amd.stat().st_size
        whole = c.get(f"/overlay/apt/{tool['Filename']}", headers=dev)
        assert whole.status_code == 200 and whole.content == amd.read_bytes()
        part = c.get(f"/overlay/apt/{tool['Filename']}", headers={**dev, "range": "bytes=0-7"})
        assert part.status_code == 206 and part.content == b"!<arch>\n"

        # removed: the next generation leaves it out, the previous generation's by-hash files stay for a while
        old = sums["main/binary-amd64/Packages"][0]
        pid = next(p["id"] for p in c.get("/api/v1/overlay/packages").json() if p["name"] == "tool-overlay")
        assert c.delete(f"/api/v1/overlay/packages/{pid}").status_code == 204
        assert "tool-overlay" not in c.get(f"{repo}/main/binary-amd64/Packages", headers=dev).text
        assert c.get(f"{repo}/main/binary-amd64/by-hash/SHA256/{old}", headers=dev).status_code == 200
        assert c.get(f"/overlay/apt/{tool['Filename']}", headers=dev).status_code == 404
        audit = c.get("/api/v1/audit", params={"action": "overlay."}).json()
        assert {"overlay.upload", "overlay.remove"} <= {e["action"] for e in _items(audit)}


def _items(body: Any) -> list[dict[str, Any]]:
    return body["items"] if isinstance(body, dict) else body


def test_the_repository_needs_a_device_of_its_tenant(server: LiveServer, tmp_path: Path) -> None:
    token = server.tenant()
    with server.client(token) as c:
        assert _upload(c, make_deb(tmp_path, "hello-overlay", "1.0-1")).status_code == 201
        dev = _device(c, "overlay-dev-2")
        url = "/overlay/apt/dists/bookworm/InRelease"
        assert c.get(url, headers=dev).status_code == 200
        for headers in (
            {"authorization": ""},  # nothing
            {"authorization": f"Bearer {token}"},  # a user's token is not a device
            {"authorization": "Basic " + base64.b64encode(f"overlay-dev-2:{token}".encode()).decode()},
            {"authorization": "Basic " + base64.b64encode(b"someone-else:" + dev["authorization"][6:].encode()).decode()},
            {"authorization": "Basic !!!"},
        ):
            r = c.get(url, headers=headers)
            assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Basic"), (headers, r.text)
            assert r.json()["error"] == "unauthorized"
        wrong_name = base64.b64decode(dev["authorization"][6:]).decode().replace("overlay-dev-2", "overlay-dev-3")
        assert c.get(url, headers={"authorization": "Basic " + base64.b64encode(wrong_name.encode()).decode()}).status_code == 401
    with server.client(server.tenant()) as other:
        stranger = _device(other, "overlay-dev-2")  # same name, another tenant: sees its own (empty) overlay
        r = other.get(url, headers=stranger)
        assert r.status_code == 404 and "upload a package" in r.json()["message"]


def test_desired_packages_merge_from_groups_and_device_into_the_state(server: LiveServer) -> None:
    with server.client(server.tenant()) as c:
        dev = _device(c, "overlay-dev-4")
        bearer = {"authorization": "Bearer " + base64.b64decode(dev["authorization"][6:]).decode().split(":", 1)[1]}
        before = c.get("/device/v1/state", headers=bearer)
        assert "packages" not in before.json()["desired"] and "overlay" not in before.json()["desired"]
        r = c.patch(
            "/api/v1/groups/line/desired",
            json={"packages": {"hello-overlay": {"version": "1.0-1"}, "telnet": {"remove": True}, "curl": {"hold": True}}},
        )
        assert r.status_code == 200, r.text
        assert r.json()["desired"]["packages"]["hello-overlay"] == {
            "name": "hello-overlay",
            "version": "1.0-1",
            "hold": False,
            "remove": False,
        }
        r = c.patch(
            "/api/v1/devices/overlay-dev-4/desired", json={"packages": {"hello-overlay": {"version": "1.0-2", "hold": True}}}
        )
        assert r.status_code == 200, r.text
        assert c.patch("/api/v1/groups/line/desired", json={"packages": {"curl": None}}).status_code == 200
        state = c.get("/device/v1/state", headers={**bearer, "if-none-match": before.headers["etag"]})
        assert state.status_code == 200
        desired = state.json()["desired"]
        assert desired["packages"] == [
            {"name": "hello-overlay", "version": "1.0-2", "hold": True, "remove": False},
            {"name": "telnet", "version": None, "hold": False, "remove": True},
        ]
        assert desired["overlay"]["url"].endswith("/overlay/apt") and desired["overlay"]["components"] == ["main"]
        assert c.get(desired["overlay"]["key_url"].split(server.url, 1)[1], headers=dev).status_code == 200
        for body, status, message in (
            ({"packages": {"Bad_Name": {}}}, 400, "is not a Debian package name"),
            ({"packages": {"x1": {"version": "not a version"}}}, 400, "is not a Debian version"),
            ({"packages": {"x1": {"version": "1.0", "remove": True}}}, 400, "a package to remove has no version"),
            ({"packages": {"x1": {"pin": 990}}}, 422, "pin"),
        ):
            r = c.patch("/api/v1/devices/overlay-dev-4/desired", json=body)
            assert r.status_code == status and message in r.json()["message"], r.text
        assert [p["name"] for p in c.get("/device/v1/state", headers=bearer).json()["desired"]["packages"]] == [
            "hello-overlay",
            "telnet",
        ]
