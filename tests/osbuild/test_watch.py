"""`bulkhead osbuild watch --once` with local git repositories as upstream and a real server over a socket.

The build is a script that does what a Yocto or reference build does at its end: `rauc bundle` (Debian's
RAUC) makes a signed bundle whose version is BULKHEAD_VERSION, and an SPDX SBOM is written beside it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from bulkhead.osbuild.errors import OsBuildError
from bulkhead.osbuild.kasconfig import read_lock, render_lock
from bulkhead.osbuild.watch import changed_repos, load_watch_config, release_version
from tests.conftest import RAUC_DATA, need_tool
from tests.live import LiveServer, live_server

CLI = [sys.executable, "-m", "bulkhead.cli"]

BUILD_SCRIPT = """\
import json, os, pathlib, subprocess, sys
out, lock = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
with open(os.environ["BUILD_COUNTER"], "a") as f:
    f.write(os.environ["BULKHEAD_VERSION"] + "\\n")
if os.path.exists(os.environ["BUILD_FAIL"]):
    print("ERROR: Task (bulkhead-image.bb:do_rootfs) failed with exit code '1'")
    sys.exit(1)
content = out / "content"
content.mkdir()
(content / "rootfs.ext4").write_bytes(lock.read_bytes() + os.urandom(256 * 1024))  # made from the locked layers
(content / "manifest.raucm").write_text(
    "[update]\\ncompatible=watch-test\\nversion=" + os.environ["BULKHEAD_VERSION"] + "\\n"
    "[bundle]\\nformat=verity\\n[image.rootfs]\\nfilename=rootfs.ext4\\n"
)
ca = pathlib.Path(os.environ["RAUC_CA"])
subprocess.run(["rauc", "bundle", "--cert", str(ca / "rel/release-1.cert.pem"), "--key", str(ca / "rel/private/release-1.pem"),
                str(content), str(out / "bulkhead-bundle-qemux86-64.raucb")], check=True)
(out / "bulkhead-image.spdx.json").write_text(json.dumps({
    "spdxVersion": "SPDX-2.3", "SPDXID": "SPDXRef-DOCUMENT", "name": "bulkhead-image",
    "documentNamespace": "https://bulkhead.invalid/spdx/" + os.environ["BULKHEAD_VERSION"],
    "creationInfo": {"created": "2026-01-01T00:00:00Z", "creators": ["Tool: test"]}, "dataLicense": "CC0-1.0",
    "packages": [{"SPDXID": "SPDXRef-busybox", "name": "busybox", "versionInfo": "1.36.1"}],
}))
"""


def git(*args: str, cwd: Path | None = None) -> str:
    who = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    env = {**os.environ, **who}
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout.strip()


class Upstream:
    """A bare repository with a scarthgap branch, pushed to from a work tree, as a layer's upstream."""

    def __init__(self, root: Path, name: str) -> None:
        self.bare, self.work = root / f"{name}.git", root / f"{name}-work"
        git("init", "-q", "--bare", "-b", "scarthgap", str(self.bare))
        git("init", "-q", "-b", "scarthgap", str(self.work))
        self.commit("initial")

    @property
    def url(self) -> str:
        return self.bare.as_uri()

    def commit(self, message: str) -> str:
        (self.work / "log").open("a").write(message + "\n")
        git("add", "log", cwd=self.work)
        git("commit", "-q", "-m", message, cwd=self.work)
        git("push", "-q", str(self.bare), "scarthgap", cwd=self.work)
        return git("rev-parse", "HEAD", cwd=self.work)


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with live_server(tmp_path_factory.mktemp("watch-server")) as s:
        yield s


