"""bulkhead.rauc: read, verify and write RAUC bundles, byte-compatible with the real rauc."""

from .blockhashindex import block_hash_index
from .bundle import Bundle, BundleInfo, ImageInfo, open_bundle
from .errors import (
    BundleError,
    BundleFormatError,
    CertificateExpiredError,
    ManifestError,
    SignatureError,
    SignerNotTrustedError,
    SquashfsError,
    ToolError,
    TruncatedBundleError,
    VerityMismatchError,
)
from .keyring import Keyring, load_keyring
from .manifest import Image, Manifest, parse_manifest
from .reader import BytesReader, FileReader, Reader
from .writer import create_bundle

__all__ = [
    "Bundle",
    "BundleError",
    "BundleFormatError",
    "BundleInfo",
    "BytesReader",
    "CertificateExpiredError",
    "FileReader",
    "Image",
    "ImageInfo",
    "Keyring",
    "Manifest",
    "ManifestError",
    "Reader",
    "SignatureError",
    "SignerNotTrustedError",
    "SquashfsError",
    "ToolError",
    "TruncatedBundleError",
    "VerityMismatchError",
    "block_hash_index",
    "create_bundle",
    "load_keyring",
    "open_bundle",
    "parse_manifest",
]
