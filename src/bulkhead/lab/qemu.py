"""A whole device in QEMU: the reference image's disk under OVMF (UEFI), user-mode networking, serial log.

The guest reaches the host's loopback as 10.0.2.2 (QEMU's user networking), so a server listening on
127.0.0.1:PORT on the host is `http://10.0.2.2:PORT` for the device. QEMU restarts the machine when the
guest reboots, and OVMF boots GRUB from the EFI system partition again, exactly as hardware would.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from .rauc_service import LabError

__all__ = ["OVMF_CODE", "OVMF_VARS", "QemuDevice", "QemuSpec", "qemu_command"]

OVMF_CODE = Path("/usr/share/OVMF/OVMF_CODE_4M.fd")
OVMF_VARS = Path("/usr/share/OVMF/OVMF_VARS_4M.fd")


@dataclass(frozen=True)
class QemuSpec:
    disk: Path
    serial_log: Path
    name: str = "qemu-1"  # the device's SMBIOS serial: the reference image's agent enrolls under this name
    memory_mib: int = 1024
    cpus: int = 2
    vars_file: Path | None = None  # the machine's UEFI variables (default: next to the serial log)
    forwards: tuple[tuple[int, int], ...] = ()  # (host port, guest port): TCP on the host's loopback into the guest

    @property
    def monitor_socket(self) -> Path:
        return self.serial_log.with_suffix(".monitor.sock")


def qemu_command(spec: QemuSpec, vars_file: Path) -> list[str]:
    return [
        "qemu-system-x86_64",
        "-machine", "q35",
        "-m", str(spec.memory_mib),
        "-smp", str(spec.cpus),
        "-drive", f"if=pflash,format=raw,readonly=on,file={OVMF_CODE}",
        "-drive", f"if=pflash,format=raw,file={vars_file}",
        # discard=unmap: the guest's discards and zeroing (a factory reset's erasure) punch holes in the sparse image
        "-drive", f"file={spec.disk},if=virtio,format=raw,cache=unsafe,discard=unmap,detect-zeroes=unmap",
        "-netdev", "user,id=net0" + "".join(f",hostfwd=tcp:127.0.0.1:{h}-:{g}" for h, g in spec.forwards),
        "-device", "virtio-net-pci,netdev=net0",
        "-smbios", f"type=1,serial={spec.name}",
        "-display", "none",
        "-monitor", f"unix:{spec.monitor_socket},server=on,wait=off",
        "-chardev", f"file,id=serial0,path={spec.serial_log},append=on",
        "-serial", "chardev:serial0",
        "-no-reboot",  # a guest reboot ends QEMU; power_cycle() starts it again cold (warm resets hang OVMF at times)
    ]  # fmt: skip


class QemuDevice:
    """Start, watch and stop one QEMU machine."""

    def __init__(self, spec: QemuSpec) -> None:
        self.spec = spec
        self.proc: subprocess.Popen[bytes] | None = None
        self.resets = 0  # how often the boot watchdog reset the machine
        self.power_cycles = 0  # how often a guest reboot was turned into a cold start
        self._seen = (-1, 0.0)  # (serial log size, when it last changed)

    def start(self) -> None:
        if shutil.which("qemu-system-x86_64") is None:
            raise LabError("'qemu-system-x86_64' is missing: install the Debian package qemu-system-x86")
        if not OVMF_CODE.exists():
            raise LabError(f"{OVMF_CODE} is missing: install the Debian package ovmf")
        if not self.spec.disk.is_file():
            raise LabError(f"disk image {self.spec.disk} does not exist: build one with 'bulkhead image build'")
        vars_file = self.spec.vars_file or self.spec.serial_log.with_suffix(".ovmf-vars.fd")
        if not vars_file.exists():
            shutil.copyfile(OVMF_VARS, vars_file)
        self.spec.serial_log.parent.mkdir(parents=True, exist_ok=True)
        err = self.spec.serial_log.with_suffix(".qemu.log").open("ab")
        self.spec.monitor_socket.unlink(missing_ok=True)
        self.proc = subprocess.Popen(qemu_command(self.spec, vars_file), stdout=err, stderr=err)

    def serial(self) -> str:
        try:
            return self.spec.serial_log.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def running(self) -> bool:
        """Whether the machine is up; a guest reboot is turned into a cold start here."""
        if self.proc is not None and self.proc.poll() == 0:
            self.power_cycle()
        return self.proc is not None and self.proc.poll() is None

    def wait_serial(self, text: str, timeout: float, after: int = 0) -> int:
        """Wait until `text` appears in the serial log past offset `after`; return the offset after it."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            log = self.serial()
            at = log.find(text, after)
            if at >= 0:
                return at + len(text)
            if not self.running():
                raise LabError(f"QEMU exited (code {self.proc.returncode if self.proc else None}) before '{text}'")
            time.sleep(0.5)
        raise LabError(f"'{text}' did not appear on the serial console within {timeout:.0f} s")

    def power_cycle(self) -> bool:
        """When the guest rebooted (QEMU ended with status 0 under -no-reboot), start it again, cold, with
        the same disk and UEFI variables; return whether it did. A crash of QEMU is not restarted."""
        if self.proc is None or self.proc.poll() != 0:
            return False
        self.power_cycles += 1
        self.start()
        return True

    def reset(self) -> None:
        """Press the machine's reset button (QEMU's monitor `system_reset`)."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(10)
            s.connect(str(self.spec.monitor_socket))
            s.sendall(b"system_reset\n")
            time.sleep(0.5)
        self.resets += 1

    def boot_watchdog(self, stall: float = 240) -> bool:
        """Reset a machine that hangs between firmware and kernel, as a board's watchdog would.

        Emulated firmware or GRUB rarely hangs after a warm reboot on a loaded host (the console stops at
        "Welcome to GRUB!"). When the console has been silent for `stall` seconds and nothing after the
        last firmware line is the kernel's, reset the machine once and return True. Call it while waiting.
        """
        log = self.serial()
        now = time.monotonic()
        if len(log) != self._seen[0]:
            self._seen = (len(log), now)
            return False
        if now - self._seen[1] < stall:
            return False
        booting = max(log.rfind(m) for m in ("reboot: machine restart", "BdsDxe:", "Welcome to GRUB"))
        if booting < 0 or booting < log.rfind("Linux version"):
            return False
        self.reset()
        self._seen = (len(log), now)
        return True

    def stop(self, grace: float = 5) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(grace)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
