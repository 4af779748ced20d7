"""bulkhead.swu: read, verify and write SWUpdate images (.swu), for hawkBit clients such as suricatta."""

from .description import Artifact, SwDescription, parse_sw_description
from .errors import SwuError
from .image import SwuInfo, create_swu, is_swu, read_swu

__all__ = ["Artifact", "SwDescription", "SwuError", "SwuInfo", "create_swu", "is_swu", "parse_sw_description", "read_swu"]
