"""Signed .swu images for the tests, made with our writer and checked elsewhere against the real swupdate."""

from __future__ import annotations

import hashlib
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from bulkhead.lab.pki import DemoPki
from bulkhead.swu import create_swu


def description(version: str, files: dict[str, Path], target_dir: Path, hw: str = "1.0") -> str:
    entries = ", ".join(
        f'{{ filename = "{name}"; path = "{target_dir / name}"; sha256 = "{hashlib.sha256(p.read_bytes()).hexdigest()}"; }}'
        for name, p in files.items()
    )
    return (
        f'software = {{\n  version = "{version}";\n  description = "test image";\n'
        f'  hardware-compatibility: [ "{hw}" ];\n  files: ( {entries} );\n}};\n'
    )


def signed_swu(out: Path, pki: DemoPki, version: str, files: dict[str, Path], target_dir: Path) -> Path:
    cert = x509.load_pem_x509_certificate(pki.cert.read_bytes())
    key = serialization.load_pem_private_key(pki.key.read_bytes(), None)
    return create_swu(out, description(version, files, target_dir), files, cert, key)
