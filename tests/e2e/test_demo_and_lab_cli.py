"""The main job (`bulkhead demo`) and the lab's command line, run as a user runs them."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from bulkhead.lab.device import DeviceSpec, LabDevice
from bulkhead.lab.pki import make_pki
from bulkhead.lab.supervisor import load_lab, write_lab
from tests.e2e.conftest import Fleet, need_lab
from tests.live import free_port

CLI = [sys.executable, "-m", "bulkhead.cli"]


def _wait(cond, timeout: float, what: str):  # type: ignore[no-untyped-def]
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            value = cond()
        except (OSError, httpx.HTTPError, ValueError, KeyError):
            value = None
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def _alive(pid: int) -> bool:
    """Running (a zombie left for a non-reaping init is not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


REPO = Path(__file__).resolve().parents[2]


def _make_recipe(target: str) -> list[str]:
    """The command lines of a Makefile target, with the Makefile's own `VAR := value` variables put in."""
    text = (REPO / "Makefile").read_text()
    variables = dict(re.findall(r"^([A-Z_]+) [:?]?= (.*)$", text, re.M))
    block = re.search(rf"^{target}:.*\n((?:\t.*\n)+)", text, re.M)
    assert block, f"the Makefile has no '{target}' target"
    lines = [ln.strip() for ln in block.group(1).splitlines()]
    return [re.sub(r"\$\((\w+)\)", lambda m: variables[m.group(1)], ln) for ln in lines]


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def test_make_demo_command_line_verbatim_updates_every_device(tmp_path: Path) -> None:
    """The README's quick start: `make demo` runs the demo recipe of the Makefile, from the checkout.

    The recipe (read from the Makefile, so this test follows it) runs with a working directory of its
    own that has `.venv` (this test's virtualenv) in it, so its relative `--data-dir` lands there. Only
    the port may differ: 8080 when it is free, else a free one (the machine may run other servers).
    Then, as the README says: paste the printed export line (in another directory) and watch
    `bulkhead device list --json` until every demo device runs 1.1.0; Ctrl-C stops all of it.
    """
    need_lab()
    recipe = _make_recipe("demo")
    assert len(recipe) == 1, recipe
    argv = shlex.split(recipe[0])
    assert argv[:2] == [".venv/bin/bulkhead", "demo"], argv
    data_arg = argv[argv.index("--data-dir") + 1]
    assert not Path(data_arg).is_absolute(), "the README's demo uses a relative data directory"
    if not _port_free(int(argv[argv.index("--port") + 1])):
        argv[argv.index("--port") + 1] = str(free_port())
    port = int(argv[argv.index("--port") + 1])
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    (checkout / ".venv").symlink_to(Path(sys.prefix))
    env = {k: v for k, v in os.environ.items() if not k.startswith("BULKHEAD_")}
    env.update(PYTHONPATH=str(REPO / "src"), COLUMNS="80", TERM="xterm-256color")
    log_path = tmp_path / "demo.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(argv, cwd=checkout, env=env, stdout=log, stderr=log)
    data = checkout / data_arg
    lab = data / "demo" / "lab"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    try:

        def export_line() -> str | None:
            lines = [ln.strip() for ln in log_path.read_text().splitlines() if ln.strip().startswith("export ")]
            return lines[0] if lines else None

        export = _wait(export_line, 120, "the demo's export line: " + log_path.read_text()[-2000:])
        # One line to paste, unwrapped at 80 columns, with an absolute token path: it works from any directory.
        assert export == (
            f"export BULKHEAD_SERVER=http://127.0.0.1:{port} BULKHEAD_TOKEN=$(cat {data.absolute()}/demo/demo.token)"
        )

        def devices() -> list[dict[str, Any]]:
            script = f"{export}\n{checkout / '.venv/bin/bulkhead'} device list --json"
            res = subprocess.run(["bash", "-c", script], cwd=elsewhere, env=env, capture_output=True, text=True, timeout=60)
            assert res.returncode == 0, res.stderr
            rows: list[dict[str, Any]] = json.loads(res.stdout)
            return rows

        def all_updated() -> bool:
            rows = devices()
            return len(rows) == 3 and all(d.get("os_version") == "1.1.0" and d["update"].get("phase") == "success" for d in rows)

        _wait(all_updated, 360, "all three demo devices on 1.1.0: " + log_path.read_text()[-2000:])
        assert sorted(d["name"] for d in devices()) == ["demo-000", "demo-001", "demo-002"]
        pid = int((lab / "supervisor.pid").read_text())
    finally:
        proc.send_signal(signal.SIGINT)  # Ctrl-C
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert "failed to load" not in log_path.read_text()
    # The lab goes down with the demo: no supervisor, no agents, no RAUC services left behind.
    _wait(lambda: not (lab / "supervisor.pid").exists(), 30, "the lab to stop with the demo")
    assert not _alive(pid)
    left = subprocess.run(["pgrep", "-f", str(lab)], capture_output=True, text=True).stdout.split()
    assert left == []


def test_lab_configs_hold_absolute_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """RAUC reads relative paths in system.conf from the file's own directory: the lab writes none (no root needed)."""
    monkeypatch.chdir(tmp_path)
    make_pki(Path("pki"))
    image = Path("initial.img")
    image.write_bytes(b"\0" * 4096)
    spec = DeviceSpec("rel-000", "http://127.0.0.1:9", "bhb_x", "rel", Path("pki/ca.pem"), initial_image=image)
    write_lab(Path("lab"), [spec])
    [loaded] = load_lab(Path("lab"))
    assert loaded.keyring == tmp_path / "pki/ca.pem" and loaded.initial_image == tmp_path / "initial.img"
    dev = LabDevice(Path("lab/devices/rel-000"), loaded)
    dev.rauc._write_config()
    agent = dev._write_config().read_text()
    conf = (tmp_path / "lab/devices/rel-000/rauc/system.conf").read_text()
    paths = [v for line in conf.splitlines() if "=" in line for v in [line.split("=", 1)[1]] if "/" in v]
    paths += [v.strip('"') for line in agent.splitlines() for v in re.findall(r'"(/[^"]*)"', line)]
    assert len(paths) >= 8 and all(Path(p).is_absolute() for p in paths), paths
    assert f"path={tmp_path}/lab/devices/rel-000/rauc/keyring.pem" in conf
    assert f'data_dir = "{tmp_path}/lab/devices/rel-000/data"' in agent


def test_lab_cli_up_status_power_cut_down(fleet: Fleet) -> None:
    """Relative --dir and --keyring from the user's working directory; --json on each command."""
    lab = fleet.work / "lab"
    env = {**os.environ, "BULKHEAD_SERVER": fleet.server.url, "BULKHEAD_BOOTSTRAP_TOKEN": fleet.bootstrap}
    keyring = str(fleet.pki.ca.relative_to(fleet.work))

    def run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*CLI, "lab", *args], cwd=fleet.work, env=env, capture_output=True, text=True, timeout=timeout)

    up = run("up", "--devices", "2", "--keyring", keyring, "--dir", "lab", "--poll-interval", "1", "--json")
    assert up.returncode == 0, up.stderr
    try:
        doc = json.loads(up.stdout)
        assert doc["directory"] == str(lab) and [d["name"] for d in doc["devices"]] == ["lab-000", "lab-001"]
        conf = (lab / "devices" / "lab-000" / "rauc" / "system.conf").read_text()
        assert f"path={lab}/devices/lab-000/rauc/keyring.pem" in conf  # absolute: RAUC reads relative paths from its dir
        again = run("up", "--keyring", keyring, "--dir", "lab")
        assert again.returncode == 2 and "already running" in again.stderr
        status = json.loads(run("status", "--dir", "lab", "--json").stdout)
        assert [(d["name"], d["booted"], d["boots"]) for d in status] == [("lab-000", "A", 1), ("lab-001", "A", 1)]
        _wait(lambda: fleet.show("lab-001")["reported"].get("os_version") == "1.0", 60, "lab-001 to enroll and report")
        nobody = run("power-cut", "lab-009", "--dir", "lab")
        assert nobody.returncode == 2 and "has no device 'lab-009'; it has: lab-000, lab-001" in nobody.stderr
        cut = run("power-cut", "lab-001", "--dir", "lab", "--json")
        assert cut.returncode == 0 and json.loads(cut.stdout)["requested"]["action"] == "power-cut", cut.stderr

        def rebooted() -> bool:
            rows = json.loads((lab / "status.json").read_text())
            return any(d["name"] == "lab-001" and d["boots"] == 2 and d["agent_running"] for d in rows)

        _wait(rebooted, 30, "lab-001 to boot again after the power cut")
    finally:
        down = run("down", "--dir", "lab", "--json", timeout=90)
    assert down.returncode == 0, down.stderr
    assert json.loads(down.stdout) == {"directory": str(lab), "stopped": True}
    assert subprocess.run(["pgrep", "-f", str(lab)], capture_output=True, text=True).stdout.split() == []
    gone = run("down", "--dir", "lab")
    assert gone.returncode == 2 and "no lab is running" in gone.stderr
