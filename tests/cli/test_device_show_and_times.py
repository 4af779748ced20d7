"""`device show` reads as a summary (packages counted, listed on request); one time format per audience."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from bulkhead.cli import output
from tests.cli.conftest import cli
from tests.live import LiveServer

PACKAGES = {f"lib-{i:04d}": f"1.{i}" for i in range(980)} | {"openssl": "3.0.15-1~deb12u1", "libssl3": "3.0.15-1~deb12u1"}
INVENTORY: dict[str, Any] = {
    "agent_version": "0.9.0",
    "os_version": "1.1.0",
    "rauc": {
        "compatible": "show-lab",
        "booted": "B",
        "primary": "B",
        "slots": {
            "rootfs.0": {"bootname": "A", "state": "inactive", "boot_status": "good", "version": "1.0.0"},
            "rootfs.1": {"bootname": "B", "state": "booted", "boot_status": "good", "version": "1.1.0"},
        },
    },
    "containers": [{"name": "shop-web", "app": "shop", "version": "2", "state": "running"}],
    "packages": {"format": "dpkg", "count": len(PACKAGES), "packages": PACKAGES},
}


def _device(srv: LiveServer, name: str) -> str:
    token = srv.tenant()
    boot = json.loads(cli(srv, token, "bootstrap", "create", "line", "--group", "line", "--json").stdout)["token"]
    with srv.client() as c:
        cred = c.post("/device/v1/enroll", json={"bootstrap_token": boot, "name": name, "compatible": "show-lab"}).json()
        auth = {"authorization": f"Bearer {cred['credential']}"}
        c.post("/device/v1/reports", json={"inventory": INVENTORY}, headers=auth).raise_for_status()
    return token


def test_device_show_is_a_summary_and_lists_packages_on_request(srv: LiveServer) -> None:
    token = _device(srv, "sensor-1")
    res = cli(srv, token, "device", "show", "sensor-1")
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert "lib-0500" not in out and len(out.splitlines()) < 40, out  # not ~980 packages in one blob
    assert "982 (dpkg; list them with --packages" in out
    assert "1.1.0" in out and "B rootfs.1 (booted, primary, good, 1.1.0)" in out and "A rootfs.0 (good, 1.0.0)" in out
    assert "shop 2 (running)" in out and "line" in out
    assert "just now" in out or " s ago" in out  # last seen, relative

    listed = cli(srv, token, "device", "show", "sensor-1", "--packages")
    assert listed.returncode == 0 and "lib-0979" in listed.stdout and "982 packages" in listed.stdout
    ssl = cli(srv, token, "device", "show", "sensor-1", "--grep", "ssl", "--json")
    assert ssl.returncode == 0 and json.loads(ssl.stdout) == {"libssl3": "3.0.15-1~deb12u1", "openssl": "3.0.15-1~deb12u1"}
    glob = json.loads(cli(srv, token, "device", "show", "sensor-1", "--packages", "--grep", "lib-09?9", "--json").stdout)
    assert sorted(glob) == [f"lib-09{i}9" for i in range(8)]

    whole = json.loads(cli(srv, token, "device", "show", "sensor-1", "--json").stdout)  # JSON: the whole record
    assert whole["reported"]["packages"]["packages"] == PACKAGES
    assert whole["last_seen"].endswith("Z") and dt.datetime.fromisoformat(whole["last_seen"]).tzinfo == dt.UTC


def test_device_list_shows_relative_times_and_json_iso_utc(srv: LiveServer) -> None:
    token = _device(srv, "sensor-2")
    human = cli(srv, token, "device", "list")
    assert human.returncode == 0 and ("just now" in human.stdout or " s ago" in human.stdout), human.stdout
    [row] = json.loads(cli(srv, token, "device", "list", "--json").stdout)
    seen = dt.datetime.fromisoformat(row["last_seen"])
    assert row["last_seen"].endswith("Z") and abs((dt.datetime.now(dt.UTC) - seen).total_seconds()) < 120


NOW = dt.datetime(2026, 12, 2, 20, 0, 0, tzinfo=dt.UTC)


def test_relative_time() -> None:
    cases = {
        "2026-12-02T20:00:00": "just now",
        "2026-12-02T19:59:48": "12 s ago",
        "2026-12-02T19:57:00+00:00": "3 min ago",
        "2026-12-02T20:57:00+01:00": "3 min ago",  # the same instant in another zone
        "2026-12-02T15:00:00Z": "5 h ago",
        "2026-12-01T19:00:00": "1 day ago",
        "2026-11-29T20:00:00": "3 days ago",
        "2026-12-02T20:04:00": "in 4 min",
    }
    for value, want in cases.items():
        assert output.relative_time(value, now=NOW) == want, value
    old = output.relative_time("2026-10-01T08:30:00Z", now=NOW)
    assert old == dt.datetime(2026, 10, 1, 8, 30, tzinfo=dt.UTC).astimezone().strftime("%Y-%m-%d %H:%M")
    assert output.relative_time(None) == "" and output.relative_time("soon") == "soon"


def test_json_times_are_iso_utc(capsys) -> None:  # type: ignore[no-untyped-def]
    output.emit_json(
        {
            "created_at": "2026-12-02T19:53:52.123456",
            "last_seen": "2026-12-02T20:53:52+01:00",
            "history": [{"at": "2026-12-02T19:53:52+00:00", "status": "success"}],
            "name": "2026-12-02T19:53:52",  # not a time field: left alone
            "expires_at": None,
        }
    )
    doc = json.loads(capsys.readouterr().out)
    assert doc == {
        "created_at": "2026-12-02T19:53:52.123456Z",
        "last_seen": "2026-12-02T19:53:52Z",
        "history": [{"at": "2026-12-02T19:53:52Z", "status": "success"}],
        "name": "2026-12-02T19:53:52",
        "expires_at": None,
    }
