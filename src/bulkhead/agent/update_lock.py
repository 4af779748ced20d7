"""The update lock: an application on the device holds it (flock on a file, e.g. `flock /run/bulkhead/update.lock
CMD`, or fcntl.flock from its own code) while an OS update must not install, as balena's update lock allows.

The agent takes the same lock, without waiting, before it installs: when an application holds it, the agent keeps
the downloaded bundle and waits (up to the server's maximum); when the agent holds it, through the install and the
reboot, an application that asks for it waits instead. A lock file that cannot be opened is not honoured (logged).
"""

from __future__ import annotations

import fcntl
import logging
import os
from pathlib import Path

__all__ = ["UpdateLock"]

log = logging.getLogger(__name__)


class UpdateLock:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        """Whether the agent holds it now."""
        return self._fd is not None

    def take(self) -> bool:
        """True when the agent holds the lock now (taken, or held already); False when an application holds it."""
        if self._fd is not None:
            return True
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        except OSError as e:
            log.warning("the update lock %s cannot be opened (%s): it is not honoured", self.path, e)
            return True
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the last descriptor of the open file releases the flock
            self._fd = None
