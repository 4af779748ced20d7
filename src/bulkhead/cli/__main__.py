"""`python -m bulkhead.cli`."""

from .main import run

run()
