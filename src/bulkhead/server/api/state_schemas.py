"""Typed wire model of the agent protocol's desired state (`GET /device/v1/state`): what a device is told to run."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from .wire import ActionType, Out, Time, absent

__all__ = [
    "AppAction",
    "ContainerSpec",
    "DeviceState",
    "PrefetchAction",
    "PrefetchApp",
    "RegistryCredential",
    "StateAction",
    "StateApp",
    "StateDelta",
    "StateDesired",
    "StateDevice",
    "StateFile",
    "StateOverlay",
    "StatePackage",
    "StateRelease",
]


class ContainerSpec(Out):
    """One container of an app."""

    name: str
    image: str
    command: list[str]
    env: dict[str, str]
    ports: list[str]
    volumes: list[str]
    restart: Literal["no", "always", "on-failure", "unless-stopped"]


class StateDevice(Out):
    """The device as its desired state names it."""

    id: int
    name: str
    tags: list[str]
    groups: list[str]
    attributes: dict[str, str]


class StateAction(Out):
    """A rollout's action for the device: whether it may install now."""

    id: int
    type: ActionType
    install: bool
    window_opens_at: Time | None = Field(description="when the maintenance window opens, if it is closed")


class AppAction(Out):
    """An app rollout's action the device runs now."""

    id: int
    type: ActionType
    install: bool


class PrefetchAction(AppAction):
    """An app rollout's action the device may only pull images for (outside its window, or download-only)."""

    window_opens_at: Time | None


class StateDelta(Out):
    """A delta bundle from the OS version the device runs: smaller than the full bundle."""

    id: int
    from_version: str
    sha256: str
    size: int
    url: str
    signed_url: str


class StateRelease(Out):
    """The OS release the device must run."""

    id: int
    version: str
    compatible: str
    format: str
    sha256: str
    size: int
    url: str
    signed_url: str = Field(description="a URL that needs no credential, valid for a while")
    action: StateAction | None
    delta: StateDelta = absent("a delta bundle to install instead of the full one")
    update_lock_max_seconds: int = Field(
        description="the longest an application's update lock on the device may delay the install (the agent then installs)"
    )


class StateApp(Out):
    """An app the device must run."""

    name: str
    version: str
    containers: list[ContainerSpec]
    action: AppAction = absent("the app rollout's action, when one decided this version")


class PrefetchApp(Out):
    """An app version the device may only pull images for."""

    name: str
    version: str
    containers: list[ContainerSpec]
    action: PrefetchAction


class StateFile(Out):
    """A file the device must have."""

    path: str
    content_b64: str
    sha256: str
    mode: str
    template: bool
    on_change: str | None


class StatePackage(Out):
    """A Debian package the device must have at `version` (null: the newest its sources offer), hold, or remove."""

    name: str
    version: str | None
    hold: bool
    remove: bool


class StateOverlay(Out):
    """The tenant's package overlay (a signed APT repository): apt authenticates with the device's name and credential."""

    url: str = Field(description="the repository's URL (apt's URIs); the suite is the device's distribution codename")
    key_url: str = Field(description="the repository's public key (apt's Signed-By), fetched with the same credentials")
    components: list[str]


class RegistryCredential(Out):
    """Credentials to pull images from one registry."""

    username: str
    password: str


class StateDesired(Out):
    """What the device must run."""

    release: StateRelease | None
    apps: list[StateApp]
    files: list[StateFile]
    registries: dict[str, RegistryCredential]
    prefetch: list[PrefetchApp] = absent("app versions to pull but not run yet")
    packages: list[StatePackage] = absent("Debian packages to install, hold or remove with apt (absent: none)")
    overlay: StateOverlay = absent("the tenant's package overlay, when the device has desired packages")
    packages_action: StateAction = absent(
        "a package rollout's action: while `install` is true, `packages` holds the rollout's set; report its outcome "
        "with the action's id"
    )


class StateSupport(Out):
    """What the device may show its user about its product's support period (CRA)."""

    product: str
    manufacturer: str
    support_end: str | None = Field(description="the last day of support (ISO date), null when not set")


class StateSecurity(Out):
    """The device's pending security update (CRA): the release, when it is due, and any postponement."""

    release_id: int
    version: str
    available_at: str = Field(description="since when the fix is available (ISO 8601)")
    due_at: str = Field(description="when it is due by the device's policy (ISO 8601)")
    postponed_until: str | None = Field(description="the end of a postponement that holds, else null")
    installs_at: str | None = Field(description="when it installs automatically; null: the policy is opt_out")
    mode: str = Field(description="automatic or opt_out")


class StateFactoryReset(Out):
    """An administrator asked the device to erase its data partition and enroll again."""

    requested_at: str = Field(description="when the request was made (ISO 8601)")


class StateCommand(Out):
    """An administrator's command line to run once (`POST /device/v1/commands/{id}` with how it went)."""

    id: int
    argv: list[str] = Field(description="the program and its arguments, run without a shell")
    timeout_seconds: int = Field(description="kill its process group after this long")


class DeviceState(Out):
    """The device's desired state."""

    device: StateDevice
    desired: StateDesired
    poll_interval: int = Field(description="seconds until the next poll")
    support: StateSupport | None = absent("the device's product and its support end (absent: no product registered)")
    security: StateSecurity | None = absent("the device's pending security update (absent: none)")
    factory_reset: StateFactoryReset | None = absent(
        "erase the data partition and enroll again with the credential held now (absent: no such request)"
    )
    commands: list[StateCommand] | None = absent("command lines to run, oldest first (absent: none pending)")