class Project:
    def __init__(self, tmp: Path, srv: LiveServer, token: str) -> None:
        self.srv, self.token, self.tmp = srv, token, tmp
        self.poky, self.rauc = Upstream(tmp, "poky"), Upstream(tmp, "meta-rauc")
        self.dir = tmp / "project"
        (self.dir / "kas").mkdir(parents=True)
        self.kas = self.dir / "kas" / "qemux86-64.yml"
        self.kas.write_text(
            yaml.safe_dump(
                {
                    "header": {"version": 14},
                    "machine": "qemux86-64",
                    "distro": "bulkhead",
                    "defaults": {"repos": {"branch": "scarthgap"}},
                    "repos": {
                        "bulkhead": {"layers": {"meta-bulkhead": None}},
                        "poky": {"url": self.poky.url, "layers": {"meta": None}},
                        "meta-rauc": {"url": self.rauc.url},
                    },
                }
            )
        )
        self.lock = self.dir / "kas" / "qemux86-64.lock.yml"
        self.lock.write_text(render_lock({"poky": self.heads()["poky"], "meta-rauc": self.heads()["meta-rauc"]}))
        (self.dir / "build.py").write_text(BUILD_SCRIPT)
        git("init", "-q", str(self.dir))
        self.counter, self.fail = tmp / "builds.txt", tmp / "FAIL"
        self.config = tmp / "watch.yml"
        self.config.write_text(
            textwrap.dedent(
                f"""\
                state_dir: state
                targets:
                  - name: qemux86-64
                    kas: project/kas/qemux86-64.yml
                    workdir: project
                    build: ["{sys.executable}", "build.py", "{{out}}", "{{lock}}"]
                    bundle: "{{out}}/bulkhead-bundle-*.raucb"
                    sboms: ["{{out}}/bulkhead-image.spdx.json"]
                    version: "2026.{{timestamp}}-{{rev}}"
                    rollout:
                      name: "canary-{{version}}"
                      target: {{tags: [canary]}}
                      allow_empty: true
                """
            )
        )

    def heads(self) -> dict[str, str]:
        return {"poky": git("rev-parse", "HEAD", cwd=self.poky.work), "meta-rauc": git("rev-parse", "HEAD", cwd=self.rauc.work)}

    def watch(self, token: str | None = None) -> subprocess.CompletedProcess[str]:
        env = {
            **os.environ,
            "BULKHEAD_SERVER": self.srv.url,
            "BULKHEAD_TOKEN": token or self.token,
            "BUILD_COUNTER": str(self.counter),
            "BUILD_FAIL": str(self.fail),
            "RAUC_CA": str(RAUC_DATA / "openssl-ca"),
            "COLUMNS": "200",
        }
        return subprocess.run(
            [*CLI, "osbuild", "watch", "--config", str(self.config), "--once", "--json"],
            capture_output=True,
            text=True,
            env=env,
            check=False,
            timeout=300,
        )

    def builds(self) -> int:
        return len(self.counter.read_text().splitlines()) if self.counter.exists() else 0

    def releases(self) -> list[dict[str, object]]:
        with self.srv.client(self.token) as c:
            return c.get("/api/v1/releases").raise_for_status().json()  # type: ignore[no-any-return]


def outcome(res: subprocess.CompletedProcess[str]) -> dict[str, object]:
    assert "Traceback" not in res.stderr, res.stderr
    (only,) = json.loads(res.stdout)
    return only  # type: ignore[no-any-return]


