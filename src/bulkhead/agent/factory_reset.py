"""Factory reset on the device: the credential is left where the erasure does not reach, the device reboots, and
the image erases the data partition before anything mounts it (the reference image's bulkhead-factory-reset
service). After the erasure the agent finds the credential on the new partition and enrolls again with it."""

from __future__ import annotations

from pathlib import Path

from .state import write_atomic

__all__ = ["PREVIOUS_CREDENTIAL", "RESET_ATTEMPT", "erasure_failed", "leave_credential", "note_attempt"]

# Where the erasure puts the credential for the agent, in its data directory on the new partition.
PREVIOUS_CREDENTIAL = "previous-credential"
# In the data directory: the boot that asked for the erasure. Still there in a later boot: the erasure did not run.
RESET_ATTEMPT = "factory-reset-boot"
BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


def _boot_id() -> str:
    return BOOT_ID.read_text().strip()


def note_attempt(attempt: Path) -> None:
    """Remember, on the partition to be erased, the boot that asks for the erasure."""
    attempt.parent.mkdir(parents=True, exist_ok=True)
    attempt.write_text(_boot_id() + "\n")


def erasure_failed(marker: Path, attempt: Path) -> bool:
    """A reboot asked for the erasure and the data is still here, marker and all: it did not run."""
    try:
        return marker.exists() and attempt.read_text().strip() != _boot_id()
    except OSError:
        return False


def leave_credential(marker: Path, credential: str) -> None:
    """Write the marker (the credential: it proves the device when it enrolls again), durably. No chmod: the
    marker lives on the EFI partition, whose FAT has no modes (the mount's umask keeps it root's)."""
    write_atomic(marker, (credential + "\n").encode(), mode=None)
