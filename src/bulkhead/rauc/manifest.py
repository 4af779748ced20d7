"""The RAUC manifest: typed model, parser with RAUC's rules, and writer."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from .errors import ManifestError
from .keyfile import Entry, Group, escape_value, get_string, parse_keyfile, split_list

__all__ = ["BUNDLE_FORMATS", "Image", "Manifest", "parse_manifest"]

BUNDLE_FORMATS = ("plain", "verity", "crypt")
IMAGE_HOOKS = ("pre-install", "install", "post-install")
ADAPTIVE_METHODS = ("block-hash-index",)
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class Image:
    """One `[image.<slotclass>[.<variant>]]` section."""

    slotclass: str
    filename: str
    variant: str | None = None
    sha256: str | None = None
    size: int | None = None
    hooks: tuple[str, ...] = ()
    args: str | None = None
    adaptive: tuple[str, ...] = ()

    @property
    def section(self) -> str:
        return f"image.{self.slotclass}" + (f".{self.variant}" if self.variant else "")


@dataclass(frozen=True)
class Manifest:
    """A parsed manifest; unknown groups and keys were refused while parsing."""

    compatible: str
    version: str | None = None
    description: str | None = None
    build: str | None = None
    format: str = "plain"
    verity_hash: str | None = None
    verity_salt: str | None = None
    verity_size: int | None = None
    crypt_key: str | None = None
    hook_filename: str | None = None
    hooks: tuple[str, ...] = ()
    handler_filename: str | None = None
    handler_args: str | None = None
    images: tuple[Image, ...] = ()
    meta: dict[str, dict[str, str]] = field(default_factory=dict)

    def to_text(self) -> str:
        """Serialize as a key file that RAUC and this parser both accept."""
        out: list[str] = ["[update]", f"compatible={escape_value(self.compatible)}"]
        for key, val in (("version", self.version), ("description", self.description), ("build", self.build)):
            if val is not None:
                out.append(f"{key}={escape_value(val)}")
        bundle = [
            ("format", self.format if self.format != "plain" else None),
            ("verity-hash", self.verity_hash),
            ("verity-salt", self.verity_salt),
            ("verity-size", None if self.verity_size is None else str(self.verity_size)),
            ("crypt-key", self.crypt_key),
        ]
        if any(v is not None for _, v in bundle):
            out += ["", "[bundle]"] + [f"{k}={v}" for k, v in bundle if v is not None]
        if self.hook_filename or self.hooks:
            out += ["", "[hooks]"]
            if self.hook_filename:
                out.append(f"filename={escape_value(self.hook_filename)}")
            if self.hooks:
                out.append("hooks=" + ";".join(self.hooks) + ";")
        if self.handler_filename or self.handler_args:
            out += ["", "[handler]"]
            if self.handler_filename:
                out.append(f"filename={escape_value(self.handler_filename)}")
            if self.handler_args:
                out.append(f"args={escape_value(self.handler_args)}")
        for img in self.images:
            out += ["", f"[{img.section}]"]
            if img.sha256:
                out.append(f"sha256={img.sha256}")
            if img.size is not None:
                out.append(f"size={img.size}")
            out.append(f"filename={escape_value(img.filename)}")
            if img.hooks:
                out.append("hooks=" + ";".join(img.hooks) + ";")
            if img.args:
                out.append(f"args={escape_value(img.args)}")
            if img.adaptive:
                out.append("adaptive=" + ";".join(img.adaptive) + ";")
        for label, kv in self.meta.items():
            out += ["", f"[meta.{label}]"] + [f"{k}={escape_value(v)}" for k, v in kv.items()]
        return "\n".join(out) + "\n"


class _Consumer:
    """Takes known keys out of a group, then refuses whatever is left (RAUC's check_remaining_keys)."""

    def __init__(self, group: Group) -> None:
        self.group = group
        self.left = dict(group.entries)

    def take(self, key: str) -> Entry | None:
        return self.left.pop(key, None)

    def string(self, key: str) -> str | None:
        entry = self.take(key)
        return None if entry is None else get_string(entry)

    def integer(self, key: str) -> int | None:
        entry = self.take(key)
        if entry is None:
            return None
        text = get_string(entry).strip()
        if not text.isdigit():
            raise ManifestError(f"key '{key}' in [{self.group.name}] must be a non-negative integer, got {text!r}", entry.line)
        return int(text)

    def strings(self, key: str, allowed: tuple[str, ...] | None = None) -> tuple[str, ...]:
        entry = self.take(key)
        if entry is None:
            return ()
        values = tuple(v.strip() for v in split_list(entry) if v.strip())
        if allowed is not None:
            for v in values:
                if v not in allowed:
                    raise ManifestError(
                        f"unknown value '{v}' for '{key}' in [{self.group.name}] (allowed: {', '.join(allowed)})", entry.line
                    )
        return values

    def done(self) -> None:
        if self.left:
            entry = min(self.left.values(), key=lambda e: e.line)
            raise ManifestError(f"unknown key '{entry.key}' in group [{self.group.name}]", entry.line)


def _hex64(value: str | None, what: str, group: Group) -> str | None:
    if value is not None and not _HEX64.match(value):
        raise ManifestError(f"{what} must be 64 lowercase hex digits", group.line)
    return value


def _parse_update(c: _Consumer, fields: dict[str, object]) -> None:
    compatible = c.string("compatible")
    if not compatible:
        raise ManifestError("missing 'compatible' in [update]", c.group.line)
    fields.update(
        compatible=compatible, version=c.string("version"), description=c.string("description"), build=c.string("build")
    )


def _parse_bundle(c: _Consumer, fields: dict[str, object]) -> None:
    fmt = c.string("format") or "plain"
    if fmt not in BUNDLE_FORMATS:
        raise ManifestError(f"unknown bundle format '{fmt}' (allowed: {', '.join(BUNDLE_FORMATS)})", c.group.line)
    fields.update(
        format=fmt,
        verity_hash=_hex64(c.string("verity-hash"), "verity-hash", c.group),
        verity_salt=_hex64(c.string("verity-salt"), "verity-salt", c.group),
        verity_size=c.integer("verity-size"),
        crypt_key=c.string("crypt-key"),
    )


def _parse_hooks(c: _Consumer, fields: dict[str, object]) -> None:
    fields.update(hook_filename=c.string("filename"), hooks=c.strings("hooks", ("install-check",)))


def _parse_handler(c: _Consumer, fields: dict[str, object]) -> None:
    fields.update(handler_filename=c.string("filename"), handler_args=c.string("args"))


_SECTIONS: dict[str, Callable[[_Consumer, dict[str, object]], None]] = {
    "update": _parse_update,
    "bundle": _parse_bundle,
    "hooks": _parse_hooks,
    "handler": _parse_handler,
}


def _parse_image(c: _Consumer) -> Image:
    parts = c.group.name.split(".")
    if len(parts) not in (2, 3) or not all(parts[1:]):
        raise ManifestError(
            f"invalid image group [{c.group.name}] (want [image.<slotclass>] or [image.<slotclass>.<variant>])", c.group.line
        )
    filename = c.string("filename")
    if not filename:
        raise ManifestError(f"missing 'filename' in [{c.group.name}]", c.group.line)
    img = Image(
        slotclass=parts[1],
        variant=parts[2] if len(parts) == 3 else None,
        filename=filename,
        sha256=_hex64(c.string("sha256"), "sha256", c.group),
        size=c.integer("size"),
        hooks=c.strings("hooks", IMAGE_HOOKS),
        args=c.string("args"),
        adaptive=c.strings("adaptive"),
    )
    c.done()
    return img


def parse_manifest(text: bytes | str) -> Manifest:
    """Parse a manifest; unknown groups or keys raise ManifestError with their line."""
    groups = parse_keyfile(text)
    fields: dict[str, object] = {}
    images: list[Image] = []
    meta: dict[str, dict[str, str]] = {}
    seen_update = False
    for group in groups:
        c = _Consumer(group)
        head = group.name.split(".", 1)[0]
        if group.name in _SECTIONS:
            seen_update |= group.name == "update"
            _SECTIONS[group.name](c, fields)
            c.done()
        elif head == "image":
            images.append(_parse_image(c))
        elif head == "meta" and "." in group.name and group.name[5:]:
            meta[group.name[5:]] = {k: get_string(e) for k, e in group.entries.items()}
        else:
            raise ManifestError(f"unknown group [{group.name}]", group.line)
    if not seen_update:
        raise ManifestError("missing [update] group with 'compatible'")
    return Manifest(images=tuple(images), meta=meta, **fields)  # type: ignore[arg-type]