def test_watcher_builds_and_releases_once_per_upstream_change(srv: LiveServer, tmp_path: Path) -> None:
    need_tool("rauc", "rauc")
    need_tool("git", "git")
    p = Project(tmp_path, srv, srv.tenant())

    # no upstream commit: no build, no release
    res = p.watch()
    assert res.returncode == 0 and outcome(res)["status"] == "unchanged", res.stderr
    assert p.builds() == 0 and p.releases() == []

    # a new commit on one layer: exactly one build and one release, with its SBOM and canary rollout
    before = p.heads()
    new = p.rauc.commit("rauc: fix a CVE")
    res = p.watch()
    o = outcome(res)
    assert res.returncode == 0 and o["status"] == "released", res.stdout + res.stderr
    assert o["changes"] == {"meta-rauc": [before["meta-rauc"], new]}
    assert p.builds() == 1
    (rel,) = p.releases()
    assert rel["version"] == o["version"] and str(rel["version"]).endswith("-" + new[:12]) and rel["compatible"] == "watch-test"
    assert [s["format"] for s in rel["sboms"]] == ["spdx"]  # type: ignore[index]
    assert read_lock(p.lock) == {"poky": before["poky"], "meta-rauc": new}
    with srv.client(p.token) as c:
        sbom = c.get(f"/api/v1/releases/{rel['id']}/sbom")
        assert sbom.status_code == 200 and sbom.headers["content-type"] == "application/spdx+json"
        assert sbom.json()["documentNamespace"].endswith(str(rel["version"]))
        (ro,) = c.get("/api/v1/rollouts").json()
        assert ro["name"] == f"canary-{rel['version']}" and ro["release_id"] == rel["id"] and ro["target"]["tags"] == ["canary"]

    # nothing new upstream: no second build
    res = p.watch()
    assert res.returncode == 0 and outcome(res)["status"] == "unchanged"
    assert p.builds() == 1 and len(p.releases()) == 1

    # a failing build changes nothing: the lock stays byte for byte, no release, exit status 2, the log is kept
    locked = p.lock.read_bytes()
    p.poky.commit("poky: a change that breaks the build")
    p.fail.touch()
    res = p.watch()
    o = outcome(res)
    assert res.returncode == 2 and o["status"] == "failed" and "exited with status 1" in str(o["reason"])
    assert p.builds() == 2 and len(p.releases()) == 1 and p.lock.read_bytes() == locked
    assert "do_rootfs) failed" in Path(str(o["build_log"])).read_text()
    history = [json.loads(line) for line in (tmp_path / "state" / "history.jsonl").read_text().splitlines()]
    assert [h["status"] for h in history] == ["unchanged", "released", "unchanged", "failed"]

    # a server that refuses the release (this tenant has no keyring) changes nothing either
    p.fail.unlink()
    res = p.watch(token=srv.tenant(keyring=False))
    o = outcome(res)
    assert res.returncode == 2 and "no keyring" in str(o["reason"]) and p.lock.read_bytes() == locked

    # fixed: the next run releases the new poky
    res = p.watch()
    assert res.returncode == 0 and outcome(res)["status"] == "released"
    assert len(p.releases()) == 2 and read_lock(p.lock) == p.heads()


def test_an_unreachable_upstream_is_reported_and_nothing_is_built(srv: LiveServer, tmp_path: Path) -> None:
    need_tool("git", "git")
    p = Project(tmp_path, srv, srv.tenant())
    locked = p.lock.read_bytes()
    kas = yaml.safe_load(p.kas.read_text())
    kas["repos"]["meta-rauc"]["branch"] = "no-such-branch"
    p.kas.write_text(yaml.safe_dump(kas))
    res = p.watch()
    o = outcome(res)
    assert res.returncode == 2 and "has no branch no-such-branch" in str(o["reason"])
    assert p.builds() == 0 and p.lock.read_bytes() == locked


def test_watch_config_errors_name_the_field(tmp_path: Path) -> None:
    cfg = tmp_path / "w.yml"
    for text, message in (
        ("targets: []\n", "targets"),
        ("targets:\n  - {name: a, build: [make], bundle: b.raucb}\n", "give a kas file"),
        ("targets:\n  - {name: a, kas: k.yml, build: [make, '{nope}'], bundle: b}\n", "unknown placeholder 'nope'"),
        ("targets:\n  - {name: a, kas: k.yml, build: [make], bundle: b, colour: red}\n", "colour"),
        ("targets: [\n", "not valid YAML"),
    ):
        cfg.write_text(text)
        with pytest.raises(OsBuildError, match=message):
            load_watch_config(cfg)


def test_changed_repos_and_version() -> None:
    import datetime as dt

    a, b, c = "a" * 40, "b" * 40, "c" * 40
    assert changed_repos({"poky": a, "meta-rauc": b}, {"poky": a, "meta-rauc": b}) == {}
    changes = changed_repos({"poky": a}, {"poky": c, "meta-rauc": b})
    assert changes == {"meta-rauc": [None, b], "poky": [a, c]}
    now = dt.datetime(2026, 11, 25, 13, 5, 9, tzinfo=dt.UTC)
    assert release_version("{date}.{timestamp}-{rev}-{target}", "rpi5", now, changes) == f"20261125.20261125130509-{b[:12]}-rpi5"


@pytest.mark.parametrize("name", ["watch-yocto.yml", "watch-reference.yml"])
def test_example_watch_configs_load(name: str) -> None:
    root = Path(__file__).resolve().parents[2]
    cfg = load_watch_config(root / "contrib" / "osbuild" / name)
    for t in cfg.targets:
        assert t.workdir == root
        if t.kas is not None:
            assert t.kas.is_file()
