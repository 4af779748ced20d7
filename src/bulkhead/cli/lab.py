"""`bulkhead lab`: simulated devices on this machine, each with its own real RAUC service and agent."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import typer

from bulkhead.lab.device import DeviceSpec
from bulkhead.lab.rauc_service import LabError
from bulkhead.lab.supervisor import request, write_lab

from . import output
from .errors import CliError

app = typer.Typer(help="Simulated devices with real RAUC services and agents (needs root).", no_args_is_help=True)

DirOpt = typer.Option(Path("bulkhead-lab"), "--dir", help="Where the lab keeps its devices")
JsonOpt = typer.Option(False, "--json", help="Machine-readable output")

__all__ = ["app", "start_lab", "stop_lab"]


def _pid(directory: Path) -> int | None:
    try:
        pid = int((directory / "supervisor.pid").read_text())
        os.kill(pid, 0)
        return pid
    except (FileNotFoundError, ValueError, ProcessLookupError):
        return None


def start_lab(
    directory: Path, specs: list[DeviceSpec], timeout: float = 120, tie_to_parent: bool = False
) -> subprocess.Popen[bytes]:
    """Start the supervisor detached and wait until every device has booted (tied: it stops when we exit)."""
    directory = directory.absolute()  # lab.json and every device config hold absolute paths
    if os.geteuid() != 0:
        raise CliError("the lab needs root: RAUC services use loop devices and mount namespaces")
    if _pid(directory) is not None:
        raise CliError(f"a lab is already running in {directory}; stop it with 'bulkhead lab down --dir {directory}'")
    write_lab(directory, specs)
    (directory / "ready").unlink(missing_ok=True)
    log = (directory / "supervisor.log").open("ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "bulkhead.lab.supervisor", str(directory)],
        stdout=log,
        stderr=log,
        start_new_session=True,
        env={**os.environ, "BULKHEAD_LAB_PARENT": str(os.getpid()) if tie_to_parent else ""},
    )
    end = time.monotonic() + timeout
    while not (directory / "ready").exists():
        if proc.poll() is not None or time.monotonic() > end:
            tail = (directory / "supervisor.log").read_text()[-1500:]
            proc.kill()
            raise CliError(f"the lab did not start:\n{tail}")
        time.sleep(0.2)
    return proc


def stop_lab(directory: Path, timeout: float = 60) -> bool:
    """Stop the lab running in `directory`; False when none runs there."""
    pid = _pid(directory)
    if pid is None:
        return False
    os.kill(pid, signal.SIGTERM)
    end = time.monotonic() + timeout
    while _pid(directory) is not None and time.monotonic() < end:
        time.sleep(0.2)
    return True


def _done(doc: dict[str, Any], summary: str, json_out: bool) -> None:
    if json_out:
        output.emit_json(doc)
    else:
        output.line(summary)


def _request(directory: Path, device: str, json_out: bool, **req: Any) -> None:
    """Hand a request to the running lab's supervisor (it acts on it within a tenth of a second)."""
    if _pid(directory) is None:
        raise CliError(f"no lab is running in {directory}; start one with 'bulkhead lab up'")
    names = {d["name"] for d in json.loads((directory / "lab.json").read_text())["devices"]}
    if device not in names:
        raise CliError(f"the lab in {directory} has no device '{device}'; it has: {', '.join(sorted(names))}")
    request(directory, device, **req)
    _done({"device": device, "requested": req}, f"{req['action']} requested for {device}", json_out)


@app.command("up")
def up(
    devices: int = typer.Option(3, min=1, max=200, help="How many devices"),
    server: str = typer.Option(..., envvar="BULKHEAD_SERVER", help="Server URL the agents talk to"),
    bootstrap_token: str = typer.Option(..., envvar="BULKHEAD_BOOTSTRAP_TOKEN", help="Token the devices enroll with"),
    keyring: Path = typer.Option(..., exists=True, dir_okay=False, help="CA (PEM) RAUC on the devices trusts"),
    compatible: str = typer.Option("bulkhead-lab", help="RAUC compatible of the devices"),
    initial_version: str = typer.Option("1.0", help="OS version the devices report before their first update"),
    prefix: str = typer.Option("lab", help="Device names are PREFIX-000, PREFIX-001, ..."),
    fail_health: list[str] = typer.Option([], help="Device whose next slot fails its health check (repeatable)"),
    poll_interval: float = typer.Option(5.0, help="Seconds between the agents' polls"),
    insecure_registry: list[str] = typer.Option([], help="Registry the agents reach over plain HTTP (repeatable)"),
    directory: Path = DirOpt,
    json_out: bool = JsonOpt,
) -> None:
    """Boot N devices (RAUC service + agent each) and leave them running; 'bulkhead lab down' stops them."""
    specs = [
        DeviceSpec(f"{prefix}-{i:03d}", server, bootstrap_token, compatible, keyring, initial_version,
                   poll_interval=poll_interval, insecure_registries=insecure_registry)
        for i in range(devices)
    ]  # fmt: skip
    directory = directory.absolute()
    try:
        start_lab(directory, specs)
    except LabError as e:
        raise CliError(str(e)) from None
    for name in fail_health:
        request(directory, name, action="fail-health", slot="B")
    if json_out:
        rows = json.loads((directory / "status.json").read_text())
        output.emit_json({"directory": str(directory), "devices": rows})
    else:
        output.line(f"lab up: {devices} devices in {directory} (logs: {directory}/devices/*/agent.log)")


