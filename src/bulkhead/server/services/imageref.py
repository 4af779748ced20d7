"""Container image references, checked against the OCI distribution reference grammar (pure).

reference := name [ ":" tag ] [ "@" digest ]
name      := [ domain "/" ] path-component ( "/" path-component )*    (at most 255 characters)
domain    := domain-component ( "." domain-component )* [ ":" port ]  (or "localhost", or [IPv6])
tag       := [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}
digest    := algorithm ":" hex   (sha256: 64 lowercase hex digits, sha512: 128)
"""

from __future__ import annotations

import re

from ..errors import Invalid

__all__ = ["check_image"]

_PATH = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*\Z")
_DOMAIN = re.compile(
    r"^(?:(?:[A-Za-z0-9]|[A-Za-z0-9][A-Za-z0-9-]*[A-Za-z0-9])(?:\.(?:[A-Za-z0-9]|[A-Za-z0-9][A-Za-z0-9-]*[A-Za-z0-9]))*"
    r"|\[[0-9A-Fa-f:]+\])(?::[0-9]{1,5})?$"
)
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}\Z")
_ALGORITHM = re.compile(r"^[a-z0-9]+(?:[.+_-][a-z0-9]+)*\Z")
_HEX_LENGTH = {"sha256": 64, "sha512": 128}
_EXAMPLE = "e.g. 'registry.example.com:5000/team/web:1.2' or 'registry.example.com/web@sha256:<64 hex digits>'"


def _check_digest(image: str, digest: str) -> None:
    algorithm, sep, hexpart = digest.partition(":")
    if not sep or not _ALGORITHM.match(algorithm):
        raise Invalid(f"image {image!r}: digest {digest!r} must be ALGORITHM:HEX ({_EXAMPLE})")
    want = _HEX_LENGTH.get(algorithm)
    if want is None:
        raise Invalid(f"image {image!r}: digest algorithm {algorithm!r} is not supported; use sha256 or sha512")
    if len(hexpart) != want or not re.fullmatch(r"[0-9a-f]+", hexpart):
        raise Invalid(
            f"image {image!r}: a {algorithm} digest is {want} lowercase hex digits, not {hexpart!r} "
            f"(copy it from 'podman inspect --format {{{{.Digest}}}}' or your registry)"
        )


def check_image(image: object, where: str) -> str:
    """`image` if it is a valid reference, else Invalid naming the part that is wrong."""
    if not isinstance(image, str) or not image:
        raise Invalid(f"{where}: image must be a reference such as {_EXAMPLE}")
    name, at, digest = image.partition("@")
    if at:
        _check_digest(image, digest)
    first, slash, rest = name.partition("/")
    domain = first if slash and ("." in first or ":" in first or first == "localhost" or first != first.lower()) else None
    path = rest if domain is not None else name
    tag = None
    last = path.rsplit("/", 1)[-1]
    if ":" in last:
        path, tag = path.rsplit(":", 1)
    if domain is not None and not _DOMAIN.match(domain):
        raise Invalid(f"{where}: image {image!r} has an invalid registry host {domain!r} ({_EXAMPLE})")
    for component in path.split("/"):
        if not _PATH.match(component):
            raise Invalid(
                f"{where}: image {image!r}: {component!r} is not a valid repository name component "
                f"(lowercase letters, digits, and '.', '_', '__' or '-' between them; {_EXAMPLE})"
            )
    if tag is not None and not _TAG.match(tag):
        raise Invalid(f"{where}: image {image!r} has an invalid tag {tag!r} (letters, digits, '_', '.', '-'; at most 128)")
    if len(name) - (len(tag) + 1 if tag is not None else 0) > 255:
        raise Invalid(f"{where}: image {image!r}: the repository name is longer than 255 characters")
    return image
