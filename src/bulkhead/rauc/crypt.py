"""RAUC crypt bundles: AES-256-CBC per 4 KiB sector (dm-crypt aes-cbc-plain64), and CMS envelopes."""

from __future__ import annotations

from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.serialization import pkcs7

from .errors import BundleError, SignatureError
from .reader import Reader, read_exact

__all__ = ["SECTOR", "DecryptingReader", "decrypt_envelope", "decrypt_sectors"]

SECTOR = 4096


def _key(hex_key: str) -> bytes:
    try:
        key = bytes.fromhex(hex_key)
    except ValueError as exc:
        raise BundleError("crypt-key in the manifest is not hex") from exc
    if len(key) != 32:
        raise BundleError(f"crypt-key must be 256 bits, got {len(key) * 8}")
    return key


def decrypt_sectors(data: bytes, hex_key: str, first_sector: int) -> bytes:
    """Decrypt whole 4 KiB sectors; the IV of sector n is n in 512-byte units (plain64)."""
    key = _key(hex_key)
    out = bytearray()
    for i in range(0, len(data), SECTOR):
        iv = ((first_sector + i // SECTOR) * (SECTOR // 512)).to_bytes(16, "little")
        dec = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
        out += dec.update(data[i : i + SECTOR]) + dec.finalize()
    return bytes(out)


class DecryptingReader:
    """Presents the decrypted view of an encrypted payload of `size` bytes at `offset`."""

    def __init__(self, reader: Reader, offset: int, size: int, hex_key: str) -> None:
        self._reader, self._offset, self._size, self._key = reader, offset, size, hex_key
        _key(hex_key)

    @property
    def size(self) -> int:
        return self._size

    def read_at(self, offset: int, length: int) -> bytes:
        end = min(offset + length, self._size)
        if offset >= end:
            return b""
        first = offset // SECTOR
        last = (end + SECTOR - 1) // SECTOR
        raw = read_exact(self._reader, self._offset + first * SECTOR, (last - first) * SECTOR, "encrypted payload")
        plain = decrypt_sectors(raw, self._key, first)
        start = offset - first * SECTOR
        return plain[start : start + end - offset]


def decrypt_envelope(raw: bytes, cert_pem: bytes, key_pem: bytes) -> bytes:
    """Open an encrypted bundle's CMS EnvelopedData with a recipient's certificate and key."""
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
        key: Any = serialization.load_pem_private_key(key_pem, password=None)
        return pkcs7.pkcs7_decrypt_der(raw, cert, key, [])
    except ValueError as exc:
        raise SignatureError(
            f"cannot decrypt the bundle's envelope with this recipient key: {exc}",
            "give the certificate and key of a recipient the bundle was encrypted for",
        ) from exc
