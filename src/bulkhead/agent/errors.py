"""The agent's error hierarchy: each error says who must act and what to do."""

from __future__ import annotations

__all__ = [
    "AgentError",
    "BadResponse",
    "ConfigError",
    "DownloadError",
    "HealthCheckFailed",
    "IntegrityError",
    "PodmanError",
    "RaucError",
    "ServerRejected",
    "ServerUnreachable",
    "StateError",
    "TLSError",
    "TunnelError",
]


class AgentError(Exception):
    """Base of every error the agent raises on purpose."""


class ConfigError(AgentError):
    """The agent's configuration file is missing or wrong: the device maker must fix it."""


class ServerUnreachable(AgentError):
    """The server could not be reached (network, DNS, TLS, 5xx): transient, the agent retries with backoff."""


class BadResponse(ServerUnreachable):
    """The answer is not what the agent protocol sends (HTML from a captive portal or proxy, truncated or
    malformed JSON, a malformed header): treated like an unreachable server, the agent retries with backoff."""


class TLSError(ServerUnreachable):
    """The TLS handshake failed: the server's certificate is not trusted by the configured CA bundle (`ca_file`),
    or the server refused the client certificate; the device maker or operator must fix the certificates."""


class ServerRejected(AgentError):
    """The server answered with a 4xx: the request or the device's standing is wrong."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"server answered {status}: {message}")
        self.status = status


class DownloadError(AgentError):
    """An artifact download failed in a way that retrying the same request will not fix."""


class IntegrityError(AgentError):
    """Downloaded bytes do not match the size or sha256 the server announced."""


class RaucError(AgentError):
    """RAUC refused or failed an operation; the message carries RAUC's own words."""


class PodmanError(AgentError):
    """Podman refused or failed an operation; the message carries Podman's own words."""


class HealthCheckFailed(AgentError):
    """The new slot did not pass its health checks before the deadline."""


class StateError(AgentError):
    """The agent's state file on the data partition cannot be read or written (corrupt, newer format, disk full)."""


class TunnelError(ServerUnreachable):
    """A remote session's WebSocket failed (refused upgrade, malformed frame, closed): the session ends, the
    control channel is dialed again with backoff."""
