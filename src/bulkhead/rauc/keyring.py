"""Trust anchors and certificate-chain checks as OpenSSL applies them for RAUC.

Purposes: `smimesign` (OpenSSL's default for CMS, used when RAUC's keyring has no
check-purpose) and `codesign` (RAUC's `codesign-rauc` rules).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID

from .errors import BundleError, CertificateExpiredError, SignerNotTrustedError

__all__ = ["PURPOSES", "Keyring", "describe", "load_keyring"]

PURPOSES = ("smimesign", "codesign", "any")
_MAX_DEPTH = 10
_HANDLED_CRITICAL = {
    ExtensionOID.BASIC_CONSTRAINTS,
    ExtensionOID.KEY_USAGE,
    ExtensionOID.EXTENDED_KEY_USAGE,
    ExtensionOID.SUBJECT_ALTERNATIVE_NAME,
    ExtensionOID.NAME_CONSTRAINTS,
    ExtensionOID.CERTIFICATE_POLICIES,
    ExtensionOID.POLICY_CONSTRAINTS,
    ExtensionOID.INHIBIT_ANY_POLICY,
    ExtensionOID.SUBJECT_KEY_IDENTIFIER,
    ExtensionOID.AUTHORITY_KEY_IDENTIFIER,
}


def describe(cert: x509.Certificate) -> str:
    """The subject as OpenSSL prints it (`O = Test Org, CN = Test Org Release-1`)."""
    parts = []
    for rdn in cert.subject.rdns:
        for attr in rdn:
            name = attr.rfc4514_attribute_name
            parts.append(f"{name} = {attr.value!s}")
    return ", ".join(parts)


@dataclass(frozen=True)
class Keyring:
    """A set of trust anchors (PEM), plus RAUC's keyring options."""

    anchors: tuple[x509.Certificate, ...]
    check_purpose: str = "smimesign"
    allow_partial_chain: bool = False

    def verify_chain(
        self,
        signer: x509.Certificate,
        untrusted: Sequence[x509.Certificate],
        at: dt.datetime | None = None,
    ) -> list[x509.Certificate]:
        """Build and check the chain from `signer` to an anchor; return it leaf first."""
        now = at or dt.datetime.now(dt.UTC)
        chain = self._build(signer, untrusted)
        for depth, cert in enumerate(chain):
            _check_time(cert, now)
            if depth > 0:
                _check_ca(cert, depth - 1)
            _check_purpose(cert, self.check_purpose, is_ca=depth > 0)
            _check_critical(cert)
        return chain

    def _build(self, signer: x509.Certificate, untrusted: Sequence[x509.Certificate]) -> list[x509.Certificate]:
        anchors = set(self.anchors)
        chain = [signer]
        cur = signer
        while True:
            if cur in anchors and (self.allow_partial_chain or _self_issued(cur)):
                return chain
            if _self_issued(cur):
                break
            issuer = _find_issuer(cur, list(self.anchors)) or _find_issuer(cur, untrusted)
            if issuer is None or issuer in chain or len(chain) > _MAX_DEPTH:
                break
            chain.append(issuer)
            cur = issuer
        raise SignerNotTrustedError(
            f"signer '{describe(signer)}' does not chain to a trust anchor of the keyring "
            f"(chain ends at '{describe(chain[-1])}', issued by '{_issuer_str(chain[-1])}')"
        )


def _issuer_str(cert: x509.Certificate) -> str:
    return ", ".join(f"{a.rfc4514_attribute_name} = {a.value!s}" for rdn in cert.issuer.rdns for a in rdn)


def _self_issued(cert: x509.Certificate) -> bool:
    if cert.subject != cert.issuer:
        return False
    try:
        cert.verify_directly_issued_by(cert)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _find_issuer(cert: x509.Certificate, pool: Iterable[x509.Certificate]) -> x509.Certificate | None:
    for cand in pool:
        if cand.subject != cert.issuer or cand == cert:
            continue
        try:
            cert.verify_directly_issued_by(cand)
        except (ValueError, TypeError, InvalidSignature):
            continue
        return cand
    return None


def _check_time(cert: x509.Certificate, now: dt.datetime) -> None:
    if now < cert.not_valid_before_utc:
        raise CertificateExpiredError(
            f"certificate '{describe(cert)}' is not valid before {cert.not_valid_before_utc:%Y-%m-%d %H:%M:%S}Z"
        )
    if now > cert.not_valid_after_utc:
        raise CertificateExpiredError(f"certificate '{describe(cert)}' expired at {cert.not_valid_after_utc:%Y-%m-%d %H:%M:%S}Z")


