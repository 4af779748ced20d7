"""A device's inventory as it reported it: bounded, fingerprinted by its JSON text, and the OS version it names."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ..errors import Invalid
from ..limits import text_digest

__all__ = ["MAX_INVENTORY_BYTES", "MAX_INVENTORY_KEYS", "Inventory", "inventory_of"]

MAX_INVENTORY_BYTES = 512 * 1024
MAX_INVENTORY_KEYS = 256  # top-level fields
MAX_OS_VERSION_CHARS = 256


@dataclass(frozen=True)
class Inventory:
    value: dict[str, Any] | None  # None: `text` is an inventory checked before, parsed only if it must be written
    sha256: str  # of the JSON text (limits.text_digest): the same text again is the same inventory, not written again
    os_version: str | None
    text: str | None = None
    length: int | None = None  # of the text, in characters

    def parsed(self) -> dict[str, Any]:
        if self.value is not None:
            return self.value
        assert self.text is not None, "an inventory has its value or its text"
        value: dict[str, Any] = json.loads(self.text)
        return value

    def json_text(self) -> str:
        """The inventory as JSON text: as the device sent it, or serialized here."""
        return self.text if self.text is not None else json.dumps(self.value)

    @classmethod
    def seen_before(cls, text: str, before: Inventory) -> Inventory:
        """The same text as `before` again (checked then): not parsed unless it must be written."""
        return cls(None, before.sha256, before.os_version, text, len(text))


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
    return Inventory(value, text_digest(text), os_version, text, len(text))
