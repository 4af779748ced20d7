"""HTTP layers by audience: management API (users, CI) and device API."""
