"""QemuDevice against the real qemu-system-x86_64 and OVMF: the monitor's reset and the boot watchdog."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from bulkhead.lab.qemu import OVMF_CODE, QemuDevice, QemuSpec, qemu_command


def test_command_has_a_monitor_socket_next_to_the_serial_log(tmp_path: Path) -> None:
    spec = QemuSpec(tmp_path / "d.img", tmp_path / "serial.log")
    cmd = qemu_command(spec, tmp_path / "vars.fd")
    assert cmd[cmd.index("-monitor") + 1] == f"unix:{tmp_path / 'serial.monitor.sock'},server=on,wait=off"
    assert "-no-reboot" in cmd  # reboots become cold starts (power_cycle)
    assert cmd[cmd.index("-chardev") + 1] == f"file,id=serial0,path={tmp_path / 'serial.log'},append=on"
    assert cmd[cmd.index("-netdev") + 1] == "user,id=net0"


def test_forwarded_ports_listen_on_the_hosts_loopback_only(tmp_path: Path) -> None:
    spec = QemuSpec(tmp_path / "d.img", tmp_path / "serial.log", forwards=((18080, 8080), (2222, 22)))
    cmd = qemu_command(spec, tmp_path / "vars.fd")
    assert cmd[cmd.index("-netdev") + 1] == "user,id=net0,hostfwd=tcp:127.0.0.1:18080-:8080,hostfwd=tcp:127.0.0.1:2222-:22"


@pytest.mark.parametrize("bad", ["8080", "a:80", "0:80", "80:70000", "80:"])
def test_lab_qemu_refuses_a_forward_it_cannot_read(tmp_path: Path, bad: str) -> None:
    """Before QEMU starts: `bulkhead` prints a CliError as one line and exits 2 (tests/cli/test_help_and_errors.py)."""
    from typer.testing import CliRunner

    from bulkhead.cli import main
    from bulkhead.cli.errors import CliError

    res = CliRunner().invoke(main.app, ["lab", "qemu", "--disk", str(tmp_path / "d.img"), "--forward", bad])
    assert isinstance(res.exception, CliError) and "write HOST_PORT:GUEST_PORT" in str(res.exception)


@pytest.mark.slow
def test_boot_watchdog_power_cycles_a_machine_stuck_before_the_kernel(tmp_path: Path) -> None:
    if shutil.which("qemu-system-x86_64") is None or not OVMF_CODE.exists():
        pytest.skip("QEMU needs the Debian packages qemu-system-x86 and ovmf ('make setup' installs them)")
    disk = tmp_path / "blank.img"
    disk.write_bytes(b"\0" * (1 << 20))  # nothing to boot: the firmware ends in its shell and waits, silent
    dev = QemuDevice(QemuSpec(disk, tmp_path / "serial.log", memory_mib=256, cpus=1))
    dev.start()
    try:
        boot_starts = "Boot0001"  # the firmware tries its first boot option once per power-on or reset
        dev.wait_serial(boot_starts, 300)
        assert not dev.boot_watchdog(stall=5)  # first look only records the console's size
        end = time.monotonic() + 600
        while not dev.boot_watchdog(stall=5):
            assert time.monotonic() < end, "the silent firmware was never reset"
            time.sleep(1)
        assert dev.resets == 1
        end = time.monotonic() + 300
        while dev.serial().count(boot_starts) < 2:
            assert time.monotonic() < end, "the machine did not boot its firmware again after the reset"
            assert dev.running()
            time.sleep(1)
        # under -no-reboot the reset ended QEMU, and running() started it again, cold, appending to the log
        assert dev.power_cycles == 1
    finally:
        dev.stop()
