"""A device's inventory as it reported it: bounded, fingerprinted by its JSON text, and the OS version it names."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from ..errors import Invalid

__all__ = ["MAX_INVENTORY_BYTES", "MAX_INVENTORY_KEYS", "Inventory", "inventory_of"]

MAX_INVENTORY_BYTES = 512 * 1024
MAX_INVENTORY_KEYS = 256  # top-level fields
MAX_OS_VERSION_CHARS = 256


@dataclass(frozen=True)
class Inventory:
    value: dict[str, Any]
    sha256: str  # of the JSON text: the same text again is the same inventory, and is not written again
    os_version: str | None


def inventory_of(value: dict[str, Any], text: str | None = None) -> Inventory:
    """The checked inventory; `text` is the JSON text the device sent it as (else it is serialized here).

    The fingerprint is taken over the text as sent, not over a canonical form: an agent sends the same inventory
    as the same text, and a different text of the same inventory costs one needless write, never a lost change.
    """
    if text is None:
        text = json.dumps(value, sort_keys=True, separators=(",", ":"))
    if len(text) > MAX_INVENTORY_BYTES:
        raise Invalid(f"inventory is too large: at most {MAX_INVENTORY_BYTES} bytes of JSON")
    version = value.get("os_version")
    os_version = version[:MAX_OS_VERSION_CHARS] if isinstance(version, str) and version else None
    return Inventory(value, hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest(), os_version)
