"""The agent's TOML configuration: defaults, and clear errors for what is wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from bulkhead.agent.config import load_config, parse_config
from bulkhead.agent.errors import ConfigError


def test_minimal_config_gets_defaults(tmp_path: Path) -> None:
    p = tmp_path / "agent.toml"
    p.write_text('server = "https://u.example.com/"\nname = "sn-1"\nreboot_command = "echo bye"\n[health]\ndeadline = 30\n')
    cfg = load_config(p)
    assert cfg.server == "https://u.example.com" and cfg.data_dir == Path("/data/bulkhead")
    assert cfg.reboot_command == ("sh", "-c", "echo bye") and cfg.health.deadline == 30.0
    assert cfg.podman.owner == "bulkhead" and cfg.rate_limit is None


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"name": "x"}, "'server' must be the server's URL"),
        ({"server": "ftp://x", "name": "x"}, "'server' must be"),
        ({"server": "http://x"}, "'name' must be"),
        ({"server": "http://x", "name": "x", "srever": 1}, "unknown key(s): srever"),
        ({"server": "http://x", "name": "x", "health": {"deadlin": 3}}, "unknown key(s) in [health]: deadlin"),
        ({"server": "http://x", "name": "x", "reboot_command": 5}, "'reboot_command' must be a command"),
        ({"server": "http://x", "name": "x", "rate_limit": "fast"}, "wrong type"),
    ],
)
def test_bad_config_is_named(doc: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=None) as e:
        parse_config(doc)
    assert message in str(e.value)


def test_unreadable_config(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml")
    (tmp_path / "bad.toml").write_text("server = ")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(tmp_path / "bad.toml")


def test_shipped_example_config_is_valid() -> None:
    example = Path(__file__).resolve().parents[2] / "contrib" / "agent.toml.example"
    cfg = load_config(example)
    assert cfg.data_dir == Path("/data/bulkhead") and cfg.reboot_command == ("systemctl", "reboot")
