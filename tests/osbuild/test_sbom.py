"""SBOMs from a real dpkg database (this machine's), checked by the SPDX and CycloneDX projects' own validators."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
from pathlib import Path

import pytest
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from packageurl import PackageURL
from spdx_tools.spdx.parser.parse_anything import parse_file
from spdx_tools.spdx.validation.document_validator import validate_full_spdx_document

from bulkhead.cra import identify
from bulkhead.cra.components import read_sbom
from bulkhead.cra.model import Component
from bulkhead.osbuild.sbom import Package, components, cyclonedx, parse_dpkg_status, purl, spdx, write_sboms
from tests.sbom_validators import validate

STATUS = Path("/var/lib/dpkg/status")
WHEN = dt.datetime(2023, 11, 14, 22, 13, 20, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def packages() -> list[Package]:
    if not STATUS.exists():
        pytest.skip("no dpkg database on this machine (not Debian)")
    return parse_dpkg_status(STATUS.read_text(errors="replace"))


def test_parse_matches_dpkg_query(packages: list[Package]) -> None:
    out = subprocess.run(
        ["dpkg-query", "-W", "-f", "${db:Status-Status} ${Package} ${Version} ${Architecture}\\n"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    want = sorted(tuple(line.split()[1:]) for line in out.splitlines() if line.startswith("installed "))
    assert sorted((p.name, p.version, p.architecture) for p in packages) == want


def test_source_package_and_purl() -> None:
    status = (
        "Package: libssl3\nStatus: install ok installed\nArchitecture: amd64\nSource: openssl (3.0.15-1~deb12u1)\n"
        "Version: 3.0.15-1~deb12u1+b1\nMaintainer: Debian OpenSSL Team <x@debian.org>\n\n"
        "Package: gone\nStatus: deinstall ok config-files\nVersion: 1\n\n"
        "Package: bash\nStatus: install ok installed\nArchitecture: amd64\nVersion: 5.2.15-2+b7\nDescription: shell\n more\n"
    )
    pkgs = parse_dpkg_status(status)
    assert [(p.name, p.source, p.source_version) for p in pkgs] == [
        ("bash", "bash", "5.2.15-2+b7"),
        ("libssl3", "openssl", "3.0.15-1~deb12u1"),
    ]
    assert purl(pkgs[1]) == "pkg:deb/debian/libssl3@3.0.15-1~deb12u1%2Bb1?arch=amd64&distro=debian-12&upstream=openssl"


def test_cyclonedx_is_valid_1_6(packages: list[Package]) -> None:
    bom = cyclonedx(packages, "bulkhead-test", "1.0", WHEN)
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(json.dumps(bom)) is None
    assert len(bom["components"]) == len(packages) and bom["metadata"]["component"]["type"] == "operating-system"


def test_spdx_is_valid_2_3(packages: list[Package], tmp_path: Path) -> None:
    path = tmp_path / "sbom.spdx.json"
    path.write_text(json.dumps(spdx(packages, "bulkhead-test", "1.0", WHEN)))
    doc = parse_file(str(path))
    assert validate_full_spdx_document(doc) == []
    assert len(doc.packages) == len(packages) + 1


def test_written_sbom_files_validate_and_read_back_as_the_server_reads_them(packages: list[Package], tmp_path: Path) -> None:
    """The files the reference build writes (sbom.spdx.json, sbom.cdx.json): valid by the standards' validators,
    identified by the server's upload check, and read back to the image's packages with purl, source and supplier."""
    spdx_path, cdx_path = write_sboms(packages, "bulkhead-test", "1.0", WHEN, tmp_path)
    assert (spdx_path.name, cdx_path.name) == ("sbom.spdx.json", "sbom.cdx.json")

    def key(c: Component) -> tuple[str | None, ...]:  # purls compared canonical (CycloneDX writes `1:2.38` for `1%3A2.38`)
        return (c.name, c.version, PackageURL.from_string(c.purl or "").to_string(), c.source_name, c.source_version, c.supplier)

    want = sorted(map(key, components(packages)))
    for path, fmt in ((spdx_path, "spdx"), (cdx_path, "cyclonedx")):
        text = path.read_text()
        assert validate(fmt, text) == [], f"{path.name} is not valid {fmt}"
        doc = json.loads(text)
        assert identify(doc).format == fmt
        assert sorted(map(key, read_sbom([doc]))) == want
    (tmp_path / "again").mkdir()  # reproducible: the same inputs give the same bytes
    again = write_sboms(packages, "bulkhead-test", "1.0", WHEN, tmp_path / "again")
    assert [p.read_bytes() for p in again] == [spdx_path.read_bytes(), cdx_path.read_bytes()]