def _ext(cert: x509.Certificate, oid: x509.ObjectIdentifier) -> x509.ExtensionType | None:
    try:
        return cert.extensions.get_extension_for_oid(oid).value
    except x509.ExtensionNotFound:
        return None


def _check_ca(cert: x509.Certificate, below: int) -> None:
    bc = _ext(cert, ExtensionOID.BASIC_CONSTRAINTS)
    if isinstance(bc, x509.BasicConstraints):
        if not bc.ca:
            raise SignerNotTrustedError(
                f"certificate '{describe(cert)}' issues others but is not a CA (basicConstraints CA:FALSE)"
            )
        if bc.path_length is not None and below > bc.path_length:
            raise SignerNotTrustedError(
                f"CA '{describe(cert)}' allows {bc.path_length} intermediate(s) below it, the chain has {below}"
            )
    elif not (cert.version == x509.Version.v1 and _self_issued(cert)):
        raise SignerNotTrustedError(f"certificate '{describe(cert)}' issues others but has no basicConstraints CA:TRUE")
    ku = _ext(cert, ExtensionOID.KEY_USAGE)
    if isinstance(ku, x509.KeyUsage) and not ku.key_cert_sign:
        raise SignerNotTrustedError(f"CA '{describe(cert)}' key usage does not allow certificate signing")


def _check_purpose(cert: x509.Certificate, purpose: str, is_ca: bool) -> None:
    if purpose == "any":
        return
    eku = _ext(cert, ExtensionOID.EXTENDED_KEY_USAGE)
    ku = _ext(cert, ExtensionOID.KEY_USAGE)
    usages = list(eku) if isinstance(eku, x509.ExtendedKeyUsage) else None
    want = ExtendedKeyUsageOID.CODE_SIGNING if purpose == "codesign" else ExtendedKeyUsageOID.EMAIL_PROTECTION
    name = "code signing" if purpose == "codesign" else "S/MIME signing (emailProtection)"
    if is_ca:
        if usages is not None and want not in usages:
            raise SignerNotTrustedError(f"CA '{describe(cert)}' extended key usage does not allow {name}")
        return
    if purpose == "codesign":
        if isinstance(ku, x509.KeyUsage) and not ku.digital_signature:
            raise SignerNotTrustedError(f"signer '{describe(cert)}' key usage does not allow digital signatures")
        if usages is None or want not in usages:
            raise SignerNotTrustedError(
                f"signer '{describe(cert)}' does not have extended key usage codeSigning (keyring check-purpose=codesign)"
            )
        return
    if usages is not None and want not in usages:
        raise SignerNotTrustedError(
            f"signer '{describe(cert)}' extended key usage does not allow {name}; "
            "use keyring check-purpose=codesign for code-signing certificates"
        )
    if isinstance(ku, x509.KeyUsage) and not (ku.digital_signature or ku.content_commitment):
        raise SignerNotTrustedError(f"signer '{describe(cert)}' key usage allows neither digitalSignature nor nonRepudiation")


def _check_critical(cert: x509.Certificate) -> None:
    for ext in cert.extensions:
        if ext.critical and ext.oid not in _HANDLED_CRITICAL:
            raise SignerNotTrustedError(
                f"certificate '{describe(cert)}' has an unsupported critical extension {ext.oid.dotted_string}"
            )


def load_keyring(pem: bytes, check_purpose: str = "smimesign", allow_partial_chain: bool = False) -> Keyring:
    """Load PEM trust anchors; CRLs and other PEM blocks in the file are skipped."""
    if check_purpose not in PURPOSES:
        raise BundleError(f"unknown check-purpose '{check_purpose}'", f"use one of {', '.join(PURPOSES)}")
    blocks = []
    marker = b"-----BEGIN CERTIFICATE-----"
    end = b"-----END CERTIFICATE-----"
    pos = 0
    while (start := pem.find(marker, pos)) >= 0:
        stop = pem.find(end, start)
        if stop < 0:
            raise BundleError("keyring: unterminated PEM certificate block", "upload a complete PEM file")
        blocks.append(pem[start : stop + len(end)])
        pos = stop + len(end)
    if not blocks:
        raise BundleError(
            "keyring holds no PEM certificate", "give a PEM file with one or more '-----BEGIN CERTIFICATE-----' blocks"
        )
    anchors = []
    for i, block in enumerate(blocks, start=1):
        try:
            anchors.append(x509.load_pem_x509_certificate(block))
        except ValueError as exc:
            raise BundleError(f"keyring: certificate #{i} cannot be parsed: {exc}", "give valid PEM certificates") from exc
    return Keyring(tuple(anchors), check_purpose, allow_partial_chain)
