"""The tunnel hub: joins an operator's WebSocket to the connection a device dials for it (docs/adr/0011)."""

from .hub import TunnelHub

__all__ = ["TunnelHub"]
