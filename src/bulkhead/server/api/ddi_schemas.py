"""Typed wire models of the hawkBit DDI API (field names as hawkBit's), and the media type of its answers."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from bulkhead.protocol import ActionStatus, DdiExecution, DdiResult

from .wire import Out, absent

# hawkBit gives no ranges; these say what the server reads (a 64-bit integer; counts from 0) so that a client and a
# fuzzer know the contract. The routes parse their bodies themselves and only ever turn these numbers into text.
Int64 = Annotated[int, Field(ge=-(2**63), le=2**63 - 1)]
Count = Annotated[int, Field(ge=0, le=2**63 - 1)]

__all__ = [
    "DdiActionHistory",
    "DdiArtifact",
    "DdiArtifactLinks",
    "DdiCancel",
    "DdiCancelAction",
    "DdiChunk",
    "DdiConfig",
    "DdiConfigDataIn",
    "DdiDeployment",
    "DdiDeploymentBase",
    "DdiFeedbackIn",
    "DdiFeedbackResult",
    "DdiFeedbackStatus",
    "DdiHashes",
    "DdiInstalledBaseIn",
    "DdiInstalledBaseOut",
    "DdiLink",
    "DdiPolling",
    "DdiProgress",
    "DdiRoot",
    "DdiRootLinks",
    "DdiSettingsOut",
    "HalJsonResponse",
]


class DdiSettingsOut(Out):
    """The tenant's hawkBit DDI settings (the gateway token only right after it was issued)."""

    auto_register: bool = absent("create devices on their first poll with the gateway token")
    default_compatible: str = absent("compatible given to auto-registered devices")
    gateway_token_set: bool
    gateway_token: str = absent("the new GatewayToken; shown only now")


class DdiLink(Out):
    """A hawkBit link."""

    href: str


class DdiRootLinks(Out):
    """What the controller should do next."""

    deploymentBase: DdiLink = absent("an update to install")
    cancelAction: DdiLink = absent("an update to cancel")
    configData: DdiLink = absent("send your attributes")
    installedBase: DdiLink = absent("the last update installed")


class DdiPolling(Out):
    """hawkBit polling configuration."""

    sleep: str = Field(description="HH:MM:SS until the next poll", pattern=r"^\d{2}:\d{2}:\d{2}$")


class DdiConfig(Out):
    """hawkBit controller configuration."""

    polling: DdiPolling


class DdiRoot(Out):
    """hawkBit DDI controller base: polling interval and links to what to do next."""

    config: DdiConfig
    links: DdiRootLinks = absent("absent when there is nothing to do", alias="_links")


class DdiHashes(Out):
    """An artifact's hashes."""

    sha1: str
    md5: str
    sha256: str


class DdiArtifactLinks(Out):
    """Where to download an artifact and its MD5SUM file."""

    download: DdiLink
    download_http: DdiLink = Field(alias="download-http")
    md5sum: DdiLink
    md5sum_http: DdiLink = Field(alias="md5sum-http")


class DdiArtifact(Out):
    """A file of a software module."""

    filename: str
    hashes: DdiHashes
    size: int
    links: DdiArtifactLinks = Field(alias="_links")


class DdiChunk(Out):
    """A software module of a deployment."""

    part: str
    version: str
    name: str
    artifacts: list[DdiArtifact]


DdiHandling = Literal["skip", "attempt", "forced"]


class DdiDeployment(Out):
    """How to download and install, and what."""

    download: DdiHandling
    update: DdiHandling
    maintenanceWindow: Literal["available", "unavailable"] = absent("only when a maintenance window applies")
    chunks: list[DdiChunk]


class DdiActionHistory(Out):
    """The action's status and its latest history messages (with ?actionHistory=N)."""

    status: ActionStatus
    messages: list[str]


class DdiDeploymentBase(Out):
    """hawkBit DDI deploymentBase (or installedBase): an update for the controller."""

    id: str
    deployment: DdiDeployment
    actionHistory: DdiActionHistory = absent("with ?actionHistory=N")


class DdiCancelAction(Out):
    """Which action to stop."""

    stopId: str


class DdiCancel(Out):
    """hawkBit DDI cancelAction: stop an update."""

    id: str
    cancelAction: DdiCancelAction


class DdiInstalledBaseOut(Out):
    """What the server made of the device's declaration."""

    release_id: int | None = Field(description="the release with this version, if the server has it")
    version: str


class DdiProgress(BaseModel):
    """Progress of an action: cnt of of."""

    cnt: Count
    of: Count | None = None


class DdiFeedbackResult(BaseModel):
    """The result so far."""

    finished: DdiResult = DdiResult.NONE
    progress: DdiProgress | None = None


class DdiFeedbackStatus(BaseModel):
    """The action's execution state."""

    execution: DdiExecution
    result: DdiFeedbackResult | None = None
    details: list[str] | None = Field(None, description="messages (at most 20 are kept)")
    code: Int64 | None = None


class DdiFeedbackIn(BaseModel):
    """hawkBit DDI feedback on an action (deploymentBase or cancelAction)."""

    model_config = ConfigDict(extra="allow")

    id: str | None = None
    time: str | None = None
    timestamp: Count | None = None
    status: DdiFeedbackStatus


class DdiConfigDataIn(BaseModel):
    """hawkBit DDI configData: the controller's attributes."""

    model_config = ConfigDict(extra="allow")

    mode: Literal["merge", "replace", "remove"] = "merge"
    data: dict[str, str | Int64 | float | bool] = Field(description="attribute -> value (at most 128 characters)")


class DdiInstalledBaseIn(BaseModel):
    """What the controller runs (after an update outside the server, or at first contact)."""

    model_config = ConfigDict(extra="allow")

    name: str | None = None
    version: str = Field(min_length=1)


class HalJsonResponse(JSONResponse):
    """JSON with hawkBit's media type (documents the DDI root, which the poll app answers)."""

    media_type = "application/hal+json"
