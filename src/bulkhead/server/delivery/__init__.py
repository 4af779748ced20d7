"""Artifact delivery with full RFC 7233 Range support."""
