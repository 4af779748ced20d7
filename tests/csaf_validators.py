"""Check CSAF documents as the standard does: the vendored CSAF 2.0 JSON schemas (with `jsonschema`) and the
mandatory tests of a maintained validator, @secvisogram/csaf-validator-lib (npm, run with node)."""

from __future__ import annotations

import json
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7

from tests.npm_cache import cache_dir, npm_install

DATA = Path(__file__).parent / "data" / "csaf"
NPM_PACKAGE = "@secvisogram/csaf-validator-lib@2.0.10"
CACHE = cache_dir("csaf-validator")


@cache
def _registry() -> Registry:
    resources = []
    for name in ("csaf_json_schema.json", "provider_json_schema.json", "cvss-v2.0.json", "cvss-v3.0.json", "cvss-v3.1.json"):
        schema = json.loads((DATA / name).read_text())
        uri = f"https://www.first.org/cvss/{name}" if name.startswith("cvss") else schema["$id"]
        resources.append((uri, Resource.from_contents(schema, default_specification=DRAFT7)))
    return Registry().with_resources(resources)


def schema_errors(doc: Any, schema: str = "csaf_json_schema.json") -> list[str]:
    """What the CSAF 2.0 (or provider metadata) JSON schema finds wrong with `doc` (empty: valid)."""
    validator = Draft202012Validator(
        json.loads((DATA / schema).read_text()), registry=_registry(), format_checker=FormatChecker()
    )
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)]


@cache
def _validator_dir() -> Path:
    npm_install(CACHE, NPM_PACKAGE, "@secvisogram/csaf-validator-lib", "the CSAF mandatory tests")
    shutil.copy(DATA / "validate.mjs", CACHE / "validate.mjs")
    return CACHE


def mandatory_failures(doc: Any) -> list[str]:
    """The CSAF 2.0 strict schema test and mandatory tests (6.1.x) that fail for `doc`, by
    @secvisogram/csaf-validator-lib (empty: all pass)."""
    where = _validator_dir()
    r = subprocess.run(
        ["node", str(where / "validate.mjs")], input=json.dumps(doc), capture_output=True, text=True, timeout=120, cwd=where
    )
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout)
    assert result["tests"], "the validator ran no test"
    return [f"{t['name']}: {t['errors']}" for t in result["tests"] if not t["isValid"]]
