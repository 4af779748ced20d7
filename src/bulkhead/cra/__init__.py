"""bulkhead.cra: CRA tooling. So far: what an SBOM document is (SPDX or CycloneDX), checked before a release keeps it."""

from .errors import CraError, SbomError
from .sbom import SbomInfo, identify

__all__ = ["CraError", "SbomError", "SbomInfo", "identify"]
