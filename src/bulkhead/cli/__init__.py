"""bulkhead.cli: thin commands over the packages."""
