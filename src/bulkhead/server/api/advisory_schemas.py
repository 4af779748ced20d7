"""Wire models of CSAF advisories and of a tenant's CSAF provider settings."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from .wire import Out, absent

__all__ = ["AdvisoryIn", "AdvisoryOut", "AdvisoryReviseIn", "CsafDocument", "KeyIn", "ProviderIn", "ProviderOut", "PublishOut"]

Cves = Field(min_length=1, max_length=100, description="the vulnerability ids (CVE-YYYY-N…) the advisory is about")
Vectors = Field(None, description="a CVSS 3.x (or 2.0) vector per CVE, scored into the advisory (e.g. from the CNA)")


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AdvisoryIn(_In):
    compatible: str = Field(min_length=1, max_length=256, description="the product (its compatible)")
    cves: list[str] = Cves
    title: str | None = Field(None, max_length=512, description="default: the CVEs and the product's name")
    summary: str | None = Field(None, max_length=4000, description="the summary note (default: made from the data)")
    cvss: dict[str, str] | None = Vectors


class AdvisoryReviseIn(_In):
    cves: list[str] | None = Field(None, min_length=1, max_length=100)
    title: str | None = Field(None, max_length=512)
    summary: str | None = Field(None, max_length=4000)
    cvss: dict[str, str] | None = Vectors
    change: str | None = Field(
        None, max_length=1000, description="what this revision changes (its revision history entry; needed once published)"
    )


class AdvisoryOut(Out):
    """A CSAF advisory: what it is made from, its state, its published version's dates, hash and signer."""

    id: int
    tracking_id: str
    file: str = Field(description="the CSAF file name (section 5.1)")
    compatible: str
    cves: list[str]
    title: str
    summary: str | None
    cvss: dict[str, str]
    state: Literal["draft", "final", "revised"] = Field(
        description="draft: never published; final: published, unchanged since; revised: published, changed since"
    )
    version: int = Field(description="the published version (0: none yet)")
    pending_change: str | None
    revisions: list[dict[str, Any]]
    initial_release_date: str | None
    current_release_date: str | None
    sha256: str | None
    signed_by: str | None = Field(description="the fingerprint of the OpenPGP key that signed the published version")
    created_by: str
    created_at: str
    updated_at: str
    document: dict[str, Any] | None = absent("the working (draft) CSAF document, made from the current data")


class PublishOut(AdvisoryOut):
    """The advisory just published, with the URL the provider serves it at."""

    url: str = Field(description="where the provider serves the published document")


class ProviderIn(_In):
    publisher_name: str | None = Field(None, max_length=256, description="default: the first product's manufacturer")
    namespace: str | None = Field(None, max_length=512, description="the publisher's https URL (default: the provider's)")
    contact: str | None = Field(None, max_length=512, description="security contact: e-mail, mailto:, https: or tel:")
    policy: str | None = Field(None, max_length=512, description="the vulnerability disclosure policy's https URL")


class CsafDocument(Out):
    """A CSAF 2.0 document (https://docs.oasis-open.org/csaf/csaf/v2.0/csaf_json_schema.json)."""

    document: dict[str, Any] = Field(description="document-level metadata: category, publisher, tracking, notes")
    product_tree: dict[str, Any] = Field(description="vendor, product name and one product_version per release")
    vulnerabilities: list[dict[str, Any]] = Field(description="per CVE: product_status, remediations, scores, notes")


class KeyIn(_In):
    secret_key: str = Field(min_length=1, max_length=100_000, description="ASCII-armoured OpenPGP secret key, no passphrase")


class ProviderOut(Out):
    """The tenant's CSAF provider: its public URLs, the publisher, security contact and policy, the signing key."""

    tenant: str
    base: str = Field(description="where the tenant's /.well-known/ is")
    provider_metadata: str
    security_txt: str
    advisories_page: str
    publisher: dict[str, Any]
    contact: str | None
    policy: str | None
    signing: dict[str, Any]
