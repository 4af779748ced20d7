"""CPE names (2.3 formatted strings and 2.2 URIs) reduced to what matching needs: part, vendor, product, version."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

__all__ = ["Cpe", "parse_cpe"]

_UNESCAPED_COLON = re.compile(r"(?<!\\):")


@dataclass(frozen=True)
class Cpe:
    part: str  # "a", "o", "h" or "*"
    vendor: str  # "*" when any
    product: str
    version: str  # "*" (any) or "-" (not applicable) when not a single version

    @property
    def key(self) -> tuple[str, str]:
        return (self.vendor, self.product)


def _unescape(value: str) -> str:
    return re.sub(r"\\(.)", r"\1", value).lower()


@lru_cache(maxsize=1 << 16)  # a scan parses the same few thousand CPEs for every release it matches
def parse_cpe(text: str) -> Cpe | None:
    """Parse `cpe:2.3:a:vendor:product:version:...` or `cpe:/a:vendor:product:version`; None if it is neither."""
    if text.startswith("cpe:2.3:"):
        fields = _UNESCAPED_COLON.split(text)
        if len(fields) < 6:
            return None
        part, vendor, product, version = (_unescape(f) for f in fields[2:6])
    elif text.startswith("cpe:/"):
        fields = text[5:].split(":")
        fields += ["*"] * (4 - len(fields))
        part, vendor, product, version = (f.lower() or "*" for f in fields[:4])
    else:
        return None
    if not product or product == "*":
        return None
    return Cpe(part or "*", vendor or "*", product, version or "*")
