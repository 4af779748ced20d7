"""A device's member state for fleet exposure: its attribute `country` (ISO 3166-1 alpha-2), read in SQL.

The scans copy it into the device's mapping (`vuln_device_profiles.country`, like its groups), so exposure per
country is a GROUP BY over that narrow table. A device gets the attribute from its enrollment (the agent's
attributes), from hawkBit DDI configData, or from the operator who provisions it; a value that is not two letters
counts as "unknown", like a device without one.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func

from ..models import Device

__all__ = ["UNKNOWN", "country_of", "device_country"]

UNKNOWN = "unknown"


def device_country() -> Any:
    """The SQL expression of a device's `country` attribute, upper case, at most 16 characters ("" when absent)."""
    return func.substr(func.upper(func.coalesce(Device.attributes["country"].as_string(), "")), 1, 16)


def country_of(value: str | None) -> str:
    """The ISO 3166-1 alpha-2 code a mapped value stands for, else "unknown"."""
    v = (value or "").strip().upper()
    return v if len(v) == 2 and v.isascii() and v.isalpha() else UNKNOWN
