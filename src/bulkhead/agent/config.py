"""The agent's configuration: a TOML file, validated into typed settings with clear errors."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError

__all__ = ["AgentConfig", "HealthConfig", "PodmanConfig", "load_config", "parse_config"]


@dataclass(frozen=True)
class HealthConfig:
    deadline: float = 120.0  # seconds after boot within which every check must pass
    command: str | None = None  # optional custom check; exit 0 = healthy
    required_containers: tuple[str, ...] = ()  # container names that must run (besides the desired apps')
    check_apps: bool = True  # the desired apps' containers must run
    check_packages: bool = True  # the desired Debian packages must be installed as asked (applied on the new slot)


@dataclass(frozen=True)
class PodmanConfig:
    enabled: bool = True
    command: tuple[str, ...] = ("podman",)
    run_args: tuple[str, ...] = ()  # extra `podman run` arguments, e.g. --runtime runc
    insecure_registries: tuple[str, ...] = ()  # registries reached over plain HTTP (lab, loopback)
    owner: str = "bulkhead"  # label value marking the containers this agent manages


@dataclass(frozen=True)
class AgentConfig:
    server: str
    data_dir: Path
    name: str
    bootstrap_token: str | None = None
    compatible: str | None = None  # default: RAUC's system compatible
    attributes: dict[str, str] = field(default_factory=dict)
    ca_file: Path | None = None  # PEM CA bundle the server's certificate must chain to; None: the system trust store
    client_cert: Path | None = None  # PEM client certificate (chain) for mutual TLS, e.g. at an nginx in front
    client_key: Path | None = None  # its private key, when not in client_cert's file
    reboot_command: tuple[str, ...] = ("systemctl", "reboot")
    rauc_command: tuple[str, ...] = ("rauc",)
    # Hand RAUC a signed URL instead of downloading (RAUC streams verity bundles with HTTP Range, fetching only
    # the blocks its adaptive mode lacks); None ("auto", the default): when `rauc --version` is 1.10 or newer.
    rauc_streaming: bool | None = None
    os_release: Path = Path("/etc/os-release")
    files_root: Path = Path("/")
    poll_interval: float | None = None  # override the server's interval (tests)
    jitter: float = 0.1  # up to this fraction of the interval is added at random
    rate_limit: int | None = None  # download bytes per second (metered links)
    deltas: bool = True  # download the delta bundle the server offers for the running version
    delta_fallback: bool = True  # when RAUC refuses a delta (slot modified, damaged patch): install the full bundle
    health: HealthConfig = field(default_factory=HealthConfig)
    podman: PodmanConfig = field(default_factory=PodmanConfig)
    packages_interval: float = 3600.0  # seconds between installed-package scans
    rotate_credential_days: float = 30.0  # renew the device credential when it is this old (0: never)
    # Desired Debian packages (the package overlay, agent/packages.py): the root apt's files are written under, and an
    # apt configuration file (APT_CONFIG) for apt to use, e.g. one that points apt at another root; None: apt's own.
    apt_root: Path = Path("/")
    apt_config: Path | None = None
    # The update lock applications hold while an OS update must not install (agent/update_lock.py), such as
    # /run/bulkhead/update.lock (the reference images set it); None: no lock is honoured.
    update_lock: Path | None = None
    # Where the agent leaves its credential when the server asks for a factory reset, outside the data partition the
    # image then erases at boot (agent/factory_reset.py; the reference images: /boot/efi/bulkhead/factory-reset);
    # None: the device cannot be reset from the server and says so.
    factory_reset_marker: Path | None = None
    # Remote sessions (agent/tunnel.py): the device maker's switch (the tenant's is on the server) and the shell run
    # on a session's terminal.
    remote_sessions: bool = True
    metrics_interval: float = 60.0  # seconds between samples of the device's health figures (0: none; agent/metrics.py)
    remote_shell: tuple[str, ...] = ("/bin/sh", "-l")


_TOP = {
    "server",
    "data_dir",
    "name",
    "bootstrap_token",
    "compatible",
    "attributes",
    "ca_file",
    "client_cert",
    "client_key",
    "reboot_command",
    "rauc_command",
    "rauc_streaming",
    "os_release",
    "files_root",
    "poll_interval",
    "jitter",
    "rate_limit",
    "deltas",
    "delta_fallback",
    "health",
    "podman",
    "packages_interval",
    "rotate_credential_days",
    "apt_root",
    "apt_config",
    "update_lock",
    "factory_reset_marker",
    "remote_sessions",
    "remote_shell",
    "metrics_interval",
}


def _flag(value: Any, name: str) -> bool:
    """A switch as TOML writes it: true or false (a string such as "false" would read as true)."""
    if not isinstance(value, bool):
        raise ConfigError(f"{name} must be true or false, not {value!r}")
    return value


def _interval(value: Any) -> float:
    seconds = float(value)
    if seconds != 0 and not 1 <= seconds <= 86400:
        raise ConfigError(f"metrics_interval must be 0 (no metrics) or 1 to 86400 seconds, not {value!r}")
    return seconds


def _streaming(value: Any) -> bool | None:
    if value == "auto":
        return None
    if isinstance(value, bool):
        return value
    raise ConfigError(f'rauc_streaming must be true, false or "auto", not {value!r}')


def _cmd(value: Any, key: str) -> tuple[str, ...]:
    if isinstance(value, str):
        return ("sh", "-c", value)
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise ConfigError(f"'{key}' must be a command: a string (run by sh) or a list of strings")


def _section(raw: Any, name: str, known: set[str]) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"[{name}] must be a table")
    unknown = set(raw) - known
    if unknown:
        raise ConfigError(f"unknown key(s) in [{name}]: {', '.join(sorted(unknown))}; known: {', '.join(sorted(known))}")
    return raw


def parse_config(raw: dict[str, Any], base: Path = Path(".")) -> AgentConfig:
    """Validate a parsed TOML document; every problem names the key and what is expected."""
    unknown = set(raw) - _TOP
    if unknown:
        raise ConfigError(f"unknown key(s): {', '.join(sorted(unknown))}; known: {', '.join(sorted(_TOP))}")
    server = raw.get("server")
    if not isinstance(server, str) or not server.startswith(("http://", "https://")):
        raise ConfigError("'server' must be the server's URL, e.g. 'https://updates.example.com'")
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise ConfigError("'name' must be this device's name (unique in the tenant), e.g. its serial number")

    def path(key: str, default: Path | None) -> Path | None:
        value = raw.get(key)
        if value is None:
            return default
        if not isinstance(value, str):
            raise ConfigError(f"'{key}' must be a path")
        return base / value

    if raw.get("client_key") is not None and raw.get("client_cert") is None:
        raise ConfigError("'client_key' needs 'client_cert' (the certificate the key belongs to)")
    h = _section(raw.get("health"), "health", {"deadline", "command", "required_containers", "check_apps", "check_packages"})
    p = _section(raw.get("podman"), "podman", {"enabled", "command", "run_args", "insecure_registries", "owner"})
    try:
        health = HealthConfig(
            deadline=float(h.get("deadline", 120.0)),
            command=h.get("command"),
            required_containers=tuple(h.get("required_containers", ())),
            check_apps=bool(h.get("check_apps", True)),
            check_packages=bool(h.get("check_packages", True)),
        )
        podman = PodmanConfig(
            enabled=bool(p.get("enabled", True)),
            command=tuple(p.get("command", ("podman",))),
            run_args=tuple(p.get("run_args", ())),
            insecure_registries=tuple(p.get("insecure_registries", ())),
            owner=str(p.get("owner", "bulkhead")),
        )
        rate = raw.get("rate_limit")
        interval = raw.get("poll_interval")
        data_dir = path("data_dir", Path("/data/bulkhead"))
        assert data_dir is not None
        return AgentConfig(
            server=server.rstrip("/"),
            data_dir=data_dir,
            name=name,
            bootstrap_token=raw.get("bootstrap_token"),
            compatible=raw.get("compatible"),
            attributes={str(k): str(v) for k, v in (raw.get("attributes") or {}).items()},
            ca_file=path("ca_file", None),
            client_cert=path("client_cert", None),
            client_key=path("client_key", None),
            reboot_command=_cmd(raw.get("reboot_command", ["systemctl", "reboot"]), "reboot_command"),
            rauc_command=_cmd(raw.get("rauc_command", ["rauc"]), "rauc_command"),
            rauc_streaming=_streaming(raw.get("rauc_streaming", "auto")),
            os_release=path("os_release", Path("/etc/os-release")) or Path("/etc/os-release"),
            files_root=path("files_root", Path("/")) or Path("/"),
            poll_interval=float(interval) if interval is not None else None,
            jitter=float(raw.get("jitter", 0.1)),
            rate_limit=int(rate) if rate is not None else None,
            deltas=bool(raw.get("deltas", True)),
            delta_fallback=bool(raw.get("delta_fallback", True)),
            health=health,
            podman=podman,
            packages_interval=float(raw.get("packages_interval", 3600.0)),
            rotate_credential_days=float(raw.get("rotate_credential_days", 30.0)),
            apt_root=path("apt_root", Path("/")) or Path("/"),
            apt_config=path("apt_config", None),
            update_lock=path("update_lock", None),
            factory_reset_marker=path("factory_reset_marker", None),
            remote_sessions=_flag(raw.get("remote_sessions", True), "remote_sessions"),
            metrics_interval=_interval(raw.get("metrics_interval", 60.0)),
            remote_shell=_cmd(raw.get("remote_shell", ["/bin/sh", "-l"]), "remote_shell"),
        )
    except (TypeError, ValueError) as e:
        raise ConfigError(f"a value has the wrong type: {e}") from None


def load_config(path: Path) -> AgentConfig:
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path} is not valid TOML: {e}") from None
    return parse_config(raw, path.parent)
