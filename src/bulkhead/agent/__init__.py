"""bulkhead.agent: see docs/architecture.md; filled in by later issues."""