@app.command("down")
def down(directory: Path = DirOpt, json_out: bool = JsonOpt) -> None:
    """Stop every device of the lab (agents and RAUC services)."""
    if not stop_lab(directory):
        raise CliError(f"no lab is running in {directory}")
    _done({"directory": str(directory.absolute()), "stopped": True}, "lab down", json_out)


@app.command("status")
def status(directory: Path = DirOpt, json_out: bool = JsonOpt) -> None:
    """Each device: booted slot, boots, agent running, update phase."""
    if _pid(directory) is None:
        raise CliError(f"no lab is running in {directory}")
    rows = json.loads((directory / "status.json").read_text())
    output.emit_json(rows) if json_out else output.table(rows, ["name", "booted", "boots", "agent_running", "update"])


@app.command("power-cut")
def power_cut(
    device: str,
    phase: str | None = typer.Option(None, help="Wait until the agent is in this phase (downloading, installing, ...)"),
    after: float = typer.Option(0.0, help="Then wait this many seconds"),
    directory: Path = DirOpt,
    json_out: bool = JsonOpt,
) -> None:
    """Cut a device's power (at once, or at a chosen point of an install); it boots again right after."""
    _request(directory, device, json_out, action="power-cut", phase=phase, after=after)


@app.command("fail-health")
def fail_health_cmd(
    device: str,
    slot: str = typer.Option("B", help="Slot whose health check fails"),
    off: bool = typer.Option(False, help="Make every slot healthy again"),
    directory: Path = DirOpt,
    json_out: bool = JsonOpt,
) -> None:
    """Make a device's slot fail its health check after the next update into it."""
    _request(directory, device, json_out, action="fail-health", slot=None if off else slot)


@app.command("reboot")
def reboot(device: str, directory: Path = DirOpt, json_out: bool = JsonOpt) -> None:
    """Reboot a device (clean shutdown, the bootloader picks the slot)."""
    _request(directory, device, json_out, action="reboot")


@app.command("qemu")
def qemu(
    disk: Path = typer.Option(..., help="Disk image from 'bulkhead image build' (it is written to: boot a copy)"),
    name: str = typer.Option("qemu-1", help="The device's name (its SMBIOS serial; the agent enrolls with it)"),
    serial_log: Path = typer.Option(Path("serial.log"), help="Where the serial console is logged"),
    memory: int = typer.Option(1024, help="Memory in MiB"),
    cpus: int = typer.Option(2, help="Virtual CPUs"),
    forward: list[str] = typer.Option([], help="HOST_PORT:GUEST_PORT, TCP from this host's loopback into the guest (repeatable)"),
) -> None:
    """Boot the reference image in QEMU (software emulation, OVMF): the server on this host is 10.0.2.2."""
    from bulkhead.lab.qemu import QemuDevice, QemuSpec

    forwards = []
    for f in forward:
        host, _, guest = f.partition(":")
        if not (host.isdigit() and guest.isdigit() and 0 < int(host) < 65536 and 0 < int(guest) < 65536):
            raise CliError(f"--forward {f!r}: write HOST_PORT:GUEST_PORT with ports 1-65535, e.g. --forward 8081:8080")
        forwards.append((int(host), int(guest)))
    dev = QemuDevice(QemuSpec(disk, serial_log, name, memory, cpus, forwards=tuple(forwards)))
    dev.start()
    output.line(f"QEMU device '{name}' running; serial console: {serial_log} (Ctrl-C stops it)")
    try:
        while dev.running():  # a guest reboot ends QEMU (-no-reboot); running() starts it again, cold
            dev.boot_watchdog()
            time.sleep(1)
    except KeyboardInterrupt:
        dev.stop()
    finally:
        dev.stop()
