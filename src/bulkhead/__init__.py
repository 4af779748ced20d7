"""Bulkhead: keep embedded Linux fleets secure and up to date."""

__version__ = "0.1.0"
__all__ = ["__version__"]
