"""The device list's filters at the API edge: query parameters in, a `DeviceFilter` for the database out."""

from __future__ import annotations

from fastapi import Query

from ..services.device_list import DeviceFilter
from ..services.times import parse_time

__all__ = ["device_filter"]


async def device_filter(
    # None, not default_factory=list: pydantic inspects a default factory's signature each time it makes a default,
    # which parsed `list`'s text signature on every list request (3 % of a page's time).
    tag: list[str] | None = Query(None, max_length=16, description="a tag the device has; repeat for several (all must match)"),
    group: str | None = Query(None, max_length=128, description="a group the device is in"),
    status: str | None = Query(None, max_length=16, description="active, pending or disabled"),
    compatible: str | None = Query(None, max_length=256, description="the device's compatible, exactly"),
    version: str | None = Query(None, max_length=256, description="the OS version the device reported, exactly"),
    name_prefix: str | None = Query(None, max_length=128, description="the device's name starts with this"),
    seen_after: str | None = Query(None, max_length=64, description="last seen at or after this ISO 8601 time (with offset)"),
    seen_before: str | None = Query(None, max_length=64, description="last seen before this ISO 8601 time (with offset)"),
) -> DeviceFilter:
    return DeviceFilter(
        tags=tuple(t for t in tag or () if t),
        group=group or None,
        status=status or None,
        compatible=compatible or None,
        version=version or None,
        name_prefix=name_prefix or None,
        seen_after=parse_time(seen_after, "seen_after") if seen_after else None,
        seen_before=parse_time(seen_before, "seen_before") if seen_before else None,
    )
