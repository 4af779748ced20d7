"""Every command's --help works, every command the README promises it for takes --json, errors print as text."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
import typer.main
from typer.testing import CliRunner

from bulkhead.cli import main
from bulkhead.cli.errors import CliError

CLI = [sys.executable, "-m", "bulkhead.cli"]

# Long-running processes: they print no result to format; the README says so next to "every command takes --json".
NO_JSON = {("server",), ("lab", "qemu"), ("device", "shell"), ("device", "forward")}


def _commands(cmd: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    """Every command and group of the click tree typer builds, depth first (the root as the empty path)."""
    yield path, cmd
    for name, sub in sorted(getattr(cmd, "commands", {}).items()):
        yield from _commands(sub, (*path, name))


ALL = list(_commands(typer.main.get_command(main.app)))
LEAVES = [(p, c) for p, c in ALL if not hasattr(c, "commands")]


def test_the_tree_is_walked() -> None:
    paths = {p for p, _ in ALL}
    assert {(), ("app",), ("app", "create"), ("lab", "up"), ("demo",), ("device", "show")} <= paths
    assert len(LEAVES) > 50


@pytest.mark.parametrize("path", [p for p, _ in ALL], ids=lambda p: " ".join(p) or "bulkhead")
def test_help_of_every_command(path: tuple[str, ...]) -> None:
    res = CliRunner().invoke(main.app, [*path, "--help"], env={"COLUMNS": "100"})
    assert res.exit_code == 0, f"{res.output}\n{res.exception!r}"
    assert res.exception is None
    assert "Traceback" not in res.output
    assert "Usage:" in res.output


def test_app_create_help_as_a_user_runs_it() -> None:
    """It crashed with rich's MarkupError on the help text 'HOST:CONTAINER[/tcp|udp]'."""
    res = subprocess.run([*CLI, "app", "create", "--help"], capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stderr
    assert "HOST:CONTAINER[/tcp|udp]" in res.stdout and "NAME_OR_PATH:/path[:ro]" in res.stdout
    assert "Traceback" not in res.stderr


@pytest.mark.parametrize("path", [p for p, _ in LEAVES if p not in NO_JSON], ids=" ".join)
def test_every_command_takes_json(path: tuple[str, ...]) -> None:
    """The README: 'Every command takes --json' (the long-running ones in NO_JSON excepted, as it says)."""
    cmd = dict(ALL)[path]
    assert "--json" in {o for p in cmd.params for o in getattr(p, "opts", [])}


def _run_main(monkeypatch: pytest.MonkeyPatch, exc: BaseException) -> int:
    def boom(**_: Any) -> None:
        raise exc

    monkeypatch.setattr(main, "app", boom)
    with pytest.raises(SystemExit) as ended:
        main.run()
    code = ended.value.code
    assert isinstance(code, int)
    return code


def test_a_bug_whose_message_looks_like_markup_is_printed_as_text(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The generic handler crashed a second time printing 'closing tag [/tcp|udp]' as rich markup."""
    assert _run_main(monkeypatch, RuntimeError("closing tag '[/tcp|udp]' at [bold]")) == 1
    err = capsys.readouterr().err
    assert "internal error (a bug, please report it): RuntimeError(\"closing tag '[/tcp|udp]' at [bold]\")" in err


def test_a_user_error_is_printed_as_text_unwrapped(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    message = "no lab is running in /tmp/[/x]/" + "very-long-directory-name/" * 6
    assert _run_main(monkeypatch, CliError(message)) == 2
    assert capsys.readouterr().err == f"error: {message}\n"
