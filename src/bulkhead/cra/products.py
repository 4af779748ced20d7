"""Which product names a component answers to, and which a vulnerability record's affected entry names.

Names are compared as CPE-style `vendor:product` keys (lower case, spaces as underscores). A component answers
to the keys of its CPEs (Yocto writes CVE_PRODUCT there, vendor "*" when the recipe gives none), to its own and its
source package's name, and to the aliases below: the CVE_PRODUCT values OE-Core's recipes set, for components
whose SBOM carries no CPE (device inventories, CycloneDX without CPEs). Free-text CNA product names map onto the
same keys through PRODUCT_SYNONYMS.
"""

from __future__ import annotations

from .cpe import parse_cpe
from .model import Component
from .vulnrecord import AffectedProduct

__all__ = ["CVE_PRODUCT", "PRODUCT_SYNONYMS", "component_keys", "entry_keys", "keys_match", "norm"]

# recipe (or Debian source) name → CVE_PRODUCT vendor:product pairs, as OE-Core's recipes set them
CVE_PRODUCT: dict[str, tuple[str, ...]] = {
    "linux-yocto": ("linux:linux_kernel",),
    "linux": ("linux:linux_kernel",),
    "glibc": ("gnu:glibc",),
    "openssl": ("openssl:openssl",),
    "openssh": ("openbsd:openssh",),
    "xz": ("tukaani:xz",),
    "expat": ("libexpat_project:libexpat",),
    "sqlite3": ("sqlite:sqlite",),
    "python3": ("python:python", "python:cpython"),
    "curl": ("haxx:curl", "haxx:libcurl", "curl:curl", "curl:libcurl", "libcurl:libcurl", "daniel_stenberg:curl"),
    "zlib": ("zlib:zlib", "gnu:zlib"),
    "libxml2": ("xmlsoft:libxml2", "xmlsoft:xmllint"),
    "util-linux": ("kernel:util-linux", "util-linux_project:util-linux"),
    "dbus": ("freedesktop:dbus",),
    "systemd": ("freedesktop:systemd", "systemd_project:systemd"),
    "sudo": ("sudo_project:sudo", "todd_miller:sudo"),
    "runc": ("linuxfoundation:runc", "opencontainers:runc"),
    "busybox": ("busybox:busybox",),
    "rauc": ("rauc:rauc",),
}
# free-text CNA product names (normalised) → the product part of a CPE key
PRODUCT_SYNONYMS: dict[str, str] = {
    "kernel": "linux_kernel",
    "linux": "linux_kernel",
    "linux_kernel": "linux_kernel",
    "cpython": "python",
    "xz_utils": "xz",
    "libexpat": "libexpat",
    "expat": "libexpat",
    "sqlite3": "sqlite",
}
_NONE = {"", "n/a", "na", "unknown", "*"}


def norm(text: str | None) -> str:
    return (text or "").strip().lower().replace(" ", "_")


def _canon(product: str) -> str:
    return PRODUCT_SYNONYMS.get(product, product)


def component_keys(c: Component) -> set[tuple[str, str]]:
    """(vendor, product) keys the component answers to; vendor "*" matches any vendor."""
    keys: set[tuple[str, str]] = set()
    for text in c.cpes:
        cpe = parse_cpe(text)
        if cpe:
            keys.add((cpe.vendor, _canon(cpe.product)))
    for name in {c.source_name, c.name} - {None}:
        for pair in CVE_PRODUCT.get(str(name), ()):
            vendor, _, product = pair.partition(":")
            keys.add((vendor, _canon(product)))
        if not c.cpes:
            keys.add(("*", _canon(norm(name))))
    if c.is_kernel:
        keys.add(("linux", "linux_kernel"))
    return keys


def entry_keys(a: AffectedProduct) -> set[tuple[str, str]]:
    """(vendor, product) keys an affected entry names: its CPEs, else its vendor/product or packageName."""
    if a.cpes:
        return {(cpe.vendor, _canon(cpe.product)) for text in a.cpes if (cpe := parse_cpe(text))}
    vendor = "*"  # free-text vendors ("The GNU C Library", "Python Software Foundation") are not CPE vendors
    product, package = norm(a.product), norm(a.package_name)
    if product in _NONE:
        product = package
    elif package not in _NONE and package != product:
        return set()  # a distribution's package ("Red Hat Enterprise Linux 9" / openssh): its versions are the distro's
    return {(vendor, _canon(product))} if product not in _NONE else set()


def keys_match(component: set[tuple[str, str]], entry: set[tuple[str, str]]) -> bool:
    """Products equal; vendors equal unless either side does not say (Yocto CPEs often have vendor "*")."""
    for cv, cp in component:
        for ev, ep in entry:
            if cp == ep and (cv == "*" or ev == "*" or cv == ev or ep == "linux_kernel"):
                return True
    return False
