"""The notices each vulnerability data source asks for, shown by the UI and the CLI wherever its data appears.

Keep the texts as written: the NVD one is the wording NVD's terms of use require, the CVE one reproduces MITRE's
copyright designation as the CVE Terms of Use ask.
"""

from __future__ import annotations

__all__ = ["ATTRIBUTIONS", "CISA_KEV", "CVE", "DEBIAN", "FIRST_EPSS", "NVD", "OSV", "attribution"]

DEBIAN = (
    "Debian package vulnerability status from the Debian Security Tracker (https://security-tracker.debian.org/), "
    "maintained by the Debian Security Team."
)
CISA_KEV = (
    "Known exploited vulnerabilities from the CISA Known Exploited Vulnerabilities Catalog "
    "(https://www.cisa.gov/known-exploited-vulnerabilities-catalog), published by the U.S. Cybersecurity and "
    "Infrastructure Security Agency under CC0 1.0. CISA does not endorse this product."
)
FIRST_EPSS = (
    "Exploit prediction scores from the Exploit Prediction Scoring System (EPSS) of FIRST, the Forum of Incident "
    "Response and Security Teams. See EPSS at https://www.first.org/epss."
)
NVD = "This product uses the NVD API but is not endorsed or certified by the NVD."
CVE = (
    "CVE records: Copyright © 1999-2026 The MITRE Corporation, used under the CVE Terms of Use "
    "(https://www.cve.org/Legal/TermsOfUse). CVE® is a registered trademark of The MITRE Corporation."
)
OSV = (
    "Open source vulnerability data from OSV.dev (https://osv.dev), which aggregates advisory databases such as the "
    "GitHub Advisory Database, the Python Packaging Advisory Database, the Go Vulnerability Database and RustSec. "
    "Used under the Creative Commons Attribution 4.0 International licence (CC BY 4.0, "
    "https://creativecommons.org/licenses/by/4.0/) and the licences of the individual sources named in each record; "
    "bulkhead parsed and indexed the records and did not change their content."
)

# by the feed / finding source names used across bulkhead.cra
ATTRIBUTIONS: dict[str, str] = {
    "debian-tracker": DEBIAN,
    "cisa-kev": CISA_KEV,
    "first-epss": FIRST_EPSS,
    "nvd": NVD,
    "cve5": CVE,
    "cvelist": CVE,
    "osv": OSV,
}


def attribution(source: str) -> str | None:
    """The notice for a feed or finding source name, if it needs one."""
    return ATTRIBUTIONS.get(source)
