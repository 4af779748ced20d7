"""bulkhead.server: the control plane (management API, device API, artifact delivery)."""
