"""CLI errors and the exit-code contract: 0 ok, 1 bug, 2 user error."""

from __future__ import annotations

EXIT_OK, EXIT_BUG, EXIT_USER = 0, 1, 2
EXIT_REMOTE = 3  # `bulkhead device run`: a command on a device did not exit 0


class CliError(Exception):
    """A problem the user can fix; printed without a traceback, exit code 2."""
