"""CMS SignedData as RAUC uses it: parse, verify (detached or inline) and sign."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from asn1crypto import cms as acms
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from cryptography.hazmat.primitives.serialization import pkcs7

from .errors import SignatureError
from .keyring import Keyring, describe

__all__ = ["MAX_CMS_SIZE", "ParsedCms", "Verified", "parse_cms", "sign_cms"]

MAX_CMS_SIZE = 64 * 1024  # RAUC refuses larger signatures
_HASHES: dict[str, Callable[[], hashes.HashAlgorithm]] = {
    "sha1": hashes.SHA1,
    "sha224": hashes.SHA224,
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}


@dataclass(frozen=True)
class Verified:
    """The outcome of a successful verification."""

    content: bytes | None
    signer: x509.Certificate
    chain: list[x509.Certificate]

    @property
    def signer_name(self) -> str:
        return describe(self.signer)


@dataclass
class ParsedCms:
    """A parsed SignedData with exactly one signer."""

    raw: bytes
    signed: Any
    signer_info: Any
    certificates: list[x509.Certificate]
    encapsulated: bytes | None
    digest_name: str

    def new_digest(self) -> Any:
        try:
            return hashlib.new(self.digest_name)
        except ValueError as exc:
            raise SignatureError(f"unsupported digest algorithm {self.digest_name}") from exc

    def signer_cert(self) -> x509.Certificate:
        try:
            return self._find_signer_cert()
        except SignatureError:
            raise
        except (ValueError, KeyError, TypeError) as exc:  # asn1crypto parses the identifier lazily, here
            raise SignatureError(f"the signature's signer identifier is malformed: {exc}") from exc

    def _find_signer_cert(self) -> x509.Certificate:
        sid = self.signer_info["sid"]
        for cert in self.certificates:
            if sid.name == "issuer_and_serial_number":
                ias = sid.chosen
                if cert.serial_number == ias["serial_number"].native and cert.issuer.public_bytes() == ias["issuer"].dump():
                    return cert
            else:
                try:
                    ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
                except x509.ExtensionNotFound:
                    continue
                if ski == sid.chosen.native:
                    return cert
        raise SignatureError("the signer's certificate is not included in the signature")

    def verify(self, keyring: Keyring, content_digest: bytes | None = None, at: dt.datetime | None = None) -> Verified:
        """Check the signature over the content and the signer's chain against `keyring`.

        Detached signatures need `content_digest` (made with `new_digest()`); inline
        signatures hash their encapsulated content.
        """
        if self.encapsulated is None and content_digest is None:
            raise SignatureError("detached signature but no content given to verify it against")
        if content_digest is None:
            assert self.encapsulated is not None
            h = self.new_digest()
            h.update(self.encapsulated)
            content_digest = h.digest()
        signer = self.signer_cert()
        try:
            self._check_signature(signer, content_digest)
        except SignatureError:
            raise
        except Exception as exc:  # malformed attributes or algorithm parameters inside valid DER
            raise SignatureError(f"the signature's signer info is malformed: {exc}") from exc
        chain = keyring.verify_chain(signer, self.certificates, at)
        return Verified(self.encapsulated, signer, chain)

    def _check_signature(self, signer: x509.Certificate, content_digest: bytes) -> None:
        si = self.signer_info
        attrs = si["signed_attrs"]
        if attrs.native is not None and len(attrs):
            digest_attr = None
            ctype_ok = False
            for attr in attrs:
                kind = attr["type"].native
                if kind == "message_digest":
                    digest_attr = attr["values"][0].native
                elif kind == "content_type":
                    ctype_ok = attr["values"][0].native == self.signed["encap_content_info"]["content_type"].native
            if digest_attr is None or not ctype_ok:
                raise SignatureError("signature's signed attributes lack message-digest or a matching content-type")
            if not hmac.compare_digest(digest_attr, content_digest):
                raise SignatureError("signature verification failed: the content digest does not match the signed digest")
            to_verify = b"\x31" + attrs.dump()[1:]
        else:
            to_verify = None
        signature = si["signature"].native
        algo = si["signature_algorithm"]
        hash_cls = _HASHES[self.digest_name]
        key = signer.public_key()
        try:
            if isinstance(key, rsa.RSAPublicKey):
                pad: padding.AsymmetricPadding = padding.PKCS1v15()
                if algo["algorithm"].native == "rsassa_pss":
                    params = algo["parameters"]
                    pad = padding.PSS(
                        padding.MGF1(_HASHES[params["mask_gen_algorithm"]["parameters"]["algorithm"].native]()),
                        params["salt_length"].native,
                    )
                _verify_prehashed_or_raw(lambda d, h: key.verify(signature, d, pad, h), to_verify, content_digest, hash_cls)
            elif isinstance(key, ec.EllipticCurvePublicKey):
                _verify_prehashed_or_raw(lambda d, h: key.verify(signature, d, ec.ECDSA(h)), to_verify, content_digest, hash_cls)
            elif isinstance(key, (ed25519.Ed25519PublicKey, ed448.Ed448PublicKey)):
                if to_verify is None:
                    raise SignatureError("EdDSA signatures without signed attributes are not supported")
                key.verify(signature, to_verify)
            else:
                raise SignatureError(f"unsupported signer key type {type(key).__name__}")
        except InvalidSignature as exc:
            raise SignatureError(f"signature verification failed for signer '{describe(signer)}'") from exc
        except UnsupportedAlgorithm as exc:
            raise SignatureError(f"unsupported signature algorithm: {exc}") from exc


def _verify_prehashed_or_raw(
    verify: Callable[[bytes, Any], None], data: bytes | None, digest: bytes, hash_cls: Callable[[], hashes.HashAlgorithm]
) -> None:
    from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

    if data is not None:
        verify(data, hash_cls())
    else:
        verify(digest, Prehashed(hash_cls()))


def parse_cms(raw: bytes) -> ParsedCms:
    """Parse DER CMS SignedData; anything else raises SignatureError."""
    try:
        info = acms.ContentInfo.load(raw, strict=True)
        if info["content_type"].native != "signed_data":
            raise SignatureError(f"CMS content type is {info['content_type'].native}, not signed data")
        signed = info["content"]
        infos = signed["signer_infos"]
        if len(infos) != 1:
            raise SignatureError(f"signature has {len(infos)} signers; RAUC requires exactly one")
        si = infos[0]
        digest_name = si["digest_algorithm"]["algorithm"].native
        if digest_name not in _HASHES:
            raise SignatureError(f"unsupported digest algorithm {digest_name}")
        certs = []
        for choice in signed["certificates"] or []:
            if choice.name == "certificate":
                certs.append(x509.load_der_x509_certificate(choice.chosen.dump()))
        encap = signed["encap_content_info"]["content"]
        content = encap.native if encap.native is not None else None
        if content is not None and not isinstance(content, bytes):
            content = encap.chosen.native if hasattr(encap, "chosen") else bytes(content)
        return ParsedCms(raw, signed, si, certs, content, digest_name)
    except SignatureError:
        raise
    except Exception as exc:  # asn1crypto and cryptography raise many kinds on malformed DER
        raise SignatureError(f"the signature is not valid CMS SignedData: {exc}") from exc


def sign_cms(
    content: bytes, cert: x509.Certificate, key: Any, intermediates: Sequence[x509.Certificate] = (), detached: bool = False
) -> bytes:
    """Sign like `rauc` does (CMS_BINARY | CMS_NOSMIMECAP, optionally CMS_DETACHED)."""
    builder = pkcs7.PKCS7SignatureBuilder().set_data(content).add_signer(cert, key, hashes.SHA256())
    for inter in intermediates:
        builder = builder.add_certificate(inter)
    options = [pkcs7.PKCS7Options.Binary, pkcs7.PKCS7Options.NoCapabilities]
    if detached:
        options.append(pkcs7.PKCS7Options.DetachedSignature)
    return builder.sign(serialization.Encoding.DER, options)
