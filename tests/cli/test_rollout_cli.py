"""`bulkhead rollout create` against a live server: an app version or a release, and the user errors."""

from __future__ import annotations

import json
from pathlib import Path

from tests.cli.conftest import cli
from tests.live import LiveServer


def test_rollout_create_with_an_app_version(srv: LiveServer, tmp_path: Path) -> None:
    token = srv.tenant()
    with srv.client(token) as c:
        r = c.post("/api/v1/apps", json={"name": "shop", "version": "2", "containers": [{"name": "m", "image": "shop:2"}]})
        r.raise_for_status()
        c.post("/api/v1/devices", json={"name": "shop-dev", "compatible": "any", "groups": []}).raise_for_status()
    res = cli(srv, token, "rollout", "create", "shop-2", "--app", "shop:2", "--group", "line", "--json")
    assert res.returncode == 2 and "group(s) line do not exist" in res.stderr and "bulkhead group create" in res.stderr
    assert cli(srv, token, "group", "create", "line").returncode == 0
    res = cli(srv, token, "rollout", "create", "shop-2", "--app", "shop:2", "--group", "line", "--json")
    assert res.returncode == 2 and "the target matches no device" in res.stderr and "--allow-empty" in res.stderr
    assert cli(srv, token, "group", "add-device", "line", "shop-dev").returncode == 0
    res = cli(srv, token, "rollout", "create", "shop-2", "--app", "shop:2", "--group", "line", "--json")
    assert res.returncode == 0, res.stderr
    ro = json.loads(res.stdout)
    assert ro["subject"] == "app shop:2" and ro["release_id"] is None and ro["target"]["groups"] == ["line"]
    listed = cli(srv, token, "rollout", "list")
    assert listed.returncode == 0 and "app shop:2" in listed.stdout
    points = json.loads(cli(srv, token, "rollout", "timeline", "shop-2", "--json").stdout)["points"]
    assert points and points[-1] | {"at": ""} == {"at": "", "succeeded": 0, "failed": 0, "canceled": 0}
    human = cli(srv, token, "rollout", "timeline", "shop-2")
    assert human.returncode == 0 and "succeeded" in human.stdout

    for args, message in (
        (("--app", "shop"), "NAME:VERSION"),
        (("--app", "shop:9"), "app 'shop' version '9' does not exist"),
        (("--app", "shop:2", "--release", "1"), "one of --release"),
        (("--app", "shop:2", "--package", "pr-hello=1.0-1"), "one of --release"),
        ((), "one of --release"),
        (("--package", "Bad Name=1"), "not a Debian package name"),
    ):
        res = cli(srv, token, "rollout", "create", "bad", *args)
        assert res.returncode == 2 and message in res.stderr and "Traceback" not in res.stderr, (args, res.stderr)
    with srv.client(token) as c:
        assert [r["name"] for r in c.get("/api/v1/rollouts").json()] == ["shop-2"]


def test_rollout_create_with_a_package_set(srv: LiveServer, tmp_path: Path) -> None:
    token = srv.tenant()
    with srv.client(token) as c:
        c.post("/api/v1/devices", json={"name": "pkg-dev", "compatible": "any", "groups": ["line"]}).raise_for_status()
    args = ["--package", "pr-hello=1.0-2", "--package-hold", "pr-tool=3", "--package-remove", "pr-old", "--group", "line"]
    res = cli(srv, token, "rollout", "create", "pkgs", *args, "--json")
    assert res.returncode == 0, res.stderr
    ro = json.loads(res.stdout)
    assert ro["subject"] == "packages pr-hello=1.0-2, pr-old (remove), pr-tool=3 (hold)"
    assert ro["packages"]["pr-tool"] == {"name": "pr-tool", "version": "3", "hold": True, "remove": False}
    assert ro["packages"]["pr-old"] == {"name": "pr-old", "version": None, "hold": False, "remove": True}
    listed = cli(srv, token, "rollout", "list")
    assert listed.returncode == 0 and "packages pr-hello=1.0-2" in listed.stdout


def test_thresholds_without_phases_apply_to_the_single_phase(srv: LiveServer) -> None:
    token = srv.tenant()
    with srv.client(token) as c:
        c.post("/api/v1/apps", json={"name": "t", "version": "1", "containers": [{"name": "m", "image": "t:1"}]})
        c.post("/api/v1/devices", json={"name": "t-dev", "compatible": "any", "groups": []}).raise_for_status()
    args = ("rollout", "create", "th", "--app", "t:1", "--error-threshold", "50", "--success-threshold", "80", "--json")
    res = cli(srv, token, *args)
    assert res.returncode == 0, res.stderr
    (phase,) = json.loads(res.stdout)["phases"]
    assert phase["error_threshold"] == 50 and phase["success_threshold"] == 80


def test_group_commands(srv: LiveServer) -> None:
    token = srv.tenant()
    with srv.client(token) as c:
        c.post("/api/v1/devices", json={"name": "gd-1", "compatible": "any", "groups": []}).raise_for_status()
    assert cli(srv, token, "group", "create", "canary").returncode == 0
    res = cli(srv, token, "group", "add-device", "canary", "gd-1", "--json")
    assert res.returncode == 0 and json.loads(res.stdout) == [{"device": "gd-1", "groups": ["canary"]}], res.stderr
    listed = cli(srv, token, "group", "list", "--json")
    assert [(g["name"], g["devices"]) for g in json.loads(listed.stdout)] == [("canary", 1)]
    shown = json.loads(cli(srv, token, "group", "show", "canary", "--json").stdout)
    assert shown["device_names"] == ["gd-1"]
    res = cli(srv, token, "group", "delete", "canary")
    assert res.returncode == 2 and "still has devices: gd-1" in res.stderr
    res = cli(srv, token, "group", "window", "nowhere", "--off")
    assert res.returncode == 2 and "group 'nowhere' does not exist" in res.stderr
    assert cli(srv, token, "group", "remove-device", "canary", "gd-1").returncode == 0
    assert cli(srv, token, "group", "delete", "canary").returncode == 0
    assert json.loads(cli(srv, token, "group", "list", "--json").stdout) == []
