"""Desired state, pure: validate container specs and files, convert compose files, merge groups and device."""

from __future__ import annotations

import base64
import hashlib
import re
from typing import Any

import yaml

from ..errors import Invalid
from ..security import seal, unseal
from .imageref import check_image

__all__ = [
    "compose_to_containers",
    "image_registry",
    "merge_desired",
    "normalize_container",
    "normalize_file",
    "normalize_package",
    "open_file",
    "seal_file",
]

MAX_FILE_BYTES = 256 * 1024
_RESTART = ("no", "always", "on-failure", "unless-stopped")
_CNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}\Z")
_PORT = re.compile(r"^(?:(?:\d{1,3}\.){3}\d{1,3}:)?\d{1,5}:\d{1,5}(?:/(?:tcp|udp))?\Z")
_MODE = re.compile(r"^0?[0-7]{3,4}\Z")
# HOST_PATH[:CONTAINER_PATH[:PERMISSIONS]], as `podman run --device` takes it.
_DEVICE = re.compile(r"^/dev/[^:\s]+(?::/dev/[^:\s]+)?(?::[rwm]{1,3})?\Z")
# host, bridge, none, or the name of a network created on the device.
_NETWORK = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}\Z")
# Compose service keys and what each becomes; any other key is refused by name (nothing is dropped silently).
_COMPOSE_KEYS = {
    "image": "image",
    "command": "command",
    "environment": "env",
    "ports": "ports",
    "volumes": "volumes",
    "restart": "restart",
    "privileged": "privileged",
    "devices": "devices",
    "network_mode": "network_mode",
}
_COMPOSE_REFUSED = {
    "build": "devices pull images; build and push it in CI first",
    "depends_on": (
        "the containers of an app are started together, in no particular order; make the service retry until "
        "what it needs answers (or ship the two as one container)"
    ),
}


def normalize_container(spec: dict[str, Any]) -> dict[str, Any]:
    """One container: name, image, command, env, ports, volumes, restart, privileged, devices, network_mode;
    anything else is an error. The last three are kept only when set, so specs without them stay as they were."""
    known = {"name", "image", "command", "env", "ports", "volumes", "restart", "privileged", "devices", "network_mode"}
    unknown = set(spec) - known
    if unknown:
        raise Invalid(f"unknown container field(s) {sorted(unknown)}; allowed: {sorted(known)}")
    name, image = spec.get("name"), spec.get("image")
    if not isinstance(name, str) or not _CNAME.match(name):
        raise Invalid(f"container name {name!r} is invalid: 1-63 letters, digits, '_', '.', '-'")
    check_image(image, f"container '{name}'")
    command = spec.get("command") or []
    if isinstance(command, str):
        command = command.split()
    env = spec.get("env") or {}
    ports = [str(p) for p in spec.get("ports") or []]
    volumes = [str(v) for v in spec.get("volumes") or []]
    restart = spec.get("restart") or "always"
    if not isinstance(command, list) or not all(isinstance(c, str) for c in command):
        raise Invalid(f"container '{name}': command must be a list of strings")
    if not isinstance(env, dict):
        raise Invalid(f"container '{name}': env must be a mapping of names to values")
    for p in ports:
        if not _PORT.match(p):
            raise Invalid(f"container '{name}': port {p!r} must look like 'HOST:CONTAINER[/tcp|udp]'")
    for v in volumes:
        if ":" not in v:
            raise Invalid(f"container '{name}': volume {v!r} must look like 'NAME_OR_HOST_PATH:/container/path[:ro]'")
    if restart not in _RESTART:
        raise Invalid(f"container '{name}': restart must be one of {', '.join(_RESTART)}")
    out: dict[str, Any] = {
        "name": name,
        "image": image,
        "command": command,
        "env": {str(k): str(v) for k, v in env.items()},
        "ports": ports,
        "volumes": volumes,
        "restart": restart,
    }
    out.update(_host_access(name, spec))
    return out


