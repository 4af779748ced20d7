"""The one error hierarchy of bulkhead.rauc: each error says what is wrong and who must act."""

from __future__ import annotations

__all__ = [
    "BundleError",
    "BundleFormatError",
    "CertificateExpiredError",
    "ManifestError",
    "SignatureError",
    "SignerNotTrustedError",
    "SquashfsError",
    "ToolError",
    "TruncatedBundleError",
    "VerityMismatchError",
]


class BundleError(Exception):
    """Base of every error this package raises on purpose."""

    hint: str = ""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if hint is not None:
            self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class BundleFormatError(BundleError):
    """The file is not a RAUC bundle, or its layout is inconsistent."""

    hint = "check that the file is a RAUC bundle (.raucb) created by 'rauc bundle' or 'bulkhead bundle create'"


class TruncatedBundleError(BundleFormatError):
    """The file ends before the bundle does."""

    hint = "the file was cut short, e.g. by an interrupted upload or copy: transfer it again"

    def __init__(self, message: str, at_byte: int) -> None:
        super().__init__(message)
        self.at_byte = at_byte


class ManifestError(BundleError):
    """The manifest breaks RAUC's rules."""

    hint = "fix the manifest (see RAUC's manifest reference) and build the bundle again"

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(f"manifest line {line}: {message}" if line else f"manifest: {message}")
        self.line = line


class SignatureError(BundleError):
    """The CMS signature is missing, malformed or does not match the content."""

    hint = "the bundle was modified after signing or signed wrongly: rebuild and re-sign it"


class SignerNotTrustedError(SignatureError):
    """The signature is intact but its signer does not chain to the keyring."""

    hint = "sign with a certificate issued under the keyring's CA, or add that CA to the keyring"


class CertificateExpiredError(SignerNotTrustedError):
    """A certificate of the signer's chain is outside its validity period."""

    hint = "re-sign the bundle with a valid certificate"


class VerityMismatchError(BundleError):
    """The payload does not match the dm-verity hash tree named in the signed manifest."""

    hint = "the bundle payload was modified or damaged after signing: transfer or rebuild it"

    def __init__(self, message: str, block: int | None = None) -> None:
        super().__init__(message)
        self.block = block


class SquashfsError(BundleFormatError):
    """The bundle's squashfs image cannot be read."""


class ToolError(BundleError):
    """An external tool (mksquashfs) is missing or failed."""

    hint = "install squashfs-tools (Debian: apt-get install squashfs-tools)"
