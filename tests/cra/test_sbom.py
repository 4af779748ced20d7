"""SBOM identification: the reference image's real SBOMs pass; documents that are not SBOMs are refused."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest

from bulkhead.cra import SbomError, identify
from bulkhead.osbuild.sbom import cyclonedx, parse_dpkg_status, spdx
from tests.conftest import SHARED

STATUS = """Package: base-files
Status: install ok installed
Architecture: amd64
Version: 12.4+deb12u7
Maintainer: Santiago Vila <sanvila@debian.org>
Description: Debian base system miscellaneous files

Package: rauc
Status: install ok installed
Architecture: amd64
Version: 1.8-2
Maintainer: Debian <debian@example.invalid>
Description: safe and secure software updates
"""


def test_reference_image_sboms_are_identified() -> None:
    pkgs = parse_dpkg_status(STATUS)
    s = identify(json.loads(json.dumps(spdx(pkgs, "bulkhead-test", "1.0", dt.datetime(2023, 11, 14, tzinfo=dt.UTC)))))
    c = identify(json.loads(json.dumps(cyclonedx(pkgs, "bulkhead-test", "1.0", dt.datetime(2023, 11, 14, tzinfo=dt.UTC)))))
    assert (s.format, s.spec_version, s.components) == ("spdx", "SPDX-2.3", 3)  # the image itself is a package too
    assert (c.format, c.spec_version, c.components) == ("cyclonedx", "1.6", 2)


def test_yocto_spdx_from_the_shared_testdata_is_identified() -> None:
    docs = sorted((SHARED / "yocto-spdx").rglob("*.json")) if (SHARED / "yocto-spdx").is_dir() else []
    if not docs:
        pytest.skip(f"no Yocto SPDX documents under {SHARED / 'yocto-spdx'}")
    seen = 0
    for path in docs:
        doc = json.loads(path.read_text())
        if isinstance(doc, dict) and "spdxVersion" in doc:
            assert identify(doc).format == "spdx"
            seen += 1
    assert seen


@pytest.mark.parametrize(
    "doc, message",
    [
        ([], "JSON object"),
        ({"name": "x"}, "not an SBOM"),
        ({"spdxVersion": "SPDX-3.0"}, "not supported"),
        ({"spdxVersion": "SPDX-2.3", "SPDXID": "SPDXRef-DOCUMENT", "name": "x", "creationInfo": {}}, "documentNamespace"),
        ({"bomFormat": "CycloneDX", "specVersion": "1.2"}, "not supported"),
        ({"@context": "https://spdx.org/rdf/3.0.0/spdx-context.jsonld", "@graph": []}, "use SPDX 3.0.1"),
        ({"@context": "https://spdx.org/rdf/3.0.1/spdx-context.jsonld", "@graph": {}}, "@graph must be a list"),
        ({"@context": "https://spdx.org/rdf/3.0.1/spdx-context.jsonld", "@graph": [{"name": "x"}]}, "each with a type"),
        ({"@context": "https://spdx.org/rdf/3.0.1/spdx-context.jsonld", "@graph": [{"type": "Tool"}]}, "no SpdxDocument"),
        ({"bomFormat": "CycloneDX", "specVersion": "1.6", "components": [{"version": "1"}]}, "each with a name"),
    ],
)
def test_documents_that_are_not_sboms_are_refused(doc: Any, message: str) -> None:
    with pytest.raises(SbomError, match=message):
        identify(doc)


def test_yocto_spdx3_image_sbom_is_identified(spdx3_doc: dict[str, Any]) -> None:
    """SPDX 3.0.1 JSON-LD as Yocto's create-spdx writes it: its 38 installed packages (of 142 software_Package)."""
    info = identify(spdx3_doc)
    assert (info.format, info.spec_version, info.components) == ("spdx3", "3.0.1", 38)
