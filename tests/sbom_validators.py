"""The SBOM standards' own validators, one call per format: the messages of what is wrong, empty when valid.

CycloneDX: cyclonedx-python-lib's strict JSON-schema validator (1.6). SPDX 2.3: spdx-tools parses the document and
validates it in full. SPDX 3.0.1: spdx-python-model (SPDX's bindings, generated from the 3.0.1 model) loads the
JSON-LD, checking every property's type, pattern and enum, links every reference (a reference to an element the
document does not hold is reported) and encodes it again, which checks every property's cardinality.
"""

from __future__ import annotations

import json
from pathlib import Path
from tempfile import TemporaryDirectory

from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from spdx_python_model import load_data
from spdx_tools.spdx.parser.parse_anything import parse_file
from spdx_tools.spdx.validation.document_validator import validate_full_spdx_document

__all__ = ["validate"]


def _cyclonedx(text: str) -> list[str]:
    error = JsonStrictValidator(SchemaVersion.V1_6).validate_str(text)
    return [str(error)] if error is not None else []


def _spdx2(text: str) -> list[str]:
    with TemporaryDirectory() as tmp:
        path = Path(tmp) / "sbom.spdx.json"
        path.write_text(text)
        doc = parse_file(str(path))
    return [m.validation_message for m in validate_full_spdx_document(doc, "SPDX-2.3")]


def _spdx3(text: str) -> list[str]:
    try:
        model, objects = load_data(json.loads(text))
        missing = objects.link()
        model.JSONLDSerializer().serialize_data(objects)
    except Exception as e:  # the bindings raise TypeError/ValueError/their own errors on invalid content
        return [f"{type(e).__name__}: {e}"]
    external = {m for m in missing if not m.startswith("https://spdx.org/")}
    return [f"reference to an element the document does not hold: {m}" for m in sorted(external)]


_VALIDATORS = {"cyclonedx": _cyclonedx, "spdx": _spdx2, "spdx3": _spdx3}


def validate(fmt: str, text: str) -> list[str]:
    """What the standard's own validator finds wrong with `text` in `fmt` (cyclonedx, spdx, spdx3); [] when valid."""
    return _VALIDATORS[fmt](text)