def _host_access(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    """privileged, devices and network_mode, validated; only those that are set."""
    out: dict[str, Any] = {}
    privileged = spec.get("privileged", False)
    if not isinstance(privileged, bool):
        raise Invalid(f"container '{name}': privileged must be true or false")
    if privileged:
        out["privileged"] = True
    devices = spec.get("devices") or []
    if not isinstance(devices, list) or not all(isinstance(d, str) and _DEVICE.match(d) for d in devices):
        raise Invalid(f"container '{name}': devices must be a list of '/dev/HOST[:/dev/CONTAINER][:rwm]', e.g. '/dev/ttyUSB0'")
    if devices:
        out["devices"] = list(devices)
    network = spec.get("network_mode")
    if network is not None:
        if not isinstance(network, str) or not _NETWORK.match(network):
            raise Invalid(
                f"container '{name}': network_mode {network!r} must be host, bridge, none or a network name "
                "(sharing another container's or service's network is not supported)"
            )
        out["network_mode"] = network
    return out


def compose_to_containers(text: str) -> list[dict[str, Any]]:
    """The services of a compose file as container specs (image-based services only)."""
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise Invalid(f"compose file is not valid YAML: {e}") from None
    services = doc.get("services") if isinstance(doc, dict) else None
    if not isinstance(services, dict) or not services:
        raise Invalid("compose file has no 'services' mapping")
    out = []
    for name, svc in services.items():
        if not isinstance(svc, dict):
            raise Invalid(f"compose service '{name}' must be a mapping")
        for key in svc:
            if key in _COMPOSE_REFUSED:
                raise Invalid(f"compose service '{name}' uses '{key}': {_COMPOSE_REFUSED[key]}")
        unknown = sorted(str(k) for k in svc if k not in _COMPOSE_KEYS)
        if unknown:
            raise Invalid(
                f"compose service '{name}' uses {', '.join(repr(k) for k in unknown)}, which Bulkhead does not "
                f"support; supported keys: {', '.join(sorted(_COMPOSE_KEYS))}"
            )
        env = svc.get("environment") or {}
        if isinstance(env, list):
            env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
        restart = svc.get("restart", "always")
        out.append(
            normalize_container(
                {
                    "name": str(name),
                    "image": svc.get("image"),
                    "command": svc.get("command") or [],
                    "env": env,
                    "ports": svc.get("ports") or [],
                    "volumes": svc.get("volumes") or [],
                    "restart": "on-failure" if str(restart).startswith("on-failure") else restart,
                    **{k: svc[k] for k in ("privileged", "devices", "network_mode") if k in svc},
                }
            )
        )
    return out


def normalize_file(spec: dict[str, Any]) -> dict[str, Any]:
    """A file to place on devices: absolute path, content (text or base64), mode, templating, command after a change."""
    path = spec.get("path")
    if not isinstance(path, str) or not path.startswith("/") or "/../" in path + "/" or "\0" in path:
        raise Invalid(f"file path {path!r} must be absolute and must not contain '..'")
    if "content" in spec and "content_b64" in spec:
        raise Invalid(f"file {path}: give either 'content' or 'content_b64', not both")
    if "content_b64" in spec:
        try:
            data = base64.b64decode(spec["content_b64"], validate=True)
        except ValueError:
            raise Invalid(f"file {path}: content_b64 is not valid base64") from None
    elif isinstance(spec.get("content"), str):
        data = spec["content"].encode()
    else:
        raise Invalid(f"file {path}: 'content' (text) or 'content_b64' is required")
    if len(data) > MAX_FILE_BYTES:
        raise Invalid(f"file {path} is {len(data)} bytes; the limit is {MAX_FILE_BYTES} (ship bigger files in an app or release)")
    mode = str(spec.get("mode", "0644"))
    if not _MODE.match(mode):
        raise Invalid(f"file {path}: mode {mode!r} must be octal such as '0644'")
    on_change = spec.get("on_change")
    if on_change is not None and not isinstance(on_change, str):
        raise Invalid(f"file {path}: on_change must be a shell command")
    if not isinstance(spec.get("secret", False), bool):
        raise Invalid(f"file {path}: secret must be true or false")
    out = {
        "path": path,
        "content_b64": base64.b64encode(data).decode(),
        "sha256": hashlib.sha256(data).hexdigest(),
        "mode": mode,
        "template": bool(spec.get("template", False)),
        "on_change": on_change,
    }
    if spec.get("secret"):
        out["secret"] = True
    return out


_PKG_NAME = re.compile(r"^[a-z0-9][a-z0-9+.-]+\Z")
_PKG_VERSION = re.compile(r"^(?:[0-9]+:)?[0-9][A-Za-z0-9.+~-]*\Z")


def normalize_package(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    """A Debian package the device must have (at `version`, or the newest its sources offer), hold, or not have."""
    known = {"version", "hold", "remove"}
    unknown = set(spec) - known
    if unknown:
        raise Invalid(f"package {name}: unknown field(s) {sorted(unknown)}; allowed: {sorted(known)}")
    if not _PKG_NAME.match(name):
        raise Invalid(f"{name!r} is not a Debian package name (lower case letters, digits, + - .)")
    version, hold, remove = spec.get("version"), spec.get("hold", False), spec.get("remove", False)
    if version is not None and (not isinstance(version, str) or not _PKG_VERSION.match(version)):
        raise Invalid(f"package {name}: {version!r} is not a Debian version ([epoch:]upstream[-revision])")
    if not isinstance(hold, bool) or not isinstance(remove, bool):
        raise Invalid(f"package {name}: hold and remove are true or false")
    if remove and (version is not None or hold):
        raise Invalid(f"package {name}: a package to remove has no version and is not held")
    return {"name": name, "version": version, "hold": hold, "remove": remove}


def seal_file(f: dict[str, Any], secret: bytes) -> dict[str, Any]:
    """A normalized file as stored: the content of a file marked secret sealed with the server key."""
    if not f.get("secret") or "content_b64" not in f:
        return f
    sealed = {k: v for k, v in f.items() if k != "content_b64"}
    sealed["content_sealed"] = seal(secret, f["content_b64"])
    return sealed


def open_file(f: dict[str, Any], secret: bytes) -> dict[str, Any]:
    """A stored file as a device gets it (a sealed content opened); ValueError if the server key changed."""
    if "content_sealed" not in f:
        return f
    opened = {k: v for k, v in f.items() if k != "content_sealed"}
    opened["content_b64"] = unseal(secret, f["content_sealed"])
    return opened


def merge_desired(layers: list[dict[str, Any]]) -> dict[str, Any]:
    """Merge desired-state layers in order (groups, then the device): later wins; an app version None removes it."""
    release_id: int | None = None
    apps: dict[str, str | None] = {}
    files: dict[str, dict[str, Any]] = {}
    packages: dict[str, dict[str, Any]] = {}
    for layer in layers:
        packages.update(layer.get("packages") or {})
        if layer.get("release_id") is not None:
            release_id = layer["release_id"]
        apps.update(layer.get("apps") or {})
        for f in layer.get("files") or []:
            files[f["path"]] = f
    return {
        "release_id": release_id,
        "apps": {k: v for k, v in sorted(apps.items()) if v is not None},
        "files": [files[p] for p in sorted(files)],
        "packages": [packages[n] for n in sorted(packages)],
    }


def image_registry(image: str) -> str | None:
    """The registry host of an image reference, or None for the default registry."""
    first = image.split("/", 1)[0]
    if "/" in image and ("." in first or ":" in first or first == "localhost"):
        return first
    return None
